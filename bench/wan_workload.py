"""One WAN benchmark run, in a fresh interpreter, of whichever ``agentsight`` that interpreter imports.

``bench/wan.py`` starts it as ``python -I bench/wan_workload.py API ENDPOINT PARAMS_JSON``. ``API`` is
``seed`` (``ConversationTracker``: agentsight-otel, either protocol, and upstream 0.0.18 run the same code)
or ``scopes`` (upstream 0.1.x's module-level ``agentsight.init()`` / ``conversation()`` / ``turn()``).
Each turn is a distinct conversation ``conv-wan-{i}`` with two messages, a button and a tool call. The
clock runs from the first tracking call until the SDK says everything was delivered (ours:
``flush()``; upstream 0.1.x: ``flush()``; upstream 0.0.18: its last ``send_tracked_data()`` returned).
Prints one JSON object on stdout: the result, or ``{"error": ...}``. Self-contained: ``-I`` keeps
``bench/`` off ``sys.path``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import agentsight

API_KEY = "ags_" + "a" * 32 + "_" + "b" * 6
CUSTOMER = "customer-1"
QUESTION = "Where is my order A-1?"
ANSWER = "Order A-1 has shipped and arrives on Thursday."
BUTTON = ("feedback", "Helpful", "yes")
FLUSH_TIMEOUT_S = 600


def conversation_id(turn: int) -> str:
    return f"conv-wan-{turn}"


def seed(endpoint: str, turns: int) -> dict[str, Any]:
    """The seed API (``ConversationTracker``): five tracking calls and ``send_tracked_data()`` per turn."""
    from agentsight import ConversationTracker

    tracker = ConversationTracker(api_key=API_KEY, endpoint=endpoint)
    ours = hasattr(tracker, "flush")
    turn_waits: list[float] = []
    send_waits: list[float] = []
    failed = 0
    start = time.perf_counter()
    for turn in range(turns):
        began = time.perf_counter()
        tracker.get_or_create_conversation(conversation_id(turn), customer_id=CUSTOMER)
        tracker.track_question(QUESTION)
        tracker.track_answer(ANSWER)
        tracker.track_button(*BUTTON)
        tracker.track_action("lookup_order", tools_used={"order_id": "A-1"}, response="shipped")
        sending = time.perf_counter()
        sent = tracker.send_tracked_data()
        ended = time.perf_counter()
        turn_waits.append(ended - began)
        send_waits.append(ended - sending)
        if not ours:  # upstream 0.0.18 reports each item's delivery in the result
            failed += sum(not item.get("success", False) for item in sent.get("items", []))
    complete = True
    if ours:
        flushed = tracker.flush(timeout=FLUSH_TIMEOUT_S)
        complete = bool(flushed["complete"])
        failed = sum(not item["success"] for item in flushed["items"])
    elapsed = time.perf_counter() - start
    result: dict[str, Any] = {
        "elapsed_s": elapsed,
        "turn_wait_s": statistics.median(turn_waits),
        "send_wait_s": statistics.median(send_waits),
        "complete": complete,
        "failed": failed,
    }
    if ours:
        result["stats"] = tracker.delivery_stats()
    return result


def scopes(endpoint: str, turns: int) -> dict[str, Any]:
    """Upstream 0.1.x: a conversation scope and a turn per turn; its defaults, then ``flush()``."""
    if not agentsight.init(api_key=API_KEY, endpoint=endpoint):
        raise RuntimeError("agentsight.init() left the SDK disabled")

    @agentsight.tool
    def lookup_order(order_id: str) -> str:
        return "shipped"

    turn_waits: list[float] = []
    start = time.perf_counter()
    for turn in range(turns):
        began = time.perf_counter()
        with agentsight.conversation(conversation_id(turn), customer_id=CUSTOMER), agentsight.turn():
            agentsight.user_message(QUESTION)
            lookup_order(order_id="A-1")
            agentsight.agent_message(ANSWER)
            agentsight.button(*BUTTON)
        turn_waits.append(time.perf_counter() - began)
    flushed = agentsight.flush(timeout_ms=FLUSH_TIMEOUT_S * 1000)
    elapsed = time.perf_counter() - start
    return {"elapsed_s": elapsed, "turn_wait_s": statistics.median(turn_waits), "complete": flushed, "failed": 0}


WORKLOADS: dict[str, Callable[..., dict[str, Any]]] = {"seed": seed, "scopes": scopes}


def main() -> None:
    api, endpoint, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    try:
        result = WORKLOADS[api](endpoint, **params)
    except Exception:
        result = {"error": traceback.format_exc()}
    result["module"] = agentsight.__file__
    print(json.dumps(result), flush=True)
    # Skip the interpreter's exit hooks: everything measured has happened, and what the SDK did not
    # deliver by now is reported as lost rather than delivered late.
    os._exit(0)


if __name__ == "__main__":
    main()
