"""Drive real JupyterLab / Voilà servers with Debian's chromium through Playwright.

    with lab_server(notebooks_dir) as lab, sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = new_page(browser)
        open_notebook(page, lab, "04_latency_lab.ipynb")
        run_all_cells(page)
        assert_widgets_ok(page)
        before = image_src(page)
        move_slider(page)
        wait_image_settled(page, previous=before)
        screenshot(page, "lab-after-slider")

The pytest fixtures in conftest.py (`browser`, `page`, `start_lab`, `start_voila`) wrap these.

Servers always serve a temporary copy of the notebooks, so a test can never rewrite a
committed notebook, and every bit of Jupyter/IPython/matplotlib state lives in temporary
folders that are removed when the server stops.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"

NO_CHROMIUM = "Debian's chromium is not installed: apt-get install chromium (the CI script does this)"

# Playwright cannot download its own browser here; these flags keep Debian's chromium
# quiet and offline (no update checks, no sync, no QUIC probes, no GPU in a container).
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

# User settings that keep Lab from changing what a test sees or the files it serves.
LAB_SETTINGS = {
    # No news/update toast over the screenshots.
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    # Never write the notebook under test back to disk.
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    # Keep every cell in the DOM so locators find cells that are scrolled away.
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}

WIDGET_ERRORS = ("Error displaying widget", "Loading widget")

NOTEBOOK_PANEL = ".jp-NotebookPanel:visible"
SLIDER_HANDLE = ".widget-slider .noUi-handle"
SLIDER_READOUT = ".widget-slider .widget-readout"
OUTPUT_IMAGE = ".widget-output img"


# --- servers -------------------------------------------------------------------------


@dataclass
class Server:
    """A running JupyterLab or Voilà process on loopback."""

    kind: str
    url: str  # http://127.0.0.1:PORT, no trailing slash
    token: str
    root: Path  # the temporary copy being served
    process: subprocess.Popen
    log_path: Path
    ready_s: float  # from spawn to the first good readiness answer
    extra: dict = field(default_factory=dict)

    def url_for(self, path: str = "", **query: str) -> str:
        """Absolute URL of `path` with the token (and `query`) attached."""
        params = [f"token={self.token}", *(f"{k}={v}" if v != "" else k for k, v in query.items())]
        return f"{self.url}/{path.lstrip('/')}?{'&'.join(params)}"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return "(no log)"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def chromium_executable() -> str | None:
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def artifacts_dir() -> Path:
    """Where screenshots go: $DASHNB_ARTIFACTS, else tests/artifacts (git-ignored)."""
    path = Path(os.environ.get("DASHNB_ARTIFACTS") or REPO / "tests" / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _isolated_env(state: Path) -> dict[str, str]:
    env = dict(os.environ)
    for var, sub in {
        "JUPYTER_CONFIG_DIR": "config",
        "JUPYTER_DATA_DIR": "data",
        "JUPYTER_RUNTIME_DIR": "runtime",
        "JUPYTERLAB_SETTINGS_DIR": "settings",
        "JUPYTERLAB_WORKSPACES_DIR": "workspaces",
        "IPYTHONDIR": "ipython",
        "MPLCONFIGDIR": "mpl",
    }.items():
        (state / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(state / sub)
    # Kernels must run this interpreter (the one with dashnb installed), whatever PATH says.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["JUPYTER_PLATFORM_DIRS"] = "1"  # the future default; silences jupyter_core's migration warning
    env.pop("JUPYTER_PATH", None)
    env.pop("JUPYTER_TOKEN", None)
    return env


def _write_lab_settings(settings_dir: Path) -> None:
    for plugin, values in LAB_SETTINGS.items():
        package, _, name = plugin.rpartition("/")
        target = settings_dir / package / f"{name}.jupyterlab-settings"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values, indent=2), encoding="utf-8")


def _copy_tree(source: Path, dest: Path) -> None:
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "artifacts"))


def _probe(url: str) -> bool:
    # Loopback only; an empty ProxyHandler keeps any *_PROXY variable out of the way.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def _stop(process: subprocess.Popen, timeout: float) -> None:
    if process.poll() is not None:
        return
    # SIGTERM lets the server shut its kernels down; kill only if it hangs.
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def _serve(
    kind: str, argv_for, probe_path: str, root: Path, state: Path, env, startup_timeout: float, stop_timeout: float
) -> Iterator[Server]:
    log_path = state / f"{kind}.log"
    last_error = ""
    # A free port can be taken between our probe and the server's bind; try a few.
    for _attempt in range(3):
        port, token = free_port(), secrets.token_hex(16)
        url = f"http://127.0.0.1:{port}"
        with open(log_path, "ab") as log:
            started = time.perf_counter()
            process = subprocess.Popen(
                argv_for(port, token),
                cwd=root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = started + startup_timeout
            while process.poll() is None and time.perf_counter() < deadline:
                if _probe(f"{url}{probe_path}?token={token}"):
                    break
                time.sleep(0.1)
            else:
                last_error = log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
                if process.poll() is None:
                    raise TimeoutError(f"{kind} not ready after {startup_timeout:.0f} s:\n{last_error}")
                continue  # exited (port race or bad flag): try again, then report
            server = Server(kind, url, token, root, process, log_path, time.perf_counter() - started)
            yield server
            return
        finally:
            _stop(process, stop_timeout)
    raise RuntimeError(f"{kind} exited during startup:\n{last_error}")


@contextlib.contextmanager
def lab_server(
    notebooks_dir: Path | str | None = None,
    *,
    extra_args: Sequence[str] = (),
    startup_timeout: float = 90,
    stop_timeout: float = 20,
) -> Iterator[Server]:
    """JupyterLab on 127.0.0.1 (random port and token) serving a temp copy of `notebooks_dir`.

    `notebooks_dir` defaults to the repo's notebooks/; `server.root` is the copy.
    """
    source = Path(notebooks_dir) if notebooks_dir is not None else NOTEBOOKS
    with tempfile.TemporaryDirectory(prefix="dashnb-lab-") as tmp:
        state = Path(tmp)
        root = state / "root"
        _copy_tree(source, root)
        env = _isolated_env(state)
        _write_lab_settings(Path(env["JUPYTERLAB_SETTINGS_DIR"]))

        def argv(port: int, token: str) -> list[str]:
            args = [
                sys.executable,
                "-m",
                "jupyterlab",
                "--no-browser",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={port}",
                "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={root}",
                "--ServerApp.terminals_enabled=False",
            ]
            if os.geteuid() == 0:
                args.append("--allow-root")  # Lab exits at once as root without it
            return [*args, *extra_args]

        with _serve("lab", argv, "/api/status", root, state, env, startup_timeout, stop_timeout) as server:
            yield server


# What `make workshop` runs: the project's Voila template (dashnb/_jupyter/share/jupyter), found via JUPYTER_PATH.
PRESENTER_TEMPLATE = "dashnb-presenter"
PRESENTER_NOTEBOOK = NOTEBOOKS / "workshop.ipynb"
JUPYTER_SHARE = REPO / "dashnb" / "_jupyter" / "share" / "jupyter"
JUPYTER_ETC = REPO / "dashnb" / "_jupyter" / "etc" / "jupyter"


@contextlib.contextmanager
def voila_server(
    notebook: Path | str,
    *,
    template: str | None = None,
    extra_args: Sequence[str] = (),
    startup_timeout: float = 90,
    stop_timeout: float = 20,
) -> Iterator[Server]:
    """Standalone Voilà serving `notebook` from a temp copy of its folder, at `server.url_for()`.
    `template`: a Voila template name from the project's dashnb/_jupyter/share/jupyter (as `make workshop`)."""
    notebook = Path(notebook)
    with tempfile.TemporaryDirectory(prefix="dashnb-voila-") as tmp:
        state = Path(tmp)
        root = state / "root"
        _copy_tree(notebook.parent, root)
        env = _isolated_env(state)
        if template is not None:
            env["JUPYTER_PATH"] = str(JUPYTER_SHARE)
            # As `make workshop`: voila.json there culls the kernels of closed pages.
            env["JUPYTER_CONFIG_PATH"] = str(JUPYTER_ETC)
            extra_args = [f"--template={template}", *extra_args]
        served = root / notebook.name

        def argv(port: int, token: str) -> list[str]:
            # Voilà is not a jupyter_server ServerApp: it has no root check and no --allow-root.
            return [
                sys.executable,
                "-m",
                "voila",
                "--no-browser",
                "--Voila.ip=127.0.0.1",
                f"--port={port}",
                "--Voila.port_retries=0",
                f"--token={token}",
                *extra_args,
                str(served),
            ]

        # Every GET / runs the notebook in a new kernel, so probe a static file instead.
        with _serve(
            "voila", argv, "/voila/static/favicon.ico", root, state, env, startup_timeout, stop_timeout
        ) as server:
            server.extra["notebook"] = served
            yield server


