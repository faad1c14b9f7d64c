"""The ``agentsight dev`` HTTP server: the WIRE.md ingestion API persisted in SQLite, reads, stats and a dashboard.

Ingestion paths, bodies and answers are those of the AgentSight API (WIRE.md); every ``/api/`` request
(reads too) needs ``Authorization: Api-Key <key>`` with a well-formed key. ``GET /`` serves
``dashboard.html`` from this package and ``GET /health`` answers 200, both without a key.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from agentsight.config import API_KEY_PATTERN, ENVIRONMENTS
from agentsight.dev.store import ConversationFilter, DevStore, UnknownConversationError, utc_iso
from agentsight.export.payloads import PATHS
from agentsight.local_server import REQUIRED_FIELDS, _parse_body
from agentsight.serving import serve_in_background, stop_serving, write_response

DASHBOARD = Path(__file__).with_name("dashboard.html")
PLACEHOLDER = b"<!doctype html><title>AgentSight dev</title><p>AgentSight dev server: dashboard.html is missing.</p>"
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100

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

_DETAIL_PATH = re.compile(r"^/api/conversations/(\d+)/$")
_REQUIRED = "This field is required."
_NOT_FOUND = {"detail": "Not found."}


class ApiError(Exception):
    """An answer other than success: ``status`` and its DRF-style JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


def _field_error(name: str, message: str) -> ApiError:
    return ApiError(400, {name: [message]})


# Validation of posted bodies ---------------------------------------------------------------------


