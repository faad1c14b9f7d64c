"""``agentsight dev``: the SQLite-backed AgentSight-compatible API, its reads, stats and command line."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from agentsight import ConversationTracker
from agentsight.dev import DevServer, DevStore
from tests.conftest import API_KEY, QUICK_RETRIES, eventually, stored_rows, strict_json

Call = Callable[..., tuple[int, Any]]
AUTHORIZATION = f"Authorization: Api-Key {API_KEY}\r\n".encode()


def request(url: str, method: str, path: str, body: Any = None, *, key: str | None = API_KEY,
            raw: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One HTTP request to ``url``; returns the status and the decoded JSON (or text) answer."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    sent = {"Content-Type": "application/json", **(headers or {})}
    if key is not None:
        sent["Authorization"] = f"Api-Key {key}"
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    try:
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        payload = response.read()
        kind = response.getheader("Content-Type", "")
    finally:
        connection.close()
    return response.status, strict_json(payload) if kind.startswith("application/json") else payload.decode()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A fresh database path."""
    return tmp_path / "dev.db"


@pytest.fixture
def dev(db: Path) -> Iterator[DevServer]:
    """A dev server on a free port over ``db``."""
    with DevServer("127.0.0.1", 0, db) as server:
        yield server


@pytest.fixture
def call(dev: DevServer) -> Call:
    """``call(method, path, body=None, **options)`` against the dev server."""
    return partial(request, dev.url)


@pytest.fixture
def make_dev_tracker(dev: DevServer) -> Iterator[Callable[..., ConversationTracker]]:
    """Build trackers delivering to the dev server (shut down after the test)."""
    made: list[ConversationTracker] = []

    def make(protocol: str = "ingest") -> ConversationTracker:
        tracker = ConversationTracker(api_key=API_KEY, endpoint=dev.url, delivery=QUICK_RETRIES,
                                      protocol=protocol)  # type: ignore[arg-type]
        made.append(tracker)
        return tracker

    yield make
    for tracker in made:
        tracker.shutdown()


def post_conversation(call: Call, conversation_id: str, **fields: Any) -> int:
    """Post a conversation (``is_used`` true unless given); returns its server id."""
    status, answer = call("POST", "/api/conversations/", {"conversation_id": conversation_id, "is_used": True,
                                                          **fields})
    assert status == 201, answer
    return int(answer["id"])


def post_item(call: Call, path: str, conversation: int, **fields: Any) -> dict[str, Any]:
    """Post an item under ``conversation``; asserts 201 and returns the answer."""
    status, answer = call("POST", path, {"conversation": conversation, "metadata": {}, **fields})
    assert status == 201, answer
    return answer


# Ingestion -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["ingest", "rest"])
def test_tracker_flow_is_stored(
    make_dev_tracker: Callable[..., ConversationTracker], call: Call, protocol: str
) -> None:
    tracker = make_dev_tracker(protocol)
    tracker.initialize_conversation("conv-1", customer_id="user-7", device="desktop", source="web",
                                    language="en-US", metadata={"page_url": "https://shop.example/"})
    with tracker.conversation("conv-1", customer_ip_address="203.0.113.9"):
        tracker.track_question("Hello, I need help")
        tracker.track_answer("This is a sample response")
        tracker.track_button("contact_human_agent", "Create ticket", "create-ticket")
        tracker.track_action("lookup", duration_ms=12, tools_used={"search": 1}, response="found")
        tracker.track_attachments([{"data": b"%PDF-1.4", "filename": "a.pdf", "mime_type": "application/pdf"}],
                                  mode="form_data")
        tracker.track_token_usage(100, 25, 125, 0)
    result = tracker.flush(10)
    assert result["complete"], result

    status, page = call("GET", "/api/conversations/?conversation_id=conv-1")
    assert status == 200 and page["count"] == 1
    listed = page["results"][0]
    assert listed["customer_id"] == "user-7" and listed["customer_ip_address"] == "203.0.113.9"
    assert listed["initialized"] is True and listed["is_used"] is True
    assert listed["metadata"]["page_url"] == "https://shop.example/"
    assert "messages" not in listed, "the list carries previews, not transcripts"
    assert listed["preview"] == {
        "first_question": {"text": "Hello, I need help", "length": 18, "clipped": False},
        "last_answer": {"text": "This is a sample response", "length": 25, "clipped": False}}
    assert listed["counts"] == {"messages": 2, "buttons": 1, "actions": 2, "attachments": 1}

    status, detail = call("GET", f"/api/conversations/{listed['id']}/")
    assert status == 200
    assert [b["label"] for b in detail["buttons"]] == ["Create ticket"]
    actions = {a["action_name"]: a for a in detail["actions"]}
    assert actions["lookup"]["duration_ms"] == 12 and actions["lookup"]["response"] == "found"
    assert detail["tokens"]["total_tokens"] == 125 and detail["tokens"]["prompt_tokens"] == 100
    assert detail["attachments"][0] | {"filename": "a.pdf", "mime_type": "application/pdf", "size": 8} == \
        detail["attachments"][0]
    stamps = [entry["timestamp"] for entry in detail["timeline"]]
    assert stamps == sorted(stamps) and {e["kind"] for e in detail["timeline"]} == {
        "message", "button", "action", "attachments"}


