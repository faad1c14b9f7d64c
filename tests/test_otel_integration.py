"""With the app's own OpenTelemetry set-up, in fresh interpreters: providers, samplers, limits, exit."""

from __future__ import annotations

import gzip
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agentsight.dev import DevServer
from tests.conftest import API_KEY, bodies, run_script, stored_messages

pytestmark = pytest.mark.usefixtures("rest_wire")  # these tests read the REST wire's payloads

SEED_FLOW = """
    tracker.initialize_conversation("conv-1", customer_id="user-7", metadata={"page_url": "https://x.test"})
    tracker.get_or_create_conversation("conv-1", customer_id="user-7")
    tracker.track_question("Hello, I need help")
    tracker.track_answer("This is a sample response")
    tracker.track_button("contact_human_agent", "Create ticket", "create-ticket")
    tracker.track_token_usage(100, 25, 125)
    tracker.send_tracked_data()
"""
SEED_PATHS = ["/api/conversations/", "/api/conversations/", "/api/track/", "/api/track/", "/api/buttons/",
              "/api/action_logs/"]


class _OtlpSink:
    """Accepts OTLP/HTTP trace exports and keeps their (decompressed) bodies."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.bodies.append(gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"


@pytest.fixture
def otlp() -> Iterator[_OtlpSink]:
    sink = _OtlpSink()
    yield sink
    sink.server.shutdown()
    sink.server.server_close()


def _env(api: DevServer, **extra: str) -> dict[str, str]:
    return {"AGENTSIGHT_API_KEY": API_KEY, "AGENTSIGHT_API_ENDPOINT": api.url, "PYTHONPATH": str(Path.cwd()),
            **extra}


APP_PROVIDER = """
    import json
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    def app_provider():
        provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.0)))
        memory = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        return provider, memory
"""


@pytest.mark.parametrize("order", ["provider-first", "tracker-first"])
def test_existing_provider_with_zero_sampler_and_own_exporter(
    api: DevServer, tmp_path: Path, order: str
) -> None:
    setup = (
        "provider, memory = app_provider(); trace.set_tracer_provider(provider); tracker = ConversationTracker()"
        if order == "provider-first"
        else "tracker = ConversationTracker(); provider, memory = app_provider(); trace.set_tracer_provider(provider)"
    )
    result = run_script(tmp_path, APP_PROVIDER + f"""
    from agentsight import ConversationTracker
    {setup}
    tracer = trace.get_tracer("app")
    with tracer.start_as_current_span("GET /api/chat", kind=trace.SpanKind.SERVER) as request_span:
        with tracer.start_as_current_span("SELECT orders"):
            pass
        tracker.get_or_create_conversation("conv-big")
        for number in range(1000):
            tracker.track_question(f"question {{number}}")
        tracker.track_answer("x" * 5000)
        tracker.send_tracked_data()
    flushed = tracker.flush(timeout=20)
    print(json.dumps({{
        "provider_kept": trace.get_tracer_provider() is provider,
        "request_sampled": request_span.get_span_context().trace_flags.sampled,
        "app_exported": [span.name for span in memory.get_finished_spans()],
        "complete": flushed["complete"],
    }}))
    """, _env(api, OTEL_SPAN_EVENT_COUNT_LIMIT="128", OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT="100"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["provider_kept"] is True, "the app's provider is never replaced"
    assert report["request_sampled"] is False, "the app's sampler really dropped the trace"
    assert report["complete"] is True
    assert report["app_exported"] == ["agentsight.conversation"], "the turn shows in the app's own pipeline"
    tracked = bodies(api, "/api/track/")
    assert len(tracked) == 1001, "all 1,000 events despite the 128-event limit"
    assert tracked[-1]["content"] == "x" * 5000, "no attribute length limit truncates content"
    assert [b["conversation_id"] for b in bodies(api, "/api/conversations/")] == ["conv-big"]
    assert {r.path for r in api.accepted()} == {"/api/conversations/", "/api/track/"}, "no app spans sent"


def test_forwarding_off_keeps_turns_out_of_the_app_pipeline(api: DevServer, tmp_path: Path) -> None:
    result = run_script(tmp_path, APP_PROVIDER + """
    from agentsight import ConversationTracker
    provider, memory = app_provider()
    trace.set_tracer_provider(provider)
    tracker = ConversationTracker()
    """ + SEED_FLOW + """
    tracker.flush(10)
    print(json.dumps([span.name for span in memory.get_finished_spans()]))
    """, _env(api, AGENTSIGHT_FORWARD_SPANS="false"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
    assert [r.path for r in api.accepted()] == SEED_PATHS


def test_exit_without_flush_delivers_everything(api: DevServer, tmp_path: Path) -> None:
    result = run_script(tmp_path, """
    from agentsight import ConversationTracker
    tracker = ConversationTracker()
    """ + SEED_FLOW + """
    tracker.get_or_create_conversation("conv-never-sent")
    tracker.track_question("tracked but send_tracked_data() never called")
    """, _env(api))
    assert result.returncode == 0, result.stderr
    assert [r.path for r in api.accepted() if r.body.get("conversation_id") == "conv-1"] == SEED_PATHS
    assert [b["content"] for b in bodies(api, "/api/track/") if b["conversation_id"] == "conv-never-sent"] == [
        "tracked but send_tracked_data() never called"]


def test_ready_instance_and_seed_imports(api: DevServer, tmp_path: Path) -> None:
    result = run_script(tmp_path, """
    from agentsight import conversation_tracker as tracker
    from agentsight.helpers import generate_conversation_id
    conversation_id = generate_conversation_id()
    assert conversation_id.startswith("conv_") and len(conversation_id) == 17
    tracker.get_or_create_conversation(conversation_id)
    tracker.track_question("from the ready instance")
    tracker.send_tracked_data()
    """, _env(api))
    assert result.returncode == 0, result.stderr
    assert [b["content"] for b in bodies(api, "/api/track/")] == ["from the ready instance"]


def _instrumented_seed_flow(api: DevServer, otlp: _OtlpSink, tmp_path: Path, **env: str) -> None:
    """The seed flow under ``opentelemetry-instrument`` with ``OTEL_TRACES_EXPORTER=otlp,agentsight``."""
    instrument = str(Path(sys.executable).parent / "opentelemetry-instrument")
    result = run_script(tmp_path, """
    from agentsight import ConversationTracker
    tracker = ConversationTracker()
    """ + SEED_FLOW, _env(
        api, OTEL_TRACES_EXPORTER="otlp,agentsight", OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=otlp.url,
        OTEL_SERVICE_NAME="widget", **env,
    ), args=(instrument,))
    assert result.returncode == 0, result.stderr


def test_opentelemetry_instrument_delivers_exactly_once(
    api: DevServer, otlp: _OtlpSink, tmp_path: Path
) -> None:
    _instrumented_seed_flow(api, otlp, tmp_path)
    assert [r.path for r in api.accepted()] == SEED_PATHS, "each payload exactly once"
    exported = b"".join(otlp.bodies)
    assert b"agentsight.conversation" in exported and b"Hello, I need help" in exported


def test_opentelemetry_instrument_on_the_ingest_wire_delivers_exactly_once(
    api: DevServer, otlp: _OtlpSink, tmp_path: Path
) -> None:
    _instrumented_seed_flow(api, otlp, tmp_path, AGENTSIGHT_PROTOCOL="ingest")
    assert not api.accepted("/api/track/"), "nothing on the REST wire"
    spans = [span for request in api.accepted("/api/ingest/") for block in request.body["conversations"]
             for span in block["spans"]]
    assert sorted(span["kind"] for span in spans) == ["button", "conversation", "llm", "turn"], "each span once"
    assert stored_messages(api) == [("conv-1", "Hello, I need help"), ("conv-1", "This is a sample response")]
    assert b"Hello, I need help" in b"".join(otlp.bodies)


def test_the_current_api_under_opentelemetry_instrument_with_a_zero_sampler(
    api: DevServer, otlp: _OtlpSink, tmp_path: Path
) -> None:
    """The 0.1.x API's turns take the same route: delivered once, also with the app sampling nothing."""
    instrument = str(Path(sys.executable).parent / "opentelemetry-instrument")
    result = run_script(tmp_path, """
    import agentsight
    agentsight.init()

    @agentsight.tool
    def lookup_order(order_id):
        return "shipped"

    with agentsight.conversation("conv-current", customer_id="user-7"):
        with agentsight.turn():
            agentsight.user_message("Where is my order?")
            lookup_order(order_id="A-1")
            agentsight.agent_message("It has shipped.")
    """, _env(
        api, OTEL_TRACES_EXPORTER="otlp,agentsight", OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=otlp.url,
        OTEL_TRACES_SAMPLER="traceidratio", OTEL_TRACES_SAMPLER_ARG="0", AGENTSIGHT_PROTOCOL="ingest",
    ), args=(instrument,))
    assert result.returncode == 0, result.stderr
    assert stored_messages(api) == [("conv-current", "Where is my order?"), ("conv-current", "It has shipped.")]
    spans = [span for request in api.accepted("/api/ingest/") for block in request.body["conversations"]
             for span in block["spans"]]
    assert sorted((span["kind"], span["name"]) for span in spans) == [("tool", "lookup_order"), ("turn", "turn")]


