"""The latency lab panel's two layouts: the notebook's one screen and the projector's.

``lab_layout`` (what ``dashnb.lab()`` shows in a notebook) is one instrument: the modes and the
axis buttons in a row above the plot, the plot, and under it the controls in tabs (network and
load; the Java SDK's pool) and the table, so that in JupyterLab at 1280x800 the slider
being moved and the plot it moves are on screen together. ``presenter_layout``
(``presenter=True``, ``make workshop``) puts the same widgets in large type, controls beside the
plot (under it in a window narrower than 1200 px), the scenario's note above it. Each takes the
panel's widgets (``dashnb._lab.view.LatencyLab``) and returns its children; ``LAB_FIGURE`` and
``PRESENTER_FIGURE`` are the plot's size and text size for each.

Imported with the view, so it imports ipywidgets at the top.
"""

from __future__ import annotations

from typing import Any, Protocol

import ipywidgets as w

from .settings import POOL_FIELDS

__all__ = ["LAB_FIGURE", "PRESENTER_CSS", "PRESENTER_FIGURE", "Panel", "lab_layout", "presenter_layout"]

# The plot is an SVG the browser scales to the width it is given (its text stays text). Its
# text, as displayed, is text_pt x (displayed width / figure width in points): presenter mode's
# plot is at least 700 px wide in every window it is laid out for (the side column takes 540 px
# of a 1280 px window; below 1200 px the plot takes the whole width), so 13 pt text in a
# 7.5 in (540 pt) figure is at least 13 x 700 / 540 = 16.9 px on screen.
PRESENTER_FIGURE: dict[str, Any] = {"figsize": (7.5, 3.5), "text_pt": 13.0}
# The notebook's plot: 816 x 288 px as drawn (96 px per inch), to leave room below it for the
# controls in Lab's 680 px of notebook at 1280x800.
LAB_FIGURE: dict[str, Any] = {"figsize": (8.5, 3.0), "text_pt": 10.0}
# The PNG a static render of the panel carries (nbconvert, GitHub): the picture it always had.
STATIC_FIGURE: dict[str, Any] = {"figsize": (10.0, 3.6), "dpi": 80}

# Presenter mode: large type for a projector, scoped to the panel's own class, so nothing else on
# the page changes. The widgets' sizes are CSS variables computed at :root, so they are set here,
# not derived. Below 1200 px the plot goes first, full width, the controls under it.
PRESENTER_CSS = """
<style>
.dashnb-lab-presenter {
  --jp-widgets-font-size: 17px;
  --jp-widgets-inline-height: 34px;
  --jp-widgets-slider-handle-size: 20px;
  --jp-widgets-horizontal-tab-height: 34px;
  --jp-widgets-horizontal-tab-width: 150px;
  font-size: 17px;
  max-width: 100%;
  box-sizing: border-box;
}
.dashnb-lab-presenter .widget-html-content,
.dashnb-lab-presenter .widget-label,
.dashnb-lab-presenter .lm-TabBar-tabLabel,
.dashnb-lab-presenter button { font-size: 17px; }
.dashnb-lab-presenter .dashnb-lab-side { flex: 0 0 540px; min-width: 0; }
.dashnb-lab-presenter .dashnb-lab-main { flex: 1 1 auto; min-width: 0; }
.dashnb-lab-presenter .dashnb-lab-plot img {
  width: 100%; height: auto; max-height: calc(100vh - 150px); object-fit: contain; object-position: left top;
}
.dashnb-lab-presenter .dashnb-lab-table { overflow-x: auto; max-width: 100%; }
.dashnb-lab-presenter .dashnb-lab-table table { font-size: 16px; }
.dashnb-lab-presenter .dashnb-lab-scenario-note .widget-html-content { white-space: normal; line-height: 1.3; }
.dashnb-lab-presenter .dashnb-lab-scenario-note small { font-size: 17px; }
@media (max-width: 1199px) {
  .dashnb-lab-presenter .dashnb-lab-row { flex-direction: column-reverse; }
  .dashnb-lab-presenter .dashnb-lab-side { flex: none; }
  .dashnb-lab-presenter .dashnb-lab-main { flex: none; width: 100%; }
}
</style>
"""
# The notebook's panel: the plot no wider than the notebook, the note's text wrapping.
LAB_CSS = """
<style>
.dashnb-lab .dashnb-lab-plot img { max-width: 100%; height: auto; }
.dashnb-lab .dashnb-lab-scenario-note .widget-html-content,
.dashnb-lab .dashnb-lab-pool-hint .widget-html-content { white-space: normal; line-height: 1.3; }
</style>
"""


