"""``agentsight dev``: ``POST /api/ingest/`` (plain and gzip), its projection into the store, ``GET /api/me/``,
the conversation lookup, and fault injection and latency on those routes. Documents are built by hand."""

from __future__ import annotations

import gzip
import itertools
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from agentsight.dev import CannedResponse, DevServer
from tests.conftest import API_KEY

INGEST = "/api/ingest/"
AUTH = {"Authorization": f"Api-Key {API_KEY}"}
TRACE = "0af7651916cd43dd8448eb211c80319c"
_ids = itertools.count(1)


def span(kind: str, name: str, started: str, *, ended: str | None = None, status: str = "unset",
         events: list[dict[str, Any]] | None = None, parent: str | None = None, **attributes: Any) -> dict[str, Any]:
    """A span as upstream 0.1.x sends it; ``attributes`` keys use ``__`` for ``.`` (``gen_ai__system``)."""
    return {
        "span_id": f"{next(_ids):016x}", "trace_id": TRACE, "parent_span_id": parent, "kind": kind, "name": name,
        "started_at": f"2026-11-25T10:00:{started}+00:00", "ended_at": f"2026-11-25T10:00:{ended or started}+00:00",
        "duration_ms": 1.5, "status": status,
        "attributes": {"agentsight.span.kind": kind, **{k.replace("__", "."): v for k, v in attributes.items()}},
        "events": events or [], "otel": {"span_kind": "INTERNAL", "status_description": None},
    }


def message(sender: str, content: str, at: str, **metadata: Any) -> dict[str, Any]:
    """An ``agentsight.message`` event."""
    attributes = {"agentsight.message.sender": sender, "agentsight.message.content": content}
    if metadata:
        attributes["agentsight.message.metadata"] = json.dumps(metadata)
    return {"name": "agentsight.message", "timestamp": f"2026-11-25T10:00:{at}+00:00", "attributes": attributes}


