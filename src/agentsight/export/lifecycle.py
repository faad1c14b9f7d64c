"""How delivery ends with the process: one drain, at exit, in ``multiprocessing`` children and when uvicorn stops.

:func:`drain` sends the open turns of live trackers (only turns opened in this process: one open across
``os.fork()`` is sent by the process that sends it), hands what the app's OpenTelemetry processors hold for
AgentSight exporters to them (a ``BatchSpanProcessor`` waits up to 5 s), waits for every delivery pipeline
at once (:func:`agentsight.export.shared.settle_all`) and, with time left, flushes the app's whole provider
(its OTLP export is the Collector route's only way out), all within one bound, ``AGENTSIGHT_SHUTDOWN_TIMEOUT``
(25 s by default). It runs:

- at interpreter exit, from one ``atexit`` hook, registered again (so it runs first) when a tracker is made
  after the app set another tracer provider, whose own shutdown hook would otherwise run first and drop what
  the drain forwards to it. gunicorn's workers (sync, gthread) and hypercorn's end this way;
- in a ``multiprocessing`` child, which ends with ``os._exit`` and so without ``atexit``: a
  ``multiprocessing.util.Finalize`` registered in the child (after fork) runs it before that;
- when a uvicorn server running in the main thread has stopped (``uvicorn.Server.shutdown``: its in-flight
  requests done and the lifespan shut down; also under gunicorn's ``UvicornWorker``). uvicorn then restores
  the default SIGTERM handler and raises the signal again, which ends the process without ``atexit``. The
  bound counts from when the server began stopping. The app's signal handlers are left alone.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any, Protocol

import wrapt
from opentelemetry import trace

from agentsight.config import shutdown_timeout
from agentsight.export import shared
from agentsight.export.pipeline import agentsight_processors, app_tracer_provider

logger = logging.getLogger("agentsight.export.lifecycle")


class Drainable(Protocol):
    """What the drain asks of a tracker."""

    def _end_all_open(self) -> None:
        """Send the turns this process opened and has not sent."""


_trackers: weakref.WeakSet[Drainable] = weakref.WeakSet()
_exit_hook_after: weakref.ref[object] | None = None
"""The app's tracer provider when the exit hook was last registered: it runs before that provider's own."""
_hooks_installed = False
_stopped_in: int | None = None
"""The process whose exit drain ran (a forked child's is still to run)."""


def track(tracker: Drainable) -> None:
    """Have the drain send ``tracker``'s open turns; install the process's hooks (the exit hook runs first)."""
    global _exit_hook_after, _hooks_installed
    _trackers.add(tracker)
    provider = trace.get_tracer_provider()
    if _exit_hook_after is None or _exit_hook_after() is not provider:
        _exit_hook_after = weakref.ref(provider)
        atexit.unregister(_at_exit)
        atexit.register(_at_exit)
    if not _hooks_installed:
        _hooks_installed = True
        wrapt.register_post_import_hook(_hook_uvicorn, "uvicorn.server")
        wrapt.register_post_import_hook(_watch_multiprocessing, "multiprocessing.util")


def drain(timeout: float | None = None, stop: bool = False) -> bool:
    """Send open turns and wait for every pipeline, within ``timeout`` seconds (``AGENTSIGHT_SHUTDOWN_TIMEOUT``).

    With ``stop`` the pipelines stop too (what is left then is dropped, counted and logged). Returns whether
    everything was settled (delivered or given up on) in time.
    """
    deadline = time.monotonic() + (shutdown_timeout() if timeout is None else max(0.0, timeout))
    for tracker in list(_trackers):
        try:
            tracker._end_all_open()
        except Exception:  # one tracker's failure must not keep the others' turns from being sent
            logger.exception("AgentSight could not send the open turns of %r", tracker)
    provider = app_tracer_provider()
    if provider is not None:
        for processor in agentsight_processors(provider):
            processor.force_flush(_millis_left(deadline))
    settled = shared.settle_all(max(0.0, deadline - time.monotonic()), stop)
    if not settled and not stop:  # stopping pipelines say so themselves
        queued = sum(delivery.client.stats["payloads_queued"] for delivery in shared.live())
        logger.error("AgentSight could not deliver everything within AGENTSIGHT_SHUTDOWN_TIMEOUT (%.1f s) of the "
                     "server stopping: %d payloads still queued", shutdown_timeout(), queued)
    if provider is not None and time.monotonic() < deadline:
        provider.force_flush(_millis_left(deadline))
    return settled


def _millis_left(deadline: float) -> int:
    return max(0, int((deadline - time.monotonic()) * 1000))


def _at_exit() -> None:
    global _stopped_in
    if _stopped_in != os.getpid():
        _stopped_in = os.getpid()
        drain(stop=True)


# multiprocessing children ----------------------------------------------------------------------


class _Anchor:
    """What multiprocessing's after-fork registry holds (weakly) for this module."""


_ANCHOR = _Anchor()


def _watch_multiprocessing(util: ModuleType) -> None:
    """Have each ``multiprocessing`` child drain before it ends (``os._exit``, after its finalizers)."""
    import multiprocessing

    # Process._bootstrap clears the finalizers it inherited, then runs the after-fork callbacks: register there.
    util.register_after_fork(_ANCHOR, lambda _anchor: util.Finalize(None, _at_exit, exitpriority=0))
    if multiprocessing.parent_process() is not None:  # a spawned or forkserver child importing us now
        util.Finalize(None, _at_exit, exitpriority=0)


# uvicorn ---------------------------------------------------------------------------------------


def _hook_uvicorn(module: ModuleType) -> None:
    wrapt.wrap_function_wrapper(module, "Server.shutdown", _drain_after_shutdown)


def _drain_after_shutdown(
    wrapped: Callable[..., Awaitable[None]], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Awaitable[None]:
    return _shutdown_then_drain(wrapped(*args, **kwargs))


async def _shutdown_then_drain(shutdown: Awaitable[None]) -> None:
    began = time.monotonic()
    try:
        await shutdown
    finally:
        # A server in another thread (an app's embedded server, tests) is not the process stopping.
        if threading.current_thread() is threading.main_thread():
            drain(shutdown_timeout() - (time.monotonic() - began))
