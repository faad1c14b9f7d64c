"""An error answer as the upstream exception it stands for, in the API's words with secrets scrubbed.

Classified by status first (the API often puts a ``detail`` in a 400, so the body's shape says nothing):

    400 ValidationError (``errors``: the field map)   401 AuthenticationError, or SubscriptionInactiveError
    403 PermissionDeniedError                          when the detail names the subscription
    404 NotFoundError       405 MethodNotAllowedError  429 RateLimitError (``retry_after``)
    5xx ServerError         any other status: APIError

The message is ``"<status> <detail>"``; ``detail`` is the API's ``detail`` or ``error`` text, its field errors
as ``field: msg, msg; ...``, or the start of the body. Both, and the parsed body kept on ``response``, pass
through :func:`~agentsight.export.transport.scrub_secrets`: an API that echoes the ``Authorization`` header
cannot put the key in an exception.
"""

from __future__ import annotations

import json
from typing import Any

from agentsight.exceptions import (
    APIError,
    AuthenticationError,
    MethodNotAllowedError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    SubscriptionInactiveError,
    ValidationError,
)
from agentsight.export.transport import ERROR_TEXT_LIMIT, HttpResponse, scrub_secrets

MAX_RETRY_AFTER = 30.0
"""Seconds of a ``Retry-After`` honoured at most, as upstream: past that the caller decides."""


def parsed_body(response: HttpResponse) -> Any:
    """The JSON body, ``{}`` when empty or not JSON (DELETE answers 204 without one)."""
    try:
        return response.json()
    except ValueError:
        return {}


def scrubbed(value: Any) -> Any:
    """``value`` (parsed JSON) with every string passed through ``scrub_secrets``."""
    if isinstance(value, str):
        return scrub_secrets(value)
    if isinstance(value, dict):
        return {key: scrubbed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [scrubbed(item) for item in value]
    return value


def detail_of(body: Any, response: HttpResponse) -> str:
    """The API's own words for an error (unscrubbed)."""
    if isinstance(body, dict):
        for key in ("detail", "error"):
            if isinstance(body.get(key), str) and body[key]:
                return body[key]
        fields = [f"{name}: {', '.join(map(str, errors)) if isinstance(errors, list | tuple) else errors}"
                  for name, errors in body.items() if name != "details"]
        if fields:
            return "; ".join(fields)
    elif isinstance(body, list) and body:
        return "; ".join(map(str, body))
    return response.body.decode("utf-8", "replace").strip()[:ERROR_TEXT_LIMIT] or "no detail"


def retry_after(response: HttpResponse) -> float | None:
    """The answer's ``Retry-After`` in seconds, capped at :data:`MAX_RETRY_AFTER` (``None`` when absent)."""
    return None if response.retry_after is None else min(max(response.retry_after, 0.0), MAX_RETRY_AFTER)


def error_for(response: HttpResponse) -> APIError:
    """The exception for an error answer."""
    status = response.status
    body = scrubbed(parsed_body(response))
    detail = scrub_secrets(detail_of(body, response))[:ERROR_TEXT_LIMIT]
    message = f"{status} {detail}"
    common: dict[str, Any] = {"status_code": status, "detail": detail, "response": body}
    if status == 400:
        return ValidationError(message, errors=body if isinstance(body, dict) else {}, **common)
    if status == 401:
        kind = SubscriptionInactiveError if "subscription" in detail.lower() else AuthenticationError
        return kind(message, **common)
    if status == 429:
        return RateLimitError(message, retry_after=retry_after(response), **common)
    kind = {403: PermissionDeniedError, 404: NotFoundError, 405: MethodNotAllowedError}.get(status)
    if kind is None:
        kind = ServerError if status >= 500 else APIError
    return kind(message, **common)


def encode_json(value: Any) -> bytes:
    """A request body as JSON bytes (NaN refused, as requests does)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
