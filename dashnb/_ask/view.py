"""The reply as it streams into the cell: an updating display in a notebook, stdout elsewhere.

>>> from dashnb._ask.view import _Live
>>> live = _Live("qwen-plus")
>>> live.text = "Hi."
>>> print(repr(live))
Hi.
qwen-plus: waiting for the first token...
"""

from __future__ import annotations

import sys
import time
from typing import Any

from .markdown import to_html
from .result import _html, footer_html

# Redraw a streaming display at most this often: a long reply has hundreds of chunks, and
# each redraw is a message to the front end.
_REDRAW_EVERY_S = 0.05


class _Live:
    """What is on screen while a reply streams; displayed through an IPython display handle.

    As HTML: the reply as plain text or, for a conversation, rendered from Markdown and sanitized
    (``_markdown``), drawn again from the whole text so far on every update; the footer is always
    plain text. text/plain too, for front ends that render no HTML. Never ``text/markdown``: the
    front end would render that by its own rules, HTML in it included.
    """

    def __init__(self, model: str, *, markdown: bool = False) -> None:
        self.text = ""
        self.footer = f"{model}: waiting for the first token..."
        self.markdown = markdown

    def __repr__(self) -> str:
        return f"{self.text}\n{self.footer}" if self.text else self.footer

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        if self.markdown:
            shown = f'<div class="dashnb-reply">{to_html(self.text)}</div>' if self.text else ""
            return {
                "text/html": f'<div class="dashnb-ask">{shown}{footer_html(self.footer)}</div>',
                "text/plain": repr(self),
            }
        return {"text/html": _html(self.text, self.footer), "text/plain": repr(self)}


def _notebook_display():
    """IPython's ``display`` when running in a kernel with a front end, else None.

    A script never imported IPython, so looking in sys.modules keeps scripts from paying for it.
    """
    if "IPython" not in sys.modules:
        return None
    try:
        from IPython import get_ipython
        from IPython.display import display
    except Exception:  # a broken IPython install: fall back to printing
        return None
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return None  # the terminal IPython has no display ids to update
    return display


class _View:
    """Shows the reply as it grows: a display handle in a notebook, stdout elsewhere."""

    def __init__(self, model: str, *, markdown: bool = False) -> None:
        self._display = _notebook_display()
        self._live = _Live(model, markdown=markdown)
        self._handle = None
        self._last = 0.0
        if self._display is not None:
            self._handle = self._display(self._live, display_id=True)

    @property
    def in_notebook(self) -> bool:
        """Whether the reply is shown in a notebook display (else it went to stdout)."""
        return self._handle is not None

    def add(self, piece: str) -> None:
        self._live.text += piece
        if self._handle is None:
            sys.stdout.write(piece)
            sys.stdout.flush()
            return
        now = time.perf_counter()
        if now - self._last >= _REDRAW_EVERY_S:
            self._last = now
            self._handle.update(self._live)

    def finish(self, footer: str) -> None:
        self._live.footer = footer
        if self._handle is None:
            if self._live.text:
                sys.stdout.write("\n")
            sys.stdout.write(footer + "\n")
            sys.stdout.flush()
        else:
            self._handle.update(self._live)

    def fail(self, message: str) -> None:
        self.finish(f"failed: {message}")
