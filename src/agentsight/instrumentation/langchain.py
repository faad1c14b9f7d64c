"""LangChain: tools, chains and model calls of a run recorded in the current conversation turn.

``AgentSightCallbackHandler`` is a LangChain callback handler (``langchain-core`` >= 0.3). Each tool
run becomes a ``tool`` action of the turn the run started in (its name, arguments, result, or its
error, also a ``ToolMessage`` with ``status="error"``); the outermost chain of a run (an agent, a graph,
the chain the app invoked) becomes a ``task`` action (nested chain steps are not recorded). A model
call counts once in the turn: the ``openai`` client instrumented underneath ``ChatOpenAI`` already
counted it, otherwise the handler records it (see :mod:`agentsight.instrumentation.runs`). Runs
outside any turn are not recorded.

:class:`LangChainInstrumentor` (entry point ``agentsight_langchain``, part of
``agentsight.instrument()``) registers the handler with every LangChain run of the process, in
every thread, so the app passes no ``callbacks=``; a handler passed explicitly as well records
nothing twice. Nothing from LangChain is imported until the handler class is first used.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from typing import Any

from agentsight.instrumentation.instrumentor import AgentSightInstrumentor
from agentsight.instrumentation.runs import (
    KIND_TASK,
    KIND_TOOL,
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

FRAMEWORK = "langchain"
_pending = PendingRuns()
"""Runs of every handler instance: a run two handlers see is recorded once."""

_never_raises = never_raises(FRAMEWORK)


def _text(value: Any) -> Any:
    """What a run returned, as the action's response: a message's content, an agent's ``output``, else as is."""
    content = getattr(value, "content", None)
    if content is not None:
        return content
    if isinstance(value, Mapping) and "output" in value:
        return value["output"]
    return value


def _run_name(serialized: Mapping[str, Any] | None, kwargs: Mapping[str, Any], default: str) -> str:
    """The run's name: ``name`` given to the callback, else the serialized one, else its class."""
    serialized = serialized or {}
    ids = serialized.get("id") or ()
    return str(kwargs.get("name") or serialized.get("name") or (ids[-1] if ids else default))


def model_result(response: Any) -> ModelResult:
    """Model, response id and token usage of an ``LLMResult``, read where chat models put them."""
    llm_output = getattr(response, "llm_output", None) or {}
    try:
        generation = response.generations[0][0]
    except (AttributeError, IndexError, TypeError):
        generation = None
    message = getattr(generation, "message", None)
    metadata = getattr(message, "response_metadata", None) or {}
    usage = getattr(message, "usage_metadata", None)
    if usage:
        input_tokens, output_tokens = usage.get("input_tokens"), usage.get("output_tokens")
    else:
        token_usage = llm_output.get("token_usage") or llm_output.get("usage") or {}
        input_tokens = token_usage.get("prompt_tokens", token_usage.get("input_tokens"))
        output_tokens = token_usage.get("completion_tokens", token_usage.get("output_tokens"))
    model = llm_output.get("model_name") or metadata.get("model_name") or metadata.get("model")
    response_id = llm_output.get("id") or metadata.get("id")
    return ModelResult(
        model=model if isinstance(model, str) else None,
        response_id=response_id if isinstance(response_id, str) else None,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )


