"""The stand-in LLM provider's Amazon Bedrock runtime Converse routes (``boto3.client("bedrock-runtime",
endpoint_url=server.url, ...)``).

``POST /model/{modelId}/converse`` answers JSON; ``/model/{modelId}/converse-stream`` answers the same in
AWS event-stream frames (binary messages with headers, each with its prelude and message CRC32s). A
request with a ``toolConfig`` is answered with a ``toolUse`` of its first tool with
:data:`~agentsight.dev.llm_wire.TOOL_INPUT` (streamed as pieces of its JSON). ``InvokeModel`` on an
Anthropic model is :mod:`agentsight.dev.local_llm`'s Anthropic Messages route. Errors come in the
server's default shape: pass Bedrock's (``{"__type": "ValidationException", "message": ...}``) to
``fail_next`` to have botocore name the error. Standard library only.
"""

from __future__ import annotations

import re
import struct
import zlib
from typing import TYPE_CHECKING, Any

from agentsight.dev.llm_wire import TOOL_ARGUMENTS, TOOL_INPUT, Phase, dumps, split_reply

if TYPE_CHECKING:
    from agentsight.dev.local_llm import FakeLLMServer

BEDROCK_USAGE: dict[str, int] = {
    "inputTokens": 12, "cacheReadInputTokens": 3, "cacheWriteInputTokens": 2, "outputTokens": 6, "totalTokens": 23,
}
"""Token usage of every Converse answer (a stream's ``metadata`` event); ``inputTokens`` leaves out the cache
reads and writes, ``totalTokens`` adds them all."""

_STRING = 7  # an event-stream header value's type: string


def event_message(event_type: str, payload: object) -> bytes:
    """One AWS event-stream message: an ``event`` of ``event_type`` with ``payload`` as JSON."""
    headers = b"".join(
        struct.pack(">B", len(name)) + name + struct.pack(">BH", _STRING, len(value)) + value
        for name, value in ((b":event-type", event_type.encode()), (b":content-type", b"application/json"),
                            (b":message-type", b"event"))
    )
    payload_bytes = dumps(payload).encode()
    prelude = struct.pack(">II", 12 + len(headers) + len(payload_bytes) + 4, len(headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers + payload_bytes
    return message + struct.pack(">I", zlib.crc32(message))


def _tool(body: dict[str, Any]) -> str | None:
    """The first tool's name in the request's ``toolConfig``, or ``None`` without tools."""
    config = body.get("toolConfig")
    tools = config.get("tools") if isinstance(config, dict) else None
    spec = tools[0].get("toolSpec") if isinstance(tools, list) and tools and isinstance(tools[0], dict) else None
    name = spec.get("name") if isinstance(spec, dict) else None
    return name if isinstance(name, str) and name else None


def converse(server: FakeLLMServer, body: dict[str, Any], number: int) -> dict[str, Any]:
    """``Converse``: the whole answer."""
    name = _tool(body)
    if name:
        content: dict[str, Any] = {"toolUse": {"toolUseId": f"tooluse_fake_{number}", "name": name,
                                               "input": dict(TOOL_INPUT)}}
    else:
        content = {"text": server.reply_text}
    return {
        "output": {"message": {"role": "assistant", "content": [content]}},
        "stopReason": "tool_use" if name else "end_turn",
        "usage": dict(BEDROCK_USAGE),
        "metrics": {"latencyMs": 42},
    }


def converse_stream(server: FakeLLMServer, body: dict[str, Any], number: int) -> list[tuple[Phase, bytes]]:
    """``ConverseStream``: ``messageStart``, the content block's events, ``messageStop``, then ``metadata``."""
    name = _tool(body)
    frames: list[tuple[Phase, bytes]] = [("pre", event_message("messageStart", {"role": "assistant"}))]
    if name:
        start = {"toolUse": {"toolUseId": f"tooluse_fake_{number}", "name": name}}
        frames.append(("pre", event_message("contentBlockStart", {"contentBlockIndex": 0, "start": start})))
        deltas = [{"toolUse": {"input": piece}} for piece in split_reply(TOOL_ARGUMENTS, server.stream_chunks)]
    else:
        deltas = [{"text": piece} for piece in split_reply(server.reply_text, server.stream_chunks)]
    frames.extend(("delta", event_message("contentBlockDelta", {"contentBlockIndex": 0, "delta": delta}))
                  for delta in deltas)
    frames.append(("post", event_message("contentBlockStop", {"contentBlockIndex": 0})))
    frames.append(("post", event_message("messageStop", {"stopReason": "tool_use" if name else "end_turn"})))
    metadata = {"usage": dict(BEDROCK_USAGE), "metrics": {"latencyMs": 42}}
    frames.append(("post", event_message("metadata", metadata)))
    return frames


ROUTES = (
    (re.compile(r"/model/(?P<model>[^/]+)/converse"), converse, "openai"),
    (re.compile(r"/model/(?P<model>[^/]+)/converse-stream"), converse_stream, "openai"),
)
"""(path pattern naming the model, route, error shape) of the Converse operations."""

STREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"
"""The content type of a ``converse-stream`` answer."""


def is_event_stream(path: str) -> bool:
    """Whether the answer to ``path`` is in AWS event-stream frames (:data:`STREAM_CONTENT_TYPE`)."""
    return path.endswith("/converse-stream")
