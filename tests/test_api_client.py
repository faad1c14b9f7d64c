"""``agentsight.api.AgentSight`` against a recording server on 127.0.0.1.

(a) For every call of ``tests/golden/record_data_plane.py`` our client sends the requests upstream 0.1.4's
sends (``tests/golden/data_plane.json``: method, path, query, JSON body, content type, accept, ``Api-Key``).
(b) Every error class from canned answers, in the API's words with the key scrubbed; GETs retried (5xx, 429
with ``Retry-After``, network errors), writes never. (c) Lists as lazy iterators over several pages.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import agentsight.api
from agentsight import AgentSightAPI, ConversationManager, ConversationTracker, Sentiment
from agentsight.api import AgentSight, Page, PageIterator
from agentsight.exceptions import (
    AgentSightError,
    APIError,
    AuthenticationError,
    ConversationApiException,
    ForbiddenException,
    InvalidApiKeyError,
    InvalidConversationDataException,
    MethodNotAllowedError,
    MissingApiKeyError,
    NetworkError,
    NoApiKeyException,
    NotFoundError,
    NotFoundException,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    SubscriptionInactiveError,
    UnauthorizedException,
    ValidationError,
)
from tests.golden.record_data_plane import API_KEY, CALLS, RecordingServer, record

GOLDEN = json.loads((Path(__file__).parent / "golden" / "data_plane.json").read_text())


@pytest.fixture(scope="module")
def ours() -> dict[str, list[dict[str, Any]]]:
    """What our client sends for every recorded call."""
    return record(AgentSight)


@pytest.fixture()
def server() -> Iterator[RecordingServer]:
    with RecordingServer() as running:
        yield running


@pytest.fixture()
def waits() -> list[float]:
    return []


@pytest.fixture()
def ags(server: RecordingServer, waits: list[float]) -> Iterator[AgentSight]:
    client = AgentSight(API_KEY, endpoint=server.url)
    client._transport.sleep = waits.append
    yield client
    client.close()


def test_every_recorded_call_is_replayed() -> None:
    assert set(GOLDEN["calls"]) == set(CALLS)
    assert GOLDEN["upstream"] == "agentsight 0.1.4"


@pytest.mark.parametrize("name", sorted(GOLDEN["calls"]))
def test_same_requests_as_upstream(ours: dict[str, list[dict[str, Any]]], name: str) -> None:
    assert ours[name] == GOLDEN["calls"][name]


def test_headers_name_this_sdk_and_carry_the_key(ags: AgentSight, server: RecordingServer) -> None:
    ags.me()
    headers = server.raw_headers[0]
    assert headers["authorization"] == f"Api-Key {API_KEY}"
    assert headers["user-agent"].startswith("agentsight-otel/")
    assert API_KEY not in repr(ags)


def test_unknown_filter_is_refused_before_sending(ags: AgentSight, server: RecordingServer) -> None:
    with pytest.raises(ValidationError, match="unknown conversation filter"):
        ags.conversations.list(sentimnet="negative")
    with pytest.raises(ValidationError, match="sentiment must be one of"):
        ags.feedbacks.create_for_conversation("wa-1", "angry")
    assert server.requests == []


# (b) errors ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "body", "error_class", "detail"), [
    (400, {"name": ["This field is required."], "sentiment": "bad"}, ValidationError,
     "name: This field is required.; sentiment: bad"),
    (401, {"detail": "Invalid API key."}, AuthenticationError, "Invalid API key."),
    (401, {"detail": "Agent does not have an active subscription or development phase"},
     SubscriptionInactiveError, "Agent does not have an active subscription or development phase"),
    (403, {"detail": "This key has the read role."}, PermissionDeniedError, "This key has the read role."),
    (404, {"detail": "Not found."}, NotFoundError, "Not found."),
    (405, {"detail": 'Method "DELETE" not allowed.'}, MethodNotAllowedError, 'Method "DELETE" not allowed.'),
    (409, {"error": "conflict"}, APIError, "conflict"),
    (429, {"detail": "Request was throttled."}, RateLimitError, "Request was throttled."),
    (500, b"<html>Server Error</html>", ServerError, "<html>Server Error</html>"),
    (503, ["upstream down"], ServerError, "upstream down"),
])
def test_error_classes(ags: AgentSight, server: RecordingServer, status: int, body: Any,
                       error_class: type[APIError], detail: str) -> None:
    server.script(status, body, {"Retry-After": "12"} if status == 429 else None)
    with pytest.raises(error_class) as caught:
        ags.tickets.add_comment(5, "hello")  # a write: sent once, so the scripted answer is the last
    error = caught.value
    assert type(error) is error_class and isinstance(error, AgentSightError)
    assert (error.status_code, error.detail, str(error)) == (status, detail, f"{status} {detail}")
    assert error.response == (body if not isinstance(body, bytes) else {})
    if status == 400:
        assert error.errors == body
    if status == 429:
        assert error.retry_after == 12.0
    assert len(server.requests) == 1


def test_the_key_is_scrubbed_from_errors(ags: AgentSight, server: RecordingServer) -> None:
    echoed = {"detail": f"Key {API_KEY} refused (Authorization: Api-Key {API_KEY})", "seen": [API_KEY]}
    server.script(401, echoed)
    with pytest.raises(AuthenticationError) as caught:
        ags.conversations.mark(42)
    error = caught.value
    assert API_KEY not in str(error) and API_KEY not in repr(error)
    assert API_KEY not in json.dumps(error.response) and API_KEY not in (error.detail or "")
    assert str(error).startswith("401 Key [redacted] refused")


def test_configuration_errors_never_echo_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTSIGHT_API_KEY", raising=False)
    with pytest.raises(MissingApiKeyError):
        AgentSight()
    with pytest.raises(MissingApiKeyError):
        AgentSight("   ")
    malformed = "ags_not-a-key-but-secret"
    with pytest.raises(InvalidApiKeyError) as caught:
        AgentSight(malformed)
    assert malformed not in str(caught.value)


def test_get_is_retried_on_5xx_with_upstream_backoff(ags: AgentSight, server: RecordingServer,
                                                     waits: list[float]) -> None:
    server.script(503, {"detail": "busy"})
    server.script(502, {"detail": "bad gateway"})
    assert ags.tickets.get(5) == {"id": 1, "path": "/api/tickets/5/"}
    assert [r["path"] for r in server.requests] == ["/api/tickets/5/"] * 3
    assert waits == [0.5, 2.0]


def test_get_honours_retry_after_capped_at_30s(ags: AgentSight, server: RecordingServer,
                                               waits: list[float]) -> None:
    server.script(429, {"detail": "slow down"}, {"Retry-After": "7"})
    server.script(429, {"detail": "slow down"}, {"Retry-After": "3600"})
    assert ags.me()["agent_id"] == 7
    assert waits == [7.0, 30.0]


def test_get_gives_up_after_max_retries(ags: AgentSight, server: RecordingServer, waits: list[float]) -> None:
    for _ in range(3):
        server.script(500, {"detail": "still down"})
    with pytest.raises(ServerError, match="500 still down"):
        ags.spans.get(11)
    assert len(server.requests) == 3 and len(waits) == 2


@pytest.mark.parametrize("call", [
    lambda ags: ags.feedbacks.create_for_conversation("wa-1", "negative"),
    lambda ags: ags.tickets.create("t"),
    lambda ags: ags.conversations.rename(42, "n"),
    lambda ags: ags.feedbacks.delete(9),
], ids=["POST feedback", "POST ticket", "PATCH rename", "DELETE feedback"])
def test_writes_are_never_retried(ags: AgentSight, server: RecordingServer, waits: list[float], call: Any) -> None:
    server.script(503, {"detail": "busy"})
    with pytest.raises(ServerError):
        call(ags)
    server.script(429, {"detail": "throttled"}, {"Retry-After": "5"})
    with pytest.raises(RateLimitError) as caught:
        call(ags)
    assert caught.value.retry_after == 5.0
    assert len(server.requests) == 2 and waits == []


def test_network_errors(waits: list[float]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    ags = AgentSight(API_KEY, endpoint=f"http://127.0.0.1:{port}")
    ags._transport.sleep = waits.append
    with pytest.raises(NetworkError, match="after 3 attempt"):
        ags.conversations.metadata_keys()
    assert waits == [0.5, 2.0]
    with pytest.raises(NetworkError, match="after 1 attempt") as caught:
        ags.tickets.add_comment(1, "x")
    assert API_KEY not in str(caught.value)
    assert waits == [0.5, 2.0]


# (c) pagination -----------------------------------------------------------------------------------------------


def test_iterators_walk_every_page_lazily(ags: AgentSight, server: RecordingServer) -> None:
    conversations = ags.conversations.list(is_marked=True)
    assert isinstance(conversations, PageIterator) and server.requests == []
    assert [c["id"] for c in conversations] == [1, 2, 3, 4, 5]
    assert [dict(r["query"])["page"] for r in server.take()] == ["1", "2", "3"]
    assert ags.tickets.list().first() == {"id": 1, "conversation_id": "c-1"}
    assert ags.spans.list().count() == 5
    page = ags.feedbacks.page(2)
    assert (page.current_page, page.total_pages, [f["id"] for f in page]) == (2, 3, [3, 4])
    assert len(server.take()) == 3
    assert [page.current_page for page in ags.usage.list().pages()] == [1, 2, 3]


def test_iteration_stops_at_total_pages_or_an_empty_page(ags: AgentSight, server: RecordingServer) -> None:
    envelope = {"count": 9, "total_pages": 1, "next": "http://elsewhere/?page=2", "results": [{"id": 1}]}
    server.script(200, envelope)
    assert list(ags.actions.list()) == [{"id": 1}]
    server.script(200, {"count": 9, "next": "http://elsewhere/?page=2", "results": [{"id": 1}]})
    server.script(200, {"count": 9, "next": "http://elsewhere/?page=3", "results": []})
    assert list(ags.actions.list()) == [{"id": 1}]
    assert len(server.requests) == 3


def test_page_reads_envelopes_and_bare_arrays() -> None:
    page = Page.from_response({"count": 3, "results": [1], "next": None, "counts": {"all": 3}})
    assert (page.count, page.results, page.extra) == (3, [1], {"counts": {"all": 3}})
    assert Page.from_response([1, 2]).results == [1, 2] and Page.from_response([1, 2]).count == 2
    assert Page.from_response({"id": 4}).results == [{"id": 4}]


def test_string_ids_are_resolved_once(ags: AgentSight, server: RecordingServer) -> None:
    ags.conversations.mark("wa-3859")
    ags.conversations.rename("wa-3859", "Refund")
    paths = [r["path"] for r in server.take()]
    assert paths == ["/api/conversations/", "/api/conversations/42/mark/", "/api/conversations/42/rename/"]
    with pytest.raises(NotFoundError, match="no conversation with conversation_id 'missing'"):
        ags.conversations.get("missing")


# the lazy module-level client ---------------------------------------------------------------------------------


def test_module_client_is_made_on_first_use_from_the_environment(
        server: RecordingServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agentsight.api, "_default", None)
    monkeypatch.setenv("AGENTSIGHT_API_KEY", API_KEY)
    monkeypatch.setenv("AGENTSIGHT_API_ENDPOINT", server.url + "/")
    assert "client" in dir(agentsight.api) and agentsight.api._default is None
    from agentsight.api import client

    assert isinstance(client, AgentSight) and client is agentsight.api.client
    assert client.environments() == ["production", "development"]
    assert server.raw_headers[0]["authorization"] == f"Api-Key {API_KEY}"
    with pytest.raises(AttributeError):
        agentsight.api.nothing  # noqa: B018


# 0.0.44's management calls: thin calls of the same client ------------------------------------------------------


def test_0044_calls_on_the_tracker_send_the_data_plane_requests(server: RecordingServer) -> None:
    tracker = ConversationTracker(API_KEY, endpoint=server.url, verify_key=False, auto_instrument=False)
    try:
        server.take()
        assert tracker.submit_feedback("wa-3859", Sentiment.NEGATIVE, "slow", metadata={"x": 1})["id"] == 9
        tracker.rename_conversation("wa-3859", " Refund ")
        tracker.mark_conversation(42, True)
        tracker.update_conversation("wa-3859", is_marked=False, language="de")
        tracker.delete_conversation(42)
        assert tracker.fetch_conversation(42)["id"] == 42
        tracker.fetch_conversation_attachments(42)
        page = tracker.fetch_conversations(has_feedback=True, page=2, page_size=10, feedback_source="customer")
    finally:
        tracker.shutdown()
    assert page["current_page"] == 2
    sent = [(r["method"], r["path"], r["query"], r["body"]) for r in server.take() if r["path"] != "/api/ingest/"]
    assert sent == [
        ("POST", "/api/feedbacks/", [],
         {"kind": "conversation", "sentiment": "negative", "conversation_id": "wa-3859", "comment": "slow"}),
        ("GET", "/api/conversations/",
         [["conversation_id", "wa-3859"], ["full", "false"], ["page_size", "1"], ["include_deleted", "true"]], None),
        ("PATCH", "/api/conversations/42/rename/", [], {"name": "Refund"}),
        ("POST", "/api/conversations/42/mark/", [], {"is_marked": True}),
        ("PATCH", "/api/conversations/42/update/", [], {"is_marked": False, "language": "de"}),
        ("DELETE", "/api/conversations/42/delete/", [], None),
        ("GET", "/api/conversations/42/", [["full", "true"]], None),
        ("GET", "/api/conversations/42/attachments/", [], None),
        ("GET", "/api/conversations/",
         [["has_feedback", "true"], ["page", "2"], ["page_size", "10"], ["feedback_source", "customer"]], None),
    ]


def test_0044_calls_raise_0044_exceptions(server: RecordingServer) -> None:
    manager = ConversationManager(API_KEY, endpoint=server.url)
    with pytest.raises(InvalidConversationDataException, match="Invalid sentiment"):
        manager.submit_feedback("wa-1", "angry")
    with pytest.raises(InvalidConversationDataException, match="cannot exceed 255"):
        manager.rename_conversation("wa-1", "x" * 256)
    with pytest.raises(ValueError, match="conversation_id is required"):
        manager.mark_conversation("", True)
    assert server.requests == []
    for status, error_class in [(404, NotFoundException), (401, UnauthorizedException), (403, ForbiddenException),
                                (500, ConversationApiException)]:
        server.script(status, {"detail": f"refused {API_KEY}"})
        with pytest.raises(error_class) as caught:
            manager.delete_conversation(42)
        assert caught.value.status_code == status and API_KEY not in str(caught.value)
    with pytest.raises(NotFoundException):
        AgentSightAPI(API_KEY, endpoint=server.url).fetch_conversation("missing")


@pytest.mark.parametrize("make", [ConversationManager, AgentSightAPI])
def test_0044_configure_sends_later_calls_with_the_new_key_to_the_new_endpoint(
    server: RecordingServer, make: Any
) -> None:
    other_key = "ags_" + "e" * 32 + "_" + "f" * 6
    managed = make(API_KEY, endpoint=server.url)
    with RecordingServer() as other:
        other.script(200, {"id": 42})
        managed.configure(other_key, endpoint=other.url)
        if make is ConversationManager:
            managed.mark_conversation(42, True)
        else:
            managed.fetch_conversation(42)
        assert server.requests == [] and len(other.requests) == 1
        assert other.raw_headers[0]["authorization"] == f"Api-Key {other_key}"


def test_0044_singletons_wait_for_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTSIGHT_API_KEY", raising=False)
    import agentsight

    assert agentsight.Sentiment("positive") is agentsight.Sentiment.POSITIVE
    with pytest.raises(NoApiKeyException):
        agentsight.management._Deferred(ConversationManager).submit_feedback  # noqa: B018
