"""``make demo``: a shop's support chat over a simulated week, tracked by the SDK into ``agentsight dev``.

1. Starts ``agentsight dev`` in-process (:class:`agentsight.dev.server.DevServer`, port 8321 unless ``--port``;
   ``--port 0`` takes any free port) on a database in a temporary directory (removed on exit, also on Ctrl-C
   and SIGTERM; ``--db`` keeps one where you say), and a local stand-in model
   (:class:`agentsight.dev.local_llm.FakeLLMServer`) answering with replies that fit the question.
2. Replays the week of :mod:`demo_week` through the real SDK: a :class:`~agentsight.ConversationTracker` and the
   instrumented ``openai`` client, delivering on the default wire (``POST /api/ingest/``). Each visit loads a
   page (``initialize_conversation`` with ``page_url`` metadata, device, language, customer id and a public IP
   of its country); most then chat: questions, model calls (some with a tool call first), answers, buttons,
   escalations (``open_ticket``, ``fallback_to_human``). The SDK has no way to back-date what it tracks, so
   the demo shifts the clock OpenTelemetry stamps spans and events with (:class:`SimulatedClock`): the
   timestamps spread over the past seven days, with realistic response times; your app never does this.
   The team's three test chats go to ``development``: the next version of the app, whose integration is
   unfinished (no customer id, no page load tracked, no segment, a localhost address).
3. Sends what visitors say afterwards with :class:`agentsight.api.AgentSight`, as your UI would
   (:func:`demo_week.plan_feedback`): conversation feedback of mixed sentiments, some with a comment, a vote on
   one answer, and a ticket with a comment from a negative rating.
4. Prints a summary: production's metrics from ``GET /api/stats/`` (conversations, messages, tokens, cost,
   feedback) and its integration check (``GET /api/stats/integration/``), then development's integration check:
   each metric that app leaves empty and the field or call that would feed it. With ``--once`` it then stops
   everything and exits; otherwise it prints the dashboard URL and serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextvars
import os
import random
import signal
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import openai
import opentelemetry.sdk.trace as otel_sdk_trace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agentsight import ConversationTracker  # noqa: E402
from agentsight.api import AgentSight  # noqa: E402
from agentsight.dev import DevServer  # noqa: E402
from agentsight.dev.local_llm import FakeLLMServer  # noqa: E402
from demo_week import Feedback, Topic, Visit, plan_feedback, plan_week, reply_for  # noqa: E402

LOCAL_API_KEY = "ags_" + "0" * 32 + "_" + "0" * 6
MODEL = "gpt-4o-mini"


class SimulatedClock:
    """OpenTelemetry's span and event clock, shifted into the past for the calling context only.

    :meth:`at` makes "now" a given moment for the block, :meth:`advance` moves it on; other threads (the SDK's
    delivery) and code outside the block keep real time.
    """

    def __init__(self) -> None:
        self._shift_ns: contextvars.ContextVar[int] = contextvars.ContextVar("demo_clock_shift_ns", default=0)
        self._real: Callable[[], int] = time.time_ns

    def install(self) -> None:
        """Make the OpenTelemetry SDK read this clock (it stamps spans and events with its module's ``time_ns``)."""
        self._real = otel_sdk_trace.time_ns
        shift = self._shift_ns
        real = self._real
        otel_sdk_trace.time_ns = lambda: real() - shift.get()  # type: ignore[attr-defined]

    def uninstall(self) -> None:
        """Give the SDK its own clock back."""
        otel_sdk_trace.time_ns = self._real  # type: ignore[attr-defined]

    def now(self) -> datetime:
        """The simulated time of the calling context."""
        return datetime.fromtimestamp((self._real() - self._shift_ns.get()) / 1e9, timezone.utc)

    @contextmanager
    def at(self, moment: datetime) -> Iterator[None]:
        """Within the block, the clock starts at ``moment``."""
        token = self._shift_ns.set(self._real() - int(moment.timestamp() * 1e9))
        try:
            yield
        finally:
            self._shift_ns.reset(token)

    def advance(self, seconds: float) -> None:
        """Move the calling context's clock ``seconds`` on."""
        self._shift_ns.set(self._shift_ns.get() - int(seconds * 1e9))


class ShopAssistant:
    """The app being tracked: a support agent answering through an OpenAI model, with two tools."""

    def __init__(self, tracker: ConversationTracker, llm: openai.OpenAI, clock: SimulatedClock, seed: int) -> None:
        self.tracker, self.llm, self.clock = tracker, llm, clock
        self.rng = random.Random(seed)

    def visit(self, visit: Visit) -> None:
        """One visitor: the page load (when the app tracks it), then their chat, one turn per topic."""
        with self.clock.at(visit.started):
            if visit.page_load:
                self.tracker.initialize_conversation(**visit.fields(), metadata=visit.metadata())
            self.clock.advance(self.rng.uniform(10, 90))  # reading the page before opening the chat
            for topic in visit.topics:
                self.turn(visit, topic)
                self.clock.advance(self.rng.uniform(20, 180))

    def turn(self, visit: Visit, topic: Topic) -> None:
        """One question, the model's work and answer, and what the visitor clicks."""
        tracker = self.tracker
        tracker.get_or_create_conversation(**visit.fields(), metadata=visit.metadata())
        tracker.track_question(topic.question)
        messages: list[Any] = [{"role": "system", "content": "You are the shop's support assistant."},
                               {"role": "user", "content": topic.question}]
        self.clock.advance(self.rng.uniform(0.4, 1.5))
        if topic.tool is not None:
            messages += self.call_tool(visit, topic.tool, messages)
        reply = self.llm.chat.completions.create(model=MODEL, messages=messages, user=visit.conversation_id)
        self.clock.advance(self.rng.uniform(0.8, 3.5))
        tracker.track_answer(reply.choices[0].message.content or "")
        if topic.escalation is not None:
            tracker.track_action(topic.escalation, response="handed over to the support team",
                                 metadata={"reason": topic.question})
        if topic.button is not None:
            self.clock.advance(self.rng.uniform(3, 25))
            event, label, value = topic.button
            tracker.track_button(button_event=event, label=label, value=value)
        tracker.send_tracked_data()

    def call_tool(self, visit: Visit, tool: str, messages: list[Any]) -> list[Any]:
        """The model asks for ``tool``; run it (tracked as an action) and return the messages that carry it back."""
        spec = {"type": "function", "function": {"name": tool, "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
        asked = self.llm.chat.completions.create(model=MODEL, messages=messages, tools=[spec],
                                                 user=visit.conversation_id)
        call = asked.choices[0].message.tool_calls[0]  # type: ignore[index]
        started = self.clock.now()
        duration = self.rng.uniform(0.05, 0.6)
        self.clock.advance(duration)
        result = "2-3 working days" if tool == "delivery_estimate" else "12 Rue de Rivoli, 10:00-19:00"
        self.tracker.track_action(tool, started_at=started, ended_at=started + timedelta(seconds=duration),
                                  duration_ms=round(duration * 1000), tools_used={"arguments": call.function.arguments},
                                  response=result)
        return [asked.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": result}]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description="A simulated week of a support chat, tracked into agentsight dev")
    parser.add_argument("--port", type=int, default=8321, help="port of agentsight dev (0: any free port)")
    parser.add_argument("--db", default=None, help="keep agentsight dev's SQLite file here (default: a temporary "
                                                   "one, removed on exit)")
    parser.add_argument("--visitors", type=int, default=60, help="visitors over the week (default: %(default)s)")
    parser.add_argument("--once", action="store_true", help="print the summary and exit instead of serving")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the tracked data")
    return parser.parse_args(argv)


def get(server: DevServer, path: str) -> dict[str, Any] | None:
    """``GET path`` on agentsight dev with the local key; ``None`` when it does not serve that path."""
    answer = httpx.get(server.url + path, headers={"Authorization": f"Api-Key {LOCAL_API_KEY}"}, timeout=30.0)
    return answer.json() if answer.status_code == 200 else None


def send_feedback(server: DevServer, plan: list[Feedback]) -> dict[str, int]:
    """What visitors say after their chat, sent with ``agentsight.api`` as your UI would: conversation feedback,
    votes on answers and tickets from it. Returns how many of each were sent."""
    sent = {"conversations": 0, "messages": 0, "tickets": 0}
    with AgentSight(LOCAL_API_KEY, endpoint=server.url) as ags:
        for feedback in plan:
            created = ags.feedbacks.create_for_conversation(feedback.conversation_id, feedback.sentiment,
                                                            comment=feedback.comment)
            sent["conversations"] += 1
            if feedback.answer_vote:
                messages = ags.conversations.get(feedback.conversation_id)["messages"]
                answer = next(message for message in messages if message["sender"] == "agent")
                ags.feedbacks.create_for_message(answer["id"], feedback.sentiment, topic="helpful")
                sent["messages"] += 1
            if feedback.ticket:
                ticket = ags.tickets.create(f"Rated {feedback.sentiment}: {feedback.conversation_id}", priority="high",
                                            tags=["feedback"], conversation=feedback.conversation_id,
                                            feedback_id=created["id"])
                ags.tickets.add_comment(ticket["id"], f"Customer said: {feedback.comment or '(no comment)'} "
                                                      "Calling them back today.")
                sent["tickets"] += 1
    return sent


def print_summary(server: DevServer, visits: list[Visit], sent: dict[str, int]) -> None:
    """Production's metrics (``GET /api/stats/``) and integration check, then development's integration check."""
    stats = get(server, "/api/stats/?environment=production") or {}
    totals, interaction, cost = stats.get("totals", {}), stats.get("interaction", {}), stats.get("token_cost", {})
    engaged = sum(1 for visit in visits if visit.topics and visit.environment == "production")
    testing = sum(visit.environment == "development" for visit in visits)
    print(f"Simulated {len(visits)} visits over 7 days ({engaged} chats in production, {testing} in development)")
    print("Production (the live shop; what AgentSight's analytics count):")
    print(f"  Conversations: {totals.get('conversations', '?')}, messages: {totals.get('messages', '?')}, "
          f"individual users: {totals.get('individual_users', '?')}")
    if interaction.get("rate") is not None:
        print(f"  Interaction rate: {interaction['rate']:.0f}% ({interaction.get('engaged')} of "
              f"{interaction.get('initialized')} visits engaged)")
    models = cost.get("models", [])
    tokens = sum(model.get("input_tokens", 0) + model.get("output_tokens", 0) for model in models)
    print(f"  Tokens: {tokens} in {sum(model.get('calls', 0) for model in models)} model calls; cost: "
          f"${cost.get('total_cost_usd', 0):.4f}"
          + (f" (unpriced: {', '.join(cost['unpriced_models'])})" if cost.get("unpriced_models") else ""))
    feedback = stats.get("feedback", {})
    print(f"  Feedback: {feedback.get('total', '?')} ({feedback.get('positive', '?')} positive, "
          f"{feedback.get('neutral', '?')} neutral, {feedback.get('negative', '?')} negative): "
          f"{sent['conversations']} chats rated, {sent['messages']} answer voted; {sent['tickets']} ticket opened")
    print_check(server, "production")
    print(f"Development (the team testing the next version of the app: {testing} chats):")
    print_check(server, "development")
    sys.stdout.flush()


def print_check(server: DevServer, environment: str) -> None:
    """The integration check of ``environment``: how many metrics receive data; each empty one with its hint."""
    check = get(server, f"/api/stats/integration/?environment={environment}")
    if check is None:
        print("  Integration check: not served by this agentsight dev")
        return
    items = [item for item in check.get("metrics", []) if isinstance(item, dict)]
    empty = [item for item in items if not item.get("receiving", True)]
    print(f"  Integration check: {len(items) - len(empty)} of {len(items)} metrics receive data"
          + ("; empty, and what would feed each:" if empty else ""))
    for item in empty:
        print(textwrap.fill(f"{item.get('metric')}: {item.get('hint')}", 116, initial_indent="  - ",
                            subsequent_indent="    ", break_long_words=False, break_on_hyphens=False))


def stop_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM stops the demo like Ctrl-C: through ``finally``, so the temporary database is removed."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit code (1 when the tracked data did not all arrive, 2 for a busy port)."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    with tempfile.TemporaryDirectory(prefix="agentsight-demo-") as scratch:
        db = Path(args.db) if args.db else Path(scratch) / "agentsight-dev.db"
        try:
            return run(args, db, scratch)
        except KeyboardInterrupt:
            print("Stopped", flush=True)
            return 0


def run(args: argparse.Namespace, db: Path, scratch: str) -> int:
    """Start the servers, replay the week, report; stops what it started on the way out."""
    server = DevServer("127.0.0.1", args.port, db)
    try:
        server.start()
    except OSError as error:
        print(f"Cannot listen on 127.0.0.1:{args.port} ({error}); choose another --port (0: any free port)",
              file=sys.stderr)
        return 2
    model = FakeLLMServer().start()
    model.reply_for = reply_for
    os.environ.update({"AGENTSIGHT_API_ENDPOINT": server.url, "AGENTSIGHT_API_KEY": LOCAL_API_KEY})
    clock = SimulatedClock()
    tracker = ConversationTracker()
    try:
        print(f"agentsight dev on {server.url} (database {db}{', temporary' if args.db is None else ''}); "
              f"stand-in model on {model.url}; temporary directory {scratch}", flush=True)
        visits = plan_week(datetime.now(timezone.utc), args.visitors)
        assistant = ShopAssistant(tracker, openai.OpenAI(base_url=model.openai_base_url, api_key="local"), clock, 13)
        clock.install()
        try:
            for visit in visits:
                assistant.visit(visit)
        finally:
            clock.uninstall()
        flushed = tracker.flush(timeout=args.timeout)
        sent = send_feedback(server, plan_feedback(visits))
        print_summary(server, visits, sent)
        if not flushed["delivered"]:
            print(f"Not everything was delivered within {args.timeout:.0f}s: {flushed['summary']}",
                  file=sys.stderr, flush=True)
            return 1
        if args.once:
            return 0
        print(f"Dashboard: {server.url}/?key={LOCAL_API_KEY}", flush=True)
        print(f"Point your app at it: AGENTSIGHT_API_ENDPOINT={server.url} AGENTSIGHT_API_KEY={LOCAL_API_KEY}; "
              "serving until Ctrl-C", flush=True)
        while True:
            time.sleep(1.0)
    finally:
        tracker.shutdown()
        model.stop()
        server.stop()
        if server.store is not None:
            server.store.close()


if __name__ == "__main__":
    sys.exit(main())
