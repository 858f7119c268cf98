"""Tool calling in the emulator: which tools to call, with which arguments, no I/O.

    >>> tools = parse_tools([{"type": "function", "function": {"name": "get_weather",
    ...     "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}])
    >>> [(c.name, c.arguments) for c in plan_calls(tools, "auto", False, "Weather in Paris?", "seed")]
    [('get_weather', '{"location": "Paris"}')]

Deterministic: the same request gets the same calls and call ids. With ``tool_choice`` "auto" a tool
is called when the last user message mentions it (a word of its name or description), "required"
always calls one, a named function calls that one, "none" never calls. With ``parallel_tool_calls``
every mentioned tool is called, and a tool whose prompt names several values ("Paris and London")
is called once per value. After ``tool`` messages, "auto" calls a mentioned tool not yet called since
the last user message (a chain: A, then B), and answers in text once none is left (see `_prose`).
A test that needs other calls scripts them (``emulator.script``).

Linear in the request: the prompt's words are read once (a tool is mentioned when a prompt word
starts with one of its keywords), at most `MAX_HINTS` values are taken from it, and every call's
arguments draw on one shared `Budget` (`plan_calls` says whether it was cut).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
from dataclasses import dataclass

from ._schema import Budget, instance
from ._schema_check import SchemaError, check_schema

__all__ = ["MAX_HINTS", "Tool", "ToolCall", "hints_of", "parse_tool_choice", "parse_tools", "plan_calls"]

#: The most strings (and, apart, numbers) taken from a prompt to fill arguments with.
MAX_HINTS = 32
# A capitalised run longer than this is no name (and a number longer than this no argument).
_MAX_HINT_CHARS = 100
_MAX_NUMBER_CHARS = 24
#: Characters of arguments the calls of one reply may have when the caller gives no budget.
MAX_ARGUMENT_CHARS = 16_384


class ToolError(ValueError):
    """A tools or tool_choice value the service refuses (400 InvalidParameter)."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the service sends it

    @property
    def pieces(self) -> tuple[str, ...]:
        """The arguments in the fragments a stream delivers them in (each a few characters)."""
        return tuple(re.findall(r"\s*[^\s]{1,12}", self.arguments)) or ("",)


