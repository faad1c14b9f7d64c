"""The fake LLM provider speaks well enough for the real ``openai`` and ``anthropic`` clients."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from agentsight.dev.local_llm import (
    ANTHROPIC_USAGE,
    CHAT_USAGE,
    EMBEDDING_USAGE,
    REPLY_TEXT,
    RESPONSES_USAGE,
    TOOL_INPUT,
    FakeLLMServer,
    embedding_vector,
    split_reply,
)

if TYPE_CHECKING:
    import anthropic
    import httpx2
    import openai
else:  # the clients are test-only extras: skip, rather than fail collection, where they are not installed
    anthropic = pytest.importorskip("anthropic")
    httpx2 = pytest.importorskip("httpx2")  # the transport both clients use
    openai = pytest.importorskip("openai")

# Typed `Any` so the clients' TypedDict parameters take these plain literals.
USER: Any = [{"role": "user", "content": "Say hello"}]
CHAT_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
RESPONSES_TOOL: Any = {"type": "function", "name": "get_weather", "parameters": CHAT_TOOL["function"]["parameters"]}
ANTHROPIC_TOOL: Any = {"name": "get_weather", "input_schema": CHAT_TOOL["function"]["parameters"]}
CLAUDE = "claude-fake-model"  # not a real model, so the client never warns it is deprecated


@pytest.fixture(scope="module")
def running_server() -> Iterator[FakeLLMServer]:
    """One fake provider for the whole module."""
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def server(running_server: FakeLLMServer) -> FakeLLMServer:
    """The module's fake provider, with no recorded requests or pending faults."""
    running_server.reset()
    return running_server


@pytest.fixture
def oai(server: FakeLLMServer) -> Iterator[openai.OpenAI]:
    """A real OpenAI client pointed at the fake, without retries."""
    with openai.OpenAI(base_url=server.openai_base_url, api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture
def claude(server: FakeLLMServer) -> Iterator[anthropic.Anthropic]:
    """A real Anthropic client pointed at the fake, without retries (or its own OpenTelemetry spans)."""
    with anthropic.Anthropic(
        base_url=server.anthropic_base_url, api_key="sk-ant-test", max_retries=0, open_telemetry=False
    ) as client:
        yield client


def async_openai(server: FakeLLMServer) -> openai.AsyncOpenAI:
    """A real async OpenAI client pointed at the fake, without retries."""
    return openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="sk-test", max_retries=0)


def async_anthropic(server: FakeLLMServer) -> anthropic.AsyncAnthropic:
    """A real async Anthropic client pointed at the fake, without retries."""
    return anthropic.AsyncAnthropic(
        base_url=server.anthropic_base_url, api_key="sk-ant-test", max_retries=0, open_telemetry=False
    )


# -- the reply splitter ------------------------------------------------------------------------------


@pytest.mark.parametrize("parts", [1, 2, 5, 7, 25, 100])
def test_split_reply_gives_exactly_the_parts_and_joins_back(parts: int) -> None:
    pieces = split_reply(REPLY_TEXT, parts)
    assert len(pieces) == parts
    assert "".join(pieces) == REPLY_TEXT
    assert all(pieces[: min(parts, len(REPLY_TEXT))])  # empty pieces only past one per character


def test_split_reply_prefers_whole_words() -> None:
    assert split_reply(REPLY_TEXT, 5) == ["Hello", " from", " the", " fake", " model"]


# -- OpenAI chat completions -------------------------------------------------------------------------


