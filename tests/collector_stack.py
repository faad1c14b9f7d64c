"""Processes of the Collector pipeline on loopback, for tests and the benchmark.

agent Collector -> gateway Collector -> ``agentsight bridge`` replicas (TLS, bearer token) -> a local
AgentSight API, and the gateway's redacted copy -> :class:`RecordingBackend`. The Collectors run the
shipped ``collector-config/*.yaml`` as they are, given only environment variables the files document
(endpoints, ports, the queue's directory, the bridge list, CA files), each Collector on free ports.
Every process here writes its output to a log file of its own, which errors quote.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
    TraceServiceServicer,
    add_TraceServiceServicer_to_server,
)

from agentsight.bridge.otlp import ReceivedSpan, decode_request

REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO / "collector-config"
BIN = Path(sys.executable).parent
START_TIMEOUT = 60.0
"""Seconds a process gets to serve (a Collector compacting its queue at start takes a moment)."""


def free_port() -> int:
    """A port the OS gives out now (nothing listens on it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
    """Poll ``check`` until true; ``AssertionError`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file (for failure messages)."""
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# TLS ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    """A private CA and a server certificate it signed for ``127.0.0.1`` and ``localhost`` (PEM files)."""

    ca: Path
    cert: Path
    key: Path


def make_tls(directory: Path) -> Tls:
    """A self-signed CA and a server certificate for loopback, written under ``directory``."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agentsight test CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    tls = Tls(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    tls.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    tls.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tls.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return tls


# The recording OTLP backend ----------------------------------------------------------------------


class _Recorder(TraceServiceServicer):
    def __init__(self, backend: RecordingBackend) -> None:
        self._backend = backend

    def Export(self, request: Any, context: grpc.ServicerContext) -> ExportTraceServiceResponse:  # noqa: N802
        spans = list(decode_request(request))
        with self._backend.lock:
            self._backend.spans.extend(spans)
            self._backend.requests += 1
        return ExportTraceServiceResponse()


class RecordingBackend:
    """A general tracing backend stand-in: an OTLP/gRPC trace receiver over TLS that keeps every span it gets."""

    def __init__(self, tls: Tls) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self.lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        add_TraceServiceServicer_to_server(_Recorder(self), self._server)
        credentials = grpc.ssl_server_credentials([(tls.key.read_bytes(), tls.cert.read_bytes())])
        self.port = self._server.add_secure_port("127.0.0.1:0", credentials)
        self._server.start()

    @property
    def endpoint(self) -> str:
        """``host:port``, as ``TRACING_BACKEND_ENDPOINT`` takes it."""
        return f"127.0.0.1:{self.port}"

    def received(self) -> list[ReceivedSpan]:
        """A copy of the spans received so far."""
        with self.lock:
            return list(self.spans)

    def stop(self) -> None:
        """Stop serving."""
        self._server.stop(grace=1).wait(5)


# Processes ---------------------------------------------------------------------------------------


@dataclass
class Process:
    """A child process started from ``command`` with ``env`` (added to ours), its output in ``log``;
    started again by :meth:`start` with the same command (same ports), e.g. after :meth:`stop`."""

    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    ready: Callable[[], bool]
    inherit: bool = True
    """Whether the process also gets our environment; without, only ``PATH``, ``HOME`` and ``env``."""
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, timeout: float = START_TIMEOUT) -> Process:
        """Start and wait until ``ready()``; ``AssertionError`` with the log's end if it exits or times out."""
        with self.log.open("ab") as log:
            log.write(f"--- start {self.name}: {' '.join(self.command)}\n".encode())
            base = dict(os.environ) if self.inherit else {
                key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
            self.popen = subprocess.Popen(self.command, env={**base, **self.env}, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self._probe():
            code = self.popen.poll()
            assert code is None, f"{self.name} exited with {code}:\n{log_tail(self.log)}"
            assert time.monotonic() < deadline, f"{self.name} did not serve in {timeout:g} s:\n{log_tail(self.log)}"
            time.sleep(0.05)
        return self

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); returns the exit status."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL, no clean-up of any kind."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)

    def _probe(self) -> bool:
        try:
            return self.ready()
        except (OSError, http.client.HTTPException):
            return False


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310 (loopback only)
        return bool(response.status == 200)


@dataclass
class Collector(Process):
    """A Collector process with its health and Prometheus (own metrics) ports."""

    health_port: int = 0
    metrics_port: int = 0
    grpc_port: int = 0
    """The OTLP/gRPC receiver's port."""

    def metrics(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """The Collector's own metrics: name -> (labels, value) of each sample (``_total`` suffixes dropped)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:  # noqa: S310
            text = response.read().decode()
        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            name, _, labels = head.partition("{")
            pairs = dict(part.split("=", 1) for part in labels.rstrip("}").split(",") if "=" in part)
            samples.setdefault(name.removesuffix("_total"), []).append(
                ({k: v.strip('"') for k, v in pairs.items()}, float(value)))
        return samples

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels contain ``labels`` (0 when there are none)."""
        return sum(value for found, value in self.metrics().get(name, [])
                   if all(found.get(key) == wanted for key, wanted in labels.items()))


def collector(binary: Path, name: str, config: Path, workdir: Path, env: Mapping[str, str],
              grpc_port: int) -> Collector:
    """A Collector running ``config`` as shipped (one ``--config``, no other setting), ``env`` plus its
    listening endpoints as environment variables: the OTLP receiver on ``grpc_port`` (gRPC) and a free port
    (HTTP), health and metrics on ports picked here, all on loopback. Nothing else of our environment reaches
    it (``PATH`` and ``HOME`` aside), so the files need no more than they document."""
    health, metrics = free_port(), free_port()
    listening = {"OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{grpc_port}",
                 "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
                 "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{health}",
                 "OTELCOL_METRICS_HOST": "127.0.0.1", "OTELCOL_METRICS_PORT": str(metrics)}
    return Collector(name, [str(binary), "--config", f"file:{config}"], {**listening, **env}, workdir / f"{name}.log",
                     lambda: _http_ok(f"http://127.0.0.1:{health}/"), inherit=False,
                     health_port=health, metrics_port=metrics, grpc_port=grpc_port)


def agent(binary: Path, workdir: Path, gateway_port: int) -> Collector:
    """``agent.yaml`` on a free OTLP/gRPC port, forwarding to the gateway's ``gateway_port``."""
    return collector(binary, "agent", CONFIG_DIR / "agent.yaml", workdir,
                     {"OTELCOL_GATEWAY_ENDPOINT": f"127.0.0.1:{gateway_port}"}, free_port())


def gateway_env(bridges: list[int], token: str, backend: str, tls: Tls, queue_dir: Path,
                consumers_per_bridge: int = 50) -> dict[str, str]:
    """The environment ``gateway.yaml`` takes to balance over the bridges on ``bridges`` (TLS with the private
    CA, bearer ``token``, ``consumers_per_bridge`` consumers per bridge as the file says), send the redacted copy
    to ``backend`` (TLS, the same CA) and queue in ``queue_dir``."""
    return {"AGENTSIGHT_BRIDGE_TOKEN": token, "TRACING_BACKEND_ENDPOINT": backend,
            "AGENTSIGHT_BRIDGE_ENDPOINTS": ",".join(f"127.0.0.1:{port}" for port in bridges),
            "AGENTSIGHT_BRIDGE_CA_FILE": str(tls.ca), "TRACING_BACKEND_CA_FILE": str(tls.ca),
            "OTELCOL_QUEUE_DIRECTORY": str(queue_dir),
            "OTELCOL_BRIDGE_CONSUMERS": str(consumers_per_bridge * len(bridges))}


def gateway(binary: Path, workdir: Path, grpc_port: int, bridges: list[int], token: str, backend: str,
            tls: Tls, queue_dir: Path, consumers_per_bridge: int = 50) -> Collector:
    """``gateway.yaml`` on ``grpc_port`` with :func:`gateway_env` (the queue's directory is created here)."""
    queue_dir.mkdir(parents=True, exist_ok=True)
    return collector(binary, "gateway", CONFIG_DIR / "gateway.yaml", workdir,
                     gateway_env(bridges, token, backend, tls, queue_dir, consumers_per_bridge), grpc_port)


def bridge(index: int, workdir: Path, grpc_port: int, api_url: str, api_key: str, wire: str, token: str,
           tls: Tls, *flags: str, env: Mapping[str, str] | None = None) -> Process:
    """``agentsight bridge`` number ``index`` on ``grpc_port`` (TLS, ``token``) delivering to ``api_url``
    with ``api_key`` on ``wire`` (``env``: more of its settings); ready once its OTLP/HTTP port answers
    ``/health`` over TLS."""
    http_port = free_port()
    context = ssl.create_default_context(cafile=str(tls.ca))
    return Process(
        f"bridge-{index}",
        [str(BIN / "agentsight"), "bridge", "--host", "127.0.0.1", "--grpc-port", str(grpc_port), "--http-port",
         str(http_port), "--protocol", wire, "--tls-cert", str(tls.cert), "--tls-key", str(tls.key), *flags],
        {"AGENTSIGHT_API_KEY": api_key, "AGENTSIGHT_API_ENDPOINT": api_url, "AGENTSIGHT_BRIDGE_TOKEN": token,
         **(env or {})},
        workdir / f"bridge-{index}.log", lambda: _http_ok(f"https://127.0.0.1:{http_port}/health", context))


# Apps --------------------------------------------------------------------------------------------

APP = Path(__file__).resolve().parent / "collector_app.py"


@dataclass(frozen=True)
class AppRun:
    """One app process to run: its flow (``seed`` or ``llm``), conversation id prefix and number of turns."""

    flow: str
    prefix: str
    turns: int


def run_apps(runs: list[AppRun], otlp_port: int, openai_url: str, workdir: Path, timeout: float = 120.0,
             extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Run the apps at once, each a process exporting OTLP/gRPC to ``otlp_port`` (plaintext, unless
    ``extra_env`` says otherwise); returns the trace id of every conversation (conversation id -> hex trace
    id). ``AssertionError`` with its output if one fails."""
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "none",
           "OTEL_LOGS_EXPORTER": "none", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
           "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}", "OTEL_EXPORTER_OTLP_INSECURE": "true",
           "OTEL_BSP_SCHEDULE_DELAY": "100", "AGENTSIGHT_DIRECT_EXPORT": "false", "AGENTSIGHT_API_KEY": "",
           "AGENTSIGHT_AUTO_INSTRUMENT": "true", "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
           "OPENAI_BASE_URL": openai_url, "PYTHONPATH": str(REPO), **(extra_env or {})}
    processes = []
    for run in runs:
        log = workdir / f"app-{run.prefix}.log"
        with log.open("wb") as stderr:
            processes.append((run, log, subprocess.Popen(
                [sys.executable, str(APP), run.flow, run.prefix, str(run.turns)], env={
                    **env, "OTEL_SERVICE_NAME": f"app-{run.flow}"}, stdout=subprocess.PIPE, stderr=stderr)))
    traces: dict[str, str] = {}
    for run, log, process in processes:
        try:
            out, _ = process.communicate(timeout=timeout)
        finally:
            process.kill()
        assert process.returncode == 0, f"app {run.prefix} failed:\n{log_tail(log)}"
        traces.update(json.loads(out))
    return traces


# The whole pipeline ------------------------------------------------------------------------------

BRIDGE_TOKEN = "e2e-bridge-token-0123456789"


def api_key(index: int) -> str:
    """The AgentSight API key of bridge ``index``: each bridge delivers with its own, so the API's record
    of requests tells which bridge delivered what."""
    return f"ags_{index + 1:032x}_abcdef"


@dataclass
class Pipeline:
    """agent -> gateway -> ``bridges`` bridge replicas -> the API at ``api_url`` (on ``wire``), and the
    gateway's redacted copy -> :attr:`backend`. ``gateway_token`` is the token the gateway sends (the
    bridges expect :data:`BRIDGE_TOKEN`). Start with :meth:`start`; :meth:`stop` ends every process."""

    binary: Path
    workdir: Path
    api_url: str
    wire: str = "ingest"
    bridges: int = 2
    gateway_token: str = BRIDGE_TOKEN
    bridge_flags: tuple[str, ...] = ()
    bridge_env: Mapping[str, str] = field(default_factory=dict)
    """More settings of every bridge (``AGENTSIGHT_*`` variables)."""
    consumers_per_bridge: int = 50
    """The gateway's ``OTELCOL_BRIDGE_CONSUMERS`` per bridge (the file's default is 50 per bridge)."""
    replicas: list[Process] = field(default_factory=list)
    gateway: Collector | None = None
    agent: Collector | None = None
    backend: RecordingBackend | None = None
    tls: Tls | None = None
    bridge_ports: list[int] = field(default_factory=list)

    def start(self) -> Pipeline:
        """Start every process, from the API's side to the apps' (each serving before the next starts)."""
        tls = self.tls = make_tls(self.workdir)
        self.backend = RecordingBackend(tls)
        ports = self.bridge_ports = [free_port() for _ in range(self.bridges)]
        self.replicas = [bridge(index, self.workdir, port, self.api_url, api_key(index), self.wire, BRIDGE_TOKEN,
                                tls, *self.bridge_flags, env=self.bridge_env) for index, port in enumerate(ports)]
        for replica in self.replicas:
            replica.start()
        self.gateway = gateway(self.binary, self.workdir, free_port(), ports, self.gateway_token,
                               self.backend.endpoint, tls, self.workdir / "queue", self.consumers_per_bridge).start()
        self.agent = agent(self.binary, self.workdir, self.gateway.grpc_port).start()
        return self

    @property
    def otlp_port(self) -> int:
        """The agent's OTLP/gRPC port, where apps export."""
        assert self.agent is not None
        return self.agent.grpc_port

    def bridge_of(self, headers: Mapping[str, str]) -> int:
        """Which bridge sent an API request, by its API key."""
        keys = [f"Api-Key {api_key(index)}" for index in range(self.bridges)]
        return keys.index(headers["authorization"])

    def stop(self) -> None:
        """End every process (SIGTERM, then SIGKILL) and the backend."""
        for process in [self.agent, self.gateway, *self.replicas]:
            if process is not None:
                process.stop(timeout=15)
        if self.backend is not None:
            self.backend.stop()
