"""The stand-in LLM provider's OpenAI routes: chat completions (Groq's and Azure OpenAI's too), Responses and
embeddings, each with and without ``stream``. Standard library only.
"""

from __future__ import annotations

import base64
import itertools
import struct
from typing import TYPE_CHECKING, Any

from agentsight.dev.llm_wire import (
    CREATED,
    TOOL_ARGUMENTS,
    Answer,
    Phase,
    data_frame,
    embedding_vector,
    event_frame,
    first_tool_name,
    response_model,
    split_reply,
)

if TYPE_CHECKING:
    from agentsight.dev.local_llm import FakeLLMServer

CHAT_USAGE: dict[str, int] = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
"""Token usage of every chat completion."""

CHAT_CACHED_TOKENS = 4
"""Of an OpenAI chat completion's prompt tokens, those read from the prompt cache (Groq's report none)."""

CHAT_REASONING_TOKENS = 2
"""Of an OpenAI chat completion's completion tokens, those spent reasoning (Groq's report none)."""

EMBEDDING_USAGE: dict[str, int] = {"prompt_tokens": 5, "total_tokens": 5}
"""Token usage of every embeddings request, however many inputs it has."""

RESPONSES_USAGE: dict[str, int] = {"input_tokens": 13, "output_tokens": 8, "total_tokens": 21}
"""Token usage of every Responses API reply."""


