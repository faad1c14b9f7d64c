"""The OTLP/gRPC receiver: ``opentelemetry.proto.collector.trace.v1.TraceService/Export`` over a core.

It answers UNAUTHENTICATED without the configured bearer token, and UNAVAILABLE with ``RetryInfo`` (both
as ``google.rpc.retryinfo-bin``, which the Python exporter reads, and inside ``grpc-status-details-bin``)
when the request's conversations were not delivered in time or there is no room for them: both are what
OTLP exporters retry. The wait for delivery ends before the caller's own deadline.
"""

from __future__ import annotations

from collections import namedtuple

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceServicer

from agentsight.bridge.codec import (
    OtlpRequestError,
    bearer_token_matches,
    export_response,
    refusal,
    retry_info,
    status_message,
)
from agentsight.bridge.core import BridgeCore

DEADLINE_MARGIN_SECONDS = 0.5
"""How long before the caller's deadline a request still waiting for delivery is answered UNAVAILABLE."""


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
        """Answer a request once the core settled it: UNAUTHENTICATED without the token, UNAVAILABLE to retry."""
        if self._token is not None:
            metadata = {item.key: item.value for item in context.invocation_metadata() or ()}
            authorization = metadata.get("authorization")
            if not bearer_token_matches(authorization if isinstance(authorization, str) else None, self._token):
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        remaining = context.time_remaining()
        result = self._core.ingest(request, None if remaining is None else remaining - DEADLINE_MARGIN_SECONDS)
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


