"""The agentsight bridge over real wires: apps export OTLP (gRPC or HTTP) to it, it delivers to a local API."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from agentsight.bridge.codec import DEFAULT_MAX_BODY_BYTES, parse_otlp_json
from agentsight.bridge.core import RETRY_AFTER_SECONDS, RETRY_SOON_SECONDS
from agentsight.bridge.server import Bridge
from agentsight.config import DeliverySettings, Settings
from agentsight.dev import DevServer
from agentsight.spans import semconv as sc
from tests.conftest import API_KEY, QUICK_RETRIES, bodies, run_script, stored_messages
from tests.test_ingest_wire import ingest_documents, shape
from tests.test_otel_integration import SEED_FLOW, SEED_PATHS

# Most tests here read the REST wire's payloads; the ingest wire's own test sets its protocol.
pytestmark = pytest.mark.usefixtures("rest_wire")

BIN = Path(sys.executable).parent
PIPELINE = """
import os, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from agentsight import ConversationTracker

if os.environ.get("OTEL_TRACES_EXPORTER") == "otlp" and not isinstance(trace.get_tracer_provider(), TracerProvider):
    # The app's own OTLP set-up (under opentelemetry-instrument the distro has made one already).
    if os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
tracker = ConversationTracker()
"""
SEED_APP = PIPELINE + textwrap.dedent(SEED_FLOW)


# Helpers -----------------------------------------------------------------------------------------


def _attribute(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def conversation_request(conversation_id: str, *questions: str) -> ExportTraceServiceRequest:
    """An OTLP request holding one conversation turn with ``questions`` and one unrelated span."""
    now = time.time_ns()
    turn = Span(
        name=sc.CONVERSATION_SPAN, trace_id=os.urandom(16), span_id=os.urandom(8), start_time_unix_nano=now,
        end_time_unix_nano=now, attributes=[_attribute(sc.CONVERSATION_ID, conversation_id)],
        events=[Span.Event(name=sc.MESSAGE_EVENT, time_unix_nano=now, attributes=[
            _attribute(sc.MESSAGE_CONTENT, question), _attribute(sc.MESSAGE_SENDER, sc.SENDER_END_USER)])
            for question in questions],
    )
    other = Span(name="GET /api/chat", trace_id=os.urandom(16), span_id=os.urandom(8))
    return ExportTraceServiceRequest(resource_spans=[
        ResourceSpans(scope_spans=[ScopeSpans(spans=[other, turn])])])


def post(
    port: int | None, body: bytes, content_type: str = "application/x-protobuf", path: str = "/v1/traces",
    method: str = "POST", **headers: str,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request to the bridge's OTLP/HTTP port: status, headers, body."""
    assert port is not None, "the OTLP/HTTP receiver is on"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body, {"Content-Type": content_type, **{
            name.replace("_", "-"): value for name, value in headers.items()}})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def grpc_export(bridge: Bridge, request: ExportTraceServiceRequest, token: str | None = None) -> Any:
    """Export over OTLP/gRPC; returns the response or the ``grpc.RpcError``."""
    with grpc.insecure_channel(f"127.0.0.1:{bridge.grpc_port}") as channel:
        metadata = [("authorization", f"Bearer {token}")] if token else None
        try:
            return TraceServiceStub(channel).Export(request, metadata=metadata, timeout=10)
        except grpc.RpcError as error:
            return error


def delivered(api: DevServer) -> list[tuple[str, dict[str, Any]]]:
    """What the API accepted: path and body without its timestamp."""
    return [(r.path, {k: v for k, v in r.body.items() if k != "timestamp"}) for r in api.accepted()]


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def otlp_env(bridge: Bridge, protocol: str, **extra: str) -> dict[str, str]:
    """An app exporting OTLP to ``bridge`` over ``protocol`` and sending AgentSight nothing itself."""
    return {
        "OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": bridge.grpc_endpoint if protocol == "grpc" else bridge.http_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50", "AGENTSIGHT_DIRECT_EXPORT": "false", "AGENTSIGHT_API_KEY": "",
        "PYTHONPATH": str(Path.cwd()), **extra,
    }


