"""Fixtures for browser tests; the machinery lives in harness.py.

@pytest.mark.browser
def test_lab(page, start_lab):
    lab = start_lab()                      # a temp copy of notebooks/
    open_notebook(page, lab, "04_latency_lab.ipynb")
"""

from __future__ import annotations

import contextlib
import re

import pytest

from . import harness


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"dashnb_report_{report.when}", report)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of Debian's chromium; skips the test when it is not installed."""
    executable = harness.chromium_executable()
    if executable is None:
        pytest.skip(harness.NO_CHROMIUM)
    return executable


# Module scope, not session: Playwright's sync API keeps an event loop marked as running in the
# main thread while it is alive, and every later test that calls asyncio.run() would then fail.
@pytest.fixture(scope="module")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = harness.launch_chromium(playwright, chromium)
        yield launched
        launched.close()


def _failed(request) -> bool:
    report = getattr(request.node, "dashnb_report_call", None)
    return report is not None and report.failed


def _artifact_name(request) -> str:
    return "FAILED-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)


@pytest.fixture
def page(browser, request):
    """A fresh page (own context, https aborted). When the test fails, a screenshot and the
    browser console go to the artifacts folder."""
    context = harness.new_context(browser)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
    yield page
    if _failed(request):
        name = _artifact_name(request)
        with contextlib.suppress(Exception):
            harness.screenshot(page, name)
        (harness.artifacts_dir() / f"{name}-console.log").write_text("\n".join(console), encoding="utf-8")
    context.close()


@contextlib.contextmanager
def _servers(request, factory):
    started: list[harness.Server] = []
    with contextlib.ExitStack() as stack:

        def start(*args, **kwargs) -> harness.Server:
            server = stack.enter_context(factory(*args, **kwargs))
            started.append(server)
            return server

        yield start
        if _failed(request):  # keep the server logs before their temp folders go
            for server in started:
                target = harness.artifacts_dir() / f"{_artifact_name(request)}-{server.kind}.log"
                status = server.process.poll()
                header = (
                    f"# {server.kind} at {server.url}: "
                    + ("still running" if status is None else f"exited with {status}")
                    + "\n"
                )
                target.write_text(header + server.log_tail(200_000), encoding="utf-8")


@pytest.fixture
def start_lab(request):
    """start_lab(notebooks_dir=None, **kw) -> harness.Server; stopped at the end of the test."""
    with _servers(request, harness.lab_server) as start:
        yield start


@pytest.fixture
def start_voila(request):
    """start_voila(notebook_path, **kw) -> harness.Server; stopped at the end of the test."""
    with _servers(request, harness.voila_server) as start:
        yield start
