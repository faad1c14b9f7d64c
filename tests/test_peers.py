"""Exactly once beside the peer instrumentations: OpenLLMetry, OpenInference and the official OpenAI one.

Each combination runs in a fresh interpreter of a cached scratch venv (``.cache/peers``, see
``tests/scratch_venv.py``) holding this project, the real ``openai`` and ``anthropic`` clients at the
project venv's versions, and the peers: the peer instrumented before the tracker, after it, or every
installed instrumentor (ours and all the peers) loaded by ``opentelemetry-instrument``. The app calls
each client surface in a turn of its own against the stand-in model, and the turns reach a local
AgentSight API over the REST wire, where each turn must hold one model call and that call's tokens.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentsight import ConversationTracker
from agentsight.dev import DevServer
from agentsight.dev.local_llm import ANTHROPIC_USAGE, CHAT_USAGE, FakeLLMServer
from agentsight.instrumentation.genai import start_model_call
from agentsight.instrumentation.streams import StreamWrapper
from agentsight.spans.attribution import ModelCallAttribution
from tests.conftest import API_KEY, bodies
from tests.scratch_venv import ROOT, scratch_python

PEER_PACKAGES = (
    "opentelemetry-instrumentation-openai==0.62.4",  # OpenLLMetry
    "opentelemetry-instrumentation-anthropic==0.62.4",
    "openinference-instrumentation-openai==0.1.66",
    "openinference-instrumentation-anthropic==3.1.0",
    "opentelemetry-instrumentation-genai-openai==1.3b0",  # the official one
)
PEERS = {
    "openllmetry": ("opentelemetry.instrumentation.openai", "opentelemetry.instrumentation.anthropic"),
    "openinference": ("openinference.instrumentation.openai", "openinference.instrumentation.anthropic"),
    "official": ("opentelemetry.instrumentation.genai.openai",),
}
"""Each peer's instrumentor modules (each has an ``OpenAIInstrumentor`` or ``AnthropicInstrumentor``)."""

OPENAI_TOKENS = (CHAT_USAGE["prompt_tokens"], CHAT_USAGE["completion_tokens"])
ANTHROPIC_TOKENS = (ANTHROPIC_USAGE["input_tokens"], ANTHROPIC_USAGE["output_tokens"])
SURFACES = {
    "openai-create": (1, OPENAI_TOKENS),
    "openai-async-create": (1, OPENAI_TOKENS),
    "openai-stream": (1, OPENAI_TOKENS),
    "openai-two-at-once": (2, (2 * OPENAI_TOKENS[0], 2 * OPENAI_TOKENS[1])),
    "anthropic-create": (1, ANTHROPIC_TOKENS),
    "anthropic-create-stream": (1, ANTHROPIC_TOKENS),
    "anthropic-stream-helper": (1, ANTHROPIC_TOKENS),
    "anthropic-beta-create": (1, ANTHROPIC_TOKENS),
    "anthropic-two-surfaces-at-once": (2, (2 * ANTHROPIC_TOKENS[0], 2 * ANTHROPIC_TOKENS[1])),
}
"""Each surface the app calls, in a turn of that name: its provider calls and their tokens."""

