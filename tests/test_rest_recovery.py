"""APIs that forget (REST wire): no server id outlives its turn, a refused reference re-creates the conversation,
and ``agentsight dev`` refuses a ``conversation`` pk that is not the payload's conversation."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from agentsight import ConversationTracker
from agentsight.dev import CannedResponse, DevServer
from tests.conftest import API_KEY, QUICK_RETRIES, eventually, stored_messages

pytestmark = pytest.mark.usefixtures("rest_wire")

INVALID_PK = b'{"conversation": ["Invalid pk \\"1\\" - object does not exist."]}'


def _turn(tracker: ConversationTracker, conversation_id: str, *questions: str) -> None:
    tracker.get_or_create_conversation(conversation_id, customer_id="same-every-turn")
    for question in questions:
        tracker.track_question(question)
    tracker.send_tracked_data()


def _posts(server: DevServer) -> list[tuple[str, int, int | None]]:
    """``(path, status, conversation pk)`` of every request, in order."""
    return [(r.path, r.status, r.body.get("conversation")) for r in server.requests]


def test_a_restarted_empty_api_gets_each_later_message_under_its_own_conversation() -> None:
    """The API restarted with an empty database, other conversations taking the old ids: before, 10/10
    later messages were filed under other people's conversations (a permissive API) or refused (a strict one)."""
    first = DevServer().start()
    tracker = ConversationTracker(api_key=API_KEY, endpoint=first.url, delivery=QUICK_RETRIES)
    try:
        for number in range(10):
            _turn(tracker, f"conv-{number}", f"before {number}")
        assert tracker.flush(10)["delivered"]
        first.stop()
        with DevServer(port=first.port) as second:
            for number in range(10):  # someone else's conversations get ids 1..10 first
                second.store.upsert_conversation({"conversation_id": f"other-{number}", "is_used": True})
            for number in range(10):
                _turn(tracker, f"conv-{number}", f"after {number}")
            result = tracker.flush(10)
            assert result["delivered"] and result["failed"] == 0
            assert sorted(stored_messages(second)) == sorted((f"conv-{n}", f"after {n}") for n in range(10))
            ids = {cid: conversation["id"] for cid, conversation in second.conversations.items()}
            sent = sorted((r.body["conversation_id"], r.body["conversation"]) for r in second.requests
                          if r.path == "/api/track/")
            assert sent == sorted((f"conv-{n}", ids[f"conv-{n}"]) for n in range(10)), "an item carried a stale id"
            assert all(r.status == 201 for r in second.requests)
    finally:
        tracker.shutdown()
        first.stop()


def test_an_api_reset_in_the_middle_of_a_turn_gets_the_conversation_again() -> None:
    """The conversation POST answered by one database, the question by a fresh one: refused, re-created, resent."""
    first = DevServer().start()
    tracker = ConversationTracker(api_key=API_KEY, endpoint=first.url, delivery=QUICK_RETRIES)
    try:
        first.inject(CannedResponse(503, delay=0.3, path="/api/track/"))  # holds the question while we restart
        _turn(tracker, "conv-mid", "question after the reset")
        eventually(lambda: any(r.path == "/api/track/" for r in first.requests), what="the question to arrive")
        first.stop()
        second = DevServer(port=first.port)
        second.store.upsert_conversation({"conversation_id": "someone-else", "is_used": True})  # now id 1
        with second:
            result = tracker.flush(10)
            assert result["delivered"], result
            assert stored_messages(second) == [("conv-mid", "question after the reset")]
            assert _posts(second)[:3] == [("/api/track/", 400, 1), ("/api/conversations/", 201, None),
                                          ("/api/track/", 201, 2)]
    finally:
        tracker.shutdown()
        first.stop()


@pytest.mark.parametrize(("path", "refusal"), [
    ("/api/track/", CannedResponse(400, INVALID_PK, path="/api/track/")),
    ("/api/buttons/", CannedResponse(404, b'{"detail": "Not found."}', path="/api/buttons/")),
])
def test_a_refused_reference_recreates_the_conversation_and_delivers_the_item_once(
    api: DevServer, tracker: ConversationTracker, caplog: pytest.LogCaptureFixture, path: str,
    refusal: CannedResponse,
) -> None:
    caplog.set_level(logging.WARNING, logger="agentsight")
    api.inject(refusal)
    tracker.get_or_create_conversation("conv-ref")
    tracker.track_question("q")
    tracker.track_button("contact_human_agent", "Create ticket", "create-ticket")
    tracker.send_tracked_data()
    result = tracker.flush(10)
    assert result["delivered"] and [item["type"] for item in result["items"]] == ["conversation", "question", "button"]
    paths = [(r.path, r.status) for r in api.requests]
    refused_at = paths.index((path, refusal.status))
    assert paths[refused_at + 1:refused_at + 3] == [("/api/conversations/", 201), (path, 201)]
    assert len(api.accepted(path)) == 1, "delivered once"
    stats = tracker.delivery_stats()
    assert stats["payloads_delivered"] == stats["payloads_submitted"] == 3 and stats["payloads_rejected"] == 0
    warnings = [r.getMessage() for r in caplog.records if "refused id" in r.getMessage()]
    assert len(warnings) == 1 and "conv-ref" in warnings[0] and api.url in warnings[0]


