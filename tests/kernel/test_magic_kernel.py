"""%load_ext dashnb in a real Jupyter kernel: two %%ask cells make one conversation on one connection,
and the reply arrives as HTML rendered from its Markdown and sanitized, updated while it streams."""

from __future__ import annotations

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
