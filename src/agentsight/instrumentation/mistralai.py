"""Mistral AI client instrumentation: ``chat``, ``fim`` and ``agents`` (``complete`` / ``stream``) and
``embeddings.create``, sync and async.

Wraps the SDK's ``Chat``, ``Fim``, ``Agents`` and ``Embeddings`` methods by module path: ``mistralai.client.chat`` from
``mistralai`` 2 on, ``mistralai.chat`` before. The ``parse`` helpers go through ``complete`` / ``stream`` and
so are covered once. A FIM call is a ``text_completion``; an agents call is a ``chat`` naming no model
but its ``gen_ai.agent.id``. The SDK's own tracing span (when its telemetry is on) starts inside ours and so is
never counted in a turn a second time. Nothing from ``mistralai`` is imported until ``instrument()``:
this module loads whether or not the library is installed.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace

from agentsight.instrumentation.content import MISTRAL_CHAT, Prompt
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

PROVIDER = "mistral_ai"
_CHAT = "chat"
_PACKAGES = ("mistralai.client", "mistralai")  # where the SDK lives: 2.x and later, 1.x

# Module in the package -> its wrapped surfaces.
SURFACES: dict[str, tuple[OperationSurface, ...]] = {
    module: tuple((cls, method, operation, method.startswith("stream"))
                  for method in ("complete", "complete_async", "stream", "stream_async"))
    for module, cls, operation in (("chat", "Chat", _CHAT), ("fim", "Fim", sc.OPERATION_TEXT_COMPLETION),
                                   ("agents", "Agents", _CHAT))
}
SURFACES["embeddings"] = (("Embeddings", "create", sc.OPERATION_EMBEDDINGS, False),
                          ("Embeddings", "create_async", sc.OPERATION_EMBEDDINGS, False))
# Request attributes of a chat, FIM or agents call: attribute -> argument.
_CHAT_ARGUMENTS = {
    sc.GEN_AI_REQUEST_MAX_TOKENS: "max_tokens",
    sc.GEN_AI_REQUEST_TEMPERATURE: "temperature",
    sc.GEN_AI_REQUEST_TOP_P: "top_p",
    sc.GEN_AI_REQUEST_TOP_K: "top_k",
    sc.GEN_AI_REQUEST_SEED: "random_seed",
    sc.GEN_AI_REQUEST_FREQUENCY_PENALTY: "frequency_penalty",
    sc.GEN_AI_REQUEST_PRESENCE_PENALTY: "presence_penalty",
    sc.GEN_AI_REQUEST_CHOICE_COUNT: "n",
}


class MistralAIInstrumentor(AgentSightInstrumentor):
    """Instruments ``mistralai`` (entry point ``agentsight_mistralai``)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """The ``mistralai`` versions whose ``Chat`` / ``Fim`` / ``Agents`` / ``Embeddings`` layout is wrapped here."""
        return ("mistralai >= 1.2, < 4",)

    def _instrument(self, **kwargs: Any) -> None:
        tracer = GenAITracer(__name__, kwargs)
        package = _package()
        for module, surfaces in SURFACES.items():
            wrap_operations(f"{package}.{module}", surfaces, tracer, _start, _finish)

    def _uninstrument(self, **kwargs: Any) -> None:
        package = _package()
        for module, surfaces in SURFACES.items():
            unwrap_operations(f"{package}.{module}", surfaces)


def _package() -> str:
    """The package the installed SDK's ``chat`` module is in."""
    for package in _PACKAGES[:-1]:
        try:
            importlib.import_module(f"{package}.chat")
        except ModuleNotFoundError as error:
            if error.name not in (package, f"{package}.chat"):  # there, but broken
                raise
            continue
        return package
    return _PACKAGES[-1]