def test_a_reference_refused_again_is_rejected_after_one_recreation(
    api: DevServer, tracker: ConversationTracker
) -> None:
    api.inject(CannedResponse(400, INVALID_PK, path="/api/track/"), CannedResponse(400, INVALID_PK, path="/api/track/"))
    _turn(tracker, "conv-twice", "q")
    result = tracker.flush(10)
    assert not result["delivered"] and result["failed"] == 1
    assert [(r.path, r.status) for r in api.requests] == [
        ("/api/conversations/", 201), ("/api/track/", 400), ("/api/conversations/", 201), ("/api/track/", 400)]
    (question,) = [item for item in result["items"] if item["type"] == "question"]
    assert question["outcome"] == "rejected" and "Invalid pk" in question["error"]


def test_a_failed_recreation_leaves_the_item_without_conversation(
    api: DevServer, tracker: ConversationTracker
) -> None:
    api.inject(CannedResponse(404, b'{"detail": "Not found."}', delay=0.3, path="/api/track/"))
    _turn(tracker, "conv-gone", "q")
    api.wait_for(1, path="/api/conversations/")
    api.inject(CannedResponse(400, b'{"environment": ["Not a valid choice."]}', path="/api/conversations/"))
    result = tracker.flush(10)
    assert [(r.path, r.status) for r in api.requests] == [
        ("/api/conversations/", 201), ("/api/track/", 404), ("/api/conversations/", 400)]
    assert [(item["type"], item["outcome"]) for item in result["items"]] == [
        ("conversation", "delivered"), ("question", "without_conversation")]
    assert result["failed"] == 1 and not result["delivered"]


def test_other_field_errors_do_not_recreate_the_conversation(api: DevServer, tracker: ConversationTracker) -> None:
    api.inject(CannedResponse(400, b'{"content": ["This field is too long."]}', path="/api/track/"))
    _turn(tracker, "conv-field", "q")
    tracker.flush(10)
    assert [r.path for r in api.requests] == ["/api/conversations/", "/api/track/"]


# agentsight dev refuses a pk that is not the payload's conversation -------------------------------------

def _post(api: DevServer, path: str, body: dict) -> httpx.Response:
    return httpx.post(api.url + path, json=body, headers={"Authorization": f"Api-Key {API_KEY}"})


def test_dev_refuses_a_pk_of_another_conversation_as_drf_does(api: DevServer) -> None:
    mine = _post(api, "/api/conversations/", {"conversation_id": "mine"}).json()["id"]
    theirs = _post(api, "/api/conversations/", {"conversation_id": "theirs"}).json()["id"]
    question = {"content": "hi", "sender": "end_user", "conversation_id": "mine"}
    for pk in (theirs, 999):
        answer = _post(api, "/api/track/", {**question, "conversation": pk})
        assert answer.status_code == 400
        assert answer.json() == {"conversation": [f'Invalid pk "{pk}" - object does not exist.']}
    button = {"button_event": "e", "label": "l", "value": "v", "conversation_id": "mine", "conversation": theirs}
    assert _post(api, "/api/buttons/", button).status_code == 400
    assert _post(api, "/api/track/", {**question, "conversation": mine}).status_code == 201
    assert stored_messages(api) == [("mine", "hi")], "nothing stored from the refused posts"


def test_dev_checks_only_existence_without_a_conversation_id(api: DevServer) -> None:
    """Multipart attachments carry no ``conversation_id`` (docs/wire.md): the pk only has to exist."""
    pk = _post(api, "/api/conversations/", {"conversation_id": "files"}).json()["id"]
    headers = {"Authorization": f"Api-Key {API_KEY}"}
    fields = {"conversation": str(pk), "sender": "end_user", "mode": "form_data", "metadata": json.dumps({})}
    files = {"attachment_0": ("a.txt", b"hello", "text/plain")}
    assert httpx.post(api.url + "/api/attachments/", data=fields, files=files, headers=headers).status_code == 201
    fields["conversation"] = str(pk + 1)
    refused = httpx.post(api.url + "/api/attachments/", data=fields, files=files, headers=headers)
    assert refused.status_code == 400 and "Invalid pk" in refused.json()["conversation"][0]
