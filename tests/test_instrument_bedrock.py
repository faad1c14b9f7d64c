"""Amazon Bedrock runtime (botocore / boto3) instrumentation with the real client over HTTP to the stand-in."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from agentsight import ConversationTracker
from agentsight.dev import DevServer
from agentsight.dev.llm_bedrock import LLAMA_TOKENS
from agentsight.dev.local_llm import ANTHROPIC_USAGE, BEDROCK_USAGE, REPLY_TEXT, FakeLLMServer
from agentsight.instrumentation.botocore import BotocoreInstrumentor
from agentsight.spans import semconv as sc
from tests.conftest import bodies, instrumented, released_before

if TYPE_CHECKING:
    import boto3
    import botocore.config
    import botocore.exceptions
else:  # the client is a test-only extra: skip, rather than fail collection, where it is not installed
    boto3 = pytest.importorskip("boto3")
    botocore = pytest.importorskip("botocore")  # importing boto3 loaded botocore.config and botocore.exceptions

MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
MESSAGES: Any = [{"role": "user", "content": [{"text": "Where is my order?"}]}]
TOOL_CONFIG: Any = {"tools": [{"toolSpec": {"name": "get_order", "inputSchema": {"json": {"type": "object"}}}}]}
CACHE = BEDROCK_USAGE["cacheReadInputTokens"] + BEDROCK_USAGE["cacheWriteInputTokens"]
USAGE = (BEDROCK_USAGE["inputTokens"] + CACHE, BEDROCK_USAGE["outputTokens"])  # input counts the cache too
# botocore < 1.37.24 drops an answer's cache counts (the input still counts them, from the total).
CACHE_SEEN = not released_before("botocore", "1.37.24")
ANTHROPIC_BODY = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64,
                             "messages": [{"role": "user", "content": "Where is my order?"}]})
NOVA_BODY = json.dumps({"messages": MESSAGES, "inferenceConfig": {"maxTokens": 64}})
LLAMA_BODY = json.dumps({"prompt": "Where is my order?", "max_gen_len": 64})


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with instrumented(BotocoreInstrumentor) as exporter:
        yield exporter


@pytest.fixture
def client(fake: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A ``bedrock-runtime`` client with fake credentials, pointed at the stand-in, not retrying."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    config = botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"})
    return boto3.client("bedrock-runtime", endpoint_url=fake.bedrock_endpoint_url, config=config)


def _only(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = exporter.get_finished_spans()
    return span


def _usage(span: ReadableSpan) -> tuple[Any, Any]:
    return span.attributes.get("gen_ai.usage.input_tokens"), span.attributes.get("gen_ai.usage.output_tokens")


def _ended_twice(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if "ended span" in record.getMessage()]


def test_converse_span(spans: InMemorySpanExporter, client: Any, fake: FakeLLMServer) -> None:
    response = client.converse(modelId=MODEL, messages=MESSAGES, inferenceConfig={"maxTokens": 64, "temperature": 0.5})
    assert response["output"]["message"]["content"][0]["text"] == REPLY_TEXT
    span = _only(spans)
    assert span.name == f"chat {MODEL}" and span.kind is SpanKind.CLIENT
    assert dict(span.attributes) == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "aws.bedrock", "gen_ai.request.model": MODEL,
        "gen_ai.request.max_tokens": 64, "gen_ai.request.temperature": 0.5,
        "server.address": "127.0.0.1", "server.port": int(fake.url.rsplit(":", 1)[1]),
        "gen_ai.response.model": MODEL, "gen_ai.response.finish_reasons": ("end_turn",),
        "gen_ai.usage.input_tokens": USAGE[0], "gen_ai.usage.output_tokens": USAGE[1],
        **({"gen_ai.usage.cache_read.input_tokens": BEDROCK_USAGE["cacheReadInputTokens"],
            "gen_ai.usage.cache_creation.input_tokens": BEDROCK_USAGE["cacheWriteInputTokens"]} if CACHE_SEEN else {}),
    }


@pytest.mark.skipif(released_before("botocore", "1.35.74"),
                    reason="bedrock-runtime has no call but model calls before botocore 1.35.74 (GetAsyncInvoke)")
def test_other_calls_of_the_client_make_no_span(spans: InMemorySpanExporter, client: Any) -> None:
    with pytest.raises(botocore.exceptions.ClientError):
        client.get_async_invoke(invocationArn="arn:aws:bedrock:us-east-1:0:async-invoke/x")  # the stand-in's 404
    assert spans.get_finished_spans() == ()


def test_converse_stream_ends_once_with_its_usage(
    spans: InMemorySpanExporter, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    response = client.converse_stream(modelId=MODEL, messages=MESSAGES, toolConfig=TOOL_CONFIG)
    assert spans.get_finished_spans() == (), "the span lasts as long as the stream"
    events = [next(iter(event)) for event in response["stream"]]
    assert events[0] == "messageStart" and events[-1] == "metadata"
    span = _only(spans)
    assert _usage(span) == USAGE and span.attributes[sc.GEN_AI_TOOL_CALLS] == ("get_order",)
    assert span.attributes["gen_ai.response.finish_reasons"] == ("tool_use",)
    assert _ended_twice(caplog) == []


@pytest.mark.parametrize("operation", ["converse_stream", "invoke_model_with_response_stream"])
def test_a_stream_left_early_ends_its_span_once(
    spans: InMemorySpanExporter, client: Any, caplog: pytest.LogCaptureFixture, operation: str
) -> None:
    if operation == "converse_stream":
        stream = client.converse_stream(modelId=MODEL, messages=MESSAGES)["stream"]
    else:
        stream = client.invoke_model_with_response_stream(modelId=MODEL, body=ANTHROPIC_BODY)["body"]
    for _ in stream:
        break
    stream.close()
    del stream
    gc.collect()
    assert _only(spans).status.status_code is StatusCode.UNSET and _ended_twice(caplog) == []


def test_a_stream_cut_mid_way_fails_its_span(spans: InMemorySpanExporter, client: Any, fake: FakeLLMServer) -> None:
    fake.disconnect_mid_stream_next(after_chunks=2)
    stream = client.converse_stream(modelId=MODEL, messages=MESSAGES)["stream"]
    with pytest.raises(Exception):  # noqa: B017, PT011 - botocore's error for a cut body depends on where it is cut
        for _ in stream:
            pass
    assert _only(spans).status.status_code is StatusCode.ERROR


def test_error_answer_fails_the_span(spans: InMemorySpanExporter, client: Any, fake: FakeLLMServer) -> None:
    fake.fail_next(400, {"__type": "ValidationException", "message": "The provided model identifier is invalid."})
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        client.converse(modelId=MODEL, messages=MESSAGES)
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    span = _only(spans)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "ValidationException", "botocore's class for the error code"


def test_invoke_model_anthropic_body(spans: InMemorySpanExporter, client: Any) -> None:
    response = client.invoke_model(modelId=MODEL, body=ANTHROPIC_BODY)
    answer = json.loads(response["body"].read())
    assert answer["content"][0]["text"] == REPLY_TEXT, "the caller still reads the whole body"
    span = _only(spans)
    assert _usage(span) == (ANTHROPIC_USAGE["input_tokens"], ANTHROPIC_USAGE["output_tokens"])
    assert span.attributes["gen_ai.request.max_tokens"] == 64
    assert span.attributes["gen_ai.response.finish_reasons"] == ("end_turn",)


def _chunks(body: Any) -> list[dict[str, Any]]:
    """The model's events of an ``InvokeModelWithResponseStream`` body, read the way callers do."""
    return [json.loads(event["chunk"]["bytes"]) for event in body]


