"""Benchmarks: agentsight-otel against the upstream SDK (``agentsight==0.0.18``), in the same run.

Run from the project's environment: ``python bench/run.py [--quick]`` (``make bench``). Installs the
upstream SDK into ``bench/.upstream-venv`` when it is not there, then runs every measurement for
each SDK in subprocesses of their own (``bench/workload.py`` under that SDK's interpreter), against
a local AgentSight API (:class:`DevServer`) served from this process, or a refused
loopback port for the outage. Prints the results as markdown and writes them to ``bench/RESULTS.md``;
exits 1 when one of our goals is not met.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import agentsight
from agentsight.dev import DevServer
from upstream import clean_environment, upstream_python

BENCH = Path(__file__).resolve().parent
WORKLOAD = BENCH / "workload.py"
RESULTS = BENCH / "RESULTS.md"
UPSTREAM_VENV = BENCH / ".upstream-venv"
UPSTREAM_VERSION = "0.0.18"
API_LATENCY = 0.02
PAYLOADS_PER_TURN = 5
OUTAGE_BACKOFF = {"backoff_initial": 0.01, "backoff_max": 0.1}
FLAT_LIMIT_KIB = 1024  # allocator noise; a leak of 20 bytes a turn would pass it within 55,000 turns
WORKER_TIMEOUT = 900


@dataclass(frozen=True)
class Counts:
    """How much work each measurement does."""

    batches: int
    calls: int
    send_turns: int
    throughput_turns: int
    throughput_repeats: int
    outage_turns: int
    outage_sample_every: int
    upstream_outage_turns: int


FULL = Counts(
    batches=20,
    calls=1000,
    send_turns=20,
    throughput_turns=300,
    throughput_repeats=5,
    outage_turns=60_000,
    outage_sample_every=5_000,
    upstream_outage_turns=2,
)
QUICK = Counts(
    batches=5,
    calls=1000,
    send_turns=20,
    throughput_turns=60,
    throughput_repeats=1,
    outage_turns=10_000,
    outage_sample_every=1_000,
    upstream_outage_turns=1,
)


Run = tuple[dict[str, Any], int]
"""A workload's result and how many of its items (questions, answers, buttons) the local API stored."""
ITEMS_PER_TURN = 3


@dataclass(frozen=True)
class Side:
    """One SDK under test: the interpreter that runs its workloads and where its ``agentsight`` must come from."""

    name: str
    python: Path
    package_root: Path
    protocol: str | None = None
    """``AGENTSIGHT_PROTOCOL`` for the workers (``None``: the SDK's default)."""


@dataclass(frozen=True)
class Row:
    """One line of the results table; ``passed`` is ``None`` for a figure with no goal."""

    measurement: str
    ours: str
    upstream: str
    ratio: str
    goal: str
    passed: bool | None

    def markdown(self) -> str:
        result = "—" if self.passed is None else ("PASS" if self.passed else "**FAIL**")
        return f"| {self.measurement} | {self.ours} | {self.upstream} | {self.ratio} | {self.goal} | {result} |"


def upstream_side() -> Side:
    """The scratch venv with the upstream SDK, created and installed first when needed."""
    return Side("upstream", upstream_python(UPSTREAM_VENV, UPSTREAM_VERSION), UPSTREAM_VENV)


