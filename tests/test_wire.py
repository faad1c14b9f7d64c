"""Every tracking method's payload against docs/wire.md, over HTTP to the local API."""

from __future__ import annotations

import base64
from datetime import datetime

import pytest

from agentsight import ConversationTracker
from agentsight.dev import DevServer
from tests.conftest import bodies

pytestmark = pytest.mark.usefixtures("rest_wire")  # these tests read the REST wire's payloads


def _iso(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() is not None and moment.utcoffset().total_seconds() == 0
    return moment


def test_seed_flow_arrives_in_wire_order(api: DevServer, tracker: ConversationTracker) -> None:
    tracker.initialize_conversation(
        conversation_id="conv-1", customer_id="user-7", customer_ip_address="203.0.113.9", device="desktop",
        source="web", language="en-US", metadata={"page_url": "https://example.test/help"},
    )
    tracker.get_or_create_conversation(conversation_id="conv-1", customer_id="user-7")
    tracker.track_question("Hello, I need help")
    tracker.track_answer("This is a sample response")
    tracker.track_button(button_event="contact_human_agent", label="Create ticket", value="create-ticket")
    tracker.track_token_usage(prompt_tokens=100, completion_tokens=25, total_tokens=125)
    tracker.send_tracked_data()
    assert tracker.flush(timeout=10)["complete"]

    arrived = [(r.path, r.body) for r in api.accepted()]
    assert [path for path, _ in arrived] == [
        "/api/conversations/", "/api/conversations/", "/api/track/", "/api/track/", "/api/buttons/",
        "/api/action_logs/",
    ]
    initialized, used, question, answer, button, usage = (body for _, body in arrived)
    assert initialized == {
        "timestamp": initialized["timestamp"], "conversation_id": "conv-1", "customer_id": "user-7",
        "customer_ip_address": "203.0.113.9", "device": "desktop", "source": "web", "language": "en-US",
        "name": None, "environment": "production", "metadata": {"page_url": "https://example.test/help"},
        "is_used": False,
    }
    assert used["is_used"] is True and used["customer_id"] == "user-7" and used["metadata"] is None
    assert question == {"timestamp": question["timestamp"], "content": "Hello, I need help", "sender": "end_user",
                        "conversation_id": "conv-1", "metadata": {}, "conversation": 1}
    assert answer["sender"] == "agent" and answer["content"] == "This is a sample response"
    assert answer["conversation"] == 1
    assert button == {"timestamp": button["timestamp"], "button_event": "contact_human_agent",
                      "label": "Create ticket", "value": "create-ticket", "conversation_id": "conv-1",
                      "metadata": {}, "conversation": 1}
    assert usage["action_name"] == "token_usage" and usage["conversation"] == 1
    assert usage["metadata"] == {"prompt_tokens": 100, "completion_tokens": 25, "total_tokens": 125,
                                 "embedding_tokens": 0}
    times = [_iso(body["timestamp"]) for _, body in arrived]
    assert times == sorted(times), "timestamps are when things happened, in order"
    assert all(r.headers["authorization"].startswith("Api-Key ags_") for r in api.accepted())
    assert all(r.headers["content-type"] == "application/json" for r in api.accepted())


def test_action_with_every_field(api: DevServer, tracker: ConversationTracker) -> None:
    tracker.get_or_create_conversation("conv-a")
    tracker.track_action(
        "search_orders", started_at=datetime(2026, 1, 2, 3, 4, 5), ended_at="2026-01-02T03:04:06+00:00",
        duration_ms=1000, tools_used={"db": ["orders"], "n": 2}, response="3 orders", error_msg="partial",
        metadata={"k": "v"},
    )
    tracker.track_action("plain")
    tracker.send_tracked_data()
    tracker.flush(10)
    full, plain = bodies(api, "/api/action_logs/")
    assert full["action_name"] == "search_orders"
    assert full["started_at"] == "2026-01-02T03:04:05" and full["ended_at"] == "2026-01-02T03:04:06+00:00"
    assert full["duration_ms"] == 1000 and full["tools_used"] == {"db": ["orders"], "n": 2}
    assert full["response"] == "3 orders" and full["error_msg"] == "partial" and full["metadata"] == {"k": "v"}
    assert set(plain) == {"timestamp", "action_name", "conversation_id", "metadata", "conversation"}


def test_attachments_base64_and_form_data(api: DevServer, tracker: ConversationTracker) -> None:
    encoded = base64.b64encode(b"%PDF-1.4 hello").decode()
    tracker.get_or_create_conversation("conv-files")
    tracker.track_attachments([{"filename": "a.pdf", "mime_type": "application/pdf", "data": encoded}],
                              sender="agent", metadata={"why": "invoice"})
    tracker.track_attachments([{"data": b"\x89PNG raw", "filename": "p.png"}, {"data": b"no name"}],
                              mode="form_data", metadata={"n": 2})
    tracker.send_tracked_data()
    tracker.flush(10)
    as_json, as_form = api.accepted("/api/attachments/")
    assert as_json.body["mode"] == "base64" and as_json.body["sender"] == "agent"
    assert as_json.body["attachments"] == [{"filename": "a.pdf", "mime_type": "application/pdf", "data": encoded}]
    assert as_json.body["metadata"] == {"why": "invoice"} and as_json.body["conversation"] == 1
    assert as_form.headers["content-type"].startswith("multipart/form-data")
    assert as_form.body == {"timestamp": as_form.body["timestamp"], "sender": "end_user", "mode": "form_data",
                            "metadata": '{"n": 2}', "conversation": "1"}
    assert as_form.files["attachment_0"] == ("p.png", "image/png", b"\x89PNG raw")
    assert as_form.files["attachment_1"] == ("attachment_1.bin", "application/octet-stream", b"no name")


def test_human_and_agent_message_names(api: DevServer, tracker: ConversationTracker) -> None:
    tracker.get_or_create_conversation("conv-m")
    encoded = base64.b64encode(b"img").decode()
    tracker.track_human_message("hi", attachments=[{"filename": "i.png", "mime_type": "image/png", "data": encoded}])
    tracker.track_agent_message("hello", metadata={"model": "m"})
    tracker.send_tracked_data()
    tracker.flush(10)
    assert [(b["sender"], b["content"]) for b in bodies(api, "/api/track/")] == [("end_user", "hi"), ("agent", "hello")]
    (attachment,) = bodies(api, "/api/attachments/")
    assert attachment["sender"] == "end_user" and attachment["attachments"][0]["filename"] == "i.png"


def test_context_manager_sends_on_exit_and_on_exception(
    api: DevServer, tracker: ConversationTracker
) -> None:
    with tracker.conversation("conv-ok", customer_id="c1") as turn:
        assert turn.conversation_id == "conv-ok"
        tracker.track_question("q1")
    with pytest.raises(RuntimeError), tracker.conversation("conv-bad"):
        tracker.track_question("q2")
        raise RuntimeError("boom")
    tracker.flush(10)
    assert sorted((b["conversation_id"], b["content"]) for b in bodies(api, "/api/track/")) == [
        ("conv-bad", "q2"), ("conv-ok", "q1")]
    assert sorted((b["conversation_id"], b["customer_id"] or "") for b in bodies(api, "/api/conversations/")) == [
        ("conv-bad", ""), ("conv-ok", "c1")]


def test_explicit_conversation_id_addresses_that_conversation(
    api: DevServer, tracker: ConversationTracker
) -> None:
    tracker.get_or_create_conversation("conv-main")
    tracker.track_question("to main")
    tracker.track_button("feedback", "Yes", "yes", conversation_id="conv-other")
    tracker.track_question("still main")
    result = tracker.send_tracked_data()
    tracker.flush(10)
    assert result["summary"]["questions"] == 2 and result["summary"]["buttons"] == 1
    conversations = {b["conversation_id"]: b for b in bodies(api, "/api/conversations/")}
    assert set(conversations) == {"conv-main", "conv-other"}
    (button,) = bodies(api, "/api/buttons/")
    assert button["conversation_id"] == "conv-other"
    assert button["conversation"] == api.conversations["conv-other"]["id"] != api.conversations["conv-main"]["id"]
    assert [b["content"] for b in bodies(api, "/api/track/")] == ["to main", "still main"]


def test_token_usage_sums_per_turn(api: DevServer, tracker: ConversationTracker) -> None:
    tracker.get_or_create_conversation("conv-t")
    assert tracker.get_token_usage() == {}
    tracker.track_token_usage(10, 5, 15)
    tracker.track_token_usage(prompt_tokens=1, embedding_tokens=7)
    assert tracker.get_token_usage() == {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 15,
                                         "embedding_tokens": 7}
    tracker.track_question("q")
    tracker.send_tracked_data()
    tracker.get_or_create_conversation("conv-t")
    assert tracker.get_token_usage() == {}, "a new turn starts from zero"
    tracker.track_question("second turn, no usage")
    tracker.send_tracked_data()
    tracker.flush(10)
    (usage,) = bodies(api, "/api/action_logs/")
    assert usage["metadata"] == {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 15,
                                 "embedding_tokens": 7}


def test_summary_and_send_result_shapes(tracker: ConversationTracker) -> None:
    tracker.get_or_create_conversation("conv-s")
    tracker.track_question("q")
    tracker.track_answer("a")
    summary = tracker.get_tracked_data_summary()
    assert [item["type"] for item in summary["items"]] == ["conversation", "question", "answer"]
    assert summary["items"][1]["data"]["content"] == "q"
    sent = tracker.send_tracked_data()
    assert [item["type"] for item in sent["items"]] == ["conversation", "question", "answer"]
    assert {item["status"] for item in sent["items"]} == {"queued"}
    assert sent["summary"]["questions"] == 1 and sent["summary"]["answers"] == 1 and sent["summary"]["errors"] == 0
    assert tracker.get_tracked_data_summary()["items"] == []


def test_flush_returns_per_item_results(api: DevServer, tracker: ConversationTracker) -> None:
    tracker.get_or_create_conversation("conv-r")
    tracker.track_question("q")
    tracker.send_tracked_data()
    result = tracker.flush(10)
    assert result["complete"] is True
    assert [(i["type"], i["success"], i["status"]) for i in result["items"]] == [
        ("conversation", True, 201), ("question", True, 201)]
    assert result["items"][0]["response"]["id"] == 1
    assert tracker.flush(1)["items"] == [], "results are reported once"


def test_every_turn_posts_its_conversation(api: DevServer, tracker: ConversationTracker) -> None:
    """No server id is trusted beyond its turn (an API may forget): each turn gets its id from its own POST."""
    for text in ("one", "two"):
        tracker.get_or_create_conversation("conv-same", customer_id="c")
        tracker.track_question(text)
        tracker.send_tracked_data()
    tracker.flush(10)
    assert len(bodies(api, "/api/conversations/")) == 2
    assert [b["conversation"] for b in bodies(api, "/api/track/")] == [1, 1]


def test_environment_variable_overrides_environment(api: DevServer, make_tracker, monkeypatch) -> None:
    monkeypatch.setenv("AGENTSIGHT_ENVIRONMENT", "development")
    tracker = make_tracker()
    tracker.initialize_conversation("conv-env")
    tracker.flush(10)
    assert bodies(api, "/api/conversations/")[0]["environment"] == "development"


def test_default_conversation_id_from_environment(api: DevServer, make_tracker, monkeypatch) -> None:
    monkeypatch.setenv("AGENTSIGHT_CONVERSATION_ID", "conv-from-env")
    tracker = make_tracker()
    tracker.track_question("no get_or_create needed")
    tracker.send_tracked_data()
    tracker.flush(10)
    assert bodies(api, "/api/track/")[0]["conversation_id"] == "conv-from-env"


def test_reopening_the_current_conversation_continues_its_turn(
    api: DevServer, tracker: ConversationTracker
) -> None:
    tracker.get_or_create_conversation("conv-a", customer_id="c")
    tracker.track_question("a1")
    tracker.get_or_create_conversation("conv-a", language="de")
    tracker.track_question("a2")
    assert [item["type"] for item in tracker.get_tracked_data_summary()["items"]] == [
        "conversation", "question", "question"]
    tracker.send_tracked_data()
    tracker.flush(10)
    assert [b["content"] for b in bodies(api, "/api/track/")] == ["a1", "a2"]
    (conversation,) = bodies(api, "/api/conversations/")
    assert conversation["customer_id"] == "c" and conversation["language"] == "de"


def test_switching_conversations_sends_the_turn_switched_from(
    api: DevServer, tracker: ConversationTracker
) -> None:
    tracker.get_or_create_conversation("conv-a")
    tracker.track_question("a1")
    tracker.get_or_create_conversation("conv-b")
    assert tracker.flush(10)["complete"]
    assert [b["content"] for b in bodies(api, "/api/track/")] == ["a1"], "sent at the switch, nothing lost"
    tracker.track_question("b1")
    tracker.get_or_create_conversation("conv-a")
    tracker.track_question("a2")
    tracker.send_tracked_data()
    tracker.flush(10)
    by_conversation: dict[str, list[str]] = {}
    for body in bodies(api, "/api/track/"):
        by_conversation.setdefault(body["conversation_id"], []).append(body["content"])
    assert by_conversation == {"conv-a": ["a1", "a2"], "conv-b": ["b1"]}
