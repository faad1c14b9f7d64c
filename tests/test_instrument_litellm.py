"""LiteLLM instrumentation: the real ``litellm`` calling the stand-in model over HTTP through its OpenAI route
(the OpenAI SDK) and its Anthropic route (its own HTTP client), sync, async and streamed, counted once."""

from __future__ import annotations

import asyncio
import gc
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from agentsight import ConversationTracker
from agentsight.dev import DevServer
from agentsight.dev.local_llm import (
    ANTHROPIC_USAGE,
    CHAT_CACHED_TOKENS,
    CHAT_REASONING_TOKENS,
    CHAT_USAGE,
    REPLY_TEXT,
    FakeLLMServer,
)
from agentsight.instrumentation.anthropic import AnthropicInstrumentor
from agentsight.instrumentation.litellm import SURFACES, LiteLLMInstrumentor
from agentsight.instrumentation.openai import OpenAIInstrumentor
from tests.conftest import WRAPPER, instrumented, released_before, run_script

# LiteLLM fetches its model price list over the network as it is imported, unless told to use its own copy.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

if TYPE_CHECKING:
    import anthropic
    import litellm
    import openai
else:  # a test-only extra: skip, rather than fail collection, where it is not installed
    litellm = pytest.importorskip("litellm")
    openai = pytest.importorskip("openai")
    anthropic = pytest.importorskip("anthropic")

MESSAGES: Any = [{"role": "user", "content": "Where is my order?"}]
TOOLS: Any = [
    {"type": "function", "function": {"name": "get_order", "parameters": {"type": "object", "properties": {}}}}
]
OPENAI_MODEL, ANTHROPIC_MODEL = "openai/gpt-4o-mini", "anthropic/claude-3-5-haiku"
INCLUDE_USAGE: Any = {"include_usage": True}


@pytest.fixture(autouse=True)
def quiet_litellm(monkeypatch: pytest.MonkeyPatch) -> None:
    """No callbacks and no "Provider List" hints on stdout; LiteLLM's own retries off."""
    monkeypatch.setattr(litellm, "suppress_debug_info", True)
    monkeypatch.setattr(litellm, "callbacks", [])
    monkeypatch.setattr(litellm, "success_callback", [])
    monkeypatch.setattr(litellm, "failure_callback", [])
    monkeypatch.setattr(litellm, "num_retries", 0)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """LiteLLM instrumented, and the OpenAI and Anthropic SDKs too (LiteLLM may call them inside)."""
    with instrumented(OpenAIInstrumentor, AnthropicInstrumentor, LiteLLMInstrumentor) as exporter:
        yield exporter


def _routes(fake: FakeLLMServer) -> dict[str, dict[str, Any]]:
    """Keyword arguments sending a call to the stand-in through LiteLLM's OpenAI or Anthropic route."""
    return {
        "openai": {"model": OPENAI_MODEL, "api_base": fake.openai_base_url, "api_key": "test", "max_retries": 0},
        "anthropic": {"model": ANTHROPIC_MODEL, "api_base": fake.url, "api_key": "test", "max_tokens": 64},
    }


def _usage(span: ReadableSpan) -> tuple[Any, Any]:
    return span.attributes.get("gen_ai.usage.input_tokens"), span.attributes.get("gen_ai.usage.output_tokens")


def _server(fake: FakeLLMServer) -> dict[str, Any]:
    return {"server.address": "127.0.0.1", "server.port": int(fake.url.rsplit(":", 1)[1])}


def test_completion_span_through_the_openai_route(spans: InMemorySpanExporter, fake: FakeLLMServer) -> None:
    response = litellm.completion(OPENAI_MODEL, MESSAGES, api_base=fake.openai_base_url, api_key="test",
                                  temperature=0.2, max_tokens=50, stop=["END"], seed=7)  # model, messages by position
    assert response.choices[0].message.content == REPLY_TEXT
    (span,) = spans.get_finished_spans()
    assert span.name == "chat gpt-4o-mini" and span.kind is SpanKind.CLIENT
    assert dict(span.attributes) == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.request.temperature": 0.2, "gen_ai.request.max_tokens": 50, "gen_ai.request.seed": 7,
        "gen_ai.request.stop_sequences": ("END",), **_server(fake),
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18", "gen_ai.response.id": "chatcmpl-fake-1",
        "gen_ai.response.finish_reasons": ("stop",), "gen_ai.usage.input_tokens": CHAT_USAGE["prompt_tokens"],
        "gen_ai.usage.output_tokens": CHAT_USAGE["completion_tokens"],
        "gen_ai.usage.cache_read.input_tokens": CHAT_CACHED_TOKENS,
        "gen_ai.usage.reasoning.output_tokens": CHAT_REASONING_TOKENS,
    }


