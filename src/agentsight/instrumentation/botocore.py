"""Amazon Bedrock runtime instrumentation through ``botocore`` (so ``boto3``): ``Converse``, ``ConverseStream``,
``InvokeModel`` and ``InvokeModelWithResponseStream``.

botocore makes its client classes at run time, all on ``BaseClient``: its ``_make_api_call`` is wrapped,
and only a ``bedrock-runtime`` client's model operations become model calls (every other call runs as it
is). A ``ConverseStream`` answer's ``stream`` and an ``InvokeModelWithResponseStream`` answer's ``body`` are
handed back wrapped, so the call ends once, when the stream does; an ``InvokeModel`` answer's ``body`` is read
to describe it and handed back as a fresh body holding the same bytes. Model bodies are described when they
are Anthropic Messages or Converse-shaped (Amazon Nova); a stream of any other model family still gets its
token counts from the invocation metrics Bedrock adds to its last chunk. Nothing from ``botocore`` is imported
until ``instrument()``: this module loads whether or not the library is installed.
"""

from __future__ import annotations

import io
import json
from collections.abc import Collection, Mapping
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import wrapt
from opentelemetry import trace

from agentsight.instrumentation.anthropic import MessageStreamAccumulator, describe_message
from agentsight.instrumentation.content import ANTHROPIC_MESSAGES, BEDROCK_CONVERSE, Prompt
from agentsight.instrumentation.genai import (
    GenAITracer,
    ModelCall,
    attribute_value,
    field,
    start_model_call,
    text_list,
    unwrap_method,
    wrap_method,
)
from agentsight.instrumentation.instrumentor import AgentSightInstrumentor
from agentsight.instrumentation.raw import Fields
from agentsight.instrumentation.streams import StreamWrapper
from agentsight.spans import semconv as sc

PROVIDER = "aws.bedrock"
SERVICE = "bedrock-runtime"
_CONVERSE, _CONVERSE_STREAM = "Converse", "ConverseStream"
_INVOKE, _INVOKE_STREAM = "InvokeModel", "InvokeModelWithResponseStream"
OPERATIONS = frozenset({_CONVERSE, _CONVERSE_STREAM, _INVOKE, _INVOKE_STREAM})
"""The ``bedrock-runtime`` operations recorded as model calls."""
_SURFACE = ("botocore.client", "BaseClient", "_make_api_call")
# Request attributes of a Converse call: attribute -> field of its ``inferenceConfig``; of an Anthropic body.
_INFERENCE_FIELDS = {
    sc.GEN_AI_REQUEST_MAX_TOKENS: "maxTokens",
    sc.GEN_AI_REQUEST_TEMPERATURE: "temperature",
    sc.GEN_AI_REQUEST_TOP_P: "topP",
}
_BODY_FIELDS = {
    sc.GEN_AI_REQUEST_MAX_TOKENS: "max_tokens",
    sc.GEN_AI_REQUEST_TEMPERATURE: "temperature",
    sc.GEN_AI_REQUEST_TOP_P: "top_p",
    sc.GEN_AI_REQUEST_TOP_K: "top_k",
}
_CACHE_FIELDS = ("cacheReadInputTokens", "cacheWriteInputTokens")
_INVOCATION_METRICS = "amazon-bedrock-invocationMetrics"
"""What Bedrock adds to a response stream's last chunk, whatever the model: the call's token counts."""


