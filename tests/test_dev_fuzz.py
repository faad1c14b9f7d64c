"""``agentsight dev`` fuzzed: no request may get a 5xx (an escaped exception answers 500).

Every operation of its own ``/openapi.json`` gets generated requests, valid and invalid (schemathesis), and
every POST route random JSON, some shaped like ingest documents (hypothesis); all with a well-formed key.
"""

from __future__ import annotations

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from agentsight.dev.app import create_app
from agentsight.dev.store import DevStore
from tests.conftest import API_KEY

APP = create_app(DevStore())
CLIENT = TestClient(APP, raise_server_exceptions=False)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
schema.config.generation.update(modes=list(GenerationMode))


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"Authorization": f"Api-Key {API_KEY}"}, checks=[not_a_server_error])


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
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
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
def test_random_json_never_gets_a_server_error(path: str, body: object) -> None:
    answer = CLIENT.post(path, json=body, headers={"Authorization": f"Api-Key {API_KEY}"})
    assert answer.status_code < 500, answer.text
    assert isinstance(answer.json(), dict)
