"""GET /api/stats/ and /api/stats/integration/: data tracked through the real SDK (both wires) into DevServer."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any

import httpx
import openai
import pytest
from genai_prices import Usage, calc_price

import agentsight as ags
from agentsight import ConversationTracker
from agentsight.dev import DevServer
from agentsight.dev.local_llm import CHAT_CACHED_TOKENS, CHAT_USAGE, FakeLLMServer
from agentsight.instrumentation.openai import OpenAIInstrumentor
from tests.conftest import API_KEY, instrumented

AUTH = {"Authorization": f"Api-Key {API_KEY}"}
MESSAGES = [{"role": "user", "content": "Where is my order?"}]
LONG_ANSWER = "Your order left our warehouse this morning. " * 10


@pytest.fixture(params=["ingest", "rest"])
def wire(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both wires: trackers made in the test speak ``AGENTSIGHT_PROTOCOL``."""
    monkeypatch.setenv("AGENTSIGHT_PROTOCOL", request.param)
    return str(request.param)


@pytest.fixture
def client(fake: FakeLLMServer) -> Iterator[openai.OpenAI]:
    """The real openai client, instrumented, answering from the fake provider."""
    with instrumented(OpenAIInstrumentor):
        yield openai.OpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0)


def utc_today() -> date:
    return datetime.now(timezone.utc).date()


def get(api: DevServer, path: str = "/api/stats/", **params: str) -> dict[str, Any]:
    answer = httpx.get(f"{api.url}{path}", params=params, headers=AUTH)
    assert answer.status_code == 200, answer.text
    return answer.json()


def check(api: DevServer, metric: str, **params: str) -> dict[str, Any]:
    (found,) = [entry for entry in get(api, "/api/stats/integration/", **params)["metrics"]
                if entry["metric"] == metric]
    return found


def track_app(tracker: ConversationTracker, client: openai.OpenAI) -> None:
    """Two visits (one engaged), an engaged conversation without a visit, a development one."""
    tracker.initialize_conversation("v1", customer_id="u1", customer_ip_address="8.8.8.8", device="mobile",
                                    language="en", source="widget", metadata={"page_url": "/pricing", "plan": "pro"})
    tracker.initialize_conversation("v2", customer_id="u2", customer_ip_address="81.2.69.142", device="desktop",
                                    language="fr", source="widget", metadata={"page_url": "/home", "plan": "free"})
    tracker.get_or_create_conversation("v1", customer_id="u1")
    tracker.track_question("Where is my order?")
    time.sleep(0.2)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    client.chat.completions.create(model="stand-in-model", messages=MESSAGES)
    started = datetime.now(timezone.utc)
    tracker.track_action("lookup_order", started_at=started, ended_at=started + timedelta(milliseconds=120),
                         duration_ms=120)
    tracker.track_action("fallback_to_human", started_at=started, ended_at=started + timedelta(milliseconds=40),
                         duration_ms=40)
    tracker.track_answer("It ships today.")
    tracker.send_tracked_data()
    tracker.get_or_create_conversation("c3", customer_id="u1", customer_ip_address="10.0.0.7")
    tracker.track_question("Hi")
    tracker.track_answer("Hello!")
    tracker.send_tracked_data()
    tracker.get_or_create_conversation("qa-1", environment="development", customer_id="tester")
    tracker.track_question("test")
    tracker.send_tracked_data()
    assert tracker.flush(10)["delivered"]


