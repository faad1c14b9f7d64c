"""A framework's runs (tools, tasks, model calls) recorded in the conversation turn they started in.

Shared by the LangChain and LlamaIndex handlers, which hear of a run's start and end in two
separate callbacks. A tool or task becomes an ``agentsight.action`` event of the turn, built as
``ConversationTracker.track_action`` builds one (the ingest wire's ``tool`` span, a REST action). A
model call counts once: when a GenAI span of the same call already counted in the turn (the
``openai`` client instrumented underneath LangChain's ``ChatOpenAI``), the run only claims it;
otherwise the handler records the call as a GenAI span of its own, which the turn counts as it
counts any model call (token usage, an action, the ingest wire's ``llm`` span).
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import SpanKind, Status, StatusCode

from agentsight.spans import jsonsafe
from agentsight.spans import semconv as sc
from agentsight.spans.finished import iso_timestamp
from agentsight.spans.turn import ConversationTurn, current_turn

logger = logging.getLogger("agentsight.instrumentation")

KIND_TOOL = sc.KIND_TOOL
KIND_TASK = sc.KIND_TASK
MAX_PENDING_RUNS = 1024
"""Runs waiting for their end, per handler; past it the oldest is forgotten (an end that never came)."""


def never_raises(framework: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A decorator: a handler method's failure is logged (debug) and never reaches the app."""

    def decorate(method: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(method)
        def guarded(*args: Any, **kwargs: Any) -> None:
            try:
                method(*args, **kwargs)
            except Exception:
                logger.debug("AgentSight %s handler %s failed", framework, method.__name__, exc_info=True)

        return guarded

    return decorate


@dataclass
class ActionRun:
    """A tool or task run that started inside a turn."""

    turn: ConversationTurn
    name: str
    kind: str
    framework: str
    arguments: Any
    start_ns: int = field(default_factory=time.time_ns)


@dataclass
class ModelRun:
    """A model call a framework announced inside a turn."""

    turn: ConversationTurn
    context: Context
    operation: str
    provider: str
    request_model: str | None
    start_ns: int = field(default_factory=time.time_ns)


@dataclass(frozen=True)
class ModelResult:
    """What a framework tells of a finished model call (any of it may be unknown)."""

    model: str | None = None
    response_id: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


class PendingRuns:
    """Runs between their start and end callbacks, keyed by the framework's run id (bounded, thread-safe).

    Runs can start and end on different threads (executors, batches). A run already pending is not
    started again, so two handlers seeing the same run (one registered globally, one passed by the
    app) record it once.
    """

    def __init__(self, limit: int = MAX_PENDING_RUNS) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._runs: OrderedDict[Hashable, ActionRun | ModelRun] = OrderedDict()

    def add(self, key: Hashable, run: ActionRun | ModelRun | None) -> None:
        """Remember ``run`` (nothing when ``None`` or when ``key`` is pending already)."""
        if run is None:
            return
        with self._lock:
            if key in self._runs:
                return
            self._runs[key] = run
            while len(self._runs) > self._limit:
                self._runs.popitem(last=False)

    def pop(self, key: Hashable) -> ActionRun | ModelRun | None:
        """Forget the run of ``key`` and return it."""
        with self._lock:
            return self._runs.pop(key, None)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._runs


def start_action(name: str, kind: str, framework: str, arguments: Any) -> ActionRun | None:
    """A tool or task run starting now, in the current turn (``None`` outside any turn)."""
    turn = current_turn()
    if turn is None:
        return None
    return ActionRun(turn, name or kind, kind, framework, arguments)


def end_action(run: ActionRun | None, response: Any = None, error: Any = None) -> None:
    """Record a finished tool or task run as an action event of its turn (nothing once the turn was sent).

    ``error`` (an exception or a message) makes it a failed run; otherwise ``response`` is its result.
    """
    if run is None or run.turn.ended:
        return
    end_ns = time.time_ns()
    attributes: dict[str, Any] = {
        sc.ACTION_NAME: run.name,
        sc.ACTION_STARTED_AT: iso_timestamp(run.start_ns),
        sc.ACTION_ENDED_AT: iso_timestamp(end_ns),
        sc.ACTION_DURATION_MS: (end_ns - run.start_ns) // 1_000_000,
        sc.ACTION_KIND: run.kind,
        sc.METADATA: jsonsafe.dumps({"framework": run.framework, "kind": run.kind}),
    }
    if run.arguments is not None:
        arguments = run.arguments if isinstance(run.arguments, Mapping) else {"input": run.arguments}
        attributes[sc.ACTION_TOOLS_USED] = jsonsafe.dumps(arguments)
    if error is not None:
        attributes[sc.ACTION_ERROR_MSG] = error_text(error)
    elif response is not None:
        attributes[sc.ACTION_RESPONSE] = response if isinstance(response, str) else jsonsafe.dumps(response)
    run.turn.add_event(sc.ACTION_EVENT, attributes)


def error_text(error: Any) -> str:
    """An error as the action's ``error_msg``: its message, else its type's name."""
    if isinstance(error, BaseException):
        return str(error) or type(error).__qualname__
    return str(error)


def start_model_run(operation: str, provider: str | None, request_model: str | None) -> ModelRun | None:
    """A model call starting now, in the current turn (``None`` outside any turn or when instrumentation is
    suppressed)."""
    turn = current_turn()
    if turn is None or not is_instrumentation_enabled():
        return None
    return ModelRun(turn, otel_context.get_current(), operation, provider or "unknown", request_model)


_claimed: weakref.WeakKeyDictionary[ConversationTurn, set[str]] = weakref.WeakKeyDictionary()
_claim_lock = threading.Lock()


def end_model_run(run: ModelRun | None, result: ModelResult, error: BaseException | None = None) -> None:
    """Count a finished model call in its turn, once.

    A GenAI span that ended in the turn during the run and is not claimed by another run is this
    call when its response id matches, or (without ids) its token counts, or when the framework
    told neither: the run claims it and records nothing. Otherwise the run records the call itself.
    """
    if run is None or run.turn.ended:
        return
    with _claim_lock:
        claimed = _claimed.setdefault(run.turn, set())
        span_id = _counted_call(run, result, error, claimed)
        if span_id is not None:
            claimed.add(span_id)
            return
    _record_model_call(run, result, error)


def _counted_call(run: ModelRun, result: ModelResult, error: BaseException | None, claimed: set[str]) -> str | None:
    """The hex span id of the model call already counted in the turn for this run, if any."""
    told_usage = result.input_tokens is not None or result.output_tokens is not None
    for event in run.turn.span.events:  # type: ignore[attr-defined]
        attributes = event.attributes or {}
        span_id = attributes.get(sc.MODEL_CALL_SPAN_ID)
        if event.name != sc.ACTION_EVENT or span_id is None or span_id in claimed or event.timestamp < run.start_ns:
            continue
        call = json.loads(str(attributes.get(sc.METADATA) or "{}"))
        if result.response_id and call.get("response_id"):
            if call["response_id"] == result.response_id:
                return str(span_id)
        elif told_usage:
            if (call.get("input_tokens"), call.get("output_tokens")) == (result.input_tokens or 0,
                                                                         result.output_tokens or 0):
                return str(span_id)
        elif error is None or sc.ACTION_ERROR_MSG in attributes:
            return str(span_id)
    return None


def _record_model_call(run: ModelRun, result: ModelResult, error: BaseException | None) -> None:
    """Record the call as a GenAI span, child of what was current when it started (the turn counts it)."""
    model = result.model or run.request_model
    attributes: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: run.operation,
        sc.GEN_AI_PROVIDER_NAME: run.provider,
    }
    optional = {
        sc.GEN_AI_REQUEST_MODEL: run.request_model,
        sc.GEN_AI_RESPONSE_MODEL: result.model,
        sc.GEN_AI_RESPONSE_ID: result.response_id,
        sc.GEN_AI_USAGE_INPUT_TOKENS: result.input_tokens,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: result.output_tokens,
    }
    attributes.update((key, value) for key, value in optional.items() if value is not None)
    span = run.turn.tracer.start_span(
        f"{run.operation} {model}" if model else run.operation, context=run.context, kind=SpanKind.CLIENT,
        attributes=attributes, start_time=run.start_ns,
    )
    if error is not None:
        span.set_attribute(sc.ERROR_TYPE, type(error).__qualname__)
        span.set_status(Status(StatusCode.ERROR, error_text(error)))
    span.end()
