"""Per-call timing records and the statistics computed from them (no I/O, standard library only).

    >>> from dashnb._stats import CallTiming, percentile, summarize
    >>> percentile([10.0, 20.0, 30.0, 40.0], 50)
    25.0
    >>> calls = [CallTiming("shared", i, 0, start=i * 0.1, end=i * 0.1 + 0.04, status=200) for i in range(5)]
    >>> s = summarize("shared", calls, wall_s=0.5)
    >>> round(s.p50_ms, 3), s.calls, s.errors
    (40.0, 5, 0)

Samples are frozen (``CallTiming``) and every figure is computed from them, so a summary can
always be recomputed and checked. Latency statistics use successful calls only; failed calls
are counted in ``errors`` (a refused connection returns fast and would flatter the median).
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["CallTiming", "ModeSummary", "format_table", "html_table", "percentile", "summarize"]


@dataclasses.dataclass(frozen=True)
class CallTiming:
    """One SDK call: when it ran (``time.perf_counter()`` seconds) and what it did on the wire.

    ``reused``, ``queued_s``, ``connect_s``, ``tls_s``, ``ttfb_s`` and ``connection_id`` are
    ``None`` where the stack does not expose them (the SDK's own sessions are not instrumented;
    aiohttp opens TCP and TLS in one step, so on async paths ``connect_s`` holds both and
    ``tls_s`` is ``None``). ``error`` is the DashScope error code for an HTTP error, or the
    exception's class name for a transport failure; ``status`` is ``None`` when no response came.
    """

    mode: str
    index: int
    block: int
    start: float
    end: float
    total: float = dataclasses.field(init=False)
    status: int | None = None
    error: str | None = None
    reused: bool | None = None
    queued_s: float | None = None
    connect_s: float | None = None
    tls_s: float | None = None
    ttfb_s: float | None = None
    connection_id: int | None = None
    attempts: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "total", self.end - self.start)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def handshake_s(self) -> float | None:
        """TCP connect + TLS handshake, when this call opened a connection and it was timed."""
        if self.connect_s is None and self.tls_s is None:
            return None
        return (self.connect_s or 0.0) + (self.tls_s or 0.0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile with linear interpolation between ranks (numpy's default method).

    NaN for no values; ``q`` is in percent, 0 to 100.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be between 0 and 100, got {q!r}")
    xs = sorted(values)
    if not xs:
        return math.nan
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclasses.dataclass(frozen=True)
class ModeSummary:
    """The figures of one mode. Latencies in milliseconds over successful calls.

    ``client_connections``: connections the client opened, as dashnb's hooks (or, for the SDK's
    own session, urllib3's pool counters) saw them; ``tcp_connections`` / ``tls_handshakes``:
    what the emulator accepted in the same time. ``None`` means not observable.
    ``throughput_rps``: successful calls per second of the mode's own wall time.
    """

    mode: str
    calls: int = 0
    errors: int = 0
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    throughput_rps: float | None = None
    wall_s: float = 0.0
    concurrency: int = 1
    client_connections: int | None = None
    tcp_connections: int | None = None
    tls_handshakes: int | None = None
    reused_calls: int | None = None
    handshake_ms: float | None = None
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def connections_agree(self) -> bool | None:
        """Whether client and server counted the same connections (None if either is unknown)."""
        if self.client_connections is None or self.tcp_connections is None:
            return None
        return self.client_connections == self.tcp_connections


def _ms(x: float) -> float:
    return x * 1e3


def summarize(
    mode: str,
    calls: Sequence[CallTiming],
    *,
    wall_s: float,
    concurrency: int = 1,
    client_connections: int | None = None,
    server: dict | None = None,
    skipped: str | None = None,
) -> ModeSummary:
    """Reduce a mode's samples to a ModeSummary; ``server`` holds the emulator's counter deltas."""
    if skipped is not None:
        return ModeSummary(mode=mode, concurrency=concurrency, skipped=skipped)
    good = [c.total for c in calls if c.ok]
    errors = sum(1 for c in calls if not c.ok)
    observed = [c.reused for c in calls if c.reused is not None]
    handshakes = [c.handshake_s for c in calls if c.handshake_s is not None]
    stats: dict[str, Any] = {}
    if good:
        stats = dict(
            p50_ms=_ms(percentile(good, 50)),
            p90_ms=_ms(percentile(good, 90)),
            p99_ms=_ms(percentile(good, 99)),
            mean_ms=_ms(sum(good) / len(good)),
            min_ms=_ms(min(good)),
            max_ms=_ms(max(good)),
        )
    server = server or {}
    return ModeSummary(
        mode=mode,
        calls=len(calls),
        errors=errors,
        **stats,
        throughput_rps=(len(good) / wall_s) if wall_s > 0 else None,
        wall_s=wall_s,
        concurrency=concurrency,
        client_connections=client_connections,
        tcp_connections=server.get("tcp_connections"),
        tls_handshakes=server.get("tls_handshakes"),
        reused_calls=sum(observed) if observed else None,
        handshake_ms=_ms(sum(handshakes) / len(handshakes)) if handshakes else None,
    )


# -- rendering ----------------------------------------------------------------------------------

_COLUMNS = (
    # header, width, formatter
    ("mode", 15, lambda s: s.mode),
    ("calls", 6, lambda s: str(s.calls)),
    ("err", 4, lambda s: str(s.errors)),
    ("p50 ms", 8, lambda s: _num(s.p50_ms)),
    ("p90 ms", 8, lambda s: _num(s.p90_ms)),
    ("p99 ms", 8, lambda s: _num(s.p99_ms)),
    ("mean ms", 8, lambda s: _num(s.mean_ms)),
    ("calls/s", 8, lambda s: _num(s.throughput_rps)),
    ("conns client/server", 20, lambda s: f"{_int(s.client_connections)} / {_int(s.tcp_connections)}"),
)


def _num(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.1f}"


def _int(x: int | None) -> str:
    return "?" if x is None else str(x)


def format_table(summaries: Sequence[ModeSummary]) -> str:
    """A fixed-width text table (what ``print(result)`` and the CLI show)."""
    head = "  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w, _) in enumerate(_COLUMNS))
    lines = [head, "-" * len(head)]
    for s in summaries:
        if s.skipped:
            lines.append(f"{s.mode.ljust(_COLUMNS[0][1])}  skipped: {s.skipped}")
            continue
        lines.append("  ".join(f(s).rjust(w) if i else f(s).ljust(w) for i, (_, w, f) in enumerate(_COLUMNS)))
    return "\n".join(lines)


def html_table(summaries: Sequence[ModeSummary], *, caption: str = "", notes: Sequence[str] = ()) -> str:
    """The same table as HTML, for ``_repr_html_``."""
    esc = html.escape
    head = "".join(f"<th style='text-align:right'>{esc(h)}</th>" for h, _, _ in _COLUMNS)
    rows = []
    for s in summaries:
        if s.skipped:
            rows.append(
                f"<tr><th style='text-align:left'>{esc(s.mode)}</th>"
                f"<td colspan='{len(_COLUMNS) - 1}' style='text-align:left'><i>skipped: "
                f"{esc(s.skipped)}</i></td></tr>"
            )
            continue
        cells = "".join(f"<td style='text-align:right'>{esc(f(s))}</td>" for _, _, f in _COLUMNS[1:])
        rows.append(f"<tr><th style='text-align:left'>{esc(s.mode)}</th>{cells}</tr>")
    cap = f"<caption style='text-align:left'>{caption}</caption>" if caption else ""
    foot = "".join(f"<p style='margin:2px 0'>{esc(n)}</p>" for n in notes)
    return f"<div class='dashnb-compare'><table>{cap}<tr>{head}</tr>{''.join(rows)}</table>{foot}</div>"
