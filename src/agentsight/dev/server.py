"""``agentsight dev`` served by uvicorn in a background thread, with a record of requests and fault injection.

:class:`DevServer` runs the FastAPI application of :mod:`agentsight.dev.app` over a
:class:`~agentsight.dev.store.DevStore` (in memory, or a SQLite file kept across restarts). For tests and
benchmarks it records every ``/api/`` request (:attr:`DevServer.requests`), adds latency to each (an
``asyncio`` sleep, so concurrent requests overlap as they would across a WAN) and answers canned responses
instead of the normal ones (:meth:`DevServer.inject`).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import uvicorn
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from agentsight.dev.app import RECEIVED, create_app
from agentsight.dev.rest import Files
from agentsight.dev.store import DevStore

SHUTDOWN_TIMEOUT = 5.0
"""Seconds :meth:`DevServer.stop` lets requests in flight finish."""
_POLL = 0.005


@dataclass
class ReceivedRequest:
    """One ``/api/`` request as it arrived: path (without query), headers (lower-case names), the JSON body
    (for ``/api/ingest/`` the inflated document) or the multipart fields and files, and the answer's status."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    files: Files = field(default_factory=dict)
    status: int = 0
    method: str = "POST"


@dataclass
class CannedResponse:
    """An answer to give instead of the normal one (to a request to ``path`` only, when given)."""

    status: int
    body: bytes = b'{"detail": "injected error"}'
    retry_after: str | None = None
    delay: float = 0.0
    path: str | None = None


class _Uvicorn(uvicorn.Server):
    """uvicorn that starts and stops in milliseconds: woken at once to stop, polling briefly while draining."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)
        self.ready.set()

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            try:
                await asyncio.wait_for(self._wake.wait(), 0.1)
            except asyncio.TimeoutError:
                pass

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SHUTDOWN_TIMEOUT
        while (self.server_state.connections or self.server_state.tasks) and loop.time() < deadline:
            await asyncio.sleep(_POLL)
        for task in self.server_state.tasks:
            task.cancel()
        for server in self.servers:
            await server.wait_closed()

    def request_stop(self) -> None:
        """Ask the serving thread to stop (thread-safe)."""
        self.should_exit = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)


class _LengthRequired(Exception):
    """Raised from a parser callback to stop parsing a request whose body cannot be delimited."""


class _HttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools), answering a request it cannot read in the API's shape (a DRF
    ``{"detail"}`` JSON body, then the connection closes): 411 for a POST, PUT or PATCH with neither
    ``Content-Length`` nor chunked ``Transfer-Encoding`` (where its body ends is unknown), 400 for a malformed
    request line or header (such as a negative, non-numeric or overflowing ``Content-Length``)."""

    _length_required = False

    def on_headers_complete(self) -> None:
        names = {name for name, _ in self.headers}
        if self.parser.get_method() in (b"POST", b"PUT", b"PATCH") and not names & {b"content-length",
                                                                                   b"transfer-encoding"}:
            self._length_required = True
            raise _LengthRequired  # the parser stops and uvicorn calls send_400_response
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if self._length_required:
            status, detail = HTTPStatus.LENGTH_REQUIRED, "A request body needs a Content-Length header."
        else:
            status, detail = HTTPStatus.BAD_REQUEST, "Malformed HTTP request line or header (such as Content-Length)."
        body = json.dumps({"detail": detail}).encode()
        self.transport.write(f"HTTP/1.1 {status.value} {status.phrase}\r\ncontent-type: application/json\r\n"
                             f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body)
        self.transport.close()


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket. Its protocol is named so asyncio turns Nagle off on each connection:
    a response's head and body go in two writes, and Nagle with the client's delayed ACK stalls 40 ms."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM,
                             socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(socket.SOMAXCONN)
    except OSError:
        listener.close()
        raise
    return listener


