"""The ingest wire end to end: the seed API through our exporter to ``agentsight dev``, compared with upstream 0.1.4.

The golden documents in ``tests/golden/upstream-0.1.4/`` were recorded from upstream 0.1.4 doing the same
user flows (``tests/golden/record_upstream.py``); ours must have the same structure: blocks and their
fields, span kinds, names, parent relations, attribute and event names (ids, times and values aside).
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from agentsight import ConversationTracker
from agentsight.config import DeliverySettings
from agentsight.dev import CannedResponse, DevServer
from agentsight.dev.local_llm import CHAT_CACHED_TOKENS, CHAT_REASONING_TOKENS, CHAT_USAGE, FakeLLMServer
from agentsight.exceptions import ConfigurationError
from agentsight.instrumentation.openai import OpenAIInstrumentor
from tests.conftest import API_KEY, QUICK_RETRIES, instrumented

GOLDEN = Path(__file__).parent / "golden" / "upstream-0.1.4"
FIELDS = {
    "customer_id": "user-7",
    "customer_ip_address": "203.0.113.9",
    "device": "desktop",
    "source": "web",
    "language": "en-US",
    "environment": "production",
    "metadata": {"page_url": "https://shop.example/help"},
}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ"


def golden_documents(flow: str) -> list[dict[str, Any]]:
    recording = json.loads((GOLDEN / f"{flow}.json").read_text())
    return [request["body"] for request in recording["requests"] if request["path"] == "/api/ingest/"]


def ingest_documents(api: DevServer) -> list[dict[str, Any]]:
    return [request.body for request in api.accepted("/api/ingest/")]


def shape(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """What must match upstream: per conversation, the block's keys and each span's structure."""
    blocks: dict[str, dict[str, Any]] = {}
    for document in documents:
        assert set(document) == {"sdk", "conversations"}
        for block in document["conversations"]:
            entry = blocks.setdefault(block["conversation_id"], {"fields": set(), "spans": []})
            entry["fields"] |= set(block) - {"spans"}
            entry["spans"].extend(block["spans"])
    result = {}
    for conversation_id, entry in blocks.items():
        turns = {span["span_id"] for span in entry["spans"] if span["kind"] == "turn"}
        result[conversation_id] = {
            "fields": sorted(entry["fields"]),
            "spans": sorted(_span_shape(span, turns) for span in entry["spans"]),
        }
    return result


def _span_shape(span: dict[str, Any], turns: set[str]) -> tuple[Any, ...]:
    parent = "turn" if span["parent_span_id"] in turns else "root" if span["parent_span_id"] is None else "other"
    events = tuple((event["name"], tuple(sorted(event["attributes"]))) for event in span["events"])
    return (span["kind"], span["name"], parent, span["status"], tuple(sorted(span)), tuple(sorted(span["attributes"])),
            events, tuple(sorted(span["otel"])))


@pytest.fixture
def ingest_tracker(make_tracker: Callable[..., ConversationTracker]) -> ConversationTracker:
    return make_tracker(protocol="ingest")


def seed_turn(tracker: ConversationTracker, conversation_id: str = "conv-1") -> None:
    tracker.get_or_create_conversation(conversation_id, **FIELDS)  # type: ignore[arg-type]
    tracker.track_question("Hello, I need help")
    tracker.track_action("lookup_order", tools_used={"order_id": "A-1"}, response="{'status': 'shipped'}")
    tracker.track_answer("This is a sample response")
    tracker.track_button("contact_human_agent", "Create ticket", "create-ticket")
    tracker.send_tracked_data()


def test_visit_matches_upstream(api: DevServer, ingest_tracker: ConversationTracker) -> None:
    ingest_tracker.initialize_conversation("conv-visit", **FIELDS)  # type: ignore[arg-type]
    assert ingest_tracker.flush(10)["complete"]
    assert shape(ingest_documents(api)) == shape(golden_documents("visit"))


def test_seed_turn_matches_upstream(api: DevServer, ingest_tracker: ConversationTracker) -> None:
    seed_turn(ingest_tracker)
    assert ingest_tracker.flush(10)["complete"]
    ours, theirs = shape(ingest_documents(api)), shape(golden_documents("seed_turn"))
    assert ours == theirs
    assert [kind for kind, *_ in ours["conv-1"]["spans"]] == ["button", "tool", "turn"]


def test_two_turns_match_upstream(api: DevServer, ingest_tracker: ConversationTracker) -> None:
    for turn in range(2):
        ingest_tracker.get_or_create_conversation("conv-2", **FIELDS)  # type: ignore[arg-type]
        ingest_tracker.track_question(f"question {turn}")
        ingest_tracker.track_answer(f"answer {turn}")
        ingest_tracker.send_tracked_data()
    assert ingest_tracker.flush(10)["complete"]
    assert shape(ingest_documents(api)) == shape(golden_documents("two_turns"))


def test_attachments_descriptor_matches_upstream_and_bytes_reach_the_attachments_route(
    api: DevServer, ingest_tracker: ConversationTracker
) -> None:
    ingest_tracker.get_or_create_conversation("conv-att", **FIELDS)  # type: ignore[arg-type]
    ingest_tracker.track_question("Here is my receipt")
    ingest_tracker.track_attachments([{"filename": "receipt.txt", "mime_type": "text/plain",
                                       "data": "cmVjZWlwdCBudW1iZXIgNw=="}], sender="end_user")
    ingest_tracker.track_attachments([{"filename": "pixel.png", "mime_type": "image/png", "data": PNG}],
                                     sender="agent", metadata={"origin": "camera"})
    ingest_tracker.send_tracked_data()
    assert ingest_tracker.flush(10)["complete"]

    def attachment_spans(documents: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        """Uploaded attachments (upstream's golden also holds a ``record_attachments()`` span, without a mode)."""
        return [span for span in shape(documents)["conv-att"]["spans"]
                if span[0] == "attachment" and "agentsight.attachment.mode" in span[5]]

    assert attachment_spans(ingest_documents(api)) == attachment_spans(golden_documents("attachments"))
    uploads = [request.body for request in api.accepted("/api/attachments/")]
    assert [upload["attachments"][0]["filename"] for upload in uploads] == ["receipt.txt", "pixel.png"]
    conversation = api.conversations["conv-att"]
    assert all(int(upload["conversation"]) == conversation["id"] for upload in uploads)
    paths = [request.path for request in api.accepted()]
    assert paths.index("/api/ingest/") < paths.index("/api/attachments/"), "bytes follow the document"


def test_gzip_only_when_the_server_lists_the_capability(make_tracker: Callable[..., ConversationTracker]) -> None:
    for capabilities, expected in ((("gzip-ingest",), "gzip"), ((), None)):
        with DevServer(capabilities=capabilities) as api:
            tracker = make_tracker(endpoint=api.url, protocol="ingest")
            assert tracker.exporter is not None and tracker.exporter.key_check is not None
            assert tracker.exporter.key_check.done.wait(10)
            tracker.get_or_create_conversation("conv-big")
            for number in range(40):
                tracker.track_question(f"{number} " + "x" * 500)
            tracker.send_tracked_data()
            assert tracker.flush(10)["complete"]
            (request,) = api.accepted("/api/ingest/")
            assert request.headers.get("content-encoding") == expected
            assert len(request.body["conversations"][0]["spans"][0]["events"]) == 40
            tracker.shutdown()


def test_429_and_5xx_on_ingest_are_retried(api: DevServer, ingest_tracker: ConversationTracker) -> None:
    api.inject(CannedResponse(429, b'{"detail": "slow down"}', retry_after="1", path="/api/ingest/"),
               CannedResponse(503, path="/api/ingest/"))
    seed_turn(ingest_tracker)
    result = ingest_tracker.flush(10)
    assert result["complete"] and result["summary"] == {"delivered": 3, "failed": 0}
    assert [r.status for r in api.requests if r.path == "/api/ingest/"] == [429, 503, 200]
    assert len(api.store.get_conversation(api.conversations["conv-1"]["id"])["messages"]) == 2


def test_block_errors_are_logged_with_their_conversation_and_the_rest_delivered(
    api: DevServer, make_tracker: Callable[..., ConversationTracker], caplog: pytest.LogCaptureFixture
) -> None:
    tracker = make_tracker(protocol="ingest")
    caplog.set_level(logging.ERROR, logger="agentsight")
    tracker.get_or_create_conversation("conv-ok")
    tracker.track_question("fine")
    tracker.get_or_create_conversation("x" * 300)  # longer than the API's 255 characters
    tracker.track_question("refused")
    tracker.send_tracked_data()
    result = tracker.flush(10)
    assert result["complete"]
    assert {item["conversation_id"] for item in result["items"] if not item["success"]} == {"x" * 300}
    assert "conv-ok" in api.conversations and "x" * 300 not in api.conversations
    assert any("x" * 300 in record.getMessage() for record in caplog.records)


def test_outage_is_reported_by_flush_and_counted(make_tracker: Callable[..., ConversationTracker]) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    tracker = make_tracker(endpoint=f"http://127.0.0.1:{port}", protocol="ingest",
                           delivery=DeliverySettings(backoff_initial=0.01, backoff_max=0.05, max_retry_time=1.0))
    seed_turn(tracker)
    result = tracker.flush(30)
    assert result["complete"] and result["summary"] == {"delivered": 0, "failed": 3}
    stats = tracker.delivery_stats()
    assert stats["payloads_expired"] == stats["payloads_submitted"] == 3


@pytest.mark.parametrize(
    ("role", "injected", "expected"),
    [
        ("read", None, "read role"),
        ("write", CannedResponse(401, b'{"detail": "Invalid API key."}', path="/api/me/"), "refused the API key"),
        ("write", CannedResponse(401, b'{"detail": "Subscription inactive."}', path="/api/me/"), "not active"),
    ],
)
def test_key_preflight_says_once_what_is_wrong_and_never_blocks(
    make_tracker: Callable[..., ConversationTracker], caplog: pytest.LogCaptureFixture,
    role: str, injected: CannedResponse | None, expected: str,
) -> None:
    caplog.set_level(logging.ERROR, logger="agentsight")
    with DevServer(role=role, latency=0.2) as api:
        if injected is not None:
            api.inject(injected)
        tracker = make_tracker(endpoint=api.url, protocol="ingest")
        tracker.get_or_create_conversation("conv-key")
        tracker.track_question("still tracked")
        tracker.send_tracked_data()
        assert not api.accepted(), "the preflight runs in the background: the tracker did not wait for it"
        assert tracker.flush(10)["summary"]["delivered"] == 1
        tracker.shutdown()
        lines = [record.getMessage() for record in caplog.records if expected in record.getMessage()]
        assert len(lines) == 1 and API_KEY not in lines[0]


def test_protocol_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="'soap'"):
        ConversationTracker(api_key=API_KEY, protocol="soap", delivery=QUICK_RETRIES)  # type: ignore[arg-type]
    monkeypatch.setenv("AGENTSIGHT_PROTOCOL", "grpc")
    with pytest.raises(ConfigurationError, match="AGENTSIGHT_PROTOCOL='grpc'"):
        ConversationTracker(api_key=API_KEY, delivery=QUICK_RETRIES)


