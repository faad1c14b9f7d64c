"""One model call as an OTel GenAI span: started, described and ended exactly once.

Shared by every client's wrappers. Inside a conversation turn the span is recorded with the
tracker's own tracer, as a child of the turn, so the call counts in the turn whatever the app's
OpenTelemetry set-up; outside a turn it goes to the instrumentor's tracer provider (the app's).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import _logs, metrics, trace
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.utils import is_instrumentation_enabled, unwrap
from opentelemetry.trace import SpanKind, Status, StatusCode
from wrapt import wrap_function_wrapper

from agentsight.instrumentation import content
from agentsight.instrumentation.content import CAPTURE_CONTENT_ENV, Capture, capture_mode, field
from agentsight.instrumentation.metrics import Instruments
from agentsight.spans import semconv as sc
from agentsight.spans.turn import current_turn

__all__ = ["CAPTURE_CONTENT_ENV", "field"]  # kept here for the clients' modules and the tests

logger = logging.getLogger("agentsight.instrumentation")

_IN_MODEL_CALL = otel_context.create_key("agentsight.in_model_call")
MODEL_HINT = otel_context.create_key("agentsight.model_hint")
"""Context key of the model named by 0.1.x ``model_hint()``: recorded on calls starting under it."""
EVENT_NAME = "gen_ai.client.inference.operation.details"
"""The GenAI event a model call emits when the capture mode includes events."""


def capture_content() -> bool:
    """Whether message content is captured at all (on spans, in events, or both), per
    ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``: ``true`` / ``SPAN_ONLY``, ``EVENT_ONLY`` or
    ``SPAN_AND_EVENT`` (``false``, ``NO_CONTENT`` or unset: none).
    """
    return bool(capture_mode())


class GenAITracer(trace.Tracer):
    """An instrumentor's tracer, with the GenAI metrics and event logger of the same instrumentation.

    Made in ``_instrument(**kwargs)`` from its ``tracer_provider``, ``meter_provider`` and ``logger_provider``
    (each the global one when not given). A model call started with a plain tracer uses the global meter and
    logger providers.
    """

    def __init__(self, name: str, providers: Mapping[str, Any]) -> None:
        self.tracer = trace.get_tracer(name, tracer_provider=providers.get("tracer_provider"))
        self.instruments = Instruments(metrics.get_meter(name, meter_provider=providers.get("meter_provider")))
        self.logger = _logs.get_logger(name, logger_provider=providers.get("logger_provider"))

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        """The wrapped tracer's span."""
        return self.tracer.start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """The wrapped tracer's span, current while the returned context manager is entered."""
        return self.tracer.start_as_current_span(*args, **kwargs)


@functools.cache
def _global_telemetry() -> GenAITracer:
    return GenAITracer(__name__, {})


