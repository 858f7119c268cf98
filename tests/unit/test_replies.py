"""The emulator's I/O-free core: request validation, replies, and framing as the SDKs parse it.

Frames are checked byte for byte against the documented wire format, and also fed through the
official parsers (dashscope's `_handle_stream`, openai's `SSEDecoder`) so a framing slip that the
SDKs would trip on shows up here, without a server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import re

import pytest
import requests
from dashscope.common.utils import _handle_aio_stream, _handle_http_failed_response, _handle_stream
from openai._streaming import SSEDecoder

from dashnb.emulator import _replies as R

RID = "0f8b2c1e-1111-4222-8333-944445555666"
MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why reuse connections?"}]


def native(**params):
    body = {"model": "qwen-plus", "input": {"messages": MSGS}}
    if params:
        body["parameters"] = params
    return R.parse_native(body)


def sdk_response(body: bytes, *, status=200, content_type="text/event-stream;charset=UTF-8") -> requests.Response:
    """A requests.Response over these bytes: the SDK's parsers read nothing else from it."""
    r = requests.Response()
    r.status_code = status
    r.headers["Content-Type"] = content_type
    r.raw = io.BytesIO(body)
    return r


def sdk_events(body: bytes):
    return [
        (is_error, event.id, event.eventType, event.data) for is_error, _, event in _handle_stream(sdk_response(body))
    ]


class _Lines:
    """What `_handle_aio_stream` reads: `response.content`, an async iterator of lines."""

    def __init__(self, body: bytes):
        self.content = self._iter(body.splitlines(keepends=True))

    @staticmethod
    async def _iter(lines):
        for line in lines:
            yield line


def sdk_aio_events(body: bytes):
    async def collect():
        return [(is_error, data) async for is_error, _, data in _handle_aio_stream(_Lines(body))]

    return asyncio.run(collect())


# ---- parse_native ---------------------------------------------------------------------------


def test_parse_native_messages_form():
    req = native(result_format="message", incremental_output=True, max_tokens=5)
    assert req.model == "qwen-plus"
    assert req.messages == (("system", "Be brief."), ("user", "Why reuse connections?"))
    assert req.result_format == "message"
    assert req.incremental_output is True
    assert req.max_tokens == 5


def test_parse_native_prompt_form_and_defaults():
    req = R.parse_native({"model": "qwen-turbo", "input": {"prompt": "hi"}})
    assert req.messages == (("user", "hi"),)
    # The service's defaults: text format, full (not incremental) output, no cap.
    assert req.result_format == "text"
    assert req.incremental_output is False
    assert req.max_tokens is None


def test_parse_native_list_content_keeps_text_parts():
    req = R.parse_native(
        {
            "model": "qwen-plus",
            "input": {"messages": [{"role": "user", "content": [{"text": "a"}, {"image": "x"}, {"text": "b"}]}]},
        }
    )
    assert req.messages[0][0] == "user"
    assert "a" in req.messages[0][1] and "b" in req.messages[0][1]


def test_parse_native_ignores_unknown_parameters():
    # The SDK puts any extra keyword (timeout=, user_agent) into parameters; the service ignores them.
    req = native(timeout=5, user_agent="incremental_to_full/0", temperature=0.3)
    assert req.max_tokens is None


