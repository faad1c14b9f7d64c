"""The bridge's span logic: OTLP spans in, AgentSight turns out, and each request answered only when safe.

A request is acknowledged (answered success) once every conversation span in it is delivered to
AgentSight (or refused by the API for good, reported as rejected spans), and every model-call span in it
has joined a delivered turn or waited ``grace`` seconds for its turn. Until then the request waits, at
most ``ack_timeout`` seconds, and is then answered "retry" (503 / UNAVAILABLE): what the bridge never
acknowledged, the sender (a Collector's persistent queue) still holds and sends again, so a crash or a
kill of the bridge loses nothing acknowledged. What was delivered meanwhile is recognised when it comes
again (:class:`~agentsight.bridge.acks.Ledger`) and counts once.

Turns wait ``grace`` seconds for model-call spans of their trace sent in other requests
(:mod:`agentsight.bridge.assembly`), then go, in arrival order, to the shared exporter as its delivery
queue has room. A request is refused at once (retry later) when the turns waiting in the bridge and its
own would not fit the delivery queue; a request bigger than the whole queue is taken when nothing else
waits, and fed to delivery piece by piece.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from functools import partial

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agentsight.bridge.acks import Ledger, Receipt, Ticket, span_key
from agentsight.bridge.assembly import TurnAssembler, waits_for_its_turn
from agentsight.bridge.otlp import ReceivedSpan, decode_request, span_count
from agentsight.config import Settings
from agentsight.exceptions import InvalidApiKeyException, NoApiKeyException
from agentsight.export.exporter import AgentSightSpanExporter
from agentsight.spans.finished import is_conversation_span

logger = logging.getLogger("agentsight.bridge")

DEFAULT_GRACE_SECONDS = 2.0
DEFAULT_ACK_TIMEOUT_SECONDS = 8.0
"""How long a request waits for its conversations' delivery before it is answered "retry".

Below the OTLP exporters' own time-outs: 10 s in the OpenTelemetry SDKs, 20 s in ``collector-config``."""
RETRY_AFTER_SECONDS = 5.0
"""What a refused sender is told to wait (``Retry-After``) when the bridge has no room for its turns."""
RETRY_SOON_SECONDS = 1.0
"""What a sender is told to wait when its turns were not delivered in time (delivery goes on meanwhile)."""
_TICK_SECONDS = 0.05


@dataclass(frozen=True)
class IngestResult:
    """How to answer one OTLP export request.

    With ``retry_after`` set, nothing of the request is acknowledged: answer 503 / UNAVAILABLE, and the
    sender retries after that many seconds. Otherwise the request is acknowledged: ``rejected_spans``
    were refused for good (a partial success that ``error_message`` explains).
    """

    accepted_spans: int
    rejected_spans: int = 0
    retry_after: float | None = None
    error_message: str = ""