def test_completion_through_the_anthropic_route_with_tools(spans: InMemorySpanExporter, fake: FakeLLMServer) -> None:
    litellm.completion(**_routes(fake)["anthropic"], messages=MESSAGES, tools=TOOLS)
    (span,) = spans.get_finished_spans()
    assert span.attributes["gen_ai.provider.name"] == "anthropic"
    assert span.attributes["gen_ai.request.model"] == "claude-3-5-haiku"
    assert span.attributes["gen_ai.response.model"] == "claude-3-5-haiku-20241022"
    assert _usage(span) == (ANTHROPIC_USAGE["input_tokens"], ANTHROPIC_USAGE["output_tokens"])
    assert span.attributes["agentsight.gen_ai.tool_calls"] == ("get_order",)
    assert [request.path for request in fake.requests] == ["/v1/messages"]


@pytest.mark.parametrize("route", ["openai", "anthropic"])
def test_a_stream_ends_once_with_the_provider_s_usage(
    spans: InMemorySpanExporter, fake: FakeLLMServer, route: str, caplog: pytest.LogCaptureFixture
) -> None:
    usage = {"openai": (11, 7), "anthropic": (17, 9)}[route]
    stream = litellm.completion(**_routes(fake)[route], messages=MESSAGES, stream=True, stream_options=INCLUDE_USAGE)
    assert isinstance(stream, litellm.CustomStreamWrapper), "the app still gets LiteLLM's stream"
    assert spans.get_finished_spans() == (), "the span lasts as long as the stream"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == REPLY_TEXT
    (span,) = spans.get_finished_spans()
    assert _usage(span) == usage and span.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert span.attributes["agentsight.llm.streaming"] is True
    assert [record for record in caplog.records if "ended span" in record.getMessage()] == []


@pytest.mark.skipif(released_before("litellm", "1.82.1"),
                    reason="LiteLLM totals a stream in its last chunk (0 tokens before) from litellm 1.82.1")
def test_a_stream_not_asked_for_usage_takes_litellm_s_total(spans: InMemorySpanExporter, fake: FakeLLMServer) -> None:
    for _ in litellm.completion(**_routes(fake)["anthropic"], messages=MESSAGES, stream=True):
        pass  # Anthropic reports usage in its stream; LiteLLM shows it only to who asks
    for _ in litellm.completion(**_routes(fake)["openai"], messages=MESSAGES, stream=True, tools=TOOLS):
        pass
    anthropic_span, openai_span = spans.get_finished_spans()
    assert _usage(anthropic_span) == (17, 9)
    assert openai_span.attributes["agentsight.gen_ai.tool_calls"] == ("get_order",)
    tokens = _usage(openai_span)  # OpenAI reports none unasked: LiteLLM counts them itself
    assert all(isinstance(count, int) and count > 0 for count in tokens), tokens


@pytest.mark.skipif(released_before("litellm", "1.108"), reason="LiteLLM's stream has no close() before litellm 1.108")
def test_a_stream_left_unfinished_ends_when_closed(spans: InMemorySpanExporter, fake: FakeLLMServer) -> None:
    stream = litellm.completion(**_routes(fake)["openai"], messages=MESSAGES, stream=True)
    next(stream)
    stream.close()
    stream.close()
    assert len(spans.get_finished_spans()) == 1, "close() ends it, once"


def test_a_stream_left_unfinished_ends_when_collected(spans: InMemorySpanExporter, fake: FakeLLMServer) -> None:
    stream = litellm.completion(**_routes(fake)["anthropic"], messages=MESSAGES, stream=True)
    next(stream)
    del stream
    gc.collect()
    assert len(spans.get_finished_spans()) == 1, "an abandoned stream ends when collected"


