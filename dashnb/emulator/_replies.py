"""What the emulator says, with no I/O: request validation, deterministic replies, wire framing.

    >>> req = parse_native({"model": "qwen-plus", "input": {"prompt": "hi"}})
    >>> reply = compose(req, reply_tokens=4)
    >>> "".join(reply.tokens) == reply.text
    True

Everything here is a pure function of the request, so a streamed reply concatenates to exactly
the non-streamed one and a notebook can check the text it gets back.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass

# Models the emulator answers for. The real service has many more; an unknown name gets the
# same 400 the real service gives, so a typo is caught offline too.
KNOWN_MODELS = frozenset(
    {
        "qwen-plus",
        "qwen-turbo",
        "qwen-max",
        "qwen-flash",
        "qwen-long",
        "qwen3-max",
        "qwen3-coder-plus",
        "qwen3-235b-a22b",
        "qwen3-32b",
        "qwen3-8b",
        "qwen2.5-72b-instruct",
        "qwen2.5-7b-instruct",
    }
)

# Replies are built from these sentences, chosen by a hash of the request, so they read as
# prose and still say nothing a learner could mistake for a real model's answer.
_SENTENCES = (
    "This reply comes from the dashnb emulator, not from a real model.",
    "A kept-alive connection skips the TCP and TLS handshakes on every later call.",
    "Each new connection costs extra round trips before the first byte of the prompt is sent.",
    "One shared session per notebook lets many calls travel over the same few sockets.",
    "The pool keeps idle connections warm until the idle timeout closes them.",
    "Too few pooled connections make calls queue; too many can overload the server.",
    "Timeouts bound how long a call may wait to connect and to read.",
    "Streaming sends the reply token by token as the server produces it.",
)

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class RequestError(Exception):
    """A request the service refuses; carries the HTTP status and the service's error code."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class GenerationRequest:
    model: str
    messages: tuple  # ((role, content), ...) - prompt form becomes one user message
    result_format: str  # "message" or "text"
    incremental_output: bool
    max_tokens: int | None


@dataclass(frozen=True)
class Reply:
    tokens: tuple[str, ...]
    input_tokens: int

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    @property
    def output_tokens(self) -> int:
        return len(self.tokens)

    def usage(self, produced: int | None = None) -> dict:
        out = self.output_tokens if produced is None else produced
        return {"input_tokens": self.input_tokens, "output_tokens": out, "total_tokens": self.input_tokens + out}


def count_tokens(text: str) -> int:
    """A stand-in tokenizer: words and punctuation marks. Deterministic, not Qwen's."""
    return len(_WORD.findall(text))


def _content_text(content) -> str:
    # Multimodal-style content is a list of parts; only text parts count here.
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    raise RequestError(400, "InvalidParameter", "Message content must be a string or a list of parts.")


def _check_model(model) -> str:
    if not model:
        raise RequestError(400, "InvalidParameter", "Model not specified: set `model`, e.g. model='qwen-plus'.")
    if not isinstance(model, str) or model not in KNOWN_MODELS:
        raise RequestError(
            400,
            "InvalidParameter",
            f"Model not exist: {model!r}. The emulator knows: {', '.join(sorted(KNOWN_MODELS))}.",
        )
    return model


def _messages(raw) -> tuple:
    if not isinstance(raw, list) or not raw:
        raise RequestError(400, "InvalidParameter", "Input messages must be a non-empty list.")
    out = []
    for m in raw:
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise RequestError(400, "InvalidParameter", "Each message needs a `role` and a `content`.")
        out.append((str(m["role"]), _content_text(m["content"])))
    return tuple(out)


