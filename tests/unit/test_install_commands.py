"""`dashnb notebooks`, `dashnb lab`, `dashnb workshop` without a server: copying that never loses an edit,
the command lines and environment handed to JupyterLab and Voila, and what a base install says
when a [lab] feature is used.

    python -m pytest tests/unit/test_install_commands.py -q
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dashnb._install.copy import COPIED, KEPT, MANIFEST, REPLACED, UP_TO_DATE, UPDATED, copy_notebooks
from dashnb._install.launch import lab_command, workshop_command
from dashnb._install.resources import JUPYTER_CONFIG, JUPYTER_SHARE, notebooks_dir

REPO = Path(__file__).resolve().parents[2]


def _dashnb(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DASHNB_OFFLINE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "dashnb", *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_a_checkout_finds_its_notebooks_and_jupyter_files():
    assert notebooks_dir().resolve() == (REPO / "notebooks").resolve()
    assert (JUPYTER_CONFIG / "labconfig" / "default_setting_overrides.json").is_file()
    assert (JUPYTER_SHARE / "voila" / "templates" / "dashnb-presenter" / "index.html.j2").is_file()


def test_copy_copies_every_notebook_and_its_data_then_nothing(tmp_path):
    dest = tmp_path / "mine"
    first = copy_notebooks(dest)
    wanted = {p.relative_to(REPO / "notebooks").as_posix() for p in (REPO / "notebooks").rglob("*") if p.is_file()}
    wanted = {w for w in wanted if ".ipynb_checkpoints" not in w}
    assert set(first.outcomes) == wanted and set(first.outcomes.values()) == {COPIED}
    assert "data/crosscheck.json" in wanted and "04_latency_lab.ipynb" in wanted
    assert (dest / "data" / "crosscheck.json").read_bytes() == (REPO / "notebooks/data/crosscheck.json").read_bytes()
    second = copy_notebooks(dest)
    assert set(second.outcomes.values()) == {UP_TO_DATE}
    assert str(second).endswith(f"{len(wanted)} up to date")


def _newer_release(tmp_path: Path) -> Path:
    """The packaged notebooks as a later dashnb would ship them: two of them changed."""
    newer = tmp_path / "newer"
    shutil.copytree(REPO / "notebooks", newer, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    for name in ("00_quickstart.ipynb", "01_sync_sessions.ipynb"):
        notebook = json.loads((newer / name).read_text(encoding="utf-8"))
        notebook["metadata"]["dashnb_release"] = "newer"
        (newer / name).write_text(json.dumps(notebook), encoding="utf-8")
    return newer


def test_an_edited_notebook_is_kept_and_an_untouched_one_updated(tmp_path):
    dest = tmp_path / "mine"
    copy_notebooks(dest)
    edited = dest / "00_quickstart.ipynb"
    edited.write_text(edited.read_text(encoding="utf-8").replace("dashnb", "my notes on dashnb", 1), encoding="utf-8")
    mine = edited.read_bytes()
    newer = _newer_release(tmp_path)

    report = copy_notebooks(dest, source=newer)
    assert report.outcomes["00_quickstart.ipynb"] == KEPT and edited.read_bytes() == mine
    assert report.outcomes["01_sync_sessions.ipynb"] == UPDATED
    assert (dest / "01_sync_sessions.ipynb").read_bytes() == (newer / "01_sync_sessions.ipynb").read_bytes()
    assert "00_quickstart.ipynb: kept" in str(report) and "--overwrite" in str(report)
    # Still edited on the next run: the manifest remembers what was copied, not what was kept.
    assert copy_notebooks(dest, source=newer).outcomes["00_quickstart.ipynb"] == KEPT

    asked: list[str] = []
    declined = copy_notebooks(dest, source=newer, ask=lambda rel: asked.append(rel) or False)
    assert asked == ["00_quickstart.ipynb"] and declined.outcomes["00_quickstart.ipynb"] == KEPT
    accepted = copy_notebooks(dest, source=newer, ask=lambda rel: True)
    assert accepted.outcomes["00_quickstart.ipynb"] == REPLACED
    assert edited.read_bytes() == (newer / "00_quickstart.ipynb").read_bytes()


def test_overwrite_replaces_an_edit_and_a_lost_manifest_errs_on_keeping(tmp_path):
    dest = tmp_path / "mine"
    copy_notebooks(dest)
    (dest / MANIFEST).unlink()
    (dest / "02_async_connector.ipynb").write_text("{}", encoding="utf-8")
    assert copy_notebooks(dest).outcomes["02_async_connector.ipynb"] == KEPT
    assert (dest / "02_async_connector.ipynb").read_text(encoding="utf-8") == "{}"
    assert copy_notebooks(dest, overwrite=True).outcomes["02_async_connector.ipynb"] == REPLACED
    assert json.loads((dest / "02_async_connector.ipynb").read_text(encoding="utf-8"))["cells"]


def test_copy_refuses_a_file_and_the_source_itself(tmp_path):
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    with pytest.raises(NotADirectoryError, match="name a folder"):
        copy_notebooks(tmp_path / "afile")
    with pytest.raises(ValueError, match="name another folder"):
        copy_notebooks(REPO / "notebooks")


def test_the_notebooks_command_says_what_it_did(tmp_path):
    done = _dashnb("notebooks", "nb", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "00_quickstart.ipynb: copied" in done.stdout and "dashnb lab nb" in done.stdout
    assert (tmp_path / "nb" / "06_httpx_generation.ipynb").is_file()
    (tmp_path / "nb" / "03_java_pool_parameters.ipynb").write_text("{}", encoding="utf-8")
    again = _dashnb("notebooks", "nb", cwd=tmp_path, stdin="y\n")  # not a terminal: never asks
    assert again.returncode == 0 and "03_java_pool_parameters.ipynb: kept" in again.stdout
    assert (tmp_path / "nb" / "03_java_pool_parameters.ipynb").read_text(encoding="utf-8") == "{}"
    default = _dashnb("notebooks", cwd=tmp_path)
    assert default.returncode == 0 and (tmp_path / "dashnb-notebooks" / "00_quickstart.ipynb").is_file()
    bad = _dashnb("notebooks", "nb/00_quickstart.ipynb", cwd=tmp_path)
    assert bad.returncode == 1 and "name a folder" in bad.stderr


def test_lab_command_listens_on_loopback_with_the_projects_settings(tmp_path):
    argv, env = lab_command(
        tmp_path, offline=True, open_browser=False, port=9999, environ={"JUPYTER_CONFIG_PATH": "/elsewhere"}
    )
    assert argv[:3] == [sys.executable, "-m", "jupyterlab"]
    assert "--ServerApp.ip=127.0.0.1" in argv and f"--ServerApp.root_dir={tmp_path}" in argv
    assert "--log-level=WARN" in argv and "--no-browser" in argv and "--ServerApp.port=9999" in argv
    assert env["JUPYTER_CONFIG_PATH"].split(os.pathsep) == [str(JUPYTER_CONFIG), "/elsewhere"]
    assert env["DASHNB_OFFLINE"] == "1"
    _, online = lab_command(tmp_path, environ={})
    assert "DASHNB_OFFLINE" not in online


def test_a_bad_port_is_refused_with_what_to_give(tmp_path):
    done = _dashnb("lab", "nb", "--port", "http", cwd=tmp_path)
    assert done.returncode == 2 and "'http' is not a port: give a number from 1 to 65535" in done.stderr
    assert not (tmp_path / "nb").exists()


def test_workshop_command_is_offline_with_the_presenter_template():
    argv, env = workshop_command(environ={"DASHNB_OFFLINE": "0"})
    assert argv[1:3] == ["-m", "voila"] and "--template=dashnb-presenter" in argv and "--Voila.ip=127.0.0.1" in argv
    assert argv[-1] == str(notebooks_dir() / "workshop.ipynb")
    assert env["DASHNB_OFFLINE"] == "1" and env["JUPYTER_PATH"] == str(JUPYTER_SHARE)


# --- a base install (no [lab] extra) using a lab feature ------------------------------------------

_WITHOUT = """
import sys
for name in sys.argv[2].split(","):
    sys.modules[name] = None  # as if not installed: importing it raises ModuleNotFoundError
