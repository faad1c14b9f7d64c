"""``agentsight.api.AgentSight`` end to end against ``agentsight dev`` (DevServer on 127.0.0.1).

The data is made by tracking with the SDK (the seed tracker on the ingest wire); the client reads it back and
manages it; every assertion reads the result back through the API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from agentsight import ConversationTracker, Sentiment
from agentsight.api import AgentSight
from agentsight.dev import DevServer
from agentsight.exceptions import NotFoundError, ValidationError
from tests.conftest import API_KEY

QUESTIONS = {"conv-a": "Where is my order?", "conv-b": "I want a refund"}


@pytest.fixture
def seeded(api: DevServer, make_tracker: Callable[..., ConversationTracker]) -> ConversationTracker:
    """Two tracked conversations (a question, a tool call, an answer and 150 tokens each), delivered."""
    tracker = make_tracker(auto_instrument=False)
    for conversation_id, question in QUESTIONS.items():
        tracker.get_or_create_conversation(conversation_id, customer_id="user-7",
                                           metadata={"plan": "trial", "seats": 3})
        tracker.track_human_message(question)
        tracker.track_action("lookup_order", tools_used={"order_id": "A-1"}, response="shipped")
        tracker.track_agent_message("Here you go")
        tracker.track_token_usage(prompt_tokens=120, completion_tokens=30, total_tokens=150)
        tracker.send_tracked_data()
    assert tracker.flush()["failed"] == 0
    return tracker


@pytest.fixture
def ags(api: DevServer, seeded: ConversationTracker) -> Iterator[AgentSight]:
    with AgentSight(API_KEY, endpoint=api.url) as client:
        yield client


def ids(conversations: object) -> set[str]:
    return {conversation["conversation_id"] for conversation in conversations}  # type: ignore[attr-defined]


def test_reads_back_what_was_tracked(ags: AgentSight) -> None:
    assert ids(ags.conversations.list()) == set(QUESTIONS)
    assert ags.conversations.list().count() == 2
    conversation = ags.conversations.get("conv-a")
    assert [m["content"] for m in conversation["messages"]] == ["Where is my order?", "Here you go"]
    assert conversation["customer_id"] == "user-7"
    assert ags.conversations.resolve("conv-a") == conversation["id"]
    assert ids(ags.conversations.list(message_contains="refund")) == {"conv-b"}
    assert "plan" in ags.conversations.metadata_keys()
    assert ags.me()["role"] == "write" and "production" in ags.environments()
    with pytest.raises(NotFoundError):
        ags.conversations.get(999_999)
    with pytest.raises(NotFoundError):
        ags.conversations.get("never-tracked")


def test_manages_conversations(ags: AgentSight) -> None:
    ags.conversations.rename("conv-a", "Order question")
    ags.conversations.mark("conv-a")
    ags.conversations.update_metadata("conv-a", {"plan": "enterprise", "escalated": False}, remove=["seats"])
    conversation = ags.conversations.get("conv-a", full=False)
    assert (conversation["name"], conversation["is_marked"]) == ("Order question", True)
    assert conversation["metadata"] == {"plan": "enterprise", "escalated": False}
    assert ids(ags.conversations.list(is_marked=True)) == {"conv-a"}
    ags.conversations.update("conv-b", language="de", device="mobile")
    assert ags.conversations.get("conv-b", full=False)["language"] == "de"

    ags.conversations.delete("conv-a")
    assert ids(ags.conversations.list()) == {"conv-b"}
    assert ids(ags.conversations.list(include_deleted=True)) == set(QUESTIONS)


def test_feedback_and_tickets(ags: AgentSight) -> None:
    feedback = ags.feedbacks.create_for_conversation("conv-b", "negative", comment="too slow")
    assert ids(ags.conversations.list(feedback_sentiment="negative")) == {"conv-b"}
    assert [f["comment"] for f in ags.feedbacks.list(sentiment="negative")] == ["too slow"]

    message = ags.conversations.get("conv-a")["messages"][1]["id"]
    ags.feedbacks.create_for_message(message, "negative", topic="style")
    ags.feedbacks.create_for_message(message, "positive")  # one vote per message: updated, not added
    votes = list(ags.feedbacks.list(message=message))
    assert [(v["sentiment"], v["topic"]) for v in votes] == [("positive", "style")]

    ticket = ags.tickets.create("Refund stuck", priority="high", conversation="conv-b", feedback_id=feedback["id"])
    ags.tickets.add_comment(ticket["id"], "Looking into it")
    read = ags.tickets.get(ticket["id"])
    assert (read["title"], read["status"], read["priority"]) == ("Refund stuck", "open", "high")
    assert [c["body"] for c in read["comments"]] == ["Looking into it"]
    assert [c["body"] for c in ags.tickets.comments(ticket["id"])] == ["Looking into it"]
    assert ids(ags.conversations.list(include_tickets=True)) == {"conv-b"}
    ags.tickets.update(ticket["id"], status="done")
    assert [t["id"] for t in ags.tickets.list(status="done")] == [ticket["id"]]
    assert list(ags.tickets.list(status="open")) == []
    with pytest.raises(ValidationError):
        ags.feedbacks.create_for_conversation("conv-b", "furious")


def test_usage_and_spans(ags: AgentSight) -> None:
    summary = ags.usage.summary()
    assert sum(row["total_tokens"] for row in summary["results"]) == 300
    by_conversation = ags.usage.summary("conversation")["results"]
    assert len(by_conversation) == 2 and {row["total_tokens"] for row in by_conversation} == {150}
    assert [row["total_tokens"] for row in ags.usage.list(conversation_id="conv-a")] == [150]

    spans = list(ags.spans.list(conversation_id="conv-a"))
    assert spans and {span["conversation_id"] for span in spans} == {"conv-a"}
    trace = ags.spans.trace(spans[0]["trace_id"])
    assert trace["span_count"] == len([s for s in spans if s["trace_id"] == spans[0]["trace_id"]])
    assert [root["kind"] for root in trace["roots"]] == ["turn"]
    assert ags.spans.get(spans[0]["id"], payload=True)["id"] == spans[0]["id"]


def test_0044_tracker_calls(ags: AgentSight, seeded: ConversationTracker) -> None:
    seeded.submit_feedback("conv-a", Sentiment.POSITIVE, "thanks")
    seeded.rename_conversation("conv-a", "Renamed by 0.0.44")
    seeded.mark_conversation("conv-a", True)
    conversation = seeded.fetch_conversation("conv-a")
    assert (conversation["name"], conversation["is_marked"]) == ("Renamed by 0.0.44", True)
    assert [f["sentiment"] for f in conversation["feedbacks"]] == ["positive"]
    assert seeded.fetch_conversations(is_marked=True)["count"] == 1
    seeded.delete_conversation("conv-a")
    assert ids(ags.conversations.list()) == {"conv-b"}
