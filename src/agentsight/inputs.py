"""What tracking calls take, checked as upstream ``agentsight`` checks it: conversation fields, messages,
buttons, actions, token counts, metadata and attachments.

Each function raises the upstream exception for bad input and returns what goes on the turn's span.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from agentsight.exceptions import (
    InvalidAttachmentException,
    InvalidConversationDataException,
    MissingConversationIdException,
)
from agentsight.spans import jsonsafe
from agentsight.spans import semconv as sc


def metadata_json(metadata: Any) -> str:
    """``metadata`` as JSON text that round-trips (:mod:`agentsight.spans.jsonsafe`); it must be a dict."""
    if not isinstance(metadata, Mapping):
        raise InvalidConversationDataException(f"metadata must be a dict, got {type(metadata).__name__}")
    return jsonsafe.dumps(metadata)


def conversation_attributes(
    conversation_id: Any,
    customer_id: Any,
    customer_ip_address: Any,
    device: Any,
    source: Any,
    language: Any,
    name: Any,
    environment: Any,
    metadata: Any,
) -> dict[str, Any]:
    """A conversation turn's attributes (``is_used: true``); the given fields must be strings, the id non-blank."""
    if not isinstance(conversation_id, str) or not conversation_id.strip():
        raise MissingConversationIdException()
    values = (customer_id, customer_ip_address, device, source, language, name, environment)
    attributes: dict[str, Any] = {sc.CONVERSATION_ID: conversation_id, sc.IS_USED: True}
    for (field_name, attribute), value in zip(sc.CONVERSATION_FIELDS, values, strict=True):
        if value is not None:
            if not isinstance(value, str):
                raise InvalidConversationDataException(f"{field_name} must be a string, got {type(value).__name__}")
            attributes[attribute] = value
    if metadata is not None:
        attributes[sc.CONVERSATION_METADATA] = metadata_json(metadata)
    return attributes


def message_attributes(content: Any, sender: str, metadata: Any, invalid: type[Exception]) -> dict[str, Any]:
    """A message event's attributes; blank ``content`` raises ``invalid`` (the question's or the answer's)."""
    if not isinstance(content, str) or not content.strip():
        raise invalid(f"Invalid {'question' if sender == sc.SENDER_END_USER else 'answer'} data provided.")
    attributes: dict[str, Any] = {sc.MESSAGE_SENDER: sender, sc.MESSAGE_CONTENT: content}
    if metadata is not None:
        attributes[sc.METADATA] = metadata_json(metadata)
    return attributes


def button_attributes(button_event: Any, label: Any, value: Any) -> dict[str, Any]:
    """A button event's attributes; ``button_event``, ``label`` and ``value`` must be non-blank strings."""
    for field_name, text in (("Button event", button_event), ("Button label", label), ("Button value", value)):
        if not isinstance(text, str) or not text.strip():
            raise InvalidConversationDataException(f"{field_name} cannot be empty")
    return {sc.BUTTON_EVENT_NAME: button_event, sc.BUTTON_LABEL: label, sc.BUTTON_VALUE: value}


def action_attributes(
    action_name: Any,
    started_at: str | datetime | None,
    ended_at: str | datetime | None,
    duration_ms: Any,
    tools_used: dict[str, Any] | None,
    response: Any,
    error_msg: Any,
) -> dict[str, Any]:
    """An action event's attributes (the given ones): a non-blank name, ``duration_ms`` a number if given."""
    if not isinstance(action_name, str) or not action_name.strip():
        raise InvalidConversationDataException("Action name cannot be empty")
    attributes: dict[str, Any] = {sc.ACTION_NAME: action_name}
    given = {
        sc.ACTION_STARTED_AT: started_at.isoformat() if isinstance(started_at, datetime) else started_at,
        sc.ACTION_ENDED_AT: ended_at.isoformat() if isinstance(ended_at, datetime) else ended_at,
        sc.ACTION_DURATION_MS: duration_ms,
        sc.ACTION_TOOLS_USED: None if tools_used is None else jsonsafe.dumps(tools_used),
        sc.ACTION_RESPONSE: None if response is None else str(response),
        sc.ACTION_ERROR_MSG: None if error_msg is None else str(error_msg),
    }
    if duration_ms is not None and (isinstance(duration_ms, bool) or not isinstance(duration_ms, (int, float))):
        raise InvalidConversationDataException("duration_ms must be a number of milliseconds")
    attributes.update((key, value) for key, value in given.items() if value is not None)
    return attributes


