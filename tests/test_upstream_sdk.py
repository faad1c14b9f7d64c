"""Upstream ``agentsight`` 0.1.4 itself, in a subprocess, against ``agentsight dev``: it lands in the same store.

The upstream SDK is installed once into a cached scratch venv (``.cache/agentsight-0.1.4``, made by
``tests/scratch_venv.py``); the test is skipped, saying why, when the package registry cannot be reached.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from agentsight.dev import DevServer
from tests.conftest import API_KEY
from tests.scratch_venv import scratch_python

UPSTREAM_VERSION = "0.1.4"

FLOW = """
    import agentsight

    agentsight.init(export_interval_ms=200)
    agentsight.open_conversation("conv-up-visit", customer_id="user-7", environment="production")

    @agentsight.tool
    def lookup_order(order_id):
        return {"status": "shipped"}

    with agentsight.conversation("conv-up", customer_id="user-7", device="desktop", environment="production",
                                 metadata={"page_url": "https://shop.example/help"}):
        with agentsight.turn():
            agentsight.user_message("Where is my order?")
            lookup_order(order_id="A-1")
            agentsight.agent_message("It has shipped.")
            agentsight.button("feedback", "Helpful", "yes")
        try:
            with agentsight.turn():
                agentsight.user_message("This turn fails")
                raise RuntimeError("model down")
        except RuntimeError:
            pass
    agentsight.flush()
    agentsight.shutdown()
"""


@pytest.fixture(scope="session")
def upstream_python() -> Path:
    """The cached venv's interpreter with ``agentsight==0.1.4``, created on first use."""
    return scratch_python(f"agentsight-{UPSTREAM_VERSION}", [f"agentsight=={UPSTREAM_VERSION}"])


def _conversation(api: DevServer, conversation_id: str) -> dict[str, Any]:
    detail = api.store.get_conversation(api.conversations[conversation_id]["id"])
    assert detail is not None
    return detail


def test_upstream_0_1_4_lands_in_agentsight_dev(upstream_python: Path, tmp_path: Path) -> None:
    script = tmp_path / "upstream_app.py"
    script.write_text(textwrap.dedent(FLOW))
    with DevServer() as api:
        environment = {"PATH": "/usr/bin:/bin", "AGENTSIGHT_API_KEY": API_KEY, "AGENTSIGHT_API_ENDPOINT": api.url}
        run = subprocess.run([str(upstream_python), "-I", str(script)], env=environment, capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert {request.path for request in api.accepted()} >= {"/api/me/", "/api/ingest/"}

        visit = _conversation(api, "conv-up-visit")
        assert (visit["initialized"], visit["is_used"]) == (True, False), "open_conversation is a visit"

        conversation = _conversation(api, "conv-up")
        assert conversation["is_used"] and conversation["device"] == "desktop"
        assert conversation["metadata"] == {"page_url": "https://shop.example/help"}
        transcript = [(m["sender"], m["content"]) for m in conversation["messages"]]
        assert transcript == [("end_user", "Where is my order?"), ("agent", "It has shipped.")], (
            "the failed turn stays out of the transcript")
        assert [(b["button_event"], b["label"], b["value"]) for b in conversation["buttons"]] == [
            ("feedback", "Helpful", "yes")]
        assert [a["action_name"] for a in conversation["actions"]] == ["lookup_order"]
        stats = api.store.stats()
        assert stats["initialized"] >= 1 and stats["used"] >= 1
