"""What every namespace shares: the client it calls through."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentsight.api.pagination import PageIterator
from agentsight.exceptions import ValidationError

if TYPE_CHECKING:
    from agentsight.api._client import AgentSight


class Resource:
    """One namespace of endpoints, bound to its client."""

    def __init__(self, client: AgentSight) -> None:
        self._client = client

    def _request(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None) -> Any:
        return self._client._request(method, path, params=params, json=json)

    def _pages(self, path: str, params: dict[str, Any],
               seen: Callable[[Any], None] | None = None) -> PageIterator:
        """A lazy iterator over ``GET path`` with ``params`` (``seen`` gets each answer)."""
        def fetch(query: dict[str, Any]) -> Any:
            body = self._request("GET", path, params=query)
            if seen is not None:
                seen(body)
            return body

        return PageIterator(fetch, params)


def pk(value: Any, what: str) -> int:
    """An integer id argument (a bool is refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{what} must be the integer id the API returned, got {type(value).__name__}")
    return value
