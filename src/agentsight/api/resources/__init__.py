"""The namespaces of :class:`agentsight.api.AgentSight`, one module each."""

from agentsight.api.resources.actions import Actions
from agentsight.api.resources.conversations import Conversations
from agentsight.api.resources.feedbacks import Feedbacks
from agentsight.api.resources.messages import Messages
from agentsight.api.resources.spans import Spans
from agentsight.api.resources.tickets import Tickets
from agentsight.api.resources.usage import Usage

__all__ = ["Actions", "Conversations", "Feedbacks", "Messages", "Spans", "Tickets", "Usage"]
