"""Bounded work per request: a few hundred hostile bytes never freeze the emulator or its kernel.

The emulator runs inside a notebook kernel, on a background thread of that process, so a request
that keeps its thread busy (or holds the GIL in one long C call) stalls the kernel too. Each attack
here runs in a fresh interpreter, as a kernel would host it: the emulator in-process, a probe thread
timing its own 10 ms sleeps, and the attack sent over real TLS. The request must be answered (200 or
400) within a wide wall bound, with under 2 s of the process's CPU, while the probe never waits a
second, and the process's peak RSS stays far below what the old generator reached.
"""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import openai
import pytest

from dashnb.emulator import EmulatorOptions
from dashnb.emulator._limits import MAX_REPLY_TOKENS

CHAT = "/compatible-mode/v1/chat/completions"
NATIVE = "/api/v1/services/aigc/text-generation/generation"
EMBED = "/compatible-mode/v1/embeddings"

# Wide bounds: the machine is shared and busy. Before the bounds, most of these ran for minutes.
WALL_S = 10.0
CPU_S = 2.0
PROBE_GAP_S = 1.0
PEAK_RSS_MB = 400

_DRIVER = r"""
import json, resource, sys, threading, time

import httpx

from dashnb import emulator

path, raw = json.loads(sys.stdin.read())
emu = emulator.start(shared=False, rtt_ms=0)
gaps = [0.0]
stop = threading.Event()

def probe():
    last = time.perf_counter()
    while not stop.is_set():
        time.sleep(0.01)
        now = time.perf_counter()
        gaps.append(now - last - 0.01)
        last = now

out = {}
with httpx.Client(verify=emu.ssl_context(), timeout=float(sys.argv[1])) as client:
    client.get(emu.url + "/_emulator/stats")  # the connection is open before the clock starts
    watcher = threading.Thread(target=probe, daemon=True)
    watcher.start()
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        r = client.post(emu.url + path, content=raw.encode(),
                        headers={"Authorization": f"Bearer {emu.api_key}", "Content-Type": "application/json"})
        out.update(status=r.status_code, body=r.text[:1000] + " ... " + r.text[-1000:])
    except httpx.TimeoutException:
        out.update(status=None, body="no answer within the client's timeout")
    out.update(wall_s=time.perf_counter() - wall, cpu_s=time.process_time() - cpu)
    stop.set()
    watcher.join()
out.update(probe_gap_s=max(gaps), peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(json.dumps(out), flush=True)
sys.stdout.flush()
import os
os._exit(0)  # an emulator thread still grinding (the old code) must not keep this process alive
"""


