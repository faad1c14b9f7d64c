"""``ags.usage``: tokens spent per turn and model, and what they cost."""

from __future__ import annotations

from typing import Any

from agentsight.api import params as p
from agentsight.api.pagination import PageIterator
from agentsight.api.resources._base import Resource


class Usage(Resource):
    """Token usage, read-only (tracking reports tokens; the API prices them: ``cost_source`` says how)."""

    def list(self, **filters: Any) -> PageIterator:
        """One row per (turn, model); a lazy iterator.

        Filters: ``conversation`` (id), ``conversation_id``, ``cost_source``, ``environment``, ``incomplete``,
        ``model``, ``ordering``, ``started_at_after``, ``started_at_before``, ``turn_id``. ``cost_usd`` is a
        decimal string on these rows.
        """
        return self._pages("/api/token-usage/", self._filters(filters))

    def summary(self, group_by: str = "model", *, currency: str = "usd", **filters: Any) -> dict[str, Any]:
        """Usage rolled up by ``model``, ``conversation`` or ``day``, in ``usd`` or ``eur``, over the rows
        :meth:`list` would give for ``filters``: ``{group_by, currency, results}``."""
        query = self._filters(filters)
        query["group_by"] = p.choice(group_by, p.USAGE_GROUP_BY, what="group_by")
        query["currency"] = p.choice(currency, p.USAGE_CURRENCIES, what="currency")
        return self._request("GET", "/api/token-usage/summary/", params=query)

    def _filters(self, filters: dict[str, Any]) -> dict[str, Any]:
        p.choice(filters.get("cost_source"), p.COST_SOURCES, what="cost_source")
        return p.build(filters, p.USAGE_FILTERS, what="usage", rename={})
