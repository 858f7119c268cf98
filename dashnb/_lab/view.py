"""The latency lab's panel: an ipywidgets view over a ``LabModel``.

    >>> import dashnb
    >>> lab = dashnb.lab(rtt_ms=40)         # doctest: +SKIP
    >>> lab                                 # the panel (a VBox); text elsewhere   # doctest: +SKIP
    LatencyLab(rtt 40 ms, TLS 1.3, modes per_call/shared/async)
    >>> lab.model.rtt_ms = 80               # what moving the slider does          # doctest: +SKIP
    >>> result = await lab.model.wait()     # the Comparison for the current settings  # doctest: +SKIP

Controls are linked to the model's traits, a status line, a plot (an ``Output`` widget filled
through its model, so nbval strict mode and every front end see the same thing) and a summary
table; buttons to pin a run, fit the axis, reset, and "save…" links (JSON, CSV, PNG). With
``presenter=True`` (``make workshop``) the same widgets sit in a projector layout: large type,
controls in tabs beside a plot that scales with the window (both layouts: ``dashnb._lab.layout``).

Imported on first use of ``dashnb.lab`` / ``dashnb.LatencyLab``, so it may import ipywidgets at
the top; the model (``dashnb._lab.model``) needs no widgets.
"""

from __future__ import annotations

import base64
import html
import threading
from typing import Any

import ipywidgets as w

from .._colors import mode_color
from .._modes.registry import MODES
from .._stats import html_table
from .figure import lab_figure_svg
from .layout import LAB_FIGURE, PRESENTER_FIGURE, STATIC_FIGURE, lab_layout, presenter_layout
from .model import LabModel
from .settings import LAB_SCENARIOS, MODE_FAMILIES, POOL_FIELDS, mode_family, pool_hint, timeout_stops

__all__ = ["LatencyLab", "lab"]

wide = {"description_width": "130px"}
slider_layout = w.Layout(width="370px")
java = {"description_width": "215px"}
java_layout = w.Layout(width="450px")

Y_AXIS_LABELS = (("keep scale", "keep"), ("lock", "lock"), ("fit each run", "fit"))


class _StopsLink:
    """Model trait <-> SelectionSlider over ``timeout_stops``: the slider stops at round values
    (every one the notebooks suggest) and still shows a value set in code between them."""

    def __init__(self, model: LabModel, name: str, slider: w.SelectionSlider) -> None:
        self.model, self.name, self.slider = model, name, slider
        self._busy = False
        model.observe(self._from_model, names=name)
        slider.observe(self._to_model, names="value")
        self._from_model()

    def _from_model(self, _change=None) -> None:
        value = getattr(self.model, self.name)
        stops = timeout_stops(value)
        self._busy = True
        try:
            if tuple(v for _, v in self.slider.options) != stops:
                self.slider.options = [(f"{v:g}", v) for v in stops]
            self.slider.value = value
        finally:
            self._busy = False

    def _to_model(self, change) -> None:
        if not self._busy and change["new"] != getattr(self.model, self.name):
            setattr(self.model, self.name, change["new"])

    def unlink(self) -> None:
        self.model.unobserve(self._from_model, names=self.name)
        self.slider.unobserve(self._to_model, names="value")


