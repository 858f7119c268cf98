"""The docs site: `make docs` builds README, the executed notebooks, the API reference and
CONTRIBUTING into static pages, offline, strictly (a broken link or a failed notebook fails it),
and chromium opening the pages from a local server makes no request that leaves 127.0.0.1.

    python -m pytest tests/browser/test_docs_site.py -q
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_BOUND_S = 900  # a cold build takes well under a minute; the bound only catches a hang

pytestmark = pytest.mark.slow

PAGES = [
    "index.html",
    "docs/index.html",
    "README.html",
    "notebooks/00_quickstart.html",
    "notebooks/01_sync_sessions.html",
    "notebooks/02_async_connector.html",
    "notebooks/03_java_pool_parameters.html",
    "notebooks/04_latency_lab.html",
    "notebooks/05_timeouts_and_failures.html",
    "notebooks/06_httpx_generation.html",
    "docs/api.html",
    "CONTRIBUTING.html",
]


def _sphinx(src: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", "-c", str(REPO / "docs"),
         "-d", str(out) + "-doctrees", str(src), str(out)],
        capture_output=True, text=True, timeout=BUILD_BOUND_S,
    )  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """`make docs`, as the Makefile runs it, into a temporary folder."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = tmp_path_factory.mktemp("docs") / "site"
    stamp = out.parent / "stamp"
    stamp.touch()  # installed: the running interpreter's environment has the [docs] extra
    env = {k: v for k, v in os.environ.items() if k != "MAKEFLAGS"}
    started = time.perf_counter()
    done = subprocess.run(
        ["make", "-s", "-C", str(REPO), "docs", f"BIN={Path(sys.executable).parent}", f"STAMP={stamp}",
         f"DOCS_OUT={out}"],
        env=env, capture_output=True, text=True, timeout=BUILD_BOUND_S,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    pages = len(list(out.rglob("*.html")))
    print(f"\nmake docs: {elapsed:.0f} s, {pages} HTML pages", file=sys.stderr)
    assert elapsed < BUILD_BOUND_S
    return out


def test_the_site_has_every_page_and_the_widget_as_its_picture(site):
    for page in PAGES:
        assert (site / page).is_file(), page
    api = (site / "docs/api.html").read_text(encoding="utf-8")
    for name in ("PoolConfig", "session", "ask", "compare", "emulator.start"):
        assert f'id="dashnb.{name}"' in api, name
    lab = (site / "notebooks/04_latency_lab.html").read_text(encoding="utf-8")
    assert re.search(r'<img[^>]+src="[^"]*\.png"', lab), "the lab's saved picture is not on its page"
    assert "widget-view+json" not in lab and "unpkg" not in lab
    readme = (site / "README.html").read_text(encoding="utf-8")
    assert "latency-lab.png" in readme and (site / "_images" / "latency-lab.png").is_file()


def test_no_page_loads_anything_from_outside(site):
    # The cheap half of the offline check: no tag in any page points at another host.
    remote = re.compile(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=\"(?:https?:)?//", re.I)
    offenders = [p.relative_to(site).as_posix() for p in site.rglob("*.html") if remote.search(p.read_text("utf-8"))]
    assert not offenders, offenders


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.mark.browser
def test_chromium_opening_the_pages_never_leaves_loopback(site, browser):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    context = browser.new_context()
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    try:
        page = context.new_page()
        for path in [*PAGES, "search.html?q=connection"]:
            page.goto(f"{base}/{path}", wait_until="networkidle", timeout=120_000)
        assert page.locator("#search-results").count() == 1
        lab = context.new_page()
        lab.goto(f"{base}/notebooks/04_latency_lab.html", wait_until="networkidle", timeout=120_000)
        shown = lab.evaluate("[...document.images].filter(i => i.complete && i.naturalWidth > 0).length")
        assert shown >= 1, "no picture rendered on the lab's page"
    finally:
        context.close()
        server.shutdown()
        server.server_close()
    assert len(requests) > len(PAGES)
    outside = sorted({u for u in requests if urlsplit(u).hostname != "127.0.0.1" and not u.startswith("data:")})
    assert not outside, outside


def _mini_source(tmp_path: Path, index: str) -> Path:
    src = tmp_path / "src"
    (src / "docs").mkdir(parents=True)
    (src / "docs" / "index.md").write_text(index, encoding="utf-8")
    return src


def test_a_broken_link_fails_the_build(tmp_path):
    ok = _sphinx(_mini_source(tmp_path / "ok", "# Home\n\nNo links.\n"), tmp_path / "ok-out")
    assert ok.returncode == 0, ok.stderr  # the control: the same page without the link builds
    broken = _sphinx(_mini_source(tmp_path / "bad", "# Home\n\n[gone](nowhere.md)\n"), tmp_path / "bad-out")
    assert broken.returncode != 0 and "nowhere" in broken.stderr


def test_a_notebook_with_an_error_or_never_run_fails_the_build(tmp_path):
    src = _mini_source(tmp_path, "# Home\n\n```{toctree}\n/notebooks/00_broken\n```\n")
    (src / "notebooks").mkdir()
    cell = {"cell_type": "code", "metadata": {}, "source": ["1 / 0"], "execution_count": 1,
            "outputs": [{"output_type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero",
                         "traceback": []}]}  # fmt: skip
    notebook = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# Broken"]}, cell],
                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}  # fmt: skip
    (src / "notebooks" / "00_broken.ipynb").write_text(json.dumps(notebook), encoding="utf-8")
    failed = _sphinx(src, tmp_path / "out")
    assert failed.returncode != 0 and "00_broken.ipynb cell 2: ZeroDivisionError" in failed.stderr
    cell.update(execution_count=None, outputs=[])
    (src / "notebooks" / "00_broken.ipynb").write_text(json.dumps(notebook), encoding="utf-8")
    never_run = _sphinx(src, tmp_path / "out2")
    assert never_run.returncode != 0 and "00_broken.ipynb cell 2: never executed" in never_run.stderr
