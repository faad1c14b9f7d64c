"""The stand-in LLM provider's Gemini API routes (``google-genai`` with ``base_url=server.gemini_base_url``).

``POST /v1beta/models/{model}:generateContent`` (or ``/v1/...``, google-genai 3's default),
``:streamGenerateContent`` (SSE, as ``?alt=sse`` asks), ``:embedContent`` and ``:batchEmbedContents``.
A request with ``tools`` is answered with a call of the first declared function with
:data:`~agentsight.dev.llm_wire.TOOL_INPUT`. Standard library only.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from agentsight.dev.llm_wire import TOOL_INPUT, Phase, data_frame, embedding_vector, split_reply

if TYPE_CHECKING:
    from agentsight.dev.local_llm import FakeLLMServer

GEMINI_USAGE: dict[str, int] = {
    "promptTokenCount": 15, "cachedContentTokenCount": 5, "candidatesTokenCount": 6, "thoughtsTokenCount": 2,
    "totalTokenCount": 23,
}
"""Token usage of every Gemini answer (a stream's last chunk has it all; the chunks before, the prompt's only).

``promptTokenCount`` includes the cached tokens; ``totalTokenCount`` adds candidates and thoughts to it."""

GEMINI_EMBED_USAGE: dict[str, int] = {"promptTokenCount": 3, "totalTokenCount": 3}
"""Token usage of every Gemini embeddings answer, however many inputs it has."""

GEMINI_MODEL_SUFFIX = "-001"
"""Appended to the requested model in a Gemini answer's ``modelVersion``: ``gemini-2.0-flash`` -> ``...-001``."""

def _model_version(requested: object) -> str:
    name = requested if isinstance(requested, str) and requested else "gemini-fake"
    return name if name.endswith(GEMINI_MODEL_SUFFIX) else name + GEMINI_MODEL_SUFFIX


def _function_name(tools: object) -> str | None:
    """The first declared function's name, or ``None`` without tools."""
    for tool in tools if isinstance(tools, list) else []:
        for declaration in tool.get("functionDeclarations") or [] if isinstance(tool, dict) else []:
            if isinstance(declaration, dict) and isinstance(declaration.get("name"), str):
                return declaration["name"]
    return None


def _answer(body: dict[str, Any], number: int, parts: list[dict[str, Any]], finish: str | None,
            usage: dict[str, int]) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": _model_version(body.get("model")),
            "responseId": f"gemini-fake-{number}"}


def generate_content(server: FakeLLMServer, body: dict[str, Any], number: int) -> dict[str, Any]:
    """``:generateContent``: the whole answer."""
    name = _function_name(body.get("tools"))
    part = {"functionCall": {"name": name, "args": dict(TOOL_INPUT)}} if name else {"text": server.reply_text}
    return _answer(body, number, [part], "STOP", dict(GEMINI_USAGE))


def stream_generate_content(server: FakeLLMServer, body: dict[str, Any], number: int) -> list[tuple[Phase, bytes]]:
    """``:streamGenerateContent``: one chunk per text piece (a function call comes whole), the last with the
    finish reason and the whole usage."""
    name = _function_name(body.get("tools"))
    prompt_only = {"promptTokenCount": GEMINI_USAGE["promptTokenCount"],
                   "totalTokenCount": GEMINI_USAGE["promptTokenCount"]}
    if name:
        parts = [[{"functionCall": {"name": name, "args": dict(TOOL_INPUT)}}]]
    else:
        parts = [[{"text": piece}] for piece in split_reply(server.reply_text, server.stream_chunks)]
    frames: list[tuple[Phase, bytes]] = [
        ("delta", data_frame(_answer(body, number, part, None, prompt_only))) for part in parts
    ]
    frames.append(("post", data_frame(_answer(body, number, [{"text": ""}], "STOP", dict(GEMINI_USAGE)))))
    return frames


def embed_content(server: FakeLLMServer, body: dict[str, Any], number: int) -> dict[str, Any]:
    """``:embedContent`` (one content) and ``:batchEmbedContents`` (``requests``, one embedding each)."""
    requests = body.get("requests")
    if not isinstance(requests, list):
        return {"embedding": {"values": embedding_vector(0)}, "usageMetadata": dict(GEMINI_EMBED_USAGE)}
    return {"embeddings": [{"values": embedding_vector(index)} for index in range(len(requests))],
            "usageMetadata": dict(GEMINI_EMBED_USAGE)}


_PREFIX = r"/v1(?:beta)?/models/(?P<model>[^/:]+):"
ROUTES = (
    (re.compile(_PREFIX + "generateContent"), generate_content, "openai"),
    (re.compile(_PREFIX + "streamGenerateContent"), stream_generate_content, "openai"),
    (re.compile(_PREFIX + "(?:embedContent|batchEmbedContents)"), embed_content, "openai"),
)
"""(path pattern naming the model, route, error shape) of each Gemini method; errors are ``{"error": {...}}``."""
