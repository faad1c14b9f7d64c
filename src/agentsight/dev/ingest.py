"""``POST /api/ingest/`` of ``agentsight dev``: the document decoded, validated and projected into the store.

The spans of each conversation block become the same rows the REST payloads make, so reads, stats and the
dashboard show both alike: turns' ``agentsight.message`` events are messages (an incomplete turn is
archived, out of the transcript), ``button`` spans button clicks, ``tool``/``task`` spans actions, ``llm``
spans model-call actions with their token usage, ``attachment`` spans descriptors in the timeline; other
kinds are archived. A span stored before (same trace and span id) is skipped, so a retried batch is
stored once; a whole document is one transaction.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from agentsight.dev import records
from agentsight.dev.models import ConversationBlock, IngestDocument, IngestSpan, drf_errors, validate_blocks
from agentsight.dev.rest import TOKEN_USAGE_ACTION, ApiError, count, load_json
from agentsight.dev.store import DevStore, StoreWriter, utc_iso

MAX_INFLATED_BYTES = 64 * 1024 * 1024
"""Largest document accepted once gzip is inflated."""

CONVERSATION_KIND = "conversation"

BLOCK_FIELDS = ("conversation_id", "customer_id", "customer_ip_address", "device", "source", "language", "name",
                "environment", "metadata")

LLM_USAGE = {
    "prompt_tokens": "gen_ai.usage.input_tokens",
    "completion_tokens": "gen_ai.usage.output_tokens",
    "cache_read_tokens": "agentsight.llm.cache_read_tokens",
    "cache_write_tokens": "agentsight.llm.cache_write_tokens",
    "reasoning_tokens": "agentsight.llm.reasoning_tokens",
    "embedding_tokens": "agentsight.llm.embedding_tokens",
}
"""Store token category → the llm span attribute counting it."""


def inflate(raw: bytes, encoding: str) -> bytes:
    """The body without its ``Content-Encoding`` (none or gzip), inflated incrementally up to the bound."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding != "gzip":
        raise ApiError(415, {"detail": f'Unsupported Content-Encoding "{encoding}" in request.'})
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    inflated = bytearray()
    pending = raw
    try:
        while pending and not inflater.eof:
            inflated += inflater.decompress(pending, MAX_INFLATED_BYTES + 1 - len(inflated))
            if len(inflated) > MAX_INFLATED_BYTES:
                raise ApiError(413, {"detail": f"Inflated body larger than {MAX_INFLATED_BYTES} bytes."})
            pending = inflater.unconsumed_tail
    except zlib.error as error:
        raise ApiError(400, {"detail": f"Invalid gzip body: {error}."}) from None
    if not inflater.eof:
        raise ApiError(400, {"detail": "Invalid gzip body: truncated."})
    return bytes(inflated)


def load_document(body: bytes) -> dict[str, Any]:
    """The JSON object of an ingest body; raises :class:`ApiError` (400) when it is not one."""
    try:
        document = load_json(body)
    except ValueError as error:
        raise ApiError(400, {"detail": f"JSON parse error - {error}"}) from None
    if not isinstance(document, dict):
        raise ApiError(400, {"detail": 'Expected a JSON object with a "conversations" list.'})
    return document


def validate_document(document: dict[str, Any]) -> list[ConversationBlock]:
    """The document's validated blocks; raises :class:`ApiError` for the document itself, ``InvalidBlocks``."""
    try:
        IngestDocument.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in drf_errors(error).items())
        raise ApiError(400, {"detail": f"Invalid ingest document ({problems})."}) from None
    return validate_blocks(document["conversations"])


def store_blocks(store: DevStore, blocks: list[ConversationBlock]) -> None:
    """Project every block into ``store``, all in one transaction."""
    with store.write() as writer:
        for block in blocks:
            _store_block(writer, block)


def _store_block(writer: StoreWriter, block: ConversationBlock) -> None:
    kinds = {span.kind for span in block.spans}
    conversation = writer.upsert_conversation(
        {name: getattr(block, name) for name in BLOCK_FIELDS},
        initialized=not kinds or CONVERSATION_KIND in kinds,
        used=bool(kinds - {CONVERSATION_KIND}),
        created=utc_iso(min(span.started_at for span in block.spans)) if block.spans else None,
    )
    for span in block.spans:
        if writer.claim_span(conversation, span.trace_id, span.span_id):
            records.keep_span(writer, conversation, span)
            PROJECTIONS.get(span.kind, _archive)(writer, conversation, block.conversation_id, span)


# One projection per span kind ------------------------------------------------------------------------


def _visit(writer: StoreWriter, conversation: int, conversation_id: str, span: IngestSpan) -> None:
    """A ``conversation`` span only marks the visit (done by the block's upsert)."""


def _turn(writer: StoreWriter, conversation: int, conversation_id: str, span: IngestSpan) -> None:
    if str(span.attributes.get("agentsight.turn.complete", True)).lower() == "false":
        _archive(writer, conversation, conversation_id, span)
        return
    messages = sorted((event for event in span.events if event.name == "agentsight.message"),
                      key=lambda event: event.timestamp)
    for event in messages:
        attributes = event.attributes
        writer.add_item("message", conversation, utc_iso(event.timestamp), {
            "conversation_id": conversation_id,
            "content": _text(attributes.get("agentsight.message.content")),
            "sender": _text(attributes.get("agentsight.message.sender")),
            "metadata": _json_object(attributes.get("agentsight.message.metadata")),
        })


def _button(writer: StoreWriter, conversation: int, conversation_id: str, span: IngestSpan) -> None:
    attributes = span.attributes
    writer.add_item("button", conversation, utc_iso(span.started_at), {
        "conversation_id": conversation_id,
        "button_event": _text(attributes.get("agentsight.button.event")),
        "label": _text(attributes.get("agentsight.button.label")),
        "value": _text(attributes.get("agentsight.button.value")),
        "metadata": _json_object(attributes.get("agentsight.metadata")),
    })


