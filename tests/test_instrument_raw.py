"""Raw and streaming responses (``with_raw_response``, ``with_streaming_response``), however their body is read,
the frameworks that read them (the OpenAI Agents SDK's ``Runner.run_streamed``, langchain-anthropic's
``stream()``), and Anthropic's ``beta.messages``: each call counts once in its turn with its tokens;
``count_tokens`` is a call that adds none. The real clients, over HTTP to the stand-in
model, delivering to the local AgentSight."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anthropic
import openai
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentsight import ConversationTracker
from agentsight.dev import DevServer
from agentsight.dev.local_llm import ANTHROPIC_USAGE, FakeLLMServer
from agentsight.instrumentation.anthropic import AnthropicInstrumentor
from agentsight.instrumentation.openai import OpenAIInstrumentor
from tests.conftest import instrumented

# Typed `Any` so the clients' typed parameters take these plain literals.
MESSAGES: Any = [{"role": "user", "content": "Where is my order?"}]
GPT, CLAUDE = "gpt-4o-mini", "claude-x"
CHAT: Any = {"model": GPT, "messages": MESSAGES}
CHAT_STREAM: Any = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
RESPONSES: Any = {"model": GPT, "input": "Where is my order?"}
CLAUDE_REQUEST: Any = {"model": CLAUDE, "max_tokens": 64, "messages": MESSAGES}

Read = Callable[[Any], Any]
"""Makes one call with a client (sync or async, per the test) and reads its answer some way."""


@pytest.fixture(autouse=True)
def spans() -> Iterator[InMemorySpanExporter]:
    with instrumented(OpenAIInstrumentor, AnthropicInstrumentor) as exporter:
        yield exporter


@pytest.fixture
def gpt(fake: FakeLLMServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0) as client:
        yield client


@pytest.fixture
def claude(fake: FakeLLMServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="test", max_retries=0) as client:
        yield client


def _turn(tracker: ConversationTracker, api: DevServer, conversation_id: str, work: Callable[[], Any]) -> Any:
    """``(tokens, model-call action names)`` the local AgentSight stores for a turn in which ``work()`` ran."""
    with tracker.conversation(conversation_id):
        tracker.track_question("Where is my order?")
        work()
    assert tracker.flush(10)["complete"]
    found = api.store.find_conversation(conversation_id)
    assert found is not None, f"{conversation_id} was not stored"
    detail = api.store.get_conversation(found["id"])
    assert detail is not None
    calls = [action["action_name"] for action in detail["actions"] if action["action_name"] != "token_usage"]
    return detail["tokens"], calls


def _same_as_plain(tracker: ConversationTracker, api: DevServer, plain: Callable[[], Any],
                   variant: Callable[[], Any]) -> None:
    """The variant's turn stores what a turn with the plain calls stores: their tokens, and each model call once."""
    tokens, calls = _turn(tracker, api, "conv-plain", plain)
    assert calls and tokens["total_tokens"] > 0
    assert _turn(tracker, api, "conv-variant", variant) == (tokens, calls)


def _drain(stream: Any) -> None:
    for _ in stream:
        pass


async def _adrain(stream: Any) -> None:
    async for _ in stream:
        pass


# -- OpenAI ----------------------------------------------------------------------------------------------------


def _streaming_lines(client: openai.OpenAI) -> None:
    with client.chat.completions.with_streaming_response.create(**CHAT_STREAM) as response:
        lines = list(response.iter_lines())
        assert lines[-2:] == ["data: [DONE]", ""]


def _streaming_parse(client: openai.OpenAI) -> None:
    with client.chat.completions.with_streaming_response.create(**CHAT_STREAM) as response:
        _drain(response.parse())
        assert response.parse() is response.parse(), "parse() gives one stream, as the client's own does"


def _raw_stream_parse(client: openai.OpenAI) -> None:
    _drain(client.chat.completions.with_raw_response.create(**CHAT_STREAM).parse())


def _streaming_bytes(client: openai.OpenAI) -> None:
    with client.chat.completions.with_streaming_response.create(**CHAT_STREAM) as response:
        assert b"[DONE]" in b"".join(response.iter_bytes(7))


OPENAI_STREAMED: dict[str, Read] = {
    "raw-parse": _raw_stream_parse,
    "streaming-parse": _streaming_parse,
    "streaming-iter-lines": _streaming_lines,
    "streaming-iter-bytes": _streaming_bytes,
}


@pytest.mark.parametrize("read", OPENAI_STREAMED.values(), ids=OPENAI_STREAMED.keys())
def test_openai_streamed_raw_responses_count_once(
    read: Read, gpt: openai.OpenAI, tracker: ConversationTracker, api: DevServer
) -> None:
    _same_as_plain(tracker, api, lambda: _drain(gpt.chat.completions.create(**CHAT_STREAM)), lambda: read(gpt))


def _streaming_json(client: openai.OpenAI) -> None:
    with client.chat.completions.with_streaming_response.create(**CHAT) as response:
        assert response.json()["object"] == "chat.completion"  # type: ignore[index]


