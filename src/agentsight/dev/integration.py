"""The integration check of ``GET /api/stats/integration/``: which metrics the app being developed feeds.

AgentSight's development mode shows which metrics receive data; this goes one step further locally: for
each metric that stays empty (or looks wrong) it names the field or call, in both APIs (0.0.x
``ConversationTracker`` and 0.1.x ``agentsight.*``), that would feed it. Computed from the same numbers as
``GET /api/stats/`` (:func:`agentsight.dev.stats.compute`).
"""

from __future__ import annotations

from typing import Any

from agentsight.dev import stats
from agentsight.dev.store import DevStore

_FIELD = ("pass {field} on the conversation: {field}=... on get_or_create_conversation() / "
          "initialize_conversation() (0.0.x) or agentsight.conversation(id, {field}=...) / "
          "open_conversation(id, {field}=...) (0.1.x)")
_MESSAGES = ("track_question() / track_answer() (0.0.x) or agentsight.user_message() / agent_message() inside "
             "agentsight.turn() (0.1.x)")
_METADATA = ("metadata={{'{key}': ...}} on initialize_conversation() (0.0.x) or open_conversation(id, "
             "metadata={{'{key}': ...}}) / update_metadata({{'{key}': ...}}) (0.1.x)")


def check(store: DevStore, where: stats.Scope) -> dict[str, Any]:
    """Every metric with ``receiving``, its ``count``, what feeds it and, when empty or suspect, a ``hint``."""
    numbers = stats.compute(store, where)
    totals, interaction, cost = numbers["totals"], numbers["interaction"], numbers["token_cost"]
    checks: list[dict[str, Any]] = []

    def add(metric: str, count: int, fed_by: str, hint: str | None, *, warning: bool = False) -> None:
        """A metric receives data when ``count`` > 0; ``hint`` shows when it does not (or always: ``warning``)."""
        checks.append({"metric": metric, "receiving": count > 0, "count": count, "fed_by": fed_by,
                       "hint": hint if count == 0 or warning else None})

    add("conversations", totals["conversations"], "conversation_id of every conversation",
        _environment_hint(store, where) if totals["conversations"] == 0 else None)
    add("total_messages", totals["messages"], _MESSAGES, f"no message: {_MESSAGES}")
    users_hint = None
    if totals["individual_users"] == 0:
        users_hint = "no customer_id, so no individual users: " + _FIELD.format(field="customer_id")
    elif totals["conversations_without_customer"]:
        users_hint = (f"{totals['conversations_without_customer']} conversation(s) have no customer_id: "
                      + _FIELD.format(field="customer_id"))
    add("individual_users", totals["individual_users"], "customer_id", users_hint, warning=True)
    response = numbers["response_time"]
    response_hint = None
    if response["count"] == 0:
        response_hint = "no turn with a question followed by an answer: " + _MESSAGES
    elif response["suspect_turns"]:
        response_hint = (f"{response['suspect_turns']} turn(s) answered in under {stats.SUSPECT_TURN_MS} ms with "
                         f"answers of {stats.SUSPECT_ANSWER_CHARS}+ characters: a streamed turn ended before its "
                         "answer was generated. Return agentsight.wrap(stream) from the turn (0.1.x), or call "
                         "track_answer() and send_tracked_data() once the stream is drained (0.0.x)")
    add("average_response_time", response["count"], "the turn: answer time minus question time", response_hint,
        warning=True)
    add("peak_hours", totals["messages"], "message timestamps", f"no message: {_MESSAGES}")
    add("daily_overview", len(numbers["daily"]), "message and conversation dates", f"no message: {_MESSAGES}")
    add("average_conversation_duration", numbers["conversation_duration"]["count"],
        "first and last message of a conversation", "needs two or more messages in a conversation")
    tools = numbers["tools"]
    untimed = [tool["name"] for tool in tools if tool["average_ms"] is None]
    add("tool_usage", len(tools), "@agentsight.tool / @agentsight.task (0.1.x) or track_action() (0.0.x)",
        ("no tool call: decorate tools with @agentsight.tool (0.1.x) or call track_action(action_name, "
         "started_at, ended_at, duration_ms) (0.0.x)") if not tools else
        (f"no duration for {', '.join(untimed)}: pass duration_ms (or started_at and ended_at) to track_action()"
         if untimed else None), warning=True)
    counted = sum(numbers["tokens"].values())
    add("token_usage", counted, "instrumented LLM clients (agentsight.init(auto_instrument=True) or the "
        "instrumentors) or track_token_usage() (0.0.x)",
        "no token counted: call the model through an instrumented client inside the turn, or track_token_usage()")
    priced = [entry["model"] for entry in cost["models"] if entry["priced"]]
    cost_hint = None
    if cost["unpriced_models"]:
        cost_hint = (f"unpriced model(s) {', '.join(cost['unpriced_models'])}: the price table does not know them "
                     "(name the served model with agentsight.model_hint(model) when the client reports none)")
    elif not priced and counted:
        cost_hint = ("tokens without a model (track_token_usage() sums) cannot be priced: let an instrumented "
                     "client record the model calls")
    elif not priced:
        cost_hint = "no model call with a known model"
    add("token_cost", len(priced), "the model of each call, priced by genai-prices", cost_hint, warning=True)
    world = numbers["world_map"]
    world_hint = None
    if world["located"] == 0:
        world_hint = ("no customer_ip_address, so no map: " + _FIELD.format(field="customer_ip_address")
                      if world["unlocated"] == 0 else
                      f"{world['unlocated']} address(es) are private, reserved or not IPs: pass the visitor's "
                      "public address as customer_ip_address")
    add("world_map", world["located"], "customer_ip_address", world_hint, warning=True)
    for metric, field in (("device_usage", "device"), ("agent_language", "language"), ("source", "source")):
        add(metric, sum(row["conversations"] for row in numbers[field + "s"]), field,
            f"no {field}: " + _FIELD.format(field=field))
    add("human_escalation_rate", numbers["escalation"]["conversations"],
        f"an action named {' / '.join(stats.ESCALATION_ACTIONS)}",
        "no action named " + " / ".join(stats.ESCALATION_ACTIONS) + ": name the hand-off so, "
        "track_action('fallback_to_human', ...) (0.0.x) or @agentsight.tool(name='fallback_to_human') (0.1.x)")
    add("conversation_feedback", numbers["feedback"]["total"], "feedbacks.create_for_conversation()",
        stats.FEEDBACK_HINT)
    add("unique_interaction_rate", interaction["initialized"], "visits: initialize_conversation() (0.0.x) / "
        "open_conversation() (0.1.x)", stats.NO_VISITS_HINT)
    add("engagement_by_page", sum(row["conversations"] for row in numbers["pages"]), "metadata page_url",
        "no page_url: " + _METADATA.format(key="page_url"))
    segment = numbers["segments"]
    add("customer_segments", sum(row["conversations"] for row in segment["rows"]),
        "metadata " + " / ".join(stats.SEGMENT_KEYS),
        "no segment: " + _METADATA.format(key="segment"))
    receiving = sum(1 for entry in checks if entry["receiving"])
    return {"filters": where.filters(), "conversations": totals["conversations"], "receiving": receiving,
            "empty": len(checks) - receiving, "metrics": checks}


def _environment_hint(store: DevStore, where: stats.Scope) -> str:
    """Why nothing is counted: conversations recorded in other environments, or none at all."""
    if where.environment is None:
        return "nothing recorded yet in these dates"
    others = store.read("SELECT c.environment AS environment, COUNT(*) AS n FROM conversations c "
                        "WHERE c.environment != ? GROUP BY c.environment", [where.environment])
    if not others:
        return "nothing recorded yet: point AGENTSIGHT_API_ENDPOINT at this server"
    found = ", ".join(f"{row['n']} in {row['environment']}" for row in others)
    return (f"no conversation in {where.environment} ({found}): analytics count {where.environment} only; "
            "set AGENTSIGHT_ENVIRONMENT / init(environment=...) / ConversationTracker(environment=...), "
            "or ask with environment=<slug> or environment=all")
