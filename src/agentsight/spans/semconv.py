"""Span, event and attribute names of the AgentSight span model (documented in docs/semantic-conventions.md).

A conversation turn is one span named :data:`CONVERSATION_SPAN`; tracked items are its events.
Metadata and other objects travel as JSON text so they round-trip exactly.
"""

from __future__ import annotations

INSTRUMENTATION_SCOPE = "agentsight"

CONVERSATION_SPAN = "agentsight.conversation"

# Conversation span attributes.
CONVERSATION_ID = "agentsight.conversation.id"
CUSTOMER_ID = "agentsight.conversation.customer_id"
CUSTOMER_IP_ADDRESS = "agentsight.conversation.customer_ip_address"
DEVICE = "agentsight.conversation.device"
SOURCE = "agentsight.conversation.source"
LANGUAGE = "agentsight.conversation.language"
NAME = "agentsight.conversation.name"
ENVIRONMENT = "agentsight.conversation.environment"
CONVERSATION_METADATA = "agentsight.conversation.metadata"
IS_USED = "agentsight.conversation.is_used"
CONVERSATION_RECORD = "agentsight.conversation.record"
"""On a conversation span with ``is_used`` false: what it records, ``conversation_opened`` (a visit, the default)
or ``metadata_updated`` (0.1.x ``update_metadata()`` outside a turn); the ingest span's name."""
TURN_NAME = "agentsight.turn.name"
"""The turn's name (0.1.x ``turn("ask")``; ``message`` for a message tracked outside a turn); default ``turn``."""

# Conversation fields in the order of the API body, with the span attribute holding each.
CONVERSATION_FIELDS: tuple[tuple[str, str], ...] = (
    ("customer_id", CUSTOMER_ID),
    ("customer_ip_address", CUSTOMER_IP_ADDRESS),
    ("device", DEVICE),
    ("source", SOURCE),
    ("language", LANGUAGE),
    ("name", NAME),
    ("environment", ENVIRONMENT),
)

# Event names.
MESSAGE_EVENT = "agentsight.message"
BUTTON_EVENT = "agentsight.button"
ACTION_EVENT = "agentsight.action"
ATTACHMENTS_EVENT = "agentsight.attachments"
METADATA_UPDATED_EVENT = "agentsight.metadata_updated"
"""0.1.x ``update_metadata()`` inside a turn: the turn's conversation metadata changed at this moment."""
TOKEN_USAGE_EVENT = "agentsight.token_usage"

# Event attributes.
METADATA = "agentsight.metadata"
MESSAGE_SENDER = "agentsight.message.sender"
MESSAGE_CONTENT = "agentsight.message.content"
BUTTON_EVENT_NAME = "agentsight.button.event"
BUTTON_LABEL = "agentsight.button.label"
BUTTON_VALUE = "agentsight.button.value"
ACTION_NAME = "agentsight.action.name"
ACTION_STARTED_AT = "agentsight.action.started_at"
ACTION_ENDED_AT = "agentsight.action.ended_at"
ACTION_DURATION_MS = "agentsight.action.duration_ms"
ACTION_TOOLS_USED = "agentsight.action.tools_used"
ACTION_RESPONSE = "agentsight.action.response"
ACTION_ERROR_MSG = "agentsight.action.error_msg"
ACTION_KIND = "agentsight.action.kind"
"""What made the action: ``tool`` or ``task`` (0.1.x ``@tool`` / ``@task``); absent for ``track_action()`` (a tool)."""
ACTION_KIND_TOOL = "tool"
ACTION_KIND_TASK = "task"
EXCEPTION_TYPE = "exception.type"
"""On an action event whose call raised (OTel's exception attributes): the exception's class name."""
EXCEPTION_MESSAGE = "exception.message"
EXCEPTION_STACKTRACE = "exception.stacktrace"
ATTACHMENTS_MODE = "agentsight.attachments.mode"
ATTACHMENTS_SENDER = "agentsight.attachments.sender"
ATTACHMENTS_FILES = "agentsight.attachments.files"
ATTACHMENTS_DESCRIPTORS = "agentsight.attachments.descriptors"
"""JSON list of file descriptors (name, size, type) for bytes moved elsewhere (0.1.x ``record_attachments()``,
or already sent by ``upload_attachments()``): described on the ingest wire, nothing uploaded, nothing on REST."""
USAGE_PROMPT_TOKENS = "agentsight.usage.prompt_tokens"
USAGE_COMPLETION_TOKENS = "agentsight.usage.completion_tokens"
USAGE_TOTAL_TOKENS = "agentsight.usage.total_tokens"
USAGE_EMBEDDING_TOKENS = "agentsight.usage.embedding_tokens"

