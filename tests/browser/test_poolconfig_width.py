"""The PoolConfig table fits the output area of a 1280 px screen, also with one more library, and
nothing inside it overflows its cell; in JupyterLab at 1280x800 notebook 03's tables (PoolConfig and
the OkHttp cross-check) are no wider than the output area and wrap between words, never inside one."""

from __future__ import annotations

import json

import pytest

from dashnb import PoolConfig
from dashnb._config.table import _CELL, _HEAD, _LIBRARIES, _row_cells, _table_open

from . import harness

# JupyterLab's output area at a 1280 px window: about 850 px with the file browser open,
# about 1150 px with it closed.
OUTPUT_WIDTHS = (850, 1150)

MEASURE = """() => {
  const table = document.querySelector("table.dashnb-poolconfig");
  const cells = [...table.querySelectorAll("td, th")];
  return {
    table: table.getBoundingClientRect().width,
    overflowing: cells.filter(c => c.scrollWidth > c.clientWidth + 1).map(c => c.textContent.slice(0, 40)),
  };
}"""


def _with_extra_column(config: PoolConfig) -> str:
    """The table as _repr_html_ lays it out, with one more library of long text."""
    libraries = (*_LIBRARIES, ("another library", "note"))
    rows = [
        "<tr>" + "".join(f"<td{_CELL}>{c}</td>" for c in _row_cells(row, libraries)) + "</tr>" for row in config.rows()
    ]
    header = "<tr>" + "".join(f"<th{_CELL}>{h}</th>" for h in _HEAD) + "</tr>"
    return f"{_table_open()}<thead>{header}</thead><tbody>{''.join(rows)}</tbody></table>"


@pytest.mark.browser
@pytest.mark.parametrize("variant", ["as rendered", "one more column"])
def test_poolconfig_table_fits_a_1280px_screen(browser, variant):
    config = PoolConfig(connect_timeout=10, connection_pool_size=64, maximum_async_requests=64)
    table = config._repr_html_() if variant == "as rendered" else _with_extra_column(config)
    context = harness.new_context(browser, width=1280, height=900)
    try:
        page = context.new_page()
        for width in OUTPUT_WIDTHS:
            page.set_content(f'<body style="margin:0"><div style="width:{width}px">{table}</div></body>')
            got = page.evaluate(MEASURE)
            assert got["table"] <= width, (width, got)
            assert got["overflowing"] == [], (width, got)
    finally:
        context.close()


# Every table of notebook 03 (the PoolConfig tables, and the cross-check table, whose caption says
# "Recorded"): its width against its output area's, the cells whose content overflows them, and
# the words the browser broke across two lines: a run of letters and digits whose range has boxes
# on two lines ("connectTimeo/ut"; a break after punctuation, as in "timeout=(/connect", is fine).
MEASURE_IN_LAB = """() => {
  const tables = [...document.querySelectorAll("table.dashnb-poolconfig, table")].filter(t =>
    t.classList.contains("dashnb-poolconfig") || (t.caption && t.caption.textContent.startsWith("Recorded")));
  return [...new Set(tables)].map(t => {
    const area = t.closest(".jp-OutputArea-output") || t.parentElement;
    const cells = [...t.querySelectorAll("td, th")];
    const broken = [];
    for (const cell of cells) {
      const walk = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
      for (let node = walk.nextNode(); node; node = walk.nextNode()) {
        for (const m of node.data.matchAll(/[A-Za-z0-9]+/g)) {
          const r = document.createRange();
          r.setStart(node, m.index);
          r.setEnd(node, m.index + m[0].length);
          if (new Set([...r.getClientRects()].map(b => Math.round(b.top))).size > 1) broken.push(m[0]);
        }
      }
    }
    return {
      table: t.classList.contains("dashnb-poolconfig") ? "PoolConfig" : "cross-check",
      width: t.getBoundingClientRect().width, area: area.clientWidth,
      areaScrolls: area.scrollWidth > area.clientWidth + 1,
      overflowing: cells.filter(c => c.scrollWidth > c.clientWidth + 1).map(c => c.textContent.slice(0, 40)),
      broken: broken.slice(0, 10), window: window.innerWidth,
    };
  });
}"""


@pytest.mark.browser
def test_notebook_03_tables_fit_jupyterlab_at_1280x800(browser, start_lab):
    """Notebook 03's stored tables, as JupyterLab shows them in a 1280x800 window with the file
    browser open: no wider than the output area, nothing overflowing, no word broken."""
    lab = start_lab()
    context = harness.new_context(browser, width=1280, height=800)
    try:
        page = context.new_page()
        harness.open_notebook(page, lab, "03_java_pool_parameters.ipynb")
        page.locator("table.dashnb-poolconfig").first.wait_for(state="attached", timeout=30_000)
        assert page.locator(".jp-FileBrowser:visible").count() == 1, "the file browser should be open"
        boxes = page.evaluate(MEASURE_IN_LAB)
    finally:
        context.close()
    assert {b["table"] for b in boxes} == {"PoolConfig", "cross-check"}, boxes
    fits = [box["window"] == 1280 and box["width"] <= box["area"] + 0.5 and not box["areaScrolls"] for box in boxes]
    whole = [box["overflowing"] == [] and box["broken"] == [] for box in boxes]
    bad = [box for box, ok, w in zip(boxes, fits, whole) if not (ok and w)]
    assert all(fits) and all(whole), json.dumps(bad)
