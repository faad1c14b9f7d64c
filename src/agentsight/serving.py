"""Standard-library HTTP servers run in the background: the local API, the stand-in model, agentsight dev."""

from __future__ import annotations

import socketserver
import threading

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