@pytest.mark.parametrize(
    "body,needle",
    [
        (None, "object"),
        ([], "object"),
        ("text", "object"),
        ({"input": {"prompt": "hi"}}, "model"),
        ({"model": "", "input": {"prompt": "hi"}}, "model"),
        ({"model": "gpt-4o", "input": {"prompt": "hi"}}, "gpt-4o"),
        ({"model": ["qwen-plus"], "input": {"prompt": "hi"}}, "model"),
        ({"model": "qwen-plus"}, "input"),
        ({"model": "qwen-plus", "input": "hi"}, "input"),
        ({"model": "qwen-plus", "input": {}}, "input"),
        ({"model": "qwen-plus", "input": {"messages": []}}, "input"),
        ({"model": "qwen-plus", "input": {"prompt": ""}}, "input"),
        ({"model": "qwen-plus", "input": {"prompt": 42}}, "prompt"),
        ({"model": "qwen-plus", "input": {"messages": "hi"}}, "messages"),
        ({"model": "qwen-plus", "input": {"messages": ["hi"]}}, "role"),
        ({"model": "qwen-plus", "input": {"messages": [{"content": "hi"}]}}, "role"),
        ({"model": "qwen-plus", "input": {"messages": [{"role": "user"}]}}, "content"),
        ({"model": "qwen-plus", "input": {"messages": [{"role": "user", "content": 7}]}}, "content"),
        ({"model": "qwen-plus", "input": {"prompt": "hi"}, "parameters": "max_tokens=5"}, "parameters"),
        ({"model": "qwen-plus", "input": {"prompt": "hi"}, "parameters": {"result_format": "json"}}, "result_format"),
        ({"model": "qwen-plus", "input": {"prompt": "hi"}, "parameters": {"max_tokens": 0}}, "max_tokens"),
        ({"model": "qwen-plus", "input": {"prompt": "hi"}, "parameters": {"max_tokens": -3}}, "max_tokens"),
        ({"model": "qwen-plus", "input": {"prompt": "hi"}, "parameters": {"max_tokens": True}}, "max_tokens"),
        ({"model": "qwen-plus", "input": {"prompt": "hi"}, "parameters": {"max_tokens": "8"}}, "max_tokens"),
        ({"model": "qwen-plus", "input": {"prompt": "hi"}, "parameters": {"max_tokens": 2.5}}, "max_tokens"),
    ],
)
def test_parse_native_refuses_bad_bodies(body, needle):
    with pytest.raises(R.RequestError) as info:
        R.parse_native(body)
    err = info.value
    assert (err.status, err.code) == (400, "InvalidParameter")
    assert needle.lower() in err.message.lower()
    assert str(err) == err.message


def test_every_known_model_is_accepted():
    for model in R.KNOWN_MODELS:
        assert R.parse_native({"model": model, "input": {"prompt": "hi"}}).model == model
    assert {"qwen-plus", "qwen-turbo", "qwen-max", "qwen-flash"} <= R.KNOWN_MODELS


# ---- parse_compatible -----------------------------------------------------------------------


def test_parse_compatible():
    req, stream, include_usage = R.parse_compatible(
        {
            "model": "qwen-plus",
            "messages": MSGS,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": 9,
        }
    )
    assert (stream, include_usage) == (True, True)
    assert req.messages == R.parse_native({"model": "qwen-plus", "input": {"messages": MSGS}}).messages
    assert req.result_format == "message" and req.incremental_output is True
    assert req.max_tokens == 9

    req, stream, include_usage = R.parse_compatible({"model": "qwen-plus", "messages": MSGS})
    assert (stream, include_usage, req.max_tokens) == (False, False, None)


_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    "parse, body",
    [
        (R.parse_native, {"model": "qwen-plus", "input": {"messages": MSGS}}),
        (R.parse_native, {"model": "qwen-plus", "input": {"prompt": "hi"}, "parameters": {"max_tokens": 4}}),
        (R.parse_native, {"model": "qwen3-8b", "input": {"prompt": "hi"}}),  # thinks by default
        (
            R.parse_native,
            {"model": "qwen-plus", "input": {"messages": MSGS}, "parameters": {"tools": [_TOOL], "n": 2, "stop": "x"}},
        ),
        (lambda b: R.parse_compatible(b)[0], {"model": "qwen-plus", "messages": MSGS}),
        (lambda b: R.parse_compatible(b)[0], {"model": "qwen-plus", "messages": MSGS, "seed": 3, "tools": [_TOOL]}),
    ],
)
def test_parsed_requests_are_whole_frozen_generation_requests(parse, body):
    # The parsers fill a GenerationRequest without its __init__ (see _request._new): the
    # result must be the object __init__ would have made, every field set, still frozen.
    req = parse(body)
    fields = dataclasses.fields(R.GenerationRequest)
    assert type(req) is R.GenerationRequest and set(vars(req)) == {f.name for f in fields}
    same = R.GenerationRequest(**{f.name: getattr(req, f.name) for f in fields})
    assert req == same and repr(req) == repr(same)
    try:
        expected = hash(same)
    except TypeError:  # a tool's parameters are a dict: such a request was never hashable
        with pytest.raises(TypeError):
            hash(req)
    else:
        assert hash(req) == expected
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.model = "qwen-max"  # type: ignore[misc]


