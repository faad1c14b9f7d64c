"""What tracking calls take, checked as upstream ``agentsight`` checks it: metadata and attachments.

Each function raises the upstream exception for bad input and returns what goes on the turn's span.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
from collections.abc import Mapping
from typing import Any

from agentsight.exceptions import InvalidAttachmentException, InvalidConversationDataException
from agentsight.spans import jsonsafe
from agentsight.spans import semconv as sc


def metadata_json(metadata: Any) -> str:
    """``metadata`` as JSON text that round-trips (:mod:`agentsight.spans.jsonsafe`); it must be a dict."""
    if not isinstance(metadata, Mapping):
        raise InvalidConversationDataException(f"metadata must be a dict, got {type(metadata).__name__}")
    return jsonsafe.dumps(metadata)


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
