"""What the bridge received and what became of it: tickets, receipts and the window of remembered spans.

A :class:`Ticket` is the fate of one received conversation or model-call span: pending until it is
settled, once, with an outcome. A :class:`Receipt` gathers the tickets of one OTLP request; the request
is answered when every one is settled (or its deadline passes). The :class:`Ledger` keeps the tickets
by span (trace id and span id), so a span received again (a Collector retry, or two copies in flight)
follows its first copy instead of being delivered twice: pending spans for as long as they are pending,
settled ones for ``window`` seconds or the last ``max_spans`` of them, whichever is shorter. A span
whose delivery must be retried (``expired``, ``dropped``) is forgotten when settled, so its retry is
taken afresh.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable

DEDUPE_WINDOW_SECONDS = 600.0
"""How long a settled span is remembered, so that a repeat of it is not delivered again."""
DEDUPE_MAX_SPANS = 200_000
"""How many settled spans are remembered at most (the oldest are forgotten first): about 50 MiB."""

ACKNOWLEDGED = frozenset({"delivered", "held"})
"""Outcomes answered as success: delivered, or (a model call) kept for a turn of its trace."""
REFUSED = frozenset({"rejected", "without_conversation"})
"""Outcomes the API gave as final refusals: answered as rejected spans (partial success), not retried."""


def retryable(outcome: str) -> bool:
    """Whether an outcome asks the sender to send the span again (any outcome neither acknowledged nor refused)."""
    return outcome not in ACKNOWLEDGED and outcome not in REFUSED


class Receipt:
    """The tickets of one request (or what a model call waits for); settled once every ticket is.

    ``outcomes`` counts the settled tickets' outcomes. ``on_done`` runs once when the last one settles.
    """

    __slots__ = ("_done", "_remaining", "_sealed", "on_done", "outcomes")

    def __init__(self, on_done: Callable[[Receipt], None] | None = None) -> None:
        self._done = threading.Event()
        self._remaining = 0
        self._sealed = False
        self.on_done = on_done
        self.outcomes: Counter[str] = Counter()

    def wait(self, timeout: float) -> bool:
        """Block until every ticket is settled (``True``) or ``timeout`` seconds pass (``False``)."""
        return self._done.wait(max(0.0, timeout))

    @property
    def retry(self) -> bool:
        """Whether any ticket settled with an outcome the sender must retry."""
        return any(retryable(outcome) for outcome in self.outcomes)

    @property
    def refused(self) -> int:
        """How many tickets the API refused for good."""
        return sum(count for outcome, count in self.outcomes.items() if outcome in REFUSED)


class Ticket:
    """One received span's fate: ``outcome`` is ``None`` until settled, then never changes."""

    __slots__ = ("key", "listeners", "outcome", "trace_id", "turn")

    def __init__(self, key: bytes | None, trace_id: bytes, turn: bool) -> None:
        self.key = key
        self.trace_id = trace_id
        self.turn = turn
        self.outcome: str | None = None
        self.listeners: list[Receipt] = []


