"""The stand-in LLM provider's Ollama routes: chat and generate (NDJSON lines when streamed, as Ollama does
unless told not to) and embed. Standard library only.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from agentsight.dev.llm_wire import (
    CREATED_AT,
    TOOL_INPUT,
    Answer,
    Phase,
    embedding_vector,
    first_tool_name,
    ndjson_line,
    response_model,
    split_reply,
)

if TYPE_CHECKING:
    from agentsight.dev.local_llm import FakeLLMServer

OLLAMA_USAGE: dict[str, int] = {"prompt_eval_count": 19, "eval_count": 6}
"""Token counts of every Ollama chat answer (a stream's last, ``done`` line carries them)."""

OLLAMA_EMBED_USAGE: dict[str, int] = {"prompt_eval_count": 3}
"""Token count of every Ollama embed answer, however many inputs it has."""


def chat(server: FakeLLMServer, body: dict[str, Any], number: int) -> Answer:
    """Ollama's chat: NDJSON lines unless ``stream`` is false; the last, ``done`` line carries the counts."""
    tool_name = first_tool_name(body.get("tools"))
    model = response_model(body.get("model"), "ollama")
    final = {
        "done_reason": "stop",
        "total_duration": 5_000_000,
        "load_duration": 1_000_000,
        "prompt_eval_count": OLLAMA_USAGE["prompt_eval_count"],
        "prompt_eval_duration": 2_000_000,
        "eval_count": OLLAMA_USAGE["eval_count"],
        "eval_duration": 2_000_000,
    }

    def answer(message: dict[str, Any], done: bool) -> dict[str, Any]:
        reply = {"model": model, "created_at": CREATED_AT, "message": {"role": "assistant", **message}}
        return {**reply, "done": True, **final} if done else {**reply, "done": False}

    tool_message: dict[str, Any] = {}
    if tool_name:  # Ollama sends a tool call whole, also when streaming
        function = {"name": tool_name, "arguments": dict(TOOL_INPUT)}
        tool_message = {"content": "", "tool_calls": [{"id": f"call_fake_{number}", "function": function}]}
    if body.get("stream") is False:  # Ollama streams unless told not to
        return answer(tool_message or {"content": server.reply_text}, done=True)
    if tool_message:
        frames: list[tuple[Phase, bytes]] = [("delta", ndjson_line(answer(tool_message, done=False)))]
    else:
        pieces = split_reply(server.reply_text, server.stream_chunks)
        frames = [("delta", ndjson_line(answer({"content": piece}, done=False))) for piece in pieces]
    frames.append(("post", ndjson_line(answer({"content": ""}, done=True))))
    return frames


def generate(server: FakeLLMServer, body: dict[str, Any], number: int) -> Answer:
    """Ollama's generate: the chat answer (or its lines) with the text as ``response``, no ``message``."""
    answer = chat(server, {"model": body.get("model"), "stream": body.get("stream")}, number)
    if isinstance(answer, dict):
        return as_generated(answer)
    return [(phase, ndjson_line(as_generated(json.loads(line)))) for phase, line in answer]


def embed(server: FakeLLMServer, body: dict[str, Any], number: int) -> dict[str, Any]:
    """Ollama's embed: one vector per input."""
    given = body.get("input")
    count = len(given) if isinstance(given, list) else 1
    return {
        "model": response_model(body.get("model"), "ollama"),
        "embeddings": [embedding_vector(index) for index in range(count)],
        "total_duration": 3_000_000,
        "load_duration": 1_000_000,
        **OLLAMA_EMBED_USAGE,
    }


def as_generated(chat_answer: dict[str, Any]) -> dict[str, Any]:
    """An Ollama chat answer (or streamed line) as generate's: ``response`` text, and ``context`` when done."""
    generated = {key: value for key, value in chat_answer.items() if key != "message"}
    generated["response"] = chat_answer["message"]["content"]
    return {**generated, "context": [1, 2, 3]} if generated["done"] else generated
