"""The metrics of ``GET /api/stats/``: AgentSight's dashboard metrics, computed by SQL aggregates over the store.

Both wires land in the same rows (:mod:`.rest`, :mod:`.ingest`), so each metric reads them alike:
messages (``sender`` ``end_user`` / ``agent``), actions (``duration_ms``, model calls with their tokens in
the action metadata, ``token_usage`` sums), usage rows, and the conversation's fields and metadata.
Analytics count one environment, production by default (as AgentSight does: development is excluded from
analytics by design), within an optional date range. The shape is :class:`~.stats_models.StatsAnswer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from agentsight.dev import geo, pricing
from agentsight.dev.pricing import Tokens
from agentsight.dev.store import TOKEN_KEYS, DevStore

DEFAULT_ENVIRONMENT = "production"
EVERY_ENVIRONMENT = "all"
"""``environment=all`` counts every environment."""
ESCALATION_ACTIONS = ("fallback_to_human", "open_ticket", "ticket", "contact_human")
"""Action names AgentSight counts as a human escalation."""
SEGMENT_KEYS = ("segment", "plan", "tier", "customer_segment")
"""Conversation metadata keys taken as the customer segment when ``segment=`` names none."""
SUSPECT_TURN_MS = 50
SUSPECT_ANSWER_CHARS = 200
"""A turn answered faster than :data:`SUSPECT_TURN_MS` with an answer this long was ended early (a stream)."""
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

INTERACTION_DEFINITION = (
    "Unique interaction rate = 100 x engaged visits / visits. A visit is a conversation recorded by "
    "initialize_conversation() (0.0.x) or open_conversation() (0.1.x); it is engaged once it has a turn "
    "(get_or_create_conversation() / turn()). Conversations engaged without a visit stay out of the rate."
)
NO_VISITS_HINT = ("No visit was recorded, so there is no rate: call initialize_conversation(conversation_id, ...) "
                  "(0.0.x) or agentsight.open_conversation(conversation_id, ...) (0.1.x) when the widget loads.")
FEEDBACK_HINT = ("No feedback yet: send your users' votes from your UI with agentsight.api's "
                 "feedbacks.create_for_conversation(conversation, sentiment, comment=None) (sentiment positive / "
                 "neutral / negative; agentsight dev stores it too), or 0.0.x's conversation_manager.submit_feedback.")

_SENDER = "json_extract(i.body, '$.sender')"
_ACTION = "json_extract(i.body, '$.action_name')"
_IS_MODEL_CALL = ("(json_extract(i.body, '$.metadata.operation') IS NOT NULL "
                  "AND json_extract(i.body, '$.metadata.provider') IS NOT NULL)")
_DURATION = ("COALESCE(json_extract(i.body, '$.duration_ms'), (julianday(json_extract(i.body, '$.ended_at')) - "
             "julianday(json_extract(i.body, '$.started_at'))) * 86400000.0)")


@dataclass(frozen=True)
class Scope:
    """What the metrics count: one environment (``None``: all) and an inclusive range of UTC dates."""

    environment: str | None = DEFAULT_ENVIRONMENT
    date_from: date | None = None
    date_to: date | None = None

    def conversations(self) -> tuple[str, list[Any]]:
        """``WHERE`` condition (on ``c``) and parameters selecting the conversations counted."""
        return self._where("c.created_at")

    def items(self, kind: str) -> tuple[str, list[Any]]:
        """Condition on ``i`` joined to ``c``: items of ``kind`` of the environment, dated in the range."""
        condition, params = self._where("i.timestamp")
        return f"i.kind = ? AND {condition}", [kind, *params]

    def _where(self, column: str) -> tuple[str, list[Any]]:
        clauses, params = ["1"], []
        if self.environment is not None:
            clauses.append("c.environment = ?")
            params.append(self.environment)
        if self.date_from is not None:
            clauses.append(f"{column} >= ?")
            params.append(self.date_from.isoformat())
        if self.date_to is not None and self.date_to < date.max:
            clauses.append(f"{column} < ?")
            params.append((self.date_to + timedelta(days=1)).isoformat())
        return " AND ".join(clauses), params

    def filters(self) -> dict[str, Any]:
        """The scope as the answer's ``filters``."""
        return {"environment": self.environment,
                "from": self.date_from.isoformat() if self.date_from else None,
                "to": self.date_to.isoformat() if self.date_to else None}


