"""``HttpTransport`` against real local sockets: a kept-alive connection the server closed while it was idle is
retried once on a fresh one (a fresh one that fails is not), a request that timed out never leaves its
connection to the next request, and ``Retry-After`` is read as seconds or as an HTTP date."""

from __future__ import annotations

import http.client
import re
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from agentsight.export.transport import HttpTransport, parse_retry_after
from tests.conftest import API_KEY, eventually

Serve = Callable[[socket.socket, int], None]
"""Handles one accepted connection, given its number (0 for the first)."""


class SocketServer:
    """A TCP server on 127.0.0.1 handing each connection to ``serve`` on a thread of its own; :attr:`requests`
    holds ``(connection number, request line)`` of every request a handler read, in the order read."""

    def __init__(self, serve: Serve) -> None:
        self._serve = serve
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.requests: list[tuple[int, str]] = []
        self.connections = 0
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> SocketServer:
        accepting = threading.Thread(target=self._accept, daemon=True)
        accepting.start()
        self._threads.append(accepting)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() under way (closing alone does not)
        self._listener.close()
        for thread in self._threads:
            thread.join(5)

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:  # the listener closed
                return
            number, self.connections = self.connections, self.connections + 1
            handler = threading.Thread(target=self._handle, args=(connection, number), daemon=True)
            handler.start()
            self._threads.append(handler)

    def _handle(self, connection: socket.socket, number: int) -> None:
        with connection:
            self._serve(connection, number)

    def read_request(self, connection: socket.socket, number: int) -> bool:
        """Read one request (head and ``Content-Length`` body) and note it; ``False`` at the end of the stream."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            if not chunk:
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        while length and len(body) < int(length.group(1)):
            body += connection.recv(65536)
        self.requests.append((number, head.split(b"\r\n", 1)[0].decode()))
        return True


def answer(connection: socket.socket, status: int, body: bytes = b"{}", *headers: str) -> None:
    """Write one JSON response (kept alive unless ``headers`` say otherwise)."""
    head = "".join(f"{header}\r\n" for header in headers)
    connection.sendall(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                       f"{head}\r\n".encode() + body)


Serving = Callable[..., tuple[SocketServer, HttpTransport]]


@pytest.fixture
def serving() -> Iterator[Serving]:
    """``serving(serve, timeout=2.0)``: a :class:`SocketServer` and a transport to it (closed after the test)."""
    made: list[tuple[SocketServer, HttpTransport]] = []

    def start(serve: Serve, timeout: float = 2.0) -> tuple[SocketServer, HttpTransport]:
        server = SocketServer(serve).__enter__()
        transport = HttpTransport(f"http://127.0.0.1:{server.port}", API_KEY, timeout=timeout)
        made.append((server, transport))
        return server, transport

    yield start
    for server, transport in made:
        transport.close()
        server.__exit__()


REQUEST_LINE = "POST /api/track/ HTTP/1.1"


def post(transport: HttpTransport) -> tuple[int, bytes]:
    response = transport.request("POST", "/api/track/", b"{}", {"Content-Type": "application/json"})
    return response.status, response.body


def test_a_kept_alive_connection_closed_while_idle_is_retried_once_on_a_fresh_one(serving: Serving) -> None:
    closed = threading.Event()
    server: SocketServer

    def serve(connection: socket.socket, number: int) -> None:
        server.read_request(connection, number)
        answer(connection, 201, b'{"id": %d}' % number)  # kept alive...
        if number == 0:
            connection.shutdown(socket.SHUT_RDWR)  # ...then closed while idle, as servers do after a while
            closed.set()

    server, transport = serving(serve)
    assert post(transport) == (201, b'{"id": 0}')
    assert closed.wait(5)
    assert post(transport) == (201, b'{"id": 1}'), "sent again on a fresh connection, not failed"
    assert server.requests == [(0, REQUEST_LINE), (1, REQUEST_LINE)]


def test_a_fresh_connection_that_fails_is_not_retried(serving: Serving) -> None:
    server: SocketServer

    def serve(connection: socket.socket, number: int) -> None:
        server.read_request(connection, number)  # then closed without an answer

    server, transport = serving(serve)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        post(transport)
    assert server.connections == 1, "the failure is the delivery's to retry, with its back-off"


def test_a_timed_out_request_leaves_its_connection_behind(serving: Serving) -> None:
    timed_out = threading.Event()
    server: SocketServer

    def serve(connection: socket.socket, number: int) -> None:
        while server.read_request(connection, number):
            if number == 0:
                timed_out.wait(5)  # answers late: on a reused connection, the next request would read this
                answer(connection, 201, b'{"id": "late"}')
            else:
                answer(connection, 201, b'{"id": 1}')

    server, transport = serving(serve, timeout=0.2)
    with pytest.raises(TimeoutError):
        post(transport)
    timed_out.set()
    assert post(transport) == (201, b'{"id": 1}'), "the late answer was not taken for this request's"
    assert server.requests == [(0, REQUEST_LINE), (1, REQUEST_LINE)]


def test_retry_after_as_seconds_or_http_date(serving: Serving) -> None:
    soon = datetime.now(timezone.utc) + timedelta(seconds=3)
    values = ["7", format_datetime(soon, usegmt=True), "Wed, 21 Oct 2015 07:28:00 GMT", "soon", None]
    server: SocketServer

    def serve(connection: socket.socket, number: int) -> None:
        for value in values:
            if not server.read_request(connection, number):
                return
            answer(connection, 503, b"{}", *([f"Retry-After: {value}"] if value else []))

    server, transport = serving(serve)
    waits = [transport.request("POST", "/api/ingest/", b"{}").retry_after for _ in values]
    assert waits[0] == 7.0 and waits[2:] == [0.0, None, None], waits  # a date past is no wait
    assert waits[1] is not None and 1.5 < waits[1] <= 3.0, "an HTTP date: the seconds until then"
    eventually(lambda: len(server.requests) == len(values), what="every request to be read")
    assert server.connections == 1, "a 503 keeps the connection"
    assert parse_retry_after("  12 ") == 12.0 and parse_retry_after("") is None
