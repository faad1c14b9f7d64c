"""The backend of the "Track Interaction" guide's web-widget example, runnable as it is written there.

Run it with ``uvicorn examples.widget_fastapi:app`` (from the repository root) or
``python examples/widget_fastapi.py`` (uvicorn on 127.0.0.1:8000). The tracker reads
``AGENTSIGHT_API_KEY`` and ``AGENTSIGHT_API_ENDPOINT`` when this module is imported; for a local try,
start ``agentsight dev --memory`` and point ``AGENTSIGHT_API_ENDPOINT`` at it.

Changes from the guide's code: imports sorted and ``str | None`` instead of ``Optional[str]`` (lint
rules), ``/api/button``, which tracks a button click the same way (guide "Track Button Method"), and
``answer()``: with ``OPENAI_BASE_URL`` set, the reply comes from a model through the ``openai`` client.
"""

import os

from fastapi import FastAPI, Request
from openai import AsyncOpenAI
from pydantic import BaseModel

from agentsight import ConversationTracker
from agentsight.helpers import generate_conversation_id  # noqa: F401 - imported as in the guide

app = FastAPI()
tracker = ConversationTracker()
# With OPENAI_BASE_URL set (make demo points it at a local stand-in model), a model answers; the tracker has
# instrumented the openai client, so the call's tokens and an action land in the conversation's turn.
llm = AsyncOpenAI() if os.environ.get("OPENAI_BASE_URL") else None


class InteractionRequest(BaseModel):
    conversation_id: str
    customer_id: str | None = None
    page_url: str | None = None


class ChatRequest(BaseModel):
    conversation_id: str
    message: str
    customer_id: str | None = None


class ButtonRequest(BaseModel):
    conversation_id: str
    label: str
    value: str
    button_event: str = "contact_human_agent"
    customer_id: str | None = None


@app.post("/api/track-interaction")
async def track_interaction(request: InteractionRequest, http_request: Request) -> dict[str, str]:
    """Track potential interaction when user visits page"""

    # Get client information
    client_ip = http_request.client.host
    user_agent = http_request.headers.get("user-agent", "")

    # Initialize conversation (marks potential interaction)
    tracker.initialize_conversation(
        conversation_id=request.conversation_id,
        customer_id=request.customer_id,
        customer_ip_address=client_ip,
        device=get_device_type(user_agent),
        source="web",
        language="en-US",
        metadata={
            "page_url": request.page_url,
            "user_agent": user_agent,
            "widget_loaded": True
        }
    )

    return {"status": "interaction_tracked", "conversation_id": request.conversation_id}


@app.post("/api/chat")
async def chat(request: ChatRequest) -> dict[str, str]:
    """Handle actual chat interaction"""

    # This will update the existing conversation to mark it as used
    tracker.get_or_create_conversation(
        conversation_id=request.conversation_id,
        customer_id=request.customer_id
    )

    # Continue with regular tracking flow
    tracker.track_question(request.message)

    # Your AI agent logic here
    response = await answer(request.message)

    tracker.track_answer(response)

    # Send tracking data
    result = tracker.send_tracked_data()  # noqa: F841 - kept as in the guide

    return {"response": response}


@app.post("/api/button")
async def button(request: ButtonRequest) -> dict[str, str]:
    """Track a clicked button, e.g. "Create ticket" after the user asked for a human agent."""

    tracker.get_or_create_conversation(
        conversation_id=request.conversation_id,
        customer_id=request.customer_id
    )

    tracker.track_button(
        button_event=request.button_event,
        label=request.label,
        value=request.value
    )

    tracker.send_tracked_data()

    return {"status": "button_tracked", "conversation_id": request.conversation_id}


async def answer(message: str) -> str:
    """The agent's reply: from the model when one is configured, else the guide's sample response."""
    if llm is None:
        return "This is a sample response"
    completion = await llm.chat.completions.create(
        model=os.environ.get("WIDGET_MODEL", "gpt-4o-mini"), messages=[{"role": "user", "content": message}]
    )
    return completion.choices[0].message.content or ""


def get_device_type(user_agent: str) -> str:
    """Simple device detection"""
    if 'Mobile' in user_agent:
        return 'mobile'
    elif 'Tablet' in user_agent:
        return 'tablet'
    else:
        return 'desktop'


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8000)