# --- browser ---------------------------------------------------------------------------


def launch_chromium(playwright, executable: str | None = None):
    """Launch Debian's chromium through Playwright (raises if it is missing)."""
    executable = executable or chromium_executable()
    if executable is None:
        raise FileNotFoundError(NO_CHROMIUM)
    # Playwright gives the profile a temp dir, but chromium still writes crash-report and
    # dconf state under the home folder; point those at a temp dir removed on close.
    home = Path(tempfile.mkdtemp(prefix="dashnb-chromium-"))
    env = {**os.environ, "XDG_CONFIG_HOME": str(home / "config"), "XDG_CACHE_HOME": str(home / "cache")}
    browser = playwright.chromium.launch(executable_path=executable, headless=True, args=list(CHROMIUM_ARGS), env=env)
    # Whichever comes first: the browser going away, or this interpreter exiting.
    browser.on("disconnected", lambda _browser: shutil.rmtree(home, ignore_errors=True))
    atexit.register(shutil.rmtree, home, True)
    return browser


LOOPBACK_PREFIXES = ("http://127.0.0.1:", "ws://127.0.0.1:", "data:", "blob:", "about:")


def new_context(browser, *, width: int = 1280, height: int = 900):
    """A fresh browser context where every https request fails at once (we are offline;
    Voilà's stock templates ask a CDN for icon fonts). ``context.dashnb_outside`` lists every
    request the pages made that was meant to leave loopback (aborted or not)."""
    context = browser.new_context(viewport={"width": width, "height": height})
    outside: list[str] = []
    context.on(
        "request", lambda request: None if request.url.startswith(LOOPBACK_PREFIXES) else outside.append(request.url)
    )
    context.dashnb_outside = outside
    context.route("https://**/*", lambda route: route.abort())
    return context


