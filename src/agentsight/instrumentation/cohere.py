"""Cohere client instrumentation: the v2 API's ``chat``, ``chat_stream`` and ``embed``, sync and async.

Wraps ``V2Client`` and ``AsyncV2Client`` (``cohere.ClientV2`` / ``AsyncClientV2`` are built on them, and
``cohere.Client().v2`` is one). Tokens are Cohere's ``usage.tokens`` (what the model read and wrote),
else its ``billed_units``; ``cached_tokens`` are recorded apart as cache reads. Nothing from ``cohere`` is
imported until ``instrument()``: this module loads whether or not the library is installed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace

from agentsight.instrumentation.content import COHERE_CHAT, Prompt, streamed_tool_call
from agentsight.instrumentation.genai import (
    GenAITracer,
    ModelCall,
    OperationSurface,
    attribute_value,
    field,
    start_model_call,
    text_list,
    unwrap_operations,
    wrap_operations,
)
from agentsight.instrumentation.instrumentor import AgentSightInstrumentor
from agentsight.instrumentation.streams import StreamWrapper
from agentsight.spans import semconv as sc

PROVIDER = "cohere"
_CHAT = "chat"
_MODULE = "cohere.v2.client"
# (class, method, operation, returns a stream) of every wrapped surface.
SURFACES: tuple[OperationSurface, ...] = tuple(
    (cls, method, operation, streams)
    for cls in ("V2Client", "AsyncV2Client")
    for method, operation, streams in (
        ("chat", _CHAT, False), ("chat_stream", _CHAT, True), ("embed", sc.OPERATION_EMBEDDINGS, False),
    )
)
# Request attributes of a chat: attribute -> argument.
_CHAT_ARGUMENTS = {
    sc.GEN_AI_REQUEST_MAX_TOKENS: "max_tokens",
    sc.GEN_AI_REQUEST_TEMPERATURE: "temperature",
    sc.GEN_AI_REQUEST_TOP_P: "p",
    sc.GEN_AI_REQUEST_TOP_K: "k",
    sc.GEN_AI_REQUEST_SEED: "seed",
    sc.GEN_AI_REQUEST_FREQUENCY_PENALTY: "frequency_penalty",
    sc.GEN_AI_REQUEST_PRESENCE_PENALTY: "presence_penalty",
}


class CohereInstrumentor(AgentSightInstrumentor):
    """Instruments ``cohere`` (entry point ``agentsight_cohere``)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """The ``cohere`` versions with the v2 clients wrapped here."""
        return ("cohere >= 5.10, < 8",)

    def _instrument(self, **kwargs: Any) -> None:
        wrap_operations(_MODULE, SURFACES, GenAITracer(__name__, kwargs), _start, _finish)

    def _uninstrument(self, **kwargs: Any) -> None:
        unwrap_operations(_MODULE, SURFACES)


def _start(tracer: trace.Tracer, operation: str, instance: Any, arguments: Mapping[str, Any]) -> ModelCall | None:
    request = _server_attributes(instance)
    if operation == _CHAT:
        request.update({key: attribute_value(arguments.get(name)) for key, name in _CHAT_ARGUMENTS.items()})
        request[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = text_list(arguments.get("stop_sequences"))
    else:
        request[sc.GEN_AI_REQUEST_ENCODING_FORMATS] = text_list(arguments.get("embedding_types"))
    model = arguments.get("model")
    prompt = Prompt(COHERE_CHAT, arguments) if operation == _CHAT else None
    return start_model_call(tracer, operation, PROVIDER, model if isinstance(model, str) else None, request, prompt)


def _server_attributes(instance: Any) -> dict[str, Any]:
    """``server.address`` / ``server.port`` of the client's base URL."""
    try:
        parts = urlsplit(instance._client_wrapper.get_base_url())
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except Exception:  # a client whose URL cannot be had: the call is still recorded
        return {}
    return {sc.SERVER_ADDRESS: parts.hostname, sc.SERVER_PORT: port} if parts.hostname else {}


def _finish(operation: str, streams: bool, call: ModelCall, result: Any, arguments: Mapping[str, Any]) -> Any:
    if streams:
        accumulator = _StreamAccumulator(call)
        return StreamWrapper(result, call, accumulator.add, accumulator.record)
    if operation == _CHAT:
        _describe(call, result)
    else:
        meta = field(result, "meta")
        call.record_response(response_id=field(result, "id"), input_tokens=_tokens(meta, "input_tokens"))
    call.end()
    return result


def _describe(call: ModelCall, response: Any) -> None:
    """Record a ``V2ChatResponse`` (or what a stream's events added up to)."""
    usage = field(response, "usage")
    reason = field(response, "finish_reason")
    message = field(response, "message")
    functions = [field(tool_call, "function") for tool_call in field(message, "tool_calls") or []]
    call.record_response(
        response_id=field(response, "id"),
        finish_reasons=[reason.lower()] if isinstance(reason, str) and reason else [],
        input_tokens=_tokens(usage, "input_tokens"),
        output_tokens=_tokens(usage, "output_tokens"),
        cache_read_tokens=_whole(field(usage, "cached_tokens")),
        tool_calls=[name for function in functions if isinstance(name := field(function, "name"), str)],
        output_messages=[message] if message is not None else None,
    )


def _tokens(usage: Any, name: str) -> int | None:
    """A token count of a ``usage`` / ``meta``: its ``tokens``, else its ``billed_units`` (Cohere's are floats)."""
    count = _whole(field(field(usage, "tokens"), name))
    return count if count is not None else _whole(field(field(usage, "billed_units"), name))


def _whole(count: Any) -> int | None:
    return int(count) if isinstance(count, (int, float)) and not isinstance(count, bool) else None


class _StreamAccumulator:
    """Adds up a chat stream's events into the response they spell."""

    def __init__(self, call: ModelCall) -> None:
        self._call = call
        self._response: dict[str, Any] = {}
        self._text: list[str] = []
        self._tool_calls: dict[Any, tuple[Any, list[str]]] = {}  # index -> the call as started, its arguments' pieces

    def add(self, event: Any) -> None:
        """Take what one event adds."""
        kind, delta = field(event, "type"), field(event, "delta")
        message = field(delta, "message")
        if kind == "message-start":
            self._response["id"] = field(event, "id")
        elif kind == "content-delta":
            text = field(field(message, "content"), "text")
            self._text.extend([text] if isinstance(text, str) else [])
        elif kind in ("tool-call-start", "tool-call-delta"):
            tool_call = field(message, "tool_calls")
            _, pieces = self._tool_calls.setdefault(field(event, "index"), (tool_call, []))
            arguments = field(field(tool_call, "function"), "arguments")
            pieces.extend([arguments] if isinstance(arguments, str) else [])
        elif kind == "message-end":
            self._response.update(finish_reason=field(delta, "finish_reason"), usage=field(delta, "usage"))

    def record(self) -> None:
        """Record the whole stream on the span (called once, as it ends)."""
        text = "".join(self._text)
        message: dict[str, Any] = {"role": "assistant", "content": [{"type": "text", "text": text}] if text else []}
        if self._tool_calls:
            calls = self._tool_calls.values()
            message["tool_calls"] = [streamed_tool_call(call, "".join(pieces)) for call, pieces in calls]
        _describe(self._call, {**self._response, "message": message})
