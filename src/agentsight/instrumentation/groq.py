"""Groq client instrumentation: chat completions and embeddings, sync and async.

Groq's client is generated like OpenAI's, so its resource methods (``Completions.create``,
``Embeddings.create`` and their async twins) are wrapped the same way, by
:func:`agentsight.instrumentation.openai.wrap_surfaces`, as provider ``groq``; ``with_raw_response``
goes through ``create`` and so is covered once. Nothing from ``groq`` is imported until
``instrument()``: this module loads whether or not the library is installed.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from agentsight.instrumentation.genai import GenAITracer
from agentsight.instrumentation.instrumentor import AgentSightInstrumentor
from agentsight.instrumentation.openai import Surface, unwrap_surfaces, wrap_surfaces

PROVIDER = "groq"

SURFACES: tuple[Surface, ...] = (
    ("groq.resources.chat.completions", "Completions", "create", "chat"),
    ("groq.resources.chat.completions", "AsyncCompletions", "create", "chat"),
    ("groq.resources.embeddings", "Embeddings", "create", "embeddings"),
    ("groq.resources.embeddings", "AsyncEmbeddings", "create", "embeddings"),
)


class GroqInstrumentor(AgentSightInstrumentor):
    """Instruments ``groq`` (entry point ``agentsight_groq``)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """The ``groq`` versions whose resource layout is wrapped here."""
        return ("groq >= 0.13, < 2",)

    def _instrument(self, **kwargs: Any) -> None:
        wrap_surfaces(GenAITracer(__name__, kwargs), SURFACES, _provider)

    def _uninstrument(self, **kwargs: Any) -> None:
        unwrap_surfaces(SURFACES)


def _provider(resource: Any) -> str:
    """Every Groq client call is Groq's, whatever its ``base_url``."""
    return PROVIDER
