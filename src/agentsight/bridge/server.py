"""The ``agentsight bridge``: OTLP/HTTP and OTLP/gRPC receivers feeding one :class:`BridgeCore`.

:class:`Bridge` runs both receivers (:mod:`agentsight.bridge.otlp_http`, :mod:`agentsight.bridge.otlp_grpc`)
over one core (:mod:`agentsight.bridge.core`), which answers each request once its conversations are
delivered. ``stop()`` is graceful: turns still in their grace period go at once, requests in flight are
answered, then the core delivers what is left within the timeout.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import add_TraceServiceServicer_to_server

from agentsight.bridge.codec import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_DECOMPRESSED_BYTES
from agentsight.bridge.core import BridgeCore
from agentsight.bridge.otlp_grpc import OtlpTraceService
from agentsight.bridge.otlp_http import TRACES_PATH, OtlpHttpServer
from agentsight.config import DeliverySettings, Settings

logger = logging.getLogger("agentsight.bridge")

DEFAULT_GRPC_PORT = 4317
DEFAULT_HTTP_PORT = 4318
DEFAULT_GRPC_WORKERS = 256
"""OTLP/gRPC requests served at once (more wait their turn): each waits for its conversations' delivery."""
DEFAULT_MAX_QUEUE_SIZE = 100_000
"""The bridge's room in payloads when ``AGENTSIGHT_MAX_QUEUE_SIZE`` is not set (an app's default is 10,000).

A bridge holds every sender's turns for the grace period and their delivery before it answers, so a Collector
needs rate x (grace + delivery) turns in flight: 5,000 turns/s over two bridges is about 25,000 payloads on
each, and a gateway's consumers can momentarily all be at one bridge. ``AGENTSIGHT_MAX_QUEUE_BYTES`` (64 MiB)
still bounds its memory."""


def bridge_settings(protocol: str | None = None) -> Settings:
    """The settings a bridge runs with: the environment's, with the bridge's own room by default."""
    delivery = DeliverySettings.from_env()
    if "AGENTSIGHT_MAX_QUEUE_SIZE" not in os.environ:
        delivery = dataclasses.replace(delivery, max_queue_size=DEFAULT_MAX_QUEUE_SIZE)
    return Settings.resolve(protocol=protocol, delivery=delivery)



@dataclass
class _Running:
    core: BridgeCore
    http: OtlpHttpServer | None
    http_thread: threading.Thread | None
    grpc: grpc.Server | None


