"""SQLite storage of ``agentsight dev``: conversations and their items (messages, buttons, actions, attachments).

A file (kept across restarts) or an in-memory database. One connection shared by the server's threads
behind a lock, in WAL mode; every write runs in a ``BEGIN IMMEDIATE`` transaction (:meth:`DevStore.write`)
so concurrent posts of one ``conversation_id`` (also from another process on the same file) get one row
and an ingest request is stored whole or not at all. Items are kept in one ``items`` table: a ``kind``
column, the event time and the kind's fields as JSON. Token counts go to ``usage`` (one row per
``token_usage`` action or model call); ``spans`` remembers every ingested span so a retried batch is
stored once.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agentsight.dev.previews import attach_previews
from agentsight.dev.records import SCHEMA as RECORDS_SCHEMA

CONVERSATION_FIELDS = (
    "conversation_id", "customer_id", "customer_ip_address", "device", "source", "language", "name", "environment",
)
"""Text fields of a conversation as posted; a later post's null leaves the stored value."""

KINDS = ("message", "button", "action", "attachments", "archived")
"""Kinds of item rows; ``timeline`` entries carry them as ``kind`` (``archived`` ones stay out of it)."""

TOKEN_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens", "embedding_tokens", "cache_read_tokens",
              "cache_write_tokens", "reasoning_tokens")
"""Token categories summed by :meth:`DevStore.stats` and per conversation (prompt = input, completion = output)."""

MEMORY = ":memory:"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL UNIQUE,
    customer_id TEXT,
    customer_ip_address TEXT,
    device TEXT,
    source TEXT,
    language TEXT,
    name TEXT,
    environment TEXT NOT NULL DEFAULT 'production',
    metadata TEXT,
    initialized INTEGER NOT NULL DEFAULT 0,
    is_used INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_created ON conversations (created_at, id);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    created_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS items_conversation ON items (conversation, timestamp, id);
CREATE INDEX IF NOT EXISTS items_kind ON items (kind);
CREATE TABLE IF NOT EXISTS usage (
    item INTEGER PRIMARY KEY REFERENCES items (id) ON DELETE CASCADE,
    conversation INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    total_tokens INTEGER NOT NULL DEFAULT 0,
    embedding_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS usage_conversation ON usage (conversation);
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    conversation INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    PRIMARY KEY (trace_id, span_id)
);
"""


class UnknownConversationError(LookupError):
    """An item names a ``conversation`` id that was never created."""


@dataclass(frozen=True)
class ConversationFilter:
    """Filters of the conversation list; ``None`` means no filter."""

    conversation_id: str | None = None
    environment: str | None = None
    is_used: bool | None = None

    def where(self) -> tuple[str, list[Any]]:
        """The SQL ``WHERE`` clause (or ``""``) and its parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("conversation_id", self.conversation_id), ("environment", self.environment),
                              ("is_used", None if self.is_used is None else int(self.is_used))):
            if value is not None:
                clauses.append(f"c.{column} = ?")
                params.append(value)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def utc_iso(value: str | datetime | None = None) -> str:
    """``value`` (ISO 8601 text or a datetime; now when ``None``) as UTC ISO 8601 with microseconds.

    Naive times are taken as UTC. The fixed form sorts lexicographically in time order.
    Raises ``ValueError`` for text that is not ISO 8601 or a time UTC cannot hold.
    """
    if value is None:
        moment = datetime.now(timezone.utc)
    elif isinstance(value, datetime):
        moment = value
    else:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")
    except OverflowError:
        raise ValueError(f"{value} is out of range in UTC") from None