@pytest.fixture
def start_bridge(api: DevServer) -> Iterator[Callable[..., Bridge]]:
    """Start bridges on free ports delivering to ``api`` (stopped after the test)."""
    started: list[Bridge] = []

    def start(**kwargs: Any) -> Bridge:
        kwargs.setdefault("settings", Settings.resolve(api_key=API_KEY, endpoint=api.url, delivery=QUICK_RETRIES))
        kwargs.setdefault("grpc_port", 0)
        kwargs.setdefault("http_port", 0)
        kwargs.setdefault("grace", 0.0)  # no model calls come apart from their turns here: no need to wait
        bridge = Bridge(**kwargs).start()
        started.append(bridge)
        return bridge

    yield start
    for bridge in started:
        bridge.stop(timeout=5)


@pytest.fixture
def bridge(start_bridge: Callable[..., Bridge]) -> Bridge:
    """A bridge on free ports delivering to ``api``."""
    return start_bridge()


@pytest.fixture(scope="module")
def direct_seed(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, dict[str, Any]]]:
    """The seed flow's deliveries from the in-process path (the tracker's own direct export)."""
    with DevServer() as api:
        result = run_script(tmp_path_factory.mktemp("direct"), SEED_APP, {
            "AGENTSIGHT_API_KEY": API_KEY, "AGENTSIGHT_API_ENDPOINT": api.url, "AGENTSIGHT_PROTOCOL": "rest",
            "PYTHONPATH": str(Path.cwd())})
        assert result.returncode == 0, result.stderr
        assert [r.path for r in api.accepted()] == SEED_PATHS
        return delivered(api)


# Apps exporting to the bridge --------------------------------------------------------------------


@pytest.mark.parametrize(("protocol", "launcher", "extra"), [
    pytest.param("grpc", (), {}, id="grpc"),
    pytest.param("http/protobuf", (), {}, id="http"),
    pytest.param("grpc", (str(BIN / "opentelemetry-instrument"),), {"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"},
                 id="instrument-grpc-gzip"),
    pytest.param("http/protobuf", (str(BIN / "opentelemetry-instrument"),), {"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"},
                 id="instrument-http-gzip"),
    pytest.param("http/protobuf", (), {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "1"}, id="http-one-span-per-batch"),
    pytest.param("grpc", (), {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "1"}, id="grpc-one-span-per-batch"),
])
def test_seed_flow_through_the_bridge_matches_direct_export(
    api: DevServer, bridge: Bridge, direct_seed: list, tmp_path: Path, protocol: str,
    launcher: tuple[str, ...], extra: dict[str, str],
) -> None:
    result = run_script(tmp_path, SEED_APP, otlp_env(bridge, protocol, **extra), args=launcher)
    assert result.returncode == 0, result.stderr
    api.wait_for(len(SEED_PATHS))
    assert delivered(api) == direct_seed, "the same payloads, in the same order, as the app's direct export"
    stats = bridge.core.stats()
    assert stats["turns_received"] == 2  # initialize_conversation's span and the turn's
    if extra.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") == "1":
        assert stats["requests"] == stats["spans_received"] == 2


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_seed_flow_through_the_bridge_on_the_ingest_wire_matches_direct_export(
    api: DevServer, start_bridge: Callable[..., Bridge], tmp_path: Path, protocol: str
) -> None:
    with DevServer() as direct:
        result = run_script(tmp_path, SEED_APP, {"AGENTSIGHT_API_KEY": API_KEY, "AGENTSIGHT_API_ENDPOINT": direct.url,
                                                 "AGENTSIGHT_PROTOCOL": "ingest", "PYTHONPATH": str(Path.cwd())})
        assert result.returncode == 0, result.stderr
        direct_documents = ingest_documents(direct)
    bridge = start_bridge(settings=Settings.resolve(api_key=API_KEY, endpoint=api.url, delivery=QUICK_RETRIES,
                                                    protocol="ingest"))
    result = run_script(tmp_path, SEED_APP, otlp_env(bridge, protocol))
    assert result.returncode == 0, result.stderr
    bridge.stop(timeout=10)
    assert shape(ingest_documents(api)) == shape(direct_documents), "the same span families as direct export"
    assert not api.accepted("/api/track/"), "nothing on the REST wire"


