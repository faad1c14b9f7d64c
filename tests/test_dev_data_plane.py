"""``agentsight dev``'s data plane over HTTP: what the SDK tracked, read back and managed through the routes
upstream 0.1.4's ``agentsight.api`` client calls (filters, pages, feedback, tickets, usage, spans, errors), and
upstream's own client running a support workflow against it in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentsight import ConversationTracker
from agentsight.dev import DevServer
from tests.conftest import API_KEY
from tests.scratch_venv import scratch_python

HEADERS = {"Authorization": f"Api-Key {API_KEY}"}
TOKENS = ("prompt_tokens", "completion_tokens", "total_tokens", "embedding_tokens")


def track(tracker: ConversationTracker) -> None:
    """Three conversations: a refund (production, an action and tokens), a greeting (development), a visit."""
    tracker.get_or_create_conversation("conv-refund", customer_id="user-7", name="Refund",
                                       metadata={"plan": "pro", "tier": 2})
    tracker.track_question("Where is my refund?")
    tracker.track_action("lookup_order", metadata={"order": "A-1"})
    tracker.track_answer("It is on its way.", metadata={"model": "fast"})
    tracker.track_token_usage(prompt_tokens=120, completion_tokens=30, total_tokens=150)
    tracker.send_tracked_data()
    tracker.get_or_create_conversation("conv-hello", environment="development", metadata={"plan": "free"})
    tracker.track_question("Hello")
    tracker.track_token_usage(prompt_tokens=7, completion_tokens=3, total_tokens=10, embedding_tokens=4)
    tracker.send_tracked_data()
    tracker.initialize_conversation("conv-visit")
    assert tracker.flush()["delivered"]


@pytest.fixture
def client(api: DevServer, tracker: ConversationTracker) -> Iterator[httpx.Client]:
    """An HTTP client of ``api`` holding the tracked conversations."""
    track(tracker)
    with httpx.Client(base_url=api.url, headers=HEADERS, timeout=10) as http:
        yield http


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def ids(client: httpx.Client, **params: Any) -> list[str]:
    page = ok(client.get("/api/conversations/", params={"full": "false", **params}))
    return [row["conversation_id"] for row in page["results"]]


def pk(client: httpx.Client, conversation_id: str) -> int:
    rows = ok(client.get("/api/conversations/", params={"conversation_id": conversation_id,
                                                         "include_deleted": "true"}))["results"]
    return int(rows[0]["id"])


# Conversations -------------------------------------------------------------------------------------


def test_conversation_filters(client: httpx.Client) -> None:
    assert ids(client) == ["conv-visit", "conv-hello", "conv-refund"], "newest first"
    assert ids(client, env="dev") == ids(client, environment="development") == ["conv-hello"]
    assert ids(client, search="refund") == ids(client, message_contains="REFUND") == ["conv-refund"]
    assert ids(client, metadata_key="plan") == ["conv-hello", "conv-refund"]
    assert ids(client, metadata_key="plan", metadata_value="pro") == ["conv-refund"]
    assert ids(client, metadata=json.dumps({"plan": "free"})) == ["conv-hello"]
    assert ids(client, customer_id__icontains="USER") == ids(client, customer_id="user-7") == ["conv-refund"]
    assert ids(client, has_action="true") == ["conv-hello", "conv-refund"], "token usage is an action log"
    assert ids(client, action_name="lookup_order") == ["conv-refund"]
    assert ids(client, has_messages="false") == ["conv-visit"]
    assert ids(client, name="fun") == ["conv-refund"]
    assert ids(client, ordering="conversation_id") == ["conv-hello", "conv-refund", "conv-visit"]
    assert ids(client, started_at_after="2999-01-01") == []
    assert ids(client, started_at_before="2999-01-01T00:00:00Z") == ["conv-visit", "conv-hello", "conv-refund"]
    assert client.get("/api/conversations/", params={"env": "staging"}).json() == {
        "env": ['"staging" is not a valid choice.']}
    assert client.get("/api/conversations/", params={"started_at_after": "soon"}).status_code == 400

    full = ok(client.get("/api/conversations/", params={"full": "true", "conversation_id": "conv-refund"}))
    row = full["results"][0]
    assert [m["content"] for m in row["messages"]] == ["Where is my refund?", "It is on its way."]
    assert [a["action_name"] for a in row["actions"]] == ["lookup_order", "token_usage"]
    assert row["feedbacks"] == []
    summary = ok(client.get("/api/conversations/", params={"full": "false"}))["results"][2]
    assert "messages" not in summary and summary["counts"]["messages"] == 2, "the list previews, full=false"


def test_metadata_keys_that_no_json_path_spells_are_filtered_and_listed(
    client: httpx.Client, tracker: ConversationTracker
) -> None:
    tracker.get_or_create_conversation("conv-odd", metadata={'say "hi"': "yes", "a.b[0]": 1, "$": None})
    tracker.track_question("Odd keys")
    tracker.send_tracked_data()
    assert tracker.flush()["delivered"]
    for key, value in (('say "hi"', "yes"), ("a.b[0]", 1)):
        assert ids(client, metadata_key=key) == ["conv-odd"], key
        assert ids(client, metadata_key=key, metadata_value=str(value)) == ["conv-odd"], key
        assert ids(client, metadata=json.dumps({key: value})) == ["conv-odd"], key
        assert ok(client.get("/api/conversations/metadata-values/", params={"key": key})) == [value]
    assert ids(client, metadata_key="$") == ["conv-odd"], "a key holding null is there"
    assert ids(client, metadata_key='say "hi"', metadata_value="no") == []


def test_conversation_pages(client: httpx.Client) -> None:
    first = ok(client.get("/api/conversations/", params={"page_size": 2}))
    assert {key: first[key] for key in ("count", "page_size", "total_pages", "current_page", "previous")} == {
        "count": 3, "page_size": 2, "total_pages": 2, "current_page": 1, "previous": None}
    assert "page=2" in first["next"] and len(first["results"]) == 2
    second = ok(client.get("/api/conversations/", params={"page_size": 2, "page": 2}))
    assert second["next"] is None and [r["conversation_id"] for r in second["results"]] == ["conv-refund"]
    assert client.get("/api/conversations/", params={"page": 3, "page_size": 2}).json() == {"detail": "Invalid page."}
    assert ok(client.get("/api/conversations/", params={"page_size": 1000}))["page_size"] == 100


def test_manage_conversation(client: httpx.Client) -> None:
    refund = pk(client, "conv-refund")
    assert ok(client.patch(f"/api/conversations/{refund}/rename/", json={"name": " Refund, late "}))["name"] == (
        "Refund, late")
    assert ok(client.post(f"/api/conversations/{refund}/mark/", json={"is_marked": True}))["is_marked"] is True
    assert ids(client, is_marked="true") == ["conv-refund"]
    updated = ok(client.patch(f"/api/conversations/{refund}/update/",
                              json={"metadata": {"plan": "enterprise"}, "language": "fr", "started_at": "x"}))
    assert (updated["metadata"], updated["language"], updated["is_marked"]) == ({"plan": "enterprise"}, "fr", True)
    assert client.patch(f"/api/conversations/{refund}/rename/", json={"name": " "}).json() == {
        "name": ["This field may not be blank."]}
    assert client.patch(f"/api/conversations/{refund}/rename/", json={"name": "x" * 256}).status_code == 400
    assert ok(client.get("/api/conversations/metadata-keys/")) == ["plan"], "update replaced the document"
    assert ok(client.get("/api/conversations/metadata-values/", params={"key": "plan"})) == ["enterprise", "free"]
    assert client.get("/api/conversations/metadata-values/").status_code == 400

    ok(client.delete(f"/api/conversations/{refund}/delete/"), 204)
    assert "conv-refund" not in ids(client)
    assert "conv-refund" in ids(client, include_deleted="true")
    detail = ok(client.get(f"/api/conversations/{refund}/", params={"full": "false"}))
    assert detail["is_deleted"] and detail["deleted_at"] and "messages" not in detail
    assert ok(client.post(f"/api/conversations/{refund}/mark/", json={"is_marked": False}))["is_marked"] is False


def test_messages_and_actions(client: httpx.Client) -> None:
    detail = ok(client.get(f"/api/conversations/{pk(client, 'conv-refund')}/"))
    answer = detail["messages"][1]
    assert ok(client.get(f"/api/track/{answer['id']}/"))["metadata"] == {"model": "fast"}
    changed = ok(client.patch(f"/api/track/{answer['id']}/", json={"metadata": {"model": "fast", "score": 3}}))
    assert (changed["metadata"], changed["content"]) == ({"model": "fast", "score": 3}, "It is on its way.")
    assert client.get(f"/api/track/{detail['actions'][0]['id']}/").status_code == 404, "an action is no message"
    assert ok(client.get("/api/conversations/message-metadata-keys/")) == ["model", "score"]

    actions = ok(client.get("/api/actions/"))["results"]
    lookup = next(action for action in actions if action["name"] == "lookup_order")
    assert lookup["display_name"] == "lookup_order"
    assert [log["metadata"] for log in ok(client.get(f"/api/actions/{lookup['id']}/logs/"))] == [{"order": "A-1"}]
    assert client.post("/api/actions/", json={"name": "lookup_order"}).json() == {
        "name": ["action with this name already exists."]}
    declared = ok(client.post("/api/actions/", json={"name": "refund", "display_name": "Refund"}), 201)
    assert ok(client.patch(f"/api/actions/{declared['id']}/", json={"description": "Pays back"}))["description"] == (
        "Pays back")
    assert [a["name"] for a in ok(client.get("/api/actions/", params={"search": "refund"}))["results"]] == ["refund"]


# Feedback and tickets ------------------------------------------------------------------------------


def test_feedback(client: httpx.Client) -> None:
    refund, hello = pk(client, "conv-refund"), pk(client, "conv-hello")
    by_id = ok(client.post("/api/feedbacks/", json={"kind": "conversation", "conversation_id": "conv-refund",
                                                   "sentiment": "negative", "comment": "too slow"}), 201)
    assert (by_id["conversation"], by_id["conversation_id"], by_id["environment"]) == (refund, "conv-refund",
                                                                                        "production")
    ok(client.post("/api/feedbacks/", json={"kind": "conversation", "conversation": hello, "sentiment": "positive"}),
       201)
    message = ok(client.get(f"/api/conversations/{refund}/"))["messages"][1]["id"]
    vote = ok(client.post("/api/feedbacks/", json={"kind": "message", "message": message, "sentiment": "positive",
                                                   "topic": "tone"}), 201)
    again = ok(client.post("/api/feedbacks/", json={"kind": "message", "message": message, "sentiment": "negative"}))
    assert (again["id"], again["sentiment"], again["topic"]) == (vote["id"], "negative", "tone"), "one vote a message"
    agent = ok(client.post("/api/feedbacks/", json={"kind": "agent", "agent": 1, "sentiment": "neutral",
                                                    "environment": "development"}), 201)
    assert (agent["conversation"], agent["environment"]) == (None, "development")

    for body, error in (({"kind": "conversation", "conversation_id": "conv-refund", "sentiment": "angry"},
                         {"sentiment": ['"angry" is not a valid choice.']}),
                        ({"kind": "conversation", "conversation_id": "nope", "sentiment": "negative"},
                         {"conversation_id": ['Invalid pk "nope" - object does not exist.']}),
                        ({"kind": "conversation", "conversation": refund, "sentiment": "negative",
                          "environment": "production"}, {"environment": ["Not accepted on conversation feedback."]}),
                        ({"kind": "conversation", "conversation": refund, "sentiment": "negative", "topic": "x"},
                         {"topic": ["Only message feedback takes a topic or reason."]}),
                        ({"kind": "product", "sentiment": "negative"}, {"kind": ['"product" is not a valid choice.']})):
        assert client.post("/api/feedbacks/", json=body).json() == error

    negative = ok(client.get("/api/feedbacks/", params={"sentiment": "negative"}))
    assert [row["kind"] for row in negative["results"]] == ["message", "conversation"], "newest first"
    assert negative["counts"] == {"all": 2}
    assert ok(client.get("/api/feedbacks/", params={"conversation_id": "conv-hello"}))["count"] == 1
    assert ok(client.get("/api/feedbacks/", params={"has_comment": "true"}))["results"][0]["comment"] == "too slow"
    assert ids(client, feedback_sentiment="negative") == ["conv-refund"]
    assert ids(client, has_feedback="false") == ["conv-visit"]

    assert ok(client.get(f"/api/feedbacks/{by_id['id']}/"))["ticket"] is None
    assert ok(client.patch(f"/api/feedbacks/{by_id['id']}/", json={"comment": "fine now"}))["comment"] == "fine now"
    ok(client.delete(f"/api/feedbacks/{by_id['id']}/"), 204)
    assert client.get(f"/api/feedbacks/{by_id['id']}/").json() == {"detail": "Not found."}


def test_tickets(client: httpx.Client) -> None:
    refund = pk(client, "conv-refund")
    feedback = ok(client.post("/api/feedbacks/", json={"kind": "conversation", "conversation": refund,
                                                       "sentiment": "negative"}), 201)
    ticket = ok(client.post("/api/tickets/", json={"title": "Refund late", "feedback_id": feedback["id"],
                                                   "tags": ["billing", "refund"], "priority": "high"}), 201)
    assert ticket["conversation"] == {"id": refund, "conversation_id": "conv-refund", "name": "Refund"}, (
        "inherited from the feedback")
    assert (ticket["status"], ticket["environment"], ticket["comments"]) == ("open", "production", [])
    other = ok(client.post("/api/tickets/", json={"title": "Docs", "status": "backlog"}), 201)
    comment = ok(client.post(f"/api/tickets/{ticket['id']}/comments/", json={"body": "Looking into it"}), 201)
    assert (comment["role"], comment["author"]) == ("agent", "agentsight dev")
    assert ok(client.get(f"/api/tickets/{ticket['id']}/comments/"))["results"] == [comment]
    assert ok(client.get(f"/api/tickets/{ticket['id']}/"))["comments_count"] == 1

    def titles(**params: Any) -> list[str]:
        return [row["title"] for row in ok(client.get("/api/tickets/", params=params))["results"]]

    assert titles() == ["Docs", "Refund late"]
    assert titles(status=["open", "in_progress"]) == titles(tags="x,refund") == titles(conversation_id="conv-refund")
    assert titles(has_conversation="false") == titles(priority="medium") == ["Docs"]
    assert client.get("/api/tickets/", params={"status": "stuck"}).status_code == 400
    assert ok(client.patch(f"/api/tickets/{ticket['id']}/", json={"status": "in_progress"}))["status"] == "in_progress"
    assert client.post("/api/tickets/", json={"title": "x", "conversation_id": 999}).json() == {
        "conversation_id": ['Invalid pk "999" - object does not exist.']}

    assert ids(client, include_tickets="true") == ["conv-refund"]
    listed = ok(client.get("/api/conversations/", params={"include_tickets": "true"}))["results"][0]
    assert [t["title"] for t in listed["tickets"]] == ["Refund late"]
    promoted = ok(client.get("/api/feedbacks/", params={"include_tickets": "true", "ticket_status": "open"}))
    assert promoted["count"] == 0 and promoted["counts"]["in_progress"] == 1 and promoted["counts"]["tickets"] == 1
    assert client.get("/api/feedbacks/", params={"ticket_status": "open"}).status_code == 400
    assert ok(client.get(f"/api/feedbacks/{feedback['id']}/"))["ticket"]["comments"] == [comment]

    detail = ok(client.get(f"/api/conversations/{refund}/"))
    assert [f["id"] for f in detail["feedbacks"]] == [feedback["id"]]
    assert [(t["title"], t["comments_count"]) for t in detail["tickets"]] == [("Refund late", 1)]
    ok(client.delete(f"/api/tickets/{other['id']}/"), 204)
    assert titles() == ["Refund late"]


# Usage and spans -----------------------------------------------------------------------------------


def test_usage_matches_stats(client: httpx.Client) -> None:
    stats = ok(client.get("/api/stats/", params={"environment": "all"}))["tokens"]
    summary = ok(client.get("/api/token-usage/summary/"))
    assert (summary["group_by"], summary["currency"]) == ("model", "usd")
    for key in stats:
        assert sum(row[key] for row in summary["results"]) == stats[key], key
    assert stats["total_tokens"] == 160
    by_conversation = ok(client.get("/api/token-usage/summary/", params={"group_by": "conversation"}))["results"]
    assert [(row["group"], row["total_tokens"]) for row in by_conversation] == [("conv-refund", 150),
                                                                                 ("conv-hello", 10)]
    production = ok(client.get("/api/stats/"))["tokens"]  # production by default
    only = ok(client.get("/api/token-usage/summary/", params={"environment": "production"}))["results"]
    assert sum(row["total_tokens"] for row in only) == production["total_tokens"] == 150

    rows = ok(client.get("/api/token-usage/", params={"conversation_id": "conv-hello"}))["results"]
    assert [{key: row[key] for key in (*TOKENS, "cost_source", "cost_usd", "calls")} for row in rows] == [
        {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10, "embedding_tokens": 4,
         "cost_source": "unpriced", "cost_usd": "0.00000000", "calls": 1}]
    assert ok(client.get("/api/token-usage/", params={"cost_source": "backend"}))["count"] == 0
    assert client.get("/api/token-usage/summary/", params={"group_by": "week"}).status_code == 400
    assert ok(client.get(f"/api/conversations/{pk(client, 'conv-refund')}/"))["token_usage"]["total_tokens"] == 150
    assert ok(client.get(f"/api/conversations/{pk(client, 'conv-visit')}/"))["token_usage"] is None


def test_spans_and_traces(client: httpx.Client, make_tracker: Callable[..., ConversationTracker]) -> None:
    spans = ok(client.get("/api/spans/", params={"conversation_id": "conv-refund"}))
    assert sorted(span["kind"] for span in spans["results"]) == ["llm", "tool", "turn"]
    assert all("payload" not in span for span in spans["results"])
    tool = next(span for span in spans["results"] if span["kind"] == "tool")
    assert ok(client.get("/api/spans/", params={"kind": "tool"}))["results"] == [tool]
    full = ok(client.get(f"/api/spans/{tool['id']}/", params={"payload": "true"}))
    assert full["payload"]["span_id"] == tool["span_id"] and "otel" in full["payload"]

    trace = ok(client.get(f"/api/traces/{tool['trace_id']}/"))
    in_trace = ok(client.get("/api/spans/", params={"trace_id": tool["trace_id"]}))["count"]
    assert (trace["span_count"], trace["truncated"]) == (in_trace, False)
    assert [(root["kind"], sorted(child["kind"] for child in root["children"])) for root in trace["roots"]] == [
        ("turn", ["llm", "tool"])]
    assert client.get("/api/traces/" + "0" * 32 + "/").json() == {"detail": "Not found."}

    rest = make_tracker(protocol="rest")
    rest.get_or_create_conversation("conv-rest")
    rest.track_question("Over REST")
    rest.send_tracked_data()
    assert rest.flush()["delivered"]
    assert ids(client, conversation_id="conv-rest") == ["conv-rest"]
    assert ok(client.get("/api/spans/", params={"conversation_id": "conv-rest"}))["count"] == 0, "no spans on REST"


# Errors --------------------------------------------------------------------------------------------


def test_errors(client: httpx.Client, api: DevServer) -> None:
    assert httpx.get(f"{api.url}/api/feedbacks/").json() == {"detail": "Authentication credentials were not provided."}
    assert httpx.get(f"{api.url}/api/tickets/", headers={"Authorization": "Api-Key nope"}).status_code == 401
    for path in ("/api/conversations/999/", "/api/feedbacks/999/", "/api/tickets/999/", "/api/spans/999/",
                 "/api/track/999/", "/api/actions/999/"):
        assert client.get(path).json() == {"detail": "Not found."}, path
    assert client.post("/api/tickets/", json={"tags": "billing"}).json() == {"title": ["This field is required."]}
    huge = 2**70
    assert ok(client.get("/api/tickets/", params={"conversation": str(huge)}))["count"] == 0
    assert ok(client.get("/api/spans/", params={"conversation": str(huge)}))["count"] == 0
    assert client.get("/api/feedbacks/", params={"message": str(huge)}).status_code == 400
    assert client.post("/api/tickets/", json={"title": "x", "conversation_id": huge}).status_code == 400
    vote = {"kind": "message", "message": huge, "sentiment": "positive"}
    assert client.post("/api/feedbacks/", json=vote).json() == {
        "message": [f'Invalid pk "{huge}" - object does not exist.']}
    with DevServer(role="read") as reader, httpx.Client(base_url=reader.url, headers=HEADERS) as read_only:
        assert ok(read_only.get("/api/feedbacks/"))["count"] == 0
        refused = read_only.post("/api/tickets/", json={"title": "x"})
        assert (refused.status_code, refused.json()) == (403, {
            "detail": "You do not have permission to perform this action."})


# Upstream 0.1.4's own client -----------------------------------------------------------------------

WORKFLOW = """
    import json, sys
    from datetime import datetime, timedelta, timezone
    from agentsight.api import AgentSight
    from agentsight.exceptions import NotFoundError, PermissionDeniedError

    ags = AgentSight()
    out = {"environments": ags.environments(), "agent": ags.me()["agent_id"]}
    week = datetime.now(timezone.utc) - timedelta(days=7)
    ags.feedbacks.create_for_conversation("conv-refund", "negative", comment="too slow")
    unhappy = list(ags.conversations.list(feedback_sentiment="negative", started_at_after=week))
    out["unhappy"] = [row["conversation_id"] for row in unhappy]
    conversation = ags.conversations.get(unhappy[0]["conversation_id"])
    out["transcript"] = [m["content"] for m in conversation["messages"]]
    out["marked"] = ags.conversations.mark("conv-refund")["is_marked"]
    out["renamed"] = ags.conversations.rename("conv-refund", "Refund - escalated")["name"]
    ags.conversations.update_metadata("conv-refund", {"escalated": True}, remove=["tier"])
    out["metadata"] = ags.conversations.get("conv-refund", full=False)["metadata"]
    feedback = ags.feedbacks.list(conversation_id="conv-refund").first()
    ticket = ags.tickets.create("Refund too slow", conversation="conv-refund", feedback_id=feedback["id"],
                                tags=["billing"])
    ags.tickets.add_comment(ticket["id"], "Escalated to billing")
    out["ticket"] = ags.tickets.get(ticket["id"])
    out["comments"] = [c["body"] for c in ags.tickets.comments(ticket["id"])]
    out["counts"] = ags.feedbacks.page(include_tickets=True).extra["counts"]
    message = conversation["messages"][0]["id"]
    out["vote"] = ags.feedbacks.create_for_message(message, "negative", topic="speed")["topic"]
    out["agent_feedback"] = ags.feedbacks.create_for_agent("positive")["kind"]
    ags.messages.update_metadata(message, {"reviewed": True})
    out["message"] = ags.messages.get(message)["metadata"]
    spans = list(ags.spans.list(conversation_id="conv-refund"))
    out["spans"] = sorted(span["kind"] for span in spans)
    out["trace"] = ags.spans.trace(spans[0]["trace_id"])["span_count"]
    out["usage"] = ags.usage.summary(group_by="conversation")["results"]
    out["actions"] = sorted(a["name"] for a in ags.actions.list())
    out["keys"] = ags.conversations.metadata_keys()
    out["count"] = ags.conversations.list().count()
    ags.conversations.delete("conv-hello")
    out["after_delete"] = [row["conversation_id"] for row in ags.conversations.list()]
    try:
        ags.conversations.get("conv-nope")
    except NotFoundError as error:
        out["not_found"] = error.status_code
    try:
        ags.tickets.get(999)
    except NotFoundError as error:
        out["ticket_404"] = error.status_code
    json.dump(out, sys.stdout)
