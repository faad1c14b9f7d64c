"""Keyword filters to query parameters, and the checks made before anything is sent.

The API ignores a query parameter it does not know, which silently widens a result set; so each list refuses
filter names outside its route's set (upstream 0.1.4's sets) with :class:`ValidationError` before sending.
Booleans go on the wire as ``true``/``false``, datetimes as ISO 8601, lists as repeated keys; ``None`` means
"not filtered" and is left out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from agentsight.exceptions import ValidationError

SENTIMENTS = ("positive", "neutral", "negative")
TICKET_STATUSES = ("backlog", "open", "in_progress", "in_review", "done", "closed")
TICKET_PRIORITIES = ("low", "medium", "high")
COST_SOURCES = ("backend", "reported", "unpriced")
USAGE_GROUP_BY = ("model", "conversation", "day")
USAGE_CURRENCIES = ("usd", "eur")

ENV_ALIAS: Mapping[str, str] = {"environment": "env"}
"""The conversation and feedback routes call the environment filter ``env``; usage and spans say ``environment``."""

CONVERSATION_FILTERS = frozenset({
    "action_name", "conversation_id", "customer_id", "customer_id__icontains", "customer_ip_address", "device",
    "env", "environment", "feedback_sentiment", "has_action", "has_feedback", "has_messages", "include_deleted",
    "include_tickets", "is_marked", "language", "message_contains", "metadata", "metadata_key", "metadata_value",
    "name", "ordering", "search", "started_at_after", "started_at_before",
})
FEEDBACK_FILTERS = frozenset({
    "agent", "category", "comment_contains", "conversation", "conversation_id", "created_at_after",
    "created_at_before", "env", "environment", "has_comment", "include_tickets", "has_ticket", "kind", "message",
    "ordering", "reason", "search", "sentiment", "ticket_status", "topic", "user",
})
TICKET_FILTERS = frozenset({
    "conversation", "conversation_id", "created_at_after", "created_at_before", "has_conversation",
    "has_feedback", "ordering", "priority", "search", "status", "tags", "updated_at_after", "updated_at_before",
})
ACTION_FILTERS = frozenset({"display_name", "name", "name__icontains", "ordering", "search"})
USAGE_FILTERS = frozenset({
    "conversation", "conversation_id", "cost_source", "environment", "incomplete", "model", "ordering",
    "started_at_after", "started_at_before", "turn_id",
})
SPAN_FILTERS = frozenset({
    "conversation", "conversation_id", "environment", "kind", "name", "ordering", "parent_span_id", "span_id",
    "started_at_after", "started_at_before", "status", "trace_id",
})


def wire_value(value: Any) -> Any:
    """``value`` as the API parses it: ``true``/``false``, ISO 8601, a list for repeated keys, else as is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple | set):
        return [wire_value(item) for item in value]
    return value


def build(filters: Mapping[str, Any], allowed: frozenset[str], *, what: str,
          rename: Mapping[str, str] = ENV_ALIAS) -> dict[str, Any]:
    """Query parameters from ``filters``: names checked against ``allowed``, ``None`` left out, values formatted."""
    unknown = sorted(set(filters) - allowed)
    if unknown:
        raise ValidationError(f"unknown {what} filter(s): {', '.join(unknown)}. "
                              f"Supported: {', '.join(sorted(allowed))}")
    return {rename.get(name, name): wire_value(value) for name, value in filters.items() if value is not None}


def choice(value: str | None, choices: Iterable[str], *, what: str) -> str | None:
    """``value`` when it is one of ``choices`` (or ``None``); else :class:`ValidationError` naming them."""
    options = tuple(choices)
    if value is not None and value not in options:
        raise ValidationError(f"{what} must be one of {', '.join(options)}, got {value!r}")
    return value


def sentiment(value: Any) -> str:
    """A required sentiment (``positive``, ``neutral``, ``negative``; an enum member counts by its value)."""
    value = getattr(value, "value", value)
    if not value:
        raise ValidationError(f"sentiment is required and must be one of {', '.join(SENTIMENTS)}")
    checked = choice(value, SENTIMENTS, what="sentiment")
    assert checked is not None
    return checked


def updatable(fields: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The fields to send for an update: only ``names`` allowed, ``None`` dropped, at least one left."""
    unknown = sorted(set(fields) - set(names))
    if unknown:
        raise ValidationError(f"cannot update: {', '.join(unknown)}. Updatable fields: {', '.join(names)}")
    payload = {name: value for name, value in fields.items() if value is not None}
    if not payload:
        raise ValidationError("update() needs at least one field to change")
    return payload


def check_metadata_change(metadata: Mapping[str, Any] | None, remove: Iterable[str] | None) -> list[str]:
    """Check an ``update_metadata`` call's arguments; the keys to remove, as a list."""
    if metadata is not None and (not isinstance(metadata, dict) or not all(isinstance(k, str) for k in metadata)):
        raise ValidationError("metadata must be a dict with string keys")
    if isinstance(remove, str):
        raise ValidationError(f"remove must be a list of keys, not a string: did you mean remove=[{remove!r}]?")
    keys = list(remove or ())
    if not all(isinstance(key, str) for key in keys):
        raise ValidationError("remove must hold string keys")
    if not metadata and not keys:
        raise ValidationError("update_metadata() needs metadata to set, keys to remove, or both")
    return keys


def merged_metadata(stored: Any, metadata: Mapping[str, Any] | None, remove: list[str]) -> dict[str, Any]:
    """``stored`` (a dict or JSON text) with ``metadata`` applied over it (shallow) and ``remove`` dropped.

    No value is filtered: ``None``, ``False``, ``0`` and ``""`` are stored as given; only ``remove`` deletes.
    """
    if isinstance(stored, str) and stored.strip():
        try:
            stored = json.loads(stored)
        except ValueError:
            stored = None
        if not isinstance(stored, dict):
            raise ValidationError("stored metadata is not a JSON object, so it cannot be merged into")
    if stored is not None and not isinstance(stored, dict | str):
        raise ValidationError(f"stored metadata is a {type(stored).__name__}, so it cannot be merged into")
    merged = dict(stored or {})
    merged.update(metadata or {})
    for key in remove:
        merged.pop(key, None)
    return merged
