"""The JupyterLab and Voila command lines of `dashnb lab` and `dashnb workshop`, with their environment.

    >>> from pathlib import Path
    >>> from dashnb._install.launch import lab_command
    >>> argv, env = lab_command(Path("nb"), environ={})
    >>> argv[1:4], "JUPYTER_CONFIG_PATH" in env
    (['-m', 'jupyterlab', '--ServerApp.ip=127.0.0.1'], True)

Both listen on 127.0.0.1 only. The lab reads the project's setting defaults (no "get notified about
Jupyter news?" popup) and logs warnings only, so the URL to open is the last thing it prints.
The presenter mode is offline whatever the environment holds: a room has no key to spend.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from .._extras import missing_extra_message
from .resources import JUPYTER_CONFIG, JUPYTER_SHARE, WORKSHOP_NOTEBOOK, notebooks_dir

OFFLINE_ENV = "DASHNB_OFFLINE"
PRESENTER_TEMPLATE = "dashnb-presenter"


def _prepend(environ: Mapping[str, str], name: str, folder: Path) -> str:
    """``folder`` first, then whatever the user's environment already lists."""
    rest = environ.get(name, "")
    return os.pathsep.join(filter(None, [str(folder), rest]))


def lab_command(
    root: Path,
    *,
    offline: bool = False,
    open_browser: bool = True,
    port: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    environ = dict(os.environ if environ is None else environ)
    argv = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.root_dir={root}",
        "--log-level=WARN",
    ]
    if not open_browser:
        argv.append("--no-browser")
    if port is not None:
        argv.append(f"--ServerApp.port={port}")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--allow-root")  # Jupyter refuses to start as root unless told that is intended
    environ["JUPYTER_CONFIG_PATH"] = _prepend(environ, "JUPYTER_CONFIG_PATH", JUPYTER_CONFIG)
    if offline:
        environ[OFFLINE_ENV] = "1"
    return argv, environ


def workshop_command(
    *, open_browser: bool = True, port: int | None = None, environ: Mapping[str, str] | None = None
) -> tuple[list[str], dict[str, str]]:
    environ = dict(os.environ if environ is None else environ)
    argv = [sys.executable, "-m", "voila", "--Voila.ip=127.0.0.1", f"--template={PRESENTER_TEMPLATE}"]
    if not open_browser:
        argv.append("--no-browser")
    if port is not None:
        argv.append(f"--Voila.port={port}")
    argv.append(str(notebooks_dir() / WORKSHOP_NOTEBOOK))
    environ["JUPYTER_PATH"] = _prepend(environ, "JUPYTER_PATH", JUPYTER_SHARE)
    environ[OFFLINE_ENV] = "1"
    return argv, environ


def missing_tool(module: str, command: str) -> str | None:
    """Why ``command`` cannot start here (its server is not installed), or None."""
    if importlib.util.find_spec(module) is None:
        return missing_extra_message(module, command)
    return None


def replace_process(argv: list[str], env: dict[str, str]) -> None:
    """Become the server: Ctrl-C and SIGTERM then reach it directly, and its exit status is ours."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, env)
