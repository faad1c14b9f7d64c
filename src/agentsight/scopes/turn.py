"""``agentsight.turn()``'s scope: one exchange, one conversation span (the seed API's turn), ended once.

A turn opened here is a :class:`~agentsight.spans.turn.ConversationTurn` of the module-level tracker, made
current in the OTel context exactly as ``get_or_create_conversation()`` makes one: tracking calls of either
API, and model calls, land in it. It ends complete, or incomplete with a reason (``error``: an exception
left it; ``abandoned``: its consumer walked away or ``abandon_turn()``; ``deadline``: a wrapped turn never
ended; ``shutdown``: the process left first). Its lifetime can be handed to a stream, future or awaitable
(:meth:`TurnScope.wrap`), with a deadline.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Status, StatusCode

from agentsight.scopes import runtime, watchdog
from agentsight.scopes.conversation import current_conversation
from agentsight.scopes.stepping import stepped, stepped_async
from agentsight.spans import jsonsafe
from agentsight.spans import semconv as sc
from agentsight.spans import turn as turns
from agentsight.spans.turn import ConversationTurn
from agentsight.tracker import ConversationTracker

logger = logging.getLogger("agentsight")

_TURN_SCOPE = otel_context.create_key("agentsight.turn_scope")


def current_turn_scope() -> TurnScope | None:
    """The 0.1.x turn scope of the calling context, when it is open and its turn is the current one."""
    scope: TurnScope | None = otel_context.get_value(_TURN_SCOPE)  # type: ignore[assignment]
    if scope is None or scope.turn is None or scope.turn is not turns.current_turn():
        return None
    return scope


class TurnScope:
    """One exchange of a conversation; records nothing when tracking is off or there is no conversation."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or "turn"
        self.turn: ConversationTurn | None = None
        """The turn's span and events (``None``: nothing is recorded)."""
        self._tracker: ConversationTracker | None = None
        self._token: object | None = None
        self._lock = threading.Lock()
        self._ended = False
        self._deferred = False
        self._deadline: int | None = None

    def __repr__(self) -> str:
        return f"TurnScope(name={self.name!r}, turn={self.turn!r})"

    @property
    def turn_id(self) -> str | None:
        """The turn span's id in hex (``None`` when nothing is recorded)."""
        return format(self.turn.span.get_span_context().span_id, "016x") if self.turn is not None else None

    def start(self) -> TurnScope:
        """Open the turn in the current conversation and make it current in the calling context."""
        tracker, scope = runtime.tracker(), current_conversation()
        if tracker is None or scope is None or not scope.enabled:
            return self
        self._tracker = tracker
        self.turn = tracker.start_turn(scope.turn_attributes(self.name))
        self._token = otel_context.attach(self.layer(otel_context.get_current()))
        return self

    def layer(self, ctx: Context) -> Context:
        """``ctx`` with this turn current (and its conversation, for a stream draining elsewhere)."""
        assert self.turn is not None
        scope = current_conversation()
        ctx = otel_context.set_value(_TURN_SCOPE, self, turns.with_turn(self.turn, make_current=True, ctx=ctx))
        return ctx if scope is None else scope.layer(ctx)

    def finish(self, complete: bool = True, reason: str | None = None) -> None:
        """End the turn, which sends it; ``complete=False`` marks it incomplete (``reason``, default
        ``abandoned``). Only the first call counts (a stream ending and its deadline can race)."""
        with self._lock:
            first = not self._ended and self.turn is not None
            self._ended = True
        if self._deadline is not None:
            watchdog.cancel(self._deadline)
            self._deadline = None
        if first:
            assert self.turn is not None and self._tracker is not None
            span = self.turn.span
            if complete:
                span.set_status(Status(StatusCode.OK))
            else:
                span.set_attributes({sc.TURN_COMPLETE: False, sc.TURN_INCOMPLETE_REASON: reason or sc.REASON_ABANDONED})
                span.set_status(Status(StatusCode.ERROR))
            self._tracker.end_turns([self.turn])
        self.detach()

    def fail(self, error: BaseException) -> None:
        """End the turn incomplete (``error``), recording the exception on it."""
        if self.turn is not None and not self._ended:
            self.turn.span.record_exception(error)
        self.finish(complete=False, reason=sc.REASON_ERROR)

    def abandon(self) -> None:
        """End the turn incomplete (``abandoned``): the exchange did not finish (a client disconnected)."""
        self._deferred = False
        self.finish(complete=False, reason=sc.REASON_ABANDONED)

    def detach(self) -> None:
        """Stop being the current turn of the context that opened it (the span stays open if not ended)."""
        token, self._token = self._token, None
        if token is not None and self.turn is not None and trace.get_current_span() is self.turn.span:
            otel_context.detach(token)  # type: ignore[arg-type]

    def keep_open(self) -> TurnScope:
        """Take the turn's end out of its block's hands: end it with ``end_turn()`` (else the deadline does)."""
        self._defer()
        return self

    def end(self, complete: bool = True, reason: str | None = None) -> None:
        """End a turn kept open or wrapped."""
        self.finish(complete, reason)

    def user_message(self, content: Any, metadata: dict[str, Any] | None = None) -> None:
        """Add an end-user message to this turn, wherever this is called from."""
        add_message(self.turn, sc.SENDER_END_USER, content, metadata)

    def agent_message(self, content: Any, metadata: dict[str, Any] | None = None) -> None:
        """Add an agent message to this turn, wherever this is called from."""
        add_message(self.turn, sc.SENDER_AGENT, content, metadata)

    # Lifetime bound to an object ----------------------------------------------------------------

    def wrap(self, obj: Any) -> Any:
        """Bind the turn's end to ``obj``: a response with a ``body_iterator`` (Starlette, FastAPI), an (async)
        iterator, a future or task, or an awaitable; anything else is returned as it is, the turn left open
        until ``end_turn()`` or the deadline. The turn ends complete when ``obj`` is exhausted or done,
        incomplete when it raised (``error``), was closed early or cancelled (``abandoned``)."""
        if obj is None or self.turn is None:
            return obj
        if hasattr(obj, "body_iterator"):
            obj.body_iterator = self.wrap(obj.body_iterator)
            return obj
        self._defer()
        if hasattr(obj, "__aiter__"):
            return self._async_iterator(obj)
        if hasattr(obj, "add_done_callback"):
            obj.add_done_callback(self._future_done)
            return obj
        if inspect.isawaitable(obj):
            return self._awaitable(obj)
        if hasattr(obj, "__iter__"):
            return self._iterator(obj)
        logger.debug("agentsight wrap(): %r has no end to bind the turn to", type(obj))
        return obj

    def _defer(self) -> None:
        self._deferred = True
        timeout = runtime.turn_timeout_ms()
        if self.turn is not None and self._deadline is None and timeout > 0:
            self._deadline = watchdog.arm(timeout / 1000, self._expire)

    @property
    def deferred(self) -> bool:
        """True once the turn's end was handed to something else (``wrap()``, ``keep_open()``)."""
        return self._deferred

    def _expire(self, deadline_passed: bool) -> None:
        if self._ended:
            return
        if deadline_passed:
            logger.warning("AgentSight: turn %s passed its deadline without ending (something wrap() was given was "
                           "never drained); it is sent as incomplete", self.turn_id)
        self.finish(complete=False, reason=sc.REASON_DEADLINE if deadline_passed else sc.REASON_SHUTDOWN)

    def _iterator(self, iterable: Any) -> Any:
        try:
            yield from stepped(iterable, self.layer)
        except GeneratorExit:
            self.finish(complete=False, reason=sc.REASON_ABANDONED)
            raise
        except BaseException as error:
            self.fail(error)
            raise
        self.finish()

    async def _async_iterator(self, iterable: Any) -> Any:
        try:
            async for item in stepped_async(iterable, self.layer):
                yield item
        except (GeneratorExit, asyncio.CancelledError):
            self.finish(complete=False, reason=sc.REASON_ABANDONED)
            raise
        except BaseException as error:
            self.fail(error)
            raise
        self.finish()

    def _future_done(self, future: Any) -> None:
        if future.cancelled():
            self.finish(complete=False, reason=sc.REASON_ABANDONED)
        elif future.exception() is not None:
            self.fail(future.exception())
        else:
            self.finish()

    async def _awaitable(self, awaitable: Any) -> Any:
        token = otel_context.attach(self.layer(otel_context.get_current()))
        try:
            result = await awaitable
        except asyncio.CancelledError:
            self.finish(complete=False, reason=sc.REASON_ABANDONED)
            raise
        except BaseException as error:
            self.fail(error)
            raise
        finally:
            otel_context.detach(token)
        self.finish()
        return result

    # Context manager ----------------------------------------------------------------------------

    def __enter__(self) -> TurnScope:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, error: BaseException | None, tb: object) -> None:
        if error is not None:
            self.fail(error)
        elif self._deferred:
            self.detach()  # wrap() or keep_open() ends it
        else:
            self.finish()

    async def __aenter__(self) -> TurnScope:
        return self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, error: BaseException | None, tb: object) -> None:
        self.__exit__(exc_type, error, tb)


def add_message(turn: ConversationTurn | None, sender: str, content: Any, metadata: dict[str, Any] | None) -> None:
    """Add a message event to ``turn`` (nothing when ``None``): content as text, metadata as JSON when given."""
    if turn is None:
        return
    attributes: dict[str, Any] = {sc.MESSAGE_SENDER: sender,
                                  sc.MESSAGE_CONTENT: "" if content is None else str(content)}
    if metadata:
        attributes[sc.METADATA] = jsonsafe.dumps(metadata)
    turn.add_event(sc.MESSAGE_EVENT, attributes)


def target_turn(name: str) -> tuple[ConversationTurn | None, TurnScope | None]:
    """Where a tracking call records: the current turn (of either API), else a one-off turn named ``name`` in
    the current conversation (the caller finishes it), else nowhere."""
    turn = turns.current_turn()
    if turn is not None or not runtime.is_enabled():
        return turn, None
    one_off = TurnScope(name).start()
    return one_off.turn, one_off if one_off.turn is not None else None
