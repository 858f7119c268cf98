"""A small, deterministic instance generator for JSON Schema: what the emulator puts in tool
arguments and structured replies.

    >>> instance({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}, ["Paris"])
    {'city': 'Paris'}
    >>> instance({"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 2})
    ['a', 'a']

The same schema and hints always give the same value. Hints are strings and numbers taken from the
prompt; string fields take them in order, so "the weather in Paris" fills ``location`` with "Paris".
Covers what tool and response schemas use in practice (object, properties, required, enum, const,
type lists, string formats and lengths, number bounds, arrays, nesting, ``$ref`` into ``$defs``,
``anyOf``/``oneOf``/``allOf``); a ``pattern`` is not generated from, only respected when a hint fits it.

Bounded work: the schema comes from the request, and a few hundred bytes of it can ask for a hundred
million items, a $ref to itself under every property, or a pattern that backtracks for minutes. So
a `Budget` caps what one reply generates (schema nodes visited, characters of output); past it,
arrays, objects and strings stop growing and the budget says it was cut (the reply then ends with
``finish_reason`` "length", as a model's does at its output limit). Patterns are matched with RE2,
whose time is linear in the text, never with a backtracking engine; a pattern RE2 cannot read
(lookaround, backreferences) or a very long one is not checked. `_schema_check` refuses keyword
values the generator cannot use before any of this runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import re2

__all__ = ["MAX_STEPS", "Budget", "instance"]

_FORMATS = {
    "date": "2025-01-01",
    "date-time": "2025-01-01T00:00:00Z",
    "time": "00:00:00Z",
    "email": "emulator@example.com",
    "uri": "https://example.com/emulator",
    "url": "https://example.com/emulator",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
    "hostname": "localhost",
}
_MAX_DEPTH = 12  # a recursive schema ($ref to itself) stops here, at the smallest valid value
#: Schema nodes one reply may visit (and list entries it may scan): well under a second of work.
MAX_STEPS = 50_000
#: Characters of output one reply may generate when its caller gives no budget (about 2,000 tokens).
_DEFAULT_CHARS = 16_384
# Patterns longer than this are not checked: RE2 compiles each, and the cache keeps the last 128.
_MAX_PATTERN = 1_000
# Hints longer than this are not matched against a pattern (no name or value is that long).
_MAX_SUBJECT = 1_000
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.max_mem = 1 << 20  # per compiled pattern; a pattern needing more is not checked
_RE2_OPTIONS.log_errors = False  # a pattern RE2 cannot read is ordinary input, not an error to log


class Budget:
    """How much one reply may still generate: schema nodes visited and characters of output.

    Shared by every value of a reply (all its tool calls), so the total is bounded, not each part.
    ``cut`` turns true once either runs out; generation then returns the smallest values it can.
    """

    def __init__(self, chars: int, steps: int = MAX_STEPS):
        self.chars, self.steps, self.cut = chars, steps, False
        self.sizes: dict[int, int] = {}  # id of a const/default/enum value from the schema -> its size

    def spend(self, steps: int = 1, chars: int = 0) -> bool:
        """Take ``steps`` and ``chars``; False (and ``cut``) once either is exhausted."""
        self.steps -= steps
        self.chars -= chars
        if self.steps < 0 or self.chars < 0:
            self.cut = True
        return not self.cut

    def literal(self, value):
        """A value copied from the schema (const, default, enum), paid for by its size."""
        key = id(value)
        if key not in self.sizes:
            self.sizes[key] = _size(value)
        self.spend(1, self.sizes[key])
        return value


def _size(value) -> int:
    """About how many characters ``value`` takes as JSON (iterative: no recursion limit)."""
    total, todo = 0, [value]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            todo.extend(item.values())
            total += sum(len(k) + 4 for k in item) + 2
        elif isinstance(item, list):
            todo.extend(item)
            total += len(item) + 2
        else:
            total += len(item) + 2 if isinstance(item, str) else 8
    return total


class _Hints:
    def __init__(self, hints: Iterable, budget: Budget):
        self.budget = budget
        self.strings = [h for h in hints if isinstance(h, str)]
        self.numbers = [h for h in hints if isinstance(h, (int, float)) and not isinstance(h, bool)]

    def string(self):
        return self.strings.pop(0) if self.strings else None

    def number(self, ok):
        for i, value in enumerate(self.numbers):
            if ok(value):
                return self.numbers.pop(i)
        return None


def instance(schema, hints: Iterable = (), budget: Budget | None = None) -> object:
    """A value valid against ``schema`` (a dict, or True/False/None for any), within ``budget``.

    Without a budget, a fresh default one; pass one to share it between values and to see
    whether it was ``cut`` (the value is then smaller than the schema asks).
    """
    budget = Budget(_DEFAULT_CHARS) if budget is None else budget
    return _value(schema, schema if isinstance(schema, dict) else {}, _Hints(hints, budget), "value", 0)


def _resolve(schema: dict, root: dict, budget: Budget) -> dict:
    seen = 0
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < 32:
        # Each hop copies the target: paid for by its size, so a long chain of large ones is bounded.
        if not budget.spend(1 + len(schema)):
            return {}
        ref = schema["$ref"]
        target: object = root
        if ref.startswith("#"):
            for part in ref.lstrip("#").strip("/").split("/"):
                if not part:
                    continue
                part = part.replace("~1", "/").replace("~0", "~")
                target = target.get(part) if isinstance(target, dict) else None
        else:
            target = None  # remote references are not fetched
        extra = {k: v for k, v in schema.items() if k != "$ref"}
        if isinstance(target, dict):
            budget.spend(len(target))
        schema = {**target, **extra} if isinstance(target, dict) else extra
        seen += 1
    return schema


def _schema_of(schema, root: dict, budget: Budget) -> dict:
    """``schema`` with its $ref followed; {} for `true` (any value) and anything not an object."""
    resolved = _resolve(schema, root, budget) if isinstance(schema, dict) else {}
    return resolved if isinstance(resolved, dict) else {}


def _value(schema, root: dict, hints: _Hints, name: str, depth: int):
    budget = hints.budget
    if not budget.spend(1):
        return None  # out of budget: the reply is cut here, as a model's is at its output limit
    if not isinstance(schema, dict):
        return {}  # `true` or a missing schema: anything goes; an object is the most useful anything
    schema = _resolve(schema, root, budget)
    if "const" in schema:
        return budget.literal(schema["const"])
    if schema.get("default") is not None and not isinstance(schema["default"], (dict, list)):
        return budget.literal(schema["default"])  # what the tool's author expects when nothing else is said
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return budget.literal(_pick_enum(schema["enum"], hints))
    combined = depth < _MAX_DEPTH  # anyOf/allOf of a $ref to the root would merge forever: stop at the depth
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if combined and isinstance(options, list) and options:
            # The first option that is not null: Optional[X] in pydantic is anyOf [X, null].
            chosen = _schema_of(options[0], root, budget)
            for option in options:
                if not budget.spend(1):
                    break
                if _schema_of(option, root, budget).get("type") != "null":
                    chosen = _schema_of(option, root, budget)
                    break
            merged = {**{k: v for k, v in schema.items() if k != key}, **chosen}
            budget.spend(len(merged))
            return _value(merged, root, hints, name, depth + 1)
    if combined and isinstance(schema.get("allOf"), list) and schema["allOf"]:
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = _schema_of(part, root, budget)
            if not budget.spend(1 + len(part)):
                break
            for k, v in part.items():
                if k == "properties" and isinstance(merged.get(k), dict) and isinstance(v, dict):
                    budget.spend(len(v))
                    merged[k] = {**merged[k], **v}
                elif k == "required" and isinstance(merged.get(k), list) and isinstance(v, list):
                    budget.spend(len(v))
                    known = {r for r in merged[k] if isinstance(r, str)}
                    merged[k] = merged[k] + [r for r in v if isinstance(r, str) and r not in known]
                else:
                    merged.setdefault(k, v)
        return _value(merged, root, hints, name, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((t for t in kind if t != "null"), "null")
    if kind is None:
        if "properties" in schema or "required" in schema:
            kind = "object"
        elif "items" in schema:
            kind = "array"
        else:
            kind = "string"
    if depth >= _MAX_DEPTH and kind in ("object", "array"):
        return {} if kind == "object" else []
    if kind == "object":
        return _object(schema, root, hints, depth)
    if kind == "array":
        return _array(schema, root, hints, name, depth)
    if kind == "string":
        return _string(schema, hints, name)
    if kind in ("number", "integer"):
        return _number(schema, hints, integer=kind == "integer")
    if kind == "boolean":
        return True
    return None


def _pick_enum(options: list, hints: _Hints):
    if hints.strings and hints.budget.spend(len(options)):
        # One pass over the options, not one per hint: a long enum costs its length once.
        lowered: dict[str, str] = {}
        for option in options:
            if isinstance(option, str):
                lowered.setdefault(option.lower(), option)
        for i, hint in enumerate(hints.strings):
            if hint.lower() in lowered:
                del hints.strings[i]  # used: the next free-text field gets the next hint
                return lowered[hint.lower()]
    return options[0]


def _object(schema: dict, root: dict, hints: _Hints, depth: int) -> dict:
    props: dict = schema["properties"] if isinstance(schema.get("properties"), dict) else {}
    listed = schema.get("required")
    required = [r for r in listed if isinstance(r, str)] if isinstance(listed, list) else []
    out: dict = {}
    # Every listed property: more useful to the caller than the bare minimum, and still valid.
    budget = hints.budget
    names = set(props)
    for key in list(props) + [r for r in required if r not in names]:
        if not budget.spend(1, len(key) + 4):
            return out
        out[key] = _value(props.get(key, {}), root, hints, key, depth + 1)
    extra = schema.get("minProperties")
    if isinstance(extra, int) and len(out) < extra and schema.get("additionalProperties") is not False:
        for i in range(extra - len(out)):
            if not budget.spend(1, 12):
                break
            out[f"extra_{i + 1}"] = _value(schema.get("additionalProperties", {}), root, hints, "extra", depth + 1)
    return out


def _array(schema: dict, root: dict, hints: _Hints, name: str, depth: int) -> list:
    low = schema.get("minItems", 1) if isinstance(schema.get("minItems"), int) else 1
    high = schema.get("maxItems") if isinstance(schema.get("maxItems"), int) else None
    count = max(low, 1)
    if high is not None:
        count = min(count, high)
    prefix: list = schema["prefixItems"] if isinstance(schema.get("prefixItems"), list) else []
    items = schema.get("items", {})
    budget = hints.budget
    unique = bool(schema.get("uniqueItems"))
    out: list = []
    for i in range(count):
        if not budget.spend(1 + (len(out) if unique else 0), 2):  # `in out` below scans the list
            break
        value = _value(prefix[i] if i < len(prefix) else items, root, hints, name, depth + 1)
        if unique and value in out:
            value = _distinct(value, i, out)
        out.append(value)
    return out


def _distinct(value, i: int, taken: list):
    if isinstance(value, str):
        return f"{value} {i + 1}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return max(v for v in taken if isinstance(v, (int, float))) + 1
    return value


def _string(schema: dict, hints: _Hints, name: str) -> str:
    fmt = schema.get("format")
    if fmt in _FORMATS:
        return _FORMATS[fmt]
    budget = hints.budget
    value = hints.string() or f"emulated {name}".replace("_", " ")
    matcher = _matcher(schema.get("pattern"))
    if matcher is not None and not _fits(matcher, value):
        value = next((h for h in hints.strings if _fits(matcher, h)), value)
    low: int = schema["minLength"] if isinstance(schema.get("minLength"), int) else 0
    high: int | None = schema["maxLength"] if isinstance(schema.get("maxLength"), int) else None
    if high is not None:
        value, low = value[:high], min(low, high)  # maxLength wins over a larger minLength
    if not budget.spend(1, len(value)):
        return value[: max(0, budget.chars + len(value))]
    if len(value) < low:
        pad = low - len(value)
        budget.spend(0, pad)
        value = value + "x" * (pad if not budget.cut else max(0, budget.chars + pad))
    return value


def _matcher(pattern):
    """RE2's compiled ``pattern``, or None when there is none to check or RE2 cannot read it."""
    if not isinstance(pattern, str) or len(pattern) > _MAX_PATTERN:
        return None
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error:
        return None  # lookaround, backreferences: ECMA-262 features RE2 leaves out; not checked


