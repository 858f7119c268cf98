"""dashnb.ask: streams through the official SDK on a dashnb session, against the emulator."""

from __future__ import annotations

import time

import pytest

from dashnb._ask import core as _ask
from dashnb._ask import view as _ask_view
from dashnb._session import manager as _session

dashscope = pytest.importorskip("dashscope")
from dashscope import Generation  # noqa: E402

PROMPT = "Why reuse HTTP connections?"


@pytest.fixture
def fresh(emu):
    """A dashnb session of its own on the shared emulator (so its counts start at zero)."""
    s = _session.session(endpoint=emu, name=f"test-ask-{time.monotonic_ns()}")
    yield s
    s.close()


def test_streamed_text_equals_a_plain_sdk_call(emu, fresh, capsys):
    r = _ask.ask(PROMPT, session=fresh)
    plain = Generation.call(
        model="qwen-plus",
        messages=[{"role": "user", "content": PROMPT}],
        result_format="message",
        api_key=emu.api_key,
        base_address=emu.base_url,
        session=fresh.requests,
    )
    assert plain.status_code == 200
    assert r.text == plain.output.choices[0].message.content
    assert r.text.strip()
    # Outside a notebook the reply goes to stdout as it streams, then the summary line.
    out = capsys.readouterr().out
    assert out.startswith(r.text)
    assert "first token" in out and "total" in out


def test_stream_false_gives_the_same_text(fresh):
    streamed = _ask.ask(PROMPT, session=fresh)
    whole = _ask.ask(PROMPT, session=fresh, stream=False)
    assert whole.text == streamed.text
    assert whole.timings.first_token_s == whole.timings.total_s


def test_second_call_reuses_the_connection(emu, fresh):
    first = _ask.ask("one", session=fresh)
    second = _ask.ask("two", session=fresh, system="Answer briefly.")
    assert first.reused is False and second.reused is True
    assert second.connection_id == first.connection_id
    assert second.requests_on_connection == 2
    assert first.timings.handshake_s is not None and second.timings.handshake_s is None
    assert emu.stats()["tcp_connections"] == 1
    assert fresh.stats()["connections_opened"] == 1
    assert "reused connection" in second.summary() and "new connection" in first.summary()


def test_result_fields_and_reprs(emu, fresh):
    r = _ask.ask(PROMPT, session=fresh, max_tokens=5)
    assert r.usage is not None and r.usage.output_tokens == 5
    assert r.request_id
    t = r.timings
    assert 0 < t.first_token_s <= t.total_s
    assert str(r) == r.text
    assert repr(r).startswith("<AskResult qwen-plus:") and "reused" not in repr(r).split(":")[0]
    assert "dashnb-ask" in r._repr_html_()
    with pytest.raises(AttributeError):
        r.text = "changed"  # frozen
    for shown in (repr(r), r._repr_html_(), r.summary()):
        assert emu.api_key not in shown


def test_default_session_is_the_notebook_session(emu, monkeypatch):
    s = _session.session(endpoint=emu, name=f"test-ask-default-{time.monotonic_ns()}")
    try:
        monkeypatch.setattr(_session, "session", lambda *a, **k: s)
        before = s.stats()["requests"]
        _ask.ask("hello")
        assert s.stats()["requests"] == before + 1
    finally:
        s.close()


def test_bad_key_raises_a_clear_error_without_the_key(fresh, capsys):
    bad = "sk-this-is-a-wrong-key-1234567890"
    with pytest.raises(_ask.AskError) as info:
        _ask.ask(PROMPT, session=fresh, api_key=bad)
    err = info.value
    assert err.status_code == 401 and err.code == "InvalidApiKey"
    text = str(err)
    assert "DASHSCOPE_API_KEY" in text and "region" in text
    assert bad not in text and bad not in repr(err)
    assert bad not in capsys.readouterr().out


def test_the_emulator_key_never_appears_in_errors(emu, fresh):
    emu.configure(error_rate=1.0, error_status=503)
    with pytest.raises(_ask.AskError) as info:
        _ask.ask(PROMPT, session=fresh)
    assert info.value.status_code == 503
    assert "ask again" in str(info.value)
    assert emu.api_key not in str(info.value)


def test_rate_limit_is_named(emu, fresh):
    emu.configure(rate_limit=1.0)
    _ask.ask("first", session=fresh)
    with pytest.raises(_ask.AskError) as info:
        _ask.ask("second", session=fresh)
    assert info.value.status_code == 429
    assert "Rate limited" in str(info.value)


