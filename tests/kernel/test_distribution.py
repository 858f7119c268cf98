"""What someone who never clones the repository gets: the wheel and the sdist built from this
checkout, and the wheel installed with [lab] into a fresh venv, where `dashnb notebooks` copies
the notebooks out, every notebook runs under nbval from that copy, `dashnb lab` serves them with
the project's settings and `dashnb workshop` serves the presenter mode.

    python -m pytest tests/kernel/test_distribution.py -q

The fresh venv installs from the package index (the normal one: not every dependency is in a
local cache), once per session, shared by the tests here. It is the only run of the notebooks
under nbval in `make test`, so that they run once, as a user installs them.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"

# Installing JupyterLab and its kin takes minutes on a busy machine: far past the suite's per-test timeout.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]
# The venv on disk, counted as `du` counts it (blocks, bytecode included). The [lab] install measures about
# 557 MB on Python 3.11 (24 MB of it the venv's own pip and setuptools); `make lab` used to build 934 MB.
LAB_VENV_BOUND = 600e6

# Variables that would send a notebook to the real service or trust another CA: a fresh machine has none.
STEERING = (
    "DASHSCOPE_API_KEY",
    "DASHSCOPE_HTTP_BASE_URL",
    "DASHSCOPE_BASE_URL",
    "DASHNB_OFFLINE",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "JUPYTER_CONFIG_PATH",
    "JUPYTER_PATH",
)


def _tracked(under: str) -> set[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", under], cwd=REPO, capture_output=True, check=True, timeout=60
    ).stdout.decode()
    return set(filter(None, out.split("\0")))


@pytest.fixture(scope="session")
def dists(tmp_path_factory) -> dict[str, Path]:
    """The sdist and the wheel, built from this checkout as `python -m build` builds them."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", str(out), str(REPO)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = out.glob("dashnb-*.whl")
    (sdist,) = out.glob("dashnb-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def test_the_wheel_carries_the_notebooks_the_presenter_template_and_the_lab_settings(dists):
    names = set(zipfile.ZipFile(dists["wheel"]).namelist())
    notebooks = {n.removeprefix("notebooks/") for n in _tracked("notebooks")}
    assert {f"dashnb/_notebooks/{n}" for n in notebooks} <= names, "notebooks missing from the wheel"
    assert "dashnb/_notebooks/data/crosscheck.json" in names and "dashnb/_notebooks/workshop.ipynb" in names
    assert {n for n in _tracked("dashnb") if not n.endswith(".py")} <= names  # dashnb/_jupyter/**, and the rest
    assert {
        "dashnb/_jupyter/etc/jupyter/labconfig/default_setting_overrides.json",
        "dashnb/_jupyter/share/jupyter/voila/templates/dashnb-presenter/index.html.j2",
        "dashnb/_jupyter/share/jupyter/voila/templates/dashnb-presenter/conf.json",
    } <= names
    assert {n for n in _tracked("dashnb") if n.endswith(".py")} <= names
    stray = sorted(n for n in names if re.search(r"__pycache__|\.ipynb_checkpoints|^tests/|^notebooks/", n))
    assert not stray, stray
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    metadata = zipfile.ZipFile(dists["wheel"]).read(meta).decode()
    assert {"lab", "test", "dev", "docs"} <= set(re.findall(r"^Provides-Extra: (\S+)", metadata, re.M))
    base = re.findall(r"^Requires-Dist: ([A-Za-z0-9_.-]+)[^;\n]*$", metadata, re.M)  # no extra marker
    assert "dashscope" in base and not {"matplotlib", "ipywidgets", "jupyterlab", "playwright"} & set(base)
    entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "dashnb = dashnb.__main__:main" in zipfile.ZipFile(dists["wheel"]).read(entry).decode()


def test_the_sdist_holds_what_builds_and_tests_the_wheel(dists):
    with tarfile.open(dists["sdist"]) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    for wanted in ("pyproject.toml", "README.md", "LICENSE", "environment.yml", "Makefile", "docs/conf.py"):
        assert wanted in names, wanted
    assert _tracked("notebooks") <= names and _tracked("dashnb") <= names and _tracked("tests") <= names


# --- the wheel in a fresh venv ---------------------------------------------------------------------


def _clean_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in STEERING}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    env["BROWSER"] = "true"  # never open a browser from these tests
    return env


