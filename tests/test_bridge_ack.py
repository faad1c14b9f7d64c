"""The bridge acknowledges only what is delivered: waits, time-outs, repeats, large requests, model calls.

Counted in what the local AgentSight (``agentsight dev``) stored, on both wires.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

import tests.test_bridge
from agentsight.bridge.acks import Ledger, Receipt
from agentsight.bridge.core import DEFAULT_ACK_TIMEOUT_SECONDS, BridgeCore
from agentsight.bridge.otlp_grpc import DEADLINE_MARGIN_SECONDS
from agentsight.bridge.server import DEFAULT_GRPC_WORKERS, DEFAULT_MAX_QUEUE_SIZE, Bridge, bridge_settings
from agentsight.config import DeliverySettings, Settings
from agentsight.dev import CannedResponse, DevServer
from agentsight.dev.store import ConversationFilter
from agentsight.spans import semconv as sc
from tests.conftest import API_KEY, QUICK_RETRIES, bodies
from tests.test_bridge import grpc_export, post

WIRES = ["rest", "ingest"]
start_bridge = tests.test_bridge.start_bridge  # the fixture, shared


# Requests ----------------------------------------------------------------------------------------


def _value(value: Any) -> AnyValue:
    return AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)


def _attributes(**attributes: Any) -> list[KeyValue]:
    return [KeyValue(key=key, value=_value(value)) for key, value in attributes.items()]


def _ids(name: str) -> tuple[bytes, bytes]:
    digest = hashlib.sha256(name.encode()).digest()
    return digest[:16], digest[16:24]


def turn_span(conversation_id: str, messages: int = 2, seed_items: bool = False, start: int = 0) -> Span:
    """A turn of ``conversation_id`` (ids derived from it) with ``messages`` messages ``<id>-<n>``.

    ``seed_items`` adds the seed flow's button and token usage (3 ingest payloads, 5 REST ones, a turn).
    """
    trace_id, span_id = _ids(conversation_id)
    now = start or time.time_ns()
    events = [Span.Event(name=sc.MESSAGE_EVENT, time_unix_nano=now + n, attributes=_attributes(**{
        sc.MESSAGE_CONTENT: f"{conversation_id}-{n}",
        sc.MESSAGE_SENDER: sc.SENDER_END_USER if n % 2 == 0 else sc.SENDER_AGENT})) for n in range(messages)]
    if seed_items:
        events.append(Span.Event(name=sc.BUTTON_EVENT, time_unix_nano=now + messages, attributes=_attributes(**{
            sc.BUTTON_EVENT_NAME: "feedback", sc.BUTTON_LABEL: "Helpful", sc.BUTTON_VALUE: "yes"})))
        usage = {sc.USAGE_PROMPT_TOKENS: 10, sc.USAGE_COMPLETION_TOKENS: 5, sc.USAGE_TOTAL_TOKENS: 15}
        events.append(Span.Event(name=sc.TOKEN_USAGE_EVENT, time_unix_nano=now + messages + 1,
                                 attributes=_attributes(**usage)))
    return Span(name=sc.CONVERSATION_SPAN, trace_id=trace_id, span_id=span_id, start_time_unix_nano=now,
                end_time_unix_nano=now + 1_000_000_000, attributes=_attributes(**{
                    sc.CONVERSATION_ID: conversation_id, sc.IS_USED: "true"}), events=events)


def model_call_span(trace_of: str, name: str, tokens: int, start: int) -> Span:
    """A model call recorded in another process, in the trace of the turn of ``trace_of``."""
    trace_id, _ = _ids(trace_of)
    return Span(name="chat m", trace_id=trace_id, span_id=_ids(name)[1], start_time_unix_nano=start,
                end_time_unix_nano=start + 1000, attributes=_attributes(**{
                    sc.GEN_AI_OPERATION_NAME: "chat", sc.GEN_AI_PROVIDER_NAME: "openai", sc.GEN_AI_REQUEST_MODEL: "m",
                    sc.GEN_AI_USAGE_INPUT_TOKENS: tokens, sc.GEN_AI_USAGE_OUTPUT_TOKENS: 1}))


def request_of(*spans: Span) -> ExportTraceServiceRequest:
    """One export request holding ``spans``."""
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=list(spans))])])


def turns_request(prefix: str, turns: int, messages: int = 2, seed_items: bool = False) -> ExportTraceServiceRequest:
    """A request of ``turns`` turns, conversations ``<prefix>-<n>``."""
    return request_of(*(turn_span(f"{prefix}-{n}", messages, seed_items) for n in range(turns)))


def expected_messages(request: ExportTraceServiceRequest) -> Counter[tuple[str, str]]:
    """Every ``(conversation_id, content)`` the request's turns hold."""
    found: Counter[tuple[str, str]] = Counter()
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if span.name == sc.CONVERSATION_SPAN:
                    conversation = span.attributes[0].value.string_value
                    found.update((conversation, event.attributes[0].value.string_value) for event in span.events
                                 if event.name == sc.MESSAGE_EVENT)
    return found


