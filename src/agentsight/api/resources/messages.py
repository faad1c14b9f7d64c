"""``ags.messages``: one message by id, and the metadata the application attached to it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agentsight.api import params as p
from agentsight.api.resources._base import Resource, pk
from agentsight.exceptions import ValidationError


class Messages(Resource):
    """Messages by their integer id (``conversations.get(...)["messages"][n]["id"]``); no list route exists.

    Content, sender and time are the transcript and stay as tracked; only ``metadata`` is edited here.
    """

    def get(self, message: int) -> dict[str, Any]:
        """One message: content, sender, time, metadata, attachments, action logs and its vote."""
        return self._request("GET", f"/api/track/{pk(message, 'message')}/")

    def update(self, message: int, *, metadata: dict[str, Any]) -> dict[str, Any]:
        """Replace the message's metadata document (keys not sent are gone; see :meth:`update_metadata`)."""
        if not isinstance(metadata, dict):
            raise ValidationError("metadata must be a dict")
        return self._request("PATCH", f"/api/track/{pk(message, 'message')}/", json={"metadata": metadata})

    def update_metadata(self, message: int, metadata: dict[str, Any] | None = None, *,
                        remove: Iterable[str] | None = None) -> dict[str, Any]:
        """Set some metadata keys and ``remove`` others, keeping the rest (read, merge, write: not atomic)."""
        keys = p.check_metadata_change(metadata, remove)
        record = self.get(message)
        if not isinstance(record, dict) or "metadata" not in record:
            raise ValidationError("the API did not return this message's metadata, so there is nothing safe "
                                  "to merge into; use update(metadata=...) to replace it")
        return self.update(message, metadata=p.merged_metadata(record["metadata"], metadata, keys))
