"""``agentsight dev`` fuzzed: no request may get a 5xx (an escaped exception answers 500).

Every operation of its own ``/openapi.json`` gets generated requests, valid and invalid (schemathesis), and
every POST route random JSON, some shaped like ingest documents, some holding what JSON answers cannot carry
(``NaN``, infinities, lone surrogates) (hypothesis); all with a well-formed key. A refused body stores nothing,
and whatever was stored, every read answers strict JSON.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from agentsight.dev.app import create_app
from agentsight.dev.store import DevStore
from tests.conftest import API_KEY, stored_rows, strict_json

DIRECTORY = tempfile.TemporaryDirectory()
DB = Path(DIRECTORY.name) / "fuzz.db"
APP = create_app(DevStore(DB))
CLIENT = TestClient(APP, raise_server_exceptions=False)
HEADERS = {"Authorization": f"Api-Key {API_KEY}"}
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
schema.config.generation.update(modes=list(GenerationMode))


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=HEADERS, checks=[not_a_server_error])


OUT_OF_RANGE = "<1e400>"
"""A leaf written into the body as the number ``1e400`` (which parses as an infinity)."""
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.just(10**30) | st.floats() | st.text(max_size=20)
    | st.sampled_from(["\ud800", "x\udfff", OUT_OF_RANGE]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
SPAN_KEYS = ("span_id", "trace_id", "parent_span_id", "kind", "name", "started_at", "ended_at", "duration_ms",
             "status", "attributes", "events", "otel")
SPANS = st.fixed_dictionaries({}, optional={key: JSON | st.sampled_from(
    ["0123456789abcdef", "0af7651916cd43dd8448eb211c80319c", "2026-11-25T10:00:00Z", "turn", "llm", "button",
     "ok", "error"]) for key in SPAN_KEYS})
BLOCKS = st.fixed_dictionaries({"conversation_id": st.text(max_size=5) | JSON},
                               optional={"spans": st.lists(SPANS, max_size=3), "metadata": JSON})
POSTS = ["/api/conversations/", "/api/track/", "/api/action_logs/", "/api/buttons/", "/api/attachments/",
         "/api/ingest/"]


REST_FIELDS = st.sampled_from(["conversation", "conversation_id", "content", "sender", "metadata", "timestamp",
                               "mode", "attachments", "label", "value", "button_event", "action_name", "is_used",
                               "environment"])
BODIES = JSON | st.fixed_dictionaries({"conversations": st.lists(BLOCKS, max_size=3)}) | st.dictionaries(
    REST_FIELDS, JSON | st.just(1))


@given(path=st.sampled_from(POSTS), body=BODIES)
@example(path="/api/conversations/", body={"conversation_id": "\ud800"})
@example(path="/api/conversations/", body={"conversation_id": "c", "metadata": {"x": OUT_OF_RANGE}})
@example(path="/api/action_logs/", body={"conversation": 1, "action_name": "a", "duration_ms": OUT_OF_RANGE})
@example(path="/api/ingest/", body={"conversations": [{"conversation_id": "c", "spans": [{
    "span_id": "0123456789abcdef", "trace_id": "0af7651916cd43dd8448eb211c80319c", "kind": "odd", "name": "n",
    "started_at": "2026-11-25T10:00:00Z", "ended_at": "2026-11-25T10:00:00Z", "attributes": {"x": OUT_OF_RANGE}}]}]})
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
def test_random_json_never_gets_a_server_error(path: str, body: object) -> None:
    before = stored_rows(DB)
    sent = json.dumps(body).replace(f'"{OUT_OF_RANGE}"', "1e400")
    answer = CLIENT.post(path, content=sent, headers={**HEADERS, "Content-Type": "application/json"})
    assert answer.status_code < 500, answer.text
    assert isinstance(strict_json(answer.text), dict)
    if answer.status_code >= 400:
        assert stored_rows(DB) == before, f"refused with {answer.status_code}, yet something was stored"
    page = CLIENT.get("/api/conversations/", params={"page_size": 100}, headers=HEADERS)
    assert page.status_code == 200, page.text
    for conversation in strict_json(page.text)["results"][:3]:  # type: ignore[index]
        read = CLIENT.get(f"/api/conversations/{conversation['id']}/", headers=HEADERS)
        assert read.status_code == 200 and strict_json(read.text)
    stats = CLIENT.get("/api/stats/", headers=HEADERS)
    assert stats.status_code == 200 and strict_json(stats.text)
