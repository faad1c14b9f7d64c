"""The examples run as documented: ``make demo`` (examples/demo.py), examples/quickstart.py and the widget app.

Each runs in a fresh interpreter without ``AGENTSIGHT_*`` variables; the assertions are on what it prints
and, where a test provides the API, on what arrived there.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentsight.dev import CannedResponse, DevServer, integration, stats
from agentsight.dev.store import DevStore
from tests.conftest import eventually

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TIMEOUT = 60
API_KEY = "ags_" + "0" * 32 + "_" + "0" * 6
REQUEST_LINE = re.compile(r"^(\d{3}) (/api/\S+) (\{.*\})$")

def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without ``AGENTSIGHT_*`` variables, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTSIGHT_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def run_example(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``examples/<name>`` with this interpreter and wait for it."""
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=ROOT, env=env or clean_env(), capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )


def request_lines(output: str) -> list[tuple[int, str, dict[str, Any]]]:
    """The ``<status> <path> <json>`` lines of an example's output."""
    found = []
    for line in output.splitlines():
        match = REQUEST_LINE.match(line)
        if match:
            found.append((int(match[1]), match[2], json.loads(match[3])))
    return found


def demo_env(scratch: Path) -> dict[str, str]:
    """The environment for a demo run whose temporary files go under ``scratch`` (``TMPDIR``)."""
    scratch.mkdir(exist_ok=True)
    return clean_env(TMPDIR=str(scratch))


