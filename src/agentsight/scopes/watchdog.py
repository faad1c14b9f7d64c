"""The deadline of turns whose lifetime was handed to something else (``wrap()``, ``keep_open()``).

One daemon thread serves every deadline (started on first use, gone when idle). A deadline that passes
calls its callback with ``True``; :func:`fire_all` (at ``shutdown()``) calls every pending one with
``False`` at once, so turns in flight end, marked ``shutdown``, while the pipeline can still send them.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

Callback = Callable[[bool], None]
logger = logging.getLogger("agentsight")

_condition = threading.Condition()
_heap: list[tuple[float, int, Callback]] = []
_cancelled: set[int] = set()
_handles = itertools.count()
_thread: threading.Thread | None = None


def arm(delay_seconds: float, callback: Callback) -> int:
    """Call ``callback(True)`` in ``delay_seconds`` unless :func:`cancel` is called first; returns the handle."""
    global _thread
    with _condition:
        handle = next(_handles)
        heapq.heappush(_heap, (time.monotonic() + delay_seconds, handle, callback))
        if _thread is None:
            _thread = threading.Thread(target=_run, name="agentsight-watchdog", daemon=True)
            _thread.start()
        _condition.notify()
    return handle


def cancel(handle: int) -> None:
    """The deadline ``handle`` will not fire."""
    with _condition:
        _cancelled.add(handle)


def fire_all() -> None:
    """Call every pending callback now with ``False`` (the process is leaving, no deadline passed)."""
    with _condition:
        pending = [callback for _, handle, callback in _heap if handle not in _cancelled]
        _heap.clear()
        _cancelled.clear()
    for callback in pending:
        callback(False)


def _run() -> None:
    global _thread
    while True:
        with _condition:
            while not _heap or _heap[0][0] > time.monotonic():
                if not _heap and not _condition.wait(30.0) and not _heap:
                    _thread = None  # idle: the next arm() starts another
                    return
                if _heap:
                    _condition.wait(max(0.0, _heap[0][0] - time.monotonic()))
            _, handle, callback = heapq.heappop(_heap)
            if handle in _cancelled:
                _cancelled.discard(handle)
                continue
        try:
            callback(True)
        except Exception:  # a turn that cannot end must not stop the other deadlines
            logger.debug("AgentSight turn deadline callback failed", exc_info=True)
