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
import threading
from typing import Any

import ipywidgets as w

from ._lab_model import LabModel
from ._modes import MODES
from ._plot import lab_figure_png
from ._scenarios import SCENARIOS
from ._stats import html_table

__all__ = ["LatencyLab", "lab"]

wide = {"description_width": "130px"}
slider_layout = w.Layout(width="370px")
java = {"description_width": "215px"}
java_layout = w.Layout(width="450px")


class LatencyLab(w.VBox):
    """The panel: controls linked to a LabModel, a status line, a plot and a table.

    Every control change re-measures in the background (sliders report on release or key
    press only: ``continuous_update=False``). ``lab.model`` is the LabModel.
    """

    def __init__(self, model: LabModel | None = None, *, measure: bool = True, **settings: Any) -> None:
        if model is not None and settings:
            raise TypeError("pass either a LabModel or settings, not both")
        self.model = model if model is not None else LabModel(**settings)
        self._png: bytes | None = None
        m = self.model
        c = dict(continuous_update=False, style=wide, layout=slider_layout)
        # The pool column speaks Java: the names of the settings a reader tunes in the SDK.
        j = dict(continuous_update=False, style=java, layout=java_layout)
        seconds = dict(min=-2, max=2.5, step=0.1, readout_format=".3g", **j)
        self.controls = {
            "scenario": w.Dropdown(
                options=[("custom", "custom")] + [(s.label, name) for name, s in SCENARIOS.items()],
                description="scenario",
                tooltip="assumed networks from dashnb.SCENARIOS: they set the round trip and server time",
                style=wide,
                layout=slider_layout,
            ),
            "rtt_ms": w.FloatSlider(min=0, max=300, step=5, description="round trip (ms)", readout_format=".0f", **c),
            "ttfb_ms": w.FloatSlider(
                min=0, max=2000, step=50, description="server time (ms)", readout_format=".0f", **c
            ),
            "tls": w.Dropdown(
                options=[("TLS 1.3", "1.3"), ("TLS 1.2", "1.2"), ("off (plain HTTP)", "off")],
                description="TLS",
                style=wide,
                layout=slider_layout,
            ),
            "connection_pool_size": w.IntSlider(min=1, max=64, description="connectionPoolSize", **j),
            "maximum_async_requests": w.IntSlider(min=1, max=64, description="maximumAsyncRequests", **j),
            "maximum_async_requests_per_host": w.IntSlider(
                min=1, max=64, description="maximumAsyncRequestsPerHost", **j
            ),
            "connect_timeout": w.FloatLogSlider(description="connectTimeout (s)", **seconds),
            "read_timeout": w.FloatLogSlider(description="readTimeout (s)", **seconds),
            "connection_idle_timeout": w.FloatLogSlider(description="connectionIdleTimeout (s)", **seconds),
            "concurrency": w.IntSlider(min=1, max=32, description="concurrency", **c),
            "calls": w.IntSlider(min=2, max=60, description="calls per mode", **c),
            "side_by_side": w.Checkbox(description="modes side by side (faster)", indent=False),
        }
        self._links = [w.link((m, name), (control, "value")) for name, control in self.controls.items()]
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

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        # The widget view, plus the latest plot as a picture: front ends without the widget
        # (nbconvert, GitHub, a notebook opened before its kernel runs) show that instead of
        # an empty box. Front ends with widgets rank the widget view first.
        bundle = super()._repr_mimebundle_(**kwargs)
        if self._png is not None:
            bundle["image/png"] = base64.b64encode(self._png).decode("ascii")
        return bundle

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
        png = self._png = lab_figure_png(result, settings)
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

    def close(self, *, close_model: bool = True) -> None:
        """Close the panel and its controls; also its model (cancelling its measurement,
        stopping its emulators and workers) unless ``close_model=False``."""
        if not self._links and self.comm is None:  # closed already
            return
        m = self.model
        m.unobserve(self._modes_changed, names="modes")
        m.unobserve(self._show_status, names=["status", "error", "measuring"])
        m.unobserve(self._show_result, names="result")
        for link in self._links:
            link.unlink()
        self._links = []
        if close_model:
            m.close()
        for child in _descendants(self):
            child.close()
        super().close()


def _descendants(box: w.Box) -> list[w.Widget]:
    found = []
    for child in box.children:
        if isinstance(child, w.Box):
            found.extend(_descendants(child))
        found.append(child)
    return found


# The panels lab() handed out, by name: re-running `lab = dashnb.lab()` closes the previous one,
# whose measurement, private emulators and worker threads would otherwise live on unreferenced.
_LABS: dict[str, LatencyLab] = {}
_LABS_LOCK = threading.Lock()


def lab(model: LabModel | None = None, *, measure: bool = True, name: str = "default", **settings: Any):
    """The live latency lab panel (display it as a cell's last expression).

    Settings (all optional): rtt_ms, ttfb_ms (server time), tls ("1.3" | "1.2" | "off"),
    scenario (a name from dashnb.SCENARIOS), the pool as PoolConfig fields (config=PoolConfig(...)
    or connection_pool_size, maximum_async_requests, maximum_async_requests_per_host,
    connect_timeout, read_timeout, connection_idle_timeout), concurrency, calls, modes,
    side_by_side. The first measurement starts at once in the background when an event loop is
    running (a notebook); ``await lab.model.wait()`` gives its result.

    One panel per ``name`` is live: calling ``lab()`` again (re-running the cell) closes the
    previous panel of that name first - its measurement is cancelled, its emulators and worker
    threads stopped. Give another ``name`` to keep two labs side by side.
    """
    with _LABS_LOCK:
        old = _LABS.pop(name, None)
    if old is not None:
        # A model handed in again belongs to the caller: close only the old view around it.
        old.close(close_model=old.model is not model)
    panel = LatencyLab(model, measure=measure, **settings)
    with _LABS_LOCK:
        _LABS[name] = panel
    return panel
