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

This module is the server and its routing; each provider's answers are in its ``llm_*`` module
(``llm_openai``, ``llm_anthropic``, ``llm_mistral``, ``llm_ollama``, ``llm_gemini``, ``llm_cohere``,
``llm_bedrock``), the HTTP side in ``llm_http`` and the shared wire pieces in ``llm_wire``.

Standard library only.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import threading
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from agentsight.dev import (
    llm_anthropic,
    llm_bedrock,
    llm_cohere,
    llm_gemini,
    llm_http,
    llm_mistral,
    llm_ollama,
    llm_openai,
)
from agentsight.dev.llm_anthropic import ANTHROPIC_USAGE
from agentsight.dev.llm_bedrock import BEDROCK_USAGE
from agentsight.dev.llm_cohere import COHERE_BILLED_UNITS, COHERE_EMBED_USAGE, COHERE_USAGE
from agentsight.dev.llm_gemini import GEMINI_EMBED_USAGE, GEMINI_MODEL_SUFFIX, GEMINI_USAGE
from agentsight.dev.llm_mistral import MISTRAL_EMBEDDING_USAGE, MISTRAL_USAGE
from agentsight.dev.llm_ollama import OLLAMA_EMBED_USAGE, OLLAMA_USAGE
from agentsight.dev.llm_openai import (
    CHAT_CACHED_TOKENS,
    CHAT_REASONING_TOKENS,
    CHAT_USAGE,
    EMBEDDING_USAGE,
    RESPONSES_USAGE,
)
from agentsight.dev.llm_wire import (
    ANTHROPIC_MODEL_SUFFIX,
    MISTRAL_MODEL_SUFFIX,
    OLLAMA_DEFAULT_TAG,
    OPENAI_MODEL_SUFFIX,
    TOOL_ARGUMENTS,
    TOOL_INPUT,
    Answer,
    embedding_vector,
    response_model,
    split_reply,
)
from agentsight.serving import serve_in_background, stop_serving

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

_ANTHROPIC_PATHS = ("/v1/messages", "/v1/messages/count_tokens")
_OLLAMA_PREFIX = "/api/"
_MISTRAL_PREFIX = "/mistral"


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


Route = Callable[["FakeLLMServer", dict[str, Any], int], Answer]
"""A route: the server, the request's JSON body and the request's number -> its answer."""


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
        self._server = llm_http.LLMHTTPServer((host, port), self._serve)
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

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        raw = llm_http.read_body(handler)
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
            error = failure.body if failure.body is not None else llm_http.error_body(provider, failure.status, None)
            extra = dict(id_header)
            if failure.retry_after is not None:
                extra["Retry-After"] = failure.retry_after
            llm_http.send_json(handler, failure.status, error, extra)
            return
        route, body = _route(path, body)
        if route is None or handler.command != "POST":
            status = 404 if route is None else 405
            message = f"Unknown request URL: {handler.command} {path}."
            llm_http.send_json(handler, status, llm_http.error_body(provider, status, message), id_header)
            return
        if not isinstance(body, dict):
            message = "We could not parse the JSON body of your request."
            llm_http.send_json(handler, 400, llm_http.error_body(provider, 400, message), id_header)
            return
        try:
            answer = route(self, body, number)
        except Exception as error:  # a fixture bug: say so loudly rather than hang the client
            traceback.print_exc()
            bug = llm_http.error_body(provider, 500, f"fake server bug: {error!r}")
            llm_http.send_json(handler, 500, bug, id_header)
            return
        if isinstance(answer, dict):
            llm_http.send_json(handler, 200, answer, id_header)
            return
        with self._lock:
            cut = self._disconnects.popleft() if self._disconnects else None
        content_type = llm_http.NDJSON if provider == "ollama" else llm_http.SSE
        if llm_bedrock.is_event_stream(path):
            content_type = llm_bedrock.STREAM_CONTENT_TYPE
        llm_http.send_stream(handler, answer, cut, id_header, content_type)


_ROUTES: dict[str, Route] = {
    "/v1/chat/completions": llm_openai.chat_completions,
    "/v1/responses": llm_openai.responses,
    "/v1/embeddings": llm_openai.embeddings,
    "/v1/messages": llm_anthropic.messages,
    "/v1/messages/count_tokens": llm_anthropic.count_tokens,
    "/openai/v1/chat/completions": functools.partial(llm_openai.chat_completions, groq=True),
    "/openai/v1/embeddings": llm_openai.embeddings,
    _MISTRAL_PREFIX + "/v1/chat/completions": llm_mistral.chat,
    _MISTRAL_PREFIX + "/v1/embeddings": llm_mistral.embeddings,
    _MISTRAL_PREFIX + "/v1/fim/completions": llm_mistral.chat,  # FIM answers are chat-shaped
    _MISTRAL_PREFIX + "/v1/agents/completions": llm_mistral.chat,
    _OLLAMA_PREFIX + "chat": llm_ollama.chat,
    _OLLAMA_PREFIX + "generate": llm_ollama.generate,
    _OLLAMA_PREFIX + "embed": llm_ollama.embed,
    **llm_cohere.ROUTES,
}

# Paths that name the model (the cloud platforms'): pattern with a ``model`` group -> route, whose error shape.
_MODEL_PATH_ROUTES: tuple[tuple[re.Pattern[str], Route, Literal["openai", "anthropic"]], ...] = (
    (re.compile(r"/openai/deployments/(?P<model>[^/]+)/chat/completions"), llm_openai.chat_completions, "openai"),
    (re.compile(r"/openai/deployments/(?P<model>[^/]+)/embeddings"), llm_openai.embeddings, "openai"),
    (re.compile(r"/v1/projects/[^/]+/locations/[^/]+/publishers/anthropic/models/(?P<model>[^/:]+)"
                r":(?:rawPredict|streamRawPredict)"), llm_anthropic.messages, "anthropic"),
    (re.compile(r"/model/(?P<model>[^/]+)/invoke"), llm_anthropic.messages, "anthropic"),
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
