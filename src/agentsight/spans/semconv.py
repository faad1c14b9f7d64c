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
ATTACHMENTS_MODE = "agentsight.attachments.mode"
ATTACHMENTS_SENDER = "agentsight.attachments.sender"
ATTACHMENTS_FILES = "agentsight.attachments.files"
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
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
GEN_AI_SYSTEM = "gen_ai.system"
"""The provider attribute of older GenAI conventions, still set by some instrumentations."""
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
GEN_AI_TOOL_CALLS = "agentsight.gen_ai.tool_calls"
"""Names of the tools a model call asked for (not content, so recorded without content capture)."""
OPERATION_EMBEDDINGS = "embeddings"
MODEL_CALL_SPAN_ID = "agentsight.gen_ai.span_id"
"""On a model call's action event: the hex span id of the GenAI span it describes (for de-duplication)."""
