"""`dashnb lab` as a learner starts it: the terminal shows the URL and stays quiet while a notebook
opens and its kernel starts, and the browser lands on the notebooks' start page."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from . import harness

# What the terminal used to repeat, once per start, notebook or kernel.
NOISE = {
    "ServerApp.token deprecation": "ServerApp.token config is deprecated",
    "unencrypted kernel TCP": "Kernel is running over TCP without encryption",
    "untrusted notebook": "is not trusted",
    "build check": "Build is up to date",
}
URL = re.compile(r"http://127\.0\.0\.1:\d+/\S*\?token=\w+")


def _wait_for_url(log: Path, process: subprocess.Popen, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = URL.search(log.read_text(encoding="utf-8", errors="replace"))
        if found:
            return found.group(0)
        assert process.poll() is None, log.read_text(encoding="utf-8", errors="replace")
        time.sleep(0.2)
    raise AssertionError(f"no URL within {timeout} s:\n{log.read_text(encoding='utf-8', errors='replace')}")


@pytest.mark.browser
def test_dashnb_lab_terminal_is_quiet_and_opens_the_start_page(browser):
    dashnb_cli = Path(sys.executable).parent / "dashnb"
    with tempfile.TemporaryDirectory(prefix="dashnb-lab-terminal-") as tmp:
        state = Path(tmp)
        folder = state / "notebooks"
        shutil.copytree(harness.NOTEBOOKS, folder, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        log = state / "terminal.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [str(dashnb_cli), "lab", str(folder), "--no-browser", "--port", str(harness.free_port())],
                env=harness._isolated_env(state),
                cwd=state,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        context = harness.new_context(browser, width=1280, height=800)
        try:
            url = _wait_for_url(log, process)
            page = context.new_page()
            page.goto(url, timeout=90_000)
            start = page.locator(".jp-RenderedMarkdown h1", has_text="Start here")
            start.wait_for(timeout=90_000)
            token = url.rsplit("token=", 1)[1]
            base = url.split("/lab", 1)[0]
            page.goto(f"{base}/lab/tree/00_quickstart.ipynb?token={token}", timeout=90_000)
            page.locator(harness.NOTEBOOK_PANEL).wait_for(timeout=90_000)
            harness.wait_kernel_idle(page, timeout_ms=90_000)
        finally:
            context.close()
            harness._stop(process, timeout=30)
        terminal = log.read_text(encoding="utf-8", errors="replace")
    assert "/lab/tree/README.md?token=" in url, url
    heard = {what: terminal.count(text) for what, text in NOISE.items() if text in terminal}
    assert heard == {}, terminal