@pytest.fixture(scope="session")
def fresh(dists, tmp_path_factory) -> Iterator[dict]:
    """A venv with only the wheel and its [lab] extra (then pytest and nbval to run the notebooks)."""
    root = tmp_path_factory.mktemp("fresh")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env = _clean_env(venv)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--progress-bar", "off", "--disable-pip-version-check"]
    started = time.perf_counter()
    done = subprocess.run(
        [*pip, f"{dists['wheel']}[lab]"], env=env, cwd=root, capture_output=True, text=True, timeout=1200
    )
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    size = sum(p.lstat().st_blocks * 512 for p in venv.rglob("*"))
    print(f"\n[lab] install from the wheel: {seconds:.0f} s, {size / 1e6:.0f} MB", file=sys.stderr)
    tools = subprocess.run([*pip, "pytest>=8", "nbval>=0.11"], env=env, capture_output=True, text=True, timeout=600)
    assert tools.returncode == 0, tools.stderr[-3000:]
    yield {"venv": venv, "env": env, "root": root, "size": size, "seconds": seconds}
    shutil.rmtree(root, ignore_errors=True)


def _run(fresh: dict, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(fresh["venv"] / "bin" / args[0]), *args[1:]], env=fresh["env"], cwd=cwd, capture_output=True,
        text=True, timeout=timeout,
    )  # fmt: skip


def test_a_lab_install_is_lean(fresh):
    assert fresh["size"] < LAB_VENV_BOUND, f"{fresh['size'] / 1e6:.0f} MB"
    listed = _run(fresh, "python", "-m", "pip", "list", "--format=json", cwd=fresh["root"])
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert {"jupyterlab", "voila", "ipywidgets", "matplotlib", "openai", "dashscope"} <= names
    assert not {"playwright", "mypy", "ruff", "langchain-community", "langchain-openai"} & names


@pytest.fixture(scope="session")
def copied(fresh) -> Path:
    where = fresh["root"] / "my notebooks"
    done = _run(fresh, "dashnb", "notebooks", str(where), cwd=fresh["root"])
    assert done.returncode == 0, done.stderr
    assert "00_quickstart.ipynb: copied" in done.stdout and f"dashnb lab {where}" in done.stdout
    return where


def test_the_installed_dashnb_is_the_wheel_not_this_checkout(fresh, copied):
    done = _run(fresh, "python", "-c", "import dashnb; print(dashnb.__file__)", cwd=copied)
    assert done.returncode == 0 and "site-packages" in done.stdout and str(REPO) not in done.stdout
    shipped = {p.name for p in copied.glob("*.ipynb")}
    assert shipped == {p.name for p in (REPO / "notebooks").glob("*.ipynb")}


