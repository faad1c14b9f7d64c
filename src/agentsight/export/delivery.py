"""Delivery of translated turns to the AgentSight API, off the caller's thread: one machine for both wires.

- Turns wait in a queue bounded in payloads and bytes; a turn that does not fit is dropped whole.
- Delivery threads (up to ``max_concurrency``, each with its own kept-alive connection) take work:
  a :class:`Sender` says how much one delivery takes (one turn for REST; for ingest, the queued turns
  of as many conversations as fit one document). A conversation is never in two deliveries at once,
  so each conversation's turns arrive in order.
- A sender's ``linger``: a delivery thread that finds work waits that long for more to join it, so turns
  share one request (each request, and each switch between the app's threads and a delivery thread, costs
  the app more than the bytes do). It waits :data:`AWAITED_LINGER` at most when a submitter waits for an
  outcome (the bridge, before it acknowledges), and not at all once a batch is full or a flush, wait or
  shutdown asks for everything.
- :meth:`DeliveryClient.send` is the one retry loop: network errors, time-outs, 429 (honouring
  ``Retry-After``) and 5xx are retried by the :class:`~agentsight.export.retry.RetryPolicy` until
  ``max_retry_time``; other answers are final.
- Every outcome is an :class:`ItemResult`, counted in :attr:`DeliveryClient.stats`; drops and give-ups
  are logged (drops at most once a minute per cause, with counts), naming the endpoint; an endpoint that
  answers 404 to every request is called out once.
"""

from __future__ import annotations

import http.client
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import Protocol

from agentsight.config import DeliverySettings
from agentsight.export.droplog import DropWarnings
from agentsight.export.results import Answer, DeliveryStats, FlushResult, ItemResult, PendingTurn
from agentsight.export.retry import RetryPolicy
from agentsight.export.transport import HttpResponse

logger = logging.getLogger("agentsight.export.delivery")

MAX_KEPT_RESULTS = 10_000
"""Per-item results kept for :meth:`DeliveryClient.flush`; older ones are discarded first."""
AWAITED_LINGER = 0.005
"""Seconds a delivery lingers at most while a queued turn's submitter waits for its outcome (``settled``)."""

class Sender(Protocol):
    """One wire's way of delivering turns (:mod:`agentsight.export.senders`)."""

    batch_payloads: int
    """How many payloads one delivery takes at most (1: one turn at a time)."""
    batch_bytes: int
    linger: float
    """Seconds a delivery thread waits for more turns before it takes what is queued (0: none)."""
    endpoint: str
    """The API's base URL, as log lines name it."""

    def deliver(self, turns: Sequence[PendingTurn], client: DeliveryClient) -> None:
        """Send ``turns`` through ``client.send`` and report each payload with ``client.record``."""