def test_demo_once_prints_a_summary_and_leaves_nothing_behind(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    done = run_example("demo.py", "--once", "--port", "0", "--timeout", "20", env=demo_env(scratch))

    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    used = re.search(r"temporary directory (\S+)$", done.stdout, re.MULTILINE)
    assert used is not None and Path(used[1]).parent == scratch, done.stdout
    assert list(scratch.iterdir()) == []  # the database and its directory are gone
    assert re.search(r"^Simulated 63 visits over 7 days \(\d+ chats in production, 3 in development\)$",
                     done.stdout, re.MULTILINE), done.stdout
    production, development = done.stdout.split("\nProduction (")[1].split("\nDevelopment (")
    assert re.search(r"^  Conversations: 60, messages: [1-9]\d+, individual users: [1-9]\d*$", production, re.MULTILINE)
    assert re.search(r"^  Interaction rate: \d+% \(\d+ of 60 visits engaged\)$", production, re.MULTILINE)
    assert re.search(r"^  Tokens: [1-9]\d* in [1-9]\d* model calls; cost: \$0\.\d{4}", production, re.MULTILINE)
    feedback = re.search(r"^  Feedback: (\d+) \(([1-9]\d*) positive, (\d+) neutral, ([1-9]\d*) negative\): (\d+) chats "
                         r"rated, 1 answer voted; 1 ticket opened$", production, re.MULTILINE)
    assert feedback is not None, production  # mixed sentiments, every vote counted
    assert int(feedback[1]) == sum(map(int, feedback.groups()[1:4])) == int(feedback[5]) + 1
    assert re.search(r"^  Integration check: (\d+) of \1 metrics receive data$", production, re.MULTILINE), production
    assert re.search(r"^  Integration check: (\d+) of (?!\1\b)\d+ metrics receive data; empty", development, re.M)
    empty = dict(re.findall(r"^  - (\w+): (.+)$", development, re.MULTILINE))  # each hint's first line
    assert {"individual_users", "unique_interaction_rate", "conversation_feedback"} <= set(empty), development
    assert "customer_id" in empty["individual_users"] and "initialize_conversation" in development
    assert "Dashboard:" not in done.stdout and "?key=" not in done.stdout  # no URL of a server already stopped


def test_demo_spreads_a_realistic_week_through_the_sdk(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    done = run_example("demo.py", "--once", "--port", "0", "--db", str(db), "--timeout", "20",
                       env=demo_env(tmp_path / "tmp"))
    assert done.returncode == 0, done.stderr

    store = DevStore(db)
    try:
        conversations = store.all_conversations()
        details = [store.get_conversation(conversation["id"]) for conversation in conversations]
        checks = {environment: integration.check(store, stats.Scope(environment))
                  for environment in ("production", "development")}
        feedback = stats.compute(store, stats.Scope("production"))["feedback"]
        tickets = store.read("SELECT c.conversation_id AS conversation_id, b.sentiment AS sentiment FROM tickets t "
                             "JOIN conversations c ON c.id = t.conversation JOIN feedbacks b ON b.id = t.feedback")
    finally:
        store.close()
    # Every metric of production receives data, feedback included; development (the app being developed) is
    # told what it leaves empty and what would feed each, as the summary printed it.
    assert checks["production"]["empty"] == 0, [m for m in checks["production"]["metrics"] if not m["receiving"]]
    assert feedback["positive"] and feedback["negative"] and feedback["total"] >= 10
    assert [(ticket["conversation_id"].startswith("conv_demo_"), ticket["sentiment"]) for ticket in tickets] == [
        (True, "negative")]
    empty = {m["metric"]: m["hint"] for m in checks["development"]["metrics"] if not m["receiving"]}
    assert {"individual_users", "unique_interaction_rate", "conversation_feedback"} <= set(empty)
    assert all(hint for hint in empty.values())
    printed = done.stdout.split("\nDevelopment (")[1]
    assert re.findall(r"^  - (\w+): ", printed, re.MULTILINE) == list(empty)
    details = [detail for detail in details if detail is not None]
    created = sorted(datetime.fromisoformat(detail["created_at"]) for detail in details)
    now = datetime.now(timezone.utc)
    assert len(details) == 63
    assert now - timedelta(days=8) < created[0] and created[-1] < now and created[-1] - created[0] > timedelta(days=5)
    assert len({moment.date() for moment in created}) >= 6
    production = [detail for detail in details if detail["environment"] == "production"]
    assert len(production) == 60
    assert {detail["device"] for detail in production} == {"desktop", "mobile", "tablet"}
    assert len({detail["language"] for detail in production}) >= 6
    assert len({detail["customer_ip_address"] for detail in production}) >= 6
    assert len({detail["metadata"]["page_url"] for detail in production}) >= 5
    assert 10 < len({detail["customer_id"] for detail in production}) < 60
    assert any(not detail["is_used"] for detail in production) and any(detail["is_used"] for detail in production)
    messages = [message for detail in production for message in detail["messages"]]
    answers = {message["content"] for message in messages if message["sender"] == "agent"}
    assert len(answers) >= 8 and "Hello from the fake model" not in answers
    actions = {action["action_name"] for detail in production for action in detail["actions"]}
    assert {"delivery_estimate", "find_store"} <= actions and {"open_ticket", "fallback_to_human"} & actions
    assert any(name.startswith("chat openai/gpt-4o-mini") for name in actions)
    assert any(detail["buttons"] for detail in production)
    # Response times are seconds, not the microseconds between two calls: each answer after its question.
    for detail in production:
        timeline = [item for item in detail["timeline"] if item["kind"] == "message"]
        for question, answer in zip(timeline[::2], timeline[1::2], strict=True):
            gap = datetime.fromisoformat(answer["timestamp"]) - datetime.fromisoformat(question["timestamp"])
            assert (question["sender"], answer["sender"]) == ("end_user", "agent")
            assert timedelta(seconds=1) < gap < timedelta(minutes=1), (detail["conversation_id"], gap)


@pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals")
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_demo_without_once_serves_the_dashboard_until_stopped_and_cleans_up(tmp_path: Path, stop: int) -> None:
    scratch = tmp_path / "tmp"
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "demo.py"), "--port", "0", "--timeout", "20"],
        cwd=ROOT, env=demo_env(scratch), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        head = []
        for line in process.stdout:
            head.append(line)
            if line.startswith("Point your app at it"):
                break
        dashboard = re.search(r"^Dashboard: (http://127\.0\.0\.1:\d+/\?key=ags_0+_0+)$", "".join(head), re.MULTILINE)
        assert dashboard is not None, "".join(head)
        assert any(scratch.iterdir())  # the database, while it serves
        page = httpx.get(dashboard[1], timeout=10.0)
        stats = httpx.get(dashboard[1].split("?")[0] + "api/stats/", headers={"Authorization": f"Api-Key {API_KEY}"})
        process.send_signal(stop)
        tail, errors = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert page.status_code == 200 and stats.status_code == 200
    assert process.returncode == 0, errors
    assert "Stopped" in tail and "Traceback" not in errors
    assert list(scratch.iterdir()) == []


