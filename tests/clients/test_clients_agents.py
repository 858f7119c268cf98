"""Agent-style calls through real clients: tool calling and structured output, with LangChain's
ChatOpenAI and ChatTongyi and the openai SDK, against the emulator (``dashscope_emulator`` fixture).

    python -m pytest tests/clients/test_clients_agents.py -q
"""

from __future__ import annotations

import functools
import json
import operator

import pytest
from pydantic import BaseModel, Field

COMMUNITY_SUNSET = pytest.mark.filterwarnings("ignore:`langchain-community` is being sunset:DeprecationWarning")
QUESTION = "What is the weather in Paris, in Celsius?"


def get_weather(city: str, unit: str = "celsius") -> str:
    """The current weather in a city."""
    return f"18 degrees {unit} and sunny in {city}"


class Weather(BaseModel):
    """A weather report."""

    city: str = Field(description="the city")
    temperature: int = Field(description="degrees")
    sunny: bool


def _chat_openai():
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model="qwen-plus", max_retries=0)


def _chat_tongyi(**kw):
    from langchain_community.chat_models import ChatTongyi

    return ChatTongyi(model="qwen-plus", **kw)


MODELS = [
    pytest.param(_chat_openai, id="ChatOpenAI"),
    pytest.param(_chat_tongyi, id="ChatTongyi", marks=COMMUNITY_SUNSET),
]


@pytest.mark.parametrize("make", MODELS)
def test_langchain_tool_call_round_trip(dashscope_emulator, make):
    from langchain_core.messages import HumanMessage, ToolMessage

    llm = make().bind_tools([get_weather])
    asked = llm.invoke([HumanMessage(QUESTION)])
    assert len(asked.tool_calls) >= 1
    call = asked.tool_calls[0]
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str) and call["id"]
    # The tool's result goes back; the model answers in words and calls nothing more.
    result = ToolMessage(get_weather(**call["args"]), tool_call_id=call["id"])
    final = llm.invoke([HumanMessage(QUESTION), asked, result])
    assert final.content and not final.tool_calls


def test_langchain_chat_openai_streams_tool_calls(dashscope_emulator):
    llm = _chat_openai().bind_tools([get_weather], tool_choice="get_weather")
    chunks = list(llm.stream(QUESTION))
    assert len(chunks) > 1
    merged = functools.reduce(operator.add, chunks)
    assert [c["name"] for c in merged.tool_calls] == ["get_weather"]
    assert isinstance(merged.tool_calls[0]["args"]["city"], str)


@COMMUNITY_SUNSET
def test_langchain_chat_tongyi_streams_tool_calls(dashscope_emulator):
    llm = _chat_tongyi(streaming=True).bind_tools([get_weather])
    merged = functools.reduce(operator.add, list(llm.stream(QUESTION)))
    assert merged.tool_calls and merged.tool_calls[0]["name"] == "get_weather"


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_langchain_chat_openai_structured_output(dashscope_emulator, method):
    got = _chat_openai().with_structured_output(Weather, method=method).invoke(QUESTION)
    assert isinstance(got, Weather)


def test_langchain_chat_openai_json_mode(dashscope_emulator):
    # json_object promises valid JSON, not any keys (the prompt asks for those; the emulator cannot read it).
    llm = _chat_openai().bind(response_format={"type": "json_object"})
    reply = llm.invoke(QUESTION + " Answer in JSON.")
    assert isinstance(json.loads(reply.content), dict)


@COMMUNITY_SUNSET
def test_langchain_chat_tongyi_structured_output(dashscope_emulator):
    got = _chat_tongyi().with_structured_output(Weather).invoke(QUESTION)
    assert isinstance(got, Weather)


def test_openai_sdk_parse_structured_output(dashscope_emulator):
    import openai

    with openai.OpenAI(max_retries=0) as client:
        rsp = client.chat.completions.parse(
            model="qwen-plus", messages=[{"role": "user", "content": QUESTION}], response_format=Weather
        )
    assert isinstance(rsp.choices[0].message.parsed, Weather)


def to_fahrenheit(celsius: float) -> str:
    """Convert a temperature in Celsius to Fahrenheit."""
    return f"{celsius * 9 / 5 + 32:g} degrees fahrenheit"


def _run_tool_loop(llm, question: str, tools: dict, limit: int = 5):
    """A plain agent loop: call the model, run the tools it asks for, give back their results,
    until it answers in words."""
    from langchain_core.messages import HumanMessage, ToolMessage

    messages: list = [HumanMessage(question)]
    for _ in range(limit):
        ai = llm.invoke(messages)
        messages.append(ai)
        if not ai.tool_calls:
            return ai, messages
        for call in ai.tool_calls:
            messages.append(ToolMessage(tools[call["name"]](**call["args"]), tool_call_id=call["id"]))
    raise AssertionError(f"no answer after {limit} model calls")


@pytest.mark.parametrize("make", MODELS)
def test_langchain_agent_chains_two_tools_from_the_script(dashscope_emulator, make):
    # The script says what the model does at each step; the agent's own code runs the tools.
    script = dashscope_emulator.script
    script.tool_call("get_weather", {"city": "Paris"})
    script.tool_call("to_fahrenheit", {"celsius": 18})  # B, with what A returned
    script.reply("It is 64.4 degrees Fahrenheit and sunny in Paris.")
    tools = {"get_weather": get_weather, "to_fahrenheit": to_fahrenheit}
    llm = make().bind_tools([get_weather, to_fahrenheit])

    answer, _ = _run_tool_loop(llm, "What is the weather in Paris, in Fahrenheit?", tools)

    assert answer.content == "It is 64.4 degrees Fahrenheit and sunny in Paris."
    assert len(dashscope_emulator.script) == 0
    # What the agent sent at each step: the tools each time, then A's result, then B's too.
    first, second, third = dashscope_emulator.journal.entries
    assert all({t["function"]["name"] for t in e.tools} == set(tools) for e in (first, second, third))
    assert [m["role"] for m in first.messages] == ["user"]
    assert second.messages[-1]["role"] == "tool" and "18 degrees celsius" in second.messages[-1]["content"]
    assert third.messages[-1]["role"] == "tool" and third.messages[-1]["content"] == "64.4 degrees fahrenheit"
    assert [m["role"] for m in third.messages] == ["user", "assistant", "tool", "assistant", "tool"]
    assert all("authorization" not in e.headers for e in (first, second, third))


def test_auto_calls_the_next_tool_the_prompt_asks_for_after_a_result(dashscope_emulator):
    # Without a script: a prompt naming two tools gets one, then the other, then an answer.
    llm = _chat_openai().bind_tools([get_weather, to_fahrenheit])
    tools = {"get_weather": get_weather, "to_fahrenheit": to_fahrenheit}
    answer, messages = _run_tool_loop(llm, "Get the weather in Paris, then convert the Celsius to Fahrenheit.", tools)
    called = [c["name"] for m in messages for c in getattr(m, "tool_calls", None) or []]
    assert sorted(called) == ["get_weather", "to_fahrenheit"]
    assert answer.content and not answer.tool_calls
