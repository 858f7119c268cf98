"""%load_ext dashnb in a real Jupyter kernel: two %%ask cells make one conversation on one connection,
and the reply arrives as HTML rendered from its Markdown and sanitized, updated while it streams."""

from __future__ import annotations

import html
import json
import re

import pytest
from _kernels import iopub_messages, run_cell, running_kernel

from dashnb._ask import markdown as _markdown
from dashnb.emulator._replies import count_tokens

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

jupyter_client = pytest.importorskip("jupyter_client")

SETUP = """
import json
import dashnb
from dashnb import emulator
# 100 tokens a second: a 16-token reply takes about 160 ms, long enough to be drawn in steps.
emu = emulator.start(rtt_ms=0, token_rate=100)
s = dashnb.session(endpoint=emu)  # the notebook's session, which %%ask uses
"""

FIRST = '%%ask -s "Answer in one sentence."\nWhat is a TLS handshake?'
SECOND = "%%ask\nAnd why does skipping it make a call faster?"

REPORT = """
c = %ask
print(json.dumps({
    "system": c.system,
    "history": c.history,
    "turns": [{"reused": t.reused, "connection_id": t.connection_id, "on_connection": t.requests_on_connection,
               "input_tokens": t.usage.input_tokens, "output_tokens": t.usage.output_tokens} for t in c.turns],
    "server": {k: emu.stats()[k] for k in ("tcp_connections", "requests_per_connection")},
    "key": emu.api_key,
}))
"""

EMULATOR_KEY = re.compile(r"\bemu-[A-Za-z0-9_-]{12,}")


@pytest.fixture
def kernel(tmp_path):
    with running_kernel(tmp_path) as (km, kc):
        yield km, kc


def _displays(messages):
    """(kind, display_id, data) of the display messages, in order; and the other outputs."""
    shown, other = [], []
    for msg in messages:
        kind, content = msg["msg_type"], msg["content"]
        if kind in ("display_data", "update_display_data"):
            shown.append((kind, content.get("transient", {}).get("display_id"), content["data"]))
        elif kind in ("stream", "error", "execute_result"):
            other.append((kind, content))
    return shown, other


def _reply_part(plain: str) -> str:
    """The reply so far, from the text/plain view (the reply, a newline, the footer)."""
    return plain.rsplit("\n", 1)[0] if "\n" in plain else ""


def test_two_ask_cells_make_one_conversation_rendered_as_html(kernel):
    km, kc = kernel
    out = run_cell(kc, SETUP)
    assert "Error" not in out, out
    out = run_cell(kc, "%load_ext dashnb")
    assert out == "", out
    cells = [iopub_messages(kc, kc.execute(code)) for code in (FIRST, SECOND)]
    state = json.loads(run_cell(kc, REPORT))
    key = state.pop("key")

    # The second turn carried the first: the conversation's history, and what the server counted
    # (turn 2's input holds turn 1's prompt and reply besides its own prompt).
    history = state["history"]
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    assert history[0]["content"] == "What is a TLS handshake?"
    assert history[2]["content"] == "And why does skipping it make a call faster?"
    assert state["system"] == "Answer in one sentence."
    one, two = state["turns"]
    grown = two["input_tokens"] - one["input_tokens"]
    assert grown >= count_tokens(history[1]["content"]) + count_tokens(history[2]["content"]), state

    # One connection for both cells: the second turn reused the first's.
    assert (one["reused"], two["reused"]) == (False, True)
    assert two["connection_id"] == one["connection_id"] and two["on_connection"] == 2
    assert state["server"] == {"tcp_connections": 1, "requests_per_connection": [2]}

    for n, (messages, reply) in enumerate(zip(cells, (history[1]["content"], history[3]["content"])), start=1):
        shown, other = _displays(messages)
        assert other == [], other  # no error, no printed text: everything is in the display
        kinds = [k for k, _, _ in shown]
        assert kinds[0] == "display_data" and set(kinds[1:]) == {"update_display_data"}, kinds
        assert len({d for _, d, _ in shown}) == 1 and shown[0][1], "one display, updated in place"
        for _, _, data in shown:
            assert set(data) == {"text/html", "text/plain"}, data.keys()
        # Drawn while it streams: some update shows part of the reply, not yet all of it.
        partial = [_reply_part(d["text/plain"]) for _, _, d in shown[1:-1]]
        assert any(p and p != reply and reply.startswith(p) for p in partial), partial
        for _, _, d in shown[1:-1]:  # each update is the partial reply, rendered
            assert (
                f'<div class="dashnb-reply">{_markdown.to_html(_reply_part(d["text/plain"]))}</div>' in d["text/html"]
            )
        final = shown[-1][2]
        rendered = f'<div class="dashnb-ask"><div class="dashnb-reply">{_markdown.to_html(reply)}</div>'
        assert final["text/html"].startswith(rendered), final["text/html"]
        assert f"turn {n} · qwen-plus" in final["text/html"]
        assert final["text/plain"].startswith(reply + f"\nturn {n} · qwen-plus")
        assert ("new connection" if n == 1 else "reused connection") in final["text/plain"]
        assert f"{(one, two)[n - 1]['input_tokens']} in + " in final["text/plain"]
        everything = json.dumps([m["content"] for m in messages])
        assert key not in everything and not EMULATOR_KEY.search(everything)