def test_async_completion_stream_and_embeddings(spans: InMemorySpanExporter, fake: FakeLLMServer) -> None:
    routes = _routes(fake)

    async def main() -> None:
        await litellm.acompletion(**routes["anthropic"], messages=MESSAGES)
        stream = await litellm.acompletion(**routes["openai"], messages=MESSAGES, stream=True,
                                           stream_options=INCLUDE_USAGE)
        async for _ in stream:
            pass
        await litellm.aembedding("openai/text-embedding-3-small", input=["a", "b"], api_base=fake.openai_base_url,
                                 api_key="test")

    asyncio.run(main())
    litellm.embedding("openai/text-embedding-3-small", ["a"], api_base=fake.openai_base_url, api_key="test")
    completed, streamed, async_embeddings, embeddings = spans.get_finished_spans()
    assert _usage(completed) == (17, 9) and _usage(streamed) == (11, 7)
    for span in (async_embeddings, embeddings):
        assert span.name == "embeddings text-embedding-3-small"
        assert dict(span.attributes) == {
            "gen_ai.operation.name": "embeddings", "gen_ai.provider.name": "openai", **_server(fake),
            "gen_ai.request.model": "text-embedding-3-small",
            "gen_ai.response.model": "text-embedding-3-small-2024-07-18", "gen_ai.usage.input_tokens": 5,
        }
    assert len(fake.requests) == 4


@pytest.mark.skipif(released_before("litellm", "1.109"),
                    reason="completion(acompletion=True) fails inside LiteLLM before litellm 1.109")
def test_a_sync_name_awaited_is_one_call(spans: InMemorySpanExporter, fake: FakeLLMServer) -> None:
    asyncio.run(litellm.completion(**_routes(fake)["anthropic"], messages=MESSAGES, acompletion=True))
    (span,) = spans.get_finished_spans()
    assert _usage(span) == (17, 9) and len(fake.requests) == 1


def test_errors_are_recorded_and_raised(spans: InMemorySpanExporter, fake: FakeLLMServer) -> None:
    fake.fail_next(400)
    with pytest.raises(litellm.BadRequestError):
        litellm.completion(**_routes(fake)["anthropic"], messages=MESSAGES)
    with pytest.raises(litellm.BadRequestError):  # no provider LiteLLM knows: it raises before any request
        litellm.completion(model="no-such-provider-model", messages=MESSAGES, api_key="test")
    failed, unknown = spans.get_finished_spans()
    assert failed.status.status_code is StatusCode.ERROR and failed.attributes["error.type"] == "BadRequestError"
    assert unknown.status.status_code is StatusCode.ERROR
    assert unknown.attributes["gen_ai.provider.name"] == "litellm"
    assert len(fake.requests) == 1


def test_uninstrument_restores_the_functions(fake: FakeLLMServer) -> None:
    with instrumented(LiteLLMInstrumentor) as exporter:
        assert all(isinstance(vars(litellm)[name], WRAPPER) for name, *_ in SURFACES)
    assert not any(isinstance(vars(litellm)[name], WRAPPER) for name, *_ in SURFACES)
    litellm.completion(**_routes(fake)["openai"], messages=MESSAGES)
    assert exporter.get_finished_spans() == (), "no span once uninstrumented"