def test_each_metric_from_the_sdk_on_both_wires(wire: str, api: DevServer, client: openai.OpenAI,
                                                make_tracker: Callable[..., ConversationTracker]) -> None:
    track_app(make_tracker(), client)
    stats = get(api)
    assert stats["filters"] == {"environment": "production", "from": None, "to": None}, "production by default"
    assert stats["totals"] == {"messages": 4, "questions": 2, "answers": 2, "conversations": 3,
                               "individual_users": 2, "conversations_without_customer": 0}
    assert stats["response_time"]["count"] == 2 and stats["response_time"]["suspect_turns"] == 0
    assert stats["response_time"]["average_ms"] >= 100, "the 200 ms turn and a fast one"
    assert stats["conversation_duration"]["count"] == 2
    assert sum(row["messages"] for row in stats["peak_hours"]) == 4 and len(stats["peak_hours"]) == 24
    assert stats["daily"] == [{"date": utc_today().isoformat(), "messages": 4, "conversations": 3}]
    tools = {tool["name"]: tool for tool in stats["tools"]}
    assert set(tools) == {"lookup_order", "fallback_to_human"}, "model calls and token sums are not tools"
    assert tools["lookup_order"]["calls"] == 1 and tools["lookup_order"]["average_ms"] == pytest.approx(120, abs=1)
    assert stats["escalation"] == {"action_names": ["fallback_to_human", "open_ticket", "ticket", "contact_human"],
                                   "conversations": 1, "rate": 50.0}
    models = {entry["model"]: entry for entry in stats["token_cost"]["models"]}
    known, unknown = models["gpt-4o-mini-2024-07-18"], models["stand-in-model-2024-07-18"]
    assert (known["calls"], known["input_tokens"], known["output_tokens"], known["cache_read_tokens"]) == (
        1, CHAT_USAGE["prompt_tokens"], CHAT_USAGE["completion_tokens"], CHAT_CACHED_TOKENS)
    price = calc_price(Usage(input_tokens=CHAT_USAGE["prompt_tokens"], cache_read_tokens=CHAT_CACHED_TOKENS,
                             output_tokens=CHAT_USAGE["completion_tokens"]), model_ref="gpt-4o-mini-2024-07-18",
                       provider_id="openai")
    assert known["priced"] and known["cost_usd"] == pytest.approx(float(price.total_price))
    assert not unknown["priced"] and unknown["cost_usd"] is None, "unpriced, never free"
    assert stats["token_cost"]["unpriced_models"] == ["stand-in-model-2024-07-18"]
    assert stats["token_cost"]["total_cost_usd"] == pytest.approx(float(price.total_price))
    assert stats["world_map"]["countries"] == [{"country": "GB", "name": "United Kingdom", "conversations": 1},
                                               {"country": "US", "name": "United States", "conversations": 1}]
    assert (stats["world_map"]["unlocated"], stats["world_map"]["without_ip"]) == (1, 0), "a private IP has none"
    assert stats["devices"] == [{"value": "desktop", "conversations": 1}, {"value": "mobile", "conversations": 1}]
    assert [row["value"] for row in stats["languages"]] == ["en", "fr"]
    assert stats["sources"] == [{"value": "widget", "conversations": 2}]
    assert stats["interaction"] | {"definition": ""} == {"rate": 50.0, "engaged": 1, "initialized": 2,
                                                         "abandoned": 1, "engaged_without_visit": 1,
                                                         "definition": "", "hint": None}
    assert stats["interaction_rate"] == 50.0 and stats["initialized"] == 2 and stats["used"] == 2
    assert stats["feedback"]["total"] == 0 and "feedbacks.create_for_conversation" in stats["feedback"]["hint"]
    assert [(row["value"], row["visits"], row["engaged"], row["rate"]) for row in stats["pages"]] == [
        ("/home", 1, 0, 0.0), ("/pricing", 1, 1, 100.0)]
    assert stats["segments"]["key"] == "plan"
    assert {row["value"]: row["rate"] for row in stats["segments"]["rows"]} == {"pro": 100.0, "free": 0.0}
    assert get(api, breakdown="page_url")["breakdown"]["rows"] == stats["pages"]
    assert sum(row["conversations"] for row in stats["by_hour"]) == 3
    assert [row["value"] for row in stats["by_weekday"]] == [utc_today().strftime("%A")]

    everything = get(api, environment="all")
    assert everything["totals"]["conversations"] == 4 and everything["totals"]["individual_users"] == 3
    development = get(api, environment="development")
    assert development["totals"]["messages"] == 1 and development["interaction"]["rate"] is None


