"""The AgentSight span model: names (:mod:`.semconv`), turns in the OTel context (:mod:`.turn`),
model calls counted into turns (:mod:`.attribution`), and reading finished spans (:mod:`.finished`)."""
