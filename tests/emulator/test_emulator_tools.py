"""Agent-style calls against the emulator with the real clients: tools, structured output, thinking.

Every test drives the emulator over loopback TLS with the official `dashscope` SDK (module API,
sync and streamed) or the `openai` SDK in compatible mode, and checks what those SDKs hand the
caller: tool calls whose arguments validate against the tool's schema, JSON replies that validate
against the response schema, reasoning that streams before the answer, and the service's refusals.
"""

from __future__ import annotations

import json
import re
from typing import Literal

import dashscope
import httpx
import jsonschema
import openai
import pydantic
import pytest
import requests
from dashscope import Generation

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Useful when you want to know the weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "A city, e.g. Hangzhou."},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["location"],
            "additionalProperties": False,
        },
    },
}
# The SDK's own example shape: no parameters at all.
CLOCK = {
    "type": "function",
    "function": {"name": "get_current_time", "description": "Useful when you want to know the time.", "parameters": {}},
}
BOOK = {
    "type": "function",
    "function": {
        "name": "book_table",
        "description": "Reserve a restaurant table.",
        "parameters": {
            "type": "object",
            "properties": {
                "restaurant": {"type": "string"},
                "guests": {"type": "integer", "minimum": 1},
                "when": {"type": "string", "format": "date-time"},
                "options": {
                    "type": "object",
                    "properties": {
                        "window": {"type": "boolean"},
                        "tags": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["window"],
                },
            },
            "required": ["restaurant", "guests", "when", "options"],
        },
    },
}
TOOLS = [WEATHER, CLOCK, BOOK]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] or {"type": "object"} for t in TOOLS}
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris and London?"}]
_SENTENCE_END = re.compile(r"[.!?][\"'\u201d)]*$")


@pytest.fixture
def sdk(emu):
    saved = (dashscope.base_http_api_url, dashscope.api_key)
    emu.apply_to_sdk()
    yield emu
    dashscope.base_http_api_url, dashscope.api_key = saved


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


def check_args(name: str, arguments: str) -> dict:
    args = json.loads(arguments)
    jsonschema.validate(args, SCHEMAS[name])
    return args


def native_message(rsp):
    assert rsp.status_code == 200, (rsp.code, rsp.message)
    return rsp.output.choices[0].message


# ---- tool calling: openai SDK ---------------------------------------------------------------


def test_openai_tool_call_has_valid_arguments(oai):
    rsp = oai.chat.completions.create(model="qwen-plus", messages=ASK_WEATHER, tools=TOOLS)
    choice = rsp.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_current_weather"
    args = check_args(call.function.name, call.function.arguments)
    assert args["location"] == "Paris"  # taken from the prompt
    again = oai.chat.completions.create(model="qwen-plus", messages=ASK_WEATHER, tools=TOOLS)
    assert again.choices[0].message.tool_calls == choice.message.tool_calls  # deterministic, ids too
    assert rsp.usage.completion_tokens > 0


def test_openai_parallel_tool_calls(oai):
    one = oai.chat.completions.create(model="qwen-plus", messages=ASK_WEATHER, tools=TOOLS, parallel_tool_calls=False)
    assert len(one.choices[0].message.tool_calls) == 1
    rsp = oai.chat.completions.create(model="qwen-plus", messages=ASK_WEATHER, tools=TOOLS, parallel_tool_calls=True)
    calls = rsp.choices[0].message.tool_calls
    assert [check_args(c.function.name, c.function.arguments)["location"] for c in calls] == ["Paris", "London"]
    assert len({c.id for c in calls}) == 2
    both = oai.chat.completions.create(
        model="qwen-plus",
        messages=[{"role": "user", "content": "What time is it, and the weather in Rome?"}],
        tools=TOOLS,
        parallel_tool_calls=True,
    )
    assert sorted(c.function.name for c in both.choices[0].message.tool_calls) == [
        "get_current_time",
        "get_current_weather",
    ]