def _start(tracer: trace.Tracer, operation: str, instance: Any, arguments: Mapping[str, Any]) -> ModelCall | None:
    model = arguments.get("model")
    request: dict[str, Any] = _server_attributes(instance, arguments)
    messages = None
    if operation == sc.OPERATION_EMBEDDINGS:
        request[sc.GEN_AI_REQUEST_ENCODING_FORMATS] = text_list(arguments.get("encoding_format"))
    else:
        request.update({key: attribute_value(arguments.get(name)) for key, name in _CHAT_ARGUMENTS.items()})
        request[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = text_list(arguments.get("stop"))
        request[sc.GEN_AI_AGENT_ID] = attribute_value(arguments.get("agent_id"))
        messages = Prompt(MISTRAL_CHAT, arguments) if operation == _CHAT else _prompt_messages(arguments)
    return start_model_call(tracer, operation, PROVIDER, model if isinstance(model, str) else None, request, messages)


def _prompt_messages(arguments: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A FIM call's prompt, and the suffix to fill up to, as the text parts of a user message (for content capture)."""
    texts = [text for text in (arguments.get("prompt"), arguments.get("suffix")) if isinstance(text, str)]
    return [{"role": "user", "content": texts}]


def _server_attributes(instance: Any, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """``server.address`` / ``server.port`` of the URL the call goes to (its ``server_url``, else the SDK's)."""
    url = arguments.get("server_url")
    try:
        if not isinstance(url, str):
            url, _ = instance.sdk_configuration.get_server_details()
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except Exception:  # an SDK whose URL cannot be had: the call is still recorded
        return {}
    return {sc.SERVER_ADDRESS: parts.hostname, sc.SERVER_PORT: port} if parts.hostname else {}


def _finish(operation: str, streams: bool, call: ModelCall, result: Any, arguments: Mapping[str, Any]) -> Any:
    if streams:
        accumulator = _StreamAccumulator(call)
        return StreamWrapper(result, call, accumulator.add, accumulator.record)
    _describe(call, result, operation)
    call.end()
    return result


def _describe(call: ModelCall, response: Any, operation: str) -> None:
    """Record a chat, FIM or agents completion or an embeddings response (or what a stream's chunks added up to)."""
    usage = field(response, "usage")
    if operation == sc.OPERATION_EMBEDDINGS:
        call.record_response(model=field(response, "model"), response_id=field(response, "id"),
                             input_tokens=field(usage, "prompt_tokens"))
        return
    choices = field(response, "choices") or []
    messages = [field(choice, "message") for choice in choices]
    call.record_response(
        model=field(response, "model"),
        response_id=field(response, "id"),
        finish_reasons=[reason for choice in choices if isinstance(reason := field(choice, "finish_reason"), str)],
        input_tokens=field(usage, "prompt_tokens"),
        output_tokens=field(usage, "completion_tokens"),
        tool_calls=_tool_names(tool_call for message in messages for tool_call in field(message, "tool_calls") or []),
        output_messages=messages,
    )


def _tool_names(tool_calls: Any) -> list[str]:
    return [name for tool_call in tool_calls if isinstance(name := field(field(tool_call, "function"), "name"), str)]


class _StreamAccumulator:
    """Adds up a stream's completion events (``event.data`` is the chunk) into the completion they spell."""

    def __init__(self, call: ModelCall) -> None:
        self._call = call
        self._response: dict[str, Any] = {}
        self._choices: dict[int, dict[str, Any]] = {}

    def add(self, event: Any) -> None:
        """Take what one event's chunk adds."""
        chunk = field(event, "data")
        for key in ("id", "model"):
            self._response[key] = self._response.get(key) or field(chunk, key)
        self._response["usage"] = field(chunk, "usage") or self._response.get("usage")
        for choice in field(chunk, "choices") or []:
            index = field(choice, "index")
            state = self._choices.setdefault(index if isinstance(index, int) else 0,
                                             {"text": [], "tool_calls": [], "finish_reason": None})
            state["finish_reason"] = field(choice, "finish_reason") or state["finish_reason"]
            delta = field(choice, "delta")
            state["text"].extend(_texts(field(delta, "content")))
            state["tool_calls"].extend(field(delta, "tool_calls") or [])

    def record(self) -> None:
        """Record the whole stream on the span (called once, as it ends)."""
        choices = []
        for index in sorted(self._choices):
            state = self._choices[index]
            message: dict[str, Any] = {"role": "assistant", "content": "".join(state["text"])}
            if state["tool_calls"]:
                message["tool_calls"] = state["tool_calls"]
            choices.append({"index": index, "finish_reason": state["finish_reason"], "message": message})
        _describe(self._call, {**self._response, "choices": choices}, _CHAT)


def _texts(content: Any) -> list[str]:
    """The text of a delta's content: a string, or the text chunks of a list of content chunks."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [text for chunk in content if isinstance(text := field(chunk, "text"), str)]
    return []
