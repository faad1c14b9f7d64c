"""Wire helpers shared by the stand-in LLM provider's routes (:mod:`agentsight.dev.local_llm` and its
``llm_*`` provider modules): SSE frames, the deterministic reply pieces and tool input.

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