def _streaming_text_parse(client: openai.OpenAI) -> None:
    with client.chat.completions.with_streaming_response.create(**CHAT) as response:
        assert response.parse().usage is not None


OPENAI_PLAIN: dict[str, Read] = {"streaming-json": _streaming_json, "streaming-parse": _streaming_text_parse}


@pytest.mark.parametrize("read", OPENAI_PLAIN.values(), ids=OPENAI_PLAIN.keys())
def test_openai_streaming_responses_count_once(
    read: Read, gpt: openai.OpenAI, tracker: ConversationTracker, api: DevServer
) -> None:
    _same_as_plain(tracker, api, lambda: gpt.chat.completions.create(**CHAT), lambda: read(gpt))


def test_openai_async_streaming_responses_count_once(
    fake: FakeLLMServer, tracker: ConversationTracker, api: DevServer
) -> None:
    async def run(read: Callable[[openai.AsyncOpenAI], Awaitable[Any]]) -> None:
        async with openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0) as client:
            await read(client)

    async def plain(client: openai.AsyncOpenAI) -> None:
        await client.chat.completions.create(**CHAT)
        await client.responses.create(**RESPONSES)

    async def streaming(client: openai.AsyncOpenAI) -> None:
        async with client.chat.completions.with_streaming_response.create(**CHAT) as response:
            assert (await response.parse()).usage is not None
        async with client.responses.with_streaming_response.create(**RESPONSES, stream=True) as response:
            lines = [line async for line in response.iter_lines()]
            assert any("response.completed" in line for line in lines)

    _same_as_plain(tracker, api, lambda: asyncio.run(run(plain)), lambda: asyncio.run(run(streaming)))


# -- Anthropic -------------------------------------------------------------------------------------------------


def _claude_raw_stream(client: anthropic.Anthropic) -> None:
    _drain(client.messages.with_raw_response.create(**CLAUDE_REQUEST, stream=True).parse())


def _claude_streaming_lines(client: anthropic.Anthropic) -> None:
    with client.messages.with_streaming_response.create(**CLAUDE_REQUEST, stream=True) as response:
        lines = list(response.iter_lines())
        assert "event: message_delta" in lines


def _claude_streaming_parse(client: anthropic.Anthropic) -> None:
    with client.messages.with_streaming_response.create(**CLAUDE_REQUEST) as response:
        assert response.parse().usage.output_tokens > 0


def _claude_streaming_text(client: anthropic.Anthropic) -> None:
    with client.messages.with_streaming_response.create(**CLAUDE_REQUEST) as response:
        assert '"usage"' in response.text()


ANTHROPIC: dict[str, Read] = {
    "raw-stream-parse": _claude_raw_stream,
    "streaming-stream-iter-lines": _claude_streaming_lines,
    "streaming-parse": _claude_streaming_parse,
    "streaming-text": _claude_streaming_text,
}


@pytest.mark.parametrize("read", ANTHROPIC.values(), ids=ANTHROPIC.keys())
def test_anthropic_raw_responses_count_once(
    read: Read, claude: anthropic.Anthropic, tracker: ConversationTracker, api: DevServer
) -> None:
    _same_as_plain(tracker, api, lambda: claude.messages.create(**CLAUDE_REQUEST), lambda: read(claude))


def test_anthropic_async_raw_responses_count_once(
    fake: FakeLLMServer, tracker: ConversationTracker, api: DevServer
) -> None:
    async def run(read: Callable[[anthropic.AsyncAnthropic], Awaitable[Any]]) -> None:
        async with anthropic.AsyncAnthropic(base_url=fake.anthropic_base_url, api_key="test", max_retries=0) as client:
            await read(client)

    async def plain(client: anthropic.AsyncAnthropic) -> None:
        await client.messages.create(**CLAUDE_REQUEST)
        await client.messages.create(**CLAUDE_REQUEST)

    async def raw(client: anthropic.AsyncAnthropic) -> None:
        response = await client.messages.with_raw_response.create(**CLAUDE_REQUEST, stream=True)
        parsed = response.parse()  # a coroutine in anthropic >= 1, the stream itself before
        await _adrain(await parsed if asyncio.iscoroutine(parsed) else parsed)
        async with client.messages.with_streaming_response.create(**CLAUDE_REQUEST) as streaming:
            assert (await streaming.json())["usage"]["output_tokens"] > 0  # type: ignore[index]

    _same_as_plain(tracker, api, lambda: asyncio.run(run(plain)), lambda: asyncio.run(run(raw)))


def test_a_response_never_read_still_ends_once(
    gpt: openai.OpenAI, claude: anthropic.Anthropic, tracker: ConversationTracker, api: DevServer,
    spans: InMemorySpanExporter,
) -> None:
    def unread() -> None:
        with gpt.chat.completions.with_streaming_response.create(**CHAT_STREAM):
            pass  # closed unread
        claude.messages.with_raw_response.create(**CLAUDE_REQUEST, stream=True)  # dropped unread
        gc.collect()
        with claude.messages.with_streaming_response.create(**CLAUDE_REQUEST) as response:
            lines = response.iter_lines()
            next(lines)
            lines.close()  # read in part

    tokens, calls = _turn(tracker, api, "conv-unread", unread)
    assert calls == [f"chat openai/{GPT}", f"chat anthropic/{CLAUDE}", f"chat anthropic/{CLAUDE}"]
    assert tokens["total_tokens"] == 0