def stored(api: DevServer) -> Counter[tuple[str, str]]:
    """Every ``(conversation_id, content)`` message the local AgentSight stored (one query, for thousands)."""
    _, conversations = api.store.list_conversations(ConversationFilter(), 0, 1 << 30)
    return Counter((conversation["conversation_id"], message["content"]) for conversation in conversations
                   for message in conversation["messages"])


def sent_items(api: DevServer, wire: str) -> list[str]:
    """What the API received: REST messages, or ingest spans (whatever it then stored)."""
    if wire == "rest":
        return [body["content"] for body in bodies(api, "/api/track/")]
    return [span["kind"] for document in bodies(api, "/api/ingest/") for block in document["conversations"]
            for span in block["spans"]]


def on(wire: str, api: DevServer, **delivery: Any) -> Settings:
    """Settings delivering to ``api`` on ``wire`` with quick retries (``delivery`` overrides)."""
    settings = DeliverySettings(**{**QUICK_RETRIES.__dict__, **delivery})
    return Settings.resolve(api_key=API_KEY, endpoint=api.url, delivery=settings, protocol=wire)


# Acknowledgement waits for delivery ----------------------------------------------------------------


@pytest.mark.parametrize("wire", WIRES)
def test_a_request_is_answered_once_its_conversations_are_stored(
    start_bridge: Callable[..., Bridge], api: DevServer, wire: str
) -> None:
    api.latency = 0.3
    bridge = start_bridge(settings=on(wire, api), grace=0.2)
    request = turns_request("conv-wait", 3)
    started = time.monotonic()
    status, _, _ = post(bridge.http_port, request.SerializeToString())
    waited = time.monotonic() - started
    assert status == 200
    assert stored(api) == expected_messages(request), "stored before the answer"
    assert waited >= 0.2 + 0.3, f"answered after {waited:.2f} s: the grace and a round trip to the API at least"
    assert isinstance(grpc_export(bridge, turns_request("conv-wait-grpc", 1)), ExportTraceServiceResponse)
    assert sum(stored(api).values()) == 8


def test_not_delivered_in_time_is_answered_retry_and_the_retry_is_delivered_once(
    start_bridge: Callable[..., Bridge], api: DevServer
) -> None:
    api.latency = 1.0
    bridge = start_bridge(settings=on("rest", api), ack_timeout=0.3)
    request = turns_request("conv-slow", 2)
    status, headers, _ = post(bridge.http_port, request.SerializeToString())
    assert (status, headers["Retry-After"]) == (503, "1"), "not delivered within the acknowledgement time-out"
    error = grpc_export(bridge, request)
    assert error.code() == grpc.StatusCode.UNAVAILABLE, "the same over gRPC, for the same spans still on their way"
    assert RetryInfo.FromString(dict(error.trailing_metadata())["google.rpc.retryinfo-bin"]).retry_delay.seconds == 1
    api.latency = 0.0
    deadline = time.monotonic() + 10
    while post(bridge.http_port, request.SerializeToString())[0] != 200:  # the sender retries
        assert time.monotonic() < deadline, "the retry was never acknowledged"
    assert stored(api) == expected_messages(request), "stored once, whatever the retries"
    assert bridge.core.stats()["spans_repeated"] >= 2


def test_the_callers_grpc_deadline_is_honoured(start_bridge: Callable[..., Bridge], api: DevServer) -> None:
    api.latency = 0.5
    bridge = start_bridge(settings=on("rest", api), ack_timeout=5.0)
    with grpc.insecure_channel(f"127.0.0.1:{bridge.grpc_port}") as channel:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as raised:
            TraceServiceStub(channel).Export(turns_request("conv-deadline", 1), timeout=0.8)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE, "answered before the caller gave up, retryable"
    assert time.monotonic() - started < 0.8


