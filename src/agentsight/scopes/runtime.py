"""The 0.1.x lifecycle: ``init()``, ``flush()``, ``shutdown()``, ``is_enabled()`` and the state they keep.

``init()`` makes the module-level :class:`~agentsight.tracker.ConversationTracker` that every 0.1.x scope
records into: the same turns, processor, translators and shared delivery pipeline as the seed API. It never
raises: without a usable key it logs one error and leaves tracking off, and then every scope and decorator
is a pass-through.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import threading
from collections.abc import Sequence

from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from agentsight.config import API_KEY_PATTERN, DeliverySettings
from agentsight.export.file import FileSpanExporter
from agentsight.scopes import watchdog
from agentsight.tracker import ConversationTracker

logger = logging.getLogger("agentsight")

DEFAULT_TURN_TIMEOUT_MS = 300_000
"""How long a turn handed to ``wrap()`` may stay open before it ends incomplete (``deadline``): 5 minutes."""


class _State:
    """What ``init()`` set up; one per process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tracker: ConversationTracker | None = None
        self.environment: str | None = None
        self.turn_timeout_ms = DEFAULT_TURN_TIMEOUT_MS
        self.api_key: str | None = None
        self.endpoint: str | None = None
        self.exit_hook = False


_state = _State()


def is_enabled() -> bool:
    """Whether ``init()`` turned tracking on (and ``shutdown()`` has not turned it off)."""
    return _state.tracker is not None


def tracker() -> ConversationTracker | None:
    """The tracker the 0.1.x API records into (``None`` while tracking is off)."""
    return _state.tracker


def default_environment() -> str | None:
    """``init(environment=...)`` or ``AGENTSIGHT_ENVIRONMENT``: for conversations that name none."""
    return _state.environment


def turn_timeout_ms() -> int:
    """The deadline of wrapped turns in milliseconds (0: none)."""
    return _state.turn_timeout_ms


def credentials() -> tuple[str | None, str | None]:
    """``(api_key, endpoint)`` as ``init()`` resolved them, for ``upload_attachments()``."""
    return _state.api_key, _state.endpoint


def init(
    api_key: str | None = None,
    *,
    endpoint: str | None = None,
    environment: str | None = None,
    auto_instrument: bool | Sequence[str] = True,
    export_interval_ms: int = 5000,
    max_queue_size: int | None = None,
    turn_timeout_ms: int = DEFAULT_TURN_TIMEOUT_MS,
    span_exporter: SpanExporter | None = None,
    verify_key: bool = True,
) -> bool:
    """Start tracking; returns whether it is on. Never raises (a second call changes nothing and returns True).

    Turns go to AgentSight on the configured wire (``AGENTSIGHT_PROTOCOL``), as each ends. ``span_exporter``
    sends them to any OTel exporter instead (no key needed), batched every ``export_interval_ms`` with up to
    ``max_queue_size`` spans waiting; so does ``AGENTSIGHT_FILE_EXPORTER=<dir>`` with ingest documents written
    there and nothing sent. Otherwise ``max_queue_size`` bounds the delivery queue (default
    ``AGENTSIGHT_MAX_QUEUE_SIZE``, 10,000) and ``export_interval_ms`` is not used: delivery does not wait for a
    timer. ``auto_instrument`` instruments the installed LLM clients (unless
    ``AGENTSIGHT_AUTO_INSTRUMENT=false``); ``verify_key`` checks the key once, in
    the background (``GET /api/me/``); ``turn_timeout_ms`` is the deadline of turns handed to ``wrap()``.
    """
    with _state.lock:
        if _state.tracker is not None:
            logger.debug("agentsight.init() called twice; ignoring")
            return True
        key = (api_key or os.environ.get("AGENTSIGHT_API_KEY") or "").strip() or None
        directory = os.environ.get("AGENTSIGHT_FILE_EXPORTER")
        if span_exporter is None and not directory:
            if not key:
                logger.error("AgentSight disabled: no API key. Pass api_key= or set AGENTSIGHT_API_KEY.")
                return False
            if not API_KEY_PATTERN.match(key):
                logger.error("AgentSight disabled: API key is malformed (expected ags_<32 hex>_<6 hex>).")
                return False
        try:
            made = _make_tracker(key, endpoint, None if auto_instrument else False, export_interval_ms, max_queue_size,
                                 span_exporter, verify_key, directory)
        except Exception as error:  # noqa: BLE001 - init() never raises into the app
            logger.error("AgentSight disabled: initialization failed: %s", error)
            return False
        _state.environment = environment or os.environ.get("AGENTSIGHT_ENVIRONMENT") or None
        _state.turn_timeout_ms = turn_timeout_ms
        _state.api_key, _state.endpoint = key, made.settings.endpoint
        _state.tracker = made
        if not _state.exit_hook:
            _state.exit_hook = True
            atexit.register(shutdown)  # before the process drain: deferred turns end marked ``shutdown``
    return True


def _make_tracker(
    key: str | None,
    endpoint: str | None,
    auto_instrument: bool | None,
    export_interval_ms: int,
    max_queue_size: int | None,
    span_exporter: SpanExporter | None,
    verify_key: bool,
    directory: str | None,
) -> ConversationTracker:
    exporter = span_exporter
    if exporter is None and directory:
        exporter = FileSpanExporter(directory)
        logger.warning("AgentSight: AGENTSIGHT_FILE_EXPORTER is set: ingest documents are written to %s and "
                       "NOT sent", exporter.directory)
    if exporter is not None:
        processor = BatchSpanProcessor(exporter, max_queue_size=max_queue_size or 2048,
                                       schedule_delay_millis=export_interval_ms)
        return ConversationTracker(api_key=key, endpoint=endpoint, auto_instrument=auto_instrument,
                                   verify_key=verify_key, span_processor=processor)
    delivery = DeliverySettings.from_env()
    if max_queue_size is not None:
        delivery = dataclasses.replace(delivery, max_queue_size=max_queue_size)
    return ConversationTracker(api_key=key, endpoint=endpoint, auto_instrument=auto_instrument,
                               verify_key=verify_key, delivery=delivery)


def flush(timeout_ms: int = 10_000) -> bool:
    """Block until the turns ended so far are delivered (or ``timeout_ms`` passes); False when off or not all were.

    Turns still open are not sent: end them first (serverless handlers, scripts).
    """
    current = _state.tracker
    if current is None:
        return False
    try:
        return bool(current.flush(timeout_ms / 1000)["delivered"])
    except Exception as error:  # noqa: BLE001 - tracking never raises into the app
        logger.debug("AgentSight flush failed: %s", error)
        return False


def shutdown() -> None:
    """End turns still handed to ``wrap()`` (incomplete, ``shutdown``), deliver what is queued and stop.

    Also runs at interpreter exit. ``init()`` may be called again afterwards.
    """
    with _state.lock:
        current, _state.tracker = _state.tracker, None
    if current is None:
        return
    watchdog.fire_all()
    try:
        current.shutdown()
    except Exception as error:  # noqa: BLE001
        logger.debug("AgentSight shutdown failed: %s", error)
