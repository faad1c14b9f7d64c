"""The widget backend of examples/widget_fastapi.py as a WSGI app: Flask, served by gunicorn's sync workers.

Run it with ``gunicorn -w 3 examples.widget_flask:app`` (from the repository root); the tracker reads
``AGENTSIGHT_API_KEY`` and ``AGENTSIGHT_API_ENDPOINT`` when this module is imported. Nothing here deals with
stopping: SIGTERM to gunicorn delivers what the workers tracked (README "Reliability").
"""

from flask import Flask, request

from agentsight import ConversationTracker

app = Flask(__name__)
tracker = ConversationTracker()


@app.post("/api/track-interaction")
def track_interaction() -> dict[str, str]:
    """Track a potential interaction when a user opens a page with the widget."""
    body = request.get_json()
    tracker.initialize_conversation(
        conversation_id=body["conversation_id"],
        customer_id=body.get("customer_id"),
        customer_ip_address=request.remote_addr,
        source="web",
        language="en-US",
        metadata={"page_url": body.get("page_url"), "widget_loaded": True},
    )
    return {"status": "interaction_tracked", "conversation_id": body["conversation_id"]}


@app.post("/api/chat")
def chat() -> dict[str, str]:
    """Answer a chat message, tracking the question and the answer as one turn."""
    body = request.get_json()
    tracker.get_or_create_conversation(conversation_id=body["conversation_id"], customer_id=body.get("customer_id"))
    tracker.track_question(body["message"])
    response = "This is a sample response"
    tracker.track_answer(response)
    tracker.send_tracked_data()
    return {"response": response}


@app.post("/api/button")
def button() -> dict[str, str]:
    """Track a clicked button."""
    body = request.get_json()
    tracker.get_or_create_conversation(conversation_id=body["conversation_id"], customer_id=body.get("customer_id"))
    tracker.track_button(
        button_event=body.get("button_event", "contact_human_agent"), label=body["label"], value=body["value"]
    )
    tracker.send_tracked_data()
    return {"status": "button_tracked", "conversation_id": body["conversation_id"]}
