"""``make demo``: the "Track Interaction" widget flow end to end, on 127.0.0.1 only.

1. Starts ``agentsight dev`` in-process (:class:`agentsight.dev.server.DevServer`, port 8321 unless ``--port``;
   ``--port 0`` takes any free port; a fresh database unless ``--db``) and a local stand-in model
   (:class:`agentsight.dev.local_llm.FakeLLMServer`), and points ``AGENTSIGHT_API_ENDPOINT`` / ``AGENTSIGHT_API_KEY``
   and ``OPENAI_BASE_URL`` at them.
2. Serves the guide's FastAPI backend (``examples/widget_fastapi.py``) under uvicorn in a background thread;
   its tracker instruments the ``openai`` client, so each answer's model call lands in the turn.
3. Simulates visitors with httpx: every one loads the page (``/api/track-interaction``), some open the
   chat (``/api/chat``) and some of those click a button (``/api/button``); visitors run concurrently.
4. Flushes the widget's tracker, then prints what the dev server stored (one line per conversation and
   one per tracked item), the interaction rate, button clicks, token totals and the dashboard URL.

With ``--once`` it then exits; otherwise it keeps serving, printing the rate when it changes, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from agentsight.dev import DevServer
from agentsight.dev.local_llm import FakeLLMServer
from agentsight.dev.store import ConversationFilter

LOCAL_API_KEY = "ags_" + "0" * 32 + "_" + "0" * 6
USER_AGENTS = {
    "desktop": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
    "mobile": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile/15E148",
    "tablet": "Mozilla/5.0 (Linux; Android 14; Tablet) Chrome/126.0",
}


@dataclass(frozen=True)
class Visitor:
    """One simulated page visit: who, on what device, and how far they go with the chat widget."""

    conversation_id: str
    customer_id: str
    device: str
    page_url: str
    message: str | None = None
    """What they ask in the chat, or ``None`` when they never open it."""
    button: tuple[str, str] | None = None
    """The ``(label, value)`` of the button they click after chatting, if any."""


VISITORS = [
    Visitor("conv_demo_01", "user-01", "desktop", "https://shop.example/pricing", "Hello, I need help",
            ("Create ticket", "create-ticket")),
    Visitor("conv_demo_02", "user-02", "mobile", "https://shop.example/"),
    Visitor("conv_demo_03", "user-03", "desktop", "https://shop.example/orders", "Where is my order?"),
    Visitor("conv_demo_04", "user-04", "tablet", "https://shop.example/"),
    Visitor("conv_demo_05", "user-05", "mobile", "https://shop.example/returns", "How do I return an item?",
            ("Copy conversation", "copy-conversation")),
    Visitor("conv_demo_06", "user-06", "desktop", "https://shop.example/pricing", "Do you offer discounts?"),
    Visitor("conv_demo_07", "user-07", "desktop", "https://shop.example/"),
    Visitor("conv_demo_08", "user-08", "mobile", "https://shop.example/account", "I cannot log in",
            ("Create ticket", "create-ticket")),
    Visitor("conv_demo_09", "user-09", "tablet", "https://shop.example/pricing"),
    Visitor("conv_demo_10", "user-10", "desktop", "https://shop.example/faq", "Can I talk to a person?"),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options: ``--port`` (agentsight dev, 0 = any free port), ``--db``, ``--app-port``, ``--once``."""
    parser = argparse.ArgumentParser(description="The Track Interaction widget flow against agentsight dev")
    parser.add_argument("--port", type=int, default=8321, help="port of agentsight dev (0: any free port)")
    parser.add_argument("--db", default=None, help="SQLite file of agentsight dev (default: a fresh one)")
    parser.add_argument("--app-port", type=int, default=0, help="port of the widget backend (default: any free port)")
    parser.add_argument("--once", action="store_true", help="exit after printing instead of serving until Ctrl-C")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the tracked data")
    return parser.parse_args(argv)


def start_app(port: int) -> tuple[uvicorn.Server, threading.Thread, str]:
    """Serve the widget backend on 127.0.0.1 in a daemon thread; returns the server, its thread and base URL.

    Imports ``widget_fastapi`` here, so its module-level tracker sees the environment set by :func:`main`.
    """
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from widget_fastapi import app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="widget-app", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the widget app did not start")
        time.sleep(0.01)
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"


async def visit(client: httpx.AsyncClient, visitor: Visitor) -> None:
    """What the guide's frontend does for one visitor: page load, then maybe chat, then maybe a button."""
    headers = {"user-agent": USER_AGENTS[visitor.device]}
    page_load = {"conversation_id": visitor.conversation_id, "customer_id": visitor.customer_id,
                 "page_url": visitor.page_url}
    (await client.post("/api/track-interaction", json=page_load, headers=headers)).raise_for_status()
    if visitor.message is None:
        return
    chat = {"conversation_id": visitor.conversation_id, "customer_id": visitor.customer_id,
            "message": visitor.message}
    (await client.post("/api/chat", json=chat, headers=headers)).raise_for_status()
    if visitor.button is None:
        return
    label, value = visitor.button
    click = {"conversation_id": visitor.conversation_id, "customer_id": visitor.customer_id,
             "button_event": "contact_human_agent", "label": label, "value": value}
    (await client.post("/api/button", json=click, headers=headers)).raise_for_status()


