"""Delivery of translated turns to the AgentSight API, off the caller's thread.

- Each conversation's turns are delivered in order, one at a time; different conversations go
  concurrently on up to ``max_concurrency`` threads, each with its own kept-alive connection.
- The conversation POST of a turn comes first; its server id is cached (bounded LRU) and an
  identical repeat of that POST is skipped.
- Network errors, time-outs, 429 (honouring ``Retry-After``), 5xx and unreadable replies to the
  conversation POST are retried with exponential back-off and jitter for up to
  ``max_retry_time``; other 4xx are not retried and are logged once per distinct message.
- The queue is bounded in payloads and bytes; a turn that does not fit is dropped whole.
  Every drop is counted (:attr:`DeliveryClient.stats`) and logged.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from agentsight.config import DeliverySettings
from agentsight.export.payloads import Payload, TurnPayloads
from agentsight.export.transport import HttpResponse, HttpTransport

logger = logging.getLogger("agentsight.export.delivery")

MAX_KEPT_RESULTS = 10_000
"""Per-item results kept for :meth:`DeliveryClient.flush`; older ones are discarded first."""


@dataclass
class ItemResult:
    """The outcome of one payload."""

    conversation_id: str
    type: str
    timestamp: str
    success: bool
    status: int | None = None
    response: Any = None
    error: str | None = None


@dataclass
class DeliveryStats:
    """Counters of everything the client did; read them with :attr:`DeliveryClient.stats`."""

    turns_submitted: int = 0
    payloads_submitted: int = 0
    payloads_delivered: int = 0
    payloads_rejected: int = 0
    payloads_expired: int = 0
    payloads_dropped_queue_full: int = 0
    payloads_dropped_at_shutdown: int = 0
    payloads_without_conversation: int = 0
    """Items not sent because their conversation POST was rejected or given up on."""
    conversation_posts_skipped: int = 0
    retries: int = 0


@dataclass
class FlushResult:
    """What :meth:`DeliveryClient.flush` saw: whether everything queued was settled in time, and the results."""

    complete: bool
    items: list[ItemResult] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, int]:
        """Counts of delivered and failed payloads among ``items``."""
        delivered = sum(1 for item in self.items if item.success)
        return {"delivered": delivered, "failed": len(self.items) - delivered}

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict form, shaped like the upstream SDK's results."""
        return {
            "complete": self.complete,
            "items": [asdict(item) for item in self.items],
            "summary": self.summary,
        }


@dataclass(frozen=True)
class PendingTurn:
    """A turn waiting for delivery: ``build`` makes its payloads on a delivery thread, not the caller's.

    ``payload_count`` and ``size`` (bytes, estimated) count against the queue limits.
    """

    conversation_id: str
    payload_count: int
    size: int
    build: Callable[[], TurnPayloads]


@dataclass(frozen=True)
class _Retry:
    message: str
    retry_after: float | None = None