_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def parse_tools(raw) -> tuple[Tool, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ToolError("tools must be a list of {'type': 'function', 'function': {...}} objects.")
    tools: list[Tool] = []
    for item in raw:
        fn = item.get("function") if isinstance(item, dict) else None
        if not isinstance(fn, dict) or item.get("type", "function") != "function":
            raise ToolError("Each tool must be {'type': 'function', 'function': {'name': ..., 'parameters': {...}}}.")
        name = fn.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ToolError(f"Tool function name {name!r} is invalid: 1-64 letters, digits, '_' or '-'.")
        params = fn.get("parameters")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise ToolError(f"Tool {name!r}: parameters must be a JSON Schema object.")
        try:
            check_schema(params, f"tools[{len(tools)}].function.parameters")
        except SchemaError as exc:
            raise ToolError(str(exc)) from None
        desc: str = fn["description"] if isinstance(fn.get("description"), str) else ""
        tools.append(Tool(name=name, description=desc, parameters=params))
    if len({t.name for t in tools}) != len(tools):
        raise ToolError("Tool function names must be unique.")
    return tuple(tools)


def parse_tool_choice(raw, tools: tuple[Tool, ...]) -> str:
    """ "auto", "none", "required", or the name of the one function to call."""
    if raw is None:
        return "auto"
    if raw in ("auto", "none", "required"):
        if raw == "required" and not tools:
            raise ToolError("tool_choice 'required' needs tools.")
        return raw
    name = None
    if isinstance(raw, dict):
        fn = raw.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(name, str):
        raise ToolError(
            "tool_choice must be 'auto', 'none', 'required' or {'type': 'function', 'function': {'name': ...}}."
        )
    if name not in {t.name for t in tools}:
        raise ToolError(f"tool_choice names function {name!r}, which is not among the tools.")
    return name


_STOP = frozenset(
    "when what this that with from your have will would about want know useful tool tools function get set "
    "call calls make find return returns given value values the and for you are very".split()
)
_CJK = re.compile(r"[\u3400-\u9fff]+")


def _keywords(tool: Tool) -> set[str]:
    text = f"{tool.name.replace('_', ' ').replace('-', ' ')} {tool.description}"
    words = {w.lower() for w in re.findall(r"[A-Za-z]{4,}", re.sub(r"([a-z])([A-Z])", r"\1 \2", text))}
    words -= _STOP
    for run in _CJK.findall(text):
        words |= {run[i : i + 2] for i in range(len(run) - 1)}
    return words


class _Mentions:
    """A prompt's words, read once, to look tools' keywords up in (in logarithmic time each).

    A keyword is mentioned when a word of the prompt starts with it ("weather" in "weather's",
    "location" in "locations"), or, for a pair of CJK characters, when the prompt has that pair.
    """

    def __init__(self, prompt: str):
        low = prompt.lower()
        self.words = sorted(set(re.findall(r"[a-z]+", low)))
        self.cjk = {run[i : i + 2] for run in _CJK.findall(low) for i in range(len(run) - 1)}

    def __contains__(self, stem: str) -> bool:
        if _CJK.match(stem):
            return stem in self.cjk
        i = bisect.bisect_left(self.words, stem)
        return i < len(self.words) and self.words[i].startswith(stem)


def _score(tool: Tool, mentions: _Mentions) -> int:
    found = 0
    for word in _keywords(tool):
        stem = word[:-1] if len(word) > 4 and word.endswith("s") else word
        found += stem in mentions
    return found


_QUOTED = re.compile(r"[\"“「']([^\"”」']{1,60})[\"”」']")
_PROPER = re.compile(r"(?<![.!?]\s)(?<!^)\b([A-Z][\w\-]*(?:\s+[A-Z][\w\-]*)*)")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")
_SKIP = frozenset({"I", "What", "How", "Why", "When", "Where", "Which", "Who", "Please", "Tell", "Give", "Call"})


def hints_of(prompt: str) -> list:
    """Values a prompt names, in order: quoted phrases, capitalised names, then numbers."""
    strings: list[str] = []
    for m in _QUOTED.finditer(prompt):
        if len(strings) == MAX_HINTS:
            break
        strings.append(m.group(1).strip())
    for m in _PROPER.finditer(prompt) if len(strings) < MAX_HINTS else ():
        name = m.group(1)
        if len(name) > _MAX_HINT_CHARS or name in _SKIP or name in strings or any(name in s for s in strings):
            continue
        strings.append(name)
        if len(strings) == MAX_HINTS:
            break
    numbers: list = []
    for m in _NUMBER.finditer(prompt):
        text = m.group(0)
        if len(text) > _MAX_NUMBER_CHARS:
            continue  # int() refuses thousands of digits, and float() makes them infinite
        numbers.append(float(text) if "." in text else int(text))
        if len(numbers) == MAX_HINTS:
            break
    return [*strings, *numbers]


def _call_id(seed: str, index: int) -> str:
    return "call_" + hashlib.sha256(f"{seed}/{index}".encode()).hexdigest()[:24]


def plan_calls(
    tools: tuple[Tool, ...], choice: str, parallel: bool, prompt: str, seed: str, budget: Budget | None = None
) -> tuple[ToolCall, ...]:
    """The calls a request gets: empty when the reply should be text.

    Their arguments draw on ``budget`` (a default one if none); once it is cut, no further call is made.
    """
    budget = Budget(MAX_ARGUMENT_CHARS) if budget is None else budget
    if not tools or choice == "none":
        return ()
    if choice not in ("auto", "required"):
        chosen = [next(t for t in tools if t.name == choice)]
    else:
        mentions = _Mentions(prompt)
        scored = sorted(((-_score(t, mentions), i, t) for i, t in enumerate(tools)), key=lambda x: x[:2])
        chosen = [t for s, _, t in scored if s < 0]
        if not chosen:
            if choice == "auto":
                return ()
            chosen = [tools[0]]
        if not parallel:
            chosen = chosen[:1]
    hints = hints_of(prompt)
    strings = [h for h in hints if isinstance(h, str)]
    calls: list[tuple[Tool, list]] = []
    for tool in chosen:
        if parallel and len(chosen) == 1 and len(strings) > 1 and _string_slots(tool.parameters) == 1:
            # "weather in Paris and London": one call per value the prompt names.
            numbers = [h for h in hints if not isinstance(h, str)]
            calls += [(tool, [s, *numbers]) for s in strings]
        else:
            calls.append((tool, hints))
    out = []
    for i, (tool, h) in enumerate(calls):
        if budget.cut:
            break
        arguments = json.dumps(instance(_object(tool), h, budget), ensure_ascii=False)
        out.append(ToolCall(id=_call_id(seed, i), name=tool.name, arguments=arguments))
    return tuple(out)


def _object(tool: Tool) -> dict:
    # Arguments are always an object: `parameters: {}` (the SDK's own example) means no arguments.
    params = tool.parameters
    return params if "type" in params or "$ref" in params else {"type": "object", **params}


def _string_slots(schema) -> int:
    """How many free-text string properties a flat parameters schema has."""
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict):
        return 0
    return sum(
        1
        for p in props.values()
        if isinstance(p, dict) and p.get("type") == "string" and "enum" not in p and "format" not in p
    )
