"""What the emulator says, with no I/O: request validation, deterministic replies, wire framing.

    >>> req = parse_native({"model": "qwen-plus", "input": {"prompt": "hi"}})
    >>> reply = compose(req, reply_tokens=4)
    >>> "".join(reply.tokens) == reply.text
    True

Everything here is a pure function of the request, so a streamed reply concatenates to exactly
the non-streamed one and a notebook can check the text it gets back. The words come from
`_prose`, tool calls from `_tools`, structured values from `_schema`, model facts from `_catalogue`.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass

from . import _prose
from ._catalogue import CATALOGUE, CHAT_MODELS
from ._schema import instance
from ._tools import Tool, ToolCall, ToolError, hints_of, parse_tool_choice, parse_tools, plan_calls

# The names the text-generation routes accept (see `_catalogue` for where they come from).
KNOWN_MODELS = CHAT_MODELS

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_PIECE = re.compile(r"\s*\S+")
#: The service allows 1 to 4 choices per request.
MAX_CHOICES = 4


class RequestError(Exception):
    """A request the service refuses; carries the HTTP status and the service's error code."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _bad(message: str) -> RequestError:
    return RequestError(400, "InvalidParameter", message)


@dataclass(frozen=True)
class GenerationRequest:
    model: str
    messages: tuple  # ((role, content), ...) - prompt form becomes one user message
    result_format: str  # "message" or "text"
    incremental_output: bool
    max_tokens: int | None
    tools: tuple[Tool, ...] = ()
    tool_choice: str = "auto"  # "auto", "none", "required" or a function name
    parallel_tool_calls: bool = False
    tool_results: tuple = ()  # ((function name, content), ...) of the tool messages that end the conversation
    response_format: str = "text"  # "text", "json_object" or "json_schema"
    json_schema: dict | None = None
    thinking: bool = False
    thinking_budget: int | None = None
    stop: tuple[str, ...] = ()
    n: int = 1
    seed: int | None = None


@dataclass(frozen=True)
class Reply:
    tokens: tuple[str, ...]
    input_tokens: int
    reasoning: tuple[str, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str = "stop"
    index: int = 0

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    @property
    def reasoning_text(self) -> str:
        return "".join(self.reasoning)

    @property
    def output_tokens(self) -> int:
        if not self.tool_calls:
            return len(self.tokens) + len(self.reasoning)
        return len(self.tokens) + len(self.reasoning) + sum(len(c.pieces) for c in self.tool_calls)

    def usage(self, produced: int | None = None) -> dict:
        out = self.output_tokens if produced is None else produced
        usage: dict = {"input_tokens": self.input_tokens, "output_tokens": out, "total_tokens": self.input_tokens + out}
        if self.reasoning:
            usage["output_tokens_details"] = {"reasoning_tokens": min(out, len(self.reasoning))}
        return usage

    def steps(self):
        """What a stream sends, one step per chunk: (reasoning, content, call index, call piece)."""
        for piece in self.reasoning:
            yield piece, None, None, None
        for piece in self.tokens:
            yield None, piece, None, None
        for k, call in enumerate(self.tool_calls):
            for piece in call.pieces:
                yield None, None, k, piece
        if not self.output_tokens:
            yield None, "", None, None  # an empty reply (a stop string at its start) still ends in one chunk


def count_tokens(text: str) -> int:
    """A stand-in tokenizer: words and punctuation marks. Deterministic, not Qwen's."""
    return len(_WORD.findall(text))


# ---- parsing --------------------------------------------------------------------------------


def _content_text(content) -> str:
    # Multimodal-style content is a list of parts; only text parts count here.
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    raise _bad("Message content must be a string or a list of parts.")


def _check_model(model) -> str:
    if not model:
        raise _bad("Model not specified: set `model`, e.g. model='qwen-plus'.")
    if not isinstance(model, str) or model not in KNOWN_MODELS:
        raise _bad(f"Model not exist: {model!r}. The emulator knows: {', '.join(sorted(KNOWN_MODELS))}.")
    return model


def _messages(raw) -> tuple[tuple, tuple]:
    """The conversation as ((role, text), ...), and the tool results that end it."""
    if not isinstance(raw, list) or not raw:
        raise _bad("Input messages must be a non-empty list.")
    out, names = [], {}
    for m in raw:
        if not isinstance(m, dict) or "role" not in m:
            raise _bad("Each message needs a `role` and a `content`.")
        calls = m.get("tool_calls") if m.get("role") == "assistant" else None
        if calls is not None and not isinstance(calls, list):
            raise _bad("An assistant message's tool_calls must be a list.")
        for call in calls or ():
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict) and isinstance(call.get("id"), str):
                names[call["id"]] = fn.get("name")
        content = m.get("content")
        if content is None:
            # An assistant turn that only called tools has no text: null (OpenAI) or missing (native).
            if not calls:
                raise _bad("Each message needs a `role` and a `content`.")
            content = ""
        out.append((str(m["role"]), _content_text(content)))
    results: list = []
    for m, (role, text) in zip(reversed(raw), reversed(out)) if out[-1][0] == "tool" else ():
        if role != "tool":
            break
        results.append((m.get("name") or names.get(m.get("tool_call_id")) or "", text))
    return tuple(out), tuple(reversed(results))


