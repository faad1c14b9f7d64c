"""LlamaIndex: tool calls and model calls recorded in the current conversation turn.

Two handlers on LlamaIndex's root instrumentation dispatcher (``llama-index-core`` >= 0.12), which
every module's dispatcher reports to, so the app changes nothing. The span handler turns each
``BaseTool.call`` / ``acall`` (a ``FunctionTool``, a tool of an agent or a tool spec) into a ``tool``
action of the turn it started in (the tool's name, its arguments, its output, or its error, also a
``ToolOutput`` with ``is_error``). The event handler counts each model call once in the turn: the
``openai`` client instrumented underneath already counted it, otherwise the handler records it (see
:mod:`agentsight.instrumentation.runs`); a model call made inside another one (a ``CustomLLM``'s
``chat`` running its ``complete``) is the outer call, counted once. Runs outside any turn are not
recorded.

:class:`LlamaIndexInstrumentor` (entry point ``agentsight_llama_index``, part of
``agentsight.instrument()``) adds the handlers; nothing from LlamaIndex is imported before.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Collection, Mapping
from typing import Any

from agentsight.instrumentation.instrumentor import AgentSightInstrumentor
from agentsight.instrumentation.runs import (
    KIND_TOOL,
    MAX_PENDING_RUNS,
    ActionRun,
    ModelResult,
    ModelRun,
    PendingRuns,
    end_action,
    end_model_run,
    never_raises,
    start_action,
    start_model_run,
)

FRAMEWORK = "llama_index"
_never_raises = never_raises(FRAMEWORK)
TOOL_METHODS = frozenset({"call", "acall"})
"""The ``BaseTool`` methods that are a tool call (``__call__`` runs ``call``, which is recorded)."""
LLM_METHODS = frozenset({"chat", "achat", "stream_chat", "astream_chat",
                         "complete", "acomplete", "stream_complete", "astream_complete"})


def method_name(span_id: str | None) -> str:
    """The method of a dispatcher span id (``f"{qualname}-{uuid}"``: ``FunctionTool.call-1f0c...``)."""
    return (span_id or "").split("-", 1)[0].rpartition(".")[2]


def _field(source: Any, name: str) -> Any:
    """``name`` of an object or a dict (a handler before ours may have dumped ``raw`` to a dict)."""
    if isinstance(source, Mapping):
        return source.get(name)
    return getattr(source, name, None)


def provider_name(model_dict: Mapping[str, Any]) -> str:
    """The provider of an LLM from its ``class_name`` (``openai_llm`` -> ``openai``); ``unknown`` for custom ones."""
    name = str(model_dict.get("class_name") or "").lower().removesuffix("_llm")
    return "unknown" if name in ("", "custom", "base_component") else name


def model_result(response: Any) -> ModelResult:
    """Model, response id and token usage of a ``ChatResponse`` / ``CompletionResponse``.

    Read from the provider's own response (``raw``), else the flat counts LlamaIndex puts in
    ``additional_kwargs``.
    """
    raw = _field(response, "raw")
    usage = _field(raw, "usage") or _field(response, "additional_kwargs") or {}
    input_tokens = _field(usage, "prompt_tokens")
    output_tokens = _field(usage, "completion_tokens")
    model, response_id = _field(raw, "model"), _field(raw, "id")
    return ModelResult(
        model=model if isinstance(model, str) else None,
        response_id=response_id if isinstance(response_id, str) else None,
        input_tokens=_field(usage, "input_tokens") if input_tokens is None else input_tokens,
        output_tokens=_field(usage, "output_tokens") if output_tokens is None else output_tokens,
    )


def tool_arguments(bound_args: Any) -> dict[str, Any]:
    """A tool call's arguments: ``call(*args, **kwargs)`` binds ``{"args": (...), "kwargs": {...}}``."""
    arguments = dict(getattr(bound_args, "arguments", None) or {})
    arguments.pop("self", None)
    positional, keywords = arguments.pop("args", ()), arguments.pop("kwargs", None)
    if isinstance(keywords, Mapping):
        arguments.update(keywords)
    if positional:
        arguments["args"] = list(positional)
    return arguments


