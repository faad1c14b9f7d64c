"""The data plane of ``agentsight dev``: the read-and-manage routes upstream 0.1.4's ``agentsight.api`` client
calls, over the dev store, in the shapes that client parses.

This module holds what the routes share (the page envelope, query values, bodies, the write-role check) and
the conversation and message routes; :mod:`agentsight.dev.data_plane_feedback` adds feedback and tickets,
:mod:`agentsight.dev.data_plane_usage` token usage, spans, traces and actions. Lists answer the envelope of
Django REST framework's ``ExtendedPageNumberPagination`` (``count``, ``page_size``, ``total_pages``,
``current_page``, ``next``, ``previous``, ``results``; ``page_size`` clamped to 100; a page past the end is
404 ``Invalid page.``); unknown query parameters are ignored, as upstream's API does. Errors have DRF's shapes:
404 ``{"detail": "Not found."}``, 400 ``{"field": ["message"]}``, 403 for a write with a ``read`` role.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Body, Request

from agentsight.dev import rest
from agentsight.dev.previews import attach_previews
from agentsight.dev.records import Records
from agentsight.dev.rest import ApiError, field_error
from agentsight.dev.store import DevStore, utc_iso

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_NAME = 255
MAX_ID = 2**63 - 1
NOT_FOUND = {"detail": "Not found."}
FORBIDDEN = {"detail": "You do not have permission to perform this action."}
ENVIRONMENT_ALIASES = {"production": "production", "development": "development", "prod": "production",
                       "dev": "development"}
"""The ``env``/``environment`` choices of the conversation and feedback routes, and what each selects."""
SENTIMENTS = ("positive", "neutral", "negative")
JsonBody = Annotated[dict[str, Any], Body()]

_CONVERSATION_ORDER = {"started_at": "c.created_at", "created_at": "c.created_at", "updated_at": "c.updated_at",
                       "name": "c.name", "id": "c.id", "conversation_id": "c.conversation_id"}
_UPDATABLE = ("name", "is_marked", "customer_id", "device", "language", "metadata")
_ITEM_LISTS = ("messages", "buttons", "actions", "attachments", "timeline", "archived")


@dataclass
class Plane:
    """What every data-plane route works on: the store, its data-plane tables and the key's role."""

    store: DevStore
    records: Records
    role: str

    def writable(self) -> None:
        """403 unless the key may write."""
        if self.role != "write":
            raise ApiError(403, FORBIDDEN)


def not_found() -> ApiError:
    """The 404 of an absent (or another agent's) row."""
    return ApiError(404, NOT_FOUND)


def flag(request: Request, name: str) -> bool | None:
    """A boolean query parameter (``None`` when absent or empty); 400 when it is not a boolean."""
    value = request.query_params.get(name)
    return None if value in (None, "") else rest.boolean(value, name)


