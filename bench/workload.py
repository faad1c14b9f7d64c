"""One benchmark measurement, in a fresh interpreter, of whichever ``agentsight`` that interpreter imports.

``bench/run.py`` starts it as ``python -I bench/workload.py NAME ENDPOINT PARAMS_JSON``: with the
project's interpreter it drives agentsight-otel, with ``bench/.upstream-venv``'s the upstream SDK.
Both trackers have the same method names, so the same code drives either; only ``flush()`` (and
the ``delivery=`` settings) are ours alone. ``-I`` keeps the script's folder, ``PYTHONPATH`` and
the user site off ``sys.path``. Prints one JSON object on stdout: the result, or ``{"error": ...}``.
Self-contained: it cannot import anything from ``bench/``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import traceback
from array import array
from collections.abc import Callable
from typing import Any

import agentsight
from agentsight import ConversationTracker

OURS = hasattr(ConversationTracker, "flush")
API_KEY = "ags_" + "a" * 32 + "_" + "b" * 6
QUESTION = "How do I reset my password?"
ANSWER = "Open Settings, then Security, and choose Reset password."
BUTTON = ("feedback", "Helpful", "yes")
CALL_ARGS: dict[str, tuple[str, ...]] = {"track_question": (QUESTION,), "track_button": BUTTON}
PAYLOADS_PER_TURN = 5  # conversation, question, answer, button, token usage (an action)


def rss_kib() -> int:
    """This process's resident set size in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS line in /proc/self/status")


def track_turn(tracker: Any, conversation_id: str) -> None:
    """Track one 5-payload turn: the conversation, a question, an answer, a button and token usage."""
    tracker.get_or_create_conversation(conversation_id, customer_id="customer-1")
    tracker.track_question(QUESTION)
    tracker.track_answer(ANSWER)
    tracker.track_button(*BUTTON)
    tracker.track_token_usage(prompt_tokens=120, completion_tokens=80, total_tokens=200)


def failures(tracker: Any, sent: list[dict[str, Any]]) -> int:
    """Payloads that did not get through: ours from ``flush()``, upstream's from its send results."""
    settled = tracker.flush(timeout=300)["items"] if OURS else [item for result in sent for item in result["items"]]
    return sum(not item["success"] for item in settled)


def per_call(endpoint: str, method: str, batches: int, calls: int) -> dict[str, Any]:
    """Median ns per call of ``method`` over ``batches`` batches of ``calls`` calls in one open conversation."""
    tracker = ConversationTracker(api_key=API_KEY, endpoint=endpoint)
    tracker.get_or_create_conversation("bench-per-call")
    call, args = getattr(tracker, method), CALL_ARGS[method]
    per_batch = []
    for _ in range(batches + 1):  # the first batch warms up and is not counted
        start = time.perf_counter_ns()
        for _ in range(calls):
            call(*args)
        per_batch.append((time.perf_counter_ns() - start) / calls)
    return {"ns_per_call": statistics.median(per_batch[1:])}


def send_wait(endpoint: str, turns: int) -> dict[str, Any]:
    """Median seconds ``send_tracked_data()`` blocks the caller for a 5-payload turn; then what failed."""
    tracker = ConversationTracker(api_key=API_KEY, endpoint=endpoint)
    waits, sent = [], []
    for turn in range(turns):
        track_turn(tracker, f"bench-send-{turn}")
        start = time.perf_counter()
        sent.append(tracker.send_tracked_data())
        waits.append(time.perf_counter() - start)
    return {"median_s": statistics.median(waits), "failed": failures(tracker, sent)}


def throughput(endpoint: str, turns: int) -> dict[str, Any]:
    """Payloads per second from the first tracking call until every turn is delivered (ours: ``flush()``)."""
    tracker = ConversationTracker(api_key=API_KEY, endpoint=endpoint)
    sent = []
    start = time.perf_counter()
    for turn in range(turns):
        track_turn(tracker, f"bench-throughput-{turn}")
        sent.append(tracker.send_tracked_data())
    failed = failures(tracker, sent)
    elapsed = time.perf_counter() - start
    return {"payloads_per_s": turns * PAYLOADS_PER_TURN / elapsed, "elapsed_s": elapsed, "failed": failed}


def outage(endpoint: str, turns: int, sample_every: int, backoff_initial: float, backoff_max: float) -> dict[str, Any]:
    """Track ``turns`` turns as fast as possible while the API is down; RSS every ``sample_every`` turns.

    Ours runs with the default delivery limits; only the back-off is shortened, so the delivery
    threads keep retrying through the whole (compressed) outage.
    """
    options: dict[str, Any] = {}
    if OURS:
        from agentsight.config import DeliverySettings

        options["delivery"] = DeliverySettings(backoff_initial=backoff_initial, backoff_max=backoff_max)
    tracker = ConversationTracker(api_key=API_KEY, endpoint=endpoint, **options)
    waits = array("d", bytes(8 * turns))  # preallocated: recording a wait allocates nothing
    samples = [{"turns": 0, "rss_kib": rss_kib(), "dropped": 0}]
    start = time.perf_counter()
    for turn in range(1, turns + 1):
        track_turn(tracker, f"bench-outage-{turn}")
        sent_at = time.perf_counter()
        tracker.send_tracked_data()
        waits[turn - 1] = time.perf_counter() - sent_at
        if turn % sample_every == 0:
            dropped = tracker.delivery_stats()["payloads_dropped_queue_full"] if OURS else 0
            samples.append({"turns": turn, "rss_kib": rss_kib(), "dropped": dropped})
    return {
        "elapsed_s": time.perf_counter() - start,
        "median_send_s": statistics.median(waits),
        "samples": samples,
        "stats": tracker.delivery_stats() if OURS else {},
    }


WORKLOADS: dict[str, Callable[..., dict[str, Any]]] = {
    "per_call": per_call,
    "send_wait": send_wait,
    "throughput": throughput,
    "outage": outage,
}


def main() -> None:
    name, endpoint, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    try:
        result = WORKLOADS[name](endpoint, **params)
    except Exception:
        result = {"error": traceback.format_exc()}
    result["module"] = agentsight.__file__
    print(json.dumps(result), flush=True)
    # Skip the interpreter's exit hooks: ours would deliver the per-call benchmark's open turn, or keep
    # retrying the outage queue for up to 30 s. Nothing measured happens after this.
    os._exit(0)


if __name__ == "__main__":
    main()