def _max_tokens(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestError(400, "InvalidParameter", "max_tokens must be a positive integer.")
    return value


def parse_native(body) -> GenerationRequest:
    """Validate a native text-generation body (what `Generation.call` sends)."""
    if not isinstance(body, dict):
        raise RequestError(400, "InvalidParameter", "The request body must be a JSON object.")
    model = _check_model(body.get("model"))
    inp = body.get("input")
    if not isinstance(inp, dict) or not (inp.get("messages") or inp.get("prompt")):
        raise RequestError(400, "InvalidParameter", "Input is missing: send input.messages or input.prompt.")
    if inp.get("messages"):
        messages = _messages(inp["messages"])
    else:
        prompt = inp["prompt"]
        if not isinstance(prompt, str):
            raise RequestError(400, "InvalidParameter", "input.prompt must be a string.")
        messages = (("user", prompt),)
    params = body.get("parameters")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise RequestError(400, "InvalidParameter", "parameters must be a JSON object.")
    result_format = params.get("result_format", "text")
    if result_format not in ("text", "message"):
        raise RequestError(400, "InvalidParameter", "result_format must be 'text' or 'message'.")
    return GenerationRequest(
        model=model,
        messages=messages,
        result_format=result_format,
        incremental_output=bool(params.get("incremental_output", False)),
        max_tokens=_max_tokens(params.get("max_tokens")),
    )


def parse_compatible(body) -> tuple[GenerationRequest, bool, bool]:
    """Validate an OpenAI-style chat completion body; returns (request, stream, include_usage)."""
    if not isinstance(body, dict):
        raise RequestError(400, "invalid_request_error", "The request body must be a JSON object.")
    model = _check_model(body.get("model"))
    if not body.get("messages"):
        raise RequestError(400, "InvalidParameter", "messages is required and must be a non-empty list.")
    messages = _messages(body["messages"])
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    request = GenerationRequest(
        model=model,
        messages=messages,
        result_format="message",
        incremental_output=True,
        max_tokens=_max_tokens(limit),
    )
    stream = bool(body.get("stream", False))
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise RequestError(400, "InvalidParameter", "stream_options must be a JSON object.")
    include_usage = bool((options or {}).get("include_usage", False))
    return request, stream, include_usage


def compose(request: GenerationRequest, *, reply_tokens: int) -> Reply:
    """The reply to a request: the same request always gets the same tokens."""
    n = reply_tokens if request.max_tokens is None else min(reply_tokens, request.max_tokens)
    digest = hashlib.sha256(json.dumps([request.model, request.messages]).encode()).digest()
    start = digest[0] % len(_SENTENCES)
    words: list[str] = []
    k = 0
    while len(words) < n:
        words.extend(_SENTENCES[(start + k) % len(_SENTENCES)].split())
        k += 1
    tokens = tuple(w if i == 0 else " " + w for i, w in enumerate(words[:n]))
    input_tokens = sum(count_tokens(c) + 3 for _, c in request.messages)
    return Reply(tokens=tokens, input_tokens=input_tokens)


# ---- native wire format -------------------------------------------------------------------


def _native_output(request: GenerationRequest, text: str, finish_reason: str) -> dict:
    if request.result_format == "message":
        return {"choices": [{"finish_reason": finish_reason, "message": {"role": "assistant", "content": text}}]}
    return {"text": text, "finish_reason": finish_reason}


def native_body(request: GenerationRequest, reply: Reply, request_id: str) -> dict:
    return {"output": _native_output(request, reply.text, "stop"), "usage": reply.usage(), "request_id": request_id}


def native_events(request: GenerationRequest, reply: Reply, request_id: str):
    """The SSE events of a streamed native reply, one per token (the SDK's exact framing)."""
    n = len(reply.tokens)
    for i, token in enumerate(reply.tokens, start=1):
        text = token if request.incremental_output else "".join(reply.tokens[:i])
        payload = {
            "output": _native_output(request, text, "stop" if i == n else "null"),
            "usage": reply.usage(produced=i),
            "request_id": request_id,
        }
        yield sse_event(i, "result", 200, payload)


def sse_event(event_id: int, event: str, status: int, payload: dict) -> bytes:
    # The SDK parses `event:` and `:HTTP_STATUS/` without a space and breaks on multi-line data.
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"id:{event_id}\nevent:{event}\n:HTTP_STATUS/{status}\ndata:{data}\n\n".encode()


def native_error(code: str, message: str, request_id: str) -> dict:
    return {"code": code, "message": message, "request_id": request_id}


# ---- OpenAI-compatible wire format --------------------------------------------------------


def _completion_id(request_id: str) -> str:
    return "chatcmpl-" + request_id.replace("-", "")[:29]


def compatible_body(request: GenerationRequest, reply: Reply, request_id: str) -> dict:
    return {
        "id": _completion_id(request_id),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": _openai_usage(reply),
        "system_fingerprint": None,
    }


def _openai_usage(reply: Reply) -> dict:
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
    }


def compatible_chunks(request: GenerationRequest, reply: Reply, request_id: str, include_usage: bool):
    """`data: {...}` lines of a streamed chat completion, ending with `data: [DONE]`."""
    base = {
        "id": _completion_id(request_id),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": request.model,
        "system_fingerprint": None,
    }

    def chunk(delta: dict, finish_reason, **extra) -> bytes:
        body = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}
        body.update(extra)
        return b"data: " + json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"

    yield chunk({"role": "assistant", "content": ""}, None)
    for token in reply.tokens:
        yield chunk({"content": token}, None)
    yield chunk({}, "stop")
    if include_usage:
        body = {**base, "choices": [], "usage": _openai_usage(reply)}
        yield b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
}
_OPENAI_CODES = {"InvalidApiKey": "invalid_api_key"}


def compatible_error(status: int, code: str, message: str, request_id: str) -> dict:
    return {
        "error": {
            "message": message,
            "type": _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "requests"),
            "param": None,
            "code": _OPENAI_CODES.get(code, code),
        },
        "request_id": request_id,
    }
