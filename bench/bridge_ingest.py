"""Bridge ingest throughput: spans/s one bridge process takes on one CPU core.

``python bench/bridge_ingest.py`` starts the bridge in a subprocess pinned to CPU 0
(``os.sched_setaffinity``) and sends pre-built OTLP requests from this process, pinned to CPU 1,
over kept-alive connections: 512 spans each, a realistic mix of the app's own spans (HTTP server and
client, database, model calls) and conversation turns recorded by a real ``ConversationTracker``
(question, answer, button, token usage), every request sent with new trace ids (the bridge would
recognise a repeat and not deliver it again). The bridge answers a request once its turns are
delivered and its model calls waited the grace period (2 s), so each connection has one request in
flight for about 2 s: many connections, as a Collector has consumers. Rows:

- OTLP/HTTP protobuf, plain and gzip, and OTLP/gRPC, with delivery off (no API key: turns are
  assembled and handed to the exporter, which reports them not deliverable): the bridge's own
  cost, which the goal (>= 20,000 spans/s) is about;
- OTLP/HTTP protobuf delivering every turn to a ``DevServer`` in a third process (on
  CPU 1 with the client): end to end, each request answered once its turns are stored, delivery
  sharing the bridge's core; a 503 (no room, or not delivered within the acknowledgement time-out)
  makes the client send another request after 50 ms.

Writes ``bench/RESULTS_BRIDGE.md`` unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import itertools
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS_BRIDGE.md"
API_KEY = "ags_" + "a" * 32 + "_" + "b" * 6
GOAL_SPANS_PER_SECOND = 20_000
SPANS_PER_REQUEST = 512
TURNS_PER_REQUEST = 8
DISTINCT_REQUESTS = 8
BRIDGE_CPU, CLIENT_CPU = 0, 1


# The requests ------------------------------------------------------------------------------------


def build_requests(count: int = DISTINCT_REQUESTS, spans: int = SPANS_PER_REQUEST,
                   turns: int = TURNS_PER_REQUEST) -> list[bytes]:
    """Serialized ``ExportTraceServiceRequest``s of ``spans`` spans each, ``turns`` of them conversation turns."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from agentsight import ConversationTracker

    logging.getLogger("agentsight").setLevel(logging.ERROR)  # direct export is off on purpose here
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot", "service.version": "1.4.2",
                                                        "deployment.environment.name": "production"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)  # conversation spans are forwarded to it (direct export off)
    tracker = ConversationTracker(direct_export=False)
    tracer = provider.get_tracer("bench.app", "1.0")
    app_spans = spans - turns
    requests = []
    for number in range(count):
        memory.clear()
        for index in range(app_spans):
            _app_span(tracer, index)
        for turn in range(turns):
            _turn(tracker, f"conv-{number}-{turn}")
        finished = memory.get_finished_spans()
        assert len(finished) == spans, len(finished)
        requests.append(encode_spans(finished).SerializeToString())
    tracker.shutdown()
    return requests


_APP_SPANS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("GET /api/orders/{id}", {"http.request.method": "GET", "http.route": "/api/orders/{id}", "url.scheme": "https",
                              "url.path": "/api/orders/8812", "http.response.status_code": 200,
                              "server.address": "shop.example.com", "server.port": 443,
                              "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64) Firefox/132.0",
                              "client.address": "203.0.113.7", "network.protocol.version": "1.1"}),
    ("SELECT orders", {"db.system.name": "postgresql", "db.namespace": "shop", "db.operation.name": "SELECT",
                       "db.collection.name": "orders", "server.address": "db.internal", "server.port": 5432,
                       "db.query.text": "SELECT id, status, total, created_at FROM orders WHERE customer_id = $1 "
                                        "ORDER BY created_at DESC LIMIT 20"}),
    ("POST", {"http.request.method": "POST", "url.full": "https://payments.example.net/v2/charges",
              "http.response.status_code": 201, "server.address": "payments.example.net", "server.port": 443}),
    ("chat gpt-4o-mini", {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                          "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                          "gen_ai.usage.input_tokens": 412, "gen_ai.usage.output_tokens": 96,
                          "gen_ai.response.finish_reasons": ("stop",), "server.address": "api.openai.com"}),
    ("redis GET", {"db.system.name": "redis", "db.operation.name": "GET", "server.address": "cache.internal"}),
)


