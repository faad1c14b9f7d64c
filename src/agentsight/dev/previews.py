"""Previews of conversations for the ``agentsight dev`` conversation list: never whole transcripts.

A list page carries, per conversation, its first question and last answer clipped to :data:`PREVIEW_CHARS`
characters (clipped inside SQLite, so a 1 MB message is never read whole into Python) and its item counts;
the full transcript is the conversation endpoint's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

PREVIEW_CHARS = 200
"""Characters of a previewed message; a longer one is cut there and marked ``clipped``."""

COUNTED = {"message": "messages", "button": "buttons", "action": "actions", "attachments": "attachments"}
"""Item kinds counted per conversation, by the key each count has in ``counts``."""

Read = Callable[[str, list[Any]], list[sqlite3.Row]]

_ENDS = """
WITH m AS (
    SELECT conversation, id, timestamp, json_extract(body, '$.sender') AS sender,
           json_extract(body, '$.content') AS content
    FROM items WHERE kind = 'message' AND conversation IN ({marks})
), ranked AS (
    SELECT conversation, sender, content,
           ROW_NUMBER() OVER (PARTITION BY conversation, sender ORDER BY timestamp, id) AS first,
           ROW_NUMBER() OVER (PARTITION BY conversation, sender ORDER BY timestamp DESC, id DESC) AS last
    FROM m
)
SELECT conversation, sender, substr(content, 1, ?) AS head, length(content) AS size FROM ranked
WHERE (sender = 'end_user' AND first = 1) OR (sender = 'agent' AND last = 1)
"""


def _clip(head: object, size: object) -> dict[str, Any] | None:
    if head is None:
        return None
    length = int(size) if isinstance(size, int) else len(str(head))
    return {"text": str(head)[:PREVIEW_CHARS], "length": length, "clipped": length > PREVIEW_CHARS}


def attach_previews(read: Read, page: list[dict[str, Any]]) -> None:
    """Give each conversation of ``page`` (dicts with ``id``) its ``preview`` and ``counts``, in two queries.

    ``preview`` is ``{"first_question": clip, "last_answer": clip}``, each clip ``{"text", "length",
    "clipped"}`` (``length`` of the whole message) or ``None`` when there is no such message;
    ``counts`` maps ``messages``, ``buttons``, ``actions`` and ``attachments`` to how many it has (uploads;
    an ingested attachment's descriptor is not counted again).
    """
    by_id = {conversation["id"]: conversation for conversation in page}
    for conversation in page:
        conversation["preview"] = {"first_question": None, "last_answer": None}
        conversation["counts"] = dict.fromkeys(COUNTED.values(), 0)
    if not by_id:
        return
    ids = list(by_id)
    marks = ", ".join("?" * len(ids))
    for row in read(f"SELECT conversation, kind, COUNT(*) AS n FROM items WHERE conversation IN ({marks}) AND NOT "
                    "(kind = 'attachments' AND COALESCE(json_extract(body, '$.descriptor'), 0)) "
                    "GROUP BY conversation, kind", ids):
        if row["kind"] in COUNTED:
            by_id[row["conversation"]]["counts"][COUNTED[row["kind"]]] = int(row["n"])
    for row in read(_ENDS.format(marks=marks), [*ids, PREVIEW_CHARS]):
        end = "first_question" if row["sender"] == "end_user" else "last_answer"
        by_id[row["conversation"]]["preview"][end] = _clip(row["head"], row["size"])