class ModelCall:
    """A started model call; record what came back, then :meth:`end` (safe to call more than once).

    Ending it records the GenAI client metrics and, when the capture mode includes events, emits the
    ``gen_ai.client.inference.operation.details`` event.
    """

    __slots__ = ("span", "_ended", "_lock", "_telemetry", "_attributes", "_started", "_capture", "_shape",
                 "_content", "_tokens")

    def __init__(
        self,
        span: trace.Span,
        telemetry: GenAITracer | None = None,
        attributes: dict[str, Any] | None = None,
        prompt: Any = None,
    ) -> None:
        self.span = span
        self._ended = False
        self._lock = threading.Lock()
        self._telemetry = telemetry or _global_telemetry()
        self._attributes = {} if attributes is None else attributes  # what metric points and the event carry
        self._started = time.perf_counter()
        self._tokens: tuple[Any, Any] = (None, None)
        self._capture = capture_mode() if prompt is not None else Capture.NONE
        self._shape = prompt.shape if isinstance(prompt, content.Prompt) else None
        self._content: dict[str, Any] = {}
        if self._capture:
            self._keep(lambda: _request_attributes(content.request_content(prompt)))

    def _keep(self, convert: Callable[[], Mapping[str, list[Any]]]) -> None:
        """The content ``convert()`` gives, for the span (as JSON text) and for the event (structured), as the
        capture mode says; content that cannot be read is left out, never raised into the app."""
        try:
            captured = {key: value for key, value in convert().items() if value}
            if Capture.SPAN in self._capture:
                self.span.set_attributes({key: content.dumps(value) for key, value in captured.items()})
        except Exception:
            logger.exception("AgentSight could not capture a model call's content")
            return
        if Capture.EVENT in self._capture:
            self._content.update(captured)

    def record_response(
        self,
        *,
        model: str | None = None,
        response_id: str | None = None,
        finish_reasons: Sequence[str] = (),
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cache_read_tokens: Any = None,
        cache_write_tokens: Any = None,
        reasoning_tokens: Any = None,
        tool_calls: Sequence[str] = (),
        output_messages: Any = None,
    ) -> None:
        """Set the response attributes that are known (``None`` and empty values are skipped).

        ``input_tokens`` counts every input token, cached ones included, and ``output_tokens`` every output
        token, reasoning included (as the GenAI conventions say); the cache and reasoning counts are recorded
        apart too, when the provider reports a positive number. ``output_messages`` are in the client's
        native shape (the request's), captured as the conventions' output messages when content is.
        """
        values = {
            sc.GEN_AI_RESPONSE_MODEL: model,
            sc.GEN_AI_RESPONSE_ID: response_id,
            sc.GEN_AI_RESPONSE_FINISH_REASONS: list(finish_reasons) or None,
            sc.GEN_AI_USAGE_INPUT_TOKENS: input_tokens,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: output_tokens,
            sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: _positive(cache_read_tokens),
            sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: _positive(cache_write_tokens),
            sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: _positive(reasoning_tokens),
            sc.GEN_AI_TOOL_CALLS: list(tool_calls) or None,
        }
        known = {key: value for key, value in values.items() if value is not None}
        self.span.set_attributes(known)
        self._attributes.update(known)
        self._tokens = (input_tokens, output_tokens)
        if output_messages is not None and self._capture:
            self._keep(lambda: {sc.GEN_AI_OUTPUT_MESSAGES: content.output_messages(self._shape, output_messages,
                                                                                   finish_reasons)})

    def fail(self, error: BaseException) -> None:
        """Record a failure (``error.type``, status ERROR) and end the span."""
        with self._lock:
            if self._ended:
                return
            self._attributes[sc.ERROR_TYPE] = type(error).__qualname__
            self.span.set_attribute(sc.ERROR_TYPE, type(error).__qualname__)
            self.span.set_status(Status(StatusCode.ERROR, str(error) or type(error).__qualname__))
        self.end()

    def end(self) -> None:
        """End the span the first time only, after recording the call's metrics and event."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
        try:
            self._telemetry.instruments.record(self._attributes, time.perf_counter() - self._started, *self._tokens)
            if Capture.EVENT in self._capture:
                self._emit_event()
        except Exception:  # metrics and events must never break the app's call
            logger.exception("AgentSight could not record a model call's metrics or event")
        self.span.end()

    def _emit_event(self) -> None:
        """The call's details as the conventions' event: the span's attributes with structured content."""
        span_context = self.span.get_span_context()
        self._telemetry.logger.emit(_logs.LogRecord(
            event_name=EVENT_NAME,
            severity_number=_logs.SeverityNumber.DEBUG,
            trace_id=span_context.trace_id,
            span_id=span_context.span_id,
            trace_flags=span_context.trace_flags,
            attributes={**self._attributes, **self._content},
        ))


def _request_attributes(request: content.RequestContent) -> dict[str, list[Any]]:
    return {sc.GEN_AI_INPUT_MESSAGES: request.messages, sc.GEN_AI_SYSTEM_INSTRUCTIONS: request.system_instructions,
            sc.GEN_AI_TOOL_DEFINITIONS: request.tool_definitions}


def _positive(count: Any) -> int | None:
    """``count`` when it is a positive whole number (a token count worth recording), else ``None``."""
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else None


def start_model_call(
    tracer: trace.Tracer,
    operation: str,
    provider: str,
    request_model: str | None,
    request_attributes: Mapping[str, Any],
    input_messages: Any = None,
) -> ModelCall | None:
    """Start a model call's span, or ``None`` when instrumentation is suppressed or a call is already open.

    ``tracer`` is the instrumentor's (a :class:`GenAITracer` brings its meter and logger); inside a conversation
    turn the tracker's own tracer is used for the span instead. ``input_messages`` is the request's content:
    a :class:`~agentsight.instrumentation.content.Prompt` (its native shape and the call's arguments), or an
    OpenAI-like list of messages; it is converted only when content is captured.
    """
    if not is_instrumentation_enabled() or otel_context.get_value(_IN_MODEL_CALL):
        return None
    turn = current_turn()
    attributes = {
        sc.GEN_AI_OPERATION_NAME: operation,
        sc.GEN_AI_PROVIDER_NAME: provider,
        **{key: value for key, value in request_attributes.items() if value is not None},
    }
    if request_model:
        attributes[sc.GEN_AI_REQUEST_MODEL] = request_model
    hint = otel_context.get_value(MODEL_HINT)
    if hint:
        attributes[sc.LLM_MODEL_HINT] = hint
    name = f"{operation} {request_model}" if request_model else operation
    span = (turn.tracer if turn is not None else tracer).start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
    return ModelCall(span, tracer if isinstance(tracer, GenAITracer) else None, attributes, input_messages)


def server_attributes(resource: Any) -> dict[str, Any]:
    """``server.address`` / ``server.port`` of a Stainless-generated client resource (OpenAI, Anthropic, ...)."""
    base_url = getattr(getattr(resource, "_client", None), "base_url", None)
    host = getattr(base_url, "host", None)
    if not host:
        return {}
    port = getattr(base_url, "port", None) or (443 if getattr(base_url, "scheme", "") == "https" else 80)
    return {sc.SERVER_ADDRESS: host, sc.SERVER_PORT: port}


