"""Warnings about dropped turns that an overload cannot turn into a flood of log lines.

One :class:`DropWarnings` per cause (the queue is full, the exporter is shut down): the first drop is
logged at once, later ones at most once per ``interval`` with the turns and payloads dropped since the
previous line, as upstream 0.1.x's ``_warn_dropped`` does; :meth:`DropWarnings.report` logs what is left
(at shutdown). Every drop is counted in the delivery stats whether or not a line was written.
"""

from __future__ import annotations

import logging
import threading
import time

DROP_WARNING_INTERVAL = 60.0
"""Seconds between two warnings about drops of the same cause."""


class DropWarnings:
    """Rate-limited WARNING lines for turns dropped for one ``cause`` (a phrase: "delivery queue full")."""

    def __init__(self, logger: logging.Logger, cause: str, interval: float = DROP_WARNING_INTERVAL) -> None:
        self._logger = logger
        self._cause = cause
        self._interval = interval
        self._lock = threading.Lock()
        self._next_line = float("-inf")
        self._since = time.monotonic()
        self._turns = self._payloads = 0

    def note(self, payloads: int, conversation_id: str) -> None:
        """Count a dropped turn of ``payloads``; log a line when none was logged for ``interval`` seconds."""
        with self._lock:
            self._turns += 1
            self._payloads += payloads
            now = time.monotonic()
            if now < self._next_line:
                return
            self._next_line = now + self._interval
            turns, payloads, seconds = self._take(now)
        if turns == 1:
            self._logger.warning("AgentSight dropped a turn of %d payloads for conversation %s: %s (further drops "
                                 "for this reason are logged at most once a minute, with counts)",
                                 payloads, conversation_id, self._cause)
        else:
            self._log(turns, payloads, seconds)

    def report(self) -> None:
        """Log the drops not reported yet, if any."""
        with self._lock:
            turns, payloads, seconds = self._take(time.monotonic())
        if turns:
            self._log(turns, payloads, seconds)

    def _take(self, now: float) -> tuple[int, int, float]:
        taken = self._turns, self._payloads, now - self._since
        self._turns = self._payloads = 0
        self._since = now
        return taken

    def _log(self, turns: int, payloads: int, seconds: float) -> None:
        self._logger.warning("AgentSight dropped %d turn(s), %d payloads, in the last %.0f s: %s",
                             turns, payloads, seconds, self._cause)