def test_parse_compatible_max_completion_tokens_wins():
    req, _, _ = R.parse_compatible(
        {"model": "qwen-plus", "messages": MSGS, "max_tokens": 9, "max_completion_tokens": 3}
    )
    assert req.max_tokens == 3


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"messages": MSGS},
        {"model": "qwen-plus"},
        {"model": "qwen-plus", "messages": []},
        {"model": "qwen-plus", "messages": [{"role": "user"}]},
        {"model": "qwen-plus", "messages": MSGS, "max_tokens": 0},
        # The openai SDK validates none of these; the service answers 400, never a crash.
        {"model": "qwen-plus", "messages": MSGS, "stream": True, "stream_options": "include_usage"},
        {"model": "qwen-plus", "messages": MSGS, "stream": True, "stream_options": ["include_usage"]},
    ],
)
def test_parse_compatible_refuses_bad_bodies(body):
    with pytest.raises(R.RequestError) as info:
        R.parse_compatible(body)
    assert info.value.status == 400


def test_parse_compatible_answers_an_unknown_model_not_found():
    with pytest.raises(R.RequestError) as info:
        R.parse_compatible({"model": "nope", "messages": MSGS})
    assert (info.value.status, info.value.code) == (404, "model_not_found")


# ---- compose --------------------------------------------------------------------------------


def test_compose_is_deterministic_and_sized():
    req = native()
    a, b = R.compose(req, reply_tokens=16), R.compose(req, reply_tokens=16)
    assert a == b
    assert a.output_tokens == len(a.tokens) == 16
    assert a.text == "".join(a.tokens)
    assert a.text == a.text.strip() and "  " not in a.text
    assert a.usage() == {"input_tokens": a.input_tokens, "output_tokens": 16, "total_tokens": a.input_tokens + 16}
    assert a.usage(produced=3) == {
        "input_tokens": a.input_tokens,
        "output_tokens": 3,
        "total_tokens": a.input_tokens + 3,
    }


@pytest.mark.parametrize("reply_tokens", [1, 2, 3, 16, 100, 500])
def test_compose_length_follows_reply_tokens(reply_tokens):
    reply = R.compose(native(), reply_tokens=reply_tokens)
    assert reply.output_tokens == reply_tokens
    assert all(t for t in reply.tokens)


@pytest.mark.parametrize("max_tokens,expected", [(1, 1), (5, 5), (16, 16), (17, 16), (1000, 16)])
def test_compose_max_tokens_caps_at_a_sentence_boundary(max_tokens, expected):
    full = R.compose(native(), reply_tokens=16)
    capped = R.compose(native(max_tokens=max_tokens), reply_tokens=16)
    assert capped.output_tokens == expected
    # The cut reply still ends a sentence; the service would say "length" when it had more to say.
    assert re.search(r"[.!?][\"'”]*$", capped.text), capped.text
    assert capped.finish_reason == ("length" if max_tokens < 16 else "stop")
    if max_tokens >= 16:
        assert capped.tokens == full.tokens


def test_compose_cut_keeps_the_whole_sentences_that_fit():
    full = R.compose(native(), reply_tokens=40)
    capped = R.compose(native(max_tokens=25), reply_tokens=40)
    sentences = re.findall(r".+?[.!?][\"'”]*(?=\s|$)", full.text)
    kept, used = [], 0
    for sentence in sentences:
        if used + len(sentence.split()) > 25:
            break
        kept.append(sentence.strip())
        used += len(sentence.split())
    assert kept and capped.text.startswith(" ".join(kept))


def test_compose_depends_on_the_conversation_not_on_the_format():
    base = R.compose(native(result_format="message"), reply_tokens=16)
    assert R.compose(native(result_format="text", incremental_output=True), reply_tokens=16) == base
    others = {
        R.compose(R.parse_native({"model": "qwen-plus", "input": {"prompt": f"question {i}"}}), reply_tokens=16).text
        for i in range(10)
    }
    assert len(others) > 1


def test_input_tokens_grow_with_the_prompt():
    short = R.compose(R.parse_native({"model": "qwen-plus", "input": {"prompt": "hi"}}), reply_tokens=4)
    long = R.compose(R.parse_native({"model": "qwen-plus", "input": {"prompt": "hi " * 50}}), reply_tokens=4)
    assert 0 < short.input_tokens < long.input_tokens


def test_count_tokens():
    assert R.count_tokens("") == 0
    assert R.count_tokens("hello world") == 2
    assert R.count_tokens("hello, world!") == 4