import dashnb
try:
    exec(sys.argv[1])
except ImportError as exc:
    print(type(exc).__name__, exc)
"""


@pytest.mark.parametrize(
    ("code", "absent", "feature"),
    [
        ("dashnb.lab", "ipywidgets", "dashnb.lab"),
        ("dashnb.LabModel", "traitlets", "dashnb.LabModel"),
        ("from dashnb._plot import plot_measurements; plot_measurements({})", "matplotlib", "plotting measurements"),
    ],
)
def test_a_base_install_names_the_lab_extra(tmp_path, code, absent, feature):
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT, code, absent], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"ImportError {feature} needs {absent}, which comes with the lab extra: pip install 'dashnb[lab]'"
    )


def test_a_base_install_still_runs_sessions_the_emulator_and_ask(tmp_path):
    # What the base package promises without [lab]: no ipywidgets, matplotlib, traitlets or openai.
    code = (
        "import dashnb\n"
        "from dashscope import Generation\n"
        "ep = dashnb.use_endpoint()\n"
        "s = dashnb.session()\n"
        "rsp = Generation.call(model='qwen-plus', prompt='hi', session=s.requests)\n"
        "reply = dashnb.ask('hi', stream=False)\n"
        "print()\n"
        "print(rsp.status_code, s.stats()['connections_opened'], bool(reply.text))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT, code, "ipywidgets,matplotlib,traitlets,openai"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].split() == ["200", "1", "True"], done.stdout + done.stderr