def chat_completions(
    server: FakeLLMServer, body: dict[str, Any], number: int, groq: bool = False
) -> Answer:
    """OpenAI's chat completions; Groq's (``groq``) add ``x_groq``, with the usage on a stream's last chunk."""
    model = response_model(body.get("model"), "openai")
    completion_id = f"chatcmpl-fake-{number}"
    tool_name = first_tool_name(body.get("tools"))
    call_id = f"call_fake_{number}"
    usage = {
        **CHAT_USAGE,
        "prompt_tokens_details": {"cached_tokens": 0 if groq else CHAT_CACHED_TOKENS, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0 if groq else CHAT_REASONING_TOKENS,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    common = {"created": CREATED, "model": model, "service_tier": "default", "system_fingerprint": "fp_fake"}
    finish_reason = "tool_calls" if tool_name else "stop"
    x_groq: dict[str, Any] = {"id": f"req_fake_{number}"}
    count = body.get("n") if isinstance(body.get("n"), int) and body["n"] > 1 else 1
    text = server.reply_text if server.reply_for is None else server.reply_for(body)
    if not body.get("stream"):
        choices = []
        for index in range(count):
            message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None, "annotations": []}
            if tool_name:
                function = {"name": tool_name, "arguments": TOOL_ARGUMENTS}
                message["tool_calls"] = [{"id": call_id, "type": "function", "function": function}]
            else:
                message["content"] = text
            choices.append({"index": index, "message": message, "logprobs": None, "finish_reason": finish_reason})
        reply = {"id": completion_id, "object": "chat.completion", **common, "choices": choices, "usage": usage}
        return {**reply, "x_groq": x_groq} if groq else reply

    stream_options = body.get("stream_options")
    include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        data: dict[str, Any] = {"id": completion_id, "object": "chat.completion.chunk", **common}
        data["choices"] = [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]
        if include_usage:
            data["usage"] = None
        return data_frame({**data, **extra})

    # With ``n`` > 1 the choices' chunks interleave, each chunk naming its choice's index, as OpenAI's do.
    frames: list[tuple[Phase, bytes]] = []
    choices = range(count)
    if tool_name:
        opening = {"index": 0, "id": call_id, "type": "function", "function": {"name": tool_name, "arguments": ""}}
        opening_delta = {"role": "assistant", "content": None, "tool_calls": [opening]}
        frames.extend(("pre", chunk(index, opening_delta)) for index in choices)
        for piece in split_reply(TOOL_ARGUMENTS, server.stream_chunks):
            arguments = {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
            frames.extend(("delta", chunk(index, arguments)) for index in choices)
    else:
        opening_delta = {"role": "assistant", "content": "", "refusal": None}
        frames.extend(("pre", chunk(index, opening_delta)) for index in choices)
        for piece in split_reply(text, server.stream_chunks):
            frames.extend(("delta", chunk(index, {"content": piece})) for index in choices)
    last_extra = {"x_groq": {**x_groq, "usage": dict(CHAT_USAGE)}} if groq else {}
    frames.extend(("post", chunk(index, {}, finish_reason, **last_extra)) for index in choices)
    if include_usage:
        last = {"id": completion_id, "object": "chat.completion.chunk", **common, "choices": [], "usage": usage}
        frames.append(("post", data_frame(last)))
    frames.append(("post", b"data: [DONE]\n\n"))
    return frames


def responses(server: FakeLLMServer, body: dict[str, Any], number: int) -> Answer:
    """OpenAI's Responses API: a message, or a call of the first tool; events when streamed."""
    tools = body.get("tools") if isinstance(body.get("tools"), list) else []
    tool_name = first_tool_name(tools)
    usage = {
        "input_tokens": RESPONSES_USAGE["input_tokens"],
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": RESPONSES_USAGE["output_tokens"],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": RESPONSES_USAGE["total_tokens"],
    }

    def response(status: str, output: list[dict[str, Any]], final: bool) -> dict[str, Any]:
        return {
            "id": f"resp_fake_{number}",
            "object": "response",
            "created_at": CREATED,
            "completed_at": CREATED + 1 if final else None,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": response_model(body.get("model"), "openai"),
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "service_tier": "default",
            "store": True,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": tools,
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": usage if final else None,
            "user": None,
            "metadata": {},
        }

    if tool_name:
        item_id = f"fc_fake_{number}"
        item: dict[str, Any] = {
            "type": "function_call",
            "id": item_id,
            "call_id": f"call_fake_{number}",
            "name": tool_name,
            "arguments": TOOL_ARGUMENTS,
            "status": "completed",
        }
    else:
        item_id = f"msg_fake_{number}"
        part = {"type": "output_text", "text": server.reply_text, "annotations": [], "logprobs": []}
        item = {"type": "message", "id": item_id, "status": "completed", "role": "assistant", "content": [part]}
    if not body.get("stream"):
        return response("completed", [item], final=True)

    sequence = itertools.count()

    def event(kind: str, **fields: Any) -> bytes:
        return event_frame(kind, {"type": kind, "sequence_number": next(sequence), **fields})

    frames: list[tuple[Phase, bytes]] = [
        ("pre", event("response.created", response=response("in_progress", [], final=False))),
        ("pre", event("response.in_progress", response=response("in_progress", [], final=False))),
    ]
    at = {"item_id": item_id, "output_index": 0}
    if tool_name:
        opening = {**item, "arguments": "", "status": "in_progress"}
        frames.append(("pre", event("response.output_item.added", output_index=0, item=opening)))
        for piece in split_reply(TOOL_ARGUMENTS, server.stream_chunks):
            frames.append(("delta", event("response.function_call_arguments.delta", **at, delta=piece)))
        frames.append(("post", event("response.function_call_arguments.done", **at, arguments=TOOL_ARGUMENTS)))
    else:
        empty_part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        opening = {**item, "status": "in_progress", "content": []}
        frames.append(("pre", event("response.output_item.added", output_index=0, item=opening)))
        frames.append(("pre", event("response.content_part.added", **at, content_index=0, part=empty_part)))
        for piece in split_reply(server.reply_text, server.stream_chunks):
            text_delta = event("response.output_text.delta", **at, content_index=0, delta=piece, logprobs=[])
            frames.append(("delta", text_delta))
        done = event("response.output_text.done", **at, content_index=0, text=server.reply_text, logprobs=[])
        frames.append(("post", done))
        frames.append(("post", event("response.content_part.done", **at, content_index=0, part=part)))
    frames.append(("post", event("response.output_item.done", output_index=0, item=item)))
    frames.append(("post", event("response.completed", response=response("completed", [item], final=True))))
    return frames


def embeddings(server: FakeLLMServer, body: dict[str, Any], number: int) -> dict[str, Any]:
    """OpenAI's embeddings (and Groq's, Azure's): one vector per input, floats or base64."""
    given = body.get("input")
    if isinstance(given, list) and given and not all(isinstance(token, int) for token in given):
        count = len(given)  # a list of strings or of token lists
    else:
        count = 1  # one string, or one list of tokens
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index in range(count):
        vector = embedding_vector(index)
        encoded: Any = vector
        if as_base64:
            encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    model = response_model(body.get("model"), "openai")
    return {"object": "list", "data": data, "model": model, "usage": dict(EMBEDDING_USAGE)}