def test_chat_completion(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(model="gpt-4o-mini", messages=USER)

    assert completion.id.startswith("chatcmpl-fake-")
    assert completion.model == "gpt-4o-mini-2024-07-18"
    assert completion.choices[0].message.content == REPLY_TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (
        CHAT_USAGE["prompt_tokens"],
        CHAT_USAGE["completion_tokens"],
        CHAT_USAGE["total_tokens"],
    )
    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.body == {"model": "gpt-4o-mini", "messages": USER}
    assert request.headers["authorization"] == "Bearer sk-test"


@pytest.mark.parametrize("chunks", [5, 100])
def test_chat_stream_with_usage(server: FakeLLMServer, oai: openai.OpenAI, chunks: int) -> None:
    server.stream_chunks = chunks
    stream = oai.chat.completions.create(
        model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    received = list(stream)

    assert received[0].choices[0].delta.role == "assistant"
    contents = [
        c.choices[0].delta.content for c in received[1:] if c.choices and c.choices[0].delta.content is not None
    ]
    assert len(contents) == chunks
    assert "".join(contents) == REPLY_TEXT
    assert received[-2].choices[0].finish_reason == "stop"
    assert received[-1].choices == []
    assert received[-1].usage is not None and received[-1].usage.total_tokens == CHAT_USAGE["total_tokens"]
    assert all(chunk.usage is None for chunk in received[:-1])
    assert {chunk.model for chunk in received} == {"gpt-4o-mini-2024-07-18"}


def test_chat_stream_without_usage(oai: openai.OpenAI) -> None:
    received = list(oai.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True))

    assert all(chunk.usage is None and chunk.choices for chunk in received)
    assert "".join(c.choices[0].delta.content or "" for c in received) == REPLY_TEXT


def test_chat_stream_helper(oai: openai.OpenAI) -> None:
    with oai.chat.completions.stream(
        model="gpt-4o-mini", messages=USER, stream_options={"include_usage": True}
    ) as stream:
        final = stream.get_final_completion()

    assert final.choices[0].message.content == REPLY_TEXT
    assert final.usage is not None and final.usage.completion_tokens == CHAT_USAGE["completion_tokens"]


def test_chat_tool_call(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(model="gpt-4o-mini", messages=USER, tools=[CHAT_TOOL])

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_fake_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == TOOL_INPUT


def test_chat_tool_call_stream(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(model="gpt-4o-mini", messages=USER, tools=[CHAT_TOOL], stream=True)
    received = list(stream)

    opening = received[0].choices[0].delta.tool_calls or []
    assert opening[0].id is not None and opening[0].function is not None
    assert opening[0].function.name == "get_weather"
    arguments = "".join(
        call.function.arguments or ""
        for chunk in received
        for call in chunk.choices[0].delta.tool_calls or []
        if call.function is not None
    )
    assert json.loads(arguments) == TOOL_INPUT
    assert received[-1].choices[0].finish_reason == "tool_calls"


def test_async_chat(server: FakeLLMServer) -> None:
    async def run() -> tuple[str, str]:
        async with async_openai(server) as client:
            completion = await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
            stream = await client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
            text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream])
            return completion.choices[0].message.content or "", text

    assert asyncio.run(run()) == (REPLY_TEXT, REPLY_TEXT)
    assert [r.headers["x-stainless-async"] for r in server.requests] == ["async:asyncio"] * 2


def test_keep_alive_connection_is_reused(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    oai.chat.completions.create(model="gpt-4o-mini", messages=USER)
    oai.embeddings.create(model="text-embedding-3-small", input="hi")

    first, second = server.requests
    assert first.client_port == second.client_port


# -- OpenAI Responses --------------------------------------------------------------------------------


def test_responses_create(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    response = oai.responses.create(model="gpt-4o-mini", input="Say hello", instructions="Be brief")

    assert response.id.startswith("resp_fake_")
    assert response.status == "completed"
    assert response.model == "gpt-4o-mini-2024-07-18"
    assert response.output_text == REPLY_TEXT
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (
        RESPONSES_USAGE["input_tokens"],
        RESPONSES_USAGE["output_tokens"],
        RESPONSES_USAGE["total_tokens"],
    )
    assert response.instructions == "Be brief"
    assert server.requests[0].path == "/v1/responses"


def test_responses_create_stream(oai: openai.OpenAI) -> None:
    events = list(oai.responses.create(model="gpt-4o-mini", input="Say hello", stream=True))

    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert len(deltas) == 5 and "".join(deltas) == REPLY_TEXT
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.usage is not None
    assert completed.response.usage.total_tokens == RESPONSES_USAGE["total_tokens"]
    assert completed.response.output_text == REPLY_TEXT


def test_responses_stream_helper(oai: openai.OpenAI) -> None:
    with oai.responses.stream(model="gpt-4o-mini", input="Say hello") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()

    assert "".join(deltas) == REPLY_TEXT
    assert final.output_text == REPLY_TEXT
    assert final.usage is not None and final.usage.input_tokens == RESPONSES_USAGE["input_tokens"]


def test_responses_stream_helper_async(server: FakeLLMServer) -> None:
    async def run() -> Any:
        async with async_openai(server) as client, client.responses.stream(model="gpt-4o", input="hi") as stream:
            return await stream.get_final_response()

    final = asyncio.run(run())
    assert final.output_text == REPLY_TEXT
    assert final.model == "gpt-4o-2024-07-18"


def test_responses_tool_call(oai: openai.OpenAI) -> None:
    response = oai.responses.create(model="gpt-4o-mini", input="Weather?", tools=[RESPONSES_TOOL])

    [call] = response.output
    assert call.type == "function_call"
    assert call.name == "get_weather" and call.call_id.startswith("call_fake_")
    assert json.loads(call.arguments) == TOOL_INPUT

    with oai.responses.stream(model="gpt-4o-mini", input="Weather?", tools=[RESPONSES_TOOL]) as stream:
        pieces = [event.delta for event in stream if event.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()
    assert json.loads("".join(pieces)) == TOOL_INPUT
    assert final.output[0].type == "function_call"


# -- OpenAI embeddings -------------------------------------------------------------------------------


def test_embeddings_default_asks_for_base64_and_decodes(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    result = oai.embeddings.create(model="text-embedding-3-small", input=["a", "b", "c"])

    assert server.requests[0].body["encoding_format"] == "base64"  # the client's own default
    assert [item.embedding for item in result.data] == [embedding_vector(i) for i in range(3)]
    assert [item.index for item in result.data] == [0, 1, 2]
    assert result.model == "text-embedding-3-small-2024-07-18"
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (
        EMBEDDING_USAGE["prompt_tokens"],
        EMBEDDING_USAGE["total_tokens"],
    )


def test_embeddings_float_format(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    result = oai.embeddings.create(model="text-embedding-3-small", input="one", encoding_format="float")

    assert server.requests[0].body["encoding_format"] == "float"
    assert [item.embedding for item in result.data] == [embedding_vector(0)]


def test_embeddings_explicit_base64_is_left_encoded(oai: openai.OpenAI) -> None:
    result = oai.embeddings.create(model="text-embedding-3-small", input=[[1, 2], [3]], encoding_format="base64")

    raw = [base64.b64decode(item.embedding) for item in result.data]
    assert [list(struct.unpack(f"<{len(r) // 4}f", r)) for r in raw] == [embedding_vector(0), embedding_vector(1)]


# -- Anthropic messages ------------------------------------------------------------------------------


def test_anthropic_message(server: FakeLLMServer, claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model=CLAUDE, max_tokens=64, messages=USER)

    assert message.id.startswith("msg_fake_")
    assert message.model == CLAUDE + "-20241022"
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text" and message.content[0].text == REPLY_TEXT
    assert (message.usage.input_tokens, message.usage.output_tokens) == (
        ANTHROPIC_USAGE["input_tokens"],
        ANTHROPIC_USAGE["output_tokens"],
    )
    [request] = server.requests
    assert request.path == "/v1/messages"
    assert request.body["max_tokens"] == 64
    assert "anthropic-version" in request.headers


def test_anthropic_tool_use(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model=CLAUDE, max_tokens=64, messages=USER, tools=[ANTHROPIC_TOOL])

    assert message.stop_reason == "tool_use"
    [block] = message.content
    assert block.type == "tool_use"
    assert block.name == "get_weather" and block.id.startswith("toolu_fake_")
    assert block.input == TOOL_INPUT


def test_anthropic_raw_stream(claude: anthropic.Anthropic) -> None:
    events = list(claude.messages.create(model=CLAUDE, max_tokens=64, messages=USER, stream=True))

    kinds = [event.type for event in events]  # the client drops `ping`
    assert kinds == ["message_start", "content_block_start", *["content_block_delta"] * 5] + [
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start, delta = events[0], events[-2]
    assert start.type == "message_start" and delta.type == "message_delta"
    assert (start.message.usage.input_tokens, start.message.usage.output_tokens) == (17, 1)
    assert delta.usage.output_tokens == ANTHROPIC_USAGE["output_tokens"]  # cumulative, not an increment
    assert delta.delta.stop_reason == "end_turn"
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta")
    assert text == REPLY_TEXT


def test_anthropic_stream_helper(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model=CLAUDE, max_tokens=64, messages=USER) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()

    assert pieces == split_reply(REPLY_TEXT, 5)
    assert final.content[0].type == "text" and final.content[0].text == REPLY_TEXT
    assert final.usage.input_tokens == 17
    assert final.usage.output_tokens == 9


def test_anthropic_stream_helper_async(server: FakeLLMServer) -> None:
    async def run() -> Any:
        async with async_anthropic(server) as client:
            async with client.messages.stream(model=CLAUDE, max_tokens=64, messages=USER) as stream:
                return await stream.get_final_message()

    final = asyncio.run(run())
    assert final.content[0].text == REPLY_TEXT
    assert (final.usage.input_tokens, final.usage.output_tokens) == (17, 9)


def test_anthropic_tool_use_stream(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model=CLAUDE, max_tokens=64, messages=USER, tools=[ANTHROPIC_TOOL]) as stream:
        events = list(stream)
        final = stream.get_final_message()

    assert any(e.type == "content_block_delta" and e.delta.type == "input_json_delta" for e in events)
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "tool_use" and final.content[0].input == TOOL_INPUT
    assert final.usage.output_tokens == 9


# -- faults ------------------------------------------------------------------------------------------


def test_openai_rate_limit(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.fail_next(429, retry_after="7")

    with pytest.raises(openai.RateLimitError) as caught:
        oai.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.request_id is not None and caught.value.request_id.startswith("req_fake_")
    # only the next request failed
    assert oai.chat.completions.create(model="gpt-4o-mini", messages=USER).choices[0].message.content == REPLY_TEXT


def test_anthropic_rate_limit(server: FakeLLMServer, claude: anthropic.Anthropic) -> None:
    server.fail_next(429, retry_after="3")

    with pytest.raises(anthropic.RateLimitError) as caught:
        claude.messages.create(model=CLAUDE, max_tokens=64, messages=USER)
    assert caught.value.status_code == 429
    assert caught.value.type == "rate_limit_error"
    assert caught.value.response.headers["retry-after"] == "3"
    assert caught.value.request_id is not None and caught.value.request_id.startswith("req_fake_")


def test_failures_are_consumed_by_client_retries(server: FakeLLMServer) -> None:
    server.fail_next(500, retry_after="0.01", count=2)

    with openai.OpenAI(base_url=server.openai_base_url, api_key="sk-test", max_retries=2) as client:
        completion = client.chat.completions.create(model="gpt-4o-mini", messages=USER)

    assert completion.choices[0].message.content == REPLY_TEXT
    assert [r.headers["x-stainless-retry-count"] for r in server.requests] == ["0", "1", "2"]


def test_fail_next_with_a_custom_body(server: FakeLLMServer, claude: anthropic.Anthropic) -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    server.fail_next(529, body=body)

    with pytest.raises(anthropic.APIStatusError) as caught:
        claude.messages.create(model=CLAUDE, max_tokens=64, messages=USER)
    assert caught.value.status_code == 529
    assert caught.value.type == "overloaded_error"


def test_unknown_path_is_a_provider_shaped_404(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        oai.models.list()


def test_openai_disconnect_mid_stream(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.disconnect_mid_stream_next(after_chunks=2)
    oai.chat.completions.create(model="gpt-4o-mini", messages=USER)  # not streaming: does not take the fault
    received: list[str] = []

    with pytest.raises(openai.APIConnectionError):
        for chunk in oai.chat.completions.create(
            model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}
        ):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "Hello from"
    # the server carries on
    assert oai.chat.completions.create(model="gpt-4o-mini", messages=USER).choices[0].message.content == REPLY_TEXT


def test_responses_disconnect_mid_stream(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.disconnect_mid_stream_next(after_chunks=1)

    with pytest.raises(openai.APIConnectionError), oai.responses.stream(model="gpt-4o-mini", input="hi") as stream:
        for _ in stream:
            pass


def test_anthropic_disconnect_mid_stream(server: FakeLLMServer, claude: anthropic.Anthropic) -> None:
    server.disconnect_mid_stream_next(after_chunks=3)
    pieces: list[str] = []

    # anthropic 2.x lets the transport error through unwrapped while iterating a stream
    with pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)):
        with claude.messages.stream(model=CLAUDE, max_tokens=64, messages=USER) as stream:
            for text in stream.text_stream:
                pieces.append(text)
    assert "".join(pieces) == "Hello from the"


def test_anthropic_async_disconnect_mid_stream(server: FakeLLMServer) -> None:
    server.disconnect_mid_stream_next(after_chunks=0)

    async def run() -> None:
        async with async_anthropic(server) as client:
            stream = await client.messages.create(model=CLAUDE, max_tokens=64, messages=USER, stream=True)
            async for _ in stream:
                pass

    with pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)):
        asyncio.run(run())


def test_reply_for_picks_each_chat_reply_and_reset_restores_the_default(server: FakeLLMServer) -> None:
    import openai

    server.reply_for = lambda body: f"echo: {body['messages'][-1]['content']}"
    with openai.OpenAI(base_url=server.openai_base_url, api_key="sk-test", max_retries=0) as client:
        plain = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "a"}])
        streamed = client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                  messages=[{"role": "user", "content": "b"}])
        text = "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices)
        server.reset()
        default = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "c"}])

    assert (plain.choices[0].message.content, text) == ("echo: a", "echo: b")
    assert default.choices[0].message.content == REPLY_TEXT
