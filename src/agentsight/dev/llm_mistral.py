"""The stand-in LLM provider's Mistral routes: chat, FIM and agents completions, with and without ``stream``, and
embeddings. Standard library only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentsight.dev.llm_openai import embeddings as openai_embeddings
from agentsight.dev.llm_wire import (
    CREATED,
    TOOL_ARGUMENTS,
    Answer,
    Phase,
    data_frame,
    first_tool_name,
    response_model,
    split_reply,
)

if TYPE_CHECKING:
    from agentsight.dev.local_llm import FakeLLMServer

MISTRAL_USAGE: dict[str, int] = {"prompt_tokens": 14, "completion_tokens": 9, "total_tokens": 23}
"""Token usage of every Mistral chat completion (a stream's last chunk carries it, unasked)."""

MISTRAL_EMBEDDING_USAGE: dict[str, int] = {"prompt_tokens": 4, "completion_tokens": 0, "total_tokens": 4}
"""Token usage of every Mistral embeddings request."""


def chat(server: FakeLLMServer, body: dict[str, Any], number: int) -> Answer:
    """Mistral's chat completions (FIM and agents answers are chat-shaped): usage on a stream's last chunk."""
    tool_name = first_tool_name(body.get("tools"))
    tool_calls = None
    if tool_name:  # Mistral sends a tool call whole, also when streaming
        function = {"name": tool_name, "arguments": TOOL_ARGUMENTS}
        tool_calls = [{"id": f"call_fake_{number}", "type": "function", "function": function, "index": 0}]
    finish_reason = "tool_calls" if tool_name else "stop"
    model = response_model(body.get("model"), "mistral")
    common = {"id": f"cmpl-fake-{number}", "created": CREATED, "model": model}
    if not body.get("stream"):
        content = "" if tool_name else server.reply_text
        message = {"role": "assistant", "content": content, "tool_calls": tool_calls, "prefix": False}
        choice = {"index": 0, "message": message, "finish_reason": finish_reason}
        return {**common, "object": "chat.completion", "usage": dict(MISTRAL_USAGE), "choices": [choice]}

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return data_frame({**common, "object": "chat.completion.chunk", "choices": [choice], **extra})

    frames: list[tuple[Phase, bytes]] = [("pre", chunk({"role": "assistant", "content": ""}))]
    if tool_calls:
        frames.append(("delta", chunk({"tool_calls": tool_calls})))
    else:
        pieces = split_reply(server.reply_text, server.stream_chunks)
        frames.extend(("delta", chunk({"content": piece})) for piece in pieces)
    frames.append(("post", chunk({"content": ""}, finish_reason, usage=dict(MISTRAL_USAGE))))
    frames.append(("post", b"data: [DONE]\n\n"))
    return frames


def embeddings(server: FakeLLMServer, body: dict[str, Any], number: int) -> dict[str, Any]:
    """Mistral's embeddings: OpenAI's vectors, Mistral's envelope and usage."""
    model = response_model(body.get("model"), "mistral")
    reply = openai_embeddings(server, body, number)
    return {"id": f"embd-fake-{number}", **reply, "model": model, "usage": dict(MISTRAL_EMBEDDING_USAGE)}
