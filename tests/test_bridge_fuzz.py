"""Property-based fuzzing of the bridge's OTLP/HTTP decoding path.

Whatever arrives (random bytes, random content types and encodings, truncated or corrupted valid
protobuf, random JSON, OTLP-shaped JSON with wrong values), decoding raises nothing but
``OtlpRequestError`` with a 4xx status, what decodes also goes through the core's span decoding, and
the live handler answers 2xx or 4xx, never 5xx, on a connection that stays usable.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import zlib
from collections.abc import Iterator

import pytest
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from agentsight.bridge.codec import Encoding, OtlpRequestError, body_encoding, decode_export_request
from agentsight.bridge.otlp import decode_request
from agentsight.bridge.server import Bridge
from agentsight.config import Settings
from agentsight.spans import semconv as sc

LIMIT = 1 << 20
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KNOWN_TYPES = ["application/x-protobuf", "application/json", "application/protobuf", "application/json; charset=utf-8",
               "APPLICATION/X-PROTOBUF", "text/plain", "", "application/grpc"]
KNOWN_CODINGS = [None, "", "gzip", "x-gzip", "deflate", "identity", "gzip, identity", "deflate, gzip", "br", "zstd"]
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
content_types = st.sampled_from(KNOWN_TYPES) | st.text(max_size=30)
content_codings = st.sampled_from(KNOWN_CODINGS) | st.text(max_size=20)

# Valid requests, built from random spans -------------------------------------------------------

scalar_values = st.one_of(
    st.builds(AnyValue, string_value=st.text(max_size=20)),
    st.builds(AnyValue, int_value=st.integers(-(2**63), 2**63 - 1)),
    st.builds(AnyValue, double_value=st.floats(allow_nan=False)),  # NaN != NaN: no round trips
    st.builds(AnyValue, bool_value=st.booleans()),
    st.builds(AnyValue, bytes_value=st.binary(max_size=16)),
    st.just(AnyValue()),
)
any_values = st.recursive(scalar_values, lambda children: st.one_of(
    st.builds(lambda items: AnyValue(array_value=ArrayValue(values=items)), st.lists(children, max_size=3)),
    st.builds(lambda items: AnyValue(kvlist_value=KeyValueList(values=items)),
              st.lists(st.builds(KeyValue, key=st.text(max_size=8), value=children), max_size=3)),
), max_leaves=8)
attribute_keys = st.sampled_from([sc.CONVERSATION_ID, sc.MESSAGE_CONTENT, sc.METADATA, sc.IS_USED, "http.method"])
attribute_keys |= st.text(max_size=12)
attributes = st.lists(st.builds(KeyValue, key=attribute_keys, value=any_values), max_size=4)
events = st.builds(Span.Event, name=st.sampled_from([sc.MESSAGE_EVENT, sc.BUTTON_EVENT, sc.TOKEN_USAGE_EVENT, "x"]),
                   time_unix_nano=st.integers(0, 2**64 - 1), attributes=attributes)
spans = st.builds(
    Span, name=st.sampled_from([sc.CONVERSATION_SPAN, "GET /", "chat gpt-4o"]) | st.text(max_size=12),
    trace_id=st.binary(max_size=16), span_id=st.binary(max_size=8), start_time_unix_nano=st.integers(0, 2**64 - 1),
    end_time_unix_nano=st.integers(0, 2**64 - 1), attributes=attributes, events=st.lists(events, max_size=3),
)
requests = st.builds(lambda items: ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[
    ScopeSpans(spans=items)])]), st.lists(spans, max_size=4))

# JSON: anything, and OTLP-shaped documents with arbitrary values ----------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
hex_ids = st.binary(max_size=16).map(bytes.hex)
span_documents = st.fixed_dictionaries({}, optional={
    "traceId": hex_ids | json_values, "spanId": hex_ids | json_values, "parentSpanId": hex_ids,
    "name": st.just(sc.CONVERSATION_SPAN) | json_values, "kind": st.integers(-5, 10) | json_values,
    "startTimeUnixNano": st.integers(0, 2**64 - 1).map(str) | json_values,
    "attributes": st.lists(st.fixed_dictionaries({"key": st.text(max_size=8), "value": st.dictionaries(
        st.sampled_from(["stringValue", "intValue", "boolValue", "arrayValue", "bytesValue"]), json_values,
        max_size=2)}), max_size=3) | json_values,
    "links": st.lists(st.fixed_dictionaries({}, optional={"traceId": hex_ids | json_values}), max_size=2),
    "unknownField": json_values,
})
otlp_documents = st.fixed_dictionaries({"resourceSpans": st.lists(st.fixed_dictionaries({"scopeSpans": st.lists(
    st.fixed_dictionaries({"spans": st.lists(span_documents, max_size=3)}), max_size=2)}), max_size=2)})


def decode(body: bytes, content_type: str | None, content_encoding: str | None) -> ExportTraceServiceRequest | None:
    """The HTTP decoding path; ``None`` for a refusal, which must be a 4xx ``OtlpRequestError``."""
    try:
        request = decode_export_request(body, body_encoding(content_type), content_encoding, LIMIT)
    except OtlpRequestError as error:
        assert 400 <= error.status < 500 and error.message
        return None
    list(decode_request(request))  # what the core does first with every accepted request
    return request


@FUZZ
@given(body=st.binary(max_size=512), content_type=content_types, content_encoding=content_codings)
def test_random_bytes(body: bytes, content_type: str, content_encoding: str | None) -> None:
    decode(body, content_type, content_encoding)


@FUZZ
@given(request=requests, cut=st.floats(0, 1), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)),
                                                              max_size=3), compress=st.booleans())
def test_truncated_or_corrupted_protobuf(
    request: ExportTraceServiceRequest, cut: float, flips: list[tuple[float, int]], compress: bool
) -> None:
    data = bytearray(request.SerializeToString())
    assert decode(bytes(data), "application/x-protobuf", None) == request, "intact requests round-trip"
    for where, mask in flips:
        if data:
            data[int(where * (len(data) - 1))] ^= mask
    body = bytes(data[: int(cut * len(data))])
    decode(gzip.compress(body) if compress else body, "application/x-protobuf", "gzip" if compress else None)


@FUZZ
@given(body=st.binary(max_size=256), cut=st.floats(0, 1), coding=st.sampled_from(["gzip", "deflate"]))
def test_truncated_or_corrupted_compression(body: bytes, cut: float, coding: str) -> None:
    compressed = gzip.compress(body) if coding == "gzip" else zlib.compress(body)
    decode(compressed[: int(cut * len(compressed))], "application/x-protobuf", coding)
    decode(compressed + compressed[: int(cut * len(compressed))], "application/x-protobuf", coding)


@FUZZ
@given(document=json_values | otlp_documents)
@example(document={"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": float("inf")}]}]}]})  # found by fuzzing
@example(document={"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": 1e300}]}]}]})
def test_random_json(document: object) -> None:
    decode(json.dumps(document).encode(), "application/json", None)


@FUZZ
@given(request=requests)
def test_otlp_json_of_valid_requests_round_trips(request: ExportTraceServiceRequest) -> None:
    document = json_format.MessageToDict(request)
    for resource_spans in document.get("resourceSpans", []):  # OTLP/JSON writes ids in hex, not base64
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for key in ("traceId", "spanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    body = json.dumps(document).encode()
    assert decode(body, "application/json", None) == request


# The live handler --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    """A bridge without delivery (no API key): only the transport and the core's span handling run."""
    bridge = Bridge(grpc_port=None, http_port=0, settings=Settings.resolve(api_key=""), grace=0.0,
                    max_body_bytes=64 * 1024, max_decompressed_bytes=LIMIT).start()
    yield bridge.http_port  # type: ignore[misc]
    bridge.stop(timeout=5)


