"""The stand-in LLM provider's Cohere v2 routes (``cohere.ClientV2(base_url=server.cohere_base_url)``).

``POST /v2/chat`` (with ``stream``, Cohere's named SSE events: ``message-start``, ``content-delta``...,
``message-end`` with the finish reason and usage) and ``POST /v2/embed``. A request with ``tools`` is
answered with a call of its first tool with :data:`~agentsight.dev.llm_wire.TOOL_ARGUMENTS` (streamed in
pieces). Standard library only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentsight.dev.llm_wire import TOOL_ARGUMENTS, Phase, embedding_vector, event_frame, split_reply

if TYPE_CHECKING:
    from agentsight.dev.local_llm import FakeLLMServer

COHERE_USAGE: dict[str, int] = {"input_tokens": 21, "output_tokens": 5, "cached_tokens": 4}
"""Tokens of every Cohere chat answer (its ``usage.tokens``, with ``cached_tokens`` of the input beside them);
the ``billed_units`` are :data:`COHERE_BILLED_UNITS`."""

COHERE_BILLED_UNITS: dict[str, int] = {"input_tokens": 8, "output_tokens": 5}
"""What Cohere bills of every chat answer (its ``usage.billed_units``: the prompt without the chat template)."""

COHERE_EMBED_USAGE: dict[str, int] = {"input_tokens": 3}
"""Billed input tokens of every Cohere embed answer (``meta.billed_units``), however many texts it has."""


def _tool(tools: object) -> str | None:
    """The first tool's name (``{"type": "function", "function": {"name": ...}}``), or ``None`` without tools."""
    if not isinstance(tools, list) or not tools or not isinstance(tools[0], dict):
        return None
    function = tools[0].get("function")
    name = function.get("name") if isinstance(function, dict) else None
    return name if isinstance(name, str) and name else "tool"


def _usage() -> dict[str, Any]:
    tokens = {key: COHERE_USAGE[key] for key in ("input_tokens", "output_tokens")}
    return {"billed_units": dict(COHERE_BILLED_UNITS), "tokens": tokens, "cached_tokens": COHERE_USAGE["cached_tokens"]}


def chat(server: FakeLLMServer, body: dict[str, Any], number: int) -> dict[str, Any] | list[tuple[Phase, bytes]]:
    """``/v2/chat``: the whole answer, or its events when ``stream`` is true."""
    name = _tool(body.get("tools"))
    chat_id = f"cohere-fake-{number}"
    call = {"id": f"call_fake_{number}", "type": "function", "function": {"name": name, "arguments": TOOL_ARGUMENTS}}
    finish = "TOOL_CALL" if name else "COMPLETE"
    if not body.get("stream"):
        message: dict[str, Any] = {"role": "assistant"}
        if name:
            message.update(tool_plan="I will call a tool.", tool_calls=[call])
        else:
            message["content"] = [{"type": "text", "text": server.reply_text}]
        return {"id": chat_id, "finish_reason": finish, "message": message, "usage": _usage()}

    def event(kind: str, **fields: Any) -> bytes:
        return event_frame(kind, {"type": kind, **fields})

    opening = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    frames: list[tuple[Phase, bytes]] = [("pre", event("message-start", id=chat_id, delta={"message": opening}))]
    if name:
        start = {**call, "function": {"name": name, "arguments": ""}}
        frames.append(("pre", event("tool-call-start", index=0, delta={"message": {"tool_calls": start}})))
        for piece in split_reply(TOOL_ARGUMENTS, server.stream_chunks):
            delta = {"message": {"tool_calls": {"function": {"arguments": piece}}}}
            frames.append(("delta", event("tool-call-delta", index=0, delta=delta)))
        frames.append(("post", event("tool-call-end", index=0)))
    else:
        start = {"message": {"content": {"type": "text", "text": ""}}}
        frames.append(("pre", event("content-start", index=0, delta=start)))
        for piece in split_reply(server.reply_text, server.stream_chunks):
            frames.append(("delta", event("content-delta", index=0, delta={"message": {"content": {"text": piece}}})))
        frames.append(("post", event("content-end", index=0)))
    frames.append(("post", event("message-end", delta={"finish_reason": finish, "usage": _usage()})))
    return frames


def embed(server: FakeLLMServer, body: dict[str, Any], number: int) -> dict[str, Any]:
    """``/v2/embed``: float embeddings of each text."""
    texts = body.get("texts") if isinstance(body.get("texts"), list) else []
    meta = {"api_version": {"version": "2"}, "billed_units": dict(COHERE_EMBED_USAGE)}
    return {"id": f"cohere-embed-fake-{number}", "response_type": "embeddings_by_type", "texts": texts,
            "embeddings": {"float": [embedding_vector(index) for index in range(len(texts))]}, "meta": meta}


ROUTES = {"/v2/chat": chat, "/v2/embed": embed}
"""Path -> route of the Cohere v2 API."""
