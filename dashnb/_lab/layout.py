"""The latency lab panel's two layouts: the notebook's columns and the projector's tabs.

``lab_layout`` puts the controls in two columns (network and load; the Java SDK's pool) above
the modes, the tools, the status line, the plot and the table: what ``dashnb.lab()`` shows in
a notebook. ``presenter_layout`` (``presenter=True``, ``make workshop``) puts the same widgets
in large type, controls in tabs beside a plot as wide as the window. Each takes the panel's
widgets (``dashnb._lab.view.LatencyLab``) and returns its children; ``PRESENTER_FIGURE`` and
``LAB_FIGURE`` are the plot's picture size for each.

Imported with the view, so it imports ipywidgets at the top.
"""

from __future__ import annotations

from typing import Any, Protocol

import ipywidgets as w

from .settings import POOL_FIELDS

__all__ = ["LAB_FIGURE", "PRESENTER_CSS", "PRESENTER_FIGURE", "Panel", "lab_layout", "presenter_layout"]

# Presenter mode: large type for a projector, and a plot as wide as the window allows (its PNG is
# drawn at a higher resolution and scaled by the browser). Scoped to the panel's own class, so
# nothing else on the page changes. The widgets' sizes are CSS variables computed at :root, so
# they are set here, not derived.
PRESENTER_CSS = """
<style>
.dashnb-lab-presenter {
  --jp-widgets-font-size: 17px;
  --jp-widgets-inline-height: 34px;
  --jp-widgets-slider-handle-size: 20px;
  --jp-widgets-horizontal-tab-height: 34px;
  --jp-widgets-horizontal-tab-width: 150px;
  font-size: 17px;
}
.dashnb-lab-presenter .widget-html-content,
.dashnb-lab-presenter .widget-label,
.dashnb-lab-presenter .lm-TabBar-tabLabel,
.dashnb-lab-presenter button { font-size: 17px; }
.dashnb-lab-presenter .dashnb-lab-side { flex: 0 0 520px; min-width: 0; }
.dashnb-lab-presenter .dashnb-lab-main { flex: 1 1 auto; min-width: 0; }
.dashnb-lab-presenter .dashnb-lab-plot img {
  width: 100%; height: auto; max-height: calc(100vh - 90px); object-fit: contain; object-position: left top;
}
.dashnb-lab-presenter .dashnb-lab-table table { font-size: 16px; }
.dashnb-lab-presenter .dashnb-lab-modes { --jp-widgets-inline-height: 24px; }
.dashnb-lab-presenter .dashnb-lab-modes .widget-label-basic,
.dashnb-lab-presenter .dashnb-lab-modes label { font-size: 14px; }
</style>
"""
# The picture's size in inches sets the size of its text relative to the plot; its dpi, the
# pixels. Presenter: fewer inches (larger text once scaled to the window), 1520 px wide, sharp up
# to a 1920 px window. Lab: the 800 px picture the notebook always had.
PRESENTER_FIGURE: dict[str, Any] = {"figsize": (8.0, 3.4), "dpi": 190}
LAB_FIGURE: dict[str, Any] = {"figsize": (10.0, 3.6), "dpi": 80}


class Panel(Protocol):
    """The widgets of the panel that the layouts place."""

    controls: dict[str, Any]
    mode_boxes: dict[str, w.Checkbox]
    scenario_note: w.HTML
    status: w.HTML
    plot: w.Output
    table: w.HTML
    exports: w.HTML


def lab_layout(panel: Panel, actions: w.Widget) -> list[w.Widget]:
    k = panel.controls
    note = w.HTML(
        "<div style='line-height:1.35'><small>The Java SDK's settings, as dashnb maps them: "
        "<b>maximumAsyncRequests</b> is aiohttp's <code>limit</code> (connections open at once; "
        "more calls wait), <b>maximumAsyncRequestsPerHost</b> its <code>limit_per_host</code>, "
        "<b>connectionPoolSize</b> the idle connections kept for reuse (requests' "
        "<code>pool_maxsize</code>, OkHttp's maxIdleConnections): a burst may open more, and the "
        "extra ones are closed once idle. requests has no cap on open connections: its threads "
        "are the cap. Server time: before the first byte (the calls are not streamed).</small></div>",
        layout=w.Layout(width="450px"),
    )
    columns = w.HBox(
        [
            w.VBox(
                [
                    w.HTML("<b>Network and server</b>"),
                    k["rtt_ms"],
                    k["ttfb_ms"],
                    k["scenario"],
                    panel.scenario_note,
                    k["tls"],
                    w.HTML("<b>Load</b>"),
                    k["calls"],
                    k["concurrency"],
                    k["side_by_side"],
                ],
                layout=w.Layout(width="380px"),
            ),
            w.VBox(
                [
                    w.HTML("<b>Pool</b>"),
                    k["connection_pool_size"],
                    k["maximum_async_requests"],
                    k["maximum_async_requests_per_host"],
                    k["connect_timeout"],
                    k["read_timeout"],
                    k["connection_idle_timeout"],
                    note,
                ]
            ),
        ]
    )
    modes = w.HBox(
        [
            w.HTML("<b>Modes</b>&nbsp;"),
            # As many columns as fit: the registry may hold a few modes or dozens.
            w.GridBox(
                list(panel.mode_boxes.values()),
                layout=w.Layout(grid_template_columns="repeat(auto-fill, minmax(215px, 1fr))", width="100%"),
            ),
        ]
    )
    tools = w.HBox([k["y_axis"], actions, panel.exports], layout=w.Layout(flex_flow="row wrap", align_items="center"))
    return [columns, modes, tools, panel.status, panel.plot, panel.table]


def presenter_layout(panel: Panel, actions: w.Widget) -> list[w.Widget]:
    k = panel.controls
    narrow = w.Layout(width="490px")
    for name in ("rtt_ms", "ttfb_ms", "tls", "calls", "concurrency", "scenario"):
        k[name].layout = narrow
        k[name].style.description_width = "150px"
    for name in POOL_FIELDS:
        k[name].layout = narrow
        k[name].style.description_width = "260px"
    modes = w.GridBox(list(panel.mode_boxes.values()), layout=w.Layout(grid_template_columns="repeat(2, 240px)"))
    modes.add_class("dashnb-lab-modes")  # smaller type: two dozen long mode names fit the tab
    tabs = w.Tab(
        [
            w.VBox([k["rtt_ms"], k["ttfb_ms"], k["tls"], k["calls"], k["concurrency"], k["side_by_side"]]),
            w.VBox([k[name] for name in POOL_FIELDS]),
            modes,
        ],
        titles=["Network, load", "Pool (Java)", "Modes"],
    )
    side = w.VBox([k["scenario"], panel.scenario_note, tabs, k["y_axis"], actions, panel.exports])
    side.add_class("dashnb-lab-side")
    main = w.VBox([panel.status, panel.plot, panel.table])
    main.add_class("dashnb-lab-main")
    return [w.HTML(PRESENTER_CSS), w.HBox([side, main], layout=w.Layout(width="100%"))]