class StoreWriter:
    """Writes inside one transaction of a :class:`DevStore` (see :meth:`DevStore.write`)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self.now = utc_iso()

    def upsert_conversation(self, body: Mapping[str, Any], *, initialized: bool, used: bool,
                            created: str | None = None) -> int:
        """Get-or-create the conversation of ``body["conversation_id"]`` and merge ``body`` into it.

        Non-null fields overwrite, nulls keep what is stored (``metadata`` is replaced when given);
        ``initialized`` and ``is_used`` only ever turn true. ``created`` (default: now) dates a new row.
        Returns the server id.
        """
        given = {name: body.get(name) for name in CONVERSATION_FIELDS if body.get(name) is not None}
        if body.get("metadata") is not None:
            given["metadata"] = _dumps(body["metadata"])
        row = self._db.execute("SELECT id FROM conversations WHERE conversation_id = ?",
                               (given["conversation_id"],)).fetchone()
        if row is None:
            columns = [*given, "initialized", "is_used", "created_at", "updated_at"]
            values = [*given.values(), int(initialized), int(used), created or self.now, self.now]
            cursor = self._db.execute(
                f"INSERT INTO conversations ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", values)
            return int(cursor.lastrowid or 0)
        server_id = int(row["id"])
        changed = {name: value for name, value in given.items() if name != "conversation_id"}
        self._db.execute(
            f"UPDATE conversations SET {''.join(f'{name} = ?, ' for name in changed)}"
            "initialized = MAX(initialized, ?), is_used = MAX(is_used, ?), updated_at = ? WHERE id = ?",
            [*changed.values(), int(initialized), int(used), self.now, server_id],
        )
        return server_id

    def add_item(self, kind: str, conversation: int, timestamp: str | None, body: Mapping[str, Any],
                 usage: Mapping[str, int] | None = None) -> int:
        """Store an item of ``kind`` under the conversation with server id ``conversation``; returns its id.

        ``usage`` (token counts by :data:`TOKEN_KEYS`) is counted in the token totals.
        Raises :class:`UnknownConversationError` when there is no such conversation.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown item kind {kind!r}")
        if self._db.execute("SELECT 1 FROM conversations WHERE id = ?", (conversation,)).fetchone() is None:
            raise UnknownConversationError(conversation)
        cursor = self._db.execute(
            "INSERT INTO items (conversation, kind, timestamp, created_at, body) VALUES (?, ?, ?, ?, ?)",
            (conversation, kind, utc_iso(timestamp) if timestamp else self.now, self.now,
             _dumps(dict(body))),
        )
        item = int(cursor.lastrowid or 0)
        if usage is not None:
            self._db.execute(
                f"INSERT INTO usage (item, conversation, {', '.join(TOKEN_KEYS)}) "
                f"VALUES (?, ?{', ?' * len(TOKEN_KEYS)})",
                [item, conversation, *(int(usage.get(key) or 0) for key in TOKEN_KEYS)],
            )
        self._db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (self.now, conversation))
        return item

    def claim_span(self, conversation: int, trace_id: str, span_id: str) -> bool:
        """Remember an ingested span; ``False`` when it was stored before (a retried batch)."""
        cursor = self._db.execute("INSERT OR IGNORE INTO spans (trace_id, span_id, conversation) VALUES (?, ?, ?)",
                                  (trace_id.lower(), span_id.lower(), conversation))
        return cursor.rowcount == 1