def test_a_final_refusal_is_acknowledged_as_rejected_spans_not_retried_forever(
    start_bridge: Callable[..., Bridge], api: DevServer
) -> None:
    bridge = start_bridge(settings=on("ingest", api))
    api.inject(CannedResponse(400, b'{"detail": "refused"}', path="/api/ingest/"))
    status, _, body = post(bridge.http_port, turns_request("conv-refused", 1).SerializeToString())
    answer = ExportTraceServiceResponse.FromString(body)
    assert status == 200 and answer.partial_success.rejected_spans == 1
    assert "AgentSight refused" in answer.partial_success.error_message


# Repeats -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("wire", WIRES)
def test_the_same_request_posted_three_times_is_stored_once(
    start_bridge: Callable[..., Bridge], api: DevServer, wire: str
) -> None:
    bridge = start_bridge(settings=on(wire, api))
    request = turns_request("conv-repeat", 5)
    raw = request.SerializeToString()
    assert [post(bridge.http_port, raw)[0] for _ in range(3)] == [200, 200, 200]
    assert isinstance(grpc_export(bridge, request), ExportTraceServiceResponse)
    assert stored(api) == expected_messages(request)
    assert len(sent_items(api, wire)) == (10 if wire == "rest" else 5), "the API received each item once"
    assert bridge.core.stats()["spans_repeated"] == 15


@pytest.mark.parametrize("wire", WIRES)
def test_copies_in_flight_together_are_delivered_once(
    start_bridge: Callable[..., Bridge], api: DevServer, wire: str
) -> None:
    api.latency = 0.2
    bridge = start_bridge(settings=on(wire, api), grace=0.1)
    request = turns_request("conv-together", 4)
    raw = request.SerializeToString()
    with ThreadPoolExecutor(3) as pool:
        statuses = list(pool.map(lambda _: post(bridge.http_port, raw)[0], range(3)))
    assert statuses == [200, 200, 200]
    assert stored(api) == expected_messages(request)
    assert len(sent_items(api, wire)) == (8 if wire == "rest" else 4), "the API received each item once"


def test_the_ledger_forgets_settled_spans_by_age_and_count() -> None:
    now = [0.0]
    ledger = Ledger(window=10, max_spans=3, clock=lambda: now[0])
    tickets = [ledger.track(Receipt(), bytes([n]) * 24, b"t", turn=True) for n in range(5)]
    assert ledger.known(b"\x00" * 24)
    for ticket in tickets:
        assert ticket is not None
        ledger.settle(ticket, "delivered")
    assert ledger.stats()["spans_remembered"] == 3 and not ledger.known(b"\x00" * 24), "the oldest went first"
    assert ledger.known(b"\x04" * 24)
    now[0] = 11
    assert not ledger.known(b"\x04" * 24), "forgotten once the window passed"
    retried = ledger.track(Receipt(), b"r" * 24, b"t", turn=True)
    assert retried is not None
    ledger.settle(retried, "expired")
    assert not ledger.known(b"r" * 24), "a span to retry is taken afresh when it comes again"


# Large requests ----------------------------------------------------------------------------------


def test_3000_seed_turns_in_one_request_are_accepted_and_delivered(
    start_bridge: Callable[..., Bridge], api: DevServer
) -> None:
    bridge = start_bridge(settings=on("ingest", api, max_concurrency=None), ack_timeout=30)
    request = turns_request("conv-big", 3000, seed_items=True)  # 9,000 ingest payloads: the default queue's 90 %
    status, _, body = post(bridge.http_port, request.SerializeToString())
    assert status == 200 and not ExportTraceServiceResponse.FromString(body).HasField("partial_success")
    assert len(api.conversations) == 3000
    assert stored(api) == expected_messages(request)


def test_a_request_larger_than_the_delivery_queue_is_taken_when_the_bridge_is_idle(
    start_bridge: Callable[..., Bridge], api: DevServer
) -> None:
    bridge = start_bridge(settings=on("rest", api, max_queue_size=40))
    request = turns_request("conv-larger", 100, messages=1)  # 200 payloads for a queue of 40
    assert post(bridge.http_port, request.SerializeToString())[0] == 200, "fed to delivery piece by piece"
    assert stored(api) == expected_messages(request)
    assert bridge.core.stats()["payloads_dropped_queue_full"] == 0


# Model calls and the grace period ----------------------------------------------------------------


