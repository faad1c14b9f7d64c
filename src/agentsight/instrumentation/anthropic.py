"""Anthropic client instrumentation: ``messages`` and ``beta.messages`` ``create`` (plain and ``stream=True``),
``parse``, ``stream()`` and ``count_tokens``.

Wraps the resource methods by module path (``Messages.create`` / ``parse`` / ``stream`` / ``count_tokens`` and
their async twins, in ``anthropic.resources.messages`` and ``anthropic.resources.beta.messages``). A
``count_tokens`` call is a span of its own operation (``count_tokens``) carrying the count it answered, but no
usage: nothing was generated, so it adds no tokens to a turn. The ``stream()`` helper sends its request only
when its manager is entered, so that is where its call starts; the helper's ``MessageStream`` reads the raw
event stream, which is what gets observed, so ``text_stream``, ``get_final_message()`` and ``until_done()``
are all covered. Raw responses (``with_raw_response``, ``with_streaming_response``) are read through
:mod:`agentsight.instrumentation.raw`. The client's own call span
(recent releases have one) starts inside ours and so is never counted in a turn a second time.
Nothing from ``anthropic`` is imported until ``instrument()``: this module loads whether or not the
library is installed.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Collection, Mapping
from functools import partial
from typing import Any

import wrapt
from opentelemetry import trace
from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from agentsight.instrumentation.content import ANTHROPIC_MESSAGES, Prompt
from agentsight.instrumentation.genai import (
    GenAITracer,
    ModelCall,
    attribute_value,
    field,
    is_raw_response,
    model_call_wrapper,
    running,
    server_attributes,
    start_model_call,
)
from agentsight.instrumentation.instrumentor import AgentSightInstrumentor
from agentsight.instrumentation.raw import observe_raw
from agentsight.instrumentation.streams import StreamWrapper
from agentsight.spans import semconv as sc

PROVIDER = "anthropic"
# The cloud platforms' clients (by class name, subclasses too) -> their GenAI provider name.
CLIENT_PROVIDERS = {
    "AnthropicVertex": "gcp.vertex_ai",
    "AsyncAnthropicVertex": "gcp.vertex_ai",
    "AnthropicBedrock": "aws.bedrock",
    "AsyncAnthropicBedrock": "aws.bedrock",
}
OPERATION = "chat"
MODULE = "anthropic.resources.messages"
BETA_MODULE = "anthropic.resources.beta.messages"
MODULES = (MODULE, BETA_MODULE)

# (class, method) of every wrapped surface of each module; ``parse`` is wrapped where the installed release has it.
_CREATE, _PARSE, _STREAM, _COUNT_TOKENS = "create", "parse", "stream", "count_tokens"
SURFACES: tuple[tuple[str, str], ...] = tuple(
    (cls, method) for method in (_CREATE, _PARSE, _STREAM, _COUNT_TOKENS) for cls in ("Messages", "AsyncMessages")
)

_CACHE_INPUT_TOKENS = ("cache_creation_input_tokens", "cache_read_input_tokens")
_USAGE_FIELDS = ("input_tokens", *_CACHE_INPUT_TOKENS, "output_tokens")
_TOOL_USE_BLOCKS = ("tool_use", "server_tool_use", "mcp_tool_use")
# Streamed content deltas: delta type -> (the delta's field, the content block field it adds to).
_DELTA_FIELDS = {
    "text_delta": ("text", "text"),
    "thinking_delta": ("thinking", "thinking"),
    "input_json_delta": ("partial_json", "input"),
}


class AnthropicInstrumentor(AgentSightInstrumentor):
    """Instruments ``anthropic`` (entry point ``agentsight_anthropic``)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """The ``anthropic`` versions whose ``MessageStream`` reads a raw stream it is given (0.43 on)."""
        return ("anthropic >= 0.43, < 3",)

    def _instrument(self, **kwargs: Any) -> None:
        tracer = GenAITracer(__name__, kwargs)
        for name in MODULES:
            module = importlib.import_module(name)
            for cls, method in SURFACES:
                if hasattr(getattr(module, cls), method):
                    wrap_function_wrapper(name, f"{cls}.{method}", _wrapper(tracer, method, cls.startswith("Async")))

    def _uninstrument(self, **kwargs: Any) -> None:
        for name in MODULES:
            module = importlib.import_module(name)
            for cls, method in SURFACES:
                unwrap(getattr(module, cls), method)


