"""The ``agentsight dev`` API as a FastAPI application over a :class:`~agentsight.dev.store.DevStore`.

Ingestion paths, bodies and answers are those of the AgentSight API (docs/wire.md: the 0.0.x REST payloads and
the 0.1.x ``POST /api/ingest/``); reads, stats, ``GET /api/me/`` and the conversation lookup serve the
dashboard and the SDKs. Every ``/api/`` request needs ``Authorization: Api-Key <key>`` with a well-formed
key (401; 403 on ``/api/ingest/``, as upstream). Every error body has Django REST framework's shape, and an
unexpected error is logged and answered 500 ``{"detail": "Internal error."}``. ``GET /`` serves
``dashboard.html`` and ``GET /health`` answers 200, both without a key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentsight.config import API_KEY_PATTERN
from agentsight.dev import data_plane, ingest, integration, rest, stats
from agentsight.dev.models import IngestAnswer, IngestRequest, InvalidBlocks, LookupAnswer, MeAnswer, inline_schema
from agentsight.dev.rest import ApiError
from agentsight.dev.stats_models import IntegrationAnswer, StatsAnswer
from agentsight.dev.store import CONVERSATION_FIELDS, DevStore, UnknownConversationError
from agentsight.export.payloads import PATHS

logger = logging.getLogger("agentsight.dev")

DASHBOARD = Path(__file__).with_name("dashboard.html")
PLACEHOLDER = "<!doctype html><title>AgentSight dev</title><p>AgentSight dev server: dashboard.html is missing.</p>"
MAX_BODY_BYTES = 16 * 1024 * 1024
"""Largest request body (as sent, before any gzip is inflated): past it the answer is 413."""
BODY_TIMEOUT = 30.0
"""Seconds a request body may stall (nothing arriving) before the answer is 408."""
CLOSE = {"Connection": "close"}
"""Headers of the 408 answer: the connection closes (an oversized body is read on and discarded instead, so
its sender, still sending, gets the 413 rather than a reset connection)."""
MAX_ID = 2**63 - 1
INGEST_PATH = "/api/ingest/"
NOT_FOUND = {"detail": "Not found."}
ENVIRONMENTS = [{"slug": "production"}, {"slug": "development"}]
RECEIVED = "received"
"""``request.state`` attribute holding the decoded body and files, for the server's request record."""

_INGEST_BODY = {"requestBody": {"content": {"application/json": {"schema": inline_schema(IngestRequest)}},
                                 "required": True}}
_FIELD_SCHEMAS: dict[str, dict[str, Any]] = {
    "conversation": {"type": "integer", "minimum": 1},
    "is_used": {"type": "boolean"},
    "metadata": {"type": ["object", "null"]},
    "timestamp": {"type": "string", "format": "date-time"},
    "duration_ms": {"type": ["number", "null"]},
    "tools_used": {},
    **{name: {"enum": list(choices)} for name, choices in rest.CHOICES.items()},
    "attachments": {"type": "array", "items": {"type": "object", "required": ["filename", "mime_type", "data"],
                                               "properties": {"filename": {"type": "string"},
                                                              "mime_type": {"type": "string"},
                                                              "data": {"type": "string", "format": "byte"}}}},
}
"""JSON schemas of the REST body fields (others are text), for ``/openapi.json``."""


