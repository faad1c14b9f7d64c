"""The 0.1.x API's behaviour: scopes and decorators, turn completeness, lifetime, mixing with the seed API,
isolation, the pass-through when off, uploads, the file exporter and the exception hierarchy."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentsight as ags
from agentsight import ConversationTracker
from agentsight.dev import CannedResponse, DevServer
from agentsight.instrumentation.genai import start_model_call
from agentsight.spans import semconv as sc
from tests.conftest import API_KEY, bodies, eventually, stored_messages

Spans = Callable[[], list[ReadableSpan]]


@pytest.fixture
def spans() -> Iterator[Spans]:
    """Tracking on, turns going to an in-memory exporter (``init(span_exporter=...)``); the finished turns."""
    exporter = InMemorySpanExporter()
    assert ags.init(span_exporter=exporter, export_interval_ms=10, turn_timeout_ms=300_000)

    def finished() -> list[ReadableSpan]:
        assert ags.flush()
        return [span for span in exporter.get_finished_spans() if span.name == sc.CONVERSATION_SPAN]

    yield finished
    ags.shutdown()


@pytest.fixture
def live(api: DevServer) -> Iterator[DevServer]:
    """Tracking on, delivering to ``agentsight dev``."""
    assert ags.init(api_key=API_KEY, endpoint=api.url)
    yield api
    ags.shutdown()


def events(span: ReadableSpan, name: str = sc.MESSAGE_EVENT) -> list[dict[str, Any]]:
    return [dict(event.attributes or {}) for event in span.events if event.name == name]


def reason(span: ReadableSpan) -> str | None:
    attributes = span.attributes or {}
    return None if attributes.get(sc.TURN_COMPLETE, True) else str(attributes[sc.TURN_INCOMPLETE_REASON])


# Off: a pass-through ----------------------------------------------------------------------------------------


def test_without_a_key_everything_is_a_pass_through(monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("AGENTSIGHT_API_KEY", raising=False)
    assert ags.init() is False
    assert "no API key" in caplog.text
    assert ags.init(api_key="not-a-key") is False
    assert not ags.is_enabled() and ags.flush() is False

    @ags.tool
    def add(a: int, b: int) -> int:
        return a + b

    @ags.task(name="work")
    async def work() -> str:
        return "done"

    @ags.turn
    def numbers() -> Iterator[int]:
        yield from (1, 2)

    @ags.conversation("c")
    @ags.turn(id_from="sid", infer=True)
    def handler(sid: str, text: str) -> str:
        ags.user_message(text)
        ags.button("b", "B", "b")
        ags.update_metadata({"k": 1})
        ags.record_attachments([{"name": "x"}])
        ags.open_conversation("visit")
        ags.end_turn()
        ags.abandon_turn()
        return ags.wrap("answer")

    assert handler("s-1", "hi") == "answer"
    assert add(1, 2) == 3 and asyncio.run(work()) == "done" and list(numbers()) == [1, 2]
    with ags.conversation("c") as scope, ags.turn() as turn, ags.model_hint("m"):
        ags.agent_message("hello")
    assert scope.conversation_id == "c" and turn.turn is None
    with pytest.raises(ags.UploadError):
        ags.upload_attachments({"filename": "a.txt", "data": b"a"}, conversation_id="c")
    ags.shutdown()


# Scopes and decorators --------------------------------------------------------------------------------------


def test_a_turn_is_the_seed_apis_span_with_messages_as_events(spans: Spans) -> None:
    with ags.conversation("c-1", customer_id="u-1", device="x" * 300, customer_ip_address="not-an-ip",
                          metadata={"plan": "free"}), ags.turn("ask"):
        ags.user_message("hi", metadata={"lang": "en"})
        ags.agent_message(42)
    [turn] = spans()
    attributes = turn.attributes or {}
    assert attributes[sc.CONVERSATION_ID] == "c-1" and attributes[sc.TURN_NAME] == "ask"
    assert len(attributes[sc.DEVICE]) == 255 and sc.CUSTOMER_IP_ADDRESS not in attributes
    assert json.loads(attributes[sc.CONVERSATION_METADATA]) == {"plan": "free"}
    assert [(m[sc.MESSAGE_SENDER], m[sc.MESSAGE_CONTENT]) for m in events(turn)] == [("end_user", "hi"),
                                                                                     ("agent", "42")]
    assert reason(turn) is None


def test_turn_decorates_sync_async_and_generator_functions(spans: Spans) -> None:
    @ags.turn
    def plain(text: str) -> str:
        ags.user_message(text)
        return "ok"

    @ags.turn(name="async", infer=True)
    async def coroutine(text: str) -> str:
        return text.upper()

    @ags.turn
    def generator() -> Iterator[str]:
        ags.agent_message("streamed")
        yield "a"
        yield "b"

    @ags.turn
    async def agenerator() -> Any:
        for part in ("x", "y"):
            await asyncio.sleep(0)
            ags.agent_message(part)
            yield part

    async def drain() -> list[str]:
        return [part async for part in agenerator()]

    with ags.conversation("c-2"):
        assert plain("hello") == "ok"
        assert asyncio.run(coroutine("question")) == "QUESTION"
        stream = generator()
        assert asyncio.run(drain()) == ["x", "y"]
    assert list(stream) == ["a", "b"], "a generator runs in its turn after the block that made it"
    finished = {(span.attributes or {}).get(sc.TURN_NAME, "turn"): span for span in spans()}
    assert set(finished) == {"plain", "async", "generator", "agenerator"}
    assert [m[sc.MESSAGE_CONTENT] for m in events(finished["async"])] == ["question", "QUESTION"]
    assert [m[sc.MESSAGE_CONTENT] for m in events(finished["generator"])] == ["streamed"]
    assert [m[sc.MESSAGE_CONTENT] for m in events(finished["agenerator"])] == ["x", "y"]
    assert all(reason(span) is None for span in finished.values())


def test_conversation_decorator_is_one_conversation_per_call_and_id_from_opens_one(spans: Spans) -> None:
    @ags.conversation(customer_id="u")
    @ags.turn
    def anonymous() -> None:
        ags.user_message("hi")

    @ags.turn(id_from="session")
    def by_session(session: str) -> None:
        ags.user_message(session)

    @ags.conversation("c-gen")
    def chunks() -> Iterator[int]:
        with ags.turn():
            ags.agent_message("inside")
            yield 1

    anonymous()
    anonymous()
    by_session("s-9")
    assert list(chunks()) == [1]
    ids = [(span.attributes or {})[sc.CONVERSATION_ID] for span in spans()]
    assert len(set(ids[:2])) == 2 and all(i.startswith("conv_") for i in ids[:2])
    assert ids[2:] == ["s-9", "c-gen"]


def test_tool_and_task_record_times_arguments_result_and_error(spans: Spans) -> None:
    class Shop:
        @ags.tool(name="fallback_to_human")
        def escalate(self, reason: str, urgent: bool = False) -> dict[str, str]:
            return {"ticket": "T-1"}

    @ags.task
    async def plan(steps: int) -> list[int]:
        return list(range(steps))

    with ags.conversation("c-3"), ags.turn():
        assert Shop().escalate("angry") == {"ticket": "T-1"}
        assert asyncio.run(plan(2)) == [0, 1]
    [turn] = spans()
    escalate, planned = events(turn, sc.ACTION_EVENT)
    assert escalate[sc.ACTION_NAME] == "fallback_to_human" and escalate[sc.ACTION_KIND] == "tool"
    assert json.loads(escalate[sc.ACTION_TOOLS_USED]) == {"reason": "angry", "urgent": False}
    assert escalate[sc.ACTION_RESPONSE] == "{'ticket': 'T-1'}"
    assert escalate[sc.ACTION_STARTED_AT] <= escalate[sc.ACTION_ENDED_AT]
    assert planned[sc.ACTION_KIND] == "task" and planned[sc.ACTION_RESPONSE] == "[0, 1]"


def test_items_outside_a_turn_go_to_a_one_off_turn_and_nothing_happens_outside_a_conversation(spans: Spans) -> None:
    @ags.tool
    def lookup() -> str:
        return "found"

    ags.user_message("nowhere")
    assert lookup() == "found"
    with ags.conversation("c-4"):
        ags.agent_message("nudge")
        ags.button("rate", "Good", "5")
        assert lookup() == "found"
    names = [(span.attributes or {}).get(sc.TURN_NAME) for span in spans()]
    assert names == ["message", "button", "lookup"]


def test_update_metadata_merges_and_never_raises(spans: Spans) -> None:
    with ags.conversation("c-5", metadata={"a": 1, "b": 2}) as scope:
        ags.update_metadata({"c": None}, remove=["a"])
        ags.update_metadata("not a dict")  # type: ignore[arg-type]
        with ags.turn():
            ags.update_metadata({"d": 0})
    assert scope.metadata == {"b": 2, "c": None, "d": 0}
    update, turn = spans()
    assert (update.attributes or {})[sc.CONVERSATION_RECORD] == "metadata_updated"
    assert json.loads((turn.attributes or {})[sc.CONVERSATION_METADATA]) == {"b": 2, "c": None, "d": 0}
    assert len(events(turn, sc.METADATA_UPDATED_EVENT)) == 1


def test_model_hint_names_calls_that_resolve_no_model(spans: Spans) -> None:
    from opentelemetry import trace

    with ags.conversation("c-6"), ags.turn(), ags.model_hint("llama3.1:8b"):
        call = start_model_call(trace.get_tracer("t"), "chat", "custom", None, {})
        assert call is not None
        call.end()
    [turn] = spans()
    [action] = events(turn, sc.ACTION_EVENT)
    assert action[sc.ACTION_NAME] == "chat custom/llama3.1:8b"


# Completeness and lifetime ----------------------------------------------------------------------------------


def test_exceptions_and_cancellation_end_turns_incomplete(spans: Spans) -> None:
    async def cancelled() -> None:
        async def handler() -> None:
            async with ags.turn():
                ags.user_message("waiting")
                await asyncio.sleep(10)

        task = asyncio.ensure_future(handler())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    @ags.turn
    def crash() -> None:
        raise KeyError("x")

    with ags.conversation("c-7"):
        with pytest.raises(ValueError), ags.turn():
            raise ValueError("boom")
        with pytest.raises(KeyError):
            crash()
        asyncio.run(cancelled())
    assert [reason(span) for span in spans()] == ["error", "error", "error"]


def test_wrap_end_turn_abandon_turn_and_the_deadline(spans: Spans) -> None:
    def body() -> Iterator[str]:
        ags.agent_message("part")
        yield "part"
        yield "rest"

    with ags.conversation("c-8"):
        with ags.turn("drained"):
            drained = ags.wrap(body())
        with ags.turn("closed"):
            closed = ags.wrap(body())
        with ags.turn("kept") as kept:
            kept.keep_open()
        with ags.turn("abandoned"):
            ags.abandon_turn()
        with ags.turn("ended"):
            ags.end_turn(complete=False)
        assert ags.wrap("untouched") == "untouched"
    assert list(drained) == ["part", "rest"]
    assert next(closed) == "part"
    closed.close()
    kept.agent_message("later")
    kept.end()
    by_name = {(span.attributes or {})[sc.TURN_NAME]: span for span in spans()}
    assert {name: reason(span) for name, span in by_name.items()} == {
        "drained": None, "closed": "abandoned", "kept": None, "abandoned": "abandoned", "ended": "abandoned"}
    assert [m[sc.MESSAGE_CONTENT] for m in events(by_name["kept"])] == ["later"]


def test_a_wrapped_turn_never_drained_ends_at_its_deadline_or_at_shutdown() -> None:
    exporter = InMemorySpanExporter()
    assert ags.init(span_exporter=exporter, export_interval_ms=10, turn_timeout_ms=50)
    try:
        with ags.conversation("c-9"):
            with ags.turn("late"):
                ags.wrap(iter(["never drained"]))
            finished = threading.Event()
            loop = asyncio.new_event_loop()
            future = loop.create_future()
            future.add_done_callback(lambda _: finished.set())
            with ags.turn("future"):
                ags.wrap(future)
        eventually(lambda: ags.flush() and any((s.attributes or {}).get(sc.TURN_NAME) == "late"
                                               for s in exporter.get_finished_spans()), what="the deadline")
        ags.shutdown()
        reasons = {(s.attributes or {}).get(sc.TURN_NAME): reason(s) for s in exporter.get_finished_spans()}
        assert reasons["late"] == "deadline"
        assert reasons["future"] in ("deadline", "shutdown")
        loop.close()
    finally:
        ags.shutdown()


def test_shutdown_ends_wrapped_turns_as_shutdown() -> None:
    exporter = InMemorySpanExporter()
    assert ags.init(span_exporter=exporter, export_interval_ms=10)
    with ags.conversation("c-10"), ags.turn():
        ags.wrap(iter([1]))
    ags.shutdown()
    [turn] = [s for s in exporter.get_finished_spans() if s.name == sc.CONVERSATION_SPAN]
    assert reason(turn) == "shutdown"
    assert ags.init(span_exporter=exporter), "init() works again after shutdown()"
    ags.shutdown()


def test_flush_says_whether_everything_was_delivered(api: DevServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTSIGHT_MAX_RETRY_TIME", "0.5")
    assert ags.init(api_key=API_KEY, endpoint=api.url)
    try:
        with ags.conversation("conv-flush"), ags.turn():
            ags.user_message("delivered")
        assert ags.flush() is True
        api.inject(CannedResponse(400, b'{"detail": "refused"}', path="/api/ingest/"))
        with ags.conversation("conv-flush"), ags.turn():
            ags.user_message("refused")
        assert ags.flush() is False, "a refused turn is not delivered"
    finally:
        ags.shutdown()
    assert stored_messages(api) == [("conv-flush", "delivered")]


# Both APIs, isolation ---------------------------------------------------------------------------------------


def test_mixing_both_apis_in_one_app(live: DevServer, make_tracker: Callable[..., ConversationTracker]) -> None:
    tracker = make_tracker()
    tracker.get_or_create_conversation("seed-opened")
    ags.button("contact_human_agent", "Create ticket", "create-ticket")  # 0.1.x call, seed turn
    tracker.track_question("seed question")
    tracker.send_tracked_data()
    with ags.conversation("scope-opened"), ags.turn():
        ags.user_message("scope question")
        tracker.track_button("rate", "Good", "5")  # seed call, 0.1.x turn
        tracker.track_answer("seed answer")
    assert tracker.flush(10)["complete"] and ags.flush()
    assert sorted(stored_messages(live)) == [("scope-opened", "scope question"), ("scope-opened", "seed answer"),
                                             ("seed-opened", "seed question")]
    assert live.store.stats()["buttons"] == {"contact_human_agent": {"Create ticket": 1}, "rate": {"Good": 1}}


def test_threads_and_tasks_never_mix_turns(spans: Spans) -> None:
    def worker(number: int) -> None:
        with ags.conversation(f"t-{number}"), ags.turn():
            for index in range(20):
                ags.user_message(f"t-{number}-{index}")

    async def task(number: int) -> None:
        async with ags.conversation(f"a-{number}"), ags.turn():
            for index in range(20):
                ags.user_message(f"a-{number}-{index}")
                await asyncio.sleep(0)

    async def tasks() -> None:
        await asyncio.gather(*(task(number) for number in range(4)))

    threads = [threading.Thread(target=worker, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    asyncio.run(tasks())
    for thread in threads:
        thread.join()
    finished = spans()
    assert len(finished) == 8
    for span in finished:
        conversation_id = (span.attributes or {})[sc.CONVERSATION_ID]
        contents = [m[sc.MESSAGE_CONTENT] for m in events(span)]
        assert contents == [f"{conversation_id}-{index}" for index in range(20)]


# Wires, uploads, files, errors ------------------------------------------------------------------------------


def test_rest_wire_keeps_an_incomplete_turns_messages_out_but_sends_its_actions(
        rest_wire: None, live: DevServer) -> None:
    @ags.tool
    def refund() -> str:
        return "refunded"

    with ags.conversation("c-rest"):
        with pytest.raises(RuntimeError), ags.turn():
            ags.user_message("kept out")
            refund()
            raise RuntimeError("crash")
        with ags.turn():
            ags.user_message("kept")
    assert ags.flush()
    assert [body["content"] for body in bodies(live, "/api/track/")] == ["kept"]
    assert [body["action_name"] for body in bodies(live, "/api/action_logs/")] == ["refund"]


def test_upload_attachments_is_synchronous_and_raises(live: DevServer, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("notes")
    with pytest.raises(ValueError, match="needs a conversation"):
        ags.upload_attachments(str(path))
    with ags.conversation("c-up"), ags.turn():
        answer = ags.upload_attachments(str(path))
        assert isinstance(answer, dict)
        with pytest.raises(ValueError):
            ags.upload_attachments(b"no name")  # type: ignore[arg-type]
        live.inject(CannedResponse(500, path="/api/attachments/"))
        with pytest.raises(ags.UploadError) as refused:
            ags.upload_attachments({"filename": "a.bin", "data": b"\0"})
    assert refused.value.status_code == 500
    assert [body["attachments"][0]["filename"] for body in bodies(live, "/api/attachments/")] == ["notes.txt"]


def test_the_file_exporter_writes_what_would_be_sent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AGENTSIGHT_API_KEY", raising=False)
    monkeypatch.setenv("AGENTSIGHT_FILE_EXPORTER", str(tmp_path / "out"))
    assert ags.init(export_interval_ms=10)
    try:
        with ags.conversation("c-file"), ags.turn():
            ags.user_message("to a file")
        assert ags.flush()
    finally:
        ags.shutdown()
    [written] = list((tmp_path / "out").glob("*.json"))
    document = json.loads(written.read_text())
    [block] = document["conversations"]
    assert block["conversation_id"] == "c-file" and block["spans"][0]["kind"] == "turn"


def test_the_exception_hierarchy_has_upstreams_names() -> None:
    assert issubclass(ags.ConfigurationError, ags.AgentSightError) and issubclass(ags.ConfigurationError, ValueError)
    assert issubclass(ags.MissingApiKeyError, ags.ConfigurationError)
    assert issubclass(ags.SubscriptionInactiveError, ags.AuthenticationError)
    assert all(issubclass(error, ags.APIError) for error in (
        ags.PermissionDeniedError, ags.NotFoundError, ags.ValidationError, ags.MethodNotAllowedError,
        ags.RateLimitError, ags.ServerError))
    assert API_KEY not in str(ags.InvalidApiKeyError(API_KEY))
    assert ags.RateLimitError("slow", retry_after=2.0, status_code=429).retry_after == 2.0
    assert ags.ValidationError("bad", errors={"x": ["y"]}).errors == {"x": ["y"]}