def test_conversation_get_or_create_merges(call: Call) -> None:
    first = post_conversation(call, "merge", customer_id="u1", device="mobile", is_used=False,
                              metadata={"a": 1})
    second = post_conversation(call, "merge", customer_id=None, device=None, language="de", metadata=None)
    third = post_conversation(call, "merge", is_used=False)
    assert first == second == third
    status, detail = call("GET", f"/api/conversations/{first}/")
    assert status == 200
    assert (detail["customer_id"], detail["device"], detail["language"]) == ("u1", "mobile", "de")
    assert detail["metadata"] == {"a": 1} and detail["is_used"] is True and detail["initialized"] is True


def test_raw_items_and_base64_attachments(call: Call) -> None:
    conversation = post_conversation(call, "raw", timestamp="2026-01-01T10:00:00+02:00")
    data = base64.b64encode(b"hello").decode()
    answer = post_item(call, "/api/attachments/", conversation, mode="base64", sender="end_user",
                       attachments=[{"filename": "h.txt", "mime_type": "text/plain", "data": data}],
                       timestamp="2026-01-01T08:00:03Z")
    assert isinstance(answer["id"], int)
    post_item(call, "/api/track/", conversation, content="later", sender="agent", timestamp="2026-01-01T08:00:05Z")
    post_item(call, "/api/track/", conversation, content="first", sender="end_user",
              timestamp="2026-01-01T10:00:01+02:00")
    _, detail = call("GET", f"/api/conversations/{conversation}/")
    assert detail["created_at"].startswith("2026-01-01T08:00:00")
    assert [e.get("content", e["kind"]) for e in detail["timeline"]] == ["first", "attachments", "later"]
    assert detail["attachments"][0]["size"] == 5


def test_errors_have_drf_shape(call: Call) -> None:
    conversation = post_conversation(call, "errors")
    assert call("POST", "/api/track/", raw=b"{not json")[0] == 400
    status, answer = call("POST", "/api/track/", raw=b"{not json")
    assert status == 400 and "detail" in answer
    assert call("POST", "/api/conversations/", {}) == (400, {"conversation_id": ["This field is required."]})
    status, answer = call("POST", "/api/buttons/", {"conversation": conversation, "button_event": "e", "label": "l"})
    assert (status, answer) == (400, {"value": ["This field is required."]})
    status, answer = call("POST", "/api/track/", {"conversation": 9999, "content": "x", "sender": "agent"})
    assert status == 400 and list(answer) == ["conversation"] and isinstance(answer["conversation"], list)
    status, answer = call("POST", "/api/track/", {"conversation": conversation, "content": "x", "sender": "bot"})
    assert status == 400 and "sender" in answer
    status, answer = call("POST", "/api/track/", {"conversation": conversation, "content": "x", "sender": "agent",
                                                  "timestamp": "yesterday"})
    assert status == 400 and "timestamp" in answer
    assert call("GET", "/api/conversations/424242/") == (404, {"detail": "Not found."})
    assert call("GET", "/api/nothing/")[0] == 404