def scope(environment: str | None, date_from: str | None, date_to: str | None) -> Scope:
    """The scope of query parameters: no environment means production, ``all`` every one. Raises ``ValueError``
    for a date that is not ISO (``YYYY-MM-DD``) or a range ending before it starts."""
    start = date.fromisoformat(date_from) if date_from else None
    end = date.fromisoformat(date_to) if date_to else None
    if start and end and end < start:
        raise ValueError("to is before from")
    chosen = environment or DEFAULT_ENVIRONMENT
    return Scope(None if chosen == EVERY_ENVIRONMENT else chosen, start, end)


def compute(store: DevStore, where: Scope, breakdown: str | None = None, segment: str | None = None) -> dict[str, Any]:
    """Every metric of ``GET /api/stats/`` for ``where`` (see :class:`~.stats_models.StatsAnswer`)."""
    condition, params = where.conversations()
    visits = store.read(
        "SELECT COUNT(*) AS conversations, COUNT(DISTINCT NULLIF(c.customer_id, '')) AS users, "
        "COALESCE(SUM(c.customer_id IS NULL OR c.customer_id = ''), 0) AS anonymous, "
        "COALESCE(SUM(c.initialized), 0) AS initialized, COALESCE(SUM(c.is_used), 0) AS used, "
        "COALESCE(SUM(c.initialized AND c.is_used), 0) AS engaged, "
        "COALESCE(SUM(c.initialized AND NOT c.is_used), 0) AS abandoned "
        f"FROM conversations c WHERE {condition}", params)[0]
    interaction = interaction_rate(int(visits["initialized"]), int(visits["engaged"]), int(visits["used"]),
                                   int(visits["abandoned"]))
    messages = _messages(store, where)
    tokens = _token_sums(store, where)
    escalated = _escalations(store, where)
    used = int(visits["used"])
    return {
        "initialized": interaction["initialized"],
        "used": used,
        "interaction_rate": interaction["rate"],
        "abandoned": interaction["abandoned"],
        "buttons": _buttons(store, where),
        "tokens": tokens,
        "conversations": int(visits["conversations"]),
        "filters": where.filters(),
        "totals": {**messages.pop("totals"), "conversations": int(visits["conversations"]),
                   "individual_users": int(visits["users"]),
                   "conversations_without_customer": int(visits["anonymous"])},
        **messages,
        "tools": _tools(store, where),
        "token_cost": _token_cost(store, where, tokens),
        "world_map": _world_map(store, where),
        "devices": _counts(store, where, "c.device"),
        "languages": _counts(store, where, "c.language"),
        "sources": _counts(store, where, "c.source"),
        "escalation": {"action_names": list(ESCALATION_ACTIONS), "conversations": escalated,
                       "rate": round(100.0 * escalated / used, 1) if used else None},
        "feedback": _feedback(store, where),
        "interaction": interaction,
        "pages": _segments(store, where, _metadata("page_url")),
        "by_hour": _segments(store, where, "substr(c.created_at, 12, 2)"),
        "by_weekday": _weekdays(store, where),
        "segments": _breakdown(store, where, segment or _segment_key(store, where)),
        "breakdown": _breakdown(store, where, breakdown),
    }


def interaction_rate(initialized: int, engaged: int, used: int, abandoned: int) -> dict[str, Any]:
    """The unique interaction rate (:data:`INTERACTION_DEFINITION`) with what it counts; ``rate`` is ``None``
    (and ``hint`` says why) when nothing was initialized."""
    return {"rate": round(100.0 * engaged / initialized, 1) if initialized else None, "engaged": engaged,
            "initialized": initialized, "abandoned": abandoned, "engaged_without_visit": used - engaged,
            "definition": INTERACTION_DEFINITION, "hint": None if initialized else NO_VISITS_HINT}


