"""Requests and answers of the data-plane client, on the SDK's own HTTP transport.

:class:`ApiTransport` wraps :class:`~agentsight.export.transport.HttpTransport` (standard library
``http.client``, one kept-alive connection per thread, the ``Api-Key`` header, the SDK's ``User-Agent``) with
what a request/response client needs: query strings, JSON bodies, parsed answers, the exception taxonomy
(:mod:`agentsight.api.errors`) and upstream's retry rule. Only GET is retried, as upstream 0.1.4 does: no write
on this API is idempotent (a replayed create files a second row), so a write is sent once and a 429 on it is
raised as :class:`RateLimitError` with ``retry_after`` for the caller to decide. A GET is tried up to
``max_retries`` times on a network error, a 5xx or a 429, waiting the answer's ``Retry-After`` (at most 30 s)
or else 0.5 s, then 2 s.
"""

from __future__ import annotations

import http.client
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from agentsight.api.errors import encode_json, error_for, parsed_body, retry_after
from agentsight.exceptions import NetworkError
from agentsight.export.transport import HttpTransport, scrub_secrets

logger = logging.getLogger("agentsight")

BACKOFF = (0.5, 2.0)
"""Seconds before retry N of a GET when the API gave no ``Retry-After``."""
_SUCCESS = frozenset({200, 201, 202, 204})


class ApiTransport:
    """Sends one API call and returns the parsed answer, or raises the upstream exception for it."""

    def __init__(self, endpoint: str, api_key: str, *, timeout: float, max_retries: int) -> None:
        self._http = HttpTransport(endpoint, api_key, timeout)
        self.max_retries = max(1, int(max_retries))
        self.sleep: Callable[[float], None] = time.sleep
        """How retries wait (replaceable, so a test can record the waits instead of taking them)."""

    @property
    def endpoint(self) -> str:
        """The base URL (without any user info)."""
        return self._http.endpoint

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None) -> Any:
        """Send ``method path?params`` with ``json`` as the body; the parsed answer (``{}`` when empty)."""
        method = method.upper()
        target = f"{path}?{urlencode(params, doseq=True)}" if params else path
        data = None if json is None else encode_json(json)
        attempts = self.max_retries if method == "GET" else 1
        for attempt in range(1, attempts + 1):
            last = attempt == attempts
            try:
                response = self._http.request(method, target, data, {"Content-Type": "application/json"})
            except (OSError, http.client.HTTPException) as error:
                reason = scrub_secrets(str(error) or type(error).__name__)
                if last:
                    raise NetworkError(f"{method} {self.endpoint}{path} failed after {attempts} attempt(s): "
                                       f"{reason}") from None
                self._wait(attempt, f"{method} {path}", reason, None)
                continue
            if response.status in _SUCCESS:
                return parsed_body(response)
            if not last and (response.status == 429 or response.status >= 500):
                self._wait(attempt, f"{method} {path}", f"HTTP {response.status}", retry_after(response))
                continue
            raise error_for(response)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close this thread's connection."""
        self._http.close()

    def _wait(self, attempt: int, what: str, why: str, server_says: float | None) -> None:
        delay = server_says if server_says is not None else BACKOFF[min(attempt - 1, len(BACKOFF) - 1)]
        logger.warning("AgentSight %s failed (%s); retrying in %ss", what, why, delay)
        self.sleep(delay)