def test_a_model_call_is_acknowledged_with_the_turn_it_joins(
    start_bridge: Callable[..., Bridge], api: DevServer
) -> None:
    api.latency = 0.1
    bridge = start_bridge(settings=on("rest", api), grace=1.0)
    turn = turn_span("conv-call", 1)
    call = model_call_span("conv-call", "call-1", 40, turn.start_time_unix_nano + 10)
    answered: dict[str, float] = {}

    def send(name: str, request: ExportTraceServiceRequest) -> None:
        assert post(bridge.http_port, request.SerializeToString())[0] == 200
        answered[name] = time.monotonic()

    call_sender = threading.Thread(target=send, args=("call", request_of(call)))
    call_sender.start()
    time.sleep(0.3)  # the call waits for its turn, which comes in another request within the grace period
    send("turn", request_of(turn))
    call_sender.join(10)
    assert answered["call"] >= answered["turn"] - 0.1, "the call's request waited for its turn's delivery"
    (conversation,) = api.store.all_conversations()
    detail = api.store.get_conversation(conversation["id"])
    assert detail is not None and detail["tokens"]["prompt_tokens"] == 40, detail


def test_a_model_call_without_its_turn_is_acknowledged_after_the_grace_period(
    start_bridge: Callable[..., Bridge], api: DevServer
) -> None:
    bridge = start_bridge(settings=on("rest", api), grace=0.5)
    started = time.monotonic()
    assert post(bridge.http_port, request_of(model_call_span("conv-none", "lone", 5, 1)).SerializeToString())[0] == 200
    assert 0.5 <= time.monotonic() - started < 2
    assert bridge.core.stats()["model_calls_waiting"] == 1, "still held for a turn that may come"


def test_stopping_sends_turns_still_in_their_grace_at_once(start_bridge: Callable[..., Bridge], api: DevServer) -> None:
    bridge = start_bridge(settings=on("rest", api), grace=5.0, ack_timeout=8.0)
    request = turns_request("conv-stop", 2)
    answers: list[int] = []
    sender = threading.Thread(target=lambda: answers.append(post(bridge.http_port, request.SerializeToString())[0]))
    started = time.monotonic()
    sender.start()
    time.sleep(0.3)  # the turns wait their grace period
    bridge.stop(timeout=10)
    sender.join(10)
    assert answers == [200] and time.monotonic() - started < 3, "answered once delivered, without the grace"
    assert stored(api) == expected_messages(request)


def test_grace_must_be_shorter_than_the_acknowledgement_time_out() -> None:
    with pytest.raises(ValueError, match="grace period"):
        BridgeCore(Settings.resolve(api_key=""), grace=5, ack_timeout=5)


# The Collector configuration respects these bounds -------------------------------------------------


def _seconds(duration: str) -> float:
    """A Collector duration (``200ms``, ``20s``, ``1m``) in seconds."""
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", duration).groups()  # type: ignore[union-attr]
    return float(number) * {"ms": 0.001, "s": 1, "m": 60}[unit]


def test_a_bridge_has_the_room_of_a_server_unless_the_environment_sets_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTSIGHT_MAX_QUEUE_SIZE", raising=False)
    assert DEFAULT_MAX_QUEUE_SIZE > DeliverySettings().max_queue_size, "more than an app's"
    assert bridge_settings().delivery.max_queue_size == DEFAULT_MAX_QUEUE_SIZE
    assert Bridge(grpc_port=None, http_port=None).settings.delivery.max_queue_size == DEFAULT_MAX_QUEUE_SIZE
    monkeypatch.setenv("AGENTSIGHT_MAX_QUEUE_SIZE", "500")
    assert bridge_settings("rest").delivery.max_queue_size == 500
    assert bridge_settings("rest").protocol == "rest"


def test_the_gateway_waits_longer_than_a_bridge_holds_a_request_and_batches_fit_its_room() -> None:
    gateway = yaml.safe_load((Path(__file__).parent.parent / "collector-config" / "gateway.yaml").read_text())
    balancer = gateway["exporters"]["load_balancing/agentsight"]
    per_bridge = _seconds(balancer["protocol"]["otlp"]["timeout"])
    assert per_bridge >= DEFAULT_ACK_TIMEOUT_SECONDS + DEADLINE_MARGIN_SECONDS + 5, "answered before it gives up"
    assert _seconds(balancer["timeout"]) >= per_bridge
    batch = gateway["processors"]["batch/agentsight"]["send_batch_max_size"]
    seed_turn = 5  # REST payloads of the seed flow's turn; 3 on the ingest wire
    assert batch * seed_turn <= DEFAULT_MAX_QUEUE_SIZE * 0.9, "a batch fits a bridge's delivery room"
    consumers = int(re.fullmatch(r"\$\{env:OTELCOL_BRIDGE_CONSUMERS:-(\d+)\}",
                                 balancer["sending_queue"]["num_consumers"])[1])  # type: ignore[index]
    assert consumers <= DEFAULT_GRPC_WORKERS, "one bridge serves them all at once"
