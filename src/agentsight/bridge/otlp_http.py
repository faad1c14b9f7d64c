"""The OTLP/HTTP receiver: ``POST /v1/traces`` and ``GET /health`` on kept-alive HTTP/1.1 connections.

``POST /v1/traces`` takes ``application/x-protobuf`` or ``application/json``, optionally ``gzip`` /
``deflate`` compressed (:mod:`agentsight.bridge.codec`), and answers in the request's encoding once the
core settled it: 200 with an ``ExportTraceServiceResponse`` (``partial_success`` when spans were
rejected), 400 on malformed data, 401 without the configured bearer token, 413 past the body or
decompressed-size bound, 415 on an unknown content type or encoding, 503 with ``Retry-After`` when the
request's conversations were not delivered in time or there is no room for them (the sender retries).
Errors carry a ``google.rpc.Status`` body. ``GET /health`` (and ``/healthz``) answers 200 with the
core's counters.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from google.rpc.code_pb2 import Code

from agentsight.bridge.codec import (
    Encoding,
    OtlpRequestError,
    bearer_token_matches,
    body_encoding,
    decode_export_request,
    encode_message,
    export_response,
    refusal,
    status_message,
    too_large,
)
from agentsight.bridge.core import BridgeCore
from agentsight.serving import write_response

logger = logging.getLogger("agentsight.bridge")

TRACES_PATH = "/v1/traces"
HEALTH_PATHS = ("/health", "/healthz")
IDLE_TIMEOUT_SECONDS = 120.0
"""A kept-alive HTTP connection silent this long (or a request stalling this long) is closed."""
LINGER_SECONDS = 2.0
"""After refusing an unread body, how long its remaining bytes are read and discarded before closing."""
_READ_CHUNK = 256 * 1024


class _Connections:
    """The HTTP connections of one server: which are idle between requests, which are serving one.

    ``close(timeout)`` wakes idle connections so they end, makes busy ones end after their current
    response, and waits for the busy ones: the graceful part of stopping.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._idle: set[socket.socket] = set()
        self._busy: set[socket.socket] = set()
        self.closing = False

    def idle(self, connection: socket.socket) -> bool:
        """The connection waits for its next request; ``False`` when it should end instead."""
        with self._condition:
            self._busy.discard(connection)
            self._condition.notify_all()
            if self.closing:
                return False
            self._idle.add(connection)
            return True

    def busy(self, connection: socket.socket) -> None:
        """A request arrived on the connection."""
        with self._condition:
            self._idle.discard(connection)
            self._busy.add(connection)

    def ended(self, connection: socket.socket) -> None:
        """The connection is closed."""
        with self._condition:
            self._idle.discard(connection)
            self._busy.discard(connection)
            self._condition.notify_all()

    def close(self, timeout: float) -> bool:
        """End idle connections now and busy ones after their response; ``True`` if all ended in time."""
        with self._condition:
            self.closing = True
            for connection in self._idle:
                try:
                    connection.shutdown(socket.SHUT_RDWR)  # its handler's read returns: the handler ends
                except OSError:
                    pass
            self._idle.clear()
            return self._condition.wait_for(lambda: not self._busy, timeout)