def test_every_notebook_runs_under_nbval_from_the_copied_folder(fresh, copied):
    # One pytest for all notebooks: one interpreter start, each notebook executed once.
    env = {**fresh["env"], "PYTHONPATH": str(TESTS)}  # nbval_keys: fail a cell that prints a key
    # An empty configuration: pytest would otherwise take this repository's (the sanitizer's path is in
    # it) with its [test] settings, which the user's venv does not have.
    ini = fresh["root"] / "pytest.ini"
    ini.write_text("[pytest]\n", encoding="utf-8")
    done = subprocess.run(
        [
            str(fresh["venv"] / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "-c", str(ini), "--rootdir", str(copied),
            "--nbval", "--nbval-current-env", "--nbval-sanitize-with", str(TESTS / "nbval_sanitize.cfg"),
            "-p", "nbval_keys", *sorted(p.name for p in copied.glob("*.ipynb")),
        ],
        env=env, cwd=copied, capture_output=True, text=True, timeout=2400,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert re.search(r"\d+ passed", done.stdout) and " failed" not in done.stdout


def _serve(fresh: dict, argv: list[str], cwd: Path, pattern: str, timeout: float = 180) -> tuple[subprocess.Popen, str]:
    """Start a server command and return it with the first URL matching `pattern` that it prints."""
    proc = subprocess.Popen(
        [str(fresh["venv"] / "bin" / argv[0]), *argv[1:]], env=fresh["env"], cwd=cwd, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    seen: list[str] = []
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout

    # A server that has printed all it will print leaves readline blocked: a thread reads, and the
    # wait for a matching line has a deadline, so a URL in an unexpected form fails the test
    # instead of hanging it.
    def read() -> None:
        with contextlib.suppress(ValueError, OSError):  # closed by _stop while reading
            for line in stdout:
                lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        seen.append(line)
        if match := re.search(pattern, line):
            return proc, match.group(0)
    proc.kill()
    raise AssertionError("no URL printed:\n" + "".join(seen[-40:]))


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
    if proc.stdout is not None:
        proc.stdout.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, *, ready_within: float = 120) -> bytes:
    """GET `url`, waiting for a server that printed its URL to accept connections."""
    deadline = time.monotonic() + ready_within
    while True:
        try:
            with urllib.request.urlopen(url, timeout=60) as rsp:
                return rsp.read()
        except urllib.error.URLError as exc:
            if not isinstance(exc.reason, ConnectionRefusedError) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_dashnb_lab_serves_the_copy_on_loopback_without_the_news_popup(fresh, copied, tmp_path):
    env_dirs = {"JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    fresh["env"].update(env_dirs)
    try:
        proc, url = _serve(
            fresh, ["dashnb", "lab", str(copied), "--no-browser", "--port", str(_free_port())], fresh["root"],
            r"http://127\.0\.0\.1:\d+/lab(?:/tree/\S*)?\?token=\S+",
        )  # fmt: skip
    finally:
        for key in env_dirs:
            fresh["env"].pop(key)
    try:
        base, token = url.split("/lab", 1)[0], url.split("?token=", 1)[1]
        assert url.startswith(f"{base}/lab/tree/README.md?"), f"dashnb lab opens the start page: {url}"
        listing = {item["name"] for item in json.loads(_get(f"{base}/api/contents?token={token}"))["content"]}
        assert "04_latency_lab.ipynb" in listing and "data" in listing
        settings_url = f"{base}/lab/api/settings/@jupyterlab/apputils-extension:notification?token={token}"
        schema = json.loads(_get(settings_url))["schema"]["properties"]
        assert schema["fetchNews"]["default"] == "false" and schema["checkForUpdates"]["default"] is False
    finally:
        _stop(proc)


def test_dashnb_workshop_serves_the_presenter_mode(fresh, tmp_path):
    argv = ["dashnb", "workshop", "--no-browser", "--port", str(_free_port())]
    proc, url = _serve(fresh, argv, tmp_path, r"http://127\.0\.0\.1:\d+/\S*")
    try:
        base = url.split("?")[0].rstrip("/")
        assert _get(f"{base}/voila/static/favicon.ico")
    finally:
        _stop(proc)


def test_a_base_install_says_which_extra_a_lab_feature_needs(dists, tmp_path):
    # The wheel without extras: sessions, the emulator, ask; `dashnb lab` and dashnb.lab() name [lab].
    venv = tmp_path / "base"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env = _clean_env(venv)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--progress-bar", "off", "--disable-pip-version-check"]
    done = subprocess.run([*pip, str(dists["wheel"])], env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    lab = subprocess.run([str(venv / "bin" / "dashnb"), "lab", str(tmp_path / "nb")], env=env, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert lab.returncode == 2 and "pip install 'dashnb[lab]'" in lab.stderr
    code = "import dashnb\ntry:\n    dashnb.lab\nexcept ImportError as exc:\n    print(exc)\n"
    py = subprocess.run([str(venv / "bin" / "python"), "-c", code], env=env, capture_output=True, text=True,
                        timeout=120)  # fmt: skip
    assert "dashnb.lab needs ipywidgets" in py.stdout and "pip install 'dashnb[lab]'" in py.stdout, py.stderr