# -- Anthropic beta.messages and count_tokens ------------------------------------------------------------------


def test_anthropic_beta_messages_count_once(
    fake: FakeLLMServer, claude: anthropic.Anthropic, tracker: ConversationTracker, api: DevServer
) -> None:
    async def beta_async() -> None:
        async with anthropic.AsyncAnthropic(base_url=fake.anthropic_base_url, api_key="test", max_retries=0) as client:
            await client.beta.messages.create(**CLAUDE_REQUEST)
            async with client.beta.messages.stream(**CLAUDE_REQUEST) as stream:
                await stream.until_done()

    def plain() -> None:
        for _ in range(5):
            claude.messages.create(**CLAUDE_REQUEST)

    def beta() -> None:
        claude.beta.messages.create(**CLAUDE_REQUEST)
        _drain(claude.beta.messages.create(**CLAUDE_REQUEST, stream=True))
        with claude.beta.messages.stream(**CLAUDE_REQUEST) as stream:
            assert stream.get_final_message().usage.output_tokens > 0
        asyncio.run(beta_async())

    _same_as_plain(tracker, api, plain, beta)


def test_anthropic_count_tokens_is_a_call_without_usage(
    fake: FakeLLMServer, claude: anthropic.Anthropic, tracker: ConversationTracker, api: DevServer,
    spans: InMemorySpanExporter,
) -> None:
    async def count_async() -> None:
        async with anthropic.AsyncAnthropic(base_url=fake.anthropic_base_url, api_key="test", max_retries=0) as client:
            assert (await client.messages.count_tokens(model=CLAUDE, messages=MESSAGES)).input_tokens > 0

    def count() -> None:
        assert claude.messages.count_tokens(model=CLAUDE, messages=MESSAGES).input_tokens > 0
        assert claude.beta.messages.count_tokens(model=CLAUDE, messages=MESSAGES).input_tokens > 0
        raw = claude.messages.with_raw_response.count_tokens(model=CLAUDE, messages=MESSAGES)
        assert raw.parse().input_tokens > 0
        asyncio.run(count_async())

    count()
    assert [request.path for request in fake.requests] == ["/v1/messages/count_tokens"] * 4
    for span in spans.get_finished_spans():
        assert span.name == f"count_tokens {CLAUDE}"
        assert span.attributes["gen_ai.operation.name"] == "count_tokens"
        assert span.attributes["gen_ai.provider.name"] == "anthropic"
        assert span.attributes["agentsight.gen_ai.token_count"] == ANTHROPIC_USAGE["input_tokens"]
        assert not [key for key in span.attributes if key.startswith("gen_ai.usage.")]
    assert len(spans.get_finished_spans()) == 4
    tokens, calls = _turn(tracker, api, "conv-count", count)
    assert calls == [f"count_tokens anthropic/{CLAUDE}"] * 4
    assert tokens["total_tokens"] == 0, "counting tokens generates none"


# -- frameworks that read raw responses ----------------------------------------------------------------------


def test_openai_agents_run_streamed_counts_each_model_call(
    fake: FakeLLMServer, tracker: ConversationTracker, api: DevServer
) -> None:
    """``Runner.run_streamed`` reads ``responses.with_streaming_response`` and parses its stream."""
    agents = pytest.importorskip("agents", reason="openai-agents is not installed (make test-oldest leaves it out)")
    agents.set_tracing_disabled(True)

    async def run(streamed: bool) -> None:
        async with openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0) as client:
            agent = agents.Agent(name="support", instructions="Be brief.",
                                 model=agents.OpenAIResponsesModel(model=GPT, openai_client=client))
            if not streamed:
                await agents.Runner.run(agent, "Where is my order?")
                return
            result = agents.Runner.run_streamed(agent, "Where is my order?")
            await _adrain(result.stream_events())
            assert result.final_output

    _same_as_plain(tracker, api, lambda: asyncio.run(run(False)), lambda: asyncio.run(run(True)))


def test_langchain_anthropic_stream_counts_once(
    fake: FakeLLMServer, claude: anthropic.Anthropic, tracker: ConversationTracker, api: DevServer
) -> None:
    """``ChatAnthropic.stream()`` / ``astream()`` parse ``messages.with_raw_response`` of a stream."""
    chat_models = pytest.importorskip("langchain_anthropic", reason="langchain-anthropic is not installed")
    model = chat_models.ChatAnthropic(model=CLAUDE, base_url=fake.anthropic_base_url, api_key="test",
                                      max_retries=0, max_tokens=64)

    async def astream() -> None:
        await _adrain(model.astream("Where is my order?"))

    def plain() -> None:
        claude.messages.create(**CLAUDE_REQUEST)
        claude.messages.create(**CLAUDE_REQUEST)

    def streamed() -> None:
        assert "".join(str(chunk.content) for chunk in model.stream("Where is my order?"))
        asyncio.run(astream())

    _same_as_plain(tracker, api, plain, streamed)
