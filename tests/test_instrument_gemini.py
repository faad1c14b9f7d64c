"""google-genai (Gemini) instrumentation with the real client over HTTP to the stand-in model."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from agentsight import ConversationTracker
from agentsight.dev import DevServer
from agentsight.dev.local_llm import GEMINI_EMBED_USAGE, GEMINI_USAGE, REPLY_TEXT, FakeLLMServer
from agentsight.instrumentation.google_genai import GoogleGenAIInstrumentor
from agentsight.spans import semconv as sc
from tests.conftest import bodies, instrumented, released_before

if TYPE_CHECKING:
    from google import genai
else:  # the client is a test-only extra: skip, rather than fail collection, where it is not installed
    genai = pytest.importorskip("google.genai")

MODEL, EMBED_MODEL = "gemini-2.0-flash", "text-embedding-004"
TOOLS: Any = [{"function_declarations": [{"name": "get_order", "description": "Look an order up"}]}]
INPUT = GEMINI_USAGE["promptTokenCount"]
OUTPUT = GEMINI_USAGE["candidatesTokenCount"] + GEMINI_USAGE["thoughtsTokenCount"]  # reasoning is output too
# What older google-genai releases drop from an answer, so no span can have it: thoughtsTokenCount before 1.8
# (the output still counts those tokens, from the total), responseId before 1.4, an embedding's usage before 3.1.
THOUGHTS_SEEN, ID_SEEN = not released_before("google-genai", "1.8"), not released_before("google-genai", "1.4")
EMBED_TOKENS = None if released_before("google-genai", "3.1") else GEMINI_EMBED_USAGE["promptTokenCount"]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with instrumented(GoogleGenAIInstrumentor) as exporter:
        yield exporter


@pytest.fixture
def client(fake: FakeLLMServer) -> genai.Client:
    return genai.Client(api_key="test", http_options={"base_url": fake.gemini_base_url})


def _only(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = exporter.get_finished_spans()
    return span


def _usage(span: ReadableSpan) -> tuple[Any, Any]:
    return span.attributes.get("gen_ai.usage.input_tokens"), span.attributes.get("gen_ai.usage.output_tokens")


def _ended_twice(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if "ended span" in record.getMessage()]


def test_generate_content_span(spans: InMemorySpanExporter, client: genai.Client, fake: FakeLLMServer) -> None:
    response = client.models.generate_content(model=MODEL, contents="Where is my order?",
                                              config={"temperature": 0.2, "max_output_tokens": 50, "seed": 7})
    assert response.text == REPLY_TEXT
    span = _only(spans)
    assert span.name == f"generate_content {MODEL}" and span.kind is SpanKind.CLIENT
    assert dict(span.attributes) == {
        "gen_ai.operation.name": "generate_content", "gen_ai.provider.name": "gcp.gemini",
        "gen_ai.request.model": MODEL, "gen_ai.request.temperature": 0.2, "gen_ai.request.max_tokens": 50,
        "gen_ai.request.seed": 7, "server.address": "127.0.0.1", "server.port": int(fake.url.rsplit(":", 1)[1]),
        "gen_ai.response.model": f"{MODEL}-001", "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": INPUT, "gen_ai.usage.output_tokens": OUTPUT,
        "gen_ai.usage.cache_read.input_tokens": 5,
        **({"gen_ai.response.id": "gemini-fake-1"} if ID_SEEN else {}),
        **({"gen_ai.usage.reasoning.output_tokens": 2} if THOUGHTS_SEEN else {}),
    }


def test_tool_call_is_recorded(spans: InMemorySpanExporter, client: genai.Client) -> None:
    client.models.generate_content(model=MODEL, contents="Where is my order?", config={"tools": TOOLS})
    assert _only(spans).attributes[sc.GEN_AI_TOOL_CALLS] == ("get_order",)


def test_stream_ends_once_with_the_last_usage(
    spans: InMemorySpanExporter, client: genai.Client, caplog: pytest.LogCaptureFixture
) -> None:
    stream = client.models.generate_content_stream(model=MODEL, contents="Where is my order?")
    assert spans.get_finished_spans() == (), "nothing is sent before the stream is read"
    assert "".join(chunk.text or "" for chunk in stream) == REPLY_TEXT
    span = _only(spans)
    assert _usage(span) == (INPUT, OUTPUT), "the chunks before the last carry the prompt's tokens only"
    assert span.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert _ended_twice(caplog) == []


def test_stream_left_early_ends_its_span_once(
    spans: InMemorySpanExporter, client: genai.Client, caplog: pytest.LogCaptureFixture
) -> None:
    stream = client.models.generate_content_stream(model=MODEL, contents="Where is my order?")
    assert next(iter(stream)).text == "Hello"
    stream.close()
    del stream
    gc.collect()
    span = _only(spans)
    assert span.status.status_code is StatusCode.UNSET and _ended_twice(caplog) == []


def test_error_answer_fails_the_span(spans: InMemorySpanExporter, client: genai.Client, fake: FakeLLMServer) -> None:
    fake.fail_next(400, {"error": {"code": 400, "message": "bad contents", "status": "INVALID_ARGUMENT"}})
    with pytest.raises(genai.errors.ClientError):
        client.models.generate_content(model=MODEL, contents="Where is my order?")
    span = _only(spans)
    assert span.status.status_code is StatusCode.ERROR and span.attributes["error.type"] == "ClientError"


def test_embeddings_span(spans: InMemorySpanExporter, client: genai.Client, fake: FakeLLMServer) -> None:
    response = client.models.embed_content(model=EMBED_MODEL, contents=["order", "refund"])
    assert len(response.embeddings or []) == 2
    span = _only(spans)
    assert span.attributes["gen_ai.operation.name"] == "embeddings"
    assert span.attributes.get("gen_ai.usage.input_tokens") == EMBED_TOKENS
    assert fake.requests[0].path.endswith(f"/models/{EMBED_MODEL}:batchEmbedContents")


def test_async_calls_and_stream(spans: InMemorySpanExporter, client: genai.Client) -> None:
    async def main() -> str:
        await client.aio.models.generate_content(model=MODEL, contents="Where is my order?")
        stream = await client.aio.models.generate_content_stream(model=MODEL, contents="Where is my order?")
        text = "".join([chunk.text or "" async for chunk in stream])
        await client.aio.models.embed_content(model=EMBED_MODEL, contents="order")
        return text

    assert asyncio.run(main()) == REPLY_TEXT
    finished = spans.get_finished_spans()
    assert [span.attributes["gen_ai.operation.name"] for span in finished] == [
        "generate_content", "generate_content", "embeddings"]
    assert [_usage(span) for span in finished[:2]] == [(INPUT, OUTPUT)] * 2


def test_async_stream_left_early_ends_its_span_once(
    spans: InMemorySpanExporter, client: genai.Client, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        stream = await client.aio.models.generate_content_stream(model=MODEL, contents="Where is my order?")
        async for _ in stream:
            break
        await stream.aclose()

    asyncio.run(main())
    gc.collect()
    assert len(spans.get_finished_spans()) == 1 and _ended_twice(caplog) == []


@pytest.mark.usefixtures("rest_wire")  # reads the model calls as REST actions
def test_a_turn_counts_each_call_once(
    spans: InMemorySpanExporter, client: genai.Client, api: DevServer, tracker: ConversationTracker
) -> None:
    tracker.get_or_create_conversation("conv-gemini")
    tracker.track_question("Where is my order?")
    client.models.generate_content(model=MODEL, contents="Where is my order?")
    for _ in client.models.generate_content_stream(model=MODEL, contents="Where is my order?"):
        pass
    client.models.embed_content(model=EMBED_MODEL, contents="order")
    tracker.track_answer("It ships today.")
    tracker.send_tracked_data()
    assert tracker.flush(10)["complete"]
    actions = bodies(api, "/api/action_logs/")
    (usage,) = [a["metadata"] for a in actions if a["action_name"] == "token_usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (2 * INPUT, 2 * OUTPUT)
    assert usage["embedding_tokens"] == (EMBED_TOKENS or 0)
    calls = [a["action_name"] for a in actions if a["action_name"] != "token_usage"]
    assert calls == [f"generate_content gcp.gemini/{MODEL}-001"] * 2 + [f"embeddings gcp.gemini/{EMBED_MODEL}"]
    assert spans.get_finished_spans() == (), "calls in a turn are the tracker's, not the app provider's"