def test_default_protocol_is_ingest(api: DevServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTSIGHT_PROTOCOL", raising=False)
    tracker = ConversationTracker(api_key=API_KEY, endpoint=api.url, delivery=QUICK_RETRIES)
    try:
        seed_turn(tracker)
        assert tracker.flush(10)["complete"]
    finally:
        tracker.shutdown()
    assert {request.path for request in api.accepted()} == {"/api/me/", "/api/ingest/"}


def _meaning(api: DevServer, conversation_id: str) -> dict[str, Any]:
    """What the backend made of a conversation, without ids and times."""
    detail = api.store.get_conversation(api.conversations[conversation_id]["id"])
    assert detail is not None
    fields = ("customer_id", "customer_ip_address", "device", "source", "language", "name", "environment",
              "metadata", "initialized", "is_used")
    return {
        "fields": {name: detail[name] for name in fields},
        "messages": [(m["sender"], m["content"], m["metadata"]) for m in detail["messages"]],
        "buttons": [(b["button_event"], b["label"], b["value"], b["metadata"]) for b in detail["buttons"]],
        "actions": [(a["action_name"], a["tools_used"], a["response"], a["error_msg"], a["metadata"])
                    for a in detail["actions"]],
        "tokens": detail["tokens"],
    }


def test_a_seed_turn_means_the_same_on_both_wires(make_tracker: Callable[..., ConversationTracker]) -> None:
    meanings = []
    for protocol in ("rest", "ingest"):
        with DevServer() as api:
            tracker = make_tracker(endpoint=api.url, protocol=protocol)
            tracker.initialize_conversation("conv-visit", **FIELDS)  # type: ignore[arg-type]
            tracker.initialize_conversation("conv-1", **FIELDS)  # type: ignore[arg-type]
            seed_turn(tracker)
            tracker.get_or_create_conversation("conv-1", **FIELDS)  # type: ignore[arg-type]
            tracker.track_question("And a refund?", metadata={"intent": "refund"})
            tracker.track_action("refund", error_msg="not allowed", metadata={"order": "A-1"})
            tracker.track_token_usage(prompt_tokens=100, completion_tokens=25, total_tokens=125, embedding_tokens=3)
            tracker.track_token_usage(prompt_tokens=10, completion_tokens=5, total_tokens=15)
            tracker.send_tracked_data()
            assert tracker.flush(10)["summary"]["failed"] == 0
            tracker.shutdown()
            stats = api.store.stats()
            meanings.append((_meaning(api, "conv-visit"), _meaning(api, "conv-1"),
                             {key: stats[key] for key in ("initialized", "used", "buttons", "tokens")}))
    rest_meaning, ingest_meaning = meanings
    assert ingest_meaning == rest_meaning
    visit, turn, stats = ingest_meaning
    assert (visit["fields"]["initialized"], visit["fields"]["is_used"]) == (True, False)
    assert [content for _, content, _ in turn["messages"]] == [
        "Hello, I need help", "This is a sample response", "And a refund?"]
    assert stats["tokens"]["prompt_tokens"] == 110 and stats["tokens"]["embedding_tokens"] == 3


def test_model_calls_are_llm_spans_shaped_as_upstreams(
    api: DevServer, make_tracker: Callable[..., ConversationTracker], fake: FakeLLMServer
) -> None:
    with instrumented(OpenAIInstrumentor):
        client = openai.OpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0)
        tracker = make_tracker(protocol="ingest")
        tracker.get_or_create_conversation("conv-llm", **FIELDS)  # type: ignore[arg-type]
        tracker.track_question("Where is my order?")
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        for _ in client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                                stream=True, stream_options={"include_usage": True}):
            pass
        tracker.track_answer("It ships today.")
        tracker.send_tracked_data()
        assert tracker.flush(10)["complete"]

    def llm_spans(documents: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        spans = [span for document in documents for block in document["conversations"] for span in block["spans"]]
        return [(span["name"], span["parent_span_id"] is not None, span["otel"]["span_kind"],
                 sorted(span["attributes"]))
                for span in spans if span["kind"] == "llm"]

    ours, theirs = llm_spans(ingest_documents(api)), llm_spans(golden_documents("llm_call"))
    assert [(name, child, keys) for name, child, _, keys in ours] == [
        (name, child, keys) for name, child, _, keys in theirs]
    assert {kind for _, _, kind, _ in ours} == {"CLIENT"}, "a model call is a client span, as GenAI conventions say"
    usage = [span["attributes"] for request in api.accepted("/api/ingest/") for block in request.body["conversations"]
             for span in block["spans"] if span["kind"] == "llm"]
    assert all(u["gen_ai.usage.input_tokens"] > 0 and u["gen_ai.usage.output_tokens"] > 0 for u in usage)
    assert not any(span["name"] == "token_usage" for request in api.accepted("/api/ingest/")
                   for block in request.body["conversations"] for span in block["spans"]), "not counted twice"
    uncached = CHAT_USAGE["prompt_tokens"] - CHAT_CACHED_TOKENS
    assert [(u["gen_ai.usage.input_tokens"], u["agentsight.llm.cache_read_tokens"],
             u["agentsight.llm.reasoning_tokens"], u.get("agentsight.llm.streaming")) for u in usage] == [
        (uncached, CHAT_CACHED_TOKENS, CHAT_REASONING_TOKENS, None),
        (uncached, CHAT_CACHED_TOKENS, CHAT_REASONING_TOKENS, True)], "cached tokens priced apart, as upstream's"
    tokens = api.store.stats()["tokens"]
    assert (tokens["prompt_tokens"], tokens["completion_tokens"], tokens["cache_read_tokens"],
            tokens["reasoning_tokens"]) == (2 * uncached, 2 * CHAT_USAGE["completion_tokens"], 2 * CHAT_CACHED_TOKENS,
                                            2 * CHAT_REASONING_TOKENS), "the dev dashboard's /api/stats/ totals"
