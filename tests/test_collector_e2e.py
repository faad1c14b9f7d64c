"""The shipped Collector configs end to end on loopback, with a real Collector.

Apps (several processes: the seed flow, and an LLM flow with the real ``openai`` client against the fake
provider) export OTLP to an agent Collector (``agent.yaml``), which forwards to a gateway Collector
(``gateway.yaml``), which load-balances by trace ID over two ``agentsight bridge`` processes (TLS with a
private CA, a bearer token), which deliver to one local AgentSight API, each with an API key of its own (so
the API's record tells which bridge delivered what); the gateway's redacted copy goes to a recording OTLP
backend. The Collector is built by ``make collector`` (``tests/collector_binary.py``: skips loudly without Go).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agentsight.dev import DevServer
from agentsight.dev.local_llm import FakeLLMServer
from agentsight.spans import semconv as sc
from tests.collector_app import CUSTOMER_IP, SEED_TOKENS, answer, question
from tests.collector_binary import collector_binary
from tests.collector_stack import AppRun, Pipeline, RecordingBackend, run_apps, wait_until

pytestmark = pytest.mark.collector

REDACTED = {sc.MESSAGE_CONTENT, sc.ATTACHMENTS_FILES, sc.ACTION_RESPONSE, sc.GEN_AI_INPUT_MESSAGES,
            sc.GEN_AI_OUTPUT_MESSAGES, sc.GEN_AI_SYSTEM_INSTRUCTIONS, sc.GEN_AI_TOOL_DEFINITIONS,
            sc.CUSTOMER_IP_ADDRESS}
"""What the gateway deletes from the backend's copy (collector-config/README.md)."""
MODEL_REPLY = "Hello from the fake model"
LLM_TOKENS = {"completion_tokens": 7, "total_tokens": 18}  # the fake provider's chat usage
SEED_TOTALS = {"completion_tokens": SEED_TOKENS[1], "total_tokens": SEED_TOKENS[2]}
LB = "load_balancing/agentsight"
DELIVERY_TIMEOUT = 60.0
OUTAGE_SECONDS = 30.0
TRACE_ID = re.compile(r'"trace_id": "([0-9a-f]{32})"')


@pytest.fixture(scope="module")
def otelcol() -> Path:
    """The Collector binary (built once per machine)."""
    return collector_binary()


@pytest.fixture
def start_pipeline(otelcol: Path, api: DevServer, tmp_path: Path) -> Iterator[Callable[..., Pipeline]]:
    """Start pipelines delivering to ``api``; every process of each is ended after the test."""
    made: list[Pipeline] = []

    def start(**options: object) -> Pipeline:
        pipeline = Pipeline(otelcol, tmp_path, api.url, **options)  # type: ignore[arg-type]
        made.append(pipeline)
        return pipeline.start()

    yield start
    for pipeline in made:
        pipeline.stop()


def apps(prefix: str, turns: int = 20) -> list[AppRun]:
    """Four app processes: two of the seed flow, two of the LLM flow."""
    return [AppRun(flow, f"{prefix}-{flow}{n}", turns) for flow in ("seed", "llm") for n in (1, 2)]


def delivered(api: DevServer) -> dict[str, dict]:
    """Stored conversations with their messages and tokens, by conversation id."""
    found = {}
    for conversation in api.store.all_conversations():
        detail = api.store.get_conversation(conversation["id"])
        assert detail is not None
        found[conversation["conversation_id"]] = detail
    return found


def complete(api: DevServer, conversation_ids: set[str]) -> bool:
    """Whether every conversation is stored with both its messages and its tokens.

    On the REST wire a turn's ``token_usage`` action is its last request, so messages alone can be stored
    before the tokens arrive.
    """
    stored = delivered(api)
    return all(len(stored.get(cid, {}).get("messages", ())) >= 2
               and stored[cid].get("tokens", {}).get("total_tokens", 0) > 0 for cid in conversation_ids)