# Optional action fields: (API body field, event attribute, attribute holds JSON text).
ACTION_FIELDS: tuple[tuple[str, str, bool], ...] = (
    ("started_at", ACTION_STARTED_AT, False),
    ("ended_at", ACTION_ENDED_AT, False),
    ("duration_ms", ACTION_DURATION_MS, False),
    ("tools_used", ACTION_TOOLS_USED, True),
    ("response", ACTION_RESPONSE, False),
    ("error_msg", ACTION_ERROR_MSG, False),
)

# Token usage: (API metadata key, event attribute).
USAGE_FIELDS: tuple[tuple[str, str], ...] = (
    ("prompt_tokens", USAGE_PROMPT_TOKENS),
    ("completion_tokens", USAGE_COMPLETION_TOKENS),
    ("total_tokens", USAGE_TOTAL_TOKENS),
    ("embedding_tokens", USAGE_EMBEDDING_TOKENS),
)

SENDER_END_USER = "end_user"
SENDER_AGENT = "agent"

# OTel GenAI semantic conventions read and written for model calls.
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P = "gen_ai.request.top_p"
GEN_AI_REQUEST_TOP_K = "gen_ai.request.top_k"
GEN_AI_REQUEST_STOP_SEQUENCES = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_FREQUENCY_PENALTY = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_PRESENCE_PENALTY = "gen_ai.request.presence_penalty"
GEN_AI_REQUEST_SEED = "gen_ai.request.seed"
GEN_AI_REQUEST_CHOICE_COUNT = "gen_ai.request.choice.count"
GEN_AI_REQUEST_ENCODING_FORMATS = "gen_ai.request.encoding_formats"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
"""Input tokens served from the provider's prompt cache (part of ``gen_ai.usage.input_tokens``)."""
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
"""Input tokens written to the provider's prompt cache (part of ``gen_ai.usage.input_tokens``)."""
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
"""Output tokens spent on reasoning (part of ``gen_ai.usage.output_tokens``)."""
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
"""On a model call made inside a turn: the AgentSight conversation id (unless the call already names one)."""
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
"""System instructions given apart from the chat history (captured content, like the messages)."""
GEN_AI_TOOL_DEFINITIONS = "gen_ai.tool.definitions"
"""The tools the model was offered (captured with content: their descriptions and schemas)."""
GEN_AI_SYSTEM = "gen_ai.system"
"""The provider attribute of older GenAI conventions, still set by some instrumentations."""
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
GEN_AI_TOOL_CALLS = "agentsight.gen_ai.tool_calls"
"""Names of the tools a model call asked for (not content, so recorded without content capture)."""
OPERATION_EMBEDDINGS = "embeddings"
OPERATION_TEXT_COMPLETION = "text_completion"
"""A prompt completed without chat roles (Ollama ``generate``, Mistral FIM)."""
OPERATION_COUNT_TOKENS = "count_tokens"
"""A provider counting a request's input tokens (Anthropic ``messages.count_tokens``): nothing is generated."""
GEN_AI_TOKEN_COUNT = "agentsight.gen_ai.token_count"
"""What a ``count_tokens`` call answered (not usage: no ``gen_ai.usage.*``, so it adds nothing to a turn's)."""
GEN_AI_AGENT_ID = "gen_ai.agent.id"
"""The provider-side agent a call runs (Mistral ``agents.complete``' ``agent_id``)."""
MODEL_CALL_SPAN_ID = "agentsight.gen_ai.span_id"
"""On a model call's action event: the hex span id of the GenAI span it describes (for de-duplication)."""