def attribute_value(value: Any) -> Any:
    """``value`` when it is an attribute value as given (a number, text, a list of text), else ``None``.

    So the clients' ``omit`` / ``NOT_GIVEN`` sentinels and ``None`` set nothing.
    """
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return list(value)
    return None


def is_raw_response(result: Any) -> bool:
    """Stainless clients' ``with_raw_response`` / ``with_streaming_response`` return the HTTP response wrapper."""
    return hasattr(result, "http_response")


Start = Callable[[Any, Mapping[str, Any]], "ModelCall | None"]
Finish = Callable[["ModelCall", Any, Mapping[str, Any]], Any]


def model_call_wrapper(start: Start, finish: Finish, is_async: bool) -> Callable[..., Any]:
    """A wrapt wrapper: ``start(instance, kwargs)`` opens the call, the client runs inside :func:`running`,
    then ``finish(call, result, kwargs)`` describes the result, ends the call (or hands it to a stream
    wrapper) and returns what the caller gets. When ``start`` gives ``None`` the client just runs.
    """
    if is_async:

        async def async_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            call = start(instance, kwargs)
            if call is None:
                return await wrapped(*args, **kwargs)
            with running(call):
                result = await wrapped(*args, **kwargs)
            return finish(call, result, kwargs)

        return async_wrapper

    def sync_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        call = start(instance, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        with running(call):
            result = wrapped(*args, **kwargs)
        return finish(call, result, kwargs)

    return sync_wrapper


_NAMEABLE = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def wrap_method(module: str, cls: str, method: str, start: Start, finish: Finish) -> None:
    """Wrap ``module.cls.method`` (sync or ``async def``) with :func:`model_call_wrapper`.

    Arguments given by position are passed on by name, so ``start`` and ``finish`` see them all
    (``client.chat("llama3.2", messages)``), when every parameter can be named.
    """
    function = getattr(getattr(importlib.import_module(module), cls), method)
    signature = inspect.signature(function)
    nameable = all(parameter.kind in _NAMEABLE for parameter in signature.parameters.values())
    self_name = next(iter(signature.parameters))
    wrapper = model_call_wrapper(start, finish, inspect.iscoroutinefunction(function))

    def by_name(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if args and nameable:
            try:
                kwargs = signature.bind(instance, *args, **kwargs).arguments
            except TypeError:  # the client rejects these arguments itself
                pass
            else:
                del kwargs[self_name]
                args = ()
        return wrapper(wrapped, instance, args, kwargs)

    wrap_function_wrapper(module, f"{cls}.{method}", by_name)


def unwrap_method(module: str, cls: str, method: str) -> None:
    """Undo :func:`wrap_method`."""
    unwrap(getattr(importlib.import_module(module), cls), method)


OperationSurface = tuple[str, str, str, bool]
"""(class, method, GenAI operation, returns a stream) of one wrapped client method."""
OperationStart = Callable[[trace.Tracer, str, Any, Mapping[str, Any]], "ModelCall | None"]
OperationFinish = Callable[[str, bool, "ModelCall", Any, Mapping[str, Any]], Any]


def wrap_operations(module: str, surfaces: Sequence[OperationSurface], tracer: trace.Tracer,
                    start: OperationStart, finish: OperationFinish) -> None:
    """:func:`wrap_method` each surface of ``module``, ``start`` given the tracer and the operation, ``finish``
    the operation and whether the method returns a stream."""
    for cls, method, operation, streams in surfaces:
        wrap_method(module, cls, method, functools.partial(start, tracer, operation),
                    functools.partial(finish, operation, streams))


def unwrap_operations(module: str, surfaces: Sequence[OperationSurface]) -> None:
    """Undo :func:`wrap_operations`."""
    for cls, method, *_ in surfaces:
        unwrap_method(module, cls, method)


def text_list(value: Any) -> list[str] | None:
    """A single text as a one-item list (``stop="END"``), a list of text as it is, else ``None``."""
    return [value] if isinstance(value, str) else attribute_value(value)


@contextmanager
def running(call: ModelCall) -> Iterator[None]:
    """Run the client's request in :func:`calling`; if it raises, the call fails (or just ends, when cancelled)."""
    try:
        with calling(call):
            yield
    except Exception as error:
        call.fail(error)
        raise
    except BaseException:
        call.end()
        raise


@contextmanager
def calling(call: ModelCall) -> Iterator[None]:
    """Run the client's own call with ``call``'s span current and nested instrumented calls silenced.

    Attaches and detaches in the same frame, so never across a generator's suspension.
    """
    ctx = otel_context.set_value(_IN_MODEL_CALL, True, trace.set_span_in_context(call.span))
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)
