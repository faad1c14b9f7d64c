"""The key preflight: one ``GET /api/me/`` in the background, as upstream 0.1.x does.

It learns what the server can do (``capabilities``: ``gzip-ingest`` lets ingest documents travel
compressed) and says once, clearly, when the key cannot work: refused, read-only, or its
subscription inactive. It never blocks the caller, never raises, and never turns tracking off: a
server without the route, or one that cannot be reached, only leaves documents uncompressed.
"""

from __future__ import annotations

import http.client
import logging
import threading
from typing import Any

from agentsight.export.transport import HttpTransport

logger = logging.getLogger("agentsight.export.preflight")

ME_PATH = "/api/me/"
GZIP_INGEST = "gzip-ingest"
"""The capability that says ``POST /api/ingest/`` accepts ``Content-Encoding: gzip``."""


class KeyPreflight:
    """Asks ``GET /api/me/`` once on a daemon thread; :meth:`has_capability` reads what it learnt."""

    def __init__(self, transport: HttpTransport, endpoint: str) -> None:
        self._transport = transport
        self._endpoint = endpoint
        self._capabilities: frozenset[str] = frozenset()
        self.role: str | None = None
        self.done = threading.Event()
        """Set once the preflight has an answer (or gave up)."""

    def start(self) -> None:
        """Run the preflight in the background."""
        threading.Thread(target=self._run, name="agentsight-key-preflight", daemon=True).start()

    def has_capability(self, name: str) -> bool:
        """Whether ``GET /api/me/`` listed ``name`` (``False`` until it answered)."""
        return name in self._capabilities

    def _run(self) -> None:
        try:
            response = self._transport.request("GET", ME_PATH)
            self._learn(response.status, response.json() if response.body else {}, response.error_message())
        except (OSError, http.client.HTTPException) as error:
            logger.debug("AgentSight key preflight did not complete: %r", error)
        except ValueError:
            logger.debug("AgentSight key preflight: %s answered with a body that is not JSON", self._endpoint)
        finally:
            self._transport.close()
            self.done.set()

    def _learn(self, status: int, data: Any, detail: str) -> None:
        if status == 200 and isinstance(data, dict):
            capabilities = data.get("capabilities")
            if isinstance(capabilities, list):
                self._capabilities = frozenset(item for item in capabilities if isinstance(item, str))
            self.role = data.get("role") if isinstance(data.get("role"), str) else None
            if self.role == "read":
                logger.error(
                    "AgentSight: the API key for %s has the read role; sending tracked data needs a write key, "
                    "so %s will refuse every batch", data.get("agent_name") or data.get("agent_id"), self._endpoint,
                )
            else:
                logger.debug("AgentSight key preflight: role %s, capabilities %s", self.role,
                             sorted(self._capabilities))
        elif status == 401 and "subscription" in detail.lower():
            logger.error("AgentSight: the subscription behind the API key is not active (%s answered: %s); tracked "
                         "data will be refused until it is", self._endpoint, detail)
        elif status in (401, 403):
            logger.error("AgentSight: %s refused the API key (HTTP %d: %s); tracked data will be refused until "
                         "AGENTSIGHT_API_KEY holds a valid key", self._endpoint, status, detail)
        elif status == 404:
            logger.debug("AgentSight key preflight: %s has no %s route", self._endpoint, ME_PATH)
        else:
            logger.debug("AgentSight key preflight: %s answered HTTP %d", self._endpoint, status)