class CallbackMethods:
    """The callbacks of ``AgentSightCallbackHandler`` (mixed into LangChain's ``BaseCallbackHandler``)."""

    raise_error = False
    run_inline = True
    """Called in the run's own context (the current turn), also by async runs."""

    @property
    def ignore_retriever(self) -> bool:
        """Retriever runs are not recorded."""
        return True

    @property
    def ignore_retry(self) -> bool:
        """Retries are not recorded."""
        return True

    @property
    def ignore_custom_event(self) -> bool:
        """Custom events are not recorded."""
        return True

    # Model calls.

    @_never_raises
    def on_chat_model_start(self, serialized: dict[str, Any], messages: Any, *, run_id: Any,
                            metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """A chat model call starts."""
        self._start_model(run_id, "chat", metadata)

    @_never_raises
    def on_llm_start(self, serialized: dict[str, Any], prompts: Any, *, run_id: Any,
                     metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """A text completion model call starts."""
        self._start_model(run_id, "text_completion", metadata)

    def _start_model(self, run_id: Any, operation: str, metadata: dict[str, Any] | None) -> None:
        metadata = metadata or {}
        _pending.add(run_id, start_model_run(operation, metadata.get("ls_provider"), metadata.get("ls_model_name")))

    @_never_raises
    def on_llm_end(self, response: Any, *, run_id: Any, **kwargs: Any) -> None:
        """A model call ended: counted in its turn unless a GenAI span of it already was."""
        run = _pending.pop(run_id)
        if isinstance(run, ModelRun):
            end_model_run(run, model_result(response))

    @_never_raises
    def on_llm_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
        """A model call failed (a stream the app stopped reading is not a failure)."""
        run = _pending.pop(run_id)
        if isinstance(run, ModelRun):
            response = kwargs.get("response")
            result = model_result(response) if response is not None else ModelResult()
            end_model_run(run, result, None if isinstance(error, GeneratorExit) else error)

    # Tools.

    @_never_raises
    def on_tool_start(self, serialized: dict[str, Any], input_str: str, *, run_id: Any,
                      inputs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """A tool run starts, with the arguments it was given."""
        name = _run_name(serialized, kwargs, "tool")
        _pending.add(run_id, start_action(name, KIND_TOOL, FRAMEWORK, inputs if inputs is not None else input_str))

    @_never_raises
    def on_tool_end(self, output: Any, *, run_id: Any, **kwargs: Any) -> None:
        """A tool run ended; a ``ToolMessage`` with ``status="error"`` (a handled tool error) is a failure."""
        run = _pending.pop(run_id)
        if isinstance(run, ActionRun):
            if getattr(output, "status", None) == "error":
                end_action(run, error=str(_text(output)))
            else:
                end_action(run, _text(output))

    @_never_raises
    def on_tool_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
        """A tool run raised."""
        run = _pending.pop(run_id)
        if isinstance(run, ActionRun):
            end_action(run, error=error)

    # Chains: only the outermost one of a run is a task.

    @_never_raises
    def on_chain_start(self, serialized: dict[str, Any] | None, inputs: Any, *, run_id: Any,
                       parent_run_id: Any = None, **kwargs: Any) -> None:
        """The outermost chain of a run starts (nested steps are skipped)."""
        if parent_run_id is None:
            _pending.add(run_id, start_action(_run_name(serialized, kwargs, "chain"), KIND_TASK, FRAMEWORK, inputs))

    @_never_raises
    def on_chain_end(self, outputs: Any, *, run_id: Any, **kwargs: Any) -> None:
        """A chain ended: recorded when it was the outermost."""
        run = _pending.pop(run_id)
        if isinstance(run, ActionRun):
            end_action(run, _text(outputs))

    @_never_raises
    def on_chain_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
        """A chain raised: recorded when it was the outermost."""
        run = _pending.pop(run_id)
        if isinstance(run, ActionRun):
            end_action(run, error=error)


@functools.cache
def handler_class() -> type:
    """``AgentSightCallbackHandler``: :class:`CallbackMethods` on LangChain's ``BaseCallbackHandler``."""
    from langchain_core.callbacks.base import BaseCallbackHandler

    return type("AgentSightCallbackHandler", (CallbackMethods, BaseCallbackHandler), {
        "__module__": __name__,
        "__doc__": "LangChain callback handler recording tools, outermost chains and model calls in the current turn.",
    })


def __getattr__(name: str) -> Any:
    if name == "AgentSightCallbackHandler":
        return handler_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _ProcessWide:
    """What LangChain's configure hook reads (``get()``, as of a ``ContextVar``), in every thread and context.

    A ``ContextVar`` set once would be empty in threads the app starts later; this one is not.
    """

    def __init__(self) -> None:
        self.handler: Any = None

    def get(self) -> Any:
        """The handler while instrumented, else ``None`` (LangChain adds nothing)."""
        return self.handler


_hook = _ProcessWide()
_hook_registered = False


class LangChainInstrumentor(AgentSightInstrumentor):
    """Adds ``AgentSightCallbackHandler`` to every LangChain run (entry point ``agentsight_langchain``)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """The ``langchain-core`` versions whose callbacks are handled here."""
        return ("langchain-core >= 0.3, < 2",)

    def _instrument(self, **kwargs: Any) -> None:
        global _hook_registered
        from langchain_core.tracers.context import register_configure_hook

        if not _hook_registered:  # LangChain keeps hooks for the process; one is registered, then switched
            register_configure_hook(_hook, inheritable=True)  # type: ignore[arg-type]
            _hook_registered = True
        _hook.handler = handler_class()()

    def _uninstrument(self, **kwargs: Any) -> None:
        _hook.handler = None