def assert_delivered_exactly_once(api: DevServer, pipeline: Pipeline, traces: dict[str, str]) -> None:
    """Every conversation stored once with its messages and tokens, all of its trace from one bridge."""
    stored = delivered(api)
    assert set(stored) == set(traces), "exactly the conversations the apps served"
    for cid, conversation in stored.items():
        llm = "-llm" in cid
        messages = [(m["sender"], m["content"]) for m in conversation["messages"]]
        assert messages == [("end_user", question(cid)), ("agent", MODEL_REPLY if llm else answer(cid))], cid
        tokens = {key: conversation["tokens"][key] for key in LLM_TOKENS}
        assert tokens == (LLM_TOKENS if llm else SEED_TOTALS), f"{cid}: its model call's tokens, once"
    bridges_of: dict[str, set[int]] = {}
    for request in api.accepted():
        text = json.dumps(request.body)
        bridge = pipeline.bridge_of(request.headers)
        for cid in traces:
            if f'"{cid}"' in text:
                bridges_of.setdefault(cid, set()).add(bridge)
        for trace_id in TRACE_ID.findall(text):
            bridges_of.setdefault(trace_id, set()).add(bridge)
    split = {key: sorted(found) for key, found in bridges_of.items() if len(found) > 1}
    assert not split, f"conversations or traces delivered by more than one bridge: {split}"
    used = {next(iter(bridges_of[cid])) for cid in traces}
    assert used == {0, 1}, "the traces spread over both bridges"


