"""Joining a turn's spans that arrive apart: a conversation span and model-call spans of its trace.

In-process, model calls are added to their turn before it ends; their spans carry the turn's
``agentsight.conversation.id`` and are ignored here, and each such action names the span it came
from. Model calls recorded elsewhere (another process of the same trace) arrive as their own
unmarked spans, possibly in other requests. So a conversation span waits a short grace period
for them, and model-call spans wait (bounded in count and age) for their turn; what expires is
counted and logged. A call already held by its turn, or nested in another model call, is not
counted again.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from agentsight.bridge.otlp import ReceivedEvent, ReceivedSpan
from agentsight.export.droplog import DROP_WARNING_INTERVAL
from agentsight.spans import semconv as sc
from agentsight.spans.attribution import is_model_call, model_call_action, model_call_usage
from agentsight.spans.finished import is_conversation_span
from agentsight.spans.turn import usage_event_attributes

logger = logging.getLogger("agentsight.bridge")

Tag = TypeVar("Tag")


def waits_for_its_turn(span: ReceivedSpan) -> bool:
    """Whether a span is a model call recorded outside a turn (not marked in-process): it waits for its turn."""
    return is_model_call(span.attributes) and sc.CONVERSATION_ID not in span.attributes


@dataclasses.dataclass
class AssemblyStats:
    """Counters of the assembler."""

    model_calls_joined: int = 0
    model_calls_expired: int = 0
    model_calls_waiting: int = 0
    turns_waiting: int = 0
    payloads_waiting: int = 0
    """Payloads the waiting turns will become: they count against the delivery queue's room."""


class TurnAssembler(Generic[Tag]):
    """Holds conversation spans for ``grace`` seconds and model-call spans for up to ``max_wait``.

    Each conversation span comes out of :meth:`due` (or :meth:`drain`) with the ``tag`` it was added with.
    """

    def __init__(
        self,
        grace: float = 2.0,
        max_wait: float = 60.0,
        max_waiting_calls: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        estimate: Callable[[ReceivedSpan], int] = lambda span: 1,
    ) -> None:
        self._grace = grace
        self._max_wait = max_wait
        self._max_waiting_calls = max_waiting_calls
        self._clock = clock
        self._estimate = estimate
        """Payloads a turn becomes on the wire it will be delivered on (they count against the queue's room)."""
        self._lock = threading.Lock()
        self._calls: OrderedDict[bytes, tuple[float, list[ReceivedSpan]]] = OrderedDict()
        self._waiting_calls = 0
        self._turns: deque[tuple[float, ReceivedSpan, Tag | None]] = deque()
        self._waiting_payloads = 0
        self._stats = AssemblyStats()
        self._unreported_drops = 0
        self._next_drop_warning = float("-inf")

    @property
    def stats(self) -> AssemblyStats:
        """A snapshot of the counters."""
        with self._lock:
            return dataclasses.replace(self._stats, model_calls_waiting=self._waiting_calls,
                                       turns_waiting=len(self._turns), payloads_waiting=self._waiting_payloads)

    def add(self, spans: Iterable[ReceivedSpan], tag: Tag | None = None) -> None:
        """Take the conversation spans (tagged ``tag``) and model-call spans among ``spans``; others are ignored."""
        now = self._clock()
        with self._lock:
            for span in spans:
                if is_conversation_span(span):
                    self._turns.append((now + self._grace, span, tag))
                    self._waiting_payloads += self._estimate(span)
                elif waits_for_its_turn(span):
                    self._hold_call(now, span)
            self._expire_calls(now)

    def due(self) -> list[tuple[ReceivedSpan, Tag | None]]:
        """Turns whose grace period is over, completed with the model calls that joined them, with their tags."""
        now = self._clock()
        with self._lock:
            ready = []
            while self._turns and self._turns[0][0] <= now:
                _, turn, tag = self._turns.popleft()
                self._waiting_payloads -= self._estimate(turn)
                ready.append((self._complete(turn), tag))
            self._expire_calls(now)
        return ready

    def drain(self) -> list[tuple[ReceivedSpan, Tag | None]]:
        """Every waiting turn now, completed with what has arrived (at shutdown), with their tags."""
        with self._lock:
            ready = [(self._complete(span), tag) for _, span, tag in self._turns]
            self._turns.clear()
            self._waiting_payloads = 0
        return ready

    def _hold_call(self, now: float, span: ReceivedSpan) -> None:
        if span.trace_id in self._calls:
            self._calls[span.trace_id][1].append(span)
        else:
            self._calls[span.trace_id] = (now, [span])
        self._waiting_calls += 1
        while self._waiting_calls > self._max_waiting_calls:
            self._drop_oldest("the waiting limit was reached")

    def _expire_calls(self, now: float) -> None:
        while self._calls and next(iter(self._calls.values()))[0] + self._max_wait < now:
            self._drop_oldest("no turn of their trace arrived in time")

    def _drop_oldest(self, why: str) -> None:
        """Drop the oldest trace's waiting calls; a warning at once, then at most one a minute (with counts)."""
        _, (_, calls) = self._calls.popitem(last=False)
        self._waiting_calls -= len(calls)
        self._stats.model_calls_expired += len(calls)
        self._unreported_drops += len(calls)
        now = self._clock()
        if now >= self._next_drop_warning:
            self._next_drop_warning = now + DROP_WARNING_INTERVAL
            logger.warning("AgentSight bridge dropped %d model-call span(s): %s; %d dropped so far (at most one such "
                           "line a minute)", self._unreported_drops, why, self._stats.model_calls_expired)
            self._unreported_drops = 0

    def _complete(self, turn: ReceivedSpan) -> ReceivedSpan:
        held = {event.attributes.get(sc.MODEL_CALL_SPAN_ID) for event in turn.events}
        entry = self._calls.get(turn.trace_id)
        if entry is None:
            return turn
        calls = entry[1]
        call_ids = {call.span_id for call in calls}
        joining = [
            call for call in calls
            if call.span_id.hex() not in held
            and call.parent_span_id not in call_ids
            and call.parent_span_id.hex() not in held
            and turn.start_time <= call.start_time <= turn.end_time
        ]
        if not joining:
            return turn
        remaining = [call for call in calls if call not in joining]
        if remaining:
            self._calls[turn.trace_id] = (entry[0], remaining)
        else:
            del self._calls[turn.trace_id]
        self._waiting_calls -= len(joining)
        self._stats.model_calls_joined += len(joining)
        events = list(turn.events)
        for call in joining:
            call_id = call.span_id.hex()
            usage = usage_event_attributes(model_call_usage(call), call_id)
            events.append(ReceivedEvent(sc.TOKEN_USAGE_EVENT, usage, call.end_time))
            events.append(ReceivedEvent(sc.ACTION_EVENT, model_call_action(call, call_id), call.end_time))
        events.sort(key=lambda event: event.timestamp)
        return dataclasses.replace(turn, events=tuple(events))