def _words(n: int, offset: int = 0) -> list[str]:
    """n distinct lowercase words of four letters."""
    out = []
    for i in range(offset, offset + n):
        out.append("".join("abcdefghijklmnopqrstuvwxyz"[(i // 26**k) % 26] for k in range(4)))
    return out


def _chat(schema=None, tools=None, prompt="hi", **extra) -> tuple[str, dict]:
    body: dict = {"model": "qwen-plus", "messages": [{"role": "user", "content": prompt}], **extra}
    if schema is not None:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    if tools is not None:
        body["tools"] = tools
    return CHAT, body


def _tool(params: dict) -> list:
    return [{"type": "function", "function": {"name": "lookup", "description": "look up", "parameters": params}}]


# name -> (path, body, expected status, text the answer must contain)
ATTACKS = {
    # a backtracking pattern against the property's own crafted name
    "pattern": (
        *_chat(
            tools=_tool({"type": "object", "properties": {"a" * 40 + "!": {"type": "string", "pattern": "(a+)+$"}}}),
            tool_choice="required",
        ),
        200,
        "tool_calls",
    ),
    "min_items": (*_chat({"type": "array", "items": {"type": "integer"}, "minItems": 10**8}), 200, '"length"'),
    "min_length": (*_chat({"properties": {"s": {"type": "string", "minLength": 3 * 10**8}}}), 200, '"length"'),
    "min_properties": (*_chat({"type": "object", "minProperties": 10**7}), 200, '"length"'),
    "ref_recursion": (*_chat({"type": "object", "properties": {k: {"$ref": "#"} for k in "abcdefgh"}}), 200, "length"),
    "native_min_items": (
        NATIVE,
        {
            "model": "qwen-plus",
            "input": {"messages": [{"role": "user", "content": "hi"}]},
            "parameters": {
                "result_format": "message",
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "array", "minItems": 10**8}},
                },
            },
        },
        200,
        '"length"',
    ),
    "capitalised_words": (
        *_chat(
            tools=_tool({"type": "object", "properties": {"city": {"type": "string"}}}),
            prompt="Lookup " + " and ".join(w.capitalize() for w in _words(40_000)),
            parallel_tool_calls=True,
        ),
        200,
        "tool_calls",
    ),
    "any_of_ref": (*_chat({"anyOf": [{"$ref": "#"}]}), 200, "chat.completion"),
    "all_of_ref": (*_chat({"allOf": [{"$ref": "#"}]}), 200, "chat.completion"),
    "minimum_1e999": (*_chat({"properties": {"n": {"type": "number", "minimum": 1e999}}}), 400, "properties.n.minimum"),
    "multiple_of_1e-300": (
        *_chat({"properties": {"n": {"type": "number", "minimum": 1e10, "multipleOf": 1e-300}}}),
        200,
        "chat.completion",
    ),
    "number_of_5000_digits": (
        *_chat(tools=_tool({"properties": {"n": {"type": "integer"}}}), prompt="lookup " + "7" * 5000),
        200,
        "tool_calls",
    ),
    "commas_after_a_word": (*_chat(prompt="a " + "," * 200_000 + "x"), 200, "chat.completion"),
    "embeddings_at_the_documented_limit": (
        EMBED,
        {
            "model": "text-embedding-v4",
            "dimensions": 2048,
            "input": [" ".join(_words(8000, 8000 * i)) for i in range(10)],
        },
        200,
        '"embedding"',
    ),
}


def _attack(path: str, body: dict) -> dict:
    # 1e999 is what a client writes for a bound past float range (json.dumps would write Infinity).
    raw = json.dumps([path, json.dumps(body).replace("Infinity", "1e999")])
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _DRIVER, str(WALL_S)], input=raw, capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        # Even the client's own 10 s timeout never fired: something held the GIL all along.
        pytest.fail("the process froze: no thread of it could report within 60 s")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ATTACKS))
def test_an_attack_is_answered_in_bounded_time_without_stalling_the_process(name):
    path, body, status, marker = ATTACKS[name]
    r = _attack(path, body)
    summary = {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items() if k != "body"}
    print(f"\n[{name}] {len(json.dumps(body))} bytes: {summary}")
    assert r["status"] == status, r["body"][:500]
    assert marker in r["body"], r["body"][:500]
    assert r["wall_s"] < WALL_S
    assert r["cpu_s"] < CPU_S, f"{r['cpu_s']:.2f} s of CPU for one request"
    assert r["probe_gap_s"] < PROBE_GAP_S, f"a thread of the process waited {r['probe_gap_s']:.2f} s"
    assert r["peak_rss_mb"] < PEAK_RSS_MB


# ---- invalid schemas: 400 naming the keyword ---------------------------------------------------

BAD_KEYWORDS = [
    ({"type": "array", "minItems": -1}, "minItems"),
    ({"type": "string", "maxLength": "10"}, "maxLength"),
    ({"properties": {"n": {"maximum": float("nan")}}}, "properties.n.maximum"),
    ({"properties": {"n": {"multipleOf": 0}}}, "properties.n.multipleOf"),
    ({"items": {"pattern": 7}}, "items.pattern"),
    ({"anyOf": []}, "anyOf"),
    ({"$ref": {"#": 1}}, "$ref"),
    ({"$defs": {"A": {"exclusiveMinimum": float("inf")}}}, "$defs.A.exclusiveMinimum"),
]


