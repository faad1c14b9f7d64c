"""What instrumenting the ``openai`` client costs per call: agentsight's instrumentor against its peers.

Run from the project's environment: ``python bench/llm_overhead.py [--quick]``. The peers are the official
``opentelemetry-instrumentation-genai-openai``, OpenLLMetry's ``opentelemetry-instrumentation-openai`` and
``openinference-instrumentation-openai``: each is installed (with this project, editable, and ``openai``)
into a plain scratch venv of its own, ``bench/.<peer>-venv``, when needed, pinning ``openai``,
``opentelemetry-sdk``, ``wrapt`` and everything they require to the project venv's versions, so the calls
differ only in their instrumentation.

Each variant runs in a subprocess of its own (``--worker``, under ``python -I``) against one fake
OpenAI-compatible server and one local AgentSight API, both served from this process:

- ``bare``: no instrumentation (also run under the scratch venv's interpreter, as an A/A noise check);
- ``ours``: ``agentsight.instrumentation.openai.OpenAIInstrumentor``;
- ``official``, ``openllmetry``, ``openinference``: that peer's ``OpenAIInstrumentor`` (its scratch venv);
- ``ours_in_turn``: ours, with a ``ConversationTracker`` turn open around the calls, sent and a new
  one opened every few calls, so attributing the calls to turns (and delivering them) is included.

Instrumented variants share one set-up: an SDK ``TracerProvider`` (also the global one) with a
``SimpleSpanProcessor`` whose exporter only counts spans; no meter or logger provider; message
content capture off (the default of both). Every worker times, with one keep-alive client,
non-stream ``chat.completions.create`` calls and fully consumed 100-chunk ``stream=True`` calls.

A round starts every worker afresh; once all are set up and warmed up, they take turns in lockstep, a
short block of calls each, the order rotating every block, so load on the machine touches all
variants alike. A variant's figure is the median over rounds of its per-round median; its overhead,
that figure minus ``bare``'s. Prints markdown and writes ``bench/RESULTS_LLM.md``.
``--profile VARIANT`` instead prints a cProfile of that variant's timed calls (top functions by own time).
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import io
import json
import os
import platform
import pstats
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from agentsight.dev.local_llm import FakeLLMServer

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletionMessageParam

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "RESULTS_LLM.md"


@dataclass(frozen=True)
class Peer:
    """A peer instrumentation of ``openai``, measured from a scratch venv of its own."""

    label: str
    package: str
    version: str
    module: str
    """Where its ``OpenAIInstrumentor`` is."""

    @property
    def venv(self) -> Path:
        return BENCH / f".{self.label}-venv"


PEERS = (
    Peer("official", "opentelemetry-instrumentation-genai-openai", "1.3b0",
         "opentelemetry.instrumentation.genai.openai"),
    Peer("openllmetry", "opentelemetry-instrumentation-openai", "0.62.4", "opentelemetry.instrumentation.openai"),
    Peer("openinference", "openinference-instrumentation-openai", "0.1.66", "openinference.instrumentation.openai"),
)
PEER_BY_LABEL = {peer.label: peer for peer in PEERS}
CONTENT_OFF = {"TRACELOOP_TRACE_CONTENT": "false", "OPENINFERENCE_HIDE_INPUTS": "true",
               "OPENINFERENCE_HIDE_OUTPUTS": "true"}
"""Message content capture off for the peers that capture it by default (OpenLLMetry, OpenInference)."""
CALL_PATH = ("openai", "opentelemetry-sdk", "wrapt")
"""What every variant's calls run through: these and all they require are pinned to the project venv's versions."""
NOT_COMPARED = {"pip", "setuptools", "wheel", "agentsight-otel"}
REPORTED_PACKAGES = ("openai", "opentelemetry-sdk", "agentsight-otel", "opentelemetry-util-genai",
                     *(peer.package for peer in PEERS))

API_KEY = "ags_" + "a" * 32 + "_" + "b" * 6
MODEL = "gpt-4o-mini"
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Where is my order?"}]
STREAM_CHUNKS = 100
REPLY_TEXT = " ".join(f"word{index}" for index in range(STREAM_CHUNKS))
"""100 words, so each of the 100 streamed deltas carries one (non-empty) word."""
USAGE = (11, 7)
"""Input and output tokens the fake server reports for every chat completion."""
CONTENT = ("Where is my order?", "word0 word1")
"""The request's and the reply's text: no span attribute may hold them (content capture is off)."""
CALLS_PER_TURN = 10
CLIENT_TIMEOUT = 30.0

BARE, OURS, OURS_IN_TURN = "bare", "ours", "ours_in_turn"
VARIANTS = (BARE, OURS, OURS_IN_TURN, *PEER_BY_LABEL)
AA = "bare (scratch venv, A/A)"
"""``bare`` under the first peer's scratch venv's interpreter: its difference from ``bare`` shows the noise."""
KINDS = (("chat_ns", "non-stream call"), ("stream_ns", "100-chunk stream"))
SEEN_ELSEWHERE = {"chat_ns": "+0.11 ms", "stream_ns": "+1.2 ms"}
"""The official package's overhead as measured elsewhere, quoted in the goal."""