# ---- native wire format ---------------------------------------------------------------------


def test_native_body_message_and_text_shapes():
    reply = R.compose(native(), reply_tokens=6)
    msg = R.native_body(native(result_format="message"), reply, RID)
    assert msg == {
        "output": {"choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": reply.text}}]},
        "usage": reply.usage(),
        "request_id": RID,
    }
    txt = R.native_body(native(result_format="text"), reply, RID)
    assert txt == {"output": {"text": reply.text, "finish_reason": "stop"}, "usage": reply.usage(), "request_id": RID}
    # Always an output object: a 200 without one crashes the SDK.
    assert "output" in msg and "output" in txt


def test_native_error_shape():
    assert R.native_error("InvalidApiKey", "Invalid API-key provided.", RID) == {
        "code": "InvalidApiKey",
        "message": "Invalid API-key provided.",
        "request_id": RID,
    }


_FRAME = re.compile(rb"id:(\d+)\nevent:(result|error)\n:HTTP_STATUS/(\d{3})\ndata:([^\n]*)\n\n")


def test_sse_event_exact_bytes():
    frame = R.sse_event(3, "result", 200, {"a": 1, "b": "x"})
    assert frame == b'id:3\nevent:result\n:HTTP_STATUS/200\ndata:{"a":1,"b":"x"}\n\n'
    err = R.sse_event(1, "error", 429, R.native_error("Throttling.RateQuota", "slow down", RID))
    assert err.startswith(b"id:1\nevent:error\n:HTTP_STATUS/429\ndata:{")


def test_sse_event_keeps_newlines_and_unicode_in_one_data_line():
    payload = {"output": {"text": "line one\nline two\r\n你好 😀"}}
    frame = R.sse_event(1, "result", 200, payload)
    m = _FRAME.fullmatch(frame)
    assert m is not None
    assert "你好".encode() in frame  # UTF-8, not \\u escapes
    [(is_error, _, _, data)] = sdk_events(frame)
    assert not is_error
    assert json.loads(data) == payload


@pytest.mark.parametrize("incremental", [True, False])
@pytest.mark.parametrize("result_format", ["message", "text"])
def test_native_events_framing(result_format, incremental):
    req = native(result_format=result_format, incremental_output=incremental)
    reply = R.compose(req, reply_tokens=7)
    frames = list(R.native_events(req, reply, RID))
    assert len(frames) == 7
    texts, finishes = [], []
    for i, frame in enumerate(frames, start=1):
        m = _FRAME.fullmatch(frame)
        assert m is not None, frame
        assert (int(m[1]), m[2], m[3]) == (i, b"result", b"200")
        payload = json.loads(m[4])
        assert payload["request_id"] == RID
        assert payload["usage"] == reply.usage(produced=i)
        out = payload["output"]
        if result_format == "message":
            choice = out["choices"][0]
            assert choice["message"]["role"] == "assistant"
            texts.append(choice["message"]["content"])
            finishes.append(choice["finish_reason"])
        else:
            texts.append(out["text"])
            finishes.append(out["finish_reason"])
    # The string "null", not JSON null, until the last chunk.
    assert finishes == ["null"] * 6 + ["stop"]
    if incremental:
        assert texts == list(reply.tokens)
        assert "".join(texts) == reply.text
    else:
        assert texts == ["".join(reply.tokens[:i]) for i in range(1, 8)]
        assert texts[-1] == reply.text


def test_native_events_parse_with_the_sdks_own_parsers():
    req = native(result_format="message", incremental_output=True)
    reply = R.compose(req, reply_tokens=12)
    body = b"".join(R.native_events(req, reply, RID))

    events = sdk_events(body)
    assert [e[1] for e in events] == [str(i) for i in range(1, 13)]
    assert all(not is_error and etype == "result" for is_error, _, etype, _ in events)
    parsed = [json.loads(data) for *_, data in events]
    assert "".join(p["output"]["choices"][0]["message"]["content"] for p in parsed) == reply.text

    aio = sdk_aio_events(body)
    assert [json.loads(d) for _, d in aio] == parsed
    assert not any(is_error for is_error, _ in aio)


