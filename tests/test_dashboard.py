"""The ``agentsight dev`` dashboard in a real headless Chromium, against a real DevServer filled by the tracker."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import sqlite3
import struct
import subprocess
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from agentsight import ConversationTracker
from agentsight.dev import DevServer, DevStore
from tests.conftest import API_KEY, QUICK_RETRIES

ARTIFACTS = Path(__file__).parent / "artifacts"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")

INITIALIZED = [f"dash-conv-{n}" for n in range(1, 6)]
USED = INITIALIZED[:3]
QUESTION = "How do I reset my password?"
ANSWER = "Open Settings, then Security, and choose Reset password."


def _browser() -> str | None:
    candidates = [os.environ.get("CHROMIUM", ""), *BROWSERS]
    return next((found for name in candidates if name and (found := shutil.which(name))), None)


@dataclass
class Dashboard:
    server: DevServer
    browser: str
    profile_root: Path

    def url(self, **params: str) -> str:
        return f"{self.server.url}/?{urlencode({'key': API_KEY, **params})}"

    def run(self, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
        profile = self.profile_root / f"profile-{len(list(self.profile_root.iterdir()))}"
        command = [
            self.browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
            "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-extensions", "--hide-scrollbars",
            f"--user-data-dir={profile}", "--virtual-time-budget=5000", *extra, url,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
        assert result.returncode == 0, result.stderr[-2000:]
        return result

    def dom(self, **params: str) -> str:
        return self.run(self.url(**params), "--dump-dom").stdout


def _populate(url: str) -> None:
    tracker = ConversationTracker(api_key=API_KEY, endpoint=url, delivery=QUICK_RETRIES)
    try:
        for index, conversation_id in enumerate(INITIALIZED):
            tracker.initialize_conversation(conversation_id, customer_id=f"customer-{index + 1}",
                                            environment="development", name=f"Visitor {index + 1}")
        for index, conversation_id in enumerate(USED):
            tracker.get_or_create_conversation(conversation_id, customer_id=f"customer-{index + 1}",
                                               environment="development", name=f"Visitor {index + 1}")
            tracker.track_question(QUESTION if index == 0 else f"Question number {index + 1}")
            tracker.track_action("chat openai/gpt-4o-mini", duration_ms=420 + index,
                                 metadata={"provider": "openai", "operation": "chat", "input_tokens": 11,
                                           "output_tokens": 7, "finish_reasons": ["stop"]})
            tracker.track_token_usage(prompt_tokens=11, completion_tokens=7, total_tokens=18)
            tracker.track_answer(ANSWER if index == 0 else f"Answer number {index + 1}")
            tracker.track_button("feedback", label="Helpful" if index < 2 else "Not helpful",
                                 value="yes" if index < 2 else "no")
            if index == 0:
                tracker.track_action("search_kb", duration_ms=35, tools_used=["kb"], error_msg="index unavailable")
            tracker.send_tracked_data()
        result = tracker.flush(10)
        assert result["complete"], result
    finally:
        tracker.shutdown()


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium/Chrome binary found (install Debian's `chromium` or set CHROMIUM)")
    root = tmp_path_factory.mktemp("dashboard")
    profiles = root / "profiles"
    profiles.mkdir()
    with DevServer("127.0.0.1", 0, root / "dev.db") as server:
        _populate(server.url)
        yield Dashboard(server, browser, profiles)


def _text(dom: str, element_id: str) -> str:
    match = re.search(rf'id="{re.escape(element_id)}"[^>]*>(.*?)</', dom, re.S)
    assert match, f"#{element_id} not in the rendered page"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).strip()


def test_overview_shows_analytics_and_conversations(dashboard: Dashboard) -> None:
    dom = dashboard.dom()

    assert _text(dom, "interaction-rate") == "60%"
    assert _text(dom, "stat-initialized") == "5"
    assert _text(dom, "stat-used") == "3"
    assert _text(dom, "stat-abandoned") == "2"
    assert _text(dom, "tokens-total") == "54"
    assert 'data-button-event="feedback"' in dom
    assert re.search(r'data-label="Helpful".*?class="n"[^>]*>2<', dom, re.S)
    for conversation_id in INITIALIZED:
        assert f'data-conversation-id="{conversation_id}"' in dom
    assert "5 conversations" in dom
    assert 'role="alert" hidden' in dom.replace('hidden=""', "hidden")


def test_filters_from_the_url(dashboard: Dashboard) -> None:
    dom = dashboard.dom(is_used="false")

    listed = set(re.findall(r'data-conversation-id="([^"]+)"', dom))
    assert listed == set(INITIALIZED) - set(USED)


def test_conversation_timeline(dashboard: Dashboard) -> None:
    dom = dashboard.dom(conversation=USED[0])

    timeline = dom[dom.index('id="timeline"'):]
    assert html.escape(QUESTION, quote=False) in timeline
    assert html.escape(ANSWER, quote=False) in timeline
    assert 'data-sender="end_user"' in timeline and 'data-sender="agent"' in timeline
    assert re.search(r'class="choice clicked"[^>]*data-label="Helpful"', timeline)
    assert 'data-label="Not helpful"' in timeline  # the sibling label, not clicked here
    assert 'data-action-name="chat openai/gpt-4o-mini"' in timeline and "420 ms" in timeline
    assert 'data-kind="token_usage"' in timeline
    assert "index unavailable" in timeline
    assert not re.search(r">\s*(null|undefined|NaN)\s*<", dom), "a missing value leaked into the page"
    assert re.search(r'aria-current="true"[^>]*data-conversation-id="dash-conv-1"|'
                     r'data-conversation-id="dash-conv-1"[^>]*aria-current="true"', dom)


def test_screenshot(dashboard: Dashboard) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)

    dashboard.run(dashboard.url(conversation=USED[0]), f"--screenshot={shot}", "--window-size=1280,900")

    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 900)
    assert len(data) > 30_000, "the screenshot looks blank"


def _span(number: int, kind: str, **attributes: object) -> dict[str, object]:
    return {"span_id": f"{number:016x}", "trace_id": "0af7651916cd43dd8448eb211c80319c", "kind": kind, "name": kind,
            "started_at": f"2026-11-25T10:00:0{number}Z", "ended_at": f"2026-11-25T10:00:0{number}Z",
            "attributes": attributes}


def test_odd_stored_data_never_breaks_the_page(tmp_path: Path) -> None:
    """Whatever the store holds (values of unexpected types, NaN written by an earlier version), the overview
    and every conversation render without an error."""
    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium/Chrome binary found (install Debian's `chromium` or set CHROMIUM)")
    db = tmp_path / "odd.db"
    DevStore(db).close()
    with closing(sqlite3.connect(db)) as connection, connection:
        connection.execute("INSERT INTO conversations (conversation_id, metadata, created_at, updated_at, is_used) "
                           "VALUES ('old', ?, '2026-01-01', '2026-01-01', 1)", ('{"x": NaN}',))
        connection.executemany("INSERT INTO items (conversation, kind, timestamp, created_at, body) VALUES "
                               "(1, ?, '2026-01-01', '2026-01-01', ?)", [
                                   ("message", '{"content": "stored long ago", "sender": "agent", "metadata": {}}'),
                                   ("button", '{"button_event": "e", "label": "l", "metadata": {"n": Infinity}}')])
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    with DevServer("127.0.0.1", 0, db) as server, httpx.Client(
            base_url=server.url, headers={"Authorization": f"Api-Key {API_KEY}"}) as client:
        spans = [_span(1, "turn"), _span(2, "button", **{"agentsight.button.event": ["a", 1]}),
                 _span(3, "tool", **{"agentsight.tool.name": 7, "agentsight.tool.arguments": "[1, {\"x\": null}]",
                                     "agentsight.tool.response": {"nested": [1]}, "agentsight.tool.error": False}),
                 _span(4, "llm", **{"gen_ai.usage.input_tokens": 10**30, "gen_ai.request.model": ["m"]}),
                 _span(5, "attachment", **{"agentsight.attachment.files": "not json",
                                           "agentsight.attachment.count": -1}),
                 _span(6, "something-new", nested={"deep": [[[]]]})]
        answer = client.post("/api/ingest/", json={"conversations": [
            {"conversation_id": "odd-ingest", "metadata": {"list": [1, {"a": None}]}, "spans": spans}]})
        assert answer.status_code == 200, answer.text
        conversation = client.post("/api/conversations/", json={"conversation_id": 12345, "is_used": True}).json()
        for path, body in (("/api/action_logs/", {"action_name": "odd", "tools_used": 5, "duration_ms": "12.5",
                                                  "metadata": {"finish_reasons": "stop"}}),
                           ("/api/action_logs/", {"action_name": "token_usage", "metadata": {"prompt_tokens": "x"}}),
                           ("/api/buttons/", {"button_event": 1, "label": 2.5, "value": True})):
            answer = client.post(path, json={"conversation": conversation["id"], **body})
            assert answer.status_code in (201, 400), answer.text
        page = Dashboard(server, browser, profiles)
        for selected in ("old", "odd-ingest", "12345"):
            dom = page.dom(conversation=selected)
            assert 'role="alert" hidden' in dom.replace('hidden=""', "hidden"), _text(dom, "status")
            expected = len(json.loads(client.get(f"/api/conversations/{server.conversations[selected]['id']}/").text)[
                "timeline"])
            assert f"{expected} timeline items" in dom and re.search(r'<ol id="timeline"', dom), selected
        assert "stored long ago" in page.dom(conversation="old")
