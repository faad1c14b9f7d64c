"""GenAI semantic conventions: captured content per capture mode (span attributes, the
``gen_ai.client.inference.operation.details`` event), system instructions, tool definitions, and the
``gen_ai.client.token.usage`` / ``gen_ai.client.operation.duration`` metrics; the real ``openai``, ``anthropic``,
``google-genai``, ``cohere``, ``boto3`` (Bedrock) and ``litellm`` clients over HTTP to the stand-in model."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anthropic
import openai
import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentsight.dev.local_llm import (
    ANTHROPIC_USAGE,
    BEDROCK_USAGE,
    CHAT_USAGE,
    COHERE_USAGE,
    GEMINI_USAGE,
    REPLY_TEXT,
    RESPONSES_USAGE,
    TOOL_INPUT,
    FakeLLMServer,
)
from agentsight.instrumentation.anthropic import AnthropicInstrumentor
from agentsight.instrumentation.botocore import BotocoreInstrumentor
from agentsight.instrumentation.cohere import CohereInstrumentor
from agentsight.instrumentation.content import OPENAI_CHAT, Prompt
from agentsight.instrumentation.genai import CAPTURE_CONTENT_ENV, GenAITracer, start_model_call
from agentsight.instrumentation.google_genai import GoogleGenAIInstrumentor
from agentsight.instrumentation.litellm import LiteLLMInstrumentor
from agentsight.instrumentation.openai import OpenAIInstrumentor

MODEL = "gpt-4o-mini"
CLAUDE = "claude-x"
CONTENT_KEYS = {"gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
                "gen_ai.tool.definitions"}
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}}
# A chat history with every kind of turn: system, user, an assistant's tool call, the tool's answer.
CHAT_HISTORY: list[Any] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                 {"type": "image_url", "image_url": {"url": "https://example.com/sky.png"}}]},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
]
CHAT_TOOLS: list[Any] = [{"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                                                            "parameters": WEATHER}}]
WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Weather now", "parameters": WEATHER}


@dataclass
class Telemetry:
    """What the instrumentors emitted: spans, log records (events) and metrics."""

    spans: InMemorySpanExporter
    logs: InMemoryLogRecordExporter
    metrics: InMemoryMetricReader
    providers: dict[str, Any]

    def span(self) -> ReadableSpan:
        (span,) = self.spans.get_finished_spans()
        return span

    def events(self) -> list[ReadableLogRecord]:
        return list(self.logs.get_finished_logs())

    def histogram(self, name: str) -> tuple[set[str], list[HistogramDataPoint]]:
        """The histogram's units and its points, from every instrumentor's meter."""
        data = self.metrics.get_metrics_data()
        metrics = [metric for resource in (data.resource_metrics if data else ()) for scope in resource.scope_metrics
                   for metric in scope.metrics if metric.name == name]
        return {metric.unit or "" for metric in metrics}, [point for metric in metrics
                                                           for point in metric.data.data_points]  # type: ignore


    def metrics_by_call(self) -> tuple[dict[str, int], dict[str, tuple[int, int | float]]]:
        """Durations recorded per provider, and (points, sum) of the tokens per token type."""
        calls: dict[str, int] = {}
        for point in self.histogram("gen_ai.client.operation.duration")[1]:
            provider = str((point.attributes or {})["gen_ai.provider.name"])
            calls[provider] = calls.get(provider, 0) + point.count
        tokens: dict[str, tuple[int, int | float]] = {}
        for point in self.histogram("gen_ai.client.token.usage")[1]:
            count, total = tokens.get(kind := str((point.attributes or {})["gen_ai.token.type"]), (0, 0))
            tokens[kind] = (count + point.count, total + point.sum)
        return calls, tokens


@contextmanager
def instrumented_with_telemetry(*instrumentors: type[BaseInstrumentor]) -> Iterator[Telemetry]:
    """The instrumentors instrumented with their own tracer, meter and logger providers; uninstrumented after."""
    spans, logs, reader = InMemorySpanExporter(), InMemoryLogRecordExporter(), InMemoryMetricReader()
    tracer_provider, logger_provider = TracerProvider(), LoggerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    providers = {"tracer_provider": tracer_provider, "meter_provider": MeterProvider(metric_readers=[reader]),
                 "logger_provider": logger_provider}
    for instrumentor in instrumentors:
        instrumentor().instrument(**providers)
    try:
        yield Telemetry(spans, logs, reader, providers)
    finally:
        for instrumentor in instrumentors:
            instrumentor().uninstrument()


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    """OpenAI and Anthropic instrumented with their own tracer, meter and logger providers."""
    with instrumented_with_telemetry(OpenAIInstrumentor, AnthropicInstrumentor) as telemetry:
        yield telemetry


@pytest.fixture
def client(fake: FakeLLMServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0) as client:
        yield client


@pytest.fixture
def claude(fake: FakeLLMServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="test", max_retries=0) as client:
        yield client


def _content(attributes: Any) -> dict[str, Any]:
    """The captured content among span attributes (JSON text, decoded) or event attributes (structured)."""
    return {key: json.loads(value) if isinstance(value, str) else _lists(value)
            for key, value in attributes.items() if key in CONTENT_KEYS}


def _lists(value: Any) -> Any:
    """Event attributes as plain lists and dicts (the SDK keeps sequences as tuples)."""
    if isinstance(value, (list, tuple)):
        return [_lists(item) for item in value]
    if isinstance(value, dict):
        return {key: _lists(item) for key, item in value.items()}
    return value


# The chat history and its answer (a tool call, as the stand-in answers a request with tools), as captured.
CHAT_CAPTURED = {
    "gen_ai.input.messages": [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Weather?"},
                                   {"type": "uri", "modality": "image", "uri": "https://example.com/sky.png"}]},
        {"role": "assistant", "parts": [{"type": "tool_call", "id": "call_1", "name": "get_weather",
                                         "arguments": {"city": "Paris"}}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": "sunny"}]},
    ],
    "gen_ai.tool.definitions": [WEATHER_TOOL],
    "gen_ai.output.messages": [
        {"role": "assistant", "finish_reason": "tool_call",
         "parts": [{"type": "tool_call", "id": "call_fake_1", "name": "get_weather", "arguments": TOOL_INPUT}]},
    ],
}


@pytest.mark.parametrize("mode", [None, "false", "NO_CONTENT", "bogus"])
def test_no_content_unless_asked(
    telemetry: Telemetry, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch, mode: str | None
) -> None:
    if mode is not None:
        monkeypatch.setenv(CAPTURE_CONTENT_ENV, mode)
    client.chat.completions.create(model=MODEL, messages=CHAT_HISTORY, tools=CHAT_TOOLS)
    assert not CONTENT_KEYS & set(telemetry.span().attributes or {})
    assert telemetry.events() == []


def test_responses_are_not_converted_unless_content_is_captured(
    telemetry: Telemetry, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    dumped: list[str] = []
    model_dump = openai.BaseModel.model_dump

    def counted_dump(self: openai.BaseModel, *args: Any, **kwargs: Any) -> dict[str, Any]:
        dumped.append(type(self).__name__)
        return model_dump(self, *args, **kwargs)

    monkeypatch.setattr(openai.BaseModel, "model_dump", counted_dump)
    client.chat.completions.create(model=MODEL, messages=CHAT_HISTORY, tools=CHAT_TOOLS)
    client.responses.create(model=MODEL, input="hi")
    assert dumped == [], "the output messages are built only when content is captured"


@pytest.mark.parametrize("mode", ["true", "SPAN_ONLY", "span_only"])
def test_span_modes_put_spec_shaped_content_on_the_span_only(
    telemetry: Telemetry, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setenv(CAPTURE_CONTENT_ENV, mode)
    client.chat.completions.create(model=MODEL, messages=CHAT_HISTORY, tools=CHAT_TOOLS)
    assert _content(telemetry.span().attributes) == CHAT_CAPTURED
    assert telemetry.events() == [], "no event unless the mode names events"


def test_event_only_puts_content_in_the_event_of_the_span(
    telemetry: Telemetry, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CAPTURE_CONTENT_ENV, "EVENT_ONLY")
    client.chat.completions.create(model=MODEL, messages=CHAT_HISTORY, tools=CHAT_TOOLS)
    span = telemetry.span()
    assert not CONTENT_KEYS & set(span.attributes or {}), "nothing on the span"
    (event,) = telemetry.events()
    record = event.log_record
    assert record.event_name == "gen_ai.client.inference.operation.details"
    assert record.severity_number == SeverityNumber.DEBUG
    assert span.context is not None
    assert (record.trace_id, record.span_id) == (span.context.trace_id, span.context.span_id)
    attributes = record.attributes or {}
    assert _content(attributes) == CHAT_CAPTURED, "structured, not JSON text"
    assert attributes["gen_ai.operation.name"] == "chat" and attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == MODEL
    assert attributes["gen_ai.usage.input_tokens"] == CHAT_USAGE["prompt_tokens"]
    assert attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)


def test_span_and_event_puts_content_in_both(
    telemetry: Telemetry, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CAPTURE_CONTENT_ENV, "SPAN_AND_EVENT")
    for _ in client.chat.completions.create(model=MODEL, messages=CHAT_HISTORY[:2], stream=True):
        pass
    span_content = _content(telemetry.span().attributes)
    (event,) = telemetry.events()
    assert span_content == _content(event.log_record.attributes)
    assert span_content["gen_ai.output.messages"] == [
        {"role": "assistant", "parts": [{"type": "text", "content": REPLY_TEXT}], "finish_reason": "stop"}]


def test_responses_api_instructions_are_system_instructions(
    telemetry: Telemetry, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CAPTURE_CONTENT_ENV, "SPAN_ONLY")
    tools: Any = [{"type": "function", "name": "get_weather", "description": "Weather now", "parameters": WEATHER},
                  {"type": "web_search"}]
    client.responses.create(model=MODEL, instructions="Be brief.", input="Weather?", tools=tools)
    client.responses.create(model=MODEL, input=[
        {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
    ])
    with_tools, history = telemetry.spans.get_finished_spans()
    assert _content(with_tools.attributes) == {
        "gen_ai.system_instructions": [{"type": "text", "content": "Be brief."}],
        "gen_ai.input.messages": [{"role": "user", "parts": [{"type": "text", "content": "Weather?"}]}],
        "gen_ai.tool.definitions": [WEATHER_TOOL, {"type": "web_search", "name": "web_search"}],
        "gen_ai.output.messages": [{"role": "assistant", "finish_reason": "tool_call", "parts": [
            {"type": "tool_call", "id": "call_fake_1", "name": "get_weather", "arguments": TOOL_INPUT}]}],
    }
    assert _content(history.attributes) == {
        "gen_ai.input.messages": [
            {"role": "user", "parts": [{"type": "text", "content": "Weather?"}]},
            {"role": "assistant", "parts": [{"type": "tool_call", "id": "call_1", "name": "get_weather",
                                             "arguments": {"city": "Paris"}}]},
            {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": "sunny"}]},
        ],
        "gen_ai.output.messages": [{"role": "assistant", "finish_reason": "stop",
                                    "parts": [{"type": "text", "content": REPLY_TEXT}]}],
    }


def test_anthropic_system_blocks_tools_and_tool_results(
    telemetry: Telemetry, claude: anthropic.Anthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CAPTURE_CONTENT_ENV, "SPAN_ONLY")
    claude.messages.create(
        model=CLAUDE, max_tokens=64,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        tools=[{"name": "get_weather", "description": "Weather now", "input_schema": WEATHER}],
        messages=[
            {"role": "user", "content": [
                {"type": "text", "text": "Weather?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Ask the tool.", "signature": "sig"},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
        ],
    )
    captured = _content(telemetry.span().attributes)
    assert captured["gen_ai.system_instructions"] == [{"type": "text", "content": "Be brief."}]
    assert captured["gen_ai.tool.definitions"] == [WEATHER_TOOL]
    assert captured["gen_ai.input.messages"] == [
        {"role": "user", "parts": [
            {"type": "text", "content": "Weather?"},
            {"type": "blob", "modality": "image", "mime_type": "image/png", "content": "iVBORw0K"}]},
        {"role": "assistant", "parts": [
            {"type": "reasoning", "content": "Ask the tool."},
            {"type": "tool_call", "id": "toolu_1", "name": "get_weather", "arguments": {"city": "Paris"}}]},
        {"role": "user", "parts": [{"type": "tool_call_response", "id": "toolu_1", "response": "sunny"}]},
    ]
    (answer,) = captured["gen_ai.output.messages"]
    assert answer["finish_reason"] == "tool_call", "Anthropic's tool_use stop reason, in the conventions' words"
    (part,) = answer["parts"]
    assert part["type"] == "tool_call" and part["name"] == "get_weather" and part["arguments"] == TOOL_INPUT


# -- metrics ------------------------------------------------------------------------------------------

TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]


def test_metrics_once_per_call_with_the_recommended_attributes_and_buckets(
    telemetry: Telemetry, client: openai.OpenAI, claude: anthropic.Anthropic, fake: FakeLLMServer
) -> None:
    client.chat.completions.create(model=MODEL, messages=CHAT_HISTORY[:2])
    with claude.messages.stream(model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as stream:
        stream.until_done()
    fake.fail_next(500)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=MODEL, messages=CHAT_HISTORY[:2])

    unit, durations = telemetry.histogram("gen_ai.client.operation.duration")
    assert unit == {"s"}
    assert all(list(point.explicit_bounds) == DURATION_BUCKETS for point in durations)
    by_model = {(point.attributes or {}).get("gen_ai.response.model"): point for point in durations}
    assert sum(point.count for point in durations) == 3, "one duration per call, a stream's too"
    chat, streamed, failed = by_model[MODEL + "-2024-07-18"], by_model[CLAUDE + "-20241022"], by_model[None]
    assert dict(chat.attributes or {}) == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": MODEL,
        "gen_ai.response.model": MODEL + "-2024-07-18", "server.address": "127.0.0.1",
        "server.port": urlsplit(fake.url).port}
    assert (streamed.attributes or {})["gen_ai.provider.name"] == "anthropic"
    assert (failed.attributes or {})["error.type"] == "InternalServerError"

    unit, tokens = telemetry.histogram("gen_ai.client.token.usage")
    assert unit == {"{token}"}
    assert all(list(point.explicit_bounds) == TOKEN_BUCKETS for point in tokens)
    counts = {((point.attributes or {})["gen_ai.provider.name"], (point.attributes or {})["gen_ai.token.type"]):
              (point.count, point.sum) for point in tokens}
    assert counts == {
        ("openai", "input"): (1, CHAT_USAGE["prompt_tokens"]),
        ("openai", "output"): (1, CHAT_USAGE["completion_tokens"]),
        ("anthropic", "input"): (1, ANTHROPIC_USAGE["input_tokens"]),
        ("anthropic", "output"): (1, ANTHROPIC_USAGE["output_tokens"]),
    }, "a failed call reports no tokens"


def test_responses_tokens_and_no_metrics_when_suppressed(telemetry: Telemetry, client: openai.OpenAI) -> None:
    with suppress_instrumentation():
        client.responses.create(model=MODEL, input="hi")
    assert telemetry.histogram("gen_ai.client.operation.duration") == (set(), [])
    client.responses.create(model=MODEL, input="hi")
    _, tokens = telemetry.histogram("gen_ai.client.token.usage")
    assert sorted((point.attributes or {})["gen_ai.token.type"] for point in tokens) == ["input", "output"]
    assert sum(point.sum for point in tokens) == RESPONSES_USAGE["input_tokens"] + RESPONSES_USAGE["output_tokens"]


class _Unreadable:
    """A message whose fields raise when read (as a broken proxy or lazy object might)."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"cannot read {name}")