def _app_span(tracer: Any, index: int) -> None:
    name, attributes = _APP_SPANS[index % len(_APP_SPANS)]
    with tracer.start_as_current_span(name, attributes=attributes) as span:
        if index % 50 == 0:
            span.add_event("exception", {"exception.type": "TimeoutError", "exception.message": "upstream slow"})


def _turn(tracker: Any, conversation_id: str) -> None:
    tracker.get_or_create_conversation(conversation_id, customer_id="customer-7", metadata={"plan": "pro"})
    tracker.track_question("Where is my order 8812? It was due yesterday.")
    tracker.track_answer("Order 8812 left the warehouse this morning; it should arrive tomorrow before noon.")
    tracker.track_button("feedback", "Helpful", "yes")
    tracker.track_token_usage(412, 96, 508)
    tracker.send_tracked_data()


# The bridge and the API, each in a process of its own -----------------------------------------------


def serve(args: argparse.Namespace) -> None:
    """``_serve``: run a bridge pinned to one CPU; print its ports; on SIGTERM stop and print its stats."""
    os.sched_setaffinity(0, {args.cpu})
    from agentsight.bridge.server import Bridge
    from agentsight.config import DeliverySettings, Settings

    settings = Settings.resolve(api_key=API_KEY if args.endpoint else "", endpoint=args.endpoint or None,
                                delivery=DeliverySettings(max_concurrency=8))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    bridge = Bridge(grpc_port=0, http_port=0, settings=settings).start()
    core = bridge.core
    print(json.dumps({"http": bridge.http_port, "grpc": bridge.grpc_port}), flush=True)
    while not stop.wait(0.1):
        pass
    bridge.stop(timeout=120)
    print(json.dumps(core.stats()), flush=True)


def serve_api(args: argparse.Namespace) -> None:
    """``_api``: a ``DevServer`` (not recording bodies) pinned to one CPU, until SIGTERM."""
    os.sched_setaffinity(0, {args.cpu})
    from agentsight.dev import DevServer

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with DevServer(record=False) as api:
        print(json.dumps({"url": api.url}), flush=True)
        while not stop.wait(0.1):
            pass
        print(json.dumps({"accepted": len(api.accepted())}), flush=True)


@dataclass
class Child:
    """A helper process of this script that prints one JSON line when ready and one when stopped."""

    process: subprocess.Popen[str]
    ready: dict[str, Any]

    @classmethod
    def start(cls, *args: str) -> Child:
        process = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True)
        assert process.stdout is not None
        return cls(process, json.loads(process.stdout.readline()))

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> dict[str, Any]:
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=120)
        return json.loads(out.strip().splitlines()[-1])


# The client --------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the client's senders counted."""

    spans: int = 0
    requests: int = 0
    refused: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, spans: int, refused: bool) -> None:
        with self.lock:
            self.requests += 1
            self.refused += refused
            self.spans += 0 if refused else spans


class FreshRequests:
    """The pre-built requests in turn, each time with new trace ids: the bridge recognises a span it received
    before and does not deliver it again, so only new ids make every request sent new work.

    The first 4 bytes of every trace id in a request become the number of the request sent (thread-safe).
    """

    def __init__(self, bodies: list[bytes]) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self._bodies = bodies
        self._offsets = []
        for body in bodies:
            request = ExportTraceServiceRequest.FromString(body)
            trace_ids = {span.trace_id for resource in request.resource_spans for scope in resource.scope_spans
                         for span in scope.spans}
            self._offsets.append([offset for trace_id in trace_ids for offset in _occurrences(body, trace_id)])
        self._numbers = itertools.count()

    def __call__(self) -> bytes:
        number = next(self._numbers)
        index = number % len(self._bodies)
        body = bytearray(self._bodies[index])
        stamp = number.to_bytes(4, "big")
        for offset in self._offsets[index]:
            body[offset:offset + 4] = stamp
        return bytes(body)


def _occurrences(data: bytes, part: bytes) -> Iterator[int]:
    offset = data.find(part)
    while offset >= 0:
        yield offset
        offset = data.find(part, offset + 1)