def _tool(writer: StoreWriter, conversation: int, conversation_id: str, span: IngestSpan) -> None:
    attributes = span.attributes
    arguments = _parsed(attributes.get("agentsight.tool.arguments"))
    # A tool's arguments are what an action's ``tools_used`` holds (a seed action's travels here as it was given).
    tools_used = arguments if isinstance(arguments, dict) or arguments is None else {"arguments": arguments}
    _action(writer, conversation, conversation_id, span, _text(attributes.get("agentsight.tool.name")) or span.name,
            error=attributes.get("agentsight.tool.error"),
            tools_used=tools_used,
            response=_text(attributes.get("agentsight.tool.response")),
            metadata=_json_object(attributes.get("agentsight.metadata")))


def _llm(writer: StoreWriter, conversation: int, conversation_id: str, span: IngestSpan) -> None:
    attributes = span.attributes
    operation = _text(attributes.get("gen_ai.operation.name")) or "chat"
    system = _text(attributes.get("gen_ai.system") or attributes.get("gen_ai.provider.name")) or "unknown"
    model = _text(attributes.get("gen_ai.request.model") or attributes.get("gen_ai.response.model")) or span.name
    usage = {key: count(attributes.get(attribute)) for key, attribute in LLM_USAGE.items()}
    # Ingest's input tokens leave out cache reads and writes (upstream 0.1.x's rule): the total adds them back.
    billed = sum(usage[key] for key in ("prompt_tokens", "completion_tokens", "cache_read_tokens",
                                        "cache_write_tokens"))
    usage["total_tokens"] = max(billed, count(attributes.get("agentsight.llm.total_tokens")))
    if span.name == TOKEN_USAGE_ACTION and "gen_ai.request.model" not in attributes:
        # The sums of the seed API's track_token_usage(): shown as the REST wire's token_usage action is.
        _action(writer, conversation, conversation_id, span, TOKEN_USAGE_ACTION, error=None, usage=usage,
                metadata={key: usage[key] for key in ("prompt_tokens", "completion_tokens", "total_tokens",
                                                      "embedding_tokens")})
        return
    _action(writer, conversation, conversation_id, span, f"{operation} {system}/{model}",
            error=attributes.get("agentsight.llm.error"),
            metadata={"provider": system, "operation": operation, "model": model,
                      "input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"],
                      **{key: value for key, value in usage.items() if key.startswith(("cache", "reasoning"))}},
            usage=usage)


def _action(writer: StoreWriter, conversation: int, conversation_id: str, span: IngestSpan, name: str, *,
            error: Any, metadata: dict[str, Any], tools_used: dict[str, Any] | None = None,
            response: str | None = None, usage: dict[str, int] | None = None) -> None:
    if error is None and span.status == "error":
        error = span.otel.get("status_description") or "error"
    writer.add_item("action", conversation, utc_iso(span.started_at), {
        "conversation_id": conversation_id,
        "action_name": name,
        "started_at": utc_iso(span.started_at),
        "ended_at": utc_iso(span.ended_at),
        "duration_ms": span.duration_ms,
        "tools_used": tools_used,
        "response": response,
        "error_msg": _text(error),
        "metadata": metadata,
    }, usage)


def _attachment(writer: StoreWriter, conversation: int, conversation_id: str, span: IngestSpan) -> None:
    attributes = span.attributes
    described = _parsed(attributes.get("agentsight.attachment.files"))
    files = [{"filename": _text(file.get("filename") or file.get("name")),
              "mime_type": _text(file.get("mime_type") or file.get("mime")), "size": count(file.get("size"))}
             for file in (described if isinstance(described, list) else []) if isinstance(file, dict)]
    writer.add_item("attachments", conversation, utc_iso(span.started_at), {
        "conversation_id": conversation_id,
        "sender": _text(attributes.get("agentsight.attachment.sender")),
        "mode": _text(attributes.get("agentsight.attachment.mode")),
        "count": count(attributes.get("agentsight.attachment.count")) or len(files),
        "files": files,
        "descriptor": True,
        "metadata": _json_object(attributes.get("agentsight.metadata")),
    })


def _archive(writer: StoreWriter, conversation: int, conversation_id: str, span: IngestSpan) -> None:
    """Kept out of the transcript and the analytics, still readable in the conversation's ``archived``."""
    body = span.model_dump(mode="json", exclude={"otel"})
    body["span_kind"] = body.pop("kind")  # the item's own ``kind`` is "archived"
    body["reason"] = _text(span.attributes.get("agentsight.turn.incomplete_reason"))
    writer.add_item("archived", conversation, utc_iso(span.started_at), {"conversation_id": conversation_id, **body})


PROJECTIONS: dict[str, Callable[[StoreWriter, int, str, IngestSpan], None]] = {
    CONVERSATION_KIND: _visit,
    "turn": _turn,
    "button": _button,
    "tool": _tool,
    "task": _tool,
    "llm": _llm,
    "attachment": _attachment,
}
"""Span kind → its projection; other kinds are archived."""


# Attribute values ------------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    """Text as is, other values as JSON text (OTel arrays, numbers), ``None`` kept."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _parsed(value: Any) -> Any:
    """JSON text parsed (text that is not JSON kept as text); other values as they are."""
    if not isinstance(value, str):
        return value
    try:
        return load_json(value.encode())
    except ValueError:
        return value


def _json_object(value: Any) -> dict[str, Any]:
    parsed = _parsed(value)
    if parsed is None:
        return {}
    return parsed if isinstance(parsed, dict) else {"value": parsed}
