"""Groq, Mistral AI and Ollama instrumentation with the real clients over HTTP to a fake provider."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import types
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from agentsight import ConversationTracker
from agentsight.dev import DevServer
from agentsight.dev.local_llm import CHAT_USAGE, MISTRAL_USAGE, OLLAMA_USAGE, REPLY_TEXT, FakeLLMServer
from agentsight.instrumentation.groq import GroqInstrumentor
from agentsight.instrumentation.mistralai import MistralAIInstrumentor
from agentsight.instrumentation.ollama import OllamaInstrumentor
from tests.conftest import bodies, instrumented, released_before, run_script

if TYPE_CHECKING:
    import groq
    import mistralai.client as mistral
    import ollama
else:  # the clients are test-only extras: skip, rather than fail collection, where they are not installed
    groq = pytest.importorskip("groq")
    mistral = pytest.importorskip("mistralai.client")
    if not hasattr(mistral, "Mistral"):  # mistralai < 2: the package itself is the client
        mistral = pytest.importorskip("mistralai")
    ollama = pytest.importorskip("ollama")

# Typed `Any` so the clients' typed parameters take these plain literals.
MESSAGES: Any = [{"role": "user", "content": "Where is my order?"}]
TOOLS: Any = [
    {"type": "function", "function": {"name": "get_order", "parameters": {"type": "object", "properties": {}}}}
]
GROQ_MODEL, MISTRAL_MODEL, OLLAMA_MODEL = "llama-3.3-70b-versatile", "mistral-small-latest", "llama3.2"
INCLUDE_USAGE: Any = {"stream_options": {"include_usage": True}}  # Groq's client has no stream_options argument
INSTRUMENTORS: tuple[type[BaseInstrumentor], ...] = (GroqInstrumentor, MistralAIInstrumentor, OllamaInstrumentor)
MISTRAL_ERRORS: Any = getattr(mistral, "errors", None) or mistral.models  # mistralai < 2: errors are models
# mistralai's streams: plain generators before 1.2.4 (no `with`), then EventStreams, with close() only from 2.
MISTRAL_STREAM_WITH = not released_before("mistralai", "1.2.4")
MISTRAL_STREAM_CLOSE = released_before("mistralai", "1.2.4") or not released_before("mistralai", "2")


def mistral_stream_block(stream: Any) -> Any:
    """The stream itself as the ``with`` block, or no block where mistralai's streams have none."""
    return stream if MISTRAL_STREAM_WITH else contextlib.nullcontext()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Instrument the three clients with a provider whose finished spans the test can read."""
    with instrumented(*INSTRUMENTORS) as exporter:
        yield exporter


@pytest.fixture
def groq_client(fake: FakeLLMServer) -> groq.Groq:
    return groq.Groq(base_url=fake.groq_base_url, api_key="test", max_retries=0)


@pytest.fixture
def mistral_client(fake: FakeLLMServer) -> mistral.Mistral:
    """Sync and async calls in one client; the SDK does not retry unless told to."""
    return mistral.Mistral(server_url=fake.mistral_server_url, api_key="test")


@pytest.fixture
def ollama_client(fake: FakeLLMServer) -> ollama.Client:
    return ollama.Client(host=fake.ollama_host)


def _ended_twice(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The SDK's warnings that a span was ended a second time (or written to once ended)."""
    return [record.getMessage() for record in caplog.records if "ended span" in record.getMessage()]


