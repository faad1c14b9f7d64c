"""The data plane: read and manage what tracking recorded, as upstream ``agentsight.api`` 0.1.4.

::

    from agentsight.api import AgentSight

    ags = AgentSight()                       # AGENTSIGHT_API_KEY / AGENTSIGHT_API_ENDPOINT, as tracking
    for conversation in ags.conversations.list(feedback_sentiment="negative"):
        print(conversation["conversation_id"], conversation["name"])
    ags.conversations.mark("wa-3859")
    ags.feedbacks.create_for_conversation("wa-3859", "positive")

or the module-level ``client`` (``from agentsight.api import client``), built on first use from the same
settings, never at import. ``agentsight dev`` serves these endpoints, so the client runs against it locally.
"""

from __future__ import annotations

import threading
from typing import Any

from agentsight.api._client import AgentSight
from agentsight.api.pagination import Page, PageIterator

__all__ = ["AgentSight", "Page", "PageIterator", "client"]

client: AgentSight
_default: AgentSight | None = None
_default_lock = threading.Lock()


def __getattr__(name: str) -> Any:
    """PEP 562: ``client`` is an :class:`AgentSight` made on first access from the environment."""
    global _default
    if name != "client":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _default_lock:
        if _default is None:
            _default = AgentSight()
        return _default


def __dir__() -> list[str]:
    return sorted(__all__)
