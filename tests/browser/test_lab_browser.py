"""The latency lab in a real browser: notebooks/04_latency_lab.ipynb in JupyterLab and in Voila.

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


def test_lab_in_voila(page, start_voila):
    voila = start_voila(harness.NOTEBOOKS / NOTEBOOK)
    timings = {"voila_ready_s": voila.ready_s}
    # Voila runs every cell before (or while) it shows the page.
    timings["page_to_widgets_s"] = harness.open_voila(page, voila, selector=harness.SLIDER_HANDLE)
    # Presenters see no code.
    shown = page.locator("body").inner_text()
    assert "dashnb.lab()" not in shown and "await lab.model.wait()" not in shown
    _exercise(page, "latency-lab-voila", timings)
