"""0.0.44's management calls as tracker methods, made with the tracker's key and endpoint.

Each delegates to :func:`agentsight.management.for_tracker`, imported on first use: tracking does not load
the data-plane client.
"""

from __future__ import annotations

from typing import Any


class ManagementCalls:
    """The management methods of :class:`agentsight.ConversationTracker` (a mixin: ``self`` is the tracker)."""

    def submit_feedback(self, conversation_id: int | str, sentiment: Any, comment: str | None = None,
                        metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """Feedback on a conversation (see :meth:`agentsight.management.ConversationManager.submit_feedback`)."""
        return self._managed().submit_feedback(conversation_id, sentiment, comment, metadata)

    def rename_conversation(self, conversation_id: int | str, name: str) -> dict[str, Any]:
        """Rename a conversation (see :class:`agentsight.management.ConversationManager`)."""
        return self._managed().rename_conversation(conversation_id, name)

    def mark_conversation(self, conversation_id: int | str, is_marked: bool) -> dict[str, Any]:
        """Mark or unmark a conversation (see :class:`agentsight.management.ConversationManager`)."""
        return self._managed().mark_conversation(conversation_id, is_marked)

    def delete_conversation(self, conversation_id: int | str) -> dict[str, Any]:
        """Soft-delete a conversation (see :class:`agentsight.management.ConversationManager`)."""
        return self._managed().delete_conversation(conversation_id)

    def update_conversation(self, conversation_id: int | str, **fields: Any) -> dict[str, Any]:
        """Change a conversation's fields (see :class:`agentsight.management.ConversationManager`)."""
        return self._managed().update_conversation(conversation_id, **fields)

    def fetch_conversations(self, **filters: Any) -> dict[str, Any]:
        """One page of conversations (see :class:`agentsight.management.AgentSightAPI`)."""
        return self._managed().fetch_conversations(**filters)

    def fetch_conversation(self, conversation_id: int | str) -> dict[str, Any]:
        """One conversation with its messages (see :class:`agentsight.management.AgentSightAPI`)."""
        return self._managed().fetch_conversation(conversation_id)

    def fetch_conversation_attachments(self, conversation_id: int | str) -> dict[str, Any]:
        """A conversation's attachments (see :class:`agentsight.management.AgentSightAPI`)."""
        return self._managed().fetch_conversation_attachments(conversation_id)

    def _managed(self) -> Any:
        from agentsight.management import for_tracker  # imported on first use: the data plane is not tracking

        return for_tracker(self)  # type: ignore[arg-type]
