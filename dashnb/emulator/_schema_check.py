"""The checks a JSON Schema in a request meets before the emulator generates from it.

    >>> check_schema({"type": "array", "minItems": 2}, "response_format.json_schema.schema")
    >>> check_schema({"properties": {"n": {"minimum": float("inf")}}}, "schema")
    Traceback (most recent call last):
    ...
    dashnb.emulator._schema_check.SchemaError: schema: properties.n.minimum must be a finite number, got inf

A schema comes from the request (``tools[].function.parameters``, ``response_format``), so a keyword
the generator reads with a value it cannot use (a negative ``minItems``, a ``minimum`` of 1e999, a
``multipleOf`` of 0, a ``$ref`` that is not a string) is refused with a 400 naming the keyword and
where it is, as the service refuses a malformed schema. Only the keywords the generator reads are
checked, and nothing is fetched. One walk over the schema: linear in the request. How much a valid
schema may make the emulator generate is bounded separately (`_schema.Budget`).
"""

from __future__ import annotations

import math

__all__ = ["SchemaError", "check_schema"]


class SchemaError(ValueError):
    """A schema keyword with a value the emulator cannot generate from (400 InvalidParameter)."""


# Keywords whose value is one schema, a list of schemas, or an object of schemas by name.
_ONE = ("items", "additionalProperties", "not", "contains", "if", "then", "else", "propertyNames")
_LIST = ("anyOf", "oneOf", "allOf", "prefixItems")
_BY_NAME = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_COUNTS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties")
_BOUNDS = ("minimum", "maximum")
_EXCLUSIVE = ("exclusiveMinimum", "exclusiveMaximum")  # a number, or (draft 4) a boolean


def check_schema(schema: object, where: str) -> None:
    """Raise `SchemaError` naming the first keyword of ``schema`` the emulator cannot use."""
    todo: list[tuple[object, str]] = [(schema, "")]
    while todo:
        node, path = todo.pop()
        if isinstance(node, bool):
            continue  # true / false: any value, no value
        if not isinstance(node, dict):
            place = path.rstrip(".") or "the schema"
            raise SchemaError(f"{where}: {place} must be a JSON Schema object, got {_show(node)}")
        for key in _COUNTS:
            if key in node and not _count(node[key]):
                raise _bad(where, path, key, "a whole number >= 0", node[key])
        for key in _BOUNDS:
            if key in node and not _finite(node[key]):
                raise _bad(where, path, key, "a finite number", node[key])
        for key in _EXCLUSIVE:
            if key in node and not (isinstance(node[key], bool) or _finite(node[key])):
                raise _bad(where, path, key, "a finite number", node[key])
        if "multipleOf" in node and not (_finite(node["multipleOf"]) and node["multipleOf"] > 0):
            raise _bad(where, path, "multipleOf", "a finite number > 0", node["multipleOf"])
        for key in ("pattern", "$ref", "format"):
            if key in node and not isinstance(node[key], str):
                raise _bad(where, path, key, "a string", node[key])
        for key in ("enum", "required"):
            if key in node and not isinstance(node[key], list):
                raise _bad(where, path, key, "a list", node[key])
        for key in _ONE:
            if key in node and not isinstance(node[key], list):  # `items` may still be a draft-4 list
                todo.append((node[key], f"{path}{key}."))
        for key in (*_LIST, *(("items",) if isinstance(node.get("items"), list) else ())):
            if key in node:
                if not isinstance(node[key], list) or (key != "prefixItems" and key != "items" and not node[key]):
                    raise _bad(where, path, key, "a non-empty list of schemas", node[key])
                todo.extend((part, f"{path}{key}[{i}].") for i, part in enumerate(node[key]))
        for key in _BY_NAME:
            if key in node:
                if not isinstance(node[key], dict):
                    raise _bad(where, path, key, "an object of schemas", node[key])
                todo.extend((part, f"{path}{key}.{name}.") for name, part in node[key].items())


def _bad(where: str, path: str, key: str, what: str, value: object) -> SchemaError:
    return SchemaError(f"{where}: {path}{key} must be {what}, got {_show(value)}")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
