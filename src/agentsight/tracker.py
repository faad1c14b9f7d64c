"""``ConversationTracker``: the upstream AgentSight SDK's API, recording OTel spans and span events.

Tracking calls validate their input (raising the upstream exceptions), add an event to the
current turn's span and return: no I/O. ``send_tracked_data()`` ends the turn's span; the span
pipeline (:mod:`agentsight.export.pipeline`) delivers it in the background.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import Status, StatusCode

from agentsight.config import DeliverySettings, Settings, configure_logging
from agentsight.exceptions import (
    InvalidAnswerDataException,
    InvalidConversationDataException,
    InvalidQuestionDataException,
    MissingConversationIdException,
    NoDataToSendException,
)
from agentsight.export import lifecycle
from agentsight.export.delivery import FlushResult
from agentsight.export.exporter import AgentSightSpanExporter
from agentsight.export.pipeline import (
    ConversationSpanRouter,
    configured_exporters,
    conversation_tracer,
    count_app_model_calls,
)
from agentsight.export.processor import AgentSightSpanProcessor
from agentsight.export.rest import outline, translate
from agentsight.inputs import attachment_files, attachment_sender, attachments_attributes, metadata_json
from agentsight.instrumentation import instrument
from agentsight.instrumentation.threads import follow_turns_into_threads
from agentsight.spans import jsonsafe
from agentsight.spans import semconv as sc
from agentsight.spans import turn as turns
from agentsight.spans.turn import ConversationTurn

logger = logging.getLogger("agentsight")

_KIND_TO_SUMMARY = {
    "question": "questions",
    "answer": "answers",
    "attachments": "attachments",
    "action": "actions",
    "button": "buttons",
}


class ConversationTracker:
    """Tracks conversations for AgentSight; a drop-in for the upstream ``agentsight`` tracker.

    Configuration comes from the arguments, then ``AGENTSIGHT_API_KEY``, ``AGENTSIGHT_API_ENDPOINT``,
    ``AGENTSIGHT_ENVIRONMENT``, ``AGENTSIGHT_LOG_LEVEL``, ``AGENTSIGHT_CONVERSATION_ID``,
    ``AGENTSIGHT_PROTOCOL`` (``ingest``, the default, or ``rest``: see :class:`AgentSightSpanExporter`),
    ``AGENTSIGHT_DIRECT_EXPORT``, ``AGENTSIGHT_FORWARD_SPANS`` and ``AGENTSIGHT_AUTO_INSTRUMENT`` (on
    by default: installed LLM clients are instrumented, see :func:`agentsight.instrument`). A missing key raises
    ``NoApiKeyException``, a malformed one ``InvalidApiKeyException`` (unless direct export is off:
    then the app's OTLP pipeline delivers).
    """

    def __init__(
        self,
        api_key: str | None = None,
        conversation_id: str | None = None,
        endpoint: str | None = None,
        log_level: str | None = None,
        environment: Literal["production", "development"] | None = None,
        *,
        direct_export: bool | None = None,
        forward_spans: bool | None = None,
        delivery: DeliverySettings | None = None,
        protocol: Literal["ingest", "rest"] | None = None,
        verify_key: bool | None = None,
        auto_instrument: bool | None = None,
        span_processor: SpanProcessor | None = None,
    ) -> None:
        self._settings = Settings.resolve(
            verify_key=verify_key,
            auto_instrument=auto_instrument,
            protocol=protocol,
            api_key=api_key,
            endpoint=endpoint,
            environment=environment,
            conversation_id=conversation_id,
            log_level=log_level,
            direct_export=direct_export,
            forward_spans=forward_spans,
            delivery=delivery,
        )
        configure_logging(self._settings.log_level)
        direct = None
        if self._settings.direct_export and span_processor is None:
            self._settings.check_api_key()
            direct = AgentSightSpanProcessor(AgentSightSpanExporter(settings=self._settings))
        self._router = ConversationSpanRouter(direct, forward=self._settings.forward_spans,
                                              elsewhere=span_processor is not None)
        self._provider, self._tracer = conversation_tracer(self._router)
        self._own_processor = span_processor
        if span_processor is not None:
            self._provider.add_span_processor(span_processor)
        # Open turns are held by the contexts that opened them; these registries hold them weakly. A turn
        # whose contexts are gone without sending it (a handler that raised) is queued here when it is
        # collected and sent at the next safe point, so abandoned turns neither leak nor vanish.
        self._registry_lock = threading.Lock()
        self._open: weakref.WeakSet[ConversationTurn] = weakref.WeakSet()
        self._latest_open: weakref.WeakValueDictionary[str, ConversationTurn] = weakref.WeakValueDictionary()
        self._abandoned: queue.SimpleQueue[tuple[trace.Span, int]] = queue.SimpleQueue()
        if self._settings.auto_instrument:
            _instrument_once()
        # Calls made in thread pools, run_in_executor and threads started inside a turn count in it.
        follow_turns_into_threads()
        self._router.lend_configuration()
        # One drain for the process (at exit, in multiprocessing children, when uvicorn stops) sends the open turns
        # of every live tracker and waits for all pipelines within one bound; a dropped tracker leaves nothing.
        lifecycle.track(self)

    def __repr__(self) -> str:
        settings = self._settings
        return f"ConversationTracker(endpoint={settings.endpoint!r}, direct_export={settings.direct_export})"

    @property
    def exporter(self) -> AgentSightSpanExporter | None:
        """The exporter delivering this tracker's turns itself (``None`` when direct export is off)."""
        return self._router.direct.exporter if self._router.direct is not None else None

    @property
    def settings(self) -> Settings:
        """The resolved configuration (the API key is not in its ``repr``)."""
        return self._settings

    # Conversations -----------------------------------------------------------------------------

    def initialize_conversation(
        self,
        conversation_id: str,
        customer_id: str | None = None,
        customer_ip_address: str | None = None,
        device: str | None = None,
        source: str | None = None,
        language: str | None = None,
        name: str | None = None,
        environment: Literal["production", "development"] = "production",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Record a potential interaction (``is_used: false``): a span that ends at once and is sent."""
        attributes = self._conversation_attributes(
            conversation_id, customer_id, customer_ip_address, device, source, language, name, environment, metadata
        )
        attributes[sc.IS_USED] = False
        self.record_conversation(attributes)

    def record_conversation(self, attributes: dict[str, Any]) -> None:
        """Record a conversation span with these (checked) attributes that ends at once: a visit, an update."""
        self._tracer.start_span(sc.CONVERSATION_SPAN, attributes=attributes, kind=trace.SpanKind.INTERNAL).end()

    def start_turn(self, attributes: dict[str, Any]) -> ConversationTurn:
        """Open a turn with these (checked) attributes without making it current: the caller attaches it.

        What 0.1.x ``agentsight.turn()`` opens; :meth:`end_turns` sends it. Unsent when its contexts are
        gone, it is sent all the same, as every turn is.
        """
        return self._new_turn(attributes)

    def end_turns(self, ending: list[ConversationTurn]) -> None:
        """End (and so send) these turns."""
        self._end(ending)

    def get_or_create_conversation(
        self,
        conversation_id: str,
        customer_id: str | None = None,
        customer_ip_address: str | None = None,
        device: str | None = None,
        source: str | None = None,
        language: str | None = None,
        name: str | None = None,
        environment: Literal["production", "development"] = "production",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Open a turn of ``conversation_id`` (``is_used: true``) and make it current in the calling context."""
        attributes = self._conversation_attributes(
            conversation_id, customer_id, customer_ip_address, device, source, language, name, environment, metadata
        )
        reusable = next((t for t in turns.open_turns() if t.conversation_id == conversation_id), None)
        current = turns.current_turn()
        if current is not None and current is not reusable and current.opened_by_caller():
            # Switching conversations sends the turn switched from (upstream held it until switched back),
            # which also sends a turn left open on a reused thread by a handler that never sent it.
            self._end([current])
        if reusable is None:
            self._open_turn(attributes, make_current=True)
            return
        reusable.span.set_attributes(attributes)
        reusable.addressed_only = False
        otel_context.attach(turns.with_turn(reusable, make_current=True))

    @contextmanager
    def conversation(
        self,
        conversation_id: str,
        customer_id: str | None = None,
        customer_ip_address: str | None = None,
        device: str | None = None,
        source: str | None = None,
        language: str | None = None,
        name: str | None = None,
        environment: Literal["production", "development"] = "production",
        metadata: dict[str, Any] | None = None,
    ) -> Iterator[ConversationTurn]:
        """Open a turn for the ``with`` block and send it on exit, also when the block raises."""
        attributes = self._conversation_attributes(
            conversation_id, customer_id, customer_ip_address, device, source, language, name, environment, metadata
        )
        before = set(turns.open_turns())
        turn = self._new_turn(attributes)
        token = otel_context.attach(turns.with_turn(turn, make_current=True))
        try:
            yield turn
        except BaseException as error:
            if turn.span.is_recording():
                turn.span.record_exception(error)
                turn.span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            raise
        finally:
            self._end([t for t in turns.open_turns() if t not in before])
            otel_context.detach(token)

    # Tracking ----------------------------------------------------------------------------------

    def track_question(
        self, question: str, metadata: dict[str, Any] | None = None, conversation_id: str | None = None
    ) -> None:
        """Track an end-user message."""
        self._track_message(question, sc.SENDER_END_USER, metadata, conversation_id, InvalidQuestionDataException)

    def track_answer(
        self, answer: str, metadata: dict[str, Any] | None = None, conversation_id: str | None = None
    ) -> None:
        """Track an agent message."""
        self._track_message(answer, sc.SENDER_AGENT, metadata, conversation_id, InvalidAnswerDataException)

    def track_human_message(
        self,
        message: str,
        attachments: list[dict[str, Any]] | None = None,
        attachment_mode: str = "base64",
        metadata: dict[str, Any] | None = None,
        conversation_id: str | None = None,
    ) -> None:
        """Track an end-user message (0.1.x name), with optional attachments sent after it."""
        self._track_message(message, sc.SENDER_END_USER, metadata, conversation_id, InvalidQuestionDataException,
                            attachments, attachment_mode)

    def track_agent_message(
        self,
        message: str,
        attachments: list[dict[str, Any]] | None = None,
        attachment_mode: str = "base64",
        metadata: dict[str, Any] | None = None,
        conversation_id: str | None = None,
    ) -> None:
        """Track an agent message (0.1.x name), with optional attachments sent after it."""
        self._track_message(message, sc.SENDER_AGENT, metadata, conversation_id, InvalidAnswerDataException,
                            attachments, attachment_mode)

    def track_button(
        self,
        button_event: str,
        label: str,
        value: str,
        conversation_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Track a clicked button; ``button_event``, ``label`` and ``value`` must be non-blank."""
        for field_name, text in (("Button event", button_event), ("Button label", label), ("Button value", value)):
            if not isinstance(text, str) or not text.strip():
                raise InvalidConversationDataException(f"{field_name} cannot be empty")
        attributes = {sc.BUTTON_EVENT_NAME: button_event, sc.BUTTON_LABEL: label, sc.BUTTON_VALUE: value}
        self._add_event(sc.BUTTON_EVENT, attributes, metadata, conversation_id)

    def track_action(
        self,
        action_name: str,
        started_at: str | datetime | None = None,
        ended_at: str | datetime | None = None,
        duration_ms: int | None = None,
        tools_used: dict[str, Any] | None = None,
        response: str | None = None,
        error_msg: str | None = None,
        metadata: dict[str, Any] | None = None,
        conversation_id: str | None = None,
    ) -> None:
        """Track an action the agent took (a tool call, a lookup, ...)."""
        if not isinstance(action_name, str) or not action_name.strip():
            raise InvalidConversationDataException("Action name cannot be empty")
        attributes: dict[str, Any] = {sc.ACTION_NAME: action_name}
        given = {
            sc.ACTION_STARTED_AT: started_at.isoformat() if isinstance(started_at, datetime) else started_at,
            sc.ACTION_ENDED_AT: ended_at.isoformat() if isinstance(ended_at, datetime) else ended_at,
            sc.ACTION_DURATION_MS: duration_ms,
            sc.ACTION_TOOLS_USED: None if tools_used is None else jsonsafe.dumps(tools_used),
            sc.ACTION_RESPONSE: None if response is None else str(response),
            sc.ACTION_ERROR_MSG: None if error_msg is None else str(error_msg),
        }
        if duration_ms is not None and (isinstance(duration_ms, bool) or not isinstance(duration_ms, (int, float))):
            raise InvalidConversationDataException("duration_ms must be a number of milliseconds")
        attributes.update((key, value) for key, value in given.items() if value is not None)
        self._add_event(sc.ACTION_EVENT, attributes, metadata, conversation_id)

    def track_attachments(
        self,
        attachments: list[dict[str, Any]],
        sender: str | None = None,
        metadata: dict[str, Any] | None = None,
        mode: str = "base64",
        conversation_id: str | None = None,
    ) -> None:
        """Track files: ``base64`` mode takes ``{filename, mime_type, data: base64 str}``;
        ``form_data`` mode takes ``{data: bytes | file object, filename?, mime_type?}`` and posts multipart."""
        files = attachment_files(attachments, mode)
        attributes = attachments_attributes(files, attachment_sender(sender), mode, metadata)
        self._turn_for(conversation_id).add_event(sc.ATTACHMENTS_EVENT, attributes)

    def track_token_usage(
        self,
        prompt_tokens: int | None = 0,
        completion_tokens: int | None = 0,
        total_tokens: int | None = 0,
        embedding_tokens: int | None = 0,
        conversation_id: str | None = None,
    ) -> None:
        """Add token counts to the turn; the turn sends one ``token_usage`` action with the sums."""
        usage = {
            "prompt_tokens": prompt_tokens or 0,
            "completion_tokens": completion_tokens or 0,
            "total_tokens": total_tokens or 0,
            "embedding_tokens": embedding_tokens or 0,
        }
        for key, count in usage.items():
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise InvalidConversationDataException(f"{key} must be a non-negative integer, got {count!r}")
        self._turn_for(conversation_id).add_usage(usage)

    def get_token_usage(self, conversation_id: str | None = None) -> dict[str, int]:
        """Token sums tracked in the current turn (or that of ``conversation_id``); ``{}`` when none."""
        turn = self._find_turn(conversation_id)
        return turn.usage() if turn is not None else {}

    # Sending -----------------------------------------------------------------------------------

    def send_tracked_data(self) -> dict[str, Any]:
        """End the current turn (and turns opened by ``conversation_id=``), queueing them, and return at once.

        Returns the upstream shape: ``items`` (index, type, timestamp, ``status: "queued"``; after
        :meth:`shutdown` ``"not_sent"``: nothing is sent then) and a ``summary`` by type. Delivery results
        come from :meth:`flush`. Raises ``NoDataToSendException`` when there is no current turn in this context.
        """
        sending = turns.sendable_turns()
        if not sending:
            raise NoDataToSendException("No tracked data found: call get_or_create_conversation() first.")
        exporter = self.exporter
        result = _summarize(sending, status="not_sent" if exporter is not None and exporter.closed else "queued")
        self._end(sending)
        otel_context.attach(turns.after_sending(sending))
        return result

    def get_tracked_data_summary(self) -> dict[str, Any]:
        """What ``send_tracked_data()`` would send now, in order, with a summary by type."""
        return _summarize(turns.sendable_turns())

    def flush(self, timeout: float | None = 30.0) -> dict[str, Any]:
        """Block until everything sent so far is delivered (or ``timeout`` seconds pass).

        Returns ``{"complete", "delivered", "failed", "dropped", "items", "summary"}`` for what settled since
        the previous flush: ``complete`` is true when everything was settled (delivered or given up on) in
        time, ``delivered`` when moreover nothing failed; ``failed`` counts payloads not delivered (rejected,
        given up on, dropped), ``items`` holds a result per payload. For scripts, tests and serverless handlers.
        """
        self._send_abandoned()
        if self._own_processor is not None:
            self._own_processor.force_flush(int((timeout or 30.0) * 1000))
        exporters = []
        if self._router.direct is not None:
            exporters.append(self._router.direct.exporter)
        app_provider = self._router.app_provider()
        if app_provider is not None:
            app_provider.force_flush(int((timeout or 30.0) * 1000))
            exporters.extend(e for e in configured_exporters(app_provider) if e not in exporters)
        results = [exporter.flush(timeout) for exporter in exporters]
        merged = FlushResult(all(r.complete for r in results), [item for r in results for item in r.items],
                             sum(r.dropped for r in results))
        return merged.as_dict()

    def delivery_stats(self) -> dict[str, int]:
        """Counters of the direct delivery path: submitted, delivered, rejected, expired, dropped, retries."""
        return self._router.direct.exporter.stats if self._router.direct is not None else {}

    def shutdown(self) -> None:
        """Send open turns, deliver what is queued (up to 30 s), and stop. Also happens at interpreter exit.

        Trackers with the same configuration share one delivery pipeline: it stops with the last of them.
        """
        self._end_all_open()
        self._provider.shutdown()

    # 0.0.44's management calls, with this tracker's key and endpoint (agentsight.management) ---------

    def submit_feedback(self, conversation_id: int | str, sentiment: Any, comment: str | None = None,
                        metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """Feedback on a conversation (see :meth:`agentsight.management.ConversationManager.submit_feedback`)."""
        return _managed(self).submit_feedback(conversation_id, sentiment, comment, metadata)

    def rename_conversation(self, conversation_id: int | str, name: str) -> dict[str, Any]:
        """Rename a conversation (see :class:`agentsight.management.ConversationManager`)."""
        return _managed(self).rename_conversation(conversation_id, name)

    def mark_conversation(self, conversation_id: int | str, is_marked: bool) -> dict[str, Any]:
        """Mark or unmark a conversation (see :class:`agentsight.management.ConversationManager`)."""
        return _managed(self).mark_conversation(conversation_id, is_marked)

    def delete_conversation(self, conversation_id: int | str) -> dict[str, Any]:
        """Soft-delete a conversation (see :class:`agentsight.management.ConversationManager`)."""
        return _managed(self).delete_conversation(conversation_id)

    def update_conversation(self, conversation_id: int | str, **fields: Any) -> dict[str, Any]:
        """Change a conversation's fields (see :class:`agentsight.management.ConversationManager`)."""
        return _managed(self).update_conversation(conversation_id, **fields)

    def fetch_conversations(self, **filters: Any) -> dict[str, Any]:
        """One page of conversations (see :class:`agentsight.management.AgentSightAPI`)."""
        return _managed(self).fetch_conversations(**filters)

    def fetch_conversation(self, conversation_id: int | str) -> dict[str, Any]:
        """One conversation with its messages (see :class:`agentsight.management.AgentSightAPI`)."""
        return _managed(self).fetch_conversation(conversation_id)

    def fetch_conversation_attachments(self, conversation_id: int | str) -> dict[str, Any]:
        """A conversation's attachments (see :class:`agentsight.management.AgentSightAPI`)."""
        return _managed(self).fetch_conversation_attachments(conversation_id)

    # Internals ---------------------------------------------------------------------------------

    def _conversation_attributes(
        self,
        conversation_id: str,
        customer_id: str | None,
        customer_ip_address: str | None,
        device: str | None,
        source: str | None,
        language: str | None,
        name: str | None,
        environment: str | None,
        metadata: dict[str, Any] | None,
    ) -> dict[str, Any]:
        if not isinstance(conversation_id, str) or not conversation_id.strip():
            raise MissingConversationIdException()
        values = (customer_id, customer_ip_address, device, source, language, name,
                  self._settings.environment or environment)
        attributes: dict[str, Any] = {sc.CONVERSATION_ID: conversation_id, sc.IS_USED: True}
        for (field_name, attribute), value in zip(sc.CONVERSATION_FIELDS, values, strict=True):
            if value is not None:
                if not isinstance(value, str):
                    raise InvalidConversationDataException(f"{field_name} must be a string, got {type(value).__name__}")
                attributes[attribute] = value
        if metadata is not None:
            attributes[sc.CONVERSATION_METADATA] = metadata_json(metadata)
        return attributes

    def _new_turn(self, attributes: dict[str, Any], addressed_only: bool = False) -> ConversationTurn:
        self._send_abandoned()
        count_app_model_calls()
        current = turns.current_turn()
        outer = current.outer_span if current is not None else trace.get_current_span()
        span = self._tracer.start_span(
            sc.CONVERSATION_SPAN,
            context=trace.set_span_in_context(outer),
            attributes=attributes,
            kind=trace.SpanKind.INTERNAL,
        )
        turn = ConversationTurn(attributes[sc.CONVERSATION_ID], span, self._tracer, outer, addressed_only)
        weakref.finalize(turn, self._abandoned.put, (span, turn.pid)).atexit = False
        with self._registry_lock:
            self._open.add(turn)
            self._latest_open[turn.conversation_id] = turn
        return turn

    def _open_turn(self, attributes: dict[str, Any], make_current: bool) -> ConversationTurn:
        turn = self._new_turn(attributes, addressed_only=not make_current)
        otel_context.attach(turns.with_turn(turn, make_current))
        return turn

    def _end(self, ending: list[ConversationTurn] | tuple[ConversationTurn, ...]) -> None:
        for turn in ending:
            with self._registry_lock:
                self._open.discard(turn)
                if self._latest_open.get(turn.conversation_id) is turn:
                    del self._latest_open[turn.conversation_id]
            if not turn.ended:
                turn.end()

    def _end_all_open(self) -> None:
        """Send the turns opened in this process and not sent (a forked child leaves its parent's alone)."""
        pid = os.getpid()
        with self._registry_lock:
            still_open = [turn for turn in self._open if turn.pid == pid]
        self._end(still_open)
        self._send_abandoned()

    def _send_abandoned(self) -> None:
        """End the spans of turns collected unsent (queued by their finalizers) in this process, which sends them."""
        while not self._abandoned.empty():
            span, pid = self._abandoned.get_nowait()
            if span.is_recording() and pid == os.getpid():
                logger.debug("AgentSight sends a turn whose context ended without send_tracked_data()")
                span.end()

    def _find_turn(self, conversation_id: str | None) -> ConversationTurn | None:
        if conversation_id is None:
            return turns.current_turn()
        for turn in reversed(turns.open_turns()):
            if turn.conversation_id == conversation_id:
                return turn
        turn = self._latest_open.get(conversation_id)
        return turn if turn is not None and not turn.ended else None

    def _turn_for(self, conversation_id: str | None) -> ConversationTurn:
        """The turn a tracking call goes to: the addressed or current one, else one opened for it."""
        turn = self._find_turn(conversation_id)
        if turn is not None:
            return turn
        target = conversation_id or self._settings.conversation_id
        if not target:
            raise MissingConversationIdException(
                "No current conversation: call get_or_create_conversation() first or pass conversation_id="
            )
        environment = self._settings.environment or "production"
        attributes = self._conversation_attributes(target, None, None, None, None, None, None, environment, None)
        return self._open_turn(attributes, make_current=conversation_id is None)

    def _add_event(
        self, name: str, attributes: dict[str, Any], metadata: dict[str, Any] | None, conversation_id: str | None
    ) -> None:
        if metadata is not None:
            attributes[sc.METADATA] = metadata_json(metadata)
        self._turn_for(conversation_id).add_event(name, attributes)

    def _track_message(
        self,
        content: str,
        sender: str,
        metadata: dict[str, Any] | None,
        conversation_id: str | None,
        invalid: type[Exception],
        attachments: list[dict[str, Any]] | None = None,
        attachment_mode: str = "base64",
    ) -> None:
        if not isinstance(content, str) or not content.strip():
            raise invalid(f"Invalid {'question' if sender == sc.SENDER_END_USER else 'answer'} data provided.")
        attributes: dict[str, Any] = {sc.MESSAGE_SENDER: sender, sc.MESSAGE_CONTENT: content}
        if metadata is not None:
            attributes[sc.METADATA] = metadata_json(metadata)
        files = attachment_files(attachments, attachment_mode) if attachments else None
        turn = self._turn_for(conversation_id)
        turn.add_event(sc.MESSAGE_EVENT, attributes)
        if files is not None:
            turn.add_event(sc.ATTACHMENTS_EVENT, attachments_attributes(files, sender, attachment_mode, metadata))


def _summarize(open_now: tuple[ConversationTurn, ...], status: str | None = None) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    summary = {"questions": 0, "answers": 0, "attachments": 0, "actions": 0, "buttons": 0, "errors": 0}
    for turn in open_now:
        if status is None:  # the bodies are wanted: translate in full
            payloads = translate(turn.span)  # type: ignore[arg-type]
            sent = [(payload.kind, payload.timestamp, payload.body) for payload in (payloads.all() if payloads else ())]
        else:  # only kinds and times: much cheaper, and this runs on the app's thread at every send
            sent = [(kind, timestamp, status) for kind, timestamp in outline(turn.span) or ()]  # type: ignore[arg-type]
        for kind, timestamp, detail in sent:
            items.append({"index": len(items), "type": kind, "timestamp": timestamp,
                          "data" if status is None else "status": detail})
            if kind in _KIND_TO_SUMMARY:
                summary[_KIND_TO_SUMMARY[kind]] += 1
    summary["total"] = len(items)
    return {"items": items, "summary": summary}


_instrumented = False


def _instrument_once() -> None:
    """Auto-instrument LLM clients for the first tracker of the process only: the hooks stay for the others."""
    global _instrumented
    if not _instrumented:
        _instrumented = True
        instrument()


def _managed(tracker: ConversationTracker) -> Any:
    from agentsight.management import for_tracker  # imported on first use: the data plane is not tracking

    return for_tracker(tracker)
