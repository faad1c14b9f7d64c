"""The ``agentsight dev`` dashboard in a real headless Chromium, against a real DevServer filled by the tracker."""

from __future__ import annotations

import html
import json
import os
import random
import re
import shutil
import sqlite3
import string
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from agentsight import ConversationTracker
from agentsight.api import AgentSight
from agentsight.dev import DevServer, DevStore
from tests.chromium_cdp import Chromium
from tests.conftest import API_KEY, QUICK_RETRIES

ARTIFACTS = Path(__file__).parent / "artifacts"
SCREENSHOTS = Path(__file__).parent.parent / "docs" / "screenshots"
"""The README's pictures: the key screenshots are copied there when AGENTSIGHT_UPDATE_SCREENSHOTS=1."""
KEY_SHOTS = ("overview.png", "breakdowns.png", "integration.png", "conversation-long.png", "overview-10000.png",
             "conversation-feedback-tickets.png", "demo-overview.png", "demo-breakdowns.png",
             "demo-integration-development.png", "demo-conversation.png")
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
    assert _text(dashboard.dom(), "interaction-rate") == "—", "analytics count production by default: none here"
    dom = dashboard.dom(environment="development")

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


def test_screenshot(dashboard: Dashboard, tmp_path: Path) -> None:
    """A ``?conversation=`` link opens on that conversation (scrolled below the charts): the viewport shows it."""
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)

    with _chromium(tmp_path) as page:
        page.open(dashboard.url(conversation=USED[0], environment="development"))
        top = page.evaluate("document.getElementById('conversation-detail').getBoundingClientRect().top")
        assert 0 <= top < 100, f"the conversation detail starts at {top:.0f} px in the viewport"
        page.screenshot(shot)

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


# Charts, breakdowns, integration check and robust rendering, driven through the DevTools pipe -------------

VISITORS = [  # conversation id, device, language, source, ip, page, plan, engaged
    ("vis-1", "desktop", "en", "web", "8.8.8.8", "/pricing", "pro", True),
    ("vis-2", "mobile", "en", "web", "193.0.6.139", "/pricing", "free", True),
    ("vis-3", "mobile", "de", "app", "8.8.4.4", "/docs", "free", True),
    ("vis-4", "tablet", "fr", "web", "10.0.0.7", "/docs", "pro", False),
    ("vis-5", "desktop", "en", "web", None, "/", "free", False),
]


def _populate_charts(url: str) -> None:
    """Production visits with every conversation field, turns with priced and unpriced model calls (their tokens
    tracked with ``track_token_usage`` too, so the Tokens card and the cost agree), a tool, an escalation; no
    feedback (that metric stays empty, and the integration check says so)."""
    tracker = ConversationTracker(api_key=API_KEY, endpoint=url, delivery=QUICK_RETRIES)
    try:
        for cid, device, language, source, ip, page, plan, _ in VISITORS:
            tracker.initialize_conversation(cid, customer_id=f"user-{cid}", customer_ip_address=ip, device=device,
                                            language=language, source=source,
                                            metadata={"page_url": page, "plan": plan})
        for number, (cid, *_rest, engaged) in enumerate(VISITORS):
            if not engaged:
                continue
            tracker.get_or_create_conversation(cid)
            tracker.track_question(f"Question {number}: where is my order?")
            tracker.track_action("chat openai/gpt-4o-mini", duration_ms=300 + number, metadata={
                "provider": "openai", "operation": "chat", "model": "gpt-4o-mini", "input_tokens": 1200,
                "output_tokens": 300})
            tracker.track_action("chat local/house-model-7", duration_ms=90, metadata={
                "provider": "local", "operation": "chat", "model": "house-model-7", "input_tokens": 50,
                "output_tokens": 20})
            tracker.track_token_usage(prompt_tokens=1200 + 50, completion_tokens=300 + 20, total_tokens=1570)
            tracker.track_action("search_kb", duration_ms=40 + 10 * number, tools_used={"kb": 1})
            if number == 2:
                tracker.track_action("fallback_to_human", duration_ms=5)
            tracker.track_answer(f"Answer {number}: it ships tomorrow.")
            tracker.send_tracked_data()
        result = tracker.flush(10)
        assert result["complete"], result
    finally:
        tracker.shutdown()


