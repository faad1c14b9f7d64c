#!/usr/bin/env python3
"""Record what the upstream ``agentsight`` SDK (0.1.4) actually puts on the wire.

Standard library only. The script has two halves in one file:

* **recorder** (default mode, any Python 3.9+): starts a fake AgentSight
  backend and a stand-in OpenAI-compatible server on 127.0.0.1, then runs each
  flow in a fresh subprocess of the *upstream* venv's interpreter and writes
  ``upstream-0.1.4/<flow>.json`` next to this file.
* **child** (``--child FLOW``, run by the recorder with ``--python``): imports
  the upstream ``agentsight`` package, drives one flow through its public API,
  flushes and shuts down.

Nothing from the upstream package is copied here; the child only calls it.

Re-record::

    python3 tests/golden/record_upstream.py --python /tmp/up/v014/bin/python

See README.md in this directory for what each file holds.
"""

import argparse
import base64
import email.parser
import email.policy
import gzip
import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PYTHON = "/tmp/up/v014/bin/python"
DEFAULT_OUT = os.path.join(HERE, "upstream-0.1.4")

#: Format-valid (``ags_`` + 32 hex + ``_`` + 6 hex), not a real key.
API_KEY = "ags_0123456789abcdef0123456789abcdef_abcdef"

ME_OK = {
    "role": "write",
    "agent_id": 1,
    "agent_name": "golden",
    "environments": [{"slug": "production"}, {"slug": "development"}],
    "capabilities": ["gzip-ingest"],
}

#: The conversation fields every "full" flow passes (names exactly as the
#: upstream ``conversation()`` / ``open_conversation()`` keywords).
CONV_FIELDS = dict(
    customer_id="user-7",
    customer_ip_address="203.0.113.9",
    device="desktop",
    source="web",
    language="en-US",
    environment="production",
    metadata={"page_url": "https://shop.example/help"},
)

LLM_MODEL_REQUESTED = "gpt-4o-mini"
#: What the stand-in answers with, like the real API (a dated snapshot), so
#: the recording shows how the SDK treats requested vs resolved model.
LLM_MODEL_RESOLVED = "gpt-4o-mini-2024-07-18"


# ===========================================================================
# Flow definitions (the child half). Each takes the imported upstream module.
# ===========================================================================


def _tools(ags):
    @ags.tool
    def lookup_order(order_id):
        return {"status": "shipped"}

    return lookup_order


def flow_visit(ags, ctx):
    ags.open_conversation("conv-visit", **CONV_FIELDS)


def flow_seed_turn(ags, ctx, conversation_id="conv-1", filler=0):
    lookup_order = _tools(ags)
    with ags.conversation(conversation_id, **CONV_FIELDS):
        with ags.turn():
            ags.user_message("Hello, I need help")
            lookup_order(order_id="A-1")
            ags.agent_message("This is a sample response")
            for i in range(filler):
                sender = ags.user_message if i % 2 == 0 else ags.agent_message
                sender(f"message {i:02d} " + "x" * (500 - 11))
            ags.button("contact_human_agent", "Create ticket", "create-ticket")


def flow_two_turns(ags, ctx):
    with ags.conversation("conv-2", **CONV_FIELDS):
        with ags.turn():
            ags.user_message("First question")
            ags.agent_message("First answer")
        with ags.turn():
            ags.user_message("Second question")
            ags.agent_message("Second answer")


def flow_task_and_tool_error(ags, ctx):
    @ags.task
    def summarize_history(limit):
        return f"summary of {limit} messages"

    @ags.tool
    def charge_card(amount, currency="EUR"):
        raise ValueError("boom")

    with ags.conversation("conv-3", **CONV_FIELDS):
        with ags.turn():
            ags.user_message("Please refund me")
            summarize_history(limit=5)
            try:
                charge_card(amount=10)
            except ValueError:
                pass
            ags.agent_message("Sorry, the refund failed")


def flow_turn_error(ags, ctx):
    try:
        with ags.conversation("conv-4", **CONV_FIELDS):
            with ags.turn():
                ags.user_message("This will crash")
                raise RuntimeError("agent crashed")
    except RuntimeError:
        pass