def _only(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = exporter.get_finished_spans()
    return span


def _server(fake: FakeLLMServer) -> dict[str, Any]:
    return {"server.address": "127.0.0.1", "server.port": int(fake.url.rsplit(":", 1)[1])}


def _usage(span: ReadableSpan) -> tuple[Any, Any]:
    return span.attributes.get("gen_ai.usage.input_tokens"), span.attributes.get("gen_ai.usage.output_tokens")


def _assert_errors(exporter: InMemorySpanExporter, *error_types: str) -> None:
    finished = exporter.get_finished_spans()
    assert [span.status.status_code for span in finished] == [StatusCode.ERROR] * len(error_types)
    assert [span.attributes.get("error.type") for span in finished] == list(error_types)


# -- Groq -------------------------------------------------------------------------------------------


def test_groq_chat_span(spans: InMemorySpanExporter, groq_client: groq.Groq, fake: FakeLLMServer) -> None:
    groq_client.chat.completions.create(model=GROQ_MODEL, messages=MESSAGES, temperature=0.2, max_tokens=50,
                                        stop=["END"], seed=7)
    span = _only(spans)
    assert span.name == f"chat {GROQ_MODEL}" and span.kind is SpanKind.CLIENT
    assert dict(span.attributes) == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "groq", "gen_ai.request.model": GROQ_MODEL,
        "gen_ai.request.temperature": 0.2, "gen_ai.request.max_tokens": 50, "gen_ai.request.stop_sequences": ("END",),
        "gen_ai.request.seed": 7, **_server(fake),
        "gen_ai.response.model": f"{GROQ_MODEL}-2024-07-18", "gen_ai.response.id": "chatcmpl-fake-1",
        "gen_ai.response.finish_reasons": ("stop",), "gen_ai.usage.input_tokens": 11, "gen_ai.usage.output_tokens": 7,
    }
    assert fake.requests[0].path == "/openai/v1/chat/completions"


def test_groq_stream_ends_once_with_its_usage(
    spans: InMemorySpanExporter, groq_client: groq.Groq, caplog: pytest.LogCaptureFixture
) -> None:
    stream = groq_client.chat.completions.create(model=GROQ_MODEL, messages=MESSAGES, stream=True,
                                                 extra_body=INCLUDE_USAGE)
    assert spans.get_finished_spans() == (), "the span lasts as long as the stream"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    stream.close()
    assert text == REPLY_TEXT
    span = _only(spans)
    assert _usage(span) == (11, 7) and span.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert _ended_twice(caplog) == []


def test_groq_stream_usage_from_x_groq(spans: InMemorySpanExporter, groq_client: groq.Groq) -> None:
    for _ in groq_client.chat.completions.create(model=GROQ_MODEL, messages=MESSAGES, stream=True):
        pass
    assert _usage(_only(spans)) == (11, 7), "Groq sends a stream's usage in x_groq, unasked"


def test_groq_async_stream_tool_calls_and_embeddings(spans: InMemorySpanExporter, fake: FakeLLMServer) -> None:
    async def main() -> None:
        client = groq.AsyncGroq(base_url=fake.groq_base_url, api_key="test", max_retries=0)
        await client.chat.completions.create(model=GROQ_MODEL, messages=MESSAGES, tools=TOOLS)
        stream = await client.chat.completions.create(model=GROQ_MODEL, messages=MESSAGES, stream=True,
                                                      extra_body=INCLUDE_USAGE)
        async for _ in stream:
            pass
        await client.embeddings.create(model="nomic-embed-text", input=["a", "b"])

    asyncio.run(main())
    tools, streamed, embeddings = spans.get_finished_spans()
    assert tools.attributes["agentsight.gen_ai.tool_calls"] == ("get_order",)
    assert _usage(streamed) == (11, 7)
    assert embeddings.name == "embeddings nomic-embed-text"
    assert embeddings.attributes["gen_ai.provider.name"] == "groq"
    assert embeddings.attributes["gen_ai.usage.input_tokens"] == 5


def test_groq_errors_are_recorded(spans: InMemorySpanExporter, groq_client: groq.Groq, fake: FakeLLMServer) -> None:
    fake.fail_next(429)
    with pytest.raises(groq.RateLimitError):
        groq_client.chat.completions.create(model=GROQ_MODEL, messages=MESSAGES)
    _assert_errors(spans, "RateLimitError")


# -- Mistral AI -------------------------------------------------------------------------------------