def row_id(value: Any) -> int:
    """A row id from a query value or body field: ``-1`` (matching nothing) unless a positive 64-bit integer."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID:
        return -1
    return value


def moment(request: Request, name: str) -> str | None:
    """A date or datetime query parameter as stored (UTC ISO 8601); 400 when it is not one."""
    value = request.query_params.get(name)
    if not value:
        return None
    try:
        return utc_iso(value)
    except ValueError:
        raise field_error(name, "Enter a valid date/time.") from None


def choice(value: Any, choices: Any, name: str) -> Any:
    """``value`` when it is one of ``choices``; 400 naming ``name`` otherwise (DRF's message)."""
    if value not in choices:
        raise field_error(name, f'"{value}" is not a valid choice.')
    return value


def environment(request: Request) -> str | None:
    """The ``env`` (or ``environment``) filter of the conversation and feedback routes, as stored."""
    value = request.query_params.get("env") or request.query_params.get("environment")
    if not value or value == "all":  # "all": as /api/stats/ (upstream answers 400)
        return None
    return ENVIRONMENT_ALIASES[choice(value, ENVIRONMENT_ALIASES, "env")]


def ordering(request: Request, columns: dict[str, str], default: str) -> str:
    """``ORDER BY`` for ``?ordering=`` (comma-separated, ``-`` descending; unknown fields ignored, as DRF does)."""
    terms = []
    for field in (request.query_params.get("ordering") or "").split(","):
        name = field.strip().lstrip("-")
        if name in columns:
            terms.append(f"{columns[name]} {'DESC' if field.strip().startswith('-') else 'ASC'}")
    return " ORDER BY " + ", ".join(terms or [default])


def page(request: Request, count: Callable[[], int], rows: Callable[[int, int], list[dict[str, Any]]],
         **extra: Any) -> dict[str, Any]:
    """One page of a list as DRF's ``ExtendedPageNumberPagination`` answers it (``extra``: more envelope keys).

    ``rows(limit, offset)`` reads the page; 404 ``Invalid page.`` for a page that is not a positive number or
    lies past the last (page 1 always exists).
    """
    query = dict(request.query_params)
    try:
        number = int(query.get("page") or 1)
        size = max(1, min(int(query.get("page_size") or DEFAULT_PAGE_SIZE), MAX_PAGE_SIZE))
    except ValueError:
        raise ApiError(404, {"detail": "Invalid page."}) from None
    total = count()
    pages = max(1, math.ceil(total / size))
    if not 1 <= number <= pages:
        raise ApiError(404, {"detail": "Invalid page."})
    base = f"{request.url.scheme}://{request.headers.get('host', 'localhost')}{request.url.path}"

    def link(to: int) -> str:
        return f"{base}?{urlencode({**query, 'page': to, 'page_size': size})}"

    return {"count": total, "page_size": size, "total_pages": pages, "current_page": number,
            "next": link(number + 1) if number < pages else None,
            "previous": link(number - 1) if number > 1 else None,
            **extra, "results": rows(size, (number - 1) * size)}


def router(store: DevStore, role: str = "write") -> APIRouter:
    """The data-plane routes over ``store``; writes answer 403 unless ``role`` is ``write``."""
    from agentsight.dev import data_plane_feedback, data_plane_usage

    plane = Plane(store, Records(store), role)
    routes = APIRouter()
    _conversation_routes(routes, plane)
    _message_routes(routes, plane)
    data_plane_feedback.add_routes(routes, plane)
    data_plane_usage.add_routes(routes, plane)
    return routes


# Conversations -------------------------------------------------------------------------------------


def conversation_filter(request: Request) -> tuple[str, list[Any]]:
    """``WHERE`` (over ``c`` and its flags ``f``) and parameters for the conversation list's filters."""
    q = request.query_params
    clauses: list[str] = []
    params: list[Any] = []

    def add(clause: str, *values: Any) -> None:
        clauses.append(clause)
        params.extend(values)

    for name in ("conversation_id", "customer_id", "customer_ip_address", "device", "language"):
        if q.get(name):
            add(f"c.{name} = ?", q[name])
    for name, column in (("customer_id__icontains", "c.customer_id"), ("name", "c.name")):
        if q.get(name):
            add(f"{column} LIKE ?", f"%{q[name]}%")
    if (env := environment(request)) is not None:
        add("c.environment = ?", env)
    if (used := flag(request, "is_used")) is not None:
        add("c.is_used = ?", int(used))
    if (marked := flag(request, "is_marked")) is not None:
        add("COALESCE(f.is_marked, 0) = ?", int(marked))
    if not flag(request, "include_deleted"):
        add("f.deleted_at IS NULL")
    if sentiment := q.get("feedback_sentiment"):
        add("EXISTS (SELECT 1 FROM feedbacks b WHERE b.conversation = c.id AND b.sentiment = ?)",
            choice(sentiment, SENTIMENTS, "feedback_sentiment"))
    for name, exists in (("has_feedback", "SELECT 1 FROM feedbacks b WHERE b.conversation = c.id"),
                         ("has_action", "SELECT 1 FROM items i WHERE i.conversation = c.id AND i.kind = 'action'"),
                         ("has_messages", "SELECT 1 FROM items i WHERE i.conversation = c.id AND i.kind = 'message'")):
        if (wanted := flag(request, name)) is not None:
            add(f"{'' if wanted else 'NOT '}EXISTS ({exists})")
    if flag(request, "include_tickets"):
        add("EXISTS (SELECT 1 FROM tickets t WHERE t.conversation = c.id)")
    if q.get("action_name"):
        add("EXISTS (SELECT 1 FROM items i WHERE i.conversation = c.id AND i.kind = 'action' "
            "AND json_extract(i.body, '$.action_name') = ?)", q["action_name"])
    message_like = "EXISTS (SELECT 1 FROM items i WHERE i.conversation = c.id AND i.kind = 'message' " \
                   "AND json_extract(i.body, '$.content') LIKE ?)"
    if q.get("message_contains"):
        add(message_like, f"%{q['message_contains']}%")
    if q.get("search"):
        like = f"%{q['search']}%"
        add(f"(c.conversation_id LIKE ? OR c.name LIKE ? OR c.customer_id LIKE ? OR {message_like})",
            like, like, like, like)
    for name, operator in (("started_at_after", ">="), ("started_at_before", "<=")):
        if (when := moment(request, name)) is not None:
            add(f"c.created_at {operator} ?", when)
    if q.get("metadata_key"):
        if q.get("metadata_value"):
            add(f"EXISTS (SELECT 1 FROM {METADATA_ENTRIES} j WHERE j.key = ? AND CAST(j.value AS TEXT) = ?)",
                q["metadata_key"], q["metadata_value"])
        else:
            add(f"EXISTS (SELECT 1 FROM {METADATA_ENTRIES} j WHERE j.key = ?)", q["metadata_key"])
    if q.get("metadata"):
        for key, value in _metadata_filter(q["metadata"]).items():
            add(f"(SELECT j.value FROM {METADATA_ENTRIES} j WHERE j.key = ?) IS json_extract(?, '$')",
                key, rest_json(value))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


METADATA_ENTRIES = "json_each(CASE json_type(c.metadata) WHEN 'object' THEN c.metadata ELSE '{}' END)"
"""A conversation's top-level metadata entries (none unless its metadata is an object), matched by ``j.key = ?``:
a key is a bound parameter, as SQLite's JSON paths cannot spell every key (one holding ``"``, for one)."""


def rest_json(value: Any) -> str:
    """``value`` as JSON text (for comparing with ``json_extract``)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _metadata_filter(text: str) -> dict[str, Any]:
    """``?metadata=`` is a JSON object; a conversation matches when its metadata holds every key with that value
    (an assumption: upstream's client passes the value through without saying its form)."""
    try:
        parsed = rest.load_json(text.encode())
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise field_error("metadata", "Enter a JSON object.")
    return parsed


def _conversation_routes(routes: APIRouter, plane: Plane) -> None:
    records, store = plane.records, plane.store

    def find(pk: int) -> dict[str, Any]:
        found = records.conversations(" WHERE c.id = ?", [pk]) if pk <= 2**63 - 1 else []
        if not found:
            raise not_found()
        return found[0]

    @routes.get("/api/conversations/")
    def list_conversations(request: Request) -> dict[str, Any]:
        """Conversations, newest first, with upstream's filters, each with a ``preview`` and ``counts`` (what the
        dashboard lists); ``full=true`` adds their ``messages``, ``actions`` and ``feedbacks`` (upstream's API
        defaults a key to full; here the default is not, and both clients always send it), ``include_tickets``
        their ``tickets`` (and keeps only ticketed conversations)."""
        where, params = conversation_filter(request)
        full = bool(flag(request, "full"))
        tickets = bool(flag(request, "include_tickets"))
        order = ordering(request, _CONVERSATION_ORDER, "c.created_at DESC") + ", c.id DESC"

        def rows(limit: int, offset: int) -> list[dict[str, Any]]:
            found = records.conversations(where, params, f"{order} LIMIT ? OFFSET ?", [limit, offset])
            attach_previews(records.read, found)
            return _with_items(plane, found, full=full, tickets=tickets)

        return page(request, lambda: records.count_conversations(where, params), rows)

    @routes.get("/api/conversations/{pk:int}/")
    def get_conversation(pk: int, request: Request) -> dict[str, Any]:
        """One conversation (soft-deleted ones too): its items unless ``full=false``, with ``feedbacks``,
        ``tickets`` and ``token_usage`` always."""
        return conversation_detail(plane, find(pk)["id"], full=flag(request, "full") is not False)

    @routes.get("/api/conversations/{pk:int}/attachments/")
    def attachments(pk: int) -> dict[str, Any]:
        """The conversation's uploaded files (``attachments``: a list; the dev server signs no URLs)."""
        detail = store.get_conversation(find(pk)["id"]) or {}
        return {"conversation": pk, "attachments": detail.get("attachments", [])}

    @routes.get("/api/conversations/metadata-keys/")
    def metadata_keys() -> list[str]:
        """Every top-level conversation-metadata key recorded, sorted."""
        rows = records.read(f"SELECT DISTINCT j.key FROM conversations c, {METADATA_ENTRIES} j ORDER BY j.key")
        return [row[0] for row in rows]

    @routes.get("/api/conversations/metadata-values/")
    def metadata_values(key: str = "") -> list[Any]:
        """Every distinct value recorded for one conversation-metadata key (400 without ``key``)."""
        if not key:
            raise field_error("key", "This query parameter is required.")
        rows = records.read(f"SELECT DISTINCT j.value AS value FROM conversations c, {METADATA_ENTRIES} j "
                            "WHERE j.key = ? ORDER BY 1", [key])
        return [row["value"] for row in rows]

    @routes.get("/api/conversations/message-metadata-keys/")
    def message_metadata_keys() -> list[str]:
        """Every top-level message-metadata key recorded, sorted."""
        rows = records.read("SELECT DISTINCT j.key FROM items i, json_each(i.body, '$.metadata') j "
                            "WHERE i.kind = 'message' AND json_type(i.body, '$.metadata') = 'object' ORDER BY j.key")
        return [row[0] for row in rows]

    @routes.patch("/api/conversations/{pk:int}/rename/")
    def rename(pk: int, body: JsonBody) -> dict[str, Any]:
        """Set the display name (1 to 255 characters)."""
        plane.writable()
        return _update(plane, find(pk)["id"], {"name": body.get("name")})

    @routes.post("/api/conversations/{pk:int}/mark/")
    def mark(pk: int, body: JsonBody) -> dict[str, Any]:
        """Flag (``is_marked``, default true) or unflag."""
        plane.writable()
        return _update(plane, find(pk)["id"], {"is_marked": body.get("is_marked", True)})

    @routes.patch("/api/conversations/{pk:int}/update/")
    @routes.patch("/api/conversations/{pk:int}/")
    def update(pk: int, body: JsonBody) -> dict[str, Any]:
        """Change ``name``, ``is_marked``, ``customer_id``, ``device``, ``language`` or ``metadata`` (replaced);
        other fields are read-only and ignored, as DRF does."""
        plane.writable()
        return _update(plane, find(pk)["id"], {k: v for k, v in body.items() if k in _UPDATABLE})

    @routes.delete("/api/conversations/{pk:int}/delete/", status_code=204)
    @routes.delete("/api/conversations/{pk:int}/", status_code=204)
    def delete(pk: int) -> None:
        """Soft delete: out of lists unless ``include_deleted``, still readable and manageable by id."""
        plane.writable()
        records.set_flags(find(pk)["id"], deleted_at=utc_iso())


def _update(plane: Plane, pk: int, fields: dict[str, Any]) -> dict[str, Any]:
    """Validate and write conversation fields; answers the conversation row."""
    if not fields:
        raise ApiError(400, {"non_field_errors": ["No field to update."]})
    columns: dict[str, Any] = {}
    for name, value in fields.items():
        if name == "is_marked":
            plane.records.set_flags(pk, is_marked=rest.boolean(value, name))
        elif name == "metadata":
            if not isinstance(value, dict):
                raise field_error(name, "Expected a dictionary of items.")
            columns[name] = rest_json(value)
        else:
            text = rest.text(value, name)
            if name == "name" and not (text or "").strip():
                raise field_error(name, "This field may not be blank.")
            if text is not None and len(text) > MAX_NAME:
                raise field_error(name, f"Ensure this field has no more than {MAX_NAME} characters.")
            columns[name] = text.strip() if name == "name" and text else text
    if columns:
        plane.records.execute(f"UPDATE conversations SET {''.join(f'{k} = ?, ' for k in columns)}updated_at = ? "
                              "WHERE id = ?", [*columns.values(), utc_iso(), pk])
    return plane.records.conversations(" WHERE c.id = ?", [pk])[0]


def _with_items(plane: Plane, conversations: list[dict[str, Any]], *, full: bool, tickets: bool
                ) -> list[dict[str, Any]]:
    """List rows with their ``messages``, ``actions`` and ``feedbacks`` (``full``) and ``tickets``."""
    if not conversations:
        return conversations
    by_id = {conversation["id"]: conversation for conversation in conversations}
    marks = ", ".join("?" * len(by_id))
    if full:
        for conversation in conversations:
            conversation.update(messages=[], actions=[], feedbacks=[])
        for item in plane.store._items(f"conversation IN ({marks}) AND kind IN ('message', 'action')", list(by_id)):
            by_id[item["conversation"]]["messages" if item["kind"] == "message" else "actions"].append(item)
        for feedback in plane.records.feedbacks(f" WHERE f.conversation IN ({marks})", list(by_id), " ORDER BY f.id"):
            by_id[feedback["conversation"]]["feedbacks"].append(feedback)
    if tickets:
        for conversation in conversations:
            conversation["tickets"] = []
        for ticket in plane.records.tickets(f" WHERE t.conversation IN ({marks})", list(by_id), " ORDER BY t.id"):
            by_id[ticket["conversation"]["id"]]["tickets"].append(ticket)
    return conversations


def conversation_detail(plane: Plane, pk: int, *, full: bool = True) -> dict[str, Any]:
    """``GET /api/conversations/{pk}/``: the store's detail (items, timeline, ``tokens``) unless not ``full``,
    the row's flags, ``feedbacks`` (oldest first; each message also carries its vote as ``feedback``),
    ``tickets`` (with comments) and ``token_usage`` (``None`` when nothing was recorded)."""
    from agentsight.dev.data_plane_usage import token_usage

    records = plane.records
    detail = plane.store.get_conversation(pk) or {}
    if not full:
        detail = {key: value for key, value in detail.items() if key not in _ITEM_LISTS}
    detail.update(records.conversations(" WHERE c.id = ?", [pk])[0])
    detail["feedbacks"] = records.feedbacks(" WHERE f.conversation = ?", [pk], " ORDER BY f.id")
    votes = {feedback["message"]: feedback for feedback in detail["feedbacks"] if feedback["message"] is not None}
    for message in detail.get("messages", ()):
        message["feedback"] = votes.get(message["id"])
    detail["tickets"] = records.tickets(" WHERE t.conversation = ?", [pk], " ORDER BY t.id")
    detail["token_usage"] = token_usage(records, pk)
    return detail


# Messages ------------------------------------------------------------------------------------------


def message(plane: Plane, pk: int) -> dict[str, Any]:
    """One message item with its vote (``feedback``); 404 when there is no message ``pk``."""
    found = plane.store._items("id = ? AND kind = 'message'", [pk]) if pk <= 2**63 - 1 else []
    if not found:
        raise not_found()
    votes = plane.records.feedbacks(" WHERE f.message = ?", [pk])
    return {**found[0], "metadata": found[0].get("metadata") or {}, "feedback": votes[0] if votes else None}


def _message_routes(routes: APIRouter, plane: Plane) -> None:
    @routes.get("/api/track/{pk:int}/")
    def get_message(pk: int) -> dict[str, Any]:
        """One message: content, sender, timestamp, metadata and its vote."""
        return message(plane, pk)

    @routes.patch("/api/track/{pk:int}/")
    def update_message(pk: int, body: JsonBody) -> dict[str, Any]:
        """Replace a message's ``metadata`` (the one field the data plane edits)."""
        plane.writable()
        message(plane, pk)
        if not isinstance(body.get("metadata"), dict):
            raise field_error("metadata", "Expected a dictionary of items.")
        plane.records.execute("UPDATE items SET body = json_set(body, '$.metadata', json(?)) WHERE id = ?",
                              [rest_json(body["metadata"]), pk])
        return message(plane, pk)
