"""``make demo``: the "Track Interaction" widget flow end to end, on 127.0.0.1 only.

1. Starts a local AgentSight-compatible API (:class:`agentsight.local_server.LocalAgentSightServer`,
   port 8321 unless ``--port``; ``--port 0`` takes any free port) and points ``AGENTSIGHT_API_ENDPOINT``
   and ``AGENTSIGHT_API_KEY`` at it.
2. Serves the guide's FastAPI backend (``examples/widget_fastapi.py``) under uvicorn in a background thread.
3. Simulates visitors with httpx: every one loads the page (``/api/track-interaction``), some open the
   chat (``/api/chat``) and some of those click a button (``/api/button``); visitors run concurrently.
4. Waits until the API received what that produces, prints one line per request
   (``<status> <path> <body as compact JSON>``, null fields and the timestamp left out) and the
   interaction rate (used / initialized conversations, as the API stored them).

With ``--once`` it then exits; otherwise it keeps both servers up, printing new arrivals, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from agentsight.local_server import LocalAgentSightServer, ReceivedRequest

LOCAL_API_KEY = "ags_" + "0" * 32 + "_" + "0" * 6
CONVERSATIONS_PATH = "/api/conversations/"
TRACK_PATH = "/api/track/"
BUTTONS_PATH = "/api/buttons/"
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
    """Command-line options: ``--port`` (API, 0 = any free port), ``--app-port`` and ``--once``."""
    parser = argparse.ArgumentParser(description="The Track Interaction widget flow against a local AgentSight API")
    parser.add_argument("--port", type=int, default=8321, help="port of the local AgentSight API (0: any free port)")
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


def expected_counts(visitors: list[Visitor]) -> dict[str, int]:
    """Requests the API must receive at least, by path: page loads and chats post conversations,
    each chat a question and an answer, each click a button."""
    chats = sum(1 for v in visitors if v.message is not None)
    return {
        CONVERSATIONS_PATH: len(visitors) + chats,
        TRACK_PATH: 2 * chats,
        BUTTONS_PATH: sum(1 for v in visitors if v.message is not None and v.button is not None),
    }


def wait_for_arrivals(api: LocalAgentSightServer, expected: dict[str, int], timeout: float, quiet: float = 0.3) -> bool:
    """Wait until the API accepted at least ``expected`` requests per path and then nothing new came for
    ``quiet`` seconds. Returns False when ``timeout`` passed first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(len(api.accepted(path)) >= count for path, count in expected.items()):
            seen = len(api.requests)
            time.sleep(quiet)
            if len(api.requests) == seen:
                return True
        else:
            api.wait_for(len(api.requests) + 1, timeout=0.1)
    return False


def format_request(request: ReceivedRequest) -> str:
    """``<status> <path> <compact JSON body>``, without null fields and the timestamp."""
    body = {key: value for key, value in request.body.items() if value is not None and key != "timestamp"}
    return f"{request.status} {request.path} {json.dumps(body, separators=(',', ':'), ensure_ascii=False)}"


def interaction_rate(api: LocalAgentSightServer) -> tuple[int, int]:
    """``(used, initialized)`` conversations as the API stored them."""
    conversations = list(api.conversations.values())
    return sum(1 for stored in conversations if stored["is_used"]), len(conversations)


def print_new(api: LocalAgentSightServer, seen: int) -> int:
    """Print the requests after the first ``seen``; returns the new count seen."""
    arrived = list(api.requests)
    for request in arrived[seen:]:
        print(format_request(request), flush=True)
    return len(arrived)


def print_rate(api: LocalAgentSightServer) -> None:
    """Print the interaction rate: used / initialized conversations."""
    used, initialized = interaction_rate(api)
    rate = 100 * used / initialized if initialized else 0.0
    print(f"Interaction rate: {used} used / {initialized} initialized conversations = {rate:.0f}%", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the process exit code (1 when the tracked data did not all arrive)."""
    args = parse_args(argv)
    try:
        api = LocalAgentSightServer("127.0.0.1", args.port)
    except OSError as error:
        print(f"Cannot listen on 127.0.0.1:{args.port} ({error}); choose another --port (0: any free port)",
              file=sys.stderr)
        return 2
    with api:
        os.environ["AGENTSIGHT_API_ENDPOINT"] = api.url
        os.environ["AGENTSIGHT_API_KEY"] = LOCAL_API_KEY
        app_server, app_thread, app_url = start_app(args.app_port)
        print(f"AgentSight-compatible API on {api.url}; widget backend on {app_url}", flush=True)
        try:
            engaged = sum(1 for v in VISITORS if v.message is not None)
            clicked = sum(1 for v in VISITORS if v.button is not None)
            print(f"Simulating {len(VISITORS)} page loads, {engaged} chats, {clicked} button clicks", flush=True)
            asyncio.run(simulate(app_url, VISITORS))
            complete = wait_for_arrivals(api, expected_counts(VISITORS), args.timeout)
            print("Requests received by the API:", flush=True)
            seen = print_new(api, 0)
            print_rate(api)
            if not complete:
                print(f"Not everything arrived within {args.timeout:.0f}s", file=sys.stderr, flush=True)
                return 1
            if args.once:
                return 0
            print(f"Serving until Ctrl-C; try: curl -X POST {app_url}/api/chat -H 'content-type: application/json' "
                  """-d '{"conversation_id": "conv_demo_02", "message": "Hi"}'""", flush=True)
            rate = interaction_rate(api)
            try:
                while True:
                    api.wait_for(seen + 1, timeout=1.0)
                    seen = print_new(api, seen)
                    if interaction_rate(api) != rate:
                        rate = interaction_rate(api)
                        print_rate(api)
            except KeyboardInterrupt:
                print("Stopping", flush=True)
            return 0
        finally:
            app_server.should_exit = True
            app_thread.join(timeout=5)
            from widget_fastapi import tracker

            tracker.shutdown()


if __name__ == "__main__":
    sys.exit(main())