def test_mistral_chat_span(spans: InMemorySpanExporter, mistral_client: mistral.Mistral, fake: FakeLLMServer) -> None:
    mistral_client.chat.complete(model=MISTRAL_MODEL, messages=MESSAGES, temperature=0.2, max_tokens=50, top_p=0.9,
                                 stop="END", random_seed=7, tools=TOOLS)
    span = _only(spans)
    assert span.name == f"chat {MISTRAL_MODEL}" and span.kind is SpanKind.CLIENT
    assert dict(span.attributes) == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "mistral_ai", "gen_ai.request.model": MISTRAL_MODEL,
        "gen_ai.request.temperature": 0.2, "gen_ai.request.max_tokens": 50, "gen_ai.request.top_p": 0.9,
        "gen_ai.request.stop_sequences": ("END",), "gen_ai.request.seed": 7, **_server(fake),
        "gen_ai.response.model": f"{MISTRAL_MODEL}-2503", "gen_ai.response.id": "cmpl-fake-1",
        "gen_ai.response.finish_reasons": ("tool_calls",), "gen_ai.usage.input_tokens": 14,
        "gen_ai.usage.output_tokens": 9, "agentsight.gen_ai.tool_calls": ("get_order",),
    }
    assert "gen_ai.input.messages" not in span.attributes, "no content without opting in"


def test_mistral_stream_ends_once_with_its_usage(
    spans: InMemorySpanExporter, mistral_client: mistral.Mistral, caplog: pytest.LogCaptureFixture
) -> None:
    stream = mistral_client.chat.stream(model=MISTRAL_MODEL, messages=MESSAGES)
    assert spans.get_finished_spans() == (), "the span lasts as long as the stream"
    with mistral_stream_block(stream):
        text = "".join(event.data.choices[0].delta.content or "" for event in stream)
    assert text == REPLY_TEXT
    for _ in mistral_client.chat.stream(model=MISTRAL_MODEL, messages=MESSAGES, tools=TOOLS):
        pass
    plain, tools = spans.get_finished_spans()
    assert _usage(plain) == (14, 9) and plain.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert plain.attributes["gen_ai.response.id"] == "cmpl-fake-1"
    assert tools.attributes["agentsight.gen_ai.tool_calls"] == ("get_order",)
    assert _ended_twice(caplog) == []


@pytest.mark.skipif(not MISTRAL_STREAM_WITH, reason="mistralai's streams have no `with` before 1.2.4")
def test_mistral_stream_ends_on_leaving_its_with_block(
    spans: InMemorySpanExporter, mistral_client: mistral.Mistral
) -> None:
    with mistral_client.chat.stream(model=MISTRAL_MODEL, messages=MESSAGES) as stream:
        for _ in stream:
            break
    assert len(spans.get_finished_spans()) == 1, "leaving the with block ends it"


@pytest.mark.skipif(not MISTRAL_STREAM_CLOSE, reason="mistralai's streams have no close() from 1.2.4 until 2.0")
def test_mistral_stream_ends_once_on_close(spans: InMemorySpanExporter, mistral_client: mistral.Mistral) -> None:
    stream = mistral_client.chat.stream(model=MISTRAL_MODEL, messages=MESSAGES)
    next(stream)
    stream.close()
    stream.close()
    assert len(spans.get_finished_spans()) == 1, "close() ends it, once"


def test_mistral_stream_abandoned_ends_when_collected(
    spans: InMemorySpanExporter, mistral_client: mistral.Mistral
) -> None:
    stream = mistral_client.chat.stream(model=MISTRAL_MODEL, messages=MESSAGES)
    next(stream)
    del stream
    gc.collect()
    assert len(spans.get_finished_spans()) == 1, "an abandoned stream ends when collected"


def test_mistral_async_complete_stream_and_embeddings(
    spans: InMemorySpanExporter, mistral_client: mistral.Mistral
) -> None:
    async def main() -> None:
        await mistral_client.chat.complete_async(model=MISTRAL_MODEL, messages=MESSAGES)
        stream = await mistral_client.chat.stream_async(model=MISTRAL_MODEL, messages=MESSAGES)
        async for _ in stream:
            pass
        await mistral_client.embeddings.create_async(model="mistral-embed", inputs=["a", "b"])

    asyncio.run(main())
    completed, streamed, embeddings = spans.get_finished_spans()
    assert _usage(completed) == (14, 9) and _usage(streamed) == (14, 9)
    assert embeddings.name == "embeddings mistral-embed"
    assert embeddings.attributes["gen_ai.usage.input_tokens"] == 4
    assert embeddings.attributes["gen_ai.response.model"] == "mistral-embed-2503"


