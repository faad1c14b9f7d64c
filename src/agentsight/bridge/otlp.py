"""OTLP trace protobufs into plain span objects the translator reads (no SDK objects involved)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from agentsight.spans import semconv as sc


@dataclass(frozen=True)
class ReceivedEvent:
    """A span event as received."""

    name: str
    attributes: dict[str, Any]
    timestamp: int


@dataclass(frozen=True)
class ReceivedSpan:
    """A span as received: what :mod:`agentsight.export.rest` and the bridge read of it."""

    name: str
    attributes: dict[str, Any]
    events: tuple[ReceivedEvent, ...]
    start_time: int
    end_time: int
    trace_id: bytes = b""
    span_id: bytes = b""
    parent_span_id: bytes = b""
    scope: str = ""
    status_code: int = 0
    status_message: str = ""
    links: tuple[Any, ...] = field(default=())
    span_kind: int = 0
    """The SDK's ``SpanKind`` value (OTLP numbers kinds from 1, with 0 unspecified)."""
    flags: int = 0
    scope_version: str | None = None
    resource_attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def context(self) -> SpanContext:
        """The span's ids as an SDK ``SpanContext``."""
        return SpanContext(int.from_bytes(self.trace_id, "big"), int.from_bytes(self.span_id, "big"),
                           is_remote=True, trace_flags=TraceFlags(self.flags & 0xFF))

    @property
    def parent(self) -> SpanContext | None:
        """The parent's ids, or ``None`` for a root span."""
        if not self.parent_span_id:
            return None
        return SpanContext(int.from_bytes(self.trace_id, "big"), int.from_bytes(self.parent_span_id, "big"),
                           is_remote=True)

    @property
    def kind(self) -> SpanKind:
        """The span kind as the SDK models it."""
        return SpanKind(self.span_kind)

    @property
    def resource(self) -> Resource:
        """The resource the span was sent with."""
        return Resource(self.resource_attributes)

    @property
    def instrumentation_scope(self) -> InstrumentationScope:
        """The instrumentation scope the span was sent with."""
        return InstrumentationScope(self.scope, self.scope_version)

    @property
    def status(self) -> Status:
        """The span's status as the SDK models it (OTLP and SDK status codes share their numbers)."""
        code = StatusCode(self.status_code)
        return Status(code, self.status_message or None) if code is StatusCode.ERROR else Status(code)


def decode_request(request: ExportTraceServiceRequest, agentsight_only: bool = False) -> Iterator[ReceivedSpan]:
    """Every span of an export request, in order; with ``agentsight_only``, only conversation and model-call
    spans (by name and attribute key, before decoding: the app's other spans cost almost nothing)."""
    for resource_spans in request.resource_spans:
        resource = decode_attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            scope_version = scope_spans.scope.version or None
            for span in scope_spans.spans:
                if agentsight_only and not _concerns_agentsight(span):
                    continue
                yield ReceivedSpan(
                    name=span.name,
                    attributes=decode_attributes(span.attributes),
                    events=tuple(
                        ReceivedEvent(event.name, decode_attributes(event.attributes), event.time_unix_nano)
                        for event in span.events
                    ),
                    start_time=span.start_time_unix_nano,
                    end_time=span.end_time_unix_nano,
                    trace_id=span.trace_id,
                    span_id=span.span_id,
                    parent_span_id=span.parent_span_id,
                    scope=scope,
                    status_code=span.status.code,
                    status_message=span.status.message,
                    span_kind=max(span.kind - 1, 0),
                    flags=span.flags,
                    scope_version=scope_version,
                    resource_attributes=resource,
                )


def span_count(request: ExportTraceServiceRequest) -> int:
    """How many spans an export request holds."""
    return sum(len(scope_spans.spans) for resource_spans in request.resource_spans
               for scope_spans in resource_spans.scope_spans)


def _concerns_agentsight(span: Span) -> bool:
    """A conversation span, or a span with a GenAI operation name (a model call)."""
    return span.name == sc.CONVERSATION_SPAN or any(item.key == sc.GEN_AI_OPERATION_NAME for item in span.attributes)


def decode_attributes(attributes: Any) -> dict[str, Any]:
    """OTLP ``KeyValue`` list to a dict of Python values (arrays as tuples, as the SDK keeps them)."""
    return {item.key: decode_value(item.value) for item in attributes}


def decode_value(value: AnyValue) -> Any:
    """One OTLP ``AnyValue``."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return tuple(decode_value(item) for item in value.array_value.values)
    if kind == "kvlist_value":
        return {item.key: decode_value(item.value) for item in value.kvlist_value.values}
    return getattr(value, kind)


__all__ = ["ExportTraceServiceRequest", "KeyValue", "ReceivedEvent", "ReceivedSpan", "decode_request"]
