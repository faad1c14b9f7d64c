"""The pure ingest translator alone: finished conversation spans in, ingest span families and documents out."""

from __future__ import annotations

import json

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import SpanContext, Status, StatusCode

from agentsight.export import ingest
from agentsight.spans import semconv as sc
from agentsight.spans.finished import iso_timestamp

START = 1_795_000_000_123_456_789
TRACE_ID = 0x0123456789ABCDEF0123456789ABCDEF
SPAN_ID = 0x1122334455667788
CONVERSATION = {
    sc.CONVERSATION_ID: "conv-i",
    sc.CUSTOMER_ID: "user-7",
    sc.CUSTOMER_IP_ADDRESS: "203.0.113.9",
    sc.ENVIRONMENT: "production",
    sc.CONVERSATION_METADATA: '{"page_url":"https://shop.example/help"}',
}


def _span(events: list[Event], status: Status | None = None, **attributes: object) -> ReadableSpan:
    return ReadableSpan(
        name=sc.CONVERSATION_SPAN,
        context=SpanContext(TRACE_ID, SPAN_ID, is_remote=False),
        attributes={**CONVERSATION, sc.IS_USED: True, **attributes},
        events=events,
        start_time=START,
        end_time=START + 5_000_000,
        status=status or Status(StatusCode.UNSET),
    )


def _by_kind(turn: ingest.IngestTurn) -> dict[str, list[dict]]:
    kinds: dict[str, list[dict]] = {}
    for span in turn.spans:
        kinds.setdefault(span["kind"], []).append(span)
    return kinds


def test_other_spans_are_not_translated() -> None:
    assert ingest.translate(ReadableSpan(name="GET /health", attributes={"http.route": "/health"})) is None


def test_visit_is_a_conversation_span_of_the_block() -> None:
    turn = ingest.translate(_span([], **{sc.IS_USED: False}))
    assert turn is not None
    (span,) = turn.spans
    assert (span["kind"], span["name"], span["span_id"]) == ("conversation", "conversation_opened", "1122334455667788")
    assert span["attributes"][sc.SPAN_KIND] == "conversation" and sc.TURN_ID not in span["attributes"]
    assert span["attributes"][sc.CUSTOMER_IP] == "203.0.113.9", "ingest's attribute name"
    assert turn.fields == {"customer_id": "user-7", "customer_ip_address": "203.0.113.9", "environment": "production"}
    assert turn.metadata == {"page_url": "https://shop.example/help"}


