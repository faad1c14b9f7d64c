"""Wire helpers shared by the stand-in LLM provider's routes (:mod:`agentsight.dev.local_llm` and its
``llm_*`` provider modules): SSE frames and NDJSON lines, the deterministic reply pieces, tool input, timestamps
and model names.

Standard library only.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

TOOL_INPUT: dict[str, Any] = {"city": "Paris"}
"""The arguments of every tool call the fake model makes."""

TOOL_ARGUMENTS = json.dumps(TOOL_INPUT)
""":data:`TOOL_INPUT` as the JSON string OpenAI sends: ``{"city": "Paris"}``."""

Phase = Literal["pre", "delta", "post"]
"""Where an SSE frame (or NDJSON line) sits in a stream: before the content deltas, one of them, or after them."""

Answer = dict[str, Any] | list[tuple[Phase, bytes]]
"""What a route answers: a JSON body, or a stream's frames, each with its :data:`Phase`."""

CREATED = 1_700_000_000
"""The timestamp of every answer: fixed, so answers are byte-for-byte deterministic."""
CREATED_AT = "2023-11-14T22:13:20Z"
""":data:`CREATED` as Ollama writes it."""

OPENAI_MODEL_SUFFIX = "-2024-07-18"
"""Appended to the requested model in OpenAI answers: ``gpt-4o-mini`` -> ``gpt-4o-mini-2024-07-18``."""

ANTHROPIC_MODEL_SUFFIX = "-20241022"
"""Appended to the requested model in Anthropic answers: ``claude-x`` -> ``claude-x-20241022``."""

MISTRAL_MODEL_SUFFIX = "-2503"
"""Appended to the requested model in Mistral answers: ``mistral-small`` -> ``mistral-small-2503``."""

OLLAMA_DEFAULT_TAG = ":latest"
"""Added to a requested Ollama model without a tag, as Ollama names it: ``llama3.2`` -> ``llama3.2:latest``."""

Provider = Literal["openai", "anthropic", "mistral", "ollama"]
"""Whose conventions an answer follows (its model name; for errors, Mistral's are OpenAI's)."""


def response_model(requested: object, provider: Provider) -> str:
    """The model an answer names for ``requested``: the requested name with the provider's suffix.

    Ollama's instead has the default tag when it has none (:data:`OLLAMA_DEFAULT_TAG`).
    """
    name = requested if isinstance(requested, str) and requested else "fake-model"
    if provider == "ollama":
        return name if ":" in name else name + OLLAMA_DEFAULT_TAG
    suffix = {"openai": OPENAI_MODEL_SUFFIX, "mistral": MISTRAL_MODEL_SUFFIX}.get(provider, ANTHROPIC_MODEL_SUFFIX)
    return name if name.endswith(suffix) else name + suffix


def first_tool_name(tools: object) -> str | None:
    """The name of the first tool, in either OpenAI chat (nested ``function``) or flat shape."""
    if not isinstance(tools, list) or not tools or not isinstance(tools[0], dict):
        return None
    tool = tools[0]
    function = tool.get("function")
    name = function.get("name") if isinstance(function, dict) else tool.get("name")
    return name if isinstance(name, str) and name else "tool"


def split_reply(text: str, parts: int) -> list[str]:
    """Split ``text`` into exactly ``parts`` pieces that join back to ``text``.

    Whole words (with their leading whitespace, like model tokens) when there are at least ``parts``
    words, else characters; with more ``parts`` than characters the surplus pieces are empty strings
    at the end.
    """
    parts = max(1, parts)
    words = re.findall(r"\s*\S+", text)
    if "".join(words) == text and len(words) >= parts:
        units = words
    else:
        units = list(text)
    count = min(parts, len(units)) or 1
    pieces = ["".join(units[i * len(units) // count : (i + 1) * len(units) // count]) for i in range(count)]
    return pieces + [""] * (parts - count)


def embedding_vector(index: int) -> list[float]:
    """The embedding of the ``index``-th input; float32-exact, so base64 and float answers decode equal."""
    return [0.125, 0.25, 0.5 + index]


def dumps(data: object) -> str:
    """Compact JSON, as the providers send it."""
    return json.dumps(data, separators=(",", ":"))


def data_frame(data: object) -> bytes:
    """An SSE ``data:`` frame holding ``data`` as JSON."""
    return f"data: {dumps(data)}\n\n".encode()


def event_frame(kind: str, data: object) -> bytes:
    """An SSE frame with an ``event:`` line and ``data`` as JSON."""
    return f"event: {kind}\ndata: {dumps(data)}\n\n".encode()


def ndjson_line(data: object) -> bytes:
    """One NDJSON line holding ``data`` (Ollama's stream)."""
    return (dumps(data) + "\n").encode()
