"""When to retry a request to the AgentSight API, and how long to wait: a small pure object.

No sockets, no sleeps: delivery asks it, and tests can ask it directly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from agentsight.config import DeliverySettings

RETRY_AFTER_STATUSES = frozenset({429, 503})
"""Statuses whose ``Retry-After`` header says how long to wait."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with jitter, capped; a server's ``Retry-After`` wins; a time budget per request."""

    initial: float = 0.5
    maximum: float = 30.0
    max_time: float = 300.0

    @classmethod
    def from_settings(cls, settings: DeliverySettings) -> RetryPolicy:
        """The policy of ``settings`` (``backoff_initial``, ``backoff_max``, ``max_retry_time``)."""
        return cls(settings.backoff_initial, settings.backoff_max, settings.max_retry_time)

    @staticmethod
    def is_success(status: int) -> bool:
        """Any 2xx is success."""
        return 200 <= status < 300

    @staticmethod
    def is_retryable(status: int) -> bool:
        """Throttling (429) and server errors (5xx) are retried; other answers are final."""
        return status == 429 or status >= 500 or status < 200

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt + 1`` (``attempt`` counts from 0)."""
        if retry_after is not None:
            return retry_after
        return min(self.maximum, self.initial * 2**attempt) * random.uniform(0.5, 1.0)
