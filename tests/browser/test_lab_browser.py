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

import contextlib
import json
import time
from pathlib import Path

import pytest

from dashnb._lab.settings import LAB_SCENARIOS

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
    assert first.startswith("data:image/svg+xml")  # text that stays text, sharp at any size
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


# -- the lab as one instrument, and presenter mode on a projector ----------------------------

LAB_SIZE = (1280, 800)

# After the panel's top is scrolled to the top of Lab's notebook: the boxes of the plot and of
# every visible slider, clipped by what the reader can see (the window and the notebook's own
# scrolling area).
_ONE_SCREEN_JS = """
sel => {
  const panel = [...document.querySelectorAll(sel)].filter(e => e.offsetParent !== null).pop();
  let scroller = panel.parentElement;
  while (scroller && !(scroller.scrollHeight > scroller.clientHeight
                       && /(auto|scroll)/.test(getComputedStyle(scroller).overflowY)))
    scroller = scroller.parentElement;
  panel.scrollIntoView({block: 'start'});
  const s = scroller ? scroller.getBoundingClientRect() : {top: 0, left: 0, bottom: innerHeight, right: innerWidth};
  const seen = {left: Math.max(0, s.left), top: Math.max(0, s.top),
                right: Math.min(innerWidth, s.right), bottom: Math.min(innerHeight, s.bottom)};
  const box = e => { const r = e.getBoundingClientRect();
    return {what: (e.innerText || e.className).slice(0, 40), left: r.left, top: r.top, right: r.right,
            bottom: r.bottom, width: r.width, height: r.height}; };
  const shown = q => [...panel.querySelectorAll(q)].filter(e => e.offsetParent !== null);
  return {seen, panel: box(panel), plot: box(panel.querySelector('.dashnb-lab-plot img')),
          sliders: shown('.widget-slider').map(box),
          checkboxes: shown('.widget-checkbox').length,
          axis: shown('.widget-toggle-buttons').map(box)};
}
"""


def _inside(box: dict, area: dict) -> bool:
    return (
        box["left"] >= area["left"] - 0.5
        and box["top"] >= area["top"] - 0.5
        and box["right"] <= area["right"] + 0.5
        and box["bottom"] <= area["bottom"] + 0.5
    )


def test_the_lab_shows_its_sliders_and_its_plot_together_at_1280x800(page, start_lab):
    """Issue 21 (1): drag a slider, watch the plot, without scrolling in between."""
    page.set_viewport_size({"width": LAB_SIZE[0], "height": LAB_SIZE[1]})
    lab = start_lab()
    harness.open_notebook(page, lab, NOTEBOOK)
    harness.run_all_cells(page)
    _assert_no_errors(page)
    before = harness.wait_image_settled(page, selector=PLOT_IMAGE)
    boxes = page.evaluate(_ONE_SCREEN_JS, PANEL)
    page.wait_for_timeout(300)  # let Lab's scroller settle before the picture
    harness.screenshot(page, "lab-1280x800", full_page=False)
    print(
        f"lab at 1280x800: panel {boxes['panel']['height']:.0f} px tall; plot {boxes['plot']}; "
        f"sliders {boxes['sliders']}; seen {boxes['seen']}; checkboxes {boxes['checkboxes']}"
    )
    assert len(boxes["sliders"]) >= 4, boxes["sliders"]
    for box in [boxes["plot"], *boxes["sliders"], *boxes["axis"]]:
        assert _inside(box, boxes["seen"]), f"{box['what']!r} is off screen once the panel is in view: {box}"
    # Modes are picked from a compact picker, not two dozen check boxes.
    assert boxes["checkboxes"] <= 2, boxes["checkboxes"]
    # And the slider in view drives the plot in view.
    _step(page, before)
    after = page.evaluate(_ONE_SCREEN_JS, PANEL)
    assert _inside(after["plot"], after["seen"]), after["plot"]


POOL_TOO_SMALL = LAB_SCENARIOS["pool_too_small"].label
PROJECTOR_SIZES = ((1024, 768), (1280, 720), (1920, 1080))
MIN_PLOT_TEXT_PX = 16

# What a projector shows: the plot's text as displayed (the plot is an SVG whose text stays
# text: its font sizes, times the scale the page draws it at), the connections axis' tick
# labels, anything wider than the window or cut off, and the scenario note.
_LEGIBLE_JS = """
async () => {
  const panel = document.querySelector('.dashnb-lab-presenter');
  const img = panel.querySelector('.dashnb-lab-plot img');
  const r = img.getBoundingClientRect();
  const out = {plot: {width: r.width, height: r.height, left: r.left, right: r.right, top: r.top, bottom: r.bottom},
               src: img.src.slice(0, 30), text_px: [], ticks: []};
  if (img.src.startsWith('data:image/svg+xml')) {
    const text = await (await fetch(img.src)).text();
    const svg = new DOMParser().parseFromString(text, 'image/svg+xml').documentElement;
    const scale = r.width / svg.viewBox.baseVal.width;
    for (const t of svg.querySelectorAll('text')) {
      const m = /font(?:-size)?:\\s*([\\d.]+)px/.exec(t.getAttribute('style') || '');
      if (m && t.textContent.trim()) out.text_px.push([t.textContent.trim(), parseFloat(m[1]) * scale]);
    }
    const conn = svg.querySelector('#connections');
    if (conn) out.ticks = [...conn.querySelectorAll('[id^="xtick_"] text')].map(t => t.textContent.trim());
  }
  const page = document.documentElement;
  out.overflow_px = Math.max(page.scrollWidth, document.body.scrollWidth) - innerWidth;
  out.wider = [...panel.querySelectorAll('*')].filter(e => e.offsetParent !== null)
    .map(e => [e.className && e.className.baseVal === undefined ? String(e.className).slice(0, 40) : e.tagName,
               e.getBoundingClientRect().right])
    .filter(([_, right]) => right > innerWidth + 0.5).slice(0, 5);
  const cut = e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1
    && getComputedStyle(e).overflowX !== 'visible' && getComputedStyle(e).overflowX !== 'auto'
    && getComputedStyle(e).overflowX !== 'scroll';
  out.cut = [...panel.querySelectorAll('.widget-label, .widget-label-basic, .widget-readout, button, '
    + '.lm-TabBar-tabLabel, .widget-html-content, .widget-dropdown select, .dashnb-lab-table')]
    .filter(cut).map(e => (e.innerText || e.value || '').slice(0, 40));
  const note = panel.querySelector('.dashnb-lab-scenario-note') || null;
  const n = note && note.getBoundingClientRect();
  out.note = note ? {text: note.innerText.trim().slice(0, 60), shown: note.offsetParent !== null,
                     left: n.left, top: n.top, right: n.right, bottom: n.bottom} : null;
  return out;
}
"""