class Panel(Protocol):
    """The widgets of the panel that the layouts place."""

    controls: dict[str, Any]
    mode_picker: w.Widget
    scenario_note: w.HTML
    pool_hint: w.HTML
    status: w.HTML
    plot: w.Output
    table: w.HTML
    exports: w.HTML


_POOL_NOTE = (
    "<div style='line-height:1.35'><small>The Java SDK's settings, as dashnb maps them: "
    "<b>maximumAsyncRequests</b> is aiohttp's <code>limit</code> (connections open at once; "
    "more calls wait), <b>maximumAsyncRequestsPerHost</b> its <code>limit_per_host</code>, "
    "<b>connectionPoolSize</b> the idle connections kept for reuse (requests' "
    "<code>pool_maxsize</code>, OkHttp's maxIdleConnections): a burst may open more, and the "
    "extra ones are closed once idle. requests has no cap on open connections: its threads "
    "are the cap. Server time: before the first byte (the calls are not streamed).</small></div>"
)


def lab_layout(panel: Panel, actions: w.Widget) -> list[w.Widget]:
    k = panel.controls
    column = w.Layout(width="410px")
    network = w.HBox(
        [
            w.VBox([k["scenario"], panel.scenario_note, k["rtt_ms"], k["ttfb_ms"], k["tls"]], layout=column),
            w.VBox([k["calls"], k["concurrency"], k["side_by_side"]], layout=column),
        ]
    )
    pool = w.HBox(
        [
            w.VBox([k[name] for name in POOL_FIELDS]),
            w.VBox([panel.pool_hint, w.HTML(_POOL_NOTE)], layout=w.Layout(width="360px")),
        ]
    )
    tabs = w.Tab([network, pool], titles=["Network, load", "Pool (Java)"])
    tools = w.HBox([k["y_axis"], actions, panel.exports], layout=w.Layout(flex_flow="row wrap", align_items="center"))
    return [w.HTML(LAB_CSS), panel.mode_picker, tools, panel.status, panel.plot, tabs, panel.table]


def presenter_layout(panel: Panel, actions: w.Widget) -> list[w.Widget]:
    k = panel.controls
    narrow = w.Layout(width="510px")
    for name in ("rtt_ms", "ttfb_ms", "tls", "calls", "concurrency", "scenario"):
        k[name].layout = narrow
        k[name].style.description_width = "150px"
    for name in POOL_FIELDS:
        k[name].layout = narrow
        # Wide enough for maximumAsyncRequestsPerHost in 17 px type: a cut Java name teaches nothing.
        k[name].style.description_width = "300px"
    tabs = w.Tab(
        [
            w.VBox([k["rtt_ms"], k["ttfb_ms"], k["tls"], k["calls"], k["concurrency"], k["side_by_side"]]),
            w.VBox([k[name] for name in POOL_FIELDS]),
            panel.mode_picker,
        ],
        titles=["Network, load", "Pool (Java)", "Modes"],
    )
    side = w.VBox([k["scenario"], tabs, k["y_axis"], actions, panel.exports])
    side.add_class("dashnb-lab-side")
    # The scenario's note above the plot: what to look for, where the room looks.
    main = w.VBox([panel.scenario_note, panel.status, panel.plot, panel.table])
    main.add_class("dashnb-lab-main")
    row = w.HBox([side, main], layout=w.Layout(width="100%"))
    row.add_class("dashnb-lab-row")
    return [w.HTML(PRESENTER_CSS), row]
