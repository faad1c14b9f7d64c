"""Model calls made inside a turn count in that turn: token usage and one action per call.

A span processor, so it counts GenAI spans from any instrumentation (ours or the official
OpenTelemetry ones) that follow the GenAI semantic conventions. A GenAI span whose parent is
itself a GenAI span (a client's own span inside an instrumented call) is not counted again.
Every GenAI span starting in a turn gets the turn's ``agentsight.conversation.id``: the OTLP
bridge then knows it was accounted for where it was made. A call that ends after its turn was sent
(a stream read on after the answer) is sent under the same conversation, in a follow-up turn.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from agentsight.spans import jsonsafe
from agentsight.spans import semconv as sc
from agentsight.spans.finished import iso_timestamp
from agentsight.spans.turn import ConversationTurn, current_turn


def is_model_call(attributes: Mapping[str, Any] | None) -> bool:
    """True for spans following the GenAI conventions (they carry ``gen_ai.operation.name``)."""
    return bool(attributes) and sc.GEN_AI_OPERATION_NAME in attributes  # type: ignore[operator]


class ModelCallAttribution(SpanProcessor):
    """Adds each model call that ends inside a turn to that turn, once.

    ``ignore_scope`` names an instrumentation scope whose spans another instance already counts
    (the tracker's own spans, which are also forwarded to the app's pipeline).
    """

    def __init__(self, ignore_scope: str | None = None) -> None:
        self._ignore_scope = ignore_scope
        self._lock = threading.Lock()
        self._in_turn: dict[int, ConversationTurn] = {}

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Remember the turn of a model call that starts inside one (and not inside another model call)."""
        if not is_model_call(span.attributes):
            return
        scope = span.instrumentation_scope
        if self._ignore_scope is not None and scope is not None and scope.name == self._ignore_scope:
            return
        turn = current_turn(parent_context)
        if turn is None:
            return
        # Marks the call as accounted for by this turn, for an OTLP receiver of it (the bridge).
        span.set_attribute(sc.CONVERSATION_ID, turn.conversation_id)
        if sc.GEN_AI_CONVERSATION_ID not in span.attributes:  # type: ignore[operator]
            span.set_attribute(sc.GEN_AI_CONVERSATION_ID, turn.conversation_id)
        if is_model_call(getattr(trace.get_current_span(parent_context), "attributes", None)):
            return
        with self._lock:
            self._in_turn[span.context.span_id] = turn

    def on_end(self, span: ReadableSpan) -> None:
        """Count a finished model call in its turn, or in a follow-up of it when the turn was sent already."""
        if span.context is None:
            return
        with self._lock:
            turn = self._in_turn.pop(span.context.span_id, None)
        if turn is None:
            return
        if turn.ended:
            send_late_model_call(turn, span)
        else:
            add_model_call(turn, span)

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Nothing is buffered."""
        return True


def add_model_call(turn: ConversationTurn, span: ReadableSpan) -> None:
    """Record a finished model call in ``turn``: its token usage and an action describing it."""
    span_id = format(span.context.span_id, "016x")
    turn.add_usage(model_call_usage(span), span_id)
    turn.add_event(sc.ACTION_EVENT, model_call_action(span, span_id))


def send_late_model_call(turn: ConversationTurn, span: ReadableSpan) -> None:
    """Send a model call that ended after ``turn`` was sent: a follow-up turn of the same conversation.

    The follow-up carries only the call's token usage and action (on the ingest wire, its ``llm`` span)
    and is marked incomplete (``late_model_call``), so it adds no exchange to the transcript.
    """
    sent = getattr(turn.span, "attributes", None) or {}
    attributes: dict[str, Any] = {sc.CONVERSATION_ID: turn.conversation_id, sc.IS_USED: True,
                                  sc.TURN_COMPLETE: False, sc.TURN_INCOMPLETE_REASON: sc.REASON_LATE_MODEL_CALL}
    if sc.ENVIRONMENT in sent:
        attributes[sc.ENVIRONMENT] = sent[sc.ENVIRONMENT]
    follow_up_span = turn.tracer.start_span(sc.CONVERSATION_SPAN, context=trace.set_span_in_context(turn.outer_span),
                                            attributes=attributes, kind=SpanKind.INTERNAL)
    follow_up = ConversationTurn(turn.conversation_id, follow_up_span, turn.tracer, turn.outer_span, False)
    add_model_call(follow_up, span)
    follow_up.end()


def model_call_usage(span: Any) -> dict[str, int]:
    """The token usage a finished GenAI span adds to its turn (embeddings count as embedding tokens)."""
    attributes = span.attributes or {}
    input_tokens = int(attributes.get(sc.GEN_AI_USAGE_INPUT_TOKENS, 0) or 0)
    output_tokens = int(attributes.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS, 0) or 0)
    if attributes.get(sc.GEN_AI_OPERATION_NAME) == sc.OPERATION_EMBEDDINGS:
        return {"embedding_tokens": input_tokens, "total_tokens": input_tokens}
    return {"prompt_tokens": input_tokens, "completion_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens}


_TOKEN_DETAILS: tuple[tuple[str, str], ...] = (
    ("cache_read_tokens", sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
    ("cache_write_tokens", sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS),
    ("reasoning_tokens", sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS),
)
"""(action metadata key, GenAI span attribute) of the counts that are part of the input or output tokens."""


def model_call_action(span: Any, span_id: str) -> dict[str, Any]:
    """Attributes of the action event describing a finished GenAI span (``span_id`` in hex).

    Takes an SDK span or a span received over OTLP: both have ``attributes``, times and ``status``.
    The span id lets a receiver of the turn tell which model calls it already holds. The metadata's
    ``input_tokens`` / ``output_tokens`` are the span's (cached and reasoning tokens included); the
    cache and reasoning counts, and ``streaming``, are added when the span has them.
    """
    attributes = span.attributes or {}
    operation = str(attributes.get(sc.GEN_AI_OPERATION_NAME))
    provider = attributes.get(sc.GEN_AI_PROVIDER_NAME) or attributes.get(sc.GEN_AI_SYSTEM) or "unknown"
    hint = attributes.get(sc.LLM_MODEL_HINT)
    model = attributes.get(sc.GEN_AI_RESPONSE_MODEL) or attributes.get(sc.GEN_AI_REQUEST_MODEL) or hint or "unknown"
    metadata = {
        "provider": provider,
        "operation": operation,
        "request_model": attributes.get(sc.GEN_AI_REQUEST_MODEL),
        "response_model": attributes.get(sc.GEN_AI_RESPONSE_MODEL),
        "response_id": attributes.get(sc.GEN_AI_RESPONSE_ID),
        "finish_reasons": list(attributes.get(sc.GEN_AI_RESPONSE_FINISH_REASONS, ())),
        "input_tokens": int(attributes.get(sc.GEN_AI_USAGE_INPUT_TOKENS, 0) or 0),
        "output_tokens": int(attributes.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS, 0) or 0),
    }
    for key, attribute in _TOKEN_DETAILS:
        count = int(attributes.get(attribute, 0) or 0)
        if count:
            metadata[key] = count
    if attributes.get(sc.LLM_STREAMING):
        metadata["streaming"] = True
    if hint:
        metadata["model_hint"] = hint
    action: dict[str, Any] = {
        sc.ACTION_NAME: f"{operation} {provider}/{model}",
        sc.METADATA: jsonsafe.dumps(metadata),
        sc.MODEL_CALL_SPAN_ID: span_id,
    }
    if span.start_time is not None and span.end_time is not None:
        action[sc.ACTION_STARTED_AT] = iso_timestamp(span.start_time)
        action[sc.ACTION_ENDED_AT] = iso_timestamp(span.end_time)
        action[sc.ACTION_DURATION_MS] = (span.end_time - span.start_time) // 1_000_000
    tools = attributes.get(sc.GEN_AI_TOOL_CALLS)
    if tools:
        action[sc.ACTION_TOOLS_USED] = jsonsafe.dumps({"requested": list(tools)})
    if span.status.status_code is StatusCode.ERROR:
        action[sc.ACTION_ERROR_MSG] = span.status.description or str(attributes.get(sc.ERROR_TYPE, "error"))
    return action
