"""Auto-instrumentation of LLM client libraries and agent frameworks, attributed to AgentSight conversations.

Each supported library has an ``Instrumentor`` (an OpenTelemetry ``BaseInstrumentor``) registered in
the ``opentelemetry_instrumentor`` entry-point group as ``agentsight_<library>``, so
``opentelemetry-instrument`` loads it and ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` can turn it off.
:func:`instrument` does the same in code, for every supported library that is installed. The
frameworks' handlers (LangChain's ``AgentSightCallbackHandler``, LlamaIndex's dispatcher handlers) are
installed the same way and record tools, tasks and model calls in the current turn.
"""

from __future__ import annotations

import importlib
import logging
import os
from functools import partial
from typing import Any

import wrapt
from opentelemetry.instrumentation.dependencies import get_dependency_conflicts
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

logger = logging.getLogger("agentsight.instrumentation")

INSTRUMENTORS: dict[str, str] = {
    "openai": "agentsight.instrumentation.openai:OpenAIInstrumentor",
    "anthropic": "agentsight.instrumentation.anthropic:AnthropicInstrumentor",
    "groq": "agentsight.instrumentation.groq:GroqInstrumentor",
    "mistralai": "agentsight.instrumentation.mistralai:MistralAIInstrumentor",
    "ollama": "agentsight.instrumentation.ollama:OllamaInstrumentor",
    "litellm": "agentsight.instrumentation.litellm:LiteLLMInstrumentor",
    "langchain": "agentsight.instrumentation.langchain:LangChainInstrumentor",
    "llama_index": "agentsight.instrumentation.llama_index:LlamaIndexInstrumentor",
    "google_genai": "agentsight.instrumentation.google_genai:GoogleGenAIInstrumentor",
    "cohere": "agentsight.instrumentation.cohere:CohereInstrumentor",
    "botocore": "agentsight.instrumentation.botocore:BotocoreInstrumentor",
}
"""Library name -> ``module:class`` of its instrumentor (entry point ``agentsight_<library>``)."""

HOOK_MODULES: dict[str, tuple[str, ...]] = {
    "langchain": ("langchain_core",),
    "llama_index": ("llama_index.core",),
    "mistralai": ("mistralai", "mistralai.client"),
    "google_genai": ("google.genai",),
}
"""The modules whose import instruments a library, where it is not (only) the library's name.

``mistralai`` 2 and later is a namespace package, whose import no post-import hook sees: its client is in
``mistralai.client``. Before 2, ``mistralai`` is the client.
"""


def _instrumentor(name: str) -> BaseInstrumentor:
    module_name, class_name = INSTRUMENTORS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)()


def _disabled() -> set[str]:
    raw = os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "")
    return {item.strip() for item in raw.split(",") if item.strip()}


def instrument(**kwargs: Any) -> list[str]:
    """Instrument every supported LLM client library that is installed; returns their names.

    A library the app has imported is instrumented now; one not imported yet is instrumented when the
    app imports it (a post-import hook), so nothing is imported only to be instrumented. Skips
    libraries that are missing or of an unsupported version, those already instrumented, and those
    named (as ``agentsight_<library>``) in ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``. ``kwargs`` go
    to each ``instrument()`` call (``tracer_provider=...``).
    """
    done = []
    disabled = _disabled()
    for name in INSTRUMENTORS:
        if f"agentsight_{name}" in disabled:
            continue
        try:
            instrumentor = _instrumentor(name)
            if get_dependency_conflicts(list(instrumentor.instrumentation_dependencies())) is not None:
                continue
        except Exception:  # tracking must work even if one client's instrumentation cannot be applied
            logger.warning("AgentSight could not instrument %s", name, exc_info=True)
            continue
        for module in HOOK_MODULES.get(name, (name,)):
            wrapt.register_post_import_hook(partial(_instrument_imported, name, kwargs), module)
        done.append(name)
    return done


def _instrument_imported(name: str, kwargs: dict[str, Any], module: Any) -> None:
    """Instrument ``name`` as ``module`` is imported; not for a namespace package (nothing of the client is)."""
    instrumentor = _instrumentor(name)
    if instrumentor.is_instrumented_by_opentelemetry or getattr(module.__spec__, "origin", None) is None:
        return
    try:
        instrumentor.instrument(**kwargs)
    except Exception:  # tracking must work even if one client's instrumentation cannot be applied
        logger.warning("AgentSight could not instrument %s", name, exc_info=True)


def uninstrument() -> None:
    """Remove every AgentSight instrumentation that is in place."""
    for name in INSTRUMENTORS:
        instrumentor = _instrumentor(name)
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()


def __getattr__(name: str) -> Any:
    """``AgentSightCallbackHandler`` (LangChain), built when first asked for: LangChain is imported only then."""
    if name == "AgentSightCallbackHandler":
        from agentsight.instrumentation.langchain import handler_class

        return handler_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
