"""Token usage, spans, traces and actions on the ``agentsight dev`` data plane (``/api/token-usage/``,
``/api/spans/``, ``/api/traces/``, ``/api/actions/``), as upstream 0.1.4's ``ags.usage``, ``ags.spans`` and
``ags.actions`` call them.

A conversation's spend summary prices its model calls as ``GET /api/stats/`` does (genai-prices); the usage
list and its roll-ups price nothing: every row is ``cost_source: "unpriced"`` with ``cost_usd`` ``"0.00000000"``
(a string on rows, a number in summaries, as upstream), and ``cost_eur`` is absent (no exchange rate). A row is
one model call (or one seed ``token_usage`` action), not upstream's (turn, model) aggregate: ``calls`` is 1 and
``turn_id`` ``null``. Token sums are those ``GET /api/stats/`` reports: the same ``usage`` table, every
conversation counted (soft-deleted ones too). Spans exist for what arrived on the ingest wire; the REST wire
sends none, so its conversations have no spans here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request

from agentsight.dev import pricing
from agentsight.dev.data_plane import JsonBody, Plane, choice, flag, moment, not_found, ordering, page, row_id
from agentsight.dev.pricing import Tokens
from agentsight.dev.rest import ApiError, field_error
from agentsight.dev.store import TOKEN_KEYS, utc_iso

ZERO_COST = "0.00000000"
CURRENCIES = ("usd", "eur")
COST_SOURCES = ("backend", "reported", "unpriced")
MAX_TRACE_SPANS = 1000
"""Spans a trace answer assembles; past it ``truncated`` is true."""

_MODEL = "json_extract(i.body, '$.metadata.model')"
_PROVIDER = "json_extract(i.body, '$.metadata.provider')"
GROUP_BY = {"model": _MODEL, "conversation": "c.conversation_id", "day": "substr(i.timestamp, 1, 10)"}
_USAGE = "FROM usage u JOIN items i ON i.id = u.item JOIN conversations c ON c.id = u.conversation"
_USAGE_ORDER = {"started_at": "i.timestamp", "id": "u.item", "model": "model", "total_tokens": "u.total_tokens"}
_SPAN_ORDER = {"started_at": "s.started_at", "ended_at": "s.ended_at", "duration_ms": "s.duration_ms", "id": "s.id",
               "name": "s.name"}
_ACTION_ORDER = {"name": "a.name", "display_name": "a.display_name", "id": "a.id", "created_at": "a.created_at"}


def add_routes(routes: APIRouter, plane: Plane) -> None:
    """Add the usage, span, trace and action routes to ``routes``."""
    _usage_routes(routes, plane)
    _span_routes(routes, plane)
    _action_routes(routes, plane)


# Token usage ---------------------------------------------------------------------------------------


def _usage_filter(request: Request) -> tuple[str, list[Any]]:
    q = request.query_params
    clauses: list[str] = []
    params: list[Any] = []
    for name, column in (("conversation_id", "c.conversation_id"), ("environment", "c.environment"),
                         ("model", _MODEL)):
        if q.get(name):
            clauses.append(f"{column} = ?")
            params.append(q[name])
    if q.get("conversation"):
        clauses.append("u.conversation = ?")
        params.append(row_id(q["conversation"]))
    if q.get("cost_source") and choice(q["cost_source"], COST_SOURCES, "cost_source") != "unpriced":
        clauses.append("0")
    if flag(request, "incomplete") or q.get("turn_id"):
        clauses.append("0")  # every turn stored here is complete; none has a turn id
    for name, operator in (("started_at_after", ">="), ("started_at_before", "<=")):
        if (when := moment(request, name)) is not None:
            clauses.append(f"i.timestamp {operator} ?")
            params.append(when)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _tokens(row: Any) -> dict[str, int]:
    return {key: int(row[key]) for key in TOKEN_KEYS}


def token_usage(records: Any, conversation: int) -> dict[str, Any] | None:
    """A conversation's spend summary (its token totals and ``models``), ``None`` when none was recorded.

    A model call's row is priced as ``GET /api/stats/`` prices it (:mod:`agentsight.dev.pricing`): ``cost_source``
    ``backend``; rows without a model (``track_token_usage()`` sums) or of a model the table does not know are
    ``unpriced``.
    """
    sums = ", ".join(f"SUM(u.{key}) AS {key}" for key in TOKEN_KEYS)
    rows = records.read(f"SELECT {_PROVIDER} AS provider, {_MODEL} AS model, COUNT(*) AS calls, {sums} {_USAGE} "
                        "WHERE u.conversation = ? GROUP BY provider, model ORDER BY total_tokens DESC, model",
                        [conversation])
    if not rows:
        return None
    models = [{"model": row["model"], "calls": row["calls"], **_tokens(row), **_cost(row)} for row in rows]
    totals = {key: sum(model[key] for model in models) for key in TOKEN_KEYS}
    priced = [Decimal(model["cost_usd"]) for model in models if model["cost_source"] == "backend"]
    return {**totals, "calls": sum(model["calls"] for model in models), "models": models,
            "cost_usd": f"{sum(priced, Decimal(0)):.8f}",
            "cost_sources": sorted({model["cost_source"] for model in models})}


def _cost(row: Any) -> dict[str, str]:
    """``cost_usd`` (8 decimals, as upstream) and ``cost_source`` of one model's summed usage row."""
    cost = None
    if row["model"]:
        # The usage table's prompt tokens leave out the cache reads and writes (the ingest wire's llm spans).
        tokens = Tokens(input_tokens=int(row["prompt_tokens"] + row["cache_read_tokens"] + row["cache_write_tokens"]),
                        output_tokens=int(row["completion_tokens"]), cache_read_tokens=int(row["cache_read_tokens"]),
                        cache_write_tokens=int(row["cache_write_tokens"]))
        cost = pricing.price(row["provider"], str(row["model"]), [(tokens, 1)])
    return {"cost_usd": ZERO_COST, "cost_source": "unpriced"} if cost is None else {
        "cost_usd": f"{cost:.8f}", "cost_source": "backend"}


