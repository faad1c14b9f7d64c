"""The stand-in LLM provider's HTTP side: reading a request's body, answering JSON or a chunked stream (cut
mid-way on request), provider-shaped error bodies, and the threading server. Standard library only.
"""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agentsight.dev.llm_wire import Phase, dumps
from agentsight.serving import write_response

SSE = "text/event-stream; charset=utf-8"
"""The content type of a server-sent events stream."""
NDJSON = "application/x-ndjson"
"""The content type of an NDJSON stream (Ollama's)."""
_OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "not_found"),
    409: ("invalid_request_error", "conflict"),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def error_body(provider: str, status: int, message: str | None) -> dict[str, Any]:
    """An error answer in ``provider``'s shape (``openai``, ``anthropic`` or ``ollama``)."""
    if provider == "ollama":
        return {"error": message or f"Injected {status} error."}
    if provider == "anthropic":
        kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message or f"Injected {status} error ({kind})."}}
    kind, code = _OPENAI_ERROR_TYPES.get(status, ("server_error", None))
    text = message or f"Injected {status} error ({code or kind})."
    return {"error": {"message": text, "type": kind, "param": None, "code": code}}


def read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """The request's body, sent with a ``Content-Length`` or chunked."""
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        pieces = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(pieces)
            pieces.append(handler.rfile.read(size))
            handler.rfile.readline()
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


def send_json(handler: BaseHTTPRequestHandler, status: int, data: object, headers: dict[str, str]) -> None:
    """Answer ``data`` as JSON with ``status`` and ``headers``."""
    write_response(handler, status, dumps(data).encode(), "application/json", headers)


def send_stream(
    handler: BaseHTTPRequestHandler,
    frames: list[tuple[Phase, bytes]],
    cut: int | None,
    headers: dict[str, str],
    content_type: str = SSE,
) -> None:
    """Send ``frames`` (SSE, or NDJSON lines) as a chunked body; with ``cut``, cut it after that many deltas."""
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Cache-Control", "no-cache")
    handler.send_header("Transfer-Encoding", "chunked")
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    deltas = 0
    try:
        for index, (phase, frame) in enumerate(frames):
            if cut is not None and phase != "pre" and deltas >= cut:
                _abort(handler)
                return
            data = b"%x\r\n%s\r\n" % (len(frame), frame)
            if index == len(frames) - 1:
                data += b"0\r\n\r\n"  # the last event and the end of the body in one segment
            handler.wfile.write(data)
            deltas += phase == "delta"
    except OSError:  # the client went away
        handler.close_connection = True


def _abort(handler: BaseHTTPRequestHandler) -> None:
    handler.close_connection = True
    try:
        handler.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 30  # an idle keep-alive connection's thread gives up after this
    server: LLMHTTPServer

    def do_POST(self) -> None:
        self.server.serve(self)

    do_GET = do_POST  # noqa: N815 - answered with a 404/405 in the provider's shape
    do_PUT = do_POST  # noqa: N815
    do_DELETE = do_POST  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        pass


class LLMHTTPServer(ThreadingHTTPServer):
    """A threading HTTP/1.1 server handing every request to ``serve``; :meth:`close_connections` cuts the open
    keep-alive connections (so a stopped server's clients see it gone)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], serve: Callable[[BaseHTTPRequestHandler], None]) -> None:
        self.serve = serve
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client that went away, or a connection cut by stop()
        super().handle_error(request, client_address)
