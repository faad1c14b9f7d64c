"""The LangChain and LlamaIndex handlers, with the real frameworks and ``openai`` client against the stand-in model.

What is asserted is what the local AgentSight stored from either wire: the turn's tool and task actions
(names, arguments, responses, errors) and its token usage, counted once whether our ``openai``
instrumentation, the handler, or both saw a model call.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import StructuredTool, ToolException, tool
from langchain_openai import ChatOpenAI
from llama_index.core.base.llms.types import ChatMessage, CompletionResponse, LLMMetadata
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.tools import FunctionTool

from agentsight import ConversationTracker
from agentsight.dev import DevServer
from agentsight.dev.local_llm import CHAT_CACHED_TOKENS, CHAT_USAGE, FakeLLMServer
from agentsight.instrumentation import AgentSightCallbackHandler
from agentsight.instrumentation.langchain import LangChainInstrumentor
from agentsight.instrumentation.llama_index import LlamaIndexInstrumentor
from agentsight.instrumentation.openai import OpenAIInstrumentor
from tests.conftest import API_KEY, run_script

MODEL_CALL = "chat openai/gpt-4o-mini-2024-07-18"


@tool
def get_weather(city: str) -> str:
    """Today's weather in a city."""
    return f"Sunny in {city}"


@tool
def flaky(city: str) -> str:
    """Always fails."""
    raise ToolException(f"no station in {city}")


handled_flaky = StructuredTool.from_function(flaky.func, name="flaky", handle_tool_error=True)
"""``flaky`` answering its error as a ``ToolMessage`` with ``status="error"``."""


@pytest.fixture(params=["ingest", "rest"])
def turn_tracker(
    request: pytest.FixtureRequest, make_tracker: Callable[..., ConversationTracker]
) -> ConversationTracker:
    """A tracker on each wire."""
    return make_tracker(protocol=request.param)


@pytest.fixture
def frameworks() -> Iterator[None]:
    """Both handlers installed (and removed afterwards)."""
    LangChainInstrumentor().instrument()
    LlamaIndexInstrumentor().instrument()
    yield
    LangChainInstrumentor().uninstrument()
    LlamaIndexInstrumentor().uninstrument()


@pytest.fixture
def openai_instrumented() -> Iterator[None]:
    """Our ``openai`` instrumentation, under the frameworks."""
    OpenAIInstrumentor().instrument()
    yield
    OpenAIInstrumentor().uninstrument()


def stored_turn(api: DevServer, tracker: ConversationTracker) -> dict[str, Any]:
    """The one conversation stored, once everything tracked was delivered."""
    assert tracker.flush(10)["delivered"]
    (conversation,) = api.store.all_conversations()
    detail = api.store.get_conversation(conversation["id"])
    assert detail is not None
    return detail


def actions(detail: dict[str, Any]) -> list[tuple[Any, ...]]:
    """``(name, arguments, response, error)`` of the stored actions other than model calls and usage sums."""
    return [(a["action_name"], a["tools_used"], a["response"], a["error_msg"]) for a in detail["actions"]
            if a["action_name"] != "token_usage" and not a["action_name"].startswith(("chat ", "text_completion "))]


def model_calls(detail: dict[str, Any]) -> list[str]:
    return [a["action_name"] for a in detail["actions"] if a["action_name"].startswith(("chat ", "text_completion "))]


def chat_tokens(calls: int, cached_apart: bool = False) -> dict[str, int]:
    """The stored tokens of ``calls`` stand-in chat calls; ``cached_apart``: the ingest wire got them from our
    client instrumentation, which reports the cached prompt tokens as their own category (as upstream does)."""
    cached = calls * CHAT_CACHED_TOKENS if cached_apart else 0
    return {"prompt_tokens": calls * CHAT_USAGE["prompt_tokens"] - cached,
            "completion_tokens": calls * CHAT_USAGE["completion_tokens"],
            "total_tokens": calls * CHAT_USAGE["total_tokens"], "cache_read_tokens": cached}


def cached_apart(tracker: ConversationTracker, client_instrumented: bool = True) -> bool:
    """Whether :func:`chat_tokens` has the cached prompt tokens apart for this tracker's wire."""
    return client_instrumented and tracker.settings.protocol == "ingest"


def weather_agent(fake: FakeLLMServer) -> RunnableLambda:
    """A tool-calling chain: the model asks for tools, they run, the model answers."""
    model = ChatOpenAI(model="gpt-4o-mini", base_url=fake.openai_base_url, api_key="test", max_retries=0)

    def run(question: str) -> str:
        choice = model.bind_tools([get_weather]).invoke([HumanMessage(question)])
        results = [get_weather.invoke(call) for call in choice.tool_calls]
        return str(model.invoke([HumanMessage(question), choice, *results]).content)

    return RunnableLambda(run, name="weather_agent")