class ModePicker(w.HBox):
    """The modes measured, as one row: a button per chosen mode (in its plot colour; click to
    remove it) and a menu of the others, grouped by client family. Two dozen check boxes would
    push the plot off the screen; the row is one line whatever the registry holds."""

    ADD = ""

    def __init__(self, model: LabModel) -> None:
        self.model = model
        self._open = True
        self.menu = w.Dropdown(
            options=[("add a mode…", self.ADD)],
            tooltip="modes grouped by client family: requests, aiohttp, dashscope 2.x, openai",
            layout=w.Layout(width="300px"),
        )
        self.menu.observe(self._add, names="value")
        self.chosen = w.HBox(layout=w.Layout(flex_flow="row wrap"))
        super().__init__([w.HTML("<b>Modes</b>&nbsp;"), self.chosen, self.menu])
        self.layout.flex_flow = "row wrap"
        self.layout.align_items = "center"
        self.add_class("dashnb-lab-modes")
        model.observe(self._show, names="modes")
        self._show()

    def _show(self, _change=None) -> None:
        modes = self.model.modes
        for old in self.chosen.children:
            old.close()
        chips = []
        for name in modes:
            chip = w.Button(
                description=f"{name} ✕",
                tooltip=f"remove {name}: {MODES[name]}",
                layout=w.Layout(width="auto"),
                style={"button_color": mode_color(name), "text_color": "white"},
            )
            chip.on_click(lambda _b, name=name: self.remove(name))
            chip.add_class("dashnb-lab-mode")
            chips.append(chip)
        self.chosen.children = chips
        # The menu lists the modes not chosen, family by family, each entry naming its family.
        rest = [
            (f"{family}: {name}", name)
            for family in MODE_FAMILIES
            for name in MODES
            if name not in modes and mode_family(name) == family
        ]
        self.menu.unobserve(self._add, names="value")
        try:
            self.menu.options = [("add a mode…", self.ADD), *rest]
            self.menu.value = self.ADD
        finally:
            self.menu.observe(self._add, names="value")

    def _add(self, change) -> None:
        if change["new"] and change["new"] not in self.model.modes:
            self.model.modes = (*self.model.modes, change["new"])

    def remove(self, name: str) -> None:
        self.model.modes = tuple(m for m in self.model.modes if m != name)

    def close(self) -> None:
        # Closed by the panel and again when collected: only the first time does anything.
        if self._open:
            self._open = False
            self.model.unobserve(self._show, names="modes")
            self.menu.unobserve(self._add, names="value")
        super().close()


