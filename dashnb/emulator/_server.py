"""The emulator's HTTP side: an aiohttp low-level server speaking DashScope.

It runs on the emulator's own event loop, behind the relay (see `_relay`), which owns the
network timing. This module owns what the *server* does: answer, think, stall, refuse. What it
counts is in `_counters`; the limits a request meets before it is parsed, in `_limits`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import logging
import math
import os

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from . import _catalogue, _embeddings, _multimodal
from . import _replies as R
from ._admission import _RID, Refusal, admit
from ._counters import Counters
from ._limits import _RateLimiter
from ._options import is_loopback
from ._profiles import ServerClock
from ._script import Journal, Script, scripted_reply

log = logging.getLogger(__name__)

NATIVE_PATH = "/api/v1/services/aigc/text-generation/generation"
COMPATIBLE_PATH = "/compatible-mode/v1/chat/completions"
MODELS_PATH = "/compatible-mode/v1/models"
COMPATIBLE_PREFIX = "/compatible-mode/"
STATS_PATH = "/_emulator/stats"
#: POST APIs whose handlers live in their own modules: handler(app, request) -> response.
MORE_POST_ROUTES = {**_embeddings.ROUTES, **_multimodal.ROUTES}


_SSE = "text/event-stream;charset=UTF-8"
_JSON = "application/json"
# json.dumps(payload, ensure_ascii=False), made once: dumps builds a new encoder on every call
# that passes an option, a fifth of the cost of encoding a reply.
_dumps = json.JSONEncoder(ensure_ascii=False).encode


# The start of HTTP/2's connection preface (RFC 9113, 3.4): a client that speaks only HTTP/2.
_H2_PREFACE = b"PRI * HTTP/2.0"


def _plain_error(status: int, reason: str, message: str) -> bytes:
    """A whole reply in DashScope's error shape, written before (or instead of) any HTTP parsing."""
    body = _dumps(R.native_error(reason.replace(" ", ""), message, _rid())).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {_JSON}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


class _Connection(RequestHandler):
    """aiohttp's handler of one connection, answering what it cannot parse without a traceback.

    aiohttp answers a malformed request (``Content-Length: -1``) with a 400 but logs each with a
    traceback, which in a notebook lands in the running cell's output; here it gets a JSON 400 and
    one rate-limited log line. A client speaking HTTP/2 gets a 505 instead of a 400 about ``PRI``.
    """

    def __init__(self, manager, *, warn, answered, **kwargs):
        super().__init__(manager, **kwargs)
        self._warn = warn
        self._answered = answered  # (handler) -> None: this head is answered, though not handled
        self._first = True

    def data_received(self, data: bytes) -> None:
        if self._first and data:
            self._first = False
            if data.startswith(_H2_PREFACE) and self.transport is not None:
                self._warn("http2", "emulator refused an HTTP/2 connection: it speaks HTTP/1.1 only")
                message = "The emulator speaks HTTP/1.1 only; use an HTTP/1.1 client (without HTTP/2 prior knowledge)."
                self.transport.write(_plain_error(505, "HTTP Version Not Supported", message))
                self._answered(self)
                self.force_close()
                return
        super().data_received(data)

    def handle_error(self, request, status=500, exc=None, message=None):
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)  # a bug of ours: keep its traceback
        # The parser's first line says what is wrong ("Invalid character in Content-Length");
        # the lines after it quote the raw header, which could be a key.
        what = (exc.message or "malformed request").split("\n", 1)[0].rstrip(": ")[:120]
        self._warn("malformed", "emulator answered %d to a malformed request: %s", status, what)
        self._answered(self)
        problem = f"The request is not valid HTTP/1.1: {what}. Fix its request line or headers."
        resp = web.Response(
            status=status, body=_dumps(R.native_error("BadRequest", problem, _rid())).encode(), content_type=_JSON
        )
        resp.force_close()  # what follows a request that could not be parsed cannot be trusted either
        return resp


class _Server(web.Server):
    """aiohttp's low-level server, told when a connection becomes usable (after TLS, if any)."""

    def __init__(self, handler, *, on_ready, warn, answered, **kwargs):
        super().__init__(handler, **kwargs)
        self._on_ready = on_ready
        self._warn = warn
        self._answered = answered

    def __call__(self) -> RequestHandler:
        return _Connection(self, loop=self._loop, warn=self._warn, answered=self._answered, **self._kwargs)

    def connection_made(self, handler, transport) -> None:
        super().connection_made(handler, transport)
        self._on_ready(transport)


