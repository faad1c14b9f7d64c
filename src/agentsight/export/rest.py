"""Pure translation of finished conversation spans into ordered AgentSight payloads (docs/wire.md).

Takes anything shaped like an OTel ``ReadableSpan`` (name, attributes, events, start and end
times) so the in-process exporter and the OTLP bridge share it. No I/O, no global state.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from typing import Any

from agentsight.export.payloads import FilePart, Payload, TurnPayloads
from agentsight.spans import semconv as sc
from agentsight.spans.finished import SpanLike, add_usage, is_conversation_span, iso_timestamp


def estimate(span: SpanLike) -> tuple[int, int]:
    """How many payloads a conversation span becomes, and their approximate size in bytes.

    Cheap (no translation): used to bound the delivery queue before translating on a delivery thread.
    """
    count, usage, size = 1, 0, 256 + _text_size(span.attributes)
    for event in span.events:
        if event.name == sc.TOKEN_USAGE_EVENT:
            usage = 1
        elif event.name in _ITEM_EVENTS:
            count += 1
            size += 128 + _text_size(event.attributes)
    return count + usage, size


_ITEM_EVENTS = frozenset({sc.MESSAGE_EVENT, sc.BUTTON_EVENT, sc.ACTION_EVENT, sc.ATTACHMENTS_EVENT})


def _text_size(attributes: Mapping[str, Any] | None) -> int:
    return sum(len(value) for value in (attributes or {}).values() if isinstance(value, str))


def translate(span: SpanLike) -> TurnPayloads | None:
    """Payloads for one conversation span, in the order the API needs; ``None`` for other spans.

    The conversation POST comes first; events follow in the order they were tracked; when any
    token usage was tracked, one ``token_usage`` action with the turn's sums comes last. An incomplete
    turn (``agentsight.turn.complete`` false) sends no messages, as ingest keeps them out of the transcript;
    attachments described only (bytes moved elsewhere) send nothing.
    """
    if not is_conversation_span(span):
        return None
    attributes = span.attributes or {}
    conversation_id = str(attributes[sc.CONVERSATION_ID])
    conversation = _conversation_payload(attributes, conversation_id, iso_timestamp(span.start_time))
    items: list[Payload] = []
    usage: dict[str, int] | None = None
    for event in _sent_events(span):
        event_attributes = event.attributes or {}
        if event.name == sc.TOKEN_USAGE_EVENT:
            usage = add_usage(usage, event_attributes)
            continue
        payload = _item_payload(event.name, event_attributes, conversation_id, iso_timestamp(event.timestamp))
        if payload is not None:
            items.append(payload)
    if usage is not None:
        items.append(_action("token_usage", conversation_id, iso_timestamp(span.end_time), usage))
    return TurnPayloads(conversation_id, conversation, tuple(items))


def outline(span: SpanLike) -> list[tuple[str, str]] | None:
    """The ``(kind, timestamp)`` of each payload :func:`translate` makes of ``span``, in order, without making them.

    Cheap (no bodies, no JSON, and only messages' and attachments' attributes read, so a model call's deferred
    attributes are left to the delivery thread): what a turn's summary needs on the caller's thread.
    """
    if not is_conversation_span(span):
        return None
    kinds = [("conversation", iso_timestamp(span.start_time))]
    usage = False
    for event in _sent_events(span):
        kind = _ITEM_KINDS.get(event.name) if event.name != sc.MESSAGE_EVENT else _message_kind(event.attributes or {})
        usage = usage or event.name == sc.TOKEN_USAGE_EVENT
        if kind is not None:
            kinds.append((kind, iso_timestamp(event.timestamp)))
    if usage:
        kinds.append(("action", iso_timestamp(span.end_time)))
    return kinds


_ITEM_KINDS = {sc.BUTTON_EVENT: "button", sc.ACTION_EVENT: "action", sc.ATTACHMENTS_EVENT: "attachments"}
"""The payload kind of each event that sends one (messages: :func:`_message_kind`)."""


def _sent_events(span: SpanLike) -> Iterator[Any]:
    """The events that count in the payloads: an incomplete turn's messages and attachments described only
    (bytes moved elsewhere) are left out."""
    complete = (span.attributes or {}).get(sc.TURN_COMPLETE, True) is not False
    for event in span.events:
        if event.name == sc.MESSAGE_EVENT and not complete:
            continue
        if event.name == sc.ATTACHMENTS_EVENT and sc.ATTACHMENTS_DESCRIPTORS in (event.attributes or {}):
            continue
        yield event


def _message_kind(attributes: Mapping[str, Any]) -> str:
    return "question" if attributes.get(sc.MESSAGE_SENDER, sc.SENDER_END_USER) == sc.SENDER_END_USER else "answer"


def _conversation_payload(attributes: Mapping[str, Any], conversation_id: str, timestamp: str) -> Payload:
    body: dict[str, Any] = {"timestamp": timestamp, "conversation_id": conversation_id}
    for field_name, attribute in sc.CONVERSATION_FIELDS:
        body[field_name] = attributes.get(attribute)
    body["metadata"] = _json_attribute(attributes, sc.CONVERSATION_METADATA, None)
    body["is_used"] = bool(attributes.get(sc.IS_USED, True))
    return Payload("conversation", body)


def _item_payload(
    name: str, attributes: Mapping[str, Any], conversation_id: str, timestamp: str
) -> Payload | None:
    metadata = _json_attribute(attributes, sc.METADATA, {})
    if name == sc.MESSAGE_EVENT:
        body = {
            "timestamp": timestamp,
            "content": attributes.get(sc.MESSAGE_CONTENT, ""),
            "sender": attributes.get(sc.MESSAGE_SENDER, sc.SENDER_END_USER),
            "conversation_id": conversation_id,
            "metadata": metadata,
        }
        return Payload(_message_kind(attributes), body)
    if name == sc.BUTTON_EVENT:
        body = {
            "timestamp": timestamp,
            "button_event": attributes.get(sc.BUTTON_EVENT_NAME),
            "label": attributes.get(sc.BUTTON_LABEL),
            "value": attributes.get(sc.BUTTON_VALUE),
            "conversation_id": conversation_id,
            "metadata": metadata,
        }
        return Payload("button", body)
    if name == sc.ACTION_EVENT:
        action = _action(str(attributes.get(sc.ACTION_NAME)), conversation_id, timestamp, metadata)
        for field_name, attribute, is_json in sc.ACTION_FIELDS:
            if attribute in attributes:
                value = attributes[attribute]
                action.body[field_name] = json.loads(value) if is_json else value
        return action
    if name == sc.ATTACHMENTS_EVENT:
        return _attachments(attributes, conversation_id, timestamp, metadata)
    return None


def _action(action_name: str, conversation_id: str, timestamp: str, metadata: Any) -> Payload:
    body = {
        "timestamp": timestamp,
        "action_name": action_name,
        "conversation_id": conversation_id,
        "metadata": metadata,
    }
    return Payload("action", body)


def _attachments(attributes: Mapping[str, Any], conversation_id: str, timestamp: str, metadata: Any) -> Payload:
    files = json.loads(attributes.get(sc.ATTACHMENTS_FILES, "[]"))
    sender = attributes.get(sc.ATTACHMENTS_SENDER, sc.SENDER_END_USER)
    if attributes.get(sc.ATTACHMENTS_MODE) == "form_data":
        parts = tuple(
            FilePart(f"attachment_{index}", item["filename"], item["mime_type"], base64.b64decode(item["data"]))
            for index, item in enumerate(files)
        )
        body = {"timestamp": timestamp, "sender": sender, "mode": "form_data", "metadata": metadata}
        return Payload("attachments", body, parts)
    body = {
        "timestamp": timestamp,
        "attachments": files,
        "metadata": metadata,
        "mode": "base64",
        "sender": sender,
        "conversation_id": conversation_id,
    }
    return Payload("attachments", body)


def _json_attribute(attributes: Mapping[str, Any], name: str, default: Any) -> Any:
    raw = attributes.get(name)
    return default if raw is None else json.loads(raw)
