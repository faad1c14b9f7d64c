"""Anthropic instrumentation with the real ``anthropic`` client over HTTP to a fake provider."""

from __future__ import annotations

import asyncio
import copy
import gc
import importlib
import inspect
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anthropic
import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from agentsight import ConversationTracker
from agentsight.dev import DevServer
from agentsight.dev.local_llm import ANTHROPIC_USAGE, REPLY_TEXT, TOOL_INPUT, FakeLLMServer
from agentsight.instrumentation.anthropic import MODULE, SURFACES, AnthropicInstrumentor
from agentsight.spans.attribution import ModelCallAttribution
from tests.conftest import bodies, instrumented, wrapper_layers

MODEL = "claude-x"
ANSWER_MODEL = "claude-x-20241022"
MESSAGES = [{"role": "user", "content": "Where is my order?"}]
TOOLS = [{"name": "get_order", "description": "Look an order up", "input_schema": {"type": "object"}}]
REQUEST = {"model": MODEL, "max_tokens": 64, "messages": MESSAGES}
INPUT, OUTPUT = ANTHROPIC_USAGE["input_tokens"], ANTHROPIC_USAGE["output_tokens"]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Instrument anthropic with a provider whose finished spans the test can read."""
    with instrumented(AnthropicInstrumentor) as exporter:
        yield exporter


@pytest.fixture
def client(fake: FakeLLMServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="test", max_retries=0) as client:
        yield client


RunAsync = Callable[..., Any]


@pytest.fixture
def run_async(fake: FakeLLMServer) -> RunAsync:
    """``run_async(main, **options)`` runs ``main(client)`` in a new event loop with an async client closed in it."""

    def run(main: Callable[[anthropic.AsyncAnthropic], Awaitable[Any]], **options: Any) -> Any:
        async def with_client() -> Any:
            async with anthropic.AsyncAnthropic(base_url=fake.anthropic_base_url, api_key="test", max_retries=0,
                                                **options) as client:
                return await main(client)

        return asyncio.run(with_client())

    return run


def _only(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = exporter.get_finished_spans()
    return span


def _assert_answer(span: ReadableSpan, finish_reason: str = "end_turn") -> None:
    """The span describes the fake's answer: model, id, finish reason, and the usage counted once."""
    assert span.attributes["gen_ai.response.model"] == ANSWER_MODEL
    assert span.attributes["gen_ai.response.id"].startswith("msg_fake_")
    assert span.attributes["gen_ai.response.finish_reasons"] == (finish_reason,)
    assert span.attributes["gen_ai.usage.input_tokens"] == INPUT
    assert span.attributes["gen_ai.usage.output_tokens"] == OUTPUT, "cumulative counts are not added up"


def test_create_span(spans: InMemorySpanExporter, client: anthropic.Anthropic, fake: FakeLLMServer) -> None:
    # anthropic 2.x takes sampling parameters through ``extra_body`` only.
    request = {**REQUEST, "system": "Be brief.", "stop_sequences": ["END"],
               "extra_body": {"temperature": 0.2, "top_p": 0.9, "top_k": 5}}
    kept = copy.deepcopy(request)
    message = client.messages.create(**request)
    assert request == kept, "the caller's request is not modified"
    assert message.content[0].text == REPLY_TEXT
    span = _only(spans)
    assert span.name == f"chat {MODEL}" and span.kind is SpanKind.CLIENT
    assert dict(span.attributes) == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic", "gen_ai.request.model": MODEL,
        "gen_ai.request.max_tokens": 64, "gen_ai.request.temperature": 0.2, "gen_ai.request.top_p": 0.9,
        "gen_ai.request.top_k": 5, "gen_ai.request.stop_sequences": ("END",), "server.address": "127.0.0.1",
        "server.port": int(fake.url.rsplit(":", 1)[1]), "gen_ai.response.model": ANSWER_MODEL,
        "gen_ai.response.id": "msg_fake_1", "gen_ai.response.finish_reasons": ("end_turn",),
        "gen_ai.usage.input_tokens": INPUT, "gen_ai.usage.output_tokens": OUTPUT,
    }
    assert span.status.status_code is StatusCode.UNSET


