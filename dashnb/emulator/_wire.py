"""The wire framing of a reply: native DashScope bodies and SSE events, OpenAI-compatible bodies
and ``data:`` chunks, and each protocol's error body.

    >>> from dashnb.emulator._wire import sse_event
    >>> sse_event(1, "result", 200, {"output": {"text": "hi"}})
    b'id:1\\nevent:result\\n:HTTP_STATUS/200\\ndata:{"output":{"text":"hi"}}\\n\\n'

Every function takes a ``GenerationRequest`` and a ``Reply`` (or a tuple of them, one per
choice) and returns plain data or bytes; the server (``_server``) sends them. The framing is
each SDK's exact one: the dashscope SDK parses ``event:`` and ``:HTTP_STATUS/`` without a space.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ._compose import Reply
    from ._request import GenerationRequest
    from ._tools import ToolCall

__all__ = [
    "compatible_body",
    "compatible_chunks",
    "compatible_error",
    "native_body",
    "native_error",
    "native_events",
    "sse_event",
]


# ---- native wire format -------------------------------------------------------------------


def _call_json(k: int, call: ToolCall, arguments: str, *, first: bool) -> dict:
    fn = {"name": call.name, "arguments": arguments} if first else {"arguments": arguments}
    return {"index": k, "id": call.id if first else "", "type": "function", "function": fn}


def _message(reply: Reply, content: str, reasoning: str | None, calls: list | None) -> dict:
    msg: dict = {"role": "assistant", "content": content}
    if reply.reasoning:
        msg["reasoning_content"] = reasoning or ""
    if calls:
        msg["tool_calls"] = calls
    return msg


def _native_choice(request: GenerationRequest, reply: Reply, msg: dict, finish: str, n: int) -> dict:
    choice: dict = {"finish_reason": finish, "message": msg}
    if n > 1:
        choice["index"] = reply.index
    return choice


def _native_output(request: GenerationRequest, text: str, finish_reason: str) -> dict:
    return {"text": text, "finish_reason": finish_reason}


def _native_usage(replies) -> dict:
    if len(replies) == 1:
        return replies[0].usage()
    out = sum(r.output_tokens for r in replies)
    return {
        "input_tokens": replies[0].input_tokens,
        "output_tokens": out,
        "total_tokens": replies[0].input_tokens + out,
    }


def _replies(reply) -> tuple[Reply, ...]:
    return reply if isinstance(reply, tuple) else (reply,)


def native_body(request: GenerationRequest, reply, request_id: str) -> dict:
    """A non-streamed native reply; ``reply`` is a Reply or a tuple of them (one per choice)."""
    replies = _replies(reply)
    if request.result_format == "text":
        output = _native_output(request, replies[0].text, replies[0].finish_reason)
    else:
        calls = [[_call_json(k, c, c.arguments, first=True) for k, c in enumerate(r.tool_calls)] for r in replies]
        if len(replies) == 1 and not calls[0] and not replies[0].reasoning:  # the common case, quickly
            r = replies[0]
            msg = {"role": "assistant", "content": r.text}
            output = {"choices": [{"finish_reason": r.finish_reason, "message": msg}]}
            return {"output": output, "usage": r.usage(), "request_id": request_id}
        output = {
            "choices": [
                _native_choice(request, r, _message(r, r.text, r.reasoning_text, cs), r.finish_reason, len(replies))
                for r, cs in zip(replies, calls)
            ]
        }
    return {"output": output, "usage": _native_usage(replies), "request_id": request_id}


def _interleave(replies):
    """Each choice's steps, round robin, as (reply, step number from 1, step)."""
    walks = [iter(enumerate(r.steps(), start=1)) for r in replies]
    while walks:
        for walk, reply in list(zip(walks, replies)):
            step = next(walk, None)
            if step is None:
                walks.remove(walk)
                replies = tuple(r for r in replies if r is not reply)
                continue
            yield reply, step[0], step[1]