class DevStore:
    """The dev server's SQLite database at ``path`` (created with its schema on first open); ``None``: in memory."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = MEMORY if path is None else str(path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10.0)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(_SCHEMA + RECORDS_SCHEMA)
        self._repair()

    def _repair(self) -> None:
        """Rewrite JSON stored by earlier versions with ``NaN`` or ``Infinity`` (which no answer can carry and
        SQLite's JSON functions refuse), those numbers becoming ``null``."""
        with self.write():
            for table, column in (("items", "body"), ("conversations", "metadata")):
                rows = self._db.execute(f"SELECT id, {column} AS value FROM {table} "
                                        f"WHERE instr({column}, 'NaN') OR instr({column}, 'Infinity')").fetchall()
                for row in rows:
                    value = json.loads(row["value"], parse_constant=lambda constant: None)
                    self._db.execute(f"UPDATE {table} SET {column} = ? WHERE id = ?", (_dumps(value), row["id"]))

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    @contextmanager
    def write(self) -> Iterator[StoreWriter]:
        """A write transaction taking the database's write lock at once (``BEGIN IMMEDIATE``): all or nothing."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield StoreWriter(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def read(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """The rows of one read-only query (the analytics of :mod:`agentsight.dev.stats` run their SQL here)."""
        return self._read(sql, params)

    # Writes of one REST payload ------------------------------------------------------------------

    def upsert_conversation(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Get-or-create a posted conversation (see :meth:`StoreWriter.upsert_conversation`); returns it.

        A post with a true ``is_used`` marks it used, one with a false ``is_used`` marks it ``initialized``;
        its ``timestamp`` dates a new conversation.
        """
        used = bool(body.get("is_used"))
        created = utc_iso(body["timestamp"]) if body.get("timestamp") else None
        with self.write() as writer:
            server_id = writer.upsert_conversation(body, initialized=not used, used=used, created=created)
        return self._conversations(" WHERE c.id = ?", [server_id], "", [])[0]

    def add_item(self, kind: str, conversation: int, timestamp: str | None, body: Mapping[str, Any],
                 usage: Mapping[str, int] | None = None) -> int:
        """Store one item (see :meth:`StoreWriter.add_item`); returns its id."""
        with self.write() as writer:
            return writer.add_item(kind, conversation, timestamp, body, usage)

    # Reads -------------------------------------------------------------------------------------

    def list_conversations(
        self, filters: ConversationFilter, offset: int, limit: int, *, previews: bool = False
    ) -> tuple[int, list[dict[str, Any]]]:
        """The count of matching conversations and one page of them, newest first, each with ``messages``;
        with ``previews``, each with a ``preview`` and ``counts`` instead (:func:`~agentsight.dev.previews.
        attach_previews`: what the API's list answers, never a whole transcript)."""
        where, params = filters.where()
        count = int(self._read(f"SELECT COUNT(*) FROM conversations c{where}", params)[0][0])
        page = self._conversations(where, params, " ORDER BY c.created_at DESC, c.id DESC LIMIT ? OFFSET ?",
                                   [limit, offset])
        if previews:
            attach_previews(self._read, page)
            return count, page
        messages: dict[int, list[dict[str, Any]]] = {conversation["id"]: [] for conversation in page}
        if page:
            marks = ", ".join("?" * len(page))
            for item in self._items(f"conversation IN ({marks}) AND kind = 'message'", list(messages)):
                messages[item["conversation"]].append(item)
        for conversation in page:
            conversation["messages"] = messages[conversation["id"]]
        return count, page

    def find_conversation(self, conversation_id: str) -> dict[str, Any] | None:
        """The conversation (no items) with this client ``conversation_id``; ``None`` if absent."""
        found = self._conversations(" WHERE c.conversation_id = ?", [conversation_id], "", [])
        return found[0] if found else None

    def all_conversations(self) -> list[dict[str, Any]]:
        """Every conversation (no items), in creation order."""
        return self._conversations("", [], " ORDER BY c.id", [])

    def get_conversation(self, server_id: int) -> dict[str, Any] | None:
        """One conversation with its ``messages``, ``buttons`` (with ``siblings``), ``actions``,
        ``attachments`` (uploaded files), ``timeline`` (all of them and attachment descriptors, in time order,
        each with ``kind``), ``archived`` (incomplete turns, unknown spans) and ``tokens`` (its token totals);
        ``None`` if absent."""
        found = self._conversations(" WHERE c.id = ?", [server_id], "", [])
        if not found:
            return None
        conversation = found[0]
        items = self._items("conversation = ?", [server_id])
        timeline = [item for item in items if item["kind"] != "archived"]
        events = {item["button_event"] for item in timeline if item["kind"] == "button"}
        labels = self._labels_by_event(sorted(events))
        for item in timeline:
            if item["kind"] == "button":
                item["siblings"] = [label for label in labels.get(item["button_event"], ()) if label != item["label"]]
        conversation["messages"] = [item for item in timeline if item["kind"] == "message"]
        conversation["buttons"] = [item for item in timeline if item["kind"] == "button"]
        conversation["actions"] = [item for item in timeline if item["kind"] == "action"]
        conversation["attachments"] = [
            {**file, "sender": item.get("sender"), "timestamp": item["timestamp"], "item": item["id"]}
            for item in timeline if item["kind"] == "attachments" and not item.get("descriptor")
            for file in item.get("files", ())
        ]
        conversation["timeline"] = timeline
        conversation["archived"] = [item for item in items if item["kind"] == "archived"]
        conversation["tokens"] = self._token_sums("u.conversation = ?", [server_id])
        return conversation

    def stats(self, environment: str | None = None) -> dict[str, Any]:
        """Interaction and button analytics, token sums and the conversation count (of one environment)."""
        where, params = ConversationFilter(environment=environment).where()
        totals = self._read(
            "SELECT COUNT(*) AS conversations, COALESCE(SUM(c.initialized), 0) AS initialized, "
            "COALESCE(SUM(c.is_used), 0) AS used, "
            "COALESCE(SUM(c.initialized AND c.is_used), 0) AS converted, "
            f"COALESCE(SUM(c.initialized AND NOT c.is_used), 0) AS abandoned FROM conversations c{where}",
            params,
        )[0]
        joined = f"FROM items i JOIN conversations c ON c.id = i.conversation{where}{' AND' if where else ' WHERE'}"
        buttons: dict[str, dict[str, int]] = {}
        for row in self._read(
            "SELECT json_extract(i.body, '$.button_event') AS event, json_extract(i.body, '$.label') AS label, "
            f"COUNT(*) AS n {joined} i.kind = 'button' GROUP BY event, label ORDER BY event, n DESC, label",
            params,
        ):
            buttons.setdefault(str(row["event"]), {})[str(row["label"])] = int(row["n"])
        initialized = int(totals["initialized"])
        return {
            "initialized": initialized,
            "used": int(totals["used"]),
            "interaction_rate": round(100.0 * int(totals["converted"]) / initialized, 1) if initialized else 0,
            "abandoned": int(totals["abandoned"]),
            "buttons": buttons,
            "tokens": self._token_sums(where.removeprefix(" WHERE "), params),
            "conversations": int(totals["conversations"]),
        }

    def _token_sums(self, condition: str, params: list[Any]) -> dict[str, int]:
        sums = ", ".join(f"COALESCE(SUM(u.{key}), 0) AS {key}" for key in TOKEN_KEYS)
        row = self._read(f"SELECT {sums} FROM usage u JOIN conversations c ON c.id = u.conversation"
                         f"{' WHERE ' + condition if condition else ''}", params)[0]
        return {key: int(row[key]) for key in TOKEN_KEYS}

    def _conversations(self, where: str, params: list[Any], tail: str, tail_params: list[Any]) -> list[dict[str, Any]]:
        rows = self._read(f"SELECT c.* FROM conversations c{where}{tail}", [*params, *tail_params])
        return [_conversation(row) for row in rows]

    def _items(self, where: str, params: list[Any]) -> list[dict[str, Any]]:
        rows = self._read(f"SELECT * FROM items WHERE {where} ORDER BY timestamp, id", params)
        return [{"id": row["id"], "kind": row["kind"], "conversation": row["conversation"],
                 "timestamp": row["timestamp"], **json.loads(row["body"])} for row in rows]

    def _labels_by_event(self, events: list[str]) -> dict[str, list[str]]:
        if not events:
            return {}
        marks = ", ".join("?" * len(events))
        labels: dict[str, list[str]] = {}
        for row in self._read(
            "SELECT DISTINCT json_extract(body, '$.button_event') AS event, json_extract(body, '$.label') AS label "
            f"FROM items WHERE kind = 'button' AND json_extract(body, '$.button_event') IN ({marks}) "
            "ORDER BY event, label",
            events,
        ):
            labels.setdefault(row["event"], []).append(row["label"])
        return labels


def _dumps(value: Any) -> str:
    """JSON text to store; ``ValueError`` for a number JSON cannot hold (``NaN``, infinities)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _conversation(row: sqlite3.Row) -> dict[str, Any]:
    conversation = {key: row[key] for key in row.keys()}  # noqa: SIM118 - sqlite3.Row is not a mapping
    conversation["metadata"] = json.loads(row["metadata"]) if row["metadata"] else {}
    conversation["initialized"] = bool(row["initialized"])
    conversation["is_used"] = bool(row["is_used"])
    return conversation