def test_error_event_is_an_error_to_both_sdk_parsers():
    frame = R.sse_event(1, "error", 401, R.native_error("InvalidApiKey", "Invalid API-key provided.", RID))
    [(is_error, _, etype, data)] = sdk_events(frame)
    assert is_error and etype == "error"
    assert json.loads(data)["code"] == "InvalidApiKey"
    [(aio_error, aio_data)] = sdk_aio_events(frame)
    assert aio_error and json.loads(aio_data)["code"] == "InvalidApiKey"
    # How the sync SDK reads a non-200 SSE body.
    rsp = _handle_http_failed_response(sdk_response(frame, status=401))
    assert (rsp.status_code, rsp.code, rsp.request_id) == (401, "InvalidApiKey", RID)


def test_sdk_parser_would_miss_a_spaced_error_event():
    # Why sse_event writes `event:error` without a space: the sync parser compares the raw text.
    spaced = b'id:1\nevent: error\n:HTTP_STATUS/401\ndata:{"code":"X","message":"m"}\n\n'
    [(is_error, *_)] = sdk_events(spaced)
    assert not is_error
    [(is_error, *_)] = sdk_events(R.sse_event(1, "error", 401, {"code": "X", "message": "m"}))
    assert is_error


# ---- OpenAI-compatible wire format ----------------------------------------------------------


def compat(**extra):
    return R.parse_compatible({"model": "qwen-plus", "messages": MSGS, **extra})[0]


def test_compatible_body_shape():
    req = compat()
    reply = R.compose(req, reply_tokens=5)
    body = R.compatible_body(req, reply, RID)
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert body["model"] == "qwen-plus"
    assert isinstance(body["created"], int)
    assert body["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": reply.text}, "finish_reason": "stop", "logprobs": None}
    ]
    assert body["usage"] == {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": 5,
        "total_tokens": reply.input_tokens + 5,
    }
    json.dumps(body)  # serialisable as is


@pytest.mark.parametrize("include_usage", [False, True])
def test_compatible_chunks(include_usage):
    req = compat()
    reply = R.compose(req, reply_tokens=6)
    frames = list(R.compatible_chunks(req, reply, RID, include_usage))
    assert frames[-1] == b"data: [DONE]\n\n"
    assert all(re.fullmatch(rb"data: [^\n]+\n\n", f) for f in frames)
    bodies = [json.loads(f[len(b"data: ") :]) for f in frames[:-1]]
    assert len({b["id"] for b in bodies}) == 1
    assert all(b["object"] == "chat.completion.chunk" and b["model"] == "qwen-plus" for b in bodies)

    with_choices = [b for b in bodies if b["choices"]]
    assert with_choices[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(b["choices"][0]["delta"].get("content", "") for b in with_choices) == reply.text
    assert [b["choices"][0]["finish_reason"] for b in with_choices] == [None] * (len(with_choices) - 1) + ["stop"]
    usage_chunks = [b for b in bodies if not b["choices"]]
    if include_usage:
        assert len(usage_chunks) == 1 and bodies[-1] is usage_chunks[0]
        assert usage_chunks[0]["usage"] == R.compatible_body(req, reply, RID)["usage"]
    else:
        assert usage_chunks == []
        assert all("usage" not in b for b in bodies)


def test_compatible_chunks_parse_with_openais_decoder():
    req = compat()
    reply = R.compose(req, reply_tokens=8)
    body = b"".join(R.compatible_chunks(req, reply, RID, True))
    # Delivered in awkward pieces, as a socket might.
    pieces = [body[i : i + 7] for i in range(0, len(body), 7)]
    events = list(SSEDecoder().iter_bytes(iter(pieces)))
    assert events[-1].data == "[DONE]"
    chunks = [e.json() for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == reply.text
    assert chunks[-1]["usage"]["completion_tokens"] == 8


def test_compatible_error_shape():
    err = R.compatible_error(401, "InvalidApiKey", "Invalid API-key provided.", RID)
    assert err == {
        "error": {
            "message": "Invalid API-key provided.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        },
        "request_id": RID,
    }
    assert R.compatible_error(400, "InvalidParameter", "m", RID)["error"]["type"] == "invalid_request_error"
    assert R.compatible_error(500, "InternalError", "m", RID)["error"]["type"] == "server_error"
    assert R.compatible_error(503, "ServiceUnavailable", "m", RID)["error"]["type"] == "server_error"
    assert R.compatible_error(429, "Throttling.RateQuota", "m", RID)["error"]["code"] == "Throttling.RateQuota"
