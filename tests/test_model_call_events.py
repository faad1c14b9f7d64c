"""A model call in a turn is only noted when it ends; its usage and action are built when the turn is read.

Real openai client -> the stand-in LLM over HTTP -> the tracker's turn -> the local AgentSight API.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import openai
import pytest
from opentelemetry import trace

from agentsight import ConversationTracker
from agentsight.dev import DevServer
from agentsight.dev.local_llm import FakeLLMServer
from agentsight.instrumentation.openai import OpenAIInstrumentor
from agentsight.spans import attribution, jsonsafe
from agentsight.spans.finished import iso_timestamp
from tests.conftest import bodies, instrumented

MESSAGES = [{"role": "user", "content": "Where is my order?"}]


@pytest.fixture
def client(fake: FakeLLMServer) -> Iterator[openai.OpenAI]:
    with instrumented(OpenAIInstrumentor):
        yield openai.OpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0)


@pytest.mark.usefixtures("rest_wire")  # reads the model calls as REST actions
def test_the_call_only_notes_itself_and_the_send_describes_it(
    client: openai.OpenAI, tracker: ConversationTracker, api: DevServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[str] = []
    describe = attribution.model_call_action
    monkeypatch.setattr(attribution, "model_call_action", lambda span, span_id: built.append(span_id) or describe(
        span, span_id))
    tracker.get_or_create_conversation("conv-deferred")
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert built == [], "no JSON or ISO text is made in the app's call"
    assert tracker.get_token_usage() == {"prompt_tokens": 22, "completion_tokens": 14, "total_tokens": 36,
                                         "embedding_tokens": 0}
    summary = tracker.send_tracked_data()
    assert summary["summary"]["actions"] == 3  # two calls and the turn's token usage
    assert len(built) == 2 and len(set(built)) == 2
    assert tracker.flush(10)["complete"]
    calls = [a for a in bodies(api, "/api/action_logs/") if a["action_name"] != "token_usage"]
    assert [c["metadata"]["input_tokens"] for c in calls] == [11, 11]
    assert len(built) == 2, "each call's action is built once, whoever reads the turn"


@pytest.mark.usefixtures("rest_wire")
def test_odd_token_values_of_another_instrumentation_count_zero_and_never_raise(
    tracker: ConversationTracker, api: DevServer,
) -> None:
    tracker.get_or_create_conversation("conv-odd")
    tracker.track_question("Hi?")
    span = tracker._provider.get_tracer("peer").start_span("chat", attributes={
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": "many",
        "gen_ai.usage.output_tokens": 7, "gen_ai.response.finish_reasons": "stop"})
    span.end()
    assert tracker.get_token_usage()["total_tokens"] == 7
    tracker.send_tracked_data()
    assert tracker.flush(10)["complete"]
    (call,) = [a for a in bodies(api, "/api/action_logs/") if a["action_name"] != "token_usage"]
    assert call["metadata"]["input_tokens"] == 0 and call["metadata"]["finish_reasons"] == ["stop"]


@pytest.mark.parametrize("time_ns", [0, 999, 1_000_000_000, 1_764_121_114_000_000_000, 1_764_121_114_123_456_789,
                                     -1, -5_000_000_001, 32_503_680_000_000_001_000])
def test_iso_timestamps_read_as_datetime_writes_them(time_ns: int) -> None:
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc).replace(microsecond=nanos // 1000)
    assert iso_timestamp(time_ns) == moment.isoformat()


class _ReceivedSpan:
    """A span as the bridge receives it over OTLP: any attribute value, bytes and non-finite numbers too."""

    def __init__(self, attributes: dict[str, object]) -> None:
        self.attributes = attributes
        self.start_time, self.end_time = 1_000_000_000, 3_000_000_000
        self.status = trace.Status(trace.StatusCode.UNSET)


@pytest.mark.parametrize("model", ["gpt-4o-mini", "modèle", b"raw", float("nan"), ("a", "b")])
def test_the_action_metadata_text_is_the_json_safe_one(model: object) -> None:
    action = attribution.model_call_action(_ReceivedSpan({
        "gen_ai.operation.name": "chat", "gen_ai.request.model": model, "gen_ai.usage.input_tokens": 3}), "00ff")
    expected = {"provider": "unknown", "operation": "chat", "request_model": model, "response_model": None,
                "response_id": None, "finish_reasons": [], "input_tokens": 3, "output_tokens": 0}
    assert action["agentsight.metadata"] == jsonsafe.dumps(expected)
