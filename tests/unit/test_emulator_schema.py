"""The emulator's JSON Schema instances and prose, without a server.

Instances are checked with `jsonschema` (an independent validator), prose with plain counts.
"""

from __future__ import annotations

import re

import jsonschema
import pytest

from dashnb.emulator import _prose
from dashnb.emulator._schema import instance

SCHEMAS = [
    {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "number"}}, "required": ["a", "b"]},
    {"type": "object", "properties": {"kind": {"enum": ["x", "y"]}, "on": {"type": "boolean"}}, "required": ["kind"]},
    {"type": "integer", "minimum": 10, "maximum": 12},
    {"type": "integer", "exclusiveMinimum": 3, "multipleOf": 5},
    {"type": "number", "exclusiveMaximum": 0},
    {"type": "string", "minLength": 30},
    {"type": "string", "maxLength": 3},
    {"type": "string", "format": "date-time"},
    {"type": ["null", "string"]},
    {"type": "array", "items": {"type": "string"}, "minItems": 3, "uniqueItems": True},
    {"type": "array", "items": {"type": "integer"}, "minItems": 2, "uniqueItems": True},
    {"type": "array", "prefixItems": [{"type": "integer"}, {"const": "z"}], "minItems": 2},
    {"const": 42},
    {"type": "object", "properties": {"unit": {"type": "string", "default": "celsius"}}},
    {
        "type": "object",
        "properties": {
            "outer": {
                "type": "object",
                "properties": {
                    "inner": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
                    }
                },
                "required": ["inner"],
            }
        },
        "required": ["outer"],
        "additionalProperties": False,
    },
    # pydantic's shapes: $defs and $ref, Optional as anyOf with null, allOf wrappers
    {
        "$defs": {"Pet": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}},
        "type": "object",
        "properties": {
            "pet": {"$ref": "#/$defs/Pet"},
            "maybe": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "wrapped": {"allOf": [{"$ref": "#/$defs/Pet"}]},
        },
        "required": ["pet", "maybe", "wrapped"],
    },
    # recursion stops
    {
        "$defs": {
            "Node": {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}
        },
        "$ref": "#/$defs/Node",
    },
    {"type": "object", "minProperties": 2},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_instances_validate(schema):
    value = instance(schema)
    jsonschema.validate(value, schema)
    assert instance(schema) == value  # deterministic


def test_a_default_is_used():
    assert instance({"type": "object", "properties": {"unit": {"type": "string", "default": "kelvin"}}}) == {
        "unit": "kelvin"
    }


def test_hints_fill_strings_numbers_and_enums_in_order():
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "maximum": 7},
            "note": {"type": "string"},
        },
    }
    value = instance(schema, ["Paris", "fahrenheit", 30, 3])
    # "fahrenheit" fills the enum (and is used up); 30 is out of bounds for days, so 3 is taken.
    assert value == {"city": "Paris", "unit": "fahrenheit", "days": 3, "note": "emulated note"}
    jsonschema.validate(value, schema)


@pytest.mark.parametrize("n", [1, 2, 5, 13, 14, 16, 27, 60, 200])
@pytest.mark.parametrize(
    "prompt", ["hi", "How does connection reuse help?", "List 5 tips for pools.", "Is it fast?", "Translate this: 你好"]
)
def test_prose_is_exactly_n_words_and_ends_a_sentence(prompt, n):
    words = _prose.reply_words(prompt, n)
    assert len(words) == n and "".join(words).split() == [w.strip() for w in words]
    assert not words[0][0].isspace()
    assert re.search(r"[.!?][\"'\u201d]*$", words[-1]), words[-1]


def test_prose_names_the_topic_and_says_it_is_the_emulator():
    text = "".join(_prose.reply_words("Why does TLS 1.3 save a round trip?", 30))
    assert "TLS 1.3 save a round trip" in text and "emulator" in text
    assert "".join(_prose.reply_words("Why?", 30, choice=1)) != "".join(_prose.reply_words("Why?", 30))
