"""A conversation turn (one span) and where the current one lives: the OTel context.

The context holds the current turn and the turns opened in it, as immutable values: threads and
asyncio tasks each see their own, and a task's change never reaches its parent or siblings.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event

from agentsight.spans import semconv as sc
from agentsight.spans.finished import add_usage

_CURRENT_TURN = otel_context.create_key("agentsight.current_turn")
_OPEN_TURNS = otel_context.create_key("agentsight.open_turns")


class ConversationTurn:
    """One turn of a conversation: its span (ended when sent) and the token usage tracked in it."""

    __slots__ = (
        "conversation_id", "span", "tracer", "outer_span", "addressed_only", "pid", "_opener", "_lock", "_usage",
        "_uncounted", "__weakref__",
    )

    def __init__(
        self,
        conversation_id: str,
        span: trace.Span,
        tracer: trace.Tracer,
        outer_span: trace.Span,
        addressed_only: bool,
    ) -> None:
        self.conversation_id = conversation_id
        self.span = span
        self.tracer = tracer
        """The tracker's own tracer: model calls inside the turn are recorded with it, whatever the app's set-up."""
        self.outer_span = outer_span
        self.addressed_only = addressed_only
        """Opened by a tracking call's ``conversation_id=`` rather than made current: sent with the current turn."""
        self.pid = os.getpid()
        """The process that opened it: only that process sends it when nobody did (a fork copies open turns)."""
        self._opener = _running_task_or_thread()
        self._lock = threading.Lock()
        self._usage: dict[str, int] | None = None
        self._uncounted: list[Event] = []
        """Token usage events not in ``_usage`` yet (a model call's are built when first read)."""

    def __repr__(self) -> str:
        return f"ConversationTurn(conversation_id={self.conversation_id!r}, ended={self.ended})"

    @property
    def ended(self) -> bool:
        """True once the turn was sent."""
        return not self.span.is_recording()

    def opened_by_caller(self) -> bool:
        """True when the asyncio task (or, outside tasks, the thread) calling this opened the turn.

        A child task sees its parent's turn through the inherited context but did not open it.
        """
        opener = self._opener
        caller = _running_task_or_thread()
        if isinstance(opener, weakref.ref):
            return isinstance(caller, weakref.ref) and opener() is caller()
        return opener == caller

    def add_event(self, name: str, attributes: dict[str, Any]) -> None:
        """Record a tracked item.

        The tracker builds ``attributes`` from values it has already validated (str, int, bool),
        and the span has no limits, so the SDK's per-value re-validation in ``Span.add_event``
        (more than half of a tracking call's cost) is skipped; the event stays immutable.
        """
        self.span._add_event(Event(name, MappingProxyType(attributes)))  # type: ignore[attr-defined]

    def add_usage(self, usage: Mapping[str, int], model_call_span_id: str | None = None) -> None:
        """Record token usage: one event, counted in the sums of ``get_token_usage()``.

        ``model_call_span_id`` marks the usage of a model call (hex span id): the ingest wire carries
        it on the call's own ``llm`` span instead of the turn's ``token_usage`` sum.
        """
        self.add_usage_event(Event(sc.TOKEN_USAGE_EVENT, MappingProxyType(usage_event_attributes(usage,
                                                                                                model_call_span_id))))

    def add_usage_event(self, event: Event) -> None:
        """Record a token usage event (possibly a :class:`DeferredEvent`); it is summed when ``usage()`` is read."""
        with self._lock:
            self._uncounted.append(event)
        self.span._add_event(event)  # type: ignore[attr-defined]

    def add_deferred_event(self, event: DeferredEvent) -> None:
        """Record an item whose attributes are built when first read (when the turn is sent, not in the app's call)."""
        self.span._add_event(event)  # type: ignore[attr-defined]

    def usage(self) -> dict[str, int]:
        """The token sums tracked so far in this turn (empty when none were)."""
        with self._lock:
            for event in self._uncounted:
                self._usage = add_usage(self._usage, event.attributes or {})
            self._uncounted.clear()
            return dict(self._usage or {})

    def end(self) -> None:
        """End the span, which sends the turn."""
        self.span.end()


