"""The bridge's span logic: OTLP spans in, AgentSight turns out, through the shared translator and delivery."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agentsight.bridge.assembly import TurnAssembler
from agentsight.bridge.otlp import ReceivedSpan, decode_request
from agentsight.config import Settings
from agentsight.export.exporter import AgentSightSpanExporter
from agentsight.spans.finished import is_conversation_span

logger = logging.getLogger("agentsight.bridge")

RETRY_AFTER_SECONDS = 5.0
"""What a refused sender is told to wait (``Retry-After``) while the delivery queue is full."""


@dataclass(frozen=True)
class IngestResult:
    """What became of one OTLP export request.

    ``rejected_spans`` were refused for lack of room (the client should retry them after
    ``retry_after`` seconds: answer 429/503 or gRPC UNAVAILABLE); ``error_message`` explains a
    partial success.
    """

    accepted_spans: int
    rejected_spans: int = 0
    retry_after: float | None = None
    error_message: str = ""


class BridgeCore:
    """Accepts decoded OTLP trace requests and delivers their conversation turns.

    Thread-safe; ``ingest`` never blocks on the network. Turns wait ``grace`` seconds (default
    ``AGENTSIGHT_BRIDGE_GRACE`` or 2) for model-call spans of their trace sent in other requests
    (:mod:`agentsight.bridge.assembly`), then go to the shared exporter. When the delivery queue has
    no room the whole request is refused (``rejected_spans``, ``retry_after``), so the sender
    retries instead of losing data.
    """

    def __init__(self, settings: Settings | None = None, grace: float | None = None) -> None:
        self._exporter = AgentSightSpanExporter(settings=settings or Settings.resolve())
        if grace is None:
            grace = float(os.environ.get("AGENTSIGHT_BRIDGE_GRACE", "2"))
        self._assembler = TurnAssembler(grace=grace, estimate=self._exporter.estimate)
        self._lock = threading.Lock()
        self._stats = {"requests": 0, "spans_received": 0, "turns_received": 0, "turns_malformed": 0,
                       "requests_refused": 0}
        self._stopping = threading.Event()
        self._ticker = threading.Thread(target=self._tick, args=(min(0.5, max(grace, 0.01)),),
                                         name="agentsight-bridge-turns", daemon=True)
        self._ticker.start()

    def ingest(self, request: ExportTraceServiceRequest) -> IngestResult:
        """Take every span of an ``ExportTraceServiceRequest``; its turns are delivered after their grace."""
        spans = list(decode_request(request))
        with self._lock:
            self._stats["requests"] += 1
            self._stats["spans_received"] += len(spans)
        turns = [span for span in spans if is_conversation_span(span)]
        coming = self._assembler.stats.payloads_waiting + sum(self._exporter.estimate(turn) for turn in turns)
        if not self._exporter.has_room(coming):
            with self._lock:
                self._stats["requests_refused"] += 1
            return IngestResult(0, len(spans), RETRY_AFTER_SECONDS, "AgentSight delivery queue is full")
        malformed = [turn for turn in turns if not self._translatable(turn)]
        self._assembler.add(span for span in spans if not any(span is bad for bad in malformed))
        with self._lock:
            self._stats["turns_received"] += len(turns) - len(malformed)
            self._stats["turns_malformed"] += len(malformed)
        self._deliver(self._assembler.due())
        if malformed:
            return IngestResult(len(spans) - len(malformed), len(malformed),
                                error_message=f"{len(malformed)} conversation span(s) could not be translated")
        return IngestResult(len(spans))

    def stats(self) -> dict[str, int]:
        """Counters of the bridge, of turn assembly and of delivery."""
        with self._lock:
            own = dict(self._stats)
        return {**own, **dataclasses.asdict(self._assembler.stats), **self._exporter.stats}

    def shutdown(self, timeout: float = 30.0) -> None:
        """Deliver every waiting turn and what was accepted (for up to ``timeout`` seconds), then stop."""
        self._stopping.set()
        self._ticker.join()
        self._deliver(self._assembler.drain())
        self._exporter.shutdown(int(timeout * 1000))

    def _tick(self, interval: float) -> None:
        while not self._stopping.wait(interval):
            self._deliver(self._assembler.due())

    def _translatable(self, turn: ReceivedSpan) -> bool:
        """Whether a conversation span translates (bad JSON in a metadata attribute, say, does not)."""
        try:
            self._exporter.translate(turn)
        except (ValueError, TypeError, KeyError) as error:
            logger.warning("AgentSight bridge refused a conversation span it cannot translate: %r", error)
            return False
        return True

    def _deliver(self, turns: list[ReceivedSpan]) -> None:
        if turns:
            self._exporter.export(turns)  # type: ignore[arg-type]

