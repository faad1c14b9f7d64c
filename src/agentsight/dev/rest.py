"""The docs/wire.md REST payloads as ``agentsight dev`` reads them: body decoding and DRF-style validation.

Each check answers what the AgentSight API answers (Django REST framework shapes: ``{"field": ["msg"]}``
or ``{"detail": "msg"}``), raised as :class:`ApiError`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from agentsight.config import ENVIRONMENTS
from agentsight.dev.store import DevStore, utc_iso
from agentsight.export.payloads import PATHS

Files = dict[str, tuple[str, str, bytes]]
"""Multipart files: field name → ``(filename, content type, bytes)``."""

REQUIRED_FIELDS = {
    PATHS["conversation"]: ("conversation_id",),
    PATHS["question"]: ("content", "sender", "conversation"),
    PATHS["action"]: ("action_name", "conversation"),
    PATHS["button"]: ("button_event", "label", "value", "conversation"),
    PATHS["attachments"]: ("conversation", "mode"),
}
"""Fields each posted path requires (non-empty)."""

ITEM_KINDS = {
    PATHS["question"]: "message",
    PATHS["action"]: "action",
    PATHS["button"]: "button",
    PATHS["attachments"]: "attachments",
}
"""Item path → the store's item kind."""

ITEM_FIELDS = {
    "message": ("content", "sender"),
    "action": ("action_name", "started_at", "ended_at", "duration_ms", "tools_used", "response", "error_msg"),
    "button": ("button_event", "label", "value"),
    "attachments": ("sender", "mode"),
}
"""Body fields kept for each item kind (besides ``conversation_id`` and ``metadata``)."""

CHOICES = {
    "environment": ENVIRONMENTS,
    "sender": ("end_user", "agent"),
    "mode": ("base64", "form_data"),
}

TEXT_FIELDS = ("conversation_id", "customer_id", "customer_ip_address", "device", "source", "language", "name",
               "content", "action_name", "button_event", "label", "value", "started_at", "ended_at", "response",
               "error_msg")
"""Fields that are text (numbers become text, as DRF's ``CharField`` does)."""

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
"""A ``\\uD800``-``\\uDFFF`` escape: the decoded value may hold a lone surrogate (a pair is one character)."""

_PRIMARY_KEY = re.compile(r"[0-9]{1,19}")

REQUIRED = "This field is required."
TOKEN_USAGE_ACTION = "token_usage"
REST_TOKEN_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens", "embedding_tokens")
"""Token counts a ``token_usage`` action carries in its metadata (prompt = input, completion = output)."""
MAX_COUNT = 2**40
"""Counts (tokens, file sizes) above this, or not numbers, count as 0: nonsense, and SQLite sums must not
overflow."""


class ApiError(Exception):
    """An answer other than success: ``status``, its DRF-style JSON body and extra ``headers``."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = headers


def field_error(name: str, message: str) -> ApiError:
    """A 400 naming one field."""
    return ApiError(400, {name: [message]})


def invalid_pk(pk: int) -> ApiError:
    """The 400 of a ``conversation`` pk that does not exist, worded as Django REST framework words it."""
    return field_error("conversation", f'Invalid pk "{pk}" - object does not exist.')


def check_reference(store: DevStore, clean: dict[str, Any]) -> None:
    """Refuse (:func:`invalid_pk`) an item whose ``conversation`` pk is not the conversation its
    ``conversation_id`` names: an SDK holding a server id from before the database was reset must not file
    its items under whichever conversation has that id now. Without a ``conversation_id`` (multipart
    attachments), the pk only has to exist, which the store checks as it adds the item."""
    conversation_id = clean.get("conversation_id")
    if conversation_id is None:
        return
    found = store.find_conversation(conversation_id)
    if found is None or found["id"] != clean["conversation"]:
        raise invalid_pk(clean["conversation"])


def load_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8 text, finite numbers only (``NaN``, ``Infinity`` and ``1e400`` are refused: nothing
    stored could then be written back as JSON), strings without lone surrogates (``"\\ud800"``: not text that
    UTF-8, SQLite or an answer can hold). Raises ``ValueError``."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not valid JSON")

    def finite(text: str) -> float:
        number = float(text)
        if not math.isfinite(number):
            raise ValueError(f"number {text[:32]} is out of range")
        return number

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    try:
        value = json.loads(text, parse_constant=refuse, parse_float=finite)
        if _SURROGATE_ESCAPE.search(text):
            json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a string holds a lone surrogate (an unpaired \\ud800-\\udfff escape)") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    return value


def decode_body(content_type: str, raw: bytes) -> tuple[dict[str, Any], Files]:
    """A JSON object body, or a multipart body's text fields and files. Raises ``ValueError``."""
    if content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
        if not message.is_multipart():
            raise ValueError("invalid multipart body")
        fields: dict[str, Any] = {}
        files: Files = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str):
                continue
            filename = part.get_filename()
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
            if filename is not None:
                files[name] = (filename, part.get_content_type(), data)
            else:
                fields[name] = data.decode("utf-8", errors="replace")
        return fields, files
    body = load_json(raw or b"{}")
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")
    return body, {}


