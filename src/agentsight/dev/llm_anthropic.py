"""The stand-in LLM provider's Anthropic routes: messages, with and without ``stream`` (also Vertex AI's and
Bedrock's Anthropic models), and ``count_tokens``. Standard library only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentsight.dev.llm_wire import (
    TOOL_ARGUMENTS,
    TOOL_INPUT,
    Answer,
    Phase,
    event_frame,
    first_tool_name,
    response_model,
    split_reply,
)

if TYPE_CHECKING:
    from agentsight.dev.local_llm import FakeLLMServer

ANTHROPIC_USAGE: dict[str, int] = {"input_tokens": 17, "output_tokens": 9}
"""Token usage of every Anthropic message (``message_delta`` carries the cumulative ``output_tokens``)."""


def messages(server: FakeLLMServer, body: dict[str, Any], number: int) -> Answer:
    """Anthropic's messages (Vertex AI's and Bedrock's too): text or a call of the first tool; events when streamed."""
    tool_name = first_tool_name(body.get("tools"))
    block: dict[str, Any]
    if tool_name:
        block = {"type": "tool_use", "id": f"toolu_fake_{number}", "name": tool_name, "input": dict(TOOL_INPUT)}
    else:
        block = {"type": "text", "text": server.reply_text}
    stop_reason = "tool_use" if tool_name else "end_turn"

    def message(content: list[dict[str, Any]], stop: str | None, output_tokens: int) -> dict[str, Any]:
        return {
            "id": f"msg_fake_{number}",
            "type": "message",
            "role": "assistant",
            "model": response_model(body.get("model"), "anthropic"),
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {
                "input_tokens": ANTHROPIC_USAGE["input_tokens"],
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": output_tokens,
                "service_tier": "standard",
            },
        }

    if not body.get("stream"):
        return message([block], stop_reason, ANTHROPIC_USAGE["output_tokens"])

    def event(kind: str, **fields: Any) -> bytes:
        return event_frame(kind, {"type": kind, **fields})

    opening = {**block, "input": {}} if tool_name else {**block, "text": ""}
    frames: list[tuple[Phase, bytes]] = [
        ("pre", event("message_start", message=message([], None, 1))),
        ("pre", event("content_block_start", index=0, content_block=opening)),
        ("pre", event("ping")),
    ]
    if tool_name:
        for piece in split_reply(TOOL_ARGUMENTS, server.stream_chunks):
            delta = {"type": "input_json_delta", "partial_json": piece}
            frames.append(("delta", event("content_block_delta", index=0, delta=delta)))
    else:
        for piece in split_reply(server.reply_text, server.stream_chunks):
            delta = {"type": "text_delta", "text": piece}
            frames.append(("delta", event("content_block_delta", index=0, delta=delta)))
    final_delta = {"stop_reason": stop_reason, "stop_sequence": None}
    final_usage = {"output_tokens": ANTHROPIC_USAGE["output_tokens"]}
    frames.append(("post", event("content_block_stop", index=0)))
    frames.append(("post", event("message_delta", delta=final_delta, usage=final_usage)))
    frames.append(("post", event("message_stop")))
    return frames


def count_tokens(server: FakeLLMServer, body: dict[str, Any], number: int) -> dict[str, Any]:
    """``count_tokens``: the input tokens a message with this body would have."""
    return {"input_tokens": ANTHROPIC_USAGE["input_tokens"]}