def assert_backend_copy_redacted(backend: RecordingBackend, traces: dict[str, str]) -> None:
    """The backend has every span of every trace, without message content or the customer IP."""
    wanted = set(traces.values())

    def names_by_trace() -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for span in backend.received():
            found.setdefault(span.trace_id.hex(), set()).add(span.name)
        return found

    def whole() -> bool:
        found = names_by_trace()
        return all({"POST /chat", sc.CONVERSATION_SPAN} <= found.get(trace_id, set()) and (
            "-llm" not in cid or "chat gpt-4o-mini" in found[trace_id]) for cid, trace_id in traces.items())

    wait_until(whole, DELIVERY_TIMEOUT, "the backend's copy of every trace")
    secrets = (CUSTOMER_IP, MODEL_REPLY, "question of", "answer of")
    for span in (span for span in backend.received() if span.trace_id.hex() in wanted):
        for where, attributes in [("span", span.attributes), *(("event", e.attributes) for e in span.events)]:
            assert not REDACTED & set(attributes), f"{span.name} {where}: {sorted(REDACTED & set(attributes))}"
            leaked = [key for key, value in attributes.items() if any(s in str(value) for s in secrets)]
            assert not leaked, f"{span.name} {where} attributes {leaked} carry content or the customer IP"
        assert span.resource_attributes["service.name"] in ("app-seed", "app-llm")
        if span.name == "POST /chat":
            assert span.attributes == {"http.route": "/chat", "app.tenant": "acme"}, "the app's own span is whole"
        elif span.name == "chat gpt-4o-mini":
            assert span.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 11
            assert span.attributes[sc.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
        elif span.attributes.get("agentsight.conversation.is_used"):  # a turn: its messages keep their sender
            assert span.attributes[sc.CONVERSATION_ID] in traces
            assert span.attributes["agentsight.conversation.customer_id"] == "user-7"
            senders = [e.attributes.get(sc.MESSAGE_SENDER) for e in span.events if e.name == sc.MESSAGE_EVENT]
            assert senders == ["end_user", "agent"], "message events kept, their content gone"
            usage = [e for e in span.events if e.name == "agentsight.token_usage"]
            assert usage and usage[0].attributes["agentsight.usage.total_tokens"] in (18, SEED_TOKENS[2])


@pytest.mark.parametrize("wire", ["ingest", "rest"])
def test_every_conversation_delivered_once_and_the_backend_copy_redacted(
    start_pipeline: Callable[..., Pipeline], api: DevServer, fake: FakeLLMServer, tmp_path: Path, wire: str
) -> None:
    pipeline = start_pipeline(wire=wire)
    traces = run_apps(apps(wire), pipeline.otlp_port, fake.openai_base_url, tmp_path)
    wait_until(lambda: complete(api, set(traces)), DELIVERY_TIMEOUT, "every conversation at the API")
    assert_backend_copy_redacted(pipeline.backend, traces)  # type: ignore[arg-type]
    assert_delivered_exactly_once(api, pipeline, traces)
    assert delivered(api)[next(iter(traces))]["messages"][0]["content"], "the bridges get the content"


def test_a_bridge_stopped_for_30_s_then_restarted_loses_nothing(
    start_pipeline: Callable[..., Pipeline], api: DevServer, fake: FakeLLMServer, tmp_path: Path
) -> None:
    pipeline = start_pipeline()
    assert pipeline.gateway is not None
    stopped = pipeline.replicas[1]
    assert stopped.stop() == 0
    down_since = time.monotonic()
    traces = run_apps(apps("outage", 15), pipeline.otlp_port, fake.openai_base_url, tmp_path)
    wait_until(lambda: any(pipeline.bridge_of(r.headers) == 0 for r in api.accepted("/api/ingest/")),
               DELIVERY_TIMEOUT, "bridge 0 delivering its share")
    wait_until(lambda: time.monotonic() - down_since >= OUTAGE_SECONDS, OUTAGE_SECONDS + 1, "the outage's end")
    waiting = set(traces) - set(delivered(api))
    assert waiting, "bridge 1's traces wait for it"
    assert pipeline.gateway.metric("otelcol_exporter_queue_size", exporter=LB) > 0, "held in the gateway's queue"
    stopped.start()
    wait_until(lambda: complete(api, set(traces)), 120, f"the {len(waiting)} waiting conversations after the restart")
    assert_delivered_exactly_once(api, pipeline, traces)


def test_a_gateway_restart_with_data_queued_on_disk_loses_nothing(
    start_pipeline: Callable[..., Pipeline], api: DevServer, fake: FakeLLMServer, tmp_path: Path
) -> None:
    pipeline = start_pipeline()
    gateway = pipeline.gateway
    assert gateway is not None and pipeline.backend is not None
    for replica in pipeline.replicas:
        assert replica.stop() == 0
    traces = run_apps(apps("restart", 10), pipeline.otlp_port, fake.openai_base_url, tmp_path)
    received = set(traces.values())
    wait_until(lambda: received <= {span.trace_id.hex() for span in pipeline.backend.received()}, DELIVERY_TIMEOUT,
               "the gateway receiving every trace (its backend copy)")
    wait_until(lambda: gateway.metric("otelcol_exporter_queue_size", exporter=LB) > 0, DELIVERY_TIMEOUT,
               "the batches in the persistent queue")
    assert gateway.stop() == 0
    gateway.start()
    wait_until(lambda: gateway.metric("otelcol_exporter_queue_size", exporter=LB) > 0, DELIVERY_TIMEOUT,
               "the queue read back from disk")
    assert not api.accepted("/api/ingest/"), "nothing delivered while the bridges were down"
    for replica in pipeline.replicas:
        replica.start()
    wait_until(lambda: complete(api, set(traces)), 120, "every conversation after the gateway's restart")
    assert_delivered_exactly_once(api, pipeline, traces)


def test_a_wrong_token_is_refused_and_counted_in_the_gateways_metrics(
    start_pipeline: Callable[..., Pipeline], api: DevServer, fake: FakeLLMServer, tmp_path: Path
) -> None:
    pipeline = start_pipeline(gateway_token="not-the-bridges-token")
    assert pipeline.gateway is not None and pipeline.backend is not None
    traces = run_apps([AppRun("llm", "wrong-token", 5)], pipeline.otlp_port, fake.openai_base_url, tmp_path)
    wait_until(lambda: pipeline.gateway.metric("otelcol_exporter_send_failed_spans", exporter=LB) > 0,  # type: ignore[union-attr]
               DELIVERY_TIMEOUT, f"{LB} failures in the gateway's metrics")
    wait_until(lambda: set(traces.values()) <= {span.trace_id.hex() for span in pipeline.backend.received()},  # type: ignore[union-attr]
               DELIVERY_TIMEOUT, "the backend pipeline, not affected, receiving every trace")
    assert "code = Unauthenticated desc = missing or wrong bearer token" in pipeline.gateway.log.read_text(), (
        "the bridges refused the token (not the TLS handshake or anything else)")
    assert not api.store.all_conversations(), "nothing delivered with a wrong token"
    assert not [r for r in api.requests if r.path == "/api/ingest/"]
