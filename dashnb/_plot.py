"""Pictures of measurements: latency distributions and a per-call timeline.

    >>> fig = plot_measurements(dashnb.compare(calls=20).measurements)   # doctest: +SKIP
    >>> plot_measurements({}).get_axes()[0].get_title()                 # nothing measured: empty axes
    'Latency distribution'

Imported on first use (by ``Measurement.plot`` / ``Comparison.plot`` and the lab), so it may
import matplotlib at the top. It draws on a bare ``Figure``, never pyplot: a pyplot figure would
show twice in Jupyter, and a Figure renders once as a PNG through the formatter set up here.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ._extras import lab_extra_error

try:
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
except ModuleNotFoundError as _exc:  # a base install: plots come with the [lab] extra
    raise (lab_extra_error(_exc, "plotting measurements") or _exc) from _exc

if TYPE_CHECKING:  # pragma: no cover
    from ._lab_settings import LabSettings, PlotScale
    from ._results import Comparison, Measurement

__all__ = ["lab_figure", "lab_figure_png", "plot_measurements"]


def _show_figures_as_png(figure_type) -> None:
    """Let IPython render a bare Figure as a picture. pyplot's inline backend registers this only
    once pyplot is imported, which dashnb avoids (a pyplot figure would also show twice)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return
    png = shell.display_formatter.formatters["image/png"]
    try:
        png.lookup_by_type(figure_type)
        return  # already shown as a picture (e.g. after %matplotlib inline)
    except KeyError:
        pass
    from IPython.core.pylabtools import print_figure

    png.for_type(figure_type, lambda fig: print_figure(fig, "png", bbox_inches="tight"))


