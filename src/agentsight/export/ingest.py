"""Pure translation of finished conversation spans into the ingest wire (``POST /api/ingest/``).

Our span model keeps a turn as one span with its tracked items as events (docs/semantic-conventions.md);
ingest, as upstream 0.1.x speaks it, wants a family of spans: the turn with its messages as
``agentsight.message`` events, and a child span per button (``button``), action (``tool``), model
call (``llm``) and attachment (``attachment``). This module builds that family from one span, and
groups families into the per-conversation blocks of one document. No I/O, no global state.

Child spans get ids derived from the turn's span id and the event's position, so translating the
same span twice (a retried batch, a replay through the bridge) gives the same ids and ingest can
drop the repeat. A model call keeps the id of the GenAI span it came from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from agentsight.config import SDK_NAME, SDK_VERSION
from agentsight.export import rest
from agentsight.export.payloads import TurnPayloads
from agentsight.spans import semconv as sc
from agentsight.spans.finished import SpanLike, add_usage, is_conversation_span, iso_timestamp

SDK = {"name": SDK_NAME, "version": SDK_VERSION}
"""The document's ``sdk`` object."""

VISIT_SPAN_NAME = "conversation_opened"
TURN_SPAN_NAME = "turn"
TOKEN_USAGE_SPAN_NAME = "token_usage"
METADATA_UPDATED_SPAN_NAME = "metadata_updated"

_CONVERSATION_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    (sc.CONVERSATION_ID, sc.CONVERSATION_ID),
    (sc.CUSTOMER_ID, sc.CUSTOMER_ID),
    (sc.CUSTOMER_IP_ADDRESS, sc.CUSTOMER_IP),
    (sc.DEVICE, sc.DEVICE),
    (sc.SOURCE, sc.SOURCE),
    (sc.LANGUAGE, sc.LANGUAGE),
    (sc.NAME, sc.NAME),
    (sc.ENVIRONMENT, sc.ENVIRONMENT),
    (sc.CONVERSATION_METADATA, sc.CONVERSATION_METADATA),
)
"""(our span attribute, the ingest attribute every span of the conversation carries)."""

_CHILD_EVENTS = frozenset({sc.BUTTON_EVENT, sc.ACTION_EVENT, sc.ATTACHMENTS_EVENT, sc.METADATA_UPDATED_EVENT})


@dataclass(frozen=True)
class IngestTurn:
    """One conversation span, translated: its spans for the conversation's block, and attachment uploads.

    ``metadata`` is the conversation metadata as an object (``None``: not given). ``uploads`` holds the
    attachment bytes, which go to ``/api/attachments/`` (the 0.0.x route) after the document.
    """

    conversation_id: str
    fields: Mapping[str, Any]
    metadata: Any
    spans: tuple[dict[str, Any], ...]
    uploads: TurnPayloads | None = None


def estimate(span: SpanLike) -> tuple[int, int]:
    """How many ingest spans a conversation span becomes (exactly), and their approximate size in bytes.

    Cheap (no translation): used to bound the delivery queue before translating on a delivery thread.
    """
    count, usage, size = 1, 0, 1024 + _text_size(span.attributes)
    for event in span.events:
        attributes = event.attributes or {}
        if event.name in _CHILD_EVENTS:
            count += 1
            size += 1024
        elif event.name == sc.TOKEN_USAGE_EVENT and sc.MODEL_CALL_SPAN_ID not in attributes:
            usage = 1
        size += 128 + _text_size(attributes)
    return count + usage, size


def _text_size(attributes: Mapping[str, Any] | None) -> int:
    return sum(len(value) for value in (attributes or {}).values() if isinstance(value, str))


def translate(span: SpanLike) -> IngestTurn | None:
    """The ingest spans of one conversation span (``None`` for other spans).

    ``initialize_conversation()`` (``is_used`` false) becomes a ``conversation`` span (a visit, or what
    ``agentsight.conversation.record`` names); a turn becomes a ``turn`` span with its children.
    """
    if not is_conversation_span(span):
        return None
    attributes = span.attributes or {}
    conversation_id = str(attributes[sc.CONVERSATION_ID])
    family = _Family(span, attributes)
    if attributes.get(sc.IS_USED) is False:
        name = str(attributes.get(sc.CONVERSATION_RECORD) or VISIT_SPAN_NAME)
        spans = (family.span(name, sc.KIND_CONVERSATION, span.start_time, span.end_time, {}, own=True),)
        return IngestTurn(conversation_id, family.fields, family.metadata, spans)
    return family.turn(conversation_id)


