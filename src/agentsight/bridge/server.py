"""The bridge's transports: OTLP/HTTP and OTLP/gRPC receivers feeding one :class:`BridgeCore`.

Both follow the OTLP specification's receiver rules:

- OTLP/HTTP ``POST /v1/traces`` takes ``application/x-protobuf`` or ``application/json`` (OTLP/JSON:
  hex trace and span ids, unknown fields ignored), optionally ``gzip``/``deflate`` compressed, and
  answers in the request's encoding: 200 with an ``ExportTraceServiceResponse`` (``partial_success``
  when spans were rejected), 400 on malformed data, 401 without the configured bearer token, 413
  past the body or decompressed-size bound, 415 on an unknown content type or encoding, 503 with
  ``Retry-After`` while the delivery queue is full. Errors carry a ``google.rpc.Status`` body.
  ``GET /health`` (and ``/healthz``) answers 200 with the core's counters.
- OTLP/gRPC ``TraceService/Export`` answers UNAUTHENTICATED without the token and UNAVAILABLE with
  ``RetryInfo`` (both as ``google.rpc.retryinfo-bin``, which the Python exporter reads, and inside
  ``grpc-status-details-bin``) while the queue is full; both are what OTLP exporters retry.

:class:`Bridge` runs both, feeding one core; ``stop()`` is graceful: it stops accepting, lets requests in
flight finish, then has the core deliver what it accepted.
"""

from __future__ import annotations

import base64
import enum
import hmac
import json
import logging
import math
import socket
import ssl
import threading
import time
import zlib
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import grpc
from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError, Message
from google.rpc.code_pb2 import Code
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
    TraceServiceServicer,
    add_TraceServiceServicer_to_server,
)

from agentsight.bridge.core import BridgeCore, IngestResult
from agentsight.config import Settings
from agentsight.serving import write_response

logger = logging.getLogger("agentsight.bridge")

TRACES_PATH = "/v1/traces"
HEALTH_PATHS = ("/health", "/healthz")
DEFAULT_GRPC_PORT = 4317
DEFAULT_HTTP_PORT = 4318
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
"""Largest request body accepted as sent (compressed size), in bytes."""
DEFAULT_MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024
"""Largest request accepted once decompressed (and largest gRPC message), in bytes."""
DEFAULT_GRPC_WORKERS = 8
IDLE_TIMEOUT_SECONDS = 120.0
"""A kept-alive HTTP connection silent this long (or a request stalling this long) is closed."""
LINGER_SECONDS = 2.0
"""After refusing an unread body, how long its remaining bytes are read and discarded before closing."""
_READ_CHUNK = 256 * 1024
_INFLATE_CHUNK = 1024 * 1024


class Encoding(enum.Enum):
    """The OTLP/HTTP body encodings; a response uses its request's."""

    PROTOBUF = "application/x-protobuf"
    JSON = "application/json"

    @property
    def content_type(self) -> str:
        """The ``Content-Type`` this encoding is answered with."""
        return self.value


_CONTENT_TYPES = {
    "application/x-protobuf": Encoding.PROTOBUF,
    "application/protobuf": Encoding.PROTOBUF,
    "application/json": Encoding.JSON,
}
_ZLIB_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


