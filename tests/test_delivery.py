"""Delivery problems never raise into user code, are retried as docs/wire.md allows, and are counted."""

from __future__ import annotations

import logging
import socket
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from agentsight import ConversationTracker
from agentsight.config import DeliverySettings
from agentsight.dev import CannedResponse, DevServer
from tests.conftest import API_KEY, QUICK_RETRIES, bodies

pytestmark = pytest.mark.usefixtures("rest_wire")  # these tests read the REST wire's payloads


def _one_turn(tracker: ConversationTracker, conversation_id: str = "conv-d", text: str = "q") -> None:
    tracker.get_or_create_conversation(conversation_id)
    tracker.track_question(text)
    tracker.send_tracked_data()


def test_500s_are_retried_until_delivered(api: DevServer, tracker: ConversationTracker) -> None:
    api.inject(CannedResponse(500), CannedResponse(502), CannedResponse(503))
    _one_turn(tracker)
    result = tracker.flush(10)
    assert result["complete"] and all(item["success"] for item in result["items"])
    assert [r.status for r in api.requests] == [500, 502, 503, 201, 201]
    assert tracker.delivery_stats()["retries"] == 3


def test_429_honours_retry_after(api: DevServer, tracker: ConversationTracker) -> None:
    api.inject(CannedResponse(429, b'{"detail": "slow down"}', retry_after="1"))
    started = time.monotonic()
    _one_turn(tracker)
    assert tracker.flush(10)["complete"]
    assert time.monotonic() - started >= 1.0, "waited the Retry-After second, not the 10 ms back-off"
    assert [r.status for r in api.requests] == [429, 201, 201]


def test_429_honours_an_http_date_retry_after(api: DevServer, tracker: ConversationTracker) -> None:
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=2), usegmt=True)  # whole seconds
    api.inject(CannedResponse(429, b'{"detail": "slow down"}', retry_after=when))
    started = time.monotonic()
    _one_turn(tracker)
    assert tracker.flush(10)["complete"]
    assert time.monotonic() - started >= 0.9, f"waited until {when}, 1 to 2 s away, not the 10 ms back-off"
    assert [r.status for r in api.requests] == [429, 201, 201]


def test_other_4xx_not_retried_and_logged_once(
    api: DevServer, tracker: ConversationTracker, caplog: pytest.LogCaptureFixture
) -> None:
    too_long = CannedResponse(400, b'{"content": ["This field is too long."]}', path="/api/track/")
    caplog.set_level(logging.ERROR, logger="agentsight")
    for number in range(2):
        api.inject(too_long)
        tracker.get_or_create_conversation(f"conv-4xx-{number}")
        tracker.track_question("refused")
        tracker.track_question("accepted")
        tracker.send_tracked_data()
        tracker.flush(10)
    assert [r.status for r in api.requests] == [201, 400, 201] * 2
    assert [b["content"] for b in bodies(api, "/api/track/")] == ["accepted", "accepted"]
    messages = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert len(messages) == 1 and "content: This field is too long." in messages[0]
    stats = tracker.delivery_stats()
    assert stats["payloads_rejected"] == 2 and stats["retries"] == 0


def test_api_down_then_up(make_tracker) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    tracker = make_tracker(endpoint=f"http://127.0.0.1:{port}")
    _one_turn(tracker, "conv-down", "sent while down")
    time.sleep(0.2)
    assert tracker.delivery_stats()["retries"] >= 1
    with DevServer(port=port) as server:
        assert tracker.flush(10)["complete"]
        assert [b["content"] for b in bodies(server, "/api/track/")] == ["sent while down"]


def test_server_slower_than_timeout_is_retried(api: DevServer, make_tracker) -> None:
    tracker = make_tracker(delivery=DeliverySettings(timeout=0.2, backoff_initial=0.01, backoff_max=0.05,
                                                     max_retry_time=10))
    api.inject(CannedResponse(201, b'{"id": 99}', delay=0.6))
    _one_turn(tracker, "conv-slow")
    result = tracker.flush(10)
    assert result["complete"] and [i["success"] for i in result["items"]] == [True, True]
    assert bodies(api, "/api/track/")[0]["conversation"] == 1


