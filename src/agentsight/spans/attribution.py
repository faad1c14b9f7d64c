"""Model calls made inside a turn count in that turn: token usage and one action per provider call.

A span processor, so it counts GenAI spans from any instrumentation (ours, the official OpenTelemetry
ones, OpenLLMetry, a client's own spans) that follow the GenAI semantic conventions: a span with
``gen_ai.operation.name`` is a model call, unless the operation is an agent's or a tool's
(``invoke_agent``, ``create_agent``, ``execute_tool``), which describe work around model calls.
OpenInference's LLM spans (``openinference.span.kind`` = ``LLM``) are model calls too, read through
:func:`genai_attributes` (its ``llm.token_count.*``, ``llm.model_name``, ``llm.provider``).

When several spans describe one provider call, exactly one of them counts. The spans of one call are:

- a model call that starts in a turn, outside any other model call, and
- every model call nested anywhere under it (directly, or under spans in between, such as an HTTP
  client's span or an instrumentation's span that does not follow the GenAI conventions), and
- every model call started side by side with it: in the same turn and the same asyncio task (or thread,
  outside tasks) while it is still open (not yet counted), for the same provider, by an instrumentation
  that has no span in the call yet. A peer that starts its span without making it current wraps the
  same client call, so its span and ours start one after the other in one task, outside each other;
  calls made concurrently run in tasks or threads of their own.

The span that counts is ours (scope ``agentsight``), counted as soon as it ends; without one, the first
started of the spans that report token usage (else the first started), counted once all have ended.

Every model-call span of a call in a turn gets the turn's ``agentsight.conversation.id`` (and
``gen_ai.conversation.id`` unless it names one): the OTLP bridge then knows it was accounted for where it
was made. A call that ends after its turn was sent (a stream read on after the answer) is sent under the
same conversation, in a follow-up turn. All the processors of a process (the tracker's and the one in the
app's provider) share one ledger of the calls in flight, so spans they see apart still group together.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from agentsight.spans import jsonsafe
from agentsight.spans import semconv as sc
from agentsight.spans.finished import iso_timestamp
from agentsight.spans.turn import ConversationTurn, DeferredEvent, current_turn, usage_event_attributes

NOT_MODEL_CALLS = frozenset({"invoke_agent", "create_agent", "execute_tool"})
"""GenAI operations that are not a call to a model (they may contain some)."""


OPENINFERENCE_SPAN_KIND = "openinference.span.kind"
_FROM_OPENINFERENCE: tuple[tuple[str, tuple[str, ...]], ...] = (
    (sc.GEN_AI_PROVIDER_NAME, ("llm.provider", "llm.system")),
    (sc.GEN_AI_REQUEST_MODEL, ("llm.model_name",)),
    (sc.GEN_AI_USAGE_INPUT_TOKENS, ("llm.token_count.prompt",)),
    (sc.GEN_AI_USAGE_OUTPUT_TOKENS, ("llm.token_count.completion",)),
    (sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, ("llm.token_count.prompt_details.cache_read",)),
    (sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, ("llm.token_count.prompt_details.cache_write",)),
    (sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, ("llm.token_count.completion_details.reasoning",)),
)
"""GenAI attribute <- the OpenInference attributes carrying it (the first present wins)."""


def is_model_call(attributes: Mapping[str, Any] | None) -> bool:
    """True for spans of a call to a model: GenAI conventions (``gen_ai.operation.name``) or an OpenInference LLM."""
    if not attributes:
        return False
    operation = attributes.get(sc.GEN_AI_OPERATION_NAME)
    if operation is None:
        return attributes.get(OPENINFERENCE_SPAN_KIND) == "LLM"
    return operation not in NOT_MODEL_CALLS


def genai_attributes(attributes: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A model-call span's attributes under the GenAI names (an OpenInference span's translated, as a chat)."""
    if not attributes or sc.GEN_AI_OPERATION_NAME in attributes or OPENINFERENCE_SPAN_KIND not in attributes:
        return attributes or {}
    found: dict[str, Any] = {sc.GEN_AI_OPERATION_NAME: "chat"}
    for genai, names in _FROM_OPENINFERENCE:
        value = next((attributes[name] for name in names if name in attributes), None)
        if value is not None:
            found[genai] = value
    return found


