"""A local stand-in LLM provider on 127.0.0.1 (tests, benchmarks, ``make demo``) that the real ``openai``,
``anthropic``, ``groq``, ``mistralai`` and ``ollama`` clients can call over HTTP.

Point a client at it with ``openai.OpenAI(base_url=server.openai_base_url, api_key=...)``,
``anthropic.Anthropic(base_url=server.anthropic_base_url, api_key=...)``,
``groq.Groq(base_url=server.groq_base_url, api_key=...)``,
``mistralai.client.Mistral(server_url=server.mistral_server_url, api_key=...)`` or
``ollama.Client(host=server.ollama_host)``; the cloud platforms' clients with
``openai.AzureOpenAI(azure_endpoint=server.azure_endpoint, ...)``,
``anthropic.AnthropicVertex(base_url=server.vertex_base_url, access_token=..., ...)`` and
``anthropic.AnthropicBedrock(base_url=server.bedrock_base_url, api_key=..., ...)`` (streams in AWS
event-stream frames, :mod:`agentsight.dev.llm_bedrock`). It speaks enough of each provider's wire format for the
clients to parse: OpenAI chat completions (``n`` choices, interleaved when streamed), Responses and
embeddings (Groq's chat completions and
embeddings are OpenAI's, under ``/openai``, with Groq's ``x_groq`` usage on a stream's last chunk),
Anthropic messages, Mistral chat, FIM and agents completions (usage always on a stream's last chunk) and
embeddings, and Ollama chat and generate (NDJSON when streamed) and embed, each with and without ``stream``, plus
provider-shaped error answers.

Replies are deterministic: the text is :attr:`FakeLLMServer.reply_text` (streamed as
:attr:`FakeLLMServer.stream_chunks` deltas), a request with ``tools`` is answered with a call of its
first tool with :data:`TOOL_ARGUMENTS`, token usage is fixed per API (see the ``*_USAGE`` constants),
and the answer's model is the requested one with a provider suffix (:func:`response_model`).
Every request is recorded before it is answered. Faults: :meth:`FakeLLMServer.fail_next` and
:meth:`FakeLLMServer.disconnect_mid_stream_next`.

Standard library only.
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import re
import socket
import struct
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from agentsight.dev import llm_bedrock, llm_cohere, llm_gemini
from agentsight.dev.llm_bedrock import BEDROCK_USAGE
from agentsight.dev.llm_cohere import COHERE_BILLED_UNITS, COHERE_EMBED_USAGE, COHERE_USAGE
from agentsight.dev.llm_gemini import GEMINI_EMBED_USAGE, GEMINI_MODEL_SUFFIX, GEMINI_USAGE
from agentsight.dev.llm_wire import TOOL_ARGUMENTS, TOOL_INPUT, Phase, embedding_vector, split_reply
from agentsight.dev.llm_wire import data_frame as _data_frame
from agentsight.dev.llm_wire import dumps as _dumps
from agentsight.dev.llm_wire import event_frame as _event_frame
from agentsight.serving import serve_in_background, stop_serving, write_response

__all__ = [
    "ANTHROPIC_MODEL_SUFFIX",
    "ANTHROPIC_USAGE",
    "BEDROCK_USAGE",
    "CHAT_CACHED_TOKENS",
    "CHAT_REASONING_TOKENS",
    "CHAT_USAGE",
    "COHERE_BILLED_UNITS",
    "COHERE_EMBED_USAGE",
    "COHERE_USAGE",
    "EMBEDDING_USAGE",
    "GEMINI_EMBED_USAGE",
    "GEMINI_MODEL_SUFFIX",
    "GEMINI_USAGE",
    "MISTRAL_EMBEDDING_USAGE",
    "MISTRAL_MODEL_SUFFIX",
    "MISTRAL_USAGE",
    "OLLAMA_DEFAULT_TAG",
    "OLLAMA_EMBED_USAGE",
    "OLLAMA_USAGE",
    "OPENAI_MODEL_SUFFIX",
    "REPLY_TEXT",
    "RESPONSES_USAGE",
    "TOOL_ARGUMENTS",
    "TOOL_INPUT",
    "FakeLLMServer",
    "RecordedRequest",
    "embedding_vector",
    "response_model",
    "split_reply",
]

REPLY_TEXT = "Hello from the fake model"
"""The default reply text, streamed or not."""

CHAT_USAGE: dict[str, int] = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
"""Token usage of every chat completion."""

CHAT_CACHED_TOKENS = 4
"""Of an OpenAI chat completion's prompt tokens, those read from the prompt cache (Groq's report none)."""

CHAT_REASONING_TOKENS = 2
"""Of an OpenAI chat completion's completion tokens, those spent reasoning (Groq's report none)."""

EMBEDDING_USAGE: dict[str, int] = {"prompt_tokens": 5, "total_tokens": 5}
"""Token usage of every embeddings request, however many inputs it has."""

RESPONSES_USAGE: dict[str, int] = {"input_tokens": 13, "output_tokens": 8, "total_tokens": 21}
"""Token usage of every Responses API reply."""

ANTHROPIC_USAGE: dict[str, int] = {"input_tokens": 17, "output_tokens": 9}
"""Token usage of every Anthropic message (``message_delta`` carries the cumulative ``output_tokens``)."""

OPENAI_MODEL_SUFFIX = "-2024-07-18"
"""Appended to the requested model in OpenAI answers: ``gpt-4o-mini`` -> ``gpt-4o-mini-2024-07-18``."""

ANTHROPIC_MODEL_SUFFIX = "-20241022"
"""Appended to the requested model in Anthropic answers: ``claude-x`` -> ``claude-x-20241022``."""

MISTRAL_USAGE: dict[str, int] = {"prompt_tokens": 14, "completion_tokens": 9, "total_tokens": 23}
"""Token usage of every Mistral chat completion (a stream's last chunk carries it, unasked)."""

MISTRAL_EMBEDDING_USAGE: dict[str, int] = {"prompt_tokens": 4, "completion_tokens": 0, "total_tokens": 4}
"""Token usage of every Mistral embeddings request."""

MISTRAL_MODEL_SUFFIX = "-2503"
"""Appended to the requested model in Mistral answers: ``mistral-small`` -> ``mistral-small-2503``."""

OLLAMA_USAGE: dict[str, int] = {"prompt_eval_count": 19, "eval_count": 6}
"""Token counts of every Ollama chat answer (a stream's last, ``done`` line carries them)."""

OLLAMA_EMBED_USAGE: dict[str, int] = {"prompt_eval_count": 3}
"""Token count of every Ollama embed answer, however many inputs it has."""

OLLAMA_DEFAULT_TAG = ":latest"
"""Added to a requested Ollama model without a tag, as Ollama names it: ``llama3.2`` -> ``llama3.2:latest``."""

_CREATED = 1_700_000_000  # fixed timestamps keep answers byte-for-byte deterministic
_CREATED_AT = "2023-11-14T22:13:20Z"  # _CREATED as Ollama writes it
_ANTHROPIC_PATHS = ("/v1/messages", "/v1/messages/count_tokens")
_OLLAMA_PREFIX = "/api/"
_MISTRAL_PREFIX = "/mistral"
_SSE = "text/event-stream; charset=utf-8"
_NDJSON = "application/x-ndjson"
_OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "not_found"),
    409: ("invalid_request_error", "conflict"),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}