@pytest.mark.parametrize(
    "tool_choice,prompt,expected",
    [
        ("auto", "Tell me a joke.", None),  # nothing matches: text
        ("none", ASK_WEATHER[0]["content"], None),
        ("required", "Tell me a joke.", "get_current_weather"),  # must call one: the first
        ({"type": "function", "function": {"name": "book_table"}}, "Weather in Paris?", "book_table"),
    ],
)
def test_openai_tool_choice_is_honoured(oai, tool_choice, prompt, expected):
    rsp = oai.chat.completions.create(
        model="qwen-plus", messages=[{"role": "user", "content": prompt}], tools=TOOLS, tool_choice=tool_choice
    )
    choice = rsp.choices[0]
    if expected is None:
        assert choice.finish_reason == "stop" and not choice.message.tool_calls and choice.message.content
    else:
        assert choice.finish_reason == "tool_calls"
        assert [c.function.name for c in choice.message.tool_calls] == [expected]
        check_args(expected, choice.message.tool_calls[0].function.arguments)


def test_openai_streamed_tool_calls_assemble_to_the_plain_ones(oai):
    plain = oai.chat.completions.create(model="qwen-plus", messages=ASK_WEATHER, tools=TOOLS, parallel_tool_calls=True)
    chunks = list(
        oai.chat.completions.create(
            model="qwen-plus", messages=ASK_WEATHER, tools=TOOLS, parallel_tool_calls=True, stream=True
        )
    )
    # OpenAI framing: id and name once per call, then argument fragments by index.
    first_parts = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or []) if tc.id]
    assert [tc.function.name for tc in first_parts] == ["get_current_weather"] * 2
    assert sum(len(c.choices[0].delta.tool_calls or []) for c in chunks) > 2
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    # The SDK's own accumulator puts them back together.
    with oai.chat.completions.stream(
        model="qwen-plus", messages=ASK_WEATHER, tools=TOOLS, parallel_tool_calls=True
    ) as stream:
        final = stream.get_final_completion()
    got = [(c.id, c.function.name, c.function.arguments) for c in final.choices[0].message.tool_calls]
    want = [(c.id, c.function.name, c.function.arguments) for c in plain.choices[0].message.tool_calls]
    assert got == want


def test_openai_tool_result_round_trip(oai):
    first = oai.chat.completions.create(model="qwen-plus", messages=ASK_WEATHER, tools=TOOLS)
    call = first.choices[0].message.tool_calls[0]
    history = [
        *ASK_WEATHER,
        # What ChatOpenAI and the openai docs send: the assistant turn with null content.
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21, "sky": "clear"}'},
    ]
    rsp = oai.chat.completions.create(model="qwen-plus", messages=history, tools=TOOLS)
    choice = rsp.choices[0]
    assert choice.finish_reason == "stop" and not choice.message.tool_calls
    text = choice.message.content
    assert "get_current_weather" in text and '"temperature": 21' in text  # it read the result
    assert "emulator" in text and _SENTENCE_END.search(text)


def test_openai_bad_tool_choice_is_400(oai):
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(
            model="qwen-plus",
            messages=ASK_WEATHER,
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "launch_rocket"}},
        )
    assert info.value.code == "invalid_parameter_error" and "launch_rocket" in info.value.message
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model="qwen-plus", messages=ASK_WEATHER, tool_choice="required")


# ---- tool calling: dashscope SDK ------------------------------------------------------------


def test_dashscope_tool_call_and_result(sdk, session):
    rsp = Generation.call(model="qwen3.7-plus", messages=ASK_WEATHER, tools=TOOLS, session=session)
    # No result_format given: tools are answered in message form, as the service does.
    assert rsp.output.choices[0].finish_reason == "tool_calls"
    msg = native_message(rsp)
    assert msg.content == ""
    [call] = msg.tool_calls
    check_args(call["function"]["name"], call["function"]["arguments"])
    history = [
        *ASK_WEATHER,
        {"role": "assistant", "tool_calls": msg.tool_calls},  # native: no content key at all
        {"role": "tool", "name": "get_current_weather", "content": "Sunny, 24 degrees."},
    ]
    after = Generation.call(
        model="qwen3.7-plus", messages=history, tools=TOOLS, result_format="message", session=session
    )
    text = native_message(after).content
    assert "Sunny, 24 degrees." in text and after.output.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("incremental_output", [True, False])