def test_content_that_cannot_be_read_is_left_out_never_raised(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CAPTURE_CONTENT_ENV, "SPAN_AND_EVENT")
    tracer = GenAITracer(__name__, telemetry.providers)
    call = start_model_call(tracer, "chat", "openai", MODEL, {}, Prompt(OPENAI_CHAT, {"messages": [_Unreadable()]}))
    assert call is not None
    call.record_response(input_tokens=3, output_messages=[_Unreadable()])
    call.end()
    assert not CONTENT_KEYS & set(telemetry.span().attributes or {})
    (event,) = telemetry.events()
    attributes = event.log_record.attributes or {}
    assert not CONTENT_KEYS & set(attributes) and attributes["gen_ai.usage.input_tokens"] == 3


# -- the newest clients: each API's own shape in, the conventions' shape out, metrics to the instrumentor's meter --

SYSTEM_TEXT = [{"type": "text", "content": "Be brief."}]
# "Weather?" with an image, the model's call of get_weather for Paris, and the tool's answer, as captured.
TOOL_TURNS = [
    {"role": "user", "parts": [{"type": "text", "content": "Weather?"},
                               {"type": "blob", "modality": "image", "mime_type": "image/png", "content": "iVBORw=="}]},
    {"role": "assistant", "parts": [{"type": "tool_call", "id": "call_1", "name": "get_weather",
                                     "arguments": {"city": "Paris"}}]},
    {"role": "user", "parts": [{"type": "tool_call_response", "id": "call_1", "response": {"forecast": "sunny"}}]},
]
PNG = b"\x89PNG"  # "iVBORw==" in base64


