"""The ``agentsight bridge``: an OTLP receiver that turns conversation spans into AgentSight payloads.

Apps export plain OTLP (to a Collector tier, or straight here); the bridge feeds the same translator
and delivery as the in-process exporter, and acknowledges a request only once its conversations are
delivered. ``core`` holds the span logic and when to acknowledge (with ``assembly`` and ``acks``),
``otlp_http`` and ``otlp_grpc`` the receivers, ``server`` the :class:`~agentsight.bridge.server.Bridge`
running both.
"""
