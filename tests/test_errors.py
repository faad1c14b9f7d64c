"""Say what is wrong: errors name the endpoint and never the key, an all-404 endpoint is called out once, flush()
reports failures as failures, drop warnings are rate-limited, DEBUG shows each request, any 2xx is success,
and after shutdown() nothing is sent, which is said, counted and reported."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanContext

from agentsight import AgentSightSpanExporter, ConversationTracker
from agentsight.config import DeliverySettings
from agentsight.dev import CannedResponse, DevServer
from agentsight.export.droplog import DropWarnings
from agentsight.export.transport import scrub_secrets
from agentsight.spans import semconv as sc
from tests.conftest import API_KEY, QUICK_RETRIES, run_script

SECRET_PART = API_KEY[4:36]
BEARER = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.dG9rZW4"
ECHO = f"Authorization: Api-Key {API_KEY}; upstream Authorization: Bearer {BEARER}"
WIRES = ["rest", "ingest"]


def _turn(tracker: ConversationTracker, conversation_id: str, question: str = "q") -> None:
    tracker.get_or_create_conversation(conversation_id)
    tracker.track_question(question)
    tracker.send_tracked_data()


def _messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and r.name.startswith("agentsight")]


@pytest.mark.parametrize("protocol", WIRES)
def test_an_endpoint_answering_404_everywhere_is_called_out_once(
    api: DevServer, make_tracker: Callable[..., ConversationTracker], caplog: pytest.LogCaptureFixture,
    protocol: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="agentsight")
    tracker = make_tracker(endpoint=api.url + "/api", protocol=protocol)
    results = []
    for number in range(3):
        _turn(tracker, f"conv-{number}")
        results.append(tracker.flush(10))  # one turn at a time: each meets the 404
    assert all(r.status == 404 for r in api.requests) and len(api.requests) >= 3
    (error,) = _messages(caplog, logging.ERROR)
    assert "answered 404 (Not Found) for every request" in error
    assert f"is AGENTSIGHT_API_ENDPOINT right? (it is {api.url}/api;" in error
    assert all(result["complete"] and not result["delivered"] for result in results)
    stats = tracker.delivery_stats()
    assert sum(result["failed"] for result in results) == stats["payloads_submitted"] > 0
    assert stats["payloads_delivered"] == 0


def test_flush_says_delivered_false_when_anything_failed(
    api: DevServer, make_tracker: Callable[..., ConversationTracker], caplog: pytest.LogCaptureFixture
) -> None:
    tracker = make_tracker(protocol="rest")
    _turn(tracker, "conv-ok")
    ok = tracker.flush(10)
    assert ok["complete"] and ok["delivered"] and ok["failed"] == 0 and ok["dropped"] == 0
    api.inject(CannedResponse(404, b'{"detail": "Not found."}', path="/api/track/"),
               CannedResponse(404, b'{"detail": "Not found."}', path="/api/track/"))
    caplog.set_level(logging.ERROR, logger="agentsight")
    _turn(tracker, "conv-404")
    failed = tracker.flush(10)
    assert failed["complete"] and not failed["delivered"] and failed["failed"] == failed["summary"]["failed"] == 1
    assert [(i["type"], i["status"]) for i in failed["items"] if not i["success"]] == [("question", 404)]
    (error,) = _messages(caplog, logging.ERROR)
    assert "rejected a question payload (HTTP 404: Not found.)" in error and api.url in error
    assert "every request" not in error, "the endpoint answered before: this 404 is not the endpoint's fault"


def test_flush_that_times_out_is_neither_complete_nor_delivered(
    api: DevServer, tracker: ConversationTracker
) -> None:
    api.latency = 0.5
    _turn(tracker, "conv-slow")
    early = tracker.flush(0.05)
    assert not early["complete"] and not early["delivered"] and early["failed"] == 0
    assert tracker.flush(10)["delivered"]


@pytest.mark.parametrize("protocol", WIRES)
def test_any_2xx_is_success(api: DevServer, make_tracker: Callable[..., ConversationTracker], protocol: str) -> None:
    tracker = make_tracker(protocol=protocol)
    if protocol == "rest":
        api.inject(CannedResponse(204, b"", path="/api/track/"), CannedResponse(202, b"", path="/api/buttons/"))
    else:
        api.inject(CannedResponse(204, b"", path="/api/ingest/"))
    tracker.get_or_create_conversation("conv-2xx")
    tracker.track_question("q")
    tracker.track_button("contact_human_agent", "Create ticket", "create-ticket")
    tracker.send_tracked_data()
    result = tracker.flush(10)
    assert result["delivered"] and result["failed"] == 0
    assert {item["status"] for item in result["items"]} >= ({204, 202} if protocol == "rest" else {204})
    stats = tracker.delivery_stats()
    assert stats["payloads_delivered"] == stats["payloads_submitted"] and stats["payloads_rejected"] == 0
    assert stats["retries"] == 0


def _assert_scrubbed(caplog: pytest.LogCaptureFixture, result: dict, url: str) -> None:
    text = caplog.text + json.dumps(result)
    assert SECRET_PART not in text and BEARER not in text
    assert "[redacted]" in json.dumps(result), "the echoed header was there to scrub"
    problems = [m for level in (logging.WARNING, logging.ERROR) for m in _messages(caplog, level)]
    assert problems and all(url in message for message in problems), problems


def test_rest_error_texts_are_scrubbed_of_the_key_and_bearer_tokens(
    api: DevServer, make_tracker: Callable[..., ConversationTracker], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="agentsight")
    tracker = make_tracker(protocol="rest")
    api.inject(CannedResponse(200, json.dumps({"echo": ECHO}).encode(), path="/api/conversations/"),  # no id
               CannedResponse(400, json.dumps({"detail": ECHO}).encode(), path="/api/track/"),
               CannedResponse(400, f"<pre>{ECHO}</pre>".encode(), path="/api/buttons/"))
    tracker.get_or_create_conversation("conv-echo")
    tracker.track_question("q")
    tracker.track_button("contact_human_agent", "Create ticket", "create-ticket")
    tracker.send_tracked_data()
    result = tracker.flush(10)
    assert [(i["type"], i["status"]) for i in result["items"] if not i["success"]] == [("question", 400),
                                                                                        ("button", 400)]
    _assert_scrubbed(caplog, result, api.url)


def test_ingest_error_texts_are_scrubbed_of_the_key_and_bearer_tokens(
    api: DevServer, make_tracker: Callable[..., ConversationTracker], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="agentsight")
    tracker = make_tracker(protocol="ingest")
    blocks = {"detail": "Invalid payload.", "truncated": False,
              "conversations": [{"index": 0, "conversation_id": "conv-bad", "errors": {"environment": [ECHO]}}]}
    api.inject(CannedResponse(503, json.dumps({"detail": ECHO}).encode(), path="/api/ingest/"),
               CannedResponse(400, json.dumps(blocks).encode(), path="/api/ingest/"),
               CannedResponse(400, json.dumps({"detail": ECHO}).encode(), path="/api/ingest/"))
    _turn(tracker, "conv-bad")
    _turn(tracker, "conv-good")
    result = tracker.flush(10)
    assert not result["delivered"] and result["failed"] > 0
    _assert_scrubbed(caplog, result, api.url)


def test_the_scrubber() -> None:
    assert scrub_secrets(f'{{"Authorization": "Api-Key {API_KEY}"}}') == '{"Authorization": "Api-Key [redacted]"}'
    assert scrub_secrets(f"HTTP_AUTHORIZATION=Bearer {BEARER}") == "HTTP_AUTHORIZATION=Bearer [redacted]"
    assert scrub_secrets(f"key {API_KEY.upper()} seen") == "key [redacted] seen"
    assert scrub_secrets("x-api-key: abc") == "x-api-key: [redacted]"
    kept = 'conversation: Invalid pk "7" - object does not exist.; Bearer token required'
    assert scrub_secrets(kept) == kept, "ordinary error texts are left alone"


@pytest.mark.parametrize("protocol", WIRES)
def test_debug_level_shows_each_request_and_never_the_key(api: DevServer, tmp_path: Path, protocol: str) -> None:
    result = run_script(tmp_path, """
    from agentsight import ConversationTracker
    tracker = ConversationTracker()
    tracker.get_or_create_conversation("conv-debug")
    tracker.track_question("q")
    tracker.send_tracked_data()
    print(tracker.flush(10)["delivered"])
    """, {"AGENTSIGHT_API_KEY": API_KEY, "AGENTSIGHT_API_ENDPOINT": api.url, "AGENTSIGHT_LOG_LEVEL": "DEBUG",
          "AGENTSIGHT_PROTOCOL": protocol, "AGENTSIGHT_VERIFY_KEY": "false", "PYTHONPATH": str(Path.cwd())})
    assert result.returncode == 0 and result.stdout.strip() == "True", result.stderr
    paths = ["/api/conversations/", "/api/track/"] if protocol == "rest" else ["/api/ingest/"]
    for path in paths:
        pattern = (rf"AgentSight POST {re.escape(api.url + path)} \(\d+ bytes\): answered 201 \(\d+ bytes\) "
                   r"in \d+\.\d ms")
        if path == "/api/ingest/":
            pattern = pattern.replace("201", "200")
        assert re.search(pattern, result.stderr), (pattern, result.stderr)
    assert SECRET_PART not in result.stdout + result.stderr


def test_drop_warnings_are_rate_limited_with_counts(
    api: DevServer, make_tracker: Callable[..., ConversationTracker], caplog: pytest.LogCaptureFixture
) -> None:
    api.latency = 0.3
    tracker = make_tracker(protocol="rest", delivery=DeliverySettings(max_queue_size=2, max_concurrency=1))
    caplog.set_level(logging.WARNING, logger="agentsight")
    for number in range(300):
        _turn(tracker, f"conv-{number}")
    lines = [m for m in _messages(caplog, logging.WARNING) if "dropped" in m]
    assert len(lines) == 1 and "delivery queue full" in lines[0]
    dropped_payloads = tracker.delivery_stats()["payloads_dropped_queue_full"]
    assert dropped_payloads >= 2 * 290
    tracker.shutdown()
    lines = [m for m in _messages(caplog, logging.WARNING) if "dropped" in m]
    assert len(lines) == 2, "what was left is logged at shutdown"
    later = re.search(r"dropped (\d+) turn\(s\), (\d+) payloads, in the last \d+ s: delivery queue full", lines[1])
    assert later is not None and int(later[2]) == dropped_payloads - 2, "the first line counted one turn"


def test_drop_warnings_count_everything_across_intervals(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="test.drops")
    warnings = DropWarnings(logging.getLogger("test.drops"), "a test cause", interval=0.05)
    started = time.monotonic()
    for _ in range(100):
        warnings.note(3, "conv")
        time.sleep(0.002)
    warnings.report()
    elapsed = time.monotonic() - started
    lines = [r.getMessage() for r in caplog.records]
    assert 2 <= len(lines) <= elapsed / 0.05 + 2
    turns = 1 + sum(int(m[1]) for m in (re.search(r"dropped (\d+) turn", line) for line in lines[1:]) if m)
    assert turns == 100 and all("a test cause" in line for line in lines)


def _span(conversation_id: str) -> ReadableSpan:
    return ReadableSpan(name=sc.CONVERSATION_SPAN, context=SpanContext(1, 7, is_remote=False),
                        attributes={sc.CONVERSATION_ID: conversation_id, sc.IS_USED: True},
                        start_time=1, end_time=2)


def test_after_shutdown_nothing_is_sent_and_that_is_said(
    api: DevServer, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = ConversationTracker(api_key=API_KEY, endpoint=api.url, delivery=QUICK_RETRIES, protocol="rest")
    _turn(tracker, "conv-before")
    tracker.shutdown()
    received = len(api.requests)
    caplog.set_level(logging.WARNING, logger="agentsight")
    tracker.get_or_create_conversation("conv-after")
    tracker.track_question("too late")
    sent = tracker.send_tracked_data()
    assert {item["status"] for item in sent["items"]} == {"not_sent"}
    stats = tracker.delivery_stats()
    assert stats["payloads_dropped_after_shutdown"] == 2 and stats["payloads_dropped_queue_full"] == 0
    (line,) = [m for m in _messages(caplog, logging.WARNING) if "dropped" in m]
    assert "after shutdown()" in line and api.url in line and "queue full" not in line
    result = tracker.flush(1)
    assert result["dropped"] == 2 and result["failed"] == 2 and not result["delivered"]
    assert len(api.requests) == received


def test_exporter_export_after_shutdown_fails(api: DevServer) -> None:
    exporter = AgentSightSpanExporter(api_key=API_KEY, endpoint=api.url, protocol="rest")
    assert exporter.export([_span("conv-1")]) is SpanExportResult.SUCCESS
    exporter.shutdown()
    assert exporter.export([_span("conv-2")]) is SpanExportResult.FAILURE
    assert exporter.stats["payloads_dropped_after_shutdown"] == 1


def test_a_configuration_error_names_the_endpoint(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("AGENTSIGHT_API_KEY", raising=False)
    caplog.set_level(logging.ERROR, logger="agentsight")
    AgentSightSpanExporter(endpoint="https://agentsight.example/base")
    (line,) = _messages(caplog, logging.ERROR)
    assert "https://agentsight.example/base" in line and "disabled" in line
