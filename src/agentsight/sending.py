"""A tracker's sending results: what ``send_tracked_data()`` sends (or would send), what ``flush()`` settled."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import SpanProcessor

from agentsight.export.delivery import FlushResult
from agentsight.export.pipeline import ConversationSpanRouter, configured_exporters
from agentsight.export.rest import outline, translate
from agentsight.spans.turn import ConversationTurn

_KIND_TO_SUMMARY = {
    "question": "questions",
    "answer": "answers",
    "attachments": "attachments",
    "action": "actions",
    "button": "buttons",
}


def summarize(open_now: tuple[ConversationTurn, ...], status: str | None = None) -> dict[str, Any]:
    """``{"items", "summary"}`` of these turns: each item's ``data`` (its body), or ``status`` when one is given."""
    items: list[dict[str, Any]] = []
    summary = {"questions": 0, "answers": 0, "attachments": 0, "actions": 0, "buttons": 0, "errors": 0}
    for turn in open_now:
        if status is None:  # the bodies are wanted: translate in full
            payloads = translate(turn.span)  # type: ignore[arg-type]
            sent = [(payload.kind, payload.timestamp, payload.body) for payload in (payloads.all() if payloads else ())]
        else:  # only kinds and times: much cheaper, and this runs on the app's thread at every send
            sent = [(kind, timestamp, status) for kind, timestamp in outline(turn.span) or ()]  # type: ignore[arg-type]
        for kind, timestamp, detail in sent:
            items.append({"index": len(items), "type": kind, "timestamp": timestamp,
                          "data" if status is None else "status": detail})
            if kind in _KIND_TO_SUMMARY:
                summary[_KIND_TO_SUMMARY[kind]] += 1
    summary["total"] = len(items)
    return {"items": items, "summary": summary}


def flush_all(
    router: ConversationSpanRouter, own_processor: SpanProcessor | None, timeout: float | None
) -> dict[str, Any]:
    """Flush the tracker's own processor, the app's provider and every exporter delivering turns; merge the results."""
    if own_processor is not None:
        own_processor.force_flush(int((timeout or 30.0) * 1000))
    exporters = []
    if router.direct is not None:
        exporters.append(router.direct.exporter)
    app_provider = router.app_provider()
    if app_provider is not None:
        app_provider.force_flush(int((timeout or 30.0) * 1000))
        exporters.extend(e for e in configured_exporters(app_provider) if e not in exporters)
    results = [exporter.flush(timeout) for exporter in exporters]
    merged = FlushResult(all(r.complete for r in results), [item for r in results for item in r.items],
                         sum(r.dropped for r in results))
    return merged.as_dict()