def _wrapper(tracer: trace.Tracer, method: str, is_async: bool) -> Callable[..., Any]:
    """A wrapt wrapper for one surface: opens the call, runs the client, describes the response."""
    if method == _STREAM:

        def stream_helper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            return _MessageStreamManager(wrapped(*args, **kwargs),
                                         partial(_start, tracer, instance, kwargs, streaming=True))

        return stream_helper

    describe = _describe_count if method == _COUNT_TOKENS else describe_message

    def finish(call: ModelCall, result: Any, kwargs: Mapping[str, Any]) -> Any:
        streaming = kwargs.get("stream") is True
        if is_raw_response(result):
            return observe_raw(result, call, streaming, describe, _observe)
        if streaming:
            return _observe(result, call)
        describe(call, result)
        call.end()
        return result

    operation = sc.OPERATION_COUNT_TOKENS if method == _COUNT_TOKENS else OPERATION
    return model_call_wrapper(partial(_start, tracer, operation=operation), finish, is_async)


def _start(
    tracer: trace.Tracer, instance: Any, kwargs: Mapping[str, Any], streaming: bool = False,
    operation: str = OPERATION,
) -> ModelCall | None:
    """Open the call's span (``None`` when suppressed), described by the request as the client will send it.

    ``streaming`` marks the ``stream()`` helper's call; ``create(stream=True)`` says so in its arguments.
    """
    extra_body = kwargs.get("extra_body")
    params = {**kwargs, **extra_body} if isinstance(extra_body, Mapping) else kwargs
    model = params.get("model")
    request = {
        sc.LLM_STREAMING: True if streaming or params.get("stream") is True else None,
        sc.GEN_AI_REQUEST_MAX_TOKENS: attribute_value(params.get("max_tokens")),
        sc.GEN_AI_REQUEST_TEMPERATURE: attribute_value(params.get("temperature")),
        sc.GEN_AI_REQUEST_TOP_P: attribute_value(params.get("top_p")),
        sc.GEN_AI_REQUEST_TOP_K: attribute_value(params.get("top_k")),
        sc.GEN_AI_REQUEST_STOP_SEQUENCES: attribute_value(params.get("stop_sequences")),
        **server_attributes(instance),
    }
    return start_model_call(tracer, operation, provider_name(instance), model if isinstance(model, str) else None,
                            request, Prompt(ANTHROPIC_MESSAGES, params))


def provider_name(resource: Any) -> str:
    """The provider the resource's client calls: a cloud platform's (Vertex AI, Bedrock) by its class, else ours."""
    for cls in type(getattr(resource, "_client", None)).__mro__:
        if cls.__name__ in CLIENT_PROVIDERS:
            return CLIENT_PROVIDERS[cls.__name__]
    return PROVIDER



def describe_message(call: ModelCall, message: Any) -> None:
    """Record a message (a ``Message``, its JSON, or what a stream's events added up to) on ``call``; also for
    Anthropic Messages answers that come through another client (Bedrock's ``InvokeModel``)."""
    usage = field(message, "usage")
    input_tokens = field(usage, "input_tokens")
    if isinstance(input_tokens, int):
        input_tokens += sum(field(usage, key) or 0 for key in _CACHE_INPUT_TOKENS)
    stop_reason = field(message, "stop_reason")
    content = field(message, "content") or []
    tools = [field(block, "name") for block in content if field(block, "type") in _TOOL_USE_BLOCKS]
    call.record_response(
        model=field(message, "model"),
        response_id=field(message, "id"),
        finish_reasons=[stop_reason] if stop_reason else [],
        input_tokens=input_tokens if isinstance(input_tokens, int) else None,
        output_tokens=field(usage, "output_tokens"),
        cache_read_tokens=field(usage, "cache_read_input_tokens"),
        cache_write_tokens=field(usage, "cache_creation_input_tokens"),
        tool_calls=[name for name in tools if isinstance(name, str)],
        output_messages=[{"role": "assistant", "content": content}],
    )


def _describe_count(call: ModelCall, counted: Any) -> None:
    """Record what ``count_tokens`` answered (its ``input_tokens``), apart from usage."""
    count = field(counted, "input_tokens")
    if isinstance(count, int):
        call.span.set_attribute(sc.GEN_AI_TOKEN_COUNT, count)


