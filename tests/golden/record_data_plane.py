#!/usr/bin/env python3
"""Record the requests upstream ``agentsight`` 0.1.4's data-plane client (``agentsight.api.AgentSight``) sends.

Standard library only, so the same file serves two interpreters:

* run with the **upstream** venv's python, it drives upstream's client through every call in :data:`CALLS`
  against :class:`RecordingServer` (a canned AgentSight on 127.0.0.1) and writes ``data_plane.json``;
* ``tests/test_api_client.py`` imports :data:`CALLS` and :class:`RecordingServer` and checks that this
  package's client sends the same requests for the same calls.

Nothing from the upstream package is copied here; the calls only use its public API. Re-record::

    .cache/agentsight-0.1.4/bin/python tests/golden/record_data_plane.py

Each call runs on a fresh client (so id lookups are not cached across calls). ``data_plane.json`` maps a call's
name to the requests the server received for it, in order: ``method``, ``path``, ``query`` (the decoded pairs,
in order), ``body`` (the JSON body or ``null``) and ``headers`` (``content-type``, ``accept``, and whether
``authorization`` is ``Api-Key <the key>``; the key itself is never recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data_plane.json")

API_KEY = "ags_0123456789abcdef0123456789abcdef_abcdef"
"""Format-valid, not a real key."""

PAGE_SIZE = 2
"""The canned server pages every list by 2, whatever ``page_size`` asks, so iterators walk several pages."""
LIST_LENGTH = 5

ME = {
    "agent_id": 7,
    "agent_name": "golden",
    "role": "write",
    "environments": [{"id": 1, "slug": "production", "name": "Production", "is_production": True},
                     {"id": 2, "slug": "development", "name": "Development", "is_production": False}],
}
CONVERSATION = {"id": 42, "conversation_id": "wa-3859", "name": "Refund", "is_marked": False,
                "metadata": {"plan": "trial", "seats": 3}}
MESSAGE = {"id": 4821, "content": "Hello", "sender": "end_user", "metadata": {"draft": True, "lang": "en"}}

_LISTS = re.compile(r"^/api/(conversations|feedbacks|tickets|tickets/\d+/comments|actions|token-usage|spans)/$")
_PLAIN_LISTS = re.compile(r"^/api/(conversations/(metadata-keys|metadata-values|message-metadata-keys)|"
                          r"actions/\d+/logs)/$")


def canned_answer(method: str, path: str, query: list[tuple[str, str]]) -> tuple[int, Any]:
    """The status and JSON body the canned server answers (``None`` body: no content)."""
    params = dict(query)
    if method == "DELETE":
        return 204, None
    if method != "GET":
        return (201 if method == "POST" else 200), {"id": 9, "ok": True}
    if path == "/api/me/":
        return 200, ME
    if path == "/api/conversations/" and "conversation_id" in params:
        found = params["conversation_id"] != "missing"
        return 200, {"count": int(found), "page_size": 1, "total_pages": 1, "current_page": 1, "next": None,
                     "previous": None, "results": [dict(CONVERSATION, conversation_id=params["conversation_id"])]
                     if found else []}
    if re.fullmatch(r"/api/conversations/\d+/", path):
        return 200, dict(CONVERSATION, id=int(path.split("/")[3]))
    if re.fullmatch(r"/api/track/\d+/", path):
        return 200, MESSAGE
    if _PLAIN_LISTS.match(path):
        return 200, ["plan", "seats"]
    if _LISTS.match(path):
        page = int(params.get("page", "1"))
        pages = -(-LIST_LENGTH // PAGE_SIZE)
        first = (page - 1) * PAGE_SIZE
        results = [{"id": n + 1, "conversation_id": f"c-{n + 1}"}
                   for n in range(first, min(first + PAGE_SIZE, LIST_LENGTH))]
        return 200, {"count": LIST_LENGTH, "page_size": PAGE_SIZE, "total_pages": pages, "current_page": page,
                     "next": f"http://testserver{path}?page={page + 1}" if page < pages else None,
                     "previous": None, "results": results}
    return 200, {"id": 1, "path": path}


class RecordingServer:
    """A canned AgentSight on 127.0.0.1 that records every request.

    :meth:`script` queues answers (status, JSON body or raw bytes, headers) given instead of the canned ones,
    first in first out; :attr:`requests` is what arrived, as :func:`recorded` makes it.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.raw_headers: list[dict[str, str]] = []
        self._scripted: deque[tuple[int, Any, dict[str, str]]] = deque()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                query = parse_qsl(parts.query, keep_blank_values=True)
                with server._lock:
                    server.requests.append(recorded(self.command, parts.path, query, body, self.headers))
                    server.raw_headers.append({k.lower(): v for k, v in self.headers.items()})
                    scripted = server._scripted.popleft() if server._scripted else None
                if scripted is None:
                    status, answer = canned_answer(self.command, parts.path, query)
                    headers: dict[str, str] = {}
                else:
                    status, answer, headers = scripted
                data = answer if isinstance(answer, bytes) else b"" if answer is None else json.dumps(answer).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle  # noqa: N815 - http.server's names

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def script(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        """Answer the next unscripted request with ``status``, ``body`` (JSON, or bytes as given) and ``headers``."""
        with self._lock:
            self._scripted.append((status, body, headers or {}))

    def take(self) -> list[dict[str, Any]]:
        """The requests recorded so far, forgetting them."""
        with self._lock:
            taken, self.requests = self.requests, []
            self.raw_headers = []
            return taken

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def recorded(method: str, path: str, query: list[tuple[str, str]], body: bytes, headers: Any) -> dict[str, Any]:
    """One request as ``data_plane.json`` holds it."""
    authorization = headers.get("Authorization") or ""
    return {
        "method": method,
        "path": path,
        "query": [list(pair) for pair in query],
        "body": json.loads(body) if body else None,
        "headers": {
            "content-type": headers.get("Content-Type"),
            "accept": headers.get("Accept"),
            "authorization_is_api_key": authorization == f"Api-Key {API_KEY}",
        },
    }


WEEK_START = datetime(2025, 3, 3, tzinfo=timezone.utc)


def _all(iterator: Any) -> list[Any]:
    return [record for record in iterator]


CALLS: dict[str, Callable[[Any], Any]] = {
    # identity
    "me": lambda ags: ags.me(),
    "environments": lambda ags: ags.environments(),
    # conversations
    "conversations.list": lambda ags: _all(ags.conversations.list()),
    "conversations.list.filters": lambda ags: _all(ags.conversations.list(
        feedback_sentiment="negative", started_at_after=WEEK_START, is_marked=False, environment="production",
        metadata_key="plan", include_tickets=True)),
    "conversations.list.count": lambda ags: ags.conversations.list(has_feedback=True).count(),
    "conversations.list.page": lambda ags: ags.conversations.list(search="refund").page(2).results,
    "conversations.list_full.first": lambda ags: ags.conversations.list_full(customer_id="user-7").first(),
    "conversations.get.by_id": lambda ags: ags.conversations.get("wa-3859"),
    "conversations.get.by_pk": lambda ags: ags.conversations.get(42, full=False),
    "conversations.get.missing": lambda ags: _expect_error(lambda: ags.conversations.get("missing")),
    "conversations.attachments": lambda ags: ags.conversations.attachments("wa-3859"),
    "conversations.metadata_keys": lambda ags: ags.conversations.metadata_keys(),
    "conversations.metadata_values": lambda ags: ags.conversations.metadata_values("plan"),
    "conversations.message_metadata_keys": lambda ags: ags.conversations.message_metadata_keys(),
    "conversations.resolve": lambda ags: ags.conversations.resolve("wa-3859"),
    "conversations.rename": lambda ags: ags.conversations.rename("wa-3859", "  Refund - resolved "),
    "conversations.mark": lambda ags: ags.conversations.mark(42),
    "conversations.unmark": lambda ags: ags.conversations.mark("wa-3859", is_marked=False),
    "conversations.update": lambda ags: ags.conversations.update(
        42, name="Escalated", is_marked=True, customer_id=77, device="mobile", metadata={"tier": "gold"}),
    "conversations.update_metadata": lambda ags: ags.conversations.update_metadata(
        "wa-3859", {"plan": "enterprise", "escalated": False}, remove=["seats"]),
    "conversations.delete": lambda ags: ags.conversations.delete("wa-3859"),
    # messages
    "messages.get": lambda ags: ags.messages.get(4821),
    "messages.update": lambda ags: ags.messages.update(4821, metadata={"verdict": "ok"}),
    "messages.update_metadata": lambda ags: ags.messages.update_metadata(4821, {"score": 0}, remove=["draft"]),
    # feedbacks
    "feedbacks.list": lambda ags: _all(ags.feedbacks.list(sentiment="negative", created_at_after=WEEK_START)),
    "feedbacks.list.tickets": lambda ags: _all(ags.feedbacks.list(
        include_tickets=True, ticket_status=["open", "in_progress"], environment="development")),
    "feedbacks.page": lambda ags: ags.feedbacks.page(2, kind="message").count,
    "feedbacks.get": lambda ags: ags.feedbacks.get(9),
    "feedbacks.create_for_conversation": lambda ags: ags.feedbacks.create_for_conversation(
        "wa-3859", "negative", comment="too slow"),
    "feedbacks.create_for_conversation.pk": lambda ags: ags.feedbacks.create_for_conversation(42, "positive"),
    "feedbacks.create_for_message": lambda ags: ags.feedbacks.create_for_message(
        4821, "negative", "too bold", topic="style", reason="too_bold"),
    "feedbacks.create_for_agent": lambda ags: ags.feedbacks.create_for_agent("positive", comment="great"),
    "feedbacks.create_for_agent.explicit": lambda ags: ags.feedbacks.create_for_agent(
        "neutral", agent=7, environment="development"),
    "feedbacks.update": lambda ags: ags.feedbacks.update(9, sentiment="neutral", comment="fine after all"),
    "feedbacks.delete": lambda ags: ags.feedbacks.delete(9),
    # tickets
    "tickets.list": lambda ags: _all(ags.tickets.list(
        status=["open", "in_progress"], priority="high", tags="billing,checkout", conversation_id="wa-3859")),
    "tickets.page": lambda ags: ags.tickets.page(1, search="refund").count,
    "tickets.get": lambda ags: ags.tickets.get(5),
    "tickets.comments": lambda ags: _all(ags.tickets.comments(5)),
    "tickets.create": lambda ags: ags.tickets.create(
        " Refund stuck ", status="open", priority="high", tags=["billing"], environment="production",
        conversation="wa-3859", feedback_id=9),
    "tickets.create.minimal": lambda ags: ags.tickets.create("Look at this"),
    "tickets.update": lambda ags: ags.tickets.update(5, status="done", priority="low", tags=["billing", "done"]),
    "tickets.delete": lambda ags: ags.tickets.delete(5),
    "tickets.add_comment": lambda ags: ags.tickets.add_comment(5, "Looking into it"),
    # actions
    "actions.create": lambda ags: ags.actions.create(
        " lookup_order ", display_name="Order lookup", description="Finds an order"),
    "actions.list": lambda ags: _all(ags.actions.list(name__icontains="order")),
    "actions.get": lambda ags: ags.actions.get(3),
    "actions.logs": lambda ags: ags.actions.logs(3),
    "actions.update": lambda ags: ags.actions.update(3, display_name="Order lookup", description="Finds it"),
    # usage
    "usage.list": lambda ags: _all(ags.usage.list(model="gpt-4o", environment="production", incomplete=False)),
    "usage.summary": lambda ags: ags.usage.summary(),
    "usage.summary.day": lambda ags: ags.usage.summary(
        "day", currency="eur", conversation_id="wa-3859", started_at_after=WEEK_START),
    # spans
    "spans.list": lambda ags: _all(ags.spans.list(conversation_id="wa-3859", kind="tool", status="error")),
    "spans.get": lambda ags: ags.spans.get(11),
    "spans.get.payload": lambda ags: ags.spans.get(11, payload=True),
    "spans.trace": lambda ags: ags.spans.trace("4bf92f3577b34da6a3ce929d0e0e4736"),
}
"""Every call recorded: the same code runs on upstream's client and on ours."""


def _expect_error(call: Callable[[], Any]) -> str:
    try:
        call()
    except Exception as error:  # the class names differ by package; the test checks ours
        return type(error).__name__
    raise AssertionError("expected an error")


def record(client_class: Any, names: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Run ``names`` (default: every call) on fresh ``client_class`` instances; the requests of each."""
    result: dict[str, list[dict[str, Any]]] = {}
    with RecordingServer() as server:
        for name in names or list(CALLS):
            client = client_class(API_KEY, endpoint=server.url, max_retries=1)
            try:
                CALLS[name](client)
            finally:
                client.close()
            result[name] = server.take()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=OUT)
    parser.add_argument("names", nargs="*", help="calls to record (default: all)")
    args = parser.parse_args()
    from importlib.metadata import version as installed

    from agentsight.api import AgentSight

    version = installed("agentsight")
    recorded_calls = record(AgentSight, args.names or None)
    with open(args.out, "w", encoding="utf-8") as file:
        json.dump({"upstream": f"agentsight {version}", "page_size": PAGE_SIZE, "calls": recorded_calls},
                  file, indent=1, sort_keys=False)
        file.write("\n")
    print(f"recorded {len(recorded_calls)} calls from agentsight {version} -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