RESTART_APP = PIPELINE + """
for number in range(2):
    tracker.get_or_create_conversation(f"conv-{number}")
    tracker.track_question(f"question {number}")
    tracker.send_tracked_data()
    assert trace.get_tracer_provider().force_flush(30_000)
    print(f"exported {number}", flush=True)
    sys.stdin.readline()
"""


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_restart_on_the_same_port_loses_nothing(
    api: DevServer, bridge: Bridge, tmp_path: Path, protocol: str
) -> None:
    script = tmp_path / "app.py"
    script.write_text(RESTART_APP)
    ports = (bridge.grpc_port, bridge.http_port)
    app = subprocess.Popen([sys.executable, str(script)], env={**os.environ, **otlp_env(bridge, protocol)},
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert app.stdout is not None and app.stdin is not None
        assert app.stdout.readline() == "exported 0\n"
        bridge.stop(timeout=10)  # graceful: what it accepted is delivered before stop() returns
        assert [b["content"] for b in bodies(api, "/api/track/")] == ["question 0"]
        app.stdin.write("\n")
        app.stdin.flush()
        time.sleep(0.3)  # the app exports while nothing listens, and retries
        bridge.start()
        assert (bridge.grpc_port, bridge.http_port) == ports
        assert app.stdout.readline() == "exported 1\n"
        app.stdin.write("\n")
        app.stdin.flush()
        _, stderr = app.communicate(timeout=30)
    finally:
        app.kill()
    assert app.returncode == 0, stderr
    assert "retrying" in stderr, "the exporter met the stopped bridge and retried"
    api.wait_for(4)
    assert [b["content"] for b in bodies(api, "/api/track/")] == ["question 0", "question 1"]


# OTLP/HTTP answers -------------------------------------------------------------------------------


def _status(body: bytes) -> Status:
    return Status.FromString(body)


def test_valid_protobuf_gzip_and_deflate_are_accepted(api: DevServer, bridge: Bridge) -> None:
    raw = conversation_request("conv-plain", "plain").SerializeToString()
    assert post(bridge.http_port, raw)[0] == 200
    gzipped = gzip.compress(conversation_request("conv-gzip", "gzip").SerializeToString())
    assert post(bridge.http_port, gzipped, Content_Encoding="gzip")[0] == 200
    deflated = zlib.compress(conversation_request("conv-deflate", "deflate").SerializeToString())
    status, headers, body = post(bridge.http_port, deflated, Content_Encoding="deflate")
    assert status == 200 and headers["Content-Type"] == "application/x-protobuf"
    assert not ExportTraceServiceResponse.FromString(body).HasField("partial_success")
    api.wait_for(6)
    assert sorted(b["content"] for b in bodies(api, "/api/track/")) == ["deflate", "gzip", "plain"]


def test_otlp_json_with_hex_ids(api: DevServer, bridge: Bridge) -> None:
    trace_id, span_id = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
    document = {"resourceSpans": [{"resource": {"attributes": [], "someFutureField": 1}, "scopeSpans": [{"spans": [{
        "traceId": trace_id, "spanId": span_id, "parentSpanId": "", "name": sc.CONVERSATION_SPAN, "kind": 1,
        "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": 1700000000500000000,
        "attributes": [{"key": sc.CONVERSATION_ID, "value": {"stringValue": "conv-json"}}],
        "events": [{"timeUnixNano": "1700000000100000000", "name": sc.MESSAGE_EVENT, "attributes": [
            {"key": sc.MESSAGE_CONTENT, "value": {"stringValue": "from JSON"}}]}],
        "links": [{"traceId": trace_id, "spanId": span_id}], "unknownSpanField": {"x": [1, 2]},
    }]}]}]}
    parsed = parse_otlp_json(json.dumps(document).encode())
    span = parsed.resource_spans[0].scope_spans[0].spans[0]
    assert (span.trace_id.hex(), span.span_id.hex(), span.links[0].span_id.hex()) == (trace_id, span_id, span_id)
    status, headers, body = post(bridge.http_port, json.dumps(document).encode(), "application/json; charset=utf-8")
    assert (status, headers["Content-Type"], json.loads(body)) == (200, "application/json", {})
    api.wait_for(2)
    assert [b["content"] for b in bodies(api, "/api/track/")] == ["from JSON"]
    assert bodies(api, "/api/track/")[0]["timestamp"].startswith("2023-11-14T22:13:20.100000")


@pytest.mark.parametrize(("body", "content_type", "message"), [
    (b"\x0a\xff\xff\xff\xff\x0f", "application/x-protobuf", "malformed protobuf"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "not hex"}]}]}]}', "application/json",
     "not a hex string"),
    (b"{not json", "application/json", "malformed JSON"),
])
def test_malformed_data_is_400_with_a_status_body(bridge: Bridge, body: bytes, content_type: str, message: str) -> None:
    status, headers, answer = post(bridge.http_port, body, content_type)
    assert status == 400 and headers["Content-Type"] == content_type.split(";")[0]
    detail = json.loads(answer)["message"] if content_type == "application/json" else _status(answer).message
    assert message in detail
    assert bridge.core.stats()["requests"] == 0, "nothing malformed reaches the core"