class DashScopeApp:
    """Request handling. `options()` returns the live EmulatorOptions; the relay maps sockets to links."""

    def __init__(self, *, loop, options, api_key: str, relay, counters: Counters, script=None, journal=None):
        self.loop = loop
        self.options = options
        self._key = api_key.encode()
        self._key_text = api_key
        self.script = Script() if script is None else script
        self.journal = Journal() if journal is None else journal
        self.relay = relay
        self.counters = counters
        self.limiter = _RateLimiter()
        self._error_acc = 0.0
        self.clock = ServerClock()  # server time per the profile; its jitter repeats run to run

    def make_server(self, *, tls: bool) -> _Server:
        def on_ready(transport):
            if tls:
                self.counters.tls_handshakes += 1

        # handler_cancellation: a client that hangs up cancels its stalled handler instead of leaking it.
        return _Server(
            self.handle,
            on_ready=on_ready,
            warn=self.relay.warn.warning,
            answered=self._head_answered,
            handler_cancellation=True,
            access_log=None,
        )

    def reset_sequences(self) -> None:
        self._error_acc = 0.0
        self.limiter = _RateLimiter()

    # -- dispatch -------------------------------------------------------------------------

    def _link(self, request):
        return self.relay.by_handler.get(request.protocol)

    def _head_answered(self, handler) -> None:
        """A head answered without `handle` (it could not be parsed): its deadline is over, and a
        FIN from the client need not wait for a reply the server is already closing after."""
        link = self.relay.by_handler.get(handler)
        if link is not None:
            link.head_since = None

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        link = self._link(request)
        if link is not None:
            link.head_since = None  # the head is complete: its deadline no longer applies
        if request.path == STATS_PATH and request.method == "GET":
            # Looking at the counters must not change them: not a request of the lesson.
            return self._stats(link)
        self.counters.requests += 1
        request[_RID] = _rid()  # one id per request: the body's request_id and the x-request-id header
        if link is not None:
            link.requests += 1
            link.busy += 1
            if not request.content.is_eof():
                # Its body is still arriving: the relay holds it to a deadline and a minimum rate.
                link.body, link.body_since, link.body_mark = request.content, self.loop.time(), link.bytes_in
        try:
            response = await self._route(request, link)
        except asyncio.CancelledError:
            self.counters.statuses["cancelled"] += 1
            raise
        except Exception:  # a bug of ours must still look like the service's 500, and be logged
            log.exception("emulator failed on %s %s", request.method, request.path)
            # Its message names no log: the emulator's logger shows nothing unless logging is set up.
            response = self._json(
                500,
                R.native_error(
                    "InternalError",
                    "The emulator failed on this request (a bug in dashnb's emulator).",
                    request[_RID],
                ),
            )
        finally:
            if link is not None:
                link.busy -= 1
                link.body = None
                link.last_activity = self.loop.time()
        if not response.prepared:
            response.headers.setdefault("x-request-id", request[_RID])
        if link is not None and link.client_eof and not link.eof_forwarded:
            # The client half-closed after its request (HTTP/1.1 allows it): the relay holds its
            # FIN back (see Relay._half_close_upstream). Send the reply now, then let the FIN
            # through: it ends the connection, as the client asked, and nothing is lost.
            response.force_close()
            try:
                if not response.prepared:
                    await response.prepare(request)
                await response.write_eof()
            except ConnectionError:
                pass  # the client hung up after all: counted below
            self.relay.forward_eof(link)
        transport = request.transport
        gone = transport is None or transport.is_closing() or (link is not None and link.eof_forwarded)
        if not response.prepared and gone:
            # The client hung up while we worked (or its FIN reached the server before the
            # request did): this reply can never be sent. Counting it as its status would claim a reply.
            self.counters.statuses["cancelled"] += 1
        else:
            self.counters.statuses[str(response.status)] += 1
        return response

    async def _route(self, request, link):
        path, method = request.path, request.method
        expect = request.headers.get("Expect")
        if expect is not None and request.version >= (1, 1):
            if expect.lower() != "100-continue":
                message = f"Expect: {expect[:60]!r} is not supported; send 100-continue or no Expect header."
                return self._error(path.startswith(COMPATIBLE_PREFIX), 417, "ExpectationFailed", message, request)
            # The client holds its body until told to send it (curl does for bodies over 1 KiB;
            # aiohttp's low-level server never answers it, so the client would wait for ever).
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if path == NATIVE_PATH and method == "POST":
            return await self._generate(request, compatible=False)
        if path == COMPATIBLE_PATH and method == "POST":
            return await self._generate(request, compatible=True)
        if method == "GET" and (path == MODELS_PATH or path.startswith(MODELS_PATH + "/")):
            return self._models(request, path[len(MODELS_PATH) + 1 :])
        if path in MORE_POST_ROUTES and method == "POST":
            return await MORE_POST_ROUTES[path](self, request)
        # Compatible mode answers in OpenAI's error shape, as the service does.
        compatible = path.startswith(COMPATIBLE_PREFIX)
        if path in (NATIVE_PATH, COMPATIBLE_PATH, STATS_PATH, MODELS_PATH, *MORE_POST_ROUTES):
            return self._error(compatible, 405, "MethodNotAllowed", f"{method} is not allowed on {path}.", request)
        return self._error(compatible, 404, "NotFound", f"No such API: {method} {path}.", request)

    def _error(self, compatible: bool, status: int, code: str, message: str, request):
        if compatible:
            return self._json(status, R.compatible_error(status, code, message, request[_RID]))
        return self._json(status, R.native_error(code, message, request[_RID]))

    def _stats(self, link):
        peer = link.peer[0] if link is not None and link.peer else None
        # A dual-stack listener (host "::") sees IPv4 loopback clients as ::ffff:127.0.0.1.
        if peer is None or not is_loopback(peer):
            return self._json(403, R.native_error("Forbidden", "Emulator stats answer loopback clients only.", _rid()))
        return self._json(200, self.counters.snapshot(self.relay.links.values()))

    def _models(self, request, model: str):
        rid = request[_RID]
        if not self._authorized(request):
            return self._json(401, R.compatible_error(401, "InvalidApiKey", "Incorrect API key provided.", rid))
        if not model:
            data = [_catalogue.model_card(m) for m in sorted(_catalogue.CATALOGUE)]
            return self._json(200, {"object": "list", "data": data})
        if _catalogue.family(model) is None:  # also "a/b": ids have no slash
            message = f"The model `{model}` does not exist or you do not have access to it."
            return self._json(404, R.compatible_error(404, "model_not_found", message, rid))
        return self._json(200, _catalogue.model_card(model))

    # -- generation -----------------------------------------------------------------------

    def _authorized(self, request) -> bool:
        auth = request.headers.get("Authorization", "")
        scheme, _, key = auth.partition(" ")
        key = key.strip()
        # A key with a character outside ASCII cannot be ours (aiohttp hands undecodable header
        # bytes over as lone surrogates, which would not even encode): refused, not a crash.
        return scheme.lower() == "bearer" and key.isascii() and hmac.compare_digest(key.encode(), self._key)

    def _key_problem(self, request) -> str:
        """Why the key was refused, in words that never repeat the key."""
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if key.strip() and not key.strip().isascii():
            return (
                "The API key is malformed: it contains a character that is not ASCII "
                "(a key is letters, digits, '-' and '_'; check for a stray quote or a pasted space)."
            )
        return "Invalid API-key provided."

    async def _generate(self, request, *, compatible: bool):
        rid = request[_RID]
        sse = not compatible and request.headers.get("X-DashScope-SSE", "").lower() == "enable"
        fail = Refusal(self, rid, compatible=compatible, sse=sse)
        got = await admit(
            self, request, fail, too_large_hint="Shorten the prompt or the conversation.", object_only=False
        )
        if isinstance(got, web.StreamResponse):
            return got
        body, opts = got.body, got.opts
        self.journal.record(
            "compatible" if compatible else "native",
            body,
            request.headers,
            stream=sse or (compatible and isinstance(body, dict) and body.get("stream") is True),
            key=self._key_text,
            size=got.size,
        )
        try:
            if compatible:
                req, stream, include_usage = R.parse_compatible(body)
            else:
                req, stream, include_usage = R.parse_native(body), sse, False
            R.check_mode(req, stream, strict=opts.strict, compatible=compatible)
        except R.RequestError as exc:
            return fail(exc.status, exc.code, exc.message)

        reply = R.compose_choices(req, reply_tokens=opts.reply_tokens)
        turn = self.script.take()  # None, nearly always: the usual reply
        if turn is not None:
            if turn.error is not None:
                return fail(turn.error.status, turn.error.code, turn.error.message)
            if turn.kind == "stall":
                await _stall(turn.seconds, self._link(request))
            elif turn.kind == "drop":
                opts = dataclasses.replace(opts, malformed="truncated_body")
            else:
                reply = tuple(scripted_reply(turn, r, req) for r in reply)
        tokens = max(r.output_tokens for r in reply)  # the choices are generated side by side
        server_s = self.clock.first_byte(opts, req.model, tokens=tokens, stream=stream)
        if server_s:
            await asyncio.sleep(server_s)  # the model thinking: server time, not network
        if opts.stall_before_headers:
            await _stall(opts.stall_before_headers, self._link(request))

        if stream:
            frames = (
                R.compatible_chunks(req, reply, rid, include_usage) if compatible else R.native_events(req, reply, rid)
            )
            return await self._stream(request, frames, opts, compatible, model=req.model)
        payload = R.compatible_body(req, reply, rid) if compatible else R.native_body(req, reply, rid)
        return await self._body(request, payload, opts)

    async def _body(self, request, payload: dict, opts):
        data = _dumps(payload).encode()
        if opts.malformed == "no_output":
            payload = {k: v for k, v in payload.items() if k not in ("output", "choices")}
            data = json.dumps(payload).encode()
        content_type = "text/html; charset=utf-8" if opts.malformed == "wrong_content_type" else _JSON
        if not opts.stall_mid_stream and opts.malformed != "truncated_body":
            whole = web.Response(status=200, body=data, headers={"Content-Type": content_type})
            if opts.connection_close:
                whole.force_close()
            return whole
        resp = web.StreamResponse(status=200, headers={"Content-Type": content_type, "x-request-id": request[_RID]})
        resp.content_length = len(data)
        if opts.connection_close:
            resp.force_close()
        await resp.prepare(request)
        half = len(data) // 2
        await resp.write(data[:half])
        if opts.malformed == "truncated_body":
            # Promise the whole length, send half, hang up: a client must not take this as a reply.
            request.transport.close()
            return resp
        await _stall(opts.stall_mid_stream, self._link(request))
        await resp.write(data[half:])
        await resp.write_eof()
        return resp

    async def _stream(self, request, frames, opts, compatible: bool, *, model: str = ""):
        content_type = "text/event-stream; charset=utf-8" if compatible else _SSE
        if opts.malformed == "wrong_content_type":
            content_type = "text/plain; charset=utf-8"
        headers = {"Content-Type": content_type, "Cache-Control": "no-cache", "x-request-id": request[_RID]}
        resp = web.StreamResponse(status=200, headers=headers)
        if opts.connection_close:
            resp.force_close()
        await resp.prepare(request)
        for i, frame in enumerate(frames):
            gap = self.clock.token_gap(opts, model) if i else 0.0
            if gap:
                await asyncio.sleep(gap)  # token generation pace: server time
            if opts.malformed == "bad_sse" and i == 1:
                frame = b'id:2\nevent:result\n:HTTP_STATUS/200\ndata:{"output": {"choi\n\n'
            await resp.write(frame)
            if i == 0 and opts.stall_mid_stream:
                await _stall(opts.stall_mid_stream, self._link(request))
            if opts.malformed == "truncated_body" and i == 1:
                request.transport.close()
                return resp
        await resp.write_eof()
        return resp

    @staticmethod
    def _json(status: int, payload: dict, headers=None):
        return web.Response(
            status=status,
            body=_dumps(payload).encode(),
            headers={"Content-Type": _JSON, **(headers or {})},
        )


async def _stall(seconds: float, link=None) -> None:
    # While the handler stalls, a FIN from the client is a client giving up, not a half-close
    # awaiting this reply: the relay passes it on at once (Relay._half_close_upstream), so the
    # handler is cancelled and the connection closes when the client's does.
    if link is not None:
        link.stalling = True
        if link.client_eof and not link.eof_forwarded and link.relay is not None:
            link.relay.forward_eof(link)
    try:
        if math.isinf(seconds):
            await asyncio.Event().wait()  # until the client gives up and the handler is cancelled
        else:
            await asyncio.sleep(seconds)
    finally:
        if link is not None:
            link.stalling = False


# The hex digit that starts a version-4 UUID's fourth group: its two top bits are the variant, 10.
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}


def _rid() -> str:
    """A random (version 4) UUID in its usual text form, like the service's request ids.

    Made from 16 random bytes directly: every request gets one, and ``str(uuid.uuid4())``
    costs three times as much (a UUID object, an int and back). The same 122 random bits.
    """
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"
