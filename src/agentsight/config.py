"""Settings: constructor arguments first, then ``AGENTSIGHT_*`` environment variables, then defaults."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from agentsight.exceptions import ConfigurationError, InvalidApiKeyException, NoApiKeyException

SDK_NAME = "agentsight-otel"
try:
    SDK_VERSION = version(SDK_NAME)
except PackageNotFoundError:  # running from a source tree that was never installed
    SDK_VERSION = "0.0.0"
USER_AGENT = f"{SDK_NAME}/{SDK_VERSION}"

API_KEY_PATTERN = re.compile(r"^ags_[a-f0-9]{32}_[a-f0-9]{6}$", re.IGNORECASE)
DEFAULT_ENDPOINT = "https://api.agentsight.io"
ENVIRONMENTS = ("production", "development")
PROTOCOLS = ("ingest", "rest")
"""The wires: ``ingest`` (span batches to ``POST /api/ingest/``, as upstream 0.1.x) and ``rest`` (0.0.x endpoints)."""
DEFAULT_CONCURRENCY = {"ingest": 4, "rest": 64}
"""Requests in flight at once per protocol: a REST turn is several sequential round trips per conversation."""
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

logger = logging.getLogger("agentsight")


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    return default


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        logger.warning("Ignoring %s=%r: not a number; using %s", name, raw, default)
        return default


def _env_concurrency() -> int | None:
    value = _env_number("AGENTSIGHT_MAX_CONCURRENCY", 0)
    return max(1, int(value)) if value else None


DEFAULT_SHUTDOWN_TIMEOUT = 25.0
"""Seconds the drain at exit or server stop may take: inside the 30 s a container orchestrator grants after SIGTERM."""


def shutdown_timeout() -> float:
    """How long the drain at interpreter exit, in a ``multiprocessing`` child or at server stop may take, in
    seconds: ``AGENTSIGHT_SHUTDOWN_TIMEOUT``, else :data:`DEFAULT_SHUTDOWN_TIMEOUT`."""
    return max(0.0, _env_number("AGENTSIGHT_SHUTDOWN_TIMEOUT", DEFAULT_SHUTDOWN_TIMEOUT))


def load_dotenv_file() -> None:
    """Load ``.env`` into the environment as upstream ``agentsight`` 0.1.x does, when python-dotenv is installed.

    The file is looked for in the working directory, then its parents; variables already set are kept.
    """
    try:
        from dotenv import find_dotenv, load_dotenv
    except ImportError:  # python-dotenv is optional, as upstream
        return
    path = find_dotenv(usecwd=True)
    if path:
        load_dotenv(path, override=False)


def resolve_protocol(protocol: str | None) -> str:
    """The wire to speak: ``protocol``, else ``AGENTSIGHT_PROTOCOL``, else ``ingest``.

    Raises :class:`ConfigurationError` for any other value.
    """
    raw = protocol if protocol is not None else os.environ.get("AGENTSIGHT_PROTOCOL", "")
    value = str(raw).strip().lower() or "ingest"
    if value not in PROTOCOLS:
        source = "protocol=" if protocol is not None else "AGENTSIGHT_PROTOCOL="
        raise ConfigurationError(f"{source}{raw!r} is not a protocol: use 'ingest' or 'rest'")
    return value


@dataclass
class DeliverySettings:
    """How payloads reach the API. Every limit here bounds memory or time; see README "Configuration"."""

    timeout: float = 10.0
    """Seconds one HTTP request may take (``AGENTSIGHT_TIMEOUT``)."""
    max_concurrency: int | None = None
    """Requests in flight at once, one kept-alive connection each (``AGENTSIGHT_MAX_CONCURRENCY``); ``None``: the
    protocol's default (:data:`DEFAULT_CONCURRENCY`)."""
    max_queue_size: int = 10_000
    """Payloads (REST requests or ingest spans) waiting before new turns are dropped (``AGENTSIGHT_MAX_QUEUE_SIZE``)."""
    max_queue_bytes: int = 64 * 1024 * 1024
    """Bytes of payload bodies waiting before new turns are dropped (``AGENTSIGHT_MAX_QUEUE_BYTES``)."""
    max_retry_time: float = 300.0
    """Seconds a payload is retried (network errors, 429, 5xx) before it is dropped (``AGENTSIGHT_MAX_RETRY_TIME``)."""
    backoff_initial: float = 0.5
    """First back-off delay in seconds; doubles per attempt, with jitter."""
    backoff_max: float = 30.0
    """Longest back-off delay in seconds (a longer ``Retry-After`` is honoured up to ``max_retry_time``)."""
    max_batch_spans: int = 1000
    """Ingest: spans in one document at most (a bigger backlog goes in several, concurrently)."""
    max_batch_bytes: int = 4 * 1024 * 1024
    """Ingest: estimated bytes of one document at most, before compression."""

    @classmethod
    def from_env(cls) -> DeliverySettings:
        """Read the ``AGENTSIGHT_*`` delivery variables, falling back to the defaults."""
        defaults = cls()
        return cls(
            timeout=_env_number("AGENTSIGHT_TIMEOUT", defaults.timeout),
            max_concurrency=_env_concurrency(),
            max_queue_size=int(_env_number("AGENTSIGHT_MAX_QUEUE_SIZE", defaults.max_queue_size)),
            max_queue_bytes=int(_env_number("AGENTSIGHT_MAX_QUEUE_BYTES", defaults.max_queue_bytes)),
            max_retry_time=_env_number("AGENTSIGHT_MAX_RETRY_TIME", defaults.max_retry_time),
        )


