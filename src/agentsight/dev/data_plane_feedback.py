"""Feedback and tickets on the ``agentsight dev`` data plane (``/api/feedbacks/``, ``/api/tickets/``), as upstream
0.1.4's ``ags.feedbacks`` and ``ags.tickets`` call them. Shared helpers live in :mod:`agentsight.dev.data_plane`.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from agentsight.config import ENVIRONMENTS
from agentsight.dev import rest
from agentsight.dev.data_plane import (
    SENTIMENTS,
    JsonBody,
    Plane,
    choice,
    environment,
    flag,
    moment,
    not_found,
    ordering,
    page,
    row_id,
)
from agentsight.dev.rest import ApiError, field_error

FEEDBACK_KINDS = ("conversation", "message", "agent")
TICKET_STATUSES = ("backlog", "open", "in_progress", "in_review", "done", "closed")
TICKET_PRIORITIES = ("low", "medium", "high")
MAX_SLUG = 50
_FEEDBACK_ORDER = {"created_at": "f.created_at", "updated_at": "f.updated_at", "id": "f.id",
                   "sentiment": "f.sentiment"}
_TICKET_ORDER = {"created_at": "t.created_at", "updated_at": "t.updated_at", "id": "t.id", "title": "t.title",
                 "status": "t.status", "priority": "t.priority"}


def add_routes(routes: APIRouter, plane: Plane) -> None:
    """Add the feedback and ticket routes to ``routes``."""
    _feedback_routes(routes, plane)
    _ticket_routes(routes, plane)


# Feedback ------------------------------------------------------------------------------------------


def _feedback_filter(request: Request) -> tuple[str, list[Any]]:
    q = request.query_params
    clauses: list[str] = []
    params: list[Any] = []
    for name, column in (("kind", "f.kind"), ("topic", "f.topic"), ("reason", "f.reason"),
                         ("conversation_id", "c.conversation_id")):
        if q.get(name):
            clauses.append(f"{column} = ?")
            params.append(q[name])
    for name, column in (("conversation", "f.conversation"), ("message", "f.message"), ("agent", "1")):
        if q.get(name):
            if row_id(q[name]) < 0:
                raise field_error(name, "Select a valid choice. That choice is not one of the available choices.")
            clauses.append(f"{column} = ?")
            params.append(row_id(q[name]))
    if q.get("sentiment"):
        clauses.append("f.sentiment = ?")
        params.append(choice(q["sentiment"], SENTIMENTS, "sentiment"))
    if (env := environment(request)) is not None:
        clauses.append("f.environment = ?")
        params.append(env)
    for name in ("comment_contains", "search"):
        if q.get(name):
            clauses.append("f.comment LIKE ?")
            params.append(f"%{q[name]}%")
    if (commented := flag(request, "has_comment")) is not None:
        clauses.append("f.comment != ''" if commented else "f.comment = ''")
    for name, operator in (("created_at_after", ">="), ("created_at_before", "<=")):
        if (when := moment(request, name)) is not None:
            clauses.append(f"f.created_at {operator} ?")
            params.append(when)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _feedback_routes(routes: APIRouter, plane: Plane) -> None:
    records = plane.records

    def find(feedback_id: int) -> dict[str, Any]:
        found = records.feedback(feedback_id) if feedback_id <= 2**63 - 1 else None
        if found is None:
            raise not_found()
        return found

    @routes.get("/api/feedbacks/")
    def list_feedbacks(request: Request) -> dict[str, Any]:
        """Feedback, newest first; ``counts`` in the envelope. ``include_tickets`` narrows to promoted feedback,
        nests each row's ``ticket`` and opens ``has_ticket``/``ticket_status`` (400 without it)."""
        where, params = _feedback_filter(request)
        statuses = request.query_params.getlist("ticket_status")
        gated = flag(request, "include_tickets")
        if not gated and (statuses or request.query_params.get("has_ticket")):
            raise ApiError(400, {"detail": "has_ticket and ticket_status need include_tickets=true."})
        counts: dict[str, int] = {"all": records.count("feedbacks f LEFT JOIN conversations c "
                                                       "ON c.id = f.conversation", where, params)}
        if gated:
            promoted = "EXISTS (SELECT 1 FROM tickets t WHERE t.feedback = f.id)"
            where, params = f"{where or ' WHERE 1'} AND {promoted}", params
            tallies = records.read("SELECT t.status, COUNT(*) FROM tickets t JOIN feedbacks f ON f.id = t.feedback "
                                   f"LEFT JOIN conversations c ON c.id = f.conversation{where} GROUP BY t.status",
                                   params)
            by_status = {row[0]: int(row[1]) for row in tallies}
            counts = {"all": records.count("feedbacks f LEFT JOIN conversations c ON c.id = f.conversation",
                                           where, params),
                      "tickets": sum(by_status.values()),
                      "open_tickets": sum(by_status.get(s, 0) for s in ("backlog", "open", "in_progress",
                                                                         "in_review")),
                      **{status: by_status.get(status, 0) for status in TICKET_STATUSES}}
            if statuses:
                for status in statuses:
                    choice(status, TICKET_STATUSES, "ticket_status")
                marks = ", ".join("?" * len(statuses))
                where += f" AND EXISTS (SELECT 1 FROM tickets t WHERE t.feedback = f.id AND t.status IN ({marks}))"
                params = [*params, *statuses]
        order = ordering(request, _FEEDBACK_ORDER, "f.created_at DESC") + ", f.id DESC"

        def rows(limit: int, offset: int) -> list[dict[str, Any]]:
            found = records.feedbacks(where, params, f"{order} LIMIT ? OFFSET ?", [limit, offset])
            if gated:
                for feedback in found:
                    feedback["ticket"] = _ticket_of(plane, feedback["id"])
            return found

        total = records.count("feedbacks f LEFT JOIN conversations c ON c.id = f.conversation", where, params)
        return page(request, lambda: total, rows, counts=counts)

    @routes.get("/api/feedbacks/{feedback_id:int}/")
    def get_feedback(feedback_id: int) -> dict[str, Any]:
        """One feedback with its ``ticket`` (or ``null``)."""
        return {**find(feedback_id), "ticket": _ticket_of(plane, feedback_id)}

    @routes.post("/api/feedbacks/")
    def create_feedback(body: JsonBody) -> JSONResponse:
        """Record feedback of kind ``conversation``, ``message`` (one vote per message: a repeat updates it and
        answers 200) or ``agent``; 201 with the row."""
        plane.writable()
        feedback_id, created = records.add_feedback(_new_feedback(plane, body))
        return JSONResponse(find(feedback_id), 201 if created else 200)

    @routes.patch("/api/feedbacks/{feedback_id:int}/")
    def update_feedback(feedback_id: int, body: JsonBody) -> dict[str, Any]:
        """Change ``sentiment``, ``comment``, ``topic`` or ``reason`` (the slugs on message feedback only)."""
        plane.writable()
        stored = find(feedback_id)
        fields = _feedback_fields(body, kind=stored["kind"])
        if fields:
            records.update("feedbacks", feedback_id, fields)
        return find(feedback_id)

    @routes.delete("/api/feedbacks/{feedback_id:int}/", status_code=204)
    def delete_feedback(feedback_id: int) -> None:
        """Remove a feedback row (a ticket filed from it stays, without its ``feedback``)."""
        plane.writable()
        if not records.delete("feedbacks", find(feedback_id)["id"]):
            raise not_found()


