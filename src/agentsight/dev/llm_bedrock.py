"""The stand-in LLM provider's Amazon Bedrock runtime routes (``boto3.client("bedrock-runtime",
endpoint_url=server.url, ...)``) beside ``InvokeModel``, which is :mod:`agentsight.dev.local_llm`'s Anthropic
Messages route.

``POST /model/{modelId}/converse`` answers JSON; ``/model/{modelId}/converse-stream`` answers the same in
AWS event-stream frames (binary messages with headers, each with its prelude and message CRC32s). A
request with a ``toolConfig`` is answered with a ``toolUse`` of its first tool with
:data:`~agentsight.dev.llm_wire.TOOL_INPUT` (streamed as pieces of its JSON).
``/model/{modelId}/invoke-with-response-stream`` streams the model's own events, each as the JSON of a
``chunk`` frame, the last with Bedrock's invocation metrics: Anthropic Messages events for a body with an
``anthropic_version``, Meta Llama's (``generation`` pieces) for a body with a ``prompt``, else (Amazon Nova)
Converse-shaped ones. Errors come in the server's default shape:
pass Bedrock's (``{"__type": "ValidationException", "message": ...}``) to ``fail_next`` to have botocore name
the error. Standard library only.
"""

from __future__ import annotations

import base64
import json
import re
import struct
import zlib
from typing import TYPE_CHECKING, Any

from agentsight.dev import llm_anthropic
from agentsight.dev.llm_wire import TOOL_ARGUMENTS, TOOL_INPUT, Phase, dumps, split_reply

if TYPE_CHECKING:
    from agentsight.dev.local_llm import FakeLLMServer

BEDROCK_USAGE: dict[str, int] = {
    "inputTokens": 12, "cacheReadInputTokens": 3, "cacheWriteInputTokens": 2, "outputTokens": 6, "totalTokens": 23,
}
"""Token usage of every Converse answer (a stream's ``metadata`` event); ``inputTokens`` leaves out the cache
reads and writes, ``totalTokens`` adds them all."""

LLAMA_TOKENS = (14, 8)
"""Input and output tokens of a Meta Llama body's stream (its own events and the invocation metrics say so)."""
INVOCATION_METRICS = "amazon-bedrock-invocationMetrics"
"""The key of what Bedrock adds to a response stream's last chunk: the call's token counts, for any model."""

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


def _converse_events(server: FakeLLMServer, body: dict[str, Any], number: int) -> list[tuple[Phase, str, Any]]:
    """A Converse stream's ``(phase, event type, payload)``: ``messageStart``, the content block's events,
    ``messageStop``, then ``metadata``."""
    name = _tool(body)
    events: list[tuple[Phase, str, Any]] = [("pre", "messageStart", {"role": "assistant"})]
    if name:
        start = {"toolUse": {"toolUseId": f"tooluse_fake_{number}", "name": name}}
        events.append(("pre", "contentBlockStart", {"contentBlockIndex": 0, "start": start}))
        deltas = [{"toolUse": {"input": piece}} for piece in split_reply(TOOL_ARGUMENTS, server.stream_chunks)]
    else:
        deltas = [{"text": piece} for piece in split_reply(server.reply_text, server.stream_chunks)]
    events.extend(("delta", "contentBlockDelta", {"contentBlockIndex": 0, "delta": delta}) for delta in deltas)
    events.append(("post", "contentBlockStop", {"contentBlockIndex": 0}))
    events.append(("post", "messageStop", {"stopReason": "tool_use" if name else "end_turn"}))
    events.append(("post", "metadata", {"usage": dict(BEDROCK_USAGE), "metrics": {"latencyMs": 42}}))
    return events


def converse_stream(server: FakeLLMServer, body: dict[str, Any], number: int) -> list[tuple[Phase, bytes]]:
    """``ConverseStream``: each Converse event a frame of its type."""
    return [(phase, event_message(kind, payload)) for phase, kind, payload in _converse_events(server, body, number)]


def invoke_stream(server: FakeLLMServer, body: dict[str, Any], number: int) -> list[tuple[Phase, bytes]]:
    """``InvokeModelWithResponseStream``: each of the model's events the JSON of a ``chunk`` (base64, as Bedrock
    sends a blob); the last chunk also holds :data:`INVOCATION_METRICS`."""
    if body.get("anthropic_version"):
        sse = llm_anthropic.messages(server, {**body, "stream": True}, number)
        assert isinstance(sse, list)
        events = [(phase, _sse_data(frame)) for phase, frame in sse]
        events = [(phase, event) for phase, event in events if event.get("type") != "ping"]
        usage: dict[str, Any] = {}
        for _, event in events:  # message_start's, then message_delta's (cumulative)
            usage.update(event.get("usage") or event.get("message", {}).get("usage") or {})
        counts = (usage["input_tokens"], usage["output_tokens"])
    elif "prompt" in body:
        pieces = split_reply(server.reply_text, server.stream_chunks)
        counts = LLAMA_TOKENS
        events = [("delta", {"generation": piece, "prompt_token_count": counts[0] if index == 0 else None,
                             "generation_token_count": index + 1, "stop_reason": None})
                  for index, piece in enumerate(pieces)]
        events.append(("post", {"generation": "", "prompt_token_count": None, "generation_token_count": counts[1],
                                "stop_reason": "stop"}))
    else:
        events = [(phase, {kind: payload}) for phase, kind, payload in _converse_events(server, body, number)]
        counts = (BEDROCK_USAGE["inputTokens"], BEDROCK_USAGE["outputTokens"])
    metrics = {"inputTokenCount": counts[0], "outputTokenCount": counts[1], "invocationLatency": 42,
               "firstByteLatency": 12}
    events[-1] = (events[-1][0], {**events[-1][1], INVOCATION_METRICS: metrics})
    return [(phase, event_message("chunk", {"bytes": base64.b64encode(dumps(event).encode()).decode()}))
            for phase, event in events]


def _sse_data(frame: bytes) -> Any:
    """The JSON of a server-sent event frame's ``data:`` line."""
    return json.loads(frame.decode().partition("data: ")[2])


ROUTES = (
    (re.compile(r"/model/(?P<model>[^/]+)/converse"), converse, "openai"),
    (re.compile(r"/model/(?P<model>[^/]+)/converse-stream"), converse_stream, "openai"),
    (re.compile(r"/model/(?P<model>[^/]+)/invoke-with-response-stream"), invoke_stream, "anthropic"),
)
"""(path pattern naming the model, route, error shape) of the Converse operations."""

STREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"
"""The content type of a ``converse-stream`` or ``invoke-with-response-stream`` answer."""


def is_event_stream(path: str) -> bool:
    """Whether the answer to ``path`` is in AWS event-stream frames (:data:`STREAM_CONTENT_TYPE`)."""
    return path.endswith(("/converse-stream", "/invoke-with-response-stream"))
