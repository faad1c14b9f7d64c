"""Pydantic models of ``GET /api/stats/`` and ``GET /api/stats/integration/`` (the answers' documented shape).

Every count is of the selected environment (production unless ``environment`` says otherwise) and date range
(``from``/``to``: conversations by their creation time, messages and actions by their own time). Times of day
and dates are UTC. A metric with nothing to count is ``null`` (an average) or empty (a list), never a made-up 0.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class StatsFilters(BaseModel):
    """What the numbers count: one environment (``null``: every environment) and an inclusive date range."""

    environment: str | None
    date_from: str | None = Field(None, alias="from", description="ISO date, inclusive (UTC)")
    date_to: str | None = Field(None, alias="to", description="ISO date, inclusive (UTC)")

    model_config = {"populate_by_name": True}


class Totals(BaseModel):
    """Headline counts."""

    messages: int = Field(description="every stored message (both senders)")
    questions: int = Field(description="messages sent by the end user")
    answers: int = Field(description="messages sent by the agent")
    conversations: int = Field(description="distinct conversation_id values")
    individual_users: int = Field(description="distinct non-empty customer_id values")
    conversations_without_customer: int = Field(description="conversations with no customer_id")


class Average(BaseModel):
    """An average and how many values it is taken over; ``average_ms`` is null when there are none."""

    average_ms: float | None
    count: int


class ResponseTime(Average):
    """Agent response time: per turn, the agent's answer time minus the end user's question time before it."""

    suspect_turns: int = Field(description="turns answered in under 50 ms with an answer of 200+ characters: "
                                           "a streamed turn ended before its answer was generated")


class HourCount(BaseModel):
    """Messages sent in one hour of the day (0-23, UTC)."""

    hour: int
    messages: int


class DayCount(BaseModel):
    """One day of the messages and conversations overview."""

    date: str
    messages: int
    conversations: int = Field(description="conversations created that day")


class ToolUsage(BaseModel):
    """An action name (tools, tasks, seed actions; model calls and token_usage sums left out)."""

    name: str
    calls: int
    average_ms: float | None = Field(description="mean duration_ms of the calls that reported one")
    errors: int


class ModelUsage(BaseModel):
    """Tokens and cost of one model. ``input_tokens`` includes cache reads and writes."""

    provider: str | None
    model: str
    calls: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_usd: float | None = Field(description="genai-prices' price for these tokens; null when unpriced")
    priced: bool = Field(description="false: the price table does not know this model (unpriced, not free)")


class TokenCost(BaseModel):
    """Token usage and cost per model, and the tokens no model can be named for."""

    models: list[ModelUsage]
    unattributed: dict[str, int] = Field(description="tokens counted (track_token_usage sums) beyond the "
                                                      "model calls: no model, so unpriced")
    total_cost_usd: float = Field(description="sum over priced models")
    unpriced_models: list[str]
    prices: str = Field(description="where prices come from (library and version)")


class Count(BaseModel):
    """Conversations having one value of a field."""

    value: str
    conversations: int


class CountryCount(BaseModel):
    """Conversations located in one country (ISO 3166 alpha-2 code) by ``customer_ip_address``."""

    country: str
    name: str
    conversations: int


class WorldMap(BaseModel):
    """Countries from ``customer_ip_address`` (offline lookup, bundled data)."""

    countries: list[CountryCount]
    located: int
    unlocated: int = Field(description="addresses that are private, reserved, unknown or not an IP")
    without_ip: int = Field(description="conversations with no customer_ip_address")


class Escalation(BaseModel):
    """Human escalation: conversations with an action named one of ``action_names``."""

    action_names: list[str]
    conversations: int
    rate: float | None = Field(description="percent of engaged (used) conversations; null when none")


class Feedback(BaseModel):
    """Conversation feedback by sentiment (``agentsight dev`` stores none yet: see ``hint``)."""

    total: int
    positive: int
    neutral: int
    negative: int
    hint: str | None


class InteractionRate(BaseModel):
    """The unique interaction rate, defined once.

    Among conversations recorded as visits (``initialize_conversation()`` / ``open_conversation()``), the percent
    that were then engaged (at least one turn: ``get_or_create_conversation()`` / ``turn()``):
    ``rate = 100 * engaged / initialized``. Conversations engaged without a recorded visit are counted apart
    (``engaged_without_visit``) and stay out of the rate. ``rate`` is null when nothing was initialized.
    """

    rate: float | None
    engaged: int = Field(description="numerator: visits that became engaged")
    initialized: int = Field(description="denominator: visits recorded")
    abandoned: int = Field(description="visits never engaged")
    engaged_without_visit: int
    definition: str
    hint: str | None = Field(description="why the rate is null, and the call that feeds it")


class Segment(BaseModel):
    """Visits and engagement for one value of a breakdown (a page, a metadata value, an hour, a weekday)."""

    value: str
    conversations: int
    visits: int
    engaged: int
    rate: float | None = Field(description="100 * engaged visits / visits; null when no visit")


class Breakdown(BaseModel):
    """Engagement by one conversation metadata key (``null`` key: none asked or found)."""

    key: str | None
    rows: list[Segment]


class StatsAnswer(BaseModel):
    """``GET /api/stats/``: the dashboard's metrics. The first seven fields are the earlier answer's."""

    initialized: int
    used: int
    interaction_rate: float | None = Field(description="interaction.rate (null when nothing was initialized)")
    abandoned: int
    buttons: dict[str, dict[str, int]]
    tokens: dict[str, int]
    conversations: int
    filters: StatsFilters
    totals: Totals
    response_time: ResponseTime
    conversation_duration: Average = Field(description="first to last message of each conversation with 2+")
    peak_hours: list[HourCount] = Field(description="24 rows, UTC")
    daily: list[DayCount]
    tools: list[ToolUsage]
    token_cost: TokenCost
    world_map: WorldMap
    devices: list[Count]
    languages: list[Count]
    sources: list[Count]
    escalation: Escalation
    feedback: Feedback
    interaction: InteractionRate
    pages: list[Segment] = Field(description="engagement by the conversation metadata's page_url")
    by_hour: list[Segment] = Field(description="engagement by the conversation's hour of creation (UTC)")
    by_weekday: list[Segment] = Field(description="engagement by weekday of creation (Monday first)")
    segments: Breakdown = Field(description="engagement by customer segment (metadata key segment or plan, "
                                            "or the one given as segment=)")
    breakdown: Breakdown = Field(description="engagement by the metadata key given as breakdown=")


class IntegrationCheck(BaseModel):
    """One metric: whether it receives data, and what would feed it when it does not."""

    metric: str
    receiving: bool
    count: int = Field(description="how many values feed it now")
    fed_by: str = Field(description="the field or call that feeds it")
    hint: str | None = Field(description="what to pass or call, when it is empty or looks wrong")


class IntegrationAnswer(BaseModel):
    """``GET /api/stats/integration/``: which metrics receive data, for the selected environment and dates."""

    filters: StatsFilters
    conversations: int
    receiving: int
    empty: int
    metrics: list[IntegrationCheck]
