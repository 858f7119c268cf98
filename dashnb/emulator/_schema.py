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
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

__all__ = ["instance"]

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


class _Hints:
    def __init__(self, hints: Iterable):
        self.strings = [h for h in hints if isinstance(h, str)]
        self.numbers = [h for h in hints if isinstance(h, (int, float)) and not isinstance(h, bool)]

    def string(self):
        return self.strings.pop(0) if self.strings else None

    def number(self, ok):
        for i, value in enumerate(self.numbers):
            if ok(value):
                return self.numbers.pop(i)
        return None


def instance(schema, hints: Iterable = ()) -> object:
    """A value valid against ``schema`` (a dict, or True/False/None for any)."""
    return _value(schema, schema if isinstance(schema, dict) else {}, _Hints(hints), "value", 0)


def _resolve(schema: dict, root: dict) -> dict:
    seen = 0
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < 32:
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
        schema = {**target, **extra} if isinstance(target, dict) else extra
        seen += 1
    return schema


def _value(schema, root: dict, hints: _Hints, name: str, depth: int):
    if not isinstance(schema, dict):
        return {}  # `true` or a missing schema: anything goes; an object is the most useful anything
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("default") is not None and not isinstance(schema["default"], (dict, list)):
        return schema["default"]  # what the tool's author expects when nothing else is said
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return _pick_enum(schema["enum"], hints)
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            # The first option that is not null: Optional[X] in pydantic is anyOf [X, null].
            chosen = next((o for o in options if _resolve(o, root).get("type") != "null"), options[0])
            merged = {**{k: v for k, v in schema.items() if k != key}, **_resolve(chosen, root)}
            return _value(merged, root, hints, name, depth + 1)
    if isinstance(schema.get("allOf"), list) and schema["allOf"]:
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = _resolve(part, root)
            for k, v in part.items():
                if k == "properties" and isinstance(merged.get(k), dict):
                    merged[k] = {**merged[k], **v}
                elif k == "required" and isinstance(merged.get(k), list):
                    merged[k] = merged[k] + [r for r in v if r not in merged[k]]
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
    for i, hint in enumerate(hints.strings):
        for option in options:
            if isinstance(option, str) and option.lower() == hint.lower():
                del hints.strings[i]  # used: the next free-text field gets the next hint
                return option
    return options[0]


def _object(schema: dict, root: dict, hints: _Hints, depth: int) -> dict:
    props: dict = schema["properties"] if isinstance(schema.get("properties"), dict) else {}
    required = [r for r in schema.get("required", []) if isinstance(r, str)]
    out = {}
    # Every listed property: more useful to the caller than the bare minimum, and still valid.
    for key in list(props) + [r for r in required if r not in props]:
        out[key] = _value(props.get(key, {}), root, hints, key, depth + 1)
    extra = schema.get("minProperties")
    if isinstance(extra, int) and len(out) < extra and schema.get("additionalProperties") is not False:
        for i in range(extra - len(out)):
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
    out = [_value(p, root, hints, name, depth + 1) for p in prefix[:count]]
    for i in range(len(out), count):
        value = _value(items, root, hints, name, depth + 1)
        if schema.get("uniqueItems") and value in out:
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
    pattern = schema.get("pattern")
    value = hints.string() or f"emulated {name}".replace("_", " ")
    if isinstance(pattern, str):
        try:
            if not re.search(pattern, value):
                value = next((h for h in hints.strings if re.search(pattern, h)), value)
        except re.error:
            pass
    low: int = schema["minLength"] if isinstance(schema.get("minLength"), int) else 0
    high: int | None = schema["maxLength"] if isinstance(schema.get("maxLength"), int) else None
    if len(value) < low:
        value = value + "x" * (low - len(value))
    if high is not None:
        value = value[:high]
    return value


def _number(schema: dict, hints: _Hints, *, integer: bool):
    low, high = schema.get("minimum"), schema.get("maximum")
    xlow, xhigh = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    step = schema.get("multipleOf")

    def ok(v) -> bool:
        if integer and v != int(v):
            return False
        if isinstance(low, (int, float)) and v < low:
            return False
        if isinstance(high, (int, float)) and v > high:
            return False
        if isinstance(xlow, (int, float)) and not isinstance(xlow, bool) and v <= xlow:
            return False
        if isinstance(xhigh, (int, float)) and not isinstance(xhigh, bool) and v >= xhigh:
            return False
        return not (isinstance(step, (int, float)) and step > 0 and not math.isclose(v / step, round(v / step)))

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
        first = math.ceil(base / step) * step
        candidates = [first, first + step, *candidates]
    for c in candidates:
        if ok(c):
            return int(c) if integer else c
    return int(low) if integer and isinstance(low, (int, float)) else (low if low is not None else 0)
