"""How a NotebookSession shows itself in a notebook: a small table of its counters, total, sync
(requests, httpx.Client) and async (aiohttp, httpx.AsyncClient).

    >>> from dashnb import PoolConfig
    >>> from dashnb._observe import Observer
    >>> from dashnb._session.view import session_html
    >>> page = session_html("doc", False, "emulator", PoolConfig(), Observer().snapshot())
    >>> "<th>connections_opened</th>" in page, "(open)" in page
    (True, True)
"""

from __future__ import annotations

import html
from typing import Any


def session_html(name: str, closed: bool, label: str, config: Any, snap: Any) -> str:
    """A session as a notebook shows it: its name, state, endpoint label and config, and its
    counters (``snap``: its observer's snapshot)."""
    esc = html.escape
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
    state = "closed" if closed else "open"
    return (
        f'<div class="dashnb-session"><p><b>dashnb session {esc(name)!s}</b> ({state}) '
        f"&rarr; {esc(label)}</p><p><code>{esc(repr(config))}</code></p>"
        f"<table>{table}</table></div>"
    )
