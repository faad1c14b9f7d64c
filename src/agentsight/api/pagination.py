"""Lists as pages and as lazy iterators over every record.

Most list routes answer an envelope (``count``, ``page_size``, ``total_pages``, ``current_page``, ``next``,
``previous``, ``results``); a few answer a bare JSON array. :class:`Page` reads either. :class:`PageIterator`
asks for ``?page=1, 2, ...`` through the client (same key, retries and base URL) rather than following the
envelope's ``next`` URL, and stops at an empty page, at ``next: null`` or at ``total_pages``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("agentsight")

MAX_PAGE_SIZE = 100
"""The API caps ``page_size`` here; the iterators ask for it, so a walk takes as few requests as it can."""
_ENVELOPE = frozenset({"count", "page_size", "total_pages", "current_page", "next", "previous", "results"})


@dataclass
class Page:
    """One page of records and what the envelope said about the whole set (``extra``: route-specific keys,
    such as the feedback list's ``counts``)."""

    results: list[Any]
    count: int = 0
    page_size: int | None = None
    total_pages: int | None = None
    current_page: int | None = None
    next: str | None = None
    previous: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_response(cls, body: Any) -> Page:
        """A page from an envelope, a bare array, or a single object (a page of one)."""
        if isinstance(body, list):
            return cls(body, count=len(body))
        if not isinstance(body, dict):
            return cls([] if body is None else [body], count=0 if body is None else 1)
        results = body.get("results")
        if not isinstance(results, list):
            return cls([body], count=1)
        count = body.get("count")
        return cls(
            results, count=count if isinstance(count, int) else len(results), page_size=body.get("page_size"),
            total_pages=body.get("total_pages"), current_page=body.get("current_page"), next=body.get("next"),
            previous=body.get("previous"), extra={k: v for k, v in body.items() if k not in _ENVELOPE},
        )

    def __iter__(self) -> Iterator[Any]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> Any:
        return self.results[index]


class PageIterator:
    """Every record of a list, fetched a page at a time as iteration reaches it (nothing before).

    ``page(n)`` reads one page with its envelope; ``pages()`` walks the pages; ``first()`` reads at most one
    page; ``count()`` is the envelope's ``count`` of page 1.
    """

    def __init__(self, fetch: Callable[[dict[str, Any]], Any], params: dict[str, Any] | None = None, *,
                 page_size: int | None = None) -> None:
        self._fetch = fetch
        self._params = dict(params or {})
        self._page_size = _page_size(page_size)

    def __iter__(self) -> Iterator[Any]:
        for page in self.pages():
            yield from page.results

    def pages(self) -> Iterator[Page]:
        """The pages in order, each fetched when reached."""
        number = 1
        while True:
            page = self.page(number)
            yield page
            if not page.results or page.next is None:
                return
            if page.total_pages is not None and number >= page.total_pages:
                return
            number += 1

    def page(self, number: int = 1) -> Page:
        """Page ``number`` (from 1), envelope included."""
        return Page.from_response(self._fetch({**self._params, "page": number, "page_size": self._page_size}))

    def first(self) -> Any | None:
        """The first record, or ``None``."""
        return next(iter(self), None)

    def count(self) -> int:
        """How many records match (one request)."""
        return self.page(1).count

    def __repr__(self) -> str:
        return f"<PageIterator {self._params}>"


def _page_size(page_size: int | None) -> int:
    if page_size is None:
        return MAX_PAGE_SIZE
    if page_size > MAX_PAGE_SIZE:
        logger.warning("page_size=%s is over the API's maximum of %s; using %s", page_size, MAX_PAGE_SIZE,
                       MAX_PAGE_SIZE)
        return MAX_PAGE_SIZE
    return max(1, page_size)