def test_invoke_model_with_response_stream_anthropic_body_ends_once_with_its_usage(
    spans: InMemorySpanExporter, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    response = client.invoke_model_with_response_stream(modelId=MODEL, body=ANTHROPIC_BODY)
    assert spans.get_finished_spans() == (), "the span lasts as long as the stream"
    chunks = _chunks(response["body"])
    text = "".join(chunk["delta"]["text"] for chunk in chunks if chunk["type"] == "content_block_delta")
    assert text == REPLY_TEXT, "the caller reads every chunk"
    span = _only(spans)
    assert _usage(span) == (ANTHROPIC_USAGE["input_tokens"], ANTHROPIC_USAGE["output_tokens"])
    assert span.attributes[sc.LLM_STREAMING] is True and span.attributes["gen_ai.request.max_tokens"] == 64
    assert span.attributes["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert _ended_twice(caplog) == []


def test_invoke_model_with_response_stream_nova_body(spans: InMemorySpanExporter, client: Any) -> None:
    chunks = _chunks(client.invoke_model_with_response_stream(modelId="amazon.nova-lite-v1:0", body=NOVA_BODY)["body"])
    assert "".join(chunk["contentBlockDelta"]["delta"]["text"] for chunk in chunks if "contentBlockDelta" in chunk) \
        == REPLY_TEXT
    span = _only(spans)
    assert _usage(span) == USAGE, "Converse-shaped events, the cache counted in the input"
    assert span.attributes["gen_ai.response.finish_reasons"] == ("end_turn",)


def test_a_stream_of_another_model_family_counts_the_invocation_metrics(
    spans: InMemorySpanExporter, client: Any
) -> None:
    chunks = _chunks(client.invoke_model_with_response_stream(modelId="meta.llama3-8b-instruct-v1:0",
                                                              body=LLAMA_BODY)["body"])
    assert "".join(chunk["generation"] for chunk in chunks) == REPLY_TEXT
    assert _usage(_only(spans)) == LLAMA_TOKENS, "from the metrics Bedrock adds to the last chunk"


@pytest.mark.usefixtures("rest_wire")  # reads the model calls as REST actions
def test_a_turn_counts_each_call_once(
    spans: InMemorySpanExporter, client: Any, api: DevServer, tracker: ConversationTracker
) -> None:
    tracker.get_or_create_conversation("conv-bedrock")
    tracker.track_question("Where is my order?")
    client.converse(modelId=MODEL, messages=MESSAGES)
    for _ in client.converse_stream(modelId=MODEL, messages=MESSAGES)["stream"]:
        pass
    client.invoke_model(modelId=MODEL, body=ANTHROPIC_BODY)["body"].read()
    _chunks(client.invoke_model_with_response_stream(modelId=MODEL, body=ANTHROPIC_BODY)["body"])
    tracker.track_answer("It ships today.")
    tracker.send_tracked_data()
    assert tracker.flush(10)["complete"]
    actions = bodies(api, "/api/action_logs/")
    (usage,) = [a["metadata"] for a in actions if a["action_name"] == "token_usage"]
    assert usage["completion_tokens"] == 2 * USAGE[1] + 2 * ANTHROPIC_USAGE["output_tokens"]
    calls = [a for a in actions if a["action_name"] != "token_usage"]
    anthropic = ANTHROPIC_USAGE["input_tokens"]
    assert [call["metadata"]["input_tokens"] for call in calls] == [USAGE[0], USAGE[0], anthropic, anthropic]
    assert {call["action_name"] for call in calls[:2]} == {f"chat aws.bedrock/{MODEL}"}
    assert spans.get_finished_spans() == (), "calls in a turn are the tracker's, not the app provider's"