def test_demo_reports_a_busy_port() -> None:
    with DevServer() as busy:
        port = busy.url.rsplit(":", 1)[1]
        done = run_example("demo.py", "--once", "--port", port)

    assert done.returncode == 2
    assert f"Cannot listen on 127.0.0.1:{port}" in done.stderr


def test_quickstart_without_endpoint_uses_a_local_api_and_prints_deliveries() -> None:
    done = run_example("quickstart.py")

    assert done.returncode == 0, done.stderr
    assert "using a local AgentSight-compatible API on http://127.0.0.1:" in done.stdout
    results = re.findall(r"^(\w+)\s+(\d{3}) delivered$", done.stdout, flags=re.MULTILINE)
    assert results == [("turn", "200"), ("button", "200"), ("llm", "200")]
    assert "complete=True summary={'delivered': 3, 'failed': 0}" in done.stdout
    arrived = request_lines(done.stdout)
    assert sorted((status, path) for status, path, _ in arrived) == [(200, "/api/ingest/"), (200, "/api/me/")]
    (document,) = [body for _, path, body in arrived if path == "/api/ingest/"]
    (block,) = document["conversations"]
    turn, *children = block["spans"]
    assert [event["attributes"]["agentsight.message.content"] for event in turn["events"]] == [
        "Hello, I need help", "Sure! What can I help you with?"]
    usage = next(span["attributes"] for span in children if span["kind"] == "llm")
    assert (usage["gen_ai.usage.input_tokens"], usage["gen_ai.usage.output_tokens"]) == (100, 25)


@pytest.mark.parametrize(("protocol", "paths"), [
    ("ingest", ["/api/me/", "/api/ingest/"]),
    ("rest", ["/api/conversations/", "/api/track/", "/api/track/", "/api/buttons/", "/api/action_logs/"]),
])
def test_quickstart_delivers_to_agentsight_api_endpoint(protocol: str, paths: list[str]) -> None:
    with DevServer() as api:
        done = run_example("quickstart.py", env=clean_env(AGENTSIGHT_API_ENDPOINT=api.url, AGENTSIGHT_API_KEY=API_KEY,
                                                          AGENTSIGHT_PROTOCOL=protocol))
        arrived = api.accepted()

    assert done.returncode == 0, done.stderr
    assert "local AgentSight-compatible API" not in done.stdout
    assert sorted(request.path for request in arrived) == sorted(paths)
    assert {request.headers["authorization"] for request in arrived} == {f"Api-Key {API_KEY}"}


def test_quickstart_exits_1_and_says_so_when_the_api_rejects() -> None:
    with DevServer() as api:
        api.inject(CannedResponse(400, b'{"conversations": ["This field is required."]}', path="/api/ingest/"))
        done = run_example("quickstart.py", env=clean_env(AGENTSIGHT_API_ENDPOINT=api.url, AGENTSIGHT_API_KEY=API_KEY))

    assert done.returncode == 1
    assert "delivered" not in re.sub(r"summary=.*", "", done.stdout)
    assert done.stdout.count("FAILED") == 3
    assert "summary={'delivered': 0, 'failed': 3}" in done.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="passes a listening socket to the child")
