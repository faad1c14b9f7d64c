"""Context follows the work: model calls made in threads started inside a turn count in it, and a call that
ends after its turn was sent still counts under its conversation (the real ``openai`` client, both wires)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest
from opentelemetry import context as otel_context
from opentelemetry.context import Context

from agentsight import ConversationTracker
from agentsight.dev import DevServer
from agentsight.dev.local_llm import FakeLLMServer
from agentsight.instrumentation.openai import OpenAIInstrumentor
from agentsight.instrumentation.threads import ThreadContextInstrumentor
from agentsight.spans.turn import ConversationTurn, current_turn
from tests.conftest import instrumented, stored_messages

MESSAGES = [{"role": "user", "content": "Where is my order?"}]


@pytest.fixture
def client(fake: FakeLLMServer) -> Iterator[openai.OpenAI]:
    """The real openai client, instrumented, talking to the stand-in model."""
    with instrumented(OpenAIInstrumentor):
        yield openai.OpenAI(base_url=fake.openai_base_url, api_key="test", max_retries=0)


def _conversation(api: DevServer, conversation_id: str) -> dict[str, Any]:
    found = api.store.find_conversation(conversation_id)
    assert found is not None, f"{conversation_id} was not stored"
    detail = api.store.get_conversation(found["id"])
    assert detail is not None
    return detail


def _model_calls(detail: dict[str, Any]) -> list[str]:
    return [action["action_name"] for action in detail["actions"] if action["action_name"].startswith("chat ")]


def _one_call_tokens(tracker: ConversationTracker, api: DevServer, client: openai.OpenAI) -> dict[str, int]:
    """The token totals the local AgentSight stores for a turn with one chat call made in it (the reference)."""
    with tracker.conversation("conv-reference"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert tracker.flush(10)["complete"]
    tokens = _conversation(api, "conv-reference")["tokens"]
    assert tokens["total_tokens"] > 0
    return tokens


def _times(tokens: dict[str, int], count: int) -> dict[str, int]:
    return {key: value * count for key, value in tokens.items()}


@pytest.mark.parametrize("protocol", ["ingest", "rest"])
def test_calls_in_pools_executors_and_threads_count_in_the_turn(
    protocol: str, make_tracker: Callable[..., ConversationTracker], api: DevServer, client: openai.OpenAI
) -> None:
    tracker = make_tracker(protocol=protocol)
    one_call = _one_call_tokens(tracker, api, client)

    def ask(*_: Any) -> None:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    async def in_executor() -> None:
        await asyncio.get_running_loop().run_in_executor(None, ask)

    with tracker.conversation("conv-threads"):
        tracker.track_question("Where is my order?")
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(ask, range(2)))
        asyncio.run(in_executor())
        thread = threading.Thread(target=ask)
        thread.start()
        thread.join()
        tracker.track_answer("It ships today.")
    assert tracker.flush(10)["complete"]
    detail = _conversation(api, "conv-threads")
    assert len(_model_calls(detail)) == 4, "each call made in a thread is one action of the turn"
    assert detail["tokens"] == _times(one_call, 4)


class _Worker(threading.Thread):
    def __init__(self, work: Callable[[], None]) -> None:
        super().__init__()
        self.work = work

    def run(self) -> None:
        self.work()


def test_a_worker_runs_later_work_in_that_work_s_own_context(tracker: ConversationTracker) -> None:
    seen: list[ConversationTurn | None] = []

    def where() -> None:
        seen.append(current_turn())

    with ThreadPoolExecutor(1) as pool:  # its one worker is started by the first task, inside the turn
        with tracker.conversation("conv-worker") as turn:
            pool.submit(where).result()
            token = otel_context.attach(Context())  # unrelated work, submitted while the turn is still open
            try:
                pool.submit(where).result()
            finally:
                otel_context.detach(token)
            thread = threading.Thread(target=where)
            thread.start()
            thread.join()
            worker = _Worker(where)  # a framework's worker thread: its own run()
            worker.start()
            worker.join()
        pool.submit(where).result()
    assert seen == [turn, None, turn, turn, None]
    assert "run" not in vars(thread), "a finished thread no longer holds the turn"


def test_opted_out_threads_are_left_alone(
    make_tracker: Callable[..., ConversationTracker], monkeypatch: pytest.MonkeyPatch
) -> None:
    ThreadContextInstrumentor().uninstrument()
    monkeypatch.setenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "agentsight_threading")
    tracker = make_tracker()
    assert not ThreadContextInstrumentor().is_instrumented_by_opentelemetry
    with tracker.conversation("conv-opted-out"), ThreadPoolExecutor(1) as pool:
        assert pool.submit(current_turn).result() is None
    monkeypatch.delenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS")
    make_tracker()
    assert ThreadContextInstrumentor().is_instrumented_by_opentelemetry, "the next tracker applies it again"


@pytest.mark.parametrize("protocol", ["ingest", "rest"])
def test_a_stream_read_after_its_turn_was_sent_counts_in_its_conversation(
    protocol: str, make_tracker: Callable[..., ConversationTracker], api: DevServer, client: openai.OpenAI
) -> None:
    tracker = make_tracker(protocol=protocol)
    one_call = _one_call_tokens(tracker, api, client)
    with tracker.conversation("conv-late", environment="development"):
        tracker.track_question("Where is my order?")
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                stream_options={"include_usage": True})
        tracker.track_answer("It ships today.")
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "Hello from the fake model"
    assert tracker.flush(10)["complete"]
    detail = _conversation(api, "conv-late")
    assert detail["tokens"] == _times(one_call, 2), "the late stream's tokens count in its conversation"
    assert len(_model_calls(detail)) == 2, "and it is one more model call of it"
    assert [content for conversation_id, content in stored_messages(api) if conversation_id == "conv-late"] == [
        "Where is my order?", "It ships today."], "the follow-up adds no exchange"
    assert detail["environment"] == "development"
    if protocol == "ingest":
        assert [item["reason"] for item in detail["archived"]] == ["late_model_call"]
