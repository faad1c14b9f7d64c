"""Wire objects: what the translator produces and the delivery client sends (docs/wire.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PATHS = {
    "conversation": "/api/conversations/",
    "question": "/api/track/",
    "answer": "/api/track/",
    "action": "/api/action_logs/",
    "button": "/api/buttons/",
    "attachments": "/api/attachments/",
}


@dataclass(frozen=True)
class FilePart:
    """One file of a multipart (``form_data``) attachments payload."""

    field_name: str
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Payload:
    """One POST to the API.

    ``body`` lacks the ``conversation`` field: it is the server id of the conversation, known only
    once the conversation POST has been answered, and the delivery client adds it. With ``files``
    the body's fields are sent as multipart form fields instead of JSON.
    """

    kind: str
    body: dict[str, Any]
    files: tuple[FilePart, ...] = ()

    @property
    def path(self) -> str:
        """The API path this payload is posted to."""
        return PATHS[self.kind]

    @property
    def timestamp(self) -> str:
        """When the tracked thing happened (ISO 8601)."""
        return self.body["timestamp"]


@dataclass(frozen=True)
class TurnPayloads:
    """Everything one finished conversation span sends: the conversation POST, then its items in order."""

    conversation_id: str
    conversation: Payload
    items: tuple[Payload, ...] = field(default=())

    def all(self) -> tuple[Payload, ...]:
        """The conversation payload followed by the items."""
        return (self.conversation, *self.items)