def _called_the_tool(call_id: str | None = None) -> list[dict[str, Any]]:
    """The stand-in's answer to a request with tools: a call of the first one, as an output message."""
    call = {"type": "tool_call", "name": "get_weather", "arguments": TOOL_INPUT}
    return [{"role": "assistant", "finish_reason": "tool_call",
             "parts": [{**call, "id": call_id} if call_id else call]}]


def test_gemini_contents_system_instruction_and_tools(fake: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    genai = pytest.importorskip("google.genai")
    monkeypatch.setenv(CAPTURE_CONTENT_ENV, "SPAN_ONLY")
    tools = [{"function_declarations": [{"name": "get_weather", "description": "Weather now",
                                         "parameters_json_schema": WEATHER}]}, {"google_search": {}}]
    contents = [
        {"role": "user", "parts": [{"text": "Weather?"}, {"inline_data": {"mime_type": "image/png", "data": PNG}}]},
        {"role": "model", "parts": [{"function_call": {"id": "call_1", "name": "get_weather",
                                                       "args": {"city": "Paris"}}}]},
        {"role": "user", "parts": [{"function_response": {"id": "call_1", "name": "get_weather",
                                                          "response": {"forecast": "sunny"}}}]},
    ]
    with instrumented_with_telemetry(GoogleGenAIInstrumentor) as telemetry:
        client = genai.Client(api_key="test", http_options={"base_url": fake.gemini_base_url})
        client.models.generate_content(model="gemini-2.0-flash", contents=contents,
                                       config={"system_instruction": "Be brief.", "tools": tools})
        brief = {"system_instruction": {"parts": [{"text": "Be brief."}]}}  # as a content
        for _ in client.models.generate_content_stream(model="gemini-2.0-flash", contents=["Weather", "now?"],
                                                       config=brief):
            pass
    with_tools, streamed = telemetry.spans.get_finished_spans()
    assert _content(with_tools.attributes) == {
        "gen_ai.system_instructions": SYSTEM_TEXT,
        "gen_ai.input.messages": TOOL_TURNS,
        "gen_ai.tool.definitions": [WEATHER_TOOL, {"type": "google_search", "name": "google_search"}],
        "gen_ai.output.messages": _called_the_tool(),  # Gemini says STOP after calling a tool
    }
    assert _content(streamed.attributes) == {
        "gen_ai.system_instructions": SYSTEM_TEXT,
        "gen_ai.input.messages": [{"role": "user", "parts": [{"type": "text", "content": "Weather"},
                                                             {"type": "text", "content": "now?"}]}],
        "gen_ai.output.messages": [{"role": "assistant", "finish_reason": "stop",
                                    "parts": [{"type": "text", "content": REPLY_TEXT}]}],  # one part, not a chunk's
    }
    output = GEMINI_USAGE["candidatesTokenCount"] + GEMINI_USAGE["thoughtsTokenCount"]
    assert telemetry.metrics_by_call() == (
        {"gcp.gemini": 2}, {"input": (2, 2 * GEMINI_USAGE["promptTokenCount"]), "output": (2, 2 * output)})


def test_cohere_messages_and_tools(fake: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    cohere = pytest.importorskip("cohere")
    monkeypatch.setenv(CAPTURE_CONTENT_ENV, "SPAN_ONLY")
    messages = [CHAT_HISTORY[0], {"role": "user", "content": [{"type": "text", "text": "Weather?"}]}, *CHAT_HISTORY[2:]]
    with instrumented_with_telemetry(CohereInstrumentor) as telemetry:
        client = cohere.ClientV2(api_key="test", base_url=fake.cohere_base_url)
        client.chat(model="command-r-plus", messages=messages, tools=CHAT_TOOLS)
        for _ in client.chat_stream(model="command-r-plus", messages=messages, tools=CHAT_TOOLS):
            pass
    completed, streamed = telemetry.spans.get_finished_spans()
    assert _content(completed.attributes) == {
        "gen_ai.input.messages": [{"role": "system", "parts": SYSTEM_TEXT},
                                  {"role": "user", "parts": [{"type": "text", "content": "Weather?"}]},
                                  *CHAT_CAPTURED["gen_ai.input.messages"][2:]],
        "gen_ai.tool.definitions": [WEATHER_TOOL],
        "gen_ai.output.messages": _called_the_tool("call_fake_1"),  # Cohere's TOOL_CALL
    }
    assert _content(streamed.attributes)["gen_ai.output.messages"] == _called_the_tool("call_fake_2"), (
        "the arguments' pieces put together")
    assert telemetry.metrics_by_call() == ({"cohere": 2}, {
        "input": (2, 2 * COHERE_USAGE["input_tokens"]), "output": (2, 2 * COHERE_USAGE["output_tokens"])})


def test_bedrock_converse_system_tool_config_and_invoke_model_anthropic_body(
    fake: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    boto3 = pytest.importorskip("boto3")
    monkeypatch.setenv(CAPTURE_CONTENT_ENV, "SPAN_ONLY")
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    model = "anthropic.claude-3-5-haiku-20241022-v1:0"
    messages = [
        {"role": "user", "content": [{"text": "Weather?"}, {"image": {"format": "png", "source": {"bytes": PNG}}}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "call_1", "name": "get_weather",
                                                       "input": {"city": "Paris"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "call_1", "content": [{"text": "sunny"}]}}]},
    ]
    tool_config = {"tools": [{"toolSpec": {"name": "get_weather", "description": "Weather now",
                                           "inputSchema": {"json": WEATHER}}}]}
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64, "system": "Be brief.",
            "messages": [{"role": "user", "content": "Weather?"}]}
    with instrumented_with_telemetry(BotocoreInstrumentor) as telemetry:
        client = boto3.client("bedrock-runtime", endpoint_url=fake.bedrock_endpoint_url)
        client.converse(modelId=model, messages=messages, toolConfig=tool_config,
                        system=[{"text": "Be brief."}, {"cachePoint": {"type": "default"}}])
        client.invoke_model(modelId=model, body=json.dumps(body))["body"].read()
        for _ in client.converse_stream(modelId=model, messages=messages, toolConfig=tool_config)["stream"]:
            pass
    converse, invoke, streamed = telemetry.spans.get_finished_spans()
    assert _content(converse.attributes) == {
        "gen_ai.system_instructions": SYSTEM_TEXT,
        "gen_ai.input.messages": [
            {"role": "user", "parts": [{"type": "text", "content": "Weather?"},
                                       {"type": "blob", "modality": "image", "content": "iVBORw=="}]},
            TOOL_TURNS[1],
            {"role": "user", "parts": [{"type": "tool_call_response", "id": "call_1",
                                        "response": [{"type": "text", "content": "sunny"}]}]},
        ],
        "gen_ai.tool.definitions": [WEATHER_TOOL],
        "gen_ai.output.messages": _called_the_tool("tooluse_fake_1"),
    }
    assert _content(invoke.attributes) == {
        "gen_ai.system_instructions": SYSTEM_TEXT,
        "gen_ai.input.messages": [{"role": "user", "parts": [{"type": "text", "content": "Weather?"}]}],
        "gen_ai.output.messages": [{"role": "assistant", "finish_reason": "stop",
                                    "parts": [{"type": "text", "content": REPLY_TEXT}]}],
    }
    assert _content(streamed.attributes)["gen_ai.output.messages"] == _called_the_tool("tooluse_fake_3"), (
        "the input's pieces put together")
    converse_input = sum(BEDROCK_USAGE[key] for key in ("inputTokens", "cacheReadInputTokens", "cacheWriteInputTokens"))
    assert telemetry.metrics_by_call() == ({"aws.bedrock": 3}, {
        "input": (3, 2 * converse_input + ANTHROPIC_USAGE["input_tokens"]),
        "output": (3, 2 * BEDROCK_USAGE["outputTokens"] + ANTHROPIC_USAGE["output_tokens"])})


def test_litellm_openai_chat_messages_and_tools(fake: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(os.environ, "LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price list fetched on import
    litellm = pytest.importorskip("litellm")
    monkeypatch.setenv(CAPTURE_CONTENT_ENV, "SPAN_ONLY")
    with instrumented_with_telemetry(LiteLLMInstrumentor) as telemetry:
        route = {"model": "openai/" + MODEL, "api_base": fake.openai_base_url, "api_key": "test"}
        litellm.completion(**route, messages=CHAT_HISTORY, tools=CHAT_TOOLS)
        for _ in litellm.completion(**route, messages=CHAT_HISTORY, tools=CHAT_TOOLS, stream=True,
                                    stream_options={"include_usage": True}):
            pass
    completed, streamed = telemetry.spans.get_finished_spans()
    assert _content(completed.attributes) == CHAT_CAPTURED
    assert _content(streamed.attributes)["gen_ai.output.messages"] == _called_the_tool("call_fake_2"), (
        "the arguments' pieces put together")
    assert telemetry.metrics_by_call() == ({"openai": 2}, {
        "input": (2, 2 * CHAT_USAGE["prompt_tokens"]), "output": (2, 2 * CHAT_USAGE["completion_tokens"])})
