"""Ollama ``generate`` and Mistral ``fim`` / ``agents``: the real clients calling the stand-in model over HTTP,
sync, async and streamed, as ``text_completion`` (and agent ``chat``) spans counted in the turn."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from agentsight import ConversationTracker
from agentsight.dev import DevServer
from agentsight.dev.local_llm import MISTRAL_USAGE, OLLAMA_USAGE, REPLY_TEXT, FakeLLMServer
from agentsight.instrumentation.mistralai import MistralAIInstrumentor
from agentsight.instrumentation.ollama import OllamaInstrumentor
from tests.conftest import instrumented
from tests.test_instrument_more import MISTRAL_ERRORS, mistral_stream_block

if TYPE_CHECKING:
    import mistralai.client as mistral
    import ollama
else:  # the clients are test-only extras: skip, rather than fail collection, where they are not installed
    mistral = pytest.importorskip("mistralai.client")
    if not hasattr(mistral, "Mistral"):  # mistralai < 2: the package itself is the client
        mistral = pytest.importorskip("mistralai")
    ollama = pytest.importorskip("ollama")

MESSAGES: Any = [{"role": "user", "content": "Where is my order?"}]
OLLAMA_MODEL, FIM_MODEL, AGENT_ID = "llama3.2", "codestral-latest", "ag_0123"
OLLAMA_TOKENS = (OLLAMA_USAGE["prompt_eval_count"], OLLAMA_USAGE["eval_count"])
MISTRAL_TOKENS = (MISTRAL_USAGE["prompt_tokens"], MISTRAL_USAGE["completion_tokens"])


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with instrumented(OllamaInstrumentor, MistralAIInstrumentor) as exporter:
        yield exporter


@pytest.fixture
def ollama_client(fake: FakeLLMServer) -> ollama.Client:
    return ollama.Client(host=fake.ollama_host)


@pytest.fixture
def mistral_client(fake: FakeLLMServer) -> mistral.Mistral:
    return mistral.Mistral(server_url=fake.mistral_server_url, api_key="test")


def _usage(span: ReadableSpan) -> tuple[Any, Any]:
    return span.attributes.get("gen_ai.usage.input_tokens"), span.attributes.get("gen_ai.usage.output_tokens")


def _server(fake: FakeLLMServer) -> dict[str, Any]:
    return {"server.address": "127.0.0.1", "server.port": int(fake.url.rsplit(":", 1)[1])}


# -- Ollama generate --------------------------------------------------------------------------------


def test_ollama_generate_span(spans: InMemorySpanExporter, ollama_client: ollama.Client, fake: FakeLLMServer) -> None:
    options = {"temperature": 0.2, "num_predict": 50, "seed": 7}
    answer = ollama_client.generate(OLLAMA_MODEL, "Why is the sky blue?", options=options)  # model, prompt by position
    assert answer.response == REPLY_TEXT and answer.done
    (span,) = spans.get_finished_spans()
    assert span.name == f"text_completion {OLLAMA_MODEL}" and span.kind is SpanKind.CLIENT
    assert dict(span.attributes) == {
        "gen_ai.operation.name": "text_completion", "gen_ai.provider.name": "ollama",
        "gen_ai.request.model": OLLAMA_MODEL, "gen_ai.request.temperature": 0.2, "gen_ai.request.max_tokens": 50,
        "gen_ai.request.seed": 7, **_server(fake), "gen_ai.response.model": f"{OLLAMA_MODEL}:latest",
        "gen_ai.response.finish_reasons": ("stop",), "gen_ai.usage.input_tokens": OLLAMA_TOKENS[0],
        "gen_ai.usage.output_tokens": OLLAMA_TOKENS[1],
    }
    assert [request.path for request in fake.requests] == ["/api/generate"]


def test_ollama_generate_stream_ends_once_with_its_counts(
    spans: InMemorySpanExporter, ollama_client: ollama.Client
) -> None:
    stream = ollama_client.generate(model=OLLAMA_MODEL, prompt="Why?", stream=True)
    assert spans.get_finished_spans() == (), "the span lasts as long as the stream"
    assert "".join(part.response for part in stream) == REPLY_TEXT
    stream = ollama_client.generate(model=OLLAMA_MODEL, prompt="Why?", stream=True)
    next(stream)
    stream.close()
    streamed, closed = spans.get_finished_spans()
    assert _usage(streamed) == OLLAMA_TOKENS and streamed.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert _usage(closed) == (None, None), "no counts before the end"


def test_ollama_async_generate_and_stream(spans: InMemorySpanExporter, fake: FakeLLMServer) -> None:
    async def main() -> None:
        client = ollama.AsyncClient(host=fake.ollama_host)
        await client.generate(model=OLLAMA_MODEL, prompt="Why?")
        async for _ in await client.generate(model=OLLAMA_MODEL, prompt="Why?", stream=True):
            pass

    asyncio.run(main())
    assert [(span.name, _usage(span)) for span in spans.get_finished_spans()] == [
        (f"text_completion {OLLAMA_MODEL}", OLLAMA_TOKENS)] * 2


def test_ollama_module_generate_is_instrumented_and_restored(
    spans: InMemorySpanExporter, fake: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ollama.generate.__self__._client, "base_url", fake.ollama_host)
    ollama.generate(model=OLLAMA_MODEL, prompt="Why?")
    assert [span.name for span in spans.get_finished_spans()] == [f"text_completion {OLLAMA_MODEL}"]
    OllamaInstrumentor().uninstrument()
    ollama.generate(model=OLLAMA_MODEL, prompt="Why?")
    assert len(spans.get_finished_spans()) == 1
    assert type(ollama.generate) is types.MethodType and ollama.generate.__func__ is ollama.Client.generate


def test_ollama_generate_errors_are_recorded(
    spans: InMemorySpanExporter, ollama_client: ollama.Client, fake: FakeLLMServer
) -> None:
    fake.fail_next(500)
    with pytest.raises(ollama.ResponseError):
        ollama_client.generate(model=OLLAMA_MODEL, prompt="Why?")
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR and span.attributes["error.type"] == "ResponseError"


# -- Mistral FIM and agents -------------------------------------------------------------------------


def test_mistral_fim_span(spans: InMemorySpanExporter, mistral_client: mistral.Mistral, fake: FakeLLMServer) -> None:
    answer = mistral_client.fim.complete(model=FIM_MODEL, prompt="def add(a, b):", suffix="return total",
                                         temperature=0.2, max_tokens=50, stop=["\n\n"], random_seed=7)
    assert answer.choices[0].message.content == REPLY_TEXT
    (span,) = spans.get_finished_spans()
    assert span.name == f"text_completion {FIM_MODEL}"
    assert dict(span.attributes) == {
        "gen_ai.operation.name": "text_completion", "gen_ai.provider.name": "mistral_ai",
        "gen_ai.request.model": FIM_MODEL, "gen_ai.request.temperature": 0.2, "gen_ai.request.max_tokens": 50,
        "gen_ai.request.stop_sequences": ("\n\n",), "gen_ai.request.seed": 7, **_server(fake),
        "gen_ai.response.model": f"{FIM_MODEL}-2503", "gen_ai.response.id": "cmpl-fake-1",
        "gen_ai.response.finish_reasons": ("stop",), "gen_ai.usage.input_tokens": MISTRAL_TOKENS[0],
        "gen_ai.usage.output_tokens": MISTRAL_TOKENS[1],
    }
    assert [request.path for request in fake.requests] == ["/mistral/v1/fim/completions"]


def test_mistral_fim_stream_sync_and_async(spans: InMemorySpanExporter, mistral_client: mistral.Mistral) -> None:
    stream = mistral_client.fim.stream(model=FIM_MODEL, prompt="def add(a, b):")
    assert spans.get_finished_spans() == (), "the span lasts as long as the stream"
    with mistral_stream_block(stream):
        assert "".join(event.data.choices[0].delta.content or "" for event in stream) == REPLY_TEXT

    async def main() -> None:
        await mistral_client.fim.complete_async(model=FIM_MODEL, prompt="def add(a, b):")
        async for _ in await mistral_client.fim.stream_async(model=FIM_MODEL, prompt="def add(a, b):"):
            pass

    asyncio.run(main())
    finished = spans.get_finished_spans()
    assert [(span.name, _usage(span)) for span in finished] == [(f"text_completion {FIM_MODEL}", MISTRAL_TOKENS)] * 3


def test_mistral_agents_calls_name_their_agent(spans: InMemorySpanExporter, mistral_client: mistral.Mistral) -> None:
    mistral_client.agents.complete(agent_id=AGENT_ID, messages=MESSAGES)
    for _ in mistral_client.agents.stream(agent_id=AGENT_ID, messages=MESSAGES):
        pass

    async def main() -> None:
        await mistral_client.agents.complete_async(agent_id=AGENT_ID, messages=MESSAGES)
        async for _ in await mistral_client.agents.stream_async(agent_id=AGENT_ID, messages=MESSAGES):
            pass

    asyncio.run(main())
    finished = spans.get_finished_spans()
    assert len(finished) == 4
    for span in finished:
        assert span.name == "chat" and span.attributes["gen_ai.agent.id"] == AGENT_ID
        assert "gen_ai.request.model" not in span.attributes, "an agents call names no model"
        assert span.attributes["gen_ai.response.model"] == "fake-model-2503" and _usage(span) == MISTRAL_TOKENS


def test_mistral_fim_errors_are_recorded(
    spans: InMemorySpanExporter, mistral_client: mistral.Mistral, fake: FakeLLMServer
) -> None:
    fake.fail_next(429)
    with pytest.raises(MISTRAL_ERRORS.SDKError):
        mistral_client.fim.complete(model=FIM_MODEL, prompt="def add(a, b):")
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR and span.attributes["error.type"] == "SDKError"


# -- Both -------------------------------------------------------------------------------------------


def test_sync_embeddings_count_their_input_tokens(
    spans: InMemorySpanExporter, ollama_client: ollama.Client, mistral_client: mistral.Mistral
) -> None:
    ollama_client.embed(model="all-minilm", input=["a", "b"])
    mistral_client.embeddings.create(model="mistral-embed", inputs=["a", "b"])
    assert [(span.name, span.attributes["gen_ai.provider.name"], _usage(span)) for span in spans.get_finished_spans()] \
        == [("embeddings all-minilm", "ollama", (3, None)), ("embeddings mistral-embed", "mistral_ai", (4, None))]


def test_prompts_and_completions_captured_when_asked(
    spans: InMemorySpanExporter, ollama_client: ollama.Client, mistral_client: mistral.Mistral,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    ollama_client.generate(model=OLLAMA_MODEL, prompt="Why is the sky blue?", system="Be brief.")
    for _ in ollama_client.generate(model=OLLAMA_MODEL, prompt="Why is the sky blue?", stream=True):
        pass
    mistral_client.fim.complete(model=FIM_MODEL, prompt="Why is the sky blue?", suffix="Because.")
    generated, streamed, filled = spans.get_finished_spans()
    assert "Be brief." in generated.attributes["gen_ai.input.messages"]
    assert "Because." in filled.attributes["gen_ai.input.messages"]
    for span in (generated, streamed, filled):
        assert "Why is the sky blue?" in span.attributes["gen_ai.input.messages"]
        assert REPLY_TEXT in span.attributes["gen_ai.output.messages"]


@pytest.mark.parametrize("protocol", ["ingest", "rest"])
def test_a_turn_counts_generate_fim_and_agents_calls(
    spans: InMemorySpanExporter, ollama_client: ollama.Client, mistral_client: mistral.Mistral,
    api: DevServer, make_tracker: Any, protocol: str,
) -> None:
    tracker: ConversationTracker = make_tracker(protocol=protocol)
    with tracker.conversation("conv-completions"):
        tracker.track_question("Where is my order?")
        for _ in ollama_client.generate(model=OLLAMA_MODEL, prompt="Why?", stream=True):
            pass
        mistral_client.fim.complete(model=FIM_MODEL, prompt="def add(a, b):")
        mistral_client.agents.complete(agent_id=AGENT_ID, messages=MESSAGES)
        tracker.track_answer("It ships today.")
    assert tracker.flush(10)["complete"]
    found = api.store.find_conversation("conv-completions")
    assert found is not None
    detail = api.store.get_conversation(found["id"])
    assert detail is not None
    calls = [action["action_name"] for action in detail["actions"] if action["action_name"] != "token_usage"]
    assert calls == [f"text_completion ollama/{OLLAMA_MODEL}:latest", f"text_completion mistral_ai/{FIM_MODEL}-2503",
                     "chat mistral_ai/fake-model-2503"]
    assert detail["tokens"]["prompt_tokens"] == OLLAMA_TOKENS[0] + 2 * MISTRAL_TOKENS[0]
    assert detail["tokens"]["completion_tokens"] == OLLAMA_TOKENS[1] + 2 * MISTRAL_TOKENS[1]
    assert spans.get_finished_spans() == (), "calls in a turn are the tracker's, not the app provider's"
