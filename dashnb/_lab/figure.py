"""The lab's picture: every call's latency per mode and the connections each mode opened.

    >>> png = lab_figure_png(dashnb.compare(calls=4))                  # doctest: +SKIP

Small and quick to draw: the lab redraws it on every slider move. matplotlib is imported when a
picture is drawn; the figure is a bare ``Figure``, never pyplot (see ``dashnb._plot``).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from .._colors import mode_color
from .._results import Comparison
from .settings import LabSettings, PlotScale

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["lab_figure", "lab_figure_png", "lab_figure_svg"]


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
    import matplotlib  # noqa: PLC0415 (matplotlib: only when drawing)
    from matplotlib.figure import Figure  # noqa: PLC0415
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

    fig = Figure(figsize=figsize)
    # Fixed margins, in inches (room for tick labels whatever the size): the constrained layout
    # engine costs about as much as drawing the plot.
    width, height = figsize
    # ... and in proportion to the text, which the SVG of presenter mode draws larger.
    k = max(1.0, float(matplotlib.rcParams["font.size"]) / 10)
    fig.subplots_adjust(
        left=0.7 * k / width,
        right=1 - 0.2 / width,
        bottom=0.72 * k / height,
        top=1 - 0.58 * k / height,
        wspace=0.3 * k,
    )
    ax_lat, ax_conn = fig.subplots(1, 2, width_ratios=(1.6 * k, 1))
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
    # Room right of the longest bar for its label; connections are counted, so whole-number ticks.
    ax_conn.set_xlim(0, scale.connections * 1.4 * k)
    ax_conn.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=4))
    ax_conn.set_gid("connections")  # the SVG's group for this axes: the browser test reads its ticks
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


def lab_figure_svg(
    result: Comparison,
    settings: LabSettings | None = None,
    *,
    text_pt: float = 10.0,
    scale: PlotScale | None = None,
    pinned: Comparison | None = None,
    y_axis: str = "keep",
    figsize: tuple[float, float] = (10, 3.6),
) -> str:
    """The lab's plot as SVG whose text stays text, every piece of it ``text_pt`` points.

    A picture the browser scales keeps its text in proportion: ``text_pt`` over the figure's
    width in points is the share of the displayed width one letter takes, whatever the window
    (a PNG scaled down to a third shrinks its text to a third, too). Text as text, not paths,
    also keeps the file small and lets the page be searched and measured.
    """
    import matplotlib  # noqa: PLC0415 (matplotlib: only when drawing)
    import matplotlib.text  # noqa: PLC0415

    sizes: dict[str, Any] = {
        "font.size": text_pt,
        "axes.titlesize": text_pt,
        "axes.labelsize": text_pt,
        "xtick.labelsize": text_pt,
        "ytick.labelsize": text_pt,
        "legend.fontsize": text_pt,
        "figure.titlesize": text_pt,
        "svg.fonttype": "none",
        "svg.hashsalt": "dashnb",  # the same plot gives the same file (ids are not random)
    }
    with matplotlib.rc_context(sizes):  # type: ignore[arg-type]  # its stub wants literal keys
        # "small" and "medium" resolve against font.size: make them the same size too.
        fig = lab_figure(result, settings, scale=scale, pinned=pinned, y_axis=y_axis, figsize=figsize)
        for text in fig.findobj(matplotlib.text.Text):
            text.set_fontsize(text_pt)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


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
