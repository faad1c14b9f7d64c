"""``AgentSightSpanExporter``: an OTel ``SpanExporter`` that sends conversation spans to AgentSight.

``export`` keeps only conversation spans (the app's HTTP, database and other spans are ignored),
translates each into payloads and hands them to the background delivery client: it never blocks
on the network and never raises. Constructible with no arguments for ``opentelemetry-instrument``
(``OTEL_TRACES_EXPORTER=otlp,agentsight``), configured from ``AGENTSIGHT_*`` variables.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from agentsight.config import Settings
from agentsight.exceptions import InvalidApiKeyException, NoApiKeyException
from agentsight.export.delivery import DeliveryClient, FlushResult, PendingTurn
from agentsight.export.payloads import TurnPayloads
from agentsight.export.rest import estimate, translate
from agentsight.export.transport import HttpTransport
from agentsight.spans.finished import is_conversation_span
from agentsight.spans.semconv import CONVERSATION_ID

logger = logging.getLogger("agentsight.export.exporter")


class AgentSightSpanExporter(SpanExporter):
    """Translates finished conversation spans into AgentSight REST payloads and delivers them.

    Without a valid API key it logs one error and exports nothing (counted in ``stats``), so a
    missing key never breaks an application's OpenTelemetry start-up.
    """

    def __init__(self, api_key: str | None = None, endpoint: str | None = None, *, settings: Settings | None = None):
        self._settings = settings or Settings.resolve(api_key=api_key, endpoint=endpoint)
        self._delivery: DeliveryClient | None = None
        self._spans_without_delivery = 0
        try:
            self._settings.check_api_key()
        except (NoApiKeyException, InvalidApiKeyException) as error:
            logger.error("AgentSight export disabled: %s", error)
            return
        settings = self._settings
        transport = HttpTransport(settings.endpoint, settings.api_key or "", settings.delivery.timeout)
        self._delivery = DeliveryClient(transport, self._settings.delivery)

    def __repr__(self) -> str:
        return f"AgentSightSpanExporter(endpoint={self._settings.endpoint!r})"

    @property
    def stats(self) -> dict[str, int]:
        """Delivery counters (see :class:`agentsight.export.delivery.DeliveryStats`)."""
        stats = self._delivery.stats if self._delivery else {}
        stats["spans_without_delivery"] = self._spans_without_delivery
        return stats

    def has_room(self, coming_payloads: int = 0) -> bool:
        """Whether the delivery queue can take ``coming_payloads`` more (an OTLP receiver asks before accepting)."""
        return self._delivery is None or self._delivery.has_room(coming_payloads)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Queue the conversation spans among ``spans`` for delivery; other spans are ignored.

        Translation happens later, on a delivery thread: exporting costs the caller microseconds.
        """
        for span in spans:
            if not is_conversation_span(span):
                continue
            if self._delivery is None:
                self._spans_without_delivery += 1
                continue
            payload_count, size = estimate(span)
            conversation_id = str(span.attributes[CONVERSATION_ID])  # type: ignore[index]
            self._delivery.submit(PendingTurn(conversation_id, payload_count, size, partial(_translated, span)))
        return SpanExportResult.SUCCESS

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


def _translated(span: ReadableSpan) -> TurnPayloads:
    turn = translate(span)
    assert turn is not None, "only conversation spans are queued"
    return turn