class BridgeCore:
    """Takes decoded OTLP trace requests, delivers their conversation turns, and says when to acknowledge.

    Thread-safe. ``grace`` (default ``AGENTSIGHT_BRIDGE_GRACE`` or 2 s) must be shorter than
    ``ack_timeout`` (default ``AGENTSIGHT_BRIDGE_ACK_TIMEOUT`` or 8 s); ``ledger`` remembers spans already
    received (its window bounds the memory that takes).
    """

    def __init__(self, settings: Settings | None = None, grace: float | None = None,
                 ack_timeout: float | None = None, ledger: Ledger | None = None) -> None:
        settings = settings or Settings.resolve()
        self._exporter = AgentSightSpanExporter(settings=settings)
        self._limits = settings.delivery
        try:
            settings.check_api_key()
            self._can_deliver = True
        except (NoApiKeyException, InvalidApiKeyException):
            self._can_deliver = False  # the exporter logged why; turns are reported rejected
        self.grace = _seconds(grace, "AGENTSIGHT_BRIDGE_GRACE", DEFAULT_GRACE_SECONDS)
        self.ack_timeout = _seconds(ack_timeout, "AGENTSIGHT_BRIDGE_ACK_TIMEOUT", DEFAULT_ACK_TIMEOUT_SECONDS)
        if self.grace >= self.ack_timeout:
            raise ValueError(f"the grace period ({self.grace:g} s) must be shorter than the acknowledgement "
                             f"time-out ({self.ack_timeout:g} s): a turn is delivered only after its grace")
        self._assembler: TurnAssembler[Ticket] = TurnAssembler(grace=self.grace, estimate=self._exporter.estimate)
        self._ledger = ledger or Ledger()
        self._lock = threading.Lock()  # the stage, the call queue, the counters
        self._stage: deque[tuple[ReceivedSpan, Ticket, int]] = deque()
        self._staged_payloads = 0
        self._delivering_payloads = 0
        self._calls: deque[tuple[float, Ticket]] = deque()  # model calls, by when their grace ends
        self._hurry = False
        self._stats = {"requests": 0, "spans_received": 0, "turns_received": 0, "turns_malformed": 0,
                       "turns_too_large": 0, "requests_refused": 0, "requests_acknowledged": 0,
                       "requests_answered_retry": 0}
        self._stopping = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="agentsight-bridge-turns", daemon=True)
        self._ticker.start()

    def ingest(self, request: ExportTraceServiceRequest, timeout: float | None = None) -> IngestResult:
        """Take an export request and wait until it can be answered (``ack_timeout``, or ``timeout`` if shorter)."""
        deadline = time.monotonic() + (self.ack_timeout if timeout is None else min(timeout, self.ack_timeout))
        total = span_count(request)
        spans = list(decode_request(request, agentsight_only=True))
        self._count(requests=1, spans_received=total)
        turns = [span for span in spans if is_conversation_span(span)]
        calls = [span for span in spans if waits_for_its_turn(span)]
        fresh = [turn for turn in turns if not self._ledger.known(span_key(turn.trace_id, turn.span_id))]
        if not self._admits(sum(self._exporter.estimate(turn) for turn in fresh)):
            self._count(requests_refused=1)
            return IngestResult(0, total, RETRY_AFTER_SECONDS, "no room for more AgentSight turns: retry later")
        refused = {id(turn) for turn in fresh if not self._deliverable(turn)}
        receipt = Receipt()
        received = 0
        for turn in turns:
            if id(turn) in refused:
                continue
            ticket = self._ledger.track(receipt, span_key(turn.trace_id, turn.span_id), turn.trace_id, turn=True)
            if ticket is not None:
                received += 1
                self._assembler.add([turn], ticket)
        self._count(turns_received=received)
        for call in calls:
            ticket = self._ledger.track(receipt, span_key(call.trace_id, call.span_id), call.trace_id, turn=False)
            if ticket is not None:
                self._assembler.add([call])
                with self._lock:
                    self._calls.append((time.monotonic() + (0.0 if self._hurry else self.grace), ticket))
        self._ledger.seal(receipt)
        logger.debug("AgentSight bridge received a request: %d span(s), %d new turn(s), %d model call(s)",
                     total, received, len(calls))
        self._feed()
        started = time.monotonic()
        result = self._answer(receipt, deadline, total, len(refused))
        logger.debug("AgentSight bridge answered a request of %d new turn(s) after %.3f s: %s", received,
                     time.monotonic() - started, "retry" if result.retry_after is not None else "acknowledged")
        return result

    def hurry(self) -> None:
        """From now on turns go without waiting for their grace period (the bridge is stopping)."""
        with self._lock:
            self._hurry = True
        self._feed()

    def stats(self) -> dict[str, int]:
        """Counters of the bridge, of the ledger, of turn assembly and of delivery."""
        with self._lock:
            own = dict(self._stats, turns_staged=len(self._stage), payloads_in_delivery=self._delivering_payloads)
        return {**own, **self._ledger.stats(), **dataclasses.asdict(self._assembler.stats), **self._exporter.stats}

    def shutdown(self, timeout: float = 30.0) -> None:
        """Deliver every waiting turn (for up to ``timeout`` seconds), then stop; the rest is not acknowledged."""
        deadline = time.monotonic() + timeout
        self.hurry()
        while self._stage and time.monotonic() < deadline:
            time.sleep(_TICK_SECONDS)
            self._feed()
        self._stopping.set()
        self._ticker.join()
        self._exporter.shutdown(int(max(0.0, deadline - time.monotonic()) * 1000))
        with self._lock:
            left, self._stage = list(self._stage), deque()
        for _, ticket, _ in left:
            self._ledger.settle(ticket, "dropped")

    # Requests ----------------------------------------------------------------------------------

    def _admits(self, coming: int) -> bool:
        """Whether ``coming`` more payloads may wait in the bridge: room in the queue, or nothing waiting at all."""
        if not coming:
            return True
        with self._lock:
            waiting = self._assembler.stats.payloads_waiting + self._staged_payloads
            idle = waiting + self._delivering_payloads == 0
        return idle or self._exporter.has_room(waiting + coming)

    def _deliverable(self, turn: ReceivedSpan) -> bool:
        """Whether a conversation span translates and fits the delivery queue; refused for good otherwise."""
        try:
            self._exporter.translate(turn)
        except (ValueError, TypeError, KeyError) as error:
            logger.warning("AgentSight bridge refused a conversation span it cannot translate: %r", error)
            self._count(turns_malformed=1)
            return False
        if self._exporter.estimate(turn) > self._limits.max_queue_size:
            logger.warning("AgentSight bridge refused a conversation span of more payloads than its delivery queue "
                           "holds (%d)", self._limits.max_queue_size)
            self._count(turns_too_large=1)
            return False
        return True

    def _answer(self, receipt: Receipt, deadline: float, spans: int, refused: int) -> IngestResult:
        if not receipt.wait(deadline - time.monotonic()):
            self._count(requests_answered_retry=1)
            return IngestResult(0, spans, RETRY_SOON_SECONDS,
                                "AgentSight delivery of this request's conversations is still under way: retry "
                                "(what is delivered meanwhile counts once)")
        if receipt.retry:
            self._count(requests_answered_retry=1)
            return IngestResult(0, spans, RETRY_SOON_SECONDS, "AgentSight delivery failed for now: retry")
        self._count(requests_acknowledged=1)
        rejected = refused + receipt.refused
        if not rejected:
            return IngestResult(spans)
        why = [] if not refused else [f"{refused} conversation span(s) could not be translated or are too large"]
        if receipt.refused:
            reason = "AgentSight refused" if self._can_deliver else "no API key to deliver"
            why.append(f"{receipt.refused} span(s) not delivered: {reason}")
        return IngestResult(spans - rejected, rejected, error_message="; ".join(why))

    def _count(self, **counts: int) -> None:
        with self._lock:
            for name, count in counts.items():
                self._stats[name] += count

    # Delivery ----------------------------------------------------------------------------------

    def _tick(self) -> None:
        while not self._stopping.wait(min(_TICK_SECONDS, max(self.grace, 0.01))):
            self._feed()

    def _feed(self) -> None:
        """Turns past their grace to the stage, staged turns to delivery while it has room; model calls' acks."""
        failed: list[Ticket] = []
        with self._lock:  # taken from the assembler under the lock: the stage keeps their order
            hurry = self._hurry
            ready = self._assembler.drain() if hurry else self._assembler.due()
            if ready:
                logger.debug("AgentSight bridge: %d turn(s) past their grace to delivery", len(ready))
            for turn, ticket in ready:
                assert ticket is not None  # every turn is added with its ticket
                payloads = self._exporter.estimate(turn)
                self._stage.append((turn, ticket, payloads))
                self._staged_payloads += payloads
            while self._stage:
                turn, ticket, payloads = self._stage[0]
                if self._delivering_payloads and not self._exporter.has_room(payloads):
                    break
                self._stage.popleft()
                self._staged_payloads -= payloads
                self._delivering_payloads += payloads
                if not self._exporter.submit(turn, partial(self._delivered, ticket, payloads)):  # type: ignore[arg-type]
                    self._delivering_payloads -= payloads
                    failed.append(ticket)
            now = time.monotonic()
            calls = []
            while self._calls and (hurry or self._calls[0][0] <= now):
                calls.append(self._calls.popleft()[1])
        for ticket in failed:
            self._ledger.settle(ticket, "dropped" if self._can_deliver else "rejected")
        for ticket in calls:
            self._ledger.settle_after_turns(ticket)

    def _delivered(self, ticket: Ticket, payloads: int, outcome: str) -> None:
        """Delivery is done with a turn (on a delivery thread): settle it, and feed delivery the room it left."""
        with self._lock:
            self._delivering_payloads -= payloads
            staged = bool(self._stage)
        self._ledger.settle(ticket, outcome)
        if staged:
            self._feed()


def _seconds(value: float | None, variable: str, default: float) -> float:
    return float(os.environ.get(variable, default)) if value is None else value
