"""Requests to the emulator's text-generation routes, parsed and checked as the service checks them.

    >>> from dashnb.emulator._request import parse_native
    >>> req = parse_native({"model": "qwen-plus", "input": {"prompt": "hi"}})
    >>> req.messages, req.result_format
    ((('user', 'hi'),), 'text')

Both wire protocols (native ``/api/v1`` and OpenAI-compatible) become one ``GenerationRequest``;
a request the service would refuse raises ``RequestError`` with the service's status, code and
words. No I/O: ``dashnb.emulator._replies`` composes the reply, ``_wire`` frames it.
"""

from __future__ import annotations

import difflib
from dataclasses import MISSING, dataclass, fields

from ._catalogue import CATALOGUE, CHAT_MODELS
from ._schema_check import SchemaError, check_schema
from ._tools import Tool, ToolError, parse_tool_choice, parse_tools

__all__ = [
    "KNOWN_MODELS",
    "MAX_CHOICES",
    "GenerationRequest",
    "RequestError",
    "check_mode",
    "parse_compatible",
    "parse_native",
]

# The names the text-generation routes accept (see `_catalogue` for where they come from).
KNOWN_MODELS = CHAT_MODELS

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


# Every field's default: what `_new` starts from.
_DEFAULTS = {f.name: f.default for f in fields(GenerationRequest) if f.default is not MISSING}


def _new(**given) -> GenerationRequest:
    """``GenerationRequest(**given)``, filled at once: the same frozen object, at a quarter of the cost.

    A frozen dataclass's ``__init__`` sets each of the 16 fields through ``object.__setattr__``,
    on every request the emulator answers; a plain request gives 6 of them. Every caller here
    gives all the fields that have no default.
    """
    request = object.__new__(GenerationRequest)
    request.__dict__.update(_DEFAULTS, **given)
    return request


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
        raise _bad(f"Model not exist: {model!r}.{_did_you_mean(model)}")
    return model


def _did_you_mean(model) -> str:
    """A few known names close to ``model``, not the whole list; none for a long or odd name
    (difflib's cost grows with the name's length)."""
    if not isinstance(model, str) or len(model) > 64:
        return ""
    close = difflib.get_close_matches(model.lower(), sorted(KNOWN_MODELS), n=3, cutoff=0.6)
    return f" Did you mean {' or '.join(map(repr, close))}?" if close else ""


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
        try:
            check_schema(schema, "response_format.json_schema.schema")
        except SchemaError as exc:
            raise _bad(str(exc)) from None
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
    return _new(
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
    request = _new(
        incremental_output=True, max_tokens=_max_tokens(limit), **_common(model, body["messages"], body, "message")
    )
    stream = _flag(body, "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _bad("stream_options must be a JSON object.")
    include_usage = _flag(options or {}, "include_usage", "stream_options.include_usage")
    return request, stream, include_usage


def _flag(params: dict, key: str, name: str = "") -> bool:
    """A boolean parameter: the service type-checks these, so "false" (a string) is refused, not truthy."""
    value = params.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _bad(f"{name or key} must be true or false (a JSON boolean), got {value!r:.40}.")
    return value


def check_mode(request: GenerationRequest, stream: bool) -> None:
    """The service's rules that depend on streaming (the native protocol says so in a header)."""
    info = CATALOGUE[request.model]
    if stream:
        return
    if info.stream_only:
        raise _bad("This model only support stream mode, please enable the stream parameter.")
    if request.thinking and info.thinks_by_default:
        raise _bad("parameter.enable_thinking must be set to false for non-streaming calls")