def test_dashscope_streamed_tool_calls_merge_to_the_plain_ones(sdk, session, incremental_output):
    kwargs = {"model": "qwen-plus", "messages": ASK_WEATHER, "tools": TOOLS, "result_format": "message"}
    plain = native_message(Generation.call(parallel_tool_calls=True, session=session, **kwargs))
    chunks = list(
        Generation.call(
            stream=True, incremental_output=incremental_output, parallel_tool_calls=True, session=session, **kwargs
        )
    )
    assert all(c.status_code == 200 for c in chunks)
    assert [c.output.choices[0].finish_reason for c in chunks][-1] == "tool_calls"
    if incremental_output:
        # Incremental chunks carry fragments: merge them by index, as the SDK's example says.
        merged: dict = {}
        for c in chunks:
            for tc in c.output.choices[0].message.get("tool_calls") or []:
                acc = merged.setdefault(tc["index"], {"id": "", "name": "", "arguments": ""})
                acc["id"] = tc.get("id") or acc["id"]
                acc["name"] += tc["function"].get("name", "")
                acc["arguments"] += tc["function"].get("arguments", "")
        got = [merged[k] for k in sorted(merged)]
    else:
        # Asked for full output, the SDK asks for increments and merges them itself: the last chunk
        # carries the whole calls.
        last = chunks[-1].output.choices[0].message.tool_calls
        got = [{"id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in last]
    want = [
        {"id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]}
        for c in plain.tool_calls
    ]
    assert got == want and len(got) == 2


def test_native_raw_stream_frames_tool_calls_by_index(emu, session):
    # What the SDK merges: the first fragment names the call, later ones add arguments by index.
    body = {
        "model": "qwen-plus",
        "input": {"messages": ASK_WEATHER},
        "parameters": {"result_format": "message", "incremental_output": True, "tools": [WEATHER]},
    }
    headers = {"Authorization": f"Bearer {emu.api_key}", "X-DashScope-SSE": "enable"}
    r = session.post(emu.base_url + "/services/aigc/text-generation/generation", json=body, headers=headers)
    events = [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:")]
    calls = [e["output"]["choices"][0]["message"]["tool_calls"][0] for e in events]
    assert calls[0]["function"]["name"] == "get_current_weather" and calls[0]["id"].startswith("call_")
    assert all("name" not in c["function"] and c["index"] == 0 for c in calls[1:])
    check_args("get_current_weather", "".join(c["function"]["arguments"] for c in calls))
    assert [e["output"]["choices"][0]["finish_reason"] for e in events] == ["null"] * (len(events) - 1) + ["tool_calls"]


def test_text_format_with_tools_is_refused(sdk, session):
    rsp = Generation.call(model="qwen-plus", messages=ASK_WEATHER, tools=TOOLS, result_format="text", session=session)
    assert rsp.status_code == 400 and rsp.code == "InvalidParameter" and "result_format" in rsp.message


# ---- structured output ----------------------------------------------------------------------


class Address(pydantic.BaseModel):
    city: str
    postcode: str | None = None


class Person(pydantic.BaseModel):
    name: str
    age: int = pydantic.Field(ge=18, le=99)
    role: Literal["admin", "viewer"]
    tags: list[str] = pydantic.Field(min_length=2)
    address: Address
    active: bool


def test_openai_json_object(oai):
    messages = [{"role": "user", "content": "Describe HTTP keep-alive as JSON."}]
    rsp = oai.chat.completions.create(model="qwen-plus", messages=messages, response_format={"type": "json_object"})
    value = json.loads(rsp.choices[0].message.content)
    assert isinstance(value, dict) and "emulator" in json.dumps(value)
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(
            model="qwen-plus", messages=[{"role": "user", "content": "hi"}], response_format={"type": "json_object"}
        )
    assert "json" in info.value.message


def test_openai_json_schema_parses_into_the_model(oai):
    # The SDK's own structured-output path: it sends the pydantic schema and validates the reply.
    messages = [{"role": "user", "content": "Invent a user called 'Ada Lovelace'."}]
    rsp = oai.chat.completions.parse(model="qwen-plus", messages=messages, response_format=Person)
    person = rsp.choices[0].message.parsed
    assert isinstance(person, Person) and person.name == "Ada Lovelace"
    chunks = list(
        oai.chat.completions.create(
            model="qwen-plus",
            messages=messages,
            stream=True,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "Person", "schema": Person.model_json_schema()},
            },
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert Person.model_validate_json(text) == person


def test_dashscope_json_schema(sdk, session):
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "score": {"type": "number", "exclusiveMinimum": 0.5}},
        "required": ["answer", "score"],
    }
    rsp = Generation.call(
        model="qwen-plus",
        messages=[{"role": "user", "content": "Rate this answer."}],
        result_format="message",
        response_format={"type": "json_schema", "json_schema": {"name": "rating", "schema": schema}},
        session=session,
    )
    jsonschema.validate(json.loads(native_message(rsp).content), schema)


# ---- thinking -------------------------------------------------------------------------------


def test_dashscope_thinking_streams_reasoning_before_the_answer(sdk, session):
    chunks = list(
        Generation.call(
            model="qwen3.7-plus",
            messages=[{"role": "user", "content": "Is 9.11 larger than 9.9?"}],
            result_format="message",
            enable_thinking=True,
            stream=True,
            incremental_output=True,
            session=session,
        )
    )
    kinds = ["r" if c.output.choices[0].message.get("reasoning_content") else "c" for c in chunks]
    assert kinds[0] == "r" and "c" in kinds and "".join(kinds) == "r" * kinds.count("r") + "c" * kinds.count("c")
    reasoning = "".join(c.output.choices[0].message.get("reasoning_content") or "" for c in chunks)
    answer = "".join(c.output.choices[0].message.content for c in chunks)
    assert reasoning.startswith("Emulated reasoning") and "9.11" in reasoning
    plain = native_message(
        Generation.call(
            model="qwen3.7-plus",
            messages=[{"role": "user", "content": "Is 9.11 larger than 9.9?"}],
            result_format="message",
            enable_thinking=True,
            session=session,
        )
    )
    assert (plain.reasoning_content, plain.content) == (reasoning, answer)
    usage = chunks[-1].usage
    assert usage["output_tokens_details"]["reasoning_tokens"] == kinds.count("r")


def test_thinking_budget_caps_the_reasoning(sdk, session):
    kwargs = {"model": "qwen-plus", "prompt": "Why reuse connections?", "enable_thinking": True, "session": session}
    long = Generation.call(**kwargs).usage["output_tokens_details"]["reasoning_tokens"]
    short = Generation.call(thinking_budget=5, **kwargs).usage["output_tokens_details"]["reasoning_tokens"]
    assert short == 5 < long


def test_openai_thinking_streams_reasoning_content(oai):
    chunks = list(
        oai.chat.completions.create(
            model="qwen-plus",
            messages=[{"role": "user", "content": "Why reuse connections?"}],
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"enable_thinking": True, "thinking_budget": 12},
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = [d.model_extra.get("reasoning_content") for d in deltas]
    content = [d.content for d in deltas]
    first_answer = next(i for i, c in enumerate(content) if c)
    assert all(r for r in reasoning[1:first_answer]) and not any(reasoning[first_answer:])
    assert content[0] is None  # the service opens a thinking stream with null content
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens == 12


@pytest.mark.parametrize(
    "model,kwargs,needle",
    [
        ("qwen-max", {"enable_thinking": True}, "does not support enable_thinking"),
        ("qwen3-32b", {}, "enable_thinking must be set to false for non-streaming calls"),
        ("qwq-plus", {}, "only support stream mode"),
        ("qwq-plus", {"enable_thinking": False, "stream": True}, "restricted to True"),
    ],
)
def test_thinking_refusals_in_both_protocols(sdk, session, oai, model, kwargs, needle):
    stream = kwargs.pop("stream", False)
    rsp = Generation.call(model=model, prompt="hi", session=session, stream=stream, **kwargs)
    if stream:
        rsp = next(iter(rsp))
    assert (rsp.status_code, rsp.code) == (400, "InvalidParameter") and needle in rsp.message
    with pytest.raises(openai.BadRequestError) as info:
        result = oai.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], stream=stream, extra_body=kwargs
        )
        list(result) if stream else None
    assert info.value.code == "invalid_parameter_error" and needle in info.value.message


def test_open_source_qwen3_answers_with_thinking_off(sdk, session):
    rsp = Generation.call(model="qwen3-32b", prompt="hi", enable_thinking=False, session=session)
    assert rsp.status_code == 200 and "reasoning_content" not in native_message(rsp)


# ---- max_tokens, stop, n, seed --------------------------------------------------------------


def test_openai_length_stop_n_and_seed(emu, oai):
    emu.configure(reply_tokens=40)
    messages = [{"role": "user", "content": "How does connection reuse help?"}]
    cut = oai.chat.completions.create(model="qwen-plus", messages=messages, max_tokens=19)
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 19
    assert _SENTENCE_END.search(cut.choices[0].message.content)

    full = oai.chat.completions.create(model="qwen-plus", messages=messages).choices[0].message.content
    stopped = oai.chat.completions.create(model="qwen-plus", messages=messages, stop=["emulator"])
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == full[: full.index("emulator")].rstrip()

    three = oai.chat.completions.create(model="qwen-plus", messages=messages, n=3)
    assert [c.index for c in three.choices] == [0, 1, 2]
    assert len({c.message.content for c in three.choices}) == 3
    assert three.usage.completion_tokens == sum(len(c.message.content.split()) for c in three.choices)
    streamed = list(oai.chat.completions.create(model="qwen-plus", messages=messages, n=3, stream=True))
    for choice in three.choices:
        text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices[0].index == choice.index)
        assert text == choice.message.content

    seeded = [
        oai.chat.completions.create(model="qwen-plus", messages=messages, seed=s).choices[0].message.content
        for s in (7, 7, 8)
    ]
    assert seeded[0] == seeded[1] != seeded[2]

    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model="qwen-plus", messages=messages, n=9)