class DeliveryClient:
    """Delivers turns (:class:`PendingTurn`) in the background; ``submit`` never blocks or raises."""

    def __init__(self, sender: Sender, settings: DeliverySettings, concurrency: int, close: Callable[[], None]) -> None:
        self._sender = sender
        self._settings = settings
        self._policy = RetryPolicy.from_settings(settings)
        self._concurrency = concurrency
        self._close_connection = close
        self._stats = DeliveryStats()
        self._logged_rejections: set[str] = set()
        self._answered = False  # any 2xx yet: until then, a 404 suggests a wrong endpoint
        self._not_found_said = False
        self._drop_warnings = {
            "queue_full": DropWarnings(logger, f"delivery queue full (limits: {settings.max_queue_size} "
                                               f"payloads, {settings.max_queue_bytes} bytes)"),
            "after_shutdown": DropWarnings(logger, f"tracked after shutdown(): the exporter for {sender.endpoint} "
                                                   "no longer sends"),
        }
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
        self._awaited = 0  # queued turns whose submitter waits for the outcome
        self._queued_payloads = 0
        self._queued_bytes = 0
        self._results: deque[ItemResult] = deque(maxlen=MAX_KEPT_RESULTS)
        self._delivering = threading.local()  # per delivery thread: each conversation's worst outcome so far
        self._dropped = 0  # payloads dropped since the last flush
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._hurrying = 0  # flushes and waits under way: nobody lingers
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
            cause = "after_shutdown" if self._closing else "queue_full" if (
                self._queued_payloads + turn.payload_count > self._settings.max_queue_size
                or self._queued_bytes + turn.size > self._settings.max_queue_bytes
            ) else None
            if cause is not None:
                counter = f"payloads_dropped_{cause}"
                setattr(self._stats, counter, getattr(self._stats, counter) + turn.payload_count)
                self._dropped += turn.payload_count
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
                if turn.settled is not None:
                    self._awaited += 1
                    if self._awaited == 1:
                        self._work_ready.notify_all()  # lingering threads wait less from now on
        if cause is not None:
            self._drop_warnings[cause].note(turn.payload_count, turn.conversation_id)
        return cause is None

    @property
    def closed(self) -> bool:
        """True once :meth:`shutdown` began: turns submitted from then on are dropped."""
        return self._closing

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

        Returns the per-item results recorded, and the payloads dropped, since the previous flush.
        """
        with self._lock, self._hurry():
            complete = self._settled.wait_for(lambda: self._unfinished == 0, timeout)
            items = list(self._results)
            self._results.clear()
            dropped, self._dropped = self._dropped, 0
        return FlushResult(complete, items, dropped)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait as :meth:`flush` does, leaving the results to the next :meth:`flush`; whether all settled in time."""
        with self._lock, self._hurry():
            return self._settled.wait_for(lambda: self._unfinished == 0, timeout)

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
                logger.error("AgentSight shut down with %d payloads undelivered to %s after %.1fs",
                             self._queued_payloads, self._sender.endpoint, timeout)
        self._drop_warnings["queue_full"].report()
        return complete

    # What senders call -------------------------------------------------------------------------

    def send(
        self,
        describe: str,
        request: Callable[[], HttpResponse],
        check: Callable[[HttpResponse], str | None] | None = None,
    ) -> Answer:
        """Send one request, retrying as the policy says; never raises for delivery problems.

        ``check`` can refuse a 2xx answer (returning why), which is then retried like a 5xx.
        Gives up once ``max_retry_time`` has passed or a shutdown's drain deadline comes.
        """
        started = time.monotonic()
        attempt = 0
        while True:
            with self._lock:
                self._stats.http_requests += 1
            try:
                response = request()
            except (OSError, http.client.HTTPException) as error:
                message, retry_after = f"network error: {error!r}", None
            else:
                status = response.status
                problem = check(response) if check is not None and self._policy.is_success(status) else None
                if self._policy.is_success(status) and problem is None:
                    self._note_recovery()
                    return Answer(response)
                if not self._policy.is_success(status) and not self._policy.is_retryable(status):
                    if status == 404 and not self._answered and not self._not_found_said:
                        self._note_not_found(describe)
                    return Answer(response, f"HTTP {status}: {response.error_message()}")
                message = problem or f"HTTP {status}: {response.error_message()}"
                retry_after = response.retry_after
            delay = self._policy.delay(attempt, retry_after)
            deadline = min(started + self._policy.max_time, self._drain_deadline)
            if time.monotonic() + delay > deadline:
                logger.error("AgentSight gave up on %s to %s after %d attempts (%s)", describe,
                             self._sender.endpoint, attempt + 1, message)
                return Answer(None, message)
            self._note_failure(message, delay)
            with self._lock:
                self._stats.retries += 1
                # Sleep out the back-off, waking early only if a shutdown's drain deadline comes first.
                self._settled.wait_for(lambda d=delay: time.monotonic() + d > self._drain_deadline, delay)
            attempt += 1

    def record(self, result: ItemResult) -> None:
        """Keep one payload's result for :meth:`flush` and count it."""
        self.record_all((result,))

    def record_all(self, results: Sequence[ItemResult]) -> None:
        """Keep several payloads' results for :meth:`flush` and count them (one lock for all)."""
        with self._lock:
            self._results.extend(results)
            for result in results:
                counter = f"payloads_{result.outcome}"
                setattr(self._stats, counter, getattr(self._stats, counter) + 1)
        outcomes = getattr(self._delivering, "outcomes", None)
        if outcomes is not None:
            for result in results:
                outcomes[result.conversation_id] = _worse(outcomes.get(result.conversation_id), result.outcome)

    def log_rejection(self, what: str, message: str) -> None:
        """Log a refused request at error level, once per distinct message (at most 1,000 remembered).

        A 404 before any success is not logged again: :meth:`send` said the endpoint looks wrong.
        """
        with self._lock:
            first = message not in self._logged_rejections and (self._answered or not message.startswith("HTTP 404"))
            if first and len(self._logged_rejections) < 1000:
                self._logged_rejections.add(message)
        if first:
            logger.error("AgentSight API at %s rejected %s (%s); not retried", self._sender.endpoint, what, message)

    # Delivery threads ----------------------------------------------------------------------------

    def _start_workers(self) -> None:
        while len(self._threads) < min(self._concurrency, len(self._pending)):
            thread = threading.Thread(target=self._work, name=f"agentsight-delivery-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()

    @contextmanager
    def _hurry(self) -> Iterator[None]:
        """Under the lock: while the block runs, delivery threads take work at once instead of lingering."""
        self._hurrying += 1
        self._work_ready.notify_all()
        try:
            yield
        finally:
            self._hurrying -= 1

    def _linger(self) -> None:
        """Under the lock, with work ready: give more turns up to the sender's ``linger`` to join this delivery."""
        started = time.monotonic()
        while not (self._hurrying or self._closing or self._queued_payloads >= self._sender.batch_payloads
                   or self._queued_bytes >= self._sender.batch_bytes):
            linger = min(self._sender.linger, AWAITED_LINGER) if self._awaited else self._sender.linger
            left = started + linger - time.monotonic()
            if left <= 0:
                return
            self._work_ready.wait(left)

    def _take(self) -> tuple[list[str], list[PendingTurn]]:
        """Under the lock: the next delivery's conversations and turns (conversations leave the ready list)."""
        limit, byte_limit = self._sender.batch_payloads, self._sender.batch_bytes
        conversations: list[str] = []
        taken: list[PendingTurn] = []
        payloads = size = 0
        while self._ready:
            queue = self._pending[self._ready[0]]
            if taken and (payloads + queue[0].payload_count > limit or size + queue[0].size > byte_limit):
                break
            conversations.append(self._ready.popleft())
            while queue and (not taken or (payloads + queue[0].payload_count <= limit
                                           and size + queue[0].size <= byte_limit)):
                turn = queue.popleft()
                taken.append(turn)
                payloads += turn.payload_count
                size += turn.size
        return conversations, taken

    def _work(self) -> None:
        while True:
            with self._lock:
                self._work_ready.wait_for(lambda: self._ready or (self._closing and self._unfinished == 0))
                if not self._ready:
                    self._close_connection()  # this thread's kept-alive connection
                    return
                if self._sender.linger > 0:
                    self._linger()
                if not self._ready:  # another thread took it meanwhile
                    continue
                conversations, turns = self._take()
            self._delivering.outcomes = outcomes = {}
            try:
                self._sender.deliver(turns, self)
            except Exception:  # a bug must not kill the worker and strand the queue
                logger.exception("AgentSight delivery of conversations %s failed unexpectedly", conversations)
            finally:
                self._release(conversations, turns)
                for turn in turns:  # outside the lock: the callbacks may submit more
                    if turn.settled is not None:
                        turn.settled(outcomes.get(turn.conversation_id, "expired"))

    def _release(self, conversations: list[str], turns: list[PendingTurn]) -> None:
        with self._lock:
            self._queued_payloads -= sum(turn.payload_count for turn in turns)
            self._queued_bytes -= sum(turn.size for turn in turns)
            self._unfinished -= len(turns)
            self._awaited -= sum(1 for turn in turns if turn.settled is not None)
            for conversation_id in conversations:
                if self._pending[conversation_id]:
                    self._ready.append(conversation_id)
                    self._work_ready.notify()
                else:
                    del self._pending[conversation_id]
            if self._unfinished == 0:
                self._settled.notify_all()
                if self._closing:
                    self._work_ready.notify_all()  # the drain is done: idle threads may exit

    def _note_failure(self, message: str, delay: float) -> None:
        with self._lock:
            first, self._failing = not self._failing, True
        if first:
            logger.warning("AgentSight API delivery failing at %s (%s); retrying with back-off (next %.2fs)",
                           self._sender.endpoint, message, delay)

    def _note_not_found(self, describe: str) -> None:
        with self._lock:
            first, self._not_found_said = not self._not_found_said, True
        if first:
            logger.error("AgentSight API answered 404 (Not Found) for every request so far (the first: %s): is "
                         "AGENTSIGHT_API_ENDPOINT right? (it is %s; paths such as /api/ingest/ are appended to it)",
                         describe, self._sender.endpoint)

    def _note_recovery(self) -> None:
        self._answered = True
        if self._failing:
            with self._lock:
                recovered, self._failing = self._failing, False
            if recovered:
                logger.warning("AgentSight API delivery recovered at %s", self._sender.endpoint)


_SEVERITY = {"delivered": 0, "rejected": 1, "without_conversation": 1}
"""How bad a payload's outcome is for its turn: a refusal is final, anything else unknown (``expired``) is retried."""


def _worse(known: str | None, outcome: str) -> str:
    """The worse of a turn's outcome so far and one more payload's."""
    return outcome if known is None or _SEVERITY.get(outcome, 2) > _SEVERITY.get(known, 2) else known
