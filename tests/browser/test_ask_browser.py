"""%%ask in JupyterLab: the reply renders as Markdown, and HTML in a reply stays text.

A reply is untrusted input, and JupyterLab renders the Markdown a kernel sends in a trusted
notebook without sanitizing it; the negative control shows that a plain ``Markdown`` display of
the same text does run its HTML, so the check on ``%%ask``'s display can fail.
"""

from __future__ import annotations

import nbformat
import pytest

from . import harness

pytestmark = pytest.mark.browser

NOTEBOOK = "ask_markdown.ipynb"

# What a steered reply could carry: markup that should render, HTML and a script link that must not.
HOSTILE = (
    "**bold** and `a <b> in code`\n\n"
    '<img src="x.png" class="pwned" onerror="window.__pwned = 1">\n\n'
    "[a link](javascript:window.__pwned=2)"
)

SETUP = """\
import dashnb
from dashnb import emulator
emu = emulator.start(rtt_ms=0, token_rate=200)
dashnb.session(endpoint=emu)
%load_ext dashnb"""

ASK = '%%ask -s "Answer in one sentence."\nWhat is a TLS handshake?'

# The reply view %%ask uses, given a reply no model call would produce here.
INERT = f"""\
from dashnb._ask.view import _Live
live = _Live("qwen-plus", markdown=True)
live.text = {HOSTILE!r}
live.footer = "turn 9 · a hostile reply"
display(live)"""

CONTROL = f"""\
from IPython.display import Markdown
display(Markdown({HOSTILE!r}))"""


@pytest.fixture
def ask_dir(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(code) for code in (SETUP, ASK, INERT, CONTROL)]
    nbformat.write(nb, tmp_path / NOTEBOOK)
    return tmp_path


def _markdown_output(page, cell: int):
    return harness.scope(page).locator(".jp-CodeCell").nth(cell).locator(".jp-OutputArea .jp-RenderedMarkdown")


def test_ask_renders_markdown_and_keeps_reply_html_inert(page, start_lab, ask_dir):
    lab = start_lab(ask_dir)
    harness.open_notebook(page, lab, NOTEBOOK)
    harness.run_all_cells(page)

    reply = _markdown_output(page, 1)
    assert reply.count() == 1
    footer = reply.locator("em").last.inner_text()
    assert footer.startswith("turn 1 · qwen-plus: first token") and "connection #" in footer, footer
    assert reply.locator("p").first.inner_text().strip()  # the reply's text, above the footer

    inert = _markdown_output(page, 2)
    assert inert.locator("strong").inner_text() == "bold"  # Markdown renders
    assert inert.locator("code").inner_text() == "a <b> in code"
    assert inert.locator("img").count() == 0 and '<img src="x.png"' in inert.inner_text()
    assert inert.locator("a[href^='javascript']").count() == 0
    harness.screenshot(page, "ask-markdown-lab", scroll_to=".jp-RenderedMarkdown")

    control = _markdown_output(page, 3)
    assert control.locator("img.pwned").count() == 1, "JupyterLab no longer renders raw HTML in Markdown"
    page.wait_for_function("() => window.__pwned === 1", timeout=10_000)  # and its handler ran