def test_dashscope_stop_and_n(sdk, session):
    full = native_message(
        Generation.call(model="qwen-plus", messages=ASK_WEATHER, result_format="message", session=session)
    )
    cut = Generation.call(
        model="qwen-plus", messages=ASK_WEATHER, result_format="message", stop="emulator", session=session
    )
    assert native_message(cut).content == full.content[: full.content.index("emulator")].rstrip()

    two = Generation.call(model="qwen-plus", messages=ASK_WEATHER, result_format="message", n=2, session=session)
    texts = [c.message.content for c in two.output.choices]
    assert [c["index"] for c in two.output.choices] == [0, 1] and texts[0] == full.content != texts[1]
    # Streamed with n=2, the SDK merges the per-choice packets back into both choices.
    chunks = list(
        Generation.call(
            model="qwen-plus",
            messages=ASK_WEATHER,
            result_format="message",
            n=2,
            stream=True,
            incremental_output=False,
            session=session,
        )
    )
    assert [c["message"]["content"] for c in chunks[-1].output.choices] == texts


# ---- catalogue, errors, request ids ---------------------------------------------------------


def test_sdk_example_model_names_are_served(sdk, session):
    for model in ("qwen3.7-plus", "qwen3.8-max", "qwen3.8-flash", "qwen3.5-plus", "qwen-plus"):
        assert Generation.call(model=model, prompt="hi", session=session).status_code == 200


