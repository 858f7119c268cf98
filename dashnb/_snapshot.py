"""What a session's counters look like from outside: frozen snapshots per path (``PathStats``,
``SessionStats``) and ``StatsResult``, the dict ``NotebookSession.stats()`` returns and shows
as one line in a notebook. Pure values: the counting itself is ``_observe.Observer``'s.
"""

from __future__ import annotations

import dataclasses

__all__ = ["PathStats", "SessionStats", "StatsResult"]


@dataclasses.dataclass(frozen=True)
class PathStats:
    connections_opened: int = 0
    connections_reused: int = 0
    connections_closed: int = 0
    connections_open: int = 0
    requests: int = 0
    in_flight: int = 0
    queued: int = 0
    errors: int = 0

    def __add__(self, other: PathStats) -> PathStats:
        return PathStats(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))


@dataclasses.dataclass(frozen=True)
class SessionStats:
    sync: PathStats
    async_: PathStats

    @property
    def total(self) -> PathStats:
        return self.sync + self.async_

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self.total)
        out["sync"] = dataclasses.asdict(self.sync)
        out["async"] = dataclasses.asdict(self.async_)
        return out


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class StatsResult(dict):
    """What ``NotebookSession.stats()`` returns: the counters as a dict (so ``st["requests"]``,
    ``st["async"]["connections_opened"]``, ``dict(st)`` and ``json.dumps(st)`` work as they
    always did), shown as one line of what matters instead of 24 counters.

        >>> sync = PathStats(requests=5, connections_opened=1, connections_reused=4, connections_open=1)
        >>> st = StatsResult(SessionStats(sync, PathStats()))
        >>> st
        <session stats: 5 requests, 1 connection opened, 4 reused, 1 open, 0 errors>
        >>> st["connections_reused"], st.connections_reused, st["sync"]["requests"]
        (4, 4, 5)
    """

    # The headline counters, in the order the one-line repr and the HTML table show them.
    SHOWN = ("requests", "connections_opened", "connections_reused", "connections_open", "in_flight", "errors")

    def __init__(self, snapshot: SessionStats) -> None:
        super().__init__(snapshot.as_dict())

    def __getattr__(self, name: str):
        # st.connections_opened as well as st["connections_opened"] (totals over both paths).
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        parts = [
            _plural(self["requests"], "request"),
            f"{_plural(self['connections_opened'], 'connection')} opened",
            f"{self['connections_reused']} reused",
            f"{self['connections_open']} open",
        ]
        if self["in_flight"]:
            parts.append(f"{self['in_flight']} in flight")
        parts.append(_plural(self["errors"], "error"))
        return f"<session stats: {', '.join(parts)}>"

    def _repr_pretty_(self, p, cycle) -> None:  # IPython's plain-text display: the same one line
        p.text(repr(self))

    def _repr_html_(self) -> str:
        labels = {
            "requests": "requests",
            "connections_opened": "connections opened",
            "connections_reused": "connections reused",
            "connections_open": "open now",
            "in_flight": "in flight",
            "errors": "errors",
        }
        cell = ' style="text-align:right"'
        head = "<tr><th></th><th>total</th><th>sync (requests, httpx)</th><th>async (aiohttp, httpx)</th></tr>"
        rows = "".join(
            f'<tr><th style="text-align:left">{labels[k]}</th><td{cell}>{self[k]}</td>'
            f"<td{cell}>{self['sync'][k]}</td><td{cell}>{self['async'][k]}</td></tr>"
            for k in self.SHOWN
        )
        return f'<table class="dashnb-stats">{head}{rows}</table>'
