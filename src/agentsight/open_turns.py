"""The turns a tracker opened and has not sent: opening, ending, finding them, and sending abandoned ones.

Open turns are held by the contexts that opened them; :class:`OpenTurns` holds them weakly. A turn whose
contexts are gone without sending it (a handler that raised) is queued when it is collected and sent at the
next safe point, so abandoned turns neither leak nor vanish.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from agentsight.export.pipeline import count_app_model_calls
from agentsight.spans import semconv as sc
from agentsight.spans import turn as turns
from agentsight.spans.turn import ConversationTurn

logger = logging.getLogger("agentsight")


class OpenTurns:
    """A tracker's unsent turns, started on its ``tracer``."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer
        self._lock = threading.Lock()
        self._open: weakref.WeakSet[ConversationTurn] = weakref.WeakSet()
        self._latest_open: weakref.WeakValueDictionary[str, ConversationTurn] = weakref.WeakValueDictionary()
        self._abandoned: queue.SimpleQueue[tuple[trace.Span, int]] = queue.SimpleQueue()

    def new(self, attributes: dict[str, Any], addressed_only: bool = False) -> ConversationTurn:
        """Start a turn (a child of the current turn's outer span, else of the current span) without attaching it."""
        self.send_abandoned()
        count_app_model_calls()
        current = turns.current_turn()
        outer = current.outer_span if current is not None else trace.get_current_span()
        span = self._tracer.start_span(
            sc.CONVERSATION_SPAN,
            context=trace.set_span_in_context(outer),
            attributes=attributes,
            kind=trace.SpanKind.INTERNAL,
        )
        turn = ConversationTurn(attributes[sc.CONVERSATION_ID], span, self._tracer, outer, addressed_only)
        weakref.finalize(turn, self._abandoned.put, (span, turn.pid)).atexit = False
        with self._lock:
            self._open.add(turn)
            self._latest_open[turn.conversation_id] = turn
        return turn

    def open(self, attributes: dict[str, Any], make_current: bool) -> ConversationTurn:
        """Start a turn and attach it to the calling context (as its current turn when ``make_current``)."""
        turn = self.new(attributes, addressed_only=not make_current)
        otel_context.attach(turns.with_turn(turn, make_current))
        return turn

    def make_current(self, attributes: dict[str, Any]) -> None:
        """Make the open turn of this conversation (else a new one) current in the calling context."""
        conversation_id = attributes[sc.CONVERSATION_ID]
        reusable = next((t for t in turns.open_turns() if t.conversation_id == conversation_id), None)
        current = turns.current_turn()
        if current is not None and current is not reusable and current.opened_by_caller():
            # Switching conversations sends the turn switched from (upstream held it until switched back),
            # which also sends a turn left open on a reused thread by a handler that never sent it.
            self.end([current])
        if reusable is None:
            self.open(attributes, make_current=True)
            return
        reusable.span.set_attributes(attributes)
        reusable.addressed_only = False
        otel_context.attach(turns.with_turn(reusable, make_current=True))

    @contextmanager
    def scope(self, attributes: dict[str, Any]) -> Iterator[ConversationTurn]:
        """A current turn for the ``with`` block, sent on exit (with the turns opened in it), also when it raises."""
        before = set(turns.open_turns())
        turn = self.new(attributes)
        token = otel_context.attach(turns.with_turn(turn, make_current=True))
        try:
            yield turn
        except BaseException as error:
            if turn.span.is_recording():
                turn.span.record_exception(error)
                turn.span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            raise
        finally:
            self.end([t for t in turns.open_turns() if t not in before])
            otel_context.detach(token)

    def end(self, ending: list[ConversationTurn] | tuple[ConversationTurn, ...]) -> None:
        """End (and so send) these turns."""
        for turn in ending:
            with self._lock:
                self._open.discard(turn)
                if self._latest_open.get(turn.conversation_id) is turn:
                    del self._latest_open[turn.conversation_id]
            if not turn.ended:
                turn.end()

    def end_all(self) -> None:
        """Send the turns opened in this process and not sent (a forked child leaves its parent's alone)."""
        pid = os.getpid()
        with self._lock:
            still_open = [turn for turn in self._open if turn.pid == pid]
        self.end(still_open)
        self.send_abandoned()

    def send_abandoned(self) -> None:
        """End the spans of turns collected unsent (queued by their finalizers) in this process, which sends them."""
        while not self._abandoned.empty():
            span, pid = self._abandoned.get_nowait()
            if span.is_recording() and pid == os.getpid():
                logger.debug("AgentSight sends a turn whose context ended without send_tracked_data()")
                span.end()

    def find(self, conversation_id: str | None) -> ConversationTurn | None:
        """The current turn, or the open turn of ``conversation_id`` (in this context first); ``None`` if none."""
        if conversation_id is None:
            return turns.current_turn()
        for turn in reversed(turns.open_turns()):
            if turn.conversation_id == conversation_id:
                return turn
        turn = self._latest_open.get(conversation_id)
        return turn if turn is not None and not turn.ended else None