def block(conversation_id: str, *spans: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A conversation block."""
    return {"conversation_id": conversation_id, **fields, "spans": list(spans)}


def document(*blocks: dict[str, Any]) -> dict[str, Any]:
    """An ingest document."""
    return {"sdk": {"name": "agentsight-python", "version": "0.1.4"}, "conversations": list(blocks)}


@pytest.fixture
def dev() -> Iterator[DevServer]:
    """An in-memory dev server."""
    with DevServer() as server:
        yield server


@pytest.fixture
def client(dev: DevServer) -> Iterator[httpx.Client]:
    """An HTTP client for ``dev`` sending the API key; fails the test on any 5xx."""

    def no_server_error(response: httpx.Response) -> None:
        assert response.status_code < 500, f"{response.request.method} {response.request.url}: {response.read()!r}"

    with httpx.Client(base_url=dev.url, headers=AUTH, timeout=30, event_hooks={"response": [no_server_error]}) as made:
        yield made


def detail(client: httpx.Client, conversation_id: str) -> dict[str, Any]:
    """The stored conversation with its items."""
    found = client.get("/api/conversations/lookup/", params={"conversation_id": conversation_id})
    assert found.status_code == 200, found.text
    return client.get(f"/api/conversations/{found.json()['id']}/").json()


# Ingest -------------------------------------------------------------------------------------------------


def test_plain_and_gzip_documents_are_stored(dev: DevServer, client: httpx.Client) -> None:
    plain = document(block("conv-plain", span("turn", "turn", "01", events=[message("end_user", "hi", "01")])))
    answer = client.post(INGEST, json=plain)
    assert (answer.status_code, answer.json()) == (200, {"accepted": 1, "conversations": 1})

    zipped = document(block("conv-gzip", span("turn", "turn", "02", events=[message("agent", "x" * 20000, "02")]),
                            span("button", "Helpful", "03", agentsight__button__event="feedback",
                                 agentsight__button__label="Helpful", agentsight__button__value="yes")))
    body = gzip.compress(json.dumps(zipped).encode())
    answer = client.post(INGEST, content=body, headers={"Content-Type": "application/json",
                                                        "Content-Encoding": "gzip"})
    assert (answer.status_code, answer.json()) == (200, {"accepted": 2, "conversations": 1})

    first, second = dev.accepted(INGEST)
    assert first.body == plain and "content-encoding" not in first.headers
    assert second.body == zipped and second.headers["content-encoding"] == "gzip"
    assert [m["content"] for m in detail(client, "conv-gzip")["messages"]] == ["x" * 20000]


def test_projection_into_the_store(client: httpx.Client) -> None:
    visit = block("conv-visit", span("conversation", "conversation_opened", "00"), customer_id="user-1",
                  device="desktop", metadata={"page_url": "https://shop.example/"})
    turn = span("turn", "turn", "10", ended="20", agentsight__turn__complete=True, events=[
        message("agent", "second", "12"), message("end_user", "first", "11", channel="web"),
        {"name": "note", "timestamp": "2026-11-25T10:00:11.500000+00:00", "attributes": {}}])
    broken = span("turn", "turn", "30", ended="31", status="error", agentsight__turn__complete=False,
                  agentsight__turn__incomplete_reason="error", events=[message("end_user", "lost question", "30")])
    llm_in_broken = span("llm", "gpt-4o-mini", "30", parent=broken["span_id"], gen_ai__system="openai",
                         gen_ai__operation__name="chat", gen_ai__request__model="gpt-4o-mini",
                         gen_ai__usage__input_tokens=5, gen_ai__usage__output_tokens=0,
                         agentsight__llm__error="timeout")
    used = block(
        "conv-1", turn, broken, llm_in_broken,
        span("llm", "gpt-4o-mini", "13", gen_ai__system="openai", gen_ai__operation__name="chat",
             gen_ai__request__model="gpt-4o-mini", gen_ai__usage__input_tokens=32, gen_ai__usage__output_tokens=12,
             agentsight__llm__cache_read_tokens=10, agentsight__llm__cache_write_tokens=3,
             agentsight__llm__reasoning_tokens=4, agentsight__llm__embedding_tokens=7),
        span("tool", "lookup_order", "14", ended="15", agentsight__tool__name="lookup_order",
             agentsight__tool__arguments='{"order_id": "A-1"}', agentsight__tool__response="shipped"),
        span("task", "plan", "16", status="error", agentsight__tool__error="no plan",
             agentsight__tool__arguments='["a", 1]'),
        span("button", "Create ticket", "17", agentsight__button__event="contact_human_agent",
             agentsight__button__label="Create ticket", agentsight__button__value="create-ticket",
             agentsight__metadata='{"origin": "widget"}'),
        span("attachment", "1 attachment(s)", "18", agentsight__attachment__sender="end_user",
             agentsight__attachment__mode="base64", agentsight__attachment__count=1,
             agentsight__attachment__files='[{"name": "receipt.txt", "size": 14, "mime": "text/plain"}]'),
        span("retrieval", "search", "19"),
        customer_id="user-7", environment="production", metadata={"plan": "pro"},
    )
    other = block("conv-2", span("button", "Copy", "40", agentsight__button__event="contact_human_agent",
                                 agentsight__button__label="Copy conversation", agentsight__button__value="copy"))
    assert client.post(INGEST, json=document(visit, used, other)).json() == {"accepted": 11, "conversations": 3}

    seen = detail(client, "conv-visit")
    assert (seen["is_used"], seen["initialized"], seen["customer_id"]) == (False, True, "user-1")
    assert seen["metadata"] == {"page_url": "https://shop.example/"} and seen["timeline"] == []

    conversation = detail(client, "conv-1")
    assert conversation["is_used"] is True and conversation["metadata"] == {"plan": "pro"}
    assert [(m["sender"], m["content"], m["metadata"]) for m in conversation["messages"]] == [
        ("end_user", "first", {"channel": "web"}), ("agent", "second", {})]
    assert [(a["span_kind"], a["reason"]) for a in conversation["archived"]] == [("retrieval", None), ("turn", "error")]
    assert conversation["archived"][1]["events"][0]["attributes"]["agentsight.message.content"] == "lost question"
    actions = {a["action_name"]: a for a in conversation["actions"]}
    assert set(actions) == {"chat openai/gpt-4o-mini", "lookup_order", "plan"}
    lookup = actions["lookup_order"]
    assert lookup["tools_used"] == {"order_id": "A-1"} and lookup["response"] == "shipped"
    assert lookup["started_at"] == "2026-11-25T10:00:14.000000+00:00" and lookup["duration_ms"] == 1.5
    assert lookup["ended_at"] == "2026-11-25T10:00:15.000000+00:00" and lookup["error_msg"] is None
    assert actions["plan"]["error_msg"] == "no plan" and actions["plan"]["tools_used"] == {"arguments": ["a", 1]}
    (button,) = conversation["buttons"]
    assert (button["button_event"], button["label"], button["value"]) == (
        "contact_human_agent", "Create ticket", "create-ticket")
    assert button["metadata"] == {"origin": "widget"} and button["siblings"] == ["Copy conversation"]
    (descriptor,) = [item for item in conversation["timeline"] if item["kind"] == "attachments"]
    assert descriptor["files"] == [{"filename": "receipt.txt", "mime_type": "text/plain", "size": 14}]
    assert conversation["attachments"] == [], "descriptors only: the bytes arrive on /api/attachments/"
    tokens = {"prompt_tokens": 37, "completion_tokens": 12, "total_tokens": 62, "embedding_tokens": 7,
              "cache_read_tokens": 10, "cache_write_tokens": 3, "reasoning_tokens": 4}
    assert conversation["tokens"] == tokens, "the incomplete turn's model call counts too"
    stamps = [item["timestamp"] for item in conversation["timeline"]]
    assert stamps == sorted(stamps)

    stats = client.get("/api/stats/").json()
    assert stats["tokens"] == tokens
    assert (stats["initialized"], stats["used"], stats["abandoned"], stats["conversations"]) == (1, 2, 1, 3)
    assert stats["buttons"] == {"contact_human_agent": {"Copy conversation": 1, "Create ticket": 1}}


def test_rest_and_ingest_share_one_conversation(client: httpx.Client) -> None:
    created = client.post("/api/conversations/", json={"conversation_id": "conv-mixed", "is_used": False})
    assert created.status_code == 201
    client.post("/api/action_logs/", json={"conversation": created.json()["id"], "action_name": "token_usage",
                                           "metadata": {"prompt_tokens": 100, "completion_tokens": 25,
                                                        "total_tokens": 125, "embedding_tokens": 1}})
    client.post(INGEST, json=document(block("conv-mixed", span(
        "llm", "m", "01", gen_ai__system="anthropic", gen_ai__operation__name="chat", gen_ai__request__model="m",
        gen_ai__usage__input_tokens=1, gen_ai__usage__output_tokens=2, agentsight__llm__reasoning_tokens=3))))
    conversation = detail(client, "conv-mixed")
    assert conversation["id"] == created.json()["id"] and conversation["is_used"] and conversation["initialized"]
    assert conversation["tokens"] == {"prompt_tokens": 101, "completion_tokens": 27, "total_tokens": 128,
                                      "embedding_tokens": 1, "cache_read_tokens": 0, "cache_write_tokens": 0,
                                      "reasoning_tokens": 3}
    assert client.get("/api/stats/").json()["interaction_rate"] == 100.0


def test_a_replayed_document_is_stored_once(dev: DevServer, client: httpx.Client) -> None:
    sent = document(block("conv-r", span("turn", "turn", "01", events=[message("end_user", "once", "01")]),
                          span("llm", "m", "02", gen_ai__usage__input_tokens=3, gen_ai__usage__output_tokens=4),
                          span("button", "b", "03", agentsight__button__event="e", agentsight__button__label="l",
                               agentsight__button__value="v")))
    for _ in range(3):
        assert client.post(INGEST, json=sent).json() == {"accepted": 3, "conversations": 1}
    conversation = detail(client, "conv-r")
    assert [m["content"] for m in conversation["messages"]] == ["once"]
    assert len(conversation["actions"]) == 1 and len(conversation["buttons"]) == 1
    assert conversation["tokens"]["total_tokens"] == 7 and dev.store.stats()["tokens"]["total_tokens"] == 7


# Errors -------------------------------------------------------------------------------------------------


def test_invalid_blocks_are_named_and_nothing_is_stored(dev: DevServer, client: httpx.Client) -> None:
    bad_span = span("turn", "turn", "01")
    bad_span["span_id"] = "not-hex"
    sent = document(block("conv-ok", span("turn", "turn", "01")), block("conv-bad", bad_span),
                    {"spans": []}, block("x" * 256), block("conv-time", {**span("tool", "t", "01"),
                                                                        "started_at": "yesterday"}))
    answer = client.post(INGEST, json=sent)
    assert answer.status_code == 400
    body = answer.json()
    assert body["detail"] == "Invalid conversation block(s)." and body["truncated"] is False
    assert [(entry["index"], entry["conversation_id"]) for entry in body["conversations"]] == [
        (1, "conv-bad"), (2, None), (3, "x" * 256), (4, "conv-time")]
    assert list(body["conversations"][0]["errors"]) == ["spans.0.span_id"]
    assert list(body["conversations"][1]["errors"]) == ["conversation_id"]
    assert all(isinstance(messages, list) and messages for entry in body["conversations"]
               for messages in entry["errors"].values())
    assert dev.conversations == {}, "one transaction: nothing of the request is stored"

    many = client.post(INGEST, json=document(*[{"conversation_id": n} for n in range(25)])).json()
    assert len(many["conversations"]) == 20 and many["truncated"] is True


@pytest.mark.parametrize(("body", "headers"), [
    (b"{not json", {}),
    (b"[1, 2]", {}),
    (b'{"sdk": {}}', {}),
    (b'{"conversations": {"a": 1}}', {}),
    (b'{"conversations": [], "x": NaN}', {}),
    (b'{"conversations": [], "x": [1e400]}', {}),
    (b'{"conversations": [{"conversation_id": "\\udc00"}]}', {}),
    (b'{"conversations": [{"conversation_id": "\xff"}]}', {}),
    (b"[" * 100_000 + b"]" * 100_000, {}),
    (gzip.compress(b'{"conversations": [{"conversation_id": "c", "metadata": {"x": -Infinity}}]}'),
     {"Content-Encoding": "gzip"}),
    (b"\x1f\x8b not gzip at all", {"Content-Encoding": "gzip"}),
    (gzip.compress(b'{"conversations": []}')[:-6], {"Content-Encoding": "gzip"}),
])
def test_document_errors_answer_400_with_detail(client: httpx.Client, body: bytes, headers: dict[str, str]) -> None:
    answer = client.post(INGEST, content=body, headers={"Content-Type": "application/json", **headers})
    assert answer.status_code == 400 and list(answer.json()) == ["detail"], answer.text


def test_absurd_counts_count_as_zero(client: httpx.Client) -> None:
    sent = document(block("conv-absurd",
                          span("llm", "chat", "01", gen_ai__request__model="m", gen_ai__usage__input_tokens=10**30,
                               gen_ai__usage__output_tokens=-5, agentsight__llm__reasoning_tokens=2**40),
                          span("attachment", "attachment", "02", agentsight__attachment__count=10**30,
                               agentsight__attachment__files=json.dumps([{"filename": "a", "size": 1e300}]))))
    assert client.post(INGEST, json=sent).status_code == 200
    conversation = detail(client, "conv-absurd")
    assert conversation["tokens"] | {"prompt_tokens": 0, "completion_tokens": 0, "reasoning_tokens": 2**40} == \
        conversation["tokens"]
    attachment = next(item for item in conversation["timeline"] if item["kind"] == "attachments")
    assert (attachment["count"], attachment["files"][0]["size"]) == (1, 0)


def test_too_large_bodies_answer_413(dev: DevServer, client: httpx.Client) -> None:
    answer = client.post(INGEST, content=b" " * (16 * 1024 * 1024 + 1), headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and "detail" in answer.json()
    bomb = gzip.compress(b" " * (64 * 1024 * 1024 + 1), compresslevel=1)
    answer = client.post(INGEST, content=bomb, headers={"Content-Type": "application/json",
                                                        "Content-Encoding": "gzip"})
    assert answer.status_code == 413 and "detail" in answer.json()
    assert client.post(INGEST, json=document()).json() == {"accepted": 0, "conversations": 0}


def test_key_required_403_on_ingest_401_elsewhere(client: httpx.Client) -> None:
    for key in (None, "Api-Key wrong", "Bearer " + API_KEY):
        headers = {"Authorization": key} if key else {}
        client.headers.pop("Authorization", None)
        assert client.post(INGEST, json=document(), headers=headers).status_code == 403
        answer = client.get("/api/me/", headers=headers)
        assert answer.status_code == 401 and "detail" in answer.json()
        assert client.get("/api/conversations/lookup/", params={"conversation_id": "c"},
                          headers=headers).status_code == 401


def test_unknown_paths_and_methods_have_drf_bodies(client: httpx.Client) -> None:
    assert (client.get("/api/nothing/").status_code, client.get("/api/nothing/").json()) == (404, {
        "detail": "Not found."})
    assert client.get(INGEST).json() == {"detail": 'Method "GET" not allowed.'}
    missing = client.get("/api/conversations/lookup/")
    assert missing.status_code == 400 and list(missing.json()) == ["conversation_id"]
    assert client.get("/api/conversations/99999999999999999999999/").status_code == 404


# /api/me/ and the lookup ---------------------------------------------------------------------------------


def test_me_answers_role_and_capabilities(client: httpx.Client) -> None:
    assert client.get("/api/me/").json() == {
        "role": "write", "agent_id": 1, "agent_name": "agentsight dev",
        "environments": [{"slug": "production"}, {"slug": "development"}], "capabilities": ["gzip-ingest"]}
    with DevServer(capabilities=(), role="read") as other:
        answer = httpx.get(f"{other.url}/api/me/", headers=AUTH).json()
    assert (answer["role"], answer["capabilities"]) == ("read", [])


def test_lookup_finds_the_server_id(client: httpx.Client) -> None:
    created = client.post("/api/conversations/", json={"conversation_id": "conv-look"}).json()
    found = client.get("/api/conversations/lookup/", params={"conversation_id": "conv-look"})
    assert found.json() == {"id": created["id"], "conversation_id": "conv-look"}
    unknown = client.get("/api/conversations/lookup/", params={"conversation_id": "nope"})
    assert (unknown.status_code, unknown.json()) == (404, {"detail": "Not found."})


# Fault injection and latency -----------------------------------------------------------------------------


def test_faults_injected_on_ingest_and_me(dev: DevServer, client: httpx.Client) -> None:
    dev.inject(CannedResponse(503, retry_after="2", path=INGEST), CannedResponse(500, path="/api/me/"))
    sent = document(block("conv-f", span("turn", "turn", "01", events=[message("end_user", "hi", "01")])))
    assert client.get("/api/stats/").status_code == 200, "a fault for another path leaves this one alone"
    with httpx.Client(base_url=dev.url, headers=AUTH) as plain:
        refused = plain.post(INGEST, json=sent)
        assert (refused.status_code, refused.headers["retry-after"]) == (503, "2")
        assert dev.conversations == {}, "an injected answer stores nothing"
        assert client.post(INGEST, json=sent).status_code == 200
        assert (dev.accepted(INGEST)[0].body, [r.status for r in dev.requests]) == (sent, [200, 503, 200])
        assert plain.get("/api/me/").status_code == 500
    assert [(r.method, r.path, r.status) for r in dev.requests][-1] == ("GET", "/api/me/", 500)
    assert dev.conversations["conv-f"]["is_used"] is True


def test_latency_lets_concurrent_requests_overlap() -> None:
    with DevServer(latency=0.2) as server, ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(lambda _: httpx.get(f"{server.url}/api/me/", headers=AUTH).status_code, range(10)))
        assert statuses == [200] * 10
        assert server.max_in_flight == 10, "all ten were held by the latency at the same time"
        assert len(server.wait_for(10, timeout=1, path="/api/me/")) == 10
        with pytest.raises(TimeoutError, match=r"11 accepted requests to /api/me/: 10 accepted, 10 received"):
            server.wait_for(11, timeout=0.05, path="/api/me/")


def test_an_unexpected_error_is_logged_and_answered_500(dev: DevServer, monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: Any) -> list[Any]:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(dev.store, "read", broken)
    answer = httpx.get(f"{dev.url}/api/stats/", headers=AUTH)
    assert (answer.status_code, answer.json()) == (500, {"detail": "Internal error."})
    assert any("disk on fire" in (record.exc_text or "") for record in caplog.records)
    assert dev.requests[-1].status == 500
