"""``AgentSight``: the data-plane client, reading and managing what tracking recorded (upstream 0.1.4's).

The module is ``_client`` because ``agentsight.api.client`` is the lazy default client.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any

from agentsight.api.resources import Actions, Conversations, Feedbacks, Messages, Spans, Tickets, Usage
from agentsight.api.transport import ApiTransport
from agentsight.config import API_KEY_PATTERN, Settings
from agentsight.exceptions import (
    ConfigurationError,
    InvalidApiKeyError,
    MissingApiKeyError,
    NotFoundError,
    ValidationError,
)

logger = logging.getLogger("agentsight")

ConversationRef = int | str
"""A conversation: the API's integer id, or the ``conversation_id`` string tracking gave it."""
_MAX_CACHED_IDS = 1024


class AgentSight:
    """Read and manage one agent's tracked data with its API key.

    ``AgentSight(api_key=None, *, endpoint=None, timeout=15, max_retries=3)``: the key and endpoint resolve as
    for tracking (the argument, else ``AGENTSIGHT_API_KEY`` / ``AGENTSIGHT_API_ENDPOINT``, ``.env`` included,
    else ``https://api.agentsight.io``). A missing key raises :class:`MissingApiKeyError`, a malformed one
    :class:`InvalidApiKeyError`, neither echoing it. Namespaces: ``conversations``, ``messages``,
    ``feedbacks``, ``tickets``, ``actions``, ``usage``, ``spans``. Every call raises on failure (the
    :class:`~agentsight.exceptions.APIError` family, :class:`~agentsight.exceptions.NetworkError`); lists
    return lazy :class:`~agentsight.api.pagination.PageIterator` s. A conversation argument is the integer id
    or the ``conversation_id`` string; strings are looked up once and remembered. A context manager.
    """

    def __init__(self, api_key: str | None = None, *, endpoint: str | None = None, timeout: float = 15,
                 max_retries: int = 3) -> None:
        settings = Settings.resolve(api_key=api_key, endpoint=endpoint, protocol="ingest")
        if not settings.api_key:
            raise MissingApiKeyError(app_url=settings.app_url)
        if not API_KEY_PATTERN.match(settings.api_key):
            raise InvalidApiKeyError(None, settings.app_url)
        try:
            self._transport = ApiTransport(settings.endpoint, settings.api_key, timeout=timeout,
                                           max_retries=max_retries)
        except ValueError as error:
            raise ConfigurationError(str(error)) from None
        self.endpoint: str = self._transport.endpoint
        self._ids: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()
        self._identity: dict[str, Any] | None = None
        self.conversations = Conversations(self)
        self.messages = Messages(self)
        self.feedbacks = Feedbacks(self)
        self.tickets = Tickets(self)
        self.actions = Actions(self)
        self.usage = Usage(self)
        self.spans = Spans(self)

    def close(self) -> None:
        """Close the connection (of the calling thread)."""
        self._transport.close()

    def __enter__(self) -> AgentSight:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<AgentSight endpoint={self.endpoint!r}>"

    def _request(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None) -> Any:
        return self._transport.request(method, path, params=params, json=json)

    def me(self, *, refresh: bool = False) -> dict[str, Any]:
        """``GET /api/me/``: the key's agent (``agent_id``, ``agent_name``), ``role`` and ``environments``.

        Cached for the client's life (``refresh=True`` asks again).
        """
        with self._lock:
            identity = None if refresh else self._identity
        if identity is None:
            identity = self._request("GET", "/api/me/")
            with self._lock:
                self._identity = identity
        return identity

    def environments(self, *, refresh: bool = False) -> list[str]:
        """The agent's environment slugs (from :meth:`me`)."""
        slugs = []
        for entry in self.me(refresh=refresh).get("environments") or []:
            slug = entry.get("slug") if isinstance(entry, dict) else entry
            if isinstance(slug, str) and slug:
                slugs.append(slug)
        return slugs

    def _resolve(self, conversation: ConversationRef) -> int:
        """The integer id of a conversation reference (a string: one list lookup, soft-deleted included)."""
        if isinstance(conversation, bool):
            raise ValidationError(f"invalid conversation reference: {conversation!r}")
        if isinstance(conversation, int):
            return conversation
        if not isinstance(conversation, str) or not conversation.strip():
            raise ValidationError("conversation must be a conversation_id string or an integer id, got "
                                  f"{type(conversation).__name__}")
        conversation_id = conversation.strip()
        with self._lock:
            cached = self._ids.get(conversation_id)
        if cached is not None:
            return cached
        body = self._request("GET", "/api/conversations/", params={
            "conversation_id": conversation_id, "full": "false", "page_size": 1, "include_deleted": "true"})
        results = body.get("results") if isinstance(body, dict) else body
        if not results:
            raise NotFoundError(f"no conversation with conversation_id {conversation_id!r}. Conversations are "
                                "created by tracking, not by this client.", status_code=404,
                                detail=f"conversation_id={conversation_id!r} not found")
        if len(results) > 1:
            logger.warning("conversation_id %r matched %d conversations; using the first", conversation_id,
                           len(results))
        pk = results[0].get("id") if isinstance(results[0], dict) else None
        if not isinstance(pk, int):
            raise NotFoundError(f"conversation {conversation_id!r} came back without an id", response=results[0])
        self.remember(results[0])
        return pk

    def remember(self, record: Any) -> None:
        """Remember the ``conversation_id`` -> id pair a conversation payload names (listing costs no lookups)."""
        if not isinstance(record, dict):
            return
        conversation_id, pk = record.get("conversation_id"), record.get("id")
        if isinstance(conversation_id, str) and isinstance(pk, int) and not isinstance(pk, bool):
            with self._lock:
                self._ids[conversation_id] = pk
                self._ids.move_to_end(conversation_id)
                while len(self._ids) > _MAX_CACHED_IDS:
                    self._ids.popitem(last=False)

    def forget(self, conversation: ConversationRef) -> None:
        """Forget a remembered pair (after a delete)."""
        with self._lock:
            if isinstance(conversation, str):
                self._ids.pop(conversation.strip(), None)
            else:
                for key in [key for key, pk in self._ids.items() if pk == conversation]:
                    del self._ids[key]
