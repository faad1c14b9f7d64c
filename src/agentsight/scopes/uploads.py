"""``upload_attachments()``: file bytes to ``POST /api/attachments/``, on the caller's thread, raising on failure.

Unlike tracking, an upload moves customer data: dropping a file the caller believes was delivered is the one
unacceptable outcome, so this blocks and raises (``ValueError`` for bad input, :class:`UploadError` when the
API refuses or the network fails). Once the bytes are delivered the turn records a descriptor of them.
Requests go through the SDK's own HTTP transport (kept-alive connections, the ``Api-Key`` header).
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import mimetypes
import os
import threading
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from agentsight.exceptions import UploadError
from agentsight.export.transport import HttpResponse, HttpTransport
from agentsight.scopes import runtime
from agentsight.scopes.calls import record_attachments
from agentsight.scopes.conversation import current_conversation
from agentsight.spans import semconv as sc

_transports: dict[tuple[str, str, float], HttpTransport] = {}
_lock = threading.Lock()


def _transport(api_key: str, endpoint: str, timeout: float) -> HttpTransport:
    key = (api_key, endpoint, timeout)
    with _lock:
        transport = _transports.get(key)
        if transport is None:
            transport = _transports[key] = HttpTransport(endpoint, api_key, timeout)
    return transport


def upload_attachments(
    files: Any,
    conversation_id: str | None = None,
    sender: str = sc.SENDER_END_USER,
    metadata: dict[str, Any] | None = None,
    timeout: float = 30,
    message_id: int | str | None = None,
) -> Any:
    """Upload files and attach them to a conversation (the current one by default); returns the API's answer.

    ``files``: one or a list of paths, open files, or ``{"filename", "data"[, "mime_type"]}`` dicts whose data is
    bytes, a file object or base64 text. ``message_id`` attaches them to an existing message.
    """
    normalized = _normalize_all(files)
    scope = current_conversation()
    resolved = conversation_id or (scope.conversation_id if scope is not None else None)
    if not resolved:
        raise ValueError("upload_attachments() needs a conversation: pass conversation_id= or call it inside "
                         "`with agentsight.conversation(...)`.")
    environment = (scope.attributes.get(sc.ENVIRONMENT) if scope is not None else None) or runtime.default_environment()
    api_key, endpoint = runtime.credentials()
    if not api_key or not endpoint:
        raise UploadError("upload_attachments() needs the HTTP transport: call agentsight.init(api_key=...) first "
                          "(a file or custom span exporter carries spans only).")
    transport = _transport(api_key, endpoint, timeout)
    pk = _conversation_pk(transport, resolved, environment)
    body: dict[str, Any] = {
        "conversation": str(pk),
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "mode": "base64",
        "sender": sender,
        "metadata": metadata or {},
        "attachments": [{key: entry[key] for key in ("filename", "mime_type", "data")} for entry in normalized],
    }
    if message_id is not None and str(message_id).strip():
        body["message"] = str(message_id)
    response = _send(transport, "POST", "/api/attachments/", body, "attachment upload failed")
    if response.status not in (200, 201):
        raise UploadError(f"attachment upload rejected ({response.status}): {response.error_message()}",
                          status_code=response.status, response=_json(response))
    record_attachments([{key: entry[key] for key in ("filename", "mime_type", "size")} for entry in normalized],
                       sender=sender, metadata=metadata, mode="base64")
    return _json(response)


def _send(transport: HttpTransport, method: str, path: str, body: dict[str, Any] | None, failure: str) -> HttpResponse:
    data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
    headers = {} if body is None else {"Content-Type": "application/json"}
    try:
        return transport.request(method, path, data, headers)
    except (OSError, http.client.HTTPException) as error:
        raise UploadError(f"{failure}: {error}") from error


def _json(response: HttpResponse) -> Any:
    try:
        return response.json()
    except ValueError:
        return {}


def _conversation_pk(transport: HttpTransport, conversation_id: str, environment: str | None) -> Any:
    """Get-or-create the conversation (the span pipeline may not have delivered it yet); else look it up."""
    body: dict[str, Any] = {"conversation_id": conversation_id}
    if environment:
        body["environment"] = environment
    created = _send(transport, "POST", "/api/conversations/", body, "could not create conversation")
    if created.status in (200, 201) and isinstance(_json(created), dict) and _json(created).get("id") is not None:
        return _json(created)["id"]
    found = _send(transport, "GET", f"/api/conversations/lookup/?conversation_id={quote(conversation_id)}", None,
                  "could not look up conversation")
    if found.status == 200 and isinstance(_json(found), dict) and _json(found).get("id") is not None:
        return _json(found)["id"]
    raise UploadError(f"could not resolve conversation {conversation_id!r} ({created.status}): "
                      f"{created.error_message()}", status_code=created.status, response=_json(created))


def _normalize_all(files: Any) -> list[dict[str, Any]]:
    if files is None:
        raise ValueError("no files to upload")
    if isinstance(files, (str, bytes, dict, os.PathLike)) or hasattr(files, "read"):
        files = [files]
    normalized = [_normalize(file, index) for index, file in enumerate(files)]
    if not normalized:
        raise ValueError("no files to upload")
    return normalized


def _entry(filename: str, mime_type: str | None, raw: bytes) -> dict[str, Any]:
    return {"filename": filename, "mime_type": mime_type or _guess(filename),
            "data": base64.b64encode(raw).decode("ascii"), "size": len(raw)}


def _normalize(file: Any, index: int) -> dict[str, Any]:
    """One attachment as ``{filename, mime_type, data (base64 text), size}``; ``ValueError`` when it cannot be."""
    if isinstance(file, bytes):
        raise ValueError(f'attachment {index}: raw bytes carry no filename; pass {{"filename": ..., "data": <bytes>}}')
    if isinstance(file, dict):
        filename = file.get("filename") or file.get("name")
        if not filename:
            raise ValueError(f"attachment {index}: dict form needs a 'filename'")
        raw = file.get("data", file.get("content"))
        if hasattr(raw, "read"):
            raw = raw.read()
        mime_type = file.get("mime_type") or file.get("content_type")
        if isinstance(raw, str):
            try:
                size = len(base64.b64decode(raw, validate=True))
            except (binascii.Error, ValueError) as error:
                raise ValueError(f"attachment {index}: string 'data' must be base64 (pass bytes for raw content)") \
                    from error
            return {"filename": filename, "mime_type": mime_type or _guess(filename), "data": raw, "size": size}
        if isinstance(raw, (bytes, bytearray)):
            return _entry(filename, mime_type, bytes(raw))
        raise ValueError(f"attachment {index}: 'data' must be bytes, a file object or base64 text")
    if isinstance(file, (str, os.PathLike)):
        path = os.fspath(file)
        if not os.path.isfile(path):
            raise ValueError(f"attachment {index}: no such file: {path}")
        with open(path, "rb") as handle:
            return _entry(os.path.basename(path), None, handle.read())
    if hasattr(file, "read"):
        raw = file.read()
        name = getattr(file, "name", None)
        return _entry(os.path.basename(str(name)) if name else f"attachment-{index}", None,
                      raw.encode("utf-8") if isinstance(raw, str) else raw)
    raise ValueError(f"attachment {index}: cannot read {type(file).__name__}; pass a path, an open file or a dict")


def _guess(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"
