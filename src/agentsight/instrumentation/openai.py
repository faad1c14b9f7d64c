"""OpenAI client instrumentation: chat completions, the Responses API and embeddings.

Wraps the resource methods by module path (``Completions.create`` / ``parse``, ``Responses.create``,
``Embeddings.create`` and their async twins); the ``stream()`` helpers, ``with_raw_response`` and
``with_streaming_response`` go through ``create`` and so are covered once (a raw response's body, however
it is read, through :mod:`agentsight.instrumentation.raw`). Nothing from ``openai`` is imported until
``instrument()``: this module loads whether or not the library is installed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from agentsight.instrumentation.content import OPENAI_CHAT, OPENAI_RESPONSES, Prompt
from agentsight.instrumentation.genai import (
    GenAITracer,
    ModelCall,
    attribute_value,
    field,
    is_raw_response,
    model_call_wrapper,
    server_attributes,
    start_model_call,
    text_list,
)
from agentsight.instrumentation.instrumentor import AgentSightInstrumentor
from agentsight.instrumentation.raw import observe_raw
from agentsight.instrumentation.streams import StreamWrapper
from agentsight.spans import semconv as sc

# Hosts of OpenAI-compatible APIs whose provider name is known (GenAI semantic convention values).
KNOWN_HOSTS = {
    "api.openai.com": "openai",
    "api.groq.com": "groq",
    "api.deepseek.com": "deepseek",
    "api.mistral.ai": "mistral_ai",
    "api.x.ai": "x_ai",
    "api.perplexity.ai": "perplexity",
    "generativelanguage.googleapis.com": "gcp.gemini",
    "openrouter.ai": "openrouter",
    "api.together.xyz": "together_ai",
}
AZURE_PROVIDER = "azure.ai.openai"
_HOST_SUFFIXES = {".openai.azure.com": AZURE_PROVIDER}
_AZURE_CLIENTS = frozenset({"AzureOpenAI", "AsyncAzureOpenAI"})  # openai's Azure clients, whatever their host

# (module, class, method, API family) for every wrapped surface.
_CHAT, _RESPONSES, _EMBEDDINGS = "chat", "responses", "embeddings"
Surface = tuple[str, str, str, str]
SURFACES: tuple[Surface, ...] = (
    ("openai.resources.chat.completions", "Completions", "create", _CHAT),
    ("openai.resources.chat.completions", "AsyncCompletions", "create", _CHAT),
    ("openai.resources.chat.completions", "Completions", "parse", _CHAT),
    ("openai.resources.chat.completions", "AsyncCompletions", "parse", _CHAT),
    ("openai.resources.responses", "Responses", "create", _RESPONSES),
    ("openai.resources.responses", "AsyncResponses", "create", _RESPONSES),
    ("openai.resources.responses", "Responses", "parse", _RESPONSES),
    ("openai.resources.responses", "AsyncResponses", "parse", _RESPONSES),
    ("openai.resources.embeddings", "Embeddings", "create", _EMBEDDINGS),
    ("openai.resources.embeddings", "AsyncEmbeddings", "create", _EMBEDDINGS),
)


def provider_name(resource: Any) -> str:
    """The provider behind the resource's client: ``azure.ai.openai`` for an Azure client (or subclass) on any
    host, else a known host's name from its ``base_url``, else ``openai``."""
    client_classes = {cls.__name__ for cls in type(getattr(resource, "_client", None)).__mro__}
    if client_classes & _AZURE_CLIENTS:
        return AZURE_PROVIDER
    host = server_attributes(resource).get(sc.SERVER_ADDRESS, "")
    if host in KNOWN_HOSTS:
        return KNOWN_HOSTS[host]
    return next((name for suffix, name in _HOST_SUFFIXES.items() if host.endswith(suffix)), "openai")


