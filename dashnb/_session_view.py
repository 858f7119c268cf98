"""How a NotebookSession shows itself in a notebook: a small table of its counters, total, sync
(requests, httpx.Client) and async (aiohttp, httpx.AsyncClient).

    >>> from dashnb._session import NotebookSession
    >>> from dashnb._session_view import session_html
    >>> s = NotebookSession(endpoint="https://example.invalid", name="doc")
    >>> "<th>connections_opened</th>" in session_html(s)
    True
    >>> s.close()
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ._session import NotebookSession


def session_html(s: NotebookSession) -> str:
    """A session as a notebook shows it: its name, state, endpoint and config, and its counters."""
    esc = html.escape
    snap = s._observer.snapshot()
    rows = [("", "total", "sync (requests, httpx)", "async (aiohttp, httpx)")]
    for field in (
        "requests",
        "connections_opened",
        "connections_reused",
        "connections_open",
        "in_flight",
        "queued",
        "errors",
    ):
        rows.append((field, getattr(snap.total, field), getattr(snap.sync, field), getattr(snap.async_, field)))
    table = "".join(
        "<tr>"
        + "".join(
            f"<{'th' if i == 0 or r == 0 else 'td'}>{esc(str(c))}</{'th' if i == 0 or r == 0 else 'td'}>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for r, row in enumerate(rows)
    )
    state = "closed" if s._closed else "open"
    return (
        f'<div class="dashnb-session"><p><b>dashnb session {esc(s.name)!s}</b> ({state}) '
        f"&rarr; {esc(s._label())}</p><p><code>{esc(repr(s._config))}</code></p>"
        f"<table>{table}</table></div>"
    )
