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
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentsight.dev import CannedResponse, DevServer
from agentsight.dev.store import ConversationFilter, DevStore
from tests.conftest import eventually

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TIMEOUT = 60
API_KEY = "ags_" + "0" * 32 + "_" + "0" * 6
REQUEST_LINE = re.compile(r"^(\d{3}) (/api/\S+) (\{.*\})$")

# What the demo's visitors do (examples/demo.py VISITORS): 10 page loads, 6 chats, 3 clicks.
ALL_VISITORS = {f"conv_demo_{n:02d}" for n in range(1, 11)}
QUESTIONS = {
    "conv_demo_01": "Hello, I need help",
    "conv_demo_03": "Where is my order?",
    "conv_demo_05": "How do I return an item?",
    "conv_demo_06": "Do you offer discounts?",
    "conv_demo_08": "I cannot log in",
    "conv_demo_10": "Can I talk to a person?",
}
CLICKS = {
    "conv_demo_01": ("Create ticket", "create-ticket"),
    "conv_demo_05": ("Copy conversation", "copy-conversation"),
    "conv_demo_08": ("Create ticket", "create-ticket"),
}


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


def check_demo_flow(db: Path, output: str) -> None:
    """Assert the demo's visitors produced the seed flow, stored under the right conversations, and was printed."""
    store = DevStore(db)
    try:
        _, conversations = store.list_conversations(ConversationFilter(), offset=0, limit=100)
        details = {c["conversation_id"]: store.get_conversation(c["id"]) for c in conversations}
        stats = store.stats()
    finally:
        store.close()
    assert set(details) == ALL_VISITORS
    assert {cid for cid, detail in details.items() if detail and detail["is_used"]} == set(QUESTIONS)
    for cid, detail in details.items():
        assert detail is not None and detail["initialized"] is True
        assert detail["source"] == "web" and detail["language"] == "en-US"
        assert detail["device"] in {"desktop", "mobile", "tablet"} and detail["metadata"]["widget_loaded"] is True
        kinds = [(item["kind"], item.get("sender") or item.get("action_name") or item.get("label"))
                 for item in detail["timeline"]]
        if cid not in QUESTIONS:
            assert kinds == []
            continue
        assert [item["content"] for item in detail["messages"]] == [QUESTIONS[cid], "Hello from the fake model"]
        # The ingest wire (the default) carries a model call's tokens on its own llm span: no token_usage action.
        assert kinds[:3] == [("message", "end_user"), ("action", "chat openai/gpt-4o-mini-2024-07-18"),
                             ("message", "agent")], kinds
        assert ("action", "token_usage") not in kinds
        assert [(b["label"], b["value"]) for b in detail["buttons"]] == ([CLICKS[cid]] if cid in CLICKS else [])
    assert stats["interaction_rate"] == 60.0 and stats["abandoned"] == 4
    assert stats["buttons"] == {"contact_human_agent": {"Create ticket": 2, "Copy conversation": 1}}
    # Six calls of 11 prompt tokens (4 of them cached, reported apart on the ingest wire) and 7 completion tokens.
    tokens = stats["tokens"]
    assert (tokens["prompt_tokens"], tokens["cache_read_tokens"], tokens["completion_tokens"]) == (42, 24, 42)
    assert tokens["total_tokens"] == 108
    for cid in ALL_VISITORS:
        assert re.search(rf"^{cid} \[(used|initialized only), \w+\]$", output, re.MULTILINE), cid
    assert "Interaction rate: 6 used / 10 initialized conversations = 60% (4 abandoned)" in output
    assert "Buttons contact_human_agent: Create ticket x2, Copy conversation x1" in output
    assert re.search(r"^Dashboard: http://127\.0\.0\.1:\d+/\?key=ags_0+_0+$", output, re.MULTILINE)


def test_demo_once_prints_what_was_stored_and_the_interaction_rate(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    done = run_example("demo.py", "--once", "--port", "0", "--db", str(db), "--timeout", "20")

    assert done.returncode == 0, done.stderr
    check_demo_flow(db, done.stdout)
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_demo_without_once_serves_until_ctrl_c(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "demo.py"), "--port", "0", "--db", str(db), "--timeout", "20"],
        cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        head = []
        for line in process.stdout:
            head.append(line)
            if line.startswith("Serving until Ctrl-C"):
                break
        assert head and head[-1].startswith("Serving until Ctrl-C"), "".join(head)
        app_url = re.search(r"widget backend on (http://127\.0\.0\.1:\d+)", head[0])
        assert app_url is not None, head[0]

        reply = httpx.post(f"{app_url[1]}/api/chat", json={"conversation_id": "conv_demo_02", "message": "Hi"})
        assert reply.json() == {"response": "Hello from the fake model"}
        time.sleep(2.5)  # delivered in the background, and the demo polls once a second
        process.send_signal(signal.SIGINT)
        tail, errors = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0, errors
    store = DevStore(db)
    try:
        assert store.stats()["used"] == 7
    finally:
        store.close()
    assert "Interaction rate: 7 used / 10 initialized conversations = 70% (3 abandoned)" in tail
    assert "Stopping" in tail


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