def test_malformed_json_reply_to_conversation_is_retried(api: DevServer, tracker: ConversationTracker,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    api.inject(CannedResponse(201, b"<html>not json"), CannedResponse(200, b'{"no_id": true}'))
    _one_turn(tracker, "conv-malformed")
    assert tracker.flush(10)["complete"]
    assert [r.status for r in api.requests] == [201, 200, 201, 201]
    assert bodies(api, "/api/track/")[0]["conversation"] == 1


def test_gives_up_after_max_retry_time_and_counts(api: DevServer, make_tracker,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    tracker = make_tracker(delivery=DeliverySettings(backoff_initial=0.01, backoff_max=0.02, max_retry_time=0.3))
    api.inject(*[CannedResponse(503)] * 200)
    caplog.set_level(logging.WARNING, logger="agentsight")
    _one_turn(tracker, "conv-expire")
    result = tracker.flush(10)
    assert result["complete"]
    assert [(i["type"], i["success"]) for i in result["items"]] == [("conversation", False), ("question", False)]
    stats = tracker.delivery_stats()
    assert stats["payloads_expired"] == 1 and stats["payloads_without_conversation"] == 1
    assert any("gave up" in r.getMessage() for r in caplog.records)
    assert any("delivery failing" in r.getMessage() for r in caplog.records)


def test_full_queue_drops_whole_turns_counted_and_logged(api: DevServer, make_tracker,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    api.latency = 0.05
    tracker = make_tracker(delivery=DeliverySettings(max_queue_size=6, max_concurrency=1))
    caplog.set_level(logging.WARNING, logger="agentsight")
    for number in range(10):
        _one_turn(tracker, f"conv-q{number}")
    assert tracker.flush(10)["complete"]
    stats = tracker.delivery_stats()
    delivered_turns = len(bodies(api, "/api/track/"))
    assert stats["payloads_dropped_queue_full"] == 2 * (10 - delivered_turns) > 0
    assert len(bodies(api, "/api/conversations/")) == delivered_turns, "turns are dropped whole"
    assert any("queue full" in r.getMessage() for r in caplog.records)


def test_each_conversation_in_order_across_concurrent_delivery(api: DevServer, make_tracker) -> None:
    """A conversation's turns never overtake one another: not with connections to spare, nor while one of
    them is retried (each conversation's turns are tracked back to back, so they queue together)."""
    api.latency = 0.002
    tracker = make_tracker(delivery=DeliverySettings(max_concurrency=8, backoff_initial=0.2, backoff_max=0.2))
    api.inject(*[CannedResponse(503, path="/api/track/")] * 3)  # the first three messages wait 0.1-0.2 s
    for conversation in range(4):
        for turn in range(5):
            tracker.get_or_create_conversation(f"conv-{conversation}")
            tracker.track_question(f"{conversation}:{turn}")
            tracker.send_tracked_data()
    assert tracker.flush(20)["complete"]
    arrived = [b["content"] for b in bodies(api, "/api/track/")]
    assert len(arrived) == 20
    for conversation in range(4):
        mine = [text for text in arrived if text.startswith(f"{conversation}:")]
        assert mine == [f"{conversation}:{turn}" for turn in range(5)]


def test_shutdown_drains_what_was_queued(api: DevServer) -> None:
    api.latency = 0.01
    tracker = ConversationTracker(api_key=API_KEY, endpoint=api.url, delivery=QUICK_RETRIES)
    for number in range(20):
        _one_turn(tracker, f"conv-s{number}")
    tracker.shutdown()
    assert len(bodies(api, "/api/track/")) == 20


def test_send_never_raises_with_api_unreachable(make_tracker) -> None:
    tracker = make_tracker(endpoint="http://127.0.0.1:9", delivery=DeliverySettings(max_retry_time=0.2,
                                                                                   backoff_initial=0.01))
    _one_turn(tracker, "conv-unreachable")
    result = tracker.flush(5)
    assert result["complete"] and not any(item["success"] for item in result["items"])