def test_direct_export_off_sends_nothing_itself(api: DevServer, otlp: _OtlpSink, tmp_path: Path) -> None:
    instrument = str(Path(sys.executable).parent / "opentelemetry-instrument")
    result = run_script(tmp_path, """
    from agentsight import ConversationTracker
    tracker = ConversationTracker()
    """ + SEED_FLOW, _env(
        api, OTEL_TRACES_EXPORTER="otlp", OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=otlp.url,
        AGENTSIGHT_DIRECT_EXPORT="false", AGENTSIGHT_API_KEY="",
    ), args=(instrument,))
    assert result.returncode == 0, result.stderr
    assert api.requests == []
    assert b"Hello, I need help" in b"".join(otlp.bodies), "the turn leaves through OTLP for the bridge"


def test_exporter_added_to_existing_provider(api: DevServer, tmp_path: Path) -> None:
    result = run_script(tmp_path, """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from agentsight import AgentSightSpanExporter, ConversationTracker
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(AgentSightSpanExporter()))
    trace.set_tracer_provider(provider)
    with trace.get_tracer("app").start_as_current_span("GET /health"):
        pass
    tracker = ConversationTracker()
    """ + SEED_FLOW, _env(api))
    assert result.returncode == 0, result.stderr
    assert [r.path for r in api.accepted()] == SEED_PATHS, "delivered once, by the app's exporter"


def test_tracking_still_works_with_the_otel_sdk_disabled(api: DevServer, tmp_path: Path) -> None:
    result = run_script(tmp_path, """
    from agentsight import ConversationTracker
    tracker = ConversationTracker()
    """ + SEED_FLOW, _env(api, OTEL_SDK_DISABLED="true"))
    assert result.returncode == 0, result.stderr
    assert [r.path for r in api.accepted()] == SEED_PATHS