def test_unknown_content_type_or_encoding_is_415(bridge: Bridge) -> None:
    raw = conversation_request("conv", "q").SerializeToString()
    assert post(bridge.http_port, raw, "text/plain")[0] == 415
    assert post(bridge.http_port, raw, Content_Encoding="br")[0] == 415


def test_oversized_body_is_413(bridge: Bridge) -> None:
    status, _, answer = post(bridge.http_port, b"\0" * (DEFAULT_MAX_BODY_BYTES + 1))
    assert status == 413 and "larger than" in _status(answer).message


def _gzip_bomb(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    return b"".join([*(compressor.compress(zeros) for _ in range(size >> 20)), compressor.flush()])


def test_gzip_bomb_is_413_without_inflating_it(bridge: Bridge) -> None:
    bomb = _gzip_bomb(1 << 30)  # 1 GiB of zeros
    assert len(bomb) < 1.1 * (1 << 20)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    try:
        status, _, answer = post(bridge.http_port, bomb, Content_Encoding="gzip")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert status == 413 and "once decompressed" in _status(answer).message
    assert peak < bridge.max_decompressed_bytes + 16 * (1 << 20), f"peak of {peak} bytes traced"
    assert grown_mib < 200, f"maxrss grew {grown_mib:.0f} MiB"


def test_token_is_required_over_http_and_grpc(start_bridge: Callable[..., Bridge]) -> None:
    bridge = start_bridge(token="s3cret")
    request = conversation_request("conv-auth", "q")
    raw = request.SerializeToString()
    assert post(bridge.http_port, raw)[0] == 401
    status, headers, _ = post(bridge.http_port, raw, Authorization="Bearer wrong")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert post(bridge.http_port, raw, Authorization="Bearer s3cret")[0] == 200
    assert grpc_export(bridge, request).code() == grpc.StatusCode.UNAUTHENTICATED
    assert grpc_export(bridge, request, token="wrong").code() == grpc.StatusCode.UNAUTHENTICATED
    assert isinstance(grpc_export(bridge, request, token="s3cret"), ExportTraceServiceResponse)
    assert bridge.core.stats()["requests"] == 2


def test_full_queue_asks_senders_to_retry_later(start_bridge: Callable[..., Bridge]) -> None:
    down = Settings.resolve(api_key=API_KEY, endpoint=f"http://127.0.0.1:{free_port()}", delivery=DeliverySettings(
        max_queue_size=3, backoff_initial=1.0, max_retry_time=60.0))
    bridge = start_bridge(settings=down, ack_timeout=0.3)
    raw = conversation_request("conv-full", "q").SerializeToString()
    status, headers, answer = post(bridge.http_port, raw)  # its two payloads take the queue: the API is down
    assert (status, headers["Retry-After"]) == (503, str(int(RETRY_SOON_SECONDS)))
    assert "still under way" in _status(answer).message, "not delivered in time: not acknowledged"
    status, headers, answer = post(bridge.http_port, conversation_request("conv-more", "q").SerializeToString())
    assert status == 503 and headers["Retry-After"] == str(int(RETRY_AFTER_SECONDS))
    detail = _status(answer)
    assert detail.code == grpc.StatusCode.UNAVAILABLE.value[0] and detail.details[0].Is(RetryInfo.DESCRIPTOR)
    error = grpc_export(bridge, conversation_request("conv-full", "q"))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    retry = RetryInfo.FromString(dict(error.trailing_metadata())["google.rpc.retryinfo-bin"])
    assert retry.retry_delay.seconds == int(RETRY_AFTER_SECONDS)
    assert bridge.core.stats()["requests_refused"] == 2
    bridge.stop(timeout=0.2)


def test_health_and_unknown_routes(bridge: Bridge) -> None:
    for path in ("/health", "/healthz"):
        status, headers, body = post(bridge.http_port, b"", path=path, method="GET")
        answer = json.loads(body)
        assert (status, headers["Content-Type"], answer["status"]) == (200, "application/json", "ok")
        assert {"requests", "spans_received", "payloads_delivered"} <= answer["stats"].keys()
    assert post(bridge.http_port, b"", path="/v1/metrics")[0] == 404
    status, headers, _ = post(bridge.http_port, b"", method="GET")
    assert status == 405 and headers["Allow"] == "POST"


def test_keep_alive_connection_serves_many_requests(api: DevServer, bridge: Bridge) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", bridge.http_port, timeout=10)
    for number in range(3):
        connection.request("POST", "/v1/traces", conversation_request(f"conv-{number}", "q").SerializeToString(),
                           {"Content-Type": "application/x-protobuf"})
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("Connection") != "close"
        response.read()
    connection.request("POST", "/v1/traces", b"\xff", {"Content-Type": "text/plain"})  # an error keeps it open too
    assert connection.getresponse().read() and connection.sock is not None
    connection.close()
    assert sorted(stored_messages(api)) == [("conv-0", "q"), ("conv-1", "q"), ("conv-2", "q")], (
        "each request was answered once its conversation was stored")


def _refused(port: int | None, within: float = 2.0) -> bool:
    assert port is not None
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except (ConnectionRefusedError, ConnectionResetError):  # reset: accepted just before the socket closed
            return True
        time.sleep(0.05)
    return False


def test_stop_finishes_requests_in_flight_then_delivers(api: DevServer, bridge: Bridge) -> None:
    idle = http.client.HTTPConnection("127.0.0.1", bridge.http_port, timeout=10)
    idle.request("GET", "/health")
    idle.getresponse().read()  # a kept-alive connection, idle: it must not hold stop() up
    raw = conversation_request("conv-in-flight", "sent while stopping").SerializeToString()
    sending = socket.create_connection(("127.0.0.1", bridge.http_port), timeout=10)
    sending.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/x-protobuf\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(raw), raw[:5]))
    time.sleep(0.2)  # the request has begun: in flight
    stopper = threading.Thread(target=bridge.stop, kwargs={"timeout": 10})
    stopper.start()
    assert _refused(bridge.http_port), "no new connections once stopping"
    assert stopper.is_alive(), "stop() waits for the request in flight"
    assert idle.sock is not None and idle.sock.recv(1) == b"", "the idle connection was closed"
    sending.sendall(raw[5:])
    answer = sending.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.1 200 ") and b"\r\nConnection: close\r\n" in answer
    stopper.join(10)
    assert not stopper.is_alive()
    assert [b["content"] for b in bodies(api, "/api/track/")] == ["sent while stopping"], "delivered by stop()"