class OtlpRequestError(Exception):
    """A request the receiver refuses: the HTTP status, the matching ``google.rpc`` (gRPC) code and a message.

    The only exception :func:`body_encoding` and :func:`decode_export_request` raise.
    """

    def __init__(
        self, status: HTTPStatus, message: str, code: int = Code.INVALID_ARGUMENT, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.retry_after = retry_after


def body_encoding(content_type: str | None) -> Encoding:
    """The body encoding named by a ``Content-Type`` header (parameters such as ``charset`` ignored)."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    try:
        return _CONTENT_TYPES[media_type]
    except KeyError:
        raise OtlpRequestError(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            f"unsupported content type {media_type or '(none)'!r}: use application/x-protobuf or application/json",
        ) from None


def decode_export_request(
    body: bytes, encoding: Encoding, content_encoding: str | None = None,
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
) -> ExportTraceServiceRequest:
    """Decompress and parse an OTLP/HTTP trace export body; raises only :class:`OtlpRequestError`."""
    data = decompress(body, content_encoding, max_decompressed_bytes)
    if encoding is Encoding.PROTOBUF:
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(data)
        except (DecodeError, RecursionError) as error:
            raise OtlpRequestError(HTTPStatus.BAD_REQUEST, f"malformed protobuf: {error}") from None
        return request
    return parse_otlp_json(data)


def decompress(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """``body`` decoded per ``Content-Encoding``, never holding more than ``limit`` + 1 decompressed bytes."""
    codings = [coding.strip().lower() for coding in (content_encoding or "").split(",") if coding.strip()]
    data = body
    for coding in reversed(codings):  # codings are listed in the order they were applied
        if coding == "identity":
            continue
        if coding not in _ZLIB_WBITS:
            raise OtlpRequestError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"unsupported content encoding {coding!r}")
        data = _inflate(data, _ZLIB_WBITS[coding], limit)
    if len(data) > limit:
        raise _too_large(f"request larger than {limit} bytes")
    return data


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
    """Incremental inflate bounded by ``limit`` (a compression bomb stops at ``limit`` + 1 bytes).

    Concatenated gzip members are decoded one after the other, as ``gzip`` itself does.
    """
    pieces: list[bytes] = []
    size = 0
    pending = data
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            while pending and not inflater.eof:
                piece = inflater.decompress(pending, min(_INFLATE_CHUNK, limit - size + 1))
                size += len(piece)
                if size > limit:
                    raise _too_large(f"request larger than {limit} bytes once decompressed")
                pieces.append(piece)
                pending = inflater.unconsumed_tail
        except zlib.error as error:
            raise OtlpRequestError(HTTPStatus.BAD_REQUEST, f"malformed compressed body: {error}") from None
        if not inflater.eof:
            raise OtlpRequestError(HTTPStatus.BAD_REQUEST, "truncated compressed body")
        pending = inflater.unused_data
        if not pending or wbits == zlib.MAX_WBITS:
            break
    if pending:
        raise OtlpRequestError(HTTPStatus.BAD_REQUEST, "data after the end of the compressed body")
    return b"".join(pieces)


def parse_otlp_json(data: bytes) -> ExportTraceServiceRequest:
    """An ``ExportTraceServiceRequest`` from OTLP/JSON: ids in hex, unknown fields ignored."""
    try:
        document = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise OtlpRequestError(HTTPStatus.BAD_REQUEST, f"malformed JSON: {error}") from None
    if not isinstance(document, dict):
        raise OtlpRequestError(HTTPStatus.BAD_REQUEST, "an OTLP/JSON request must be a JSON object")
    for holder in _id_holders(document):
        _hex_ids_to_base64(holder)
    try:
        return json_format.ParseDict(document, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except (json_format.Error, ValueError, TypeError, ArithmeticError, RecursionError) as error:
        raise OtlpRequestError(HTTPStatus.BAD_REQUEST, f"malformed OTLP/JSON: {error}") from None


def _reject_constant(name: str) -> Any:
    """``NaN`` and ``Infinity`` are not JSON (proto3 JSON writes such doubles as strings)."""
    raise ValueError(f"{name} is not valid JSON")


def _id_holders(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The spans and span links of an OTLP/JSON trace request (anything malformed is left to the parser)."""
    for resource_spans in _children(document, "resourceSpans", "resource_spans"):
        for scope_spans in _children(resource_spans, "scopeSpans", "scope_spans"):
            for span in _children(scope_spans, "spans"):
                yield span
                yield from _children(span, "links")


def _children(parent: dict[str, Any], *keys: str) -> Iterator[dict[str, Any]]:
    for key in keys:
        items = parent.get(key)
        if isinstance(items, list):
            yield from (item for item in items if isinstance(item, dict))


def _hex_ids_to_base64(holder: dict[str, Any]) -> None:
    """OTLP/JSON writes ids in hex where protobuf's JSON mapping expects base64: rewrite them in place."""
    for key in _ID_FIELDS:
        value = holder.get(key)
        if isinstance(value, str):
            try:
                holder[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
            except ValueError:
                raise OtlpRequestError(HTTPStatus.BAD_REQUEST, f"{key} is not a hex string: {value[:64]!r}") from None


def _too_large(message: str) -> OtlpRequestError:
    return OtlpRequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, message, Code.RESOURCE_EXHAUSTED)


def encode_message(message: Message, encoding: Encoding) -> bytes:
    """A protobuf message in the wire encoding of ``encoding``."""
    if encoding is Encoding.JSON:
        return json.dumps(json_format.MessageToDict(message), separators=(",", ":")).encode()
    return message.SerializeToString()


def export_response(result: IngestResult) -> ExportTraceServiceResponse:
    """The success answer for an ingest result: ``partial_success`` set when spans were rejected or warned of."""
    response = ExportTraceServiceResponse()
    if result.rejected_spans or result.error_message:
        response.partial_success.CopyFrom(
            ExportTracePartialSuccess(rejected_spans=result.rejected_spans, error_message=result.error_message)
        )
    return response


def refusal(result: IngestResult) -> OtlpRequestError | None:
    """The retryable error for a request the core refused for lack of room, else ``None``."""
    if result.rejected_spans and result.retry_after is not None:
        return OtlpRequestError(
            HTTPStatus.SERVICE_UNAVAILABLE,
            result.error_message or "no room: retry later",
            Code.UNAVAILABLE,
            retry_after=result.retry_after,
        )
    return None


def status_message(code: int, message: str, retry_after: float | None = None) -> Status:
    """A ``google.rpc.Status``, with a ``RetryInfo`` detail when a retry delay is known."""
    status = Status(code=code, message=message)
    if retry_after is not None:
        status.details.add().Pack(retry_info(retry_after))
    return status


def retry_info(seconds: float) -> RetryInfo:
    """``RetryInfo`` asking for a retry after ``seconds``."""
    whole = int(seconds)
    return RetryInfo(retry_delay=Duration(seconds=whole, nanos=int((seconds - whole) * 1e9)))


def bearer_token_matches(authorization: str | None, token: str | None) -> bool:
    """Whether an ``Authorization`` value carries ``token`` (always true when no token is configured).

    Compared in constant time; the scheme name is case-insensitive.
    """
    if token is None:
        return True
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), token.encode())


