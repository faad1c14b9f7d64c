"""``agentsight dev``: a local AgentSight-compatible API with a dashboard (the ``dev`` extra: FastAPI, uvicorn).

:class:`DevServer` (:mod:`agentsight.dev.server`) serves the docs/wire.md API, REST payloads and
``POST /api/ingest/`` alike, over a :class:`DevStore` (SQLite, in memory or in a file) and answers reads
and analytics for the dashboard. The names are imported on first use, so ``agentsight.dev.local_llm``
(standard library only) works without the extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentsight.dev.server import CannedResponse, DevServer, ReceivedRequest
    from agentsight.dev.store import DevStore

__all__ = ["CannedResponse", "DevServer", "DevStore", "ReceivedRequest"]


def __getattr__(name: str) -> Any:
    if name == "DevStore":
        from agentsight.dev.store import DevStore

        return DevStore
    if name in __all__:
        from agentsight.dev import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
