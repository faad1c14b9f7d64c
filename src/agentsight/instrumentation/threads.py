"""Turns follow the work into threads: ``ThreadPoolExecutor.submit`` (so ``loop.run_in_executor``) and
``threading.Thread.start`` (so ``threading.Timer`` and frameworks' worker threads) carry the OTel context
of a turn to the code they run, as ``opentelemetry-instrumentation-threading`` does.

Our own rather than a dependency on that package: it pins ``opentelemetry-instrumentation`` to its exact
release (installing it would move the app's OTel packages), and it gives each worker thread a
``ThreadPoolExecutor`` starts the context of the task that started it, for the thread's whole life. Here

- only a context with an open turn is carried (outside turns, threads behave as they always did);
- a submitted task runs in its submitter's context, attached for the task and detached after it, so a
  worker runs later work in that work's own context, never in a turn some earlier task belonged to;
- the worker threads a pool starts inside ``submit`` carry nothing (their tasks carry their own);
- a thread started inside a turn runs in it (``run()``, also a subclass's own) and drops it when done.

The two coexist: both carry the same context. ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=agentsight_threading``
keeps trackers from applying it; ``ThreadContextInstrumentor().uninstrument()`` removes it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from concurrent import futures
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from agentsight.instrumentation import _disabled
from agentsight.spans.turn import open_turns

NAME = "agentsight_threading"
"""Its name in ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``."""

_SUBMITTING = otel_context.create_key("agentsight.submitting")
"""Set while a pool's own ``submit`` runs: a worker thread it starts there carries no context."""

R = TypeVar("R")


class ThreadContextInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Carries the OTel context of an open turn into pool tasks and new threads (see the module)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """The standard library only."""
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        wrap_function_wrapper(threading.Thread, "start", _start)
        wrap_function_wrapper(futures.ThreadPoolExecutor, "submit", _submit)

    def _uninstrument(self, **kwargs: Any) -> None:
        unwrap(threading.Thread, "start")
        unwrap(futures.ThreadPoolExecutor, "submit")


def follow_turns_into_threads() -> None:
    """Apply :class:`ThreadContextInstrumentor` once, unless ``agentsight_threading`` is disabled."""
    if NAME not in _disabled():
        ThreadContextInstrumentor().instrument()


def _carried() -> Context | None:
    """The calling context when work started now should run in it: a turn is open in it."""
    if otel_context.get_value(_SUBMITTING) or not open_turns():
        return None
    return otel_context.get_current()


def _in_context(ctx: Context, function: Callable[..., R]) -> Callable[..., R]:
    def run_in_context(*args: Any, **kwargs: Any) -> R:
        token = otel_context.attach(ctx)
        try:
            return function(*args, **kwargs)
        finally:
            otel_context.detach(token)

    return run_in_context


def _submit(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    ctx = _carried()
    if ctx is None or not args:
        return wrapped(*args, **kwargs)
    token = otel_context.attach(otel_context.set_value(_SUBMITTING, True))
    try:
        return wrapped(_in_context(ctx, args[0]), *args[1:], **kwargs)
    finally:
        otel_context.detach(token)


def _start(wrapped: Callable[..., Any], instance: threading.Thread, args: tuple[Any, ...],
           kwargs: dict[str, Any]) -> Any:
    ctx = _carried()
    if ctx is None:
        return wrapped(*args, **kwargs)
    run = _in_context(ctx, instance.run)

    def run_then_forget() -> None:
        try:
            run()
        finally:
            vars(instance).pop("run", None)  # the thread object no longer holds the turn

    instance.run = run_then_forget  # type: ignore[method-assign]
    try:
        return wrapped(*args, **kwargs)
    except BaseException:
        vars(instance).pop("run", None)
        raise