def test_date_range(api: DevServer, make_tracker: Callable[..., ConversationTracker]) -> None:
    tracker = make_tracker()
    tracker.get_or_create_conversation("today")
    tracker.track_question("Hi")
    tracker.send_tracked_data()
    assert tracker.flush(10)["delivered"]
    created = httpx.post(f"{api.url}/api/conversations/", headers=AUTH,
                         json={"conversation_id": "old", "is_used": True, "timestamp": "2024-03-04T10:00:00Z"})
    httpx.post(f"{api.url}/api/track/", headers=AUTH, json={
        "conversation": created.json()["id"], "conversation_id": "old", "content": "Old question",
        "sender": "end_user", "timestamp": "2024-03-04T10:00:05Z"})
    today = utc_today()
    assert get(api)["totals"]["conversations"] == 2
    assert get(api, **{"from": "2024-03-04", "to": "2024-03-04"})["daily"] == [
        {"date": "2024-03-04", "messages": 1, "conversations": 1}]
    assert get(api, **{"from": today.isoformat()})["totals"] | {"conversations": 1, "messages": 1} == get(
        api, **{"from": today.isoformat()})["totals"]
    assert get(api, to=(today - timedelta(days=1)).isoformat())["totals"]["conversations"] == 1
    assert get(api, **{"from": (today + timedelta(days=1)).isoformat()})["totals"]["conversations"] == 0
    assert get(api, to="9999-12-31")["totals"]["conversations"] == 2, "the last date there is"
    bad = httpx.get(f"{api.url}/api/stats/", params={"from": "last week"}, headers=AUTH)
    assert (bad.status_code, list(bad.json())) == (400, ["from"])


@pytest.mark.parametrize("key", ["campaign", 'we"ird\\key', "x'y.z", "Ç񱞽+°Ê"])
def test_breakdown_by_any_metadata_key(api: DevServer, key: str) -> None:
    """Any key a visit's metadata can hold is a breakdown, quotes, dots and non-ASCII included (never a 500)."""
    for number, value in enumerate(["spring", "spring", "fall"]):
        httpx.post(f"{api.url}/api/conversations/", headers=AUTH, json={
            "conversation_id": f"c{number}", "is_used": True, "metadata": {key: value}})
    rows = get(api, environment="all", breakdown=key)["breakdown"]["rows"]
    assert {row["value"]: row["conversations"] for row in rows} == {"spring": 2, "fall": 1}


def test_interaction_rate_is_null_with_a_hint_when_nothing_was_initialized(
        api: DevServer, make_tracker: Callable[..., ConversationTracker]) -> None:
    tracker = make_tracker()
    tracker.get_or_create_conversation("used-only")
    tracker.track_question("Hi")
    tracker.send_tracked_data()
    assert tracker.flush(10)["delivered"]
    interaction = get(api)["interaction"]
    assert (interaction["rate"], interaction["engaged"], interaction["initialized"],
            interaction["engaged_without_visit"]) == (None, 0, 0, 1)
    assert "initialize_conversation(" in interaction["hint"] and "open_conversation(" in interaction["hint"]
    assert get(api)["interaction_rate"] is None
    assert "open_conversation(" in check(api, "unique_interaction_rate")["hint"]


