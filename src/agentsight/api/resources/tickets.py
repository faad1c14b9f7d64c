"""``ags.tickets``: the agent's workflow items, with their discussion threads."""

from __future__ import annotations

from typing import Any

from agentsight.api import params as p
from agentsight.api.pagination import Page, PageIterator
from agentsight.api.resources._base import Resource, pk
from agentsight.exceptions import ValidationError

_UPDATABLE = ("title", "status", "priority", "tags")


class Tickets(Resource):
    """Tickets of the key's agent: read, file, update, delete, comment.

    Writes are authored as the key and are not idempotent (a retried create files a second ticket, a retried
    comment posts twice), so they are sent once.
    """

    def list(self, **filters: Any) -> PageIterator:
        """Tickets matching ``filters``, newest first; a lazy iterator.

        Filters: ``conversation`` (id), ``conversation_id``, ``created_at_after``, ``created_at_before``,
        ``has_conversation``, ``has_feedback``, ``ordering``, ``priority``, ``search``, ``status`` (a list ORs),
        ``tags`` (comma-separated, any), ``updated_at_after``, ``updated_at_before``.
        """
        return self._pages("/api/tickets/", self._filters(filters))

    def page(self, number: int = 1, **filters: Any) -> Page:
        """One page of tickets with its envelope."""
        return self.list(**filters).page(number)

    def get(self, ticket_id: int) -> dict[str, Any]:
        """One ticket, with its conversation and feedback summaries and its ``comments``."""
        return self._request("GET", f"/api/tickets/{pk(ticket_id, 'ticket_id')}/")

    def comments(self, ticket_id: int) -> PageIterator:
        """The ticket's discussion thread, oldest first; a lazy iterator."""
        return self._pages(f"/api/tickets/{pk(ticket_id, 'ticket_id')}/comments/", {})

    def create(self, title: str, *, status: str | None = None, priority: str | None = None,
               tags: list[str] | None = None, environment: str | None = None,
               conversation: int | str | None = None, feedback_id: int | None = None) -> dict[str, Any]:
        """File a ticket, optionally about a conversation (its ``conversation_id`` or id) and a feedback.

        ``status`` defaults to ``open`` and ``environment`` to production, on the API's side.
        """
        if not title or not str(title).strip():
            raise ValidationError("title is required")
        body: dict[str, Any] = {"title": str(title).strip()}
        if status is not None:
            body["status"] = p.choice(status, p.TICKET_STATUSES, what="status")
        if priority is not None:
            body["priority"] = p.choice(priority, p.TICKET_PRIORITIES, what="priority")
        if tags is not None:
            body["tags"] = list(tags)
        if environment is not None:
            body["environment"] = environment
        if conversation is not None:
            body["conversation_id"] = self._client._resolve(conversation)  # the route wants the id here
        if feedback_id is not None:
            body["feedback_id"] = int(feedback_id)
        return self._request("POST", "/api/tickets/", json=body)

    def update(self, ticket_id: int, **fields: Any) -> dict[str, Any]:
        """Change ``title``, ``status``, ``priority`` or ``tags``."""
        body = p.updatable(fields, _UPDATABLE)
        if "status" in body:
            p.choice(body["status"], p.TICKET_STATUSES, what="status")
        if "priority" in body:
            p.choice(body["priority"], p.TICKET_PRIORITIES, what="priority")
        return self._request("PATCH", f"/api/tickets/{pk(ticket_id, 'ticket_id')}/", json=body)

    def delete(self, ticket_id: int) -> dict[str, Any]:
        """Delete a ticket and its thread (closing it keeps the thread: ``update(id, status="closed")``)."""
        return self._request("DELETE", f"/api/tickets/{pk(ticket_id, 'ticket_id')}/")

    def add_comment(self, ticket_id: int, body: str) -> dict[str, Any]:
        """Post to the ticket's thread (recorded with the role ``agent``, authored as the key)."""
        if not body or not str(body).strip():
            raise ValidationError("body is required")
        return self._request("POST", f"/api/tickets/{pk(ticket_id, 'ticket_id')}/comments/",
                             json={"body": str(body)})

    def _filters(self, filters: dict[str, Any]) -> dict[str, Any]:
        if isinstance(filters.get("status"), str):
            p.choice(filters["status"], p.TICKET_STATUSES, what="status")
        if "priority" in filters:
            p.choice(filters["priority"], p.TICKET_PRIORITIES, what="priority")
        return p.build(filters, p.TICKET_FILTERS, what="ticket")
