"""The Collector pipeline's cost: agent -> gateway -> 2 bridges -> a local API, against the same load sent
straight to the 2 bridges, and through the Collectors alone (a sink in place of the bridges), in one run.

``python bench/collector_pipeline.py`` (``make bench-collector``; the Collector is built by ``make collector``)
starts the pipeline of ``tests/collector_stack.py`` (the shipped ``agent.yaml`` and ``gateway.yaml``, two
``agentsight bridge`` processes over TLS with a bearer token, ingest wire) with the local API
(``agentsight dev --memory``) in a process of its own, a second agent and gateway whose bridges are a
:class:`Sink` (answers at once, counts conversations), and sends pre-built OTLP requests: each holds
``--turns-per-request`` conversation turns recorded by a real ``ConversationTracker`` (question, answer, button,
token usage) and as many app spans (HTTP, SQL, Redis, and one model call in five), every turn a conversation
id of its own and every request new trace ids. Two measurements per route (``direct``: straight to the
bridges, requests alternating between them; ``pipeline``: through the Collectors to the bridges; ``sink``:
through the Collectors to the sink, their own ceiling):

- *Throughput*: each of ``--rates`` (turns/s) offered for ``--seconds``; turns/s and spans/s counted at the API
  (conversations stored; at the sink, conversations arrived) from the first to the last, and whether delivery
  kept up with the offer.
- *Latency*: a few turns every 200 ms at a low rate; for each, the time from its request being sent until
  the API (the sink) has it (the bridges hold each turn 2 s, their grace period, for model calls sent apart).

Each throughput run also reads the CPU time of every process on the route (``/proc``): milliseconds per 1,000
turns, what says how many cores each tier needs at a rate this machine cannot offer. ``--consumers-per-bridge``
and ``--bridge-queue-size`` change the gateway's window and the bridges' room (the shipped defaults otherwise).

Prints markdown tables. Everything runs on this machine, the Collectors, bridges, API and client sharing
its cores: read the numbers as a floor.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import grpc

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from bridge_ingest import _APP_SPANS, _occurrences  # noqa: E402
from process_cpu import CpuMeter, peak_rss_mib  # noqa: E402
from route_ends import Api, Collectors  # noqa: E402
from tests.collector_binary import binary_path  # noqa: E402
from tests.collector_stack import (  # noqa: E402
    BRIDGE_TOKEN,
    Pipeline,
    Process,
    log_tail,
    wait_until,
)

GOAL_TURNS_PER_SECOND = 5_000
CONSUMERS_PER_BRIDGE = 50
"""``gateway.yaml``'s default: 50 consumers per bridge replica."""
COMPONENTS = ("agent", "gateway", "bridge 0", "bridge 1", "API", "client")
MARKER = b"ZZZZZZZZ"
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def build_bodies(sizes: list[tuple[int, int]]) -> list[list[bytes]]:
    """For each ``(count, turns)``: ``count`` serialized requests of ``turns`` turns and ``turns`` app spans
    (conversation ids hold MARKER), recorded by one tracker on one provider."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from agentsight import ConversationTracker

    logging.getLogger("agentsight").setLevel(logging.ERROR)
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    tracker = ConversationTracker(direct_export=False)
    tracer = provider.get_tracer("bench.app")
    built = []
    for count, turns in sizes:
        bodies = []
        for number in range(count):
            memory.clear()
            for index in range(turns):
                name, attributes = _APP_SPANS[index % len(_APP_SPANS)]
                with tracer.start_as_current_span(name, attributes=attributes):
                    pass
                tracker.get_or_create_conversation(f"c-{MARKER.decode()}-{number}-{index:04d}", customer_id="c-7")
                tracker.track_question("Where is my order 8812? It was due yesterday.")
                tracker.track_answer("Order 8812 left the warehouse this morning; it should arrive tomorrow.")
                tracker.track_button("feedback", "Helpful", "yes")
                tracker.track_token_usage(412, 96, 508)
                tracker.send_tracked_data()
            finished = memory.get_finished_spans()
            assert len(finished) == 2 * turns, len(finished)
            bodies.append(encode_spans(finished).SerializeToString())
        built.append(bodies)
    tracker.shutdown()
    return built


class Fresh:
    """The bodies in turn, each with new trace ids and conversation ids (the request's number in both)."""

    def __init__(self, bodies: list[bytes], turns: int) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self.bodies = bodies
        self.offsets = []
        for body in bodies:
            request = ExportTraceServiceRequest.FromString(body)
            ids = {s.trace_id for r in request.resource_spans for sc in r.scope_spans for s in sc.spans}
            self.offsets.append([offset for trace_id in ids for offset in _occurrences(body, trace_id)])
        self.turns = turns
        self.numbers = itertools.count(1)
        self.lock = threading.Lock()

    def __call__(self) -> tuple[bytes, str]:
        """The next body, and the conversation id of its last turn."""
        with self.lock:
            number = next(self.numbers)
        index = number % len(self.bodies)
        body = bytearray(self.bodies[index].replace(MARKER, f"{number:08x}".encode()))
        for offset in self.offsets[index]:
            body[offset:offset + 4] = number.to_bytes(4, "big")
        return bytes(body), f"c-{number:08x}-{index}-{self.turns - 1:04d}"


def sender(route: str, pipeline: Pipeline, collectors: Collectors) -> Callable[[bytes], None]:
    """A function exporting one body: to the agent (plaintext), or to the bridges in turn (TLS and token)."""
    if route != "direct":
        port = pipeline.otlp_port if route == "pipeline" else collectors.otlp_port
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        exports = [channel.unary_unary(EXPORT)]
        metadata: list[tuple[str, str]] | None = None
    else:
        assert pipeline.tls is not None
        credentials = grpc.ssl_channel_credentials(pipeline.tls.ca.read_bytes())
        exports = [grpc.secure_channel(f"127.0.0.1:{port}", credentials).unary_unary(EXPORT)
                   for port in pipeline.bridge_ports]
        metadata = [("authorization", f"Bearer {BRIDGE_TOKEN}")]
    turn = itertools.cycle(exports)

    def send(body: bytes) -> None:
        while True:
            try:
                next(turn)(body, timeout=60, metadata=metadata)
                return
            except grpc.RpcError as error:
                if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
                    raise
                time.sleep(0.2)

    return send


class Store(Protocol):
    """Where a route's turns end: the API (stored) or a sink (arrived)."""

    def conversations(self) -> int: ...

    def has(self, conversation_id: str) -> bool: ...


def throughput(route: str, send: Callable[[bytes], None], api: Store, fresh: Fresh, turns: int, rate: float,
               per_request: int, meter: CpuMeter) -> dict[str, float]:
    """Offer ``turns`` turns at ``rate`` turns/s; the rate they were stored at, counted at ``api``, and the CPU
    seconds each of ``meter``'s processes used from the first request until the last turn was stored."""
    requests = turns // per_request
    base = api.conversations()
    errors: list[str] = []
    slots = threading.BoundedSemaphore(256)

    def one(body: bytes) -> None:
        try:
            send(body)
        except Exception as error:  # reported, not hidden
            errors.append(repr(error))
        finally:
            slots.release()

    meter.start()
    started = time.monotonic()
    for number in range(requests):
        wait = started + number * per_request / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        slots.acquire()
        threading.Thread(target=one, args=(fresh()[0],), daemon=True).start()
    offered = time.monotonic() - started
    marks: dict[float, float] = {}
    deadline = time.monotonic() + 300
    while len(marks) < 2 and time.monotonic() < deadline and not errors:
        stored = api.conversations() - base
        for share in (0.1, 1.0):
            if share not in marks and stored >= share * requests * per_request:
                marks[share] = time.monotonic()
        time.sleep(0.05)
    cpu = meter.stop()
    assert not errors, errors[:3]
    assert len(marks) == 2, f"{route}: not every turn stored in time"
    rate_stored = 0.9 * requests * per_request / max(marks[1.0] - marks[0.1], 1e-6)
    return {**{f"cpu:{name}": seconds for name, seconds in cpu.items()}, "turns": requests * per_request,
            "offered": requests * per_request / offered, "turns_per_s": rate_stored,
            "spans_per_s": rate_stored * 2, "wall": marks[1.0] - started,
            "delivered_per_s": requests * per_request / (marks[1.0] - started)}


def latency(route: str, send: Callable[[bytes], None], api: Store, fresh: Fresh, samples: int) -> list[float]:
    """Seconds from sending a small request until ``api`` has its last turn, ``samples`` times, 200 ms apart."""
    found: list[float] = []

    def one() -> None:
        body, last = fresh()
        started = time.monotonic()
        send(body)
        wait_until(lambda: api.has(last), 120, f"conversation {last}", poll=0.01)
        found.append(time.monotonic() - started)

    threads = []
    for _ in range(samples):
        threads.append(threading.Thread(target=one, daemon=True))
        threads[-1].start()
        time.sleep(0.2)
    for thread in threads:
        thread.join(150)
    assert len(found) == samples, f"{route}: {len(found)} of {samples} latency samples"
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="how long each rate is offered")
    parser.add_argument("--rates", default=f"1000,{GOAL_TURNS_PER_SECOND}", help="turns/s offered, comma-separated")
    parser.add_argument("--turns-per-request", type=int, default=100)
    parser.add_argument("--samples", type=int, default=20, help="latency samples per route")
    parser.add_argument("--routes", default="direct,pipeline,sink", help="direct, pipeline, sink: comma-separated")
    parser.add_argument("--consumers-per-bridge", type=int, default=CONSUMERS_PER_BRIDGE,
                        help="the gateway's OTELCOL_BRIDGE_CONSUMERS per bridge (default: %(default)s, as shipped)")
    parser.add_argument("--bridge-queue-size", type=int, default=None, metavar="PAYLOADS",
                        help="the bridges' AGENTSIGHT_MAX_QUEUE_SIZE (default: the bridge's own default)")
    args = parser.parse_args(argv)
    binary = binary_path()
    if not os.access(binary, os.X_OK):
        print(f"no Collector at {binary}: run `make collector` first", file=sys.stderr)
        return 1
    big, few = build_bodies([(8, args.turns_per_request), (4, 5)])
    fresh, small = Fresh(big, args.turns_per_request), Fresh(few, 5)
    small.numbers = itertools.count(10_000_000)  # other ids than the big requests'
    workdir = Path(tempfile.mkdtemp(prefix="bench-collector-"))
    api = Api(workdir / "api.log")
    room = {} if args.bridge_queue_size is None else {"AGENTSIGHT_MAX_QUEUE_SIZE": str(args.bridge_queue_size)}
    pipeline = Pipeline(binary, workdir, api.url, wire="ingest", bridge_env=room,
                        consumers_per_bridge=args.consumers_per_bridge)
    collectors: Collectors | None = None
    rows = []
    try:
        pipeline.start()
        assert pipeline.tls is not None
        collectors = Collectors.start(binary, workdir / "sink", pipeline.tls)
        for route in args.routes.split(","):
            send = sender(route, pipeline, collectors)
            store: Store = collectors.sinks[0] if route == "sink" else api
            meter = CpuMeter(processes(route, pipeline, collectors, api))
            times = latency(route, send, store, small, args.samples)
            for rate in (float(text) for text in args.rates.split(",")):
                turns = int(rate * args.seconds)
                result = throughput(route, send, store, fresh, turns, rate, args.turns_per_request, meter)
                rows.append((route, rate, result, times))
    except AssertionError:
        for name in ("gateway", "agent", "bridge-0", "bridge-1", "sink/gateway", "sink/agent"):
            print(f"--- {name}\n{log_tail(workdir / f'{name}.log', 15)}", file=sys.stderr)
        raise
    finally:
        bridge_rss = max(peak_rss_mib(replica.popen.pid) for replica in pipeline.replicas if replica.popen)
        if collectors is not None:
            collectors.stop()
        pipeline.stop()
        api.process.terminate()
        api.process.wait(30)
    print(render(rows, args, bridge_rss))
    return 0


