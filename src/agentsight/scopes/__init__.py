"""The current AgentSight API (upstream 0.1.x), on the same span model as :class:`~agentsight.ConversationTracker`.

::

    import agentsight

    agentsight.init()
    with agentsight.conversation("wa-3859"):
        with agentsight.turn():
            agentsight.user_message(text)
            agentsight.agent_message(reply)

Modules: :mod:`.runtime` (init, flush, shutdown), :mod:`.conversation`, :mod:`.turn` (the turn scope and its
lifetime), :mod:`.decorate` (``turn(...)``), :mod:`.actions` (``@tool``, ``@task``), :mod:`.calls` (messages,
buttons, attachments, metadata, ``wrap``, ``model_hint``), :mod:`.uploads`, :mod:`.fields`, :mod:`.stepping`,
:mod:`.watchdog`.
"""

from __future__ import annotations

from agentsight.scopes.actions import task, tool
from agentsight.scopes.calls import (
    abandon_turn,
    agent_message,
    button,
    end_turn,
    model_hint,
    open_conversation,
    record_attachments,
    update_metadata,
    user_message,
    wrap,
)
from agentsight.scopes.conversation import conversation
from agentsight.scopes.decorate import turn
from agentsight.scopes.runtime import flush, init, is_enabled, shutdown
from agentsight.scopes.uploads import upload_attachments

__all__ = [
    "abandon_turn", "agent_message", "button", "conversation", "end_turn", "flush", "init", "is_enabled",
    "model_hint", "open_conversation", "record_attachments", "shutdown", "task", "tool", "turn",
    "update_metadata", "upload_attachments", "user_message", "wrap",
]