@pytest.mark.skipif(released_before("mistralai", "2"), reason="mistralai's async streams have close() from 2.0")
def test_mistral_async_stream_ends_on_close(spans: InMemorySpanExporter, mistral_client: mistral.Mistral) -> None:
    async def main() -> None:
        stream = await mistral_client.chat.stream_async(model=MISTRAL_MODEL, messages=MESSAGES)
        await stream.__anext__()
        await stream.close()

    asyncio.run(main())
    closed = _only(spans)
    assert closed.attributes["gen_ai.response.id"] == "cmpl-fake-1" and _usage(closed) == (None, None)


def test_mistral_errors_are_recorded(
    spans: InMemorySpanExporter, mistral_client: mistral.Mistral, fake: FakeLLMServer
) -> None:
    fake.fail_next(429)
    with pytest.raises(MISTRAL_ERRORS.SDKError):
        mistral_client.chat.complete(model=MISTRAL_MODEL, messages=MESSAGES)
    fake.disconnect_mid_stream_next(after_chunks=2)
    with pytest.raises(Exception) as broken:  # noqa: B017 - whichever error the transport raises is recorded
        for _ in mistral_client.chat.stream(model=MISTRAL_MODEL, messages=MESSAGES):
            pass
    assert len(fake.requests) == 2, "the client did not retry"
    _assert_errors(spans, "SDKError", type(broken.value).__qualname__)


# -- Ollama -----------------------------------------------------------------------------------------


def test_ollama_chat_span(spans: InMemorySpanExporter, ollama_client: ollama.Client, fake: FakeLLMServer) -> None:
    options = {"temperature": 0.2, "num_predict": 50, "top_k": 40, "seed": 7, "stop": ["END"]}
    ollama_client.chat(OLLAMA_MODEL, MESSAGES, options=options)  # model and messages given by position
    span = _only(spans)
    assert span.name == f"chat {OLLAMA_MODEL}" and span.kind is SpanKind.CLIENT
    assert dict(span.attributes) == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "ollama", "gen_ai.request.model": OLLAMA_MODEL,
        "gen_ai.request.temperature": 0.2, "gen_ai.request.max_tokens": 50, "gen_ai.request.top_k": 40,
        "gen_ai.request.seed": 7, "gen_ai.request.stop_sequences": ("END",), **_server(fake),
        "gen_ai.response.model": f"{OLLAMA_MODEL}:latest", "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 19, "gen_ai.usage.output_tokens": 6,
    }


def test_ollama_stream_ends_once_with_its_usage(
    spans: InMemorySpanExporter, ollama_client: ollama.Client, caplog: pytest.LogCaptureFixture
) -> None:
    stream = ollama_client.chat(model=OLLAMA_MODEL, messages=MESSAGES, stream=True)
    assert spans.get_finished_spans() == (), "the span lasts as long as the stream"
    text = "".join(part.message.content or "" for part in stream)
    assert text == REPLY_TEXT
    stream.close()
    for _ in ollama_client.chat(model=OLLAMA_MODEL, messages=MESSAGES, stream=True, tools=TOOLS):
        pass
    plain, tools = spans.get_finished_spans()
    assert _usage(plain) == (19, 6) and plain.attributes["gen_ai.response.model"] == f"{OLLAMA_MODEL}:latest"
    assert tools.attributes["agentsight.gen_ai.tool_calls"] == ("get_order",)
    assert _ended_twice(caplog) == []


def test_ollama_stream_ends_on_break_close_and_abandon(
    spans: InMemorySpanExporter, ollama_client: ollama.Client
) -> None:
    for _ in ollama_client.chat(model=OLLAMA_MODEL, messages=MESSAGES, stream=True):
        break
    gc.collect()
    assert len(spans.get_finished_spans()) == 1, "a stream left by break ends when collected"
    stream = ollama_client.chat(model=OLLAMA_MODEL, messages=MESSAGES, stream=True)
    next(stream)
    stream.close()
    stream.close()
    assert len(spans.get_finished_spans()) == 2, "close() ends it, once"
    assert all(_usage(span) == (None, None) for span in spans.get_finished_spans()), "no counts before the end"


