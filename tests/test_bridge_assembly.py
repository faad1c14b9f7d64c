"""Turn assembly in the bridge: spans of one turn arriving apart give the in-process result, once."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider

from agentsight.bridge.assembly import TurnAssembler
from agentsight.bridge.core import BridgeCore
from agentsight.bridge.otlp import ReceivedEvent, ReceivedSpan
from agentsight.config import Settings
from agentsight.dev import DevServer
from agentsight.export.rest import translate
from agentsight.spans import semconv as sc
from tests.conftest import API_KEY, QUICK_RETRIES

TRACE = b"\x01" * 16
SECOND = 1_000_000_000


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _turn(*events: ReceivedEvent, trace_id: bytes = TRACE) -> ReceivedSpan:
    return ReceivedSpan(sc.CONVERSATION_SPAN, {sc.CONVERSATION_ID: "conv-a", sc.IS_USED: True}, events,
                        start_time=10 * SECOND, end_time=20 * SECOND, trace_id=trace_id, span_id=b"\x0a" * 8)


def _call(span_id: int, tokens: int, parent: int = 10, start: int = 12, **attributes: object) -> ReceivedSpan:
    return ReceivedSpan(
        "chat m",
        {sc.GEN_AI_OPERATION_NAME: "chat", sc.GEN_AI_PROVIDER_NAME: "openai", sc.GEN_AI_REQUEST_MODEL: "m",
         sc.GEN_AI_USAGE_INPUT_TOKENS: tokens, sc.GEN_AI_USAGE_OUTPUT_TOKENS: 1, **attributes},
        (), start_time=start * SECOND, end_time=(start + 1) * SECOND, trace_id=TRACE,
        span_id=bytes([span_id]) * 8, parent_span_id=bytes([parent]) * 8,
    )


def _usage_and_actions(turn: ReceivedSpan) -> tuple[dict[str, int], list[str]]:
    payloads = translate(turn)
    assert payloads is not None
    actions = [p.body for p in payloads.items if p.kind == "action"]
    return actions[-1]["metadata"], [a["action_name"] for a in actions[:-1]]


def test_calls_sent_before_and_after_their_turn_join_it_once() -> None:
    clock = Clock()
    assembler = TurnAssembler(grace=2, clock=clock)
    assembler.add([_call(1, 100)])
    assembler.add([_turn(ReceivedEvent(sc.MESSAGE_EVENT, {sc.MESSAGE_SENDER: "end_user",
                                                          sc.MESSAGE_CONTENT: "hi"}, 11 * SECOND))])
    assert assembler.due() == [], "the turn waits its grace period"
    clock.now = 1
    assembler.add([_call(2, 10)])
    clock.now = 2
    ((turn, _),) = assembler.due()
    usage, calls = _usage_and_actions(turn)
    assert usage == {"prompt_tokens": 110, "completion_tokens": 2, "total_tokens": 112, "embedding_tokens": 0}
    assert calls == ["chat openai/m", "chat openai/m"]
    assert assembler.stats.model_calls_joined == 2 and assembler.stats.model_calls_waiting == 0


def test_calls_accounted_for_in_process_or_nested_are_not_counted_again() -> None:
    clock = Clock()
    assembler = TurnAssembler(grace=0, clock=clock)
    held_action = {sc.ACTION_NAME: "chat openai/m", sc.MODEL_CALL_SPAN_ID: (b"\x03" * 8).hex()}
    assembler.add([
        _call(3, 1000),  # already an action of the turn (its events name it)
        _call(4, 1000, parent=3),  # the client's own span inside that call
        _call(5, 1000, **{sc.CONVERSATION_ID: "conv-a"}),  # marked in-process
        _call(6, 7),
        _call(7, 1000, parent=6),  # nested in a call that joins
        _call(8, 1000, start=30),  # outside the turn's time
        _turn(ReceivedEvent(sc.ACTION_EVENT, held_action, 13 * SECOND)),
    ])
    ((turn, _),) = assembler.due()
    usage, calls = _usage_and_actions(turn)
    assert usage["prompt_tokens"] == 7
    assert calls == ["chat openai/m", "chat openai/m"], "the held one and the joined one"


def test_waiting_calls_are_bounded_in_age_and_count(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="agentsight.bridge")
    clock = Clock()
    assembler = TurnAssembler(grace=0, max_wait=10, max_waiting_calls=3, clock=clock)
    assembler.add([ReceivedSpan(**{**_call(1, 1).__dict__, "trace_id": bytes([n]) * 16}) for n in range(5)])
    assert assembler.stats.model_calls_waiting == 3 and assembler.stats.model_calls_expired == 2
    clock.now = 11
    assembler.due()
    assert assembler.stats.model_calls_waiting == 0 and assembler.stats.model_calls_expired == 5
    lines = [record.getMessage() for record in caplog.records if "dropped" in record.getMessage()]
    assert len(lines) == 1, "the first drop is logged, the next ones at most once a minute"
    clock.now = 100
    assembler.add([_call(9, 1)] * 4)
    expired = assembler.stats.model_calls_expired
    assert f"dropped {expired - 1} model-call span(s)" in caplog.records[-1].getMessage(), "a minute on: all since"


def test_drain_delivers_turns_still_in_their_grace() -> None:
    assembler = TurnAssembler(grace=60, clock=Clock())
    assembler.add([_turn(), _call(1, 5)])
    assert assembler.due() == []
    ((turn, _),) = assembler.drain()
    assert _usage_and_actions(turn)[0]["prompt_tokens"] == 5


def test_a_malformed_conversation_span_is_refused_not_lost_silently(api: DevServer) -> None:
    tracer = TracerProvider().get_tracer("test")
    good = tracer.start_span(sc.CONVERSATION_SPAN, attributes={sc.CONVERSATION_ID: "conv-ok"})
    bad = tracer.start_span(sc.CONVERSATION_SPAN, attributes={sc.CONVERSATION_ID: "conv-bad",
                                                              sc.CONVERSATION_METADATA: "{not json"})
    good.end()
    bad.end()
    core = BridgeCore(Settings.resolve(api_key=API_KEY, endpoint=api.url, delivery=QUICK_RETRIES), grace=0)
    result = core.ingest(encode_spans([good, bad]))
    core.shutdown(1)
    assert (result.accepted_spans, result.rejected_spans, result.retry_after) == (1, 1, None)
    assert "could not be translated" in result.error_message
    assert core.stats()["turns_malformed"] == 1
    assert list(api.conversations) == ["conv-ok"], "the good one was delivered before the answer"
