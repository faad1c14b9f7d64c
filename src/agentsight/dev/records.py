"""What the data plane adds to the ``agentsight dev`` store: marks and soft deletes, feedback, tickets with their
comments, action definitions and the archive of ingested spans.

:data:`SCHEMA` is created with the store's own (:class:`~agentsight.dev.store.DevStore` runs it at open, ``IF
NOT EXISTS``, so a file from an earlier version gains the tables). :class:`Records` reads and writes them
through the store's connection, lock and transactions; rows come back as the JSON objects the data-plane
routes answer (:mod:`agentsight.dev.data_plane`).
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the store imports this module for its schema
    from agentsight.dev.models import IngestSpan
    from agentsight.dev.store import DevStore, StoreWriter

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversation_flags (
    conversation INTEGER PRIMARY KEY REFERENCES conversations (id) ON DELETE CASCADE,
    is_marked INTEGER NOT NULL DEFAULT 0,
    deleted_at TEXT
);
CREATE TABLE IF NOT EXISTS feedbacks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    sentiment TEXT NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    topic TEXT,
    reason TEXT,
    conversation INTEGER REFERENCES conversations (id) ON DELETE CASCADE,
    message INTEGER REFERENCES items (id) ON DELETE CASCADE,
    environment TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedbacks_conversation ON feedbacks (conversation);
CREATE UNIQUE INDEX IF NOT EXISTS feedbacks_message ON feedbacks (message) WHERE message IS NOT NULL;
CREATE TABLE IF NOT EXISTS tickets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    status TEXT NOT NULL,
    priority TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '[]',
    environment TEXT NOT NULL,
    conversation INTEGER REFERENCES conversations (id) ON DELETE SET NULL,
    feedback INTEGER REFERENCES feedbacks (id) ON DELETE SET NULL,
    author TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tickets_conversation ON tickets (conversation);
CREATE TABLE IF NOT EXISTS ticket_comments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket INTEGER NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    body TEXT NOT NULL,
    role TEXT NOT NULL,
    author TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ticket_comments_ticket ON ticket_comments (ticket, id);
CREATE TABLE IF NOT EXISTS action_definitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS span_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT,
    conversation INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT NOT NULL,
    duration_ms REAL,
    status TEXT NOT NULL,
    attributes TEXT NOT NULL,
    events TEXT NOT NULL,
    payload TEXT NOT NULL,
    UNIQUE (trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS span_records_conversation ON span_records (conversation, started_at);
CREATE INDEX IF NOT EXISTS span_records_trace ON span_records (trace_id);
"""

AUTHOR = "agentsight dev"
"""Who tickets and comments written through the API are by (upstream: the key's name)."""

_FEEDBACK = (
    "SELECT f.*, c.conversation_id AS conversation_key FROM feedbacks f "
    "LEFT JOIN conversations c ON c.id = f.conversation"
)
_TICKET = (
    "SELECT t.*, c.conversation_id AS conversation_key, c.name AS conversation_name, "
    "f.kind AS feedback_kind, f.sentiment AS feedback_sentiment, f.comment AS feedback_comment, "
    "(SELECT COUNT(*) FROM ticket_comments m WHERE m.ticket = t.id) AS comments_count "
    "FROM tickets t LEFT JOIN conversations c ON c.id = t.conversation LEFT JOIN feedbacks f ON f.id = t.feedback"
)
SPAN_COLUMNS = (
    "s.id, s.trace_id, s.span_id, s.parent_span_id, s.conversation, c.conversation_id, c.environment, s.kind, "
    "s.name, s.started_at, s.ended_at, s.duration_ms, s.status, s.attributes, s.events"
)


def keep_span(writer: StoreWriter, conversation: int, span: IngestSpan) -> None:
    """Archive an ingested span as it arrived (``payload``: the whole span, ``otel`` envelope included)."""
    from agentsight.dev.store import utc_iso

    payload = span.model_dump(mode="json")
    writer._db.execute(
        "INSERT OR IGNORE INTO span_records (trace_id, span_id, parent_span_id, conversation, kind, name, "
        "started_at, ended_at, duration_ms, status, attributes, events, payload) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (span.trace_id.lower(), span.span_id.lower(), (span.parent_span_id or "").lower() or None, conversation,
         span.kind, span.name, utc_iso(span.started_at), utc_iso(span.ended_at), span.duration_ms, span.status,
         _dumps(payload["attributes"]), _dumps(payload["events"]), _dumps(payload)),
    )


