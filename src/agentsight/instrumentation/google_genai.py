"""Google Gen AI SDK (``google-genai``) instrumentation: Gemini content generation and embeddings, sync and async.

Wraps the methods that make one request each: ``Models._generate_content`` / ``_generate_content_stream``
and ``embed_content``, and their ``AsyncModels`` twins (``client.aio.models``). The public
``generate_content`` / ``generate_content_stream``, chats (``client.chats``) and automatic function calling
go through them, so every request to the model is one call, counted once, with its own usage (a public
call that makes several requests, for automatic function calling or continuation, is several calls).
Nothing from ``google.genai`` is imported until ``instrument()``: this module loads whether or not the
library is installed.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace

from agentsight.instrumentation.content import GEMINI_CONTENT, Prompt
from agentsight.instrumentation.genai import (
    GenAITracer,
    ModelCall,
    OperationSurface,
    attribute_value,
    field,
    start_model_call,
    text_list,
    unwrap_operations,
    wrap_operations,
)
from agentsight.instrumentation.instrumentor import AgentSightInstrumentor
from agentsight.instrumentation.streams import StreamWrapper
from agentsight.spans import semconv as sc

GEMINI_PROVIDER, VERTEX_PROVIDER = "gcp.gemini", "gcp.vertex_ai"
GENERATE_CONTENT = "generate_content"
_MODULE = "google.genai.models"
# (class, method, operation, returns a stream) of every wrapped surface.
SURFACES: tuple[OperationSurface, ...] = tuple(
    (cls, method, operation, streams)
    for cls in ("Models", "AsyncModels")
    for method, operation, streams in (
        ("_generate_content", GENERATE_CONTENT, False),
        ("_generate_content_stream", GENERATE_CONTENT, True),
        ("embed_content", sc.OPERATION_EMBEDDINGS, False),
    )
)
# Request attributes of a generation: attribute -> field of its ``config``.
_CONFIG_FIELDS = {
    sc.GEN_AI_REQUEST_MAX_TOKENS: "max_output_tokens",
    sc.GEN_AI_REQUEST_TEMPERATURE: "temperature",
    sc.GEN_AI_REQUEST_TOP_P: "top_p",
    sc.GEN_AI_REQUEST_TOP_K: "top_k",
    sc.GEN_AI_REQUEST_SEED: "seed",
    sc.GEN_AI_REQUEST_FREQUENCY_PENALTY: "frequency_penalty",
    sc.GEN_AI_REQUEST_PRESENCE_PENALTY: "presence_penalty",
    sc.GEN_AI_REQUEST_CHOICE_COUNT: "candidate_count",
}


class GoogleGenAIInstrumentor(AgentSightInstrumentor):
    """Instruments ``google-genai`` (entry point ``agentsight_google_genai``)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """The ``google-genai`` versions whose ``Models`` / ``AsyncModels`` methods are wrapped here."""
        return ("google-genai >= 1.0, < 4",)

    def _instrument(self, **kwargs: Any) -> None:
        wrap_operations(_MODULE, SURFACES, GenAITracer(__name__, kwargs), _start, _finish)

    def _uninstrument(self, **kwargs: Any) -> None:
        unwrap_operations(_MODULE, SURFACES)