class DevServer:
    """The ``agentsight dev`` API on ``host:port`` (0: a free port); ``start()``/``stop()`` or ``with``.

    ``db``: a SQLite file (created on first start, kept across restarts) or ``None`` for an in-memory store.
    ``latency`` seconds are added to every ``/api/`` request; ``record=False`` keeps only the method, path
    and status of each request (benchmarks); ``capabilities`` and ``role`` are what ``GET /api/me/`` answers.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, db: str | Path | None = None, latency: float = 0.0,
                 record: bool = True, capabilities: Sequence[str] = ("gzip-ingest",), role: str = "write") -> None:
        self.host = host
        self.port = port
        self.latency = latency
        self.record = record
        self.store = DevStore(db)
        self.requests: list[ReceivedRequest] = []
        self.max_in_flight = 0
        """The most ``/api/`` requests ever served at once."""
        self._in_flight = 0
        self._canned: deque[CannedResponse] = deque()
        self._lock = threading.Condition()
        self._app = create_app(self.store, role=role, capabilities=capabilities)
        self._app.add_middleware(_Recorder, server=self)
        self._uvicorn: _Uvicorn | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL (``http://host:port``), usable as ``AGENTSIGHT_API_ENDPOINT``; needs :meth:`start`."""
        if self._uvicorn is None:
            raise RuntimeError("the dev server is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def conversations(self) -> dict[str, dict[str, Any]]:
        """Every stored conversation (``id``, ``is_used`` and its fields) by ``conversation_id``."""
        return {conversation["conversation_id"]: conversation for conversation in self.store.all_conversations()}

    def start(self) -> DevServer:
        """Listen (``OSError`` when the port is taken) and serve in a background thread; returns once serving."""
        listener = _listen(self.host, self.port)
        self.port = int(listener.getsockname()[1])
        config = uvicorn.Config(self._app, lifespan="off", log_level="warning", access_log=False,
                                timeout_keep_alive=60, http=_HttpProtocol)
        server = _Uvicorn(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, name="agentsight-dev",
                                  daemon=True)
        thread.start()
        while not server.ready.wait(_POLL):
            if not thread.is_alive():
                listener.close()
                raise RuntimeError("the dev server did not start")
        self._uvicorn, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop serving: the port is closed when this returns (the store stays readable)."""
        if self._uvicorn is None or self._thread is None:
            return
        self._uvicorn.request_stop()
        self._thread.join()
        self._uvicorn = self._thread = None

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def inject(self, *responses: CannedResponse) -> None:
        """Answer the next requests (to each response's ``path``, or any) with these responses, in order."""
        with self._lock:
            self._canned.extend(responses)

    def accepted(self, path: str | None = None) -> list[ReceivedRequest]:
        """Requests answered 200 or 201, optionally only those to ``path``."""
        with self._lock:
            return [r for r in self.requests if r.status in (200, 201) and (path is None or r.path == path)]

    def wait_for(self, count: int, timeout: float = 10.0, path: str | None = None) -> list[ReceivedRequest]:
        """Wait until ``count`` requests (to ``path``) were accepted; returns :meth:`accepted`.

        Raises ``TimeoutError`` naming what it waited for, and what arrived, when ``timeout`` seconds pass first.
        """
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.accepted(path)) >= count, timeout):
                raise TimeoutError(
                    f"waited {timeout:g} s for {count} accepted requests{f' to {path}' if path else ''}: "
                    f"{len(self.accepted(path))} accepted, {len(self.requests)} received in all")
        return self.accepted(path)

    def _begin(self, scope: Scope) -> tuple[ReceivedRequest, CannedResponse | None]:
        """Record an arriving ``/api/`` request and take the canned answer meant for it, if any."""
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        entry = ReceivedRequest(scope["path"], headers if self.record else {}, {}, method=scope["method"])
        with self._lock:
            self.requests.append(entry)
            canned = next((answer for answer in self._canned if answer.path in (None, entry.path)), None)
            if canned is not None:
                self._canned.remove(canned)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        return entry, canned

    def _end(self, entry: ReceivedRequest, status: int, scope: Scope) -> None:
        with self._lock:
            self._in_flight -= 1
            entry.status = status
            if self.record:
                entry.body, entry.files = scope.get("state", {}).get(RECEIVED, ({}, {}))
            self._lock.notify_all()


class _Recorder:
    """ASGI middleware of a :class:`DevServer`: records ``/api/`` requests, adds latency, answers canned responses."""

    def __init__(self, app: ASGIApp, server: DevServer) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        server = self.server
        entry, canned = server._begin(scope)
        status, ended = 500, False

        def end() -> None:
            nonlocal ended
            if not ended:
                ended = True
                server._end(entry, status, scope)

        async def recording_send(message: Message) -> None:
            # The record is complete before the last byte leaves: a client that got its answer finds it.
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                end()
            await send(message)

        try:
            if server.latency:
                await asyncio.sleep(server.latency)
            if canned is None:
                await self.app(scope, receive, recording_send)
            else:
                await asyncio.sleep(canned.delay)
                extra = {"Retry-After": canned.retry_after} if canned.retry_after else {}
                await Response(canned.body, canned.status, extra, media_type="application/json")(
                    scope, receive, recording_send)
        finally:
            end()