class Records:
    """The data plane's tables in ``store`` (sharing its connection, lock and write transactions)."""

    def __init__(self, store: DevStore) -> None:
        self.store = store

    def read(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Rows of one query, under the store's lock."""
        return self.store._read(sql, params)

    def execute(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> int:
        """One write in its own transaction; returns the row id it inserted (or 0)."""
        with self.store.write() as writer:
            return int(writer._db.execute(sql, params).lastrowid or 0)

    def count(self, source: str, where: str, params: list[Any]) -> int:
        """``COUNT(*)`` of ``source`` (a table or join) ``where``."""
        return int(self.read(f"SELECT COUNT(*) FROM {source}{where}", params)[0][0])

    # Conversations ---------------------------------------------------------------------------------

    def set_flags(self, conversation: int, *, is_marked: bool | None = None, deleted_at: str | None = None) -> None:
        """Mark/unmark or soft-delete a conversation (``None``: leave as is)."""
        with self.store.write() as writer:
            writer._db.execute("INSERT OR IGNORE INTO conversation_flags (conversation) VALUES (?)", (conversation,))
            if is_marked is not None:
                writer._db.execute("UPDATE conversation_flags SET is_marked = ? WHERE conversation = ?",
                                   (int(is_marked), conversation))
            if deleted_at is not None:
                writer._db.execute("UPDATE conversation_flags SET deleted_at = ? WHERE conversation = ?",
                                   (deleted_at, conversation))
            writer._db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (writer.now, conversation))

    def conversations(self, where: str, params: list[Any], tail: str = "", tail_params: list[Any] | None = None
                      ) -> list[dict[str, Any]]:
        """Conversation rows with their flags (``where`` over ``c`` and ``f``, ``tail``: ordering and limits)."""
        rows = self.read("SELECT c.*, COALESCE(f.is_marked, 0) AS is_marked, f.deleted_at FROM conversations c "
                         f"LEFT JOIN conversation_flags f ON f.conversation = c.id{where}{tail}",
                         [*params, *(tail_params or [])])
        return [conversation_row(row) for row in rows]

    def count_conversations(self, where: str, params: list[Any]) -> int:
        """How many conversations ``where`` selects."""
        return int(self.read("SELECT COUNT(*) FROM conversations c "
                             f"LEFT JOIN conversation_flags f ON f.conversation = c.id{where}", params)[0][0])

    # Feedback --------------------------------------------------------------------------------------

    def feedbacks(self, where: str = "", params: list[Any] | None = None, tail: str = "",
                  tail_params: list[Any] | None = None) -> list[dict[str, Any]]:
        """Feedback rows (``where`` over ``f`` and ``c``)."""
        return [feedback_row(row) for row in self.read(f"{_FEEDBACK}{where}{tail}",
                                                       [*(params or []), *(tail_params or [])])]

    def feedback(self, feedback_id: int) -> dict[str, Any] | None:
        """One feedback row; ``None`` if absent."""
        found = self.feedbacks(" WHERE f.id = ?", [feedback_id])
        return found[0] if found else None

    def add_feedback(self, fields: dict[str, Any]) -> tuple[int, bool]:
        """Store a feedback; a message's second vote updates its first. Returns its id and whether it is new."""
        with self.store.write() as writer:
            db = writer._db
            if fields.get("message") is not None:
                row = db.execute("SELECT id FROM feedbacks WHERE message = ?", (fields["message"],)).fetchone()
                if row is not None:
                    changed = {k: v for k, v in fields.items() if k in ("sentiment", "comment", "topic", "reason")}
                    db.execute(f"UPDATE feedbacks SET {''.join(f'{k} = ?, ' for k in changed)}updated_at = ? "
                               "WHERE id = ?", [*changed.values(), writer.now, row["id"]])
                    return int(row["id"]), False
            columns = [*fields, "created_at", "updated_at"]
            cursor = db.execute(f"INSERT INTO feedbacks ({', '.join(columns)}) "
                                f"VALUES ({', '.join('?' * len(columns))})", [*fields.values(), writer.now, writer.now])
            return int(cursor.lastrowid or 0), True

    def update(self, table: str, row_id: int, fields: dict[str, Any]) -> None:
        """Change fields of one row of ``table`` (feedbacks, tickets, action_definitions) and its ``updated_at``."""
        with self.store.write() as writer:
            writer._db.execute(f"UPDATE {table} SET {''.join(f'{k} = ?, ' for k in fields)}updated_at = ? "
                               "WHERE id = ?", [*fields.values(), writer.now, row_id])

    def delete(self, table: str, row_id: int) -> bool:
        """Remove one row of ``table``; whether there was one."""
        with self.store.write() as writer:
            return writer._db.execute(f"DELETE FROM {table} WHERE id = ?", (row_id,)).rowcount == 1

    # Tickets ---------------------------------------------------------------------------------------

    def tickets(self, where: str = "", params: list[Any] | None = None, tail: str = "",
                tail_params: list[Any] | None = None) -> list[dict[str, Any]]:
        """Ticket rows (``where`` over ``t``, ``c`` and ``f``), each with its ``comments`` thread."""
        tickets = [ticket_row(row) for row in self.read(f"{_TICKET}{where}{tail}",
                                                       [*(params or []), *(tail_params or [])])]
        if tickets:
            by_id = {ticket["id"]: ticket for ticket in tickets}
            marks = ", ".join("?" * len(by_id))
            for comment in self.comments(f" WHERE ticket IN ({marks})", list(by_id)):
                by_id[comment["ticket"]]["comments"].append(comment)
        return tickets

    def ticket(self, ticket_id: int) -> dict[str, Any] | None:
        """One ticket with its comments; ``None`` if absent."""
        found = self.tickets(" WHERE t.id = ?", [ticket_id])
        return found[0] if found else None

    def add_ticket(self, fields: dict[str, Any]) -> int:
        """File a ticket; returns its id."""
        with self.store.write() as writer:
            columns = [*fields, "author", "created_at", "updated_at"]
            cursor = writer._db.execute(f"INSERT INTO tickets ({', '.join(columns)}) VALUES "
                                        f"({', '.join('?' * len(columns))})",
                                        [*fields.values(), AUTHOR, writer.now, writer.now])
            return int(cursor.lastrowid or 0)

    def comments(self, where: str, params: list[Any], tail: str = "", tail_params: list[Any] | None = None
                 ) -> list[dict[str, Any]]:
        """Ticket comments, oldest first."""
        rows = self.read(f"SELECT * FROM ticket_comments{where} ORDER BY id{tail}", [*params, *(tail_params or [])])
        return [{key: row[key] for key in row.keys()} for row in rows]  # noqa: SIM118 - sqlite3.Row

    def add_comment(self, ticket_id: int, body: str) -> int:
        """Post to a ticket's thread (role ``agent``, by :data:`AUTHOR`); returns the comment's id."""
        with self.store.write() as writer:
            cursor = writer._db.execute(
                "INSERT INTO ticket_comments (ticket, body, role, author, created_at) VALUES (?, ?, 'agent', ?, ?)",
                (ticket_id, body, AUTHOR, writer.now))
            writer._db.execute("UPDATE tickets SET updated_at = ? WHERE id = ?", (writer.now, ticket_id))
            return int(cursor.lastrowid or 0)

    # Spans ------------------------------------------------------------------------------------------

    def spans(self, where: str, params: list[Any], tail: str = "", tail_params: list[Any] | None = None,
              *, payload: bool = False) -> list[dict[str, Any]]:
        """Archived spans (``where`` over ``s`` and ``c``); ``payload`` adds the verbatim span."""
        rows = self.read(f"SELECT {SPAN_COLUMNS}{', s.payload' if payload else ''} FROM span_records s "
                         f"JOIN conversations c ON c.id = s.conversation{where}{tail}",
                         [*params, *(tail_params or [])])
        spans = []
        for row in rows:
            span = {key: row[key] for key in row.keys()}  # noqa: SIM118 - sqlite3.Row
            for name in ("attributes", "events", *(("payload",) if payload else ())):
                span[name] = json.loads(span[name])
            spans.append(span)
        return spans

    def count_spans(self, where: str, params: list[Any]) -> int:
        """How many archived spans ``where`` selects."""
        return int(self.read(f"SELECT COUNT(*) FROM span_records s JOIN conversations c ON c.id = s.conversation"
                             f"{where}", params)[0][0])


def conversation_row(row: sqlite3.Row) -> dict[str, Any]:
    """A conversation as the data plane answers it: the store's fields, ``started_at``, mark and deletion."""
    conversation = {key: row[key] for key in row.keys()}  # noqa: SIM118 - sqlite3.Row is not a mapping
    conversation["metadata"] = json.loads(row["metadata"]) if row["metadata"] else {}
    conversation["initialized"] = bool(row["initialized"])
    conversation["is_used"] = bool(row["is_used"])
    conversation["is_marked"] = bool(row["is_marked"])
    conversation["is_deleted"] = row["deleted_at"] is not None
    conversation["started_at"] = row["created_at"]
    conversation["agent"] = 1
    return conversation


def feedback_row(row: sqlite3.Row) -> dict[str, Any]:
    """A feedback as answered: ``conversation`` (pk) and ``conversation_id`` (the client's id) both named."""
    feedback = {key: row[key] for key in row.keys() if key != "conversation_key"}  # noqa: SIM118
    feedback["conversation_id"] = row["conversation_key"]
    feedback["agent"] = 1
    return feedback


def ticket_row(row: sqlite3.Row) -> dict[str, Any]:
    """A ticket as answered: nested ``conversation`` and ``feedback`` summaries, ``tags`` and ``comments``."""
    conversation = None if row["conversation"] is None else {
        "id": row["conversation"], "conversation_id": row["conversation_key"], "name": row["conversation_name"]}
    feedback = None if row["feedback"] is None else {
        "id": row["feedback"], "kind": row["feedback_kind"], "sentiment": row["feedback_sentiment"],
        "comment": row["feedback_comment"]}
    return {
        "id": row["id"], "title": row["title"], "status": row["status"], "priority": row["priority"],
        "tags": json.loads(row["tags"]), "environment": row["environment"], "conversation": conversation,
        "feedback": feedback, "author": row["author"], "comments_count": row["comments_count"], "comments": [],
        "created_at": row["created_at"], "updated_at": row["updated_at"],
    }


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)