def _usage_routes(routes: APIRouter, plane: Plane) -> None:
    records = plane.records
    columns = ", ".join(f"u.{key}" for key in TOKEN_KEYS)

    @routes.get("/api/token-usage/")
    def list_usage(request: Request) -> dict[str, Any]:
        """Token usage, one row per model call, newest first."""
        where, params = _usage_filter(request)
        order = ordering(request, _USAGE_ORDER, "i.timestamp DESC") + ", u.item DESC"

        def rows(limit: int, offset: int) -> list[dict[str, Any]]:
            found = records.read(f"SELECT u.item, u.conversation, c.conversation_id, c.environment, i.timestamp, "
                                 f"{_MODEL} AS model, {columns} {_USAGE}{where}{order} LIMIT ? OFFSET ?",
                                 [*params, limit, offset])
            return [{"id": row["item"], "conversation": row["conversation"],
                     "conversation_id": row["conversation_id"], "environment": row["environment"], "turn_id": None,
                     "model": row["model"], "calls": 1, **_tokens(row), "cost_usd": ZERO_COST,
                     "cost_usd_reported": None, "cost_source": "unpriced", "incomplete": False,
                     "incomplete_reason": None, "unreported_calls": 0, "started_at": row["timestamp"]}
                    for row in found]

        return page(request, lambda: records.count(_USAGE.removeprefix("FROM "), where, params), rows)

    @routes.get("/api/token-usage/summary/")
    def usage_summary(request: Request, group_by: str = "model", currency: str = "usd") -> dict[str, Any]:
        """Usage rolled up by ``model``, ``conversation`` or ``day``, biggest first (same filters as the list)."""
        key = GROUP_BY[choice(group_by, GROUP_BY, "group_by")]
        choice(currency, CURRENCIES, "currency")
        where, params = _usage_filter(request)
        sums = ", ".join(f"COALESCE(SUM(u.{name}), 0) AS {name}" for name in TOKEN_KEYS)
        found = records.read(f"SELECT {key} AS grouped, COUNT(*) AS calls, {sums} {_USAGE}"
                             f"{where} GROUP BY grouped ORDER BY total_tokens DESC, grouped", params)
        results = [{"group": row["grouped"], "calls": row["calls"], "rows": row["calls"], **_tokens(row),
                    "cost_usd": 0.0} for row in found]
        return {"group_by": group_by, "currency": currency, "results": results}