def _reply_displays(messages, reply):
    """How many outputs of a cell show ``reply``: displays (their last state) and results."""
    last: dict = {}
    results = []
    for msg in messages:
        kind, content = msg["msg_type"], msg["content"]
        if kind in ("display_data", "update_display_data"):
            last[content.get("transient", {}).get("display_id") or id(msg)] = content["data"]
        elif kind == "execute_result":
            results.append(content["data"])
    shown = [*last.values(), *results]
    return sum(reply in d.get("text/plain", "") or html.escape(reply) in d.get("text/html", "") for d in shown)


def test_each_reply_is_shown_once_and_chat_and_ask_read_as_typed(kernel):
    km, kc = kernel
    assert "Error" not in run_cell(kc, SETUP)
    assert run_cell(kc, "%load_ext dashnb") == ""
    cells = {
        "ask": 'dashnb.ask("What is a TLS handshake?")',
        "chat": 'c = dashnb.chat("What is TLS?")\nc.ask("And why does it cost a round trip?")',
        "chat_last": 'dashnb.chat("Why pool connections?")',
        "line": "%ask What's a pooled connection?",
        "model": "%ask -m qwen-pls Hello?",
        "later": "r = next(v for v in Out.values() if isinstance(v, dashnb.AskResult))\nr",
    }
    got = {name: iopub_messages(kc, kc.execute(code)) for name, code in cells.items()}
    state = json.loads(
        run_cell(
            kc,
            "print(json.dumps({'chat': [m['role'] for m in c.history], 'reply': c.last.text, 'ask': r.text,"
            " 'line': get_ipython().run_line_magic('ask', '').history[-2:], 'first': repr(dashnb.chat())}))",
        )
    )

    # One display per reply: streamed, then no result repeating it (the cell's last line).
    assert _reply_displays(got["ask"], state["ask"]) == 1
    assert _reply_displays(got["chat"], state["reply"]) == 1
    assert not [m for m in got["ask"] if m["msg_type"] == "execute_result"]
    # In a later cell the result shows itself.
    assert _reply_displays(got["later"], state["ask"]) == 1
    # chat("question") asked at once and returned the conversation, shown without repeating it.
    assert state["chat"] == ["user", "assistant", "user", "assistant"]
    shown = [m["content"]["data"]["text/plain"] for m in got["chat_last"] if m["msg_type"] == "display_data"]
    assert any(t.startswith("<Chat qwen-plus, 1 turn") for t in shown) and "assistant:" not in shown[-1], shown
    # Each turn says how many earlier turns it sent.
    footers = [m["content"]["data"]["text/plain"] for m in got["chat"] if m["msg_type"] == "update_display_data"]
    assert any("1 earlier turn sent" in f for f in footers), footers
    # %ask question is a line magic that asks.
    assert state["line"][0] == {"role": "user", "content": "What's a pooled connection?"}, got["line"]
    # A wrong model: the call's error, no traceback, a short "did you mean", said as typed (-m).
    errors = [m["content"] for m in got["model"] if m["msg_type"] == "error"]
    assert len(errors) == 1 and errors[0]["ename"] == "AskError", errors
    text = "\n".join(errors[0]["traceback"])
    assert "Did you mean 'qwen-plus'" in text and "Change -m to" in text and "Traceback" not in text, text
    assert text.count("qwen") <= 8, text  # a few close names, not the catalogue
    assert 'c.ask("...")' in state["first"]  # a bare chat() says how to go on