class OtlpHttpServer(ThreadingHTTPServer):
    """A threaded HTTP server holding what its handlers need: the core, the token, the limits."""

    daemon_threads = True
    block_on_close = False  # Bridge.stop waits for requests in flight itself, with a timeout
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], core: BridgeCore, token: str | None, max_body_bytes: int,
        max_decompressed_bytes: int,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.core = core
        self.token = token
        self.max_body_bytes = max_body_bytes
        self.max_decompressed_bytes = max_decompressed_bytes
        self.connections = _Connections()
        super().__init__(address, OtlpHttpHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a connection's unexpected failure on the bridge logger instead of printing a traceback."""
        logger.exception("OTLP/HTTP connection from %s failed", client_address)


class OtlpHttpHandler(BaseHTTPRequestHandler):
    """One OTLP/HTTP connection (HTTP/1.1, kept alive): ``POST /v1/traces`` and ``GET /health``."""

    server: OtlpHttpServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: avoid the delayed-ACK stall
    timeout = IDLE_TIMEOUT_SECONDS
    server_version = "agentsight-bridge"
    # Per request: whether its body was read, and how much of a refused body to drop before closing.
    _body_read = False
    _linger_after_response = 0

    # Connection life cycle: idle between requests, busy while serving one (see _Connections).

    def handle_one_request(self) -> None:
        """Serve the next request on this connection, unless the server is stopping."""
        if not self.server.connections.idle(self.connection):
            self.close_connection = True
            return
        super().handle_one_request()

    def parse_request(self) -> bool:
        """A request line arrived: the connection is busy until its response is sent."""
        self.server.connections.busy(self.connection)
        self._body_read = False
        self._linger_after_response = 0
        return super().parse_request()

    def handle(self) -> None:
        """Serve the connection's requests; a client going away is routine, not an error."""
        try:
            super().handle()
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def finish(self) -> None:
        """The connection ends."""
        try:
            super().finish()
        finally:
            self.server.connections.ended(self.connection)

    def version_string(self) -> str:
        """The ``Server`` header: no Python version."""
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: access lines and protocol errors go to the bridge logger at debug level."""
        logger.debug("OTLP/HTTP %s: " + format, self.address_string(), *args)

    # Methods.

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        """``POST /v1/traces``."""
        self._dispatch("POST")

    def do_GET(self) -> None:  # noqa: N802
        """``GET /health``."""
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        """Not served: 404/405."""
        self._dispatch("HEAD")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD  # noqa: N815

    def _routes(self) -> Mapping[str, tuple[str, Callable[[], None]]]:
        routes: dict[str, tuple[str, Callable[[], None]]] = {TRACES_PATH: ("POST", self._export)}
        routes.update((path, ("GET", self._health)) for path in HEALTH_PATHS)
        return routes

    def _dispatch(self, method: str) -> None:
        route = self._routes().get(urlsplit(self.path).path)
        try:
            if route is None:
                raise OtlpRequestError(HTTPStatus.NOT_FOUND, f"no such path: {self.path[:200]}", Code.NOT_FOUND)
            allowed, serve = route
            if method != allowed:
                raise OtlpRequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"use {allowed}", Code.UNIMPLEMENTED)
            serve()
        except OtlpRequestError as error:
            self._discard_body()
            self._send_error(error, Encoding.PROTOBUF)
        except (ConnectionError, TimeoutError):
            raise  # the client went away: handle() ends the connection quietly
        except Exception:
            logger.exception("OTLP/HTTP %s %s failed", method, self.path[:200])
            self.close_connection = True
            self._send_error(OtlpRequestError(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error", Code.INTERNAL),
                             Encoding.PROTOBUF)

    def _export(self) -> None:
        encoding = Encoding.PROTOBUF
        try:
            if not bearer_token_matches(self.headers.get("Authorization"), self.server.token):
                raise OtlpRequestError(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token", Code.UNAUTHENTICATED)
            encoding = body_encoding(self.headers.get("Content-Type"))
            body = self._read_body()
            request = decode_export_request(
                body, encoding, self.headers.get("Content-Encoding"), self.server.max_decompressed_bytes
            )
            result = self.server.core.ingest(request)
            refused = refusal(result)
            if refused is not None:
                raise refused
        except OtlpRequestError as error:
            self._discard_body()
            self._send_error(error, encoding)
            return
        self._send(HTTPStatus.OK, encode_message(export_response(result), encoding), encoding.content_type)

    def _health(self) -> None:
        self._discard_body()
        body = json.dumps({"status": "ok", "stats": self.server.core.stats()}).encode()
        self._send(HTTPStatus.OK, body, "application/json")

    # Bodies.

    def _declared_length(self) -> int:
        """``Content-Length`` (0 when absent), or -1 for a chunked body."""
        transfer_encoding = self.headers.get("Transfer-Encoding")
        if transfer_encoding is not None:
            if transfer_encoding.strip().lower() != "chunked":
                self.close_connection = True  # the body's end is unknown
                message = f"unsupported Transfer-Encoding {transfer_encoding[:40]!r}"
                raise OtlpRequestError(HTTPStatus.BAD_REQUEST, message)
            return -1
        raw = (self.headers.get("Content-Length") or "0").strip()
        if not (raw.isascii() and raw.isdigit()):
            self.close_connection = True  # the body's end is unknown
            raise OtlpRequestError(HTTPStatus.BAD_REQUEST, f"invalid Content-Length {raw[:40]!r}")
        return int(raw) if len(raw) <= 100 else 10**100  # (int() refuses thousands of digits)

    def _read_body(self) -> bytes:
        """The request body, refused (413) past ``max_body_bytes`` before it is read."""
        self._body_read = True
        limit = self.server.max_body_bytes
        length = self._declared_length()
        if length < 0:
            return self._read_chunked(limit)
        if length > limit:
            self._linger_after_response = length
            raise too_large(f"body of {length} bytes is larger than {limit} bytes")
        return self._read_exactly(length)

    def _read_exactly(self, length: int) -> bytes:
        data = self.rfile.read(length) if length else b""
        if len(data) != length:
            raise ConnectionAbortedError("the client closed the connection before the end of the body")
        return data

    def _read_chunked(self, limit: int) -> bytes:
        pieces: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                chunk = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                chunk = -1
            if chunk < 0:
                self.close_connection = True
                raise OtlpRequestError(HTTPStatus.BAD_REQUEST, "malformed chunked body")
            if chunk == 0:
                while self.rfile.readline(1024).strip():  # trailers, up to the empty line
                    pass
                return b"".join(pieces)
            size += chunk
            if size > limit:
                self._linger_after_response = limit  # its true size is unknown: drop up to another limit's worth
                raise too_large(f"chunked body larger than {limit} bytes")
            pieces.append(self._read_exactly(chunk))
            self.rfile.readline(3)  # the CRLF after the chunk

    def _discard_body(self) -> None:
        """Read and drop an unread body so the connection stays usable (or close it when the body is too big)."""
        if self._body_read:
            return
        try:
            self._read_body()
        except OtlpRequestError:
            self.close_connection = True

    # Responses.

    def _send_error(self, error: OtlpRequestError, encoding: Encoding) -> None:
        headers = {}
        if error.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
        if error.status == HTTPStatus.UNAUTHORIZED:
            headers["WWW-Authenticate"] = 'Bearer realm="agentsight-bridge"'
        if error.status == HTTPStatus.METHOD_NOT_ALLOWED:
            route = self._routes().get(urlsplit(self.path).path)
            headers["Allow"] = route[0] if route else "POST"
        status = status_message(error.code, error.message, error.retry_after)
        self._send(error.status, encode_message(status, encoding), encoding.content_type, headers)

    def _send(self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None) -> None:
        linger = self._linger_after_response
        if linger or self.server.connections.closing:
            self.close_connection = True
        closing = {"Connection": "close"} if self.close_connection else {}
        write_response(self, status, body, content_type, {**(headers or {}), **closing})
        if linger:
            self._linger(linger)

    def _linger(self, unread: int) -> None:
        """Read and drop what the client still sends of a refused body (briefly), so it sees the answer."""
        deadline = time.monotonic() + LINGER_SECONDS
        try:
            self.connection.shutdown(socket.SHUT_WR)
            while unread > 0 and (remaining := deadline - time.monotonic()) > 0:
                self.connection.settimeout(remaining)
                dropped = self.rfile.read1(min(unread, _READ_CHUNK))
                if not dropped:
                    break
                unread -= len(dropped)
        except OSError:
            pass


