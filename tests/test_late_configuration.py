"""Configuration that arrives after start-up: the exporter ``opentelemetry-instrument`` built without a key waits for
it (holding what it gets, bounded and counted), picks it up from the environment or from a tracker, and a tracker
never defers to an exporter that cannot deliver. ``.env`` is loaded as upstream 0.1.x does."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext

from agentsight import AgentSightSpanExporter
from agentsight.dev import DevServer
from agentsight.spans import semconv as sc
from tests.conftest import API_KEY, run_script, stored_messages

INSTRUMENT = str(Path(sys.executable).parent / "opentelemetry-instrument")
OTEL = {"OTEL_TRACES_EXPORTER": "console,agentsight", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "widget"}
TURN = """
    tracker.get_or_create_conversation("conv-late")
    tracker.track_question("Hello, I need help")
    tracker.track_answer("This is a sample response")
    tracker.send_tracked_data()
"""


def run_app(
    tmp_path: Path, source: str, env: dict[str, str], instrument: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``source`` as ``app.py`` in ``tmp_path`` (under ``opentelemetry-instrument``) with no ``AGENTSIGHT_*``
    variables but those of ``env`` (and ``AGENTSIGHT_AUTO_INSTRUMENT``)."""
    (tmp_path / "app.py").write_text(textwrap.dedent(source))
    clean = {key: value for key, value in os.environ.items()
             if not key.startswith("AGENTSIGHT_") or key == "AGENTSIGHT_AUTO_INSTRUMENT"}
    command = [INSTRUMENT] if instrument else []
    return subprocess.run([*command, sys.executable, "app.py"], cwd=tmp_path, env={**clean, **env},
                          capture_output=True, text=True, timeout=60, check=False)


MESSAGES = [("conv-late", "Hello, I need help"), ("conv-late", "This is a sample response")]
REST_PATHS = ["/api/conversations/", "/api/track/", "/api/track/"]


def _delivered_once(api: DevServer, protocol: str) -> None:
    if protocol == "rest":
        assert [request.path for request in api.accepted()] == REST_PATHS, "each payload exactly once"
    else:
        spans = [span["span_id"] for request in api.accepted("/api/ingest/")
                 for block in request.body["conversations"] for span in block["spans"]]
        assert len(spans) == len(set(spans)) == 1, "the turn's span exactly once"
    assert stored_messages(api) == MESSAGES


@pytest.mark.parametrize("protocol", ["ingest", "rest"])
def test_environment_set_in_code_reaches_the_exporter_built_at_start_up(
    api: DevServer, tmp_path: Path, protocol: str
) -> None:
    result = run_app(tmp_path, f"""
    import os
    os.environ.update(AGENTSIGHT_API_KEY="{API_KEY}", AGENTSIGHT_API_ENDPOINT="{api.url}",
                      AGENTSIGHT_PROTOCOL="{protocol}")
    from agentsight import ConversationTracker
    tracker = ConversationTracker()
    """ + TURN, OTEL)
    assert result.returncode == 0, result.stderr
    _delivered_once(api, protocol)


def test_load_dotenv_in_code_reaches_the_exporter_built_at_start_up(api: DevServer, tmp_path: Path) -> None:
    settings = tmp_path / "config" / "agentsight.env"
    settings.parent.mkdir()
    settings.write_text(f"AGENTSIGHT_API_KEY={API_KEY}\nAGENTSIGHT_API_ENDPOINT={api.url}\n")
    result = run_app(tmp_path, f"""
    from dotenv import load_dotenv
    load_dotenv("{settings}")
    from agentsight import ConversationTracker
    tracker = ConversationTracker()
    """ + TURN, OTEL)
    assert result.returncode == 0, result.stderr
    _delivered_once(api, "ingest")


def test_a_trackers_own_key_reaches_the_exporter_built_at_start_up(api: DevServer, tmp_path: Path) -> None:
    result = run_app(tmp_path, f"""
    from agentsight import ConversationTracker
    tracker = ConversationTracker(api_key="{API_KEY}", endpoint="{api.url}", protocol="rest")
    """ + TURN, OTEL)
    assert result.returncode == 0, result.stderr
    _delivered_once(api, "rest")