# OTLP/HTTP ---------------------------------------------------------------------------------------


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


class _OtlpHttpServer(ThreadingHTTPServer):
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

    server: _OtlpHttpServer
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
            raise _too_large(f"body of {length} bytes is larger than {limit} bytes")
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
                raise _too_large(f"chunked body larger than {limit} bytes")
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


# OTLP/gRPC ---------------------------------------------------------------------------------------


class _AbortStatus(namedtuple("_AbortStatus", ("code", "details", "trailing_metadata")), grpc.Status):
    """A ``grpc.Status`` for ``context.abort_with_status`` (what ``grpcio-status`` builds, without needing it)."""


_RPC_TO_GRPC_CODE = {code.value[0]: code for code in grpc.StatusCode}


class OtlpTraceService(TraceServiceServicer):
    """``opentelemetry.proto.collector.trace.v1.TraceService`` over a :class:`BridgeCore`."""

    def __init__(self, core: BridgeCore, token: str | None = None) -> None:
        self._core = core
        self._token = token

    def Export(  # noqa: N802 - the generated servicer's naming
        self, request: ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> ExportTraceServiceResponse:
        """Ingest one export request: UNAUTHENTICATED without the token, UNAVAILABLE while the queue is full."""
        if self._token is not None:
            metadata = {item.key: item.value for item in context.invocation_metadata() or ()}
            authorization = metadata.get("authorization")
            if not bearer_token_matches(authorization if isinstance(authorization, str) else None, self._token):
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        result = self._core.ingest(request)
        refused = refusal(result)
        if refused is not None:
            context.abort_with_status(grpc_status(refused))
        return export_response(result)


def grpc_status(error: OtlpRequestError) -> grpc.Status:
    """The gRPC status for a refusal, with ``RetryInfo`` where OTLP exporters look for it."""
    status = status_message(error.code, error.message, error.retry_after)
    metadata: tuple[tuple[str, bytes], ...] = (("grpc-status-details-bin", status.SerializeToString()),)
    if error.retry_after is not None:
        metadata += (("google.rpc.retryinfo-bin", retry_info(error.retry_after).SerializeToString()),)
    return _AbortStatus(_RPC_TO_GRPC_CODE[error.code], error.message, metadata)


# The bridge --------------------------------------------------------------------------------------


@dataclass
class _Running:
    core: BridgeCore
    http: _OtlpHttpServer | None
    http_thread: threading.Thread | None
    grpc: grpc.Server | None


class Bridge:
    """OTLP/gRPC and OTLP/HTTP receivers feeding one :class:`BridgeCore` that delivers to AgentSight.

    A port of 0 picks a free one (read the actual ``grpc_port``/``http_port`` after ``start()``); ``None``
    leaves that receiver off. ``start()`` after ``stop()`` listens again on the same ports with a fresh core.
    ``grace`` is how long a turn waits for model-call spans of its trace (``None``: the core's default,
    ``AGENTSIGHT_BRIDGE_GRACE`` or 2 s). With ``tls_cert_file`` and ``tls_key_file`` (PEM) both receivers
    speak TLS, as a Collector's ``bearertokenauth`` requires before it sends a token. Use as a context
    manager, or ``start()``/``stop()``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        grpc_port: int | None = DEFAULT_GRPC_PORT,
        http_port: int | None = DEFAULT_HTTP_PORT,
        token: str | None = None,
        settings: Settings | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
        grpc_workers: int = DEFAULT_GRPC_WORKERS,
        grace: float | None = None,
        tls_cert_file: str | None = None,
        tls_key_file: str | None = None,
    ) -> None:
        if (tls_cert_file is None) != (tls_key_file is None):
            raise ValueError("TLS needs both a certificate file and a key file")
        self.tls_cert_file = tls_cert_file
        self.tls_key_file = tls_key_file
        self.host = host
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.token = token or None
        self.settings = settings or Settings.resolve()
        self.max_body_bytes = max_body_bytes
        self.max_decompressed_bytes = max_decompressed_bytes
        self.grpc_workers = grpc_workers
        self.grace = grace
        self._running: _Running | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Bridge(host={self.host!r}, grpc_port={self.grpc_port}, http_port={self.http_port})"

    @property
    def core(self) -> BridgeCore:
        """The running core (raises before ``start()``)."""
        if self._running is None:
            raise RuntimeError("the bridge is not running")
        return self._running.core

    @property
    def http_endpoint(self) -> str:
        """The OTLP/HTTP traces URL (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` for ``http/protobuf``)."""
        return f"{self._scheme}://{_host_port(self.host, self.http_port)}{TRACES_PATH}"

    @property
    def grpc_endpoint(self) -> str:
        """The OTLP/gRPC endpoint (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` for ``grpc``)."""
        return f"{self._scheme}://{_host_port(self.host, self.grpc_port)}"

    @property
    def _scheme(self) -> str:
        return "https" if self.tls_cert_file else "http"

    def start(self) -> Bridge:
        """Listen on both receivers; raises ``OSError`` when a port cannot be bound."""
        with self._lock:
            if self._running is not None:
                raise RuntimeError("the bridge is already running")
            core = BridgeCore(self.settings, grace=self.grace)
            running = _Running(core, None, None, None)
            try:
                if self.http_port is not None:
                    running.http = _OtlpHttpServer(
                        (self.host, self.http_port), core, self.token, self.max_body_bytes, self.max_decompressed_bytes
                    )
                    self.http_port = running.http.server_address[1]
                    if self.tls_cert_file and self.tls_key_file:
                        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                        context.load_cert_chain(self.tls_cert_file, self.tls_key_file)
                        # The handshake happens in the request's thread, not in the accepting loop.
                        running.http.socket = context.wrap_socket(
                            running.http.socket, server_side=True, do_handshake_on_connect=False
                        )
                    running.http_thread = threading.Thread(
                        target=running.http.serve_forever, args=(0.1,), name="agentsight-bridge-http", daemon=True
                    )
                    running.http_thread.start()
                if self.grpc_port is not None:
                    running.grpc, self.grpc_port = self._start_grpc(core, self.grpc_port)
            except BaseException:
                self._stop_running(running, 0.0)
                raise
            self._running = running
            return self

    def _start_grpc(self, core: BridgeCore, port: int) -> tuple[grpc.Server, int]:
        server = grpc.server(
            ThreadPoolExecutor(max_workers=self.grpc_workers, thread_name_prefix="agentsight-bridge-grpc"),
            options=[
                ("grpc.so_reuseport", 0),  # a second bridge on the same port must fail, not share it
                ("grpc.max_receive_message_length", self.max_decompressed_bytes),
            ],
        )
        add_TraceServiceServicer_to_server(OtlpTraceService(core, self.token), server)
        address = _host_port(self.host, port)
        try:
            if self.tls_cert_file and self.tls_key_file:
                with open(self.tls_key_file, "rb") as key, open(self.tls_cert_file, "rb") as cert:
                    credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
                bound = server.add_secure_port(address, credentials)
            else:
                bound = server.add_insecure_port(address)
        except RuntimeError as error:  # grpcio raises RuntimeError when it cannot bind
            raise OSError(f"cannot listen for OTLP/gRPC on {address}: {error}") from None
        if not bound:
            raise OSError(f"cannot listen for OTLP/gRPC on {address}")
        server.start()
        return server, bound

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting, finish requests in flight, then deliver what was accepted (within ``timeout`` s)."""
        with self._lock:
            running, self._running = self._running, None
        if running is not None:
            self._stop_running(running, timeout)

    @staticmethod
    def _stop_running(running: _Running, timeout: float) -> None:
        deadline = time.monotonic() + timeout

        def remaining() -> float:
            return max(0.0, deadline - time.monotonic())

        grpc_stopped = running.grpc.stop(grace=timeout) if running.grpc is not None else None
        if running.http is not None:
            if running.http_thread is not None:
                running.http.shutdown()  # the accept loop ends
            running.http.server_close()
            if not running.http.connections.close(remaining()):
                logger.warning("OTLP/HTTP requests still in flight after %.1f s; stopping anyway", timeout)
        if grpc_stopped is not None:
            grpc_stopped.wait(remaining())
        running.core.shutdown(remaining())

    def __enter__(self) -> Bridge:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _host_port(host: str, port: int | None) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


__all__ = [
    "DEFAULT_GRPC_PORT",
    "DEFAULT_HTTP_PORT",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_DECOMPRESSED_BYTES",
    "Bridge",
    "Encoding",
    "OtlpRequestError",
    "OtlpHttpHandler",
    "OtlpTraceService",
    "body_encoding",
    "decode_export_request",
    "decompress",
    "parse_otlp_json",
]