def test_cached_input_tokens_count_as_input(
    spans: InMemorySpanExporter, client: anthropic.Anthropic, fake: FakeLLMServer
) -> None:
    usage = {"input_tokens": 3, "cache_creation_input_tokens": 20, "cache_read_input_tokens": 100, "output_tokens": 4}
    answer = {"id": "msg_cached", "type": "message", "role": "assistant", "model": ANSWER_MODEL, "stop_sequence": None,
              "stop_reason": "end_turn", "content": [{"type": "text", "text": "Hi"}], "usage": usage}
    fake.fail_next(200, body=answer, count=2)
    client.messages.create(**REQUEST)
    raw = client.messages.with_raw_response.create(**REQUEST)
    assert raw.parse().usage.cache_read_input_tokens == 100, "the raw response still parses"
    finished = spans.get_finished_spans()
    assert len(finished) == 2
    for span in finished:
        assert span.attributes["gen_ai.usage.input_tokens"] == 123
        assert span.attributes["gen_ai.usage.output_tokens"] == 4
        assert span.attributes["gen_ai.usage.cache_read.input_tokens"] == 100, "and reported apart"
        assert span.attributes["gen_ai.usage.cache_creation.input_tokens"] == 20
        assert span.attributes["gen_ai.response.id"] == "msg_cached"


