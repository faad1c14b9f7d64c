"""Client surfaces the instrumentation must see: Mistral imported after the tracker, OpenAI streams of ``n``
choices and ``responses.parse``, and the cloud platforms' clients (Azure OpenAI, Anthropic on Vertex AI and
Bedrock) named as their providers. The real clients, over HTTP to the stand-in model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel

from agentsight.dev import DevServer
from agentsight.dev.local_llm import (
    ANTHROPIC_USAGE,
    CHAT_USAGE,
    MISTRAL_USAGE,
    REPLY_TEXT,
    RESPONSES_USAGE,
    TOOL_INPUT,
    FakeLLMServer,
)
from agentsight.instrumentation.anthropic import AnthropicInstrumentor
from agentsight.instrumentation.genai import CAPTURE_CONTENT_ENV
from agentsight.instrumentation.openai import OpenAIInstrumentor
from tests.conftest import API_KEY, bodies, instrumented, released_before, run_script

if TYPE_CHECKING:
    import anthropic
    import openai
else:  # the clients are test-only extras: skip, rather than fail collection, where they are not installed
    anthropic = pytest.importorskip("anthropic")
    openai = pytest.importorskip("openai")

# Typed `Any` so the clients' typed parameters take these plain literals.
MESSAGES: Any = [{"role": "user", "content": "Where is my order?"}]
OPENAI_MODEL, CLAUDE_MODEL = "gpt-4o-mini", "claude-fake-model"
INCLUDE_USAGE: Any = {"include_usage": True}
# AWS keys (signed requests) work with every anthropic release; Bedrock API keys only with later ones.
AWS_KEYS: Any = {"aws_access_key": "testing", "aws_secret_key": "testing", "aws_region": "us-east-1"}


class City(BaseModel):
    """What ``responses.parse`` reads the reply into."""

    city: str


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """OpenAI and Anthropic instrumented with a provider whose finished spans the test can read."""
    with instrumented(OpenAIInstrumentor, AnthropicInstrumentor) as exporter:
        yield exporter


def _only(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = exporter.get_finished_spans()
    return span


def _usage(span: ReadableSpan) -> tuple[Any, Any]:
    return span.attributes.get("gen_ai.usage.input_tokens"), span.attributes.get("gen_ai.usage.output_tokens")


# -- Mistral imported after the tracker -------------------------------------------------------------


@pytest.mark.skipif(released_before("mistralai", "2"), reason="mistralai is a namespace package from 2.0")
@pytest.mark.usefixtures("rest_wire")  # reads the model call as a REST action
@pytest.mark.parametrize("namespace_first", [False, True], ids=["tracker-first", "namespace-imported-first"])
def test_mistral_imported_after_the_tracker_counts_in_its_turn(
    api: DevServer, fake: FakeLLMServer, tmp_path: Path, namespace_first: bool
) -> None:
    """``mistralai`` >= 2 is a namespace package: the client module's import is what instruments it, and the
    namespace's own import (before or after the tracker) imports nothing more."""
    source = f"""
    import sys
    {"import mistralai" if namespace_first else ""}
    from agentsight import ConversationTracker

    tracker = ConversationTracker()
    import mistralai
    assert "mistralai.client" not in sys.modules, "nothing is imported just to be instrumented"
    from mistralai.client import Mistral

    tracker.get_or_create_conversation("conv-mistral")
    tracker.track_question("Where is my order?")
    Mistral(server_url={fake.mistral_server_url!r}, api_key="test").chat.complete(
        model="mistral-small-latest", messages=[{{"role": "user", "content": "hi"}}])
    tracker.send_tracked_data()
    """
    result = run_script(tmp_path, source, {"AGENTSIGHT_API_KEY": API_KEY, "AGENTSIGHT_API_ENDPOINT": api.url,
                                           "PYTHONPATH": str(Path.cwd()), "AGENTSIGHT_AUTO_INSTRUMENT": "true"})
    assert result.returncode == 0, result.stderr
    actions = bodies(api, "/api/action_logs/")
    assert [a["action_name"] for a in actions] == ["chat mistral_ai/mistral-small-latest-2503", "token_usage"]
    prompt, completion = MISTRAL_USAGE["prompt_tokens"], MISTRAL_USAGE["completion_tokens"]
    assert actions[-1]["metadata"] == {"prompt_tokens": prompt, "completion_tokens": completion,
                                       "total_tokens": prompt + completion, "embedding_tokens": 0}


# -- OpenAI: streams of n choices ---------------------------------------------------------------------


def test_a_stream_of_n_choices_keeps_them_apart(
    spans: InMemorySpanExporter, fake: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CAPTURE_CONTENT_ENV, "true")
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0)
    texts: dict[int, str] = {}
    for chunk in client.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES, n=2, stream=True,
                                                stream_options=INCLUDE_USAGE):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    assert texts == {0: REPLY_TEXT, 1: REPLY_TEXT}, "the stand-in streams each choice, interleaved"
    span = _only(spans)
    assert span.attributes["gen_ai.request.choice.count"] == 2
    assert span.attributes["gen_ai.response.finish_reasons"] == ("stop", "stop")
    answer = {"role": "assistant", "parts": [{"type": "text", "content": REPLY_TEXT}], "finish_reason": "stop"}
    assert json.loads(str(span.attributes["gen_ai.output.messages"])) == [answer, answer]
    assert _usage(span) == (CHAT_USAGE["prompt_tokens"], CHAT_USAGE["completion_tokens"])