def _observe(stream: Any, call: ModelCall) -> StreamWrapper:
    """``stream`` (raw message events, sync or async) reporting to ``call``, which it ends."""
    accumulator = MessageStreamAccumulator(call)
    return StreamWrapper(stream, call, accumulator.add, accumulator.record)


class MessageStreamAccumulator:
    """Builds the message that a stream's raw events add up to, and records it as the stream ends; also for
    Anthropic Messages streams that come through another client (Bedrock's ``InvokeModelWithResponseStream``)."""

    def __init__(self, call: ModelCall) -> None:
        self._call = call
        self._message: dict[str, Any] = {}
        self._usage: dict[str, int] = {}
        self._blocks: dict[int, dict[str, Any]] = {}
        self._parts: dict[tuple[int, str], list[str]] = {}

    def add(self, event: Any) -> None:
        """Take what one event adds."""
        kind = getattr(event, "type", None)
        if kind == "message_start":
            message = getattr(event, "message", None)
            self._message.update(id=getattr(message, "id", None), model=getattr(message, "model", None))
            self._take_usage(getattr(message, "usage", None))
        elif kind == "content_block_start":
            block = getattr(event, "content_block", None)
            if isinstance(block, dict):  # decoded from a raw response's body
                self._blocks[event.index] = dict(block)
            elif hasattr(block, "model_dump"):
                self._blocks[event.index] = block.model_dump(exclude_none=True)
        elif kind == "content_block_delta":
            self._add_delta(event.index, getattr(event, "delta", None))
        elif kind == "message_delta":
            self._message["stop_reason"] = getattr(getattr(event, "delta", None), "stop_reason", None)
            self._take_usage(getattr(event, "usage", None))

    def _take_usage(self, usage: Any) -> None:
        """Usage counts are cumulative: each one given replaces the one before (never added up)."""
        for key in _USAGE_FIELDS:
            value = getattr(usage, key, None)
            if isinstance(value, int):
                self._usage[key] = value

    def _add_delta(self, index: int, delta: Any) -> None:
        block = self._blocks.get(index)
        source, target = _DELTA_FIELDS.get(getattr(delta, "type", None), (None, None))
        piece = getattr(delta, source, None) if source else None
        if block is None or target is None or not isinstance(piece, str):
            return
        start = block.get(target)
        self._parts.setdefault((index, target), [start] if isinstance(start, str) else []).append(piece)

    def record(self) -> None:
        """Record the message on the span (called once, as the stream ends)."""
        for (index, target), parts in self._parts.items():
            text = "".join(parts)
            self._blocks[index][target] = _json_or_text(text) if target == "input" else text
        content = [self._blocks[index] for index in sorted(self._blocks)]
        describe_message(self._call, {**self._message, "usage": self._usage, "content": content})


def _json_or_text(text: str) -> Any:
    """A tool call's streamed input: the JSON object it spells, or the text when it is cut short."""
    try:
        return json.loads(text)
    except ValueError:
        return text


class _MessageStreamManager(wrapt.ObjectProxy):  # type: ignore[misc]
    """What ``messages.stream()`` returns: entering it sends the request, the call that ``start`` opens.

    The ``MessageStream`` it gives reads its raw event stream through a :class:`StreamWrapper`, so the call
    ends with that stream, however the helper is used (``text_stream``, ``get_final_message()``, ``close()``,
    leaving the ``with`` block, garbage collection).
    """

    def __init__(self, manager: Any, start: Callable[[], ModelCall | None]) -> None:
        super().__init__(manager)
        self._self_start = start

    def __enter__(self) -> Any:
        call = self._self_start()
        if call is None:
            return self.__wrapped__.__enter__()
        with running(call):
            stream = self.__wrapped__.__enter__()
        stream._raw_stream = _observe(stream._raw_stream, call)
        return stream

    def __exit__(self, exc_type: Any, exc: BaseException | None, traceback: Any) -> Any:
        return self.__wrapped__.__exit__(exc_type, exc, traceback)

    async def __aenter__(self) -> Any:
        call = self._self_start()
        if call is None:
            return await self.__wrapped__.__aenter__()
        with running(call):
            stream = await self.__wrapped__.__aenter__()
        stream._raw_stream = _observe(stream._raw_stream, call)
        return stream

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, traceback: Any) -> Any:
        return await self.__wrapped__.__aexit__(exc_type, exc, traceback)
