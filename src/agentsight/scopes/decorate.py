"""``agentsight.turn(...)``: a turn as a context manager, or one turn per call of a decorated function.

Decorated sync and async functions are one turn per call; a function that returns a stream (a generator,
an async generator, a response with a ``body_iterator``, a future) hands the turn to it (:meth:`TurnScope.wrap`),
so generator functions are one turn per generator, ended when it is exhausted, closed or fails.
``id_from`` (a parameter name or a callable of the bound arguments) and conversation keyword arguments open
a conversation for the call when none is current; ``infer=True`` records the first string argument as the
user's message and the return value as the agent's.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any

from agentsight.scopes import runtime
from agentsight.scopes.conversation import ConversationScope, current_conversation
from agentsight.scopes.turn import TurnScope

logger = logging.getLogger("agentsight")


@functools.lru_cache(maxsize=1024)
def _signature(func: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(func)


def bound_arguments(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments by parameter name, defaults included (``arg0``... when there is no signature)."""
    try:
        bound = _signature(func).bind_partial(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)
    except (TypeError, ValueError):
        return {**{f"arg{index}": value for index, value in enumerate(args)}, **kwargs}


class _TurnSpec:
    def __init__(self, name: str | None, id_from: Any, infer: bool, conversation_kwargs: dict[str, Any]) -> None:
        self.name = name
        self.id_from = id_from
        self.infer = infer
        self.conversation_kwargs = conversation_kwargs

    def conversation_for(self, arguments: dict[str, Any]) -> ConversationScope | None:
        """A conversation for this call, when the decorator says which and none is current."""
        conversation_id = None
        if callable(self.id_from):
            try:
                conversation_id = self.id_from(arguments)
            except Exception as error:  # noqa: BLE001 - never fail the app's call
                logger.warning("AgentSight: id_from callable failed: %s", error)
        elif self.id_from is not None and arguments.get(self.id_from) is not None:
            conversation_id = str(arguments[self.id_from])
        if conversation_id is None and (not self.conversation_kwargs or current_conversation() is not None):
            return None
        return ConversationScope(conversation_id, **self.conversation_kwargs).__enter__()

    def record_input(self, scope: TurnScope, arguments: dict[str, Any]) -> None:
        if self.infer:
            skip = self.id_from if isinstance(self.id_from, str) else None
            text = next((value for key, value in arguments.items()
                         if key != skip and isinstance(value, str) and value.strip()), None)
            if text:
                scope.user_message(text)


def _streaming(result: Any) -> bool:
    return (hasattr(result, "body_iterator") or inspect.isgenerator(result) or inspect.isasyncgen(result)
            or hasattr(result, "add_done_callback"))


def _decorate(func: Callable[..., Any], spec: _TurnSpec) -> Callable[..., Any]:
    def begin(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[ConversationScope | None, TurnScope]:
        arguments = bound_arguments(func, args, kwargs) if spec.id_from or spec.infer else {}
        conversation = spec.conversation_for(arguments) if spec.id_from or spec.conversation_kwargs else None
        scope = TurnScope(spec.name or func.__name__).start()
        spec.record_input(scope, arguments)
        return conversation, scope

    def end(conversation: ConversationScope | None, scope: TurnScope, result: Any) -> Any:
        if _streaming(result):
            result = scope.wrap(result)
            scope.detach()
        else:
            if spec.infer and result is not None:
                scope.agent_message(result)
            scope.finish()
        if conversation is not None:
            conversation.__exit__(None, None, None)
        return result

    def failed(conversation: ConversationScope | None, scope: TurnScope, error: BaseException) -> None:
        scope.fail(error)
        if conversation is not None:
            conversation.__exit__(None, None, None)

    if inspect.iscoroutinefunction(func):
        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            if not runtime.is_enabled():
                return await func(*args, **kwargs)
            conversation, scope = begin(args, kwargs)
            try:
                result = await func(*args, **kwargs)
            except BaseException as error:
                failed(conversation, scope, error)
                raise
            return end(conversation, scope, result)
        return async_wrapper

    @functools.wraps(func)
    def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
        if not runtime.is_enabled():
            return func(*args, **kwargs)
        conversation, scope = begin(args, kwargs)
        try:
            result = func(*args, **kwargs)
        except BaseException as error:
            failed(conversation, scope, error)
            raise
        return end(conversation, scope, result)
    return sync_wrapper


class TurnFactory:
    """What ``turn(...)`` returns: ``with`` (sync or async; nestable, reusable) or ``@``."""

    def __init__(self, spec: _TurnSpec) -> None:
        self._spec = spec
        self._scopes: list[TurnScope] = []
        self._lock = threading.Lock()

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        return _decorate(func, self._spec)

    def __enter__(self) -> TurnScope:
        scope = TurnScope(self._spec.name).start()
        with self._lock:
            self._scopes.append(scope)
        return scope

    def __exit__(self, exc_type: type[BaseException] | None, error: BaseException | None, tb: object) -> bool:
        with self._lock:
            scope = self._scopes.pop() if self._scopes else None
        if scope is not None:
            scope.__exit__(exc_type, error, tb)
        return False

    async def __aenter__(self) -> TurnScope:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, error: BaseException | None, tb: object) -> bool:
        return self.__exit__(exc_type, error, tb)


def turn(
    func: Callable[..., Any] | str | None = None,
    *,
    name: str | None = None,
    id_from: str | Callable[[dict[str, Any]], str | None] | None = None,
    infer: bool = False,
    **conversation_kwargs: Any,
) -> Any:
    """One exchange: ``with agentsight.turn("ask"):``, ``@agentsight.turn`` or ``@agentsight.turn(id_from="sid")``.

    Its duration is the answer's latency; messages, tools, tasks, buttons and model calls inside belong to it.
    """
    if isinstance(func, str):
        name, func = name or func, None
    spec = _TurnSpec(name, id_from, infer, conversation_kwargs)
    return _decorate(func, spec) if callable(func) else TurnFactory(spec)

