"""Iterating a generator (sync or async) with a context layered on for each step, and only for each step.

A generator resumes in whoever consumes it, often after the block that made it has exited; this re-applies
the scope (a conversation, a turn) around every step, so what the generator records lands where it belongs,
and nothing leaks into the consumer between steps.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import TypeVar

from opentelemetry import context as otel_context
from opentelemetry.context import Context

T = TypeVar("T")
Layer = Callable[[Context], Context]


def stepped(iterable: Iterable[T], layer: Layer) -> Iterator[T]:
    """Iterate ``iterable``, each step in ``layer(the consumer's context)``; closing this closes the source."""
    source = iter(iterable)
    try:
        while True:
            token = otel_context.attach(layer(otel_context.get_current()))
            try:
                item = next(source)
            except StopIteration:
                return
            finally:
                otel_context.detach(token)
            yield item
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


async def stepped_async(iterable: AsyncIterable[T], layer: Layer) -> AsyncIterator[T]:
    """:func:`stepped` for async iterables."""
    source = iterable.__aiter__()
    try:
        while True:
            token = otel_context.attach(layer(otel_context.get_current()))
            try:
                item = await source.__anext__()
            except StopAsyncIteration:
                return
            finally:
                otel_context.detach(token)
            yield item
    finally:
        close = getattr(source, "aclose", None)
        if close is not None:
            await close()