def document(turns: Iterable[IngestTurn]) -> dict[str, Any]:
    """One ingest document: a block per conversation (fields and metadata of its latest turn win), spans by start."""
    blocks: dict[str, dict[str, Any]] = {}
    for turn in turns:
        block = blocks.get(turn.conversation_id)
        if block is None:
            block = blocks[turn.conversation_id] = {"conversation_id": turn.conversation_id, "spans": []}
        block.update(turn.fields)
        if turn.metadata is not None:
            block["metadata"] = turn.metadata
        block["spans"].extend(turn.spans)
    for block in blocks.values():
        block["spans"].sort(key=lambda item: item["started_at"])
    return {"sdk": SDK, "conversations": list(blocks.values())}


class _Family:
    """Builds the ingest spans of one of our conversation spans."""

    def __init__(self, span: SpanLike, attributes: Mapping[str, Any]) -> None:
        self.source = span
        context = span.context
        self.trace_id = format(context.trace_id, "032x") if context else "0" * 32
        self.turn_id = format(context.span_id if context else 0, "016x")
        self.common = {ingest: attributes[ours] for ours, ingest in _CONVERSATION_ATTRIBUTES if ours in attributes}
        self.fields = {field: attributes[name] for field, name in sc.CONVERSATION_FIELDS if name in attributes}
        raw_metadata = attributes.get(sc.CONVERSATION_METADATA)
        self.metadata = None if raw_metadata is None else json.loads(raw_metadata)
        self.otel = _otel(span)

    def turn(self, conversation_id: str) -> IngestTurn:
        events: list[dict[str, Any]] = []
        children: list[dict[str, Any]] = []
        usage: dict[str, int] | None = None
        has_attachments = False
        for index, event in enumerate(self.source.events):
            attributes = event.attributes or {}
            if event.name == sc.MESSAGE_EVENT:
                events.append(_message_event(event, attributes))
            elif event.name == sc.BUTTON_EVENT:
                children.append(self._button(index, event.timestamp, attributes))
            elif event.name == sc.ACTION_EVENT and sc.MODEL_CALL_SPAN_ID in attributes:
                children.append(self._model_call(event.timestamp, attributes))
            elif event.name == sc.ACTION_EVENT:
                children.append(self._action(index, event.timestamp, attributes))
            elif event.name == sc.ATTACHMENTS_EVENT:
                has_attachments = has_attachments or sc.ATTACHMENTS_DESCRIPTORS not in attributes
                children.append(self._attachments(index, event.timestamp, attributes))
            elif event.name == sc.METADATA_UPDATED_EVENT:
                children.append(self._child(index, METADATA_UPDATED_SPAN_NAME, sc.KIND_CONVERSATION, event.timestamp,
                                            event.timestamp, {}, status="unset"))
            elif event.name == sc.TOKEN_USAGE_EVENT:
                if sc.MODEL_CALL_SPAN_ID not in attributes:  # a model call's tokens ride on its llm span
                    usage = add_usage(usage, attributes)
            else:
                events.append({"name": event.name, "timestamp": iso_timestamp(event.timestamp),
                               "attributes": dict(attributes)})
        if usage is not None:
            children.append(self._token_usage(len(self.source.events), usage))
        # A turn sent through the seed API is a complete exchange, also when its block raised (its items
        # were tracked and are delivered, as on the REST wire); the status still says it raised. A 0.1.x
        # turn that did not finish says so, and why.
        source = self.source.attributes or {}
        completeness: dict[str, Any] = {sc.TURN_COMPLETE: source.get(sc.TURN_COMPLETE, True) is not False}
        if sc.TURN_INCOMPLETE_REASON in source:
            completeness[sc.TURN_INCOMPLETE_REASON] = source[sc.TURN_INCOMPLETE_REASON]
        turn = self.span(str(source.get(sc.TURN_NAME) or TURN_SPAN_NAME), sc.KIND_TURN, self.source.start_time,
                         self.source.end_time, completeness, events=events, own=True,
                         status="error" if _status(self.source) == "error" else "ok")
        uploads = None
        if has_attachments:
            payloads = rest.translate(self.source)
            assert payloads is not None
            uploads = TurnPayloads(conversation_id, payloads.conversation,
                                   tuple(p for p in payloads.items if p.kind == "attachments"))
        return IngestTurn(conversation_id, self.fields, self.metadata, (turn, *children), uploads)

    def span(
        self,
        name: str,
        kind: str,
        start: int | None,
        end: int | None,
        attributes: Mapping[str, Any],
        *,
        events: Sequence[dict[str, Any]] = (),
        own: bool = False,
        span_id: str | None = None,
        status: str | None = None,
        status_description: str | None = None,
        otel_kind: str | None = None,
    ) -> dict[str, Any]:
        """An ingest span of this family: the source span itself (``own``) or a child of it (``span_id`` given)."""
        full = {**self.common, sc.SPAN_KIND: kind, sc.ENTITY_NAME: name}
        if kind != sc.KIND_CONVERSATION or not own:  # a visit belongs to no turn; a turn's children do
            full[sc.TURN_ID] = self.turn_id
        full.update(attributes)
        otel = self.otel
        if not own:
            otel = {**otel, "span_kind": otel_kind or "INTERNAL", "status_description": status_description,
                    "links": [], "dropped": {"attributes": 0, "events": 0, "links": 0}}
        start = start if start is not None else end
        end = end if end is not None else start
        return {
            "span_id": self.turn_id if own else span_id,
            "trace_id": self.trace_id,
            "parent_span_id": self._parent() if own else self.turn_id,
            "kind": kind,
            "name": name,
            "started_at": iso_timestamp(start),
            "ended_at": iso_timestamp(end),
            "duration_ms": None if start is None or end is None else round((end - start) / 1e6, 3),
            "status": status or _status(self.source),
            "attributes": full,
            "events": list(events),
            "otel": otel,
        }

    def _parent(self) -> str | None:
        parent = self.source.parent
        return format(parent.span_id, "016x") if parent is not None and parent.span_id else None

    def _child_id(self, index: int) -> str:
        digest = hashlib.blake2b(f"{self.trace_id}:{self.turn_id}:{index}".encode(), digest_size=8).hexdigest()
        return digest if digest != "0" * 16 else "1" * 16

    def _child(self, index: int, name: str, kind: str, start: int | None, end: int | None,
               attributes: Mapping[str, Any], **options: Any) -> dict[str, Any]:
        return self.span(name, kind, start, end, attributes, span_id=self._child_id(index), **options)

    def _button(self, index: int, timestamp: int | None, attributes: Mapping[str, Any]) -> dict[str, Any]:
        label = str(attributes.get(sc.BUTTON_LABEL) or attributes.get(sc.BUTTON_EVENT_NAME))
        own = {key: attributes[key] for key in (sc.BUTTON_EVENT_NAME, sc.BUTTON_LABEL, sc.BUTTON_VALUE, sc.METADATA)
               if key in attributes}
        return self._child(index, label, sc.KIND_BUTTON, timestamp, timestamp, own, status="unset")

    def _action(self, index: int, timestamp: int | None, attributes: Mapping[str, Any]) -> dict[str, Any]:
        name = str(attributes.get(sc.ACTION_NAME))
        own: dict[str, Any] = {sc.TOOL_NAME: name}
        for ours, theirs in ((sc.ACTION_TOOLS_USED, sc.TOOL_ARGUMENTS), (sc.ACTION_RESPONSE, sc.TOOL_RESPONSE),
                             (sc.ACTION_ERROR_MSG, sc.TOOL_ERROR), (sc.METADATA, sc.METADATA)):
            if ours in attributes:
                own[theirs] = attributes[ours]
        start, end = _action_times(attributes, timestamp)
        error = attributes.get(sc.ACTION_ERROR_MSG)
        kind = sc.KIND_TASK if attributes.get(sc.ACTION_KIND) == sc.ACTION_KIND_TASK else sc.KIND_TOOL
        return self._child(index, name, kind, start, end, own, status="error" if error else "ok",
                           status_description=error, events=_exception_events(attributes, end))

    def _model_call(self, timestamp: int | None, attributes: Mapping[str, Any]) -> dict[str, Any]:
        call = json.loads(attributes.get(sc.METADATA) or "{}")
        requested = call.get("request_model")
        resolved = call.get("response_model") or requested or call.get("model_hint")
        operation = call.get("operation") or "chat"
        own: dict[str, Any] = {sc.GEN_AI_SYSTEM: call.get("provider") or "unknown", sc.GEN_AI_OPERATION_NAME: operation}
        if resolved:
            own[sc.GEN_AI_REQUEST_MODEL] = resolved
        if requested and requested != resolved:
            own[sc.LLM_REQUESTED_MODEL] = requested
        cached = int(call.get("cache_read_tokens") or 0) + int(call.get("cache_write_tokens") or 0)
        if operation == sc.OPERATION_EMBEDDINGS:
            own[sc.LLM_EMBEDDING_TOKENS] = int(call.get("input_tokens") or 0)
        else:
            # Upstream's input count leaves out the cache's tokens, which are priced apart (Anthropic's own way).
            own[sc.GEN_AI_USAGE_INPUT_TOKENS] = max(0, int(call.get("input_tokens") or 0) - cached)
            own[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = int(call.get("output_tokens") or 0)
        for key, attribute in (("cache_read_tokens", sc.LLM_CACHE_READ_TOKENS),
                               ("cache_write_tokens", sc.LLM_CACHE_WRITE_TOKENS),
                               ("reasoning_tokens", sc.LLM_REASONING_TOKENS)):
            if call.get(key):
                own[attribute] = int(call[key])
        if call.get("streaming"):
            own[sc.LLM_STREAMING] = True
        error = attributes.get(sc.ACTION_ERROR_MSG)
        if error:
            own[sc.LLM_ERROR] = error
        start, end = _action_times(attributes, timestamp)
        return self.span(str(resolved or operation), sc.KIND_LLM, start, end, own,
                         span_id=str(attributes[sc.MODEL_CALL_SPAN_ID]), status="error" if error else "unset",
                         status_description=error, otel_kind="CLIENT")

    def _attachments(self, index: int, timestamp: int | None, attributes: Mapping[str, Any]) -> dict[str, Any]:
        if sc.ATTACHMENTS_DESCRIPTORS in attributes:
            descriptors = json.loads(attributes[sc.ATTACHMENTS_DESCRIPTORS])
        else:
            files = json.loads(attributes.get(sc.ATTACHMENTS_FILES) or "[]")
            descriptors = [{"filename": item.get("filename"), "size": _decoded_size(item.get("data") or ""),
                            "mime_type": item.get("mime_type")} for item in files]
        own: dict[str, Any] = {sc.ATTACHMENT_SENDER: attributes.get(sc.ATTACHMENTS_SENDER, sc.SENDER_END_USER)}
        if sc.ATTACHMENTS_MODE in attributes:  # absent: bytes moved elsewhere (0.1.x record_attachments())
            own[sc.ATTACHMENT_MODE] = attributes[sc.ATTACHMENTS_MODE]
        own[sc.ATTACHMENT_COUNT] = len(descriptors)
        own[sc.ATTACHMENT_FILES] = json.dumps(descriptors, ensure_ascii=False)
        if sc.METADATA in attributes:
            own[sc.METADATA] = attributes[sc.METADATA]
        name = f"{len(descriptors)} attachment(s)"
        return self._child(index, name, sc.KIND_ATTACHMENT, timestamp, timestamp, own, status="unset")

    def _token_usage(self, index: int, usage: Mapping[str, int]) -> dict[str, Any]:
        """``track_token_usage()`` sums as one ``llm`` span, so the backend prices them as it prices model calls."""
        own: dict[str, Any] = {
            sc.GEN_AI_SYSTEM: "unknown",
            sc.GEN_AI_OPERATION_NAME: "chat",
            sc.GEN_AI_USAGE_INPUT_TOKENS: usage["prompt_tokens"],
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: usage["completion_tokens"],
        }
        if usage["embedding_tokens"]:
            own[sc.LLM_EMBEDDING_TOKENS] = usage["embedding_tokens"]
        parts = usage["prompt_tokens"] + usage["completion_tokens"] + usage["embedding_tokens"]
        if usage["total_tokens"] > parts:
            own[sc.LLM_TOTAL_TOKENS] = usage["total_tokens"]
        end = self.source.end_time
        return self._child(index, TOKEN_USAGE_SPAN_NAME, sc.KIND_LLM, end, end, own, status="unset",
                           otel_kind="CLIENT")


def _message_event(event: Any, attributes: Mapping[str, Any]) -> dict[str, Any]:
    own = {
        sc.MESSAGE_SENDER: attributes.get(sc.MESSAGE_SENDER, sc.SENDER_END_USER),
        sc.MESSAGE_CONTENT: attributes.get(sc.MESSAGE_CONTENT, ""),
    }
    if sc.METADATA in attributes:
        own[sc.MESSAGE_METADATA] = attributes[sc.METADATA]
    return {"name": sc.MESSAGE_EVENT, "timestamp": iso_timestamp(event.timestamp), "attributes": own}


def _exception_events(attributes: Mapping[str, Any], end: int | None) -> list[dict[str, Any]]:
    """The ``exception`` events of a tool or task that raised, as upstream 0.1.x sends them: recorded twice
    (by its decorator, and by OpenTelemetry's span context on the way out), neither marked escaped."""
    if sc.EXCEPTION_TYPE not in attributes:
        return []
    event = {"name": "exception", "timestamp": iso_timestamp(end), "attributes": {
        sc.EXCEPTION_TYPE: attributes[sc.EXCEPTION_TYPE],
        sc.EXCEPTION_MESSAGE: attributes.get(sc.EXCEPTION_MESSAGE, ""),
        sc.EXCEPTION_STACKTRACE: attributes.get(sc.EXCEPTION_STACKTRACE, ""),
        "exception.escaped": "False",
    }}
    return [event, dict(event)]


def _status(span: SpanLike) -> str:
    status = getattr(span, "status", None)
    return status.status_code.name.lower() if status is not None else "unset"


def _otel(span: SpanLike) -> dict[str, Any]:
    context = span.context
    status = getattr(span, "status", None)
    scope = getattr(span, "instrumentation_scope", None)
    resource = getattr(span, "resource", None)
    return {
        "span_kind": span.kind.name if getattr(span, "kind", None) is not None else "INTERNAL",
        "trace_flags": int(context.trace_flags) if context else 0,
        "trace_state": (str(context.trace_state) or None) if context and context.trace_state else None,
        "is_remote": bool(context.is_remote) if context else False,
        "status_description": status.description if status is not None else None,
        "links": [
            {"trace_id": format(link.context.trace_id, "032x"), "span_id": format(link.context.span_id, "016x"),
             "attributes": dict(link.attributes or {})}
            for link in getattr(span, "links", None) or ()
        ],
        "resource": dict(getattr(resource, "attributes", None) or {}),
        "dropped": {
            "attributes": getattr(span, "dropped_attributes", 0),
            "events": getattr(span, "dropped_events", 0),
            "links": getattr(span, "dropped_links", 0),
        },
        "scope": {"name": scope.name, "version": scope.version, "schema_url": scope.schema_url or ""}
        if scope is not None else {"name": sc.INSTRUMENTATION_SCOPE, "version": None, "schema_url": ""},
    }


def _action_times(attributes: Mapping[str, Any], timestamp: int | None) -> tuple[int | None, int | None]:
    """A tracked action's start and end: as given, else ending at the event and lasting ``duration_ms``."""
    start = _ns(attributes.get(sc.ACTION_STARTED_AT))
    end = _ns(attributes.get(sc.ACTION_ENDED_AT))
    duration = attributes.get(sc.ACTION_DURATION_MS)
    if end is None:
        end = start + int(duration * 1_000_000) if start is not None and duration is not None else timestamp
    if start is None:
        start = end - int(duration * 1_000_000) if end is not None and duration is not None else end
    return start, end


def _ns(value: Any) -> int | None:
    """Nanoseconds since the epoch from ISO 8601 text (naive means UTC); ``None`` when absent or unparsable."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def _decoded_size(data: str) -> int:
    return len(data) * 3 // 4 - data.count("=", max(0, len(data) - 2))
