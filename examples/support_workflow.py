"""A support review with ``agentsight.api``: this week's negative feedback, one conversation read, marked,
a ticket opened with a comment, and its spans exported.

    python examples/support_workflow.py                         # starts a local `agentsight dev`, seeds it
    python examples/support_workflow.py --endpoint http://127.0.0.1:8000   # an `agentsight dev` you run
    AGENTSIGHT_API_KEY=ags_... python examples/support_workflow.py --endpoint https://api.agentsight.io

Without ``--endpoint`` (or ``AGENTSIGHT_API_ENDPOINT``) it starts an in-memory ``agentsight dev`` itself and
tracks a few conversations into it first; ``--seed`` does the same against an endpoint you give.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

from agentsight import ConversationTracker
from agentsight.api import AgentSight

DEV_KEY = "ags_" + "0" * 32 + "_" + "0" * 6
"""Any well-formed key: `agentsight dev` has no accounts."""

CHATS = {
    "support-101": ("Where is my order A-1?", "It shipped yesterday.", "positive", None),
    "support-102": ("I was charged twice!", "Please contact your bank.", "negative", "Not helpful at all"),
    "support-103": ("Can I change my address?", "Yes, in your account settings.", None, None),
}


def seed(endpoint: str, api_key: str) -> None:
    """Track a few conversations (as an app would), then leave feedback on two of them (as its users would)."""
    tracker = ConversationTracker(api_key=api_key, endpoint=endpoint, auto_instrument=False)
    for conversation_id, (question, answer, _, _) in CHATS.items():
        tracker.get_or_create_conversation(conversation_id, customer_id="user-7", metadata={"plan": "pro"})
        tracker.track_human_message(question)
        tracker.track_action("lookup_order", tools_used={"order_id": "A-1"}, response="found")
        tracker.track_agent_message(answer)
        tracker.track_token_usage(prompt_tokens=200, completion_tokens=40, total_tokens=240)
        tracker.send_tracked_data()
    tracker.shutdown()  # delivers what was tracked
    with AgentSight(api_key, endpoint=endpoint) as ags:
        for conversation_id, (_, _, sentiment, comment) in CHATS.items():
            if sentiment:
                ags.feedbacks.create_for_conversation(conversation_id, sentiment, comment=comment)


def review(ags: AgentSight, out_dir: Path) -> None:
    """The workflow itself."""
    today = datetime.now(timezone.utc).date()
    week_start = datetime.combine(today - timedelta(days=today.weekday()), time(), tzinfo=timezone.utc)

    # 1. Conversations with negative feedback this week (feedback given since Monday).
    flagged: dict[str, dict] = {}
    for feedback in ags.feedbacks.list(sentiment="negative", kind="conversation", created_at_after=week_start):
        flagged.setdefault(feedback["conversation_id"], feedback)
    print(f"negative feedback this week: {len(flagged)} conversation(s): {', '.join(sorted(flagged)) or '-'}")
    if not flagged:
        return
    conversation_id, feedback = sorted(flagged.items())[0]

    # 2. Read one.
    conversation = ags.conversations.get(conversation_id)
    print(f"reading {conversation_id} ({feedback['comment'] or 'no comment'}):")
    for message in conversation["messages"]:
        print(f"  {message['sender']}: {message['content']}")

    # 3. Mark it for the team.
    ags.conversations.mark(conversation_id)
    print(f"marked {conversation_id}")

    # 4. Open a ticket about it, with a comment.
    ticket = ags.tickets.create(f"Negative feedback on {conversation_id}", priority="high", tags=["feedback"],
                                conversation=conversation_id, feedback_id=feedback["id"])
    ags.tickets.add_comment(ticket["id"], f"Customer said: {feedback['comment'] or '(nothing)'}. Reviewing.")
    print(f"ticket {ticket['id']} opened: {ticket['title']}")

    # 5. Export its spans (the raw record: turns, tool calls, model calls).
    spans = list(ags.spans.list(conversation_id=conversation_id))
    path = out_dir / f"{conversation_id}.spans.json"
    path.write_text(json.dumps(spans, indent=2, default=str), encoding="utf-8")
    print(f"exported {len(spans)} span(s) to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default=os.environ.get("AGENTSIGHT_API_ENDPOINT"),
                        help="the AgentSight API (default: start a local agentsight dev)")
    parser.add_argument("--seed", action="store_true", help="track sample conversations into --endpoint first")
    parser.add_argument("--out", type=Path, default=Path("."), help="directory for the exported spans")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.endpoint:
        api_key = os.environ.get("AGENTSIGHT_API_KEY") or DEV_KEY
        if args.seed:
            seed(args.endpoint, api_key)
        with AgentSight(api_key, endpoint=args.endpoint) as ags:
            review(ags, args.out)
        return
    from agentsight.dev import DevServer  # the `dev` extra

    with DevServer() as server:
        print(f"started agentsight dev at {server.url}")
        seed(server.url, DEV_KEY)
        with AgentSight(DEV_KEY, endpoint=server.url) as ags:
            review(ags, args.out)


if __name__ == "__main__":
    main()
