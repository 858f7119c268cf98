"""dashnb.chat: a conversation through the official SDK on a dashnb session, against the emulator;
and the %%ask magic in an IPython without a kernel (plain text). The magic in a real kernel, with
its Markdown display, is tests/kernel/test_magic_kernel.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dashnb._ask import chat as _chat
from dashnb._ask import core as _ask
from dashnb._ask import markdown as _markdown
from dashnb._ask import view as _ask_view
from dashnb._ask.result import footer_html
from dashnb._session import manager as _session
from dashnb.emulator._replies import count_tokens

dashscope = pytest.importorskip("dashscope")
from dashscope import Generation  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SYSTEM = "Answer in one sentence."
FIRST = "What is a TLS handshake?"
SECOND = "And why does skipping it make a call faster?"


@pytest.fixture
def fresh(emu):
    """A dashnb session of its own on the shared emulator (so its counts start at zero)."""
    s = _session.session(endpoint=emu, name=f"test-chat-{time.monotonic_ns()}")
    yield s
    s.close()


def _plain_call(emu, session, messages):
    """The same messages through the SDK directly: what the service answers to them."""
    r = Generation.call(
        model="qwen-plus",
        messages=messages,
        result_format="message",
        api_key=emu.api_key,
        base_address=emu.base_url,
        session=session.requests,
    )
    assert r.status_code == 200, r
    return r


def test_the_second_turn_carries_the_first(emu, fresh, capsys):
    c = _chat.chat(system=SYSTEM, session=fresh)
    one = c.ask(FIRST)
    two = c.ask(SECOND)
    assert c.history == [
        {"role": "user", "content": FIRST},
        {"role": "assistant", "content": one.text},
        {"role": "user", "content": SECOND},
        {"role": "assistant", "content": two.text},
    ]
    assert one.text.strip() and two.text.strip()
    # What the server counted: turn 2's input holds turn 1's prompt and reply as well as its own
    # prompt (the emulator counts every message it receives; the system prompt is in both turns).
    grown = two.usage.input_tokens - one.usage.input_tokens
    assert grown >= count_tokens(one.text) + count_tokens(SECOND), (one.usage, two.usage)
    # and the reply is the service's answer to exactly those messages
    plain = _plain_call(emu, fresh, [{"role": "system", "content": SYSTEM}, *c.history[:3]])
    assert plain.usage.input_tokens == two.usage.input_tokens
    assert plain.output.choices[0].message.content == two.text
    # Outside a notebook each reply streams to stdout, then the turn's line.
    out = capsys.readouterr().out
    assert out.startswith(one.text + "\n")
    assert "turn 1 · qwen-plus: first token" in out and "turn 2 · qwen-plus: first token" in out
    assert f"{two.usage.input_tokens} in + {two.usage.output_tokens} out tokens" in out


def test_reuse_and_usage_are_reported_per_turn(emu, fresh, capsys):
    c = _chat.chat(session=fresh)
    one, two = c.ask(FIRST), c.ask(SECOND)
    assert c.turns == (one, two) and c.last is two and len(c) == 2
    assert (one.reused, two.reused) == (False, True)
    assert two.connection_id == one.connection_id and two.requests_on_connection == 2
    assert one.timings.handshake_s is not None and two.timings.handshake_s is None
    assert emu.stats()["tcp_connections"] == 1 and emu.stats()["requests_per_connection"] == [2]
    assert one.usage.output_tokens > 0 and two.usage.input_tokens > one.usage.input_tokens
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("turn ")]
    assert "new connection" in lines[0] and "reused connection" in lines[1], lines


def test_a_failed_turn_leaves_the_conversation_as_it_was(emu, fresh):
    c = _chat.chat(session=fresh)
    c.ask(FIRST)
    before = c.history
    emu.configure(error_rate=1.0, error_status=503)
    with pytest.raises(_ask.AskError) as info:
        c.ask(SECOND)
    assert info.value.status_code == 503 and "try again" in str(info.value)
    assert c.history == before and len(c.turns) == 1
    emu.configure(error_rate=0.0)
    again = c.ask(SECOND)
    assert c.history[-2:] == [{"role": "user", "content": SECOND}, {"role": "assistant", "content": again.text}]


def test_model_system_and_reset(fresh, capsys):
    c = _chat.chat(session=fresh)
    assert c.messages("p") == [{"role": "user", "content": "p"}]
    c.ask(FIRST)
    c.system = SYSTEM  # applies from the next turn on, before the history
    assert c.messages("p")[0] == {"role": "system", "content": SYSTEM}
    assert c.messages("p")[1:] == [*c.history, {"role": "user", "content": "p"}]
    c.model = "qwen-max"
    assert c.ask(SECOND).model == "qwen-max"
    assert c.reset() is c
    assert c.history == [] and c.turns == () and c.last is None
    assert (c.model, c.system) == ("qwen-max", SYSTEM)  # reset keeps the settings unless told
    c.reset(model="qwen-turbo", system=None)
    assert (c.model, c.system) == ("qwen-turbo", None)
    assert c.messages("p") == [{"role": "user", "content": "p"}]
    r = c.ask(FIRST)
    assert r.model == "qwen-turbo" and "turn 1 ·" in capsys.readouterr().out.splitlines()[-1]
    with pytest.raises(ValueError):
        c.model = " "
    with pytest.raises(TypeError):
        c.system = 3
    with pytest.raises(ValueError):
        c.ask("   ")


def test_going_on_from_messages_you_have(emu, fresh):
    history = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": FIRST},
        {"role": "assistant", "content": "A negotiation of keys."},
    ]
    c = _chat.chat(session=fresh, history=history)
    assert c.system == SYSTEM and c.history == history[1:] and len(c) == 1
    r = c.ask(SECOND)
    assert (
        _plain_call(emu, fresh, [*history, {"role": "user", "content": SECOND}]).output.choices[0].message.content
        == r.text
    )
    history.append({"role": "user", "content": "changed"})  # the conversation keeps its own copy
    assert len(c.history) == 4
    for bad, error in [
        ("hi", TypeError),
        ([{"role": "user"}], TypeError),
        ([{"role": "tool", "content": "x"}], ValueError),
        ([{"role": "user", "content": "x"}, {"role": "system", "content": "late"}], ValueError),
    ]:
        with pytest.raises(error):
            _chat.chat(history=bad)
    with pytest.raises(ValueError, match="pass one of them"):
        _chat.chat(history=history[:1], system="another")


def test_ask_refuses_messages_and_points_to_chat():
    for args in [("hi",), ()]:  # ask(messages=...) alone too, as someone used to other SDKs writes it
        with pytest.raises(TypeError) as info:
            _ask.ask(*args, messages=[{"role": "user", "content": "hi"}])
        assert "dashnb.chat()" in str(info.value) and "%%ask" in str(info.value)
        assert "dashnb.chat(history=messages)" in str(info.value)
    with pytest.raises(TypeError, match="dashnb.chat"):
        _chat.chat(messages=[])


def test_repr_shows_the_transcript_briefly(fresh):
    c = _chat.chat(system=SYSTEM, session=fresh)
    assert repr(c).startswith("<Chat qwen-plus, 0 turns on session ") and repr(c).endswith(">")
    for i in range(3):
        c.ask(f"Question {i}: " + "why? " * 40)
    text = repr(c)
    lines = text.splitlines()
    assert lines[0].startswith("<Chat qwen-plus, 3 turns on session")
    assert f"system: {SYSTEM!r}" in text
    assert "... 2 earlier messages" in text  # 6 messages, the last 4 shown
    assert max(len(line) for line in lines) <= 140, text
    assert "Question 2" in text and "Question 0" not in text
    assert "last turn:" in lines[-1] and "reused connection" in lines[-1]
    assert "the notebook's session" in repr(_chat.chat())


def test_the_key_shows_nowhere(emu, fresh, monkeypatch, capsys):
    """A key passed to chat() (or the endpoint's) is absent from the conversation's repr, vars,
    history, results, display data and errors."""
    shown = []

    class Handle:
        def update(self, obj):
            shown.append(obj._repr_mimebundle_())

    def display(obj, display_id=False):
        shown.append(obj._repr_mimebundle_())
        return Handle()

    monkeypatch.setattr(_ask_view, "_notebook_display", lambda: display)
    c = _chat.chat(session=fresh, api_key=emu.api_key, max_tokens=6)
    r = c.ask(FIRST)
    assert r.usage.output_tokens == 6  # the chat's params went with the turn
    texts = [repr(c), str(vars(c)), json.dumps(c.history), repr(c.turns), r.summary(), json.dumps(shown)]
    bad = "sk-wrong-key-for-this-test-0123456789"
    wrong = _chat.chat(session=fresh, api_key=bad)
    with pytest.raises(_ask.AskError) as info:
        wrong.ask(FIRST)
    assert info.value.status_code == 401
    texts += [str(info.value), repr(info.value), repr(wrong), str(vars(wrong)), capsys.readouterr().out]
    for key in (emu.api_key, bad):
        assert not [t for t in texts if key in t]
    assert "<secret>" in str(vars(wrong))


def test_markdown_display_streams_sanitized_html(fresh, monkeypatch):
    """In a kernel the reply goes to one display, as HTML rendered from its Markdown and sanitized
    (never text/markdown, which the front end would render by its own rules), with a text/plain
    fallback, rendered again while it streams; the final one ends with the turn's line."""
    from IPython.core.formatters import DisplayFormatter

    formatter = DisplayFormatter()
    shown = []

    class Handle:
        def update(self, obj):
            shown.append(("update", formatter.format(obj)[0]))

    def display(obj, display_id=False):
        assert display_id is True
        shown.append(("display", formatter.format(obj)[0]))
        return Handle()

    monkeypatch.setattr(_ask_view, "_notebook_display", lambda: display)
    c = _chat.chat(session=fresh)
    r = c.ask(FIRST)
    kinds = [k for k, _ in shown]
    assert kinds[0] == "display" and set(kinds[1:]) == {"update"} and len(kinds) >= 3
    for _, bundle in shown:
        assert set(bundle) == {"text/html", "text/plain"}, bundle.keys()
    assert "waiting for the first token" in shown[0][1]["text/html"]
    assert "dashnb-reply" not in shown[0][1]["text/html"]
    partial = shown[1][1]["text/plain"].rsplit("\n", 1)[0]  # the first piece is drawn at once
    assert partial and r.text.startswith(partial)
    assert f'<div class="dashnb-reply">{_markdown.to_html(partial)}</div>' in shown[1][1]["text/html"]
    final = shown[-1][1]
    footer = f"turn 1 · {r.summary(input_tokens=True, earlier_turns=0)}"
    assert final["text/html"] == (
        f'<div class="dashnb-ask"><div class="dashnb-reply">{_markdown.to_html(r.text)}</div>'
        f"{footer_html(footer)}</div>"
    )
    assert final["text/plain"] == f"{r.text}\n{footer}"
    # ask() keeps its plain-text HTML display
    shown.clear()
    _ask.ask(FIRST, session=fresh)
    assert "text/html" in shown[-1][1] and "dashnb-reply" not in shown[-1][1]["text/html"]


# ---- %%ask without a kernel: plain text -----------------------------------------------------------

TERMINAL = """
import json, sys
from IPython.core.interactiveshell import InteractiveShell
import dashnb
from dashnb import emulator

emu = emulator.start(rtt_ms=0)
dashnb.session(endpoint=emu)
sh = InteractiveShell.instance()
results = []
def cell(code):
    print("--- cell")
    r = sh.run_cell(code)
    results.append(None if r.success else type(r.error_in_exec).__name__ + ": " + str(r.error_in_exec))
cell("%load_ext dashnb")
cell('%%ask -s "Answer in one sentence."\\nWhat is a TLS handshake?')
cell("%%ask\\nAnd why does skipping it make a call faster?")
cell("%%ask -m qwen-nonexistent\\nThird?")
cell("c = %ask")
c = sh.user_ns["c"]
state = {"turns": len(c), "model": c.model, "system": c.system, "history": c.history,
         "reused": [t.reused for t in c.turns], "results": results}
cell("%%ask --new -m qwen-max\\nHello again")
state["new"] = {"turns": len(sh.run_line_magic("ask", "")), "model": sh.run_line_magic("ask", "").model,
                "system": sh.run_line_magic("ask", "").system, "same": sh.run_line_magic("ask", "") is c}
cell("%%ask\\n  \\n")
cell('%ask -m ""')
state["results"] = results
print("STATE " + json.dumps(state))
"""


def test_ask_magic_without_a_kernel_prints_plain_text(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DASHSCOPE_API_KEY"}
    env["IPYTHONDIR"] = str(tmp_path / "ipython")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(TERMINAL)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    state = json.loads(out.split("STATE ", 1)[1])
    assert state["turns"] == 2 and state["system"] == "Answer in one sentence."  # quotes removed
    assert state["model"] == "qwen-plus"  # the failed -m did not stick
    assert state["reused"] == [False, True]
    results = state["results"]
    assert results[:3] == [None, None, None]
    # A model the service does not know is the call's error, said in the magic's terms.
    assert results[3].startswith("AskError: qwen-nonexistent on emulator") and "Change -m to" in results[3]
    assert results[4] is None
    assert results[5] is None and results[6].startswith("UsageError: %%ask needs a prompt")
    assert results[7].startswith("UsageError: %%ask: model must be a model name")
    assert state["new"] == {"turns": 1, "model": "qwen-max", "system": None, "same": False}
    # The replies and their lines, as plain text (no display machinery without a kernel).
    cells = out.split("--- cell\n")
    first_reply = state["history"][1]["content"]
    assert cells[2].startswith(first_reply + "\nturn 1 · qwen-plus:"), cells[2]
    assert "turn 2 · qwen-plus:" in cells[3] and "reused connection" in cells[3]
    assert "<IPython" not in out and "text/markdown" not in out
    assert "Traceback" not in out + done.stderr


def test_a_half_built_chat_has_a_repr_and_a_bare_one_says_how_to_go_on():
    import traceback

    half = _chat.Chat.__new__(_chat.Chat)  # what a refused argument's traceback holds
    assert repr(half).startswith("<Chat ?, 0 turns")
    try:
        _chat.Chat(model="")
    except ValueError as exc:
        traceback.TracebackException.from_exception(exc, capture_locals=True)  # no AttributeError
    assert 'c.ask("...") sends the first turn' in repr(_chat.Chat())


def test_chat_with_a_question_asks_it_at_once(emu, make_session, capsys):
    c = _chat.chat("What is TLS?", session=make_session(endpoint=emu))
    assert isinstance(c, _chat.Chat) and [m["role"] for m in c.history] == ["user", "assistant"]
    assert "0 earlier turns sent" in capsys.readouterr().out
