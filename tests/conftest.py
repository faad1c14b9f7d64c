"""Shared fixtures: a local AgentSight-compatible API and trackers pointed at it with quick retries."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import wrapt
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from packaging.version import Version

from agentsight import ConversationTracker
from agentsight.config import DeliverySettings
from agentsight.dev import DevServer
from agentsight.dev.local_llm import FakeLLMServer

# Trackers would instrument the installed LLM clients on creation; instrumentation tests do it themselves.
os.environ["AGENTSIGHT_AUTO_INSTRUMENT"] = "false"

WRAPPER = getattr(wrapt, "BaseObjectProxy", wrapt.ObjectProxy)
"""What every wrapt wrapper is (wrapt 2 put ``BaseObjectProxy`` under ``ObjectProxy``)."""
API_KEY = "ags_0123456789abcdef0123456789abcdef_abcdef"
QUICK_RETRIES = DeliverySettings(timeout=2.0, backoff_initial=0.01, backoff_max=0.05, max_retry_time=10.0)


def released_before(distribution: str, release: str) -> bool:
    """Whether the installed ``distribution`` is older than ``release`` (``make test-oldest`` runs the oldest)."""
    return Version(version(distribution)) < Version(release)


@pytest.fixture
def api() -> Iterator[DevServer]:
    """A local AgentSight-compatible API server on 127.0.0.1."""
    with DevServer() as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_otel_context() -> Iterator[None]:
    """Each test starts in an empty OTel context, and what it left current (an unsent turn) is gone after it."""
    token = otel_context.attach(otel_context.Context())
    yield
    otel_context.detach(token)


@pytest.fixture
def rest_wire(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trackers and exporters made in the test (subprocesses too) speak the REST wire (``AGENTSIGHT_PROTOCOL=rest``)."""
    monkeypatch.setenv("AGENTSIGHT_PROTOCOL", "rest")


@pytest.fixture
def make_tracker(api: DevServer) -> Iterator[Callable[..., ConversationTracker]]:
    """Build trackers delivering to ``api`` (shut down after the test)."""
    made: list[ConversationTracker] = []

    def make(**kwargs: object) -> ConversationTracker:
        kwargs.setdefault("api_key", API_KEY)
        kwargs.setdefault("endpoint", api.url)
        kwargs.setdefault("delivery", QUICK_RETRIES)
        tracker = ConversationTracker(**kwargs)  # type: ignore[arg-type]
        made.append(tracker)
        return tracker

    yield make
    for tracker in made:
        tracker.shutdown()


@pytest.fixture
def tracker(make_tracker: Callable[..., ConversationTracker]) -> ConversationTracker:
    """A tracker delivering to the local API."""
    return make_tracker()


@pytest.fixture
def fake() -> Iterator[FakeLLMServer]:
    """A fake LLM provider (OpenAI, Anthropic, Groq, Mistral, Ollama APIs) on 127.0.0.1."""
    with FakeLLMServer() as server:
        yield server


@contextmanager
def instrumented(*instrumentors: type[BaseInstrumentor]) -> Iterator[InMemorySpanExporter]:
    """Instrument with a tracer provider whose finished spans can be read; uninstrument afterwards."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for instrumentor in instrumentors:
        instrumentor().instrument(tracer_provider=provider)
    try:
        yield exporter
    finally:
        for instrumentor in instrumentors:
            instrumentor().uninstrument()


def wrapper_layers(owner: type, name: str) -> int:
    """How many wrapt wrappers are around the method ``name`` of ``owner`` (instrumentors wrap in place):
    1 while instrumented, however often ``instrument()`` was called; 0 once uninstrumented."""
    value, layers = vars(owner).get(name), 0
    while isinstance(value, WRAPPER):
        value, layers = value.__wrapped__, layers + 1
    return layers


def eventually(check: Callable[[], bool], timeout: float = 10.0, what: str = "the condition") -> None:
    """Wait until ``check()`` is true; raise ``AssertionError`` naming ``what`` when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def stored_messages(server: DevServer) -> list[tuple[str, str]]:
    """``(conversation_id, content)`` of every message the local AgentSight stored (either wire), in order."""
    messages = []
    for conversation in server.store.all_conversations():
        detail = server.store.get_conversation(conversation["id"])
        assert detail is not None
        messages.extend((conversation["conversation_id"], message["content"]) for message in detail["messages"])
    return messages


def stored_rows(db: Path) -> tuple[int, ...]:
    """Rows of each table of the ``agentsight dev`` store at ``db``, read through a connection of its own."""
    with closing(sqlite3.connect(db)) as connection:
        return tuple(connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                     for table in ("conversations", "items", "usage", "spans"))


def strict_json(payload: str | bytes) -> Any:
    """``payload`` parsed as a strict JSON parser (a browser's) does: ``NaN`` and ``Infinity`` are not JSON."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} in an answer is not JSON")

    return json.loads(payload, parse_constant=refuse)


def bodies(server: DevServer, path: str) -> list[dict]:
    """Bodies of the accepted requests to ``path``, in arrival order."""
    return [request.body for request in server.accepted(path)]


def run_script(
    tmp_path: Path, source: str, env: dict[str, str], args: tuple[str, ...] = (), timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``source`` as a Python script in a fresh interpreter with ``env`` added to this one's."""
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(source))
    full_env = {**os.environ, **env}
    command = [*args, sys.executable, str(script)] if args else [sys.executable, str(script)]
    return subprocess.run(command, env=full_env, capture_output=True, text=True, timeout=timeout, check=False)