Provider = Literal["openai", "anthropic", "mistral", "ollama"]
"""Whose conventions an answer follows (its model name; for errors, Mistral's are OpenAI's)."""


@dataclass
class RecordedRequest:
    """One request as the fake server received it."""

    method: str
    path: str
    """The path without the query string, e.g. ``/v1/chat/completions``."""
    headers: dict[str, str]
    """Header names in lower case."""
    body: Any
    """The parsed JSON body, or ``None`` when the body is empty or not JSON."""
    raw: bytes
    client_port: int
    """The client's source port: equal across requests that reused one keep-alive connection."""


@dataclass
class _Failure:
    status: int
    body: dict[str, Any] | None
    retry_after: str | None


def response_model(requested: object, provider: Provider) -> str:
    """The model an answer names for ``requested``: the requested name with the provider's suffix.

    Ollama's instead has the default tag when it has none (:data:`OLLAMA_DEFAULT_TAG`).
    """
    name = requested if isinstance(requested, str) and requested else "fake-model"
    if provider == "ollama":
        return name if ":" in name else name + OLLAMA_DEFAULT_TAG
    suffix = {"openai": OPENAI_MODEL_SUFFIX, "mistral": MISTRAL_MODEL_SUFFIX}.get(provider, ANTHROPIC_MODEL_SUFFIX)
    return name if name.endswith(suffix) else name + suffix


