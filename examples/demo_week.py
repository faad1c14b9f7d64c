"""The week ``make demo`` replays: who visits which page when, from where, and what they ask.

Plain data and a seeded plan, so every run tells the same story: :func:`plan_week` spreads visitors over the
seven days before ``now`` (busier in the day and on weekdays); about a third only load the page, the others
chat one to three turns about a :class:`Topic`. The stand-in model answers with :func:`reply_for`. Some
visitors then rate their chat (:func:`plan_feedback`). The team's own test chats (``development``) are the next
version of the app, whose integration is not finished: no customer id, no page-load tracking, no segment.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class Topic:
    """Something visitors ask about, the replies the stand-in model gives, and what the agent does."""

    question: str
    replies: tuple[str, ...]
    tool: str | None = None
    """A function the model calls before it answers (with the stand-in's fixed ``{"city": "Paris"}``)."""
    escalation: str | None = None
    """An action handing the conversation to a person (``fallback_to_human``, ``open_ticket``)."""
    button: tuple[str, str, str] | None = None
    """``(button_event, label, value)`` the visitor clicks after the answer."""


TOPICS = (
    Topic("Where is my order?", (
        "Your order left our warehouse yesterday; the tracking link is in your confirmation email.",
        "It is on its way and should arrive within two working days.")),
    Topic("How long does delivery take to my city?", (
        "Standard delivery to Paris takes 2-3 working days; express arrives next day.",
        "To Paris it is usually 48 hours with standard shipping."), tool="delivery_estimate"),
    Topic("How do I return an item?", (
        "You can return any item within 30 days from Account > Orders > Return.",
        "Returns are free within 30 days: print the label from your orders page."),
          button=("copy_conversation", "Copy conversation", "copy-conversation")),
    Topic("Do you have a store near me?", (
        "Our Paris store at 12 Rue de Rivoli is open 10:00-19:00, Monday to Saturday.",),
          tool="find_store"),
    Topic("Do you offer student discounts?", (
        "Yes: 10% off with a verified student email.",
        "Students get 10% off every order once their email is verified.",
        "We do! Verify your student status in your account to get 10% off.")),
    Topic("I cannot log in to my account", (
        "I am sorry about that. I have opened a ticket; our team will email you within the hour.",),
          escalation="open_ticket", button=("contact_human_agent", "Create ticket", "create-ticket")),
    Topic("Can I talk to a person?", (
        "Of course, I am handing you over to a colleague now.",
        "Sure, a member of our team will join this chat in a moment."),
          escalation="fallback_to_human", button=("contact_human_agent", "Talk to a human", "talk-to-human")),
    Topic("Is the blue jacket available in size M?", (
        "The blue jacket in M is in stock online; it ships today if you order before 15:00.",
        "Size M is available in blue and black.")),
)

PAGES = ("https://shop.example/", "https://shop.example/pricing", "https://shop.example/orders",
         "https://shop.example/returns", "https://shop.example/faq", "https://shop.example/product/blue-jacket")
PLACES = (  # (country, language, a public address there)
    ("US", "en-US", "8.8.8.8"), ("GB", "en-GB", "212.58.244.22"), ("DE", "de-DE", "85.214.132.117"),
    ("FR", "fr-FR", "81.250.1.1"), ("BR", "pt-BR", "200.160.2.3"), ("JP", "ja-JP", "133.242.0.1"),
    ("IN", "en-IN", "49.206.0.1"), ("AU", "en-AU", "139.130.4.5"), ("NL", "nl-NL", "193.0.14.129"),
)
DEVICES = (("desktop", 5), ("mobile", 4), ("tablet", 1))
SOURCES = (("web", 8), ("app", 2))


@dataclass(frozen=True)
class Visit:
    """One visitor's page load and, when ``topics`` is not empty, their chat with the agent."""

    conversation_id: str
    customer_id: str | None
    """``None`` for an anonymous visitor."""
    ip: str
    language: str
    device: str
    source: str
    page_url: str
    started: datetime
    topics: tuple[Topic, ...]
    segment: str | None = "new"
    """The customer segment (``metadata["segment"]``): ``new``, ``returning``, ``vip`` or ``None`` (not sent)."""
    environment: str = "production"
    page_load: bool = True
    """Whether the page load is tracked (``initialize_conversation``): the visit the interaction rate counts."""

    def fields(self) -> dict[str, Any]:
        """The conversation's fields, as ``initialize_conversation()`` and ``get_or_create_conversation()`` take."""
        return {"conversation_id": self.conversation_id, "customer_id": self.customer_id,
                "customer_ip_address": self.ip, "device": self.device, "source": self.source,
                "language": self.language, "environment": self.environment}

    def metadata(self) -> dict[str, Any]:
        """The conversation's metadata: the page the widget is on and the customer segment (when known)."""
        return {"page_url": self.page_url, **({"segment": self.segment} if self.segment else {})}


def plan_week(now: datetime, visitors: int = 60, seed: int = 13) -> list[Visit]:
    """``visitors`` visits over the 7 days before ``now``, oldest first, plus 3 chats of the team testing the app
    being developed (``development``: anonymous, from localhost, without a tracked page load or a segment)."""
    rng = random.Random(seed)
    customers = [f"customer-{n:03d}" for n in range(1, 41)]
    visits = []
    for number in range(1, visitors + 1):
        day = rng.choices(range(7), weights=(3, 4, 4, 4, 4, 2, 1))[0]  # fewer visits at the weekend
        hour = rng.choices(range(24), weights=[1] * 7 + [3, 5, 6, 6, 7, 8, 7, 6, 6, 5, 4, 3, 3, 2, 2, 1, 1])[0]
        started = (now - timedelta(days=7 - day)).replace(hour=hour, minute=rng.randrange(60),
                                                          second=rng.randrange(60), microsecond=0)
        if started >= now - timedelta(minutes=30):
            started -= timedelta(days=1)
        engaged = rng.random() < 0.65
        topics = tuple(rng.sample(TOPICS, rng.choice((1, 1, 2, 3)))) if engaged else ()
        _, language, ip = rng.choice(PLACES)
        visits.append(Visit(
            f"conv_demo_{number:03d}", rng.choice(customers) if rng.random() < 0.8 else None, ip, language,
            rng.choices([d for d, _ in DEVICES], [w for _, w in DEVICES])[0],
            rng.choices([s for s, _ in SOURCES], [w for _, w in SOURCES])[0], rng.choice(PAGES), started, topics,
            rng.choices(("new", "returning", "vip"), (5, 4, 1))[0]))
    for number in range(1, 4):
        visits.append(Visit(f"conv_test_{number}", None, "127.0.0.1", "en-US", "desktop", "web", PAGES[0],
                            now - timedelta(hours=number * 5), (TOPICS[number],), segment=None,
                            environment="development", page_load=False))
    return sorted(visits, key=lambda visit: visit.started)


COMMENTS = {  # what a rating visitor may type (None: no comment)
    "positive": ("Quick and clear, thanks!", "Solved in a minute.", None, None),
    "neutral": ("Fine, but I had to ask twice.", None),
    "negative": ("That did not answer my question.", "Still waiting for someone to get back to me."),
}


@dataclass(frozen=True)
class Feedback:
    """What one visitor says about their chat afterwards (your UI sends it with ``agentsight.api``)."""

    conversation_id: str
    sentiment: str
    """``positive``, ``neutral`` or ``negative``."""
    comment: str | None = None
    answer_vote: bool = False
    """Also a vote with the same sentiment on the chat's first answer (message feedback)."""
    ticket: bool = False
    """The support team opens a ticket from this feedback."""


def plan_feedback(visits: list[Visit], seed: int = 13) -> list[Feedback]:
    """About 40% of the production chats rated: mostly positive, mostly negative when handed to a person; one
    answer voted up, and one ticket from a negative rating (of an escalated chat when there is one)."""
    rng = random.Random(seed)
    rated = []
    for visit in sorted(visits, key=lambda visit: visit.conversation_id):  # the same plan at any hour
        if visit.environment != "production" or not visit.topics or rng.random() >= 0.4:
            continue
        escalated = any(topic.escalation for topic in visit.topics)
        sentiment = rng.choices(tuple(COMMENTS), (1, 1, 4) if escalated else (7, 2, 1))[0]
        rated.append((escalated, Feedback(visit.conversation_id, sentiment, rng.choice(COMMENTS[sentiment]))))
    plan = [feedback for _, feedback in rated]
    voted = next((n for n, feedback in enumerate(plan) if feedback.sentiment == "positive"), None)
    if voted is not None:
        plan[voted] = replace(plan[voted], answer_vote=True)
    negative = [n for n, (escalated, feedback) in enumerate(rated) if feedback.sentiment == "negative"]
    if negative:
        ticketed = next((n for n in negative if rated[n][0]), negative[0])
        plan[ticketed] = replace(plan[ticketed], ticket=True)
    return plan


def reply_for(body: dict[str, Any]) -> str:
    """The stand-in model's reply to an OpenAI chat request: one of the replies of the topic asked about."""
    asked = next((message.get("content") for message in reversed(body.get("messages") or [])
                  if isinstance(message, dict) and message.get("role") == "user"), "")
    for topic in TOPICS:
        if topic.question == asked:
            seen = sum(1 for message in body.get("messages") or [] if isinstance(message, dict))
            salt = zlib.crc32(str(body.get("user", "")).encode()) + seen
            return topic.replies[salt % len(topic.replies)]
    return "I can help with orders, deliveries, returns and your account. What do you need?"