def http_sender(port: int, fresh: FreshRequests, gzipped: bool) -> Callable[[], tuple[int, bool]]:
    """A function sending the next request over one kept-alive OTLP/HTTP connection: (status, refused)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/x-protobuf"}
    if gzipped:
        headers["Content-Encoding"] = "gzip"

    def send() -> tuple[int, bool]:
        body = fresh()
        connection.request("POST", "/v1/traces", gzip.compress(body, 6) if gzipped else body, headers)
        response = connection.getresponse()
        response.read()
        if response.status not in (200, 503):
            raise RuntimeError(f"HTTP {response.status}")
        return response.status, response.status == 503

    return send


def grpc_sender(port: int, fresh: FreshRequests) -> Callable[[], tuple[int, bool]]:
    """A function sending the next request over one gRPC channel: (status, refused)."""
    import grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                                 request_serializer=None, response_deserializer=None)  # raw bytes both ways

    def send() -> tuple[int, bool]:
        try:
            export(fresh(), timeout=60)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            return 14, True
        return 0, False

    return send


def drive(senders: list[Callable[[], tuple[int, bool]]], warmup: float, duration: float,
          cpu: Callable[[], float]) -> Tally:
    """Each sender on a thread of its own: ``warmup`` seconds uncounted, then ``duration`` seconds counted.

    ``cpu`` reads the bridge's CPU seconds, at the start and the end of the counted window.
    """
    tally = Tally()
    counting = threading.Event()
    done = threading.Event()

    def loop(send: Callable[[], tuple[int, bool]]) -> None:
        try:
            while not done.is_set():
                _, refused = send()
                if counting.is_set() and not done.is_set():
                    tally.add(SPANS_PER_REQUEST, refused)
                if refused:
                    time.sleep(0.05)
        except Exception as error:  # a benchmark reports rather than hides a broken run
            tally.errors.append(repr(error))

    threads = [threading.Thread(target=loop, args=(send,), daemon=True) for send in senders]
    for thread in threads:
        thread.start()
    time.sleep(warmup)
    started, cpu_started = time.monotonic(), cpu()
    counting.set()
    time.sleep(duration)
    done.set()
    tally.seconds, tally.cpu_seconds = time.monotonic() - started, cpu() - cpu_started
    for thread in threads:
        thread.join(60)
    return tally


# Runs --------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One measured configuration."""

    name: str
    spans_per_second: float
    requests: int
    refused: int
    bridge_cpu: float
    notes: str
    goal: bool


def run(name: str, transport: str, bodies: list[bytes], args: argparse.Namespace, deliver: bool) -> Row:
    """Start a bridge (and an API when delivering), drive it, stop it; one row."""
    api = Child.start("_api", "--cpu", str(CLIENT_CPU)) if deliver else None
    bridge = Child.start("_serve", "--cpu", str(BRIDGE_CPU), *(("--endpoint", api.ready["url"]) if api else ()))
    fresh = FreshRequests(bodies)
    try:
        if transport == "grpc":
            senders = [grpc_sender(bridge.ready["grpc"], fresh) for _ in range(args.connections)]
        else:
            senders = [http_sender(bridge.ready["http"], fresh, transport == "http+gzip")
                       for _ in range(args.connections)]
        tally = drive(senders, args.warmup, args.duration, bridge.cpu_seconds)
    finally:
        stats = bridge.stop()
        accepted = api.stop()["accepted"] if api else 0
    if tally.errors:
        raise RuntimeError(f"{name}: {tally.errors[:3]}")
    notes = f"{tally.requests:,} requests answered in {tally.seconds:.1f} s"
    if deliver:
        turns = tally.spans // SPANS_PER_REQUEST * TURNS_PER_REQUEST
        notes += (f"; {tally.refused:,} of them 503 (no room, or not delivered in time); {turns:,} turns "
                  f"delivered and acknowledged in the window; in all (warm-up included) {stats['turns_received']:,} "
                  f"turns received; by the end of `stop()` {stats['payloads_delivered']:,} of their "
                  f"{stats['payloads_submitted']:,} payloads delivered in {accepted:,} API requests, "
                  f"{stats['payloads_dropped_queue_full']:,} dropped")
    return Row(name, tally.spans / tally.seconds, tally.requests, tally.refused, tally.cpu_seconds / tally.seconds,
               notes, goal=not deliver)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments; run the benchmark or one of its helper processes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="bench", choices=("bench", "_serve", "_api"))
    parser.add_argument("--cpu", type=int, default=BRIDGE_CPU, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", default="", help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds counted per row (default: 8)")
    parser.add_argument("--warmup", type=float, default=4.0, help="seconds before counting (default: 4)")
    parser.add_argument("--connections", type=int, default=256, help="client connections (default: 256)")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.name}")
    args = parser.parse_args(argv)
    if args.mode == "_serve":
        serve(args)
        return 0
    if args.mode == "_api":
        serve_api(args)
        return 0
    if len(os.sched_getaffinity(0)) < 2:
        print("needs 2 CPUs: the bridge on one, the client on the other", file=sys.stderr)
        return 1
    bodies = build_requests()
    os.sched_setaffinity(0, {CLIENT_CPU})
    size = sum(map(len, bodies)) // len(bodies)
    rows = [
        run("OTLP/HTTP protobuf, delivery off", "http", bodies, args, deliver=False),
        run("OTLP/HTTP protobuf + gzip, delivery off", "http+gzip", bodies, args, deliver=False),
        run("OTLP/gRPC, delivery off", "grpc", bodies, args, deliver=False),
        run("OTLP/HTTP protobuf, delivering to a local API", "http", bodies, args, deliver=True),
    ]
    report = render(rows, args, size)
    print(report)
    if not args.no_write:
        RESULTS.write_text(report)
    return 0 if rows[0].spans_per_second >= GOAL_SPANS_PER_SECOND else 1