async def simulate(app_url: str, visitors: list[Visitor]) -> None:
    """Run all visitors concurrently against the widget backend."""
    async with httpx.AsyncClient(base_url=app_url, timeout=10.0) as client:
        await asyncio.gather(*(visit(client, visitor) for visitor in visitors))


def stored(server: DevServer) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The dev server's stats and every conversation with its timeline, oldest first."""
    store = server.store
    assert store is not None
    _, listed = store.list_conversations(ConversationFilter(), offset=0, limit=100)
    details = [store.get_conversation(conversation["id"]) for conversation in reversed(listed)]
    return store.stats(), [detail for detail in details if detail is not None]


def describe(item: dict[str, Any]) -> str:
    """One tracked item as a short line."""
    kind = item["kind"]
    if kind == "message":
        return f"{item['sender']:8} {json.dumps(item['content'], ensure_ascii=False)}"
    if kind == "button":
        return f"button   {item['button_event']}: {item['label']} ({item['value']})"
    if kind == "action":
        extra = json.dumps(item["metadata"], separators=(",", ":")) if item["action_name"] == "token_usage" else (
            f"{item.get('duration_ms')} ms")
        return f"action   {item['action_name']} {extra}"
    return f"{kind:8} {json.dumps(item.get('files', []))}"


def print_stored(server: DevServer) -> dict[str, Any]:
    """Print the conversations and their timelines as stored; returns the stats."""
    stats, conversations = stored(server)
    print("Stored by agentsight dev:", flush=True)
    for conversation in conversations:
        state = "used" if conversation["is_used"] else "initialized only"
        print(f"{conversation['conversation_id']} [{state}, {conversation['device']}]", flush=True)
        for item in conversation["timeline"]:
            print(f"    {describe(item)}", flush=True)
    return stats


def print_rate(stats: dict[str, Any]) -> None:
    """Print the interaction rate, button clicks and token totals."""
    print(f"Interaction rate: {stats['used']} used / {stats['initialized']} initialized conversations = "
          f"{stats['interaction_rate']:.0f}% ({stats['abandoned']} abandoned)", flush=True)
    for event, labels in stats["buttons"].items():
        clicks = ", ".join(f"{label} x{count}" for label, count in labels.items())
        print(f"Buttons {event}: {clicks}", flush=True)
    tokens = stats["tokens"]
    print(f"Tokens: prompt {tokens['prompt_tokens']}, completion {tokens['completion_tokens']}, "
          f"total {tokens['total_tokens']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the process exit code (1 when the tracked data did not all arrive)."""
    args = parse_args(argv)
    db = Path(args.db) if args.db else Path(tempfile.mkdtemp(prefix="agentsight-demo-")) / "agentsight-dev.db"
    server = DevServer("127.0.0.1", args.port, db)
    try:
        server.start()
    except OSError as error:
        print(f"Cannot listen on 127.0.0.1:{args.port} ({error}); choose another --port (0: any free port)",
              file=sys.stderr)
        return 2
    model = FakeLLMServer().start()
    os.environ.update({"AGENTSIGHT_API_ENDPOINT": server.url, "AGENTSIGHT_API_KEY": LOCAL_API_KEY,
                       "OPENAI_BASE_URL": model.openai_base_url, "OPENAI_API_KEY": "local-stand-in"})
    app_server, app_thread, app_url = start_app(args.app_port)
    from widget_fastapi import tracker

    print(f"agentsight dev on {server.url} (database {db}); widget backend on {app_url}; "
          f"stand-in model on {model.url}", flush=True)
    try:
        engaged = sum(1 for v in VISITORS if v.message is not None)
        clicked = sum(1 for v in VISITORS if v.button is not None)
        print(f"Simulating {len(VISITORS)} page loads, {engaged} chats, {clicked} button clicks", flush=True)
        asyncio.run(simulate(app_url, VISITORS))
        flushed = tracker.flush(timeout=args.timeout)
        stats = print_stored(server)
        print_rate(stats)
        print(f"Dashboard: {server.url}/?key={LOCAL_API_KEY}", flush=True)
        failed = [item for item in flushed["items"] if not item["success"]]
        if not flushed["complete"] or failed:
            print(f"Not everything was delivered within {args.timeout:.0f}s: {failed}", file=sys.stderr, flush=True)
            return 1
        if args.once:
            return 0
        print(f"Serving until Ctrl-C; try: curl -X POST {app_url}/api/chat -H 'content-type: application/json' "
              """-d '{"conversation_id": "conv_demo_02", "message": "Hi"}'""", flush=True)
        try:
            while True:
                time.sleep(1.0)
                latest = stored(server)[0]
                if latest != stats:
                    stats = latest
                    print_rate(stats)
        except KeyboardInterrupt:
            print("Stopping", flush=True)
        return 0
    finally:
        app_server.should_exit = True
        app_thread.join(timeout=5)
        tracker.shutdown()
        model.stop()
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
