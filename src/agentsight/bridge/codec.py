"""OTLP trace requests in and answers out, as the OTLP specification's receiver rules want them.

- Bodies: ``application/x-protobuf`` or ``application/json`` (OTLP/JSON: hex trace and span ids,
  unknown fields ignored), optionally ``gzip``/``deflate`` compressed, inflated within a bound (a
  compression bomb stops there).
- Answers: an ``ExportTraceServiceResponse`` (``partial_success`` when spans were rejected), or a
  refusal (:class:`OtlpRequestError`: the HTTP status, the ``google.rpc`` code, a message and, for a
  retryable one, the delay) carried as a ``google.rpc.Status``, with ``RetryInfo`` when a delay is known.

Both receivers (:mod:`agentsight.bridge.otlp_http`, :mod:`agentsight.bridge.otlp_grpc`) use these.
"""

from __future__ import annotations

import base64
import enum
import hmac
import json
import zlib
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

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

from agentsight.bridge.core import IngestResult

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
"""Largest request body accepted as sent (compressed size), in bytes."""
DEFAULT_MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024
"""Largest request accepted once decompressed (and largest gRPC message), in bytes."""
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
        raise too_large(f"request larger than {limit} bytes")
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
                    raise too_large(f"request larger than {limit} bytes once decompressed")
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


def too_large(message: str) -> OtlpRequestError:
    """A 413 (gRPC RESOURCE_EXHAUSTED) refusal."""
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
    """The retryable error (503, UNAVAILABLE) for a request the core did not take or settle in time, else ``None``."""
    if result.retry_after is not None:
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