def render(rows: list[Row], args: argparse.Namespace, request_bytes: int) -> str:
    """The Markdown report."""
    from importlib.metadata import version

    lines = [
        "# Bridge ingest benchmark",
        "",
        f"- Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- Machine: nproc {os.cpu_count()}, {platform.machine()}, Python {platform.python_version()} "
        f"({platform.python_implementation()}); agentsight-otel {version('agentsight-otel')}, grpcio "
        f"{version('grpcio')}, protobuf {version('protobuf')}",
        f"- Command: `{Path(sys.executable).as_posix()} bench/bridge_ingest.py`"
        + (f" (`--duration {args.duration:g} --warmup {args.warmup:g} --connections {args.connections}`)"),
        f"- The bridge (`agentsight.bridge.server.Bridge`, default settings, grace 2 s) runs in a process pinned "
        f"to CPU {BRIDGE_CPU}; the client, in this process pinned to CPU {CLIENT_CPU}, sends pre-built requests "
        f"over {args.connections} kept-alive connections. Each request holds {SPANS_PER_REQUEST} spans "
        f"(~{request_bytes // 1024} KiB of protobuf): {SPANS_PER_REQUEST - TURNS_PER_REQUEST} app spans (HTTP "
        f"server/client, SQL, Redis, model-call spans with 8-10 attributes) and {TURNS_PER_REQUEST} conversation "
        "turns recorded by a real `ConversationTracker` (question, answer, button, token usage: 5 payloads each), "
        "encoded by the OTel SDK's own OTLP encoder.",
        "- Every request is sent with new trace ids (the bridge recognises a span it received before and does not "
        "deliver it twice). The bridge answers a request once its turns are delivered and its model-call spans "
        "waited the grace period, so each connection has one request in flight for 2 s or more: hence many "
        "connections, as a Collector has many consumers.",
        "- *Delivery off*: no API key, so turns are decoded, assembled and handed to the exporter, which reports "
        "them not deliverable (a partial success): the bridge's own cost. *Delivering*: every payload is POSTed "
        f"to a `DevServer` in a third process on CPU {CLIENT_CPU}, by delivery threads sharing the bridge's core "
        f"(the {DISTINCT_REQUESTS * TURNS_PER_REQUEST} conversation ids recur from request to request), and a "
        "request is answered once its turns are stored. A 503 (no room, or not delivered within the "
        "acknowledgement time-out) makes the client send another request after 50 ms.",
        "- Spans/s count only spans the bridge answered 200 for, over the counted seconds; *bridge CPU* is the "
        "bridge process's CPU time over wall time in that window (1.00 = one core busy).",
        "",
        f"| Configuration | Spans/s | Bridge CPU | Goal (>= {GOAL_SPANS_PER_SECOND:,} spans/s) | Notes |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        verdict = ("PASS" if row.spans_per_second >= GOAL_SPANS_PER_SECOND else "FAIL") if row.goal else "—"
        lines.append(f"| {row.name} | {row.spans_per_second:,.0f} | {row.bridge_cpu:.2f} | {verdict} | "
                     f"{row.notes} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
