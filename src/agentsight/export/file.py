"""``AGENTSIGHT_FILE_EXPORTER``: the ingest documents that would be sent, written to a directory instead.

A development aid, as in upstream 0.1.x: run an integration with no API, no key and no network, then read
what AgentSight would have received. The documents come from :mod:`agentsight.export.ingest`, the same
translation the ingest wire uses; attachment bytes are not written (descriptors only, as on the wire).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
from collections.abc import Sequence
from datetime import datetime, timezone

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from agentsight.export import ingest

logger = logging.getLogger("agentsight")


class FileSpanExporter(SpanExporter):
    """Writes one ingest document per export batch into ``directory``, as ``<UTC time>-<counter>.json``."""

    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(os.path.expanduser(directory))
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise ValueError(f"AGENTSIGHT_FILE_EXPORTER must name a directory; {self.directory} is a file")
        os.makedirs(self.directory, exist_ok=True)
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self.files_written = 0
        """How many documents were written."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Translate the conversation spans among ``spans`` into one document and write it."""
        translated = [turn for turn in map(ingest.translate, spans) if turn is not None]
        if not translated:
            return SpanExportResult.SUCCESS
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        path = os.path.join(self.directory, f"{stamp}-{next(self._counter):06d}.json")
        try:
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(ingest.document(translated), handle, indent=2, ensure_ascii=False)
                handle.write("\n")
        except OSError as error:
            logger.error("AgentSight could not write %s: %s", path, error)
            return SpanExportResult.FAILURE
        with self._lock:
            self.files_written += 1
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release."""