# Spans and traces ----------------------------------------------------------------------------------


def _span_filter(request: Request) -> tuple[str, list[Any]]:
    q = request.query_params
    clauses: list[str] = []
    params: list[Any] = []
    for name, column in (("conversation_id", "c.conversation_id"), ("environment", "c.environment"),
                         ("kind", "s.kind"), ("name", "s.name"), ("status", "s.status"),
                         ("parent_span_id", "s.parent_span_id"), ("span_id", "s.span_id"),
                         ("trace_id", "s.trace_id")):
        if q.get(name):
            clauses.append(f"{column} = ?")
            params.append(q[name].lower() if name.endswith("_id") and name != "conversation_id" else q[name])
    if q.get("conversation"):
        clauses.append("s.conversation = ?")
        params.append(row_id(q["conversation"]))
    for name, operator in (("started_at_after", ">="), ("started_at_before", "<=")):
        if (when := moment(request, name)) is not None:
            clauses.append(f"s.started_at {operator} ?")
            params.append(when)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _span_routes(routes: APIRouter, plane: Plane) -> None:
    records = plane.records

    @routes.get("/api/spans/")
    def list_spans(request: Request) -> dict[str, Any]:
        """Archived ingest spans, newest first, with ``attributes`` and ``events`` but never ``payload``."""
        where, params = _span_filter(request)
        order = ordering(request, _SPAN_ORDER, "s.started_at DESC") + ", s.id DESC"
        return page(request, lambda: records.count_spans(where, params),
                    lambda limit, offset: records.spans(where, params, f"{order} LIMIT ? OFFSET ?", [limit, offset]))

    @routes.get("/api/spans/{span:int}/")
    def get_span(span: int, request: Request) -> dict[str, Any]:
        """One span by row id; ``payload=true`` adds the span exactly as it arrived."""
        found = records.spans(" WHERE s.id = ?", [span], payload=bool(flag(request, "payload"))) \
            if span <= 2**63 - 1 else []
        if not found:
            raise not_found()
        return found[0]

    @routes.get("/api/traces/{trace_id}/")
    def get_trace(trace_id: str) -> dict[str, Any]:
        """One trace as a tree by ``parent_span_id`` (a span whose parent is absent is a root); 404 if unknown."""
        spans = records.spans(" WHERE s.trace_id = ?", [trace_id.lower()], " ORDER BY s.started_at, s.id LIMIT ?",
                              [MAX_TRACE_SPANS + 1])
        if not spans:
            raise not_found()
        truncated = len(spans) > MAX_TRACE_SPANS
        spans = spans[:MAX_TRACE_SPANS]
        nodes = {span["span_id"]: {**span, "children": []} for span in spans}
        roots = []
        for node in nodes.values():
            parent = nodes.get(node["parent_span_id"] or "")
            (parent["children"] if parent is not None and parent is not node else roots).append(node)
        return {"trace_id": trace_id.lower(), "span_count": len(nodes), "truncated": truncated, "roots": roots}


# Actions -------------------------------------------------------------------------------------------