@pytest.mark.usefixtures("frameworks")
@pytest.mark.parametrize("client_instrumented", [True, False], ids=["with-openai-instrumentation", "handler-only"])
def test_langchain_agent_tools_tasks_and_tokens_once(
    request: pytest.FixtureRequest, client_instrumented: bool, fake: FakeLLMServer, api: DevServer,
    turn_tracker: ConversationTracker,
) -> None:
    if client_instrumented:
        request.getfixturevalue("openai_instrumented")
    agent = weather_agent(fake)
    agent.invoke("outside any turn")  # recorded nowhere
    with turn_tracker.conversation("conv-lc"):
        turn_tracker.track_question("Weather in Paris?")
        answer = agent.invoke("Weather in Paris?", config={"callbacks": [AgentSightCallbackHandler()]})
        turn_tracker.track_answer(answer)
        call = {"name": "flaky", "args": {"city": "Atlantis"}, "id": "c1", "type": "tool_call"}
        assert handled_flaky.invoke(call).status == "error"
        with pytest.raises(ToolException):
            flaky.invoke({"city": "Lyon"})
    detail = stored_turn(api, turn_tracker)
    assert sorted(actions(detail), key=str) == sorted([
        ("weather_agent", {"input": "Weather in Paris?"}, "Hello from the fake model", None),
        ("get_weather", {"city": "Paris"}, "Sunny in Paris", None),
        ("flaky", {"city": "Atlantis"}, None, "no station in Atlantis"),
        ("flaky", {"city": "Lyon"}, None, "no station in Lyon"),
    ], key=str)
    task = next(a for a in detail["actions"] if a["action_name"] == "weather_agent")
    assert task["metadata"] == {"framework": "langchain", "kind": "task"}
    ingest_kinds = {span["name"]: span["kind"] for request in api.accepted("/api/ingest/")
                    for block in request.body["conversations"] for span in block["spans"]}
    if turn_tracker.settings.protocol == "ingest":
        assert (ingest_kinds["weather_agent"], ingest_kinds["get_weather"]) == ("task", "tool")
    assert all(a["started_at"] and a["ended_at"] and a["duration_ms"] is not None for a in detail["actions"]
               if a["action_name"] != "token_usage")
    assert model_calls(detail) == [MODEL_CALL, MODEL_CALL], "each model call once, with the explicit handler too"
    expected = chat_tokens(2, cached_apart(turn_tracker, client_instrumented))
    assert {key: detail["tokens"][key] for key in expected} == expected
    assert [m["content"] for m in detail["messages"]] == ["Weather in Paris?", "Hello from the fake model"]


@pytest.mark.usefixtures("frameworks", "openai_instrumented")
def test_langchain_async_and_batched_calls_count_once(fake: FakeLLMServer, api: DevServer,
                                                      turn_tracker: ConversationTracker) -> None:
    model = ChatOpenAI(model="gpt-4o-mini", base_url=fake.openai_base_url, api_key="test", max_retries=0)

    async def ask() -> None:
        await model.ainvoke("hi")
        await get_weather.ainvoke({"city": "Nice"})

    with turn_tracker.conversation("conv-lc-async"):
        asyncio.run(ask())
        model.batch(["a", "b", "c"])
    detail = stored_turn(api, turn_tracker)
    assert actions(detail) == [("get_weather", {"city": "Nice"}, "Sunny in Nice", None)]
    assert model_calls(detail) == [MODEL_CALL] * 4
    expected = chat_tokens(4, cached_apart(turn_tracker))
    assert {key: detail["tokens"][key] for key in expected} == expected


@pytest.mark.usefixtures("frameworks")
@pytest.mark.parametrize("client_instrumented", [True, False], ids=["with-openai-instrumentation", "handler-only"])
def test_langchain_model_failure_is_one_failed_call(
    request: pytest.FixtureRequest, client_instrumented: bool, fake: FakeLLMServer, api: DevServer,
    turn_tracker: ConversationTracker,
) -> None:
    if client_instrumented:
        request.getfixturevalue("openai_instrumented")
    model = ChatOpenAI(model="gpt-4o-mini", base_url=fake.openai_base_url, api_key="test", max_retries=0)
    fake.fail_next(500)
    with turn_tracker.conversation("conv-lc-error"), pytest.raises(openai.InternalServerError):
        model.invoke("hi")
    (call,) = [a for a in stored_turn(api, turn_tracker)["actions"] if a["action_name"] != "token_usage"]
    assert call["action_name"] == "chat openai/gpt-4o-mini" and "500" in call["error_msg"]