def test_unknown_model_is_a_400_naming_the_model(fresh):
    with pytest.raises(_ask.AskError) as info:
        _ask.ask(PROMPT, session=fresh, model="qwen-nonexistent")
    assert info.value.status_code == 400
    assert "model name" in str(info.value)


def test_unreachable_endpoint_is_an_ask_error(emulator_factory):
    gone = emulator_factory(rtt_ms=0)
    s = _session.session(endpoint=gone, name=f"test-ask-gone-{time.monotonic_ns()}")
    try:
        key = gone.api_key
        gone.stop()
        with pytest.raises(_ask.AskError) as info:
            _ask.ask(PROMPT, session=s)
        assert info.value.status_code is None
        assert "has been stopped" in str(info.value) and key not in str(info.value)
    finally:
        s.close()


def test_bad_arguments():
    with pytest.raises(ValueError):
        _ask.ask("   ")
    with pytest.raises(TypeError):
        _ask.ask("hi", messages=[])
    with pytest.raises(TypeError):
        _ask.ask("hi", session=object())


def test_notebook_view_updates_one_display(monkeypatch, fresh):
    """In a kernel the reply goes to one display that is updated, never printed."""
    shown = []

    class Handle:
        def update(self, obj):
            shown.append(("update", repr(obj)))

    def display(obj, display_id=False):
        assert display_id is True
        shown.append(("display", repr(obj)))
        return Handle()

    monkeypatch.setattr(_ask_view, "_notebook_display", lambda: display)
    r = _ask.ask(PROMPT, session=fresh)
    assert shown[0][0] == "display" and "waiting" in shown[0][1]
    assert all(kind == "update" for kind, _ in shown[1:])
    assert shown[-1][1] == f"{r.text}\n{r.summary()}"


@pytest.mark.parametrize("malformed", ["bad_sse", "truncated_body"])
def test_a_malformed_stream_is_an_error_never_a_reply_with_a_hole(emu, fresh, malformed, capsys):
    emu.configure(malformed=malformed)
    with pytest.raises(_ask.AskError) as info:
        _ask.ask(PROMPT, session=fresh)
    if malformed == "bad_sse":
        assert "malformed" in str(info.value)
    emu.configure(malformed=None)
    assert _ask.ask(PROMPT, session=fresh).text  # the session is still usable


# ---- client errors (change the request) versus server errors (try again) ----------------------


def _client_error(info, status):
    err = info.value
    assert err.status_code == status, str(err)
    text = str(err)
    assert "Your request" in text and "try again" not in text
    assert "log" not in text.lower()  # no pointer at a log that shows nothing by default
    return text


def test_oversized_prompt_says_shorten_it(fresh):
    from dashnb.emulator._limits import MAX_BODY_BYTES

    with pytest.raises(_ask.AskError) as info:
        _ask.ask("x" * (MAX_BODY_BYTES + 1), session=fresh)
    text = _client_error(info, 413)
    assert "shorten the prompt" in text and str(MAX_BODY_BYTES) in text


def test_absurdly_nested_parameter_says_what_to_change(fresh):
    deep: list = []
    for _ in range(200):
        deep = [deep]
    with pytest.raises(_ask.AskError) as info:
        _ask.ask(PROMPT, session=fresh, stop=deep)
    text = _client_error(info, 400)
    assert "nested too deeply" in text and "extra parameters" in text


def test_malformed_key_says_the_key_without_showing_it(fresh, capsys):
    bad = "sk-pasted-with-a-curly-quote’"[:-1] + "é"  # é goes out as one latin-1 byte, not UTF-8
    with pytest.raises(_ask.AskError) as info:
        _ask.ask(PROMPT, session=fresh, api_key=bad)
    text = _client_error(info, 401)
    assert "ASCII" in text and "DASHSCOPE_API_KEY" in text
    assert bad not in text and bad not in capsys.readouterr().out


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_say_try_again_not_change_your_request(emu, fresh, status):
    emu.configure(error_rate=1.0, error_status=status)
    with pytest.raises(_ask.AskError) as info:
        _ask.ask(PROMPT, session=fresh)
    assert info.value.status_code == status
    assert "try again" in str(info.value) and "Your request" not in str(info.value)
