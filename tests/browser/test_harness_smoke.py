"""The browser harness end to end: a slider redraws a matplotlib plot in JupyterLab and in Voilà.

The notebook is made here (not taken from notebooks/) so these tests prove the harness
itself, independent of any lesson.
"""

from __future__ import annotations

import json
import time

import nbformat
import pytest

from . import harness

pytestmark = pytest.mark.browser

NOTEBOOK = "slider_smoke.ipynb"

# The Output widget is filled through its model (not `with out:`), as the lessons do:
# the same code then renders in Lab, in Voilà, and passes nbval in strict mode.
SLIDER_CELL = """\
import math

import ipywidgets as widgets
import matplotlib.pyplot as plt

slider = widgets.IntSlider(value=1, min=1, max=10, description="waves")
out = widgets.Output()


def redraw(change=None):
    n = slider.value
    xs = [i / 50 for i in range(315)]
    fig, ax = plt.subplots(figsize=(4, 2.5))
    ax.plot(xs, [math.sin(n * x) for x in xs])
    ax.set_title(f"sin({n}x)")
    plt.close(fig)
    out.outputs = ()
    out.append_display_data(fig)


slider.observe(redraw, names="value")
redraw()
widgets.VBox([slider, out])
"""


@pytest.fixture
def smoke_dir(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Harness smoke test\nMove the slider; the plot follows."),
        nbformat.v4.new_code_cell(SLIDER_CELL),
    ]
    nbformat.write(nb, tmp_path / NOTEBOOK)
    return tmp_path


def _record(name: str, timings: dict) -> None:
    print(f"{name} timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
    (harness.artifacts_dir() / f"{name}-timings.json").write_text(json.dumps(timings, indent=2))


def _step_slider(page, before: str) -> tuple[str, float]:
    start_value = harness.slider_readout(page)
    started = time.perf_counter()
    harness.move_slider(page)
    after = harness.wait_image_settled(page, previous=before)
    elapsed = time.perf_counter() - started
    assert harness.slider_readout(page) == str(int(start_value) + 1)
    return after, elapsed


def test_lab_slider_redraws_plot(page, start_lab, smoke_dir):
    original = (smoke_dir / NOTEBOOK).read_bytes()
    lab = start_lab(smoke_dir)
    assert lab.root != smoke_dir and (lab.root / NOTEBOOK).exists()

    timings = {"lab_ready": lab.ready_s}
    timings["open_to_idle"] = harness.open_notebook(page, lab, NOTEBOOK)
    # Before running, a fresh notebook shows no widgets at all.
    assert harness.image_src(page) is None
    timings["run_all"] = harness.run_all_cells(page)
    harness.assert_widgets_ok(page, selector=harness.SLIDER_HANDLE)
    assert harness.slider_readout(page) == "1"
    first = harness.wait_image_settled(page)
    assert first.startswith("data:image/png;base64,")
    harness.screenshot(page, "smoke-lab-before", scroll_to=harness.OUTPUT_IMAGE)

    second, timings["slider_to_settled"] = _step_slider(page, first)
    assert second != first
    harness.assert_widgets_ok(page, selector=harness.SLIDER_HANDLE)
    shot = harness.screenshot(page, "smoke-lab-after", scroll_to=harness.OUTPUT_IMAGE)
    assert shot.stat().st_size > 10_000

    # The served copy changed nothing in the source folder.
    assert (smoke_dir / NOTEBOOK).read_bytes() == original
    _record("smoke-lab", timings)


def test_voila_slider_redraws_plot(page, start_voila, smoke_dir):
    voila = start_voila(smoke_dir / NOTEBOOK)
    timings = {"voila_ready": voila.ready_s}
    timings["page_to_widgets"] = harness.open_voila(page, voila, selector=harness.SLIDER_HANDLE)
    harness.assert_widgets_ok(page, selector=harness.SLIDER_HANDLE)
    first = harness.wait_image_settled(page)
    harness.screenshot(page, "smoke-voila-before")

    second, timings["slider_to_settled"] = _step_slider(page, first)
    assert second != first
    harness.assert_widgets_ok(page, selector=harness.SLIDER_HANDLE)
    harness.screenshot(page, "smoke-voila-after")
    _record("smoke-voila", timings)


def test_missing_chromium_reason_is_actionable():
    # What a machine without chromium is told (the `chromium` fixture skips with it).
    assert "apt-get install chromium" in harness.NO_CHROMIUM