def test_what_was_tracked_before_the_key_arrived_is_held_then_sent(api: DevServer, tmp_path: Path) -> None:
    result = run_app(tmp_path, f"""
    import os
    from agentsight import ConversationTracker
    tracker = ConversationTracker(direct_export=False)  # turns leave through the app's pipeline only
    for number in range(3):
        tracker.get_or_create_conversation(f"conv-{{number}}")
        tracker.track_question(f"before the key {{number}}")
        tracker.send_tracked_data()
    os.environ.update(AGENTSIGHT_API_KEY="{API_KEY}", AGENTSIGHT_API_ENDPOINT="{api.url}")
    tracker.get_or_create_conversation("conv-3")
    tracker.track_question("after the key")
    tracker.send_tracked_data()
    """, {**OTEL, "OTEL_TRACES_EXPORTER": "agentsight"})
    assert result.returncode == 0, result.stderr
    assert Counter(stored_messages(api)) == Counter(
        [(f"conv-{n}", f"before the key {n}") for n in range(3)] + [("conv-3", "after the key")])


def _span(conversation_id: str, span_id: int) -> ReadableSpan:
    return ReadableSpan(name=sc.CONVERSATION_SPAN, context=SpanContext(1, span_id, is_remote=False),
                        attributes={sc.CONVERSATION_ID: conversation_id, sc.IS_USED: True}, start_time=1, end_time=2)


def test_held_spans_are_bounded_counted_and_sent_once_the_key_arrives(
    api: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AGENTSIGHT_API_KEY", "AGENTSIGHT_PROTOCOL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AGENTSIGHT_MAX_QUEUE_SIZE", "3")
    exporter = AgentSightSpanExporter(endpoint=api.url)
    exporter.export([_span(f"conv-{number}", number + 1) for number in range(5)])
    assert not exporter.can_deliver and not exporter.flush(1).complete
    assert (exporter.stats["spans_waiting_for_key"], exporter.stats["spans_dropped_waiting_for_key"]) == (3, 2)
    monkeypatch.setenv("AGENTSIGHT_API_KEY", API_KEY)
    result = exporter.flush(10)
    assert result.complete and result.summary == {"delivered": 3, "failed": 0}
    assert sorted(api.conversations) == ["conv-0", "conv-1", "conv-2"]
    assert exporter.can_deliver and exporter.stats["spans_waiting_for_key"] == 0
    exporter.shutdown()


def test_an_exporter_that_never_gets_a_key_says_what_it_did_not_send(monkeypatch: pytest.MonkeyPatch,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("AGENTSIGHT_API_KEY", raising=False)
    exporter = AgentSightSpanExporter(endpoint="http://127.0.0.1:9")
    exporter.export([_span("conv-0", 1), _span("conv-1", 2)])
    exporter.shutdown()
    assert exporter.stats["spans_without_delivery"] == 2
    assert any("never got an API key: 2 conversation span(s) were not sent" in r.getMessage() for r in caplog.records)


def test_a_tracker_does_not_defer_to_an_exporter_that_cannot_deliver(api: DevServer, tmp_path: Path) -> None:
    result = run_script(tmp_path, """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from agentsight import AgentSightSpanExporter, ConversationTracker
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(AgentSightSpanExporter(api_key="ags_not_a_key")))
    trace.set_tracer_provider(provider)
    tracker = ConversationTracker()
    """ + TURN, {"AGENTSIGHT_API_KEY": API_KEY, "AGENTSIGHT_API_ENDPOINT": api.url, "AGENTSIGHT_PROTOCOL": "rest"})
    assert result.returncode == 0, result.stderr
    _delivered_once(api, "rest")


def test_dotenv_in_the_working_directory_is_loaded_without_overriding_the_environment(
    api: DevServer, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(f"AGENTSIGHT_API_KEY={API_KEY}\nAGENTSIGHT_API_ENDPOINT=http://127.0.0.1:9\n")
    result = run_app(tmp_path, """
    from agentsight import ConversationTracker
    tracker = ConversationTracker()
    """ + TURN, {"AGENTSIGHT_API_ENDPOINT": api.url}, instrument=False)
    assert result.returncode == 0, result.stderr
    _delivered_once(api, "ingest")
