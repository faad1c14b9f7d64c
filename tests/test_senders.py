"""Delivery and the two senders against a scripted transport: no sockets, every request and answer in view."""

from __future__ import annotations

import gzip
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import SpanContext

from agentsight.config import DeliverySettings
from agentsight.export import ingest, rest
from agentsight.export.delivery import DeliveryClient, PendingTurn
from agentsight.export.payloads import Payload
from agentsight.export.retry import RetryPolicy
from agentsight.export.senders import GZIP_MIN_BYTES, IngestSender, RestSender
from agentsight.export.transport import HttpResponse
from agentsight.spans import semconv as sc

QUICK = DeliverySettings(backoff_initial=0.001, backoff_max=0.005, max_retry_time=1.0)
OK = HttpResponse(200, b'{"accepted": 1}', None)


class ScriptedTransport:
    """Answers requests from a script (a response, an exception, or a function of the request); records them."""

    endpoint = "http://scripted.test"

    def __init__(self, *script: Any, default: Any = OK) -> None:
        self.script = list(script)
        self.default = default
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def request(self, method: str, path: str, data: bytes | None = None, headers: dict[str, str] | None = None):
        headers = headers or {}
        raw = gzip.decompress(data) if data and headers.get("Content-Encoding") == "gzip" else data
        record = {"method": method, "path": path, "size": len(data or b""), "headers": headers,
                  "body": json.loads(raw) if raw else None}
        with self.lock:
            self.requests.append(record)
            answer = self.script.pop(0) if self.script else self.default
        if callable(answer):
            answer = answer(record)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def post(self, payload: Payload, conversation: int | None) -> HttpResponse:
        body = dict(payload.body)
        if payload.kind != "conversation":
            body["conversation"] = conversation
        return self.request("POST", payload.path, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def close(self) -> None:
        """Nothing to close."""


class Capabilities:
    """Stands in for the key preflight."""

    def __init__(self, *names: str) -> None:
        self.names = set(names)

    def has_capability(self, name: str) -> bool:
        return name in self.names


def _span(conversation_id: str, span_id: int, messages: int = 1, text: str = "hello") -> ReadableSpan:
    events = [Event(sc.MESSAGE_EVENT, {sc.MESSAGE_SENDER: "end_user", sc.MESSAGE_CONTENT: f"{text} {n}"}, 10 + n)
              for n in range(messages)]
    return ReadableSpan(name=sc.CONVERSATION_SPAN, context=SpanContext(1, span_id, is_remote=False),
                        attributes={sc.CONVERSATION_ID: conversation_id, sc.IS_USED: True},
                        events=events, start_time=1, end_time=100)


def _pending(span: ReadableSpan, translate: Callable[[Any], Any] = ingest.translate) -> PendingTurn:
    count, size = (ingest.estimate if translate is ingest.translate else rest.estimate)(span)
    return PendingTurn(str(span.attributes[sc.CONVERSATION_ID]), count, size, lambda: translate(span))


def _ingest_client(transport: ScriptedTransport, *capabilities: str, concurrency: int = 1,
                   settings: DeliverySettings = QUICK) -> DeliveryClient:
    sender = IngestSender(transport, settings, Capabilities(*capabilities), RestSender(transport))  # type: ignore[arg-type]
    return DeliveryClient(sender, settings, concurrency, transport.close)


def test_gzip_only_above_the_threshold_and_with_the_capability() -> None:
    for capabilities, messages, compressed in (((), 200, False), (("gzip-ingest",), 200, True),
                                               (("gzip-ingest",), 1, False)):
        transport = ScriptedTransport()
        client = _ingest_client(transport, *capabilities)
        client.submit(_pending(_span("conv-g", 1, messages=messages, text="x" * 50)))
        assert client.flush(5).complete
        (request,) = transport.requests
        assert (request["headers"].get("Content-Encoding") == "gzip") is compressed, (capabilities, messages)
        assert request["path"] == "/api/ingest/" and request["body"]["conversations"][0]["conversation_id"] == "conv-g"
        if not compressed:
            assert request["size"] <= GZIP_MIN_BYTES or not capabilities


def test_one_document_carries_what_queued_during_a_request() -> None:
    release = threading.Event()

    def slow(record: dict[str, Any]) -> HttpResponse:
        release.wait(5)
        return OK

    transport = ScriptedTransport(slow)
    client = _ingest_client(transport)
    client.submit(_pending(_span("conv-0", 1)))
    while not transport.requests:
        time.sleep(0.001)
    for number in range(1, 11):
        client.submit(_pending(_span(f"conv-{number}", number + 1)))
    release.set()
    assert client.flush(5).complete
    assert len(transport.requests) == 2
    assert [b["conversation_id"] for b in transport.requests[1]["body"]["conversations"]] == [
        f"conv-{n}" for n in range(1, 11)]
    assert client.stats["payloads_delivered"] == client.stats["payloads_submitted"] == 11


def test_400_naming_blocks_drops_them_and_sends_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    refusal = {"detail": "Invalid payload.", "truncated": False,
               "conversations": [{"index": 1, "conversation_id": "conv-bad", "errors": {"environment": ["Unknown."]}}]}
    transport = ScriptedTransport(HttpResponse(400, json.dumps(refusal).encode(), None))
    client = _ingest_client(transport)
    caplog.set_level(logging.ERROR, logger="agentsight")
    release = threading.Event()
    transport.script.insert(0, lambda record: (release.wait(5), OK)[1])
    client.submit(_pending(_span("conv-first", 1)))
    while not transport.requests:
        time.sleep(0.001)
    for conversation_id, span_id in (("conv-a", 2), ("conv-bad", 3), ("conv-b", 4)):
        client.submit(_pending(_span(conversation_id, span_id)))
    release.set()
    result = client.flush(5)
    blocks = [[b["conversation_id"] for b in r["body"]["conversations"]] for r in transport.requests]
    assert blocks == [["conv-first"], ["conv-a", "conv-bad", "conv-b"], ["conv-a", "conv-b"]]
    failed = {item.conversation_id for item in result.items if not item.success}
    assert failed == {"conv-bad"}
    assert any("conv-bad" in r.getMessage() and "environment: Unknown." in r.getMessage() for r in caplog.records)
    assert client.stats["payloads_rejected"] == 1 and client.stats["payloads_delivered"] == 3


def test_400_without_block_detail_rejects_the_batch_without_resending() -> None:
    transport = ScriptedTransport(HttpResponse(400, b'{"detail": "conversations: This field is required."}', None))
    client = _ingest_client(transport)
    client.submit(_pending(_span("conv-x", 1)))
    result = client.flush(5)
    assert len(transport.requests) == 1 and not any(item.success for item in result.items)
    assert {item.outcome for item in result.items} == {"rejected"}


def test_5xx_and_network_errors_retried_then_delivered() -> None:
    transport = ScriptedTransport(HttpResponse(503, b"", None), ConnectionResetError("reset"),
                                  HttpResponse(500, b"{}", None))
    client = _ingest_client(transport)
    client.submit(_pending(_span("conv-r", 1)))
    result = client.flush(5)
    assert all(item.success for item in result.items) and len(transport.requests) == 4
    assert client.stats["retries"] == 3


def test_outage_gives_up_after_the_retry_budget_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    transport = ScriptedTransport(default=ConnectionRefusedError("refused"))
    settings = DeliverySettings(backoff_initial=0.01, backoff_max=0.02, max_retry_time=0.2)
    client = _ingest_client(transport, settings=settings)
    caplog.set_level(logging.ERROR, logger="agentsight")
    client.submit(_pending(_span("conv-down", 1)))
    result = client.flush(5)
    assert result.complete and {item.outcome for item in result.items} == {"expired"}
    assert client.stats["payloads_expired"] == client.stats["payloads_submitted"] == 1
    assert client.stats["payloads_delivered"] == 0
    assert any("gave up" in record.getMessage() for record in caplog.records)


def test_retry_policy_is_pure() -> None:
    policy = RetryPolicy(initial=0.5, maximum=4.0, max_time=60)
    assert policy.delay(3, retry_after=7.0) == 7.0, "the server's Retry-After wins"
    assert all(0.25 <= policy.delay(0) <= 0.5 for _ in range(50))
    assert all(2.0 <= policy.delay(3) <= 4.0 for _ in range(50)), "doubles per attempt, with jitter"
    assert all(2.0 <= policy.delay(10) <= 4.0 for _ in range(50)), "capped"
    assert [policy.is_retryable(s) for s in (400, 401, 404, 409, 429, 500, 503)] == [
        False, False, False, False, True, True, True]
    assert policy.is_success(204) and not policy.is_success(302)


def test_rest_keeps_each_conversations_order_under_concurrency() -> None:
    lock = threading.Lock()
    in_flight: dict[str, int] = {}
    overlaps: list[str] = []

    def answer(record: dict[str, Any]) -> HttpResponse:
        conversation_id = record["body"]["conversation_id"]
        with lock:
            in_flight[conversation_id] = in_flight.get(conversation_id, 0) + 1
            if in_flight[conversation_id] > 1:
                overlaps.append(conversation_id)
        time.sleep(random.uniform(0, 0.003))
        with lock:
            in_flight[conversation_id] -= 1
        return HttpResponse(201, b'{"id": 1}', None)

    transport = ScriptedTransport(default=answer)
    sender = RestSender(transport)  # type: ignore[arg-type]
    client = DeliveryClient(sender, QUICK, 8, transport.close)
    for turn in range(20):
        for conversation in range(4):
            client.submit(_pending(_span(f"conv-{conversation}", turn * 4 + conversation + 1, text=f"t{turn}"),
                                   rest.translate))
    assert client.flush(10).complete
    assert not overlaps, "a conversation was in two deliveries at once"
    for conversation in range(4):
        sent = [r["body"]["content"] for r in transport.requests
                if r["path"] == "/api/track/" and r["body"]["conversation_id"] == f"conv-{conversation}"]
        assert sent == [f"t{turn} 0" for turn in range(20)]


def _held(release: threading.Event) -> ScriptedTransport:
    """A transport whose every request waits for ``release`` (at most 5 s) before it is answered 200."""

    def held(record: dict[str, Any]) -> HttpResponse:
        release.wait(5)
        return OK

    return ScriptedTransport(default=held)


def test_the_queue_is_bounded_in_bytes_as_well_as_payloads() -> None:
    release = threading.Event()
    transport = _held(release)
    turns = [_pending(_span(f"conv-{n}", n + 1, messages=5, text="x" * 200)) for n in range(5)]
    byte_limit = sum(turn.size for turn in turns[:3]) + turns[3].size // 5  # three fit, a fourth does not
    client = _ingest_client(transport, settings=DeliverySettings(
        backoff_initial=0.001, max_retry_time=5.0, max_queue_size=10_000, max_queue_bytes=byte_limit))
    assert [client.submit(turn) for turn in turns] == [True, True, True, False, False]
    stats = client.stats
    assert stats["payloads_dropped_queue_full"] == turns[3].payload_count + turns[4].payload_count
    assert stats["bytes_queued"] == sum(turn.size for turn in turns[:3]) and stats["payloads_queued"] == 3
    assert not client.has_room(), "above 90 % of the byte limit there is no room, whatever the payload count"
    release.set()
    assert client.flush(5).complete
    assert client.has_room() and client.stats["bytes_queued"] == 0


def test_back_off_doubles_between_retries() -> None:
    stamps: list[float] = []

    def answer(status: int) -> Callable[[dict[str, Any]], HttpResponse]:
        def stamped(record: dict[str, Any]) -> HttpResponse:
            stamps.append(time.monotonic())
            return HttpResponse(status, b"{}", None)

        return stamped

    transport = ScriptedTransport(*[answer(503)] * 5, default=answer(200))
    client = _ingest_client(transport, settings=DeliverySettings(backoff_initial=0.02, backoff_max=10.0,
                                                                 max_retry_time=30.0))
    client.submit(_pending(_span("conv-b", 1)))
    assert client.flush(10).complete and len(stamps) == 6
    gaps = [later - earlier for earlier, later in zip(stamps, stamps[1:], strict=False)]
    # Retry n waits 0.02 s * 2**n, times a jitter of 0.5 to 1: at least 10, 20, 40, 80 and 160 ms.
    assert all(gap >= 0.01 * 2**n for n, gap in enumerate(gaps)), [round(gap, 3) for gap in gaps]


def test_shutdown_counts_what_it_could_not_deliver(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    transport = _held(release)
    client = _ingest_client(transport)
    turns = [_pending(_span("conv-s", n + 1)) for n in range(3)]
    for turn in turns:
        client.submit(turn)
    while not transport.requests:
        time.sleep(0.001)
    caplog.set_level(logging.ERROR, logger="agentsight")
    try:
        assert client.shutdown(timeout=0.2) is False
        assert client.stats["payloads_dropped_at_shutdown"] == sum(turn.payload_count for turn in turns) == 3
        assert any("undelivered" in record.getMessage() for record in caplog.records)
    finally:
        release.set()


def _lingering_client(transport: ScriptedTransport) -> DeliveryClient:
    """An ingest client whose threads would wait an hour for more turns: only what cuts a linger short sends."""
    client = _ingest_client(transport)
    client._sender.linger = 3600  # type: ignore[attr-defined]
    return client


def test_turns_sent_close_together_share_one_document_and_flush_does_not_wait_for_the_linger() -> None:
    transport = ScriptedTransport()
    client = _lingering_client(transport)
    for number in range(3):
        client.submit(_pending(_span(f"conv-l{number}", number + 1)))
        time.sleep(0.05)  # without a linger, a delivery thread would have sent the first turn alone by now
    assert client.flush(5).complete
    (request,) = transport.requests
    assert [block["conversation_id"] for block in request["body"]["conversations"]] == ["conv-l0", "conv-l1", "conv-l2"]
    assert client.stats["http_requests"] == 1 and client.stats["payloads_delivered"] == 3


def test_wait_and_shutdown_do_not_wait_for_the_linger() -> None:
    transport = ScriptedTransport()
    client = _lingering_client(transport)
    client.submit(_pending(_span("conv-w", 1)))
    assert client.wait(5) and len(transport.requests) == 1
    client.submit(_pending(_span("conv-w", 2)))
    assert client.shutdown(5) and len(transport.requests) == 2
    assert client.stats["payloads_delivered"] == 2


def test_a_submitter_waiting_for_the_outcome_is_not_kept_waiting_by_the_linger() -> None:
    transport = ScriptedTransport()
    client = _lingering_client(transport)
    outcomes: list[str] = []
    settled = threading.Event()
    turn = _pending(_span("conv-a", 1))
    client.submit(PendingTurn(turn.conversation_id, turn.payload_count, turn.size, turn.build,
                              lambda outcome: (outcomes.append(outcome), settled.set())))
    assert settled.wait(5), "the bridge's turn waited out the linger"
    assert outcomes == ["delivered"] and len(transport.requests) == 1
