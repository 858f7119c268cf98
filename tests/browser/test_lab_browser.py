"""The latency lab in a real browser: notebooks/04_latency_lab.ipynb in JupyterLab, and presenter
mode (`make workshop`: notebooks/workshop.ipynb in Voila with the dashnb-presenter template).

Each test runs the notebook's cells (an executed notebook opened without running shows only
the text fallback, never live widgets), checks that no widget failed, moves the round-trip
slider with the keyboard and waits for the plot and the table to follow. It prints the time
from the key press to the first new plot image (what a presenter sees) and to a settled one,
and saves screenshots to the artifacts folder (tests/artifacts, or $DASHNB_ARTIFACTS).

The servers always run on a temporary copy of notebooks/, so nothing here rewrites the
committed notebook.
"""

from __future__ import annotations

import json
import time

import pytest

from . import harness

pytestmark = pytest.mark.browser

NOTEBOOK = "04_latency_lab.ipynb"
PANEL = ".dashnb-lab"
STATUS = ".dashnb-lab-status"
TABLE = ".dashnb-lab-table"
PLOT_IMAGE = ".dashnb-lab-plot img"
STEPS = 3  # slider moves per test; each one must redraw

# Generous: a step takes about a second at the default settings; this only catches a lab that
# hangs or never redraws, not a slow machine.
SLIDER_TO_PLOT_LIMIT_S = 10.0


def _text(page, selector: str) -> str:
    return harness.scope(page).locator(selector).first.inner_text().strip()


def _assert_no_errors(page) -> None:
    harness.assert_widgets_ok(page, selector=harness.SLIDER_HANDLE)
    status = _text(page, STATUS)
    assert not status.startswith("error"), f"the lab reports: {status}"
    assert "failed calls" not in status, f"the lab reports: {status}"


def _wait_first_change(page, previous: str, timeout_s: float = 30.0) -> float:
    """Seconds until the plot image differs from `previous` (polled every 20 ms)."""
    started = time.perf_counter()
    while harness.image_src(page, selector=PLOT_IMAGE) == previous:
        if time.perf_counter() - started > timeout_s:
            raise AssertionError(f"the plot did not change within {timeout_s:.0f} s of the slider move")
        page.wait_for_timeout(20)
    return time.perf_counter() - started


def _step(page, before: str) -> tuple[str, float, float]:
    """Move the round-trip slider one step; return (new image, seconds to first change,
    seconds to a settled image)."""
    rtt = int(float(harness.slider_readout(page)))
    table = _text(page, TABLE)
    started = time.perf_counter()
    harness.move_slider(page)
    first_change = _wait_first_change(page, before)
    after = harness.wait_image_settled(page, selector=PLOT_IMAGE, previous=before)
    settled = time.perf_counter() - started
    assert int(float(harness.slider_readout(page))) == rtt + 5
    # The table is redrawn with the plot, for the new round trip.
    page.wait_for_function(
        "([sel, rtt]) => { const t = document.querySelector(sel); return t && t.innerText.includes(rtt); }",
        arg=[TABLE, f"rtt {rtt + 5} ms"],
        timeout=10_000,
    )
    assert _text(page, TABLE) != table
    assert _text(page, STATUS).startswith("done in")
    return after, first_change, settled


def _exercise(page, name: str, timings: dict) -> None:
    _assert_no_errors(page)
    first = harness.wait_image_settled(page, selector=PLOT_IMAGE)
    assert first.startswith("data:image/png;base64,")
    assert "per_call" in _text(page, TABLE)
    harness.screenshot(page, f"{name}-before", scroll_to=PANEL)

    current, to_plot, to_settled = first, [], []
    for _ in range(STEPS):
        current, change_s, settled_s = _step(page, current)
        to_plot.append(change_s)
        to_settled.append(settled_s)
    _assert_no_errors(page)
    harness.screenshot(page, f"{name}-after", scroll_to=PANEL)
    # The panel alone, for the README: a tall viewport so that Lab's scrolling notebook does
    # not clip it.
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": 1600})
    panel = harness.scope(page).locator(PANEL).first
    panel.scroll_into_view_if_needed()
    panel.screenshot(path=str(harness.artifacts_dir() / f"{name}-panel.png"))
    page.set_viewport_size(size)

    timings["slider_to_new_plot"] = to_plot
    timings["slider_to_settled_plot"] = to_settled
    print(
        f"{name}: slider to new plot "
        + ", ".join(f"{s:.2f}" for s in to_plot)
        + " s; to settled "
        + ", ".join(f"{s:.2f}" for s in to_settled)
        + " s"
    )
    print(f"{name} timings: {json.dumps(timings)}")
    (harness.artifacts_dir() / f"{name}-timings.json").write_text(json.dumps(timings, indent=2))
    assert max(to_plot) < SLIDER_TO_PLOT_LIMIT_S, timings


def test_lab_in_jupyterlab(page, start_lab):
    lab = start_lab()  # a temporary copy of notebooks/
    timings = {"lab_ready_s": lab.ready_s}
    timings["open_to_idle_s"] = harness.open_notebook(page, lab, NOTEBOOK)
    # Not run yet: only the stored text fallback, no live plot.
    assert harness.image_src(page, selector=PLOT_IMAGE) is None
    timings["run_all_s"] = harness.run_all_cells(page)
    _exercise(page, "latency-lab-jupyterlab", timings)


PRESENTER_SIZES = ((1280, 720), (1920, 1080))

