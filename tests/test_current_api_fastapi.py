"""A streamed FastAPI response whose turn is handed to it with ``agentsight.wrap()``, run in-process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

import agentsight as ags
from agentsight.dev import DevServer
from tests.conftest import API_KEY


def make_app() -> FastAPI:
    app = FastAPI()

    @app.post("/chat/{conversation_id}")
    async def chat(conversation_id: str, text: str) -> StreamingResponse:
        async def body() -> AsyncIterator[str]:
            parts = []
            for part in ("Hello", ", ", "world"):
                await asyncio.sleep(0.01)
                parts.append(part)
                yield part
            ags.agent_message("".join(parts))  # runs after the handler returned, still in its turn

        with ags.conversation(conversation_id), ags.turn():
            ags.user_message(text)
            return ags.wrap(StreamingResponse(body(), media_type="text/plain"))

    return app


def test_a_streamed_response_is_one_complete_turn(api: DevServer) -> None:
    assert ags.init(api_key=API_KEY, endpoint=api.url)
    try:
        async def call() -> list[str]:
            transport = httpx.ASGITransport(app=make_app())
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                answers = await asyncio.gather(*(client.post(f"/chat/c-{n}", params={"text": f"hi {n}"})
                                                 for n in range(3)))
            return [answer.text for answer in answers]

        assert asyncio.run(call()) == ["Hello, world"] * 3
        assert ags.flush()
    finally:
        ags.shutdown()
    documents = [request.body for request in api.accepted("/api/ingest/")]
    turns = {block["conversation_id"]: span for document in documents for block in document["conversations"]
             for span in block["spans"] if span["kind"] == "turn"}
    assert set(turns) == {"c-0", "c-1", "c-2"}
    for number in range(3):
        turn = turns[f"c-{number}"]
        assert turn["attributes"]["agentsight.turn.complete"] is True
        assert [event["attributes"]["agentsight.message.content"] for event in turn["events"]] == [
            f"hi {number}", "Hello, world"]
        assert turn["duration_ms"] >= 25, "the turn lasts until the stream is drained"