def _messages(store: DevStore, where: Scope) -> dict[str, Any]:
    """Message totals, the response time, the conversation duration, peak hours and the daily overview."""
    condition, params = where.items("message")
    joined = f"FROM items i JOIN conversations c ON c.id = i.conversation WHERE {condition}"
    totals = store.read(f"SELECT COUNT(*) AS n, COALESCE(SUM({_SENDER} = 'end_user'), 0) AS questions, "
                        f"COALESCE(SUM({_SENDER} = 'agent'), 0) AS answers {joined}", params)[0]
    turns = store.read(
        "SELECT AVG(ms) AS average, COUNT(ms) AS n, COALESCE(SUM(ms < ? AND chars >= ?), 0) AS suspect FROM ("
        "SELECT (julianday(i.timestamp) - julianday(LAG(i.timestamp) OVER turn)) * 86400000.0 AS ms, "
        f"{_SENDER} AS sender, LAG({_SENDER}) OVER turn AS asked, "
        f"length(json_extract(i.body, '$.content')) AS chars {joined} "
        "WINDOW turn AS (PARTITION BY i.conversation ORDER BY i.timestamp, i.id)) "
        "WHERE sender = 'agent' AND asked = 'end_user'", [SUSPECT_TURN_MS, SUSPECT_ANSWER_CHARS, *params])[0]
    lasting = store.read("SELECT AVG(ms) AS average, COUNT(*) AS n FROM (SELECT (julianday(MAX(i.timestamp)) - "
                         f"julianday(MIN(i.timestamp))) * 86400000.0 AS ms {joined} "
                         "GROUP BY i.conversation HAVING COUNT(*) > 1)", params)[0]
    hours = dict.fromkeys(range(24), 0)
    for row in store.read(f"SELECT CAST(substr(i.timestamp, 12, 2) AS INTEGER) AS hour, COUNT(*) AS n {joined} "
                          "GROUP BY hour", params):
        hours[int(row["hour"])] = int(row["n"])
    days: dict[str, dict[str, Any]] = {}
    for row in store.read(f"SELECT substr(i.timestamp, 1, 10) AS day, COUNT(*) AS n {joined} GROUP BY day", params):
        days[row["day"]] = {"date": row["day"], "messages": int(row["n"]), "conversations": 0}
    created, created_params = where.conversations()
    for row in store.read("SELECT substr(c.created_at, 1, 10) AS day, COUNT(*) AS n FROM conversations c "
                          f"WHERE {created} GROUP BY day", created_params):
        days.setdefault(row["day"], {"date": row["day"], "messages": 0, "conversations": 0})
        days[row["day"]]["conversations"] = int(row["n"])
    return {
        "totals": {"messages": int(totals["n"]), "questions": int(totals["questions"]),
                   "answers": int(totals["answers"])},
        "response_time": {"average_ms": _rounded(turns["average"]), "count": int(turns["n"]),
                          "suspect_turns": int(turns["suspect"])},
        "conversation_duration": {"average_ms": _rounded(lasting["average"]), "count": int(lasting["n"])},
        "peak_hours": [{"hour": hour, "messages": count} for hour, count in hours.items()],
        "daily": [days[day] for day in sorted(days)],
    }


def _tools(store: DevStore, where: Scope) -> list[dict[str, Any]]:
    """Actions by name, model calls and ``token_usage`` sums left out, most called first."""
    condition, params = where.items("action")
    rows = store.read(
        f"SELECT {_ACTION} AS action, COUNT(*) AS calls, AVG({_DURATION}) AS average, "
        "COALESCE(SUM(json_extract(i.body, '$.error_msg') IS NOT NULL), 0) AS errors "
        f"FROM items i JOIN conversations c ON c.id = i.conversation WHERE {condition} "
        f"AND {_ACTION} != 'token_usage' AND NOT {_IS_MODEL_CALL} GROUP BY action ORDER BY calls DESC, action", params)
    return [{"name": str(row["action"]), "calls": int(row["calls"]), "average_ms": _rounded(row["average"]),
             "errors": int(row["errors"])} for row in rows]


def _token_sums(store: DevStore, where: Scope) -> dict[str, int]:
    condition, params = where.items("action")
    sums = ", ".join(f"COALESCE(SUM(u.{key}), 0) AS {key}" for key in TOKEN_KEYS)
    row = store.read(f"SELECT {sums} FROM usage u JOIN items i ON i.id = u.item "
                     f"JOIN conversations c ON c.id = u.conversation WHERE {condition}", params)[0]
    return {key: int(row[key]) for key in TOKEN_KEYS}


_MODEL_TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


