"""Ollama client instrumentation: ``chat`` and ``generate`` (plain and ``stream=True``) and ``embed``.

Wraps ``Client`` / ``AsyncClient`` methods by module path (``ollama._client``). The module-level functions
(``ollama.chat(...)``, ``ollama.generate(...)``, ``ollama.embed(...)``) are the default client's methods bound
when ``ollama`` was imported, so they are bound again, to the wrapped methods, and back on uninstrument;
names imported from ``ollama`` before ``instrument()`` (``from ollama import chat``) keep the old ones.
A streamed call sends its request when iteration starts, so the call's span is not current during it.
``generate`` is a ``text_completion`` (the GenAI conventions' name for a prompt completed without chat roles).
Nothing from ``ollama`` is imported until ``instrument()``: this module loads whether or not the library
is installed.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection, Mapping
from functools import partial
from typing import Any

from opentelemetry import trace

from agentsight.instrumentation.content import OLLAMA_CHAT, Prompt
from agentsight.instrumentation.genai import (
    GenAITracer,
    ModelCall,
    attribute_value,
    field,
    server_attributes,
    start_model_call,
    unwrap_method,
    wrap_method,
)
from agentsight.instrumentation.instrumentor import AgentSightInstrumentor
from agentsight.instrumentation.streams import StreamWrapper
from agentsight.spans import semconv as sc

PROVIDER = "ollama"
MODULE = "ollama._client"
_CHAT = "chat"

# (class, method, operation) of every wrapped surface.
SURFACES: tuple[tuple[str, str, str], ...] = (
    ("Client", "chat", _CHAT),
    ("AsyncClient", "chat", _CHAT),
    ("Client", "generate", sc.OPERATION_TEXT_COMPLETION),
    ("AsyncClient", "generate", sc.OPERATION_TEXT_COMPLETION),
    ("Client", "embed", sc.OPERATION_EMBEDDINGS),
    ("AsyncClient", "embed", sc.OPERATION_EMBEDDINGS),
)
# The module-level functions that are the default client's bound methods.
_MODULE_FUNCTIONS = ("chat", "generate", "embed")
# Request attributes from the ``options`` Ollama takes: attribute -> option.
_OPTIONS = {
    sc.GEN_AI_REQUEST_MAX_TOKENS: "num_predict",
    sc.GEN_AI_REQUEST_TEMPERATURE: "temperature",
    sc.GEN_AI_REQUEST_TOP_P: "top_p",
    sc.GEN_AI_REQUEST_TOP_K: "top_k",
    sc.GEN_AI_REQUEST_SEED: "seed",
    sc.GEN_AI_REQUEST_FREQUENCY_PENALTY: "frequency_penalty",
    sc.GEN_AI_REQUEST_PRESENCE_PENALTY: "presence_penalty",
    sc.GEN_AI_REQUEST_STOP_SEQUENCES: "stop",
}


class OllamaInstrumentor(AgentSightInstrumentor):
    """Instruments ``ollama`` (entry point ``agentsight_ollama``)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """The ``ollama`` versions with typed responses (0.4 on) whose client layout is wrapped here."""
        return ("ollama >= 0.4, < 0.7",)

    def _instrument(self, **kwargs: Any) -> None:
        tracer = GenAITracer(__name__, kwargs)
        for cls, method, operation in SURFACES:
            wrap_method(MODULE, cls, method, partial(_start, tracer, operation), partial(_finish, operation))
        _bind_module_functions()

    def _uninstrument(self, **kwargs: Any) -> None:
        for cls, method, _ in SURFACES:
            unwrap_method(MODULE, cls, method)
        _bind_module_functions()


def _bind_module_functions() -> None:
    """Bind ``ollama.chat`` etc. again to the default client's methods as the class now has them."""
    package = importlib.import_module("ollama")
    client_class = importlib.import_module(MODULE).Client
    for name in _MODULE_FUNCTIONS:
        owner = getattr(getattr(package, name, None), "__self__", None)
        if isinstance(owner, client_class):  # left alone if the app replaced it
            setattr(package, name, getattr(owner, name))


def _start(tracer: trace.Tracer, operation: str, instance: Any, arguments: Mapping[str, Any]) -> ModelCall | None:
    model = arguments.get("model")
    options = arguments.get("options")
    request: dict[str, Any] = dict(server_attributes(instance))
    messages = None
    if operation != sc.OPERATION_EMBEDDINGS:
        request.update({key: attribute_value(field(options, option)) for key, option in _OPTIONS.items()})
        messages = Prompt(OLLAMA_CHAT, arguments) if operation == _CHAT else _prompt_messages(arguments)
    return start_model_call(tracer, operation, PROVIDER, model if isinstance(model, str) else None, request, messages)


def _prompt_messages(arguments: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A ``generate`` call's system text and prompt as chat-shaped input messages (for content capture)."""
    given = (("system", arguments.get("system")), ("user", arguments.get("prompt")))
    return [{"role": role, "content": text} for role, text in given if isinstance(text, str) and text]


def _finish(operation: str, call: ModelCall, result: Any, arguments: Mapping[str, Any]) -> Any:
    if operation != sc.OPERATION_EMBEDDINGS and arguments.get("stream") is True:
        accumulator = _StreamAccumulator(call, operation)
        return StreamWrapper(result, call, accumulator.add, accumulator.record)
    _describe(call, result)
    call.end()
    return result


def _describe(call: ModelCall, response: Any) -> None:
    """Record a chat, generate or embed response (or what a stream's parts added up to)."""
    message = field(response, "message")
    text = field(response, "response")
    if message is None and isinstance(text, str):  # a generate answer: its text as the assistant's message
        message = {"role": "assistant", "content": text}
    done_reason = field(response, "done_reason")
    call.record_response(
        model=field(response, "model"),
        finish_reasons=[done_reason] if isinstance(done_reason, str) and done_reason else [],
        input_tokens=field(response, "prompt_eval_count"),
        output_tokens=field(response, "eval_count"),
        tool_calls=[name for tool_call in field(message, "tool_calls") or []
                    if isinstance(name := field(field(tool_call, "function"), "name"), str)],
        output_messages=None if message is None else [message],
    )


class _StreamAccumulator:
    """Adds up a streamed chat's or generate's parts: the text, the tool calls, and the last part's counts."""

    def __init__(self, call: ModelCall, operation: str) -> None:
        self._call = call
        self._operation = operation
        self._last: Any = None
        self._text: list[str] = []
        self._tool_calls: list[Any] = []

    def add(self, part: Any) -> None:
        """Take what one part adds."""
        self._last = part
        message = field(part, "message")
        content = field(part, "response") if message is None else field(message, "content")
        if isinstance(content, str):
            self._text.append(content)
        self._tool_calls.extend(field(message, "tool_calls") or [])

    def record(self) -> None:
        """Record the whole stream on the span (called once, as it ends)."""
        if self._last is None:
            return
        counts = ("model", "done_reason", "prompt_eval_count", "eval_count")
        whole: dict[str, Any] = {key: field(self._last, key) for key in counts}
        if self._operation == _CHAT:
            whole["message"] = {"role": "assistant", "content": "".join(self._text)}
            if self._tool_calls:
                whole["message"]["tool_calls"] = self._tool_calls
        else:
            whole["response"] = "".join(self._text)
        _describe(self._call, whole)
