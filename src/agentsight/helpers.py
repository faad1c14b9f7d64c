"""Helpers with the upstream SDK's names."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone


def generate_conversation_id() -> str:
    """Return a new random conversation id of the upstream form ``conv_<12 hex>``."""
    return f"conv_{uuid.uuid4().hex[:12]}"


def get_iso_timestamp() -> str:
    """Return the current UTC time in ISO 8601 with offset, as the API expects."""
    return datetime.now(timezone.utc).isoformat()


__all__ = ["generate_conversation_id", "get_iso_timestamp"]