# The ingest wire (upstream 0.1.x conventions). Our turn span is translated into these by
# agentsight.export.ingest; the bridge and agentsight dev read them. See docs/semantic-conventions.md.
SPAN_KIND = "agentsight.span.kind"
"""What an ingest span is (``KIND_*``): the backend projects each kind onto its own table."""
ENTITY_NAME = "agentsight.entity.name"
"""The span's name as the thing it records calls itself (a tool's name, a button's label)."""
TURN_ID = "agentsight.turn.id"
"""The hex span id of the turn a span belongs to: groups a turn's family without walking parents."""
TURN_COMPLETE = "agentsight.turn.complete"
"""On a conversation span (our model and ingest): false keeps the turn's messages out of the transcript (its
actions and token spend still count). Absent means complete: seed turns always are; 0.1.x turns say so."""
TURN_INCOMPLETE_REASON = "agentsight.turn.incomplete_reason"
"""Why a turn is incomplete: ``error``, ``abandoned``, ``deadline``, ``shutdown`` or ``late_model_call``
(``REASON_*``)."""
REASON_ERROR = "error"
REASON_ABANDONED = "abandoned"
REASON_DEADLINE = "deadline"
REASON_SHUTDOWN = "shutdown"
REASON_LATE_MODEL_CALL = "late_model_call"
"""A follow-up of a sent turn carrying only a model call of it that ended later (a stream read on): no exchange."""
MESSAGE_METADATA = "agentsight.message.metadata"
"""A message's metadata as JSON text (on the ``agentsight.message`` event of a turn span)."""
CUSTOMER_IP = "agentsight.conversation.customer_ip"
"""Ingest's name for the customer IP attribute (the block field stays ``customer_ip_address``)."""
TOOL_NAME = "agentsight.tool.name"
TOOL_ARGUMENTS = "agentsight.tool.arguments"
"""JSON text; a seed action's ``tools_used`` travels here."""
TOOL_RESPONSE = "agentsight.tool.response"
TOOL_ERROR = "agentsight.tool.error"
ATTACHMENT_SENDER = "agentsight.attachment.sender"
ATTACHMENT_MODE = "agentsight.attachment.mode"
ATTACHMENT_COUNT = "agentsight.attachment.count"
ATTACHMENT_FILES = "agentsight.attachment.files"
"""JSON ``[{filename, size, mime_type}]``: descriptors only, the bytes go to ``/api/attachments/``."""
LLM_REQUESTED_MODEL = "agentsight.llm.requested_model"
"""The model asked for, when the call ran on another (resolved) id, which ``gen_ai.request.model`` holds."""
LLM_ERROR = "agentsight.llm.error"
LLM_MODEL_HINT = "agentsight.llm.model_hint"
"""On a GenAI span: the model named by 0.1.x ``model_hint()`` when the call began, used only if it resolves none."""
LLM_CACHE_READ_TOKENS = "agentsight.llm.cache_read_tokens"
LLM_CACHE_WRITE_TOKENS = "agentsight.llm.cache_write_tokens"
LLM_REASONING_TOKENS = "agentsight.llm.reasoning_tokens"
LLM_EMBEDDING_TOKENS = "agentsight.llm.embedding_tokens"
LLM_STREAMING = "agentsight.llm.streaming"
"""True on a streamed model call: on its GenAI span (no GenAI convention names it) and its ingest ``llm`` span."""
LLM_TOTAL_TOKENS = "agentsight.llm.total_tokens"
"""Ours: a ``track_token_usage()`` total that is more than its parts (the seed API accepts one alone)."""

KIND_CONVERSATION = "conversation"
KIND_TURN = "turn"
KIND_TOOL = "tool"
KIND_TASK = "task"
KIND_LLM = "llm"
KIND_BUTTON = "button"
KIND_ATTACHMENT = "attachment"
