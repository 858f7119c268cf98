"""The emulator speaks DashScope well enough for the official clients, over real sockets and TLS.

Every test drives the emulator with the dashscope SDK (sync and async) or the openai SDK in
compatible mode, trusting the emulator's CA explicitly, and asserts what a user of those SDKs sees.
Plain `requests` is used only where the SDK hides the wire (headers, paths it never calls).
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import uuid

import aiohttp
import dashscope
import httpx
import openai
import pytest
import requests
from dashscope import AioGeneration, Generation
from dashscope.common.error import InputRequired, ModelRequired

MESSAGES = [{"role": "user", "content": "How does connection reuse help?"}]


# ---- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture
def sdk(emu):
    """Point the dashscope SDK at the emulator for one test, then put its module settings back."""
    saved = (dashscope.base_http_api_url, dashscope.api_key)
    emu.apply_to_sdk()
    yield emu
    dashscope.base_http_api_url, dashscope.api_key = saved


def aio_session(emu) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=emu.ssl_context()))


def run(coro):
    return asyncio.run(coro)


def text_of(rsp) -> str:
    """The reply text of a GenerationResponse in either result format."""
    if rsp.output.choices:
        return rsp.output.choices[0].message.content
    return rsp.output.text


def finish_of(rsp) -> str:
    if rsp.output.choices:
        return rsp.output.choices[0].finish_reason
    return rsp.output.finish_reason


def post_native(emu, body, *, key=None, stream=False, session=None):
    """A raw POST to the native endpoint, for what the SDK refuses to send."""
    headers = {"Authorization": f"Bearer {emu.api_key if key is None else key}", "Content-Type": "application/json"}
    if stream:
        headers["X-DashScope-SSE"] = "enable"
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    sender = session or requests
    return sender.post(
        emu.base_url + "/services/aigc/text-generation/generation", data=data, headers=headers, verify=emu.ca_path
    )


# ---- native, sync ---------------------------------------------------------------------------


@pytest.mark.parametrize("result_format", ["message", "text"])
@pytest.mark.parametrize("form", ["messages", "prompt"])
def test_sync_non_stream_reply_shape(sdk, session, result_format, form):
    kwargs = {"messages": MESSAGES} if form == "messages" else {"prompt": MESSAGES[0]["content"]}
    rsp = Generation.call(model="qwen-plus", result_format=result_format, session=session, **kwargs)

    assert rsp.status_code == 200
    assert rsp.code == "" and rsp.message == ""
    if result_format == "message":
        choice = rsp.output.choices[0]
        assert choice.message.role == "assistant"
        assert choice.finish_reason == "stop"
        assert rsp.output.text is None
    else:
        assert rsp.output.choices is None
        assert rsp.output.finish_reason == "stop"
    assert text_of(rsp)
    u = rsp.usage
    assert u.output_tokens == sdk.options.reply_tokens
    assert u.input_tokens > 0
    assert u.total_tokens == u.input_tokens + u.output_tokens
    assert rsp.request_id


def test_prompt_and_messages_forms_get_the_same_reply(sdk, session):
    # The SDK sends the prompt form as input.prompt; the service treats it as one user message.
    a = Generation.call(model="qwen-plus", messages=MESSAGES, result_format="text", session=session)
    b = Generation.call(model="qwen-plus", prompt=MESSAGES[0]["content"], result_format="text", session=session)
    assert text_of(a) == text_of(b)
    assert a.usage.input_tokens == b.usage.input_tokens


def test_result_format_does_not_change_the_words(sdk, session):
    m = Generation.call(model="qwen-plus", messages=MESSAGES, result_format="message", session=session)
    t = Generation.call(model="qwen-plus", messages=MESSAGES, result_format="text", session=session)
    assert text_of(m) == text_of(t)


def test_replies_are_deterministic_and_request_ids_unique(sdk, session):
    replies = [Generation.call(model="qwen-plus", messages=MESSAGES, session=session) for _ in range(3)]
    assert len({text_of(r) for r in replies}) == 1
    assert len({r.request_id for r in replies}) == 3
    assert all(r.request_id for r in replies)


def test_request_ids_are_random_version_4_uuids():
    # The server writes its ids itself from random bytes (_server._rid), not through uuid.uuid4().
    from dashnb.emulator._server import _rid

    ids = [_rid() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for rid in ids:
        u = uuid.UUID(rid)
        assert str(u) == rid and u.version == 4 and u.variant == uuid.RFC_4122
    # every variant digit turns up (a fixed one would be missed 2000 times in a row: never by chance)
    assert {rid[19] for rid in ids} == set("89ab")
    assert {rid[-1] for rid in ids} == set("0123456789abcdef")


def test_the_request_decides_the_reply(sdk, session):
    # Deterministic, yet not a constant: some other request gets another reply (8 candidate prompts,
    # so a hash collision on all of them would be a broken composer, not bad luck).
    base = text_of(Generation.call(model="qwen-plus", prompt="p0", session=session))
    others = {text_of(Generation.call(model="qwen-plus", prompt=f"p{i}", session=session)) for i in range(1, 9)}
    assert others - {base}


@pytest.mark.parametrize("max_tokens", [1, 3, 7])
def test_max_tokens_caps_the_reply(sdk, session, max_tokens):
    full = Generation.call(model="qwen-plus", messages=MESSAGES, result_format="message", session=session)
    capped = Generation.call(
        model="qwen-plus", messages=MESSAGES, result_format="message", max_tokens=max_tokens, session=session
    )
    assert capped.status_code == 200
    assert capped.usage.output_tokens == max_tokens
    assert full.usage.output_tokens == sdk.options.reply_tokens > max_tokens
    # The service says why it stopped; the emulator's cut still ends a sentence.
    assert finish_of(capped) == "length" and finish_of(full) == "stop"
    assert text_of(capped)[-1] in ".!?”" and len(text_of(capped)) < len(text_of(full))

    streamed = list(
        Generation.call(
            model="qwen-plus",
            messages=MESSAGES,
            max_tokens=max_tokens,
            stream=True,
            incremental_output=True,
            session=session,
        )
    )
    assert len(streamed) == max_tokens
    assert [finish_of(c) for c in streamed] == ["null"] * (max_tokens - 1) + ["length"]


def test_max_tokens_above_the_reply_length_changes_nothing(sdk, session):
    rsp = Generation.call(model="qwen-plus", messages=MESSAGES, max_tokens=1000, session=session)
    assert rsp.usage.output_tokens == sdk.options.reply_tokens


def test_reply_tokens_option_sets_the_default_length(sdk, session):
    sdk.configure(reply_tokens=40)
    rsp = Generation.call(model="qwen-plus", messages=MESSAGES, session=session)
    assert rsp.usage.output_tokens == 40
    chunks = list(
        Generation.call(model="qwen-plus", messages=MESSAGES, stream=True, incremental_output=True, session=session)
    )
    assert len(chunks) == 40
    assert "".join(text_of(c) for c in chunks) == text_of(rsp)


@pytest.mark.parametrize("result_format", ["message", "text"])
def test_sync_incremental_stream_concatenates_to_the_non_streamed_text(sdk, session, result_format):
    whole = Generation.call(model="qwen-plus", messages=MESSAGES, result_format=result_format, session=session)
    chunks = list(
        Generation.call(
            model="qwen-plus",
            messages=MESSAGES,
            result_format=result_format,
            stream=True,
            incremental_output=True,
            session=session,
        )
    )
    assert all(c.status_code == 200 for c in chunks)
    assert "".join(text_of(c) for c in chunks) == text_of(whole)
    assert [finish_of(c) for c in chunks] == ["null"] * (len(chunks) - 1) + ["stop"]
    # One chunk per token: output_tokens counts the chunks so far.
    assert [c.usage.output_tokens for c in chunks] == list(range(1, len(chunks) + 1))
    assert chunks[-1].usage.output_tokens == whole.usage.output_tokens == len(chunks)
    assert all(c.usage.input_tokens == whole.usage.input_tokens for c in chunks)
    assert all(c.usage.total_tokens == c.usage.input_tokens + c.usage.output_tokens for c in chunks)
    # One request, one id across its chunks; a different id from the non-streamed call.
    assert len({c.request_id for c in chunks}) == 1
    assert chunks[0].request_id and chunks[0].request_id != whole.request_id


@pytest.mark.parametrize("incremental_output", [False, None])
@pytest.mark.parametrize("result_format", ["message", "text"])
def test_sync_full_output_stream_grows_to_the_non_streamed_text(sdk, session, result_format, incremental_output):
    # incremental_output=False: the SDK sends incremental_output=true and merges the chunks itself.
    # incremental_output unset: the SDK sends nothing, and the service's default is full output.
    # Either way the user sees each chunk carrying the whole text so far.
    whole = Generation.call(model="qwen-plus", messages=MESSAGES, result_format=result_format, session=session)
    chunks = list(
        Generation.call(
            model="qwen-plus",
            messages=MESSAGES,
            result_format=result_format,
            stream=True,
            incremental_output=incremental_output,
            session=session,
        )
    )
    texts = [text_of(c) for c in chunks]
    assert len(chunks) == whole.usage.output_tokens
    assert texts[-1] == text_of(whole)
    for shorter, longer in zip(texts, texts[1:]):
        assert longer.startswith(shorter) and len(longer) > len(shorter)
    assert finish_of(chunks[-1]) == "stop"
    assert chunks[-1].usage.output_tokens == len(chunks)
    assert chunks[-1].usage.total_tokens == chunks[-1].usage.input_tokens + len(chunks)


def test_sdk_sends_incremental_output_only_when_asked(sdk, session):
    # Observable without looking at the wire: the emulator honours the flag, and the SDK does not
    # merge when incremental_output is unset, so unset must reach the server as "not incremental".
    incremental = list(
        Generation.call(model="qwen-plus", prompt="hi", stream=True, incremental_output=True, session=session)
    )
    unset = list(Generation.call(model="qwen-plus", prompt="hi", stream=True, session=session))
    assert "".join(text_of(c) for c in incremental) == text_of(unset[-1])
    assert text_of(unset[1]).startswith(text_of(unset[0])) and text_of(unset[1]) != text_of(incremental[1])


def test_one_requests_session_keeps_one_connection(sdk, session):
    for stream in (False, True, False, True):
        rsp = Generation.call(model="qwen-plus", messages=MESSAGES, stream=stream, session=session)
        if stream:
            list(rsp)  # a stream must be drained before its connection goes back to the pool
    stats = sdk.stats()
    assert stats["requests"] == 4
    assert stats["tcp_connections"] == 1
    assert stats["tls_handshakes"] == 1
    assert stats["requests_per_connection"] == [4]


def test_a_session_per_call_opens_a_connection_per_call(sdk):
    # Negative control for the test above: the counts do move.
    for _ in range(3):
        with requests.Session() as s:
            s.trust_env = False
            s.verify = sdk.ca_path
            assert Generation.call(model="qwen-plus", prompt="hi", session=s).status_code == 200
    stats = sdk.stats()
    assert stats["tcp_connections"] == 3
    assert stats["tls_handshakes"] == 3


def test_untrusted_ca_is_a_raised_transport_error(sdk):
    # Transport failures are raised (unlike HTTP errors): certifi does not know the emulator's CA.
    with requests.Session() as s:
        s.trust_env = False
        with pytest.raises(requests.exceptions.SSLError):
            Generation.call(model="qwen-plus", prompt="hi", session=s)


def test_certificate_is_for_loopback_names_only(sdk, session):
    # Every loopback name verifies; a name the certificate does not cover fails, though it is the
    # same server (requests cannot send one name and connect to another, so this is one level down).
    dashscope.base_http_api_url = sdk.base_url.replace("127.0.0.1", "localhost")
    assert Generation.call(model="qwen-plus", prompt="hi", session=session).status_code == 200
    ctx = sdk.ssl_context()
    with socket.create_connection(("127.0.0.1", sdk.port), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError, match="(?i)hostname"):
            ctx.wrap_socket(raw, server_hostname="example.invalid")


# ---- native, async --------------------------------------------------------------------------


@pytest.mark.parametrize("result_format", ["message", "text"])
@pytest.mark.parametrize("form", ["messages", "prompt"])
def test_async_matches_sync(sdk, session, result_format, form):
    kwargs = {"messages": MESSAGES} if form == "messages" else {"prompt": MESSAGES[0]["content"]}
    sync = Generation.call(model="qwen-plus", result_format=result_format, session=session, **kwargs)

    async def main():
        async with aio_session(sdk) as s:
            whole = await AioGeneration.call(model="qwen-plus", result_format=result_format, session=s, **kwargs)
            inc = await AioGeneration.call(
                model="qwen-plus",
                result_format=result_format,
                stream=True,
                incremental_output=True,
                session=s,
                **kwargs,
            )
            inc = [c async for c in inc]
            full = await AioGeneration.call(
                model="qwen-plus",
                result_format=result_format,
                stream=True,
                incremental_output=False,
                session=s,
                **kwargs,
            )
            full = [c async for c in full]
            return whole, inc, full

    whole, inc, full = run(main())
    assert whole.status_code == 200
    assert text_of(whole) == text_of(sync)
    assert whole.usage.total_tokens == whole.usage.input_tokens + whole.usage.output_tokens
    assert whole.request_id and whole.request_id != sync.request_id

    assert "".join(text_of(c) for c in inc) == text_of(whole)
    assert len(inc) == whole.usage.output_tokens
    assert [c.usage.output_tokens for c in inc] == list(range(1, len(inc) + 1))
    assert [finish_of(c) for c in inc] == ["null"] * (len(inc) - 1) + ["stop"]
    assert len({c.request_id for c in inc}) == 1

    assert [text_of(c) for c in full] == ["".join(text_of(c) for c in inc[: i + 1]) for i in range(len(inc))]
    assert full[-1].usage.output_tokens == len(full)


def test_async_one_client_session_keeps_one_connection(sdk):
    async def main():
        async with aio_session(sdk) as s:
            for _ in range(3):
                rsp = await AioGeneration.call(model="qwen-plus", messages=MESSAGES, session=s)
                assert rsp.status_code == 200
            stream = await AioGeneration.call(
                model="qwen-plus", messages=MESSAGES, stream=True, incremental_output=True, session=s
            )
            assert len([c async for c in stream]) == sdk.options.reply_tokens

    run(main())
    stats = sdk.stats()
    assert stats["requests"] == 4
    assert stats["tcp_connections"] == 1
    assert stats["tls_handshakes"] == 1


# ---- errors as the SDK surfaces them --------------------------------------------------------


def _sync_call(session, stream, **kwargs):
    rsp = Generation.call(session=session, stream=stream, **kwargs)
    if stream:
        rsp = list(rsp)
        assert len(rsp) == 1, "an error stream is one response"
        rsp = rsp[0]
    return rsp


def _async_call(emu, stream, **kwargs):
    async def main():
        async with aio_session(emu) as s:
            rsp = await AioGeneration.call(session=s, stream=stream, **kwargs)
            if stream:
                rsp = [c async for c in rsp]
                assert len(rsp) == 1, "an error stream is one response"
                rsp = rsp[0]
            return rsp

    return run(main())


def _call(emu, session, mode, stream, **kwargs):
    if mode == "sync":
        return _sync_call(session, stream, **kwargs)
    return _async_call(emu, stream, **kwargs)


MODES = pytest.mark.parametrize("mode,stream", [("sync", False), ("sync", True), ("async", False), ("async", True)])


def assert_error(rsp, status, code):
    # The SDK never raises for an HTTP error: it hands back a response describing it.
    assert rsp.status_code == status
    assert rsp.code == code
    assert rsp.message
    assert rsp.output is None
    assert rsp.usage is None
    assert rsp.request_id


@MODES
def test_wrong_key_is_401_invalid_api_key(sdk, session, mode, stream):
    rsp = _call(sdk, session, mode, stream, model="qwen-plus", messages=MESSAGES, api_key="sk-not-the-key")
    assert_error(rsp, 401, "InvalidApiKey")
    assert "sk-not-the-key" not in rsp.message
    assert sdk.stats()["statuses"] == {"401": 1}


@MODES
def test_unknown_model_is_400_invalid_parameter(sdk, session, mode, stream):
    rsp = _call(sdk, session, mode, stream, model="qwen-does-not-exist", messages=MESSAGES)
    assert_error(rsp, 400, "InvalidParameter")
    assert "qwen-does-not-exist" in rsp.message


def test_sdk_refuses_missing_model_and_input_before_sending(sdk, session):
    with pytest.raises(ModelRequired):
        Generation.call(model="", messages=MESSAGES, session=session)
    with pytest.raises(InputRequired):
        Generation.call(model="qwen-plus", session=session)
    assert sdk.stats()["requests"] == 0


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    "body,needle",
    [
        ({"input": {"messages": MESSAGES}}, "model"),
        ({"model": "qwen-plus"}, "input"),
        ({"model": "qwen-plus", "input": {"messages": []}}, "input"),
        ({"model": "qwen-plus", "input": {"prompt": ""}}, "input"),
        ({"model": "qwen-plus", "input": {"messages": [{"role": "user"}]}}, "content"),
        ({"model": "qwen-plus", "input": {"prompt": "hi"}, "parameters": {"max_tokens": 0}}, "max_tokens"),
        ({"model": "qwen-plus", "input": {"prompt": "hi"}, "parameters": {"result_format": "xml"}}, "result_format"),
        (["not", "an", "object"], "object"),
        (b"{not json", "JSON"),
    ],
)
def test_bad_bodies_are_400_invalid_parameter(emu, session, body, needle, stream):
    # Sent with plain requests: the SDK refuses some of these itself, the real service refuses the rest.
    r = post_native(emu, body, stream=stream, session=session)
    assert r.status_code == 400
    if stream:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        lines = r.text.split("\n")
        assert lines[:3] == ["id:1", "event:error", ":HTTP_STATUS/400"]
        err = json.loads(lines[3][len("data:") :])
    else:
        assert r.headers["Content-Type"].startswith("application/json")
        err = r.json()
    assert err["code"] == "InvalidParameter"
    assert needle.lower() in err["message"].lower()
    assert err["request_id"]


def test_bad_request_reaches_the_sdk_as_400(sdk, session):
    # What a user would see for a bad parameter the SDK passes through.
    rsp = Generation.call(model="qwen-plus", prompt="hi", max_tokens=-1, session=session)
    assert_error(rsp, 400, "InvalidParameter")


def test_key_is_checked_before_the_body(emu, session):
    r = post_native(emu, b"{not json", key="wrong", session=session)
    assert r.status_code == 401
    assert r.json()["code"] == "InvalidApiKey"


@MODES
def test_rate_limit_is_429_throttling(sdk, session, mode, stream):
    sdk.configure(rate_limit=2)
    # A bucket of 2: two calls pass at once, the third is refused.
    for _ in range(2):
        ok = Generation.call(model="qwen-plus", prompt="hi", session=session)
        assert ok.status_code == 200
    rsp = _call(sdk, session, mode, stream, model="qwen-plus", prompt="hi")
    assert_error(rsp, 429, "Throttling.RateQuota")
    assert sdk.stats()["statuses"] == {"200": 2, "429": 1}


def test_rate_limit_sends_retry_after(emu, session):
    emu.configure(rate_limit=2)
    statuses = [post_native(emu, {"model": "qwen-plus", "input": {"prompt": "hi"}}, session=session) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    refused = statuses[-1]
    assert refused.json()["code"] == "Throttling.RateQuota"
    retry_after = refused.headers["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) >= 1
    assert "Retry-After" not in statuses[0].headers


@pytest.mark.parametrize("error_status,code", [(500, "InternalError"), (503, "ServiceUnavailable")])
@MODES
def test_error_rate_one_fails_every_call(sdk, session, mode, stream, error_status, code):
    sdk.configure(error_rate=1.0, error_status=error_status)
    for _ in range(2):
        rsp = _call(sdk, session, mode, stream, model="qwen-plus", messages=MESSAGES)
        assert_error(rsp, error_status, code)
    assert sdk.stats()["statuses"] == {str(error_status): 2}


def test_error_rate_is_an_exact_share(sdk, session):
    sdk.configure(error_rate=0.25)
    codes = [Generation.call(model="qwen-plus", prompt="hi", session=session).status_code for _ in range(8)]
    assert codes.count(500) == 2
    assert codes.count(200) == 6
    # Deterministic: the same sequence again after a reset.
    sdk.reset_stats()
    again = [Generation.call(model="qwen-plus", prompt="hi", session=session).status_code for _ in range(8)]
    assert again == codes


def test_unknown_path_is_404(emu, session):
    r = session.get(emu.url + "/api/v1/no/such/thing")
    assert r.status_code == 404
    assert r.json()["code"] == "NotFound"
    r = session.post(emu.base_url + "/services/aigc/text-generation/nope", json={})
    assert r.status_code == 404


def test_wrong_method_is_405(emu, session):
    r = session.get(emu.base_url + "/services/aigc/text-generation/generation")
    assert r.status_code == 405


def test_native_error_body_has_the_documented_shape(emu, session):
    r = post_native(emu, {"model": "qwen-plus", "input": {"prompt": "hi"}}, key="nope", session=session)
    assert r.status_code == 401
    body = r.json()
    assert set(body) == {"code", "message", "request_id"}
    assert body["code"] == "InvalidApiKey"


def test_stream_content_type_and_framing_on_the_wire(emu, session):
    r = post_native(
        emu,
        {"model": "qwen-plus", "input": {"prompt": "hi"}, "parameters": {"incremental_output": True}},
        stream=True,
        session=session,
    )
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/event-stream;charset=UTF-8"
    events = r.content.decode().split("\n\n")
    assert events[-1] == ""
    events = events[:-1]
    assert len(events) == emu.options.reply_tokens
    for i, event in enumerate(events, start=1):
        lines = event.split("\n")
        assert lines[:3] == [f"id:{i}", "event:result", ":HTTP_STATUS/200"]
        assert len(lines) == 4 and lines[3].startswith("data:")


# ---- openai SDK, compatible mode ------------------------------------------------------------


@pytest.fixture
def oai(emu):
    client = openai.OpenAI(
        api_key=emu.api_key, base_url=emu.compatible_base_url, http_client=httpx.Client(verify=emu.ssl_context())
    )
    yield client
    client.close()


def test_openai_plain_and_streamed_agree(emu, oai):
    whole = oai.chat.completions.create(model="qwen-plus", messages=MESSAGES)
    assert whole.object == "chat.completion"
    assert whole.model == "qwen-plus"
    choice = whole.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    u = whole.usage
    assert u.completion_tokens == emu.options.reply_tokens
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens

    chunks = list(
        oai.chat.completions.create(
            model="qwen-plus", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id != whole.id
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == u.completion_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    # include_usage: a last chunk with no choices carries the usage, the same as the plain call.
    assert chunks[-1].choices == []
    assert chunks[-1].usage.model_dump() == u.model_dump()
    assert all(c.usage is None for c in chunks[:-1])


def test_openai_stream_without_include_usage_has_no_usage(oai):
    chunks = list(oai.chat.completions.create(model="qwen-plus", messages=MESSAGES, stream=True))
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


def test_openai_and_native_give_the_same_words(sdk, session, oai):
    native = Generation.call(model="qwen-plus", messages=MESSAGES, result_format="message", session=session)
    compat = oai.chat.completions.create(model="qwen-plus", messages=MESSAGES)
    assert compat.choices[0].message.content == text_of(native)
    assert compat.usage.prompt_tokens == native.usage.input_tokens


def test_openai_max_tokens_caps_the_reply(oai):
    rsp = oai.chat.completions.create(model="qwen-plus", messages=MESSAGES, max_tokens=4)
    assert rsp.usage.completion_tokens == 4
    rsp = oai.chat.completions.create(model="qwen-plus", messages=MESSAGES, max_completion_tokens=2)
    assert rsp.usage.completion_tokens == 2


def test_openai_wrong_key_is_authentication_error(emu):
    with openai.OpenAI(
        api_key="sk-wrong",
        base_url=emu.compatible_base_url,
        http_client=httpx.Client(verify=emu.ssl_context()),
        max_retries=0,
    ) as client:
        with pytest.raises(openai.AuthenticationError) as info:
            client.chat.completions.create(model="qwen-plus", messages=MESSAGES)
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"
    assert "sk-wrong" not in str(info.value)


def test_openai_unknown_model_is_not_found(oai):
    # Compatible mode answers an unknown model as the service does: 404 model_not_found.
    with pytest.raises(openai.NotFoundError) as info:
        oai.chat.completions.create(model="qwen-does-not-exist", messages=MESSAGES)
    assert info.value.status_code == 404 and info.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        list(oai.chat.completions.create(model="qwen-does-not-exist", messages=MESSAGES, stream=True))


def test_openai_models_list(oai):
    ids = [m.id for m in oai.models.list()]
    assert "qwen-plus" in ids and ids == sorted(ids)


def test_async_openai(emu):
    async def main():
        client = openai.AsyncOpenAI(
            api_key=emu.api_key,
            base_url=emu.compatible_base_url,
            http_client=httpx.AsyncClient(verify=emu.ssl_context()),
        )
        bad = openai.AsyncOpenAI(
            api_key="sk-wrong",
            base_url=emu.compatible_base_url,
            http_client=httpx.AsyncClient(verify=emu.ssl_context()),
            max_retries=0,
        )
        try:
            whole = await client.chat.completions.create(model="qwen-plus", messages=MESSAGES)
            stream = await client.chat.completions.create(
                model="qwen-plus", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
            chunks = [c async for c in stream]
            with pytest.raises(openai.AuthenticationError) as info:
                await bad.chat.completions.create(model="qwen-plus", messages=MESSAGES)
            with pytest.raises(openai.NotFoundError):
                await client.chat.completions.create(model="nope", messages=MESSAGES)
            return whole, chunks, info.value
        finally:
            await client.close()
            await bad.close()

    whole, chunks, auth_error = run(main())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert auth_error.code == "invalid_api_key"


# ---- the stats endpoint ---------------------------------------------------------------------


def test_stats_endpoint_matches_stats(sdk, session):
    Generation.call(model="qwen-plus", prompt="hi", session=session)
    Generation.call(model="qwen-plus", prompt="hi", session=session, api_key="wrong")
    list(Generation.call(model="qwen-plus", prompt="hi", stream=True, session=session))
    before = sdk.stats()
    assert before["requests"] == 3
    assert before["statuses"] == {"200": 2, "401": 1}

    with requests.Session() as other:
        other.trust_env = False
        r = other.get(sdk.url + "/_emulator/stats", verify=sdk.ca_path)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    over_http = r.json()
    after = sdk.stats()

    assert set(over_http) == set(after)
    # The stats request rode its own new connection, so connection counts include it...
    for key in ("tcp_connections", "tls_handshakes"):
        assert over_http[key] == after[key] == before[key] + 1
    # ...but the answer must describe the API traffic the same way emu.stats() does: a snapshot
    # whose request count and status counts agree with each other and with emu.stats().
    assert sum(over_http["statuses"].values()) == over_http["requests"]
    assert over_http["statuses"] == after["statuses"]
    assert over_http["requests"] == after["requests"]


def test_compatible_bad_stream_options_is_400_not_a_crash(emu, session):
    # The openai SDK does not check stream_options at runtime, so a typo reaches the server.
    r = session.post(
        emu.compatible_base_url + "/chat/completions",
        json={"model": "qwen-plus", "messages": MESSAGES, "stream": True, "stream_options": "include_usage"},
        headers={"Authorization": f"Bearer {emu.api_key}"},
    )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "options,error",
    [
        ({"rate_limit": 1}, openai.RateLimitError),
        ({"error_rate": 1.0, "error_status": 500}, openai.InternalServerError),
        ({"error_rate": 1.0, "error_status": 503}, openai.InternalServerError),
    ],
)
def test_openai_sees_throttling_and_server_errors(emu, options, error):
    emu.configure(**options)
    # max_retries=0: the openai SDK retries 429 and 5xx itself, which would hide the status here.
    with openai.OpenAI(
        api_key=emu.api_key,
        base_url=emu.compatible_base_url,
        http_client=httpx.Client(verify=emu.ssl_context()),
        max_retries=0,
    ) as client:
        if "rate_limit" in options:
            client.chat.completions.create(model="qwen-plus", messages=MESSAGES)  # the bucket's one token
        with pytest.raises(error) as info:
            client.chat.completions.create(model="qwen-plus", messages=MESSAGES)
    status = 429 if "rate_limit" in options else options["error_status"]
    assert info.value.status_code == status
    assert emu.stats()["statuses"][str(status)] == 1