def new_page(browser, **kwargs):
    return new_context(browser, **kwargs).new_page()


def _in_lab(page) -> bool:
    return page.locator(".jp-NotebookPanel").count() > 0


def scope(page):
    """The visible notebook panel in Lab, the whole page elsewhere (Voilà)."""
    return page.locator(NOTEBOOK_PANEL) if _in_lab(page) else page.locator("body")


def open_notebook(page, server: Server, path: str, *, timeout_ms: float = 90_000) -> float:
    """Open `path` (relative to the served root) in Lab with no restored tabs and wait for an
    idle kernel. Returns the seconds it took."""
    started = time.perf_counter()
    page.goto(server.url_for(f"lab/tree/{path}", reset=""), timeout=timeout_ms)
    page.locator(NOTEBOOK_PANEL).wait_for(timeout=timeout_ms)
    wait_kernel_idle(page, timeout_ms=timeout_ms)
    return time.perf_counter() - started


def open_voila(page, server: Server, *, selector: str = ".jupyter-widgets", timeout_ms: float = 90_000) -> float:
    """Load the Voilà page (which runs the notebook) and wait for `selector` to show."""
    started = time.perf_counter()
    page.goto(server.url_for(""), timeout=timeout_ms)
    page.locator(selector).first.wait_for(timeout=timeout_ms)
    return time.perf_counter() - started


# The toolbar's execution indicator reads "idle" before any kernel is attached (its default),
# so a kernel counts as idle only when the status bar agrees ("Python 3 (ipykernel) | Idle").
# A Run All clicked before that is dropped silently by Lab: no cell runs, no error shows.
_KERNEL_IDLE_JS = """
() => {
  const panel = [...document.querySelectorAll('.jp-NotebookPanel')].find(e => e.offsetParent !== null);
  const indicator = panel && panel.querySelector('.jp-Notebook-ExecutionIndicator');
  const bar = document.querySelector('#jp-main-statusbar');
  return !!indicator && indicator.dataset.status === 'idle' && !!bar && /\\|\\s*Idle\\b/.test(bar.innerText);
}
"""


def wait_kernel_idle(page, *, timeout_ms: float = 60_000) -> None:
    page.wait_for_function(_KERNEL_IDLE_JS, timeout=timeout_ms, polling=100)


def kernel_idle_now(page) -> bool:
    """True when Lab shows an idle kernel; always True outside Lab (Voilà has no indicator)."""
    if not _in_lab(page):
        return True
    return bool(page.evaluate(_KERNEL_IDLE_JS))


