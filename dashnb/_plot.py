"""Pictures of measurements: latency distributions and a per-call timeline.

    >>> fig = plot_measurements(dashnb.compare(calls=20).measurements)   # doctest: +SKIP
    >>> plot_measurements({}).get_axes()[0].get_title()                 # nothing measured: empty axes
    'Latency distribution'

matplotlib is imported when a picture is drawn, not with this module (``Measurement.plot`` and
``Comparison.plot`` import it at the top). It draws on a bare ``Figure``, never pyplot: a pyplot
figure would show twice in Jupyter, and a Figure renders once as a PNG through the formatter set up
here (``show_figures_as_png``, which the lab's figure uses too).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ._colors import mode_color
from ._extras import lab_extra_error

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from ._results import Measurement

__all__ = ["plot_measurements", "show_figures_as_png"]


def show_figures_as_png(figure_type) -> None:
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
    from IPython.core.pylabtools import print_figure  # noqa: PLC0415 (IPython: only in a kernel)

    png.for_type(figure_type, lambda fig: print_figure(fig, "png", bbox_inches="tight"))


def plot_measurements(measurements: Mapping[str, Measurement], *, max_calls: int = 60) -> Figure:
    """Left: latency distribution (ECDF) per mode. Right: a per-call timeline of each mode's
    first block, each bar split into waiting for a slot, connect + TLS handshake, and request."""
    try:
        from matplotlib.figure import Figure  # noqa: PLC0415 (matplotlib: only when drawing)
        from matplotlib.patches import Patch  # noqa: PLC0415
    except ModuleNotFoundError as exc:  # a base install: plots come with the [lab] extra
        raise (lab_extra_error(exc, "plotting measurements") or exc) from exc

    show_figures_as_png(Figure)
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