def test_models_list_and_retrieve(oai):
    ids = [m.id for m in oai.models.list()]
    assert "qwen3.7-plus" in ids and ids == sorted(ids)
    assert oai.models.retrieve("qwen3.7-plus").id == "qwen3.7-plus"
    with pytest.raises(openai.NotFoundError) as info:
        oai.models.retrieve("qwen-nope")
    assert info.value.code == "model_not_found"


def test_compatible_404_is_openai_shaped_and_ids_match(emu, session, oai):
    r = session.post(emu.compatible_base_url + "/completions-typo", json={}, headers={"Authorization": "Bearer x"})
    assert r.status_code == 404
    err = r.json()
    assert set(err["error"]) == {"message", "type", "param", "code"} and err["error"]["type"] == "invalid_request_error"
    assert r.headers["x-request-id"] == err["request_id"]

    rsp = oai.chat.completions.with_raw_response.create(model="qwen-plus", messages=ASK_WEATHER)
    assert rsp.headers["x-request-id"] and rsp.request_id == rsp.headers["x-request-id"]


def test_native_request_id_header_matches_the_body(emu, session):
    for stream in (False, True):
        headers = {"Authorization": f"Bearer {emu.api_key}"}
        if stream:
            headers["X-DashScope-SSE"] = "enable"
        body = {"model": "qwen-plus", "input": {"prompt": "hi"}}
        r = session.post(emu.base_url + "/services/aigc/text-generation/generation", json=body, headers=headers)
        assert r.headers["x-request-id"] in r.text


