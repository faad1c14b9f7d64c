"""``@agentsight.tool`` and ``@agentsight.task``: each call of the decorated function is an action of the turn.

An ``agentsight.action`` event with the call's real times, its arguments (JSON), its result (``str()`` of it,
as upstream records it) or its error (and the exception), and ``agentsight.action.kind`` saying tool or task.
The function runs unchanged: its result is returned and its exception raised as they are. Outside a turn the
call is a one-off turn of the current conversation (named after the action); with tracking off or no
conversation it is a plain call.
"""

from __future__ import annotations

import functools
import inspect
import time
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from agentsight.scopes import runtime
from agentsight.scopes.decorate import bound_arguments
from agentsight.scopes.turn import TurnScope, target_turn
from agentsight.spans import jsonsafe
from agentsight.spans import semconv as sc
from agentsight.spans.finished import iso_timestamp
from agentsight.spans.turn import ConversationTurn

F = TypeVar("F", bound=Callable[..., Any])


class _Call:
    """One call of a decorated function being recorded: where, and since when."""

    __slots__ = ("kind", "operation", "turn", "one_off", "started")

    def __init__(self, kind: str, operation: str, turn: ConversationTurn, one_off: TurnScope | None) -> None:
        self.kind, self.operation, self.turn, self.one_off = kind, operation, turn, one_off
        self.started = time.time_ns()

    def done(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], result: Any = None,
             error: BaseException | None = None) -> None:
        """Record the call's action event (and end the one-off turn it opened)."""
        ended = time.time_ns()
        arguments = bound_arguments(func, args, kwargs)
        arguments.pop("self", None)
        attributes: dict[str, Any] = {
            sc.ACTION_NAME: self.operation,
            sc.ACTION_KIND: self.kind,
            sc.ACTION_STARTED_AT: iso_timestamp(self.started),
            sc.ACTION_ENDED_AT: iso_timestamp(ended),
            sc.ACTION_DURATION_MS: (ended - self.started) // 1_000_000,
            sc.ACTION_TOOLS_USED: jsonsafe.dumps(arguments),
        }
        if error is None:
            attributes[sc.ACTION_RESPONSE] = "" if result is None else str(result)
        else:
            attributes[sc.ACTION_ERROR_MSG] = str(error)
            attributes[sc.EXCEPTION_TYPE] = type(error).__qualname__
            attributes[sc.EXCEPTION_MESSAGE] = str(error)
            attributes[sc.EXCEPTION_STACKTRACE] = "".join(traceback.format_exception(error))
        self.turn.add_event(sc.ACTION_EVENT, attributes)
        if self.one_off is not None:
            self.one_off.finish()


def _begin(kind: str, operation: str) -> _Call | None:
    """A call to record, or ``None`` (tracking off, nowhere to record): then the function just runs."""
    if not runtime.is_enabled():
        return None
    turn, one_off = target_turn(operation)
    return None if turn is None else _Call(kind, operation, turn, one_off)


def _build(kind: str) -> Callable[..., Any]:
    def decorator(func: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
        def wrap(target: F) -> F:
            operation = name or target.__name__
            if inspect.iscoroutinefunction(target):
                @functools.wraps(target)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    call = _begin(kind, operation)
                    if call is None:
                        return await target(*args, **kwargs)
                    try:
                        result = await target(*args, **kwargs)
                    except BaseException as error:
                        call.done(target, args, kwargs, error=error)
                        raise
                    call.done(target, args, kwargs, result)
                    return result
                return async_wrapper  # type: ignore[return-value]

            @functools.wraps(target)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                call = _begin(kind, operation)
                if call is None:
                    return target(*args, **kwargs)
                try:
                    result = target(*args, **kwargs)
                except BaseException as error:
                    call.done(target, args, kwargs, error=error)
                    raise
                call.done(target, args, kwargs, result)
                return result
            return sync_wrapper  # type: ignore[return-value]

        return wrap(func) if callable(func) else wrap
    decorator.__doc__ = f"``@{kind}`` or ``@{kind}(name=...)``: each call is a ``{kind}`` action of the current turn."
    return decorator


tool = _build(sc.ACTION_KIND_TOOL)
"""``@tool`` / ``@tool(name="fallback_to_human")``: something the agent calls out to."""

task = _build(sc.ACTION_KIND_TASK)
"""``@task`` / ``@task(name=...)``: a unit of the agent's internal work."""