# Bad input: refused whole, in DRF's shape, with nothing stored -----------------------------------------


VALID = {
    "/api/conversations/": {"conversation_id": "typed"},
    "/api/track/": {"content": "x", "sender": "agent"},
    "/api/action_logs/": {"action_name": "lookup"},
    "/api/buttons/": {"button_event": "e", "label": "l", "value": "v"},
    "/api/attachments/": {"mode": "base64", "attachments": [{"filename": "h.txt", "mime_type": "text/plain",
                                                             "data": "aGk="}]},
}
"""A valid body of each REST path (items get their ``conversation``)."""


@pytest.mark.parametrize(("path", "fields", "field"), [
    ("/api/conversations/", {"conversation_id": {"a": 1}}, "conversation_id"),
    ("/api/conversations/", {"conversation_id": ["a"]}, "conversation_id"),
    ("/api/conversations/", {"customer_id": {"a": 1}}, "customer_id"),
    ("/api/conversations/", {"environment": ["production"]}, "environment"),
    ("/api/conversations/", {"is_used": {"a": 1}}, "is_used"),
    ("/api/conversations/", {"timestamp": [1]}, "timestamp"),
    ("/api/conversations/", {"metadata": [1]}, "metadata"),
    ("/api/track/", {"conversation": 10**30}, "conversation"),
    ("/api/track/", {"conversation": "9" * 30}, "conversation"),
    ("/api/track/", {"conversation": -1}, "conversation"),
    ("/api/track/", {"conversation": 1.5}, "conversation"),
    ("/api/track/", {"conversation": "\u00b2"}, "conversation"),
    ("/api/track/", {"conversation": {"id": 1}}, "conversation"),
    ("/api/track/", {"content": {"a": 1}}, "content"),
    ("/api/track/", {"sender": ["agent"]}, "sender"),
    ("/api/action_logs/", {"duration_ms": {"ms": 1}}, "duration_ms"),
    ("/api/action_logs/", {"duration_ms": "soon"}, "duration_ms"),
    ("/api/action_logs/", {"started_at": {"a": 1}}, "started_at"),
    ("/api/action_logs/", {"response": {"a": 1}}, "response"),
    ("/api/action_logs/", {"error_msg": [1]}, "error_msg"),
    ("/api/buttons/", {"label": ["l"]}, "label"),
    ("/api/attachments/", {"attachments": [{"filename": {"a": 1}, "mime_type": "text/plain", "data": "aGk="}]},
     "attachments"),
])
def test_wrong_json_types_answer_400_naming_the_field(db: Path, call: Call, path: str, fields: dict[str, Any],
                                                      field: str) -> None:
    conversation = post_conversation(call, "typed")
    body = {**VALID[path], **({} if path == "/api/conversations/" else {"conversation": conversation})}
    before = stored_rows(db)
    status, answer = call("POST", path, {**body, **fields})
    assert (status, list(answer)) == (400, [field]), answer
    assert all(isinstance(message, str) for message in answer[field])
    assert stored_rows(db) == before, "nothing of a refused request is stored"
    assert call("POST", path, body)[0] == 201, "the same body without the wrong field is accepted"


@pytest.mark.parametrize("value", [b"NaN", b"-Infinity", b"1e400", b"-1e999", b"9" * 5000, b'"\\ud800"',
                                   b'"x\\udc00"', b'"\xff"', b'"\xed\xa0\x80"'])
def test_values_json_cannot_carry_are_refused(db: Path, call: Call, value: bytes) -> None:
    """Numbers no JSON answer can carry, lone surrogates and bytes that are not UTF-8: 400 on every route."""
    conversation = post_conversation(call, "finite")
    before = stored_rows(db)
    span = (b'{"span_id": "0123456789abcdef", "trace_id": "0af7651916cd43dd8448eb211c80319c", "kind": "odd", '
            b'"name": "n", "started_at": "2026-01-01T00:00:00Z", "ended_at": "2026-01-01T00:00:00Z", '
            b'"attributes": {"x": %s}}' % value)
    for path, raw in (
        ("/api/conversations/", b'{"conversation_id": "v", "metadata": {"x": %s}}' % value),
        ("/api/track/", b'{"conversation": %d, "sender": "agent", "content": "x", "metadata": {"x": %s}}' % (
            conversation, value)),
        ("/api/action_logs/", b'{"conversation": %d, "action_name": "a", "duration_ms": %s}' % (conversation, value)),
        ("/api/ingest/", b'{"conversations": [{"conversation_id": "v", "spans": [%s]}]}' % span),
    ):
        status, answer = call("POST", path, raw=raw)
        assert (status, list(answer)) == (400, ["detail"]), (path, answer)
        assert answer["detail"].startswith("JSON parse error - "), answer
    assert stored_rows(db) == before


