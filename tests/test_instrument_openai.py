"""OpenAI instrumentation with the real ``openai`` client over HTTP to a fake provider."""

from __future__ import annotations

import asyncio
import copy
import gc
import importlib
import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from agentsight import ConversationTracker
from agentsight.dev import DevServer
from agentsight.dev.local_llm import CHAT_CACHED_TOKENS, CHAT_REASONING_TOKENS, FakeLLMServer
from agentsight.instrumentation.openai import SURFACES, OpenAIInstrumentor
from agentsight.spans.attribution import ModelCallAttribution
from tests.conftest import API_KEY, bodies, instrumented, run_script, wrapper_layers

MESSAGES = [{"role": "user", "content": "Where is my order?"}]
TOOLS = [{"type": "function", "function": {"name": "get_order", "parameters": {"type": "object", "properties": {}}}}]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Instrument openai with a provider whose finished spans the test can read."""
    with instrumented(OpenAIInstrumentor) as exporter:
        yield exporter


@pytest.fixture
def client(fake: FakeLLMServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0)


@pytest.fixture
def async_client(fake: FakeLLMServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0)


def _only(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = exporter.get_finished_spans()
    return span


def test_chat_create_span(spans: InMemorySpanExporter, client: openai.OpenAI, fake: FakeLLMServer) -> None:
    request = {"model": "gpt-4o-mini", "messages": copy.deepcopy(MESSAGES), "temperature": 0.2, "max_tokens": 50,
               "stop": ["END"], "seed": 7}
    kept = copy.deepcopy(request)
    client.chat.completions.create(**request)
    assert request == kept, "the caller's request is not modified"
    span = _only(spans)
    assert span.name == "chat gpt-4o-mini" and span.kind is SpanKind.CLIENT
    port = int(fake.url.rsplit(":", 1)[1])
    assert dict(span.attributes) == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.request.temperature": 0.2, "gen_ai.request.max_tokens": 50, "gen_ai.request.stop_sequences": ("END",),
        "gen_ai.request.seed": 7, "server.address": "127.0.0.1", "server.port": port,
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18", "gen_ai.response.id": "chatcmpl-fake-1",
        "gen_ai.response.finish_reasons": ("stop",), "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 7, "gen_ai.usage.cache_read.input_tokens": CHAT_CACHED_TOKENS,
        "gen_ai.usage.reasoning.output_tokens": CHAT_REASONING_TOKENS,
    }
    assert "gen_ai.input.messages" not in span.attributes, "no content without opting in"


def test_content_captured_when_asked(
    spans: InMemorySpanExporter, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    span = _only(spans)
    assert "Where is my order?" in span.attributes["gen_ai.input.messages"]
    assert "Hello from the fake model" in span.attributes["gen_ai.output.messages"]


def test_async_create_tool_calls_and_embeddings(spans: InMemorySpanExporter, async_client: openai.AsyncOpenAI) -> None:
    async def main() -> None:
        await async_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=TOOLS)
        await async_client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])

    asyncio.run(main())
    chat, embeddings = spans.get_finished_spans()
    assert chat.attributes["agentsight.gen_ai.tool_calls"] == ("get_order",)
    assert chat.attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert embeddings.name == "embeddings text-embedding-3-small"
    assert embeddings.attributes["gen_ai.operation.name"] == "embeddings"
    assert embeddings.attributes["gen_ai.usage.input_tokens"] == 5


def test_stream_usage_from_the_chunk_that_carries_it(spans: InMemorySpanExporter, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                            stream_options={"include_usage": True})
    assert spans.get_finished_spans() == (), "the span lasts as long as the stream"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "Hello from the fake model"
    span = _only(spans)
    assert span.attributes["gen_ai.usage.input_tokens"] == 11 and span.attributes["gen_ai.usage.output_tokens"] == 7
    assert span.attributes["gen_ai.usage.cache_read.input_tokens"] == CHAT_CACHED_TOKENS
    assert span.attributes["gen_ai.usage.reasoning.output_tokens"] == CHAT_REASONING_TOKENS
    assert span.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert span.attributes["agentsight.llm.streaming"] is True


def test_async_stream_and_stream_helper(spans: InMemorySpanExporter, async_client: openai.AsyncOpenAI,
                                        client: openai.OpenAI) -> None:
    async def main() -> None:
        stream = await async_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                            stream_options={"include_usage": True})
        async for _ in stream:
            pass

    asyncio.run(main())
    with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES, tools=TOOLS) as helper:
        for _ in helper:
            pass
        assert helper.get_final_completion().choices[0].finish_reason == "tool_calls"
    async_span, helper_span = spans.get_finished_spans()
    assert async_span.attributes["gen_ai.usage.output_tokens"] == 7
    assert helper_span.attributes["agentsight.gen_ai.tool_calls"] == ("get_order",)


def test_responses_api_create_and_stream(spans: InMemorySpanExporter, client: openai.OpenAI) -> None:
    client.responses.create(model="gpt-4.1", input="hi", max_output_tokens=30)
    for _ in client.responses.create(model="gpt-4.1", input="hi", stream=True):
        pass
    created, streamed = spans.get_finished_spans()
    for span in (created, streamed):
        assert span.name == "chat gpt-4.1"
        assert span.attributes["gen_ai.usage.input_tokens"] == 13
        assert span.attributes["gen_ai.usage.output_tokens"] == 8
        assert span.attributes["gen_ai.response.id"].startswith("resp_fake_")
    assert created.attributes["gen_ai.request.max_tokens"] == 30


def test_responses_api_cache_and_reasoning_tokens(
    spans: InMemorySpanExporter, client: openai.OpenAI, fake: FakeLLMServer
) -> None:
    usage = {"input_tokens": 30, "input_tokens_details": {"cached_tokens": 20}, "output_tokens": 9,
             "output_tokens_details": {"reasoning_tokens": 6}, "total_tokens": 39}
    fake.fail_next(200, body={"id": "resp_cached", "object": "response", "created_at": 0, "model": "gpt-4.1",
                              "status": "completed", "output": [], "parallel_tool_calls": True, "tool_choice": "auto",
                              "tools": [], "usage": usage})
    client.responses.create(model="gpt-4.1", input="hi")
    attributes = _only(spans).attributes
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (30, 9)
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 20
    assert attributes["gen_ai.usage.reasoning.output_tokens"] == 6
    assert "agentsight.llm.streaming" not in attributes


def test_with_raw_response_keeps_headers_and_parse(spans: InMemorySpanExporter, client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.headers["content-type"].startswith("application/json")
    assert raw.parse().usage.total_tokens == 18
    assert _only(spans).attributes["gen_ai.usage.output_tokens"] == 7


def test_parse(spans: InMemorySpanExporter, client: openai.OpenAI) -> None:
    client.chat.completions.parse(model="gpt-4o-mini", messages=MESSAGES)
    assert _only(spans).attributes["gen_ai.usage.input_tokens"] == 11


def test_errors_are_recorded(spans: InMemorySpanExporter, client: openai.OpenAI, fake: FakeLLMServer) -> None:
    fake.fail_next(429, retry_after="1")
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    fake.disconnect_mid_stream_next(after_chunks=2)
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    with pytest.raises(Exception):  # noqa: B017 - openai.APIError, or the HTTP library's own error in openai 1
        for _ in stream:
            pass
    refused, broken = spans.get_finished_spans()
    assert refused.status.status_code is StatusCode.ERROR
    assert refused.attributes["error.type"] == "RateLimitError"
    assert broken.status.status_code is StatusCode.ERROR and "error.type" in broken.attributes


def test_stream_span_ends_once_on_break_close_and_abandon(spans: InMemorySpanExporter, client: openai.OpenAI) -> None:
    with client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True) as stream:
        for _ in stream:
            break
    assert len(spans.get_finished_spans()) == 1, "leaving the with block ends it"
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    next(iter(stream))
    stream.close()
    stream.close()
    assert len(spans.get_finished_spans()) == 2, "close() ends it, once"
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    next(iter(stream))
    del stream
    gc.collect()
    assert len(spans.get_finished_spans()) == 3, "an abandoned stream ends when collected"
    assert all(span.end_time is not None for span in spans.get_finished_spans())


def test_async_stream_break_and_aclose(spans: InMemorySpanExporter, async_client: openai.AsyncOpenAI) -> None:
    async def main() -> None:
        async with await async_client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        ) as stream:
            async for _ in stream:
                break
        stream = await async_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        await stream.__anext__()
        await stream.close()

    asyncio.run(main())
    assert len(spans.get_finished_spans()) == 2


def test_suppressed_and_uninstrumented_calls_make_no_span(spans: InMemorySpanExporter, client: openai.OpenAI) -> None:
    with suppress_instrumentation():
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert spans.get_finished_spans() == ()
    OpenAIInstrumentor().uninstrument()
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert spans.get_finished_spans() == ()
    assert {wrapper_layers(getattr(importlib.import_module(module), cls), method)
            for module, cls, method, _ in SURFACES} == {0}, "uninstrument() restored every method"
    OpenAIInstrumentor().instrument()
    OpenAIInstrumentor().instrument()
    layers = {f"{cls}.{method}": wrapper_layers(getattr(importlib.import_module(module), cls), method)
              for module, cls, method, _ in SURFACES}
    assert set(layers.values()) == {1}, f"the second instrument() patched again: {layers}"
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert spans.get_finished_spans() == (), "instrument() without a provider records with the global one (none)"


def test_no_state_left_per_call(
    spans: InMemorySpanExporter, client: openai.OpenAI, tracker: ConversationTracker
) -> None:
    tracker.get_or_create_conversation("conv-many")
    for _ in range(200):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    tracker.send_tracked_data()
    router = tracker._router
    remembered = router._model_calls._ledger.inside.values()  # shared by the process: other tests' calls too
    assert not [call for call in remembered if call.turn.conversation_id == "conv-many"], (
        "no span is remembered once it ended")


@pytest.mark.usefixtures("rest_wire")  # reads the model calls as REST actions
def test_calls_in_a_turn_count_in_it(
    spans: InMemorySpanExporter, client: openai.OpenAI, fake: FakeLLMServer, api: DevServer,
    tracker: ConversationTracker,
) -> None:
    turn_spans = InMemorySpanExporter()
    tracker._provider.add_span_processor(SimpleSpanProcessor(turn_spans))
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    tracker.get_or_create_conversation("conv-llm")
    tracker.track_question("Where is my order?")
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=TOOLS)
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                            stream_options={"include_usage": True}):
        pass
    client.embeddings.create(model="text-embedding-3-small", input="order")
    fake.fail_next(500)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    tracker.track_token_usage(prompt_tokens=1, completion_tokens=2, total_tokens=3)
    tracker.track_answer("It ships today.")
    tracker.send_tracked_data()
    assert tracker.flush(10)["complete"]
    actions = bodies(api, "/api/action_logs/")
    usage = [a for a in actions if a["action_name"] == "token_usage"]
    assert [u["metadata"] for u in usage] == [
        {"prompt_tokens": 23, "completion_tokens": 16, "total_tokens": 44, "embedding_tokens": 5}]
    calls = [a for a in actions if a["action_name"] != "token_usage"]
    assert [a["action_name"] for a in calls] == [
        "chat openai/gpt-4o-mini-2024-07-18", "chat openai/gpt-4o-mini-2024-07-18",
        "embeddings openai/text-embedding-3-small-2024-07-18", "chat openai/gpt-4o-mini"]
    assert calls[0]["tools_used"] == {"requested": ["get_order"]}
    assert calls[0]["metadata"]["provider"] == "openai" and calls[0]["metadata"]["input_tokens"] == 11
    details = {"cache_read_tokens": CHAT_CACHED_TOKENS, "reasoning_tokens": CHAT_REASONING_TOKENS}
    assert calls[0]["metadata"].items() >= details.items() and "streaming" not in calls[0]["metadata"]
    assert calls[1]["metadata"].items() >= {**details, "streaming": True}.items()
    assert all({"started_at", "ended_at", "duration_ms"} <= set(call) for call in calls)
    assert "error_msg" in calls[3] and "error_msg" not in calls[0]
    (outside,) = spans.get_finished_spans()
    assert "gen_ai.conversation.id" not in outside.attributes, "only the call outside the turn went to the app's"
    model_calls = [span for span in turn_spans.get_finished_spans() if "gen_ai.operation.name" in span.attributes]
    assert len(model_calls) == 4
    assert {span.attributes["gen_ai.conversation.id"] for span in model_calls} == {"conv-llm"}


def test_a_conversation_id_the_call_names_itself_is_kept(tracker: ConversationTracker) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(ModelCallAttribution())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("peer")
    tracker.get_or_create_conversation("conv-own")
    tracker.track_question("Where is my order?")
    named_one = {"gen_ai.operation.name": "chat", "gen_ai.conversation.id": "thread-9"}
    tracer.start_span("chat a", attributes=named_one).end()
    tracer.start_span("chat b", attributes={"gen_ai.operation.name": "chat"}).end()
    tracker.send_tracked_data()
    named, unnamed = exporter.get_finished_spans()
    assert named.attributes["gen_ai.conversation.id"] == "thread-9", "e.g. the provider's own conversation"
    assert unnamed.attributes["gen_ai.conversation.id"] == "conv-own"
    assert {span.attributes["agentsight.conversation.id"] for span in (named, unnamed)} == {"conv-own"}


@pytest.mark.usefixtures("rest_wire")  # reads the model calls as REST actions
def test_other_instrumentations_count_once_and_nested_spans_not_again(
    api: DevServer, fake: FakeLLMServer, tmp_path: Path
) -> None:
    result = run_script(tmp_path, """
    import json
    import httpx, openai
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from agentsight import ConversationTracker, instrument

    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    app_tracer = trace.get_tracer("opentelemetry.instrumentation.official")

    def genai_span(name, input_tokens, output_tokens):
        attributes = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                      "gen_ai.request.model": "m", "gen_ai.usage.input_tokens": input_tokens,
                      "gen_ai.usage.output_tokens": output_tokens}
        app_tracer.start_span(name, attributes=attributes).end()

    def client_span_inside_the_call(request):
        genai_span("the client's own span", 1000, 1000)

    tracker = ConversationTracker()
    print(json.dumps(instrument()))
    client = openai.OpenAI(base_url=BASE_URL, api_key="test", max_retries=0,
                           http_client=httpx.Client(event_hooks={"request": [client_span_inside_the_call]}))
    tracker.get_or_create_conversation("conv-mixed")
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    genai_span("chat by the official instrumentation", 100, 50)
    tracker.send_tracked_data()
    tracker.flush(10)
    print(json.dumps(sorted(span.name for span in memory.get_finished_spans())))
    """.replace("BASE_URL", repr(fake.openai_base_url)),
        {"AGENTSIGHT_API_KEY": API_KEY, "AGENTSIGHT_API_ENDPOINT": api.url, "AGENTSIGHT_AUTO_INSTRUMENT": "false",
         "PYTHONPATH": str(Path.cwd())})
    assert result.returncode == 0, result.stderr
    instrumented, app_spans = (json.loads(line) for line in result.stdout.strip().splitlines()[-2:])
    assert instrumented[:5] == ["openai", "anthropic", "groq", "mistralai", "ollama"], "every client installed"
    assert app_spans == ["agentsight.conversation", "chat by the official instrumentation", "chat gpt-4o-mini",
                         "the client's own span"], "every span still reaches the app's own pipeline"
    (usage,) = [a for a in bodies(api, "/api/action_logs/") if a["action_name"] == "token_usage"]
    assert usage["metadata"] == {"prompt_tokens": 111, "completion_tokens": 57, "total_tokens": 168,
                                 "embedding_tokens": 0}
    calls = [a["action_name"] for a in bodies(api, "/api/action_logs/") if a["action_name"] != "token_usage"]
    assert calls == ["chat openai/gpt-4o-mini-2024-07-18", "chat openai/m"]
