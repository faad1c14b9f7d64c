"""``AgentSightSpanProcessor``: hands each finished conversation span to an AgentSight exporter at once.

Unlike ``BatchSpanProcessor`` it has no queue of its own to overflow or delay: the exporter's
delivery client is the bounded queue, so nothing waits the batch delay or is dropped here.
Add it to an existing ``TracerProvider`` to have that provider's conversation spans delivered.
"""

from __future__ import annotations

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from agentsight.export.exporter import AgentSightSpanExporter
from agentsight.spans.finished import is_conversation_span


class AgentSightSpanProcessor(SpanProcessor):
    """Exports conversation spans as they end; ignores every other span."""

    def __init__(self, exporter: AgentSightSpanExporter | None = None) -> None:
        self.exporter = exporter or AgentSightSpanExporter()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Nothing to do when a span starts."""

    def on_end(self, span: ReadableSpan) -> None:
        """Export a finished conversation span."""
        if is_conversation_span(span):
            self.exporter.export((span,))

    def shutdown(self) -> None:
        """Deliver what is queued, then stop."""
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Wait for delivery of everything exported so far."""
        return self.exporter.force_flush(timeout_millis)
