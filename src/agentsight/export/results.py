"""What delivery reports: a payload's :class:`ItemResult`, the :class:`DeliveryStats` counters, a flush's
:class:`FlushResult`; and what it handles: a :class:`PendingTurn`, a request's final :class:`Answer`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from agentsight.export.transport import HttpResponse

Outcome = Literal["delivered", "rejected", "expired", "without_conversation"]


@dataclass
class ItemResult:
    """The outcome of one payload (REST) or span (ingest)."""

    conversation_id: str
    type: str
    timestamp: str
    success: bool
    status: int | None = None
    response: Any = None
    error: str | None = None
    outcome: Outcome = "delivered"


@dataclass
class DeliveryStats:
    """Counters of everything the client did; read them with :attr:`DeliveryClient.stats`.

    A payload is one REST request, or one span of an ingest document.
    """

    turns_submitted: int = 0
    payloads_submitted: int = 0
    payloads_delivered: int = 0
    payloads_rejected: int = 0
    payloads_expired: int = 0
    payloads_dropped_queue_full: int = 0
    payloads_dropped_at_shutdown: int = 0
    """Still queued when a shutdown's drain time ran out."""
    payloads_dropped_after_shutdown: int = 0
    """Tracked after shutdown: never queued."""
    payloads_without_conversation: int = 0
    """Items not sent because their conversation POST was rejected or given up on."""
    http_requests: int = 0
    retries: int = 0


@dataclass
class FlushResult:
    """What :meth:`DeliveryClient.flush` saw since the previous flush.

    ``complete``: everything submitted was settled (delivered or given up on) within the time-out; it says
    nothing of success. ``items``: each settled payload's result. ``dropped``: payloads never queued (queue
    full, tracked after shutdown). :attr:`delivered` is the one-word answer: settled and nothing failed.
    """

    complete: bool
    items: list[ItemResult] = field(default_factory=list)
    dropped: int = 0

    @property
    def summary(self) -> dict[str, int]:
        """Counts of delivered and failed payloads among ``items``."""
        delivered = sum(1 for item in self.items if item.success)
        return {"delivered": delivered, "failed": len(self.items) - delivered}

    @property
    def failed(self) -> int:
        """Payloads that were not delivered: failed ``items`` and ``dropped`` ones."""
        return self.summary["failed"] + self.dropped

    @property
    def delivered(self) -> bool:
        """True when everything was settled in time and nothing failed or was dropped."""
        return self.complete and self.failed == 0

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict form, shaped like the upstream SDK's results, with ``delivered``, ``failed``, ``dropped``."""
        return {
            "complete": self.complete,
            "delivered": self.delivered,
            "failed": self.failed,
            "dropped": self.dropped,
            "items": [asdict(item) for item in self.items],
            "summary": self.summary,
        }


@dataclass(frozen=True)
class PendingTurn:
    """A turn waiting for delivery: ``build`` translates it on a delivery thread, not the caller's.

    ``payload_count`` and ``size`` (bytes, estimated) count against the queue limits. ``settled``, when
    given, is called once delivery is done with the turn, with the worst outcome of its payloads
    (``delivered`` only when all were); never for a turn dropped (not queued, or left at shutdown).
    """

    conversation_id: str
    payload_count: int
    size: int
    build: Callable[[], Any]
    settled: Callable[[str], None] | None = None


@dataclass(frozen=True)
class Answer:
    """How a request ended after its retries: the last response (``None`` when none came) or why not."""

    response: HttpResponse | None
    error: str | None = None

    @property
    def success(self) -> bool:
        """True when the API accepted the request."""
        return self.response is not None and self.error is None
