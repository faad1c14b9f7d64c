"""AgentSight conversation analytics on OpenTelemetry: a drop-in for the ``agentsight`` SDK.

``from agentsight import ConversationTracker`` works as in the upstream SDK (0.0.x), and so does the current
upstream API (0.1.x: ``agentsight.init()``, ``agentsight.conversation()``, ``agentsight.turn()``, ... from
:mod:`agentsight.scopes`); both record the same turns: OTel spans with tracked items as span events,
delivered by :class:`AgentSightSpanExporter`. Importing it loads ``.env`` (python-dotenv, when installed),
as upstream 0.1.x does, and never raises.
"""

from __future__ import annotations

import threading
from typing import Any

from agentsight.config import SDK_VERSION, load_dotenv_file
from agentsight.exceptions import (
    AgentSightError,
    APIError,
    AuthenticationError,
    ConfigurationError,
    InvalidApiKeyError,
    MethodNotAllowedError,
    MissingApiKeyError,
    NetworkError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    SubscriptionInactiveError,
    UploadError,
    ValidationError,
)
from agentsight.export.exporter import AgentSightSpanExporter
from agentsight.export.processor import AgentSightSpanProcessor
from agentsight.instrumentation import instrument, uninstrument
from agentsight.management import (  # 0.0.44's management calls (agentsight.api.AgentSight underneath)
    AgentSightAPI,
    ConversationManager,
    Sentiment,
    agentsight_api,
    conversation_manager,
)
from agentsight.scopes import (
    abandon_turn,
    agent_message,
    button,
    conversation,
    end_turn,
    flush,
    init,
    is_enabled,
    model_hint,
    open_conversation,
    record_attachments,
    shutdown,
    task,
    tool,
    turn,
    update_metadata,
    upload_attachments,
    user_message,
    wrap,
)
from agentsight.spans.turn import ConversationTurn
from agentsight.tracker import ConversationTracker

__version__: str = SDK_VERSION
"""The installed distribution's version (``importlib.metadata.version("agentsight-otel")``, set in pyproject.toml)."""

load_dotenv_file()  # a .env holding AGENTSIGHT_API_KEY works as with upstream 0.1.x (when python-dotenv is installed)


class _DeferredTracker:
    """The ready ``conversation_tracker``: built from the environment on first use, not at import.

    Importing ``agentsight`` therefore never raises for a missing key; the first tracking call
    does, with the upstream exception. ``configure(...)`` sets arguments before that first use.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tracker: ConversationTracker | None = None
        self._arguments: dict[str, Any] = {}

    def configure(self, **arguments: Any) -> None:
        """Rebuild the tracker with these ``ConversationTracker`` arguments."""
        with self._lock:
            if self._tracker is not None:
                self._tracker.shutdown()
            self._arguments = arguments
            self._tracker = ConversationTracker(**arguments)

    def __getattr__(self, name: str) -> Any:
        tracker = self._tracker
        if tracker is None:
            with self._lock:
                if self._tracker is None:
                    self._tracker = ConversationTracker(**self._arguments)
                tracker = self._tracker
        return getattr(tracker, name)

    def __repr__(self) -> str:
        return f"conversation_tracker({self._tracker!r})"


conversation_tracker: ConversationTracker = _DeferredTracker()  # type: ignore[assignment]

__all__ = [
    # 0.1.x: lifecycle, scopes, lifetime, messages, work, explicit calls, uploads
    "init", "flush", "shutdown", "is_enabled", "conversation", "turn", "model_hint", "wrap", "end_turn",
    "abandon_turn", "user_message", "agent_message", "tool", "task", "open_conversation", "button",
    "record_attachments", "update_metadata", "upload_attachments",
    # 0.1.x errors
    "AgentSightError", "ConfigurationError", "MissingApiKeyError", "InvalidApiKeyError", "APIError",
    "AuthenticationError", "SubscriptionInactiveError", "PermissionDeniedError", "NotFoundError", "ValidationError",
    "MethodNotAllowedError", "RateLimitError", "ServerError", "NetworkError", "UploadError",
    # the seed API and the OTel pieces
    "AgentSightAPI", "ConversationManager", "Sentiment", "agentsight_api", "conversation_manager",
    "AgentSightSpanExporter",
    "AgentSightSpanProcessor",
    "ConversationTracker",
    "ConversationTurn",
    "conversation_tracker",
    "instrument",
    "uninstrument",
]