def test_multipart_metadata_must_be_json_an_answer_can_carry(db: Path, call: Call) -> None:
    conversation = post_conversation(call, "form")
    before = stored_rows(db)
    for metadata, status in (("{\"x\": NaN}", 400), ("{\"x\": 1e400}", 400), ("{\"x\": 1}", 201)):
        form = (f"--XyZ\r\nContent-Disposition: form-data; name=\"conversation\"\r\n\r\n{conversation}\r\n"
                "--XyZ\r\nContent-Disposition: form-data; name=\"mode\"\r\n\r\nform_data\r\n"
                f"--XyZ\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{metadata}\r\n"
                "--XyZ\r\nContent-Disposition: form-data; name=\"attachment_0\"; filename=\"a.txt\"\r\n"
                "Content-Type: text/plain\r\n\r\nhello\r\n--XyZ--\r\n").encode()
        answer = call("POST", "/api/attachments/", raw=form,
                      headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
        assert answer[0] == status, answer
        if status == 400:
            assert answer[1] == {"metadata": ["Value must be valid JSON."]}
            assert stored_rows(db) == before


def test_absurd_token_counts_count_as_zero(call: Call) -> None:
    conversation = post_conversation(call, "tokens")
    post_item(call, "/api/action_logs/", conversation, action_name="token_usage",
              metadata={"prompt_tokens": 10**30, "completion_tokens": 5, "total_tokens": -3,
                        "embedding_tokens": 2**40})
    status, stats = call("GET", "/api/stats/")
    assert status == 200
    assert stats["tokens"] | {"prompt_tokens": 0, "completion_tokens": 5, "total_tokens": 0,
                              "embedding_tokens": 2**40} == stats["tokens"]


Exchange = tuple[int, dict[str, str], Any, bool]


def exchange(url: str, data: bytes, timeout: float = 10.0, linger: float = 2.0) -> Exchange:
    """Send ``data`` on a new connection as it is: the answer's status, headers and JSON body, and whether the
    server closed the connection within ``linger`` seconds after it."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as raw:
        raw.sendall(data)
        response = http.client.HTTPResponse(raw)
        response.begin()
        body = strict_json(response.read())
        raw.settimeout(linger)
        try:
            closed = raw.recv(1) == b""
        except (TimeoutError, ConnectionResetError):
            closed = False
        return response.status, {name.lower(): value for name, value in response.getheaders()}, body, closed


@pytest.mark.parametrize(("head", "body", "status"), [
    (b"Content-Length: -1\r\n", b"{}", 400),
    (b"Content-Length: abc\r\n", b"{}", 400),
    (b"Content-Length: 1" + b"0" * 30 + b"\r\n", b"{}", 400),
    (b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n", b"2\r\n{}\r\n0\r\n\r\n", 400),
    (b"", b'{"conversation_id": "no-length"}', 411),
    (b"", b"", 411),
])
def test_unreadable_http_framing_is_refused_in_drf_shape(dev: DevServer, db: Path, head: bytes, body: bytes,
                                                         status: int) -> None:
    """A body whose end cannot be known (a broken or missing ``Content-Length``): one JSON answer, then the
    connection closes, nothing is stored and the server serves on."""
    before = stored_rows(db)
    request_bytes = (b"POST /api/conversations/ HTTP/1.1\r\nHost: dev\r\n" + AUTHORIZATION
                     + b"Content-Type: application/json\r\n" + head + b"\r\n" + body)
    answer_status, headers, answer, closed = exchange(dev.url, request_bytes)
    assert (answer_status, list(answer), headers["content-type"]) == (status, ["detail"], "application/json")
    assert closed, "the rest of the bytes cannot be read as a request: the connection closes"
    assert stored_rows(db) == before
    assert request(dev.url, "GET", "/health")[0] == 200


def test_a_stalled_body_answers_408(dev: DevServer, db: Path, monkeypatch: pytest.MonkeyPatch,
                                    caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr("agentsight.dev.app.BODY_TIMEOUT", 0.3)
    started = time.monotonic()
    status, _, answer, closed = exchange(dev.url, b"POST /api/conversations/ HTTP/1.1\r\nHost: dev\r\n" + AUTHORIZATION
                                         + b"Content-Length: 40\r\n\r\n{\"conversation_id\"")
    assert (status, list(answer), closed) == (408, ["detail"], True)
    assert time.monotonic() - started < 5
    assert stored_rows(db) == (0, 0, 0, 0) and not [r for r in caplog.records if r.levelname == "ERROR"]


def test_a_client_gone_before_its_body_is_no_error(dev: DevServer, caplog: pytest.LogCaptureFixture) -> None:
    parts = urlsplit(dev.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as raw:
        raw.sendall(b"POST /api/track/ HTTP/1.1\r\nHost: dev\r\n" + AUTHORIZATION + b"Content-Length: 100\r\n\r\n{")
        eventually(lambda: bool(dev.requests), what="the request to arrive")
    eventually(lambda: dev.requests[0].status != 0, what="the request to end")
    assert not [r for r in caplog.records if r.levelname == "ERROR"], "a client that left is not a server error"
    assert request(dev.url, "GET", "/health")[0] == 200


def test_oversized_rest_bodies_answer_413(dev: DevServer, db: Path) -> None:
    big = b"[" + b"1," * (8 * 1024 * 1024) + b"1]"  # 16 MiB + 2 bytes
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big)
    for head, body in ((b"Transfer-Encoding: chunked\r\n", chunked), (b"Content-Length: %d\r\n" % len(big), big),
                       (b"Content-Length: 17000000\r\n", b"{}")):
        status, _, answer, _ = exchange(dev.url, b"POST /api/track/ HTTP/1.1\r\nHost: dev\r\n" + AUTHORIZATION
                                        + head + b"\r\n" + body, linger=0.05)
        assert (status, answer) == (413, {"detail": "Request body larger than 16777216 bytes."})
    assert stored_rows(db) == (0, 0, 0, 0)


def test_numbers_stored_by_an_earlier_version_are_read_as_null(db: Path) -> None:
    """Before bodies were checked, ``NaN`` and ``Infinity`` could be stored: every read stays valid JSON."""
    DevStore(db).close()
    with closing(sqlite3.connect(db)) as connection, connection:
        connection.execute("INSERT INTO conversations (conversation_id, metadata, created_at, updated_at, is_used) "
                           "VALUES ('old', ?, '2026-01-01', '2026-01-01', 1)",
                           ('{"x": NaN, "y": [Infinity, -Infinity]}',))
        for kind, body in (("message", '{"content": "hi", "sender": "agent", "metadata": {"score": NaN}}'),
                           ("button", '{"button_event": "e", "label": "l", "metadata": {"n": Infinity}}')):
            connection.execute("INSERT INTO items (conversation, kind, timestamp, created_at, body) "
                               "VALUES (1, ?, '2026-01-01', '2026-01-01', ?)", (kind, body))
    with DevServer("127.0.0.1", 0, db) as server:
        for path in ("/api/conversations/", "/api/conversations/1/", "/api/stats/"):
            status, answer = request(server.url, "GET", path)
            assert status == 200, (path, answer)
        _, detail = request(server.url, "GET", "/api/conversations/1/")
    assert detail["metadata"] == {"x": None, "y": [None, None]}
    assert [item["metadata"] for item in detail["timeline"]] == [{"score": None}, {"n": None}]


@pytest.mark.parametrize("key", [None, "wrong", "ags_0123_abcdef"])
def test_api_key_required_on_every_api_request(call: Call, key: str | None) -> None:
    for method, path, body in (("POST", "/api/conversations/", {"conversation_id": "k"}),
                               ("GET", "/api/conversations/", None), ("GET", "/api/stats/", None)):
        status, answer = call(method, path, body, key=key)
        assert status == 401 and "detail" in answer
    assert call("GET", "/api/stats/", key=API_KEY.upper().replace("AGS_", "ags_"))[0] == 200


def test_dashboard_and_health(dev: DevServer) -> None:
    parts = urlsplit(dev.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    connection.request("GET", "/")
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Content-Type", "").startswith("text/html")
    assert b"<" in response.read()
    connection.request("GET", "/health")
    assert connection.getresponse().status == 200
    connection.close()


# Persistence and concurrency -----------------------------------------------------------------------


def test_data_survives_restart(db: Path) -> None:
    with DevServer("127.0.0.1", 0, db) as server:
        first = post_conversation(partial(request, server.url), "persist")
        request(server.url, "POST", "/api/track/", {"conversation": first, "content": "hi", "sender": "end_user"})
    with DevServer("127.0.0.1", 0, db) as server:
        again = partial(request, server.url)
        assert post_conversation(again, "persist") == first
        assert post_conversation(again, "next") == first + 1
        _, detail = again("GET", f"/api/conversations/{first}/")
        assert [m["content"] for m in detail["messages"]] == ["hi"]


def test_concurrent_writers(dev: DevServer, call: Call) -> None:
    threads, turns = 16, 20
    parts = urlsplit(dev.url)
    failures: list[Any] = []
    ids: dict[str, set[int]] = {}
    lock = threading.Lock()

    def writer(number: int) -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        headers = {"Content-Type": "application/json", "Authorization": f"Api-Key {API_KEY}"}

        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            connection.request("POST", path, json.dumps(body), headers)
            response = connection.getresponse()
            answer = json.loads(response.read())
            if response.status != 201:
                failures.append(answer)
            return answer

        for turn in range(turns):
            conversation_id = f"shared-{turn}"
            server_id = post("/api/conversations/", {"conversation_id": conversation_id, "is_used": True})["id"]
            with lock:
                ids.setdefault(conversation_id, set()).add(server_id)
            post("/api/track/", {"conversation": server_id, "content": f"{number}/{turn}", "sender": "end_user"})
        connection.close()

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert not failures
    assert all(len(server_ids) == 1 for server_ids in ids.values()) and len(ids) == turns
    _, page = call("GET", "/api/conversations/?page_size=100")
    assert page["count"] == turns
    assert all(conversation["counts"]["messages"] == threads for conversation in page["results"])
    details = [call("GET", f"/api/conversations/{conversation['id']}/")[1] for conversation in page["results"]]
    contents = {m["content"] for detail in details for m in detail["messages"]}
    assert contents == {f"{n}/{t}" for n in range(threads) for t in range(turns)}


# Reads and stats -----------------------------------------------------------------------------------


LEGACY_STATS = ("initialized", "used", "interaction_rate", "abandoned", "buttons", "tokens", "conversations")
"""The fields of /api/stats/ before issue 13's metrics (tests/test_dev_stats.py checks those)."""


def test_stats_on_known_mix(call: Call) -> None:
    ids = [post_conversation(call, f"s{n}", is_used=False) for n in range(10)]
    for number in range(6):
        post_conversation(call, f"s{number}")
    post_conversation(call, "dev-only", environment="development")
    for conversation, label in ((ids[0], "Create ticket"), (ids[1], "Create ticket"), (ids[2], "Copy conversation")):
        post_item(call, "/api/buttons/", conversation, button_event="contact_human_agent", label=label, value="v")
    for conversation in ids[:2]:
        post_item(call, "/api/action_logs/", conversation, action_name="token_usage",
                  metadata={"prompt_tokens": 100, "completion_tokens": 25, "total_tokens": 125,
                            "embedding_tokens": 3})
    status, stats = call("GET", "/api/stats/?environment=production")
    assert status == 200
    assert {key: stats[key] for key in LEGACY_STATS} == {
        "initialized": 10, "used": 6, "interaction_rate": 60.0, "abandoned": 4,
        "buttons": {"contact_human_agent": {"Create ticket": 2, "Copy conversation": 1}},
        "tokens": {"prompt_tokens": 200, "completion_tokens": 50, "total_tokens": 250, "embedding_tokens": 6,
                   "cache_read_tokens": 0, "cache_write_tokens": 0, "reasoning_tokens": 0},
        "conversations": 10,
    }
    _, everything = call("GET", "/api/stats/?environment=all")
    assert everything["conversations"] == 11 and everything["used"] == 7
    assert call("GET", "/api/stats/")[1]["conversations"] == 10, "production only by default"
    _, development = call("GET", "/api/stats/?environment=development")
    assert development["interaction_rate"] is None and development["buttons"] == {}, "nothing initialized: no rate"

    _, detail = call("GET", f"/api/conversations/{ids[0]}/")
    assert detail["buttons"][0]["siblings"] == ["Copy conversation"]


def test_pagination_and_filters(call: Call) -> None:
    for number in range(25):
        post_conversation(call, f"p{number:02d}", is_used=number % 2 == 0,
                          environment="development" if number % 5 == 0 else "production")
    status, first = call("GET", "/api/conversations/?page=1&page_size=10")
    assert status == 200 and first["count"] == 25 and first["previous"] is None
    assert [c["conversation_id"] for c in first["results"]] == [f"p{n:02d}" for n in range(24, 14, -1)]
    assert "page=2" in first["next"]
    _, last = call("GET", "/api/conversations/?page=3&page_size=10")
    assert len(last["results"]) == 5 and last["next"] is None and "page=2" in last["previous"]
    assert call("GET", "/api/conversations/?page=4&page_size=10")[0] == 404
    _, unused = call("GET", "/api/conversations/?is_used=false&page_size=100")
    assert unused["count"] == 12 and all(not c["is_used"] for c in unused["results"])
    _, dev_env = call("GET", "/api/conversations/?environment=development&is_used=true")
    assert {c["conversation_id"] for c in dev_env["results"]} == {"p00", "p10", "p20"}
    _, one = call("GET", "/api/conversations/?conversation_id=p07")
    assert one["count"] == 1 and one["results"][0]["conversation_id"] == "p07"


# Command line --------------------------------------------------------------------------------------


def test_dev_help() -> None:
    result = subprocess.run([sys.executable, "-m", "agentsight.cli", "dev", "--help"], capture_output=True,
                            text=True, timeout=30, check=False)
    assert result.returncode == 0
    assert "--port" in result.stdout and "--db" in result.stdout and "--host" in result.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_dev_command_serves_and_stops_on_sigint(tmp_path: Path) -> None:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "agentsight.cli", "dev", "--port", str(port), "--db", str(tmp_path / "cli.db")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line
        url = f"http://127.0.0.1:{port}"
        status, answer = request(url, "POST", "/api/conversations/", {"conversation_id": "cli", "is_used": True})
        assert status == 201 and answer["id"] == 1
        status, stats = request(url, "GET", "/api/stats/")
        assert status == 200 and stats["conversations"] == 1 and stats["used"] == 1
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (tmp_path / "cli.db").exists()


def test_dev_memory_writes_nothing(tmp_path: Path) -> None:
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "agentsight.cli", "dev", "--memory", "--port", str(port)],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(Path.cwd() / "src")})
    try:
        assert process.stdout is not None
        assert "in memory" in process.stdout.readline()
        url = f"http://127.0.0.1:{port}"
        assert request(url, "POST", "/api/conversations/", {"conversation_id": "mem"})[0] == 201
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert list(tmp_path.iterdir()) == []


def test_dev_without_the_extra_names_it_and_exits_2() -> None:
    blocked = ("import sys; sys.modules['fastapi'] = None; import agentsight.cli; "
               "sys.exit(agentsight.cli.main(['dev', '--memory']))")
    result = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "pip install fastapi uvicorn" in result.stderr


def test_importing_agentsight_never_imports_fastapi() -> None:
    check = ("import sys, agentsight, agentsight.cli, agentsight.dev, agentsight.dev.local_llm; "
             "assert not {'fastapi', 'uvicorn', 'starlette'} & set(sys.modules), sorted(sys.modules)")
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
