"""Per-call cost of the 0.1.x API: ``user_message`` and a decorated ``@tool`` call, ours vs upstream 0.1.4.

Each SDK runs in its own interpreter (ours in this venv, upstream ``agentsight==0.1.4`` in
``bench/.upstream-0.1.4-venv``, created when missing, as bench/wan.py does), rounds alternating. In each, tracking
is on with a span exporter that discards (``init(span_exporter=...)``): what is timed is the call in the
app's thread, not delivery. A batch is 100 calls inside one turn, timed with ``perf_counter_ns``; the per-call
cost is the median over batches, then over rounds. Writes bench/RESULTS_CURRENT.md.

    .venv/bin/python bench/current_api.py [--rounds 5] [--batches 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

BENCH = Path(__file__).resolve().parent
CALLS_PER_BATCH = 100


def worker(batches: int) -> None:
    """Time both calls with the ``agentsight`` of this interpreter; print ``{"user_message", "tool"}`` in ns."""
    from importlib.metadata import PackageNotFoundError, version

    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    import agentsight as ags

    class Discard(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    assert ags.init(span_exporter=Discard(), auto_instrument=False)

    @ags.tool
    def lookup_order(order_id: str) -> dict[str, str]:
        return {"status": "shipped"}

    def per_call(body: object) -> float:
        samples = []
        with ags.conversation("bench"):
            for _ in range(batches):
                with ags.turn():
                    started = time.perf_counter_ns()
                    body()  # type: ignore[operator]
                    samples.append((time.perf_counter_ns() - started) / CALLS_PER_BATCH)
        return statistics.median(samples)

    def messages() -> None:
        for _ in range(CALLS_PER_BATCH):
            ags.user_message("Hello, I need help")

    def tools() -> None:
        for _ in range(CALLS_PER_BATCH):
            lookup_order(order_id="A-1")

    try:
        sdk = f"agentsight-otel {version('agentsight-otel')}"
    except PackageNotFoundError:
        sdk = f"agentsight {version('agentsight')}"
    result = {"sdk": sdk, "user_message": per_call(messages), "tool": per_call(tools)}
    ags.shutdown()
    print(json.dumps(result))


def measure(python: Path, batches: int) -> dict[str, object]:
    done = subprocess.run([str(python), str(Path(__file__).resolve()), "--worker", "--batches", str(batches)],
                          capture_output=True, text=True, check=True, cwd=BENCH)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.batches)
        return
    sys.path.insert(0, str(BENCH))
    from upstream import upstream_python

    pythons = {"ours": Path(sys.executable), "upstream 0.1.4": upstream_python(BENCH / ".upstream-0.1.4-venv", "0.1.4")}
    runs: dict[str, list[dict[str, object]]] = {name: [] for name in pythons}
    for _ in range(args.rounds):
        for name, python in pythons.items():
            runs[name].append(measure(python, args.batches))
    rows = []
    for call, label in (("user_message", "`user_message(text)`"), ("tool", "decorated `@tool` call")):
        ours = statistics.median(float(run[call]) for run in runs["ours"])  # type: ignore[arg-type]
        theirs = statistics.median(float(run[call]) for run in runs["upstream 0.1.4"])  # type: ignore[arg-type]
        verdict = "PASS" if ours <= theirs else "FAIL"
        rows.append(f"| {label}, per call | {ours / 1000:.2f} µs | {theirs / 1000:.2f} µs | {ours / theirs:.2f}× "
                    f"| ours ≤ upstream | {verdict} |")
    table = "\n".join([
        "| call (inside a turn) | ours | upstream agentsight 0.1.4 | ours / upstream | goal | result |",
        "|---|---|---|---|---|---|", *rows])
    report = (f"# The 0.1.x API: per-call cost\n\nMeasured with `.venv/bin/python bench/current_api.py` "
              f"(`make bench-current`) on {date.today().isoformat()}: {args.rounds} rounds, each SDK in its own "
              f"process, rounds alternating; per round the median of {args.batches} batches of "
              f"{CALLS_PER_BATCH} calls in one turn; the table holds the median of the rounds. Tracking on, spans "
              "to an exporter that discards them (`init(span_exporter=...)`), so only the app thread's cost is "
              "timed.\n\n" + table + "\n\nPer round (ns per call):\n\n```\n"
              + json.dumps(runs, indent=1) + "\n```\n")
    (BENCH / "RESULTS_CURRENT.md").write_text(report, encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