def token_usage(
    prompt_tokens: Any, completion_tokens: Any, total_tokens: Any, embedding_tokens: Any
) -> dict[str, int]:
    """The four token counts (``None`` as 0); each must be a non-negative integer."""
    usage = {
        "prompt_tokens": prompt_tokens or 0,
        "completion_tokens": completion_tokens or 0,
        "total_tokens": total_tokens or 0,
        "embedding_tokens": embedding_tokens or 0,
    }
    for key, count in usage.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidConversationDataException(f"{key} must be a non-negative integer, got {count!r}")
    return usage


def attachment_sender(sender: Any) -> str:
    """``end_user`` (the default) or ``agent``, from a string or an enum member."""
    value = getattr(sender, "value", sender) or sc.SENDER_END_USER
    if value not in (sc.SENDER_END_USER, sc.SENDER_AGENT):
        raise InvalidAttachmentException(f"sender must be 'end_user' or 'agent', got {value!r}")
    return value


def normalize_mode(mode: Any) -> str:
    """``base64`` or ``form_data`` (also ``form-data``, any case, an enum member); else ``ValueError`` as upstream."""
    value = str(getattr(mode, "value", mode)).lower().replace("-", "_")
    if value not in ("base64", "form_data"):
        raise ValueError(f"Invalid mode: {mode}. Must be 'base64' or 'form_data'")
    return value


def attachment_files(attachments: Any, mode: Any) -> list[dict[str, str]]:
    """Validate attachments as upstream does; return ``{filename, mime_type, data: base64}`` per file."""
    mode = normalize_mode(mode)
    if not isinstance(attachments, list):
        raise InvalidAttachmentException("Attachments must be provided as a list")
    if not attachments:
        raise InvalidAttachmentException("Attachments list cannot be empty")
    files = []
    for number, attachment in enumerate(attachments, start=1):
        if not isinstance(attachment, Mapping):
            raise InvalidAttachmentException(f"Attachment {number}: Must be a dictionary with required keys")
        if "data" not in attachment:
            raise InvalidAttachmentException(f"Attachment {number} missing required key: 'data'")
        if mode == "base64":
            missing = [key for key in ("filename", "mime_type") if not str(attachment.get(key) or "").strip()]
            if missing:
                raise InvalidAttachmentException(f"Attachment {number} missing required keys: {', '.join(missing)}")
            data = attachment["data"]
            try:
                if not isinstance(data, str):
                    raise ValueError
                base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidAttachmentException(
                    f"Attachment {number} '{attachment['filename']}': 'data' must be a base64 string"
                ) from None
            files.append({"filename": attachment["filename"], "mime_type": attachment["mime_type"], "data": data})
            continue
        raw = attachment["data"]
        if isinstance(raw, str):
            raise InvalidAttachmentException(
                f"Attachment {number}: In form_data mode, 'data' must be bytes or file-like object, not string"
            )
        content = raw.read() if hasattr(raw, "read") else bytes(raw)
        filename = attachment.get("filename")
        mime_type = attachment.get("mime_type") or attachment.get("content_type")
        if not mime_type:
            mime_type = (mimetypes.guess_type(filename)[0] if filename else None) or "application/octet-stream"
        if not filename:
            filename = f"attachment_{number - 1}{mimetypes.guess_extension(mime_type) or '.bin'}"
        files.append({"filename": filename, "mime_type": mime_type, "data": base64.b64encode(content).decode()})
    return files


def attachments_attributes(
    files: list[dict[str, str]], sender: str, mode: Any, metadata: dict[str, Any] | None
) -> dict[str, Any]:
    """The attributes of an attachments event carrying ``files`` (from :func:`attachment_files`)."""
    attributes = {
        sc.ATTACHMENTS_MODE: normalize_mode(mode),
        sc.ATTACHMENTS_SENDER: sender,
        sc.ATTACHMENTS_FILES: jsonsafe.dumps(files),
    }
    if metadata is not None:
        attributes[sc.METADATA] = metadata_json(metadata)
    return attributes