def _start(tracer: trace.Tracer, operation: str, instance: Any, arguments: Mapping[str, Any]) -> ModelCall | None:
    api_client = getattr(instance, "_api_client", None)
    provider = VERTEX_PROVIDER if getattr(api_client, "vertexai", False) else GEMINI_PROVIDER
    request = _server_attributes(api_client)
    config = arguments.get("config")
    if operation == GENERATE_CONTENT:
        request.update({key: attribute_value(field(config, name)) for key, name in _CONFIG_FIELDS.items()})
        request[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = text_list(field(config, "stop_sequences"))
    model = arguments.get("model")
    prompt = Prompt(GEMINI_CONTENT, arguments) if operation == GENERATE_CONTENT else None
    return start_model_call(tracer, operation, provider, model if isinstance(model, str) else None, request, prompt)


def _server_attributes(api_client: Any) -> dict[str, Any]:
    """``server.address`` / ``server.port`` of the client's ``base_url``."""
    try:
        parts = urlsplit(field(api_client._http_options, "base_url"))  # a dict before google-genai 1.8
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except Exception:  # a client whose URL cannot be had: the call is still recorded
        return {}
    return {sc.SERVER_ADDRESS: parts.hostname, sc.SERVER_PORT: port} if parts.hostname else {}


def _finish(operation: str, streams: bool, call: ModelCall, result: Any, arguments: Mapping[str, Any]) -> Any:
    if streams:
        accumulator = _StreamAccumulator(call)
        return StreamWrapper(result, call, accumulator.add, accumulator.record)
    if operation == GENERATE_CONTENT:
        _describe(call, result)
    else:
        _describe_embeddings(call, result)
    call.end()
    return result


def _describe(call: ModelCall, response: Any) -> None:
    """Record a ``GenerateContentResponse`` (or what a stream's chunks added up to)."""
    usage = field(response, "usage_metadata")
    candidates = field(response, "candidates") or []
    contents = [field(candidate, "content") for candidate in candidates]
    parts = [part for content in contents for part in field(content, "parts") or []]
    prompt, tool_prompt = field(usage, "prompt_token_count"), field(usage, "tool_use_prompt_token_count")
    candidates_tokens, thoughts = field(usage, "candidates_token_count"), field(usage, "thoughts_token_count")
    input_tokens, output_tokens = _total(prompt, tool_prompt), _total(candidates_tokens, thoughts)
    total = field(usage, "total_token_count")
    if thoughts is None and output_tokens is not None and input_tokens is not None and isinstance(total, int):
        # google-genai < 1.8 drops thoughtsTokenCount (and toolUsePromptTokenCount): the total still counts them.
        output_tokens = max(output_tokens, total - input_tokens)
    call.record_response(
        model=field(response, "model_version"),
        response_id=field(response, "response_id"),
        finish_reasons=[reason for candidate in candidates if (reason := _reason(field(candidate, "finish_reason")))],
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=field(usage, "cached_content_token_count"),
        reasoning_tokens=thoughts,
        tool_calls=[name for part in parts if isinstance(name := field(field(part, "function_call"), "name"), str)],
        output_messages=contents,
    )


def _describe_embeddings(call: ModelCall, response: Any) -> None:
    """Record an ``EmbedContentResponse``: the Gemini API's usage, else Vertex AI's per-embedding token counts."""
    tokens = field(field(response, "usage_metadata"), "prompt_token_count")
    if tokens is None:
        embeddings = field(response, "embeddings") or []
        tokens = _total(*(field(field(embedding, "statistics"), "token_count") for embedding in embeddings))
    call.record_response(input_tokens=tokens)


def _total(*counts: Any) -> int | None:
    """The sum of the counts that are numbers (floats from Vertex AI made whole), ``None`` when none is."""
    numbers = [int(count) for count in counts if isinstance(count, (int, float)) and not isinstance(count, bool)]
    return sum(numbers) if numbers else None


def _reason(reason: Any) -> str | None:
    """A finish reason (the SDK's enum, or its text) in lower case: ``STOP`` -> ``stop``."""
    value = reason.value if isinstance(reason, enum.Enum) else reason
    return value.lower() if isinstance(value, str) and value else None


class _StreamAccumulator:
    """Adds up a stream's ``GenerateContentResponse`` chunks: the last usage, each candidate's parts and reason."""

    def __init__(self, call: ModelCall) -> None:
        self._call = call
        self._response: dict[str, Any] = {}
        self._candidates: dict[int, dict[str, Any]] = {}

    def add(self, chunk: Any) -> None:
        """Take what one chunk adds (the usage is cumulative: the last one wins)."""
        for key in ("model_version", "response_id", "usage_metadata"):
            self._response[key] = field(chunk, key) or self._response.get(key)
        for position, candidate in enumerate(field(chunk, "candidates") or []):
            index = field(candidate, "index")
            state = self._candidates.setdefault(index if isinstance(index, int) else position,
                                                {"parts": [], "finish_reason": None})
            state["finish_reason"] = field(candidate, "finish_reason") or state["finish_reason"]
            state["parts"].extend(field(field(candidate, "content"), "parts") or [])

    def record(self) -> None:
        """Record the whole stream on the span (called once, as it ends)."""
        candidates = [
            {"finish_reason": state["finish_reason"], "content": {"role": "model", "parts": state["parts"]}}
            for _, state in sorted(self._candidates.items())
        ]
        _describe(self._call, {**self._response, "candidates": candidates})
