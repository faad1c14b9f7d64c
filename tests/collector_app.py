"""An app for the Collector pipeline: ``python tests/collector_app.py FLOW PREFIX TURNS``.

It sets up its own OpenTelemetry pipeline the usual way (a ``TracerProvider`` with a ``BatchSpanProcessor``
and the OTLP exporter, configured by ``OTEL_EXPORTER_OTLP_*``), and an AgentSight tracker that only adds its
spans to it (``AGENTSIGHT_DIRECT_EXPORT=false``). Each turn is served inside an HTTP-like span of the app's own
(``POST /chat``), so a trace holds the app's span, the conversation spans and, in the ``llm`` flow, the
model call (the real ``openai`` client against ``OPENAI_BASE_URL``). FLOW is ``seed`` (the seed's tracker
calls, token usage tracked by hand) or ``llm``. Prints one JSON object: conversation id -> trace id (hex).
"""

from __future__ import annotations

import json
import sys
import time

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

CUSTOMER_IP = "203.0.113.7"
SEED_TOKENS = (100, 25, 125)


def question(conversation_id: str) -> str:
    """The question asked in a conversation."""
    return f"question of {conversation_id}"


def answer(conversation_id: str) -> str:
    """The answer given in a conversation (the ``llm`` flow tracks the model's reply instead)."""
    return f"answer of {conversation_id}"


def main(flow: str, prefix: str, turns: int) -> dict[str, str]:
    """Serve ``turns`` conversations; returns their trace ids by conversation id."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    import openai

    from agentsight import ConversationTracker

    tracker = ConversationTracker()
    tracer = trace.get_tracer("collector-e2e-app")
    client = openai.OpenAI(api_key="test", max_retries=0)
    traces: dict[str, str] = {}
    for number in range(turns):
        conversation_id = f"{prefix}-{number}"
        with tracer.start_as_current_span("POST /chat", attributes={
                "http.route": "/chat", "app.tenant": "acme"}) as request:
            traces[conversation_id] = format(request.get_span_context().trace_id, "032x")
            if flow == "seed":
                tracker.initialize_conversation(conversation_id, customer_id="user-7", metadata={"page": "/help"})
            tracker.get_or_create_conversation(conversation_id, customer_id="user-7", customer_ip_address=CUSTOMER_IP)
            tracker.track_question(question(conversation_id))
            if flow == "seed":
                tracker.track_answer(answer(conversation_id))
                tracker.track_button("contact_human_agent", "Create ticket", "create-ticket")
                tracker.track_token_usage(*SEED_TOKENS)
            else:
                reply = client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": question(conversation_id)}])
                tracker.track_answer(reply.choices[0].message.content or "")
            tracker.send_tracked_data()
    started = time.monotonic()
    provider.shutdown()  # exports what is left
    print(f"flushed in {time.monotonic() - started:.2f} s", file=sys.stderr)
    return traces


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