def test_turn_family_messages_buttons_actions_usage() -> None:
    events = [
        Event(sc.MESSAGE_EVENT, {sc.MESSAGE_SENDER: "end_user", sc.MESSAGE_CONTENT: "q", sc.METADATA: '{"a":1}'},
              START + 1000),
        Event(sc.ACTION_EVENT, {sc.ACTION_NAME: "lookup_order", sc.ACTION_TOOLS_USED: '{"order_id":"A-1"}',
                                sc.ACTION_RESPONSE: "shipped", sc.ACTION_DURATION_MS: 2}, START + 3_000_000),
        Event(sc.MESSAGE_EVENT, {sc.MESSAGE_SENDER: "agent", sc.MESSAGE_CONTENT: "a"}, START + 3_500_000),
        Event(sc.BUTTON_EVENT, {sc.BUTTON_EVENT_NAME: "feedback", sc.BUTTON_LABEL: "Helpful", sc.BUTTON_VALUE: "yes"},
              START + 4_000_000),
        Event(sc.TOKEN_USAGE_EVENT, {sc.USAGE_PROMPT_TOKENS: 100, sc.USAGE_COMPLETION_TOKENS: 25,
                                     sc.USAGE_TOTAL_TOKENS: 125, sc.USAGE_EMBEDDING_TOKENS: 0}, START + 4_500_000),
    ]
    turn = ingest.translate(_span(events))
    assert turn is not None
    kinds = _by_kind(turn)
    (root,) = kinds["turn"]
    assert root["span_id"] == root["attributes"][sc.TURN_ID] == "1122334455667788"
    assert root["parent_span_id"] is None and root["status"] == "ok"
    assert root["attributes"][sc.TURN_COMPLETE] is True
    assert [(e["attributes"][sc.MESSAGE_SENDER], e["attributes"][sc.MESSAGE_CONTENT]) for e in root["events"]] == [
        ("end_user", "q"), ("agent", "a")]
    assert root["events"][0]["attributes"][sc.MESSAGE_METADATA] == '{"a":1}'
    (tool,) = kinds["tool"]
    assert tool["name"] == "lookup_order" and tool["attributes"][sc.TOOL_ARGUMENTS] == '{"order_id":"A-1"}'
    assert tool["attributes"][sc.TOOL_RESPONSE] == "shipped" and tool["duration_ms"] == 2.0
    assert tool["ended_at"] == iso_timestamp(START + 3_000_000), "an action ends when it was tracked"
    (button,) = kinds["button"]
    assert button["name"] == "Helpful" and button["attributes"][sc.BUTTON_VALUE] == "yes"
    (usage,) = kinds["llm"]
    assert usage["name"] == "token_usage"
    assert usage["attributes"][sc.GEN_AI_USAGE_INPUT_TOKENS] == 100
    assert usage["attributes"][sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 25
    for child in (tool, button, usage):
        assert child["parent_span_id"] == root["span_id"] and child["trace_id"] == root["trace_id"]
        assert child["attributes"][sc.TURN_ID] == root["span_id"]
        assert child["attributes"][sc.CONVERSATION_ID] == "conv-i"
    assert len({span["span_id"] for span in turn.spans}) == 4


def test_child_ids_are_stable_across_translations() -> None:
    events = [Event(sc.BUTTON_EVENT, {sc.BUTTON_EVENT_NAME: "e", sc.BUTTON_LABEL: "l", sc.BUTTON_VALUE: "v"}, START)]
    first, second = ingest.translate(_span(events)), ingest.translate(_span(events))
    assert first is not None and second is not None
    assert [s["span_id"] for s in first.spans] == [s["span_id"] for s in second.spans], "a resend dedupes"


def test_model_call_becomes_its_own_llm_span_and_is_not_summed_again() -> None:
    call = {
        sc.ACTION_NAME: "chat openai/gpt-4o-mini-2024-07-18",
        sc.METADATA: json.dumps({"provider": "openai", "operation": "chat", "request_model": "gpt-4o-mini",
                                 "response_model": "gpt-4o-mini-2024-07-18", "input_tokens": 42, "output_tokens": 12}),
        sc.MODEL_CALL_SPAN_ID: "abcdefabcdefabcd",
        sc.ACTION_STARTED_AT: iso_timestamp(START + 1_000_000),
        sc.ACTION_ENDED_AT: iso_timestamp(START + 2_000_000),
        sc.ACTION_DURATION_MS: 1,
    }
    usage = {sc.USAGE_PROMPT_TOKENS: 42, sc.USAGE_COMPLETION_TOKENS: 12, sc.USAGE_TOTAL_TOKENS: 54,
             sc.MODEL_CALL_SPAN_ID: "abcdefabcdefabcd"}
    turn = ingest.translate(_span([Event(sc.TOKEN_USAGE_EVENT, usage, START + 2_000_000),
                                   Event(sc.ACTION_EVENT, call, START + 2_000_000)]))
    assert turn is not None
    (llm,) = _by_kind(turn)["llm"]
    assert llm["span_id"] == "abcdefabcdefabcd", "the GenAI span's own id"
    assert llm["name"] == "gpt-4o-mini-2024-07-18" and llm["otel"]["span_kind"] == "CLIENT"
    attributes = llm["attributes"]
    assert attributes[sc.GEN_AI_SYSTEM] == "openai" and attributes[sc.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini-2024-07-18"
    assert attributes[sc.LLM_REQUESTED_MODEL] == "gpt-4o-mini"
    assert (attributes[sc.GEN_AI_USAGE_INPUT_TOKENS], attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS]) == (42, 12)
    assert llm["duration_ms"] == 1.0


def test_model_call_cache_and_reasoning_tokens_are_priced_apart_as_upstream_does() -> None:
    metadata = {"provider": "openai", "operation": "chat", "request_model": "gpt-4o-mini", "input_tokens": 42,
                "output_tokens": 12, "cache_read_tokens": 10, "cache_write_tokens": 3, "reasoning_tokens": 4,
                "streaming": True}
    call = {sc.ACTION_NAME: "chat openai/gpt-4o-mini", sc.METADATA: json.dumps(metadata),
            sc.MODEL_CALL_SPAN_ID: "abcdefabcdefabcd"}
    turn = ingest.translate(_span([Event(sc.ACTION_EVENT, call, START + 10)]))
    assert turn is not None
    (llm,) = _by_kind(turn)["llm"]
    attributes = llm["attributes"]
    assert attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 29, "42 input tokens less the 13 the cache read or wrote"
    assert attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 12, "reasoning stays part of the output"
    assert (attributes[sc.LLM_CACHE_READ_TOKENS], attributes[sc.LLM_CACHE_WRITE_TOKENS],
            attributes[sc.LLM_REASONING_TOKENS]) == (10, 3, 4)
    assert attributes[sc.LLM_STREAMING] is True


def test_failed_action_and_raised_turn() -> None:
    events = [Event(sc.ACTION_EVENT, {sc.ACTION_NAME: "refund", sc.ACTION_ERROR_MSG: "boom"}, START + 10)]
    turn = ingest.translate(_span(events, status=Status(StatusCode.ERROR, "RuntimeError")))
    assert turn is not None
    kinds = _by_kind(turn)
    assert kinds["turn"][0]["status"] == "error"
    assert kinds["turn"][0]["attributes"][sc.TURN_COMPLETE] is True, "a seed turn's items are all sent, as on REST"
    assert kinds["tool"][0]["status"] == "error" and kinds["tool"][0]["attributes"][sc.TOOL_ERROR] == "boom"
    assert kinds["tool"][0]["otel"]["status_description"] == "boom"


def test_attachments_descriptor_span_and_upload_payload() -> None:
    files = [{"filename": "receipt.txt", "mime_type": "text/plain", "data": "aGVsbG8gd29ybGQ="}]
    event = Event(sc.ATTACHMENTS_EVENT, {sc.ATTACHMENTS_MODE: "base64", sc.ATTACHMENTS_SENDER: "end_user",
                                         sc.ATTACHMENTS_FILES: json.dumps(files)}, START + 10)
    turn = ingest.translate(_span([event]))
    assert turn is not None and turn.uploads is not None
    (span,) = _by_kind(turn)["attachment"]
    assert span["name"] == "1 attachment(s)" and span["attributes"][sc.ATTACHMENT_COUNT] == 1
    assert json.loads(span["attributes"][sc.ATTACHMENT_FILES]) == [
        {"filename": "receipt.txt", "size": 11, "mime_type": "text/plain"}]
    assert "data" not in span["attributes"][sc.ATTACHMENT_FILES], "descriptors only: bytes never ride in a span"
    (upload,) = turn.uploads.items
    assert upload.path == "/api/attachments/" and upload.body["attachments"] == files


def test_document_groups_blocks_latest_fields_win_spans_by_start() -> None:
    early = _span([], **{sc.DEVICE: "desktop"})
    late = ReadableSpan(name=sc.CONVERSATION_SPAN, context=SpanContext(TRACE_ID, SPAN_ID + 1, is_remote=False),
                        attributes={**CONVERSATION, sc.IS_USED: True, sc.DEVICE: "mobile",
                                    sc.CONVERSATION_METADATA: '{"plan":"pro"}'},
                        events=[], start_time=START - 1000, end_time=START)
    other = ReadableSpan(name=sc.CONVERSATION_SPAN, context=SpanContext(TRACE_ID, SPAN_ID + 2, is_remote=False),
                         attributes={sc.CONVERSATION_ID: "conv-other"}, events=[], start_time=START, end_time=START)
    document = ingest.document(ingest.translate(span) for span in (early, late, other))  # type: ignore[misc]
    assert document["sdk"]["name"] == "agentsight-otel"
    first, second = document["conversations"]
    assert (first["conversation_id"], second["conversation_id"]) == ("conv-i", "conv-other")
    assert first["device"] == "mobile" and first["metadata"] == {"plan": "pro"}
    assert [span["started_at"] for span in first["spans"]] == sorted(span["started_at"] for span in first["spans"])
    assert json.loads(json.dumps(document)) == document, "plain JSON types only"