@pytest.fixture(scope="module")
def connection(port: int) -> Iterator[http.client.HTTPConnection]:
    """One kept-alive client connection (reopened by ``http.client`` when the bridge closes it)."""
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    yield client
    client.close()


@FUZZ
@given(
    body=st.binary(max_size=512) | requests.map(ExportTraceServiceRequest.SerializeToString),
    content_type=st.sampled_from(KNOWN_TYPES) | HEADER_TEXT,
    content_encoding=st.sampled_from([coding for coding in KNOWN_CODINGS if coding]) | HEADER_TEXT,
    compress=st.booleans(),
    path=st.sampled_from(["/v1/traces", "/v1/traces?x=1", "/health", "/v1/logs", "/"]),
    method=st.sampled_from(["POST", "POST", "GET", "PUT"]),
)
def test_handler_answers_4xx_or_2xx(
    connection: http.client.HTTPConnection, body: bytes, content_type: str, content_encoding: str, compress: bool,
    path: str, method: str,
) -> None:
    if compress:
        body, content_encoding = gzip.compress(body), "gzip"
    connection.request(method, path, body, {"Content-Type": content_type, "Content-Encoding": content_encoding})
    response = connection.getresponse()
    answer = response.read()
    assert 200 <= response.status < 500 and response.status not in (204, 301, 302), response.status
    answered_type = response.getheader("Content-Type")
    if answered_type == Encoding.PROTOBUF.content_type:
        (ExportTraceServiceResponse if response.status == 200 else Status).FromString(answer)
    else:
        assert answered_type == "application/json" and isinstance(json.loads(answer), dict)