def flow_llm_call(ags, ctx):
    import openai

    client = openai.OpenAI(base_url=ctx["llm_url"] + "/v1", api_key="sk-golden")
    with ags.conversation("conv-llm", **CONV_FIELDS):
        with ags.turn():
            ags.user_message("Where is my order?")
            reply = client.chat.completions.create(
                model=LLM_MODEL_REQUESTED,
                messages=[{"role": "user", "content": "Where is my order?"}],
            )
            text = reply.choices[0].message.content
            stream = client.chat.completions.create(
                model=LLM_MODEL_REQUESTED,
                messages=[{"role": "user", "content": "Say it again"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            parts = []
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    parts.append(chunk.choices[0].delta.content)
            ags.agent_message(text + " / " + "".join(parts))


def flow_llm_stream_injected(ags, ctx):
    import openai

    client = openai.OpenAI(base_url=ctx["llm_url"] + "/v1", api_key="sk-golden")
    with ags.conversation("conv-llm-2", **CONV_FIELDS):
        with ags.turn():
            ags.user_message("Stream please")
            parts = []
            for chunk in client.chat.completions.create(
                model=LLM_MODEL_REQUESTED,
                messages=[{"role": "user", "content": "Stream please"}],
                stream=True,
            ):
                # Would raise IndexError on a usage-only chunk if the SDK let
                # the one it asked for through.
                parts.append(chunk.choices[0].delta.content or "")
            ags.agent_message("".join(parts))


def flow_attachments(ags, ctx):
    with ags.conversation("conv-att", **CONV_FIELDS):
        with ags.turn():
            ags.user_message("Here is my receipt")
            # 1) an already-base64 string in the dict form
            ags.upload_attachments(
                {
                    "filename": "receipt.txt",
                    "data": base64.b64encode(b"hello receipt\n").decode("ascii"),
                }
            )
            # 2) raw bytes in the dict form, explicit mime type, agent sender,
            #    metadata (upstream has no multipart mode: bytes are base64'd)
            ags.upload_attachments(
                [{"filename": "pixel.png", "data": b"\x89PNG\r\n\x1a\n" + b"\0" * 24,
                  "mime_type": "image/png"}],
                sender="agent",
                metadata={"origin": "camera"},
            )
            # 3) descriptor only, no bytes moved
            ags.record_attachments(
                [{"name": "invoice.pdf", "size": 2048, "mime_type": "application/pdf"}],
                metadata={"stored_in": "s3"},
            )
            ags.agent_message("Thanks, got it")


def flow_attachments_lookup_fallback(ags, ctx):
    with ags.conversation("conv-att-2", **CONV_FIELDS):
        ags.upload_attachments(
            {"filename": "note.txt",
             "data": base64.b64encode(b"note\n").decode("ascii")}
        )


def flow_metadata_update(ags, ctx):
    with ags.conversation("conv-meta", **CONV_FIELDS):
        with ags.turn():
            ags.user_message("Upgrade me")
            ags.update_metadata({"plan": "enterprise", "escalated": False})
            ags.agent_message("Done")
        ags.update_metadata(remove=["page_url"])


def flow_gzip(ags, ctx):
    flow_seed_turn(ags, ctx, conversation_id="conv-1", filler=40)


def flow_key_check(ags, ctx):
    flow_seed_turn(ags, ctx, conversation_id="conv-1")


def flow_message_outside_turn(ags, ctx):
    with ags.conversation("conv-5", **CONV_FIELDS):
        ags.agent_message("Proactive nudge")


# name -> (function, description, server overrides)
FLOWS = {
    "visit": (
        flow_visit,
        "open_conversation('conv-visit', customer_id='user-7', "
        "customer_ip_address='203.0.113.9', device='desktop', source='web', "
        "language='en-US', environment='production', "
        "metadata={'page_url': 'https://shop.example/help'}) and nothing else.",
        {},
    ),
    "seed_turn": (
        flow_seed_turn,
        "conversation('conv-1', <same fields as visit>) > turn(): "
        "user_message('Hello, I need help'); @tool lookup_order(order_id='A-1') "
        "-> {'status': 'shipped'}; agent_message('This is a sample response'); "
        "button('contact_human_agent', 'Create ticket', 'create-ticket').",
        {},
    ),
    "two_turns": (
        flow_two_turns,
        "conversation('conv-2', <fields>) with two turns: "
        "('First question','First answer'), ('Second question','Second answer').",
        {},
    ),
    "task_and_tool_error": (
        flow_task_and_tool_error,
        "conversation('conv-3', <fields>) > turn(): user_message('Please refund me'); "
        "@task summarize_history(limit=5) -> 'summary of 5 messages'; "
        "@tool charge_card(amount=10) raises ValueError('boom') (caught by the flow); "
        "agent_message('Sorry, the refund failed').",
        {},
    ),
    "turn_error": (
        flow_turn_error,
        "conversation('conv-4', <fields>) > turn(): user_message('This will crash'); "
        "raise RuntimeError('agent crashed') (caught outside the conversation).",
        {},
    ),
    "llm_call": (
        flow_llm_call,
        "conversation('conv-llm', <fields>) > turn(): user_message('Where is my order?'); "
        "openai chat.completions.create(model='gpt-4o-mini') non-streaming, then "
        "streaming with stream_options={'include_usage': True}, both against the "
        "stand-in (which answers model 'gpt-4o-mini-2024-07-18'; usage "
        "42/12 with cached 10, reasoning 4 (non-stream) and 50/20 with cached 16, "
        "reasoning 8 (stream)); agent_message(...). llm_requests holds what the "
        "openai client sent to the stand-in.",
        {},
    ),
    "llm_stream_injected": (
        flow_llm_stream_injected,
        "conversation('conv-llm-2', <fields>) > turn(): user_message('Stream please'); "
        "one streaming chat completion WITHOUT stream_options (the SDK injects "
        "include_usage and swallows the usage-only chunk; the loop indexes "
        "choices[0] unguarded); agent_message(<joined text>).",
        {},
    ),
    "attachments": (
        flow_attachments,
        "conversation('conv-att', <fields>) > turn(): user_message; "
        "upload_attachments({'filename': 'receipt.txt', 'data': <base64 str>}); "
        "upload_attachments([{'filename': 'pixel.png', 'data': <32 raw bytes>, "
        "'mime_type': 'image/png'}], sender='agent', metadata={'origin': 'camera'}); "
        "record_attachments([{'name': 'invoice.pdf', 'size': 2048, "
        "'mime_type': 'application/pdf'}], metadata={'stored_in': 's3'}); agent_message. "
        "Attachment 'data' values are replaced by a size summary in the recording.",
        {},
    ),
    "attachments_lookup_fallback": (
        flow_attachments_lookup_fallback,
        "conversation('conv-att-2', <fields>) (no turn) > upload_attachments("
        "{'filename': 'note.txt', 'data': <base64>}) while POST /api/conversations/ "
        "answers 400: shows the GET /api/conversations/lookup/ fallback.",
        {"conversations_status": 400},
    ),
    "metadata_update": (
        flow_metadata_update,
        "conversation('conv-meta', <fields>) > turn(): user_message('Upgrade me'); "
        "update_metadata({'plan': 'enterprise', 'escalated': False}); "
        "agent_message('Done'); then, after the turn but inside the conversation, "
        "update_metadata(remove=['page_url']).",
        {},
    ),
    "message_outside_turn": (
        flow_message_outside_turn,
        "conversation('conv-5', <fields>) with agent_message('Proactive nudge') and "
        "no turn(): shows the implicit one-message turn.",
        {},
    ),
    "no_gzip_capability": (
        flow_gzip,
        "seed_turn flow (conv-1) plus 40 extra 500-char messages (alternating "
        "user/agent) so the batch exceeds 8 KiB, with /api/me/ answering without "
        "capabilities: ingest is sent uncompressed.",
        {"me_body": dict(ME_OK, capabilities=[])},
    ),
    "gzip": (
        flow_gzip,
        "Same as no_gzip_capability but /api/me/ advertises 'gzip-ingest': ingest "
        "is sent with Content-Encoding: gzip (body_bytes = compressed size).",
        {},
    ),
    "key_refused": (
        flow_key_check,
        "seed_turn flow (conv-1) with GET /api/me/ answering 401 "
        "{'detail': 'Invalid API key.'} (ingest still answers 200).",
        {"me_status": 401, "me_body": {"detail": "Invalid API key."}},
    ),
    "subscription_inactive": (
        flow_key_check,
        "seed_turn flow (conv-1) with GET /api/me/ answering 401 "
        "{'detail': 'No active subscription for this agent.'}.",
        {"me_status": 401,
         "me_body": {"detail": "No active subscription for this agent."}},
    ),
    "me_forbidden": (
        flow_key_check,
        "seed_turn flow (conv-1) with GET /api/me/ answering 403 "
        "{'detail': 'You do not have permission to perform this action.'}.",
        {"me_status": 403,
         "me_body": {"detail": "You do not have permission to perform this action."}},
    ),
    "me_missing": (
        flow_key_check,
        "seed_turn flow (conv-1) with GET /api/me/ answering 404 (a backend "
        "older than /api/me/).",
        {"me_status": 404, "me_body": {"detail": "Not found."}},
    ),
    "ingest_403": (
        flow_key_check,
        "seed_turn flow (conv-1) with GET /api/me/ answering 401 and POST "
        "/api/ingest/ answering 403 {'detail': 'Invalid API key.'} (what the real "
        "ingest route answers for a bad key): terminal, no retry.",
        {"me_status": 401, "me_body": {"detail": "Invalid API key."},
         "ingest_status": 403, "ingest_body": {"detail": "Invalid API key."}},
    ),
    "ingest_400_blocks": (
        flow_key_check,
        "seed_turn flow (conv-1) with POST /api/ingest/ answering 400 with "
        "per-block errors: shows the rejection log line.",
        {"ingest_status": 400, "ingest_body": {
            "detail": "Invalid payload.",
            "conversations": [{"index": 0, "conversation_id": "conv-1",
                               "errors": {"environment": ["Unknown environment."]}}]}},
    ),
    "ingest_500": (
        flow_key_check,
        "seed_turn flow (conv-1) with POST /api/ingest/ answering 500: shows the "
        "retry count/backoff and the drop warning.",
        {"ingest_status": 500, "ingest_body": {"detail": "Server error."}},
    ),
    "read_role": (
        flow_key_check,
        "seed_turn flow (conv-1) with GET /api/me/ answering 200 with role 'read'.",
        {"me_body": dict(ME_OK, role="read")},
    ),
}


def child_main(flow, llm_url, export_interval_ms, settle):
    """Runs inside the upstream venv. Logs go to stderr for the recorder."""
    import logging

    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("agentsight").setLevel(logging.DEBUG)

    import agentsight as ags

    ok = ags.init(export_interval_ms=export_interval_ms)
    print(f"init() -> {ok!r}", file=sys.stderr, flush=True)
    # Let the background key preflight (GET /api/me/) land first, so the
    # learned capabilities are in effect for the first batch.
    time.sleep(settle)
    FLOWS[flow][0](ags, {"llm_url": llm_url})
    print(f"flush() -> {ags.flush()!r}", file=sys.stderr, flush=True)
    ags.shutdown()


# ===========================================================================
# The recorder half.
# ===========================================================================


def _summarize_attachment_data(body):
    """Replace file bytes by a size summary; keep every field name."""
    if isinstance(body, dict) and isinstance(body.get("attachments"), list):
        for entry in body["attachments"]:
            if isinstance(entry, dict) and isinstance(entry.get("data"), str):
                raw = entry["data"]
                try:
                    decoded = len(base64.b64decode(raw, validate=True))
                except Exception:
                    decoded = None
                entry["data"] = {"_recorded_as": "base64 string",
                                 "chars": len(raw), "decoded_bytes": decoded}
    return body


def _parse_multipart(content_type, raw):
    msg = email.parser.BytesParser(policy=email.policy.default).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw
    )
    fields = []
    for part in msg.iter_parts():
        payload = part.get_payload(decode=True) or b""
        entry = {"name": part.get_param("name", header="content-disposition")}
        filename = part.get_filename()
        if filename is not None:
            entry.update(filename=filename, size=len(payload),
                         content_type=part.get_content_type())
        else:
            entry["value"] = payload.decode("utf-8", "replace")
        fields.append(entry)
    return {"_multipart": fields}


class Backend:
    """State for the fake AgentSight backend; reset per flow."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset({})

    def reset(self, overrides):
        with self.lock:
            self.requests = []
            self.llm_requests = []
            self.conversations = {}
            self.me_status = overrides.get("me_status", 200)
            self.me_body = overrides.get("me_body", ME_OK)
            self.conversations_status = overrides.get("conversations_status", 201)
            self.ingest_status = overrides.get("ingest_status", 200)
            self.ingest_body = overrides.get("ingest_body")
            self._pks = itertools.count(101)
            self._attachment_pks = itertools.count(501)

    def conversation_pk(self, conversation_id):
        with self.lock:
            if conversation_id not in self.conversations:
                self.conversations[conversation_id] = next(self._pks)
            return self.conversations[conversation_id]


def make_backend_handler(backend):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _reply(self, status, document):
            data = json.dumps(document).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _read(self):
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _record(self, raw):
            headers = {}
            for name in ("content-type", "content-encoding", "user-agent", "accept"):
                value = self.headers.get(name)
                if value is not None:
                    headers[name] = value
            auth = self.headers.get("Authorization")
            entry = {
                "method": self.command,
                "path": self.path,
                "headers": headers,
                "authorization_present": auth is not None,
                "authorization_api_key_scheme": bool(auth and auth.startswith("Api-Key ")),
                "body_bytes": len(raw),
            }
            decoded = raw
            if self.headers.get("Content-Encoding", "").lower() == "gzip":
                decoded = gzip.decompress(raw)
                entry["decoded_bytes"] = len(decoded)
            body = None
            ctype = (self.headers.get("Content-Type") or "").lower()
            if decoded:
                if ctype.startswith("multipart/form-data"):
                    body = _parse_multipart(self.headers.get("Content-Type"), decoded)
                else:
                    try:
                        body = json.loads(decoded.decode("utf-8"))
                    except ValueError:
                        body = {"_unparsed_text": decoded.decode("utf-8", "replace")[:2000]}
            entry["body"] = body
            with backend.lock:
                backend.requests.append(entry)
            return entry

        def do_GET(self):
            self._record(b"")
            url = urlsplit(self.path)
            if url.path == "/api/me/":
                return self._reply(backend.me_status, backend.me_body)
            if url.path == "/api/conversations/lookup/":
                cid = (parse_qs(url.query).get("conversation_id") or [None])[0]
                if cid:
                    return self._reply(200, {"id": backend.conversation_pk(cid),
                                             "conversation_id": cid})
                return self._reply(404, {"detail": "Not found."})
            return self._reply(404, {"detail": "Not found."})

        def do_POST(self):
            entry = self._record(self._read())
            body = entry["body"]
            path = urlsplit(self.path).path
            if path == "/api/ingest/":
                spans = 0
                if isinstance(body, dict):
                    for block in body.get("conversations") or []:
                        spans += len(block.get("spans") or [])
                if backend.ingest_status != 200:
                    return self._reply(backend.ingest_status, backend.ingest_body)
                return self._reply(200, {"accepted": spans})
            if path == "/api/conversations/":
                cid = body.get("conversation_id") if isinstance(body, dict) else None
                if backend.conversations_status >= 400:
                    return self._reply(backend.conversations_status,
                                       {"environment": ["Unknown environment."]})
                return self._reply(201, {"id": backend.conversation_pk(cid),
                                         "conversation_id": cid})
            if path == "/api/attachments/":
                _summarize_attachment_data(body)
                names = []
                if isinstance(body, dict):
                    names = [a.get("filename") for a in body.get("attachments") or []
                             if isinstance(a, dict)]
                return self._reply(201, {
                    "message": next(backend._attachment_pks),
                    "attachments": [{"id": i + 1, "filename": n} for i, n in enumerate(names)],
                })
            return self._reply(404, {"detail": "Not found."})

        do_PUT = do_PATCH = do_DELETE = do_POST  # noqa: N815 - http.server dispatches on these names

    return Handler


def make_llm_handler(backend):
    """A tiny OpenAI-compatible stand-in: POST /v1/chat/completions."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _send(self, status, ctype, data):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                req = json.loads(raw or b"{}")
            except ValueError:
                req = {}
            with backend.lock:
                backend.llm_requests.append({
                    "method": "POST", "path": self.path,
                    "body": {k: req.get(k) for k in ("model", "stream", "stream_options")
                             if k in req},
                })
            if urlsplit(self.path).path.rstrip("/") != "/v1/chat/completions":
                return self._send(404, "application/json",
                                  b'{"error": {"message": "not found"}}')
            created = 1700000000
            if not req.get("stream"):
                doc = {
                    "id": "chatcmpl-golden-1", "object": "chat.completion",
                    "created": created, "model": LLM_MODEL_RESOLVED,
                    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                 "message": {"role": "assistant",
                                             "content": "Your order A-1 has shipped."}}],
                    "usage": {"prompt_tokens": 42, "completion_tokens": 12,
                              "total_tokens": 54,
                              "prompt_tokens_details": {"cached_tokens": 10, "audio_tokens": 0},
                              "completion_tokens_details": {"reasoning_tokens": 4,
                                                            "audio_tokens": 0}},
                }
                return self._send(200, "application/json", json.dumps(doc).encode())
            base = {"id": "chatcmpl-golden-2", "object": "chat.completion.chunk",
                    "created": created, "model": LLM_MODEL_RESOLVED}
            chunks = [dict(base, choices=[{"index": 0, "delta": {"role": "assistant",
                                                                 "content": ""},
                                           "finish_reason": None}])]
            for piece in ("It ", "has ", "shipped."):
                chunks.append(dict(base, choices=[{"index": 0, "delta": {"content": piece},
                                                   "finish_reason": None}]))
            chunks.append(dict(base, choices=[{"index": 0, "delta": {},
                                               "finish_reason": "stop"}]))
            if (req.get("stream_options") or {}).get("include_usage"):
                chunks.append(dict(base, choices=[], usage={
                    "prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70,
                    "prompt_tokens_details": {"cached_tokens": 16, "audio_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 8, "audio_tokens": 0},
                }))
            data = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks)
            data += "data: [DONE]\n\n"
            return self._send(200, "text/event-stream", data.encode())

    return Handler


