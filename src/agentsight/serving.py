"""Standard-library HTTP servers run in the background (the stand-in model) and their replies (also the bridge's)."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler

POLL_INTERVAL = 0.05
"""How often ``serve_forever`` checks for shutdown: short, so stopping takes milliseconds."""


def serve_in_background(server: socketserver.BaseServer, name: str) -> threading.Thread:
    """Serve ``server`` in a daemon thread named ``name``; returns the thread."""
    thread = threading.Thread(target=server.serve_forever, args=(POLL_INTERVAL,), name=name, daemon=True)
    thread.start()
    return thread


def stop_serving(server: socketserver.BaseServer, thread: threading.Thread | None) -> None:
    """Stop a server started with :func:`serve_in_background` and close its listening socket."""
    if thread is not None:
        server.shutdown()
        thread.join()
    server.server_close()


def write_response(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    content_type: str,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Write a whole response, its length included (kept-alive connections need it); no body for HEAD.

    A client that went away while the body was written only ends the connection.
    """
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    if handler.command == "HEAD":
        return
    try:
        handler.wfile.write(body)
    except OSError:
        handler.close_connection = True
