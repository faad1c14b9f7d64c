"""Where conversation spans go: the tracker's own tracer and its link to the app's OpenTelemetry set-up.

The tracker records turns with a private SDK ``TracerProvider`` (always sampled, no span limits),
so neither the app's sampler nor ``OTEL_SPAN_EVENT_COUNT_LIMIT``/attribute length limits can drop
or truncate AgentSight data, and the app's global provider is never replaced. Each conversation
span is then

- handed to the app's own span processors when the app has an SDK ``TracerProvider`` (set before
  or after the tracker), so the turn also shows in the app's traces and reaches a Collector, unless
  forwarding is off (``AGENTSIGHT_FORWARD_SPANS=false``: message content stays out of the app's
  other backends); and
- delivered directly, unless direct export is off or the app's pipeline already holds an
  AgentSight exporter that can deliver (``OTEL_TRACES_EXPORTER=...,agentsight``), which then delivers it:
  once. An app exporter still waiting for an API key gets the tracker's configuration first.
"""

from __future__ import annotations

import logging
import threading
import weakref

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from agentsight.export.exporter import AgentSightSpanExporter
from agentsight.export.processor import AgentSightSpanProcessor
from agentsight.spans import semconv
from agentsight.spans.attribution import ModelCallAttribution
from agentsight.spans.finished import is_conversation_span

logger = logging.getLogger("agentsight")

UNLIMITED = SpanLimits(
    max_attributes=SpanLimits.UNSET,
    max_events=SpanLimits.UNSET,
    max_links=SpanLimits.UNSET,
    max_span_attributes=SpanLimits.UNSET,
    max_event_attributes=SpanLimits.UNSET,
    max_link_attributes=SpanLimits.UNSET,
    max_attribute_length=SpanLimits.UNSET,
    max_span_attribute_length=SpanLimits.UNSET,
)


def app_tracer_provider() -> TracerProvider | None:
    """The application's global provider when it is an SDK ``TracerProvider``, else ``None``."""
    provider = trace.get_tracer_provider()
    return provider if isinstance(provider, TracerProvider) else None


def app_span_processors(provider: TracerProvider) -> SpanProcessor:
    """The provider's composite span processor.

    The SDK offers no public read access to it; ``_active_span_processor`` has been stable since 1.0.
    """
    return provider._active_span_processor


def _exporter_of(processor: SpanProcessor) -> object:
    if isinstance(processor, AgentSightSpanProcessor):
        return processor.exporter
    # SimpleSpanProcessor keeps ``span_exporter``; BatchSpanProcessor keeps its exporter in its BatchProcessor.
    return getattr(processor, "span_exporter", None) or getattr(
        getattr(processor, "_batch_processor", None), "_exporter", None
    )


def agentsight_processors(provider: TracerProvider) -> list[SpanProcessor]:
    """The processors in ``provider``'s pipeline that feed an AgentSight exporter."""
    return [processor for processor in getattr(app_span_processors(provider), "_span_processors", ())
            if isinstance(_exporter_of(processor), AgentSightSpanExporter)]


def configured_exporters(provider: TracerProvider) -> list[AgentSightSpanExporter]:
    """AgentSight exporters already in ``provider``'s pipeline (e.g. built by ``opentelemetry-instrument``)."""
    return [_exporter_of(processor) for processor in agentsight_processors(provider)]  # type: ignore[misc]


class ConversationSpanRouter(SpanProcessor):
    """The private provider's processor: forwards to the app's pipeline and, when needed, delivers directly."""

    def __init__(self, direct: AgentSightSpanProcessor | None, forward: bool = True, elsewhere: bool = False) -> None:
        self.direct = direct
        self.forward = forward
        self.elsewhere = elsewhere
        """Turns also go to a processor of the tracker's own (``span_processor=``): not "sent nowhere"."""
        self._model_calls = ModelCallAttribution()
        self._warned_nowhere = False

    def app_provider(self) -> TracerProvider | None:
        """The app's SDK provider that conversation spans are forwarded to, if any."""
        return app_tracer_provider() if self.forward else None

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Note model calls starting in a turn; let the app's processors see the span start."""
        self._model_calls.on_start(span, parent_context)
        provider = self.app_provider()
        if provider is not None:
            app_span_processors(provider).on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        """Count a model call in its turn; forward the span to the app's pipeline; deliver a finished turn."""
        self._model_calls.on_end(span)
        provider = self.app_provider()
        if not is_conversation_span(span):  # a model call in a turn: nothing to deliver or lend for
            if provider is not None:
                app_span_processors(provider).on_end(span)
            return
        delivered_by_app = False
        if provider is not None:
            exporters = configured_exporters(provider)
            self._lend_configuration(exporters)
            app_span_processors(provider).on_end(span)
            delivered_by_app = any(exporter.can_deliver for exporter in exporters)
        if self.direct is not None and not delivered_by_app:
            self.direct.on_end(span)
        elif self.direct is None and provider is None and not self.elsewhere and not self._warned_nowhere:
            self._warned_nowhere = True
            logger.warning(
                "AGENTSIGHT_DIRECT_EXPORT is off and there is no OpenTelemetry SDK pipeline to hand conversation "
                "spans to (configure OTLP export to a Collector and the agentsight bridge): they are not sent"
            )

    def lend_configuration(self) -> None:
        """Give this tracker's configuration to AgentSight exporters of the app still waiting for an API key."""
        provider = self.app_provider()
        if provider is not None:
            self._lend_configuration(configured_exporters(provider))

    def _lend_configuration(self, exporters: list[AgentSightSpanExporter]) -> None:
        # Then the app's exporter delivers (through the same shared pipeline), once, rather than holding the
        # turn while this tracker delivers it too.
        if self.direct is not None:
            for exporter in exporters:
                exporter.adopt(self.direct.exporter.settings)

    def shutdown(self) -> None:
        """Deliver what the direct path queued, then stop it."""
        if self.direct is not None:
            self.direct.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Flush the direct path."""
        return self.direct.force_flush(timeout_millis) if self.direct is not None else True


_attributed_providers: weakref.WeakSet[TracerProvider] = weakref.WeakSet()
_attributed_lock = threading.Lock()


def count_app_model_calls() -> None:
    """Have model calls recorded by the app's own provider (other instrumentations) count in turns.

    Adds one :class:`ModelCallAttribution` to the app's SDK provider, once; it ignores the spans the
    tracker itself records (counted already) and forwards.
    """
    provider = app_tracer_provider()
    if provider is None or provider in _attributed_providers:
        return
    with _attributed_lock:
        if provider not in _attributed_providers:
            _attributed_providers.add(provider)
            provider.add_span_processor(ModelCallAttribution(ignore_scope=semconv.INSTRUMENTATION_SCOPE))


def conversation_tracer(router: ConversationSpanRouter) -> tuple[TracerProvider, trace.Tracer]:
    """A private, always-sampling, unlimited provider feeding ``router``, and its tracer."""
    # No exit hook of its own: agentsight.export.lifecycle drains every tracker at once, within one bound.
    provider = TracerProvider(sampler=ALWAYS_ON, resource=Resource.create(), span_limits=UNLIMITED,
                              shutdown_on_exit=False)
    # OTEL_SDK_DISABLED turns off the app's telemetry; the tracker's spans are its data model, not telemetry,
    # and a disabled provider would make every turn a non-recording span that tracks nothing.
    provider._disabled = False
    provider.add_span_processor(router)
    return provider, provider.get_tracer(semconv.INSTRUMENTATION_SCOPE)