# Records whether any input prompt showed "[*]" since it was installed: stored execution
# counts look the same before and after a run, so "all prompts numbered" alone proves nothing.
_WATCH_PROMPTS = """
() => {
  const panel = [...document.querySelectorAll('.jp-NotebookPanel')].find(e => e.offsetParent !== null);
  const state = {star: false};
  const check = () => {
    if ([...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].some(p => p.textContent.includes('*')))
      state.star = true;
  };
  new MutationObserver(check).observe(panel, {subtree: true, childList: true, characterData: true});
  window.__dashnbRun = state;
}
"""

_RUN_FINISHED = """
() => {
  const panel = [...document.querySelectorAll('.jp-NotebookPanel')].find(e => e.offsetParent !== null);
  if (!panel || !window.__dashnbRun || !window.__dashnbRun.star) return false;
  const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
  return (%s)() && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
}
""" % _KERNEL_IDLE_JS.strip()  # noqa: UP031 (the JS is full of braces)


def run_all_cells(page, *, timeout_ms: float = 180_000) -> float:
    """Run > Run All Cells through the menu bar; wait until every cell ran and the kernel is
    idle. Returns the seconds it took."""
    page.evaluate(_WATCH_PROMPTS)
    started = time.perf_counter()
    page.locator(".lm-MenuBar-itemLabel").get_by_text("Run", exact=True).click()
    page.locator(".lm-Menu-itemLabel").get_by_text("Run All Cells", exact=True).click()
    try:
        page.wait_for_function("() => window.__dashnbRun.star", timeout=min(15_000, timeout_ms), polling=50)
    except Exception as exc:  # Playwright's TimeoutError; say what it means here
        raise AssertionError("Run All Cells started no cell (was the kernel ready?)") from exc
    page.wait_for_function(_RUN_FINISHED, timeout=timeout_ms, polling=100)
    return time.perf_counter() - started


def assert_widgets_ok(page, *, selector: str = ".jupyter-widgets", timeout_ms: float = 30_000) -> None:
    """Wait for a rendered widget, then assert no widget failed or is still loading."""
    scope(page).locator(selector).first.wait_for(timeout=timeout_ms)
    text = page.locator("body").inner_text()
    shown = [message for message in WIDGET_ERRORS if message in text]
    assert not shown, f"the page shows {shown}"


def slider_readout(page, *, nth: int = 0) -> str:
    return scope(page).locator(SLIDER_READOUT).nth(nth).inner_text().strip()


def move_slider(page, *, steps: int = 1, key: str = "ArrowRight", nth: int = 0) -> None:
    """Move the nth slider as a keyboard user would: focus its handle, press `key` `steps` times."""
    handle = scope(page).locator(SLIDER_HANDLE).nth(nth)
    handle.focus()
    for _ in range(steps):
        handle.press(key)


def image_src(page, *, selector: str = OUTPUT_IMAGE, nth: int = 0) -> str | None:
    images = scope(page).locator(selector)
    if images.count() <= nth:
        return None
    return images.nth(nth).get_attribute("src")


def _short(src: str | None) -> str:
    return "none" if src is None else hashlib.sha1(src.encode()).hexdigest()[:10]


def wait_image_settled(
    page,
    *,
    previous: str | None = None,
    selector: str = OUTPUT_IMAGE,
    nth: int = 0,
    stable_ms: float = 600,
    timeout_ms: float = 60_000,
) -> str:
    """Wait until the image's src differs from `previous`, has not changed for `stable_ms`,
    and (in Lab) the kernel is idle: the first change can be an intermediate frame."""
    started = time.perf_counter()
    deadline = started + timeout_ms / 1000
    last, since = object(), started
    while True:
        src = image_src(page, selector=selector, nth=nth)
        idle = kernel_idle_now(page)
        now = time.perf_counter()
        if src != last:
            last, since = src, now
        if src is not None and src != previous and idle and (now - since) * 1000 >= stable_ms:
            return src
        if now > deadline:
            raise AssertionError(
                f"{selector} did not settle on a new image within {timeout_ms / 1000:.0f} s "
                f"(previous {_short(previous)}, now {_short(src)}, kernel idle {idle})"
            )
        page.wait_for_timeout(50)


def screenshot(page, name: str, *, scroll_to: str | None = None, full_page: bool = True) -> Path:
    """Save a PNG to artifacts_dir(). Lab scrolls inside its own panel, so a full-page shot
    shows only the viewport there: `scroll_to` (a selector) brings a widget into view first."""
    if scroll_to is not None:
        scope(page).locator(scroll_to).last.scroll_into_view_if_needed()
    path = artifacts_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
