"""``ags.feedbacks``: feedback on a conversation, a message or the agent; read, create, update, delete."""

from __future__ import annotations

from typing import Any

from agentsight.api import params as p
from agentsight.api.pagination import Page, PageIterator
from agentsight.api.resources._base import Resource, pk
from agentsight.exceptions import ValidationError

_UPDATABLE = ("sentiment", "comment", "topic", "reason")


class Feedbacks(Resource):
    """Feedback is what a person says about the agent: created here (tracking cannot observe it).

    A sentiment is ``positive``, ``neutral`` or ``negative``. A create is not idempotent (a retry files a
    second row), except :meth:`create_for_message`: one vote per message, a repeat updates it.
    """

    def list(self, **filters: Any) -> PageIterator:
        """Feedback matching ``filters``, newest first; a lazy iterator.

        Filters: ``agent``, ``category``, ``comment_contains``, ``conversation`` (id), ``conversation_id``,
        ``created_at_after``, ``created_at_before``, ``environment`` (or ``env``), ``has_comment``,
        ``has_ticket``, ``include_tickets`` (narrows to feedback promoted to a ticket, and includes it),
        ``kind``, ``message``, ``ordering``, ``reason``, ``search``, ``sentiment``, ``ticket_status`` (a list
        ORs), ``topic``, ``user``.
        """
        return self._pages("/api/feedbacks/", self._filters(filters))

    def page(self, number: int = 1, **filters: Any) -> Page:
        """One page with its envelope (``extra["counts"]``: the aggregate counts)."""
        return self.list(**filters).page(number)

    def get(self, feedback_id: int) -> dict[str, Any]:
        """One feedback row, with its ``ticket`` (or ``None``)."""
        return self._request("GET", f"/api/feedbacks/{pk(feedback_id, 'feedback_id')}/")

    def create_for_conversation(self, conversation: int | str, sentiment: str,
                                comment: str | None = None) -> dict[str, Any]:
        """How one conversation went (``conversation``: its ``conversation_id`` or id; no lookup needed)."""
        body: dict[str, Any] = {"kind": "conversation", "sentiment": p.sentiment(sentiment)}
        if isinstance(conversation, str) and conversation.strip():
            body["conversation_id"] = conversation.strip()
        elif isinstance(conversation, int) and not isinstance(conversation, bool):
            body["conversation"] = conversation
        else:
            raise ValidationError("conversation must be a conversation_id string or an integer id")
        if comment:
            body["comment"] = comment
        return self._request("POST", "/api/feedbacks/", json=body)

    def create_for_message(self, message: int, sentiment: str, comment: str | None = None, *,
                           topic: str | None = None, reason: str | None = None) -> dict[str, Any]:
        """A reaction to one message (its integer id), with the application's own ``topic``/``reason`` slugs.

        One vote per message: a repeat updates the stored vote, so this create is safe to retry.
        """
        body: dict[str, Any] = {"kind": "message", "message": pk(message, "message"),
                                "sentiment": p.sentiment(sentiment)}
        body.update({name: value for name, value in
                     (("comment", comment), ("topic", topic), ("reason", reason)) if value})
        return self._request("POST", "/api/feedbacks/", json=body)

    def create_for_agent(self, sentiment: str, comment: str | None = None, *, agent: int | None = None,
                         environment: str | None = None) -> dict[str, Any]:
        """How the agent does overall (``agent`` defaults to the key's, from :meth:`AgentSight.me`)."""
        body: dict[str, Any] = {"kind": "agent",
                                "agent": int(agent) if agent is not None else self._client.me()["agent_id"],
                                "sentiment": p.sentiment(sentiment)}
        if comment:
            body["comment"] = comment
        if environment:
            body["environment"] = environment
        return self._request("POST", "/api/feedbacks/", json=body)

    def update(self, feedback_id: int, **fields: Any) -> dict[str, Any]:
        """Change ``sentiment``, ``comment``, ``topic`` or ``reason`` (the slugs on message feedback only)."""
        body = p.updatable(fields, _UPDATABLE)
        if "sentiment" in body:
            body["sentiment"] = p.sentiment(body["sentiment"])
        return self._request("PATCH", f"/api/feedbacks/{pk(feedback_id, 'feedback_id')}/", json=body)

    def delete(self, feedback_id: int) -> dict[str, Any]:
        """Delete a feedback row."""
        return self._request("DELETE", f"/api/feedbacks/{pk(feedback_id, 'feedback_id')}/")

    def _filters(self, filters: dict[str, Any]) -> dict[str, Any]:
        p.choice(getattr(filters.get("sentiment"), "value", filters.get("sentiment")), p.SENTIMENTS,
                 what="sentiment")
        return p.build(filters, p.FEEDBACK_FILTERS, what="feedback")