def _serve(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run_flow(name, args, backend, backend_url, llm_url):
    func, description, overrides = FLOWS[name]
    backend.reset(overrides)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AGENTSIGHT_") and not k.startswith("OPENAI_")}
    env.update({
        "AGENTSIGHT_API_KEY": API_KEY,
        "AGENTSIGHT_API_ENDPOINT": backend_url,
        "OPENAI_BASE_URL": llm_url + "/v1",
        "OPENAI_API_KEY": "sk-golden",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
    })
    cmd = [args.python, os.path.abspath(__file__), "--child", name,
           "--llm-url", llm_url,
           "--export-interval-ms", str(args.export_interval_ms),
           "--settle", str(args.settle)]
    started = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.time() - started
    time.sleep(0.2)  # any straggling request thread
    port_re = re.compile(r"127\.0\.0\.1:\d+")

    def scrub(line):
        return port_re.sub("127.0.0.1:<port>", line)

    log = [scrub(line) for line in proc.stderr.splitlines() if line.strip()]
    with backend.lock:
        requests = list(backend.requests)
        llm_requests = list(backend.llm_requests)
    document = {
        "flow": name,
        "description": description,
        "server": {
            "me_status": backend.me_status,
            "me_body": backend.me_body,
            "conversations_status": backend.conversations_status,
            "ingest_status": backend.ingest_status,
        },
        "exit_code": proc.returncode,
        "log": log,
        "requests": requests,
    }
    if llm_requests:
        document["llm_requests"] = llm_requests
    if proc.stdout.strip():
        document["stdout"] = proc.stdout.splitlines()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, name + ".json")
    with open(path, "w") as fh:
        json.dump(document, fh, indent=2, sort_keys=False)
        fh.write("\n")
    summary = ", ".join(
        "{} {}{}".format(r["method"], r["path"],
                     " [gzip]" if r["headers"].get("content-encoding") == "gzip" else "")
        for r in requests)
    print(f"{name:<28} rc={proc.returncode} {elapsed:.1f}s  {summary}")
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=DEFAULT_PYTHON,
                        help="interpreter of the venv with agentsight==0.1.4 "
                             "(and openai) installed (default: %(default)s)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--llm-url", default=None,
                        help="base URL (without /v1) of an OpenAI-compatible server; "
                             "default: start the built-in stand-in")
    parser.add_argument("--export-interval-ms", type=int, default=200,
                        help="init(export_interval_ms=...) in the child")
    parser.add_argument("--settle", type=float, default=0.5,
                        help="seconds the child waits after init() for the key preflight")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("flows", nargs="*", help="flows to record (default: all)")
    args = parser.parse_args(argv)

    if args.child:
        child_main(args.child, args.llm_url, args.export_interval_ms, args.settle)
        return 0

    unknown = [f for f in args.flows if f not in FLOWS]
    if unknown:
        parser.error("unknown flow(s): {} (known: {})".format(unknown, ", ".join(FLOWS)))

    backend = Backend()
    server = _serve(make_backend_handler(backend))
    backend_url = f"http://127.0.0.1:{server.server_address[1]}"
    llm_server = None
    llm_url = args.llm_url
    if not llm_url:
        llm_server = _serve(make_llm_handler(backend))
        llm_url = f"http://127.0.0.1:{llm_server.server_address[1]}"
    llm_url = llm_url.rstrip("/")
    if llm_url.endswith("/v1"):
        llm_url = llm_url[:-3]

    try:
        for name in args.flows or list(FLOWS):
            run_flow(name, args, backend, backend_url, llm_url)
    finally:
        server.shutdown()
        if llm_server is not None:
            llm_server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
