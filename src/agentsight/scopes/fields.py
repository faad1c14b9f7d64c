"""A conversation's fields as span attributes, made as upstream 0.1.x makes them: never raising.

Text fields are cut to the 255 characters the API accepts, an IP address that does not parse is dropped
(each said once in the log), a missing conversation id is generated, metadata of any shape becomes JSON.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from agentsight.helpers import generate_conversation_id
from agentsight.spans import jsonsafe
from agentsight.spans import semconv as sc

logger = logging.getLogger("agentsight")

MAX_FIELD_LENGTH = 255
"""Characters the API accepts in a conversation field."""

_said: set[str] = set()
_said_lock = threading.Lock()


def warn_once(key: str, message: str, *args: object) -> None:
    """Log ``message`` at WARNING the first time ``key`` is seen in this process."""
    with _said_lock:
        if key in _said:
            return
        _said.add(key)
    logger.warning(message, *args)


def clamp(name: str, value: Any) -> str | None:
    """``value`` as text of at most :data:`MAX_FIELD_LENGTH` characters (``None`` stays ``None``)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    if len(text) <= MAX_FIELD_LENGTH:
        return text
    warn_once(f"clamp:{name}", "AgentSight: conversation field %r was %d characters, cut to %d (the API's limit)",
              name, len(text), MAX_FIELD_LENGTH)
    return text[:MAX_FIELD_LENGTH]


def valid_ip(value: Any) -> str | None:
    """The address when it parses as one, else ``None`` (the API would refuse the whole batch)."""
    text = str(value).strip() if value is not None else ""
    if not text:
        return None
    try:
        ipaddress.ip_address(text)
    except ValueError:
        warn_once("ip", "AgentSight: customer_ip_address %r is not an IP address and was dropped", value)
        return None
    return text


def conversation_attributes(
    conversation_id: Any,
    fields: Mapping[str, Any],
    default_environment: str | None,
) -> dict[str, Any]:
    """The conversation span attributes for ``conversation_id`` and ``fields`` (the 0.1.x keyword arguments).

    ``metadata`` is left out: the scope keeps it apart, to merge updates into (see :func:`metadata_attribute`).
    """
    attributes: dict[str, Any] = {sc.CONVERSATION_ID: clamp("conversation_id", conversation_id)
                                  or generate_conversation_id()}
    for field_name, attribute in sc.CONVERSATION_FIELDS:
        given = fields.get(field_name)
        if field_name == "environment":
            given = given or default_environment
        value = valid_ip(given) if field_name == "customer_ip_address" else clamp(field_name, given)
        if value is not None:
            attributes[attribute] = value
    return attributes


def metadata_attribute(metadata: Mapping[str, Any]) -> str:
    """Conversation metadata as the JSON text the span carries (any value: see :mod:`agentsight.spans.jsonsafe`)."""
    return jsonsafe.dumps(dict(metadata))


def merged_metadata(current: Mapping[str, Any], update: Any, remove: Iterable[str] | None) -> dict[str, Any]:
    """``current`` with ``update``'s keys set (shallow, every value kept as given) and ``remove``'s keys gone.

    Raises ``TypeError`` for an ``update`` that is not a mapping or a ``remove`` that is a single string.
    """
    if update is not None and not isinstance(update, Mapping):
        raise TypeError(f"metadata must be a dict, got {type(update).__name__}")
    if isinstance(remove, (str, bytes)):
        raise TypeError("remove must be a list of keys, not a single string")
    merged = dict(current)
    merged.update(update or {})
    for key in remove or ():
        merged.pop(key, None)
    return merged