class StandIn(CustomLLM):
    """A LlamaIndex LLM calling the stand-in model through the ``openai`` client (its ``chat`` runs ``complete``)."""

    base_url: str

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="gpt-4o-mini")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        client = openai.OpenAI(base_url=self.base_url, api_key="test", max_retries=0)
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}])
        return CompletionResponse(text=str(reply.choices[0].message.content), raw=reply)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        raise NotImplementedError


def _broken(city: str) -> str:
    """Always fails."""
    raise ValueError(f"no station in {city}")


@pytest.mark.usefixtures("frameworks")
@pytest.mark.parametrize("client_instrumented", [True, False], ids=["with-openai-instrumentation", "handler-only"])
def test_llama_index_tools_and_tokens_once(
    request: pytest.FixtureRequest, client_instrumented: bool, fake: FakeLLMServer, api: DevServer,
    turn_tracker: ConversationTracker,
) -> None:
    if client_instrumented:
        request.getfixturevalue("openai_instrumented")
    llm, weather = StandIn(base_url=fake.openai_base_url), FunctionTool.from_defaults(get_weather.func)
    weather.call(city="Rome")  # outside any turn: recorded nowhere
    with turn_tracker.conversation("conv-li"):
        assert weather.call(city="Paris").content == "Sunny in Paris"
        assert asyncio.run(weather.acall(city="Oslo")).content == "Sunny in Oslo"
        with pytest.raises(ValueError):
            FunctionTool.from_defaults(_broken).call(city="Atlantis")
        llm.complete("hi")
        llm.chat([ChatMessage(role="user", content="hi")])  # runs complete(): one model call
    detail = stored_turn(api, turn_tracker)
    assert actions(detail) == [
        ("get_weather", {"city": "Paris"}, "Sunny in Paris", None),
        ("get_weather", {"city": "Oslo"}, "Sunny in Oslo", None),
        ("_broken", {"city": "Atlantis"}, None, "no station in Atlantis"),
    ]
    provider = "openai" if client_instrumented else "unknown"
    assert model_calls(detail) == [f"{operation} {provider}/gpt-4o-mini-2024-07-18" for operation in
                                   (("chat", "chat") if client_instrumented else ("text_completion", "chat"))]
    expected = chat_tokens(2, cached_apart(turn_tracker, client_instrumented))
    assert {key: detail["tokens"][key] for key in expected} == expected


def test_handlers_import_nothing_until_used(tmp_path: Path, api: DevServer) -> None:
    result = run_script(tmp_path, """
        import sys
        from agentsight import ConversationTracker
        import agentsight.instrumentation.langchain, agentsight.instrumentation.llama_index
        ConversationTracker()
        assert "langchain_core" not in sys.modules and "llama_index" not in sys.modules, "nothing imported yet"
        import langchain_core.runnables
        from langchain_core.callbacks import CallbackManager
        from agentsight.instrumentation import AgentSightCallbackHandler
        manager = CallbackManager.configure()
        assert [type(h) for h in manager.handlers] == [AgentSightCallbackHandler], "registered once imported"
        print("ok")
    """, {"AGENTSIGHT_API_KEY": API_KEY, "AGENTSIGHT_API_ENDPOINT": api.url, "AGENTSIGHT_AUTO_INSTRUMENT": "true",
          "PYTHONPATH": str(Path.cwd())})
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_example_agent_langchain_runs() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AGENTSIGHT_", "OPENAI_"))}
    done = subprocess.run([sys.executable, "examples/agent_langchain.py"], env=env, capture_output=True, text=True,
                          timeout=90, check=False)
    assert done.returncode == 0, done.stderr
    assert "delivered=True" in done.stdout
    assert 'action {"action_name": "get_weather", "tools_used": {"city": "Paris"}, ' \
           '"response": "Sunny and 24 degrees in Paris"}' in done.stdout
    assert done.stdout.count(f'"action_name": "{MODEL_CALL}"') == 2
    tokens = chat_tokens(2, cached_apart=True)  # the example sends over the ingest wire
    prompt, completion = tokens["prompt_tokens"], tokens["completion_tokens"]
    assert f'"prompt_tokens": {prompt}, "completion_tokens": {completion}' in done.stdout
    assert f'"cache_read_tokens": {tokens["cache_read_tokens"]}' in done.stdout
