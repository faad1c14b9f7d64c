"""Turn user metadata into JSON text that round-trips: OTel attributes cannot hold nested objects."""

from __future__ import annotations

import base64
import dataclasses
import json
import math
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID


def to_json_safe(value: Any) -> Any:
    """Return ``value`` made of JSON types only.

    datetimes, dates and times become ISO 8601 text, timedeltas seconds, Decimals numbers,
    sets and tuples lists, bytes base64 text, enums their value, dataclasses and objects with
    ``model_dump()`` (pydantic) their fields, non-finite floats text, anything else ``str()``.
    """
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {_key(k): to_json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_safe(v) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [to_json_safe(v) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Enum):
        return to_json_safe(value.value)
    if isinstance(value, UUID):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json_safe(dataclasses.asdict(value))
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):
        return to_json_safe(model_dump())
    return str(value)


def _key(key: Any) -> str:
    return key if isinstance(key, str) else str(to_json_safe(key))


def dumps(value: Any) -> str:
    """Compact JSON text of ``to_json_safe(value)``, keeping non-ASCII characters as they are."""
    return json.dumps(to_json_safe(value), ensure_ascii=False, separators=(",", ":"))