# Every control of the presenter panel, by kind, and the plot: what must be on screen.
_BOXES_JS = """
() => {
  const panel = document.querySelector('.dashnb-lab-presenter');
  const pick = sel => [...panel.querySelectorAll(sel)].filter(e => e.offsetParent !== null);
  const controls = pick('.dashnb-lab-side .widget-slider, .dashnb-lab-side .widget-dropdown, '
    + '.dashnb-lab-side .widget-toggle-buttons, .dashnb-lab-side .jupyter-button, .dashnb-lab-side .lm-TabBar, '
    + '.dashnb-lab-side .widget-checkbox');
  const box = e => { const r = e.getBoundingClientRect();
    return {what: e.className.split(' ').slice(0, 3).join('.') + ' ' + e.innerText.slice(0, 30),
            left: r.left, top: r.top, right: r.right, bottom: r.bottom, width: r.width}; };
  const label = panel.querySelector('.dashnb-lab-side .widget-slider .widget-label');
  return {controls: controls.map(box), plot: box(panel.querySelector('.dashnb-lab-plot img')),
          label_px: parseFloat(getComputedStyle(label).fontSize),
          scroll: [window.scrollX, window.scrollY]};
}
"""


def _presenter_page(browser, voila, size: tuple[int, int]):
    context = harness.new_context(browser, width=size[0], height=size[1])
    sockets: list[str] = []
    page = context.new_page()
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page_to_plot = harness.open_voila(page, voila, selector=PLOT_IMAGE)
    harness.wait_image_settled(page, selector=PLOT_IMAGE)
    return context, page, sockets, page_to_plot


def _assert_on_screen(page, size: tuple[int, int]) -> dict:
    width, height = size
    boxes = page.evaluate(_BOXES_JS)
    assert boxes["scroll"] == [0, 0]
    assert len(boxes["controls"]) >= 10, boxes["controls"]  # sliders, dropdowns, buttons, the tabs
    for box in [*boxes["controls"], boxes["plot"]]:
        inside = box["left"] >= 0 and box["top"] >= 0 and box["right"] <= width + 0.5 and box["bottom"] <= height + 0.5
        assert inside, f"{box['what']!r} is not inside the {width}x{height} window: {box}"
    assert boxes["label_px"] >= 16, f"controls' text is {boxes['label_px']} px: too small for a projector"
    return boxes


def _left_loopback(context, sockets: list[str]) -> list[str]:
    return list(context.dashnb_outside) + [u for u in sockets if not u.startswith("ws://127.0.0.1:")]


def test_presenter_mode_fits_both_sizes_and_stays_offline(browser, start_voila):
    """`make workshop`: workshop.ipynb through the dashnb-presenter template. At 1280x720 the
    controls and the plot are on screen without scrolling, at 1920x1080 the plot uses the width;
    no prose, no frozen numbers, and no request leaves loopback."""
    voila = start_voila(harness.PRESENTER_NOTEBOOK, template=harness.PRESENTER_TEMPLATE)
    timings: dict = {"voila_ready_s": voila.ready_s}
    plot_width = {}
    for size in PRESENTER_SIZES:
        context, page, sockets, page_to_plot = _presenter_page(browser, voila, size)
        name = f"presenter-{size[0]}x{size[1]}"
        try:
            timings[f"{name}_page_to_plot_s"] = page_to_plot
            assert _left_loopback(context, sockets) == [], "requests left the machine"
            _assert_no_errors(page)
            shown = page.locator("body").inner_text()
            # No code, no notebook prose, no claim cells' frozen numbers.
            for text in ("dashnb.lab(", "await lab", "What you will see", "make workshop", "claim holds"):
                assert text not in shown, f"presenter mode shows {text!r}"
            boxes = _assert_on_screen(page, size)
            plot_width[size] = boxes["plot"]["width"]
            harness.screenshot(page, name, full_page=False)
            if size == PRESENTER_SIZES[0]:
                # It still works as a lab: a slider step redraws, a pinned run is compared with.
                before = harness.image_src(page, selector=PLOT_IMAGE)
                harness.scope(page).locator(".dashnb-lab-pin").click()
                # Pinning redraws at once (ghost marks behind the bars), without measuring.
                pinned = harness.wait_image_settled(page, selector=PLOT_IMAGE, previous=before)
                _step(page, pinned)
                page.wait_for_function(
                    "sel => document.querySelector(sel).innerText.includes('Since the pinned run (rtt 40 ms')",
                    arg=TABLE,
                    timeout=10_000,
                )
                _assert_on_screen(page, size)
                for tab in ("Pool (Java)", "Modes"):  # the other tabs fit as well
                    harness.scope(page).locator(".lm-TabBar-tab").get_by_text(tab, exact=True).click()
                    assert len(_assert_on_screen(page, size)["controls"]) >= 8
                    harness.screenshot(page, f"{name}-{tab.split()[0].lower()}-tab", full_page=False)
            assert _left_loopback(context, sockets) == [], "requests left the machine"
        finally:
            context.close()
    small, large = (plot_width[s] for s in PRESENTER_SIZES)
    # The plot grows with the window: at 1920 it takes the width the side column leaves.
    assert large > 1.5 * small, plot_width
    assert large > 1920 - 520 - 200, plot_width
    print(f"presenter timings: {json.dumps(timings)}; plot widths {plot_width}")
    (harness.artifacts_dir() / "presenter-timings.json").write_text(json.dumps(timings, indent=2))