def _plain(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """``attributes`` as a dict, for many lookups: an SDK span's answer each ``get`` in Python, their copy is a dict."""
    copy = getattr(attributes, "copy", None)
    plain = copy() if copy is not None else None
    return plain if isinstance(plain, dict) else dict(attributes)


def _provider(attributes: Mapping[str, Any]) -> str | None:
    provider = attributes.get(sc.GEN_AI_PROVIDER_NAME) or attributes.get(sc.GEN_AI_SYSTEM)
    return str(provider).lower() if provider else None


def _task_or_thread() -> int:
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running event loop
        task = None
    return id(task) if task is not None else threading.get_ident()


def _rank(span: ReadableSpan) -> tuple[bool, bool, int]:
    """Ours first, then a span reporting token usage, then the first started."""
    scope = span.instrumentation_scope.name if span.instrumentation_scope else ""
    attributes = genai_attributes(span.attributes)
    return scope == sc.INSTRUMENTATION_SCOPE, sc.GEN_AI_USAGE_INPUT_TOKENS in attributes, -(span.start_time or 0)


@dataclass(eq=False)
class _Call:
    """One provider call in a turn: its model-call spans still open, and the best of those ended."""

    turn: ConversationTurn
    started_in: tuple[ConversationTurn, int]
    provider: str | None
    scopes: set[str] = field(default_factory=set)
    open_members: set[int] = field(default_factory=set)
    best: ReadableSpan | None = None
    counted: bool = False


class _Ledger:
    """The calls in flight in this process: shared by every :class:`ModelCallAttribution`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside: dict[int, _Call] = {}
        """Open span id (a call's model-call spans and the spans under them) -> its call."""
        self.side_by_side: dict[tuple[ConversationTurn, int], list[_Call]] = {}
        """(turn, task or thread) -> the calls started there and not counted yet."""

    def join(self, turn: ConversationTurn, provider: str | None, scope: str) -> _Call:
        """The call a model call starting outside any other belongs to: one open beside it, or a new one."""
        where = (turn, _task_or_thread())
        calls = self.side_by_side.setdefault(where, [])
        for call in calls:
            if scope not in call.scopes and (provider is None or call.provider in (None, provider)):
                return call
        call = _Call(turn, where, provider)
        calls.append(call)
        return call

    def counted(self, call: _Call) -> None:
        """Mark ``call`` counted: no span joins it side by side any more."""
        call.counted = True
        calls = self.side_by_side.get(call.started_in, [])
        if call in calls:
            calls.remove(call)
        if not calls:
            self.side_by_side.pop(call.started_in, None)


_LEDGER = _Ledger()


class ModelCallAttribution(SpanProcessor):
    """Adds each provider call that ends inside a turn to that turn, once (the rule: module docstring).

    ``ignore_scope`` names an instrumentation scope whose spans another instance already sees (the
    tracker's own spans, which are also forwarded to the app's pipeline).
    """

    def __init__(self, ignore_scope: str | None = None) -> None:
        self._ignore_scope = ignore_scope
        self._ledger = _LEDGER

    def _ignored(self, span: ReadableSpan) -> bool:
        scope = span.instrumentation_scope
        return self._ignore_scope is not None and scope is not None and scope.name == self._ignore_scope

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Place a starting span: inside a call already in flight, or a model call of a turn."""
        if self._ignored(span):
            return
        parent = span.parent
        ledger = self._ledger
        enclosing = ledger.inside.get(parent.span_id) if parent is not None else None
        attributes = span.attributes
        model_call = is_model_call(attributes)
        if enclosing is None and not model_call:
            return
        span_id = span.context.span_id
        if enclosing is not None:
            turn = enclosing.turn
        else:
            found = current_turn(parent_context)
            if found is None:
                return
            turn = found
        if model_call:
            # Marks the call as accounted for by this turn, for an OTLP receiver of it (the bridge).
            span.set_attribute(sc.CONVERSATION_ID, turn.conversation_id)
            if sc.GEN_AI_CONVERSATION_ID not in attributes:  # type: ignore[operator]
                span.set_attribute(sc.GEN_AI_CONVERSATION_ID, turn.conversation_id)
        scope = span.instrumentation_scope.name if span.instrumentation_scope else ""
        with ledger.lock:
            call = enclosing or ledger.join(turn, _provider(genai_attributes(attributes)), scope)
            ledger.inside[span_id] = call
            if model_call:
                call.scopes.add(scope)
                call.open_members.add(span_id)

    def on_end(self, span: ReadableSpan) -> None:
        """Count a call once its best span is known: in its turn, or in a follow-up when the turn was sent."""
        if span.context is None or self._ignored(span):
            return
        ledger = self._ledger
        span_id = span.context.span_id
        if span_id not in ledger.inside:
            return
        with ledger.lock:
            call = ledger.inside.pop(span_id, None)
            if call is None or span_id not in call.open_members:
                return
            call.open_members.discard(span_id)
            if call.counted:
                return
            rank = _rank(span)
            best = span if call.best is None or rank > _rank(call.best) else call.best
            call.best = best
            if call.open_members and not rank[0]:  # ours counts at once; other spans once all ended
                return
            ledger.counted(call)
        if call.turn.ended:
            send_late_model_call(call.turn, best)
        else:
            add_model_call(call.turn, best)

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Nothing is buffered."""
        return True


def add_model_call(turn: ConversationTurn, span: ReadableSpan) -> None:
    """Record a finished model call in ``turn``: its token usage and an action describing it.

    Both events are built from the span when the turn is read (sent), so the call itself only notes them.
    """
    turn.add_usage_event(DeferredEvent(sc.TOKEN_USAGE_EVENT, partial(_usage_event, span)))
    turn.add_deferred_event(DeferredEvent(sc.ACTION_EVENT, partial(_action_event, span)))


def _usage_event(span: ReadableSpan) -> dict[str, int | str]:
    return usage_event_attributes(model_call_usage(span), format(span.context.span_id, "016x"))


def _action_event(span: ReadableSpan) -> dict[str, Any]:
    return model_call_action(span, format(span.context.span_id, "016x"))


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
    attributes = _plain(genai_attributes(span.attributes))
    input_tokens = _count(attributes.get(sc.GEN_AI_USAGE_INPUT_TOKENS))
    output_tokens = _count(attributes.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS))
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
    attributes = _plain(genai_attributes(span.attributes))
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
        "finish_reasons": _texts(attributes.get(sc.GEN_AI_RESPONSE_FINISH_REASONS)),
        "input_tokens": _count(attributes.get(sc.GEN_AI_USAGE_INPUT_TOKENS)),
        "output_tokens": _count(attributes.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS)),
    }
    for key, attribute in _TOKEN_DETAILS:
        count = _count(attributes.get(attribute))
        if count:
            metadata[key] = count
    if attributes.get(sc.LLM_STREAMING):
        metadata["streaming"] = True
    if hint:
        metadata["model_hint"] = hint
    action: dict[str, Any] = {
        sc.ACTION_NAME: f"{operation} {provider}/{model}",
        sc.METADATA: _dumps(metadata),
        sc.MODEL_CALL_SPAN_ID: span_id,
    }
    if span.start_time is not None and span.end_time is not None:
        action[sc.ACTION_STARTED_AT] = iso_timestamp(span.start_time)
        action[sc.ACTION_ENDED_AT] = iso_timestamp(span.end_time)
        action[sc.ACTION_DURATION_MS] = (span.end_time - span.start_time) // 1_000_000
    tools = attributes.get(sc.GEN_AI_TOOL_CALLS)
    if tools:
        action[sc.ACTION_TOOLS_USED] = _dumps({"requested": _texts(tools)})
    if span.status.status_code is StatusCode.ERROR:
        action[sc.ACTION_ERROR_MSG] = span.status.description or str(attributes.get(sc.ERROR_TYPE, "error"))
    return action


def _dumps(value: dict[str, Any]) -> str:
    """:func:`jsonsafe.dumps` of attribute values: the same text, by plain ``json`` when they are JSON already."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):  # bytes or non-finite numbers (a span received over OTLP)
        return jsonsafe.dumps(value)


def _count(value: Any) -> int:
    """A token count attribute as a number; 0 when absent or not a number (another instrumentation's odd value)."""
    try:
        return int(value or 0)
    except (TypeError, ValueError, OverflowError):
        return 0


def _texts(value: Any) -> list[Any]:
    """A list-valued attribute as a list (one value given alone: a list of it)."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