def run_worker(side: Side, workload: str, endpoint: str, **params: Any) -> dict[str, Any]:
    """Run one workload in a fresh interpreter of ``side``; its stderr (the SDK's log) goes to /dev/null."""
    print(f"  {workload} {json.dumps(params)} ({side.name})", file=sys.stderr, flush=True)
    environment = clean_environment({"AGENTSIGHT_PROTOCOL": side.protocol} if side.protocol else None)
    completed = subprocess.run(
        [str(side.python), "-I", str(WORKLOAD), workload, endpoint, json.dumps(params)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=environment,
        timeout=WORKER_TIMEOUT,
        check=True,
    )
    result: dict[str, Any] = json.loads(completed.stdout)
    if "error" in result:
        raise RuntimeError(f"{workload} failed for {side.name}:\n{result['error']}")
    if not Path(result["module"]).resolve().is_relative_to(side.package_root.resolve()):
        raise RuntimeError(f"the {side.name} worker imported agentsight from {result['module']}")
    return result


def on_server(side: Side, workload: str, latency: float = 0.0, **params: Any) -> Run:
    """Run a workload against a fresh local API; also returns how many of its items the API stored.

    Counted in the store, so both wires (and both SDKs) are checked alike: what reached the dashboard.
    """
    with DevServer(latency=latency, record=False) as server:
        result = run_worker(side, workload, server.url, **params)
        details = [server.store.get_conversation(c["id"]) or {} for c in server.store.all_conversations()]
        return result, sum(len(d.get("messages", ())) + len(d.get("buttons", ())) for d in details)


@contextmanager
def refused_endpoint() -> Iterator[str]:
    """A loopback URL that refuses connections: its port is bound but never listened on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def seconds(value: float) -> str:
    """A duration with a unit that suits it."""
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.1f} ms"
    return f"{value * 1e6:.1f} µs"


def ratio(ours: float, upstream: float) -> str:
    return f"{ours / upstream:.3g}×"


def delivered_row(what: str, ours: list[Run], upstream: list[Run], turns: int) -> Row:
    """Whether the API stored every item of ``turns`` turns in each run (ours counted after ``flush()``)."""
    expected = turns * ITEMS_PER_TURN

    def tally(runs: list[Run]) -> tuple[int, int, int]:
        return sum(accepted for _, accepted in runs), sum(result["failed"] for result, _ in runs), expected * len(runs)

    def cell(runs: list[Run]) -> str:
        accepted, failed, total = tally(runs)
        return f"{accepted:,}/{total:,} stored, {failed} failed"

    accepted, failed, total = tally(ours)
    return Row(what, cell(ours), cell(upstream), "", f"all {total:,}", accepted == total and failed == 0)


def per_call_rows(ours: Side, upstream: Side, counts: Counts) -> list[Row]:
    """(a) What one tracking call costs the caller, inside an open conversation."""
    rows = []
    with refused_endpoint() as url:  # the calls only record: nothing is sent
        for method in ("track_question", "track_button"):
            params = {"method": method, "batches": counts.batches, "calls": counts.calls}
            mine, theirs = (run_worker(side, "per_call", url, **params)["ns_per_call"] for side in (ours, upstream))
            rows.append(
                Row(
                    f"(a) `{method}` per call, median of {counts.batches} batches × {counts.calls:,}",
                    seconds(mine / 1e9),
                    seconds(theirs / 1e9),
                    ratio(mine, theirs),
                    "≤ 5 µs and ≤ 0.5×",
                    mine <= 5_000 and mine <= theirs / 2,
                )
            )
    return rows


def send_wait_rows(ours: Side, upstream: Side, counts: Counts) -> list[Row]:
    """(b) How long ``send_tracked_data()`` blocks for a 5-payload turn when the API is 20 ms away."""
    turns = counts.send_turns
    mine, theirs = (on_server(side, "send_wait", latency=API_LATENCY, turns=turns) for side in (ours, upstream))
    wait_mine, wait_theirs = mine[0]["median_s"], theirs[0]["median_s"]
    return [
        Row(
            f"(b) `send_tracked_data()` wait, 5-payload turn, API {API_LATENCY * 1e3:.0f} ms away, median of {turns}",
            seconds(wait_mine),
            seconds(wait_theirs),
            ratio(wait_mine, wait_theirs),
            "≤ 0.01× (≥ 100× shorter)",
            wait_mine * 100 <= wait_theirs,
        ),
        delivered_row("(b) items stored", [mine], [theirs], turns),
    ]


def throughput_rows(ours: Side, upstream: Side, counts: Counts) -> tuple[list[Row], list[str]]:
    """(c) Payloads per second into a local API with no added latency, distinct conversations; median of runs.

    Ours on its default wire (ingest) against upstream; ours on the REST wire too, upstream's own wire.
    """
    turns, repeats = counts.throughput_turns, counts.throughput_repeats
    ours_rest = Side("ours (rest)", ours.python, ours.package_root, "rest")
    runs: dict[str, list[Run]] = {ours.name: [], ours_rest.name: [], upstream.name: []}
    for _ in range(repeats):  # alternate the SDKs so drift in the machine's state touches all alike
        for side in (ours, ours_rest, upstream):
            runs[side.name].append(on_server(side, "throughput", turns=turns))
    rates = {name: [result["payloads_per_s"] for result, _ in side_runs] for name, side_runs in runs.items()}
    mine, theirs = statistics.median(rates[ours.name]), statistics.median(rates[upstream.name])
    mine_rest = statistics.median(rates[ours_rest.name])
    rows = [
        Row(
            f"(c) delivery throughput, {turns} turns × {PAYLOADS_PER_TURN} payloads (payloads/s), median of {repeats}",
            f"{mine:,.0f}",
            f"{theirs:,.0f}",
            ratio(mine, theirs),
            "≥ 3×",
            mine >= 3 * theirs,
        ),
        delivered_row("(c) items stored", runs[ours.name], runs[upstream.name], turns),
        Row(
            f"(c) the same on the REST wire (`AGENTSIGHT_PROTOCOL=rest`), payloads/s, median of {repeats}",
            f"{mine_rest:,.0f}",
            f"{theirs:,.0f}",
            ratio(mine_rest, theirs),
            "",
            None,
        ),
        delivered_row("(c) items stored on the REST wire", runs[ours_rest.name], runs[upstream.name], turns),
    ]
    note = "(c) each run (payloads/s): " + "; ".join(
        f"{name} {', '.join(f'{rate:,.0f}' for rate in side_rates)}" for name, side_rates in rates.items()
    )
    return rows, [note]


def outage_rows(ours: Side, upstream: Side, counts: Counts) -> tuple[list[Row], list[str]]:
    """(d) Memory and caller blocking while the API refuses connections; rows and notes for under the table."""
    with refused_endpoint() as url:
        mine = run_worker(
            ours, "outage", url, turns=counts.outage_turns, sample_every=counts.outage_sample_every, **OUTAGE_BACKOFF
        )
        theirs = run_worker(
            upstream,
            "outage",
            url,
            turns=counts.upstream_outage_turns,
            sample_every=counts.upstream_outage_turns,
            **OUTAGE_BACKOFF,
        )
    samples = mine["samples"]
    rss = [sample["rss_kib"] for sample in samples]
    # Growth from the first sample that saw turns dropped (the queue was full) to the peak after it.
    full_at = next((index for index, sample in enumerate(samples) if sample["dropped"]), None)
    after_full = None if full_at is None else max(rss[full_at:]) - rss[full_at]
    memory = f"{rss[0] / 1024:.1f} → peak {max(rss) / 1024:.1f} MiB (+{(max(rss) - rss[0]) / 1024:.1f}); " + (
        "the queue never filled" if after_full is None else f"+{after_full / 1024:.2f} MiB after the queue filled"
    )
    stats = mine["stats"]
    rows = [
        Row(
            f"(d) RSS while tracking {counts.outage_turns:,} turns, API down (connection refused)",
            memory,
            "not run (blocks, see next row)",
            "",
            f"flat once the queue is full (≤ +{FLAT_LIMIT_KIB // 1024} MiB after)",
            after_full is not None and after_full <= FLAT_LIMIT_KIB,
        ),
        Row(
            "(d) `send_tracked_data()` wait per turn during the outage, median "
            f"(ours of {counts.outage_turns:,}, upstream of {counts.upstream_outage_turns})",
            seconds(mine["median_send_s"]),
            seconds(theirs["median_send_s"]),
            ratio(mine["median_send_s"], theirs["median_send_s"]),
            "",
            None,
        ),
    ]
    notes = [
        f"(d) ours: {counts.outage_turns:,} turns in {mine['elapsed_s']:.1f} s "
        f"({counts.outage_turns / mine['elapsed_s']:,.0f} turns/s), default delivery limits with back-off shortened "
        f"to {OUTAGE_BACKOFF['backoff_initial']}–{OUTAGE_BACKOFF['backoff_max']} s so retries run all through. "
        f"RSS every {counts.outage_sample_every:,} turns (MiB): {', '.join(f'{kib / 1024:.1f}' for kib in rss)}.",
        "(d) ours' `delivery_stats()` at the end: "
        + ", ".join(f"{key} {value:,}" for key, value in stats.items() if value),
        f"(d) upstream retries each failed payload 3 times, sleeping 1 s then 2 s on the caller's thread: "
        f"{counts.upstream_outage_turns} turn(s) took {theirs['elapsed_s']:.1f} s, so {counts.outage_turns:,} turns "
        f"would block the caller for ~{counts.outage_turns * theirs['median_send_s'] / 86_400:.1f} days. "
        "(Against HTTP 503 it does not retry: each payload is lost after one attempt.)",
    ]
    return rows, notes


def report(rows: list[Row], notes: list[str], quick: bool) -> str:
    """The results as markdown."""
    command = shlex.join([sys.executable, *sys.argv])
    kind = " (quick smoke run: reduced counts)" if quick else ""
    return "\n".join(
        [
            "# Benchmark results",
            "",
            f"- Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC{kind}",
            f"- Machine: nproc {len(os.sched_getaffinity(0))}, {platform.machine()}, "
            f"Python {platform.python_version()} ({platform.python_implementation()})",
            f"- Ours: agentsight-otel {metadata.version('agentsight-otel')} with opentelemetry-sdk "
            f"{metadata.version('opentelemetry-sdk')}; upstream: agentsight {UPSTREAM_VERSION} "
            "(in `bench/.upstream-venv`)",
            f"- Command: `{command}`",
            "- Every run of a measurement is a subprocess of its own (`bench/workload.py`) under that SDK's "
            "interpreter, against a fresh `DevServer` in the benchmark's process (a refused loopback "
            "port for (d)); (c) alternates the SDKs' runs. The "
            "workers' stderr goes to /dev/null: upstream logs every tracking call at INFO there (its default), "
            "ours logs only warnings.",
            "",
            "| Measurement | Ours | Upstream | Ours ÷ upstream | Goal (ours) | Result |",
            "|---|---|---|---|---|---|",
            *(row.markdown() for row in rows),
            "",
            *(f"- {note}" for note in notes),
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced counts: a smoke run of under a minute")
    quick = parser.parse_args().quick
    counts = QUICK if quick else FULL
    upstream = upstream_side()
    ours = Side("ours", Path(sys.executable), Path(agentsight.__file__).parent)
    rows = [*per_call_rows(ours, upstream, counts), *send_wait_rows(ours, upstream, counts)]
    notes: list[str] = []
    for measure in (throughput_rows, outage_rows):
        more_rows, more_notes = measure(ours, upstream, counts)
        rows.extend(more_rows)
        notes.extend(more_notes)
    text = report(rows, notes, quick)
    RESULTS.write_text(text, encoding="utf-8")
    print(text)
    return 0 if all(row.passed is not False for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
