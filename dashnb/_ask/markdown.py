"""A model's reply as Markdown that a notebook may render: raw HTML and script links shown as text.

    >>> inert('Use <b>bold</b> or `a <b> tag`.')
    'Use &lt;b>bold&lt;/b> or `a <b> tag`.'
    >>> inert('[docs](javascript:alert(1)) and [ok](https://example.com)')
    '[docs]\\\\(javascript:alert(1)) and [ok](https://example.com)'

A reply is untrusted input (a prompt can carry text written to steer it), but JupyterLab renders
the Markdown a kernel sends in a trusted notebook without sanitizing it: a ``<img onerror=...>``
in a reply would run in the reader's browser. So outside code, every ``<`` becomes ``&lt;`` (it
still reads as ``<``) and a link to a ``javascript:``, ``vbscript:`` or ``data:`` URL loses its
link syntax. Code spans and fenced blocks are left alone: Markdown shows them literally anyway.
Works on a partial reply too (an unclosed fence runs to the end, as in the renderer).
"""

from __future__ import annotations

import re

__all__ = ["escape_footer", "inert"]

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_BACKTICKS = re.compile(r"`+")
_SCRIPT_LINK = re.compile(r"\]\(\s*<?\s*(?=(?:javascript|vbscript|data):)", re.IGNORECASE)
_SCRIPT_REF = re.compile(r"^( {0,3}\[[^\]]+\]):(?=\s*<?\s*(?:javascript|vbscript|data):)", re.IGNORECASE | re.MULTILINE)
_FOOTER_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~])")


def _defuse(prose: str) -> str:
    prose = prose.replace("<", "&lt;")
    prose = _SCRIPT_LINK.sub(lambda m: "]\\(" + m.group(0)[2:], prose)
    return _SCRIPT_REF.sub(lambda m: m.group(1) + "\\:", prose)


def _inline(text: str) -> str:
    """Defuse a paragraph's prose, keeping code spans: a run of n backticks opens a span that the
    next run of exactly n closes; an unmatched run is literal backticks (CommonMark)."""
    out: list[str] = []
    pos = 0  # start of the prose not yet emitted
    scan = 0
    while True:
        m = _BACKTICKS.search(text, scan)
        if m is None:
            break
        run = m.group(0)
        close = None
        for c in _BACKTICKS.finditer(text, m.end()):
            if len(c.group(0)) == len(run):
                close = c
                break
        if close is None:  # literal backticks: keep scanning after them
            scan = m.end()
            continue
        out.append(_defuse(text[pos : m.start()]))
        out.append(text[m.start() : close.end()])
        pos = scan = close.end()
    out.append(_defuse(text[pos:]))
    return "".join(out)


def _prose(lines: list[str]) -> str:
    # Only code spans within one line are kept as they are: where a span may cross a line, a block
    # boundary (a heading, a list item, a blank line) can end it in the renderer, and a tag after
    # that boundary would render. A table row is split at "|" even inside a span, so in a line
    # with a "|" nothing is kept. Erring this way only shows a rare "&lt;" in code literally.
    return "".join(_defuse(line) if "|" in line else _inline(line) for line in lines)


def _opens_fence(line: str) -> str | None:
    m = _FENCE.match(line)
    if m is None:
        return None
    if m.group(1)[0] == "`" and "`" in line[m.end() :]:
        return None  # a backtick in a backtick fence's info string makes it inline code, not a fence
    return m.group(1)


def inert(markdown: str) -> str:
    """``markdown`` with HTML tags and script links made inert outside code (see the module doc)."""
    out: list[str] = []
    prose: list[str] = []
    fence: str | None = None
    for line in markdown.splitlines(keepends=True):
        m = _FENCE.match(line)
        if fence is None:
            opened = _opens_fence(line)
            if opened is not None:
                out.append(_prose(prose))
                prose = []
                fence = opened
                out.append(line)
            else:
                prose.append(line)
        else:
            out.append(line)
            # A fence closes with at least as many of the same character and nothing after them.
            if m is not None and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                if not line[m.end() :].strip():
                    fence = None
    out.append(_prose(prose))
    return "".join(out)


def escape_footer(text: str) -> str:
    """Plain text shown as Markdown literally (the line of timings under a reply).

    >>> escape_footer("reused connection #1 (request 2 on it)")
    'reused connection \\\\#1 (request 2 on it)'
    """
    return _FOOTER_SPECIAL.sub(r"\\\1", text)