class LatencyLab(w.VBox):
    """The panel: controls linked to a LabModel, a status line, a plot and a table.

    Every control change re-measures in the background (sliders report on release or key
    press only: ``continuous_update=False``). ``lab.model`` is the LabModel. ``presenter=True``
    lays it out for a projector: large type, controls in tabs beside a plot as wide as the window.
    """

    def __init__(
        self, model: LabModel | None = None, *, measure: bool = True, presenter: bool = False, **settings: Any
    ) -> None:
        if model is not None and settings:
            raise TypeError("pass either a LabModel or settings, not both")
        self.model = model if model is not None else LabModel(**settings)
        self.presenter = presenter
        self._svg: str | None = None
        self._drawn: tuple | None = None
        m = self.model
        c = dict(continuous_update=False, style=wide, layout=slider_layout)
        # The pool column speaks Java: the names of the settings a reader tunes in the SDK.
        j = dict(continuous_update=False, style=java, layout=java_layout)
        self.controls = {
            "scenario": w.Dropdown(
                options=[("custom", "custom")] + [(s.label, name) for name, s in LAB_SCENARIOS.items()],
                description="scenario",
                tooltip="named settings: four lessons, then the assumed networks of dashnb.SCENARIOS",
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
            "concurrency": w.IntSlider(min=1, max=32, description="concurrency", **c),
            # Up to 100: the first count at which a p99 means something (MIN_SAMPLES).
            "calls": w.IntSlider(min=2, max=100, description="calls per mode", **c),
            "side_by_side": w.Checkbox(description="modes side by side (faster)", indent=False),
            "y_axis": w.ToggleButtons(
                options=Y_AXIS_LABELS,
                description="y-axis",
                tooltip="keep: grows when a run does not fit, never shrinks; lock: never changes; "
                "fit: every run on its own scale",
                style={"description_width": "60px", "button_width": "110px"},
            ),
        }
        self._links: list[Any] = [w.link((m, name), (control, "value")) for name, control in self.controls.items()]
        # Timeouts stop at round values, so that 0.03 s (below a 40 ms round trip) is reachable.
        for name, label in (
            ("connect_timeout", "connectTimeout (s)"),
            ("read_timeout", "readTimeout (s)"),
            ("connection_idle_timeout", "connectionIdleTimeout (s)"),
        ):
            stops = timeout_stops(getattr(m, name))
            self.controls[name] = slider = w.SelectionSlider(
                options=[(f"{v:g}", v) for v in stops], description=label, **j
            )
            self._links.append(_StopsLink(m, name, slider))
        self.mode_picker = ModePicker(m)
        self.pool_hint = w.HTML()
        self.pool_hint.add_class("dashnb-lab-pool-hint")
        m.observe(self._show_pool_hint, names=["concurrency", "calls", "modes", *POOL_FIELDS])

        def button(label: str, tip: str, action) -> w.Button:
            b = w.Button(description=label, tooltip=tip, layout=w.Layout(width="auto"))
            b.on_click(lambda _b: action())
            return b

        self.buttons = {
            "pin": button("pin this run", "keep this run as dashed ghost marks, for before/after", self._pin),
            "unpin": button("unpin", "remove the pinned run", m.unpin),
            "fit": button("fit y-axis", "fit the axes to this run now", m.fit_y_axis),
            "reset": button("reset to defaults", "every setting back to its default", m.reset),
        }
        # Download links carry their data, so they are built only when asked for: a committed
        # notebook (or a widget message per redraw) need not hold three copies of each run.
        self.save = w.ToggleButton(description="save…", tooltip="links to download this run as JSON, CSV, PNG")
        self.save.observe(self._show_exports, names="value")
        self.status = w.HTML()
        self.scenario_note = w.HTML()
        self.exports = w.HTML()
        self.plot = w.Output(layout=w.Layout(min_height="288px" if not presenter else "240px"))
        self.table = w.HTML()
        actions = w.HBox([*self.buttons.values(), self.save], layout=w.Layout(flex_flow="row wrap"))
        children = presenter_layout(self, actions) if presenter else lab_layout(self, actions)
        super().__init__(children, layout=w.Layout(border="1px solid #ddd", padding="6px"))
        self.add_class("dashnb-lab")
        if presenter:
            self.add_class("dashnb-lab-presenter")
        # Stable hooks for the browser tests (and anyone styling the panel).
        self.status.add_class("dashnb-lab-status")
        self.scenario_note.add_class("dashnb-lab-scenario-note")
        self.controls["scenario"].add_class("dashnb-lab-scenario")
        self.plot.add_class("dashnb-lab-plot")
        self.table.add_class("dashnb-lab-table")
        self.exports.add_class("dashnb-lab-exports")
        self.save.add_class("dashnb-lab-save")
        for name, b in self.buttons.items():
            b.add_class(f"dashnb-lab-{name}")
        m.observe(self._show_status, names=["status", "error", "measuring"])
        m.observe(self._show_result, names=["result", "scale", "pinned", "y_axis"])
        m.observe(self._show_scenario, names="scenario")
        self._show_status()
        self._show_scenario()
        self._show_pool_hint()
        if m.result is not None:
            self._show_result()
        m.live = True
        if measure:
            try:
                m.schedule(delay=0)
            except RuntimeError:
                m.status = "not measured yet: no event loop is running; call `await lab.model.measure()`"

    # -- rendering -------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"LatencyLab({self.model.settings().label})"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        # The widget view, plus the latest plot as a picture: front ends without the widget
        # (nbconvert, GitHub, a notebook opened before its kernel runs) show that instead of
        # an empty box. Front ends with widgets rank the widget view first.
        # Drawn here, once per display, not on every redraw: the panel itself shows an SVG.
        bundle = super()._repr_mimebundle_(**kwargs)
        if self.model.result is not None:
            bundle["image/png"] = base64.b64encode(self.model.to_png(**STATIC_FIGURE)).decode("ascii")
        return bundle

    def _show_pool_hint(self, _change=None) -> None:
        text = pool_hint(self.model.settings())
        self.pool_hint.value = f"<small style='color:#8a4b00'>{html.escape(text)}</small>" if text else ""

    def _pin(self) -> None:
        try:
            self.model.pin()
        except RuntimeError as exc:  # nothing measured yet: say so where the reader looks
            self.model.status = str(exc)

    def _show_scenario(self, _change=None) -> None:
        text = self.model.scenario_description
        self.scenario_note.value = f"<small>{html.escape(text)}</small>" if text else ""

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
        # A new result also moves the scale: draw once for both.
        key = (id(result), m.scale, id(m.pinned), m.y_axis)
        if key == self._drawn:
            return
        self._drawn = key
        svg = self._svg = lab_figure_svg(
            result,
            settings,
            scale=m.scale,
            pinned=m.pinned,
            y_axis=m.y_axis,
            **(PRESENTER_FIGURE if self.presenter else LAB_FIGURE),
        )
        # Filled through the Output's model (not `with out:`), so nbval, Lab and Voila all
        # see the same outputs and nothing lands in whatever cell happens to be running.
        self.plot.outputs = (
            {
                "output_type": "display_data",
                "data": {
                    "image/svg+xml": svg,
                    "text/plain": f"<latency plot: {settings.label}>",
                },
                "metadata": {},
            },
        )
        caption = f"<b>{html.escape(settings.label)}</b>"
        self.table.value = html_table(m.summary, caption=caption, notes=m.notes()).replace(
            "<td style='text-align:right'>-</td>", "<td style='text-align:right'>—</td>"
        )
        self._show_exports()

    def _show_exports(self, _change=None) -> None:
        if self.save.value and self.model.result is not None:
            self.exports.value = self._export_links(self.model.to_png(**STATIC_FIGURE))
        else:
            self.exports.value = ""

    def _export_links(self, png: bytes) -> str:
        # Links carrying the data themselves: a download needs no file on the server, works the
        # same in JupyterLab and Voila, and never leaves the machine.
        m, name = self.model, html.escape(self.model.export_name)
        links = [
            ("JSON", "application/json", m.to_json().encode()),
            ("CSV", "text/csv", m.to_csv().encode()),
            ("PNG", "image/png", png),
        ]
        anchors = " · ".join(
            f"<a download='{name}.{label.lower()}' href='data:{mime};base64,"
            f"{base64.b64encode(data).decode('ascii')}' class='dashnb-lab-save-{label.lower()}'>{label}</a>"
            for label, mime, data in links
        )
        return f"<span>save: {anchors}</span>"

    def close(self, *, close_model: bool = True) -> None:
        """Close the panel and its controls; also its model (cancelling its measurement,
        stopping its emulators and workers) unless ``close_model=False``."""
        if not self._links and self.comm is None:  # closed already
            return
        m = self.model
        m.unobserve(self._show_pool_hint, names=["concurrency", "calls", "modes", *POOL_FIELDS])
        m.unobserve(self._show_status, names=["status", "error", "measuring"])
        m.unobserve(self._show_result, names=["result", "scale", "pinned", "y_axis"])
        m.unobserve(self._show_scenario, names="scenario")
        self.save.unobserve(self._show_exports, names="value")
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


def lab(
    model: LabModel | None = None,
    *,
    measure: bool = True,
    name: str = "default",
    presenter: bool = False,
    **settings: Any,
):
    """The live latency lab panel (display it as a cell's last expression).

    Settings (all optional): rtt_ms, ttfb_ms (server time), tls ("1.3" | "1.2" | "off"),
    scenario (a name from dashnb.SCENARIOS), the pool as PoolConfig fields (config=PoolConfig(...)
    or connection_pool_size, maximum_async_requests, maximum_async_requests_per_host,
    connect_timeout, read_timeout, connection_idle_timeout), concurrency, calls, modes,
    side_by_side. ``presenter=True``: large type, controls in tabs beside a plot that scales
    with the window (what ``make workshop`` shows). The first measurement starts at once in the
    background when an event loop is running (a notebook); ``await lab.model.wait()`` gives its
    result.

    One panel per ``name`` is live: calling ``lab()`` again (re-running the cell) closes the
    previous panel of that name first - its measurement is cancelled, its emulators and worker
    threads stopped. Give another ``name`` to keep two labs side by side.
    """
    with _LABS_LOCK:
        old = _LABS.pop(name, None)
    if old is not None:
        # A model handed in again belongs to the caller: close only the old view around it.
        old.close(close_model=old.model is not model)
    panel = LatencyLab(model, measure=measure, presenter=presenter, **settings)
    with _LABS_LOCK:
        _LABS[name] = panel
    return panel
