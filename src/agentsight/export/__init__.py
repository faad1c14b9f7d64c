"""From finished spans to the AgentSight API: the span processor and exporter, the two pure translations
(:mod:`.rest` for the 0.0.x endpoints, :mod:`.ingest` for ``POST /api/ingest/``), delivery and transport."""
