"""A bridge killed mid-stream (kill -9) or stopped with a backlog (SIGTERM) loses nothing it acknowledged.

``agentsight bridge`` runs in a process of its own; senders send it OTLP/HTTP requests the way a
Collector's exporter with a persistent queue does (each until answered 200, retrying refusals and
connection failures); the local AgentSight (``agentsight dev``) counts what was stored.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agentsight.dev import DevServer
from tests.conftest import API_KEY
from tests.test_bridge import BIN, free_port
from tests.test_bridge_ack import expected_messages, stored, turns_request

# The sender's back-off, kept short (a Collector starts at 5 s) so that the tests take seconds.
BACKOFF_SECONDS = 0.1


@dataclass
class CollectorLikeSender:
    """Threads sending ``requests`` to an OTLP/HTTP port, each until it is answered 200 (as a Collector's
    exporter with a persistent queue and endless retries does); ``acknowledged`` holds the indexes answered 200."""

    port: int
    requests: list[bytes]
    threads: int = 8
    acknowledged: set[int] = field(default_factory=set)
    _next: Iterator[int] = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> CollectorLikeSender:
        """Start sending."""
        self._next = iter(range(len(self.requests)))
        self._workers = [threading.Thread(target=self._send, daemon=True) for _ in range(self.threads)]
        for worker in self._workers:
            worker.start()
        return self

    def wait(self, acknowledged: int, timeout: float) -> None:
        """Until ``acknowledged`` requests were answered 200 (raises on time-out)."""
        deadline = time.monotonic() + timeout
        while len(self.acknowledged) < acknowledged:
            assert time.monotonic() < deadline, f"{len(self.acknowledged)} of {acknowledged} acknowledged in time"
            time.sleep(0.01)

    def join(self, timeout: float) -> None:
        """Until every request was answered 200 (raises on time-out)."""
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        assert len(self.acknowledged) == len(self.requests), (
            f"{len(self.acknowledged)} of {len(self.requests)} requests acknowledged in {timeout} s")

    def _send(self) -> None:
        connection = None
        while True:
            with self._lock:
                index = next(self._next, None)
            if index is None:
                return
            while True:
                try:
                    connection = connection or http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                    connection.request("POST", "/v1/traces", self.requests[index],
                                       {"Content-Type": "application/x-protobuf"})
                    response = connection.getresponse()
                    response.read()
                    if response.status == 200:
                        with self._lock:
                            self.acknowledged.add(index)
                        break
                except (OSError, http.client.HTTPException):
                    connection = None  # the bridge went away: reconnect
                time.sleep(BACKOFF_SECONDS)


def start_bridge_process(port: int, api: DevServer, wire: str, log: Path, *flags: str,
                         env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``agentsight bridge`` on ``port`` (OTLP/HTTP) delivering to ``api`` on ``wire``; returns once it serves."""
    process = subprocess.Popen(
        [str(BIN / "agentsight"), "bridge", "--http-port", str(port), "--grpc-port", "0", "--grace", "0.1",
         "--protocol", wire, *flags],
        env={**os.environ, "AGENTSIGHT_API_KEY": API_KEY, "AGENTSIGHT_API_ENDPOINT": api.url, **(env or {})},
        stdout=subprocess.DEVNULL, stderr=log.open("ab"))
    deadline = time.monotonic() + 20
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the bridge did not start"
            time.sleep(0.05)


def messages_of(requests: list[bytes], indexes: set[int]) -> Counter[tuple[str, str]]:
    """The messages the requests at ``indexes`` hold."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    return sum((expected_messages(ExportTraceServiceRequest.FromString(requests[i])) for i in indexes), Counter())


def stream(count: int, turns: int, prefix: str) -> list[bytes]:
    """``count`` requests of ``turns`` turns of two messages each: ``count * turns * 2`` messages."""
    return [turns_request(f"{prefix}-{n}", turns).SerializeToString() for n in range(count)]


@pytest.mark.parametrize("wire", ["rest", "ingest"])
def test_kill_9_mid_stream_loses_no_acknowledged_message(api: DevServer, tmp_path: Path, wire: str) -> None:
    api.latency = 0.02
    requests = stream(100, 10, f"kill-{wire}")  # 2,000 messages
    port = free_port()
    bridge = start_bridge_process(port, api, wire, tmp_path / "bridge.log")
    sender = CollectorLikeSender(port, requests).start()
    try:
        sender.wait(25, timeout=30)
        bridge.kill()  # SIGKILL: no clean-up of any kind
        bridge.wait(10)
        time.sleep(0.3)  # answers already on their way are read (and count as acknowledged)
        acknowledged = messages_of(requests, set(sender.acknowledged))
        lost = acknowledged - stored(api)
        assert not lost, f"{sum(lost.values())} of {sum(acknowledged.values())} acknowledged messages lost"
        bridge = start_bridge_process(port, api, wire, tmp_path / "bridge.log")  # the sender retries the rest
        sender.join(timeout=60)
    finally:
        bridge.kill()
    everything = messages_of(requests, set(range(len(requests))))
    assert not everything - stored(api), "every message stored once the sender's retries were answered"
    if wire == "ingest":  # a span delivered before the kill but never acknowledged is recognised by its id
        assert stored(api) == everything, "nothing stored twice"


def test_sigterm_with_a_backlog_loses_no_acknowledged_message(api: DevServer, tmp_path: Path) -> None:
    api.latency = 0.05
    requests = stream(40, 5, "term")  # 400 messages, delivered at about 26 a second: a backlog
    port = free_port()
    slow = {"AGENTSIGHT_MAX_CONCURRENCY": "2", "AGENTSIGHT_BRIDGE_ACK_TIMEOUT": "1"}
    bridge = start_bridge_process(port, api, "rest", tmp_path / "bridge.log", "--shutdown-timeout", "1", env=slow)
    sender = CollectorLikeSender(port, requests).start()
    try:
        sender.wait(1, timeout=30)
        bridge.send_signal(signal.SIGTERM)
        assert bridge.wait(15) == 0
        time.sleep(0.3)
        acknowledged = messages_of(requests, set(sender.acknowledged))
        lost = acknowledged - stored(api)
        assert not lost, f"{sum(lost.values())} of {sum(acknowledged.values())} acknowledged messages lost"
        assert sum(acknowledged.values()) < 400, "the stop came with a backlog"
        bridge = start_bridge_process(port, api, "rest", tmp_path / "bridge.log")
        sender.join(timeout=60)
    finally:
        bridge.kill()
    assert not messages_of(requests, set(range(len(requests)))) - stored(api), "every message stored in the end"