def test_ollama_async_chat_stream_and_embed(spans: InMemorySpanExporter, fake: FakeLLMServer) -> None:
    async def main() -> None:
        client = ollama.AsyncClient(host=fake.ollama_host)
        await client.chat(model=OLLAMA_MODEL, messages=MESSAGES, tools=TOOLS)
        async for _ in await client.chat(model=OLLAMA_MODEL, messages=MESSAGES, stream=True):
            pass
        stream = await client.chat(model=OLLAMA_MODEL, messages=MESSAGES, stream=True)
        await stream.__anext__()
        await stream.aclose()
        await client.embed(model="all-minilm", input=["a", "b"])

    asyncio.run(main())
    tools, streamed, closed, embeddings = spans.get_finished_spans()
    assert tools.attributes["agentsight.gen_ai.tool_calls"] == ("get_order",)
    assert _usage(streamed) == (19, 6) and _usage(closed) == (None, None)
    assert embeddings.name == "embeddings all-minilm"
    assert dict(embeddings.attributes) == {
        "gen_ai.operation.name": "embeddings", "gen_ai.provider.name": "ollama", "gen_ai.request.model": "all-minilm",
        **_server(fake), "gen_ai.response.model": "all-minilm:latest", "gen_ai.usage.input_tokens": 3,
    }


def test_ollama_errors_are_recorded(
    spans: InMemorySpanExporter, ollama_client: ollama.Client, fake: FakeLLMServer
) -> None:
    fake.fail_next(500)
    with pytest.raises(ollama.ResponseError):
        ollama_client.chat(model=OLLAMA_MODEL, messages=MESSAGES)
    fake.fail_next(429)
    stream = ollama_client.chat(model=OLLAMA_MODEL, messages=MESSAGES, stream=True)
    with pytest.raises(ollama.ResponseError):
        next(stream)  # a streamed chat sends its request when iteration starts
    fake.disconnect_mid_stream_next(after_chunks=2)
    with pytest.raises(Exception) as broken:  # noqa: B017 - whichever error the transport raises is recorded
        for _ in ollama_client.chat(model=OLLAMA_MODEL, messages=MESSAGES, stream=True):
            pass
    _assert_errors(spans, "ResponseError", "ResponseError", type(broken.value).__qualname__)


def test_ollama_module_functions_are_instrumented_and_restored(
    spans: InMemorySpanExporter, fake: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ollama.chat.__self__._client, "base_url", fake.ollama_host)
    ollama.chat(model=OLLAMA_MODEL, messages=MESSAGES)
    ollama.embed(model="all-minilm", input="order")
    assert [span.name for span in spans.get_finished_spans()] == [f"chat {OLLAMA_MODEL}", "embeddings all-minilm"]
    OllamaInstrumentor().uninstrument()
    ollama.chat(model=OLLAMA_MODEL, messages=MESSAGES)
    assert len(spans.get_finished_spans()) == 2
    assert type(ollama.chat) is types.MethodType and ollama.chat.__func__ is ollama.Client.chat, "the plain one is back"


# -- All three --------------------------------------------------------------------------------------


def _call_each(groq_client: groq.Groq, mistral_client: mistral.Mistral, ollama_client: ollama.Client) -> None:
    groq_client.chat.completions.create(model=GROQ_MODEL, messages=MESSAGES)
    for _ in mistral_client.chat.stream(model=MISTRAL_MODEL, messages=MESSAGES):
        pass
    ollama_client.chat(model=OLLAMA_MODEL, messages=MESSAGES)