def _rest_body(path: str) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of a REST path: its required and known fields."""
    kind = rest.ITEM_KINDS.get(path)
    known = rest.ITEM_FIELDS[kind] if kind else (*CONVERSATION_FIELDS, "is_used")
    names = dict.fromkeys((*rest.REQUIRED_FIELDS[path], *known, "metadata", "timestamp",
                           *(("attachments",) if kind == "attachments" else ())))
    schema = {"type": "object", "required": list(rest.REQUIRED_FIELDS[path]),
              "properties": {name: _FIELD_SCHEMAS.get(name, {"type": "string"}) for name in names}}
    return {"requestBody": {"content": {"application/json": {"schema": schema},
                                        "multipart/form-data": {"schema": {"type": "object"}}}, "required": True}}


def create_app(store: DevStore, *, role: str = "write", capabilities: Sequence[str] = ("gzip-ingest",)) -> FastAPI:
    """The API over ``store``; ``GET /api/me/`` answers ``role`` and ``capabilities``."""
    app = FastAPI(title="agentsight dev", description="A local AgentSight-compatible API", version="1")
    me = MeAnswer(role=role, agent_id=1, agent_name="agentsight dev", environments=ENVIRONMENTS,
                  capabilities=list(capabilities))

    app.add_middleware(_AuthorizeAndGuard)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(InvalidBlocks, _invalid_blocks)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.include_router(data_plane.router(store, role))  # the data plane: conversations, feedback, tickets...

    @app.get("/", include_in_schema=False)
    @app.get("/index.html", include_in_schema=False)
    def dashboard() -> HTMLResponse:
        page = DASHBOARD.read_text(encoding="utf-8") if DASHBOARD.is_file() else PLACEHOLDER
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness: 200 while serving (no key needed)."""
        return {"status": "ok"}

    @app.post(PATHS["conversation"], status_code=201, openapi_extra=_rest_body(PATHS["conversation"]))
    async def post_conversation(request: Request) -> JSONResponse:
        """Get-or-create a conversation by ``conversation_id`` (docs/wire.md); answers it with its server ``id``."""
        body, _ = await _decoded(request)
        clean = rest.validated(PATHS["conversation"], body)
        return JSONResponse(store.upsert_conversation(clean), 201)

    async def post_item(request: Request) -> JSONResponse:
        path = request.url.path
        body, files = await _decoded(request)
        clean = rest.validated(path, body)
        stored, usage = rest.item(rest.ITEM_KINDS[path], clean, files)
        rest.check_reference(store, clean)
        try:
            item_id = store.add_item(rest.ITEM_KINDS[path], clean["conversation"], clean["timestamp"], stored, usage)
        except UnknownConversationError:
            raise rest.invalid_pk(clean["conversation"]) from None
        return JSONResponse({"id": item_id, "conversation": clean["conversation"], **stored}, 201)

    for path, kind in rest.ITEM_KINDS.items():
        app.add_api_route(path, post_item, methods=["POST"], status_code=201, openapi_extra=_rest_body(path),
                          name=f"post_{kind}", summary=f"Post a {kind} item (docs/wire.md)")

    @app.post(INGEST_PATH, response_model=IngestAnswer, openapi_extra=_INGEST_BODY)
    async def post_ingest(request: Request) -> IngestAnswer:
        """Store a document of conversation blocks and their spans (plain JSON or ``Content-Encoding: gzip``)."""
        raw = await _body(request)
        document_bytes = await run_in_threadpool(ingest.inflate, raw, request.headers.get("content-encoding", ""))
        document = await run_in_threadpool(ingest.load_document, document_bytes)
        setattr(request.state, RECEIVED, (document, {}))
        blocks = await run_in_threadpool(ingest.validate_document, document)
        await run_in_threadpool(ingest.store_blocks, store, blocks)
        return IngestAnswer(accepted=sum(len(block.spans) for block in blocks), conversations=len(blocks))

    @app.get("/api/me/", response_model=MeAnswer)
    def get_me() -> MeAnswer:
        """What the key may do: role, agent, environments and capabilities."""
        return me

    @app.get(PATHS["conversation"] + "lookup/", response_model=LookupAnswer)
    async def lookup_conversation(conversation_id: str) -> LookupAnswer:
        """The server id of the conversation with this client ``conversation_id``."""
        found = await run_in_threadpool(store.find_conversation, conversation_id)
        if found is None:
            raise ApiError(404, NOT_FOUND)
        return LookupAnswer(id=found["id"], conversation_id=found["conversation_id"])

    @app.get("/api/stats/", response_model=StatsAnswer)
    async def get_stats(environment: str | None = None, date_from: str | None = Query(None, alias="from"),
                        date_to: str | None = Query(None, alias="to"), breakdown: str | None = None,
                        segment: str | None = None) -> dict[str, Any]:
        """AgentSight's dashboard metrics (``StatsAnswer``) of one ``environment`` (default ``production``, as
        AgentSight's analytics; ``all``: every one) and dates ``from``/``to`` (ISO, inclusive, UTC); engagement
        by any conversation metadata key (``breakdown``) and by customer segment (``segment``)."""
        where = _stats_scope(environment, date_from, date_to)
        return await run_in_threadpool(stats.compute, store, where, breakdown or None, segment or None)

    @app.get("/api/stats/integration/", response_model=IntegrationAnswer)
    async def get_integration(environment: str | None = None, date_from: str | None = Query(None, alias="from"),
                              date_to: str | None = Query(None, alias="to")) -> dict[str, Any]:
        """Which metrics receive data (same filters as ``/api/stats/``), and for each empty one what feeds it."""
        return await run_in_threadpool(integration.check, store, _stats_scope(environment, date_from, date_to))

    return app


