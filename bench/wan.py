"""WAN benchmark: 500 turns delivered to an AgentSight API 50 ms away, for four SDKs in one run.

Run from the project's environment: ``python bench/wan.py [--quick] [--turns N] [--latency S]``
(``make bench-wan``). The SDKs: agentsight-otel with its default protocol (``ingest``) and with
``AGENTSIGHT_PROTOCOL=rest``, upstream ``agentsight==0.1.4`` (installed into
``bench/.upstream-0.1.4-venv`` when missing) and upstream ``agentsight==0.0.18`` (``bench/.upstream-venv``,
shared with ``bench/run.py``), then ours again with no added latency as a reference. Each runs
``bench/wan_workload.py`` in a subprocess of its own against a fresh in-memory ``DevServer`` served by
another subprocess (this script with ``--serve``), which adds the latency to every request (overlapping,
as across a WAN), counts the requests and their body bytes, and is then read back through its API to
check that every message arrived. Prints the results as markdown and writes them to
``bench/RESULTS_WAN.md``; exits 1 when a goal is not met.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from upstream import clean_environment, upstream_python

BENCH = Path(__file__).resolve().parent
WORKLOAD = BENCH / "wan_workload.py"
RESULTS = BENCH / "RESULTS_WAN.md"
API_KEY = "ags_" + "a" * 32 + "_" + "b" * 6
MESSAGES_PER_TURN = 2
BEFORE_TURNS_PER_S = 8.7
"""This project's rate on this benchmark before the change (REST, one request per item)."""
REST_GOAL = 10 * BEFORE_TURNS_PER_S
WORKER_TIMEOUT = 1800
PAGE_SIZE = 100


@dataclass(frozen=True)
class Sdk:
    """One SDK under test: its interpreter, where its ``agentsight`` must come from, which API drives it."""

    label: str
    python: Path
    package_root: Path
    api: str
    env: dict[str, str] = field(default_factory=dict)
    latency: float | None = None
    """The API latency for this row; ``None``: the run's ``--latency``."""


@dataclass(frozen=True)
class Outcome:
    """One SDK's run: the worker's result, the server's request tally and what the server stored."""

    sdk: Sdk
    latency: float
    turns: int
    result: dict[str, Any]
    tally: dict[str, Any]
    messages: int
    buttons: int
    used: int

    @property
    def elapsed(self) -> float:
        return float(self.result["elapsed_s"])

    @property
    def rate(self) -> float:
        return self.turns / self.elapsed

    @property
    def expected(self) -> int:
        return MESSAGES_PER_TURN * self.turns

    @property
    def all_delivered(self) -> bool:
        return self.messages == self.expected and self.buttons == self.turns and self.used == self.turns


# --- the server subprocess ------------------------------------------------------------------------------


def serve(latency: float) -> int:
    """``--serve``: a fresh in-memory DevServer; prints its URL, then answers ``report`` lines on stdin with
    a JSON tally of the requests received so far; stops at end of input."""
    from agentsight.dev import DevServer

    with DevServer(latency=latency, record=True) as server:
        print(json.dumps({"url": server.url}), flush=True)
        for line in sys.stdin:
            if line.strip() == "report":
                print(json.dumps(tally(server.requests, server.max_in_flight)), flush=True)
    return 0


def tally(requests: list[Any], max_in_flight: int) -> dict[str, Any]:
    """Requests by path and status, and the request body bytes as received (gzip counted compressed)."""
    received = list(requests)
    sizes = [request.headers.get("content-length") for request in received if request.method != "GET"]
    return {
        "requests": len(received),
        "bytes": sum(int(size) for size in sizes if size),
        "unsized": sum(not size for size in sizes),
        "gzip": sum(request.headers.get("content-encoding") == "gzip" for request in received),
        "by_path": dict(Counter(f"{request.method} {request.path}" for request in received)),
        "by_status": {str(status): count for status, count in Counter(r.status for r in received).items()},
        "max_in_flight": max_in_flight,
    }


class ServerProcess:
    """``bench/wan.py --serve`` in a child process, with the latency given; a context manager."""

    def __init__(self, latency: float) -> None:
        self.process = subprocess.Popen(
            # -E -s rather than -I: the script's folder (bench/upstream.py) stays importable.
            [sys.executable, "-E", "-s", str(Path(__file__).resolve()), "--serve", "--latency", str(latency)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=clean_environment(),
        )
        self.url: str = json.loads(self._stdout().readline())["url"]

    def _stdout(self) -> IO[str]:
        assert self.process.stdout is not None
        return self.process.stdout

    def report(self) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write("report\n")
        self.process.stdin.flush()
        answer: dict[str, Any] = json.loads(self._stdout().readline())
        return answer

    def get(self, path: str) -> Any:
        """A read through the server's API (its latency applies)."""
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"Api-Key {API_KEY}"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)

    def stored(self) -> tuple[int, int, int]:
        """Messages stored in ``conv-wan-*`` conversations, button clicks and used conversations."""
        messages, used, page = 0, 0, 1
        while True:
            answer = self.get(f"/api/conversations/?page_size={PAGE_SIZE}&page={page}")
            for conversation in answer["results"]:
                if str(conversation["conversation_id"]).startswith("conv-wan-"):
                    messages += len(conversation["messages"])
                    used += bool(conversation["is_used"])
            if not answer.get("next"):
                break
            page += 1
        stats = self.get("/api/stats/")
        buttons = int(stats["buttons"].get("feedback", {}).get("Helpful", 0))
        return messages, buttons, used

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


