"""``ags.spans``: the recorded spans, one by one or as whole traces."""

from __future__ import annotations

from typing import Any

from agentsight.api import params as p
from agentsight.api.pagination import PageIterator
from agentsight.api.resources._base import Resource
from agentsight.exceptions import ValidationError


class Spans(Resource):
    """The spans as stored: ``list`` (never with ``payload``), ``get`` one (optionally with the verbatim span),
    ``trace`` (a whole trace nested by parent)."""

    def list(self, **filters: Any) -> PageIterator:
        """Spans matching ``filters``, newest first; a lazy iterator.

        Filters: ``conversation`` (id), ``conversation_id``, ``environment``, ``kind``, ``name``, ``ordering``,
        ``parent_span_id``, ``span_id``, ``started_at_after``, ``started_at_before``, ``status``, ``trace_id``.
        """
        query = p.build(filters, p.SPAN_FILTERS, what="span", rename={})
        query["payload"] = "false"
        return self._pages("/api/spans/", query)

    def get(self, span: int, *, payload: bool = False) -> dict[str, Any]:
        """One span by its row ``id`` (not its hex ``span_id``); ``payload=True`` adds the verbatim span."""
        if isinstance(span, bool) or not isinstance(span, int):
            raise ValidationError(f"get() needs a span's row id (its `id`), got {span!r}")
        return self._request("GET", f"/api/spans/{span}/", params={"payload": "true" if payload else "false"})

    def trace(self, trace_id: str) -> dict[str, Any]:
        """``{trace_id, span_count, truncated, roots}``: each node a span with its ``children``."""
        if not trace_id:
            raise ValidationError("trace() needs a trace_id")
        return self._request("GET", f"/api/traces/{trace_id}/")
