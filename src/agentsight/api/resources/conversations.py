"""``ags.conversations``: list, read, rename, mark, update and (soft) delete tracked conversations."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agentsight.api import params as p
from agentsight.api.pagination import PageIterator
from agentsight.api.resources._base import Resource
from agentsight.exceptions import ValidationError

_MAX_NAME = 255
_UPDATABLE = ("name", "is_marked", "customer_id", "device", "language", "metadata")


class Conversations(Resource):
    """Conversations of the key's agent. A conversation argument is the id or the ``conversation_id`` string.

    Writes need a key with the ``write`` role (else :class:`~agentsight.exceptions.PermissionDeniedError`).
    """

    def list(self, **filters: Any) -> PageIterator:
        """Conversations matching ``filters``, without transcripts (``?full=false``); a lazy iterator.

        Filters: ``action_name``, ``conversation_id``, ``customer_id``, ``customer_id__icontains``,
        ``customer_ip_address``, ``device``, ``environment`` (or ``env``), ``feedback_sentiment``, ``has_action``,
        ``has_feedback``, ``has_messages``, ``include_deleted``, ``include_tickets`` (narrows to conversations
        with tickets, and includes them), ``is_marked``, ``language``, ``message_contains``, ``metadata``,
        ``metadata_key``, ``metadata_value``, ``name``, ``ordering``, ``search``, ``started_at_after``,
        ``started_at_before``. Another name raises :class:`ValidationError` before anything is sent.
        """
        return self._list(filters, full=False)

    def list_full(self, **filters: Any) -> PageIterator:
        """As :meth:`list`, each conversation with its transcript (``?full=true``)."""
        return self._list(filters, full=True)

    def get(self, conversation: int | str, *, full: bool = True) -> dict[str, Any]:
        """One conversation: messages, attachments, action logs, feedbacks, tickets, ``token_usage``
        (``full=False``: its fields only)."""
        record = self._request("GET", f"/api/conversations/{self._client._resolve(conversation)}/",
                               params={"full": "true" if full else "false"})
        self._client.remember(record)
        return record

    def attachments(self, conversation: int | str) -> dict[str, Any]:
        """The conversation's attachments, by message, with download URLs."""
        return self._request("GET", f"/api/conversations/{self._client._resolve(conversation)}/attachments/")

    def metadata_keys(self) -> list[Any]:
        """Every conversation-metadata key the agent has recorded."""
        return self._request("GET", "/api/conversations/metadata-keys/")

    def metadata_values(self, key: str) -> list[Any]:
        """Every value recorded for conversation-metadata ``key``."""
        if not key:
            raise ValidationError("metadata_values() needs a key")
        return self._request("GET", "/api/conversations/metadata-values/", params={"key": key})

    def message_metadata_keys(self) -> list[Any]:
        """Every message-metadata key the agent has recorded."""
        return self._request("GET", "/api/conversations/message-metadata-keys/")

    def resolve(self, conversation: int | str) -> int:
        """The integer id of a ``conversation_id`` (an id is returned as is)."""
        return self._client._resolve(conversation)

    def rename(self, conversation: int | str, name: str) -> dict[str, Any]:
        """Set the conversation's display name (at most 255 characters, stripped)."""
        checked = _name(name)
        return self._request("PATCH", f"/api/conversations/{self._client._resolve(conversation)}/rename/",
                             json={"name": checked})

    def mark(self, conversation: int | str, is_marked: bool = True) -> dict[str, Any]:
        """Flag (or with ``is_marked=False`` unflag) the conversation."""
        return self._request("POST", f"/api/conversations/{self._client._resolve(conversation)}/mark/",
                             json={"is_marked": bool(is_marked)})

    def update(self, conversation: int | str, **fields: Any) -> dict[str, Any]:
        """Change ``name``, ``is_marked``, ``customer_id``, ``device``, ``language`` and/or ``metadata``
        (which replaces the whole document; see :meth:`update_metadata`)."""
        payload: dict[str, Any] = {}
        for key, value in p.updatable(fields, _UPDATABLE).items():
            if key == "name":
                payload[key] = _name(value)
            elif key == "is_marked":
                payload[key] = bool(value)
            elif key == "metadata":
                if not isinstance(value, dict):
                    raise ValidationError("metadata must be a dict")
                payload[key] = value
            else:
                payload[key] = str(value)
        return self._request("PATCH", f"/api/conversations/{self._client._resolve(conversation)}/update/",
                             json=payload)

    def update_metadata(self, conversation: int | str, metadata: dict[str, Any] | None = None, *,
                        remove: Iterable[str] | None = None) -> dict[str, Any]:
        """Set some metadata keys and ``remove`` others, keeping the rest: reads the stored document, merges
        (shallow; no value filtered), writes it back. Two requests, not atomic."""
        keys = p.check_metadata_change(metadata, remove)
        record = self.get(conversation, full=False)
        if not isinstance(record, dict) or "metadata" not in record:
            raise ValidationError("the API did not return this conversation's metadata, so there is nothing "
                                  "safe to merge into; use update(metadata=...) to replace it")
        return self.update(conversation, metadata=p.merged_metadata(record["metadata"], metadata, keys))

    def delete(self, conversation: int | str) -> dict[str, Any]:
        """Soft-delete the conversation (the only delete there is; ``list(include_deleted=True)`` still finds it)."""
        response = self._request("DELETE", f"/api/conversations/{self._client._resolve(conversation)}/delete/")
        self._client.forget(conversation)
        return response

    def _list(self, filters: dict[str, Any], *, full: bool) -> PageIterator:
        p.choice(filters.get("feedback_sentiment"), p.SENTIMENTS, what="feedback_sentiment")
        query = p.build(filters, p.CONVERSATION_FILTERS, what="conversation")
        query["full"] = "true" if full else "false"

        def seen(body: Any) -> None:
            for record in (body.get("results") if isinstance(body, dict) else body) or []:
                self._client.remember(record)

        return self._pages("/api/conversations/", query, seen)


def _name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("name must be a non-empty string")
    if len(name) > _MAX_NAME:
        raise ValidationError(f"name cannot exceed {_MAX_NAME} characters (got {len(name)})")
    return name.strip()
