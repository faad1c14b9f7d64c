"""The current conversation lives in the OTel context: threads and tasks never mix conversations.

Each test runs on both wires and checks what the local AgentSight stored.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from agentsight import ConversationTracker
from agentsight.dev import DevServer
from agentsight.exceptions import MissingConversationIdException
from tests.conftest import stored_messages

WORKERS = 32


@pytest.fixture(params=["ingest", "rest"])
def tracker(make_tracker: Callable[..., ConversationTracker], request: pytest.FixtureRequest) -> ConversationTracker:
    """A tracker delivering to the local API on each wire."""
    return make_tracker(protocol=request.param)


def _assert_unmixed(api: DevServer) -> None:
    stored = stored_messages(api)
    assert len(stored) == WORKERS * 2, "every message arrived"
    for conversation_id, content in stored:
        assert content.split(":")[0] == conversation_id, f"{content} filed under {conversation_id}"


def test_32_threads_with_think_time(api: DevServer, tracker: ConversationTracker) -> None:
    barrier = threading.Barrier(WORKERS)

    def handle(number: int) -> None:
        rng = random.Random(number)
        barrier.wait()
        tracker.get_or_create_conversation(f"conv-{number}")
        threading.Event().wait(rng.uniform(0, 0.02))
        tracker.track_question(f"conv-{number}:question")
        threading.Event().wait(rng.uniform(0, 0.02))
        tracker.track_answer(f"conv-{number}:answer")
        tracker.send_tracked_data()

    threads = [threading.Thread(target=handle, args=(n,)) for n in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tracker.flush(20)["complete"]
    _assert_unmixed(api)


def test_32_asyncio_tasks_with_think_time(api: DevServer, tracker: ConversationTracker) -> None:
    async def handle(number: int) -> None:
        rng = random.Random(number)
        tracker.get_or_create_conversation(f"conv-{number}")
        await asyncio.sleep(rng.uniform(0, 0.02))
        tracker.track_question(f"conv-{number}:question")
        await asyncio.sleep(rng.uniform(0, 0.02))
        tracker.track_answer(f"conv-{number}:answer")
        tracker.send_tracked_data()

    async def main() -> None:
        await asyncio.gather(*(handle(n) for n in range(WORKERS)))

    asyncio.run(main())
    assert tracker.flush(20)["complete"]
    _assert_unmixed(api)


def test_nothing_leaks_to_the_next_request_on_a_reused_thread(tracker: ConversationTracker) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        def first_request() -> str:
            tracker.get_or_create_conversation("conv-first")
            tracker.track_question("hello")
            tracker.send_tracked_data()
            return threading.current_thread().name

        def next_request() -> str:
            with pytest.raises(MissingConversationIdException):
                tracker.track_question("who am I talking to?")
            return threading.current_thread().name

        assert pool.submit(first_request).result() == pool.submit(next_request).result()


def test_a_turn_abandoned_by_its_context_is_still_sent(
    api: DevServer, tracker: ConversationTracker
) -> None:
    def handler_that_raises() -> None:
        tracker.get_or_create_conversation("conv-abandoned")
        tracker.track_question("asked before the handler failed")
        raise RuntimeError("the handler never reached send_tracked_data()")

    with pytest.raises(RuntimeError):
        contextvars.copy_context().run(handler_that_raises)
    assert tracker.flush(10)["complete"]
    assert stored_messages(api) == [("conv-abandoned", "asked before the handler failed")]


def test_a_reused_thread_sends_the_turn_a_failed_request_left_open(
    api: DevServer, tracker: ConversationTracker
) -> None:
    def failed_request() -> None:
        tracker.get_or_create_conversation("conv-failed")
        tracker.track_question("conv-failed:question")

    def next_request() -> None:
        tracker.get_or_create_conversation("conv-next")
        tracker.track_question("conv-next:question")
        tracker.send_tracked_data()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(failed_request).result()
        pool.submit(next_request).result()
    tracker.flush(10)
    assert sorted(stored_messages(api)) == [
        ("conv-failed", "conv-failed:question"), ("conv-next", "conv-next:question")]


def test_a_task_opening_a_conversation_does_not_change_its_parents(
    api: DevServer, tracker: ConversationTracker
) -> None:
    async def child() -> None:
        tracker.get_or_create_conversation("conv-child")
        tracker.track_question("conv-child:question")
        tracker.send_tracked_data()

    async def parent() -> None:
        tracker.get_or_create_conversation("conv-parent")
        await asyncio.create_task(child())
        tracker.track_question("conv-parent:question")
        tracker.send_tracked_data()

    asyncio.run(parent())
    tracker.flush(10)
    assert {content: conversation_id for conversation_id, content in stored_messages(api)} == {
        "conv-child:question": "conv-child", "conv-parent:question": "conv-parent"}