def test_content_only_when_asked(
    spans: InMemorySpanExporter, client: anthropic.Anthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.messages.create(**REQUEST, system="Be brief.")
    assert not {"gen_ai.input.messages", "gen_ai.output.messages"} & set(_only(spans).attributes)
    spans.clear()
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    client.messages.create(**REQUEST, system="Be brief.")
    with client.messages.stream(**REQUEST, tools=TOOLS) as stream:
        stream.until_done()
    created, streamed = spans.get_finished_spans()
    assert json.loads(created.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Where is my order?"}]}]
    assert json.loads(created.attributes["gen_ai.system_instructions"]) == [{"type": "text", "content": "Be brief."}]
    (answer,) = json.loads(created.attributes["gen_ai.output.messages"])
    assert answer == {"role": "assistant", "parts": [{"type": "text", "content": REPLY_TEXT}], "finish_reason": "stop"}
    (answer,) = json.loads(streamed.attributes["gen_ai.output.messages"])
    (part,) = answer["parts"]
    assert part["type"] == "tool_call" and part["name"] == "get_order" and answer["finish_reason"] == "tool_call"
    assert part["arguments"] == TOOL_INPUT, "the streamed tool input is assembled from its pieces"


def test_async_create_with_tools(spans: InMemorySpanExporter, run_async: RunAsync) -> None:
    message = run_async(lambda client: client.messages.create(**REQUEST, tools=TOOLS))
    assert message.content[0].name == "get_order"
    span = _only(spans)
    assert span.name == f"chat {MODEL}" and span.kind is SpanKind.CLIENT
    assert span.attributes["agentsight.gen_ai.tool_calls"] == ("get_order",)
    _assert_answer(span, "tool_use")


def test_stream_span_lasts_as_long_as_the_stream(spans: InMemorySpanExporter, client: anthropic.Anthropic) -> None:
    stream = client.messages.create(**REQUEST, stream=True)
    assert spans.get_finished_spans() == ()
    text = "".join(event.delta.text for event in stream if event.type == "content_block_delta")
    assert text == REPLY_TEXT
    span = _only(spans)
    _assert_answer(span)
    assert span.attributes["gen_ai.request.max_tokens"] == 64
    assert span.attributes["agentsight.llm.streaming"] is True


def test_async_stream_with_tools(spans: InMemorySpanExporter, run_async: RunAsync) -> None:
    async def main(client: anthropic.AsyncAnthropic) -> list[str]:
        stream = await client.messages.create(**REQUEST, tools=TOOLS, stream=True)
        assert spans.get_finished_spans() == ()
        return [event.type async for event in stream]

    assert run_async(main)[-1] == "message_stop"
    span = _only(spans)
    _assert_answer(span, "tool_use")
    assert span.attributes["agentsight.gen_ai.tool_calls"] == ("get_order",)


def test_stream_helper(spans: InMemorySpanExporter, client: anthropic.Anthropic, fake: FakeLLMServer) -> None:
    manager = client.messages.stream(**REQUEST)
    assert fake.requests == [] and spans.get_finished_spans() == (), "the call starts when the manager is entered"
    with manager as stream:
        assert "".join(stream.text_stream) == REPLY_TEXT
        assert stream.get_final_message().usage.output_tokens == OUTPUT
        assert spans.get_finished_spans() != (), "the span ends with the stream, before the with block does"
    span = _only(spans)
    assert span.name == f"chat {MODEL}" and span.kind is SpanKind.CLIENT
    assert span.attributes["agentsight.llm.streaming"] is True
    _assert_answer(span)
    with client.messages.stream(**REQUEST, tools=TOOLS) as stream:
        assert stream.get_final_message().content[0].input == TOOL_INPUT
    assert spans.get_finished_spans()[1].attributes["agentsight.gen_ai.tool_calls"] == ("get_order",)


def test_async_stream_helper(spans: InMemorySpanExporter, run_async: RunAsync) -> None:
    async def main(client: anthropic.AsyncAnthropic) -> None:
        async with client.messages.stream(**REQUEST, tools=TOOLS) as stream:
            message = await stream.get_final_message()
            assert message.stop_reason == "tool_use"
        async with client.messages.stream(**REQUEST) as stream:
            assert [text async for text in stream.text_stream]

    run_async(main)
    tools, text = spans.get_finished_spans()
    _assert_answer(tools, "tool_use")
    assert tools.attributes["agentsight.gen_ai.tool_calls"] == ("get_order",)
    _assert_answer(text)


@pytest.mark.skipif(not hasattr(anthropic.resources.messages.Messages, "parse"),
                    reason="messages.parse is newer than this anthropic release")
def test_parse_and_raw_responses(
    spans: InMemorySpanExporter, client: anthropic.Anthropic, run_async: RunAsync
) -> None:
    assert client.messages.parse(**REQUEST).content[0].text == REPLY_TEXT
    raw = client.messages.with_raw_response.create(**REQUEST)
    assert raw.headers["request-id"].startswith("req_fake_") and raw.parse().id.startswith("msg_fake_")

    async def main(client: anthropic.AsyncAnthropic) -> None:
        await client.messages.parse(**REQUEST)
        raw = await client.messages.with_raw_response.create(**REQUEST)
        assert (await raw.parse()).usage.output_tokens == OUTPUT

    run_async(main)
    finished = spans.get_finished_spans()
    assert len(finished) == 4
    for span in finished:
        _assert_answer(span)


# What the client raises for a 529: its own error class in later anthropic releases, a server error before.
_OVERLOADED = "OverloadedError" if hasattr(anthropic, "OverloadedError") else "InternalServerError"


def test_errors_are_recorded(spans: InMemorySpanExporter, client: anthropic.Anthropic, fake: FakeLLMServer) -> None:
    fake.fail_next(429)
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(**REQUEST)
    fake.disconnect_mid_stream_next(after_chunks=2)
    stream = client.messages.create(**REQUEST, stream=True)
    with pytest.raises(Exception) as cut:  # the HTTP library's error, as the client lets it through
        for _ in stream:
            pass
    fake.fail_next(529)
    with pytest.raises(anthropic.APIStatusError) as refusal, client.messages.stream(**REQUEST):
        pass
    fake.disconnect_mid_stream_next(after_chunks=1)
    with pytest.raises(type(cut.value)), client.messages.stream(**REQUEST) as helper:
        helper.get_final_text()
    refused, broken, overloaded, broken_helper = spans.get_finished_spans()
    assert refused.status.status_code is StatusCode.ERROR
    assert refused.attributes["error.type"] == "RateLimitError"
    assert overloaded.status.status_code is StatusCode.ERROR
    assert overloaded.attributes["error.type"] == type(refusal.value).__qualname__ == _OVERLOADED
    for span in (broken, broken_helper):
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes["error.type"] == type(cut.value).__qualname__
        assert span.attributes["gen_ai.usage.input_tokens"] == INPUT, "what the stream gave before it broke"
        assert "gen_ai.response.finish_reasons" not in span.attributes


def test_async_errors_are_recorded(
    spans: InMemorySpanExporter, run_async: RunAsync, fake: FakeLLMServer
) -> None:
    async def main(client: anthropic.AsyncAnthropic) -> type[BaseException]:
        fake.fail_next(429)
        with pytest.raises(anthropic.RateLimitError):
            await client.messages.create(**REQUEST)
        fake.fail_next(529)
        with pytest.raises(anthropic.APIStatusError):
            async with client.messages.stream(**REQUEST):
                pass
        fake.disconnect_mid_stream_next(after_chunks=1)
        stream = await client.messages.create(**REQUEST, stream=True)
        with pytest.raises(Exception) as cut:  # the HTTP library's error, as the client lets it through
            async for _ in stream:
                pass
        return type(cut.value)

    cut = run_async(main)
    refused, overloaded, broken = spans.get_finished_spans()
    assert all(span.status.status_code is StatusCode.ERROR for span in (refused, overloaded, broken))
    assert [span.attributes["error.type"] for span in (refused, overloaded, broken)] == [
        "RateLimitError", _OVERLOADED, cut.__qualname__]


class _Interrupted(BaseException):
    """Stops a request the way ``KeyboardInterrupt`` or a task's cancellation does."""


def test_interrupted_calls_end_without_error(
    spans: InMemorySpanExporter, fake: FakeLLMServer, run_async: RunAsync
) -> None:
    def interrupt(request: object) -> None:
        raise _Interrupted

    async def cancel(request: object) -> None:
        raise asyncio.CancelledError

    with anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="test", max_retries=0,
                             http_client=anthropic.DefaultHttpxClient(event_hooks={"request": [interrupt]})) as client:
        with pytest.raises(_Interrupted):
            client.messages.create(**REQUEST)
        with pytest.raises(_Interrupted), client.messages.stream(**REQUEST):
            pass

    async def main(client: anthropic.AsyncAnthropic) -> None:
        with pytest.raises(asyncio.CancelledError):
            await client.messages.create(**REQUEST)
        with pytest.raises(asyncio.CancelledError):
            async with client.messages.stream(**REQUEST):
                pass

    run_async(main, http_client=anthropic.DefaultAsyncHttpxClient(event_hooks={"request": [cancel]}))
    finished = spans.get_finished_spans()
    assert len(finished) == 4 and fake.requests == []
    assert all(span.status.status_code is StatusCode.UNSET and "error.type" not in span.attributes
               for span in finished), "the application stopped the call: no error of the call's own"


def test_stream_span_ends_once_on_break_close_and_abandon(
    spans: InMemorySpanExporter, client: anthropic.Anthropic
) -> None:
    with client.messages.create(**REQUEST, stream=True) as stream:
        for _ in stream:
            break
    assert len(spans.get_finished_spans()) == 1, "leaving the with block ends it"
    with client.messages.stream(**REQUEST) as helper:
        for _ in helper:
            break
    assert len(spans.get_finished_spans()) == 2, "leaving the helper's with block ends it"
    stream = client.messages.create(**REQUEST, stream=True)
    next(iter(stream))
    stream.close()
    stream.close()
    assert len(spans.get_finished_spans()) == 3, "close() ends it, once"
    stream = client.messages.create(**REQUEST, stream=True)
    next(iter(stream))
    helper = client.messages.stream(**REQUEST).__enter__()
    next(iter(helper))
    del stream, helper
    gc.collect()
    finished = spans.get_finished_spans()
    assert len(finished) == 5, "abandoned streams end when collected"
    assert all(span.end_time is not None and span.status.status_code is StatusCode.UNSET for span in finished)
    assert [span.attributes["gen_ai.usage.output_tokens"] for span in finished] == [1] * 5, "as far as it was read"


def test_async_stream_break_and_close(spans: InMemorySpanExporter, run_async: RunAsync) -> None:
    async def main(client: anthropic.AsyncAnthropic) -> None:
        async with await client.messages.create(**REQUEST, stream=True) as stream:
            async for _ in stream:
                break
        stream = await client.messages.create(**REQUEST, stream=True)
        await stream.__anext__()
        await stream.close()
        async with client.messages.stream(**REQUEST) as helper:
            async for _ in helper:
                break
        helper = await client.messages.stream(**REQUEST).__aenter__()
        await helper.__anext__()
        await helper.close()

    run_async(main)
    assert len(spans.get_finished_spans()) == 4


def test_suppressed_and_uninstrumented_calls_make_no_span(
    spans: InMemorySpanExporter, client: anthropic.Anthropic
) -> None:
    with suppress_instrumentation():
        client.messages.create(**REQUEST)
        with client.messages.stream(**REQUEST) as stream:
            stream.until_done()
    assert spans.get_finished_spans() == ()
    AnthropicInstrumentor().uninstrument()
    client.messages.create(**REQUEST)
    with client.messages.stream(**REQUEST) as stream:
        assert type(stream._raw_stream) is anthropic.Stream, "the helper's stream is the client's own again"
    assert spans.get_finished_spans() == ()
    module = importlib.import_module(MODULE)
    surfaces = [(getattr(module, cls), method) for cls, method in SURFACES if hasattr(getattr(module, cls), method)]
    assert surfaces and {wrapper_layers(*surface) for surface in surfaces} == {0}, "uninstrument() restored all"
    AnthropicInstrumentor().instrument()
    AnthropicInstrumentor().instrument()
    layers = {f"{owner.__name__}.{method}": wrapper_layers(owner, method) for owner, method in surfaces}
    assert set(layers.values()) == {1}, f"the second instrument() patched again: {layers}"
    client.messages.create(**REQUEST)
    assert spans.get_finished_spans() == (), "instrument() without a provider records with the global one (none)"


@pytest.mark.usefixtures("rest_wire")  # reads the model calls as REST actions
def test_calls_in_a_turn_count_in_it(
    spans: InMemorySpanExporter, client: anthropic.Anthropic, fake: FakeLLMServer, api: DevServer,
    tracker: ConversationTracker,
) -> None:
    turn_spans = InMemorySpanExporter()
    tracker._provider.add_span_processor(SimpleSpanProcessor(turn_spans))
    client.messages.create(**REQUEST)
    tracker.get_or_create_conversation("conv-claude")
    tracker.track_question("Where is my order?")
    client.messages.create(**REQUEST, tools=TOOLS)
    for _ in client.messages.create(**REQUEST, stream=True):
        pass
    with client.messages.stream(**REQUEST) as stream:
        stream.until_done()
    fake.fail_next(500)
    with pytest.raises(anthropic.InternalServerError):
        client.messages.create(**REQUEST)
    tracker.track_token_usage(prompt_tokens=1, completion_tokens=2, total_tokens=3)
    tracker.send_tracked_data()
    assert tracker.flush(10)["complete"]
    actions = bodies(api, "/api/action_logs/")
    (usage,) = [a for a in actions if a["action_name"] == "token_usage"]
    assert usage["metadata"] == {"prompt_tokens": 3 * INPUT + 1, "completion_tokens": 3 * OUTPUT + 2,
                                 "total_tokens": 3 * (INPUT + OUTPUT) + 3, "embedding_tokens": 0}
    calls = [a for a in actions if a["action_name"] != "token_usage"]
    assert [a["action_name"] for a in calls] == [f"chat anthropic/{ANSWER_MODEL}"] * 3 + [f"chat anthropic/{MODEL}"]
    assert calls[0]["tools_used"] == {"requested": ["get_order"]}
    assert "tools_used" not in calls[1] and "tools_used" not in calls[2]
    assert calls[0]["metadata"]["provider"] == "anthropic" and calls[0]["metadata"]["input_tokens"] == INPUT
    assert all({"started_at", "ended_at", "duration_ms"} <= set(call) for call in calls)
    assert "error_msg" in calls[3] and not any("error_msg" in call for call in calls[:3])
    (turn,) = [span for span in turn_spans.get_finished_spans() if span.name == "agentsight.conversation"]
    model_calls = [span for span in turn_spans.get_finished_spans() if span.name == f"chat {MODEL}"]
    assert len(model_calls) == 4 and all(span.parent.span_id == turn.context.span_id for span in model_calls)
    assert len(spans.get_finished_spans()) == 1, "only the call outside the turn went to the app's provider"


@pytest.mark.skipif("open_telemetry" not in inspect.signature(anthropic.Anthropic).parameters,
                    reason="this anthropic release has no spans of its own")
@pytest.mark.usefixtures("rest_wire")  # reads the model calls as REST actions
def test_the_clients_own_span_is_not_counted_again(
    spans: InMemorySpanExporter, fake: FakeLLMServer, run_async: RunAsync, api: DevServer,
    tracker: ConversationTracker,
) -> None:
    own_spans = InMemorySpanExporter()
    own_provider = TracerProvider()
    own_provider.add_span_processor(ModelCallAttribution())
    own_provider.add_span_processor(SimpleSpanProcessor(own_spans))
    turn_spans = InMemorySpanExporter()
    tracker._provider.add_span_processor(SimpleSpanProcessor(turn_spans))
    tracker.get_or_create_conversation("conv-own-spans")
    with anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="test", max_retries=0,
                             open_telemetry={"tracer_provider": own_provider}) as client:
        client.messages.create(**REQUEST)
        with client.messages.stream(**REQUEST) as stream:
            stream.until_done()

    async def helper(client: anthropic.AsyncAnthropic) -> None:
        async with client.messages.stream(**REQUEST) as stream:
            await stream.until_done()

    run_async(helper, open_telemetry={"tracer_provider": own_provider})
    tracker.send_tracked_data()
    assert tracker.flush(10)["complete"]
    own = own_spans.get_finished_spans()
    assert len(own) == 3 and all(span.attributes["gen_ai.operation.name"] == "chat" for span in own)
    ours = [span for span in turn_spans.get_finished_spans() if span.name == f"chat {MODEL}"]
    assert {span.parent.span_id for span in own} == {span.context.span_id for span in ours}, "its parent is ours"
    (usage,) = [a for a in bodies(api, "/api/action_logs/") if a["action_name"] == "token_usage"]
    assert usage["metadata"]["prompt_tokens"] == 3 * INPUT and usage["metadata"]["completion_tokens"] == 3 * OUTPUT