def native_events(request: GenerationRequest, reply, request_id: str):
    """The SSE events of a streamed native reply, one per token (the SDK's exact framing)."""
    replies = _replies(reply)
    # What each choice has said so far, for the full (not incremental) output form.
    content = {r.index: "" for r in replies}
    thought = {r.index: "" for r in replies}
    arguments: dict[int, dict[int, str]] = {r.index: {} for r in replies}
    for event_id, (r, i, (think, word, k, piece)) in enumerate(_interleave(replies), start=1):
        thought[r.index] += think or ""
        content[r.index] += word or ""
        finish = r.finish_reason if i == max(r.output_tokens, 1) else "null"
        payload: dict
        if request.result_format == "text":
            text = word if request.incremental_output else content[r.index]
            payload = {"output": _native_output(request, text or "", finish)}
        else:
            calls: list | None = None
            if k is not None:
                first = k not in arguments[r.index]
                arguments[r.index][k] = arguments[r.index].get(k, "") + piece
                calls = [_call_json(k, r.tool_calls[k], piece, first=first)]
            if request.incremental_output:
                msg = _message(r, word or "", think, calls)
            else:
                calls = [_call_json(j, r.tool_calls[j], a, first=True) for j, a in arguments[r.index].items()]
                msg = _message(r, content[r.index], thought[r.index], calls)
            payload = {"output": {"choices": [_native_choice(request, r, msg, finish, len(replies))]}}
        payload["usage"] = r.usage(produced=i)
        payload["request_id"] = request_id
        yield sse_event(event_id, "result", 200, payload)


def sse_event(event_id: int, event: str, status: int, payload: dict) -> bytes:
    # The SDK parses `event:` and `:HTTP_STATUS/` without a space and breaks on multi-line data.
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"id:{event_id}\nevent:{event}\n:HTTP_STATUS/{status}\ndata:{data}\n\n".encode()


def native_error(code: str, message: str, request_id: str) -> dict:
    return {"code": code, "message": message, "request_id": request_id}


# ---- OpenAI-compatible wire format --------------------------------------------------------


def _completion_id(request_id: str) -> str:
    return "chatcmpl-" + request_id.replace("-", "")[:29]


def compatible_body(request: GenerationRequest, reply, request_id: str) -> dict:
    replies = _replies(reply)
    choices = []
    for r in replies:
        calls = [{**_call_json(k, c, c.arguments, first=True)} for k, c in enumerate(r.tool_calls)]
        msg = _message(r, r.text, r.reasoning_text, calls)
        choices.append({"index": r.index, "message": msg, "finish_reason": r.finish_reason, "logprobs": None})
    return {
        "id": _completion_id(request_id),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model,
        "choices": choices,
        "usage": _openai_usage(replies),
        "system_fingerprint": None,
    }


def _openai_usage(reply) -> dict:
    replies = _replies(reply)
    out = sum(r.output_tokens for r in replies)
    usage: dict = {
        "prompt_tokens": replies[0].input_tokens,
        "completion_tokens": out,
        "total_tokens": replies[0].input_tokens + out,
    }
    thought = sum(len(r.reasoning) for r in replies)
    if thought:
        usage["completion_tokens_details"] = {"reasoning_tokens": thought}
    return usage


def compatible_chunks(request: GenerationRequest, reply, request_id: str, include_usage: bool):
    """`data: {...}` lines of a streamed chat completion, ending with `data: [DONE]`."""
    replies = _replies(reply)
    base = {
        "id": _completion_id(request_id),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": request.model,
        "system_fingerprint": None,
    }

    def chunk(index: int, delta: dict, finish_reason) -> bytes:
        choice = {"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        body = {**base, "choices": [choice]}
        return b"data: " + json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"

    for r in replies:
        # Thinking replies open with null content, as the service streams reasoning first.
        first = {"role": "assistant", "content": None, "reasoning_content": ""} if r.reasoning else None
        yield chunk(r.index, first or {"role": "assistant", "content": ""}, None)
    started: set = set()
    for r, _, (think, word, k, piece) in _interleave(replies):
        if think is not None:
            delta: dict = {"content": None, "reasoning_content": think}
        elif word is not None:
            delta = {"content": word, "reasoning_content": None} if r.reasoning else {"content": word}
        else:
            first_piece = (r.index, k) not in started
            started.add((r.index, k))
            call = _call_json(k, r.tool_calls[k], piece, first=first_piece)
            if not first_piece:
                del call["id"], call["type"]
            delta = {"content": None, "tool_calls": [call]}
        yield chunk(r.index, delta, None)
    for r in replies:
        yield chunk(r.index, {}, r.finish_reason)
    if include_usage:
        body = {**base, "choices": [], "usage": _openai_usage(replies)}
        yield b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
}
# The service's compatible mode names codes the OpenAI way.
_OPENAI_CODES = {"InvalidApiKey": "invalid_api_key", "InvalidParameter": "invalid_parameter_error"}


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