class Recorder:
    """What both handlers share: pending runs, and which LLM spans run inside which."""

    def __init__(self) -> None:
        self.runs = PendingRuns()
        self._lock = threading.Lock()
        self._llm_parents: OrderedDict[str, str | None] = OrderedDict()

    def llm_span(self, span_id: str, parent_span_id: str | None) -> None:
        """Remember an LLM method span's parent."""
        with self._lock:
            self._llm_parents[span_id] = parent_span_id
            while len(self._llm_parents) > MAX_PENDING_RUNS:
                self._llm_parents.popitem(last=False)

    def span_ended(self, span_id: str) -> None:
        """Forget an ended span."""
        with self._lock:
            self._llm_parents.pop(span_id, None)

    def inside_model_call(self, span_id: str | None) -> bool:
        """True when an enclosing LLM span is a model call already being recorded."""
        with self._lock:
            parent = self._llm_parents.get(span_id or "")
            while parent is not None:
                if parent in self.runs:
                    return True
                parent = self._llm_parents.get(parent)
        return False

    def handle(self, event: Any) -> None:
        """An LLM event: a call starts, ends or fails."""
        name = type(event).__name__
        if name in ("LLMChatStartEvent", "LLMCompletionStartEvent"):
            if not self.inside_model_call(event.span_id):
                model_dict = event.model_dict or {}
                operation = "chat" if name == "LLMChatStartEvent" else "text_completion"
                model = model_dict.get("model")
                self.runs.add(event.span_id, start_model_run(
                    operation, provider_name(model_dict), model if isinstance(model, str) else None))
        elif name in ("LLMChatEndEvent", "LLMCompletionEndEvent"):
            run = self.runs.pop(event.span_id)
            if isinstance(run, ModelRun):
                end_model_run(run, model_result(event.response))

    def tool_started(self, span_id: str, tool: Any, bound_args: Any) -> None:
        """A tool call starts."""
        self.runs.add(span_id, start_action(tool.metadata.get_name(), KIND_TOOL, FRAMEWORK, tool_arguments(bound_args)))

    def ended(self, span_id: str, result: Any = None, error: BaseException | None = None) -> None:
        """A dispatcher span ended (``error``: it raised): its tool call or failed model call is recorded."""
        self.span_ended(span_id)
        run = self.runs.pop(span_id)
        if isinstance(run, ActionRun):
            if error is None and getattr(result, "is_error", False):
                end_action(run, error=str(_field(result, "content")))
            else:
                end_action(run, _field(result, "content") if error is None else None, error)
        elif isinstance(run, ModelRun) and error is not None and not isinstance(error, GeneratorExit):
            end_model_run(run, ModelResult(), error)




def make_handlers(recorder: Recorder) -> tuple[Any, Any]:
    """LlamaIndex's event handler and span handler, both feeding ``recorder``."""
    from llama_index.core.base.llms.base import BaseLLM
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler
    from llama_index.core.instrumentation.span.base import BaseSpan
    from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
    from llama_index.core.tools.types import BaseTool

    class AgentSightEventHandler(BaseEventHandler):
        """Counts model calls in the current turn."""

        @classmethod
        def class_name(cls) -> str:
            return "AgentSightEventHandler"

        @_never_raises
        def handle(self, event: Any, **kwargs: Any) -> None:
            recorder.handle(event)

    class AgentSightSpanHandler(BaseSpanHandler[BaseSpan]):
        """Records tool calls (and failed model calls) in the current turn; keeps no spans of its own."""

        @classmethod
        def class_name(cls) -> str:
            return "AgentSightSpanHandler"

        def new_span(self, id_: str, bound_args: Any, instance: Any = None, parent_span_id: str | None = None,
                     tags: dict[str, Any] | None = None, **kwargs: Any) -> None:
            self._started(id_, bound_args, instance, parent_span_id)

        @_never_raises
        def _started(self, id_: str, bound_args: Any, instance: Any, parent_span_id: str | None) -> None:
            method = method_name(id_)
            if isinstance(instance, BaseLLM) and method in LLM_METHODS:
                recorder.llm_span(id_, parent_span_id)
            elif isinstance(instance, BaseTool) and method in TOOL_METHODS:
                recorder.tool_started(id_, instance, bound_args)

        def prepare_to_exit_span(self, id_: str, bound_args: Any, instance: Any = None, result: Any = None,
                                 **kwargs: Any) -> None:
            _never_raises(recorder.ended)(id_, result)

        def prepare_to_drop_span(self, id_: str, bound_args: Any, instance: Any = None,
                                 err: BaseException | None = None, **kwargs: Any) -> None:
            _never_raises(recorder.ended)(id_, None, err)

    return AgentSightEventHandler(), AgentSightSpanHandler()


class LlamaIndexInstrumentor(AgentSightInstrumentor):
    """Adds AgentSight's handlers to LlamaIndex's root dispatcher (entry point ``agentsight_llama_index``)."""

    _handlers: tuple[Any, Any] | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        """The ``llama-index-core`` versions whose dispatcher is handled here."""
        return ("llama-index-core >= 0.12, < 1",)

    def _instrument(self, **kwargs: Any) -> None:
        from llama_index.core.instrumentation import get_dispatcher

        dispatcher = get_dispatcher()
        event_handler, span_handler = make_handlers(Recorder())
        dispatcher.add_event_handler(event_handler)
        dispatcher.add_span_handler(span_handler)
        LlamaIndexInstrumentor._handlers = (event_handler, span_handler)

    def _uninstrument(self, **kwargs: Any) -> None:
        from llama_index.core.instrumentation import get_dispatcher

        dispatcher = get_dispatcher()
        handlers, LlamaIndexInstrumentor._handlers = LlamaIndexInstrumentor._handlers, None
        if handlers is not None:
            dispatcher.event_handlers = [h for h in dispatcher.event_handlers if h is not handlers[0]]
            dispatcher.span_handlers = [h for h in dispatcher.span_handlers if h is not handlers[1]]
