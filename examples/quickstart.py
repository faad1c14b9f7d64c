"""The shortest AgentSight script: one conversation turn, sent and flushed, with a result per item.

Delivers to ``AGENTSIGHT_API_ENDPOINT`` with ``AGENTSIGHT_API_KEY``. Without ``AGENTSIGHT_API_ENDPOINT`` it
starts a local AgentSight-compatible API on 127.0.0.1 and also prints what arrived there. Exits with 1
when something was not delivered.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import ExitStack
from typing import Any

from agentsight import ConversationTracker
from agentsight.dev import DevServer
from agentsight.helpers import generate_conversation_id

LOCAL_API_KEY = "ags_" + "0" * 32 + "_" + "0" * 6


def track_one_turn(tracker: ConversationTracker) -> dict[str, Any]:
    """Track a question, an answer, a button click and token usage in a new conversation, send and flush."""
    tracker.get_or_create_conversation(generate_conversation_id(), customer_id="user-7", source="quickstart")
    tracker.track_question("Hello, I need help")
    tracker.track_answer("Sure! What can I help you with?")
    tracker.track_button(button_event="contact_human_agent", label="Create ticket", value="create-ticket")
    tracker.track_token_usage(prompt_tokens=100, completion_tokens=25, total_tokens=125, embedding_tokens=0)
    tracker.send_tracked_data()  # returns at once; delivery happens in the background
    return tracker.flush(timeout=30)  # waits for it and returns a result per item


def main() -> int:
    """Run the quickstart; returns the process exit code."""
    with ExitStack() as stack:
        local = None
        if not os.environ.get("AGENTSIGHT_API_ENDPOINT"):
            local = stack.enter_context(DevServer())
            os.environ["AGENTSIGHT_API_ENDPOINT"] = local.url
            os.environ.setdefault("AGENTSIGHT_API_KEY", LOCAL_API_KEY)
            print(f"AGENTSIGHT_API_ENDPOINT not set: using a local AgentSight-compatible API on {local.url}")

        tracker = ConversationTracker()
        result = track_one_turn(tracker)
        for item in result["items"]:
            outcome = "delivered" if item["success"] else f"FAILED ({item['error']})"
            print(f"{item['type']:<13} {item['status']} {outcome}")
        print(f"complete={result['complete']} summary={result['summary']}")
        tracker.shutdown()

        if local is not None:
            print("Arrived at the local API:")
            for request in local.requests:
                print(request.status, request.path, json.dumps(request.body, separators=(",", ":")))

    delivered_all = bool(result["complete"] and result["items"] and result["summary"]["failed"] == 0)
    return 0 if delivered_all else 1


if __name__ == "__main__":
    sys.exit(main())