"""


def test_upstream_client_support_workflow(client: httpx.Client, api: DevServer, tmp_path: Path) -> None:
    python = scratch_python("agentsight-0.1.4", ["agentsight==0.1.4"])
    script = tmp_path / "workflow.py"
    script.write_text(textwrap.dedent(WORKFLOW))
    environment = {"PATH": "/usr/bin:/bin", "AGENTSIGHT_API_KEY": API_KEY, "AGENTSIGHT_API_ENDPOINT": api.url}
    run = subprocess.run([str(python), "-I", str(script)], env=environment, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert (out["environments"], out["agent"]) == (["production", "development"], 1)
    assert out["unhappy"] == ["conv-refund"]
    assert out["transcript"] == ["Where is my refund?", "It is on its way."]
    assert (out["marked"], out["renamed"]) == (True, "Refund - escalated")
    assert out["metadata"] == {"plan": "pro", "escalated": True}
    ticket = out["ticket"]
    assert (ticket["title"], ticket["tags"], ticket["conversation"]["conversation_id"]) == (
        "Refund too slow", ["billing"], "conv-refund")
    assert ticket["feedback"]["sentiment"] == "negative" and out["comments"] == ["Escalated to billing"]
    assert (out["counts"]["tickets"], out["counts"]["open"]) == (1, 1)
    assert (out["vote"], out["agent_feedback"]) == ("speed", "agent")
    assert out["message"] == {"reviewed": True}
    assert out["spans"] == ["llm", "tool", "turn"] and out["trace"] == 3
    assert [(row["group"], row["total_tokens"]) for row in out["usage"]] == [("conv-refund", 150), ("conv-hello", 10)]
    assert out["actions"] == ["lookup_order", "token_usage"]
    assert out["keys"] == ["escalated", "plan"]
    assert out["count"] == 3
    assert out["after_delete"] == ["conv-visit", "conv-refund"]
    assert out["not_found"] == out["ticket_404"] == 404
    assert [(r.method, r.path) for r in api.requests if r.status >= 400] == [("GET", "/api/tickets/999/")], (
        "every other call of the workflow was served")
    detail = ok(client.get(f"/api/conversations/{pk(client, 'conv-refund')}/"))
    assert [t["title"] for t in detail["tickets"]] == ["Refund too slow"]
