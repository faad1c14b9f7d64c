"""Pydantic models of ``agentsight dev``: the ingest document (docs/wire.md, upstream 0.1.x) and the JSON answers.

Unknown fields are ignored (a newer SDK may send more); a block that fails validation is reported with
its errors in Django REST framework's shape (``{"field.path": ["message"]}``) by :func:`drf_errors`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, ValidationError


def _utc(moment: datetime) -> datetime:
    """Naive times are UTC; aware ones are converted (a time UTC cannot hold is invalid)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("time out of range") from None


UtcTime = Annotated[datetime, AfterValidator(_utc)]
Hex16 = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{16}$")]
Hex32 = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{32}$")]
Text = Annotated[str, Field(max_length=255)]

MAX_REPORTED_BLOCKS = 20
"""Invalid blocks listed in a 400 answer; beyond it the answer says ``truncated``."""


class SpanEvent(BaseModel):
    """A span event: a message of a turn, an exception..."""

    name: str
    timestamp: UtcTime
    attributes: dict[str, Any] = Field(default_factory=dict)


class IngestSpan(BaseModel):
    """One span of a conversation block."""

    span_id: Hex16
    trace_id: Hex32
    parent_span_id: Hex16 | None = None
    kind: str
    name: str
    started_at: UtcTime
    ended_at: UtcTime
    duration_ms: Annotated[float, Field(allow_inf_nan=False)] | None = None
    status: Literal["unset", "ok", "error"] = "unset"
    attributes: dict[str, Any] = Field(default_factory=dict)
    events: list[SpanEvent] = Field(default_factory=list)
    otel: dict[str, Any] = Field(default_factory=dict)


class ConversationBlock(BaseModel):
    """One conversation of an ingest document: its fields and its spans, sorted by start time."""

    conversation_id: Annotated[str, Field(min_length=1, max_length=255)]
    customer_id: Text | None = None
    customer_ip_address: Text | None = None
    device: Text | None = None
    source: Text | None = None
    language: Text | None = None
    name: Text | None = None
    environment: Text | None = None
    metadata: dict[str, Any] | None = None
    spans: list[IngestSpan] = Field(default_factory=list)


class SdkInfo(BaseModel):
    """The sending SDK."""

    name: str | None = None
    version: str | None = None


class IngestDocument(BaseModel):
    """``POST /api/ingest/``: blocks are validated one by one (see :func:`validate_blocks`)."""

    sdk: SdkInfo | None = None
    conversations: list[dict[str, Any]]


class IngestRequest(BaseModel):
    """The ingest document as documented in ``/openapi.json`` (blocks typed; the route reads the body itself)."""

    sdk: SdkInfo | None = None
    conversations: list[ConversationBlock]


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its ``$defs`` references inlined (for an OpenAPI ``requestBody``)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inlined(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inlined(definitions[node["$ref"].rsplit("/", 1)[1]])
            return {key: inlined(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inlined(value) for value in node]
        return node

    return inlined(schema)


class IngestAnswer(BaseModel):
    """A stored ingest document: how many spans and conversation blocks it held."""

    accepted: int
    conversations: int


class Environment(BaseModel):
    """An environment the key may send to."""

    slug: str


class MeAnswer(BaseModel):
    """``GET /api/me/``: what the key may do."""

    role: str
    agent_id: int
    agent_name: str
    environments: list[Environment]
    capabilities: list[str]


class LookupAnswer(BaseModel):
    """``GET /api/conversations/lookup/``: the server id of a client conversation id."""

    id: int
    conversation_id: str


class BlockError(BaseModel):
    """An invalid block of an ingest document."""

    index: int
    conversation_id: Any = None
    errors: dict[str, list[str]]


class InvalidBlocks(Exception):
    """Some blocks of an ingest document are invalid; :attr:`answer` is the 400 body."""

    def __init__(self, errors: list[BlockError]) -> None:
        super().__init__(f"{len(errors)} invalid conversation block(s)")
        self.answer = {
            "detail": "Invalid conversation block(s).",
            "conversations": [error.model_dump() for error in errors[:MAX_REPORTED_BLOCKS]],
            "truncated": len(errors) > MAX_REPORTED_BLOCKS,
        }


def drf_errors(error: ValidationError) -> dict[str, list[str]]:
    """Pydantic's errors as ``{"dotted.field.path": [messages]}`` (``non_field_errors`` for the whole value)."""
    fields: dict[str, list[str]] = {}
    for entry in error.errors(include_url=False):
        name = ".".join(str(part) for part in entry["loc"]) or "non_field_errors"
        fields.setdefault(name, []).append(entry["msg"])
    return fields


def validate_blocks(blocks: list[Any]) -> list[ConversationBlock]:
    """Every block validated; raises :class:`InvalidBlocks` naming each invalid one."""
    valid: list[ConversationBlock] = []
    errors: list[BlockError] = []
    for index, block in enumerate(blocks):
        try:
            valid.append(ConversationBlock.model_validate(block))
        except ValidationError as error:
            raw_id = block.get("conversation_id") if isinstance(block, dict) else None
            errors.append(BlockError(index=index, conversation_id=raw_id if isinstance(raw_id, (str, int)) else None,
                                     errors=drf_errors(error)))
    if errors:
        raise InvalidBlocks(errors)
    return valid
