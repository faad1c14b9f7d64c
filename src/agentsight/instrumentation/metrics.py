"""The GenAI client metrics: ``gen_ai.client.token.usage`` and ``gen_ai.client.operation.duration``.

Both are histograms with the bucket boundaries the semantic conventions recommend, recorded once per model
call as it ends, with the call's ``gen_ai.operation.name``, ``gen_ai.provider.name``,
``gen_ai.request.model``, ``gen_ai.response.model``, ``server.address`` / ``server.port`` and, when it
failed, ``error.type``; token counts add ``gen_ai.token.type`` (``input`` / ``output``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from opentelemetry.metrics import Meter

from agentsight.spans import semconv as sc

TOKEN_USAGE: Final = "gen_ai.client.token.usage"
OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
TOKEN_TYPE: Final = "gen_ai.token.type"

# Powers of 4 from 1 to 4^13 tokens, and 0.01 s doubling up to 81.92 s (the conventions' advice).
TOKEN_BUCKETS: Final = tuple(4.0**power for power in range(14))
DURATION_BUCKETS: Final = tuple(0.01 * 2**power for power in range(14))

# The span attributes (as started and as described by the response) that metric points carry.
METRIC_ATTRIBUTES: Final = (
    sc.GEN_AI_OPERATION_NAME,
    sc.GEN_AI_PROVIDER_NAME,
    sc.GEN_AI_REQUEST_MODEL,
    sc.GEN_AI_RESPONSE_MODEL,
    sc.SERVER_ADDRESS,
    sc.SERVER_PORT,
    sc.ERROR_TYPE,
)


class Instruments:
    """The two histograms of one instrumentation's meter."""

    __slots__ = ("duration", "tokens")

    def __init__(self, meter: Meter) -> None:
        self.duration = meter.create_histogram(
            OPERATION_DURATION, unit="s", description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.tokens = meter.create_histogram(
            TOKEN_USAGE, unit="{token}", description="Measures number of input and output tokens used",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )

    def record(self, attributes: Mapping[str, Any], seconds: float, input_tokens: Any, output_tokens: Any) -> None:
        """Record one call: its duration, and its input and output token counts where it reported them."""
        point = {key: attributes[key] for key in METRIC_ATTRIBUTES if key in attributes}
        self.duration.record(seconds, point)
        for token_type, count in (("input", input_tokens), ("output", output_tokens)):
            if isinstance(count, int) and not isinstance(count, bool):
                self.tokens.record(count, {**point, TOKEN_TYPE: token_type})