def _token_cost(store: DevStore, where: Scope, tokens: dict[str, int]) -> dict[str, Any]:
    """Tokens and cost per model: ingest's model calls (usage rows; input excludes cache there) and the REST
    wire's model-call actions (tokens in the metadata, input including cache), merged by provider and model."""
    condition, params = where.items("action")
    meta = "json_extract(i.body, '$.metadata.{}')"
    model = (f"COALESCE({meta.format('model')}, {meta.format('response_model')}, {meta.format('request_model')}, "
             f"{meta.format('model_hint')}, 'unknown')")
    joined = "FROM items i JOIN conversations c ON c.id = i.conversation LEFT JOIN usage u ON u.item = i.id"
    rows = store.read(
        f"SELECT {meta.format('provider')} AS provider, {model} AS model, COUNT(*) AS calls, "
        "CASE WHEN u.item IS NULL THEN COALESCE(" + meta.format("input_tokens") + ", 0) "
        "ELSE u.prompt_tokens + u.cache_read_tokens + u.cache_write_tokens END AS input_tokens, "
        "CASE WHEN u.item IS NULL THEN COALESCE(" + meta.format("output_tokens") + ", 0) "
        "ELSE u.completion_tokens END AS output_tokens, "
        "CASE WHEN u.item IS NULL THEN COALESCE(" + meta.format("cache_read_tokens") + ", 0) "
        "ELSE u.cache_read_tokens END AS cache_read_tokens, "
        "CASE WHEN u.item IS NULL THEN COALESCE(" + meta.format("cache_write_tokens") + ", 0) "
        "ELSE u.cache_write_tokens END AS cache_write_tokens, "
        "CASE WHEN u.item IS NULL THEN COALESCE(" + meta.format("reasoning_tokens") + ", 0) "
        "ELSE u.reasoning_tokens END AS reasoning_tokens "
        f"{joined} WHERE {condition} AND {_ACTION} != 'token_usage' AND {_IS_MODEL_CALL} "
        "GROUP BY provider, model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, "
        "reasoning_tokens", params)
    grouped: dict[tuple[str | None, str], list[Any]] = {}
    for row in rows:
        grouped.setdefault((row["provider"], str(row["model"])), []).append(row)
    models = []
    for (provider, name), calls in grouped.items():
        cost = pricing.price(provider, name, [(Tokens(*(int(row[key] or 0) for key in Tokens.__dataclass_fields__)),
                                               int(row["calls"])) for row in calls])
        models.append({"provider": provider, "model": name, "calls": sum(int(row["calls"]) for row in calls),
                       **{key: sum(int(row[key] or 0) * int(row["calls"]) for row in calls) for key in _MODEL_TOKENS},
                       "cost_usd": None if cost is None else float(cost), "priced": cost is not None})
    models.sort(key=lambda entry: (-entry["input_tokens"] - entry["output_tokens"], entry["model"]))
    counted_input = tokens["prompt_tokens"] + tokens["cache_read_tokens"] + tokens["cache_write_tokens"]
    unattributed = {
        "input_tokens": max(0, counted_input - sum(entry["input_tokens"] for entry in models)),
        "output_tokens": max(0, tokens["completion_tokens"] - sum(entry["output_tokens"] for entry in models)),
        "embedding_tokens": tokens["embedding_tokens"],
    }
    return {"models": models, "unattributed": unattributed,
            "total_cost_usd": float(sum(entry["cost_usd"] or 0 for entry in models)),
            "unpriced_models": [entry["model"] for entry in models if not entry["priced"]],
            "prices": pricing.source()}


def _world_map(store: DevStore, where: Scope) -> dict[str, Any]:
    condition, params = where.conversations()
    countries: dict[str, dict[str, Any]] = {}
    unlocated = without = 0
    for row in store.read("SELECT NULLIF(TRIM(c.customer_ip_address), '') AS ip, COUNT(*) AS n "
                          f"FROM conversations c WHERE {condition} GROUP BY ip", params):
        if row["ip"] is None:
            without += int(row["n"])
            continue
        found = geo.country(str(row["ip"]))
        if found is None:
            unlocated += int(row["n"])
            continue
        entry = countries.setdefault(found[0], {"country": found[0], "name": found[1], "conversations": 0})
        entry["conversations"] += int(row["n"])
    located = sorted(countries.values(), key=lambda entry: (-entry["conversations"], entry["country"]))
    return {"countries": located, "located": sum(entry["conversations"] for entry in located),
            "unlocated": unlocated, "without_ip": without}


def _counts(store: DevStore, where: Scope, expression: str) -> list[dict[str, Any]]:
    condition, params = where.conversations()
    rows = store.read(f"SELECT CAST({expression} AS TEXT) AS value, COUNT(*) AS n FROM conversations c "
                      f"WHERE {condition} AND NULLIF({expression}, '') IS NOT NULL GROUP BY value "
                      "ORDER BY n DESC, value", params)
    return [{"value": str(row["value"]), "conversations": int(row["n"])} for row in rows]


