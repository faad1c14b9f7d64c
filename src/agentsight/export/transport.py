"""HTTP transport to the AgentSight API: one kept-alive connection per delivery thread.

Only moves bytes and reports what came back; retry decisions belong to :mod:`agentsight.export.delivery`.
At DEBUG level (``AGENTSIGHT_LOG_LEVEL=DEBUG``) each request is logged: method, URL, bytes sent, status,
bytes answered and time (never a header, so never the key). Error texts taken from answers pass through
:func:`scrub_secrets` first: an API that echoes the ``Authorization`` header cannot put the key in a log.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from agentsight.config import USER_AGENT
from agentsight.export.payloads import Payload

logger = logging.getLogger("agentsight.export.transport")

_HEADER_VALUES = re.compile(
    r"""((?<![a-z])(?:authorization|api[-_]?key)["']?\s*[:=]\s*["']?(?:(?:api-key|bearer|token|basic)\s+)?)"""
    r"""[^\s"',;}\]]+""",
    re.IGNORECASE,
)
_SCHEME_TOKENS = re.compile(r"(\b(?:api-key|bearer)\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
_KEYS = re.compile(r"ags_[0-9a-f]{32}_[0-9a-f]{6}", re.IGNORECASE)
REDACTED = "[redacted]"
ERROR_TEXT_LIMIT = 500
"""Characters of an answer's body quoted in an error text at most."""


def scrub_secrets(text: str) -> str:
    """``text`` without AgentSight API keys, ``Authorization`` header values and bearer (or similar) tokens.

    The one scrubber for error texts that came from an API answer, before they are logged or returned
    in results (the SDK's exporter and ``agentsight bridge`` share it).
    """
    text = _HEADER_VALUES.sub(rf"\1{REDACTED}", text)
    text = _SCHEME_TOKENS.sub(rf"\1{REDACTED}", text)
    return _KEYS.sub(REDACTED, text)


@dataclass(frozen=True)
class HttpResponse:
    """What the API answered."""

    status: int
    body: bytes
    retry_after: float | None

    def json(self) -> Any:
        """The body parsed as JSON (raises ``ValueError`` when it is not JSON)."""
        return json.loads(self.body) if self.body else {}

    def error_message(self) -> str:
        """The API's error text, scrubbed of secrets: ``detail``, or DRF field errors as ``field: msg, msg; ...``."""
        try:
            data = self.json()
        except ValueError:
            return self.excerpt() or "no body"
        if isinstance(data, dict) and "detail" in data:
            text = str(data["detail"])
        elif isinstance(data, dict):
            text = "; ".join(
                f"{name}: {', '.join(map(str, errors)) if isinstance(errors, list) else errors}"
                for name, errors in data.items()
            )
        else:
            text = str(data)
        return scrub_secrets(text)[:ERROR_TEXT_LIMIT]

    def excerpt(self) -> str:
        """The start of the body as text, scrubbed of secrets (for answers that are not what was expected)."""
        return scrub_secrets(self.body.decode("utf-8", "replace"))[:ERROR_TEXT_LIMIT]


class HttpTransport:
    """Posts payloads to ``endpoint`` with the ``Api-Key`` header; thread-safe, one connection per thread."""

    def __init__(self, endpoint: str, api_key: str, timeout: float) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"AgentSight endpoint must be an http(s) URL, got {endpoint!r}")
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._base_path = parts.path.rstrip("/")
        self._timeout = timeout
        self._auth_header = f"Api-Key {api_key}"
        self._local = threading.local()
        self.endpoint = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{self._base_path}"
        """The base URL, as log lines name it (without any user info the URL held)."""

    def __repr__(self) -> str:
        return f"HttpTransport({self.endpoint})"

    def post(self, payload: Payload, conversation: int | None) -> HttpResponse:
        """POST one REST payload; ``conversation`` is the server id added to every non-conversation body.

        Raises ``OSError`` / ``http.client.HTTPException`` on network failures and time-outs.
        """
        body = dict(payload.body)
        if payload.kind != "conversation":
            body["conversation"] = conversation
        if payload.files:
            content_type, data = encode_multipart(body, payload)
        else:
            content_type, data = "application/json", json.dumps(body, ensure_ascii=False).encode("utf-8")
        return self.request("POST", payload.path, data, {"Content-Type": content_type})

    def request(
        self, method: str, path: str, data: bytes | None = None, headers: dict[str, str] | None = None
    ) -> HttpResponse:
        """Send one request to ``path`` under the endpoint, with the key and the SDK's headers.

        Raises ``OSError`` / ``http.client.HTTPException`` on network failures and time-outs.
        """
        all_headers = {
            "Authorization": self._auth_header,
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            **(headers or {}),
        }
        if not logger.isEnabledFor(logging.DEBUG):
            return self._request(method, self._base_path + path, data, all_headers)
        started = time.perf_counter()
        sent = f"AgentSight {method} {self.endpoint}{path} ({len(data or b'')} bytes)"
        try:
            response = self._request(method, self._base_path + path, data, all_headers)
        except BaseException as error:
            logger.debug("%s: no answer after %.1f ms (%r)", sent, (time.perf_counter() - started) * 1000, error)
            raise
        logger.debug("%s: answered %d (%d bytes) in %.1f ms", sent, response.status, len(response.body),
                     (time.perf_counter() - started) * 1000)
        return response

    def close(self) -> None:
        """Close this thread's connection."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def _request(self, method: str, path: str, data: bytes | None, headers: dict[str, str]) -> HttpResponse:
        connection = getattr(self._local, "connection", None)
        reused = connection is not None
        if connection is None:
            connection = self._connect()
        try:
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            body = response.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.close()
            if not reused:
                raise
            # The server closed an idle kept-alive connection: one fresh attempt, as urllib3 does.
            connection = self._connect()
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            body = response.read()
        except BaseException:
            self.close()
            raise
        if response.will_close:
            self.close()
        return HttpResponse(response.status, body, parse_retry_after(response.getheader("Retry-After")))

    def _connect(self) -> http.client.HTTPConnection:
        if self._scheme == "https":
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout
            )
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        connection.connect()
        # http.client writes headers and body in two sends: without this, Nagle's algorithm and the
        # server's delayed ACK can stall each request (urllib3 sets it too).
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._local.connection = connection
        return connection


def encode_multipart(fields: dict[str, Any], payload: Payload) -> tuple[str, bytes]:
    """multipart/form-data of text ``fields`` (objects as JSON text) and the payload's files."""
    boundary = uuid.uuid4().hex
    chunks: list[bytes] = []
    for name, value in fields.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{text}\r\n'.encode()
        )
    for part in payload.files:
        filename = part.filename.replace('"', "%22")
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{part.field_name}"; filename="{filename}"\r\n'
            f"Content-Type: {part.content_type}\r\n\r\n".encode()
        )
        chunks.append(part.data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(chunks)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or ``None``."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