def test_replies_answer_the_prompts_shape(emu, oai):
    emu.configure(reply_tokens=60)

    def ask(prompt, **kw):
        rsp = oai.chat.completions.create(model="qwen-plus", messages=[{"role": "user", "content": prompt}], **kw)
        return rsp.choices[0].message.content

    assert ask("Hello!").startswith("Hello!")
    question = ask("Why does TLS 1.3 save a round trip?", max_tokens=30)
    assert len(question.split()) == 30
    assert "TLS 1.3 save a round trip" in question and "emulator" in question
    listing = ask("List four ways to reuse connections.")
    assert [line[:2] for line in listing.splitlines()[1:5]] == ["1.", "2.", "3.", "4."]
    assert all(_SENTENCE_END.search(t) for t in (question, listing))


def test_requests_with_a_key_never_echo_it(emu):
    # The new routes are as careful as the old: a refused key is not repeated back.
    r = requests.get(
        emu.compatible_base_url + "/models/qwen-plus",
        headers={"Authorization": "Bearer sk-secret-123"},
        verify=emu.ca_path,
        timeout=10,
    )
    assert r.status_code == 401 and "sk-secret-123" not in r.text


def test_async_sdk_streams_thinking_and_tool_calls(sdk):
    import asyncio

    import aiohttp
    from dashscope import AioGeneration

    async def main():
        connector = aiohttp.TCPConnector(ssl=sdk.ssl_context())
        async with aiohttp.ClientSession(connector=connector) as s:
            stream = await AioGeneration.call(
                model="qwen-plus",
                messages=ASK_WEATHER,
                tools=TOOLS,
                enable_thinking=True,
                stream=True,
                incremental_output=False,  # the SDK asks for increments and merges them
                session=s,
            )
            return [c async for c in stream]

    chunks = asyncio.run(main())
    last = chunks[-1].output.choices[0]
    assert last.finish_reason == "tool_calls"
    assert last.message.reasoning_content.startswith("Emulated reasoning")
    [call] = last.message.tool_calls
    check_args(call["function"]["name"], call["function"]["arguments"])