def _fits(matcher, text: str) -> bool:
    return len(text) <= _MAX_SUBJECT and matcher.search(text) is not None


def _number(schema: dict, hints: _Hints, *, integer: bool):
    low, high = schema.get("minimum"), schema.get("maximum")
    xlow, xhigh = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    step = schema.get("multipleOf")

    def ok(v) -> bool:
        if not math.isfinite(v) or (integer and v != int(v)):
            return False
        if isinstance(low, (int, float)) and v < low:
            return False
        if isinstance(high, (int, float)) and v > high:
            return False
        if isinstance(xlow, (int, float)) and not isinstance(xlow, bool) and v <= xlow:
            return False
        if isinstance(xhigh, (int, float)) and not isinstance(xhigh, bool) and v >= xhigh:
            return False
        if isinstance(step, (int, float)) and step > 0:
            ratio = v / step
            return math.isfinite(ratio) and math.isclose(ratio, round(ratio))
        return True

    hinted = hints.number(ok)
    if hinted is not None:
        return int(hinted) if integer else hinted
    candidates: list[float] = [1]
    for bound, nudge in ((low, 0), (xlow, 1), (high, 0), (xhigh, -1)):
        if isinstance(bound, (int, float)) and not isinstance(bound, bool):
            start = math.ceil(bound) if nudge >= 0 else math.floor(bound)
            candidates += [start + nudge, start, bound + (0.5 * nudge)]
    if isinstance(step, (int, float)) and step > 0:
        base = low if isinstance(low, (int, float)) else (xlow if isinstance(xlow, (int, float)) else 0)
        if math.isfinite(base / step):  # a step of 1e-320 from 1 overflows: no multiple to offer then
            first = math.ceil(base / step) * step
            candidates = [first, first + step, *candidates]
    for c in candidates:
        if ok(c):
            return int(c) if integer else c
    return int(low) if integer and isinstance(low, (int, float)) else (low if low is not None else 0)