class BotocoreInstrumentor(AgentSightInstrumentor):
    """Instruments ``botocore``'s Amazon Bedrock runtime client (entry point ``agentsight_botocore``)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """The ``botocore`` versions with the Converse API, whose ``BaseClient._make_api_call`` is wrapped here."""
        return ("botocore >= 1.34.116, < 2",)

    def _instrument(self, **kwargs: Any) -> None:
        tracer = GenAITracer(__name__, kwargs)
        wrap_method(*_SURFACE, partial(_start, tracer), _finish)

    def _uninstrument(self, **kwargs: Any) -> None:
        unwrap_method(*_SURFACE)


def _start(tracer: trace.Tracer, client: Any, arguments: Mapping[str, Any]) -> ModelCall | None:
    operation = arguments.get("operation_name")
    meta = getattr(client, "meta", None)
    if operation not in OPERATIONS or getattr(getattr(meta, "service_model", None), "service_name", None) != SERVICE:
        return None
    params = arguments.get("api_params")
    params = params if isinstance(params, Mapping) else {}
    model = params.get("modelId")
    request = _server_attributes(getattr(meta, "endpoint_url", None))
    if operation in (_INVOKE, _INVOKE_STREAM):
        body = _json(params.get("body"))
        request.update({key: attribute_value(field(body, name)) for key, name in _BODY_FIELDS.items()})
        request[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = text_list(field(body, "stop_sequences"))
        shape = ANTHROPIC_MESSAGES if field(body, "anthropic_version") else BEDROCK_CONVERSE  # else Amazon Nova's
        prompt = Prompt(shape, body) if isinstance(body, Mapping) else None
        request[sc.LLM_STREAMING] = True if operation == _INVOKE_STREAM else None
    else:
        config = params.get("inferenceConfig")
        request.update({key: attribute_value(field(config, name)) for key, name in _INFERENCE_FIELDS.items()})
        request[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = text_list(field(config, "stopSequences"))
        request[sc.LLM_STREAMING] = True if operation == _CONVERSE_STREAM else None
        prompt = Prompt(BEDROCK_CONVERSE, params)
    return start_model_call(tracer, "chat", PROVIDER, model if isinstance(model, str) else None, request, prompt)


def _server_attributes(url: Any) -> dict[str, Any]:
    """``server.address`` / ``server.port`` of the client's endpoint."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except Exception:  # a client whose URL cannot be had: the call is still recorded
        return {}
    return {sc.SERVER_ADDRESS: parts.hostname, sc.SERVER_PORT: port} if parts.hostname else {}


def _json(body: Any) -> Any:
    """An ``InvokeModel`` body (text or bytes of JSON) parsed, else ``None`` (a file, or not JSON)."""
    try:
        return json.loads(body) if isinstance(body, (str, bytes, bytearray)) else None
    except ValueError:
        return None


def _finish(call: ModelCall, result: Any, arguments: Mapping[str, Any]) -> Any:
    operation = arguments.get("operation_name")
    model = field(arguments.get("api_params"), "modelId")
    if operation == _CONVERSE_STREAM and isinstance(result, dict) and result.get("stream") is not None:
        accumulator = _ConverseStreamAccumulator(call, model, _request_id(result))
        result["stream"] = StreamWrapper(_Iterating(result["stream"]), call, accumulator.add, accumulator.record)
        return result
    if operation == _INVOKE_STREAM and isinstance(result, dict) and result.get("body") is not None:
        chunks = _ChunkAccumulator(call, model, _request_id(result))
        result["body"] = StreamWrapper(_Iterating(result["body"]), call, chunks.add, chunks.record)
        return result
    if operation == _INVOKE and isinstance(result, dict):
        _describe_invoke(call, result, model)
    elif isinstance(result, Mapping):
        _describe(call, result, model, _request_id(result))
    call.end()
    return result


def _request_id(result: Any) -> Any:
    return field(field(result, "ResponseMetadata"), "RequestId")


def _describe(call: ModelCall, response: Mapping[str, Any], model: Any, response_id: Any) -> None:
    """Record a Converse answer (or what a stream's events added up to, or a Converse-shaped model body)."""
    usage = field(response, "usage")
    input_tokens = field(usage, "inputTokens")
    if isinstance(input_tokens, int):  # Bedrock counts cache reads and writes apart from inputTokens
        input_tokens += sum(field(usage, key) or 0 for key in _CACHE_FIELDS)
        total, output_tokens = field(usage, "totalTokens"), field(usage, "outputTokens")
        cache_unknown = all(field(usage, key) is None for key in _CACHE_FIELDS)
        if cache_unknown and isinstance(total, int) and isinstance(output_tokens, int):
            input_tokens = max(input_tokens, total - output_tokens)  # botocore < 1.37.24 drops the cache counts
    message = field(field(response, "output"), "message")
    uses = [field(block, "toolUse") for block in field(message, "content") or []]
    reason = field(response, "stopReason")
    call.record_response(
        model=model,
        response_id=response_id,
        finish_reasons=[reason] if isinstance(reason, str) else [],
        input_tokens=input_tokens if isinstance(input_tokens, int) else None,
        output_tokens=field(usage, "outputTokens"),
        cache_read_tokens=field(usage, "cacheReadInputTokens"),
        cache_write_tokens=field(usage, "cacheWriteInputTokens"),
        tool_calls=[name for use in uses if isinstance(name := field(use, "name"), str)],
        output_messages=[message] if message is not None else None,
    )


def _describe_invoke(call: ModelCall, result: dict[str, Any], model: Any) -> None:
    """Read an ``InvokeModel`` body, give the caller a fresh one with the same bytes, and record what it says."""
    body = result.get("body")
    if body is None or not hasattr(body, "read"):
        return
    data = body.read()
    result["body"] = _fresh_body(data)
    answer = _json(data)
    if not isinstance(answer, dict):
        return
    if "output" in answer:
        _describe(call, answer, model, _request_id(result))
    else:
        describe_message(call, answer)