# The console script ------------------------------------------------------------------------------


def test_cli_help() -> None:
    result = subprocess.run([str(BIN / "agentsight"), "bridge", "--help"], capture_output=True, text=True,
                            check=False, timeout=30)
    assert result.returncode == 0
    assert all(option in result.stdout for option in ("--host", "--grpc-port", "--http-port", "--token"))


def test_cli_without_api_key_exits_with_one_line() -> None:
    result = subprocess.run([str(BIN / "agentsight"), "bridge"], capture_output=True, text=True, check=False,
                            timeout=30, env={**os.environ, "AGENTSIGHT_API_KEY": ""})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["agentsight bridge: AGENTSIGHT_API_KEY is not set "
                                                  "(the bridge delivers with it)"]


@pytest.mark.parametrize(("flags", "wire_path"), [((), "/api/track/"), (("--protocol", "ingest"), "/api/ingest/")])
def test_cli_serves_until_sigterm(api: DevServer, flags: tuple[str, ...], wire_path: str) -> None:
    """``AGENTSIGHT_PROTOCOL`` (rest here) picks the wire, and ``--protocol`` wins over it."""
    http_port, grpc_port = free_port(), free_port()
    bridge = subprocess.Popen(
        [str(BIN / "agentsight"), "bridge", "--http-port", str(http_port), "--grpc-port", str(grpc_port), *flags],
        env={**os.environ, "AGENTSIGHT_API_KEY": API_KEY, "AGENTSIGHT_API_ENDPOINT": api.url},
        stderr=subprocess.PIPE, text=True,
    )
    try:
        assert bridge.stderr is not None
        listening = bridge.stderr.readline()
        assert f"127.0.0.1:{http_port}/v1/traces" in listening and f"127.0.0.1:{grpc_port}" in listening
        raw = conversation_request("conv-cli", "from the CLI").SerializeToString()
        assert post(http_port, raw)[0] == 200
        bridge.send_signal(signal.SIGTERM)
        _, stderr = bridge.communicate(timeout=30)
    finally:
        bridge.kill()
    assert bridge.returncode == 0, stderr
    assert stored_messages(api) == [("conv-cli", "from the CLI")], "delivered before exiting"
    assert api.accepted(wire_path), f"delivered on {wire_path}"