def _post(emu, path: str, body: dict) -> httpx.Response:
    # Written by hand: the SDKs refuse NaN and infinities, which Python's JSON reader accepts.
    raw = json.dumps(body).replace("Infinity", "1e999")
    with httpx.Client(verify=emu.ssl_context()) as client:
        return client.post(
            emu.url + path,
            content=raw.encode(),
            headers={"Authorization": f"Bearer {emu.api_key}", "Content-Type": "application/json"},
        )


@pytest.mark.parametrize(("schema", "keyword"), BAD_KEYWORDS)
def test_an_invalid_response_schema_is_a_400_naming_its_keyword(emu, schema, keyword):
    r = _post(emu, *_chat(schema))
    assert r.status_code == 400, r.text[:300]
    assert f"response_format.json_schema.schema: {keyword} must be" in r.json()["error"]["message"]


def test_an_invalid_tool_schema_is_a_400_naming_the_tool_and_keyword(emu):
    tools = _tool({"properties": {"ok": {"type": "string"}}})
    tools.append({"type": "function", "function": {"name": "b", "parameters": {"minProperties": 1.5}}})
    r = _post(emu, *_chat(tools=tools))
    assert r.status_code == 400
    assert "tools[1].function.parameters: minProperties must be a whole number >= 0, got 1.5" in r.text


def test_a_schema_asking_for_more_than_the_longest_reply_is_cut_with_finish_reason_length(emu):
    # A million items: the old generator made them all (a million tokens, finish "stop").
    schema = {"type": "array", "items": {"type": "integer"}, "minItems": 10**6}
    with openai.OpenAI(
        api_key=emu.api_key, base_url=emu.compatible_base_url, http_client=httpx.Client(verify=emu.ssl_context())
    ) as oai:
        done = oai.chat.completions.create(
            model="qwen-plus",
            messages=[{"role": "user", "content": "hi"}],
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        )
    assert done.choices[0].finish_reason == "length"
    assert 100 < done.usage.completion_tokens <= MAX_REPLY_TOKENS


# ---- finding 7: stream's type, configure's atomicity, reply_tokens' bound ----------------------


@pytest.mark.parametrize("value", ["false", 1])
def test_a_stream_flag_that_is_not_a_boolean_is_a_400_naming_it(emu, value):
    r = _post(emu, *_chat(stream=value))
    assert r.status_code == 400, r.text[:300]
    assert r.headers["content-type"].startswith("application/json")  # not an event stream
    assert "stream must be true or false" in r.json()["error"]["message"]


def test_include_usage_that_is_not_a_boolean_is_a_400_naming_it(emu):
    r = _post(emu, *_chat(stream=True, stream_options={"include_usage": "yes"}))
    assert r.status_code == 400
    assert "stream_options.include_usage must be true or false" in r.json()["error"]["message"]


def test_configure_applies_nothing_when_any_change_is_invalid(emulator_factory):
    emu = emulator_factory(rtt_ms=0)
    with pytest.raises(ValueError, match="seed must be a whole number"):
        emu.configure(seed={"a": 1}, rtt_ms=123)
    assert emu.options.rtt_ms == 0 and emu.options.seed == 0
    emu.configure(seed=5, rtt_ms=1)  # and a valid change still applies
    assert (emu.options.rtt_ms, emu.options.seed) == (1, 5)


@pytest.mark.parametrize("name", ["connection_close", "tls_stall"])
def test_a_switch_option_must_be_a_boolean(name):
    with pytest.raises(ValueError, match=f"{name} must be True or False"):
        EmulatorOptions(**{name: "no"})


def test_reply_tokens_is_bounded_with_an_error_naming_the_limit(emulator_factory):
    with pytest.raises(ValueError, match=f"reply_tokens must be at most {MAX_REPLY_TOKENS}"):
        EmulatorOptions(reply_tokens=10**7)
    emu = emulator_factory(rtt_ms=0)
    with pytest.raises(ValueError, match=str(MAX_REPLY_TOKENS)):
        emu.configure(reply_tokens=10**7)
    assert emu.options.reply_tokens == EmulatorOptions().reply_tokens
    emu.configure(reply_tokens=MAX_REPLY_TOKENS)  # the limit itself is fine
