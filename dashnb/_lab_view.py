"""The latency lab's panel: an ipywidgets view over a ``LabModel``.

    >>> import dashnb
    >>> lab = dashnb.lab(rtt_ms=40)         # doctest: +SKIP
    >>> lab                                 # the panel (a VBox); text elsewhere   # doctest: +SKIP
    LatencyLab(rtt 40 ms, TLS 1.3, modes per_call/shared/async)
    >>> lab.model.rtt_ms = 80               # what moving the slider does          # doctest: +SKIP
    >>> result = await lab.model.wait()     # the Comparison for the current settings  # doctest: +SKIP

Controls are linked to the model's traits, a status line, a plot (an ``Output`` widget filled
through its model, so nbval strict mode and every front end see the same thing) and a summary
table. Imported on first use of ``dashnb.lab`` / ``dashnb.LatencyLab``, so it may import
ipywidgets at the top; the model (``dashnb._lab_model``) needs no widgets.
"""

from __future__ import annotations

import base64
import html
from typing import Any

import ipywidgets as w

from ._lab_model import LabModel
from ._modes import MODES
from ._plot import lab_figure_png
from ._stats import html_table

__all__ = ["LatencyLab", "lab"]

wide = {"description_width": "130px"}
slider_layout = w.Layout(width="370px")


