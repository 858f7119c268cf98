"""ask(), chat() and %%ask in JupyterLab: a hostile reply renders as text and links nothing but http(s)/mailto.

A reply is untrusted input, and JupyterLab renders what a kernel sends in a session as it is:
Markdown with its HTML, and HTML with its event handlers. So three calls against the emulator
(which names a question's topic in its reply) ask about a payload that a hand-written Markdown
scrubber let through, and every payload of ``_xss_corpus`` goes through the display those calls
stream into (the emulator names a topic in at most six words, collapsing whitespace, so it
cannot return every payload itself). Any payload that ran would set ``window.__pwned``; the negative
control shows the same payload as raw HTML and sets ``window.__control``, so the page does run
what it is given. One kernel, one page.
"""

from __future__ import annotations

import nbformat
import pytest
from _xss_corpus import PAYLOADS

from . import harness

pytestmark = pytest.mark.browser

NOTEBOOK = "ask_hostile.ipynb"

# Eight words, so that the emulator quotes all of it: an escaped backtick before an <img>, and a
# javascript: link spelled with an entity.
QUESTION = 'What is \\`<img src=x class=pwned onerror="window.__pwned=1">` and [c](javascript&colon;window.__pwned=2)?'

SETUP = f"""\
import dashnb
from dashnb import emulator
emu = emulator.start(rtt_ms=0, token_rate=400, reply_tokens=40)
dashnb.session(endpoint=emu)
%load_ext dashnb
QUESTION = {QUESTION!r}"""

ASK_MAGIC = f"%%ask\n{QUESTION}"
CHAT = "dashnb.chat().ask(QUESTION);"
ASK = "dashnb.ask(QUESTION);"

# The view ask(), chat() and %%ask stream into, given replies no emulator call produces here; in
# cells of at most 30 outputs (JupyterLab folds an output area's outputs after the 50th).
REPLIES = [*PAYLOADS.values(), "**bold** and `code`"]
_PER_CELL = 30
CORPUS = tuple(
    f"""\
from dashnb._ask.view import _View
for text in {REPLIES[i : i + _PER_CELL]!r}:
    view = _View("qwen-plus", markdown=True)
    view.add(text)
    view.finish("turn 9 · a hostile reply")"""
    for i in range(0, len(REPLIES), _PER_CELL)
)

CONTROL = f"""\
from IPython.display import HTML
display(HTML({QUESTION.replace("__pwned", "__control")!r}))"""

CELLS = (SETUP, ASK_MAGIC, CHAT, ASK, *CORPUS, CONTROL)

# What is live in an output: elements that run or load, on* attributes, and links (by the
# browser's own parse of their URL) to anything but http, https and mailto.
_LIVE_JS = """
(output) => {
  const found = [];
  const banned = new Set(['SCRIPT', 'IFRAME', 'FRAME', 'OBJECT', 'EMBED', 'STYLE', 'LINK', 'META', 'BASE',
                          'FORM', 'INPUT', 'BUTTON', 'SVG', 'MATH', 'IMG', 'VIDEO', 'AUDIO', 'SOURCE', 'DETAILS']);
  for (const el of output.querySelectorAll('*')) {
    if (banned.has(el.tagName.toUpperCase())) found.push('<' + el.tagName.toLowerCase() + '>');
    for (const attr of el.attributes) {
      if (attr.name.toLowerCase().startsWith('on')) found.push(attr.name + '= on <' + el.tagName.toLowerCase() + '>');
    }
    if (el.hasAttribute('href') && !['http:', 'https:', 'mailto:'].includes(new URL(el.getAttribute('href'),
        document.baseURI).protocol)) found.push('href=' + el.getAttribute('href'));
  }
  return found;
}
"""


@pytest.fixture
def hostile_dir(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(code) for code in CELLS]
    nbformat.write(nb, tmp_path / NOTEBOOK)
    return tmp_path


def _outputs(page, cell: int):
    return harness.scope(page).locator(".jp-CodeCell").nth(cell).locator(".jp-OutputArea-output")


def _live(page, cell: int) -> list[str]:
    found: list[str] = []
    outputs = _outputs(page, cell)
    for i in range(outputs.count()):
        found += outputs.nth(i).evaluate(_LIVE_JS)
    return found


def test_hostile_replies_stay_text_in_lab(page, start_lab, hostile_dir):
    lab = start_lab(hostile_dir)
    harness.open_notebook(page, lab, NOTEBOOK)
    harness.run_all_cells(page)

    # The negative control ran its handler: this page runs what an output gives it.
    page.wait_for_function("() => window.__control === 1", timeout=30_000)
    assert _live(page, CELLS.index(CONTROL)), "the detector sees nothing live in raw HTML"

    live = {cell: _live(page, CELLS.index(cell)) for cell in (ASK_MAGIC, CHAT, ASK, *CORPUS)}
    assert page.evaluate("() => window.__pwned") is None, live
    assert not any(live.values()), live

    for cell in (ASK_MAGIC, CHAT, ASK):
        reply = _outputs(page, CELLS.index(cell))
        assert reply.count() == 1, (cell, reply.count())
        text = reply.inner_text()
        assert "answer about" in text and 'onerror="window.__pwned=1"' in text, text  # shown, as text
        assert "qwen-plus: first token" in text and "connection #" in text, text  # the footer

    assert sum(_outputs(page, CELLS.index(cell)).count() for cell in CORPUS) == len(REPLIES)
    last = _outputs(page, CELLS.index(CORPUS[-1])).last
    assert last.locator("strong").inner_text() == "bold"  # Markdown still renders
    harness.screenshot(page, "ask-hostile-lab", scroll_to=".jp-OutputArea-output")