class _AuthorizeAndGuard:
    """ASGI middleware: refuses ``/api/`` requests without a well-formed key, and answers an exception that
    escaped a route 500 ``{"detail": "Internal error."}`` (logged) instead of dropping the connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path.startswith("/api/"):
            refused = _refusal(Headers(scope=scope).get("authorization", ""))
            if refused is not None:
                await JSONResponse(refused, 403 if path == INGEST_PATH else 401)(scope, receive, send)
                return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ClientDisconnect:
            return  # gone before its body arrived: nobody to answer
        except Exception:
            logger.exception("agentsight dev: %s %s failed", scope["method"], path)
            if started:
                raise
            await JSONResponse({"detail": "Internal error."}, 500)(scope, receive, send)


def _refusal(authorization: str) -> dict[str, str] | None:
    """The error body for a missing or malformed ``Api-Key`` header; ``None`` when it is well-formed."""
    if not authorization:
        return {"detail": "Authentication credentials were not provided."}
    if not authorization.startswith("Api-Key ") or not API_KEY_PATTERN.match(authorization[len("Api-Key "):].strip()):
        return {"detail": "Invalid API key."}
    return None


async def _body(request: Request) -> bytes:
    """The request body, refused with 413 past :data:`MAX_BODY_BYTES` (without reading all of it) and with 408
    when it stalls for :data:`BODY_TIMEOUT` seconds (a ``Content-Length`` larger than what is sent)."""
    too_large = ApiError(413, {"detail": f"Request body larger than {MAX_BODY_BYTES} bytes."})
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    chunks = bytearray()
    stream = request.stream()
    while True:
        try:
            chunk = await asyncio.wait_for(anext(stream), BODY_TIMEOUT)
        except StopAsyncIteration:
            return bytes(chunks)
        except asyncio.TimeoutError:
            raise ApiError(408, {"detail": f"Request body not received within {BODY_TIMEOUT:g} s."}, CLOSE) from None
        chunks += chunk
        if len(chunks) > MAX_BODY_BYTES:
            raise too_large


async def _decoded(request: Request) -> tuple[dict[str, Any], rest.Files]:
    """A REST body decoded (JSON or multipart), kept on the request for the server's record; 400 if it cannot be."""
    raw = await _body(request)
    try:
        body, files = rest.decode_body(request.headers.get("content-type", ""), raw)
    except ValueError as error:
        raise ApiError(400, {"detail": f"JSON parse error - {error}"}) from None
    setattr(request.state, RECEIVED, (body, files))
    return body, files


def _stats_scope(environment: str | None, date_from: str | None, date_to: str | None) -> stats.Scope:
    """The stats filters of the query, or a 400 naming the parameter that is not an ISO date."""
    for name, value in (("from", date_from), ("to", date_to)):
        try:
            stats.scope(None, value, None)
        except ValueError:
            raise rest.field_error(name, "Date has wrong format. Use one of these formats instead: YYYY-MM-DD.") \
                from None
    try:
        return stats.scope(environment, date_from, date_to)
    except ValueError as error:
        raise rest.field_error("to", str(error)) from None


# Error answers, all in Django REST framework's shape ---------------------------------------------------


async def _api_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    return JSONResponse(error.body, error.status, headers=error.headers)


async def _invalid_blocks(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, InvalidBlocks)
    return JSONResponse(error.answer, 400)


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    if error.status_code == 404:
        return JSONResponse(NOT_FOUND, 404)
    if error.status_code == 405:
        return JSONResponse({"detail": f'Method "{request.method}" not allowed.'}, 405, headers=error.headers)
    return JSONResponse({"detail": str(error.detail)}, error.status_code, headers=error.headers)


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    fields: dict[str, list[str]] = {}
    for entry in error.errors():
        fields.setdefault(str(entry["loc"][-1]) if entry["loc"] else "non_field_errors", []).append(entry["msg"])
    return JSONResponse(fields, 400)
