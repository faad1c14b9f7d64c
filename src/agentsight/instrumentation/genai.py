"""One model call as an OTel GenAI span: started, described and ended exactly once.

Shared by every client's wrappers. Inside a conversation turn the span is recorded with the
tracker's own tracer, as a child of the turn, so the call counts in the turn whatever the app's
OpenTelemetry set-up; outside a turn it goes to the instrumentor's tracer provider (the app's).
"""

from __future__ import annotations

import importlib
import inspect
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled, unwrap
from opentelemetry.trace import SpanKind, Status, StatusCode
from wrapt import wrap_function_wrapper

from agentsight.spans import jsonsafe
from agentsight.spans import semconv as sc
from agentsight.spans.turn import current_turn

_IN_MODEL_CALL = otel_context.create_key("agentsight.in_model_call")
MODEL_HINT = otel_context.create_key("agentsight.model_hint")
"""Context key of the model named by 0.1.x ``model_hint()``: recorded on calls starting under it."""
CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_CAPTURE_VALUES = {"true", "span_only", "span_and_event"}


def capture_content() -> bool:
    """Whether message content goes on spans, per ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``.

    Accepts the official packages' values: ``true`` / ``false``, and ``SPAN_ONLY``, ``SPAN_AND_EVENT``,
    ``EVENT_ONLY``, ``NO_CONTENT`` (content is captured on spans for the first three that include spans).
    """
    return os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() in _CAPTURE_VALUES


class ModelCall:
    """A started model call; record what came back, then :meth:`end` (safe to call more than once)."""

    __slots__ = ("span", "_ended", "_lock")

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self._ended = False
        self._lock = threading.Lock()

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
        apart too, when the provider reports a positive number.
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
        if output_messages is not None and capture_content():
            values[sc.GEN_AI_OUTPUT_MESSAGES] = jsonsafe.dumps(output_messages)
        self.span.set_attributes({key: value for key, value in values.items() if value is not None})

    def fail(self, error: BaseException) -> None:
        """Record a failure (``error.type``, status ERROR) and end the span."""
        with self._lock:
            if self._ended:
                return
            self.span.set_attribute(sc.ERROR_TYPE, type(error).__qualname__)
            self.span.set_status(Status(StatusCode.ERROR, str(error) or type(error).__qualname__))
        self.end()

    def end(self) -> None:
        """End the span the first time only."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
        self.span.end()


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

    ``tracer`` is the instrumentor's; inside a conversation turn the tracker's own tracer is used instead.
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
    if input_messages is not None and capture_content():
        attributes[sc.GEN_AI_INPUT_MESSAGES] = jsonsafe.dumps(input_messages)
    name = f"{operation} {request_model}" if request_model else operation
    span = (turn.tracer if turn is not None else tracer).start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
    return ModelCall(span)


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


def field(value: Any, name: str) -> Any:
    """A field of a response object or of a mapping (``None`` when missing, or when ``value`` is)."""
    return value.get(name) if isinstance(value, Mapping) else getattr(value, name, None)


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