class Bridge:
    """OTLP/gRPC and OTLP/HTTP receivers feeding one :class:`BridgeCore` that delivers to AgentSight.

    A port of 0 picks a free one (read the actual ``grpc_port``/``http_port`` after ``start()``); ``None``
    leaves that receiver off. ``start()`` after ``stop()`` listens again on the same ports with a fresh core.
    ``grace`` is how long a turn waits for model-call spans of its trace (``None``: the core's default,
    ``AGENTSIGHT_BRIDGE_GRACE`` or 2 s); ``ack_timeout`` how long a request waits for its conversations'
    delivery before it is answered "retry" (``None``: ``AGENTSIGHT_BRIDGE_ACK_TIMEOUT`` or 8 s; see
    :class:`BridgeCore`). With ``tls_cert_file`` and ``tls_key_file`` (PEM) both receivers
    speak TLS, as a Collector's ``bearertokenauth`` requires before it sends a token. Use as a context
    manager, or ``start()``/``stop()``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        grpc_port: int | None = DEFAULT_GRPC_PORT,
        http_port: int | None = DEFAULT_HTTP_PORT,
        token: str | None = None,
        settings: Settings | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
        grpc_workers: int = DEFAULT_GRPC_WORKERS,
        grace: float | None = None,
        ack_timeout: float | None = None,
        tls_cert_file: str | None = None,
        tls_key_file: str | None = None,
    ) -> None:
        if (tls_cert_file is None) != (tls_key_file is None):
            raise ValueError("TLS needs both a certificate file and a key file")
        self.tls_cert_file = tls_cert_file
        self.tls_key_file = tls_key_file
        self.host = host
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.token = token or None
        self.settings = settings or bridge_settings()
        self.max_body_bytes = max_body_bytes
        self.max_decompressed_bytes = max_decompressed_bytes
        self.grpc_workers = grpc_workers
        self.grace = grace
        self.ack_timeout = ack_timeout
        self._running: _Running | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Bridge(host={self.host!r}, grpc_port={self.grpc_port}, http_port={self.http_port})"

    @property
    def core(self) -> BridgeCore:
        """The running core (raises before ``start()``)."""
        if self._running is None:
            raise RuntimeError("the bridge is not running")
        return self._running.core

    @property
    def http_endpoint(self) -> str:
        """The OTLP/HTTP traces URL (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` for ``http/protobuf``)."""
        return f"{self._scheme}://{_host_port(self.host, self.http_port)}{TRACES_PATH}"

    @property
    def grpc_endpoint(self) -> str:
        """The OTLP/gRPC endpoint (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` for ``grpc``)."""
        return f"{self._scheme}://{_host_port(self.host, self.grpc_port)}"

    @property
    def _scheme(self) -> str:
        return "https" if self.tls_cert_file else "http"

    def start(self) -> Bridge:
        """Listen on both receivers; raises ``OSError`` when a port cannot be bound."""
        with self._lock:
            if self._running is not None:
                raise RuntimeError("the bridge is already running")
            core = BridgeCore(self.settings, grace=self.grace, ack_timeout=self.ack_timeout)
            running = _Running(core, None, None, None)
            try:
                if self.http_port is not None:
                    running.http = OtlpHttpServer(
                        (self.host, self.http_port), core, self.token, self.max_body_bytes, self.max_decompressed_bytes
                    )
                    self.http_port = running.http.server_address[1]
                    if self.tls_cert_file and self.tls_key_file:
                        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                        context.load_cert_chain(self.tls_cert_file, self.tls_key_file)
                        # The handshake happens in the request's thread, not in the accepting loop.
                        running.http.socket = context.wrap_socket(
                            running.http.socket, server_side=True, do_handshake_on_connect=False
                        )
                    running.http_thread = threading.Thread(
                        target=running.http.serve_forever, args=(0.1,), name="agentsight-bridge-http", daemon=True
                    )
                    running.http_thread.start()
                if self.grpc_port is not None:
                    running.grpc, self.grpc_port = self._start_grpc(core, self.grpc_port)
            except BaseException:
                self._stop_running(running, 0.0)
                raise
            self._running = running
            return self

    def _start_grpc(self, core: BridgeCore, port: int) -> tuple[grpc.Server, int]:
        server = grpc.server(
            ThreadPoolExecutor(max_workers=self.grpc_workers, thread_name_prefix="agentsight-bridge-grpc"),
            options=[
                ("grpc.so_reuseport", 0),  # a second bridge on the same port must fail, not share it
                ("grpc.max_receive_message_length", self.max_decompressed_bytes),
            ],
        )
        add_TraceServiceServicer_to_server(OtlpTraceService(core, self.token), server)
        address = _host_port(self.host, port)
        try:
            if self.tls_cert_file and self.tls_key_file:
                with open(self.tls_key_file, "rb") as key, open(self.tls_cert_file, "rb") as cert:
                    credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
                bound = server.add_secure_port(address, credentials)
            else:
                bound = server.add_insecure_port(address)
        except RuntimeError as error:  # grpcio raises RuntimeError when it cannot bind
            raise OSError(f"cannot listen for OTLP/gRPC on {address}: {error}") from None
        if not bound:
            raise OSError(f"cannot listen for OTLP/gRPC on {address}")
        server.start()
        return server, bound

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting and answer requests in flight, then deliver what is left (within ``timeout`` s).

        Turns still in their grace period go at once. What is not delivered in time was not acknowledged:
        its senders send it again.
        """
        with self._lock:
            running, self._running = self._running, None
        if running is not None:
            self._stop_running(running, timeout)

    @staticmethod
    def _stop_running(running: _Running, timeout: float) -> None:
        deadline = time.monotonic() + timeout

        def remaining() -> float:
            return max(0.0, deadline - time.monotonic())

        running.core.hurry()
        grpc_stopped = running.grpc.stop(grace=timeout) if running.grpc is not None else None
        if running.http is not None:
            if running.http_thread is not None:
                running.http.shutdown()  # the accept loop ends
            running.http.server_close()
            if not running.http.connections.close(remaining()):
                logger.warning("OTLP/HTTP requests still in flight after %.1f s; stopping anyway", timeout)
        if grpc_stopped is not None:
            grpc_stopped.wait(remaining())
        running.core.shutdown(remaining())

    def __enter__(self) -> Bridge:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _host_port(host: str, port: int | None) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


__all__ = ["DEFAULT_GRPC_PORT", "DEFAULT_HTTP_PORT", "Bridge"]