APP = """
import asyncio, importlib, json, os, sys, traceback

import anthropic, openai

ORDER, PEER = os.environ["PEER_ORDER"], os.environ["PEER"]
if ORDER != "opentelemetry-instrument":  # the app's own OpenTelemetry set-up, as a peer's users have
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    trace.set_tracer_provider(TracerProvider())


def instrument_peer():
    for module_name in json.loads(os.environ["PEER_MODULES"]):
        module = importlib.import_module(module_name)
        name = "OpenAIInstrumentor" if hasattr(module, "OpenAIInstrumentor") else "AnthropicInstrumentor"
        getattr(module, name)().instrument()


if ORDER == "before":
    instrument_peer()
from agentsight import ConversationTracker

tracker = ConversationTracker()  # instruments the clients (AGENTSIGHT_AUTO_INSTRUMENT)
if ORDER == "after":
    instrument_peer()

OPENAI = dict(base_url=os.environ["OPENAI_URL"], api_key="test", max_retries=0)
ANTHROPIC = dict(base_url=os.environ["ANTHROPIC_URL"], api_key="test", max_retries=0)
CHAT = dict(model="gpt-4o-mini", messages=[{"role": "user", "content": "Where is my order?"}])
MESSAGE = dict(model="claude-fake-model", max_tokens=64, messages=[{"role": "user", "content": "Where is my order?"}])


async def two_at_once():
    client = openai.AsyncOpenAI(**OPENAI)
    await asyncio.gather(client.chat.completions.create(**CHAT), client.chat.completions.create(**CHAT))


async def two_surfaces_at_once():
    client = anthropic.AsyncAnthropic(**ANTHROPIC)
    await asyncio.gather(client.beta.messages.create(**MESSAGE), client.messages.create(**MESSAGE))


def openai_stream():
    for _ in openai.OpenAI(**OPENAI).chat.completions.create(**CHAT, stream=True,
                                                              stream_options={"include_usage": True}):
        pass


def anthropic_create_stream():
    for _ in anthropic.Anthropic(**ANTHROPIC).messages.create(**MESSAGE, stream=True):
        pass


def anthropic_stream_helper():
    with anthropic.Anthropic(**ANTHROPIC).messages.stream(**MESSAGE) as stream:
        for _ in stream.text_stream:
            pass
        stream.get_final_message()


SURFACES = {
    "openai-create": lambda: openai.OpenAI(**OPENAI).chat.completions.create(**CHAT),
    "openai-async-create": lambda: asyncio.run(openai.AsyncOpenAI(**OPENAI).chat.completions.create(**CHAT)),
    "openai-stream": openai_stream,
    "openai-two-at-once": lambda: asyncio.run(two_at_once()),
    "anthropic-create": lambda: anthropic.Anthropic(**ANTHROPIC).messages.create(**MESSAGE),
    "anthropic-create-stream": anthropic_create_stream,
    "anthropic-stream-helper": anthropic_stream_helper,
    "anthropic-beta-create": lambda: anthropic.Anthropic(**ANTHROPIC).beta.messages.create(**MESSAGE),
    "anthropic-two-surfaces-at-once": lambda: asyncio.run(two_surfaces_at_once()),
}
raised = {}
for surface, call in SURFACES.items():
    tracker.get_or_create_conversation(surface)
    try:
        call()
    except Exception:
        raised[surface] = traceback.format_exc()
    tracker.send_tracked_data()
tracker.flush(30)
print(json.dumps(raised))
"""


@pytest.fixture(scope="module")
def peers_python() -> Path:
    """The scratch venv's interpreter: this project (editable), both clients and every peer."""
    requirements = ["-e", str(ROOT), "openai", "anthropic", "httpx", "opentelemetry-distro", *PEER_PACKAGES]
    return scratch_python("peers", requirements, pin_to_project=True)


def run_app(python: Path, api: DevServer, fake: FakeLLMServer, tmp_path: Path, peer: str, order: str
            ) -> dict[str, str]:
    """Run the app in a fresh interpreter; what each surface raised into it (nothing, when all went well)."""
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(APP))
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("AGENTSIGHT_", "OTEL_"))}
    environment.update({
        "AGENTSIGHT_API_KEY": API_KEY, "AGENTSIGHT_API_ENDPOINT": api.url, "AGENTSIGHT_PROTOCOL": "rest",
        "AGENTSIGHT_AUTO_INSTRUMENT": "false" if order == "opentelemetry-instrument" else "true",
        "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none",
        "PEER": peer, "PEER_ORDER": order, "PEER_MODULES": json.dumps(PEERS.get(peer, ())),
        "OPENAI_URL": fake.openai_base_url, "ANTHROPIC_URL": fake.anthropic_base_url,
    })
    command = [str(python), str(script)]
    if order == "opentelemetry-instrument":
        command.insert(0, str(python.parent / "opentelemetry-instrument"))
    run = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    raised: dict[str, str] = json.loads(run.stdout.strip().splitlines()[-1])
    return raised


def counted(api: DevServer) -> dict[str, tuple[int, tuple[int, int]]]:
    """Per turn (conversation id): how many model-call actions reached the API, and the turn's token sums."""
    found: dict[str, Any] = {surface: [0, (0, 0)] for surface in SURFACES}
    for action in bodies(api, "/api/action_logs/"):
        turn = found.setdefault(action["conversation_id"], [0, (0, 0)])
        if action["action_name"] == "token_usage":
            turn[1] = (action["metadata"]["prompt_tokens"], action["metadata"]["completion_tokens"])
        else:
            turn[0] += 1
    return {surface: (calls, tokens) for surface, (calls, tokens) in found.items()}


COMBINATIONS = [(peer, order) for peer in PEERS for order in ("before", "after")]
COMBINATIONS.append(("all", "opentelemetry-instrument"))


@pytest.mark.parametrize(("peer", "order"), COMBINATIONS, ids=[f"{peer}-{order}" for peer, order in COMBINATIONS])
def test_every_call_counts_once_and_nothing_raises(
    peers_python: Path, api: DevServer, fake: FakeLLMServer, tmp_path: Path, peer: str, order: str
) -> None:
    raised = run_app(peers_python, api, fake, tmp_path, peer, order)
    assert raised == {}, "\n".join(raised.values())
    assert counted(api) == SURFACES