def _escalations(store: DevStore, where: Scope) -> int:
    condition, params = where.items("action")
    marks = ", ".join("?" * len(ESCALATION_ACTIONS))
    return int(store.read(f"SELECT COUNT(DISTINCT i.conversation) FROM items i JOIN conversations c "
                          f"ON c.id = i.conversation WHERE {condition} AND {_ACTION} IN ({marks})",
                          [*params, *ESCALATION_ACTIONS])[0][0])


def _buttons(store: DevStore, where: Scope) -> dict[str, dict[str, int]]:
    condition, params = where.items("button")
    buttons: dict[str, dict[str, int]] = {}
    for row in store.read(
        "SELECT json_extract(i.body, '$.button_event') AS event, json_extract(i.body, '$.label') AS label, "
        f"COUNT(*) AS n FROM items i JOIN conversations c ON c.id = i.conversation WHERE {condition} "
        "GROUP BY event, label ORDER BY event, n DESC, label", params):
        buttons.setdefault(str(row["event"]), {})[str(row["label"])] = int(row["n"])
    return buttons


def _feedback(store: DevStore, where: Scope) -> dict[str, Any]:
    """Feedback on the counted conversations by sentiment (the data plane's ``feedbacks`` table, when present)."""
    counts = {"positive": 0, "neutral": 0, "negative": 0}
    if store.read("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'feedbacks'"):
        condition, params = where.conversations()
        for row in store.read("SELECT b.sentiment AS sentiment, COUNT(*) AS n FROM feedbacks b JOIN conversations c "
                              f"ON c.id = b.conversation WHERE {condition} GROUP BY b.sentiment", params):
            if row["sentiment"] in counts:
                counts[row["sentiment"]] = int(row["n"])
    total = sum(counts.values())
    return {"total": total, **counts, "hint": None if total else FEEDBACK_HINT}


def _metadata(key: str) -> str:
    """SQL text of conversation metadata ``key``: any key, matched as text (a JSON path could not name every key)."""
    return f"(SELECT m.value FROM json_each(c.metadata) AS m WHERE m.key = {_sql_text(key)})"


def _sql_text(value: str) -> str:
    return "'" + value.replace("\x00", "").replace("'", "''") + "'"


def _segments(store: DevStore, where: Scope, expression: str) -> list[dict[str, Any]]:
    """Conversations, visits and engaged visits per value of ``expression`` (values absent left out)."""
    condition, params = where.conversations()
    rows = store.read(
        f"SELECT CAST({expression} AS TEXT) AS value, COUNT(*) AS n, COALESCE(SUM(c.initialized), 0) AS visits, "
        "COALESCE(SUM(c.initialized AND c.is_used), 0) AS engaged FROM conversations c "
        f"WHERE {condition} AND NULLIF(CAST({expression} AS TEXT), '') IS NOT NULL "
        "GROUP BY value ORDER BY n DESC, value", params)
    return [{"value": str(row["value"]), "conversations": int(row["n"]), "visits": int(row["visits"]),
             "engaged": int(row["engaged"]),
             "rate": round(100.0 * int(row["engaged"]) / int(row["visits"]), 1) if row["visits"] else None}
            for row in rows]


def _weekdays(store: DevStore, where: Scope) -> list[dict[str, Any]]:
    by_number = {row["value"]: row for row in _segments(store, where, "strftime('%w', c.created_at)")}
    # SQLite's %w counts from Sunday (0); the answer lists Monday first.
    return [{**by_number[str((index + 1) % 7)], "value": name} for index, name in enumerate(WEEKDAYS)
            if str((index + 1) % 7) in by_number]


def _segment_key(store: DevStore, where: Scope) -> str | None:
    """The first of :data:`SEGMENT_KEYS` some counted conversation's metadata holds."""
    condition, params = where.conversations()
    for key in SEGMENT_KEYS:
        if store.read(f"SELECT 1 FROM conversations c WHERE {condition} AND {_metadata(key)} IS NOT NULL LIMIT 1",
                      params):
            return key
    return None


def _breakdown(store: DevStore, where: Scope, key: str | None) -> dict[str, Any]:
    return {"key": key, "rows": _segments(store, where, _metadata(key)) if key else []}


def _rounded(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)
