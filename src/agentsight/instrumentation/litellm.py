"""LiteLLM instrumentation: ``completion`` / ``acompletion`` (plain and ``stream=True``) and ``embedding`` /
``aembedding``.

LiteLLM calls each provider itself, through the provider's SDK for some (OpenAI's) and with its own HTTP
client for others (Anthropic's), so its public functions are wrapped: one span per call, whatever route it
takes, retries and fallbacks included. The provider is the one LiteLLM resolves from the model
(``anthropic/claude-...``, ``custom_llm_provider``), named as the GenAI conventions name it; the request model
is the model name the provider is asked for. A provider SDK call LiteLLM makes inside (with the OpenAI SDK we
also instrument) starts under this span and is not recorded a second time: ``acompletion`` runs ``completion``
in a thread with a copy of the context, so that silence follows it there too.

A stream's tokens are those of its usage chunk when the app asks for one
(``stream_options={"include_usage": True}``), else the total LiteLLM puts in its last chunk's hidden
parameters: what the provider reported, or LiteLLM's own count for a provider that reports none.

The functions are wrapped where the app finds them, on the ``litellm`` module; names imported from it before
``instrument()`` (``from litellm import completion``) keep the old ones. Nothing from ``litellm`` is imported
until ``instrument()``: this module loads whether or not the library is installed.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Collection, Mapping
from functools import partial
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from agentsight.instrumentation.content import OPENAI_CHAT, Prompt, streamed_tool_call
from agentsight.instrumentation.genai import (
    GenAITracer,
    ModelCall,
    attribute_value,
    field,
    model_call_wrapper,
    running,
    start_model_call,
    text_list,
)
from agentsight.instrumentation.instrumentor import AgentSightInstrumentor
from agentsight.instrumentation.streams import StreamWrapper
from agentsight.spans import semconv as sc

_CHAT = "chat"
# (function, operation, the function whose signature names its arguments) of every wrapped surface.
SURFACES: tuple[tuple[str, str, str], ...] = (
    ("completion", _CHAT, "completion"),
    ("acompletion", _CHAT, "acompletion"),
    ("embedding", sc.OPERATION_EMBEDDINGS, "embedding"),
    ("aembedding", sc.OPERATION_EMBEDDINGS, "embedding"),  # ``aembedding(*args, **kwargs)`` passes them on
)
# LiteLLM's provider names whose GenAI conventions name differs; the others are the same in both.
PROVIDERS = {
    "mistral": "mistral_ai",
    "azure": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "bedrock": "aws.bedrock",
    "vertex_ai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "watsonx": "ibm.watsonx.ai",
    "xai": "x_ai",
    "text-completion-openai": "openai",
}
_UNRESOLVED = "litellm"  # the provider of a call whose model LiteLLM cannot place (it raises for it)
# Request attributes of a chat call: attribute -> argument.
_CHAT_ARGUMENTS = {
    sc.GEN_AI_REQUEST_TEMPERATURE: "temperature",
    sc.GEN_AI_REQUEST_TOP_P: "top_p",
    sc.GEN_AI_REQUEST_SEED: "seed",
    sc.GEN_AI_REQUEST_FREQUENCY_PENALTY: "frequency_penalty",
    sc.GEN_AI_REQUEST_PRESENCE_PENALTY: "presence_penalty",
    sc.GEN_AI_REQUEST_CHOICE_COUNT: "n",
}


class LiteLLMInstrumentor(AgentSightInstrumentor):
    """Instruments ``litellm`` (entry point ``agentsight_litellm``)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """The ``litellm`` versions whose module functions and stream wrapper are read here."""
        return ("litellm >= 1.60, < 2",)

    def _instrument(self, **kwargs: Any) -> None:
        tracer = GenAITracer(__name__, kwargs)
        litellm = importlib.import_module("litellm")
        for name, operation, named_by in SURFACES:
            function = getattr(litellm, name)
            signature = inspect.signature(getattr(litellm, named_by))
            wrapper = model_call_wrapper(partial(_start, tracer, litellm, operation), partial(_finish, operation),
                                         inspect.iscoroutinefunction(function))
            wrap_function_wrapper(litellm, name, partial(_by_name, signature, wrapper))

    def _uninstrument(self, **kwargs: Any) -> None:
        litellm = importlib.import_module("litellm")
        for name, *_ in SURFACES:
            unwrap(litellm, name)


