"""``agentsight dev``: a local, persistent AgentSight-compatible API with a dashboard.

:class:`~agentsight.dev.server.DevServer` speaks the WIRE.md ingestion API, stores what arrives in SQLite
(:class:`~agentsight.dev.store.DevStore`) and answers reads and analytics for the dashboard.
"""

from __future__ import annotations

from agentsight.dev.server import DevServer
from agentsight.dev.store import DevStore

__all__ = ["DevServer", "DevStore"]
