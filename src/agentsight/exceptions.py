"""Exceptions with the upstream ``agentsight`` SDK's names, raised where it raises them.

The API key never appears in a message: :class:`InvalidApiKeyException` keeps the upstream
constructor signature but describes the expected format instead of echoing the key.
"""

from __future__ import annotations


class NoApiKeyException(Exception):
    """No API key was given and ``AGENTSIGHT_API_KEY`` is not set."""

    def __init__(
        self,
        message: str = "Could not initialize AgentSight client - API Key is missing. "
        "Set AGENTSIGHT_API_KEY or pass api_key=.",
    ) -> None:
        super().__init__(message)


class InvalidApiKeyException(Exception):
    """The API key does not have the form ``ags_<32 hex>_<6 hex>``."""

    def __init__(self, api_key: object = None, app_url: str = "https://app.agentsight.io") -> None:
        super().__init__(
            "API Key is invalid: expected the form ags_<32 hex digits>_<6 hex digits>. "
            f"Find your API key at {app_url}/settings"
        )


class ApiServerException(Exception):
    """Kept for compatibility with the upstream SDK."""


class AgentSightClientNotInitializedException(RuntimeError):
    """Kept for compatibility with the upstream SDK."""

    def __init__(self, message: str = "AgentSight client must be initialized before using this feature") -> None:
        super().__init__(message)


class AgentSightApiJwtExpiredException(Exception):
    """Kept for compatibility with the upstream SDK."""

    def __init__(self, message: str = "JWT token has expired") -> None:
        super().__init__(message)


class ConversationTrackingException(Exception):
    """Base class of the tracking errors."""


class InvalidConversationDataException(ConversationTrackingException):
    """Invalid conversation, button, action or metadata input."""

    def __init__(self, message: str = "Invalid conversation data provided") -> None:
        super().__init__(message)


class InvalidAnswerDataException(ConversationTrackingException):
    """An answer (agent message) without content."""

    def __init__(self, message: str = "Invalid answer data provided") -> None:
        super().__init__(message)


class InvalidQuestionDataException(ConversationTrackingException):
    """A question (end-user message) without content."""

    def __init__(self, message: str = "Invalid question data provided") -> None:
        super().__init__(message)


class MissingConversationIdException(Exception):
    """A tracking call had no conversation to belong to."""

    def __init__(self, message: str = "Conversation ID is required and cannot be empty") -> None:
        super().__init__(message)


class NoDataToSendException(Exception):
    """``send_tracked_data()`` was called with nothing tracked in this context."""

    def __init__(self, message: str = "No tracked data found for conversation.") -> None:
        super().__init__(message)


class ConversationApiException(ConversationTrackingException):
    """Kept for compatibility with the upstream SDK, which raised it on an API error.

    Here delivery happens in the background: a refused payload is logged, counted and reported in
    ``tracker.flush()`` results, never raised into user code.
    """

    def __init__(self, message: str, status_code: int | None = None, response_data: object = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.response_data = response_data


class ConversationNetworkException(ConversationTrackingException):
    """Kept for compatibility with the upstream SDK, which raised it when the API was unreachable.

    Here network failures are retried in the background, logged, counted and reported in
    ``tracker.flush()`` results, never raised into user code.
    """


class NoConversationIdException(Exception):
    """0.0.44's name: a conversation id was required and not given."""

    def __init__(self, message: str = "conversation_id is required but was not provided") -> None:
        self.message = message
        super().__init__(message)


class NotFoundException(ConversationApiException):
    """0.0.44's 404 of its management calls (``conversation_manager``, ``agentsight_api``)."""

    def __init__(self, message: str = "Resource not found") -> None:
        super().__init__(message, status_code=404)


class UnauthorizedException(ConversationApiException):
    """0.0.44's 401 of its management calls."""

    def __init__(self, message: str = "Unauthorized - invalid or missing API key") -> None:
        super().__init__(message, status_code=401)


class ForbiddenException(ConversationApiException):
    """0.0.44's 403 of its management calls."""

    def __init__(self, message: str = "Forbidden - not authorized to access this resource") -> None:
        super().__init__(message, status_code=403)


class InvalidAttachmentException(Exception):
    """Attachment input that cannot be sent."""

    def __init__(self, message: str = "Invalid attachment data provided") -> None:
        self.message = message
        super().__init__(message)


class AgentSightError(Exception):
    """Base class of the 0.1.x exceptions (upstream's names); the tracking calls of the 0.1.x API never raise them."""


class ConfigurationError(AgentSightError, ValueError):
    """A setting has a value it cannot take (``AGENTSIGHT_PROTOCOL=soap``, say); raised where it is configured.

    The message names the setting, the value and what it accepts; never the API key. Also a ``ValueError``,
    as it was before the 0.1.x hierarchy existed.
    """


class MissingApiKeyError(ConfigurationError):
    """No API key was passed and none is in the environment."""

    def __init__(self, message: str | None = None, app_url: str | None = None) -> None:
        super().__init__(message or "No AgentSight API key. Pass api_key= or set AGENTSIGHT_API_KEY.\n\t    "
                         f"Find your API key at {app_url or 'https://app.agentsight.io'}/settings")


class InvalidApiKeyError(ConfigurationError):
    """The key is not shaped ``ags_<32 hex>_<6 hex>``; the message describes the form and never echoes the key."""

    def __init__(self, api_key: object = None, app_url: str | None = None) -> None:
        super().__init__("API key is malformed. Expected the form ags_<32 hex>_<6 hex>.\n\t    "
                         f"Find your API key at {app_url or 'https://app.agentsight.io'}/settings")


class APIError(AgentSightError):
    """The API answered with an error: ``status_code``, the API's ``detail`` and the parsed ``response``."""

    def __init__(self, message: str, *, status_code: int | None = None, detail: str | None = None,
                 response: object = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail
        self.response = response


class AuthenticationError(APIError):
    """401: the key was refused."""


class SubscriptionInactiveError(AuthenticationError):
    """401 because the agent's subscription is not active (rotating the key will not help)."""


class PermissionDeniedError(APIError):
    """403: the key may not do this (a read-role key writing, say)."""


class NotFoundError(APIError):
    """404."""


class ValidationError(APIError):
    """400; ``errors`` holds the field errors the API sent."""

    def __init__(self, message: str, *, errors: dict[str, object] | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.errors = errors or {}


class MethodNotAllowedError(APIError):
    """405."""


class RateLimitError(APIError):
    """429; ``retry_after`` is the API's pacing in seconds, when it sent one."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx."""


class NetworkError(AgentSightError):
    """No answer: DNS, connection, time-out, TLS."""


class UploadError(AgentSightError):
    """``upload_attachments()`` failed: the API refused it (``status_code``, ``response``) or the network failed."""

    def __init__(self, message: str, status_code: int | None = None, response: object = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.response = response
