"""``agentsight.conversation(...)``: the conversation that turns, messages and tools inside it belong to.

A scope records no span of its own: it holds the conversation's fields and metadata in the OTel context
(so threads and asyncio tasks each see their own), and each turn opened in it is a conversation span with
those attributes. Usable as a context manager (sync and async) and as a decorator, one conversation per call.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry.context import Context

from agentsight.scopes import fields, runtime
from agentsight.scopes.stepping import stepped, stepped_async
from agentsight.spans import semconv as sc

F = TypeVar("F", bound=Callable[..., Any])

_CONVERSATION = otel_context.create_key("agentsight.conversation_scope")

FIELD_NAMES = ("customer_id", "customer_ip_address", "device", "source", "language", "name", "environment")


def current_conversation() -> ConversationScope | None:
    """The conversation scope of the calling context, if any."""
    return otel_context.get_value(_CONVERSATION)  # type: ignore[return-value]


class ConversationScope:
    """One conversation's identity, fields and metadata, current in the contexts that entered it."""

    def __init__(
        self,
        conversation_id: str | None = None,
        *,
        customer_id: str | None = None,
        customer_ip_address: str | None = None,
        device: str | None = None,
        source: str | None = None,
        language: str | None = None,
        name: str | None = None,
        environment: str | None = None,
        metadata: dict[str, Any] | None = None,
        enabled: bool = True,
    ) -> None:
        self._given_id = conversation_id
        self._fields = {"customer_id": customer_id, "customer_ip_address": customer_ip_address, "device": device,
                        "source": source, "language": language, "name": name, "environment": environment}
        self._given_metadata = metadata
        self.enabled = enabled
        """False: traffic the app knows is not real; nothing inside is recorded."""
        self.attributes = fields.conversation_attributes(conversation_id, self._fields, runtime.default_environment())
        """The attributes every turn of the conversation carries."""
        self.conversation_id: str = self.attributes[sc.CONVERSATION_ID]
        self.metadata: dict[str, Any] = dict(metadata) if metadata else {}
        if metadata:
            self.attributes[sc.CONVERSATION_METADATA] = fields.metadata_attribute(metadata)
        self._lock = threading.Lock()
        self._tokens: list[object] = []

    def __repr__(self) -> str:
        return f"ConversationScope(conversation_id={self.conversation_id!r})"

    def set_metadata(self, document: dict[str, Any]) -> str:
        """Replace the conversation's metadata for everything recorded from now on; returns its JSON text."""
        with self._lock:
            self.metadata = dict(document)
            text = fields.metadata_attribute(self.metadata)
            self.attributes = {**self.attributes, sc.CONVERSATION_METADATA: text}
        return text

    def turn_attributes(self, turn_name: str) -> dict[str, Any]:
        """The attributes of a turn of this conversation named ``turn_name``."""
        attributes = {**self.attributes, sc.IS_USED: True}
        if turn_name != "turn":
            attributes[sc.TURN_NAME] = turn_name
        return attributes

    def layer(self, ctx: Context) -> Context:
        """``ctx`` with this conversation current."""
        return otel_context.set_value(_CONVERSATION, self, ctx)

    def __enter__(self) -> ConversationScope:
        self._tokens.append(otel_context.attach(self.layer(otel_context.get_current())))
        return self

    def __exit__(self, *exc_info: object) -> None:
        token = self._tokens.pop() if self._tokens else None
        # Only where this scope is still current: a stream draining elsewhere is not this scope's context.
        if token is not None and current_conversation() is self:
            otel_context.detach(token)  # type: ignore[arg-type]

    async def __aenter__(self) -> ConversationScope:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__(*exc_info)

    def __call__(self, func: F) -> F:
        """Decorator: each call runs in a conversation of its own, built from the arguments given here.

        On a generator function (sync or async) the conversation is current while the generator runs.
        """
        if inspect.isasyncgenfunction(func):
            @functools.wraps(func)
            def async_generator_wrapper(*args: Any, **kwargs: Any) -> Any:
                return stepped_async(func(*args, **kwargs), self.fresh().layer)
            return async_generator_wrapper  # type: ignore[return-value]
        if inspect.isgeneratorfunction(func):
            @functools.wraps(func)
            def generator_wrapper(*args: Any, **kwargs: Any) -> Any:
                return stepped(func(*args, **kwargs), self.fresh().layer)
            return generator_wrapper  # type: ignore[return-value]
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with self.fresh():
                    return await func(*args, **kwargs)
            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            with self.fresh():
                return func(*args, **kwargs)
        return sync_wrapper  # type: ignore[return-value]

    def fresh(self) -> ConversationScope:
        """A new scope from the same arguments (a new id when none was given; the environment read again)."""
        return ConversationScope(self._given_id, **self._fields, metadata=self._given_metadata, enabled=self.enabled)


def conversation(conversation_id: str | None = None, **kwargs: Any) -> ConversationScope:
    """Open a conversation: ``with agentsight.conversation("wa-3859", customer_id=...):`` or as a decorator.

    Fields: ``customer_id``, ``customer_ip_address``, ``device``, ``source``, ``language``, ``name``,
    ``environment``, ``metadata`` (all optional); ``enabled=False`` records nothing inside. A missing id is
    generated (``conv_<12 hex>``). Never raises: text is cut to 255 characters, a bad IP address dropped.
    """
    return ConversationScope(conversation_id, **kwargs)