class DeferredEvent(Event):
    """A span event whose attributes are built by ``build()`` when first read, then kept (and ``build`` let go).

    A model call's usage and action are known when it ends, but turning them into attributes (JSON text,
    ISO times) is left to whoever reads the turn first: the send, or the translation on a delivery thread.
    Readers racing on a fresh event may both build it; ``build`` gives equal attributes every time.
    """

    def __init__(self, name: str, build: Callable[[], dict[str, Any]]) -> None:
        super().__init__(name)
        self._build: Callable[[], dict[str, Any]] | None = build

    @property
    def attributes(self) -> Mapping[str, Any]:  # type: ignore[override]
        """The event's attributes, built on first read."""
        attributes = self._attributes
        if attributes is None:
            build = self._build
            if build is None:  # built meanwhile by another thread, which set the attributes first
                return self._attributes  # type: ignore[return-value]
            attributes = self._attributes = MappingProxyType(build())
            self._build = None
        return attributes  # type: ignore[return-value]


def usage_event_attributes(usage: Mapping[str, int], model_call_span_id: str | None = None) -> dict[str, int | str]:
    """The attributes of a token usage event adding ``usage`` (missing counts are 0), of a model call when given."""
    attributes: dict[str, int | str] = {attribute: usage.get(key, 0) for key, attribute in sc.USAGE_FIELDS}
    if model_call_span_id is not None:
        attributes[sc.MODEL_CALL_SPAN_ID] = model_call_span_id
    return attributes


def _running_task_or_thread() -> object:
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running event loop
        task = None
    return weakref.ref(task) if task is not None else threading.get_ident()


def current_turn(ctx: Context | None = None) -> ConversationTurn | None:
    """The turn the calling context tracks into, if one is open."""
    turn = otel_context.get_value(_CURRENT_TURN, ctx)
    return turn if turn is not None and not turn.ended else None  # type: ignore[return-value]


def open_turns(ctx: Context | None = None) -> tuple[ConversationTurn, ...]:
    """Turns opened in the calling context and not yet sent, oldest first."""
    turns: tuple[ConversationTurn, ...] = otel_context.get_value(_OPEN_TURNS, ctx) or ()  # type: ignore[assignment]
    return tuple(turn for turn in turns if not turn.ended)


def with_turn(turn: ConversationTurn, make_current: bool, ctx: Context | None = None) -> Context:
    """A context in which ``turn`` is open (and, with ``make_current``, current with its span active)."""
    others = tuple(open_turn for open_turn in open_turns(ctx) if open_turn is not turn)
    ctx = otel_context.set_value(_OPEN_TURNS, (*others, turn), ctx)
    if make_current:
        ctx = otel_context.set_value(_CURRENT_TURN, turn, ctx)
        ctx = trace.set_span_in_context(turn.span, ctx)
    return ctx


def sendable_turns(ctx: Context | None = None) -> tuple[ConversationTurn, ...]:
    """What ``send_tracked_data()`` sends: the current turn and the turns opened by addressing them."""
    current = current_turn(ctx)
    addressed = tuple(turn for turn in open_turns(ctx) if turn.addressed_only and turn is not current)
    return addressed if current is None else (current, *addressed)


def after_sending(sent: tuple[ConversationTurn, ...], ctx: Context | None = None) -> Context:
    """A context without the ``sent`` turns and no current turn; the span active before them is active again."""
    ctx = otel_context.set_value(_OPEN_TURNS, tuple(t for t in open_turns(ctx) if t not in sent), ctx)
    ctx = otel_context.set_value(_CURRENT_TURN, None, ctx)
    return trace.set_span_in_context(sent[0].outer_span, ctx)