def _validated(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` checked the way the API does (required fields, choices, types), with normalized values."""
    missing = {name: [_REQUIRED] for name in REQUIRED_FIELDS[path] if body.get(name) in (None, "")}
    if missing:
        raise ApiError(400, missing)
    clean = dict(body)
    for name, allowed in CHOICES.items():
        value = clean.get(name)
        if value is not None and value not in allowed:
            raise _field_error(name, f'"{value}" is not a valid choice.')
    if clean.get("timestamp") not in (None, ""):
        try:
            utc_iso(str(clean["timestamp"]))
        except ValueError:
            raise _field_error("timestamp", "Datetime has wrong format. Use one of these formats instead: "
                                            "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].") from None
    else:
        clean["timestamp"] = None
    clean["metadata"] = _json_field(clean, "metadata")
    if "is_used" in clean:
        clean["is_used"] = _boolean(clean["is_used"])
    if path != PATHS["conversation"]:
        clean["conversation"] = _primary_key(clean["conversation"])
    return clean


def _json_field(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    """A JSON-object field that may arrive as JSON text (multipart form fields)."""
    value = body.get(name)
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else None
        except ValueError:
            raise _field_error(name, "Value must be valid JSON.") from None
    if value is not None and not isinstance(value, dict):
        raise _field_error(name, "Expected a dictionary of items.")
    return value


def _boolean(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise _field_error("is_used", "Must be a valid boolean.")


def _primary_key(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise _field_error("conversation", f"Incorrect type. Expected pk value, received {type(value).__name__}.")
    return int(value)


def _attachment_files(body: dict[str, Any], files: dict[str, tuple[str, str, bytes]]) -> list[dict[str, Any]]:
    """``{filename, mime_type, size}`` of each attachment, from multipart files or the base64 list."""
    if body["mode"] == "form_data":
        return [{"filename": name, "mime_type": mime, "size": len(data)} for name, mime, data in files.values()]
    attachments = body.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        raise _field_error("attachments", _REQUIRED)
    described = []
    for attachment in attachments:
        if not isinstance(attachment, dict) or not isinstance(attachment.get("data"), str):
            raise _field_error("attachments", "Each attachment needs filename, mime_type and base64 data.")
        try:
            size = len(base64.b64decode(attachment["data"], validate=True))
        except (binascii.Error, ValueError):
            raise _field_error("attachments", "Invalid base64 data.") from None
        described.append({"filename": attachment.get("filename"), "mime_type": attachment.get("mime_type"),
                          "size": size})
    return described


# The application -----------------------------------------------------------------------------------


class DevApp:
    """Request handling over a :class:`DevStore`, independent of the HTTP plumbing."""

    def __init__(self, store: DevStore) -> None:
        self.store = store

    def post(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        """Answer a POST: ``(status, JSON body)``."""
        self._authorize(headers)
        if path != PATHS["conversation"] and path not in ITEM_KINDS:
            raise ApiError(404 if not _DETAIL_PATH.match(path) else 405, _NOT_FOUND)
        try:
            body, files = _parse_body(headers.get("content-type", ""), raw)
        except ValueError as error:
            raise ApiError(400, {"detail": f"JSON parse error - {error}"}) from None
        clean = _validated(path, body)
        if path == PATHS["conversation"]:
            conversation = self.store.upsert_conversation(clean)
            return 201, conversation
        kind = ITEM_KINDS[path]
        stored = {name: clean.get(name) for name in ("conversation_id", *ITEM_FIELDS[kind])}
        stored["metadata"] = clean["metadata"] or {}
        if kind == "attachments":
            stored["files"] = _attachment_files(clean, files)
        try:
            item_id = self.store.add_item(kind, clean["conversation"], clean["timestamp"], stored)
        except UnknownConversationError:
            raise _field_error("conversation", f'Invalid pk "{clean["conversation"]}" - object does not exist.') \
                from None
        return 201, {"id": item_id, "conversation": clean["conversation"], **stored}

    def get(self, target: str, headers: dict[str, str]) -> tuple[int, Any]:
        """Answer a GET of an ``/api/`` path: ``(status, JSON body)``."""
        self._authorize(headers)
        url = urlsplit(target)
        query = {name: values[-1] for name, values in parse_qs(url.query).items()}
        if url.path == PATHS["conversation"]:
            return 200, self._conversation_page(url.path, query, headers.get("host", "localhost"))
        match = _DETAIL_PATH.match(url.path)
        if match:
            conversation = self.store.get_conversation(int(match.group(1)))
            if conversation is None:
                raise ApiError(404, _NOT_FOUND)
            return 200, conversation
        if url.path == "/api/stats/":
            return 200, self.store.stats(query.get("environment") or None)
        if url.path in ITEM_KINDS:
            raise ApiError(405, {"detail": 'Method "GET" not allowed.'})
        raise ApiError(404, _NOT_FOUND)

    def _conversation_page(self, path: str, query: dict[str, str], host: str) -> dict[str, Any]:
        try:
            page = int(query.get("page", "1"))
            size = min(int(query.get("page_size", str(DEFAULT_PAGE_SIZE))), MAX_PAGE_SIZE)
        except ValueError:
            raise ApiError(404, {"detail": "Invalid page."}) from None
        if page < 1 or size < 1:
            raise ApiError(404, {"detail": "Invalid page."})
        used = query.get("is_used")
        filters = ConversationFilter(
            conversation_id=query.get("conversation_id") or None,
            environment=query.get("environment") or None,
            is_used=None if used in (None, "") else _boolean(used),
        )
        count, results = self.store.list_conversations(filters, (page - 1) * size, size)
        if page > 1 and not results:
            raise ApiError(404, {"detail": "Invalid page."})

        def link(number: int) -> str:
            return f"http://{host}{path}?{urlencode({**query, 'page': number, 'page_size': size})}"

        return {
            "count": count,
            "next": link(page + 1) if page * size < count else None,
            "previous": link(page - 1) if page > 1 else None,
            "results": results,
        }

    @staticmethod
    def _authorize(headers: dict[str, str]) -> None:
        auth = headers.get("authorization", "")
        if not auth:
            raise ApiError(401, {"detail": "Authentication credentials were not provided."})
        if not auth.startswith("Api-Key ") or not API_KEY_PATTERN.match(auth[len("Api-Key "):].strip()):
            raise ApiError(401, {"detail": "Invalid API key."})


def _handler_for(app: DevApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go in two writes: avoid the delayed-ACK stall

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = urlsplit(self.path).path
            if path in ("/", "/index.html"):
                page = DASHBOARD.read_bytes() if DASHBOARD.is_file() else PLACEHOLDER
                self._send(200, page, "text/html; charset=utf-8")
            elif path == "/health":
                self._send(200, b'{"status": "ok"}', "application/json")
            else:
                self._answer(lambda: app.get(self.path, self._headers()))

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._answer(lambda: app.post(urlsplit(self.path).path, self._headers(), raw))

        def _headers(self) -> dict[str, str]:
            return {key.lower(): value for key, value in self.headers.items()}

        def _answer(self, handle: Callable[[], tuple[int, Any]]) -> None:
            try:
                status, body = handle()
            except ApiError as error:
                status, body = error.status, error.body
            self._send(status, json.dumps(body, ensure_ascii=False).encode("utf-8"), "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            write_response(self, status, body, content_type, {"Cache-Control": "no-store"})

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: no line per request."""

    return Handler


class DevServer:
    """The dev API on ``host:port`` (0: a free port) storing into ``db_path``; ``start()``/``stop()`` or ``with``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8321, db_path: str | Path = "agentsight-dev.db") -> None:
        self.host = host
        self.port = port
        self.db_path = Path(db_path)
        self.store: DevStore | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL (``http://host:port``), usable as ``AGENTSIGHT_API_ENDPOINT``; needs :meth:`start`."""
        if self._server is None:
            raise RuntimeError("the dev server is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> DevServer:
        """Open the database and serve in a background thread."""
        self.store = DevStore(self.db_path)
        try:
            self._server = ThreadingHTTPServer((self.host, self.port), _handler_for(DevApp(self.store)))
        except OSError:
            self.store.close()
            raise
        self._server.daemon_threads = True
        self._thread = serve_in_background(self._server, "agentsight-dev")
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and the database."""
        if self._server is not None:
            stop_serving(self._server, self._thread)
            self._server = None
            self._thread = None
        if self.store is not None:
            self.store.close()
            self.store = None

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
