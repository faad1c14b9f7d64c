"""The base of AgentSight's instrumentors: its own version range always checked, a failure never spread.

``opentelemetry-instrument`` checks only the requirements of the distribution an entry point belongs to
(agentsight-otel's), then calls ``instrument(skip_dep_check=True)``: one distribution instruments many client
libraries here, each with a range of its own, so the range must be checked by the instrumentor itself. And
the loader stops loading every instrumentor after one that raises: a client release that moved something
we wrap must cost only that client's instrumentation.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

logger = logging.getLogger("agentsight.instrumentation")


class AgentSightInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """A ``BaseInstrumentor`` that checks ``instrumentation_dependencies()`` even when told to skip it, and
    that logs a failed ``_instrument`` (undoing what it patched) instead of raising."""

    def instrument(self, **kwargs: Any) -> Any:
        """Instrument the library when its installed release is in range; otherwise log why not."""
        kwargs.pop("skip_dep_check", None)
        try:
            return super().instrument(**kwargs)
        except Exception:  # the app, and every other instrumentation, must go on without this one
            logger.warning("AgentSight could not instrument with %s", type(self).__name__, exc_info=True)
            try:
                self._uninstrument(**kwargs)
            except Exception:  # what was patched before the failure stays; it still works
                logger.debug("AgentSight could not undo %s", type(self).__name__, exc_info=True)
            return None