def _action_routes(routes: APIRouter, plane: Plane) -> None:
    records = plane.records
    source = "action_definitions a"

    def adopt() -> None:
        """Every action name tracking recorded gets a definition (created as tracking would: display = name)."""
        records.execute("INSERT OR IGNORE INTO action_definitions (name, display_name, created_at, updated_at) "
                        "SELECT DISTINCT json_extract(body, '$.action_name'), json_extract(body, '$.action_name'), "
                        "MIN(created_at), MIN(created_at) FROM items WHERE kind = 'action' "
                        "AND json_extract(body, '$.action_name') IS NOT NULL GROUP BY 1")

    def rows(where: str, params: list[Any], tail: str = "", tail_params: list[Any] | None = None
             ) -> list[dict[str, Any]]:
        found = records.read(f"SELECT a.* FROM {source}{where}{tail}", [*params, *(tail_params or [])])
        return [{**{key: row[key] for key in row.keys()}, "agent": 1} for row in found]  # noqa: SIM118

    def find(action_id: int) -> dict[str, Any]:
        adopt()
        found = rows(" WHERE a.id = ?", [action_id]) if action_id <= 2**63 - 1 else []
        if not found:
            raise not_found()
        return found[0]

    def unique(name: str, but: int = 0) -> str:
        if records.read("SELECT 1 FROM action_definitions WHERE name = ? AND id != ?", [name, but]):
            raise field_error("name", "action with this name already exists.")
        return name

    @routes.get("/api/actions/")
    def list_actions(request: Request) -> dict[str, Any]:
        """Action definitions: those tracking recorded and those declared."""
        adopt()
        q = request.query_params
        clauses, params = [], []
        for name, clause, value in (("name", "a.name = ?", q.get("name")),
                                    ("display_name", "a.display_name = ?", q.get("display_name")),
                                    ("name__icontains", "a.name LIKE ?", f"%{q.get('name__icontains')}%"),
                                    ("search", "(a.name LIKE ? OR a.display_name LIKE ?)", f"%{q.get('search')}%")):
            if q.get(name):
                clauses.append(clause)
                params.extend([value] * clause.count("?"))
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        order = ordering(request, _ACTION_ORDER, "a.name ASC") + ", a.id"
        return page(request, lambda: records.count(source, where, params),
                    lambda limit, offset: rows(where, params, f"{order} LIMIT ? OFFSET ?", [limit, offset]))

    @routes.post("/api/actions/", status_code=201)
    def create_action(body: JsonBody) -> dict[str, Any]:
        """Declare an action (400 when the name exists); tracking adopts it by name."""
        plane.writable()
        adopt()
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise field_error("name", "This field is required.")
        name = unique(name.strip())
        action_id = records.execute(
            "INSERT INTO action_definitions (name, display_name, description, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [name, str(body.get("display_name") or name), str(body.get("description") or ""), utc_iso(), utc_iso()])
        return find(action_id)

    @routes.get("/api/actions/{action_id:int}/")
    def get_action(action_id: int) -> dict[str, Any]:
        """One action definition."""
        return find(action_id)

    @routes.patch("/api/actions/{action_id:int}/")
    def update_action(action_id: int, body: JsonBody) -> dict[str, Any]:
        """Change ``name`` (400 when another action has it), ``display_name`` or ``description``."""
        plane.writable()
        find(action_id)
        fields = {key: str(body[key]) for key in ("name", "display_name", "description") if body.get(key) is not None}
        if "name" in fields:
            unique(fields["name"], action_id)
        if not fields:
            raise ApiError(400, {"non_field_errors": ["No field to update."]})
        records.update("action_definitions", action_id, fields)
        return find(action_id)

    @routes.get("/api/actions/{action_id:int}/logs/")
    def action_logs(action_id: int) -> list[dict[str, Any]]:
        """Every recorded invocation of the action, oldest first (not paginated)."""
        name = find(action_id)["name"]
        return plane.store._items("kind = 'action' AND json_extract(body, '$.action_name') = ?", [name])
