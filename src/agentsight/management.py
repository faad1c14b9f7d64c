"""The 0.0.44 management calls, as thin calls of :class:`agentsight.api.AgentSight`.

Upstream 0.0.44 managed and read conversations through two more singletons beside the tracker:
``conversation_manager`` (:class:`ConversationManager`: ``submit_feedback``, ``rename_conversation``,
``mark_conversation``, ``delete_conversation``, ``update_conversation``) and ``agentsight_api``
(:class:`AgentSightAPI`: ``fetch_conversations``, ``fetch_conversation``, ``fetch_conversation_attachments``),
with :class:`Sentiment`. They keep those names, arguments, checks and exceptions here
(``InvalidConversationDataException`` for bad input, ``NotFoundException`` / ``UnauthorizedException`` /
``ForbiddenException`` / ``ConversationApiException`` for the API's refusals, ``ConversationNetworkException``
when it cannot be reached), and each is one call of the data-plane client, so they talk to the endpoints of
upstream 0.1.4 (feedback to ``/api/feedbacks/``, which replaced 0.0.44's ``/api/conversation-feedbacks/``;
``metadata`` on feedback is accepted and not sent, as that route discarded it). ``ConversationTracker`` has
the same methods, delegating here with its own key and endpoint (:func:`for_tracker`).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from typing import TYPE_CHECKING, Any

from agentsight.api import AgentSight
from agentsight.api import params as p
from agentsight.exceptions import (
    APIError,
    AuthenticationError,
    ConversationApiException,
    ConversationNetworkException,
    ForbiddenException,
    InvalidApiKeyError,
    InvalidApiKeyException,
    InvalidConversationDataException,
    MissingApiKeyError,
    NetworkError,
    NoApiKeyException,
    NotFoundError,
    NotFoundException,
    PermissionDeniedError,
    UnauthorizedException,
)

if TYPE_CHECKING:
    from agentsight.tracker import ConversationTracker

logger = logging.getLogger("agentsight")

_MAX_COMMENT = 5000
_MAX_NAME = 255


class Sentiment(str, Enum):
    """Sentiment of conversation feedback (0.0.44's ``agentsight.enums.Sentiment``)."""

    POSITIVE = "positive"
    NEUTRAL = "neutral"
    NEGATIVE = "negative"


@contextmanager
def _as_0044_errors() -> Iterator[None]:
    """Raise 0.0.44's exceptions for the data-plane client's (the message stays the API's, key scrubbed)."""
    try:
        yield
    except NotFoundError as error:
        raise NotFoundException(error.detail or str(error)) from error
    except AuthenticationError as error:
        raise UnauthorizedException(error.detail or str(error)) from error
    except PermissionDeniedError as error:
        raise ForbiddenException(error.detail or str(error)) from error
    except APIError as error:
        if error.status_code is None:  # refused before sending: the caller's input
            raise InvalidConversationDataException(str(error)) from error
        raise ConversationApiException(f"API error ({error.status_code}): {error.detail}",
                                       status_code=error.status_code, response_data=error.response) from error
    except NetworkError as error:
        raise ConversationNetworkException(str(error)) from error


def _client(api_key: str | None, endpoint: str | None) -> AgentSight:
    try:
        return AgentSight(api_key, endpoint=endpoint)
    except MissingApiKeyError:
        raise NoApiKeyException() from None
    except InvalidApiKeyError:
        raise InvalidApiKeyException() from None


def _required(conversation_id: int | str) -> int | str:
    if not conversation_id:
        raise ValueError("conversation_id is required")
    if isinstance(conversation_id, bool) or not isinstance(conversation_id, int | str):
        raise ValueError(f"conversation_id must be int or str, got {type(conversation_id).__name__}")
    return conversation_id


def _checked_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidConversationDataException("Field 'name' must be a non-empty string")
    if len(name) > _MAX_NAME:
        raise InvalidConversationDataException(f"Field 'name' cannot exceed {_MAX_NAME} characters (got {len(name)})")
    return name.strip()


class _DataPlaneUser:
    """What 0.0.44's management classes share: a data-plane client on a key and endpoint, replaceable."""

    def __init__(self, api_key: str | None = None, endpoint: str | None = None, **_: Any) -> None:
        self._api = _client(api_key, endpoint)

    def configure(self, api_key: str | None = None, endpoint: str | None = None, **_: Any) -> None:
        """Use another key and/or endpoint from now on."""
        self._api.close()
        self._api = _client(api_key, endpoint)

    @property
    def client(self) -> AgentSight:
        """The data-plane client the calls go through."""
        return self._api


class ConversationManager(_DataPlaneUser):
    """0.0.44's ``ConversationManager``: feedback, rename, mark, update and (soft) delete of conversations.

    ``conversation_id`` is the ``conversation_id`` string tracking used or the API's integer id. Every call
    returns the API's answer and raises on failure.
    """

    def submit_feedback(self, conversation_id: int | str, sentiment: Sentiment | str, comment: str | None = None,
                        metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """Feedback on a conversation: ``sentiment`` (:class:`Sentiment` or its value), an optional ``comment``
        (at most 5,000 characters). ``metadata`` is not sent (0.0.44's route discarded it)."""
        _required(conversation_id)
        value = sentiment.value if isinstance(sentiment, Sentiment) else sentiment
        if value not in p.SENTIMENTS:
            raise InvalidConversationDataException(
                f"Invalid sentiment: '{value}'. Must be one of: {', '.join(p.SENTIMENTS)}")
        if comment is not None and not isinstance(comment, str):
            raise InvalidConversationDataException("Field 'comment' must be a string")
        if comment is not None and len(comment) > _MAX_COMMENT:
            raise InvalidConversationDataException(
                f"Field 'comment' cannot exceed {_MAX_COMMENT} characters (got {len(comment)})")
        if metadata:
            logger.debug("submit_feedback(): metadata is not sent (the feedback API has no field for it)")
        with _as_0044_errors():
            return self._api.feedbacks.create_for_conversation(conversation_id, value, comment)

    def rename_conversation(self, conversation_id: int | str, name: str) -> dict[str, Any]:
        """Set the conversation's name (at most 255 characters)."""
        _required(conversation_id)
        checked = _checked_name(name)
        with _as_0044_errors():
            return self._api.conversations.rename(conversation_id, checked)

    def mark_conversation(self, conversation_id: int | str, is_marked: bool) -> dict[str, Any]:
        """Mark (``True``) or unmark the conversation."""
        _required(conversation_id)
        with _as_0044_errors():
            return self._api.conversations.mark(conversation_id, bool(is_marked))

    def delete_conversation(self, conversation_id: int | str) -> dict[str, Any]:
        """Soft-delete the conversation."""
        _required(conversation_id)
        with _as_0044_errors():
            return self._api.conversations.delete(conversation_id)

    def update_conversation(self, conversation_id: int | str, name: str | None = None, is_marked: bool | None = None,
                            customer_id: str | None = None, device: str | None = None, language: str | None = None,
                            metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """Change several fields in one request (``metadata`` replaces the stored document)."""
        _required(conversation_id)
        if name is not None:
            name = _checked_name(name)
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidConversationDataException("Field 'metadata' must be a dictionary")
        fields = {key: value for key, value in (("name", name), ("is_marked", is_marked), ("customer_id", customer_id),
                                                 ("device", device), ("language", language),
                                                 ("metadata", metadata)) if value is not None}
        if not fields:
            raise ValueError("At least one field must be provided for update")
        with _as_0044_errors():
            return self._api.conversations.update(conversation_id, **fields)


class AgentSightAPI(_DataPlaneUser):
    """0.0.44's ``AgentSightAPI``: read conversations (a page of them, one, or one's attachments)."""

    def fetch_conversations(self, page: int | None = None, page_size: int | None = None,
                            feedback_source: str | None = None, **filters: Any) -> dict[str, Any]:
        """One page of conversations (the API's envelope: ``count``, ``next``, ``results``, ...), filtered by
        0.0.44's keywords (``action_name``, ``conversation_id``, ``customer_id``, ``has_feedback``,
        ``feedback_sentiment``, ``started_at_after`` (str or datetime), ...; extra keywords are sent as given)."""
        p.choice(filters.get("feedback_sentiment"), p.SENTIMENTS, what="feedback_sentiment")
        p.choice(feedback_source, ("customer", "platform"), what="feedback_source")
        query = {name: p.wire_value(value)
                 for name, value in {**filters, "page": page, "page_size": page_size,
                                     "feedback_source": feedback_source}.items() if value is not None}
        with _as_0044_errors():
            return self._api._request("GET", "/api/conversations/", params=query)

    def fetch_conversation(self, conversation_id: int | str) -> dict[str, Any]:
        """One conversation with its messages (by ``conversation_id`` string or integer id)."""
        _required(conversation_id)
        with _as_0044_errors():
            return self._api.conversations.get(conversation_id)

    def fetch_conversation_attachments(self, conversation_id: int | str) -> dict[str, Any]:
        """The conversation's attachments, by message."""
        _required(conversation_id)
        with _as_0044_errors():
            return self._api.conversations.attachments(conversation_id)


class _Deferred:
    """A 0.0.44 singleton made on first use (from ``AGENTSIGHT_*``), so importing never needs a key."""

    def __init__(self, kind: type[ConversationManager] | type[AgentSightAPI]) -> None:
        self._kind = kind
        self._made: ConversationManager | AgentSightAPI | None = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        with self._lock:
            if self._made is None:
                self._made = self._kind()
        return getattr(self._made, name)

    def __repr__(self) -> str:
        return f"<deferred {self._kind.__name__}>"


conversation_manager: ConversationManager = _Deferred(ConversationManager)  # type: ignore[assignment]
agentsight_api: AgentSightAPI = _Deferred(AgentSightAPI)  # type: ignore[assignment]


class TrackerCalls(ConversationManager, AgentSightAPI):
    """Both sets of calls with a tracker's key and endpoint (what ``ConversationTracker`` delegates to)."""


_per_tracker: weakref.WeakKeyDictionary[ConversationTracker, TrackerCalls] = weakref.WeakKeyDictionary()
_per_tracker_lock = threading.Lock()


def for_tracker(tracker: ConversationTracker) -> TrackerCalls:
    """The management calls of ``tracker`` (its key and endpoint), made once per tracker."""
    with _per_tracker_lock:
        calls = _per_tracker.get(tracker)
        if calls is None:
            settings = tracker.settings
            calls = _per_tracker[tracker] = TrackerCalls(settings.api_key, settings.endpoint)
        return calls
