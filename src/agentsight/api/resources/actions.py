"""``ags.actions``: action definitions (the tools and steps of the agent) and their logs."""

from __future__ import annotations

from typing import Any

from agentsight.api import params as p
from agentsight.api.pagination import PageIterator
from agentsight.api.resources._base import Resource, pk
from agentsight.exceptions import ValidationError

_UPDATABLE = ("name", "description", "display_name")


class Actions(Resource):
    """Action definitions: tracking creates one by name on first use; :meth:`create` declares one ahead.

    ``display_name`` and ``description`` are how an action reads on the dashboard (no span carries them). There
    is no delete: every recorded invocation hangs off its definition.
    """

    def create(self, name: str, *, display_name: str | None = None,
               description: str | None = None) -> dict[str, Any]:
        """Declare an action (a name the agent already has is a 400 :class:`ValidationError`)."""
        if not isinstance(name, str) or not name.strip():
            raise ValidationError("name must be a non-empty string")
        body: dict[str, Any] = {"name": name.strip()}
        if display_name is not None:
            body["display_name"] = display_name
        if description is not None:
            body["description"] = description
        return self._request("POST", "/api/actions/", json=body)

    def list(self, **filters: Any) -> PageIterator:
        """Action definitions (filters: ``display_name``, ``name``, ``name__icontains``, ``ordering``,
        ``search``); a lazy iterator."""
        return self._pages("/api/actions/", p.build(filters, p.ACTION_FILTERS, what="action"))

    def get(self, action_id: int) -> dict[str, Any]:
        """One action definition."""
        return self._request("GET", f"/api/actions/{pk(action_id, 'action_id')}/")

    def logs(self, action_id: int) -> list[Any]:
        """Every recorded invocation of the action (one list, not paginated)."""
        return self._request("GET", f"/api/actions/{pk(action_id, 'action_id')}/logs/")

    def update(self, action_id: int, **fields: Any) -> dict[str, Any]:
        """Change ``name``, ``display_name`` or ``description`` (prefer ``display_name``: spans match on
        ``name``)."""
        return self._request("PATCH", f"/api/actions/{pk(action_id, 'action_id')}/",
                             json=p.updatable(fields, _UPDATABLE))