class Ledger:
    """Every pending span, and the recently settled ones, by trace id and span id (thread-safe)."""

    def __init__(self, window: float = DEDUPE_WINDOW_SECONDS, max_spans: int = DEDUPE_MAX_SPANS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._max_spans = max_spans
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[bytes, Ticket] = {}
        self._settled: OrderedDict[bytes, tuple[float, str]] = OrderedDict()
        self._turns_by_trace: dict[bytes, set[Ticket]] = {}
        self.repeats = 0
        """Spans received again while pending or remembered: they followed their first copy."""

    def stats(self) -> dict[str, int]:
        """Counters: spans pending, spans remembered as settled, repeats."""
        with self._lock:
            return {"spans_pending": len(self._pending), "spans_remembered": len(self._settled),
                    "spans_repeated": self.repeats}

    def known(self, key: bytes | None) -> bool:
        """Whether a span with this key is pending or remembered (a repeat)."""
        if key is None:
            return False
        with self._lock:
            return key in self._pending or self._remembered(key) is not None

    def track(self, receipt: Receipt, key: bytes | None, trace_id: bytes, turn: bool) -> Ticket | None:
        """Add a received span to ``receipt``: a new ticket to process it with, or ``None`` for a repeat.

        A repeat of a pending span waits for that span's outcome; a repeat of a settled one counts its
        outcome at once. A span without ids (``key`` ``None``) is always new.
        """
        with self._lock:
            if key is not None:
                pending = self._pending.get(key)
                if pending is not None:
                    self.repeats += 1
                    receipt._remaining += 1
                    pending.listeners.append(receipt)
                    return None
                outcome = self._remembered(key)
                if outcome is not None:
                    self.repeats += 1
                    receipt.outcomes[outcome] += 1
                    return None
            ticket = Ticket(key, trace_id, turn)
            if key is not None:
                self._pending[key] = ticket
            if turn:
                self._turns_by_trace.setdefault(trace_id, set()).add(ticket)
            receipt._remaining += 1
            ticket.listeners.append(receipt)
            return ticket

    def seal(self, receipt: Receipt) -> None:
        """No more tickets join ``receipt``: it is done once those it has are settled."""
        with self._lock:
            receipt._sealed = True
            done = receipt._remaining == 0
        if done:
            _finish([receipt])

    def settle(self, ticket: Ticket, outcome: str) -> None:
        """Settle a ticket (a second settlement is ignored); receipts waiting for it learn the outcome."""
        with self._lock:
            done = self._settle(ticket, outcome)
        _finish(done)

    def settle_after_turns(self, ticket: Ticket) -> None:
        """Settle a model call's ticket once the turns of its trace pending now are settled (now, if none).

        It settles ``held``, or ``expired`` when one of those turns must be retried (the call goes with it).
        """
        with self._lock:
            turns = [turn for turn in self._turns_by_trace.get(ticket.trace_id, ()) if turn.outcome is None]
            if not turns:
                done = self._settle(ticket, "held")
            else:
                join = Receipt(on_done=lambda receipt: self.settle(ticket, "expired" if receipt.retry else "held"))
                for turn in turns:
                    join._remaining += 1
                    turn.listeners.append(join)
                join._sealed = True
                done = []
        _finish(done)

    def _remembered(self, key: bytes) -> str | None:
        entry = self._settled.get(key)
        if entry is None:
            return None
        if entry[0] + self._window < self._clock():
            del self._settled[key]
            return None
        return entry[1]

    def _settle(self, ticket: Ticket, outcome: str) -> list[Receipt]:
        """Under the lock: record the outcome; the receipts it completes."""
        if ticket.outcome is not None:
            return []
        ticket.outcome = outcome
        if ticket.key is not None:
            self._pending.pop(ticket.key, None)
            if not retryable(outcome):
                now = self._clock()
                self._settled[ticket.key] = (now, outcome)
                self._forget_old(now)
        if ticket.turn:
            turns = self._turns_by_trace.get(ticket.trace_id)
            if turns is not None:
                turns.discard(ticket)
                if not turns:
                    del self._turns_by_trace[ticket.trace_id]
        done = []
        for receipt in ticket.listeners:
            receipt.outcomes[outcome] += 1
            receipt._remaining -= 1
            if receipt._remaining == 0 and receipt._sealed:
                done.append(receipt)
        ticket.listeners = []
        return done

    def _forget_old(self, now: float) -> None:
        settled = self._settled
        while settled and (len(settled) > self._max_spans or next(iter(settled.values()))[0] + self._window < now):
            settled.popitem(last=False)


def _finish(done: list[Receipt]) -> None:
    """Outside the lock: wake whoever waits for the completed receipts, and run their ``on_done``."""
    for receipt in done:
        receipt._done.set()
        if receipt.on_done is not None:
            receipt.on_done(receipt)


def span_key(trace_id: bytes, span_id: bytes) -> bytes | None:
    """A span's identity in the ledger, or ``None`` when it has no span id (it can then not be recognised)."""
    return trace_id + span_id if span_id else None