class LatencyLab(w.VBox):
    """The panel: controls linked to a LabModel, a status line, a plot and a table.

    Every control change re-measures in the background (sliders report on release or key
    press only: ``continuous_update=False``). ``lab.model`` is the LabModel.
    """

    def __init__(self, model: LabModel | None = None, *, measure: bool = True, **settings: Any) -> None:
        if model is not None and settings:
            raise TypeError("pass either a LabModel or settings, not both")
        self.model = model if model is not None else LabModel(**settings)
        m = self.model
        c = dict(continuous_update=False, style=wide, layout=slider_layout)
        self.controls = {
            "rtt_ms": w.FloatSlider(min=0, max=200, step=5, description="round trip (ms)", readout_format=".0f", **c),
            "tls": w.Dropdown(
                options=[("TLS 1.3", "1.3"), ("TLS 1.2", "1.2"), ("off (plain HTTP)", "off")],
                description="TLS",
                style=wide,
                layout=slider_layout,
            ),
            "connection_pool_size": w.IntSlider(
                min=1,
                max=64,
                description="pool size / limit",
                tooltip="Java connectionPoolSize and maximumAsyncRequests: requests pool_maxsize, aiohttp limit",
                **c,
            ),
            "limit_per_host": w.IntSlider(
                min=1,
                max=64,
                description="limit_per_host",
                tooltip="Java maximumAsyncRequestsPerHost: aiohttp TCPConnector(limit_per_host=...)",
                **c,
            ),
            "connect_timeout": w.FloatLogSlider(
                min=-2, max=2.5, step=0.1, description="connect timeout (s)", readout_format=".3g", **c
            ),
            "read_timeout": w.FloatLogSlider(
                min=-2, max=2.5, step=0.1, description="read timeout (s)", readout_format=".3g", **c
            ),
            "idle_timeout": w.FloatLogSlider(
                min=-2, max=2.5, step=0.1, description="idle timeout (s)", readout_format=".3g", **c
            ),
            "concurrency": w.IntSlider(min=1, max=32, description="concurrency", **c),
            "calls": w.IntSlider(min=2, max=60, description="calls per mode", **c),
            "side_by_side": w.Checkbox(description="modes side by side (faster)", indent=False),
        }
        for name, control in self.controls.items():
            w.link((m, name), (control, "value"))
        self.mode_boxes = {
            name: w.Checkbox(
                value=name in m.modes,
                description=name,
                indent=False,
                tooltip=MODES[name],
                layout=w.Layout(width="140px"),
            )
            for name in MODES
        }
        for box in self.mode_boxes.values():
            box.observe(self._boxes_changed, names="value")
        m.observe(self._modes_changed, names="modes")

        self.status = w.HTML()
        self.plot = w.Output(layout=w.Layout(min_height="290px"))
        self.table = w.HTML()
        k = self.controls
        note = w.HTML(
            "<div style='line-height:1.35'><small>pool size is one Java setting (connectionPoolSize) "
            "that dashnb maps to requests' "
            "<code>pool_maxsize</code> (connections kept) and aiohttp's <code>limit</code> (connections "
            "open); limit_per_host is maximumAsyncRequestsPerHost.</small></div>",
            layout=w.Layout(width="370px"),
        )
        columns = w.HBox(
            [
                w.VBox(
                    [
                        w.HTML("<b>Network</b>"),
                        k["rtt_ms"],
                        k["tls"],
                        w.HTML("<b>Load</b>"),
                        k["calls"],
                        k["concurrency"],
                        k["side_by_side"],
                    ]
                ),
                w.VBox(
                    [
                        w.HTML("<b>Pool</b>"),
                        k["connection_pool_size"],
                        k["limit_per_host"],
                        k["connect_timeout"],
                        k["read_timeout"],
                        k["idle_timeout"],
                        note,
                    ]
                ),
            ]
        )
        modes = w.HBox(
            [
                w.HTML("<b>Modes</b>&nbsp;"),
                w.GridBox(list(self.mode_boxes.values()), layout=w.Layout(grid_template_columns="repeat(4, 150px)")),
            ]
        )
        super().__init__(
            [columns, modes, self.status, self.plot, self.table],
            layout=w.Layout(border="1px solid #ddd", padding="6px"),
        )
        self.add_class("dashnb-lab")
        # Stable hooks for the browser tests (and anyone styling the panel).
        self.status.add_class("dashnb-lab-status")
        self.plot.add_class("dashnb-lab-plot")
        self.table.add_class("dashnb-lab-table")
        m.observe(self._show_status, names=["status", "error", "measuring"])
        m.observe(self._show_result, names="result")
        self._show_status()
        if m.result is not None:
            self._show_result()
        m.live = True
        if measure:
            try:
                m.schedule(delay=0)
            except RuntimeError:
                m.status = "not measured yet: no event loop is running; call `await lab.model.measure()`"

    def __repr__(self) -> str:
        return f"LatencyLab({self.model.settings().label})"

    def _boxes_changed(self, _change=None) -> None:
        chosen = tuple(name for name, box in self.mode_boxes.items() if box.value)
        if chosen != self.model.modes:
            self.model.modes = chosen

    def _modes_changed(self, change) -> None:
        for name, box in self.mode_boxes.items():
            box.value = name in change["new"]

    def _show_status(self, _change=None) -> None:
        m = self.model
        text = html.escape(m.status)
        if m.error or m.status.startswith("error"):
            self.status.value = f"<b style='color:#b00020'>{text}</b>"
        elif "failed" in m.status:
            self.status.value = f"<span style='color:#b35c00'>{text}</span>"
        elif m.measuring:
            self.status.value = f"<span style='color:#555'>&#9203; {text}</span>"
        else:
            self.status.value = f"<span>{text}</span>"

    def _show_result(self, _change=None) -> None:
        m = self.model
        result, settings = m.result, m.measured
        if result is None or settings is None:
            return
        png = lab_figure_png(result, settings)
        # Filled through the Output's model (not `with out:`), so nbval, Lab and Voila all
        # see the same outputs and nothing lands in whatever cell happens to be running.
        self.plot.outputs = (
            {
                "output_type": "display_data",
                "data": {
                    "image/png": base64.b64encode(png).decode("ascii"),
                    "text/plain": f"<latency plot: {settings.label}>",
                },
                "metadata": {},
            },
        )
        notes = [*result.notes(), *m.problems]
        self.table.value = html_table(result.summary, caption=f"<b>{html.escape(settings.label)}</b>", notes=notes)

    def close(self) -> None:
        self.model.close()
        super().close()


def lab(model: LabModel | None = None, *, measure: bool = True, **settings: Any):
    """The live latency lab panel (display it as a cell's last expression).

    Settings (all optional): rtt_ms, tls ("1.3" | "1.2" | "off"), connection_pool_size,
    limit_per_host, connect_timeout, read_timeout, idle_timeout, concurrency, calls, modes,
    side_by_side. The first measurement starts at once in the background when an event loop is
    running (a notebook); ``await lab.model.wait()`` gives its result.
    """
    return LatencyLab(model, measure=measure, **settings)