def _feedback_fields(body: dict[str, Any], *, kind: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if "sentiment" in body:
        fields["sentiment"] = choice(body["sentiment"], SENTIMENTS, "sentiment")
    if body.get("comment") is not None:
        fields["comment"] = rest.text(body["comment"], "comment")
    for slug in ("topic", "reason"):
        if body.get(slug) is not None:
            if kind != "message":
                raise field_error(slug, "Only message feedback takes a topic or reason.")
            value = rest.text(body[slug], slug) or ""
            if len(value) > MAX_SLUG:
                raise field_error(slug, f"Ensure this field has no more than {MAX_SLUG} characters.")
            fields[slug] = value
    return fields


def _new_feedback(plane: Plane, body: dict[str, Any]) -> dict[str, Any]:
    """The columns of a posted feedback, validated as upstream's serializer does (400 ``{field: [msg]}``)."""
    kind = choice(body.get("kind"), FEEDBACK_KINDS, "kind")
    if body.get("sentiment") is None:
        raise field_error("sentiment", "This field is required.")
    fields = {"kind": kind, **_feedback_fields(body, kind=kind)}
    if kind == "conversation":
        if body.get("environment") is not None:
            raise field_error("environment", "Not accepted on conversation feedback.")
        key, value = ("conversation_id", body.get("conversation_id")) if body.get("conversation") is None \
            else ("conversation", body["conversation"])
        column = "conversation_id" if key == "conversation_id" else "id"
        valid = isinstance(value, str) if column == "conversation_id" else isinstance(value, int) and not isinstance(
            value, bool) and 0 < value <= 2**63 - 1
        found = plane.records.read(f"SELECT id, environment FROM conversations WHERE {column} = ?", [value]) \
            if valid else []
        if not found:
            raise field_error(key, f'Invalid pk "{value}" - object does not exist.')
        fields.update(conversation=found[0]["id"], environment=found[0]["environment"])
    elif kind == "message":
        pk = body.get("message")
        found = plane.records.read("SELECT i.conversation, c.environment FROM items i JOIN conversations c "
                                   "ON c.id = i.conversation WHERE i.id = ? AND i.kind = 'message'", [pk]) \
            if isinstance(pk, int) and not isinstance(pk, bool) and 0 < pk <= 2**63 - 1 else []
        if not found:
            raise field_error("message", f'Invalid pk "{pk}" - object does not exist.')
        fields.update(message=pk, conversation=found[0]["conversation"], environment=found[0]["environment"])
    else:
        if body.get("agent") not in (None, 1):
            raise field_error("agent", f'Invalid pk "{body.get("agent")}" - object does not exist.')
        fields["environment"] = choice(body.get("environment") or "production", ENVIRONMENTS, "environment")
    return fields


# Tickets -------------------------------------------------------------------------------------------


def _ticket_of(plane: Plane, feedback_id: int) -> dict[str, Any] | None:
    found = plane.records.tickets(" WHERE t.feedback = ?", [feedback_id], " ORDER BY t.id LIMIT 1")
    return found[0] if found else None


def _ticket_filter(request: Request) -> tuple[str, list[Any]]:
    q = request.query_params
    clauses: list[str] = []
    params: list[Any] = []
    if q.get("conversation"):
        clauses.append("t.conversation = ?")
        params.append(row_id(q["conversation"]))
    if q.get("conversation_id"):
        clauses.append("c.conversation_id = ?")
        params.append(q["conversation_id"])
    for name, column in (("has_conversation", "t.conversation"), ("has_feedback", "t.feedback")):
        if (wanted := flag(request, name)) is not None:
            clauses.append(f"{column} IS {'NOT ' if wanted else ''}NULL")
    if q.get("priority"):
        clauses.append("t.priority = ?")
        params.append(choice(q["priority"], TICKET_PRIORITIES, "priority"))
    if statuses := q.getlist("status"):
        clauses.append(f"t.status IN ({', '.join('?' * len(statuses))})")
        params.extend(choice(status, TICKET_STATUSES, "status") for status in statuses)
    if q.get("search"):
        clauses.append("t.title LIKE ?")
        params.append(f"%{q['search']}%")
    if tags := [tag.strip() for tag in (q.get("tags") or "").split(",") if tag.strip()]:
        clauses.append(f"EXISTS (SELECT 1 FROM json_each(t.tags) j WHERE j.value IN ({', '.join('?' * len(tags))}))")
        params.extend(tags)
    for name, column, operator in (("created_at_after", "t.created_at", ">="),
                                   ("created_at_before", "t.created_at", "<="),
                                   ("updated_at_after", "t.updated_at", ">="),
                                   ("updated_at_before", "t.updated_at", "<=")):
        if (when := moment(request, name)) is not None:
            clauses.append(f"{column} {operator} ?")
            params.append(when)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _ticket_fields(body: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if "title" in body:
        title = (rest.text(body["title"], "title") or "").strip()
        if not title:
            raise field_error("title", "This field may not be blank.")
        fields["title"] = title
    if body.get("status") is not None:
        fields["status"] = choice(body["status"], TICKET_STATUSES, "status")
    if body.get("priority") is not None:
        fields["priority"] = choice(body["priority"], TICKET_PRIORITIES, "priority")
    if body.get("tags") is not None:
        tags = body["tags"]
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise field_error("tags", "Expected a list of strings.")
        fields["tags"] = json.dumps(tags)
    return fields


def _ticket_routes(routes: APIRouter, plane: Plane) -> None:
    records = plane.records

    def find(ticket_id: int) -> dict[str, Any]:
        found = records.ticket(ticket_id) if ticket_id <= 2**63 - 1 else None
        if found is None:
            raise not_found()
        return found

    @routes.get("/api/tickets/")
    def list_tickets(request: Request) -> dict[str, Any]:
        """Tickets, newest first, each with its ``comments`` thread."""
        where, params = _ticket_filter(request)
        source = "tickets t LEFT JOIN conversations c ON c.id = t.conversation"
        order = ordering(request, _TICKET_ORDER, "t.created_at DESC") + ", t.id DESC"
        return page(request, lambda: records.count(source, where, params),
                    lambda limit, offset: records.tickets(where, params, f"{order} LIMIT ? OFFSET ?", [limit, offset]))

    @routes.get("/api/tickets/{ticket_id:int}/")
    def get_ticket(ticket_id: int) -> dict[str, Any]:
        """One ticket with its ``conversation``/``feedback`` summaries and ``comments``."""
        return find(ticket_id)

    @routes.post("/api/tickets/", status_code=201)
    def create_ticket(body: JsonBody) -> dict[str, Any]:
        """File a ticket (``title``; ``status`` open, ``priority`` medium, ``environment`` production by default;
        ``conversation_id`` is the conversation's pk; one filed from conversation feedback inherits its
        conversation)."""
        plane.writable()
        if "title" not in body:
            raise field_error("title", "This field is required.")
        fields = {"status": "open", "priority": "medium", "tags": "[]", **_ticket_fields(body),
                  "environment": choice(body.get("environment") or "production", ENVIRONMENTS, "environment")}
        feedback = body.get("feedback_id")
        if feedback is not None:
            stored = records.feedback(feedback) if isinstance(feedback, int) and 0 < feedback <= 2**63 - 1 else None
            if stored is None:
                raise field_error("feedback_id", f'Invalid pk "{feedback}" - object does not exist.')
            fields["feedback"] = feedback
            if stored["conversation"] is not None:
                fields["conversation"] = stored["conversation"]
        conversation = body.get("conversation_id")
        if conversation is not None:
            exists = records.read("SELECT 1 FROM conversations WHERE id = ?", [row_id(conversation)])
            if not exists:
                raise field_error("conversation_id", f'Invalid pk "{conversation}" - object does not exist.')
            fields["conversation"] = conversation
        return find(records.add_ticket(fields))

    @routes.patch("/api/tickets/{ticket_id:int}/")
    def update_ticket(ticket_id: int, body: JsonBody) -> dict[str, Any]:
        """Change ``title``, ``status``, ``priority`` or ``tags`` (``environment`` is write-once)."""
        plane.writable()
        find(ticket_id)
        if fields := _ticket_fields(body):
            records.update("tickets", ticket_id, fields)
        return find(ticket_id)

    @routes.delete("/api/tickets/{ticket_id:int}/", status_code=204)
    def delete_ticket(ticket_id: int) -> None:
        """Remove a ticket and its thread."""
        plane.writable()
        records.delete("tickets", find(ticket_id)["id"])

    @routes.get("/api/tickets/{ticket_id:int}/comments/")
    def list_comments(ticket_id: int, request: Request) -> dict[str, Any]:
        """The ticket's thread, oldest first."""
        find(ticket_id)
        return page(request, lambda: records.count("ticket_comments", " WHERE ticket = ?", [ticket_id]),
                    lambda limit, offset: records.comments(" WHERE ticket = ?", [ticket_id], " LIMIT ? OFFSET ?",
                                                           [limit, offset]))

    @routes.post("/api/tickets/{ticket_id:int}/comments/", status_code=201)
    def add_comment(ticket_id: int, body: JsonBody) -> dict[str, Any]:
        """Post to the thread: role ``agent``, authored as the key (here ``agentsight dev``)."""
        plane.writable()
        find(ticket_id)
        text = (rest.text(body.get("body"), "body") or "").strip()
        if not text:
            raise field_error("body", "This field may not be blank.")
        comment_id = records.add_comment(ticket_id, str(body["body"]))
        return records.comments(" WHERE id = ?", [comment_id])[0]
