"""Country of an IP address for ``agentsight dev``'s world map: geoip2fast with its bundled data, offline.

The data (IPv4 and IPv6 countries) loads once, on first use (about 0.1 s). Private, reserved and unknown
addresses and text that is not an IP have no country (``None``).
"""

from __future__ import annotations

import functools
import ipaddress
import threading
from typing import Any

DATA_FILE = "geoip2fast-ipv6.dat.gz"
"""geoip2fast's bundled country data covering IPv4 and IPv6."""

_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _database() -> Any:
    try:
        from geoip2fast import GeoIP2Fast
    except ImportError:  # the `dev` extra is not installed: no country for anyone
        return None
    return GeoIP2Fast(geoip2fast_data_file=DATA_FILE)


def available() -> bool:
    """Whether geoip2fast is installed."""
    with _lock:
        return _database() is not None


@functools.lru_cache(maxsize=65536)
def country(address: str) -> tuple[str, str] | None:
    """``(ISO 3166 alpha-2 code, English name)`` of the address's country; ``None`` when it has none."""
    try:
        parsed = ipaddress.ip_address(address.strip())
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    if not parsed.is_global:
        return None
    with _lock:
        database = _database()
        if database is None:
            return None
        found = database.lookup(str(parsed))
    code = getattr(found, "country_code", "") or ""
    if len(code) != 2 or not code.isalpha() or getattr(found, "is_private", False):
        return None
    return code.upper(), str(getattr(found, "country_name", code))
