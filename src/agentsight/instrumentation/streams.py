"""A client's stream (sync or async) wrapped so its model call ends exactly once, on every path."""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any

import wrapt

from agentsight.instrumentation.genai import ModelCall

logger = logging.getLogger("agentsight.instrumentation")


class StreamWrapper(wrapt.ObjectProxy):  # type: ignore[misc]
    """Wraps a client's stream (sync or async) so its model call ends exactly once, on every path.

    The stream is exhausted, raises mid-way (recorded as the call's error), is closed (``close()``,
    ``aclose()``, leaving ``with`` / ``async with``, including on ``break``) or is dropped unfinished and
    collected. ``on_chunk`` sees each item; ``on_end`` records what the chunks added up to, just before
    the span ends. No context is attached while iterating. The stream is iterated as ``for`` would
    (``iter()`` / ``aiter()`` of it, once): another instrumentation's proxy may be iterable without being
    an iterator, and its own ``__iter__`` is what keeps its bookkeeping.
    """

    def __init__(
        self, stream: Any, call: ModelCall, on_chunk: Callable[[Any], None], on_end: Callable[[], None]
    ) -> None:
        super().__init__(stream)
        self._self_call = call
        self._self_on_chunk = on_chunk
        self._self_on_end = on_end
        self._self_done = False
        self._self_lock = threading.Lock()
        self._self_iterator: Any = None

    def _self_finish(self, error: BaseException | None = None) -> None:
        with self._self_lock:
            if self._self_done:
                return
            self._self_done = True
        try:
            self._self_on_end()
        except Exception:  # our bookkeeping must never break the app's iteration
            logger.exception("AgentSight could not describe a finished stream")
        if error is None:
            self._self_call.end()
        else:
            self._self_call.fail(error)

    def _self_item(self, item: Any) -> Any:
        try:
            self._self_on_chunk(item)
        except Exception:  # our bookkeeping must never break the app's iteration
            logger.exception("AgentSight could not read a stream chunk")
        return item

    def __iter__(self) -> StreamWrapper:
        return self

    def __next__(self) -> Any:
        try:
            if self._self_iterator is None:
                self._self_iterator = iter(self.__wrapped__)
            item = next(self._self_iterator)
        except StopIteration:
            self._self_finish()
            raise
        except Exception as error:
            self._self_finish(error)
            raise
        return self._self_item(item)

    def __aiter__(self) -> StreamWrapper:
        return self

    async def __anext__(self) -> Any:
        try:
            if self._self_iterator is None:
                self._self_iterator = aiter(self.__wrapped__)
            item = await anext(self._self_iterator)
        except StopAsyncIteration:
            self._self_finish()
            raise
        except Exception as error:
            self._self_finish(error)
            raise
        return self._self_item(item)

    def __enter__(self) -> StreamWrapper:
        entered = self.__wrapped__.__enter__()
        if entered is not self.__wrapped__:
            self.__wrapped__ = entered
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, traceback: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(exc_type, exc, traceback)
        finally:
            self._self_finish(exc if isinstance(exc, Exception) else None)

    async def __aenter__(self) -> StreamWrapper:
        entered = await self.__wrapped__.__aenter__()
        if entered is not self.__wrapped__:
            self.__wrapped__ = entered
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, traceback: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(exc_type, exc, traceback)
        finally:
            self._self_finish(exc if isinstance(exc, Exception) else None)

    def close(self) -> Any:
        """Close the stream and end the call (an async stream's ``close()`` is awaitable, and so is this)."""
        try:
            result = self.__wrapped__.close()
        except BaseException:
            self._self_finish()
            raise
        if inspect.isawaitable(result):
            return self._self_finish_after(result)
        self._self_finish()
        return result

    async def _self_finish_after(self, closing: Any) -> Any:
        try:
            return await closing
        finally:
            self._self_finish()

    async def aclose(self) -> None:
        """Close the stream and end the call."""
        try:
            await self.__wrapped__.aclose()
        finally:
            self._self_finish()

    def __del__(self) -> None:
        try:
            self._self_finish()
        except Exception:  # noqa: S110 - a finalizer must not raise; the span is only left unended
            pass