# --- the SDKs --------------------------------------------------------------------------------------------


def sdks() -> list[Sdk]:
    """The rows of the table, in the order they run."""
    import agentsight

    ours = Path(sys.executable), Path(agentsight.__file__).parent
    v014 = BENCH / ".upstream-0.1.4-venv"
    v0018 = BENCH / ".upstream-venv"
    return [
        Sdk("ours (ingest, default)", *ours, "seed"),
        Sdk("ours (`AGENTSIGHT_PROTOCOL=rest`)", *ours, "seed", {"AGENTSIGHT_PROTOCOL": "rest"}),
        Sdk("upstream agentsight 0.1.4", upstream_python(v014, "0.1.4"), v014, "scopes"),
        Sdk("upstream agentsight 0.0.18", upstream_python(v0018, "0.0.18"), v0018, "seed"),
        Sdk("ours (ingest, default), 0 ms reference", *ours, "seed", latency=0.0),
    ]


def run_sdk(sdk: Sdk, turns: int, latency: float) -> Outcome:
    """One SDK's workload in a fresh interpreter against a fresh server; its stderr (the SDK's log) discarded."""
    print(f"  {sdk.label}: {turns} turns, API {latency * 1e3:.0f} ms away", file=sys.stderr, flush=True)
    with ServerProcess(latency) as server:
        completed = subprocess.run(
            [str(sdk.python), "-I", str(WORKLOAD), sdk.api, server.url, json.dumps({"turns": turns})],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=clean_environment(sdk.env),
            timeout=WORKER_TIMEOUT, check=True,
        )
        result: dict[str, Any] = json.loads(completed.stdout)
        if "error" in result:
            raise RuntimeError(f"{sdk.label} failed:\n{result['error']}")
        if not Path(result["module"]).resolve().is_relative_to(sdk.package_root.resolve()):
            raise RuntimeError(f"the {sdk.label} worker imported agentsight from {result['module']}")
        requests = server.report()  # before the reads below, which the server records too
        messages, buttons, used = server.stored()
    return Outcome(sdk, latency, turns, result, requests, messages, buttons, used)


# --- the report ------------------------------------------------------------------------------------------


def duration(value: float) -> str:
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.1f} ms"
    return f"{value * 1e6:.0f} µs"


def size(value: int) -> str:
    return f"{value / 1024:,.1f} KiB" if value < 1024 * 1024 else f"{value / 1024 / 1024:,.2f} MiB"


def row(outcome: Outcome) -> str:
    result, tally_ = outcome.result, outcome.tally
    stored = f"{outcome.messages:,} / {outcome.expected:,}" + ("" if outcome.all_delivered else " **LOSS**")
    return (
        f"| {outcome.sdk.label} | {outcome.latency * 1e3:.0f} ms | {outcome.rate:,.1f} | {outcome.elapsed:.2f} "
        f"| {tally_['requests']:,} | {size(tally_['bytes'])} | {stored} | {duration(result['turn_wait_s'])} |"
    )


def notes(outcome: Outcome) -> list[str]:
    result, tally_ = outcome.result, outcome.tally
    label = outcome.sdk.label
    lines = [
        f"{label}: requests {', '.join(f'{path} {count:,}' for path, count in sorted(tally_['by_path'].items()))}; "
        f"statuses {tally_['by_status']}; {tally_['requests'] / outcome.turns:.2f} requests a turn; "
        f"{tally_['gzip']} gzip bodies; at most {tally_['max_in_flight']} in flight; "
        f"stored {outcome.buttons:,}/{outcome.turns:,} button clicks, {outcome.used:,}/{outcome.turns:,} used "
        f"conversations; the SDK reported {'complete' if result['complete'] else 'NOT complete'}, "
        f"{result['failed']} failed."
    ]
    if tally_["unsized"]:
        lines.append(f"{label}: {tally_['unsized']} request bodies without Content-Length are not in the byte count.")
    if "send_wait_s" in result:
        lines.append(f"{label}: `send_tracked_data()` blocked the caller {duration(result['send_wait_s'])} "
                     "(median per turn).")
    if "stats" in result:
        counters = ", ".join(f"{key} {value:,}" for key, value in result["stats"].items() if value)
        lines.append(f"{label}: `delivery_stats()` {counters}.")
    return lines