def _by_name(signature: inspect.Signature, wrapper: Any, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Pass arguments given by position on by name (``completion("openai/gpt-4o", messages)``), so the call's
    start and finish see them all; as they are when they cannot all be named."""
    if args:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:  # LiteLLM rejects these arguments itself
            return wrapper(wrapped, instance, args, kwargs)
        named: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            kind = signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                return wrapper(wrapped, instance, args, kwargs)
            if kind is inspect.Parameter.VAR_KEYWORD:
                named.update(value)
            else:
                named[name] = value
        args, kwargs = (), named
    return wrapper(wrapped, instance, args, kwargs)


def _start(
    tracer: trace.Tracer, litellm: ModuleType, operation: str, instance: Any, arguments: Mapping[str, Any]
) -> ModelCall | None:
    model = arguments.get("model")
    provider, request_model, api_base = _UNRESOLVED, model if isinstance(model, str) else None, None
    try:
        litellm.utils.custom_llm_setup()  # what the call does first: older releases place custom providers after it
        request_model, provider, _, api_base = litellm.get_llm_provider(
            model=model, custom_llm_provider=arguments.get("custom_llm_provider"), api_base=arguments.get("api_base"))
    except Exception:  # noqa: S110 - an unknown model: LiteLLM raises for it in the call, which is recorded
        pass
    request = _server_attributes(arguments.get("api_base") or api_base)
    messages = None
    if operation == _CHAT:
        request.update({key: attribute_value(arguments.get(name)) for key, name in _CHAT_ARGUMENTS.items()})
        request[sc.GEN_AI_REQUEST_MAX_TOKENS] = attribute_value(
            arguments.get("max_tokens") or arguments.get("max_completion_tokens"))
        request[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = text_list(arguments.get("stop"))
        request[sc.LLM_STREAMING] = True if arguments.get("stream") is True else None
        messages = Prompt(OPENAI_CHAT, arguments)  # LiteLLM takes OpenAI's messages and tools
    else:
        request[sc.GEN_AI_REQUEST_ENCODING_FORMATS] = text_list(arguments.get("encoding_format"))
    return start_model_call(tracer, operation, PROVIDERS.get(provider, provider), request_model, request, messages)


def _server_attributes(url: Any) -> dict[str, Any]:
    """``server.address`` / ``server.port`` of the API base the call goes to, when it is known."""
    if not isinstance(url, str):
        return {}
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # not a URL: the call is still recorded
        return {}
    return {sc.SERVER_ADDRESS: parts.hostname, sc.SERVER_PORT: port} if parts.hostname else {}


def _finish(operation: str, call: ModelCall, result: Any, arguments: Mapping[str, Any]) -> Any:
    if inspect.isawaitable(result):  # a sync call told to be async: ``completion(..., acompletion=True)``
        return _finish_when_awaited(operation, call, result, arguments)
    if operation == _CHAT and arguments.get("stream") is True:
        accumulator = _StreamAccumulator(call)
        return StreamWrapper(result, call, accumulator.add, accumulator.record)
    _describe(call, result, operation)
    call.end()
    return result


async def _finish_when_awaited(operation: str, call: ModelCall, awaitable: Any, arguments: Mapping[str, Any]) -> Any:
    """What a sync call told to be async returns: the call stays open until it is awaited."""
    with running(call):
        result = await awaitable
    return _finish(operation, call, result, arguments)


def _describe(call: ModelCall, response: Any, operation: str) -> None:
    """Record a chat completion or embeddings response (or what a stream's chunks added up to)."""
    usage = field(response, "usage")
    if operation == sc.OPERATION_EMBEDDINGS:
        call.record_response(model=field(response, "model"), input_tokens=field(usage, "prompt_tokens"))
        return
    choices = field(response, "choices") or []
    messages = [field(choice, "message") for choice in choices]
    call.record_response(
        model=field(response, "model"),
        response_id=field(response, "id"),
        finish_reasons=[reason for choice in choices if isinstance(reason := field(choice, "finish_reason"), str)],
        tool_calls=[name for message in messages for tool_call in field(message, "tool_calls") or []
                    if isinstance(name := field(field(tool_call, "function"), "name"), str)],
        output_messages=messages,
        **_tokens(usage),
    )


def _tokens(usage: Any) -> dict[str, Any]:
    """The counts in LiteLLM's (OpenAI-shaped) usage; its ``prompt_tokens`` include the cached ones."""
    inputs = field(usage, "prompt_tokens_details")
    return {
        "input_tokens": field(usage, "prompt_tokens"),
        "output_tokens": field(usage, "completion_tokens"),
        "cache_read_tokens": field(inputs, "cached_tokens"),
        "cache_write_tokens": field(usage, "cache_creation_input_tokens") or field(inputs, "cache_creation_tokens"),
        "reasoning_tokens": field(field(usage, "completion_tokens_details"), "reasoning_tokens"),
    }


class _StreamAccumulator:
    """Adds up a stream's chunks (OpenAI-shaped, per choice) into the completion they spell."""

    def __init__(self, call: ModelCall) -> None:
        self._call = call
        self._response: dict[str, Any] = {}
        self._choices: dict[int, dict[str, Any]] = {}
        self._last: Any = None

    def add(self, chunk: Any) -> None:
        """Take what one chunk adds."""
        self._last = chunk
        for key in ("id", "model", "usage"):
            self._response[key] = field(chunk, key) or self._response.get(key)
        for choice in field(chunk, "choices") or []:
            index = field(choice, "index")
            state = self._choices.setdefault(index if isinstance(index, int) else 0,
                                             {"content": [], "tool_calls": [], "finish_reason": None})
            state["finish_reason"] = field(choice, "finish_reason") or state["finish_reason"]
            delta = field(choice, "delta")
            if isinstance(content := field(delta, "content"), str):
                state["content"].append(content)
            for tool_call in field(delta, "tool_calls") or []:  # a named one starts a call, the others go on with it
                function = field(tool_call, "function")
                if field(function, "name"):
                    state["tool_calls"].append((tool_call, []))
                if state["tool_calls"] and isinstance(arguments := field(function, "arguments"), str):
                    state["tool_calls"][-1][1].append(arguments)

    def record(self) -> None:
        """Record the whole stream on the span (called once, as it ends)."""
        if self._last is None:
            return
        hidden = getattr(self._last, "_hidden_params", None)
        usage = self._response["usage"] or (hidden.get("usage") if isinstance(hidden, Mapping) else None)
        choices = []
        for index in sorted(self._choices):
            state = self._choices[index]
            tool_calls = [streamed_tool_call(call, "".join(pieces)) for call, pieces in state["tool_calls"]]
            message = {"role": "assistant", "content": "".join(state["content"]) or None, "tool_calls": tool_calls}
            choices.append({"index": index, "finish_reason": state["finish_reason"], "message": message})
        _describe(self._call, {**self._response, "usage": usage, "choices": choices}, _CHAT)
