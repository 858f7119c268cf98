"""The emulator's script and journal through the official SDKs: scripted turns are taken in order by
whichever protocol asks, the usual replies come back once the script is empty, and the journal
records what each request asked without the key.

    python -m pytest tests/emulator/test_emulator_script.py -q
"""

from __future__ import annotations

import json
import math
import threading

import dashscope
import httpx
import openai
import pytest
from dashscope import Generation

from dashnb.emulator._script import Journal, Script

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture
def native(emu, monkeypatch):
    monkeypatch.setattr(dashscope, "base_http_api_url", emu.base_url)
    monkeypatch.setattr(dashscope, "api_key", emu.api_key)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emu.ca_path)
    return emu


@pytest.fixture
def oai(emu):
    client = openai.OpenAI(
        api_key=emu.api_key,
        base_url=emu.compatible_base_url,
        http_client=httpx.Client(verify=emu.ssl_context()),
        max_retries=0,
    )
    yield client
    client.close()


def ask_native(text: str, **kw):
    return Generation.call(
        model="qwen-plus", messages=[{"role": "user", "content": text}], result_format="message", **kw
    )


def test_turns_are_taken_in_order_by_either_protocol_then_the_usual_replies(native, oai):
    emu = native
    usual = oai.chat.completions.create(model="qwen-plus", messages=[{"role": "user", "content": "hi"}])
    emu.script.reply("first, scripted").tool_call("get_weather", {"city": "Paris"}).reply("third")
    assert len(emu.script) == 3

    got = ask_native("hi")
    assert got.status_code == 200
    assert got.output.choices[0].message.content == "first, scripted"

    called = oai.chat.completions.create(
        model="qwen-plus", messages=[{"role": "user", "content": "hi"}], tools=[WEATHER]
    )
    assert called.choices[0].finish_reason == "tool_calls"
    [call] = called.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert call.id.startswith("call_")

    streamed = Generation.call(
        model="qwen-plus", prompt="hi", stream=True, incremental_output=True, result_format="text"
    )
    assert "".join(chunk.output.text for chunk in streamed) == "third"

    assert len(emu.script) == 0
    again = oai.chat.completions.create(model="qwen-plus", messages=[{"role": "user", "content": "hi"}])
    assert again.choices[0].message.content == usual.choices[0].message.content  # the usual, deterministic reply


def test_scripted_thinking_streams_as_reasoning(oai, emu):
    emu.script.thinking("Paris is in France.").reply("Sunny.")
    stream = oai.chat.completions.create(
        model="qwen-plus",
        messages=[{"role": "user", "content": "weather?"}],
        stream=True,
        extra_body={"enable_thinking": True},
    )
    reasoning, content = "", ""
    for chunk in stream:
        if chunk.choices:
            delta = chunk.choices[0].delta
            reasoning += getattr(delta, "reasoning_content", None) or ""
            content += delta.content or ""
    assert (reasoning, content) == ("Paris is in France.", "Sunny.")


def test_scripted_errors_come_from_the_catalogue_in_both_protocols(native, oai):
    emu = native
    emu.script.error("rate_quota").error("Throttling.RateQuota").error("InternalError", "try later")
    refused = ask_native("hi")
    assert (refused.status_code, refused.code) == (429, "Throttling.RateQuota")
    assert refused.message == "Requests rate limit exceeded, please try again later."
    with pytest.raises(openai.RateLimitError) as info:
        oai.chat.completions.create(model="qwen-plus", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 429
    with pytest.raises(openai.InternalServerError, match="try later"):
        oai.chat.completions.create(model="qwen-plus", messages=[{"role": "user", "content": "hi"}])
    # A name outside the catalogue is refused when it is scripted, naming the choices.
    with pytest.raises(ValueError, match="Throttling.RateQuota"):
        emu.script.error("TooManyCats")


def test_a_stall_holds_the_answer_and_the_next_request_is_answered(oai, emu):
    emu.script.stall(math.inf)
    with pytest.raises(openai.APITimeoutError):
        oai.chat.completions.create(model="qwen-plus", messages=[{"role": "user", "content": "hi"}], timeout=1.0)
    fine = oai.chat.completions.create(model="qwen-plus", messages=[{"role": "user", "content": "hi"}])
    assert fine.choices[0].message.content


def test_a_dropped_stream_breaks_off_and_the_next_is_whole(oai, emu):
    emu.script.drop()
    stream = oai.chat.completions.create(model="qwen-plus", messages=[{"role": "user", "content": "hi"}], stream=True)
    with pytest.raises((httpx.RemoteProtocolError, openai.APIError)):
        for _ in stream:
            pass
    whole = oai.chat.completions.create(model="qwen-plus", messages=[{"role": "user", "content": "hi"}])
    assert whole.choices[0].finish_reason == "stop"


def test_a_refused_request_takes_no_turn(oai, emu):
    emu.script.reply("kept")
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model="qwen-plus", messages=[{"role": "user", "content": "hi"}], n=9)
    got = oai.chat.completions.create(model="qwen-plus", messages=[{"role": "user", "content": "hi"}])
    assert got.choices[0].message.content == "kept"


def test_the_journal_records_what_was_asked_without_the_key(native, oai):
    emu = native
    ask_native("native question", temperature=0.5)
    oai.chat.completions.create(
        model="qwen-plus-latest",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "compatible question"}],
        tools=[WEATHER],
        seed=7,
    )
    first, second = emu.journal.entries
    assert (first.protocol, first.model, first.stream) == ("native", "qwen-plus", False)
    assert first.messages == ({"role": "user", "content": "native question"},)
    assert first.params["temperature"] == 0.5 and first.tools == ()
    assert (second.protocol, second.model) == ("compatible", "qwen-plus-latest")
    assert [m["role"] for m in second.messages] == ["system", "user"]
    assert second.tools[0]["function"]["name"] == "get_weather"
    assert second.params["seed"] == 7 and "messages" not in second.params
    for entry in (first, second):
        assert "authorization" not in entry.headers and "user-agent" in entry.headers
        assert emu.api_key not in repr(entry)
    assert emu.journal.last is second and emu.journal[-1] is second
    emu.journal.clear()
    assert len(emu.journal) == 0 and emu.journal.last is None


def test_the_journal_is_bounded_and_the_script_is_safe_across_threads():
    journal = Journal(maxlen=3)
    for i in range(5):
        journal.record("native", {"model": f"m{i}", "input": {"prompt": "x"}}, {}, stream=False, key="k")
    assert [e.model for e in journal] == ["m2", "m3", "m4"]
    by_size = Journal(max_bytes=1000)
    for i in range(5):
        by_size.record("native", {"model": f"m{i}"}, {}, stream=False, key="k", size=400)
    assert [e.model for e in by_size] == ["m3", "m4"]

    script = Script()
    threads = [threading.Thread(target=lambda: [script.reply("x") for _ in range(200)]) for _ in range(4)]
    for t in threads:
        t.start()
    taken = 0
    for t in threads:
        t.join()
    while script.take() is not None:
        taken += 1
    assert taken == 800


@pytest.mark.parametrize(
    ("verb", "args", "match"),
    [
        ("tool_call", ("get_weather", {"when": object()}), "JSON-serializable"),
        ("tool_call", ("get_weather", ["Paris"]), "must be a dict"),
        ("stall", (-1,), "seconds >= 0"),
        ("reply", (3,), "must be a string"),
    ],
)
def test_bad_turns_are_refused_when_scripted(verb, args, match):
    with pytest.raises(ValueError, match=match):
        getattr(Script(), verb)(*args)