@dataclass(frozen=True)
class Counts:
    """How much each worker does per round: ``blocks`` of ``cycles_per_block`` cycles, after a warm-up.

    A cycle is ``chats_per_cycle`` non-stream calls and one stream.
    """

    rounds: int
    blocks: int
    cycles_per_block: int
    chats_per_cycle: int
    warmup_cycles: int

    @property
    def streams(self) -> int:
        return self.blocks * self.cycles_per_block

    @property
    def chats(self) -> int:
        return self.streams * self.chats_per_cycle


FULL = Counts(rounds=3, blocks=50, cycles_per_block=5, chats_per_cycle=4, warmup_cycles=20)
QUICK = Counts(rounds=1, blocks=5, cycles_per_block=5, chats_per_cycle=4, warmup_cycles=5)


@dataclass(frozen=True)
class Run:
    """One worker started every round: a variant under one interpreter."""

    label: str
    variant: str
    python: Path


# -- worker side: runs under either venv's interpreter, imports only what its variant needs ------------------------


def is_model_call(attributes: Any) -> bool:
    """A model-call span: GenAI conventions, or OpenInference's (which has no ``gen_ai.operation.name``)."""
    return bool(attributes) and ("gen_ai.operation.name" in attributes
                                 or attributes.get("openinference.span.kind") == "LLM")


def token_usage(attributes: Any) -> list[Any]:
    """Input and output tokens a model-call span reports (GenAI or OpenInference attributes)."""
    return [attributes.get("gen_ai.usage.input_tokens", attributes.get("llm.token_count.prompt")),
            attributes.get("gen_ai.usage.output_tokens", attributes.get("llm.token_count.completion"))]