def plot_measurements(measurements: Mapping[str, Measurement], *, max_calls: int = 60) -> Figure:
    """Left: latency distribution (ECDF) per mode. Right: a per-call timeline of each mode's
    first block, each bar split into waiting for a slot, connect + TLS handshake, and request."""
    from ._lab_settings import mode_color

    _show_figures_as_png(Figure)
    shown = {k: m for k, m in measurements.items() if not m.skipped and m.calls}
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    ax_dist, ax_line = fig.subplots(1, 2, width_ratios=(1, 1.3))
    colors = {}
    for name, m in shown.items():
        xs = sorted(c.total * 1e3 for c in m.calls if c.ok)
        if not xs:
            continue
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        (line,) = ax_dist.step(
            xs, ys, where="post", color=mode_color(name), label=f"{name} (p50 {m.summary.p50_ms:.0f} ms)"
        )
        colors[name] = line.get_color()
    ax_dist.set_xlabel("call latency (ms)")
    ax_dist.set_ylabel("fraction of calls at most this slow")
    ax_dist.set_title("Latency distribution")
    ax_dist.grid(alpha=0.3)
    if colors:
        ax_dist.legend(fontsize="small", loc="lower right")
        lo = min(min(c.total for c in m.calls if c.ok) for m in shown.values() if any(c.ok for c in m.calls))
        hi = max(max(c.total for c in m.calls if c.ok) for m in shown.values() if any(c.ok for c in m.calls))
        if lo > 0 and hi / lo > 20:
            ax_dist.set_xscale("log")

    per_mode = max(5, max_calls // max(1, len(shown)))
    row, ticks, labels = 0, [], []
    seg = {"queued": "#bbbbbb", "handshake": "tab:orange", "request": "tab:blue"}
    for name, m in shown.items():
        first = sorted(m.calls, key=lambda c: c.start)[:per_mode]
        # Blocks ran apart (other modes ran in between): lay this mode's blocks end to end.
        offset, shift, prev = 0.0, {}, None
        for c in first:
            if c.block != prev:
                span_start = min(x.start for x in first if x.block == c.block)
                shift[c.block] = offset - span_start
                offset += max(x.end for x in first if x.block == c.block) - span_start
                prev = c.block
        top = row
        for c in first:
            x = (c.start + shift[c.block]) * 1e3
            q = (c.queued_s or 0.0) * 1e3
            h = (c.handshake_s or 0.0) * 1e3
            rest = max(0.0, c.total * 1e3 - q - h)
            for width, key in ((q, "queued"), (h, "handshake"), (rest, "request")):
                if width > 0:
                    ax_line.barh(row, width, left=x, height=0.8, color=seg[key], edgecolor="none" if c.ok else "red")
                x += width
            row += 1
        ticks.append((top + row - 1) / 2)
        labels.append(name)
        row += 1  # a gap between modes
    ax_line.set_yticks(ticks, labels)
    ax_line.invert_yaxis()
    ax_line.set_xlabel("ms of the mode's own run time (its blocks laid end to end)")
    ax_line.set_title("Per call: connect + TLS handshake vs request")
    ax_line.legend(
        handles=[
            Patch(color=seg["handshake"], label="connect + TLS handshake"),
            Patch(color=seg["request"], label="request (to last byte)"),
            Patch(color=seg["queued"], label="waiting for a slot"),
        ],
        fontsize="small",
        loc="lower right",
    )
    return fig


# The lab's picture: small and quick to draw (it is redrawn on every slider move).


def lab_figure(
    result: Comparison,
    settings: LabSettings | None = None,
    *,
    scale: PlotScale | None = None,
    pinned: Comparison | None = None,
    y_axis: str = "keep",
    figsize: tuple[float, float] = (10, 3.6),
) -> Figure:
    """Latency of every call per mode (dots; a bar at the p50) and connections opened per mode.

    Each mode has its fixed colour (``mode_color``). ``scale`` fixes the axes (the lab keeps it
    between runs); calls above a locked scale are marked at the top. ``pinned``: a run drawn as
    dashed ghost marks behind this one, for before/after.
    """
    from ._lab_settings import PlotScale, mode_color

    fig = Figure(figsize=figsize)
    # Fixed margins, in inches (room for tick labels whatever the size): the constrained layout
    # engine costs about as much as drawing the plot.
    width, height = figsize
    fig.subplots_adjust(
        left=0.7 / width, right=1 - 0.2 / width, bottom=0.72 / height, top=1 - 0.58 / height, wspace=0.3
    )
    ax_lat, ax_conn = fig.subplots(1, 2, width_ratios=(1.6, 1))
    shown = [m for m in result if not m.skipped]
    names = [m.mode for m in shown]
    colors = [mode_color(name) for name in names]
    scale = scale or PlotScale.fit(result, pinned)
    top = scale.latency_ms
    before = {m.mode: m for m in pinned if not m.skipped} if pinned is not None else {}
    for x, (m, color) in enumerate(zip(shown, colors)):
        ghost = before.get(m.mode)
        if ghost is not None and ghost.summary.p50_ms is not None:
            # The pinned run: an outline where its bar was, hollow dots where its calls were.
            ax_lat.bar(x, ghost.summary.p50_ms, width=0.72, fill=False, edgecolor=color, linestyle="--", linewidth=1.4)
            old = [c.total * 1e3 for c in ghost.calls if c.ok]
            ax_lat.scatter(
                _spread(x, len(old)), [min(v, top) for v in old], s=14, facecolors="none", edgecolors=color, alpha=0.6
            )
        ok = [c.total * 1e3 for c in m.calls if c.ok]
        if m.summary.p50_ms is not None:
            ax_lat.bar(x, m.summary.p50_ms, width=0.6, color=color, alpha=0.35)
        inside = [(px, v) for px, v in zip(_spread(x, len(ok)), ok) if v <= top]
        above = [px for px, v in zip(_spread(x, len(ok)), ok) if v > top]
        ax_lat.scatter([p for p, _ in inside], [v for _, v in inside], s=14, color=color, zorder=3)
        if above:  # only with a locked axis: say so instead of silently clipping
            ax_lat.scatter(above, [top] * len(above), s=30, marker="^", color=color, zorder=3, clip_on=False)
            ax_lat.annotate(
                f"{len(above)} above",
                (x, top),
                ha="center",
                va="top",
                fontsize="small",
                xytext=(0, -6),
                textcoords="offset points",
            )
        if m.summary.errors:
            ax_lat.annotate(
                f"{m.summary.errors} failed",
                (x, 0),
                ha="center",
                va="bottom",
                color="red",
                fontsize="small",
                xytext=(0, 2),
                textcoords="offset points",
            )
    ax_lat.set_xticks(
        range(len(names)),
        [f"{m.mode}\np50 {m.summary.p50_ms:.0f} ms" if m.summary.p50_ms is not None else m.mode for m in shown],
    )
    ax_lat.set_xlim(-0.6, max(len(names), 1) - 0.4)
    ax_lat.set_ylim(0, top)
    ax_lat.set_ylabel("call latency (ms)")
    ax_lat.grid(axis="y", alpha=0.3)
    title = "Latency per call (bar: p50)"
    if y_axis == "lock":
        title += ", axis locked"
    ax_lat.set_title(title)

    conns = [m.summary.client_connections or 0 for m in shown]
    for y, (m, color) in enumerate(zip(shown, colors)):
        ghost = before.get(m.mode)
        if ghost is not None:
            ax_conn.barh(
                y, ghost.summary.client_connections or 0, height=0.95, fill=False, edgecolor=color, linestyle="--"
            )
    ax_conn.barh(range(len(names)), conns, color=colors)
    for y, m in enumerate(shown):
        s = m.summary
        ax_conn.annotate(
            f"{s.client_connections if s.client_connections is not None else '?'}"
            f" (server {s.tcp_connections if s.tcp_connections is not None else '?'})",
            (min(conns[y], scale.connections), y),
            va="center",
            fontsize="small",
            xytext=(3, 0),
            textcoords="offset points",
        )
    ax_conn.set_yticks(range(len(names)), names)
    ax_conn.invert_yaxis()
    ax_conn.set_xlabel("connections opened")
    # Room right of the longest bar for its label.
    ax_conn.set_xlim(0, scale.connections * 1.4)
    ax_conn.set_title("Connections opened")
    if settings is not None:
        fig.suptitle(
            f"{settings.label}; {settings.calls} calls per mode, concurrency {settings.concurrency}", fontsize="medium"
        )
    if pinned is not None:
        fig.text(0.99, 0.01, "dashed: the pinned run", ha="right", va="bottom", fontsize="small", color="#555")
    return fig


def _spread(x: float, n: int) -> list[float]:
    # Across the bar, deterministically (no random jitter between redraws).
    return [x - 0.22 + 0.44 * (i + 0.5) / max(1, n) for i in range(n)]


def lab_figure_png(
    result: Comparison,
    settings: LabSettings | None = None,
    *,
    dpi: int = 80,
    scale: PlotScale | None = None,
    pinned: Comparison | None = None,
    y_axis: str = "keep",
    figsize: tuple[float, float] = (10, 3.6),
) -> bytes:
    fig = lab_figure(result, settings, scale=scale, pinned=pinned, y_axis=y_axis, figsize=figsize)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
