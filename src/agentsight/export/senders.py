"""How each wire sends what delivery hands it: :class:`RestSender` (0.0.x endpoints) and :class:`IngestSender`.

Both translate on the delivery thread (the turns carry their translation as ``build``), send through
:meth:`DeliveryClient.send` (the one retry loop) and report every payload with ``DeliveryClient.record``.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any

from agentsight.config import DeliverySettings
from agentsight.export import ingest
from agentsight.export.delivery import DeliveryClient
from agentsight.export.payloads import Payload, TurnPayloads
from agentsight.export.preflight import GZIP_INGEST, KeyPreflight
from agentsight.export.results import Answer, ItemResult, PendingTurn
from agentsight.export.transport import HttpResponse, HttpTransport, scrub_secrets

logger = logging.getLogger("agentsight.export.delivery")

INGEST_PATH = "/api/ingest/"
GZIP_MIN_BYTES = 8 * 1024
"""Documents at or under this size go uncompressed (as upstream: they fit a few TCP segments anyway)."""
GZIP_LEVEL = 1
"""Level 1: about a third of level 6's CPU per document, for 15 % (one turn) to 35 % (ten turns) more
compressed bytes, under 200 bytes per turn: the CPU is taken from the app's threads, the bytes are not."""
INGEST_LINGER = 0.5
"""Seconds a delivery thread waits for more turns to share its ingest document: a turn reaches the API up to
half a second later (upstream 0.1.x waits up to 5 s), and a busy app pays one request, one compression and
one thread switch for many turns. Flush, exit and shutdown do not wait; the bridge's turns wait at most
:data:`~agentsight.export.delivery.AWAITED_LINGER`."""
MAX_NAMED_BLOCKS = 5
"""Offending blocks a rejection log line names before it only counts the rest."""


class RestSender:
    """One turn at a time: the conversation POST (get-or-create), then each item under the id it answered.

    No server id outlives its turn, as upstream: the API may have lost or renumbered conversations since
    (a database restored or reset), and an item must never carry another conversation's id. An item
    refused for its reference (a 400 on the ``conversation`` field, such as DRF's ``Invalid pk``, or a 404)
    re-creates the conversation and is sent once more under the id that answers.
    """

    batch_payloads = 1
    batch_bytes = 1 << 62
    linger = 0.0

    def __init__(self, transport: HttpTransport) -> None:
        self._transport = transport

    @property
    def endpoint(self) -> str:
        """The API's base URL, as log lines name it."""
        return self._transport.endpoint

    def deliver(self, turns: Sequence[PendingTurn], client: DeliveryClient) -> None:
        """Deliver each turn's REST payloads."""
        for turn in turns:
            self.deliver_payloads(turn.build(), client)

    def deliver_payloads(self, turn: TurnPayloads, client: DeliveryClient) -> None:
        """The conversation POST, then the items under the server id it answered."""
        created = self._create(turn, client)
        client.record(created)
        server_id: int | None = created.response["id"] if created.success else None
        for payload in turn.items:
            answer = self._send(turn, payload, server_id, client) if server_id is not None else None
            if answer is not None and server_id is not None and _refused_reference(answer):
                again = self._create(turn, client)
                logger.warning("AgentSight API at %s refused id %d for conversation %s (%s): %s", self.endpoint,
                               server_id, turn.conversation_id, answer.error,
                               f"created it again as id {again.response['id']}, resending the {payload.kind}"
                               if again.success else "could not create it again")
                server_id = again.response["id"] if again.success else None
                answer = self._send(turn, payload, server_id, client) if server_id is not None else None
            if answer is None:
                client.record(ItemResult(turn.conversation_id, payload.kind, payload.timestamp, False,
                                         error="not sent: the conversation was not created",
                                         outcome="without_conversation"))
            else:
                client.record(self._result(turn.conversation_id, payload, answer, client))

    def _create(self, turn: TurnPayloads, client: DeliveryClient) -> ItemResult:
        """The conversation POST (get-or-create); a successful result's ``response`` holds the server ``id``."""
        return self._result(turn.conversation_id, turn.conversation, self._send(turn, turn.conversation, None, client),
                            client)

    def _send(self, turn: TurnPayloads, payload: Payload, server_id: int | None, client: DeliveryClient) -> Answer:
        check = _conversation_id_check if payload.kind == "conversation" else None
        return client.send(f"a {payload.kind} payload of conversation {turn.conversation_id} (POST {payload.path})",
                           partial(self._transport.post, payload, server_id), check)

    def _result(self, conversation_id: str, payload: Payload, answer: Answer, client: DeliveryClient) -> ItemResult:
        """The outcome of a payload's final answer (a refusal logged once per distinct message)."""
        result = ItemResult(conversation_id, payload.kind, payload.timestamp, answer.success, error=answer.error)
        if answer.response is None:
            result.outcome = "expired"
            return result
        result.status = answer.response.status
        if not answer.success:
            result.outcome = "rejected"
            client.log_rejection(f"a {payload.kind} payload", answer.error or "")
            return result
        try:
            result.response = answer.response.json()
        except ValueError:
            logger.warning("AgentSight API at %s answered %s %s with a body that is not JSON", self.endpoint,
                           result.status, payload.path)
        return result