class DeliveryClient:
    """Delivers turns (:class:`PendingTurn`) in the background; ``submit`` never blocks or raises."""

    def __init__(self, transport: HttpTransport, settings: DeliverySettings) -> None:
        self._transport = transport
        self._settings = settings
        self._stats = DeliveryStats()
        self._conversation_ids: OrderedDict[str, tuple[int, str]] = OrderedDict()
        self._logged_rejections: set[tuple[str, str]] = set()
        self._init_state()
        if hasattr(os, "register_at_fork"):
            weak_reset = weakref.WeakMethod(self._init_state)
            os.register_at_fork(after_in_child=lambda: (reset := weak_reset()) and reset())

    def _init_state(self) -> None:
        # Also run in a forked child: the parent's queue and threads are not the child's to deliver.
        self._lock = threading.Lock()
        self._work_ready = threading.Condition(self._lock)  # idle delivery threads wait here
        self._settled = threading.Condition(self._lock)  # flush, shutdown and back-off sleeps wait here
        self._pending: dict[str, deque[PendingTurn]] = {}
        self._ready: deque[str] = deque()
        self._unfinished = 0
        self._queued_payloads = 0
        self._queued_bytes = 0
        self._results: deque[ItemResult] = deque(maxlen=MAX_KEPT_RESULTS)
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._drain_deadline = float("inf")
        self._failing = False

    @property
    def stats(self) -> dict[str, int]:
        """A snapshot of the counters, plus what is queued right now."""
        with self._lock:
            snapshot = asdict(self._stats)
            snapshot["payloads_queued"] = self._queued_payloads
            snapshot["bytes_queued"] = self._queued_bytes
        return snapshot

    def submit(self, turn: PendingTurn) -> bool:
        """Queue a turn for delivery; returns ``False`` (and counts and logs) when it was dropped."""
        with self._lock:
            self._stats.turns_submitted += 1
            self._stats.payloads_submitted += turn.payload_count
            full = (
                self._closing
                or self._queued_payloads + turn.payload_count > self._settings.max_queue_size
                or self._queued_bytes + turn.size > self._settings.max_queue_bytes
            )
            if full:
                self._stats.payloads_dropped_queue_full += turn.payload_count
                dropped = self._stats.payloads_dropped_queue_full
            else:
                self._queued_payloads += turn.payload_count
                self._queued_bytes += turn.size
                self._unfinished += 1
                queue = self._pending.get(turn.conversation_id)
                if queue is None:
                    queue = self._pending[turn.conversation_id] = deque()
                    self._ready.append(turn.conversation_id)
                    self._start_workers()
                    self._work_ready.notify()
                queue.append(turn)
        if full:
            logger.warning(
                "AgentSight delivery queue full (limits: %d payloads, %d bytes): dropped a turn of %d payloads "
                "for conversation %s; %d payloads dropped so far",
                self._settings.max_queue_size,
                self._settings.max_queue_bytes,
                turn.payload_count,
                turn.conversation_id,
                dropped,
            )
        return not full

    def has_room(self, coming_payloads: int = 0, fraction: float = 0.9) -> bool:
        """Whether the queue, with ``coming_payloads`` more, stays below ``fraction`` of its limits."""
        with self._lock:
            return (
                not self._closing
                and self._queued_payloads + coming_payloads < self._settings.max_queue_size * fraction
                and self._queued_bytes < self._settings.max_queue_bytes * fraction
            )

    def flush(self, timeout: float | None = None) -> FlushResult:
        """Wait until everything submitted so far is delivered or given up on, or ``timeout`` passes.

        Returns the per-item results recorded since the previous flush.
        """
        with self._lock:
            complete = self._settled.wait_for(lambda: self._unfinished == 0, timeout)
            items = list(self._results)
            self._results.clear()
        return FlushResult(complete, items)

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Stop accepting turns, deliver what is queued for up to ``timeout`` seconds, then drop the rest."""
        with self._lock:
            self._closing = True
            self._drain_deadline = time.monotonic() + timeout
            self._work_ready.notify_all()
            self._settled.notify_all()
            complete = self._settled.wait_for(lambda: self._unfinished == 0, timeout)
            if not complete:
                self._stats.payloads_dropped_at_shutdown += self._queued_payloads
                logger.error(
                    "AgentSight shut down with %d payloads undelivered after %.1fs", self._queued_payloads, timeout
                )
        return complete

    def _start_workers(self) -> None:
        while len(self._threads) < min(self._settings.max_concurrency, len(self._pending)):
            thread = threading.Thread(target=self._work, name=f"agentsight-delivery-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                self._work_ready.wait_for(lambda: self._ready or (self._closing and self._unfinished == 0))
                if not self._ready:
                    self._transport.close()  # this thread's kept-alive connection
                    return
                conversation_id = self._ready.popleft()
                turn = self._pending[conversation_id].popleft()
            try:
                self._deliver(turn.build())
            except Exception:  # a bug must not kill the worker and strand the queue
                logger.exception("AgentSight delivery of conversation %s failed unexpectedly", conversation_id)
            finally:
                with self._lock:
                    self._queued_payloads -= turn.payload_count
                    self._queued_bytes -= turn.size
                    self._unfinished -= 1
                    if self._pending[conversation_id]:
                        self._ready.append(conversation_id)
                        self._work_ready.notify()
                    else:
                        del self._pending[conversation_id]
                    if self._unfinished == 0:
                        self._settled.notify_all()
                        if self._closing:
                            self._work_ready.notify_all()  # the drain is done: idle threads may exit

    def _deliver(self, turn: TurnPayloads) -> None:
        server_id = self._conversation_server_id(turn)
        for payload in turn.items:
            if server_id is None:
                result = ItemResult(turn.conversation_id, payload.kind, payload.timestamp, False,
                                    error="not sent: the conversation was not created")
                with self._lock:
                    self._stats.payloads_without_conversation += 1
            else:
                result = self._post(turn, payload, server_id)
            self._record(result)

    def _conversation_server_id(self, turn: TurnPayloads) -> int | None:
        payload = turn.conversation
        fingerprint = json.dumps({k: v for k, v in payload.body.items() if k != "timestamp"}, sort_keys=True)
        with self._lock:
            cached = self._conversation_ids.get(turn.conversation_id)
            if cached is not None and cached[1] == fingerprint:
                self._conversation_ids.move_to_end(turn.conversation_id)
                self._stats.conversation_posts_skipped += 1
                return cached[0]
        result = self._post(turn, payload, None)
        self._record(result)
        if not result.success:
            return None
        server_id = result.response["id"]
        with self._lock:
            self._conversation_ids[turn.conversation_id] = (server_id, fingerprint)
            self._conversation_ids.move_to_end(turn.conversation_id)
            while len(self._conversation_ids) > self._settings.max_cached_conversations:
                self._conversation_ids.popitem(last=False)
        return server_id

    def _record(self, result: ItemResult) -> None:
        with self._lock:
            self._results.append(result)

    def _post(self, turn: TurnPayloads, payload: Payload, server_id: int | None) -> ItemResult:
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                response = self._transport.post(payload, server_id)
            except (OSError, http.client.HTTPException) as error:
                outcome: ItemResult | _Retry = _Retry(f"network error: {error!r}")
            else:
                outcome = self._outcome(turn, payload, response)
            if isinstance(outcome, ItemResult):
                return outcome
            delay = min(self._settings.backoff_max, self._settings.backoff_initial * 2**attempt)
            delay = outcome.retry_after if outcome.retry_after is not None else delay * random.uniform(0.5, 1.0)
            deadline = min(started + self._settings.max_retry_time, self._drain_deadline)
            if time.monotonic() + delay > deadline:
                return self._expired(turn, payload, outcome.message, attempt + 1)
            self._note_failure(outcome.message, delay)
            with self._lock:
                self._stats.retries += 1
                # Sleep out the back-off, waking early only if a shutdown's drain deadline comes first.
                self._settled.wait_for(lambda d=delay: time.monotonic() + d > self._drain_deadline, delay)
            attempt += 1

    def _outcome(self, turn: TurnPayloads, payload: Payload, response: HttpResponse) -> ItemResult | _Retry:
        status = response.status
        if status in (200, 201):
            try:
                data = response.json()
            except ValueError:
                data = None
            if payload.kind == "conversation" and not (isinstance(data, dict) and isinstance(data.get("id"), int)):
                return _Retry(f"HTTP {status} without a conversation id: {response.body[:200]!r}")
            if data is None:
                logger.warning("AgentSight answered %s %s with a body that is not JSON", status, payload.path)
            self._note_recovery()
            with self._lock:
                self._stats.payloads_delivered += 1
            return ItemResult(turn.conversation_id, payload.kind, payload.timestamp, True, status, data)
        message = f"HTTP {status}: {response.error_message()}"
        if status == 429 or status >= 500 or status < 200:
            return _Retry(message, response.retry_after)
        return self._rejected(turn, payload, status, message)

    def _rejected(self, turn: TurnPayloads, payload: Payload, status: int, message: str) -> ItemResult:
        with self._lock:
            self._stats.payloads_rejected += 1
            first = (payload.kind, message) not in self._logged_rejections
            if first and len(self._logged_rejections) < 1000:
                self._logged_rejections.add((payload.kind, message))
        if first:
            logger.error("AgentSight API rejected a %s payload (%s); not retried", payload.kind, message)
        return ItemResult(turn.conversation_id, payload.kind, payload.timestamp, False, status, error=message)

    def _expired(self, turn: TurnPayloads, payload: Payload, message: str, attempts: int) -> ItemResult:
        with self._lock:
            self._stats.payloads_expired += 1
            expired = self._stats.payloads_expired
        logger.error(
            "AgentSight gave up on a %s payload of conversation %s after %d attempts (%s); %d payloads given up so far",
            payload.kind,
            turn.conversation_id,
            attempts,
            message,
            expired,
        )
        return ItemResult(turn.conversation_id, payload.kind, payload.timestamp, False, error=message)

    def _note_failure(self, message: str, delay: float) -> None:
        with self._lock:
            first, self._failing = not self._failing, True
        if first:
            logger.warning("AgentSight API delivery failing (%s); retrying with back-off (next %.2fs)", message, delay)

    def _note_recovery(self) -> None:
        if self._failing:
            with self._lock:
                recovered, self._failing = self._failing, False
            if recovered:
                logger.warning("AgentSight API delivery recovered")

