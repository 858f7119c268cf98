"""What the service refuses and what it serves, through the official SDKs: thinking mode's refusals
with the service's own codes and words in both protocols (``strict=False`` keeps the old leniency),
and model names: ``-latest`` aliases and dated snapshots answer as their family, an unknown name is
a 404 ``model_not_found`` on compatible mode and a 400 on the native protocol.

    python -m pytest tests/emulator/test_emulator_service_rules.py -q
"""

from __future__ import annotations

import dashscope
import httpx
import openai
import pytest
from dashscope import Generation

from dashnb.emulator._errors import REFUSALS

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
FORCED = {"type": "function", "function": {"name": "get_weather"}}
JSON_MODE = {"type": "json_object"}
MESSAGES = [{"role": "user", "content": "The weather in Paris, as JSON?"}]


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


# Each refusal: the name in the catalogue, and the parameters that meet it (streamed, as thinking needs).
CASES = [
    pytest.param("thinking_tool_choice", {"tools": [WEATHER], "tool_choice": "required"}, id="required"),
    pytest.param("thinking_tool_choice", {"tools": [WEATHER], "tool_choice": FORCED}, id="named-function"),
    pytest.param("thinking_json_mode", {"response_format": JSON_MODE}, id="json-mode"),
]


@pytest.mark.parametrize(("name", "params"), CASES)
def test_thinking_refusals_on_the_native_protocol(native, name, params):
    refusal = REFUSALS[name]
    chunks = list(
        Generation.call(
            model="qwen-plus",
            messages=MESSAGES,
            result_format="message",
            enable_thinking=True,
            stream=True,
            incremental_output=True,
            **params,
        )
    )
    assert [(c.status_code, c.code, c.message) for c in chunks] == [(400, "InvalidParameter", refusal.message)]


@pytest.mark.parametrize(("name", "params"), CASES)
def test_thinking_refusals_in_compatible_mode(oai, name, params):
    refusal = REFUSALS[name]
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(
            model="qwen-plus", messages=MESSAGES, stream=True, extra_body={"enable_thinking": True}, **params
        )
    assert info.value.code == "invalid_parameter_error"
    assert info.value.body["message"] == f"<400> InternalError.Algo.InvalidParameter: {refusal.message}"


def test_a_thinking_stream_without_incremental_output_is_refused(native):
    refusal = REFUSALS["thinking_not_incremental"]
    # The SDK sends incremental_output only when the caller gives it: left out, the service's default (false) holds.
    chunks = list(
        Generation.call(
            model="qwen-plus", messages=MESSAGES, result_format="message", enable_thinking=True, stream=True
        )
    )
    assert [(c.status_code, c.code, c.message) for c in chunks] == [(400, "InvalidParameter", refusal.message)]
    assert refusal.message == "This model only supports incremental_output set to True."
    fine = list(
        Generation.call(
            model="qwen-plus",
            messages=MESSAGES,
            result_format="message",
            enable_thinking=True,
            stream=True,
            incremental_output=True,
        )
    )
    assert fine[-1].status_code == 200 and any(c.output.choices[0].message.reasoning_content for c in fine)


def test_strict_false_keeps_the_old_leniency(native, oai):
    native.configure(strict=False)
    forced = oai.chat.completions.create(
        model="qwen-plus",
        messages=MESSAGES,
        tools=[WEATHER],
        tool_choice="required",
        extra_body={"enable_thinking": True},
    )
    assert forced.choices[0].message.tool_calls
    chunks = list(
        Generation.call(
            model="qwen-plus", messages=MESSAGES, result_format="message", enable_thinking=True, stream=True
        )
    )
    assert chunks[-1].status_code == 200
    with pytest.raises(ValueError, match="strict must be True or False"):
        native.configure(strict="no")


def test_the_refusals_name_their_source():
    for refusal in REFUSALS.values():
        assert refusal.source and (refusal.status, refusal.code) == (400, "InvalidParameter")


@pytest.mark.parametrize(
    "model", ["qwen-plus-latest", "qwen-plus-2025-07-28", "qwen-plus-0428", "qwen3-max-2025-09-23"]
)
def test_aliases_and_snapshots_are_served_in_both_protocols(native, oai, model):
    got = Generation.call(model=model, prompt="hi")
    assert got.status_code == 200, got.message
    reply = oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    assert reply.model == model and reply.choices[0].message.content
    assert oai.models.retrieve(model).id == model


def test_a_snapshot_behaves_as_its_family(native, oai):
    # qwq-plus thinks only and streams only; its -latest alias and snapshots do the same.
    refused = Generation.call(model="qwq-plus-latest", messages=MESSAGES, result_format="message")
    assert (refused.status_code, refused.code) == (400, "InvalidParameter")
    assert "stream" in refused.message
    # qwen-plus thinks when asked; qwen-max cannot, nor can its snapshot.
    thought = oai.chat.completions.create(
        model="qwen-plus-2025-07-28", messages=MESSAGES, stream=True, extra_body={"enable_thinking": True}
    )
    assert any(getattr(c.choices[0].delta, "reasoning_content", None) for c in thought if c.choices)
    with pytest.raises(openai.BadRequestError, match="does not support enable_thinking"):
        oai.chat.completions.create(
            model="qwen-max-2025-01-25", messages=MESSAGES, stream=True, extra_body={"enable_thinking": True}
        )


@pytest.mark.parametrize("model", ["qwen-plus-2025-13-01", "qwen-plus-latest-latest", "qwen-pluss-latest", "nope"])
def test_unknown_models_are_refused_as_the_service_does(native, oai, model):
    native_reply = Generation.call(model=model, prompt="hi")
    assert (native_reply.status_code, native_reply.code) == (400, "InvalidParameter")
    with pytest.raises(openai.NotFoundError) as info:
        oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 404 and info.value.code == "model_not_found"
    assert f"The model `{model}` does not exist or you do not have access to it." in info.value.body["message"]