def test_each_integration_hint_appears_when_its_field_is_missing_and_goes_when_given(
        api: DevServer, client: openai.OpenAI) -> None:
    assert ags.init(api_key=API_KEY, endpoint=api.url)
    try:
        with ags.conversation("bare"), ags.turn():
            ags.user_message("Where is my order?")
            ags.agent_message(LONG_ANSWER)  # answered at once: a streamed turn ended too early
        assert ags.flush()
        empty = {entry["metric"]: entry for entry in get(api, "/api/stats/integration/")["metrics"]}
        for metric, needle in (("individual_users", "customer_id="), ("world_map", "customer_ip_address="),
                               ("device_usage", "device="), ("agent_language", "language="),
                               ("source", "source="), ("human_escalation_rate", "fallback_to_human"),
                               ("unique_interaction_rate", "open_conversation("), ("tool_usage", "@agentsight.tool"),
                               ("token_usage", "track_token_usage()"), ("engagement_by_page", "page_url"),
                               ("customer_segments", "segment"), ("conversation_feedback", "feedbacks.")):
            assert not empty[metric]["receiving"] and needle in empty[metric]["hint"], metric
        assert empty["average_response_time"]["receiving"] and "agentsight.wrap(" in empty["average_response_time"][
            "hint"], "near-zero turns with long answers are named"

        @ags.tool(name="fallback_to_human")
        def hand_off() -> str:
            return "ticket 7"

        fields = {"customer_id": "u1", "customer_ip_address": "8.8.8.8", "device": "mobile", "language": "en",
                  "source": "web", "metadata": {"page_url": "/help", "segment": "smb"}}
        ags.open_conversation("full", **fields)
        with ags.conversation("full", **fields), ags.turn():
            ags.user_message("Where is my order?")
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            hand_off()
            time.sleep(0.06)
            ags.agent_message(LONG_ANSWER)
        assert ags.flush()
    finally:
        ags.shutdown()
    given = {entry["metric"]: entry for entry in get(api, "/api/stats/integration/")["metrics"]}
    for metric in ("world_map", "device_usage", "agent_language", "source", "human_escalation_rate",
                   "unique_interaction_rate", "tool_usage", "token_usage", "token_cost", "engagement_by_page",
                   "customer_segments"):
        assert given[metric]["receiving"] and given[metric]["hint"] is None, (metric, given[metric])
    assert given["individual_users"]["receiving"] and "1 conversation(s) have no customer_id" in given[
        "individual_users"]["hint"], "the bare conversation still lacks one"
    assert not given["conversation_feedback"]["receiving"]


def test_the_integration_check_says_when_everything_went_to_development(
        api: DevServer, make_tracker: Callable[..., ConversationTracker]) -> None:
    tracker = make_tracker(environment="development")
    tracker.get_or_create_conversation("dev-1")
    tracker.track_question("Hi")
    tracker.send_tracked_data()
    assert tracker.flush(10)["delivered"]
    answer = get(api, "/api/stats/integration/")
    assert answer["conversations"] == 0 and answer["receiving"] == 0
    assert "1 in development" in check(api, "conversations")["hint"]
    assert check(api, "conversations", environment="development")["receiving"]


def test_a_conversations_spend_is_priced_as_the_stats_price_it(
        api: DevServer, client: openai.OpenAI, make_tracker: Callable[..., ConversationTracker],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The conversation view's token usage (the data plane's summary) and the overview's cost agree."""
    monkeypatch.setenv("AGENTSIGHT_PROTOCOL", "ingest")
    track_app(make_tracker(), client)
    models = {entry["model"]: entry for entry in get(api)["token_cost"]["models"]}
    (server_id,) = [row["id"] for row in get(api, "/api/conversations/", full="false")["results"]
                    if row["conversation_id"] == "v1"]
    usage = get(api, f"/api/conversations/{server_id}/")["token_usage"]
    spend = {entry["model"]: entry for entry in usage["models"]}
    known = spend["gpt-4o-mini-2024-07-18"]
    assert known["cost_source"] == "backend"
    assert float(known["cost_usd"]) == pytest.approx(models["gpt-4o-mini-2024-07-18"]["cost_usd"], abs=1e-8)
    assert spend["stand-in-model-2024-07-18"]["cost_source"] == "unpriced", "unpriced, never free"
    assert usage["cost_sources"] == ["backend", "unpriced"]
    assert float(usage["cost_usd"]) == pytest.approx(float(known["cost_usd"]), abs=1e-8)
