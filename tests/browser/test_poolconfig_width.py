"""The PoolConfig table (notebook 01) fits the output area of a 1280 px screen, also with one more
library column, and nothing inside it overflows its cell."""

from __future__ import annotations

import html

import pytest

from dashnb import PoolConfig
from dashnb._config.table import _CELL, _table_open

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
    """The table as _repr_html_ lays it out, with one more library column of long text."""
    head = ("Java name", "value", "env var", "requests / urllib3", "aiohttp", "another library", "note")
    rows = []
    for row in config.rows():
        cells = (
            f"<code>{row['java_name']}</code>",
            row["value_text"],
            f"<code>{row['env_var']}</code>",
            html.escape(row["requests"]),
            html.escape(row["aiohttp"]),
            html.escape(row["aiohttp"] + " " + row["requests"]),
            html.escape(row["note"]),
        )
        rows.append("<tr>" + "".join(f"<td{_CELL}>{c}</td>" for c in cells) + "</tr>")
    header = "<tr>" + "".join(f"<th{_CELL}>{h}</th>" for h in head) + "</tr>"
    return f"{_table_open(head)}<thead>{header}</thead><tbody>{''.join(rows)}</tbody></table>"


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


@pytest.mark.browser
def test_poolconfig_table_fits_in_jupyterlab_at_1280px(page, start_lab):
    """Notebook 03's stored PoolConfig table, as JupyterLab shows it in a 1280 px window."""
    lab = start_lab()
    harness.open_notebook(page, lab, "03_java_pool_parameters.ipynb")
    tables = page.locator("table.dashnb-poolconfig")
    tables.first.wait_for(state="attached", timeout=30_000)
    tables.first.scroll_into_view_if_needed()
    boxes = page.evaluate(
        """() => [...document.querySelectorAll("table.dashnb-poolconfig")].map(t => {
             const area = t.closest(".jp-OutputArea-output") || t.parentElement;
             return {right: t.getBoundingClientRect().right, width: t.getBoundingClientRect().width,
                     area: area.getBoundingClientRect().width, window: window.innerWidth};
           })"""
    )
    assert boxes, "no PoolConfig table in notebook 03's stored outputs"
    for box in boxes:
        assert box["window"] == 1280 and box["right"] <= 1280 and box["width"] <= box["area"] + 0.5, box