class OpenAIInstrumentor(AgentSightInstrumentor):
    """Instruments ``openai`` >= 1 (entry point ``agentsight_openai``)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """The ``openai`` versions whose resource layout is wrapped here (``chat.completions.parse`` left
        ``beta`` in 1.92)."""
        return ("openai >= 1.92, < 4",)

    def _instrument(self, **kwargs: Any) -> None:
        wrap_surfaces(GenAITracer(__name__, kwargs), SURFACES, provider_name)

    def _uninstrument(self, **kwargs: Any) -> None:
        unwrap_surfaces(SURFACES)


def wrap_surfaces(tracer: trace.Tracer, surfaces: Collection[Surface], provider: Callable[[Any], str]) -> None:
    """Wrap OpenAI-shaped resource methods (also used for clients generated the same way, e.g. Groq's).

    ``provider`` names the provider from the resource instance (its client's ``base_url``).
    """
    for module, cls, method, api in surfaces:
        wrap_function_wrapper(module, f"{cls}.{method}", _wrapper(tracer, api, cls.startswith("Async"), provider))


def unwrap_surfaces(surfaces: Collection[Surface]) -> None:
    """Undo :func:`wrap_surfaces`."""
    for module, cls, method, _ in surfaces:
        unwrap(getattr(importlib.import_module(module), cls), method)


def _wrapper(tracer: trace.Tracer, api: str, is_async: bool, provider: Callable[[Any], str]) -> Callable[..., Any]:
    """A wrapt wrapper for one surface: opens the call, runs the client, describes the response."""

    def start(instance: Any, kwargs: Mapping[str, Any]) -> ModelCall | None:
        request = {**_request_attributes(kwargs, api), **server_attributes(instance)}
        operation = sc.OPERATION_EMBEDDINGS if api == _EMBEDDINGS else "chat"
        return start_model_call(tracer, operation, provider(instance), kwargs.get("model"), request,
                                _input_messages(kwargs, api))

    def describe(call: ModelCall, response: Any) -> None:
        _describe(call, response, api)

    def observe(stream: Any, call: ModelCall) -> StreamWrapper:
        accumulator = _StreamAccumulator(call, api)
        return StreamWrapper(stream, call, accumulator.add, accumulator.record)

    def finish(call: ModelCall, result: Any, kwargs: Mapping[str, Any]) -> Any:
        streaming = kwargs.get("stream") is True
        if is_raw_response(result):
            return observe_raw(result, call, streaming, describe, observe)
        if streaming:
            return observe(result, call)
        _describe(call, result, api)
        call.end()
        return result

    return model_call_wrapper(start, finish, is_async)


def _request_attributes(kwargs: Mapping[str, Any], api: str) -> dict[str, Any]:
    if api == _EMBEDDINGS:
        return {sc.GEN_AI_REQUEST_ENCODING_FORMATS: text_list(kwargs.get("encoding_format"))}
    max_tokens = next((kwargs[key] for key in ("max_tokens", "max_completion_tokens", "max_output_tokens")
                       if attribute_value(kwargs.get(key)) is not None), None)
    return {
        sc.LLM_STREAMING: True if kwargs.get("stream") is True else None,
        sc.GEN_AI_REQUEST_MAX_TOKENS: max_tokens,
        sc.GEN_AI_REQUEST_TEMPERATURE: attribute_value(kwargs.get("temperature")),
        sc.GEN_AI_REQUEST_TOP_P: attribute_value(kwargs.get("top_p")),
        sc.GEN_AI_REQUEST_FREQUENCY_PENALTY: attribute_value(kwargs.get("frequency_penalty")),
        sc.GEN_AI_REQUEST_PRESENCE_PENALTY: attribute_value(kwargs.get("presence_penalty")),
        sc.GEN_AI_REQUEST_SEED: attribute_value(kwargs.get("seed")),
        sc.GEN_AI_REQUEST_CHOICE_COUNT: attribute_value(kwargs.get("n")),
        sc.GEN_AI_REQUEST_STOP_SEQUENCES: text_list(kwargs.get("stop")),
    }


def _input_messages(kwargs: Mapping[str, Any], api: str) -> Prompt | None:
    if api == _EMBEDDINGS:
        return None
    return Prompt(OPENAI_RESPONSES if api == _RESPONSES else OPENAI_CHAT, kwargs)


def _describe(call: ModelCall, response: Any, api: str) -> None:
    """Record a complete response object (chat completion, Responses API response, embeddings list)."""
    usage = getattr(response, "usage", None)
    if api == _CHAT:
        choices = getattr(response, "choices", None) or []
        messages = [getattr(choice, "message", None) for choice in choices]
        call.record_response(
            model=getattr(response, "model", None),
            response_id=getattr(response, "id", None),
            finish_reasons=[choice.finish_reason for choice in choices if getattr(choice, "finish_reason", None)],
            input_tokens=getattr(usage, "prompt_tokens", None),
            output_tokens=getattr(usage, "completion_tokens", None),
            **_token_details(usage, _CHAT),
            tool_calls=[call_.function.name for message in messages
                        for call_ in (getattr(message, "tool_calls", None) or []) if hasattr(call_, "function")],
            output_messages=messages,
        )
    elif api == _RESPONSES:
        output = getattr(response, "output", None) or []
        call.record_response(
            model=getattr(response, "model", None),
            response_id=getattr(response, "id", None),
            finish_reasons=[response.status] if getattr(response, "status", None) else [],
            input_tokens=getattr(usage, "input_tokens", None),
            output_tokens=getattr(usage, "output_tokens", None),
            **_token_details(usage, _RESPONSES),
            tool_calls=[item.name for item in output if getattr(item, "type", None) == "function_call"],
            output_messages=output,
        )
    else:
        call.record_response(model=getattr(response, "model", None),
                             input_tokens=getattr(usage, "prompt_tokens", None))


def _token_details(usage: Any, api: str) -> dict[str, Any]:
    """The cache and reasoning counts in a chat or Responses API usage (an object or a mapping).

    ``cache_write_tokens`` is not in OpenAI's own usage; some OpenAI-compatible APIs report it there.
    """
    inputs, outputs = ((field(usage, "prompt_tokens_details"), field(usage, "completion_tokens_details"))
                       if api == _CHAT else
                       (field(usage, "input_tokens_details"), field(usage, "output_tokens_details")))
    return {"cache_read_tokens": field(inputs, "cached_tokens"),
            "cache_write_tokens": field(inputs, "cache_write_tokens"),
            "reasoning_tokens": field(outputs, "reasoning_tokens")}


class _Choice:
    """What a chat stream's chunks say about one of its choices (``n`` > 1 streams several, interleaved)."""

    __slots__ = ("finish_reason", "text", "tools")

    def __init__(self) -> None:
        self.finish_reason: str | None = None
        self.text: list[str] = []
        self.tools: list[str] = []


class _StreamAccumulator:
    """Adds up a stream's chunks (chat completion chunks, per choice, or Responses API events) for its span."""

    def __init__(self, call: ModelCall, api: str) -> None:
        self._call = call
        self._api = api
        self._model: str | None = None
        self._id: str | None = None
        self._choices: dict[int, _Choice] = {}
        self._usage: Any = None
        self._last: Any = None
        self._completed: Any = None

    def add(self, chunk: Any) -> None:
        """Take what one chunk adds."""
        if self._api == _RESPONSES:
            if getattr(chunk, "type", None) in ("response.completed", "response.incomplete", "response.failed"):
                self._completed = chunk.response
            return
        self._model = self._model or getattr(chunk, "model", None)
        self._id = self._id or getattr(chunk, "id", None)
        self._usage = getattr(chunk, "usage", None) or self._usage
        self._last = chunk
        for choice in getattr(chunk, "choices", None) or []:
            index = choice.index if isinstance(choice.index, int) else 0
            state = self._choices.get(index)
            if state is None:
                state = self._choices[index] = _Choice()
            if choice.finish_reason:
                state.finish_reason = choice.finish_reason
            delta = choice.delta
            if delta is None:
                continue
            if delta.content:
                state.text.append(delta.content)
            for tool_call in delta.tool_calls or []:
                if tool_call.function is not None and tool_call.function.name:
                    state.tools.append(tool_call.function.name)

    def record(self) -> None:
        """Record the whole stream on the span (called once, as it ends)."""
        if self._api == _RESPONSES:
            if self._completed is not None:
                _describe(self._call, self._completed, _RESPONSES)
            return
        # OpenAI sends a stream's usage in the chunk asked for with include_usage; Groq, unasked, in the last
        # chunk's ``x_groq`` (read once here: an unknown attribute of a pydantic chunk is slow to look up).
        usage = self._usage or field(field(self._last, "x_groq"), "usage")
        choices = [self._choices[index] for index in sorted(self._choices)]
        self._call.record_response(
            model=self._model,
            response_id=self._id,
            finish_reasons=[choice.finish_reason for choice in choices if choice.finish_reason],
            input_tokens=getattr(usage, "prompt_tokens", None),
            output_tokens=getattr(usage, "completion_tokens", None),
            **_token_details(usage, _CHAT),
            tool_calls=[name for choice in choices for name in choice.tools],
            output_messages=[{"role": "assistant", "content": "".join(choice.text)} for choice in choices],
        )