def find(outcomes: list[Outcome], label: str, latency: float) -> Outcome:
    return next(o for o in outcomes if o.sdk.label == label and o.latency == latency)


def goals(outcomes: list[Outcome], latency: float) -> list[tuple[str, bool]]:
    """Each goal with whether it is met; ours counts only when everything was stored."""
    ingest = find(outcomes, "ours (ingest, default)", latency)
    rest = find(outcomes, "ours (`AGENTSIGHT_PROTOCOL=rest`)", latency)
    v014 = find(outcomes, "upstream agentsight 0.1.4", latency)
    return [
        (f"ours (ingest, default) {ingest.rate:,.1f} turns/s ≥ upstream 0.1.4's {v014.rate:,.1f} turns/s, "
         "all delivered", ingest.all_delivered and ingest.rate >= v014.rate),
        (f"ours (rest) {rest.rate:,.1f} turns/s ≥ {REST_GOAL:.0f} turns/s (10× the {BEFORE_TURNS_PER_S} "
         "before the change), all delivered", rest.all_delivered and rest.rate >= REST_GOAL),
    ]


def report(outcomes: list[Outcome], latency: float, turns: int, quick: bool) -> str:
    command = shlex.join([sys.executable, *sys.argv])
    kind = " (quick smoke run)" if quick else ""
    met = goals(outcomes, latency)
    return "\n".join([
        "# WAN benchmark: the AgentSight API 50 ms away" if latency == 0.05 else
        f"# WAN benchmark: the AgentSight API {latency * 1e3:.0f} ms away",
        "",
        f"- Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC{kind}",
        f"- Command: `{command}`",
        f"- Machine: {len(os.sched_getaffinity(0))} cores, {platform.machine()}, "
        f"Python {platform.python_version()}",
        f"- Ours: agentsight-otel {metadata.version('agentsight-otel')} (opentelemetry-sdk "
        f"{metadata.version('opentelemetry-sdk')}), default settings; upstream: agentsight 0.1.4 in "
        "`bench/.upstream-0.1.4-venv`, agentsight 0.0.18 in `bench/.upstream-venv`.",
        f"- Workload: {turns} turns, each a distinct conversation `conv-wan-{{i}}` (customer `customer-1`) with a "
        "question, an answer, a button click and a tool call. Ours and 0.0.18 (same code, the seed API): "
        "`get_or_create_conversation`, `track_question`, `track_answer`, `track_button`, "
        "`track_action(\"lookup_order\", tools_used=..., response=...)`, `send_tracked_data()`. 0.1.4: "
        "`with conversation(...), turn():` `user_message`, a `@tool` `lookup_order`, `agent_message`, `button`.",
        "- Clock: from the first tracking call until the SDK says everything is delivered: ours "
        "`tracker.flush(timeout=600)`, 0.1.4 `agentsight.flush(timeout_ms=600000)`, 0.0.18 its last "
        "`send_tracked_data()` (it posts every item on the caller's thread). 0.1.4 runs with `init(api_key=, "
        "endpoint=)` and every other setting at its default (`export_interval_ms=5000`, `max_queue_size=2048`, "
        "auto-instrumentation and key preflight on); its flush is what ends the run promptly.",
        "- Server: a fresh in-memory `agentsight.dev.DevServer` per row, in its own process (`bench/wan.py "
        "--serve`), adding the latency to every request with an `asyncio` sleep, so concurrent requests "
        "overlap as across a WAN (its listener has `TCP_NODELAY`, so kept-alive connections see no delayed-ACK "
        "stall). Requests and their body bytes are counted as received (`Content-Length`; "
        "gzip bodies compressed), then messages, button clicks and used conversations are read back through "
        "`GET /api/conversations/` and `GET /api/stats/`. Each SDK runs `bench/wan_workload.py` in its own "
        "`python -I` subprocess; their logs are discarded.",
        "",
        "| SDK | API latency | turns/s until all delivered | seconds | requests | bytes on the wire "
        "| messages stored / expected | caller wait per turn (median) |",
        "|---|---|---|---|---|---|---|---|",
        *(row(outcome) for outcome in outcomes),
        "",
        "Goals:",
        "",
        *(f"- {'PASS' if passed else '**FAIL**'}: {text}" for text, passed in met),
        "",
        "Details:",
        "",
        *(f"- {line}" for outcome in outcomes for line in notes(outcome)),
        "",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 turns: a smoke run")
    parser.add_argument("--turns", type=int, default=500, help="turns per SDK (default 500)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to each request (default 0.05)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.latency)
    turns = 50 if args.quick else args.turns
    outcomes = [run_sdk(sdk, turns, args.latency if sdk.latency is None else sdk.latency) for sdk in sdks()]
    text = report(outcomes, args.latency, turns, args.quick)
    RESULTS.write_text(text, encoding="utf-8")
    print(text)
    return 0 if all(passed for _, passed in goals(outcomes, args.latency)) else 1


if __name__ == "__main__":
    sys.exit(main())