def _fresh_body(data: bytes) -> Any:
    from botocore.response import StreamingBody

    return StreamingBody(io.BytesIO(data), len(data))


class _Iterating(wrapt.ObjectProxy):  # type: ignore[misc]
    """botocore's ``EventStream`` (iterable, not an iterator) as an iterator, everything else passed through."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._self_events = iter(stream)

    def __iter__(self) -> _Iterating:
        return self

    def __next__(self) -> Any:
        return next(self._self_events)


class _ConverseStreamAccumulator:
    """Adds up a ConverseStream's events into the Converse answer they spell."""

    def __init__(self, call: ModelCall, model: Any, response_id: Any) -> None:
        self._call, self._model, self._response_id = call, model, response_id
        self._response: dict[str, Any] = {}
        self._blocks: dict[int, dict[str, Any]] = {}  # content block index -> its start and its deltas' pieces

    def add(self, event: Any) -> None:
        """Take what one event adds."""
        if not isinstance(event, Mapping):
            return
        if (start := event.get("contentBlockStart")) is not None:
            self._block(start)["start"] = field(start, "start")
        if (delta := event.get("contentBlockDelta")) is not None:
            piece = field(delta, "delta")
            text = field(piece, "text")
            text = text if isinstance(text, str) else field(field(piece, "toolUse"), "input")  # a piece of JSON
            if isinstance(text, str):
                self._block(delta)["pieces"].append(text)
        if "messageStop" in event:
            self._response["stopReason"] = field(event["messageStop"], "stopReason")
        if "metadata" in event:
            self._response["usage"] = field(event["metadata"], "usage")

    def _block(self, event: Any) -> dict[str, Any]:
        index = field(event, "contentBlockIndex")
        return self._blocks.setdefault(index if isinstance(index, int) else 0, {"start": None, "pieces": []})

    def record(self) -> None:
        """Record the whole stream on the span (called once, as it ends)."""
        content: list[dict[str, Any]] = []
        for _, block in sorted(self._blocks.items()):
            tool_use, pieces = field(block["start"], "toolUse"), "".join(block["pieces"])
            content.append({"toolUse": {**tool_use, "input": _json(pieces) if pieces else {}}}
                           if isinstance(tool_use, Mapping) else {"text": pieces})
        output = {"message": {"role": "assistant", "content": content}}
        _describe(self._call, {**self._response, "output": output}, self._model, self._response_id)


class _ChunkAccumulator:
    """Reads an ``InvokeModelWithResponseStream``'s chunks: each the JSON of one of the model's own stream events
    (Anthropic Messages events, or Converse-shaped ones from Amazon Nova), the last with Bedrock's invocation
    metrics, which count the tokens of a model whose events are neither."""

    def __init__(self, call: ModelCall, model: Any, response_id: Any) -> None:
        self._call, self._model = call, model
        self._anthropic = MessageStreamAccumulator(call)
        self._converse = _ConverseStreamAccumulator(call, model, response_id)
        self._shape: MessageStreamAccumulator | _ConverseStreamAccumulator | None = None
        self._metrics: Any = None

    def add(self, event: Any) -> None:
        """Take what one chunk adds."""
        data = field(field(event, "chunk"), "bytes")
        try:
            payload = json.loads(data, object_hook=Fields) if isinstance(data, (bytes, str)) else None
        except ValueError:
            return
        if not isinstance(payload, dict):
            return
        self._metrics = payload.get(_INVOCATION_METRICS, self._metrics)
        if isinstance(payload.get("type"), str):
            self._shape = self._anthropic
            self._anthropic.add(payload)
        elif self._shape is not self._anthropic and any(key in payload for key in _CONVERSE_EVENTS):
            self._shape = self._converse
            self._converse.add(payload)

    def record(self) -> None:
        """Record the whole stream on the span (called once, as it ends)."""
        if self._shape is not None:
            self._shape.record()
        elif self._metrics is not None:
            self._call.record_response(model=self._model, input_tokens=field(self._metrics, "inputTokenCount"),
                                       output_tokens=field(self._metrics, "outputTokenCount"))


_CONVERSE_EVENTS = ("messageStart", "contentBlockStart", "contentBlockDelta", "messageStop", "metadata")
"""The events of a Converse stream, which Amazon Nova's ``InvokeModelWithResponseStream`` chunks hold."""
