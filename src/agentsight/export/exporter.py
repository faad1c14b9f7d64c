"""``AgentSightSpanExporter``: an OTel ``SpanExporter`` that sends conversation spans to AgentSight.

``export`` keeps only conversation spans (the app's HTTP, database and other spans are ignored) and
hands each to the background delivery client, which translates it for the configured wire (``ingest``:
span batches to ``POST /api/ingest/``; ``rest``: the 0.0.x endpoints) and sends it: export never
blocks on the network and never raises. Constructible with no arguments for ``opentelemetry-instrument``
(``OTEL_TRACES_EXPORTER=otlp,agentsight``), configured from ``AGENTSIGHT_*`` variables.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from agentsight.config import DEFAULT_CONCURRENCY, Settings
from agentsight.exceptions import InvalidApiKeyException, NoApiKeyException
from agentsight.export import ingest, rest
from agentsight.export.delivery import DeliveryClient, FlushResult, PendingTurn, Sender
from agentsight.export.preflight import KeyPreflight
from agentsight.export.senders import IngestSender, RestSender
from agentsight.export.transport import HttpTransport
from agentsight.spans.finished import SpanLike, is_conversation_span
from agentsight.spans.semconv import CONVERSATION_ID

logger = logging.getLogger("agentsight.export.exporter")


class AgentSightSpanExporter(SpanExporter):
    """Translates finished conversation spans for the AgentSight API and delivers them.

    ``protocol`` (else ``AGENTSIGHT_PROTOCOL``, else ``ingest``) picks the wire; any other value raises
    :class:`~agentsight.exceptions.ConfigurationError`. Without a valid API key it logs one error and
    exports nothing (counted in ``stats``), so a missing key never breaks an application's OpenTelemetry
    start-up. With the ingest wire, the key is checked once in the background (``GET /api/me/``).
    """

    def __init__(
        self,
        api_key: str | None = None,
        endpoint: str | None = None,
        *,
        protocol: str | None = None,
        settings: Settings | None = None,
    ):
        self._settings = settings or Settings.resolve(api_key=api_key, endpoint=endpoint, protocol=protocol)
        self._delivery: DeliveryClient | None = None
        self.key_check: KeyPreflight | None = None
        """The background ``GET /api/me/`` of the ingest wire: ``done`` is set once it answered."""
        wire = ingest if self._settings.protocol == "ingest" else rest
        self._translate, self._estimate = wire.translate, wire.estimate
        self._spans_without_delivery = 0
        try:
            self._settings.check_api_key()
        except (NoApiKeyException, InvalidApiKeyException) as error:
            logger.error("AgentSight export to %s disabled: %s", self._settings.endpoint, error)
            return
        settings = self._settings
        transport = HttpTransport(settings.endpoint, settings.api_key or "", settings.delivery.timeout)
        rest_sender = RestSender(transport)
        sender: Sender = rest_sender
        if settings.protocol == "ingest":
            preflight = self.key_check = KeyPreflight(transport, settings.endpoint)
            if settings.verify_key:
                preflight.start()
            sender = IngestSender(transport, settings.delivery, preflight, rest_sender)
        concurrency = settings.delivery.max_concurrency or DEFAULT_CONCURRENCY[settings.protocol]
        self._delivery = DeliveryClient(sender, settings.delivery, concurrency, transport.close)

    def __repr__(self) -> str:
        return f"AgentSightSpanExporter(endpoint={self._settings.endpoint!r}, protocol={self._settings.protocol!r})"

    @property
    def protocol(self) -> str:
        """The wire this exporter speaks: ``ingest`` or ``rest``."""
        return self._settings.protocol

    @property
    def stats(self) -> dict[str, int]:
        """Delivery counters (see :class:`agentsight.export.delivery.DeliveryStats`)."""
        stats = self._delivery.stats if self._delivery else {}
        stats["spans_without_delivery"] = self._spans_without_delivery
        return stats

    def translate(self, span: SpanLike) -> object:
        """The translation of a conversation span on this wire (raises what a malformed span raises)."""
        return self._translate(span)

    def estimate(self, span: SpanLike) -> int:
        """How many payloads (REST requests or ingest spans) a conversation span becomes on this wire."""
        return self._estimate(span)[0]

    def has_room(self, coming_payloads: int = 0) -> bool:
        """Whether the delivery queue can take ``coming_payloads`` more (an OTLP receiver asks before accepting)."""
        return self._delivery is None or self._delivery.has_room(coming_payloads)

    @property
    def closed(self) -> bool:
        """True once :meth:`shutdown` was called: spans exported from then on are not sent (counted, logged)."""
        return self._delivery is not None and self._delivery.closed

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

    def submit(self, span: SpanLike, settled: Callable[[str], None] | None = None) -> bool:
        """Queue one conversation span; ``settled`` gets its outcome once delivery is done with it.

        ``False`` when it was not queued (no delivery, queue full, shut down): ``settled`` is then never called.
        """
        if self._delivery is None:
            self._spans_without_delivery += 1
            return False
        payload_count, size = self._estimate(span)
        conversation_id = str(span.attributes[CONVERSATION_ID])  # type: ignore[index]
        turn = PendingTurn(conversation_id, payload_count, size, partial(self._translate, span), settled)
        return self._delivery.submit(turn)

    def flush(self, timeout: float | None = None) -> FlushResult:
        """Block until what was exported is delivered (or ``timeout`` seconds pass); per-item results."""
        if self._delivery is None:
            return FlushResult(complete=True)
        return self._delivery.flush(timeout)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """OTel's flush: ``True`` when everything exported so far was settled in time."""
        return self.flush(timeout_millis / 1000).complete

    def shutdown(self, timeout_millis: int = 30_000) -> None:
        """Deliver what is queued (for up to ``timeout_millis``), then stop."""
        if self._delivery is not None:
            self._delivery.shutdown(timeout_millis / 1000)

