"""Bad input raises the documented upstream exception at the call, and nothing else is lost."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from agentsight import ConversationTracker
from agentsight.dev import DevServer
from agentsight.exceptions import (
    InvalidAnswerDataException,
    InvalidApiKeyException,
    InvalidAttachmentException,
    InvalidConversationDataException,
    InvalidQuestionDataException,
    MissingConversationIdException,
    NoApiKeyException,
    NoDataToSendException,
)
from tests.conftest import API_KEY, bodies, stored_messages

pytestmark = pytest.mark.usefixtures("rest_wire")  # these tests read the REST wire's payloads


@pytest.mark.parametrize("content", ["", "   ", None, 42])
def test_empty_question_and_answer(tracker: ConversationTracker, content: object) -> None:
    tracker.get_or_create_conversation("conv-v")
    with pytest.raises(InvalidQuestionDataException):
        tracker.track_question(content)  # type: ignore[arg-type]
    with pytest.raises(InvalidAnswerDataException):
        tracker.track_answer(content)  # type: ignore[arg-type]
    with pytest.raises(InvalidQuestionDataException):
        tracker.track_human_message(content)  # type: ignore[arg-type]
    with pytest.raises(InvalidAnswerDataException):
        tracker.track_agent_message(content)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("button_event", "label", "value", "message"),
    [("", "l", "v", "Button event"), ("e", " ", "v", "Button label"), ("e", "l", "\t", "Button value")],
)
def test_blank_button_fields(tracker: ConversationTracker, button_event: str, label: str, value: str,
                             message: str) -> None:
    tracker.get_or_create_conversation("conv-v")
    with pytest.raises(InvalidConversationDataException, match=message):
        tracker.track_button(button_event, label, value)


def test_other_invalid_input(tracker: ConversationTracker) -> None:
    with pytest.raises(MissingConversationIdException):
        tracker.track_question("no conversation yet")
    with pytest.raises(NoDataToSendException):
        tracker.send_tracked_data()
    with pytest.raises(MissingConversationIdException):
        tracker.get_or_create_conversation("  ")
    tracker.get_or_create_conversation("conv-v")
    with pytest.raises(InvalidConversationDataException, match="Action name"):
        tracker.track_action(" ")
    with pytest.raises(InvalidConversationDataException, match="metadata must be a dict"):
        tracker.track_question("q", metadata=["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(InvalidConversationDataException, match="prompt_tokens"):
        tracker.track_token_usage(prompt_tokens=-1)
    with pytest.raises(InvalidAttachmentException, match="empty"):
        tracker.track_attachments([])
    with pytest.raises(InvalidAttachmentException, match="base64"):
        tracker.track_attachments([{"filename": "a", "mime_type": "text/plain", "data": "not base64!"}])
    with pytest.raises(InvalidAttachmentException, match="mime_type"):
        tracker.track_attachments([{"filename": "a", "data": "aGk="}])
    with pytest.raises(InvalidAttachmentException, match="not string"):
        tracker.track_attachments([{"data": "text"}], mode="form_data")
    with pytest.raises(ValueError, match="Invalid mode"):
        tracker.track_attachments([{"data": b"x"}], mode="zip")


def test_bad_input_loses_nothing_else(api: DevServer, tracker: ConversationTracker) -> None:
    tracker.get_or_create_conversation("conv-keep")
    tracker.track_question("kept 1")
    with pytest.raises(InvalidConversationDataException):
        tracker.track_button("", "", "")
    tracker.track_answer("kept 2")
    tracker.send_tracked_data()
    tracker.flush(10)
    assert [b["content"] for b in bodies(api, "/api/track/")] == ["kept 1", "kept 2"]
    assert bodies(api, "/api/buttons/") == []


def test_missing_and_malformed_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTSIGHT_API_KEY", raising=False)
    with pytest.raises(NoApiKeyException):
        ConversationTracker()
    with pytest.raises(InvalidApiKeyException) as raised:
        ConversationTracker(api_key="ags_secretsecretsecret")
    assert "secretsecret" not in str(raised.value)
    assert ConversationTracker(api_key=API_KEY.upper().replace("AGS_", "ags_")).settings.api_key


@dataclass
class _Point:
    x: int
    y: int


def test_metadata_of_every_kind_round_trips(api: DevServer, tracker: ConversationTracker) -> None:
    metadata = {
        "when": datetime(2026, 11, 21, 4, 15, 41, 309809, tzinfo=timezone.utc),
        "day": date(2026, 11, 21),
        "price": Decimal("99.99"),
        "count": Decimal("3"),
        "tags": {"b", "a"},
        "nested": {"list": [1, 2.5, None, True], "deeper": {"x": "y"}},
        "tuple": (1, 2),
        "point": _Point(1, 2),
        "bytes": b"\x00\x01",
        7: "int key",
        "none": None,
        "nan": float("nan"),
    }
    tracker.get_or_create_conversation("conv-meta", metadata=metadata)
    tracker.track_question("q", metadata=metadata)
    tracker.send_tracked_data()
    tracker.flush(10)
    expected = {
        "when": "2026-11-21T04:15:41.309809+00:00", "day": "2026-11-21", "price": 99.99, "count": 3,
        "tags": ["a", "b"], "nested": {"list": [1, 2.5, None, True], "deeper": {"x": "y"}}, "tuple": [1, 2],
        "point": {"x": 1, "y": 2}, "bytes": "AAE=", "7": "int key", "none": None, "nan": "nan",
    }
    assert bodies(api, "/api/conversations/")[0]["metadata"] == expected
    assert bodies(api, "/api/track/")[0]["metadata"] == expected


def test_large_unicode_and_none_fields(api: DevServer, tracker: ConversationTracker) -> None:
    big = "ä" * 1_000_000
    tracker.get_or_create_conversation("conv-ü 会話", customer_id=None, device=None, name="名前 ✓")
    tracker.track_question(big)
    tracker.track_answer("emoji 🤖 and RTL שלום", metadata={"ключ": "значение"})
    tracker.send_tracked_data()
    tracker.flush(20)
    question, answer = bodies(api, "/api/track/")
    assert question["content"] == big, "1 MB of content arrives untruncated"
    assert answer["content"] == "emoji 🤖 and RTL שלום" and answer["metadata"] == {"ключ": "значение"}
    conversation = bodies(api, "/api/conversations/")[0]
    assert conversation["conversation_id"] == "conv-ü 会話" and conversation["name"] == "名前 ✓"
    assert conversation["customer_id"] is None and conversation["device"] is None
    stored = api.conversations["conv-ü 会話"]
    assert (stored["name"], stored["customer_id"], stored["device"]) == ("名前 ✓", None, None), "stored as sent"
    assert [content for _, content in stored_messages(api)] == [big, "emoji 🤖 and RTL שלום"]