def test_a_stream_of_n_tool_calls_names_each(spans: InMemorySpanExporter, fake: FakeLLMServer) -> None:
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0)
    tools: Any = [{"type": "function", "function": {"name": "get_order", "parameters": {"type": "object"}}}]
    completion = client.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES, n=2, tools=tools)
    assert [choice.index for choice in completion.choices] == [0, 1]
    for _ in client.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES, n=2, tools=tools, stream=True):
        pass
    plain, streamed = spans.get_finished_spans()
    for span in (plain, streamed):
        assert span.attributes["gen_ai.response.finish_reasons"] == ("tool_calls", "tool_calls")
        assert span.attributes["agentsight.gen_ai.tool_calls"] == ("get_order", "get_order")


# -- OpenAI: responses.parse ------------------------------------------------------------------------


def test_responses_parse_is_a_model_call(spans: InMemorySpanExporter, fake: FakeLLMServer) -> None:
    fake.reply_text = json.dumps(TOOL_INPUT)

    async def parse_async() -> Any:
        client = openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0)
        return await client.responses.parse(model=OPENAI_MODEL, input="Where?", text_format=City)

    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0)
    parsed = client.responses.parse(model=OPENAI_MODEL, input="Where?", text_format=City, max_output_tokens=50)
    assert parsed.output_parsed == City(city="Paris")
    assert asyncio.run(parse_async()).output_parsed == City(city="Paris")
    sync_span, async_span = spans.get_finished_spans()
    for span in (sync_span, async_span):
        assert span.name == f"chat {OPENAI_MODEL}"
        assert span.attributes["gen_ai.provider.name"] == "openai"
        assert span.attributes["gen_ai.response.finish_reasons"] == ("completed",)
        assert _usage(span) == (RESPONSES_USAGE["input_tokens"], RESPONSES_USAGE["output_tokens"])
    assert sync_span.attributes["gen_ai.request.max_tokens"] == 50


# -- the cloud platforms' clients --------------------------------------------------------------------


def test_azure_openai_on_any_host_is_azure(spans: InMemorySpanExporter, fake: FakeLLMServer) -> None:
    options: Any = {"azure_endpoint": fake.azure_endpoint, "api_key": "test", "api_version": "2024-10-21",
                    "max_retries": 0}

    async def create_async() -> None:
        await openai.AsyncAzureOpenAI(**options).chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES)

    client = openai.AzureOpenAI(**options)
    client.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES)
    asyncio.run(create_async())
    client.embeddings.create(model="text-embedding-3-small", input="Where is my order?")
    deployments = f"/openai/deployments/{OPENAI_MODEL}"
    assert [request.path for request in fake.requests] == [
        f"{deployments}/chat/completions", f"{deployments}/chat/completions",
        "/openai/deployments/text-embedding-3-small/embeddings"]
    *chats, embeddings = spans.get_finished_spans()
    for span in (*chats, embeddings):
        assert span.attributes["gen_ai.provider.name"] == "azure.ai.openai"
        assert span.attributes["server.address"] == "127.0.0.1"
    for span in chats:
        assert _usage(span) == (CHAT_USAGE["prompt_tokens"], CHAT_USAGE["completion_tokens"])
    assert embeddings.attributes["gen_ai.operation.name"] == "embeddings"


def test_anthropic_on_vertex_ai_is_vertex_ai(spans: InMemorySpanExporter, fake: FakeLLMServer) -> None:
    client = anthropic.AnthropicVertex(region="us-east5", project_id="proj", access_token="test",
                                       base_url=fake.vertex_base_url, max_retries=0)
    client.messages.create(model=CLAUDE_MODEL, max_tokens=64, messages=MESSAGES)
    with client.messages.stream(model=CLAUDE_MODEL, max_tokens=64, messages=MESSAGES) as stream:
        assert stream.get_final_text() == REPLY_TEXT
    assert [request.path.rsplit(":", 1)[1] for request in fake.requests] == ["rawPredict", "streamRawPredict"]
    for span in spans.get_finished_spans():
        assert span.attributes["gen_ai.provider.name"] == "gcp.vertex_ai"
        assert span.attributes["gen_ai.response.model"] == f"{CLAUDE_MODEL}-20241022"
        assert _usage(span) == (ANTHROPIC_USAGE["input_tokens"], ANTHROPIC_USAGE["output_tokens"])


def test_anthropic_on_bedrock_is_bedrock(spans: InMemorySpanExporter, fake: FakeLLMServer) -> None:
    async def create_async() -> None:
        client = anthropic.AsyncAnthropicBedrock(**AWS_KEYS, base_url=fake.bedrock_base_url, max_retries=0)
        await client.messages.create(model=CLAUDE_MODEL, max_tokens=64, messages=MESSAGES)

    client = anthropic.AnthropicBedrock(**AWS_KEYS, base_url=fake.bedrock_base_url, max_retries=0)
    client.messages.create(model=CLAUDE_MODEL, max_tokens=64, messages=MESSAGES)
    asyncio.run(create_async())
    with client.messages.stream(model=CLAUDE_MODEL, max_tokens=64, messages=MESSAGES) as stream:
        assert stream.get_final_text() == REPLY_TEXT, "AWS event-stream chunks, decoded by the client"
    assert [request.path for request in fake.requests] == [f"/model/{CLAUDE_MODEL}/invoke"] * 2 + [
        f"/model/{CLAUDE_MODEL}/invoke-with-response-stream"]
    finished = spans.get_finished_spans()
    assert len(finished) == 3
    for span in finished:
        assert span.attributes["gen_ai.provider.name"] == "aws.bedrock"
        assert _usage(span) == (ANTHROPIC_USAGE["input_tokens"], ANTHROPIC_USAGE["output_tokens"])
