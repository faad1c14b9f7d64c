"""Where the Collector benchmark's routes end: the local API in a process of its own, and a sink in place of the
bridges behind an agent and a gateway of their own (the Collectors' ceiling)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc

from agentsight.spans.semconv import CONVERSATION_ID, CONVERSATION_SPAN
from tests.collector_stack import BRIDGE_TOKEN, Collector, Tls, agent, free_port, gateway, wait_until

API_KEY = "ags_" + "c" * 32 + "_" + "d" * 6


class Api:
    """``agentsight dev --memory`` in a process of its own."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.process = subprocess.Popen([str(Path(sys.executable).parent / "agentsight"), "dev", "--memory",
                                         "--port", str(self.port)], stdout=log.open("wb"), stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until(lambda: self._get("/health") is not None, 30, "the API")

    def _get(self, path: str) -> bytes | None:
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"Api-Key {API_KEY}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
                return bytes(response.read())
        except (OSError, urllib.error.HTTPError):
            return None

    def conversations(self) -> int:
        """How many conversations are stored (a one-row page's count: cheap, unlike the dashboard's stats)."""
        return int(json.loads(self._get("/api/conversations/?page_size=1") or b'{"count": 0}')["count"])

    def has(self, conversation_id: str) -> bool:
        """Whether this conversation is stored."""
        return self._get(f"/api/conversations/lookup/?conversation_id={conversation_id}") is not None


class Sink:
    """A fast OTLP/gRPC trace receiver over TLS in place of the bridges (and one for the backend copy): it
    answers at once and counts the conversation spans it got, by conversation id (a repeat counts once), so
    the Collectors' own ceiling shows apart from the bridges'. Each of ``ports`` serves it (one per bridge
    the gateway balances over)."""

    def __init__(self, tls: Tls, ports: int) -> None:
        from concurrent import futures

        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self.seen: set[str] = set()
        self.lock = threading.Lock()
        self._parse = ExportTraceServiceRequest.FromString
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        handler = grpc.unary_unary_rpc_method_handler(self._export)
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService", {"Export": handler}),))
        credentials = grpc.ssl_server_credentials([(tls.key.read_bytes(), tls.cert.read_bytes())])
        self.ports = [self._server.add_secure_port("127.0.0.1:0", credentials) for _ in range(ports)]
        self._server.start()

    def _export(self, body: bytes, context: grpc.ServicerContext) -> bytes:
        ids = [attribute.value.string_value
               for resource in self._parse(body).resource_spans for scope in resource.scope_spans
               for span in scope.spans if span.name == CONVERSATION_SPAN
               for attribute in span.attributes if attribute.key == CONVERSATION_ID]
        with self.lock:
            self.seen.update(ids)
        return b""  # an empty ExportTraceServiceResponse

    def conversations(self) -> int:
        """How many conversations arrived."""
        with self.lock:
            return len(self.seen)

    def has(self, conversation_id: str) -> bool:
        """Whether this conversation arrived."""
        with self.lock:
            return conversation_id in self.seen

    def stop(self) -> None:
        """Stop serving."""
        self._server.stop(grace=1).wait(5)


@dataclass
class Collectors:
    """agent -> gateway -> :class:`Sink` (in place of 2 bridges), the backend copy to another sink."""

    agent: Collector
    gateway: Collector
    sinks: tuple[Sink, Sink]

    @classmethod
    def start(cls, binary: Path, workdir: Path, tls: Tls) -> Collectors:
        """Start the sinks, then the gateway and the agent (each serving before the next)."""
        bridges, backend = Sink(tls, 2), Sink(tls, 1)
        workdir.mkdir()
        front = gateway(binary, workdir, free_port(), bridges.ports, BRIDGE_TOKEN, f"127.0.0.1:{backend.ports[0]}",
                        tls, workdir / "queue").start()
        return cls(agent(binary, workdir, front.grpc_port).start(), front, (bridges, backend))

    @property
    def otlp_port(self) -> int:
        """The agent's OTLP/gRPC port."""
        return self.agent.grpc_port

    def stop(self) -> None:
        """End the Collectors and the sinks."""
        self.agent.stop(timeout=15)
        self.gateway.stop(timeout=15)
        for sink in self.sinks:
            sink.stop()
