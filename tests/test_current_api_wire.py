"""The 0.1.x API on the ingest wire: the documents we send for upstream's golden flows equal upstream 0.1.4's.

Each flow is the code of ``tests/golden/record_upstream.py`` run against this package and ``agentsight dev``;
``shape()`` (tests/test_ingest_wire.py) compares blocks, fields, span kinds, names, parents, statuses,
attribute and event names (ids, times and values aside).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import agentsight as ags
from agentsight.dev import DevServer
from tests.conftest import API_KEY
from tests.test_ingest_wire import FIELDS, golden_documents, ingest_documents, shape


@pytest.fixture
def run(api: DevServer) -> Iterator[Callable[[Callable[[], None]], dict[str, Any]]]:
    """Run a flow with ``agentsight.init()`` pointed at ``api``; returns the shape of what was ingested."""

    def go(flow: Callable[[], None]) -> dict[str, Any]:
        assert ags.init(api_key=API_KEY, endpoint=api.url)
        flow()
        assert ags.flush()
        ags.shutdown()
        return shape(ingest_documents(api))

    yield go
    ags.shutdown()


def lookup_tool() -> Callable[..., Any]:
    @ags.tool
    def lookup_order(order_id: str) -> dict[str, str]:
        return {"status": "shipped"}

    return lookup_order


def test_visit(run: Callable[..., dict[str, Any]]) -> None:
    assert run(lambda: ags.open_conversation("conv-visit", **FIELDS)) == shape(golden_documents("visit"))


def test_seed_turn(run: Callable[..., dict[str, Any]], api: DevServer) -> None:
    lookup_order = lookup_tool()

    def flow() -> None:
        with ags.conversation("conv-1", **FIELDS), ags.turn():
            ags.user_message("Hello, I need help")
            lookup_order(order_id="A-1")
            ags.agent_message("This is a sample response")
            ags.button("contact_human_agent", "Create ticket", "create-ticket")

    assert run(flow) == shape(golden_documents("seed_turn"))
    tool_span = next(span for document in ingest_documents(api) for block in document["conversations"]
                     for span in block["spans"] if span["kind"] == "tool")
    assert json.loads(tool_span["attributes"]["agentsight.tool.arguments"]) == {"order_id": "A-1"}
    assert tool_span["attributes"]["agentsight.tool.response"] == "{'status': 'shipped'}"


def test_two_turns(run: Callable[..., dict[str, Any]]) -> None:
    def flow() -> None:
        with ags.conversation("conv-2", **FIELDS):
            for number in ("First", "Second"):
                with ags.turn():
                    ags.user_message(f"{number} question")
                    ags.agent_message(f"{number} answer")

    assert run(flow) == shape(golden_documents("two_turns"))


def test_task_and_tool_error(run: Callable[..., dict[str, Any]], api: DevServer) -> None:
    @ags.task
    def summarize_history(limit: int) -> str:
        return f"summary of {limit} messages"

    @ags.tool
    def charge_card(amount: int, currency: str = "EUR") -> None:
        raise ValueError("boom")

    def flow() -> None:
        with ags.conversation("conv-3", **FIELDS), ags.turn():
            ags.user_message("Please refund me")
            summarize_history(limit=5)
            with pytest.raises(ValueError, match="boom"):
                charge_card(amount=10)
            ags.agent_message("Sorry, the refund failed")

    assert run(flow) == shape(golden_documents("task_and_tool_error"))
    spans = {span["name"]: span for document in ingest_documents(api) for block in document["conversations"]
             for span in block["spans"]}
    assert json.loads(spans["charge_card"]["attributes"]["agentsight.tool.arguments"]) == {"amount": 10,
                                                                                          "currency": "EUR"}
    assert spans["charge_card"]["attributes"]["agentsight.tool.error"] == "boom"
    assert spans["charge_card"]["events"][0]["attributes"]["exception.type"] == "ValueError"
    assert spans["summarize_history"]["attributes"]["agentsight.tool.response"] == "summary of 5 messages"
    detail = api.store.get_conversation(api.conversations["conv-3"]["id"])
    assert detail is not None
    assert sorted(action["action_name"] for action in detail["actions"]) == ["charge_card", "summarize_history"]


def test_turn_error(run: Callable[..., dict[str, Any]], api: DevServer) -> None:
    def flow() -> None:
        with pytest.raises(RuntimeError), ags.conversation("conv-4", **FIELDS), ags.turn():
            ags.user_message("This will crash")
            raise RuntimeError("agent crashed")

    assert run(flow) == shape(golden_documents("turn_error"))
    turn = ingest_documents(api)[0]["conversations"][0]["spans"][0]
    assert turn["attributes"]["agentsight.turn.complete"] is False
    assert turn["attributes"]["agentsight.turn.incomplete_reason"] == "error"
    detail = api.store.get_conversation(api.conversations["conv-4"]["id"])
    assert detail is not None and detail["messages"] == [], "an incomplete turn stays out of the transcript"


def test_metadata_update(run: Callable[..., dict[str, Any]], api: DevServer) -> None:
    def flow() -> None:
        with ags.conversation("conv-meta", **FIELDS):
            with ags.turn():
                ags.user_message("Upgrade me")
                ags.update_metadata({"plan": "enterprise", "escalated": False})
                ags.agent_message("Done")
            ags.update_metadata(remove=["page_url"])

    assert run(flow) == shape(golden_documents("metadata_update"))
    assert api.conversations["conv-meta"]["metadata"] == {"plan": "enterprise", "escalated": False}


def test_attachments(run: Callable[..., dict[str, Any]], api: DevServer) -> None:
    def flow() -> None:
        with ags.conversation("conv-att", **FIELDS), ags.turn():
            ags.user_message("Here is my receipt")
            ags.upload_attachments({"filename": "receipt.txt",
                                    "data": base64.b64encode(b"hello receipt\n").decode("ascii")})
            ags.upload_attachments([{"filename": "pixel.png", "data": b"\x89PNG\r\n\x1a\n" + b"\0" * 24,
                                     "mime_type": "image/png"}], sender="agent", metadata={"origin": "camera"})
            ags.record_attachments([{"name": "invoice.pdf", "size": 2048, "mime_type": "application/pdf"}],
                                   metadata={"stored_in": "s3"})
            ags.agent_message("Thanks, got it")

    assert run(flow) == shape(golden_documents("attachments"))
    uploads = [request.body for request in api.accepted("/api/attachments/")]
    assert [upload["attachments"][0]["filename"] for upload in uploads] == ["receipt.txt", "pixel.png"]


def test_message_outside_turn(run: Callable[..., dict[str, Any]]) -> None:
    def flow() -> None:
        with ags.conversation("conv-5", **FIELDS):
            ags.agent_message("Proactive nudge")

    assert run(flow) == shape(golden_documents("message_outside_turn"))
