"""Vision input: ``dashscope.MultiModalConversation.call`` (native), streamed or not.

    >>> parts = _parts([{"image": "https://example.com/cat.png"}, {"text": "What is this?"}])
    >>> parts
    ('What is this?', 1)

The emulator never fetches or decodes an image (it makes no outside connection): an image part
must be a URL (http, https, oss) or a ``data:image/...;base64,`` URI whose base64 decodes, and
each counts a fixed number of tokens. The reply says how many images it received, so a test can
see that they reached the model. Compatible-mode chat takes ``image_url`` parts through the
ordinary chat completions path.
"""

from __future__ import annotations

import base64
import binascii

from . import _catalogue
from . import _replies as R
from ._admission import Admitted, Refusal, admit, request_id
from ._catalogue import CATALOGUE

__all__ = ["IMAGE_TOKENS", "NATIVE_PATH", "ROUTES", "VISION_MODELS"]

NATIVE_PATH = "/api/v1/services/aigc/multimodal-generation/generation"

#: Models that take images: the catalogue's vision models.
VISION_MODELS = frozenset(name for name, info in CATALOGUE.items() if info.kind == "vision")
#: Tokens one image counts for (the service counts 28x28-pixel tiles; the emulator decodes nothing).
IMAGE_TOKENS = 256
_URL_SCHEMES = ("http://", "https://", "oss://")
_MEDIA = ("image", "video", "audio")
_NOT_EMULATED = ("tools", "enable_thinking", "response_format", "n")


class _Invalid(Exception):
    pass


def _check_media(kind: str, value) -> int:
    """How many images/frames a media part holds, or _Invalid."""
    items = value if kind == "video" and isinstance(value, list) else [value]  # a video may be a list of frames
    for item in items:
        if not isinstance(item, str) or not item:
            raise _Invalid(f"A {kind} part must be a URL string.")
        if item.startswith("data:"):
            header, _, data = item.partition(",")
            if not header.endswith(";base64") or not data:
                raise _Invalid(f"A data: {kind} must be base64: data:{kind}/png;base64,<data>.")
            try:
                base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raise _Invalid(f"The data: {kind} is not valid base64.") from None
        elif item.startswith("file://"):
            raise _Invalid(
                f"A file:// {kind} is uploaded by the SDK before the call; the emulator takes URLs and data: URIs only."
            )
        elif not item.startswith(_URL_SCHEMES):
            raise _Invalid(f"The {kind} {item[:40]!r} is not a URL the service can fetch (http, https, oss, data:).")
    return len(items)


def _parts(content) -> tuple[str, int]:
    """(the text of a message's content, how many images and frames it holds)."""
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        raise _Invalid("Message content must be a string or a list of parts like {'text': ...}, {'image': ...}.")
    texts, images = [], 0
    for part in content:
        if not isinstance(part, dict):
            raise _Invalid("Each content part must be an object like {'text': ...} or {'image': ...}.")
        known = [k for k in ("text", *_MEDIA) if k in part]
        if len(known) != 1:
            raise _Invalid("Each content part needs exactly one of 'text', 'image', 'video', 'audio'.")
        kind = known[0]
        if kind == "text":
            if not isinstance(part["text"], str):
                raise _Invalid("A text part's 'text' must be a string.")
            texts.append(part["text"])
        else:
            images += _check_media(kind, part[kind])
    return " ".join(texts), images


def _parse(body: dict):
    model = body.get("model")
    if not isinstance(model, str) or _catalogue.family(model) not in VISION_MODELS:
        if _catalogue.is_chat_model(model):
            raise _Invalid(
                f"Model {model!r} does not take images: use a vision model ({', '.join(sorted(VISION_MODELS))})."
            )
        raise _Invalid(f"Model not exist: {model!r}. The emulator's vision models: {', '.join(sorted(VISION_MODELS))}.")
    inp = body.get("input")
    if not isinstance(inp, dict) or not isinstance(inp.get("messages"), list) or not inp["messages"]:
        raise _Invalid("Input is missing: send input.messages, a non-empty list.")
    messages, images = [], 0
    for m in inp["messages"]:
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise _Invalid("Each message needs a `role` and a `content`.")
        text, n = _parts(m["content"])
        messages.append((str(m["role"]), text))
        images += n
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise _Invalid("parameters must be a JSON object.")
    # Refused rather than ignored: a reply without the tool call or the reasoning it asked for
    # would fail far from the cause. Text generation emulates these; this endpoint not yet.
    unsupported = [k for k in _NOT_EMULATED if params.get(k)]
    if unsupported:
        raise _Invalid(
            f"The emulator's multimodal endpoint does not emulate {', '.join(unsupported)} "
            "(text generation and compatible-mode chat do)."
        )
    limit = params.get("max_tokens")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise _Invalid("max_tokens must be a positive integer.")
    request = R.GenerationRequest(
        model=model,
        messages=tuple(messages),
        result_format="message",
        incremental_output=bool(params.get("incremental_output", False)),
        max_tokens=limit,
    )
    return request, images


def _reply(request, images: int, reply_tokens: int):
    """The composed reply, led by a note of the images received; and whether max_tokens cut it."""
    base = R.compose(request, reply_tokens=reply_tokens)
    note = f"I received {images} image{'s' if images != 1 else ''}, which the emulator does not look at."
    words = note.split() + [t.strip() for t in base.tokens]
    cut = request.max_tokens is not None and request.max_tokens < len(words)
    words = words[: request.max_tokens] if cut else words
    tokens = tuple(w if i == 0 else " " + w for i, w in enumerate(words))
    return R.Reply(tokens=tokens, input_tokens=base.input_tokens + images * IMAGE_TOKENS), cut


def _usage(reply, images: int, produced: int | None = None) -> dict:
    usage = reply.usage(produced)
    usage["image_tokens"] = images * IMAGE_TOKENS
    return usage


def _output(text: str, finish_reason: str) -> dict:
    # Multimodal replies carry content as a list of parts, even for text.
    message = {"role": "assistant", "content": [{"text": text}]}
    return {"choices": [{"finish_reason": finish_reason, "message": message}]}


def _events(request, reply, images: int, rid: str, last: str):
    n = len(reply.tokens)
    for i, token in enumerate(reply.tokens, start=1):
        text = token if request.incremental_output else "".join(reply.tokens[:i])
        payload = {
            "output": _output(text, last if i == n else "null"),
            "usage": _usage(reply, images, produced=i),
            "request_id": rid,
        }
        yield R.sse_event(i, "result", 200, payload)


async def native(app, request):
    """``POST /api/v1/services/aigc/multimodal-generation/generation``."""
    import asyncio

    sse = request.headers.get("X-DashScope-SSE", "").lower() == "enable"
    fail = Refusal(app, request_id(request), compatible=False, sse=sse)
    got = await admit(app, request, fail)
    if not isinstance(got, Admitted):
        return got
    try:
        req, images = _parse(got.body)
    except _Invalid as exc:
        return fail(400, "InvalidParameter", str(exc))
    reply, cut = _reply(req, images, got.opts.reply_tokens)
    finish = "length" if cut else "stop"
    seconds = app.clock.first_byte(got.opts, req.model, tokens=reply.output_tokens, stream=sse)
    if seconds:
        await asyncio.sleep(seconds)  # server time, as the profile says
    if sse:
        return await app._stream(
            request, _events(req, reply, images, got.rid, finish), got.opts, False, model=req.model
        )
    payload = {"output": _output(reply.text, finish), "usage": _usage(reply, images), "request_id": got.rid}
    return await app._body(request, payload, got.opts)


ROUTES = {NATIVE_PATH: native}
