"""What every model API of the emulator does before it answers: check the key (on the head, before
the body is read), read the body within its limit, apply the rate limit and the injected failures,
parse the JSON. Shared by text generation (`_server`) and the embedding and multimodal handlers
(`_embeddings`, `_multimodal`), which answer in the native or the OpenAI-compatible error shape as
their path says.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from . import _replies as R
from ._limits import MAX_BODY_BYTES, MAX_JSON_DEPTH, _depth, _read_body, _TooLarge
from ._options import EmulatorOptions

# Where a request keeps its id (aiohttp 3.13+ wants a typed key; older versions take the string).
_RID = web.RequestKey("request_id", str) if hasattr(web, "RequestKey") else "request_id"

_SSE = "text/event-stream;charset=UTF-8"


@dataclass
class Admitted:
    body: Any  # the parsed JSON: an object (a dict) unless admit(object_only=False)
    opts: EmulatorOptions  # the live options for this request
    rid: str  # its request id
    size: int = 0  # the body's length in bytes, as received


class Refusal:
    """Builds error responses in the shape of one protocol (native JSON, native SSE, compatible)."""

    def __init__(self, app, rid: str, *, compatible: bool, sse: bool = False):
        self.app, self.rid, self.compatible, self.sse = app, rid, compatible, sse

    def __call__(self, status: int, code: str, message: str, headers=None) -> web.Response:
        if self.compatible:
            return self.app._json(status, R.compatible_error(status, code, message, self.rid), headers)
        if self.sse:
            body = R.sse_event(1, "error", status, R.native_error(code, message, self.rid))
            return web.Response(status=status, body=body, headers={"Content-Type": _SSE, **(headers or {})})
        return self.app._json(status, R.native_error(code, message, self.rid), headers)


async def admit(
    app, request, fail: Refusal, *, too_large_hint: str = "", object_only: bool = True
) -> Admitted | web.Response:
    """The request's parsed body, or the response refusing it (as the generation API refuses).

    `too_large_hint` ends the 413's message with what to shorten; `object_only=False` leaves a
    body that is not a JSON object to the caller's parser, which names the protocol's own code.
    """
    opts = app.options()
    # The key is in the head: a request without the right one is refused before its body is read,
    # so no one without a key can make the server wait on a body.
    if not app._authorized(request):
        return fail(401, "InvalidApiKey", app._key_problem(request))
    try:
        raw = await _read_body(request, MAX_BODY_BYTES)
    except _TooLarge as exc:
        size = f"{exc.size} bytes" if exc.size is not None else "more than that"
        return fail(
            413,
            "RequestTooLarge",
            f"The request body is too large: the limit is {MAX_BODY_BYTES} bytes (1 MiB), this one is {size}."
            + (f" {too_large_hint}" if too_large_hint else ""),
        )
    if opts.rate_limit is not None:
        wait = app.limiter.take(opts.rate_limit, app.loop.time())
        if wait:
            return fail(
                429,
                "Throttling.RateQuota",
                "Requests rate limit exceeded, please try again later.",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
    if opts.error_rate:
        # The same deterministic share of failures as text generation, from the same sequence.
        app._error_acc += opts.error_rate
        if app._error_acc >= 1.0 - 1e-9:
            app._error_acc -= 1.0
            if opts.error_status == 503:
                return fail(503, "ServiceUnavailable", "The service is temporarily overloaded (emulated).")
            return fail(500, "InternalError", "An internal error has occurred, please retry (emulated).")
    try:
        body = json.loads(raw) if raw else None
        # Nesting needs an opening bracket per level, so a body with few brackets (any usual
        # request) cannot be too deep: counting them in C spares the walk, which costs more
        # than any other check of a plain request.
        if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _depth(body) > MAX_JSON_DEPTH:
            raise RecursionError
    except RecursionError:
        return fail(
            400,
            "InvalidParameter",
            f"The request body is nested too deeply: at most {MAX_JSON_DEPTH} levels of arrays and objects.",
        )
    except ValueError:
        return fail(400, "InvalidParameter", "The request body is not valid JSON.")
    if object_only and not isinstance(body, dict):
        return fail(400, "InvalidParameter", "The request body must be a JSON object.")
    return Admitted(body=body, opts=opts, rid=fail.rid, size=len(raw))


def request_id(request) -> str:
    """The id the server gave this request (its x-request-id header says the same)."""
    return request[_RID]