def _refused_reference(answer: Answer) -> bool:
    """Whether an item was refused for its ``conversation`` reference: a 404, or a 400 naming that field."""
    response = answer.response
    if answer.success or response is None or response.status not in (400, 404):
        return False
    if response.status == 404:
        return True
    try:
        data = response.json()
    except ValueError:
        return False
    return isinstance(data, dict) and "conversation" in data


def _conversation_id_check(response: HttpResponse) -> str | None:
    """A conversation POST must answer the server id its items refer to; otherwise it is retried."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("id"), int):
        return None
    return f"HTTP {response.status} without a conversation id: {response.excerpt()!r}"


class IngestSender:
    """Whole batches: the queued turns of many conversations in one ``POST /api/ingest/`` document.

    gzip above :data:`GZIP_MIN_BYTES` once the key preflight saw the ``gzip-ingest`` capability. A 400
    that names offending conversation blocks drops those (logged with their ids) and sends the rest
    once more. Attachment bytes follow the document on the REST route (``rest``), as upstream does.
    """

    def __init__(self, transport: HttpTransport, settings: DeliverySettings, preflight: KeyPreflight,
                 rest: RestSender) -> None:
        self._transport = transport
        self._preflight = preflight
        self._rest = rest
        self.batch_payloads = settings.max_batch_spans
        self.batch_bytes = settings.max_batch_bytes
        self.linger = INGEST_LINGER

    @property
    def endpoint(self) -> str:
        """The API's base URL, as log lines name it."""
        return self._transport.endpoint

    def deliver(self, turns: Sequence[PendingTurn], client: DeliveryClient) -> None:
        """Send the turns as one document (less any refused blocks), then their attachments."""
        translated: list[ingest.IngestTurn] = [turn.build() for turn in turns]
        delivered = self._send(translated, client, drop_offending=True)
        for turn in translated:
            if turn.uploads is not None and turn.conversation_id in delivered:
                self._rest.deliver_payloads(turn.uploads, client)

    def _send(self, turns: list[ingest.IngestTurn], client: DeliveryClient, drop_offending: bool) -> set[str]:
        """Send a document of ``turns``; returns the conversation ids delivered."""
        data = json.dumps(ingest.document(turns), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if len(data) > GZIP_MIN_BYTES and self._preflight.has_capability(GZIP_INGEST):
            data = zlib.compress(data, GZIP_LEVEL, wbits=31)  # wbits 31: the gzip format
            headers["Content-Encoding"] = "gzip"
        conversations = {turn.conversation_id for turn in turns}
        answer = client.send(f"an ingest batch of {len(conversations)} conversation(s) (POST {INGEST_PATH})",
                             partial(self._transport.request, "POST", INGEST_PATH, data, headers))
        if answer.success:
            _record(client, turns, answer.response, None, "delivered")
            return conversations
        if answer.response is None:
            _record(client, turns, None, answer.error, "expired")
            return set()
        offending = _offending_blocks(answer.response) if answer.response.status == 400 else None
        if drop_offending and offending and set(offending) < conversations:
            refused = [turn for turn in turns if turn.conversation_id in offending]
            client.log_rejection(f"conversation(s) {_named(offending)} of an ingest batch",
                                 "; ".join(f"{cid}: {errors}" for cid, errors in offending.items()))
            _record(client, refused, answer.response, answer.error, "rejected")
            return self._send([turn for turn in turns if turn.conversation_id not in offending], client, False)
        client.log_rejection(f"an ingest batch of conversation(s) {_named(conversations)}", answer.error or "")
        _record(client, turns, answer.response, answer.error, "rejected")
        return set()


def _record(client: DeliveryClient, turns: Iterable[ingest.IngestTurn], response: HttpResponse | None,
            error: str | None, outcome: Any) -> None:
    status = response.status if response is not None else None
    client.record_all([ItemResult(turn.conversation_id, span["kind"], span["started_at"], outcome == "delivered",
                                  status, error=error, outcome=outcome) for turn in turns for span in turn.spans])


def _offending_blocks(response: HttpResponse) -> dict[str, str] | None:
    """Conversation id → its errors, when a 400 names every offending block; ``None`` when it cannot tell."""
    try:
        data = response.json()
    except ValueError:
        return None
    blocks = data.get("conversations") if isinstance(data, dict) else None
    if not isinstance(blocks, list) or not blocks or data.get("truncated"):
        return None
    offending: dict[str, str] = {}
    for block in blocks:
        if not isinstance(block, dict) or not isinstance(block.get("conversation_id"), str):
            return None
        errors = block.get("errors")
        offending[block["conversation_id"]] = scrub_secrets(
            "; ".join(f"{name}: {', '.join(map(str, e)) if isinstance(e, list) else e}" for name, e in errors.items())
            if isinstance(errors, dict) else str(errors or "no field detail")
        )
    return offending


def _named(conversation_ids: Iterable[str]) -> str:
    ids = sorted(conversation_ids)
    more = f" and {len(ids) - MAX_NAMED_BLOCKS} more" if len(ids) > MAX_NAMED_BLOCKS else ""
    return ", ".join(ids[:MAX_NAMED_BLOCKS]) + more