def test_widget_app_runs_under_uvicorn_as_documented() -> None:
    """``uvicorn examples.widget_fastapi:app`` from the repository root, configured from the environment."""
    listener = socket.create_server(("127.0.0.1", 0))
    app_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    with DevServer() as api:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "examples.widget_fastapi:app", "--fd", str(listener.fileno())],
            cwd=ROOT, env=clean_env(AGENTSIGHT_API_ENDPOINT=api.url, AGENTSIGHT_API_KEY=API_KEY),
            pass_fds=[listener.fileno()], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            with httpx.Client(base_url=app_url, timeout=10.0) as client:
                page_load = {"conversation_id": "conv_w1", "customer_id": "user-1", "page_url": "https://x.test/"}
                headers = {"user-agent": "Mozilla/5.0 (iPhone) Mobile"}
                reply = client.post("/api/track-interaction", json=page_load, headers=headers)
                assert reply.json() == {"status": "interaction_tracked", "conversation_id": "conv_w1"}
                click = {"conversation_id": "conv_w1", "label": "Copy conversation", "value": "copy-conversation"}
                reply = client.post("/api/button", json=click)
                assert reply.json() == {"status": "button_tracked", "conversation_id": "conv_w1"}
            eventually(lambda: bool(stored_buttons(api)), TIMEOUT, "the click to be stored")
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.communicate(timeout=TIMEOUT)
            finally:
                listener.close()
                if process.poll() is None:
                    process.kill()
        detail = api.store.get_conversation(api.conversations["conv_w1"]["id"])

    assert detail is not None and detail["initialized"] and detail["is_used"]
    assert detail["device"] == "mobile" and detail["customer_ip_address"] == "127.0.0.1"
    assert [(b["button_event"], b["label"], b["value"]) for b in detail["buttons"]] == [
        ("contact_human_agent", "Copy conversation", "copy-conversation")]


def stored_buttons(api: DevServer) -> list[dict[str, Any]]:
    """Every button click the local AgentSight stored."""
    return [button for conversation in api.store.all_conversations()
            for button in (api.store.get_conversation(conversation["id"]) or {}).get("buttons", [])]


def test_quickstart_0_1_runs_unchanged_and_delivers_at_exit() -> None:
    with DevServer() as api:
        done = run_example("quickstart_0_1.py", env=clean_env(AGENTSIGHT_API_ENDPOINT=api.url,
                                                              AGENTSIGHT_API_KEY=API_KEY))
        assert done.returncode == 0, done.stderr
        (document,) = [request.body for request in api.accepted("/api/ingest/")]
    (block,) = document["conversations"]
    assert block["conversation_id"] == "your_conversation_id"
    turn, tool = sorted(block["spans"], key=lambda span: span["kind"] != "turn")
    assert [event["attributes"]["agentsight.message.content"] for event in turn["events"]] == [
        "What's the weather like today?", "It's sunny, 21°C in Lisbon."]
    assert (tool["kind"], tool["name"]) == ("tool", "lookup_weather")


def test_quickstart_0_1_without_a_key_runs_as_if_the_sdk_were_absent() -> None:
    done = run_example("quickstart_0_1.py", env=clean_env())
    assert done.returncode == 0, done.stderr
    assert "AgentSight disabled: no API key" in done.stderr


def test_support_workflow_against_agentsight_dev(tmp_path: Path) -> None:
    """examples/support_workflow.py seeds a running ``agentsight dev``, then reviews it: the conversation with
    negative feedback is marked, has a ticket with a comment, and its spans are exported."""
    from agentsight.api import AgentSight

    with DevServer() as server:
        result = run_example("support_workflow.py", "--endpoint", server.url, "--seed", "--out", str(tmp_path))
        assert result.returncode == 0, result.stderr
        assert "negative feedback this week: 1 conversation(s): support-102" in result.stdout
        assert "  end_user: I was charged twice!" in result.stdout
        with AgentSight(API_KEY, endpoint=server.url) as ags:
            assert [c["conversation_id"] for c in ags.conversations.list(is_marked=True)] == ["support-102"]
            [ticket] = ags.tickets.list(conversation_id="support-102")
            assert ticket["priority"] == "high" and [c["body"] for c in ticket["comments"]] == [
                "Customer said: Not helpful at all. Reviewing."]
            exported = json.loads((tmp_path / "support-102.spans.json").read_text())
            assert exported == list(ags.spans.list(conversation_id="support-102")) and exported


def test_support_workflow_starts_its_own_dev_server(tmp_path: Path) -> None:
    result = run_example("support_workflow.py", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("started agentsight dev at http://127.0.0.1:")
    assert "ticket 1 opened: Negative feedback on support-102" in result.stdout
    assert (tmp_path / "support-102.spans.json").exists()