CHAT_SPAN = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "m",
             "gen_ai.usage.input_tokens": 5, "gen_ai.usage.output_tokens": 3}
"""A model-call span's attributes, as another instrumentation records them."""


@pytest.mark.usefixtures("rest_wire")  # reads the model calls as REST actions
def test_concurrent_calls_recorded_by_different_instrumentations_stay_apart(
    api: DevServer, tracker: ConversationTracker
) -> None:
    """Two calls at once in one turn, each seen by one instrumentation only (as when one of them uses a surface
    only a peer instruments): they overlap and are not nested, yet they are two calls, not one side by side."""
    provider = TracerProvider()
    provider.add_span_processor(ModelCallAttribution())
    tracker.get_or_create_conversation("conv-apart")

    async def call(scope: str) -> None:
        with provider.get_tracer(scope).start_as_current_span("chat m", attributes=CHAT_SPAN):
            await asyncio.sleep(0.01)

    async def both() -> None:
        await asyncio.gather(call("a.peer"), call("a.client"))

    asyncio.run(both())
    tracker.send_tracked_data()
    assert tracker.flush(10)["complete"]
    assert counted(api)["conv-apart"] == (2, (10, 6))


@pytest.mark.usefixtures("rest_wire")  # reads the model calls as REST actions
def test_an_agents_span_is_no_model_call_and_hides_none_inside_it(api: DevServer, tracker: ConversationTracker) -> None:
    """An agent framework's ``invoke_agent`` span (GenAI, but no call to a model) around two model calls:
    each model call counts, and the agent's span does not."""
    provider = TracerProvider()
    provider.add_span_processor(ModelCallAttribution())
    tracer = provider.get_tracer("a.framework")
    tracker.get_or_create_conversation("conv-agent")
    with tracer.start_as_current_span("invoke_agent support", attributes={"gen_ai.operation.name": "invoke_agent"}):
        for _ in range(2):
            tracer.start_span("chat m", attributes=CHAT_SPAN).end()
    tracker.send_tracked_data()
    assert tracker.flush(10)["complete"]
    assert counted(api)["conv-agent"] == (2, (10, 6))


class IterableOnly:
    """A stream as another instrumentation's proxy may be: iterable (sync and async), but no iterator."""

    def __init__(self, items: list[int]) -> None:
        self.items = items

    def __iter__(self) -> Iterator[int]:
        return iter(self.items)

    async def __aiter__(self) -> AsyncIterator[int]:
        for item in self.items:
            yield item


def test_a_stream_that_is_iterable_but_no_iterator_is_read_whole_and_ends_its_call_once() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    seen: list[int] = []

    def wrapped() -> StreamWrapper:
        call = start_model_call(tracer, "chat", "openai", "m", {})
        assert call is not None
        return StreamWrapper(IterableOnly([1, 2, 3]), call, seen.append, lambda: None)

    assert list(wrapped()) == [1, 2, 3]

    async def read() -> list[int]:
        return [item async for item in wrapped()]

    assert asyncio.run(read()) == [1, 2, 3]
    assert seen == [1, 2, 3, 1, 2, 3]
    assert [span.name for span in exporter.get_finished_spans()] == ["chat m", "chat m"]


@pytest.mark.usefixtures("rest_wire")  # reads the model calls as REST actions
def test_an_openinference_llm_span_counts_for_a_call_nobody_else_records(
    api: DevServer, tracker: ConversationTracker
) -> None:
    """OpenInference's spans carry no ``gen_ai.operation.name``: its LLM span is read through its own names."""
    provider = TracerProvider()
    provider.add_span_processor(ModelCallAttribution())
    tracer = provider.get_tracer("openinference.instrumentation.vertexai")
    tracker.get_or_create_conversation("conv-openinference")
    tracer.start_span("GenerateContent", attributes={
        "openinference.span.kind": "LLM", "llm.provider": "google", "llm.model_name": "gemini-x",
        "llm.token_count.prompt": 5, "llm.token_count.completion": 3,
        "llm.token_count.prompt_details.cache_read": 2}).end()
    tracer.start_span("retrieve", attributes={"openinference.span.kind": "RETRIEVER"}).end()
    tracker.send_tracked_data()
    assert tracker.flush(10)["complete"]
    assert counted(api)["conv-openinference"] == (1, (5, 3))
    (call,) = [a for a in bodies(api, "/api/action_logs/") if a["action_name"] != "token_usage"]
    assert call["action_name"] == "chat google/gemini-x"
    assert call["metadata"]["cache_read_tokens"] == 2
