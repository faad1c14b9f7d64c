"""``AgentSightSpanExporter``: an OTel ``SpanExporter`` that sends conversation spans to AgentSight.

``export`` keeps only conversation spans (the app's HTTP, database and other spans are ignored) and
hands each to the process's delivery pipeline for its configuration (:mod:`agentsight.export.shared`),
which translates it for the configured wire (``ingest``: span batches to ``POST /api/ingest/``; ``rest``:
the 0.0.x endpoints) and sends it: export never blocks on the network and never raises. Constructible
with no arguments for ``opentelemetry-instrument`` (``OTEL_TRACES_EXPORTER=otlp,agentsight``), configured
from ``AGENTSIGHT_*`` variables, also when the app provides them after start-up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from functools import partial

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from agentsight.config import Settings
from agentsight.exceptions import ConfigurationError, InvalidApiKeyException, NoApiKeyException
from agentsight.export import ingest, rest, shared
from agentsight.export.preflight import KeyPreflight
from agentsight.export.results import FlushResult, PendingTurn
from agentsight.spans.finished import SpanLike, is_conversation_span
from agentsight.spans.semconv import CONVERSATION_ID

logger = logging.getLogger("agentsight.export.exporter")

Settled = Callable[[str], None]


class AgentSightSpanExporter(SpanExporter):
    """Translates finished conversation spans for the AgentSight API and delivers them.

    ``protocol`` (else ``AGENTSIGHT_PROTOCOL``, else ``ingest``) picks the wire; any other value raises
    :class:`~agentsight.exceptions.ConfigurationError`. With the ingest wire, the key is checked once in the
    background (``GET /api/me/``). Exporters with the same configuration share one delivery pipeline.

    Without a valid API key it logs one error and never breaks an application's OpenTelemetry start-up.
    When it was given no key (no ``api_key``, no ``settings``: how ``opentelemetry-instrument`` builds it),
    it waits for one: the conversation spans it gets are held (within the delivery queue's limits; past them
    they are dropped, counted and logged) until ``AGENTSIGHT_API_KEY`` appears in the environment (set in
    code, ``load_dotenv()``) or a :class:`~agentsight.ConversationTracker` that delivers lends it its
    configuration (:meth:`adopt`); then it sends them. Given an invalid key, it exports nothing (counted).
    """

    def __init__(
        self,
        api_key: str | None = None,
        endpoint: str | None = None,
        *,
        protocol: str | None = None,
        settings: Settings | None = None,
    ):
        self._arguments = {"api_key": api_key, "endpoint": endpoint, "protocol": protocol}
        self._settings = settings or Settings.resolve(**self._arguments)  # type: ignore[arg-type]
        self._waits = settings is None and api_key is None
        self._lock = threading.Lock()
        self._delivery: shared.SharedDelivery | None = None
        self.key_check: KeyPreflight | None = None
        """The background ``GET /api/me/`` of the ingest wire: ``done`` is set once it answered."""
        self._held: list[tuple[SpanLike, Settled | None]] = []
        self._held_payloads = self._held_bytes = 0
        self._counts = {"spans_without_delivery": 0, "spans_dropped_waiting_for_key": 0}
        self._dropped_after_shutdown = self._dropped_since_flush = 0
        self._shut_down = False
        self._use_wire()
        try:
            self._settings.check_api_key()
        except (NoApiKeyException, InvalidApiKeyException) as error:
            until = " until an API key is configured (conversation spans are held)" if self._waits else ""
            logger.error("AgentSight export to %s disabled%s: %s", self._settings.endpoint, until, error)
            return
        self._connect(self._settings)

    def __repr__(self) -> str:
        return f"AgentSightSpanExporter(endpoint={self._settings.endpoint!r}, protocol={self._settings.protocol!r})"

    @property
    def protocol(self) -> str:
        """The wire this exporter speaks: ``ingest`` or ``rest``."""
        return self._settings.protocol

    @property
    def settings(self) -> Settings:
        """The configuration in use (the API key is not in its ``repr``)."""
        return self._settings

    @property
    def stats(self) -> dict[str, int]:
        """Delivery counters of its pipeline (:class:`~agentsight.export.results.DeliveryStats`) and its own.

        Its own: ``spans_without_delivery`` (no valid key), ``spans_waiting_for_key`` (held now) and
        ``spans_dropped_waiting_for_key``.
        """
        delivery = self._delivery
        stats = delivery.client.stats if delivery is not None else {}
        with self._lock:
            stats.update(self._counts, spans_waiting_for_key=len(self._held))
            if self._dropped_after_shutdown:
                stats["payloads_dropped_after_shutdown"] = (stats.get("payloads_dropped_after_shutdown", 0)
                                                            + self._dropped_after_shutdown)
        return stats

    @property
    def closed(self) -> bool:
        """True once :meth:`shutdown` was called: spans exported from then on are not sent (counted, logged)."""
        delivery = self._delivery
        return self._shut_down or (delivery is not None and delivery.client.closed)

    @property
    def can_deliver(self) -> bool:
        """True when it has a valid configuration and was not shut down: what it is given gets sent."""
        return self._delivery is not None and not self.closed

    def translate(self, span: SpanLike) -> object:
        """The translation of a conversation span on this wire (raises what a malformed span raises)."""
        return self._translate(span)

    def estimate(self, span: SpanLike) -> int:
        """How many payloads (REST requests or ingest spans) a conversation span becomes on this wire."""
        return self._estimate(span)[0]

    def has_room(self, coming_payloads: int = 0) -> bool:
        """Whether the delivery queue can take ``coming_payloads`` more (an OTLP receiver asks before accepting)."""
        delivery = self._delivery
        return delivery is None or delivery.client.has_room(coming_payloads)

    def adopt(self, settings: Settings) -> None:
        """Take ``settings`` (a delivering tracker's) if this exporter is still waiting for an API key."""
        if self._waits and self._delivery is None and not self._shut_down:
            self._connect(settings)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Queue the conversation spans among ``spans`` for delivery; other spans are ignored.

        Translation happens later, on a delivery thread: exporting costs the caller microseconds. After
        :meth:`shutdown` nothing is queued: the spans are counted and logged as dropped, and the result is
        ``FAILURE``.
        """
        for span in spans:
            if is_conversation_span(span):
                self.submit(span)
        return SpanExportResult.FAILURE if self.closed else SpanExportResult.SUCCESS

    def submit(self, span: SpanLike, settled: Settled | None = None) -> bool:
        """Queue one conversation span; ``settled`` gets its outcome once delivery is done with it.

        ``False`` when it was not queued (no delivery, queue full, shut down): ``settled`` is then never called.
        A span held while the exporter waits for its API key counts as queued.
        """
        delivery = self._delivery or self._connect_from_environment()
        if delivery is None:
            return self._hold(span, settled)
        if self._shut_down and not delivery.client.closed:  # the pipeline lives on for the exporters sharing it
            payloads = self._estimate(span)[0]
            with self._lock:
                self._dropped_after_shutdown += payloads
                self._dropped_since_flush += payloads
            return False
        return delivery.client.submit(self._pending(span, settled))

    def flush(self, timeout: float | None = None) -> FlushResult:
        """Block until what was exported is delivered (or ``timeout`` seconds pass); per-item results.

        Spans still held for want of an API key make the result incomplete.
        """
        delivery = self._delivery or self._connect_from_environment()
        with self._lock:
            dropped, self._dropped_since_flush = self._dropped_since_flush, 0
            held = bool(self._held)
        if delivery is None:
            return FlushResult(complete=not held, dropped=dropped)
        result = delivery.client.flush(timeout)
        result.dropped += dropped
        return result

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """OTel's flush: ``True`` when everything exported so far was settled in time."""
        return self.flush(timeout_millis / 1000).complete

    def shutdown(self, timeout_millis: int = 30_000) -> None:
        """Deliver what is queued (for up to ``timeout_millis``), then stop.

        The pipeline itself stops with the last exporter using it; spans still held for want of an API key are
        counted as not sent and logged.
        """
        delivery = self._delivery or self._connect_from_environment()
        with self._lock:
            if self._shut_down:
                return
            self._shut_down = True
            never_sent, self._held = len(self._held), []
            self._counts["spans_without_delivery"] += never_sent
        if never_sent:
            logger.error("AgentSight export to %s never got an API key: %d conversation span(s) were not sent "
                         "(set AGENTSIGHT_API_KEY)", self._settings.endpoint, never_sent)
        if delivery is not None:
            shared.release(delivery, self, timeout_millis / 1000)

    # Internals ---------------------------------------------------------------------------------

    def _use_wire(self) -> None:
        wire = ingest if self._settings.protocol == "ingest" else rest
        self._translate, self._estimate = wire.translate, wire.estimate

    def _pending(self, span: SpanLike, settled: Settled | None) -> PendingTurn:
        payload_count, size = self._estimate(span)
        conversation_id = str(span.attributes[CONVERSATION_ID])  # type: ignore[index]
        return PendingTurn(conversation_id, payload_count, size, partial(self._translate, span), settled)

    def _connect_from_environment(self) -> shared.SharedDelivery | None:
        """While waiting for a key: look in the environment again (it may have been set since)."""
        if not self._waits or self._shut_down:
            return None
        try:
            settings = Settings.resolve(**self._arguments)  # type: ignore[arg-type]
        except ConfigurationError:  # AGENTSIGHT_PROTOCOL set to something else meanwhile: keep waiting
            return None
        return self._connect(settings)

    def _connect(self, settings: Settings) -> shared.SharedDelivery | None:
        """Use the shared pipeline of ``settings`` if its key is valid, and send what was held meanwhile."""
        try:
            settings.check_api_key()
        except (NoApiKeyException, InvalidApiKeyException):
            return None
        with self._lock:
            if self._delivery is None:
                delivery = shared.acquire(settings, self)
                self._settings, self.key_check = settings, delivery.key_check
                self._use_wire()
                held, self._held = self._held, []
                self._held_payloads = self._held_bytes = 0
                if held:
                    logger.info("AgentSight export to %s configured: sending %d conversation span(s) held until now",
                                settings.endpoint, len(held))
                for span, settled in held:  # before any newer span: each conversation stays in order
                    delivery.client.submit(self._pending(span, settled))
                self._delivery = delivery
        return self._delivery

    def _hold(self, span: SpanLike, settled: Settled | None) -> bool:
        """Keep a span until a key arrives (when waiting for one, within the queue limits); else count it."""
        payload_count, size = self._estimate(span)
        limits = self._settings.delivery
        first_drop = False
        with self._lock:
            configured = self._delivery is not None  # meanwhile, by another thread
            waiting = self._waits and not self._shut_down and not configured
            if waiting and (self._held_payloads + payload_count <= limits.max_queue_size
                            and self._held_bytes + size <= limits.max_queue_bytes):
                self._held.append((span, settled))
                self._held_payloads += payload_count
                self._held_bytes += size
                return True
            if waiting:
                self._counts["spans_dropped_waiting_for_key"] += 1
                first_drop = self._counts["spans_dropped_waiting_for_key"] == 1
                self._dropped_since_flush += payload_count
            elif not configured:
                self._counts["spans_without_delivery"] += 1
        if configured:
            return self.submit(span, settled)
        if first_drop:
            logger.error("AgentSight export to %s has no API key yet and holds as much as its queue allows: "
                         "dropping conversation spans (counted in stats)", self._settings.endpoint)
        return False
