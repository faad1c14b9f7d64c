"""The pure translator alone: finished spans in, ordered payloads out."""

from __future__ import annotations

from opentelemetry.sdk.trace import Event, ReadableSpan

from agentsight.export.rest import outline, translate
from agentsight.spans import semconv as sc
from agentsight.spans.finished import iso_timestamp

START = 1_795_000_000_123_456_789


def _span(events: list[Event], name: str = sc.CONVERSATION_SPAN, **attributes: object) -> ReadableSpan:
    return ReadableSpan(
        name=name,
        attributes={sc.CONVERSATION_ID: "conv-t", sc.IS_USED: True, **attributes},
        events=events,
        start_time=START,
        end_time=START + 5_000_000,
    )


def test_other_spans_are_not_translated() -> None:
    assert translate(ReadableSpan(name="GET /health", attributes={"http.route": "/health"})) is None
    assert translate(ReadableSpan(name=sc.CONVERSATION_SPAN, attributes={})) is None
    assert translate(_span([], name="SELECT")) is None


def test_order_usage_sums_and_unknown_events() -> None:
    events = [
        Event(sc.MESSAGE_EVENT, {sc.MESSAGE_SENDER: "end_user", sc.MESSAGE_CONTENT: "q"}, START + 1000),
        Event(sc.TOKEN_USAGE_EVENT, {sc.USAGE_PROMPT_TOKENS: 3, sc.USAGE_TOTAL_TOKENS: 3}, START + 2000),
        Event("exception", {"exception.type": "ValueError"}, START + 2500),
        Event(sc.MESSAGE_EVENT, {sc.MESSAGE_SENDER: "agent", sc.MESSAGE_CONTENT: "a",
                                 sc.METADATA: '{"k":[1,2]}'}, START + 3000),
        Event(sc.TOKEN_USAGE_EVENT, {sc.USAGE_COMPLETION_TOKENS: 4, sc.USAGE_TOTAL_TOKENS: 4,
                                     sc.USAGE_EMBEDDING_TOKENS: 1}, START + 4000),
    ]
    turn = translate(_span(events, **{sc.CUSTOMER_ID: "c", sc.CONVERSATION_METADATA: '{"m":1}'}))
    assert turn is not None and turn.conversation_id == "conv-t"
    assert turn.conversation.body["customer_id"] == "c" and turn.conversation.body["metadata"] == {"m": 1}
    assert turn.conversation.body["device"] is None
    assert [p.kind for p in turn.items] == ["question", "answer", "action"]
    assert turn.items[1].body["metadata"] == {"k": [1, 2]}
    assert turn.items[2].body["metadata"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
                                              "embedding_tokens": 1}
    assert turn.items[2].timestamp == iso_timestamp(START + 5_000_000), "token usage is stamped at the turn's end"
    assert [p.timestamp for p in turn.items[:2]] == [iso_timestamp(START + 1000), iso_timestamp(START + 3000)]


def test_iso_timestamp_keeps_microseconds_and_utc_offset() -> None:
    assert iso_timestamp(1_795_000_000_123_456_789) == "2026-11-18T11:06:40.123456+00:00"


def test_outline_names_each_payload_translate_makes_in_order() -> None:
    """``send_tracked_data()``'s summary reads the outline: the kinds and times of the payloads, no bodies."""
    events = [
        Event(sc.MESSAGE_EVENT, {sc.MESSAGE_SENDER: "end_user", sc.MESSAGE_CONTENT: "q"}, START + 1000),
        Event(sc.ATTACHMENTS_EVENT, {sc.ATTACHMENTS_FILES: "[]", sc.ATTACHMENTS_SENDER: "end_user"}, START + 1500),
        Event(sc.ATTACHMENTS_EVENT, {sc.ATTACHMENTS_DESCRIPTORS: "[]"}, START + 1600),
        Event(sc.TOKEN_USAGE_EVENT, {sc.USAGE_PROMPT_TOKENS: 3, sc.USAGE_TOTAL_TOKENS: 3}, START + 2000),
        Event(sc.BUTTON_EVENT, {sc.BUTTON_EVENT_NAME: "click", sc.BUTTON_LABEL: "OK"}, START + 2200),
        Event("exception", {"exception.type": "ValueError"}, START + 2500),
        Event(sc.ACTION_EVENT, {sc.ACTION_NAME: "search"}, START + 2700),
        Event(sc.MESSAGE_EVENT, {sc.MESSAGE_SENDER: "agent", sc.MESSAGE_CONTENT: "a"}, START + 3000),
    ]
    for attributes in ({}, {sc.TURN_COMPLETE: False}):
        span = _span(events, **attributes)
        payloads = translate(span)
        assert payloads is not None
        assert outline(span) == [(payload.kind, payload.timestamp) for payload in payloads.all()], attributes
    assert [kind for kind, _ in outline(_span(events)) or ()] == [
        "conversation", "question", "attachments", "button", "action", "answer", "action"]
    assert outline(_span([], name="SELECT")) is None
