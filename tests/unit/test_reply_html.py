"""A model's reply is untrusted: rendered for display, no hostile Markdown or HTML in it becomes live.

Every payload of ``_xss_corpus`` goes through the display that ``chat()`` and ``%%ask`` use, whole
and cut at every character (a streaming display renders each partial reply), and what comes out is
parsed as a browser would (html5lib) and checked element by element.
"""

from __future__ import annotations

import pytest
from _xss_corpus import CORPUS, PAYLOADS, REPORTED, problems

from dashnb._ask import markdown as _markdown
from dashnb._ask.view import _Live

# The display's own frame around the rendered reply: divs, the footer's styled in grey.
_FRAME = frozenset({"div"})
_FRAME_STYLE = "style= on <div>"


def _bundle(text: str, footer: str = "turn 1 · qwen-plus: first token 1.0 ms") -> dict[str, str]:
    live = _Live("qwen-plus", markdown=True)
    live.text = text
    live.footer = footer
    return live._repr_mimebundle_()


def test_corpus_is_large_and_has_the_reported_bypasses():
    assert len(CORPUS) >= 30 and len(REPORTED) == 9


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_hostile_reply_is_shown_inert(name):
    """The display sends sanitized HTML (never Markdown a front end would render by its own
    rules), with nothing in it that runs, loads, or links outside http/https/mailto."""
    bundle = _bundle(PAYLOADS[name])
    assert set(bundle) == {"text/html", "text/plain"}, bundle.keys()
    found = problems(bundle["text/html"], allowed_tags=_markdown.ALLOWED_TAGS | _FRAME)
    assert [p for p in found if p != _FRAME_STYLE] == []
    assert (
        _markdown.to_html(PAYLOADS[name]) in bundle["text/html"]
    )  # the reply inside the frame: checked strictly below
    assert bundle["text/plain"].startswith(PAYLOADS[name])  # the plain view shows the reply as it is


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_every_partial_reply_is_inert(name):
    """A streaming display renders the reply so far: every prefix must be as safe as the whole."""
    text = PAYLOADS[name]
    for end in range(1, len(text) + 1):
        found = problems(_markdown.to_html(text[:end]), allowed_tags=_markdown.ALLOWED_TAGS)
        assert found == [], (text[:end], found)


def test_reported_payloads_show_their_markup_as_text():
    # Not dropped silently: the reader sees what the model wrote.
    assert "&lt;img src=x onerror=" in _markdown.to_html(REPORTED["escaped backtick"])
    assert "javascript:window.__pwned=1" in _markdown.to_html(REPORTED["&colon; link"])


@pytest.mark.parametrize(
    "fragment",
    [
        '<a href="javascript:x">a</a>',
        '<a href=" JAVA\tSCRIPT:x">a</a>',
        '<a href="vbscript:x">a</a>',
        '<a href="/api/kernels">a</a>',
        '<a href="data:text/html,x">a</a>',
        '<p onclick="x">a</p>',
        '<p style="color:red">a</p>',
        '<svg><a xlink:href="javascript:x">a</a></svg>',
        "<iframe></iframe>",
        "<img src=https://example.com/x.png>",
        "<form><button>a</button></form>",
        "<span>a</span>",  # outside the allow-list
    ],
)
def test_the_checker_can_fail(fragment):
    """Negative control: the checker flags each kind of live content."""
    assert problems(fragment, allowed_tags=_markdown.ALLOWED_TAGS)


def test_the_corpus_is_hostile_to_a_renderer_that_trusts_it():
    """Negative control: rendered by a Markdown renderer that passes HTML and links through (as
    JupyterLab does for Markdown a kernel sends), most of the corpus is live."""
    from markdown_it import MarkdownIt

    trusting = MarkdownIt("commonmark", {"html": True})
    trusting.validateLink = lambda url: True
    live = [name for name, text in PAYLOADS.items() if problems(trusting.render(text))]
    assert len(live) >= 45, live


def test_markdown_still_renders():
    html = _markdown.to_html(
        "# Title\n\n**bold**, *em*, ~~gone~~, `a < b`\n\n- one\n- two\n\n1. first\n\n"
        "> quoted\n\n```python\nif a < b:\n    pass\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "[docs](https://help.aliyun.com/) <https://example.com> [mail](mailto:a@example.com)"
    )
    for piece in (
        "<h1>Title</h1>",
        "<strong>bold</strong>",
        "<em>em</em>",
        "<s>gone</s>",
        "<code>a &lt; b</code>",
        "<li>one</li>",
        "<ol>",
        "<blockquote>",
        "<pre><code>if a &lt; b:\n    pass\n</code></pre>",
        "<td>1</td>",
        '<a href="https://help.aliyun.com/" rel="noopener noreferrer">docs</a>',
        '<a href="https://example.com" rel="noopener noreferrer">https://example.com</a>',
        '<a href="mailto:a@example.com" rel="noopener noreferrer">mail</a>',
    ):
        assert piece in html, (piece, html)


def test_an_image_becomes_a_link_and_loads_nothing():
    html = _markdown.to_html("![a chart](https://example.com/chart.png?q=1)")
    assert html == '<p><a href="https://example.com/chart.png?q=1" rel="noopener noreferrer">a chart</a></p>'


def test_footer_is_plain_text():
    bundle = _bundle("Hi.", footer="turn 1 · <b>model</b> *x* #1")
    assert "turn 1 · &lt;b&gt;model&lt;/b&gt; *x* #1" in bundle["text/html"]
    assert bundle["text/plain"] == "Hi.\nturn 1 · <b>model</b> *x* #1"


def test_to_html_says_what_it_takes():
    with pytest.raises(TypeError, match="reply's text as a str, got bytes"):
        _markdown.to_html(b"hi")  # type: ignore[arg-type]