def test_content_captured_when_asked(
    spans: InMemorySpanExporter, groq_client: groq.Groq, mistral_client: mistral.Mistral,
    ollama_client: ollama.Client, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    _call_each(groq_client, mistral_client, ollama_client)
    for _ in ollama_client.chat(model=OLLAMA_MODEL, messages=MESSAGES, stream=True):
        pass
    mistral_client.chat.complete(model=MISTRAL_MODEL, messages=MESSAGES)
    finished = spans.get_finished_spans()
    assert len(finished) == 5
    for span in finished:
        assert "Where is my order?" in span.attributes["gen_ai.input.messages"]
        assert REPLY_TEXT in span.attributes["gen_ai.output.messages"]


def test_suppressed_and_uninstrumented_calls_make_no_span(
    spans: InMemorySpanExporter, groq_client: groq.Groq, mistral_client: mistral.Mistral, ollama_client: ollama.Client
) -> None:
    with suppress_instrumentation():
        _call_each(groq_client, mistral_client, ollama_client)
    assert spans.get_finished_spans() == ()
    for instrumentor in INSTRUMENTORS:
        instrumentor().uninstrument()
    _call_each(groq_client, mistral_client, ollama_client)
    assert spans.get_finished_spans() == ()
    for instrumentor in INSTRUMENTORS:
        instrumentor().instrument()
        instrumentor().instrument()
    _call_each(groq_client, mistral_client, ollama_client)
    assert spans.get_finished_spans() == (), "instrument() again uses the global provider, not the last one"
    methods = [vars(cls)[name] for cls, name in ((groq.resources.chat.completions.Completions, "create"),
                                                 (mistral.chat.Chat, "stream"), (ollama.Client, "chat"))]
    assert [(isinstance(method, wrapt.FunctionWrapper), isinstance(method.__wrapped__, wrapt.FunctionWrapper))
            for method in methods] == [(True, False)] * 3, "wrapped once each"


def test_the_modules_load_without_the_libraries(tmp_path: Path) -> None:
    result = run_script(tmp_path, """
    import json, sys
    for name in ("groq", "mistralai", "ollama"):
        sys.modules[name] = None  # importing it fails
    from agentsight.instrumentation.groq import GroqInstrumentor
    from agentsight.instrumentation.mistralai import MistralAIInstrumentor
    from agentsight.instrumentation.ollama import OllamaInstrumentor
    instrumentors = (GroqInstrumentor, MistralAIInstrumentor, OllamaInstrumentor)
    print(json.dumps([list(instrumentor().instrumentation_dependencies()) for instrumentor in instrumentors]))
    """, {})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [["groq >= 0.13, < 2"], ["mistralai >= 1.2, < 4"], ["ollama >= 0.4, < 0.7"]]


@pytest.mark.usefixtures("rest_wire")  # reads the model calls as REST actions
def test_a_turn_counts_the_calls_to_all_three(
    spans: InMemorySpanExporter, groq_client: groq.Groq, mistral_client: mistral.Mistral,
    ollama_client: ollama.Client, api: DevServer, tracker: ConversationTracker,
) -> None:
    tracker.get_or_create_conversation("conv-more")
    tracker.track_question("Where is my order?")
    _call_each(groq_client, mistral_client, ollama_client)
    tracker.track_answer("It ships today.")
    tracker.send_tracked_data()
    assert tracker.flush(10)["complete"]
    actions = bodies(api, "/api/action_logs/")
    (usage,) = [a["metadata"] for a in actions if a["action_name"] == "token_usage"]
    prompt = CHAT_USAGE["prompt_tokens"] + MISTRAL_USAGE["prompt_tokens"] + OLLAMA_USAGE["prompt_eval_count"]
    completion = CHAT_USAGE["completion_tokens"] + MISTRAL_USAGE["completion_tokens"] + OLLAMA_USAGE["eval_count"]
    assert usage == {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                     "embedding_tokens": 0}
    assert (prompt, completion) == (44, 22)
    calls = [a for a in actions if a["action_name"] != "token_usage"]
    assert [a["action_name"] for a in calls] == [
        f"chat groq/{GROQ_MODEL}-2024-07-18", f"chat mistral_ai/{MISTRAL_MODEL}-2503",
        f"chat ollama/{OLLAMA_MODEL}:latest"]
    assert [call["metadata"]["input_tokens"] for call in calls] == [11, 14, 19]
    assert spans.get_finished_spans() == (), "calls in a turn are the tracker's, not the app provider's"
