"""The explicit 0.1.x calls: what no decorator can observe, and the turn's lifetime.

Messages, buttons, attachment descriptors and metadata updates go to the current turn, whichever API opened
it; outside a turn, to a one-off turn of the current conversation (a message's is named ``message``, as
upstream names it). None of them raises into the app: with tracking off, or nowhere to record, they do
nothing (said at DEBUG).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from opentelemetry import context as otel_context

from agentsight.instrumentation.genai import MODEL_HINT
from agentsight.scopes import fields, runtime
from agentsight.scopes.conversation import ConversationScope, current_conversation
from agentsight.scopes.turn import add_message, current_turn_scope, target_turn
from agentsight.spans import jsonsafe
from agentsight.spans import semconv as sc
from agentsight.spans import turn as turns

logger = logging.getLogger("agentsight")
F = TypeVar("F", bound=Callable[..., Any])


def _record(name: str, event: str, attributes: dict[str, Any]) -> None:
    turn, one_off = target_turn(name)
    if turn is None:
        logger.debug("AgentSight %s not recorded: no turn and no conversation scope", name)
        return
    turn.add_event(event, attributes)
    if one_off is not None:
        one_off.finish()


def _message(sender: str, text: Any, metadata: dict[str, Any] | None) -> None:
    if not runtime.is_enabled():
        return
    turn, one_off = target_turn("message")
    add_message(turn, sender, text, metadata)
    if one_off is not None:
        one_off.finish()


def user_message(text: Any, metadata: dict[str, Any] | None = None) -> None:
    """Record a message from the end user (any number, any order)."""
    _message(sc.SENDER_END_USER, text, metadata)


def agent_message(text: Any, metadata: dict[str, Any] | None = None) -> None:
    """Record a message from the agent (any number, any order)."""
    _message(sc.SENDER_AGENT, text, metadata)


def button(button_event: str, label: str, value: str, metadata: dict[str, Any] | None = None) -> None:
    """Record a clicked button."""
    if not runtime.is_enabled():
        return
    attributes: dict[str, Any] = {sc.BUTTON_EVENT_NAME: str(button_event), sc.BUTTON_LABEL: str(label),
                                  sc.BUTTON_VALUE: str(value)}
    if metadata:
        attributes[sc.METADATA] = jsonsafe.dumps(metadata)
    _record("button", sc.BUTTON_EVENT, attributes)


def describe_attachment(file: Any) -> dict[str, Any]:
    """Name, size and type of a file, as far as it tells (a dict's keys, a file object's, a path)."""
    if isinstance(file, dict):
        return {key: file[key] for key in ("name", "filename", "size", "mime_type", "content_type") if key in file}
    descriptor: dict[str, Any] = {}
    for attribute, key in (("filename", "name"), ("name", "name"), ("size", "size"), ("content_type", "mime_type")):
        value = getattr(file, attribute, None)
        if value is not None and key not in descriptor:
            descriptor[key] = value if isinstance(value, (str, int)) else str(value)
    if not descriptor and isinstance(file, str):
        descriptor["name"] = file
    return descriptor


def record_attachments(files: list[Any], sender: str = sc.SENDER_END_USER, metadata: dict[str, Any] | None = None,
                       *, mode: str | None = None) -> None:
    """Record that files are part of the conversation, for bytes moved elsewhere: descriptors only, no bytes.

    (``upload_attachments()`` moves bytes and records this itself, with ``mode``.)
    """
    if not runtime.is_enabled():
        return
    attributes: dict[str, Any] = {
        sc.ATTACHMENTS_SENDER: str(sender),
        sc.ATTACHMENTS_DESCRIPTORS: jsonsafe.dumps([describe_attachment(file) for file in files]),
    }
    if mode is not None:
        attributes[sc.ATTACHMENTS_MODE] = mode
    if metadata:
        attributes[sc.METADATA] = jsonsafe.dumps(metadata)
    _record("attachments", sc.ATTACHMENTS_EVENT, attributes)


def open_conversation(conversation_id: str, **kwargs: Any) -> None:
    """The visit: the conversation exists (the widget loaded) before anyone engaged; its first turn marks it used.

    Takes the fields ``conversation()`` takes. What ``initialize_conversation()`` records in the seed API.
    """
    tracker = runtime.tracker()
    if tracker is None:
        return
    scope = ConversationScope(conversation_id, **kwargs)
    tracker.record_conversation({**scope.attributes, sc.IS_USED: False})


def update_metadata(metadata: dict[str, Any] | None = None, *, remove: Iterable[str] | None = None) -> None:
    """Add to or change the current conversation's metadata, keeping the rest (a shallow merge; ``remove``
    deletes keys). Recorded at once, as upstream does: in a turn on the turn, else as a conversation record."""
    scope = current_conversation()
    tracker = runtime.tracker()
    if tracker is None or scope is None or not scope.enabled:
        logger.debug("AgentSight update_metadata not recorded: no conversation scope")
        return
    try:
        text = scope.set_metadata(fields.merged_metadata(scope.metadata, metadata, remove))
    except TypeError as error:
        logger.warning("AgentSight update_metadata ignored: %s", error)
        return
    turn = turns.current_turn()
    if turn is not None and turn.conversation_id == scope.conversation_id:
        turn.span.set_attribute(sc.CONVERSATION_METADATA, text)
        turn.add_event(sc.METADATA_UPDATED_EVENT, {})
    else:
        tracker.record_conversation({**scope.attributes, sc.IS_USED: False,
                                     sc.CONVERSATION_RECORD: "metadata_updated"})


def wrap(obj: Any) -> Any:
    """Bind the current turn's end to ``obj`` (a streamed response, a generator, a task, an awaitable) rather
    than to its block; ``obj`` unchanged when there is no 0.1.x turn to bind."""
    scope = current_turn_scope()
    return obj if scope is None else scope.wrap(obj)


def end_turn(complete: bool = True) -> None:
    """End the current turn (one kept open, or finished by a later callback)."""
    scope = current_turn_scope()
    if scope is not None:
        scope.end(complete)


def abandon_turn() -> None:
    """End the current turn incomplete (``abandoned``): its messages stay out of the transcript, its tokens count.

    For an app that noticed its client disconnect and returns normally.
    """
    scope = current_turn_scope()
    if scope is not None:
        scope.abandon()


class ModelHintScope:
    """The model to name model calls by when they resolve none of their own (innermost wins; a call that
    resolves a model keeps it). Read when a call starts. Context manager (sync, async) or decorator."""

    def __init__(self, model: Any) -> None:
        self.model = None if model is None else str(model)
        self._tokens: list[object] = []

    def __enter__(self) -> ModelHintScope:
        self._tokens.append(otel_context.attach(otel_context.set_value(MODEL_HINT, self.model or None)))
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._tokens:
            otel_context.detach(self._tokens.pop())  # type: ignore[arg-type]

    async def __aenter__(self) -> ModelHintScope:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__(*exc_info)

    def __call__(self, func: F) -> F:
        """Decorator: each call runs under the hint."""
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with ModelHintScope(self.model):
                    return await func(*args, **kwargs)
            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            with ModelHintScope(self.model):
                return func(*args, **kwargs)
        return sync_wrapper  # type: ignore[return-value]


def model_hint(model: Any) -> ModelHintScope:
    """``with agentsight.model_hint("llama3.1:8b"):``: see :class:`ModelHintScope`."""
    return ModelHintScope(model)