def _max_tokens(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad("max_tokens must be a positive integer.")
    return value


def _stop(value) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise _bad("stop must be a string or a list of strings (the emulator cannot honour token-id stop lists).")
    return tuple(s for s in value if s)


def _n(value) -> int:
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CHOICES:
        raise _bad(f"n must be an integer from 1 to {MAX_CHOICES}.")
    return value


def _seed(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise _bad("seed must be an integer from 0 to 2**31-1.")
    return value


def _response_format(value, messages) -> tuple[str, dict | None]:
    if value is None:
        return "text", None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return "text", None
    if kind == "json_object":
        if not any("json" in text.lower() for _, text in messages):
            raise _bad(
                "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'."
            )
        return "json_object", None
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise _bad("response_format json_schema needs {'json_schema': {'name': ..., 'schema': {...}}}.")
        return "json_schema", schema
    raise _bad("response_format type must be 'text', 'json_object' or 'json_schema'.")


def _thinking(model: str, enable, budget) -> tuple[bool, int | None]:
    info = CATALOGUE[model]
    if enable is not None and not isinstance(enable, bool):
        raise _bad("enable_thinking must be true or false.")
    if enable and info.thinking is None:
        raise _bad(f"The model {model} does not support enable_thinking; hybrid thinking models include qwen-plus.")
    if enable is False and info.thinking == "only":
        raise _bad("The value of the enable_thinking parameter is restricted to True.")
    thinking = enable if enable is not None else (info.thinking == "only" or info.thinks_by_default)
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
        raise _bad("thinking_budget must be a positive integer.")
    return bool(thinking), budget


# The parameters `_common` reads; a request with none of them (most) takes the short way.
_OPTIONAL = frozenset(
    {
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "enable_thinking",
        "thinking_budget",
        "stop",
        "n",
        "seed",
    }
)


def _common(model: str, messages_raw, params: dict, result_format) -> dict:
    """What both protocols ask the same way, as GenerationRequest fields."""
    messages, results = _messages(messages_raw)
    if result_format in (None, "text", "message") and not CATALOGUE[model].thinks_by_default:
        if _OPTIONAL.isdisjoint(params):
            rf = result_format or "text"
            return {"model": model, "messages": messages, "tool_results": results, "result_format": rf}
    try:
        tools = parse_tools(params.get("tools"))
        choice = parse_tool_choice(params.get("tool_choice"), tools)
    except ToolError as exc:
        raise _bad(str(exc)) from None
    fmt, schema = _response_format(params.get("response_format"), messages)
    thinking, budget = _thinking(model, params.get("enable_thinking"), params.get("thinking_budget"))
    if result_format is None:
        # The service answers tool and thinking requests in message form by default, and the
        # open-source qwen3 models always default to it.
        result_format = "message" if tools or thinking or CATALOGUE[model].thinks_by_default else "text"
    if result_format not in ("text", "message"):
        raise _bad("result_format must be 'text' or 'message'.")
    if result_format == "text" and (tools or thinking):
        raise _bad("Tools and thinking need result_format='message' (the text format has no place for them).")
    return {
        "model": model,
        "messages": messages,
        "tool_results": results,
        "result_format": result_format,
        "tools": tools,
        "tool_choice": choice,
        "parallel_tool_calls": bool(params.get("parallel_tool_calls", False)),
        "response_format": fmt,
        "json_schema": schema,
        "thinking": thinking,
        "thinking_budget": budget,
        "stop": _stop(params.get("stop")),
        "n": _n(params.get("n")),
        "seed": _seed(params.get("seed")),
    }


def parse_native(body) -> GenerationRequest:
    """Validate a native text-generation body (what `Generation.call` sends)."""
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.")
    model = _check_model(body.get("model"))
    inp = body.get("input")
    if not isinstance(inp, dict) or not (inp.get("messages") or inp.get("prompt")):
        raise _bad("Input is missing: send input.messages or input.prompt.")
    if inp.get("messages"):
        raw = inp["messages"]
    else:
        if not isinstance(inp["prompt"], str):
            raise _bad("input.prompt must be a string.")
        raw = [{"role": "user", "content": inp["prompt"]}]
    params = body.get("parameters")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise _bad("parameters must be a JSON object.")
    return GenerationRequest(
        incremental_output=bool(params.get("incremental_output", False)),
        max_tokens=_max_tokens(params.get("max_tokens")),
        **_common(model, raw, params, params.get("result_format")),
    )


def parse_compatible(body) -> tuple[GenerationRequest, bool, bool]:
    """Validate an OpenAI-style chat completion body; returns (request, stream, include_usage)."""
    if not isinstance(body, dict):
        raise RequestError(400, "invalid_request_error", "The request body must be a JSON object.")
    model = _check_model(body.get("model"))
    if not body.get("messages"):
        raise _bad("messages is required and must be a non-empty list.")
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    request = GenerationRequest(
        incremental_output=True, max_tokens=_max_tokens(limit), **_common(model, body["messages"], body, "message")
    )
    stream = bool(body.get("stream", False))
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _bad("stream_options must be a JSON object.")
    include_usage = bool((options or {}).get("include_usage", False))
    return request, stream, include_usage


def check_mode(request: GenerationRequest, stream: bool) -> None:
    """The service's rules that depend on streaming (the native protocol says so in a header)."""
    info = CATALOGUE[request.model]
    if stream:
        return
    if info.stream_only:
        raise _bad("This model only support stream mode, please enable the stream parameter.")
    if request.thinking and info.thinks_by_default:
        raise _bad("parameter.enable_thinking must be set to false for non-streaming calls")


# ---- composing ------------------------------------------------------------------------------


def compose(request: GenerationRequest, *, reply_tokens: int) -> Reply:
    """The reply to a request: the same request always gets the same tokens."""
    return compose_choices(request, reply_tokens=reply_tokens)[0]


def compose_choices(request: GenerationRequest, *, reply_tokens: int) -> tuple[Reply, ...]:
    """One reply per choice asked for (``n``); the native text format has room for one."""
    count = request.n if request.result_format == "message" else 1
    return tuple(_compose_one(request, reply_tokens, i) for i in range(count))


def _digest(request: GenerationRequest, *extra) -> bytes:
    return hashlib.sha256(json.dumps([request.model, request.messages, request.seed, *extra]).encode()).digest()


def _compose_one(request: GenerationRequest, reply_tokens: int, index: int) -> Reply:
    prompt = next((text for role, text in reversed(request.messages) if role == "user"), "")
    input_tokens = sum(count_tokens(c) + 3 for _, c in request.messages)
    if request.tools:
        input_tokens += count_tokens(json.dumps([t.parameters for t in request.tools]))
    variant = 0 if request.seed is None else _digest(request)[0]
    reasoning: tuple[str, ...] = ()
    if request.thinking:
        budget = reply_tokens if request.thinking_budget is None else min(reply_tokens, request.thinking_budget)
        reasoning = _prose.reasoning_words(prompt, budget)
    choice = request.tool_choice
    if request.tool_results and choice == "auto":
        choice = "none"  # tool results are in: answer with them rather than call again
    calls: tuple[ToolCall, ...] = ()
    if request.tools and choice != "none":  # the digest costs more than the rest of a plain reply
        calls = plan_calls(request.tools, choice, request.parallel_tool_calls, prompt, _digest(request, index).hex())
    if calls:
        return Reply((), input_tokens, reasoning, calls, "tool_calls", index)

    limit = request.max_tokens
    if request.response_format == "text":
        n = reply_tokens if limit is None else min(reply_tokens, limit)
        if request.tool_results:
            tokens = _prose.tool_result_words(request.tool_results, n, variant)
        else:
            tokens = _prose.reply_words(prompt, n, variant, index)
        finish = "length" if limit is not None and limit < reply_tokens else "stop"
    else:
        if request.response_format == "json_schema":
            value = instance(request.json_schema, hints_of(prompt))
        else:
            value = {"answer": "".join(_prose.reply_words(prompt, 12, variant, index)), "source": "dashnb emulator"}
        whole = tuple(_PIECE.findall(json.dumps(value, ensure_ascii=False)))
        tokens = whole if limit is None else whole[:limit]  # cut like the service: the JSON stays unfinished
        finish = "length" if len(tokens) < len(whole) else "stop"
    if request.stop:
        text = "".join(tokens)
        cut = min((i for i in (text.find(s) for s in request.stop) if i >= 0), default=-1)
        if cut >= 0:
            tokens, finish = tuple(_PIECE.findall(text[:cut])), "stop"
    return Reply(tokens, input_tokens, reasoning, (), finish, index)


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
