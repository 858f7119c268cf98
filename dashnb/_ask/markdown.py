"""A model's reply as HTML that is safe to show: Markdown rendered for untrusted input, then sanitized.

    >>> to_html('**Use** <b>bold</b> or `a <b> tag`.')
    '<p><strong>Use</strong> &lt;b&gt;bold&lt;/b&gt; or <code>a &lt;b&gt; tag</code>.</p>'
    >>> to_html('[docs](javascript:alert(1)) and [ok](https://example.com)')
    '<p>[docs](javascript:alert(1)) and <a href="https://example.com" rel="noopener noreferrer">ok</a></p>'

A reply is untrusted input: a prompt, a web page or a tool result the model read can steer what it
writes. JupyterLab renders Markdown and HTML that a kernel sends in a session without sanitizing
them, and script on that page can drive the Jupyter API, so a live ``<img onerror=...>`` in a reply
would be code execution on the reader's machine. So the reply is never handed to the front end as
Markdown (which JupyterLab would render by its own rules) nor as raw HTML; it is rendered here, in
two independent layers, each enough on its own for the usual attacks:

1. markdown-it-py, with raw HTML off (HTML in the text is shown as text) and its link validation
   (no ``javascript:``, ``vbscript:``, ``file:`` or ``data:`` links), parses the reply the way a
   Markdown renderer does, so there is no second opinion about where code spans and lines end;
2. nh3 (the Rust sanitizer ammonia) keeps only the tags and attributes Markdown produces and
   links to http, https and mailto URLs.

Images become links to the image (with the alt text): loading an image the reply names would tell
its server that the reply was read, and whatever the URL carries (a reply steered into putting the
conversation in an image URL would leak it). Works on a partial reply too: a streaming display
renders the text so far on every update.
"""

from __future__ import annotations

import functools
import html
import re
from typing import Any

__all__ = ["ALLOWED_SCHEMES", "ALLOWED_TAGS", "to_html"]

#: The only elements a rendered reply may contain: what CommonMark and its tables produce, less images.
ALLOWED_TAGS = frozenset(
    {
        "a",
        "blockquote",
        "br",
        "code",
        "del",
        "em",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "li",
        "ol",
        "p",
        "pre",
        "s",
        "strong",
        "table",
        "tbody",
        "td",
        "th",
        "thead",
        "tr",
        "ul",
    }
)
# No style or class anywhere: a class could dress a reply up as part of JupyterLab's own interface.
_ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
#: URL schemes a link in a reply may use.
ALLOWED_SCHEMES = frozenset({"http", "https", "mailto"})
# Relative links are dropped too: JupyterLab resolves them against the server, where a link can
# open a file or a kernel's page.
_ABSOLUTE = re.compile(rf"(?:{'|'.join(sorted(ALLOWED_SCHEMES))}):", re.IGNORECASE)


def _image_as_link(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    """markdown-it's image rule replaced: a link to the image, its alt text as the label."""
    token = tokens[idx]
    label = self.renderInline(token.children or [], options, env) or "image"
    href = token.attrGet("src") or ""
    return f'<a href="{html.escape(href)}">{label}</a>' if href else label


@functools.cache
def _parser() -> Any:
    # markdown-it-py costs ~30 ms to import: paid at the first reply shown, not at `import dashnb`.
    from markdown_it import MarkdownIt

    # "js-default": CommonMark plus tables and strikethrough, with html=False, linkify and
    # typographer off; validateLink refuses javascript:, vbscript:, file: and most data: URLs.
    md = MarkdownIt("js-default", {"html": False})
    md.add_render_rule("image", _image_as_link)
    return md


def _keep_attribute(tag: str, name: str, value: str) -> str | None:
    return None if name == "href" and not _ABSOLUTE.match(value) else value


def _sanitize(markup: str) -> str:
    import nh3

    return nh3.clean(
        markup,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in _ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(ALLOWED_SCHEMES),
        link_rel="noopener noreferrer",
        attribute_filter=_keep_attribute,
        strip_comments=True,
    )


def to_html(markdown: str) -> str:
    """``markdown`` (a model's reply, whole or partial) as sanitized HTML (see the module doc)."""
    if not isinstance(markdown, str):
        raise TypeError(f"to_html() takes the reply's text as a str, got {type(markdown).__name__}")
    return _sanitize(_parser().render(markdown)).strip()