@dataclass
class Settings:
    """Everything a tracker or exporter is configured with. The API key is kept out of ``repr``."""

    api_key: str | None = field(default=None, repr=False)
    endpoint: str = DEFAULT_ENDPOINT
    protocol: str = "ingest"
    verify_key: bool = True
    environment: str | None = None
    conversation_id: str | None = None
    log_level: str | None = None
    direct_export: bool = True
    forward_spans: bool = True
    auto_instrument: bool = True
    app_url: str = "https://app.agentsight.io"
    delivery: DeliverySettings = field(default_factory=DeliverySettings)

    @classmethod
    def resolve(
        cls,
        api_key: str | None = None,
        endpoint: str | None = None,
        environment: str | None = None,
        conversation_id: str | None = None,
        log_level: str | None = None,
        direct_export: bool | None = None,
        forward_spans: bool | None = None,
        delivery: DeliverySettings | None = None,
        protocol: str | None = None,
        verify_key: bool | None = None,
        auto_instrument: bool | None = None,
    ) -> Settings:
        """Combine explicit arguments with the environment; only the protocol is validated here."""
        key = api_key if api_key is not None else os.environ.get("AGENTSIGHT_API_KEY")
        return cls(
            api_key=(key or "").strip() or None,
            endpoint=(endpoint or os.environ.get("AGENTSIGHT_API_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/"),
            protocol=resolve_protocol(protocol),
            verify_key=_env_bool("AGENTSIGHT_VERIFY_KEY", True) if verify_key is None else verify_key,
            environment=environment or os.environ.get("AGENTSIGHT_ENVIRONMENT") or None,
            conversation_id=conversation_id or os.environ.get("AGENTSIGHT_CONVERSATION_ID") or None,
            log_level=log_level or os.environ.get("AGENTSIGHT_LOG_LEVEL") or None,
            direct_export=_env_bool("AGENTSIGHT_DIRECT_EXPORT", True) if direct_export is None else direct_export,
            forward_spans=_env_bool("AGENTSIGHT_FORWARD_SPANS", True) if forward_spans is None else forward_spans,
            auto_instrument=(_env_bool("AGENTSIGHT_AUTO_INSTRUMENT", True) if auto_instrument is None
                             else auto_instrument),
            app_url=os.environ.get("AGENTSIGHT_APP_URL", "https://app.agentsight.io"),
            delivery=delivery or DeliverySettings.from_env(),
        )

    def check_api_key(self) -> None:
        """Raise the upstream exception for a missing or malformed key."""
        if not self.api_key:
            raise NoApiKeyException()
        if not API_KEY_PATTERN.match(self.api_key):
            raise InvalidApiKeyException(None, self.app_url)


def configure_logging(level: str | None) -> None:
    """Apply an explicitly configured log level to the ``agentsight`` logger.

    With no level configured the logger is left to the application (warnings and errors still
    reach stderr through Python's last-resort handler when the app configures no logging).
    """
    if not level:
        return
    name = str(getattr(level, "value", level)).upper()
    known = isinstance(logging.getLevelName(name), int)  # getLevelName maps a known name to its number
    logger.setLevel(name if known else logging.INFO)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