def test_content_captured_when_asked(
    spans: InMemorySpanExporter, fake: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    litellm.completion(**_routes(fake)["anthropic"], messages=MESSAGES)
    for _ in litellm.completion(**_routes(fake)["openai"], messages=MESSAGES, stream=True, tools=TOOLS):
        pass
    completed, streamed = spans.get_finished_spans()
    for span in (completed, streamed):
        assert "Where is my order?" in span.attributes["gen_ai.input.messages"]
    assert REPLY_TEXT in completed.attributes["gen_ai.output.messages"]
    assert "get_order" in streamed.attributes["gen_ai.output.messages"]
    assert "get_order" in streamed.attributes["gen_ai.tool.definitions"]


def test_instrument_applies_it_when_litellm_is_imported(tmp_path: Path) -> None:
    result = run_script(tmp_path, """
    import json, sys, wrapt
    from agentsight.instrumentation import instrument
    print(json.dumps("litellm" in instrument()))
    import litellm
    print(json.dumps([isinstance(vars(litellm)[name], wrapt.FunctionWrapper)
                      for name in ("completion", "acompletion", "embedding", "aembedding")]))
    """, {"LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == [True, [True] * 4]


def test_the_module_loads_without_litellm(tmp_path: Path) -> None:
    result = run_script(tmp_path, """
    import sys
    sys.modules["litellm"] = None  # importing it fails
    from agentsight.instrumentation.litellm import LiteLLMInstrumentor
    print(list(LiteLLMInstrumentor().instrumentation_dependencies()))
    """, {})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['litellm >= 1.60, < 2']"


def _conversation(api: DevServer, conversation_id: str) -> dict[str, Any]:
    found = api.store.find_conversation(conversation_id)
    assert found is not None, f"{conversation_id} was not stored"
    detail = api.store.get_conversation(found["id"])
    assert detail is not None
    return detail


def _direct_call(fake: FakeLLMServer, route: str) -> Any:
    """The call LiteLLM makes, made with the provider's own SDK (instrumented by us too)."""
    if route == "openai":
        return openai.OpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES)
    return anthropic.Anthropic(base_url=fake.url, api_key="test", max_retries=0).messages.create(
        model="claude-3-5-haiku", messages=MESSAGES, max_tokens=64)


@pytest.mark.parametrize("protocol", ["ingest", "rest"])
@pytest.mark.parametrize("route", ["openai", "anthropic"])
def test_a_turn_counts_each_litellm_call_once(
    spans: InMemorySpanExporter, fake: FakeLLMServer, api: DevServer, make_tracker: Any, protocol: str, route: str
) -> None:
    tracker: ConversationTracker = make_tracker(protocol=protocol)
    with tracker.conversation("conv-reference"):
        _direct_call(fake, route)
    with tracker.conversation("conv-litellm"):
        tracker.track_question("Where is my order?")
        litellm.completion(**_routes(fake)[route], messages=MESSAGES)
        for _ in litellm.completion(**_routes(fake)[route], messages=MESSAGES, stream=True,
                                    stream_options=INCLUDE_USAGE):
            pass
        tracker.track_answer("It ships today.")
    assert tracker.flush(10)["complete"]
    reference, detail = _conversation(api, "conv-reference"), _conversation(api, "conv-litellm")
    calls = [action["action_name"] for action in detail["actions"] if action["action_name"].startswith("chat ")]
    assert len(calls) == 2 and all(name.startswith(f"chat {route}/") for name in calls), calls
    assert reference["tokens"]["prompt_tokens"] > 0
    assert detail["tokens"] == {key: 2 * count for key, count in reference["tokens"].items()}, "as the SDK's, twice"
    assert spans.get_finished_spans() == (), "calls in a turn are the tracker's, not the app provider's"



@pytest.mark.parametrize("protocol", ["ingest", "rest"])
def test_an_instrumented_sdk_call_inside_litellm_counts_once(
    spans: InMemorySpanExporter, fake: FakeLLMServer, api: DevServer, make_tracker: Any, protocol: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A LiteLLM custom provider calling the OpenAI SDK, which we instrument too: inside LiteLLM's call the
    SDK's is silenced, so the turn has one model call, with the tokens the SDK call alone counts."""

    class ViaSDK(litellm.CustomLLM):  # type: ignore[misc]
        def completion(self, *args: Any, **kwargs: Any) -> Any:
            return litellm.ModelResponse(**_direct_call(fake, "openai").model_dump())

    monkeypatch.setattr(litellm, "custom_provider_map", [{"provider": "viasdk", "custom_handler": ViaSDK()}])
    tracker: ConversationTracker = make_tracker(protocol=protocol)
    with tracker.conversation("conv-reference"):
        _direct_call(fake, "openai")
    with tracker.conversation("conv-litellm"):
        litellm.completion(model="viasdk/in-house", messages=MESSAGES)  # no OpenAI model: litellm 1.60 routes those
    assert tracker.flush(10)["complete"]
    reference, detail = _conversation(api, "conv-reference"), _conversation(api, "conv-litellm")
    calls = [action["action_name"] for action in detail["actions"] if action["action_name"].startswith("chat ")]
    assert calls == ["chat viasdk/gpt-4o-mini-2024-07-18"], "LiteLLM's call, not the SDK's inside it"
    assert reference["tokens"]["prompt_tokens"] > 0 and detail["tokens"] == reference["tokens"]
    assert len(fake.requests) == 2