def validated(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` checked the way the API does (required fields, choices, types), with normalized values."""
    missing = {name: [REQUIRED] for name in REQUIRED_FIELDS[path] if body.get(name) in (None, "")}
    if missing:
        raise ApiError(400, missing)
    clean = dict(body)
    for name, allowed in CHOICES.items():
        value = clean.get(name)
        if value is not None and value not in allowed:
            raise field_error(name, f'"{value}" is not a valid choice.')
    if clean.get("timestamp") not in (None, ""):
        try:
            utc_iso(str(clean["timestamp"]))
        except ValueError:
            raise field_error("timestamp", "Datetime has wrong format. Use one of these formats instead: "
                                           "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].") from None
    else:
        clean["timestamp"] = None
    for name in TEXT_FIELDS:
        if name in clean:
            clean[name] = text(clean[name], name)
    if clean.get("duration_ms") is not None:
        clean["duration_ms"] = _number(clean["duration_ms"], "duration_ms")
    clean["metadata"] = _json_field(clean, "metadata")
    if "is_used" in clean:
        clean["is_used"] = boolean(clean["is_used"], "is_used")
    if path != PATHS["conversation"]:
        clean["conversation"] = _primary_key(clean["conversation"])
    return clean


def item(kind: str, clean: dict[str, Any], files: Files) -> tuple[dict[str, Any], dict[str, int] | None]:
    """What the store keeps of a validated item body, and its token usage (``token_usage`` actions)."""
    stored = {name: clean.get(name) for name in ("conversation_id", *ITEM_FIELDS[kind])}
    stored["metadata"] = clean["metadata"] or {}
    if kind == "attachments":
        stored["files"] = _attachment_files(clean, files)
    if kind != "action" or stored["action_name"] != TOKEN_USAGE_ACTION:
        return stored, None
    return stored, {key: count(stored["metadata"].get(key)) for key in REST_TOKEN_KEYS}


def count(value: Any) -> int:
    """A count (tokens, bytes) as stored: a number from 0 to :data:`MAX_COUNT` (a fraction truncated), else 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_COUNT:
        return 0
    return int(value)


def text(value: Any, name: str) -> str | None:
    """A DRF ``CharField`` value: text as is, a number as text, ``None`` kept; a 400 naming ``name`` otherwise."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise field_error(name, "Not a valid string.")
    return str(value)


def boolean(value: Any, name: str) -> bool:
    """A DRF boolean (``true``, ``"1"``, ``"off"``...); a 400 naming ``name`` otherwise."""
    if isinstance(value, bool) or value is None:
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise field_error(name, "Must be a valid boolean.")


def _json_field(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    """A JSON-object field that may arrive as JSON text (multipart form fields)."""
    value = body.get(name)
    if isinstance(value, str):
        try:
            value = load_json(value.encode()) if value.strip() else None
        except ValueError:
            raise field_error(name, "Value must be valid JSON.") from None
    if value is not None and not isinstance(value, dict):
        raise field_error(name, "Expected a dictionary of items.")
    return value


def _number(value: Any, name: str) -> int | float:
    """A DRF ``FloatField`` value: a number, or text holding a finite one; a 400 naming ``name`` otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    try:
        number = float(value) if isinstance(value, str) else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise field_error(name, "A valid number is required.")
    return number


def _primary_key(value: Any) -> int:
    """A DRF primary key: a whole number below 2**63, or text of its digits; a 400 otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        key = value if 0 <= value < 2**63 else None
    else:
        key = int(value) if isinstance(value, str) and _PRIMARY_KEY.fullmatch(value.strip()) else None
    if key is None or key >= 2**63:
        raise field_error("conversation", f"Incorrect type. Expected pk value, received {type(value).__name__}.")
    return key


def _attachment_files(body: dict[str, Any], files: Files) -> list[dict[str, Any]]:
    """``{filename, mime_type, size}`` of each attachment, from multipart files or the base64 list."""
    if body["mode"] == "form_data":
        return [{"filename": name, "mime_type": mime, "size": len(data)} for name, mime, data in files.values()]
    attachments = body.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        raise field_error("attachments", REQUIRED)
    described = []
    for attachment in attachments:
        if not isinstance(attachment, dict) or not isinstance(attachment.get("data"), str):
            raise field_error("attachments", "Each attachment needs filename, mime_type and base64 data.")
        try:
            size = len(base64.b64decode(attachment["data"], validate=True))
        except (binascii.Error, ValueError):
            raise field_error("attachments", "Invalid base64 data.") from None
        described.append({"filename": text(attachment.get("filename"), "attachments"),
                          "mime_type": text(attachment.get("mime_type"), "attachments"), "size": size})
    return described
