"""One delivery pipeline per configuration and process, shared by every exporter (and so tracker) that has it.

Exporters with the same API key, endpoint, wire and delivery settings use one :class:`SharedDelivery`: one
bounded queue, one set of delivery threads (:class:`~agentsight.export.delivery.DeliveryClient`) and one key
preflight. A dropped exporter leaves nothing behind (its pipeline serves the next one with that configuration);
the pipeline stops when the last exporter using it shuts down, or when the process ends
(:mod:`agentsight.export.lifecycle`).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from dataclasses import astuple, dataclass, field

from agentsight.config import DEFAULT_CONCURRENCY, Settings
from agentsight.export.delivery import DeliveryClient, Sender
from agentsight.export.preflight import KeyPreflight
from agentsight.export.senders import IngestSender, RestSender
from agentsight.export.transport import HttpTransport


@dataclass(eq=False)
class SharedDelivery:
    """One configuration's delivery: its queue and threads (``client``) and, on the ingest wire, the key preflight."""

    client: DeliveryClient
    key_check: KeyPreflight | None
    users: weakref.WeakSet[object] = field(default_factory=weakref.WeakSet)
    """The exporters using it; one that is garbage-collected leaves by itself."""


_lock = threading.Lock()
_deliveries: dict[tuple[object, ...], SharedDelivery] = {}


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # a parent thread may have held it at fork; each client resets its own state


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _key(settings: Settings) -> tuple[object, ...]:
    return settings.api_key, settings.endpoint, settings.protocol, settings.verify_key, astuple(settings.delivery)


def _build(settings: Settings) -> SharedDelivery:
    transport = HttpTransport(settings.endpoint, settings.api_key or "", settings.delivery.timeout)
    rest_sender = RestSender(transport)
    sender: Sender = rest_sender
    key_check = None
    if settings.protocol == "ingest":
        key_check = KeyPreflight(transport, settings.endpoint)
        if settings.verify_key:
            key_check.start()
        sender = IngestSender(transport, settings.delivery, key_check, rest_sender)
    concurrency = settings.delivery.max_concurrency or DEFAULT_CONCURRENCY[settings.protocol]
    return SharedDelivery(DeliveryClient(sender, settings.delivery, concurrency, transport.close), key_check)


def acquire(settings: Settings, user: object) -> SharedDelivery:
    """The pipeline for ``settings`` (made on first use), now also used by ``user``; the key must be valid."""
    key = _key(settings)
    with _lock:
        delivery = _deliveries.get(key)
        if delivery is None:
            delivery = _deliveries[key] = _build(settings)
        delivery.users.add(user)
    return delivery


def release(delivery: SharedDelivery, user: object, timeout: float) -> bool:
    """``user`` is done with ``delivery``: wait up to ``timeout`` seconds for what is queued to be delivered.

    The last user also stops the pipeline (what is still queued after ``timeout`` is dropped, counted and
    logged). Returns whether everything was settled in time.
    """
    with _lock:
        delivery.users.discard(user)
        last = not delivery.users
        if last:
            for key in [key for key, value in _deliveries.items() if value is delivery]:
                del _deliveries[key]
    return delivery.client.shutdown(timeout) if last else delivery.client.wait(timeout)


def live() -> list[SharedDelivery]:
    """The pipelines of this process."""
    with _lock:
        return list(_deliveries.values())


def settle_all(timeout: float, stop: bool) -> bool:
    """Wait for every pipeline at once, all within ``timeout`` seconds; with ``stop``, stop them too.

    Returns whether everything queued was settled (delivered or given up on) in time.
    """
    deliveries = live()
    if not deliveries:
        return True
    deadline = time.monotonic() + timeout
    settled: list[bool] = []

    def settle(delivery: SharedDelivery) -> None:
        remaining = max(0.0, deadline - time.monotonic())
        settled.append(delivery.client.shutdown(remaining) if stop else delivery.client.wait(remaining))

    threads = [threading.Thread(target=settle, args=(delivery,), name="agentsight-drain", daemon=True)
               for delivery in deliveries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + 0.1)
    return len(settled) == len(deliveries) and all(settled)