def test_cli_refuses_an_unknown_protocol() -> None:
    environment = {**os.environ, "AGENTSIGHT_API_KEY": API_KEY, "AGENTSIGHT_PROTOCOL": "soap"}
    done = subprocess.run([str(BIN / "agentsight"), "bridge"], env=environment, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2 and "AGENTSIGHT_PROTOCOL='soap' is not a protocol" in done.stderr
    flagged = subprocess.run([str(BIN / "agentsight"), "bridge", "--protocol", "soap"], env=environment,
                             capture_output=True, text=True, timeout=30)
    assert flagged.returncode == 2 and "invalid choice: 'soap'" in flagged.stderr


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (PEM files: certificate, key), made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "bridge.crt", tmp_path / "bridge.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def test_tls_with_a_bearer_token_on_both_receivers(
    api: DevServer, start_bridge: Callable[..., Bridge], certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    bridge = start_bridge(token="s3cret", tls_cert_file=str(cert), tls_key_file=str(key))
    assert bridge.http_endpoint.startswith("https://") and bridge.grpc_endpoint.startswith("https://")
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{bridge.grpc_port}", credentials) as channel:
        stub = TraceServiceStub(channel)
        stub.Export(conversation_request("conv-grpc-tls", "q"), metadata=[("authorization", "Bearer s3cret")],
                    timeout=10)
    connection = http.client.HTTPSConnection("127.0.0.1", bridge.http_port, timeout=10,
                                             context=ssl.create_default_context(cafile=str(cert)))
    connection.request("POST", "/v1/traces", conversation_request("conv-http-tls", "q").SerializeToString(),
                       {"Content-Type": "application/x-protobuf", "Authorization": "Bearer s3cret"})
    assert connection.getresponse().status == 200
    connection.close()
    with pytest.raises(grpc.RpcError), grpc.insecure_channel(f"127.0.0.1:{bridge.grpc_port}") as plain:
        TraceServiceStub(plain).Export(conversation_request("conv-plain", "q"), timeout=5)
    api.wait_for(4)
    assert sorted(b["conversation_id"] for b in bodies(api, "/api/conversations/")) == [
        "conv-grpc-tls", "conv-http-tls"]
