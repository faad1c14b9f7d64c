"""Reading finished spans: the shape both translators read, whether a span was recorded in this
process (an SDK ``ReadableSpan``) or received over OTLP by the bridge (:class:`~agentsight.bridge.otlp.ReceivedSpan`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Protocol

from opentelemetry.trace import SpanContext, SpanKind, Status

from agentsight.spans import semconv as sc


class SpanEventLike(Protocol):
    """The parts of an OTel span event the translators read."""

    name: str
    attributes: Mapping[str, Any] | None
    timestamp: int | None


class SpanLike(Protocol):
    """The parts of an OTel ``ReadableSpan`` the translators read."""

    name: str
    attributes: Mapping[str, Any] | None
    events: Sequence[Any]
    start_time: int | None
    end_time: int | None

    @property
    def context(self) -> SpanContext | None: ...

    @property
    def parent(self) -> SpanContext | None: ...

    @property
    def kind(self) -> SpanKind: ...

    @property
    def status(self) -> Status: ...


def is_conversation_span(span: SpanLike) -> bool:
    """True for spans of the AgentSight span model (and not for the app's other spans)."""
    attributes = span.attributes or {}
    return span.name == sc.CONVERSATION_SPAN and bool(attributes.get(sc.CONVERSATION_ID))


def iso_timestamp(time_ns: int | None) -> str:
    """ISO 8601 UTC text with microseconds and offset, from OTel nanoseconds since the epoch (``None``: now).

    As ``datetime.isoformat()`` writes it: no fraction when the microseconds are 0.
    """
    if time_ns is None:
        return datetime.now(timezone.utc).isoformat()
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    micros = nanos // 1000
    return f"{_utc_second(seconds)}.{micros:06d}+00:00" if micros else f"{_utc_second(seconds)}+00:00"


@lru_cache(maxsize=64)
def _utc_second(seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of a second since the epoch (the times of one turn share a few)."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat()[:-6]


def add_usage(usage: dict[str, int] | None, attributes: Mapping[str, Any]) -> dict[str, int]:
    """``usage`` (``None``: nothing yet) plus the counts of one token usage event."""
    totals = usage or {key: 0 for key, _ in sc.USAGE_FIELDS}
    for key, attribute in sc.USAGE_FIELDS:
        totals[key] += int(attributes.get(attribute, 0) or 0)
    return totals
