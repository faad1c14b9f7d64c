"""The API key never appears in logs, spans, exceptions or reprs."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentsight import AgentSightSpanExporter, ConversationTracker
from agentsight.dev import CannedResponse, DevServer
from tests.conftest import API_KEY, run_script

SECRET_PART = API_KEY[4:36]


@pytest.mark.parametrize(("protocol", "refusal", "first", "then"), [
    ("rest", "rejected", None, None),
    ("ingest", "refused the API key", "/api/me/", "/api/ingest/"),  # the preflight and delivery race otherwise
])
def test_key_absent_from_every_log_line_and_span(
    api: DevServer, tmp_path: Path, protocol: str, refusal: str, first: str | None, then: str | None
) -> None:
    api.inject(CannedResponse(401, b'{"detail": "Invalid API key."}', path=first), CannedResponse(500, path=then),
               CannedResponse(429, path=then))
    result = run_script(tmp_path, """
    import logging
    logging.basicConfig(level=logging.DEBUG)
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    from agentsight import ConversationTracker
    from agentsight.config import DeliverySettings
    tracker = ConversationTracker(delivery=DeliverySettings(backoff_initial=0.01, max_retry_time=5))
    print(repr(tracker), repr(tracker.settings), tracker.settings)
    for number in range(3):
        tracker.get_or_create_conversation(f"conv-{number}")
        tracker.track_question("q")
        tracker.send_tracked_data()
    print(tracker.flush(10))
    try:
        ConversationTracker(api_key="ags_" + "f" * 31)
    except Exception as error:
        print(repr(error), error)
    """, {"AGENTSIGHT_API_KEY": API_KEY, "AGENTSIGHT_API_ENDPOINT": api.url, "AGENTSIGHT_LOG_LEVEL": "DEBUG",
          "AGENTSIGHT_PROTOCOL": protocol, "PYTHONPATH": str(Path.cwd())})
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "agentsight.conversation" in output, "the spans were printed"
    assert refusal in output and "HTTP 401" in output, "the failures were logged"
    assert SECRET_PART not in output
    assert "f" * 31 not in output


def test_key_absent_from_reprs(api: DevServer) -> None:
    tracker = ConversationTracker(api_key=API_KEY, endpoint=api.url)
    exporter = AgentSightSpanExporter(api_key=API_KEY, endpoint=api.url)
    texts = [repr(tracker), repr(tracker.settings), str(tracker.settings), repr(exporter), repr(vars(tracker))]
    assert all(SECRET_PART not in text for text in texts)
    tracker.shutdown()
    exporter.shutdown()