def processes(route: str, pipeline: Pipeline, collectors: Collectors, api: Api) -> dict[str, int]:
    """The processes whose CPU a route uses, by component (the client is this process, the sinks included)."""
    found = {"client": os.getpid()}
    if route == "sink":
        return {**found, "agent": pid(collectors.agent), "gateway": pid(collectors.gateway)}
    found.update({f"bridge {index}": pid(replica) for index, replica in enumerate(pipeline.replicas)})
    found["API"] = api.process.pid
    if route == "pipeline":
        assert pipeline.agent is not None and pipeline.gateway is not None
        found.update({"agent": pid(pipeline.agent), "gateway": pid(pipeline.gateway)})
    return found


def pid(process: Process) -> int:
    """A started process's id."""
    assert process.popen is not None
    return process.popen.pid


def render(rows: list[tuple[str, float, dict[str, float], list[float]]], args: argparse.Namespace,
           bridge_rss: float) -> str:
    """The results as markdown tables (and the latency the pipeline adds)."""
    names = {"direct": "apps -> 2 bridges (direct)", "pipeline": "apps -> agent -> gateway -> 2 bridges",
             "sink": "apps -> agent -> gateway -> sink (no bridges)"}
    lines = [f"Offered: each rate for {args.seconds:g} s, in requests of {args.turns_per_request} turns + "
             f"{args.turns_per_request} app spans; latency (before the throughput runs): {args.samples} requests of "
             f"5 turns, 200 ms apart; nproc {os.cpu_count()}, everything on this machine.", "",
             "| Route | Offered turns/s | Stored turns/s (10-100 %) | Turn + app spans/s | Last stored | Turns ÷ last "
             "stored | Latency p50 | p95 |", "|---|---|---|---|---|---|---|---|"]
    for route, _, result, times in rows:
        p50, p95 = statistics.median(times), times[min(len(times) - 1, int(0.95 * len(times)))]
        lines.append(f"| {names[route]} | {result['offered']:,.0f} | {result['turns_per_s']:,.0f} | "
                     f"{result['spans_per_s']:,.0f} | {result['wall']:.1f} s | {result['delivered_per_s']:,.0f} | "
                     f"{p50:.2f} s | {p95:.2f} s |")
    latencies = {route: times for route, _, _, times in rows}
    if "pipeline" in latencies and "direct" in latencies:
        added = statistics.median(latencies["pipeline"]) - statistics.median(latencies["direct"])
        lines += ["", f"Latency the Collectors add per turn (p50): {added:.2f} s."]
    lines += ["", f"Gateway: {args.consumers_per_bridge} consumers per bridge; bridges' AGENTSIGHT_MAX_QUEUE_SIZE: "
              f"{args.bridge_queue_size or 'default'}; the bridges' peak resident memory: {bridge_rss:.0f} MiB.", "",
              "CPU milliseconds per 1,000 turns, from the first request until the last turn was stored (the client "
              "builds and sends the requests, and serves the sinks):", "",
              "| Route | Offered turns/s | " + " | ".join(COMPONENTS) + " |", "|---|---|" + "---|" * len(COMPONENTS)]
    for route, _, result, _ in rows:
        cells = [f"{1e6 * result[f'cpu:{name}'] / result['turns']:,.0f}" if f"cpu:{name}" in result else "-"
                 for name in COMPONENTS]
        lines.append(f"| {names[route]} | {result['offered']:,.0f} | " + " | ".join(cells) + " |")
    lines += ["", f"Goal: the pipeline keeps up with the offer up to {GOAL_TURNS_PER_SECOND:,} turns/s; the sink route "
              "counts turns arriving at the sink, the others turns stored by the API."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