def _chromium(tmp_path: Path, name: str = "cdp", height: int = 900) -> Chromium:
    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium/Chrome binary found (install Debian's `chromium` or set CHROMIUM)")
    return Chromium(browser, tmp_path / name, height=height)


def _api(server: DevServer, path: str, **params: str) -> Any:
    answer = httpx.get(server.url + path, params=params, headers={"Authorization": f"Api-Key {API_KEY}"},
                       timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _shot(page: Chromium, name: str, selector: str | None = None) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    data = page.screenshot(ARTIFACTS / name, selector)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, f"{name} looks blank"
    if name in KEY_SHOTS and os.environ.get("AGENTSIGHT_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ARTIFACTS / name, SCREENSHOTS / name)


@pytest.fixture(scope="module")
def charts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    if _browser() is None:
        pytest.skip("no Chromium/Chrome binary found (install Debian's `chromium` or set CHROMIUM)")
    with DevServer("127.0.0.1", 0, tmp_path_factory.mktemp("charts") / "dev.db") as server:
        _populate_charts(server.url)
        yield server


def test_charts_show_the_stats(charts: DevServer, tmp_path: Path) -> None:
    stats = _api(charts, "/api/stats/")
    url = f"{charts.url}/?{urlencode({'key': API_KEY})}"
    with _chromium(tmp_path, height=1000) as page:
        page.open(url)
        text = lambda selector: page.evaluate(  # noqa: E731
            f"document.querySelector({json.dumps(selector)}).textContent")
        labels = lambda selector: page.evaluate(  # noqa: E731
            f"[...document.querySelectorAll({json.dumps(selector)})].map((e) => e.dataset.label)")

        assert text("#kpi-messages .value") == str(stats["totals"]["messages"]) == "6"
        assert text("#kpi-users .value") == "5"
        assert text("#interaction-rate") == "60%" and "3 engaged of 5 visits" in text("#interaction-counts")
        assert text("#kpi-escalation .value") == "33.3%"  # one of three engaged conversations
        assert page.evaluate("document.querySelectorAll('#chart-daily circle').length") == 2 * len(stats["daily"])
        assert page.evaluate("document.querySelectorAll('#chart-hours rect').length") == 24
        countries = sorted(c["country"] for c in stats["world_map"]["countries"])
        assert sorted(labels("#chart-countries .bar-row")) == countries
        assert stats["world_map"]["countries"], "public addresses are located"
        assert sorted(labels("#chart-devices .bar-row")) == ["desktop", "mobile", "tablet"]
        assert sorted(labels("#chart-pages .bar-row")) == ["/", "/docs", "/pricing"]
        assert sorted(labels("#chart-segments .bar-row")) == ["free", "pro"]
        tools = text("#table-tools")
        assert "search_kb" in tools and "fallback_to_human" in tools
        models = page.evaluate("[...document.querySelectorAll('#table-models tbody tr')]"
                               ".map((r) => [r.cells[0].textContent, r.cells[7].textContent])")
        assert dict(models)["house-model-7"] == "unpriced"
        assert dict(models)["gpt-4o-mini"].startswith("$")
        # The Tokens card counts what track_token_usage sent: the same tokens the model calls carry and are priced by.
        model_tokens = page.evaluate("[...document.querySelectorAll('#table-models tbody tr')]"
                                     ".map((r) => [r.cells[3].textContent, r.cells[4].textContent])")
        prompt = sum(int(tokens.replace(",", "")) for tokens, _ in model_tokens)
        completion = sum(int(tokens.replace(",", "")) for _, tokens in model_tokens)
        assert (prompt, completion) == (3 * 1250, 3 * 320)
        assert text("#tokens-prompt") == f"{prompt:,}" and text("#tokens-completion") == f"{completion:,}"
        assert text("#tokens-total") == f"{prompt + completion:,}" == f"{stats['tokens']['total_tokens']:,}"
        assert text("#kpi-cost .value").startswith("$") and "unpriced: house-model-7" in text("#kpi-cost")
        _shot(page, "overview.png")
        _shot(page, "breakdowns.png", "#charts")

        check = _api(charts, "/api/stats/integration/")
        shown = page.evaluate("[...document.querySelectorAll('#integration li')].map((li) => "
                              "[li.dataset.metric, li.dataset.receiving, li.textContent])")
        assert [(metric, receiving) for metric, receiving, _ in shown] == [
            (m["metric"], str(m["receiving"]).lower()) for m in check["metrics"]]
        empty = {m["metric"]: m for m in check["metrics"] if not m["receiving"]}
        assert empty, "the demo data leaves feedback empty"
        for metric, _, shown_text in shown:
            if metric in empty:
                assert empty[metric]["fed_by"] in shown_text and (empty[metric]["hint"] or "") in shown_text
        _shot(page, "integration.png", "#integration-panel")

        page.evaluate("(() => { const s = document.getElementById('environment'); s.value = 'development';"
                      "s.dispatchEvent(new Event('change')); })()")
        page.wait_for("document.getElementById('kpi-messages').textContent.includes('Messages0')")
        assert "environment=development" in page.evaluate("location.search")


def test_no_visit_shows_a_dash_and_the_call_that_feeds_it(tmp_path: Path) -> None:
    with DevServer("127.0.0.1", 0, None) as server, _chromium(tmp_path) as page:
        tracker = ConversationTracker(api_key=API_KEY, endpoint=server.url, delivery=QUICK_RETRIES)
        with tracker.conversation("no-visit"):
            tracker.track_question("hello")
            tracker.track_answer("hi")
        assert tracker.flush(10)["complete"]
        tracker.shutdown()
        page.open(f"{server.url}/?{urlencode({'key': API_KEY})}")

        assert page.evaluate("document.getElementById('interaction-rate').textContent") == "—"
        assert page.evaluate("document.getElementById('interaction-counts').textContent") == "no visits recorded"
        hint = page.evaluate("document.getElementById('interaction-hint').textContent")
        assert "initialize_conversation" in hint
        assert page.evaluate("!document.getElementById('interaction-hint').hidden")


LONG_WORD = "".join(random.Random(13).choices(string.ascii_letters + string.digits, k=100_000))
LONG_TEXT = ("All work and no play makes a very long answer. " * 22_000)[:1_000_000]


def test_long_messages_are_clipped_with_show_more(tmp_path: Path) -> None:
    with DevServer("127.0.0.1", 0, None) as server, httpx.Client(
            base_url=server.url, headers={"Authorization": f"Api-Key {API_KEY}"}, timeout=60) as client, \
            _chromium(tmp_path) as page:
        conversation = client.post("/api/conversations/", json={"conversation_id": "long", "is_used": True}).json()
        for sender, content in (("end_user", LONG_WORD), ("agent", LONG_TEXT)):
            answer = client.post("/api/track/", json={"conversation": conversation["id"], "sender": sender,
                                                     "content": content})
            assert answer.status_code == 201, answer.text
        listed = client.get("/api/conversations/")
        assert len(listed.content) < 4_000, "the list carries clipped previews, not the 1.1 MB transcript"
        preview = listed.json()["results"][0]["preview"]
        assert preview["first_question"]["length"] == 100_000 and preview["first_question"]["clipped"]
        assert preview["last_answer"]["text"] == LONG_TEXT[:200]

        page.open(f"{server.url}/?{urlencode({'key': API_KEY, 'conversation': 'long'})}")
        page.wait_for("document.querySelectorAll('#timeline .bubble').length === 2")
        loaded = page.evaluate("window.dashboardLoadedMs")
        assert loaded < 10_000, f"the conversation view took {loaded:.0f} ms"
        shown = page.evaluate("[...document.querySelectorAll('#timeline .clip-text')].map((e) => e.textContent.length)")
        assert all(length <= 1_201 for length in shown), shown
        toggles = page.evaluate("[...document.querySelectorAll('#timeline .show-more')].map((b) => b.textContent)")
        assert toggles == ["Show more (98,800 more characters)", "Show more (998,800 more characters)"]
        _shot(page, "conversation-long.png", "#conversation-detail")

        for index, length in enumerate((100_000, 1_000_000)):
            took = page.evaluate(f"""(() => {{
                const button = document.querySelectorAll('#timeline .show-more')[{index}];
                const started = performance.now();
                button.click();
                document.body.getBoundingClientRect();  // force the layout of the expanded text
                return performance.now() - started; }})()""")
            assert took < 5_000, f"expanding {length:,} characters took {took:.0f} ms"
            assert page.evaluate(f"document.querySelectorAll('#timeline .clip-text')[{index}].textContent.length") \
                == length
        _shot(page, "conversation-long-expanded.png", "#conversation-detail")
        page.evaluate("document.querySelectorAll('#timeline .show-more')[1].click()")
        assert page.evaluate("document.querySelectorAll('#timeline .show-more')[1].textContent").startswith("Show more")


def _ten_thousand(db: Path) -> None:
    """10,000 conversations over 14 days, two messages each, written straight into the store."""
    store = DevStore(db)
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    with store.write() as writer:
        for n in range(10_000):
            created = (start + timedelta(minutes=2 * n)).isoformat()
            server_id = writer.upsert_conversation(
                {"conversation_id": f"bulk-{n:05d}", "customer_id": f"user-{n % 700}",
                 "device": ("desktop", "mobile", "tablet")[n % 3], "language": ("en", "de", "fr", "es")[n % 4]},
                initialized=True, used=n % 3 != 0, created=created)
            writer.add_item("message", server_id, created, {"sender": "end_user", "content": f"Question {n}",
                                                            "metadata": {}})
            writer.add_item("message", server_id, created, {"sender": "agent", "content": f"Answer {n} " * 20,
                                                            "metadata": {}})
    store.close()


def test_ten_thousand_conversations_load_quickly(tmp_path: Path) -> None:
    db = tmp_path / "bulk.db"
    _ten_thousand(db)
    with DevServer("127.0.0.1", 0, db) as server, _chromium(tmp_path, height=1000) as page:
        for size, bound in (("20", 20_000), ("100", 100_000)):
            body = httpx.get(f"{server.url}/api/conversations/", params={"page_size": size},
                             headers={"Authorization": f"Api-Key {API_KEY}"}).content
            assert len(body) < bound, f"{len(body):,} bytes for a page of {size}"
            assert json.loads(body)["count"] == 10_000

        page.open(f"{server.url}/?{urlencode({'key': API_KEY})}")
        loaded = page.evaluate("window.dashboardLoadedMs")
        navigation = page.evaluate("performance.getEntriesByType('navigation')[0].toJSON()")
        assert loaded < 2_000 + navigation["responseEnd"], f"loaded after {loaded:.0f} ms"
        assert page.evaluate("document.getElementById('stat-conversations').textContent") == "10,000"
        assert page.evaluate("document.querySelectorAll('#conversation-list .conv').length") == 20
        assert page.evaluate("document.querySelectorAll('#chart-daily circle').length") == 2 * 14
        _shot(page, "overview-10000.png")


# Feedback, tickets and flags on the conversation view (issue 14) ----------------------------------------

LONG_COMMENT = "Billing says the refund batch runs nightly; " * 60


def test_conversation_shows_feedback_and_tickets(tmp_path: Path) -> None:
    """Feedback made through ``agentsight.api`` shows beside the conversation and on the message it is about; a
    ticket shows with its status, priority, tags and comments (a long one clipped); marked and deleted
    conversations carry a badge; a ``?conversation=`` link scrolls the detail (below the charts) into view."""
    with DevServer("127.0.0.1", 0, None) as server, _chromium(tmp_path) as page:
        tracker = ConversationTracker(api_key=API_KEY, endpoint=server.url, delivery=QUICK_RETRIES)
        for conversation_id in ("support-1", "support-2"):
            tracker.get_or_create_conversation(conversation_id, customer_id="user-42")
            tracker.track_question("My refund for order A-1 has not arrived.")
            tracker.track_token_usage(prompt_tokens=120, completion_tokens=30, total_tokens=150)
            tracker.track_answer("Refunds take 3-5 business days; I have checked yours.")
            tracker.send_tracked_data()
        assert tracker.flush(10)["complete"]
        tracker.shutdown()
        with AgentSight(API_KEY, endpoint=server.url) as ags:
            feedback = ags.feedbacks.create_for_conversation("support-1", "negative",
                                                             comment="The refund took too long")
            answer = ags.conversations.get("support-1")["messages"][1]
            ags.feedbacks.create_for_message(answer["id"], "positive", comment="Clear steps", topic="clarity")
            ticket = ags.tickets.create("Refund stuck for order A-1", priority="high", tags=["refund"],
                                        conversation="support-1", feedback_id=feedback["id"])
            ags.tickets.add_comment(ticket["id"], "Looking into it with billing")
            ags.tickets.add_comment(ticket["id"], LONG_COMMENT)
            ags.conversations.mark("support-1")
            ags.conversations.delete("support-2")

        page.open(f"{server.url}/?{urlencode({'key': API_KEY, 'conversation': 'support-1'})}")
        text = lambda selector: page.evaluate(  # noqa: E731
            f"(document.querySelector({json.dumps(selector)}) || {{textContent: ''}}).textContent")

        assert text("#conversation-detail [data-flag=marked]") == "marked"
        assert text("#conversation-list .conv[data-conversation-id=support-1] .badge.marked") == "marked"
        assert page.evaluate("window.scrollY > 0 && document.getElementById('conversation-detail')"
                             ".getBoundingClientRect().top < innerHeight / 3"), "the link scrolls to the detail"

        shown = page.evaluate("[...document.querySelectorAll('#detail-feedback li.feedback')].map((li) => "
                              "[li.dataset.sentiment, li.dataset.kind, li.textContent])")
        assert [(sentiment, kind) for sentiment, kind, _ in shown] == [("negative", "conversation"),
                                                                       ("positive", "message")]
        assert "The refund took too long" in shown[0][2] and f"on message {answer['id']}" in shown[1][2]
        vote = text(f"#message-{answer['id']} .vote")
        assert "positive" in vote and "Clear steps" in vote and "clarity" in vote
        assert page.evaluate("document.querySelectorAll('#timeline .vote').length") == 1

        tickets = text("#detail-tickets")
        for expected in ("Refund stuck for order A-1", "open", "high priority", "refund", "negative",
                         "Looking into it with billing"):
            assert expected in tickets, expected
        assert page.evaluate("document.querySelectorAll('#detail-tickets li.comment').length") == 2
        toggles = page.evaluate("[...document.querySelectorAll('#detail-tickets .show-more')]"
                                ".map((b) => b.textContent)")
        assert toggles == [f"Show more ({len(LONG_COMMENT) - 600:,} more characters)"]
        assert LONG_COMMENT not in tickets and LONG_COMMENT[:600] in tickets
        usage = text("#detail-usage")
        assert "150" in usage and "unpriced" in usage
        assert not re.search(r">\s*(null|undefined|NaN)\s*<", page.evaluate("document.body.outerHTML"))
        _shot(page, "conversation-feedback-tickets.png", "#conversation-detail")

        page.open(f"{server.url}/?{urlencode({'key': API_KEY, 'conversation': 'support-2'})}")
        page.wait_for("document.querySelector('#conversation-detail [data-flag=deleted]')")
        assert text("#detail-title") == "support-2"
        assert text("#conversation-detail [data-flag=deleted]").startswith("deleted ")
        assert not page.evaluate("document.getElementById('detail-feedback')"), "no feedback, no feedback panel"


# The real demo's week on the dashboard (issue 13: each metric with the demo's data) ------------------------

ROOT = Path(__file__).resolve().parent.parent


def _run_demo(tmp_path: Path) -> Path:
    """``examples/demo.py --once --db``: the simulated week kept in a database this test then serves."""
    db = tmp_path / "demo.db"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTSIGHT_")}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py"), "--once", "--port", "0", "--db", str(db),
                           "--timeout", "20"], cwd=ROOT, env={**env, "TMPDIR": str(scratch)}, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Simulated 63 visits over 7 days" in done.stdout, done.stdout
    return db


CARDS = ("#kpi-messages", "#kpi-conversations", "#kpi-users", "#kpi-response", "#kpi-duration", "#kpi-escalation",
         "#kpi-cost")
CHARTS = ("#chart-daily", "#chart-hours", "#chart-weekdays", "#chart-countries", "#chart-devices", "#chart-languages",
          "#chart-sources", "#chart-pages", "#chart-segments", "#chart-feedback", "#table-tools", "#table-models")


def test_every_metric_shows_the_demos_week(tmp_path: Path) -> None:
    """The demo's simulated week, served as ``agentsight dev`` serves it: production (the default, all time)
    fills every card and chart; development's integration check names what that app leaves empty; the
    conversation the demo opened a ticket for shows its feedback and the ticket."""
    db = _run_demo(tmp_path)
    with DevServer("127.0.0.1", 0, db) as server, _chromium(tmp_path, height=1000) as page:
        stats = _api(server, "/api/stats/")
        page.open(f"{server.url}/?{urlencode({'key': API_KEY})}")
        assert page.evaluate("document.getElementById('environment').value") == "production"
        assert page.evaluate("document.getElementById('date-from').value") == ""  # all time: the whole week
        text = lambda selector: page.evaluate(  # noqa: E731
            f"(document.querySelector({json.dumps(selector)}) || {{textContent: ''}}).textContent")
        value = lambda selector: text(selector + " .value")  # noqa: E731
        number = lambda shown: float(re.sub(r"[^\d.]", "", shown) or 0)  # noqa: E731

        empty = page.evaluate(f"{json.dumps(CARDS + CHARTS)}.filter((s) => !document.querySelector(s)"
                              "|| document.querySelector(s).querySelector('.empty, .placeholder')"
                              "|| !document.querySelector(s).textContent.trim())")
        assert empty == [], "placeholders instead of data"
        totals = stats["totals"]
        assert value("#kpi-messages") == f"{totals['messages']:,}" and totals["messages"] > 100
        assert value("#kpi-conversations") == "60" == f"{totals['conversations']}"
        assert value("#kpi-users") == f"{totals['individual_users']}" and 10 < totals["individual_users"] < 60
        assert value("#kpi-response").endswith(" s") and number(value("#kpi-response")) >= 1  # seconds, not 0 ms
        assert number(value("#kpi-duration")) > 0 and "over " in text("#kpi-duration")
        assert value("#kpi-escalation").endswith("%") and number(value("#kpi-escalation")) > 0
        assert re.fullmatch(r"\$0\.\d+", value("#kpi-cost")), value("#kpi-cost")
        assert int(text("#tokens-total").replace(",", "")) == stats["tokens"]["total_tokens"] > 0
        rate = stats["interaction"]
        assert text("#interaction-rate").endswith("%") and 0 < rate["engaged"] < rate["initialized"] == 60
        assert f"{rate['engaged']} engaged of 60 visits" in text("#interaction-counts")

        days = page.evaluate("document.querySelectorAll('#chart-daily circle').length") // 2
        assert days == len(stats["daily"]) >= 6, "the simulated week, day by day"
        hours = page.evaluate("[...document.querySelectorAll('#chart-hours rect')].map((r) => +r.dataset.value)")
        assert len(hours) == 24 and sum(1 for messages in hours if messages) >= 6
        rows = lambda selector: page.evaluate(  # noqa: E731
            f"[...document.querySelectorAll('{selector} .bar-row')].map((e) => e.dataset.label)")
        assert len(rows("#chart-countries")) >= 6
        assert sorted(rows("#chart-devices")) == ["desktop", "mobile", "tablet"]
        assert len(rows("#chart-languages")) >= 6 and rows("#chart-sources")
        assert len(rows("#chart-pages")) >= 5 and len(rows("#chart-segments")) >= 2
        assert "(metadata segment)" in text("#segments-title")
        feedback = stats["feedback"]
        assert sorted(rows("#chart-feedback")) == sorted(
            label for label in ("Positive", "Neutral", "Negative") if feedback[label.lower()])
        tools = text("#table-tools")
        assert "delivery_estimate" in tools and "find_store" in tools
        assert "open_ticket" in tools or "fallback_to_human" in tools
        assert "gpt-4o-mini" in text("#table-models") and "$" in text("#table-models")
        check = _api(server, "/api/stats/integration/")
        assert check["empty"] == 0 and page.evaluate("document.querySelectorAll('#integration li.empty-metric')"
                                                     ".length") == 0
        _shot(page, "demo-overview.png")
        _shot(page, "demo-breakdowns.png", "#charts")

        page.evaluate("(() => { const s = document.getElementById('environment'); s.value = 'development';"
                      "s.dispatchEvent(new Event('change')); })()")
        page.wait_for("document.querySelectorAll('#integration li.empty-metric').length > 0")
        development = _api(server, "/api/stats/integration/", environment="development")
        leaves_empty = {m["metric"]: m for m in development["metrics"] if not m["receiving"]}
        assert {"individual_users", "unique_interaction_rate", "conversation_feedback"} <= set(leaves_empty)
        shown = dict(page.evaluate("[...document.querySelectorAll('#integration li.empty-metric')]"
                                   ".map((li) => [li.dataset.metric, li.textContent])"))
        assert set(shown) == set(leaves_empty)
        for metric, entry in leaves_empty.items():
            assert entry["fed_by"] in shown[metric] and entry["hint"] and entry["hint"] in shown[metric], metric
        assert "customer_id" in shown["individual_users"] and "initialize_conversation" in shown[
            "unique_interaction_rate"]
        _shot(page, "demo-integration-development.png", "#integration-panel")

        tickets = _api(server, "/api/tickets/")["results"]
        assert tickets, "the demo opens a ticket from a negative rating"
        conversation_id = tickets[0]["conversation"]["conversation_id"]
        page.open(f"{server.url}/?{urlencode({'key': API_KEY, 'conversation': conversation_id})}")
        page.wait_for("document.querySelector('#detail-tickets') && document.querySelector('#detail-feedback')")
        assert text("#detail-title") == conversation_id
        assert "negative" in text("#detail-feedback") and tickets[0]["feedback"]["comment"] in text("#detail-feedback")
        assert tickets[0]["title"] in text("#detail-tickets") and "open" in text("#detail-tickets")
        assert page.evaluate("document.querySelectorAll('#timeline .bubble').length") >= 2
        assert not re.search(r">\s*(null|undefined|NaN)\s*<", page.evaluate("document.body.outerHTML"))
        assert "gpt-4o-mini" in text("#detail-usage") and "$" in text("#detail-usage"), "priced as the overview is"
        _shot(page, "demo-conversation.png", "#conversation-detail")