def test_presenter_mode_is_legible_on_a_projector(browser, start_voila):
    """Issue 21 (2): at 1024x768, 1280x720 and 1920x1080 the plot's text is at least 16 px as
    displayed, the connections axis counts in whole numbers, nothing is wider than the window or
    cut off, and a chosen scenario's note is on screen."""
    voila = start_voila(harness.PRESENTER_NOTEBOOK, template=harness.PRESENTER_TEMPLATE)
    seen = {}
    for size in PROJECTOR_SIZES:
        context, page, _sockets, _ = _presenter_page(browser, voila, size)
        name = f"projector-{size[0]}x{size[1]}"
        try:
            _assert_no_errors(page)
            before = harness.image_src(page, selector=PLOT_IMAGE)
            # A scenario whose note says what to look for; its plot has more connections.
            page.locator("select").filter(has_text=POOL_TOO_SMALL).select_option(label=POOL_TOO_SMALL)
            harness.wait_image_settled(page, selector=PLOT_IMAGE, previous=before)
            got = page.evaluate(_LEGIBLE_JS)
            harness.screenshot(page, name, full_page=False)
            # The Java names are the longest labels: nothing cut in the pool tab either.
            harness.scope(page).locator(".lm-TabBar-tab").get_by_text("Pool (Java)", exact=True).click()
            got["cut"] += page.evaluate(_LEGIBLE_JS)["cut"]
            smallest = min((px for _, px in got["text_px"]), default=None)
            seen[name] = {k: got[k] for k in ("plot", "src", "ticks", "overflow_px", "wider", "cut", "note")}
            seen[name]["smallest_text_px"] = smallest
            print(f"{name}: {json.dumps(seen[name])}")
        finally:
            context.close()
    (harness.artifacts_dir() / "projector-measurements.json").write_text(json.dumps(seen, indent=2))
    for name, got in seen.items():
        assert got["src"].startswith("data:image/svg+xml"), f"{name}: the plot is not an SVG, its text is pixels"
        assert got["smallest_text_px"] is not None and got["smallest_text_px"] >= MIN_PLOT_TEXT_PX, (name, got)
        assert got["ticks"] and all(t.lstrip("−-").isdigit() for t in got["ticks"]), (name, got["ticks"])
        assert got["overflow_px"] <= 0 and not got["wider"], (name, got["overflow_px"], got["wider"])
        assert not got["cut"], (name, got["cut"])
        note = got["note"]
        width, height = (int(x) for x in name.split("-")[1].split("x"))
        assert note and note["shown"] and "connection" in note["text"], (name, note)
        area = {"left": 0, "top": 0, "right": width, "bottom": height}
        assert _inside(note, area), (name, note)


def _kernel_processes(voila) -> int:
    """Kernels the Voila server runs: its descendant processes started as ipykernel (Linux /proc)."""
    parents: dict[int, int] = {}
    commands: dict[int, bytes] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                commands[int(entry.name)] = (entry / "cmdline").read_bytes()
    family, grew = {voila.process.pid}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in family} - family
        family |= more
        grew = bool(more)
    return sum(1 for pid in family if b"ipykernel" in commands.get(pid, b""))


# What the dashnb-presenter configuration promises (dashnb/_jupyter/etc/jupyter/voila.json): an
# idle kernel without a page is shut down after 60 s, checked every 10 s. Wide margin on top.
CULL_BOUND_S = 60 + 10 + 60


def test_a_closed_presenter_page_leaves_no_kernel_behind(browser, start_voila):
    """Issue 21 (2): every page load of Voila starts a kernel; closing the page must end it,
    while a page still open keeps its kernel and keeps working."""
    voila = start_voila(harness.PRESENTER_NOTEBOOK, template=harness.PRESENTER_TEMPLATE)
    kept, page, _s, _ = _presenter_page(browser, voila, (1280, 720))
    closed, _other, _s2, _ = _presenter_page(browser, voila, (1280, 720))
    try:
        assert _kernel_processes(voila) == 2
        closed.close()
        started = time.perf_counter()
        while _kernel_processes(voila) > 1:
            waited = time.perf_counter() - started
            assert waited < CULL_BOUND_S, f"the closed page's kernel still runs after {waited:.0f} s"
            time.sleep(1)
        print(f"closed page's kernel gone after {time.perf_counter() - started:.0f} s")
        # The open page was idle all that time and still has its kernel: a slider step redraws.
        assert _kernel_processes(voila) == 1
        _step(page, harness.image_src(page, selector=PLOT_IMAGE))
    finally:
        kept.close()
