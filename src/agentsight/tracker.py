"""``ConversationTracker``: the upstream AgentSight SDK's API, recording OTel spans and span events.

Tracking calls validate their input (raising the upstream exceptions), add an event to the
current turn's span and return: no I/O. ``send_tracked_data()`` ends the turn's span; the span
pipeline (:mod:`agentsight.export.pipeline`) delivers it in the background.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor

from agentsight.config import DeliverySettings, Settings, configure_logging
from agentsight.exceptions import (
    InvalidAnswerDataException,
    InvalidQuestionDataException,
    MissingConversationIdException,
    NoDataToSendException,
)
from agentsight.export import lifecycle
from agentsight.export.exporter import AgentSightSpanExporter
from agentsight.export.pipeline import (
    ConversationSpanRouter,
    conversation_tracer,
)
from agentsight.export.processor import AgentSightSpanProcessor
from agentsight.inputs import (
    action_attributes,
    attachment_files,
    attachment_sender,
    attachments_attributes,
    button_attributes,
    conversation_attributes,
    message_attributes,
    metadata_json,
    token_usage,
)
from agentsight.instrumentation import instrument
from agentsight.instrumentation.threads import follow_turns_into_threads
from agentsight.management_calls import ManagementCalls
from agentsight.open_turns import OpenTurns
from agentsight.sending import flush_all, summarize
from agentsight.spans import semconv as sc
from agentsight.spans import turn as turns
from agentsight.spans.turn import ConversationTurn


class ConversationTracker(ManagementCalls):
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
        # Open turns are held weakly; abandoned ones are sent at the next safe point (agentsight.open_turns).
        self._turns = OpenTurns(self._tracer)
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
        return self._turns.new(attributes)

    def end_turns(self, ending: list[ConversationTurn]) -> None:
        """End (and so send) these turns."""
        self._turns.end(ending)

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
        self._turns.make_current(attributes)

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
        with self._turns.scope(attributes) as turn:
            yield turn

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
        self._add_event(sc.BUTTON_EVENT, button_attributes(button_event, label, value), metadata, conversation_id)

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
        attributes = action_attributes(action_name, started_at, ended_at, duration_ms, tools_used, response, error_msg)
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
        usage = token_usage(prompt_tokens, completion_tokens, total_tokens, embedding_tokens)
        self._turn_for(conversation_id).add_usage(usage)

    def get_token_usage(self, conversation_id: str | None = None) -> dict[str, int]:
        """Token sums tracked in the current turn (or that of ``conversation_id``); ``{}`` when none."""
        turn = self._turns.find(conversation_id)
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
        result = summarize(sending, status="not_sent" if exporter is not None and exporter.closed else "queued")
        self._turns.end(sending)
        otel_context.attach(turns.after_sending(sending))
        return result

    def get_tracked_data_summary(self) -> dict[str, Any]:
        """What ``send_tracked_data()`` would send now, in order, with a summary by type."""
        return summarize(turns.sendable_turns())

    def flush(self, timeout: float | None = 30.0) -> dict[str, Any]:
        """Block until everything sent so far is delivered (or ``timeout`` seconds pass).

        Returns ``{"complete", "delivered", "failed", "dropped", "items", "summary"}`` for what settled since
        the previous flush: ``complete`` is true when everything was settled (delivered or given up on) in
        time, ``delivered`` when moreover nothing failed; ``failed`` counts payloads not delivered (rejected,
        given up on, dropped), ``items`` holds a result per payload. For scripts, tests and serverless handlers.
        """
        self._turns.send_abandoned()
        return flush_all(self._router, self._own_processor, timeout)

    def delivery_stats(self) -> dict[str, int]:
        """Counters of the direct delivery path: submitted, delivered, rejected, expired, dropped, retries."""
        return self._router.direct.exporter.stats if self._router.direct is not None else {}

    def shutdown(self) -> None:
        """Send open turns, deliver what is queued (up to 30 s), and stop. Also happens at interpreter exit.

        Trackers with the same configuration share one delivery pipeline: it stops with the last of them.
        """
        self._turns.end_all()
        self._provider.shutdown()

    # Internals ---------------------------------------------------------------------------------

    def _conversation_attributes(self, conversation_id: str, *values: Any) -> dict[str, Any]:
        """A turn's checked attributes from the conversation fields, environment (the configured one wins), metadata."""
        *fields, environment, metadata = values
        return conversation_attributes(conversation_id, *fields, self._settings.environment or environment, metadata)

    def _end_all_open(self) -> None:
        """Send the turns opened in this process and not sent (the process-wide drain calls this)."""
        self._turns.end_all()

    def _turn_for(self, conversation_id: str | None) -> ConversationTurn:
        """The turn a tracking call goes to: the addressed or current one, else one opened for it."""
        turn = self._turns.find(conversation_id)
        if turn is not None:
            return turn
        target = conversation_id or self._settings.conversation_id
        if not target:
            raise MissingConversationIdException(
                "No current conversation: call get_or_create_conversation() first or pass conversation_id="
            )
        attributes = self._conversation_attributes(target, None, None, None, None, None, None, "production", None)
        return self._turns.open(attributes, make_current=conversation_id is None)

    def _add_event(
        self, name: str, attributes: dict[str, Any], metadata: dict[str, Any] | None, conversation_id: str | None
    ) -> None:
        if metadata is not None:
            attributes[sc.METADATA] = metadata_json(metadata)
        self._turn_for(conversation_id).add_event(name, attributes)

    def _track_message(self, content: str, sender: str, metadata: dict[str, Any] | None, conversation_id: str | None,
                       invalid: type[Exception], attachments: list[dict[str, Any]] | None = None,
                       attachment_mode: str = "base64") -> None:
        attributes = message_attributes(content, sender, metadata, invalid)
        files = attachment_files(attachments, attachment_mode) if attachments else None
        turn = self._turn_for(conversation_id)
        turn.add_event(sc.MESSAGE_EVENT, attributes)
        if files is not None:
            turn.add_event(sc.ATTACHMENTS_EVENT, attachments_attributes(files, sender, attachment_mode, metadata))


_instrumented = False


def _instrument_once() -> None:
    """Auto-instrument LLM clients for the first tracker of the process only: the hooks stay for the others."""
    global _instrumented
    if not _instrumented:
        _instrumented = True
        instrument()