class CountingExporter(SpanExporter):
    """Drops spans, counting the model-call ones (:func:`is_model_call`) and keeping the last of those."""

    def __init__(self) -> None:
        self.model_calls = 0
        self.last_model_call: ReadableSpan | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            if is_model_call(span.attributes):
                self.model_calls += 1
                self.last_model_call = span
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release."""


class TurnDriver:
    """Keeps a conversation turn open around the calls: sends it and opens the next every ``every`` calls."""

    def __init__(self, tracker: Any, every: int) -> None:
        self.tracker = tracker
        self.every = every
        self.conversation_id = f"llm-overhead-{os.getpid()}"
        self.turns = 0
        self.turn_ns: list[int] = []
        """Time of each send-and-reopen (outside the calls' timings)."""
        self.delivered = True

    def before_call(self, index: int) -> None:
        """Before the ``index``-th call: rotate the turn when it is due."""
        if index % self.every:
            return
        start = time.perf_counter_ns()
        if self.turns:
            self.tracker.send_tracked_data()
        self.tracker.get_or_create_conversation(self.conversation_id)
        if self.turns:
            self.turn_ns.append(time.perf_counter_ns() - start)
        self.turns += 1

    def settle(self) -> None:
        """Wait until the turns sent so far are delivered, so none of it runs during another worker's block."""
        self.delivered &= bool(self.tracker.flush(60)["complete"])

    def finish(self) -> dict[str, Any]:
        """Send the last turn and deliver it; what happened, for the report."""
        self.tracker.send_tracked_data()
        self.settle()
        stats = self.tracker.delivery_stats()
        self.tracker.shutdown()
        return {"turns": self.turns, "turn_ns": self.turn_ns, "delivered": self.delivered, "stats": stats}


def instrument(variant: str, api_url: str, exporter: CountingExporter) -> tuple[str | None, TurnDriver | None]:
    """Set ``variant`` up; returns the file its instrumentor came from and, in a turn, the turn driver."""
    if variant == BARE:
        return None, None
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    driver = None
    if variant in PEER_BY_LABEL:
        instrumentor: Any = importlib.import_module(PEER_BY_LABEL[variant].module).OpenAIInstrumentor()
    else:
        from agentsight.instrumentation.openai import OpenAIInstrumentor as Ours

        instrumentor = Ours()
        if variant == OURS_IN_TURN:
            from agentsight import ConversationTracker

            driver = TurnDriver(ConversationTracker(api_key=API_KEY, endpoint=api_url), CALLS_PER_TURN)
    instrumentor.instrument(tracer_provider=provider)
    return sys.modules[type(instrumentor).__module__].__file__, driver


def chat_call(client: openai.OpenAI) -> int:
    """One non-stream chat completion; returns 1 (one response)."""
    client.chat.completions.create(model=MODEL, messages=MESSAGES)
    return 1


def stream_call(client: openai.OpenAI) -> int:
    """One streamed chat completion, consumed to the end; returns how many chunks it had."""
    stream = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    return sum(1 for _ in stream)


def versions() -> dict[str, str | None]:
    """Installed versions of the packages the report names (``None`` when absent)."""
    found: dict[str, str | None] = {}
    for name in REPORTED_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


class Worker:
    """One variant in its own interpreter: set up and warmed up, then timing a block of calls when asked."""

    def __init__(self, variant: str, params: dict[str, Any]) -> None:
        import openai

        self.variant = variant
        self.counts = Counts(**params["counts"])
        self.exporter = CountingExporter()
        self.source, self.driver = instrument(variant, params["api_url"], self.exporter)
        self.client = openai.OpenAI(
            base_url=params["fake_url"], api_key="bench", max_retries=0, timeout=CLIENT_TIMEOUT
        )
        self.schedule: list[tuple[str, Callable[[openai.OpenAI], int]]] = [
            *[("chat_ns", chat_call)] * self.counts.chats_per_cycle,
            ("stream_ns", stream_call),
        ]
        self.calls = 0
        self.chunk_counts: set[int] = set()
        self.profile_pattern: str | None = params.get("profile_pattern")
        self.profile = cProfile.Profile() if self.profile_pattern else None
        self.cycles(self.counts.warmup_cycles)

    def cycles(self, count: int) -> dict[str, list[int]]:
        """Make ``count`` cycles of calls, each timed alone; their nanoseconds by kind."""
        timings: dict[str, list[int]] = {key: [] for key, _ in KINDS}
        for _ in range(count):
            for key, call in self.schedule:
                if self.driver is not None:
                    self.driver.before_call(self.calls)
                start = time.perf_counter_ns()
                seen = call(self.client)
                timings[key].append(time.perf_counter_ns() - start)
                if key == "stream_ns":
                    self.chunk_counts.add(seen)
                self.calls += 1
        return timings

    def block(self) -> dict[str, list[int]]:
        """One block of timed cycles (profiled when asked); then let background delivery finish."""
        if self.profile is not None:
            self.profile.enable()
        timings = self.cycles(self.counts.cycles_per_block)
        if self.profile is not None:
            self.profile.disable()
        if self.driver is not None:
            self.driver.settle()
        return timings

    def finish(self) -> dict[str, Any]:
        """Close down; what the parent checks and reports."""
        self.client.close()
        last = self.exporter.last_model_call
        attributes = dict(last.attributes or {}) if last is not None else {}
        result: dict[str, Any] = {
            "python": sys.executable,
            "instrumentor": self.source,
            "versions": versions(),
            "calls": self.calls,
            "stream_chunk_counts": sorted(self.chunk_counts),
            "model_call_spans": self.exporter.model_calls,
            "last_usage": token_usage(attributes),
            "content_attributes": [key for key, value in attributes.items()
                                   if isinstance(value, str) and any(text in value for text in CONTENT)],
            "turn": self.driver.finish() if self.driver is not None else None,
        }
        if self.profile is not None and self.profile_pattern:
            out = io.StringIO()
            pstats.Stats(self.profile, stream=out).sort_stats("tottime").print_stats(self.profile_pattern, 30)
            result["profile"] = out.getvalue()
        return result


def serve(variant: str, params: dict[str, Any]) -> None:
    """The worker's loop: ``ready`` once set up, then one JSON line per ``block`` or ``finish`` read on stdin."""
    channel, sys.stdout = sys.stdout, sys.stderr  # nothing a library prints can corrupt the replies

    def reply(message: object) -> None:
        channel.write(json.dumps(message) + "\n")
        channel.flush()

    worker = Worker(variant, params)
    reply({"ready": True})
    for line in sys.stdin:
        if line.strip() == "finish":
            reply(worker.finish())
            return
        reply(worker.block())


# -- parent side ---------------------------------------------------------------------------------------------------


def canonical(name: str) -> str:
    """A distribution name as pip compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_here() -> dict[str, str]:
    """This environment's distributions and versions."""
    return {canonical(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}


def project_pins() -> dict[str, str]:
    """The project's versions of :data:`CALL_PATH` and everything they require: the scratch venv must match them."""
    from packaging.requirements import Requirement

    pins: dict[str, str] = {}
    pending = list(CALL_PATH)
    while pending:
        name = canonical(pending.pop())
        if name in pins:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        pins[name] = dist.version
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return pins


PROBE = (
    "import importlib.metadata as m, importlib.util as u, json; spec = u.find_spec('agentsight'); "
    "print(json.dumps({'dists': {d.metadata['Name']: d.version for d in m.distributions()}, "
    "'agentsight': spec.origin if spec else None}))"
)


def venv_state(peer: Peer, pins: dict[str, str]) -> tuple[list[str], list[str]]:
    """What is wrong with ``peer``'s scratch venv (empty when ready), and its other differences from ours."""
    python = peer.venv / "bin" / "python"
    if not python.exists():
        return ["no venv"], []
    probe = subprocess.run([str(python), "-I", "-c", PROBE], capture_output=True, text=True, check=True)
    found = json.loads(probe.stdout)
    dists = {canonical(name): version for name, version in found["dists"].items()}
    problems = []
    if dists.get(peer.package) != peer.version:
        problems.append(f"{peer.package} {dists.get(peer.package)} (want {peer.version})")
    if not found["agentsight"] or not Path(found["agentsight"]).is_relative_to(ROOT / "src"):
        problems.append(f"agentsight from {found['agentsight']} (want {ROOT / 'src'}, editable)")
    differing = {
        name: f"{name} {dists[name]} (project venv: {version})"
        for name, version in installed_here().items()
        if name in dists and dists[name] != version and name not in NOT_COMPARED
    }
    problems.extend(text for name, text in differing.items() if name in pins)
    return problems, [text for name, text in differing.items() if name not in pins]


def peer_python(peer: Peer, pins: dict[str, str]) -> tuple[Path, list[str]]:
    """``peer``'s scratch venv's interpreter, the venv made ready first; and how its other shared packages differ."""
    python = peer.venv / "bin" / "python"
    problems, differences = venv_state(peer, pins)
    if not problems:
        return python, differences
    print(f"Preparing {peer.venv} ({'; '.join(problems)}) ...", file=sys.stderr, flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(peer.venv)], check=True)
        (peer.venv / ".gitignore").write_text("*\n", encoding="utf-8")  # a scratch venv: never committed
    with tempfile.TemporaryDirectory() as scratch:
        constraints = Path(scratch) / "constraints.txt"
        constraints.write_text("".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--pre"]
        packages = ["-e", str(ROOT), "openai", f"{peer.package}=={peer.version}"]
        subprocess.run([*pip, "-c", str(constraints), *packages], check=True)
    problems, differences = venv_state(peer, pins)
    if problems:
        raise RuntimeError(f"{peer.venv} is not as wanted after installing: {'; '.join(problems)}")
    return python, differences


class WorkerProcess:
    """A started worker: ask it for blocks, then finish it."""

    def __init__(self, run: Run, params: dict[str, Any]) -> None:
        self.run = run
        self.stderr: IO[str] = tempfile.TemporaryFile("w+")
        environment = {key: value for key, value in os.environ.items() if not key.startswith(("AGENTSIGHT_", "OTEL_"))}
        environment["AGENTSIGHT_AUTO_INSTRUMENT"] = "false"  # the worker instruments explicitly
        environment.update(CONTENT_OFF)
        self.process = subprocess.Popen(
            [str(run.python), "-I", str(Path(__file__).resolve()), "--worker", run.variant, json.dumps(params)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=environment,
        )

    def receive(self) -> dict[str, Any]:
        """The worker's next reply; raises with its stderr when it ended instead."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            raise RuntimeError(f"worker {self.run.label} exited ({self.process.returncode}):\n{self.errors()}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def ask(self, command: str) -> dict[str, Any]:
        """Send ``command`` (``block`` or ``finish``) and return the reply."""
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.receive()

    def finish(self) -> dict[str, Any]:
        """The worker's final report, once it has exited cleanly; what it wrote to stderr is shown."""
        result = self.ask("finish")
        if self.process.wait(timeout=60) != 0:
            raise RuntimeError(f"worker {self.run.label} failed ({self.process.returncode}):\n{self.errors()}")
        if self.errors().strip():
            print(f"  [{self.run.label} stderr] {self.errors().strip()}", file=sys.stderr, flush=True)
        return result

    def errors(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()

    def stop(self) -> None:
        """Kill the worker if it still runs (after an error elsewhere) and release its stderr file."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.stderr.close()


def check_worker(run: Run, result: dict[str, Any], expected_chunks: int) -> None:
    """Raise when a worker did not measure what it should: wrong interpreter or package, missing spans, content."""
    problems = []
    if Path(result["python"]).parent != run.python.parent:
        problems.append(f"ran under {result['python']}")
    if result["stream_chunk_counts"] != [expected_chunks]:
        problems.append(f"streams had {result['stream_chunk_counts']} chunks, not {expected_chunks}")
    instrumented = run.variant != BARE
    if result["model_call_spans"] != (result["calls"] if instrumented else 0):
        problems.append(f"{result['model_call_spans']} model-call spans for {result['calls']} calls")
    if instrumented and result["last_usage"] != list(USAGE):
        problems.append(f"last span's token usage {result['last_usage']}, not {list(USAGE)}")
    if result["content_attributes"]:
        problems.append(f"message content captured: {result['content_attributes']}")
    peer = PEER_BY_LABEL.get(run.variant)
    expected_source = peer.venv if peer is not None else ROOT / "src" / "agentsight"
    if instrumented and not Path(result["instrumentor"]).resolve().is_relative_to(expected_source.resolve()):
        problems.append(f"instrumentor from {result['instrumentor']}, not under {expected_source}")
    if run.variant == OURS_IN_TURN and not (result["turn"] and result["turn"]["delivered"]):
        problems.append(f"turns not all delivered: {result['turn']}")
    if problems:
        raise RuntimeError(f"worker {run.label}: " + "; ".join(problems))


def preflight(fake_url: str) -> int:
    """Check the fake server's stream (100 non-empty deltas, usage); returns the chunks a stream has."""
    import openai

    with openai.OpenAI(base_url=fake_url, api_key="bench", max_retries=0) as client:
        stream = client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
    deltas = [choice.delta.content for chunk in chunks for choice in chunk.choices if choice.delta.content]
    usage = chunks[-1].usage
    if len(deltas) != STREAM_CHUNKS or usage is None or (usage.prompt_tokens, usage.completion_tokens) != USAGE:
        raise RuntimeError(f"the fake server streamed {len(deltas)} non-empty deltas, usage {usage}")
    return len(chunks)


@dataclass
class Measured:
    """One run label's results over the rounds."""

    medians: dict[str, list[float]]
    """Per call kind, each round's median in ms."""
    finals: list[dict[str, Any]]
    """Each round's final worker report."""

    def figure(self, kind: str) -> float:
        """The median over rounds, in ms."""
        return statistics.median(self.medians[kind])


def measure_round(runs: list[Run], counts: Counts, params: dict[str, Any], api: Any
                  ) -> dict[str, tuple[dict[str, list[int]], dict[str, Any]]]:
    """Start every worker, take turns in rotating order block by block, finish them; per label, timings and report."""
    tokens_before = api.store.stats()["tokens"]["total_tokens"]
    workers = [WorkerProcess(run, params) for run in runs]
    try:
        for worker in workers:
            worker.receive()  # ready: set up and warmed up
        timings: dict[str, dict[str, list[int]]] = {run.label: {key: [] for key, _ in KINDS} for run in runs}
        for block in range(counts.blocks):
            shift = block % len(workers)
            for worker in workers[shift:] + workers[:shift]:
                for key, values in worker.ask("block").items():
                    timings[worker.run.label][key].extend(values)
        finals = {worker.run.label: worker.finish() for worker in workers}
    finally:
        for worker in workers:
            worker.stop()
    for run in runs:
        check_worker(run, finals[run.label], params["expected_chunks"])
    in_turn = [finals[run.label] for run in runs if run.variant == OURS_IN_TURN]
    tokens = api.store.stats()["tokens"]["total_tokens"] - tokens_before
    expected = sum(final["calls"] for final in in_turn) * sum(USAGE)  # every call in a turn counted once
    if tokens != expected:
        raise RuntimeError(f"the API holds {tokens} tokens of the calls in turns, expected {expected}")
    return {label: (timings[label], finals[label]) for label in timings}


def measure(runs: list[Run], counts: Counts, fake: Any, api: Any, extra: dict[str, Any] | None = None
            ) -> dict[str, Measured]:
    """``counts.rounds`` rounds of every worker; per label, its medians and final reports."""
    expected_chunks = preflight(fake.openai_base_url)
    params = {"fake_url": fake.openai_base_url, "api_url": api.url, "counts": asdict(counts),
              "expected_chunks": expected_chunks, **(extra or {})}
    measured = {run.label: Measured({key: [] for key, _ in KINDS}, []) for run in runs}
    for number in range(counts.rounds):
        print(f"Round {number + 1}/{counts.rounds}: {', '.join(run.label for run in runs)}", file=sys.stderr,
              flush=True)
        for label, (timings, final) in measure_round(runs, counts, params, api).items():
            for key, values in timings.items():
                measured[label].medians[key].append(statistics.median(values) / 1e6)
            measured[label].finals.append(final)
        fake.reset()  # forget the recorded requests; then the reply settings again
        fake.stream_chunks, fake.reply_text = STREAM_CHUNKS, REPLY_TEXT
    return measured


def source_state() -> str:
    """The commit measured, and whether ``src/`` had uncommitted changes (the editable install runs them)."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    changed = subprocess.run([*git, "status", "--porcelain", "--", "src"], capture_output=True, text=True).stdout
    return f"{head or 'unknown'}{' with uncommitted changes in src/' if changed.strip() else ''}"


def signed(value: float) -> str:
    return f"{value:+.3f} ms"


def report(runs: list[Run], measured: dict[str, Measured], counts: Counts, differences: list[str], quick: bool,
           elapsed: float, load: tuple[float, float]) -> str:
    """The results as markdown."""
    bare = measured[BARE]

    def overhead(label: str, kind: str) -> float:
        return measured[label].figure(kind) - bare.figure(kind)

    table = [
        "| Variant | Interpreter | Non-stream call, median | Overhead per call | 100-chunk stream, median "
        "| Overhead per stream |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        venv = "project venv" if run.python == Path(sys.executable) else f"`bench/{run.python.parent.parent.name}`"
        cells = [f"{measured[run.label].figure(kind):.3f} ms" for kind, _ in KINDS]
        extra = ["—" if run.label == BARE else signed(overhead(run.label, kind)) for kind, _ in KINDS]
        table.append(f"| {run.label} | {venv} | {cells[0]} | {extra[0]} | {cells[1]} | {extra[1]} |")
    goals = [
        "| Goal | Ours | Lowest peer | Lowest peer − ours | A/A noise (bare twice) | Result |",
        "|---|---|---|---|---|---|",
    ]
    for label, where in ((OURS, "outside a turn"), (OURS_IN_TURN, "inside a turn")):
        for kind, what in KINDS:
            ours = overhead(label, kind)
            lowest = min((peer.label for peer in PEERS), key=lambda peer_label: overhead(peer_label, kind))
            passed = "PASS" if ours <= overhead(lowest, kind) else "**FAIL**"
            goals.append(f"| {what}, {where}: ours' overhead ≤ the lowest peer's | {signed(ours)} | {lowest} "
                         f"{signed(overhead(lowest, kind))} | {overhead(lowest, kind) - ours:+.3f} ms "
                         f"| {signed(overhead(AA, kind))} | {passed} |")
    per_round = [
        f"{run.label}: " + ", ".join(
            f"{chat - bare_chat:+.3f} / {stream - bare_stream:+.3f}"
            for chat, stream, bare_chat, bare_stream in zip(
                measured[run.label].medians["chat_ns"], measured[run.label].medians["stream_ns"],
                bare.medians["chat_ns"], bare.medians["stream_ns"], strict=True,
            )
        )
        for run in runs if run.label != BARE
    ]
    in_turn = measured[OURS_IN_TURN].finals
    turn_ns = [ns for final in in_turn for ns in final["turn"]["turn_ns"]]
    project = measured[BARE].finals[0]["versions"]
    peers = "; ".join(
        f"`bench/{peer.venv.name}`: {peer.package} {measured[peer.label].finals[0]['versions'][peer.package]}"
        for peer in PEERS)
    calls = sum(final["calls"] for final in in_turn)
    turns = sum(final["turn"]["turns"] for final in in_turn)
    command = shlex.join([sys.executable, *sys.argv])
    kind_note = " (quick smoke run: reduced counts, 1 round — not for comparison)" if quick else ""
    return "\n".join([
        "# LLM-call overhead of instrumentation",
        "",
        f"- Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC{kind_note}; total runtime {elapsed:.0f} s; "
        f"load average {load[0]:.2f} at the start, {load[1]:.2f} at the end",
        f"- Machine: nproc {len(os.sched_getaffinity(0))}, {platform.machine()}, "
        f"Python {platform.python_version()} ({platform.python_implementation()})",
        f"- Project venv: openai {project['openai']}, opentelemetry-sdk {project['opentelemetry-sdk']}, "
        f"agentsight-otel {project['agentsight-otel']} (commit {source_state()}). "
        f"Scratch venvs, one per peer ({peers}), each with the project venv's versions of `openai`, "
        "`opentelemetry-sdk`, `wrapt` and all they require; other shared packages that differ: "
        + (", ".join(differences) or "none"),
        f"- Command: `{command}`",
        f"- Per worker and round: {counts.warmup_cycles * (counts.chats_per_cycle + 1)} warm-up calls, then "
        f"{counts.chats:,} non-stream and {counts.streams:,} stream calls, each timed alone, one keep-alive "
        f"`openai.OpenAI` client. The workers of a round run in lockstep, {counts.blocks} blocks of "
        f"{counts.cycles_per_block * (counts.chats_per_cycle + 1)} calls ({counts.chats_per_cycle} non-stream, "
        f"1 stream, repeated) each, the order rotating every block. {counts.rounds} round(s), fresh processes each; "
        "figure = median over rounds of each round's median; overhead = figure − bare's.",
        "- Set-up: fake OpenAI-compatible server (`agentsight.dev.local_llm`, 100-word reply, streamed as 100 deltas + "
        "role, finish and usage chunks; usage 11/7, `stream_options.include_usage`) and a local AgentSight API, both "
        "in the benchmark's process; each variant in a subprocess (`--worker`, `python -I`). Instrumented variants: "
        "SDK `TracerProvider` (global too) + `SimpleSpanProcessor` with an exporter that only counts spans; no "
        "meter/logger provider (the peers' metrics go to the no-op global one); content capture off "
        "(the default of ours and the official one; `OTEL_*` variables cleared; OpenLLMetry with "
        "`TRACELOOP_TRACE_CONTENT=false`, OpenInference with `OPENINFERENCE_HIDE_INPUTS` / `_OUTPUTS`). Every run "
        "is checked: one model-call span per call (OpenInference's: `openinference.span.kind=LLM`) with usage "
        "11/7, no attribute holding the request's or reply's text, every stream 103 chunks.",
        f"- ours_in_turn: a `ConversationTracker` turn open around every call, sent and a new one opened every "
        f"{CALLS_PER_TURN} calls (outside the timed calls: median {statistics.median(turn_ns) / 1e3:.0f} µs per "
        "send + reopen); the calls' spans go to the tracker's pipeline: attributed to the turn, forwarded to the "
        "app's provider, delivered to the local API in the background (waited for after each block, untimed). "
        f"Delivered on the default (ingest) wire: {turns:,} turns holding all {calls:,} calls, each counted once "
        f"(the API's token total grew by {sum(USAGE)} per call).",
        "",
        "**Goal:** ours' overhead at or below the lowest of the peers', for a non-stream call and a 100-chunk "
        "stream, outside and inside a turn (the official package was seen elsewhere at about "
        f"{SEEN_ELSEWHERE['chat_ns']} per call and {SEEN_ELSEWHERE['stream_ns']} per 100-chunk stream).",
        "",
        *table,
        "",
        *goals,
        "",
        "- Overhead per round (ms, non-stream / stream), against the same round's bare: " + "; ".join(per_round),
        "",
    ])


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced counts, one round: a smoke run")
    parser.add_argument("--profile", choices=VARIANTS, help="print a cProfile of VARIANT's timed calls instead")
    parser.add_argument("--profile-filter", default="agentsight|opentelemetry|wrapt",
                        help="regex of the functions the profile lists (default: instrumentation code)")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("params", nargs="?", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> int:
    arguments = parse_arguments()
    if arguments.worker:
        serve(arguments.worker, json.loads(arguments.params))
        return 0
    from agentsight.dev import DevServer

    started, load_at_start = time.perf_counter(), os.getloadavg()[0]
    counts = QUICK if arguments.quick else FULL
    project_python, pins = Path(sys.executable), project_pins()
    scratch = {peer.label: peer_python(peer, pins) for peer in PEERS}
    differences = sorted({text for _, found in scratch.values() for text in found})
    runs = [
        Run(BARE, BARE, project_python),
        Run(OURS, OURS, project_python),
        *(Run(peer.label, peer.label, scratch[peer.label][0]) for peer in PEERS),
        Run(OURS_IN_TURN, OURS_IN_TURN, project_python),
        Run(AA, BARE, scratch[PEERS[0].label][0]),
    ]
    fake = FakeLLMServer()
    fake.stream_chunks, fake.reply_text = STREAM_CHUNKS, REPLY_TEXT
    with fake, DevServer(record=False) as api:
        if arguments.profile:
            run = next(run for run in runs if run.label == arguments.profile)
            once = replace(counts, rounds=1)
            profiled = measure([run], once, fake, api, {"profile_pattern": arguments.profile_filter})
            for final in profiled[run.label].finals:
                print(f"{run.label}: profile of its timed calls ({counts.chats:,} non-stream, {counts.streams:,} "
                      f"streams), functions matching {arguments.profile_filter!r}\n{final['profile']}")
            return 0
        measured = measure(runs, counts, fake, api)
    load = (load_at_start, os.getloadavg()[0])
    text = report(runs, measured, counts, differences, arguments.quick, time.perf_counter() - started, load)
    RESULTS.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