class FakeLLMServer:
    """A threaded HTTP/1.1 server imitating the OpenAI and Anthropic APIs; ``start()``/``stop()`` or ``with``."""

    stream_chunks: int = 5
    """How many content deltas (text, or tool-call argument pieces) a streamed reply has."""
    reply_text: str = REPLY_TEXT
    """The assistant's reply text."""
    reply_for: Callable[[dict[str, Any]], str] | None = None
    """When set, OpenAI chat completions answer ``reply_for(request_body)`` instead of :attr:`reply_text`
    (``make demo`` picks a reply fitting the question among several)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.stream_chunks = type(self).stream_chunks
        self.reply_text = type(self).reply_text
        self.reply_for = type(self).reply_for
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._failures: deque[_Failure] = deque()
        self._disconnects: deque[int] = deque()
        self._ids = itertools.count(1)
        self._server = _HTTPServer((host, port), self)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The server's root URL, ``http://127.0.0.1:PORT``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def openai_base_url(self) -> str:
        """The ``base_url`` for ``openai.OpenAI``: :attr:`url` + ``/v1``."""
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """The ``base_url`` for ``anthropic.Anthropic``: :attr:`url` (the client adds ``/v1``)."""
        return self.url

    @property
    def groq_base_url(self) -> str:
        """The ``base_url`` for ``groq.Groq``: :attr:`url` (the client adds ``/openai/v1``)."""
        return self.url

    @property
    def mistral_server_url(self) -> str:
        """The ``server_url`` for Mistral's client: :attr:`url` + ``/mistral`` (the client adds ``/v1``)."""
        return self.url + _MISTRAL_PREFIX

    @property
    def azure_endpoint(self) -> str:
        """The ``azure_endpoint`` for ``openai.AzureOpenAI``: :attr:`url` (the client adds ``/openai/deployments``)."""
        return self.url

    @property
    def vertex_base_url(self) -> str:
        """The ``base_url`` for ``anthropic.AnthropicVertex``: :attr:`url` + ``/v1`` (the client adds the rest)."""
        return self.url + "/v1"

    @property
    def bedrock_base_url(self) -> str:
        """The ``base_url`` for ``anthropic.AnthropicBedrock``: :attr:`url` (the client adds ``/model/.../invoke``)."""
        return self.url

    @property
    def ollama_host(self) -> str:
        """The ``host`` for ``ollama.Client``: :attr:`url` (the client adds ``/api``)."""
        return self.url

    @property
    def gemini_base_url(self) -> str:
        """The ``base_url`` for ``google.genai.Client(http_options={"base_url": ...})``: :attr:`url` (the client
        adds ``/v1beta/models/...``); routes in :mod:`agentsight.dev.llm_gemini`."""
        return self.url

    @property
    def cohere_base_url(self) -> str:
        """The ``base_url`` for ``cohere.ClientV2``: :attr:`url` (the client adds ``/v2/...``); routes in
        :mod:`agentsight.dev.llm_cohere`."""
        return self.url

    @property
    def bedrock_endpoint_url(self) -> str:
        """The ``endpoint_url`` for ``boto3.client("bedrock-runtime")``: :attr:`url` (the client adds
        ``/model/...``); Converse routes in :mod:`agentsight.dev.llm_bedrock`, InvokeModel is Anthropic's."""
        return self.url

    def start(self) -> FakeLLMServer:
        """Serve in a daemon thread; returns ``self``."""
        if self._thread is None:
            self._thread = serve_in_background(self._server, "fake-llm")
        return self

    def stop(self) -> None:
        """Stop serving, cut open keep-alive connections and close the listening socket."""
        stop_serving(self._server, self._thread)
        self._thread = None
        self._server.close_connections()

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def fail_next(
        self, status: int, body: dict[str, Any] | None = None, retry_after: str | None = None, count: int = 1
    ) -> None:
        """Answer the next ``count`` requests (any path) with HTTP ``status`` instead of a reply.

        The body is the provider's error JSON (OpenAI, Groq and Mistral ``{"error": {...}}``, Anthropic
        ``{"type": "error", "error": {...}}``, Ollama ``{"error": "..."}``) unless ``body`` is given, which
        is sent as it is.
        ``retry_after`` becomes the ``Retry-After`` header. Calls queue up in order. Mind that the
        clients retry 429/5xx themselves (``max_retries=2`` by default) and each retry takes one.
        """
        with self._lock:
            self._failures.extend(_Failure(status, body, retry_after) for _ in range(count))

    def disconnect_mid_stream_next(self, after_chunks: int = 2) -> None:
        """Make the next streaming request end abruptly after ``after_chunks`` content deltas.

        The stream's opening events (role chunk, ``response.created``..., ``message_start``...; an
        Ollama stream has none) are sent, then ``after_chunks`` deltas, then the connection is shut
        down mid-body (an incomplete chunked body), before any finish reason, usage or end event.
        Non-streaming requests do not take it.
        """
        with self._lock:
            self._disconnects.append(after_chunks)

    def reset(self) -> None:
        """Forget recorded requests and pending faults, and restore the default reply settings."""
        with self._lock:
            self.requests.clear()
            self._failures.clear()
            self._disconnects.clear()
        self.stream_chunks = type(self).stream_chunks
        self.reply_text = type(self).reply_text
        self.reply_for = type(self).reply_for

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """The recorded requests to ``path`` (e.g. ``/v1/messages``), in arrival order."""
        with self._lock:
            return [request for request in self.requests if request.path == path]

    # -- serving ------------------------------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        raw = _read_body(handler)
        headers = {key.lower(): value for key, value in handler.headers.items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = urlsplit(handler.path).path
        request = RecordedRequest(handler.command, path, headers, body, raw, handler.client_address[1])
        with self._lock:
            self.requests.append(request)
            failure = self._failures.popleft() if self._failures else None
            number = next(self._ids)
        provider = _error_provider(path)
        id_header = {"request-id" if provider == "anthropic" else "x-request-id": f"req_fake_{number}"}
        if failure is not None:
            error = failure.body if failure.body is not None else _error_body(provider, failure.status, None)
            extra = dict(id_header)
            if failure.retry_after is not None:
                extra["Retry-After"] = failure.retry_after
            _send_json(handler, failure.status, error, extra)
            return
        route, body = _route(path, body)
        if route is None or handler.command != "POST":
            status = 404 if route is None else 405
            message = f"Unknown request URL: {handler.command} {path}."
            _send_json(handler, status, _error_body(provider, status, message), id_header)
            return
        if not isinstance(body, dict):
            message = "We could not parse the JSON body of your request."
            _send_json(handler, 400, _error_body(provider, 400, message), id_header)
            return
        try:
            answer = route(self, body, number)
        except Exception as error:  # a fixture bug: say so loudly rather than hang the client
            traceback.print_exc()
            _send_json(handler, 500, _error_body(provider, 500, f"fake server bug: {error!r}"), id_header)
            return
        if isinstance(answer, dict):
            _send_json(handler, 200, answer, id_header)
            return
        with self._lock:
            cut = self._disconnects.popleft() if self._disconnects else None
        content_type = _NDJSON if provider == "ollama" else _SSE
        if llm_bedrock.is_event_stream(path):
            content_type = llm_bedrock.STREAM_CONTENT_TYPE
        _send_stream(handler, answer, cut, id_header, content_type)

    # -- OpenAI -------------------------------------------------------------------------------------

    def _chat_completions(
        self, body: dict[str, Any], number: int, groq: bool = False
    ) -> dict[str, Any] | list[tuple[Phase, bytes]]:
        """OpenAI's chat completions; Groq's (``groq``) add ``x_groq``, with the usage on a stream's last chunk."""
        model = response_model(body.get("model"), "openai")
        completion_id = f"chatcmpl-fake-{number}"
        tool_name = _first_tool_name(body.get("tools"))
        call_id = f"call_fake_{number}"
        usage = {
            **CHAT_USAGE,
            "prompt_tokens_details": {"cached_tokens": 0 if groq else CHAT_CACHED_TOKENS, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0 if groq else CHAT_REASONING_TOKENS,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        common = {"created": _CREATED, "model": model, "service_tier": "default", "system_fingerprint": "fp_fake"}
        finish_reason = "tool_calls" if tool_name else "stop"
        x_groq: dict[str, Any] = {"id": f"req_fake_{number}"}
        count = body.get("n") if isinstance(body.get("n"), int) and body["n"] > 1 else 1
        text = self.reply_text if self.reply_for is None else self.reply_for(body)
        if not body.get("stream"):
            choices = []
            for index in range(count):
                message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None, "annotations": []}
                if tool_name:
                    function = {"name": tool_name, "arguments": TOOL_ARGUMENTS}
                    message["tool_calls"] = [{"id": call_id, "type": "function", "function": function}]
                else:
                    message["content"] = text
                choices.append({"index": index, "message": message, "logprobs": None, "finish_reason": finish_reason})
            reply = {"id": completion_id, "object": "chat.completion", **common, "choices": choices, "usage": usage}
            return {**reply, "x_groq": x_groq} if groq else reply

        stream_options = body.get("stream_options")
        include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True

        def chunk(index: int, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            data: dict[str, Any] = {"id": completion_id, "object": "chat.completion.chunk", **common}
            data["choices"] = [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]
            if include_usage:
                data["usage"] = None
            return _data_frame({**data, **extra})

        # With ``n`` > 1 the choices' chunks interleave, each chunk naming its choice's index, as OpenAI's do.
        frames: list[tuple[Phase, bytes]] = []
        choices = range(count)
        if tool_name:
            opening = {"index": 0, "id": call_id, "type": "function", "function": {"name": tool_name, "arguments": ""}}
            opening_delta = {"role": "assistant", "content": None, "tool_calls": [opening]}
            frames.extend(("pre", chunk(index, opening_delta)) for index in choices)
            for piece in split_reply(TOOL_ARGUMENTS, self.stream_chunks):
                arguments = {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
                frames.extend(("delta", chunk(index, arguments)) for index in choices)
        else:
            opening_delta = {"role": "assistant", "content": "", "refusal": None}
            frames.extend(("pre", chunk(index, opening_delta)) for index in choices)
            for piece in split_reply(text, self.stream_chunks):
                frames.extend(("delta", chunk(index, {"content": piece})) for index in choices)
        last_extra = {"x_groq": {**x_groq, "usage": dict(CHAT_USAGE)}} if groq else {}
        frames.extend(("post", chunk(index, {}, finish_reason, **last_extra)) for index in choices)
        if include_usage:
            last = {"id": completion_id, "object": "chat.completion.chunk", **common, "choices": [], "usage": usage}
            frames.append(("post", _data_frame(last)))
        frames.append(("post", b"data: [DONE]\n\n"))
        return frames

    def _responses(self, body: dict[str, Any], number: int) -> dict[str, Any] | list[tuple[Phase, bytes]]:
        tools = body.get("tools") if isinstance(body.get("tools"), list) else []
        tool_name = _first_tool_name(tools)
        usage = {
            "input_tokens": RESPONSES_USAGE["input_tokens"],
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": RESPONSES_USAGE["output_tokens"],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": RESPONSES_USAGE["total_tokens"],
        }

        def response(status: str, output: list[dict[str, Any]], final: bool) -> dict[str, Any]:
            return {
                "id": f"resp_fake_{number}",
                "object": "response",
                "created_at": _CREATED,
                "completed_at": _CREATED + 1 if final else None,
                "status": status,
                "background": False,
                "error": None,
                "incomplete_details": None,
                "instructions": body.get("instructions"),
                "max_output_tokens": body.get("max_output_tokens"),
                "model": response_model(body.get("model"), "openai"),
                "output": output,
                "parallel_tool_calls": True,
                "previous_response_id": body.get("previous_response_id"),
                "reasoning": {"effort": None, "summary": None},
                "service_tier": "default",
                "store": True,
                "temperature": 1.0,
                "text": {"format": {"type": "text"}},
                "tool_choice": "auto",
                "tools": tools,
                "top_p": 1.0,
                "truncation": "disabled",
                "usage": usage if final else None,
                "user": None,
                "metadata": {},
            }

        if tool_name:
            item_id = f"fc_fake_{number}"
            item: dict[str, Any] = {
                "type": "function_call",
                "id": item_id,
                "call_id": f"call_fake_{number}",
                "name": tool_name,
                "arguments": TOOL_ARGUMENTS,
                "status": "completed",
            }
        else:
            item_id = f"msg_fake_{number}"
            part = {"type": "output_text", "text": self.reply_text, "annotations": [], "logprobs": []}
            item = {"type": "message", "id": item_id, "status": "completed", "role": "assistant", "content": [part]}
        if not body.get("stream"):
            return response("completed", [item], final=True)

        sequence = itertools.count()

        def event(kind: str, **fields: Any) -> bytes:
            return _event_frame(kind, {"type": kind, "sequence_number": next(sequence), **fields})

        frames: list[tuple[Phase, bytes]] = [
            ("pre", event("response.created", response=response("in_progress", [], final=False))),
            ("pre", event("response.in_progress", response=response("in_progress", [], final=False))),
        ]
        at = {"item_id": item_id, "output_index": 0}
        if tool_name:
            opening = {**item, "arguments": "", "status": "in_progress"}
            frames.append(("pre", event("response.output_item.added", output_index=0, item=opening)))
            for piece in split_reply(TOOL_ARGUMENTS, self.stream_chunks):
                frames.append(("delta", event("response.function_call_arguments.delta", **at, delta=piece)))
            frames.append(("post", event("response.function_call_arguments.done", **at, arguments=TOOL_ARGUMENTS)))
        else:
            empty_part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            opening = {**item, "status": "in_progress", "content": []}
            frames.append(("pre", event("response.output_item.added", output_index=0, item=opening)))
            frames.append(("pre", event("response.content_part.added", **at, content_index=0, part=empty_part)))
            for piece in split_reply(self.reply_text, self.stream_chunks):
                text_delta = event("response.output_text.delta", **at, content_index=0, delta=piece, logprobs=[])
                frames.append(("delta", text_delta))
            done = event("response.output_text.done", **at, content_index=0, text=self.reply_text, logprobs=[])
            frames.append(("post", done))
            frames.append(("post", event("response.content_part.done", **at, content_index=0, part=part)))
        frames.append(("post", event("response.output_item.done", output_index=0, item=item)))
        frames.append(("post", event("response.completed", response=response("completed", [item], final=True))))
        return frames

    def _embeddings(self, body: dict[str, Any], number: int) -> dict[str, Any]:
        given = body.get("input")
        if isinstance(given, list) and given and not all(isinstance(token, int) for token in given):
            count = len(given)  # a list of strings or of token lists
        else:
            count = 1  # one string, or one list of tokens
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index in range(count):
            vector = embedding_vector(index)
            encoded: Any = vector
            if as_base64:
                encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        model = response_model(body.get("model"), "openai")
        return {"object": "list", "data": data, "model": model, "usage": dict(EMBEDDING_USAGE)}

    # -- Anthropic ----------------------------------------------------------------------------------

    def _messages(self, body: dict[str, Any], number: int) -> dict[str, Any] | list[tuple[Phase, bytes]]:
        tool_name = _first_tool_name(body.get("tools"))
        block: dict[str, Any]
        if tool_name:
            block = {"type": "tool_use", "id": f"toolu_fake_{number}", "name": tool_name, "input": dict(TOOL_INPUT)}
        else:
            block = {"type": "text", "text": self.reply_text}
        stop_reason = "tool_use" if tool_name else "end_turn"

        def message(content: list[dict[str, Any]], stop: str | None, output_tokens: int) -> dict[str, Any]:
            return {
                "id": f"msg_fake_{number}",
                "type": "message",
                "role": "assistant",
                "model": response_model(body.get("model"), "anthropic"),
                "content": content,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": ANTHROPIC_USAGE["input_tokens"],
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": output_tokens,
                    "service_tier": "standard",
                },
            }

        if not body.get("stream"):
            return message([block], stop_reason, ANTHROPIC_USAGE["output_tokens"])

        def event(kind: str, **fields: Any) -> bytes:
            return _event_frame(kind, {"type": kind, **fields})

        opening = {**block, "input": {}} if tool_name else {**block, "text": ""}
        frames: list[tuple[Phase, bytes]] = [
            ("pre", event("message_start", message=message([], None, 1))),
            ("pre", event("content_block_start", index=0, content_block=opening)),
            ("pre", event("ping")),
        ]
        if tool_name:
            for piece in split_reply(TOOL_ARGUMENTS, self.stream_chunks):
                delta = {"type": "input_json_delta", "partial_json": piece}
                frames.append(("delta", event("content_block_delta", index=0, delta=delta)))
        else:
            for piece in split_reply(self.reply_text, self.stream_chunks):
                delta = {"type": "text_delta", "text": piece}
                frames.append(("delta", event("content_block_delta", index=0, delta=delta)))
        final_delta = {"stop_reason": stop_reason, "stop_sequence": None}
        final_usage = {"output_tokens": ANTHROPIC_USAGE["output_tokens"]}
        frames.append(("post", event("content_block_stop", index=0)))
        frames.append(("post", event("message_delta", delta=final_delta, usage=final_usage)))
        frames.append(("post", event("message_stop")))
        return frames

    # -- Mistral ------------------------------------------------------------------------------------

    def _mistral_chat(self, body: dict[str, Any], number: int) -> dict[str, Any] | list[tuple[Phase, bytes]]:
        tool_name = _first_tool_name(body.get("tools"))
        tool_calls = None
        if tool_name:  # Mistral sends a tool call whole, also when streaming
            function = {"name": tool_name, "arguments": TOOL_ARGUMENTS}
            tool_calls = [{"id": f"call_fake_{number}", "type": "function", "function": function, "index": 0}]
        finish_reason = "tool_calls" if tool_name else "stop"
        model = response_model(body.get("model"), "mistral")
        common = {"id": f"cmpl-fake-{number}", "created": _CREATED, "model": model}
        if not body.get("stream"):
            content = "" if tool_name else self.reply_text
            message = {"role": "assistant", "content": content, "tool_calls": tool_calls, "prefix": False}
            choice = {"index": 0, "message": message, "finish_reason": finish_reason}
            return {**common, "object": "chat.completion", "usage": dict(MISTRAL_USAGE), "choices": [choice]}

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return _data_frame({**common, "object": "chat.completion.chunk", "choices": [choice], **extra})

        frames: list[tuple[Phase, bytes]] = [("pre", chunk({"role": "assistant", "content": ""}))]
        if tool_calls:
            frames.append(("delta", chunk({"tool_calls": tool_calls})))
        else:
            pieces = split_reply(self.reply_text, self.stream_chunks)
            frames.extend(("delta", chunk({"content": piece})) for piece in pieces)
        frames.append(("post", chunk({"content": ""}, finish_reason, usage=dict(MISTRAL_USAGE))))
        frames.append(("post", b"data: [DONE]\n\n"))
        return frames

    def _mistral_embeddings(self, body: dict[str, Any], number: int) -> dict[str, Any]:
        model = response_model(body.get("model"), "mistral")
        reply = self._embeddings(body, number)
        return {"id": f"embd-fake-{number}", **reply, "model": model, "usage": dict(MISTRAL_EMBEDDING_USAGE)}

    # -- Ollama -------------------------------------------------------------------------------------

    def _ollama_chat(self, body: dict[str, Any], number: int) -> dict[str, Any] | list[tuple[Phase, bytes]]:
        tool_name = _first_tool_name(body.get("tools"))
        model = response_model(body.get("model"), "ollama")
        final = {
            "done_reason": "stop",
            "total_duration": 5_000_000,
            "load_duration": 1_000_000,
            "prompt_eval_count": OLLAMA_USAGE["prompt_eval_count"],
            "prompt_eval_duration": 2_000_000,
            "eval_count": OLLAMA_USAGE["eval_count"],
            "eval_duration": 2_000_000,
        }

        def answer(message: dict[str, Any], done: bool) -> dict[str, Any]:
            reply = {"model": model, "created_at": _CREATED_AT, "message": {"role": "assistant", **message}}
            return {**reply, "done": True, **final} if done else {**reply, "done": False}

        tool_message: dict[str, Any] = {}
        if tool_name:  # Ollama sends a tool call whole, also when streaming
            function = {"name": tool_name, "arguments": dict(TOOL_INPUT)}
            tool_message = {"content": "", "tool_calls": [{"id": f"call_fake_{number}", "function": function}]}
        if body.get("stream") is False:  # Ollama streams unless told not to
            return answer(tool_message or {"content": self.reply_text}, done=True)
        if tool_message:
            frames: list[tuple[Phase, bytes]] = [("delta", _ndjson_line(answer(tool_message, done=False)))]
        else:
            pieces = split_reply(self.reply_text, self.stream_chunks)
            frames = [("delta", _ndjson_line(answer({"content": piece}, done=False))) for piece in pieces]
        frames.append(("post", _ndjson_line(answer({"content": ""}, done=True))))
        return frames

    def _ollama_generate(self, body: dict[str, Any], number: int) -> dict[str, Any] | list[tuple[Phase, bytes]]:
        """Ollama's generate: the chat answer (or its lines) with the text as ``response``, no ``message``."""
        answer = self._ollama_chat({"model": body.get("model"), "stream": body.get("stream")}, number)
        if isinstance(answer, dict):
            return _as_generated(answer)
        return [(phase, _ndjson_line(_as_generated(json.loads(line)))) for phase, line in answer]

    def _ollama_embed(self, body: dict[str, Any], number: int) -> dict[str, Any]:
        given = body.get("input")
        count = len(given) if isinstance(given, list) else 1
        return {
            "model": response_model(body.get("model"), "ollama"),
            "embeddings": [embedding_vector(index) for index in range(count)],
            "total_duration": 3_000_000,
            "load_duration": 1_000_000,
            **OLLAMA_EMBED_USAGE,
        }


_ROUTES = {
    "/v1/chat/completions": FakeLLMServer._chat_completions,
    "/v1/responses": FakeLLMServer._responses,
    "/v1/embeddings": FakeLLMServer._embeddings,
    "/v1/messages": FakeLLMServer._messages,
    "/v1/messages/count_tokens": lambda server, body, number: {"input_tokens": ANTHROPIC_USAGE["input_tokens"]},
    "/openai/v1/chat/completions": functools.partial(FakeLLMServer._chat_completions, groq=True),
    "/openai/v1/embeddings": FakeLLMServer._embeddings,
    _MISTRAL_PREFIX + "/v1/chat/completions": FakeLLMServer._mistral_chat,
    _MISTRAL_PREFIX + "/v1/embeddings": FakeLLMServer._mistral_embeddings,
    _MISTRAL_PREFIX + "/v1/fim/completions": FakeLLMServer._mistral_chat,  # FIM answers are chat-shaped
    _MISTRAL_PREFIX + "/v1/agents/completions": FakeLLMServer._mistral_chat,
    _OLLAMA_PREFIX + "chat": FakeLLMServer._ollama_chat,
    _OLLAMA_PREFIX + "generate": FakeLLMServer._ollama_generate,
    _OLLAMA_PREFIX + "embed": FakeLLMServer._ollama_embed,
    **llm_cohere.ROUTES,
}


Route = Callable[[FakeLLMServer, dict[str, Any], int], "dict[str, Any] | list[tuple[Phase, bytes]]"]

# Paths that name the model (the cloud platforms'): pattern with a ``model`` group -> route, whose error shape.
_MODEL_PATH_ROUTES: tuple[tuple[re.Pattern[str], Route, Literal["openai", "anthropic"]], ...] = (
    (re.compile(r"/openai/deployments/(?P<model>[^/]+)/chat/completions"), FakeLLMServer._chat_completions, "openai"),
    (re.compile(r"/openai/deployments/(?P<model>[^/]+)/embeddings"), FakeLLMServer._embeddings, "openai"),
    (re.compile(r"/v1/projects/[^/]+/locations/[^/]+/publishers/anthropic/models/(?P<model>[^/:]+)"
                r":(?:rawPredict|streamRawPredict)"), FakeLLMServer._messages, "anthropic"),
    (re.compile(r"/model/(?P<model>[^/]+)/invoke"), FakeLLMServer._messages, "anthropic"),
    *llm_gemini.ROUTES,
    *llm_bedrock.ROUTES,
)


def _route(path: str, body: Any) -> tuple[Route | None, Any]:
    """The route answering ``path``, and the body it gets: on a path naming the model (Azure OpenAI's deployments,
    Vertex AI's and Bedrock's Anthropic models), a copy naming it too, unless the body does."""
    route = _ROUTES.get(path)
    if route is not None:
        return route, body
    for pattern, model_route, _ in _MODEL_PATH_ROUTES:
        if (match := pattern.fullmatch(path)) is not None:
            return model_route, {"model": unquote(match["model"]), **body} if isinstance(body, dict) else body
    return None, body


def _error_provider(path: str) -> Literal["openai", "anthropic", "ollama"]:
    """Whose error answers a path gets (Groq's and Mistral's are shaped like OpenAI's)."""
    if path in _ANTHROPIC_PATHS:
        return "anthropic"
    for pattern, _, provider in _MODEL_PATH_ROUTES:
        if pattern.fullmatch(path):
            return provider
    return "ollama" if path.startswith(_OLLAMA_PREFIX) else "openai"


def _as_generated(chat_answer: dict[str, Any]) -> dict[str, Any]:
    """An Ollama chat answer (or streamed line) as generate's: ``response`` text, and ``context`` when done."""
    generated = {key: value for key, value in chat_answer.items() if key != "message"}
    generated["response"] = chat_answer["message"]["content"]
    return {**generated, "context": [1, 2, 3]} if generated["done"] else generated


def _first_tool_name(tools: object) -> str | None:
    """The name of the first tool, in either OpenAI chat (nested ``function``) or flat shape."""
    if not isinstance(tools, list) or not tools or not isinstance(tools[0], dict):
        return None
    tool = tools[0]
    function = tool.get("function")
    name = function.get("name") if isinstance(function, dict) else tool.get("name")
    return name if isinstance(name, str) and name else "tool"


def _error_body(provider: str, status: int, message: str | None) -> dict[str, Any]:
    if provider == "ollama":
        return {"error": message or f"Injected {status} error."}
    if provider == "anthropic":
        kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message or f"Injected {status} error ({kind})."}}
    kind, code = _OPENAI_ERROR_TYPES.get(status, ("server_error", None))
    text = message or f"Injected {status} error ({code or kind})."
    return {"error": {"message": text, "type": kind, "param": None, "code": code}}


def _ndjson_line(data: object) -> bytes:
    return f"{_dumps(data)}\n".encode()


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        pieces = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(pieces)
            pieces.append(handler.rfile.read(size))
            handler.rfile.readline()
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


def _send_json(handler: BaseHTTPRequestHandler, status: int, data: object, headers: dict[str, str]) -> None:
    write_response(handler, status, _dumps(data).encode(), "application/json", headers)


def _send_stream(
    handler: BaseHTTPRequestHandler,
    frames: list[tuple[Phase, bytes]],
    cut: int | None,
    headers: dict[str, str],
    content_type: str = _SSE,
) -> None:
    """Send ``frames`` (SSE, or NDJSON lines) as a chunked body; with ``cut``, cut it after that many deltas."""
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Cache-Control", "no-cache")
    handler.send_header("Transfer-Encoding", "chunked")
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    deltas = 0
    try:
        for index, (phase, frame) in enumerate(frames):
            if cut is not None and phase != "pre" and deltas >= cut:
                _abort(handler)
                return
            data = b"%x\r\n%s\r\n" % (len(frame), frame)
            if index == len(frames) - 1:
                data += b"0\r\n\r\n"  # the last event and the end of the body in one segment
            handler.wfile.write(data)
            deltas += phase == "delta"
    except OSError:  # the client went away
        handler.close_connection = True


def _abort(handler: BaseHTTPRequestHandler) -> None:
    handler.close_connection = True
    try:
        handler.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 30  # an idle keep-alive connection's thread gives up after this
    server: _HTTPServer

    def do_POST(self) -> None:
        self.server.fake._serve(self)

    do_GET = do_POST  # noqa: N815 - answered with a 404/405 in the provider's shape
    do_PUT = do_POST  # noqa: N815
    do_DELETE = do_POST  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], fake: FakeLLMServer) -> None:
        self.fake = fake
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client that went away, or a connection cut by stop()
        super().handle_error(request, client_address)
