"""A local AgentSight-compatible API on 127.0.0.1: records what arrives and answers like the API.

Used by the tests, the benchmarks and ``make demo``. Speaks WIRE.md: ``POST`` to the ingestion
paths with ``Authorization: Api-Key <key>``; the conversation POST is get-or-create by
``conversation_id`` and answers ``{"id": <int>}``. Faults can be injected: canned error answers,
malformed replies, latency.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agentsight.config import API_KEY_PATTERN
from agentsight.export.payloads import PATHS
from agentsight.serving import serve_in_background, stop_serving, write_response

REQUIRED_FIELDS = {
    "/api/conversations/": ("conversation_id",),
    "/api/track/": ("content", "sender", "conversation"),
    "/api/action_logs/": ("action_name", "conversation"),
    "/api/buttons/": ("button_event", "label", "value", "conversation"),
    "/api/attachments/": ("conversation", "mode"),
}


@dataclass
class ReceivedRequest:
    """One request as it arrived: path, headers, and the JSON body or the multipart fields and files."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    files: dict[str, tuple[str, str, bytes]] = field(default_factory=dict)
    status: int = 0


@dataclass
class CannedResponse:
    """An answer to give instead of the normal one."""

    status: int
    body: bytes = b'{"detail": "injected error"}'
    retry_after: str | None = None
    delay: float = 0.0


class LocalAgentSightServer:
    """A threaded HTTP server speaking the AgentSight ingestion API; ``start()``/``stop()`` or ``with``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0, record: bool = True) -> None:
        self.latency = latency
        self.record = record
        self.requests: list[ReceivedRequest] = []
        self.conversations: dict[str, dict[str, Any]] = {}
        self._canned: deque[CannedResponse] = deque()
        self._lock = threading.Condition()
        self._ids: dict[str, int] = {}
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL to use as ``AGENTSIGHT_API_ENDPOINT``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LocalAgentSightServer:
        """Serve in a background thread."""
        self._thread = serve_in_background(self._server, "agentsight-local-api")
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        stop_serving(self._server, self._thread)
        self._thread = None

    def __enter__(self) -> LocalAgentSightServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def inject(self, *responses: CannedResponse) -> None:
        """Answer the next requests with these responses, in order, instead of the normal answer."""
        with self._lock:
            self._canned.extend(responses)

    def accepted(self, path: str | None = None) -> list[ReceivedRequest]:
        """Requests answered with success, optionally only those to ``path``."""
        with self._lock:
            return [r for r in self.requests if r.status in (200, 201) and (path is None or r.path == path)]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedRequest]:
        """Wait until ``count`` requests were accepted; returns the accepted ones."""
        with self._lock:
            self._lock.wait_for(lambda: len(self.accepted()) >= count, timeout)
        return self.accepted()

    def _answer(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, bytes, dict[str, str]]:
        with self._lock:
            canned = self._canned.popleft() if self._canned else None
        if self.latency:
            time.sleep(self.latency)
        if canned is not None:
            time.sleep(canned.delay)
            extra = {"Retry-After": canned.retry_after} if canned.retry_after else {}
            self._remember(ReceivedRequest(path, headers, {}, status=canned.status))
            return canned.status, canned.body, extra
        status, answer, request = self._handle(path, headers, raw)
        self._remember(request)
        return status, json.dumps(answer).encode(), {}

    def _handle(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, ReceivedRequest]:
        request = ReceivedRequest(path, headers, {})
        auth = headers.get("authorization", "")
        if not auth.startswith("Api-Key ") or not API_KEY_PATTERN.match(auth[len("Api-Key "):]):
            request.status = 401
            return 401, {"detail": "Invalid API key."}, request
        if path not in REQUIRED_FIELDS:
            request.status = 404
            return 404, {"detail": "Not found."}, request
        try:
            request.body, request.files = _parse_body(headers.get("content-type", ""), raw)
        except ValueError as error:
            request.status = 400
            return 400, {"detail": f"JSON parse error - {error}"}, request
        missing = {name: ["This field is required."] for name in REQUIRED_FIELDS[path] if request.body.get(name) in
                   (None, "")}
        if missing:
            request.status = 400
            return 400, missing, request
        if path == PATHS["conversation"]:
            with self._lock:
                conversation_id = str(request.body["conversation_id"])
                server_id = self._ids.setdefault(conversation_id, len(self._ids) + 1)
                stored = self.conversations.setdefault(conversation_id, {"id": server_id, "is_used": False})
                # A later post's nulls (fields it does not know) keep what an earlier post said.
                stored.update({k: v for k, v in request.body.items() if k != "is_used" and v is not None})
                stored["is_used"] = stored["is_used"] or bool(request.body.get("is_used"))
            request.status = 201
            return 201, {"id": server_id, "conversation_id": conversation_id}, request
        request.status = 201
        return 201, {"id": len(self.requests) + 1}, request

    def _remember(self, request: ReceivedRequest) -> None:
        with self._lock:
            if self.record:
                self.requests.append(request)
            else:
                self.requests.append(ReceivedRequest(request.path, {}, {}, status=request.status))
            self._lock.notify_all()


def _parse_body(content_type: str, raw: bytes) -> tuple[dict[str, Any], dict[str, tuple[str, str, bytes]]]:
    if content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
        fields: dict[str, Any] = {}
        files: dict[str, tuple[str, str, bytes]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            filename = part.get_filename()
            payload = part.get_payload(decode=True) or b""
            if filename is not None:
                files[name] = (filename, part.get_content_type(), payload)
            else:
                fields[name] = payload.decode("utf-8")
        return fields, files
    body = json.loads(raw or b"{}")
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")
    return body, {}


def _handler_for(server: LocalAgentSightServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go in two writes: avoid the delayed-ACK stall

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {key.lower(): value for key, value in self.headers.items()}
            status, body, extra = server._answer(self.path, headers, raw)
            write_response(self, status, body, "application/json", extra)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the server's record is the log."""

    return Handler


def main() -> None:
    """Serve until interrupted, printing each request that arrives."""
    parser = argparse.ArgumentParser(description="Local AgentSight-compatible API that prints what arrives")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8321)
    args = parser.parse_args()
    with LocalAgentSightServer(args.host, args.port) as server:
        print(f"AgentSight-compatible API on {server.url}", flush=True)
        seen = 0
        try:
            while True:
                for request in server.wait_for(seen + 1, timeout=1.0)[seen:]:
                    print(request.status, request.path, json.dumps(request.body, ensure_ascii=False), flush=True)
                    seen += 1
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
