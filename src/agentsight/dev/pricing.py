"""Model prices for ``agentsight dev``'s cost metric, from genai-prices (pydantic's maintained price table).

The table ships with the library (no network: prices are never updated at run time), so a cost is the price
of the installed genai-prices release at today's rates. A model the table does not know is *unpriced*
(``None``), never free. A model with tiered prices (long-context rates) is priced call by call, since a tier
applies to one request's tokens; others are priced on their sums, which is the same by linearity.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from decimal import Decimal
from importlib import metadata
from typing import Any

try:
    import genai_prices
    from genai_prices.types import TieredPrices
except ImportError:  # the `dev` extra is not installed: every model is unpriced
    genai_prices = None  # type: ignore[assignment]
    TieredPrices = ()  # type: ignore[assignment,misc]


@dataclass(frozen=True)
class Tokens:
    """One model call's (or a sum of calls') tokens; ``input_tokens`` includes cache reads and writes."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


def source() -> str:
    """Where prices come from: the library and its installed version."""
    if genai_prices is None:
        return "genai-prices not installed: every model unpriced"
    return f"genai-prices {metadata.version('genai-prices')} (bundled price table, today's rates)"


def price(provider: str | None, model: str, calls: list[tuple[Tokens, int]]) -> Decimal | None:
    """The cost in USD of ``calls`` (each distinct tokens with how many calls had them); ``None``: unpriced."""
    if not calls:
        return Decimal(0)
    first = _calculate(provider, model, calls[0][0])
    if first is None:
        return None
    if not _tiered(first.model_price):
        total = Tokens(*(sum(getattr(tokens, name) * times for tokens, times in calls)
                         for name in Tokens.__dataclass_fields__))
        found = _calculate(provider, model, total)
        return None if found is None else found.total_price
    cost = Decimal(0)
    for tokens, times in calls:
        found = _calculate(provider, model, tokens)
        if found is None:
            return None
        cost += found.total_price * times
    return cost


def _tiered(model_price: Any) -> bool:
    return any(isinstance(value, TieredPrices) for value in vars(model_price).values())


@functools.lru_cache(maxsize=4096)
def _calculate(provider: str | None, model: str, tokens: Tokens) -> Any:
    """genai-prices' calculation for ``tokens`` of ``model`` (the provider named when the table knows it)."""
    if genai_prices is None or not model or model == "unknown":
        return None
    usage = genai_prices.Usage(input_tokens=tokens.input_tokens, output_tokens=tokens.output_tokens,
                               cache_read_tokens=tokens.cache_read_tokens,
                               cache_write_tokens=tokens.cache_write_tokens)
    for provider_id in ([provider, None] if provider and provider != "unknown" else [None]):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return genai_prices.calc_price(usage, model_ref=model, provider_id=provider_id)
        except (LookupError, ValueError):
            continue
    return None
