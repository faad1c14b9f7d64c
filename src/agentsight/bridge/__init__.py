"""The ``agentsight bridge``: an OTLP receiver that turns conversation spans into AgentSight payloads.

Apps export plain OTLP (to a Collector tier, or straight here); the bridge feeds the same translator
and delivery as the in-process exporter. ``core`` holds the span logic, ``server`` the OTLP/HTTP and
OTLP/gRPC transports.
"""
