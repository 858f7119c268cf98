"""`dashnb notebooks`, `dashnb lab` and `dashnb workshop`: the command-line face of this package.

    $ dashnb notebooks                 # into ./dashnb-notebooks
    $ dashnb lab --offline             # copy if needed, then JupyterLab there; calls stay on the emulator
    $ dashnb workshop                  # presenter mode

`add_parsers(sub)` registers them on the top-level parser of ``python -m dashnb``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .copy import KEPT, copy_notebooks
from .launch import lab_command, missing_tool, replace_process, workshop_command
from .resources import notebooks_dir

DEFAULT_DIR = "dashnb-notebooks"


def _ask_on_terminal(rel: str) -> bool:
    answer = input(f"{rel} was edited since it was copied; replace it with this dashnb's version? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _notebooks(args: Any) -> int:
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    try:
        report = copy_notebooks(
            args.dir, overwrite=args.overwrite, ask=_ask_on_terminal if interactive and not args.overwrite else None
        )
    except (OSError, ValueError) as exc:
        print(f"dashnb notebooks: {exc}", file=sys.stderr)
        return 1
    print(report)
    print(f"open them with: dashnb lab {args.dir}")
    return 0


def _is_source(folder: Path) -> bool:
    """True when ``folder`` is this dashnb's own notebooks (`make lab` in a checkout): nothing to copy."""
    try:
        return folder.resolve() == notebooks_dir().resolve()
    except FileNotFoundError:
        return False


def _lab(args: Any) -> int:
    if problem := missing_tool("jupyterlab", "dashnb lab"):
        print(f"dashnb lab: {problem}", file=sys.stderr)
        return 2
    folder = Path(args.dir).expanduser()
    if not _is_source(folder):
        try:
            report = copy_notebooks(folder)
        except (OSError, ValueError) as exc:
            print(f"dashnb lab: {exc}", file=sys.stderr)
            return 1
        if report.count(KEPT) or any(v != "up to date" for v in report.outcomes.values()):
            print(report)
    argv, env = lab_command(folder, offline=args.offline, open_browser=not args.no_browser, port=args.port)
    where = " offline (DASHNB_OFFLINE=1)" if args.offline else ""
    print(f"dashnb: starting JupyterLab{where} in {folder}; open the http://127.0.0.1 URL below (Ctrl-C stops it)")
    replace_process(argv, env)
    return 0  # not reached: the process is JupyterLab now


def _workshop(args: Any) -> int:
    if problem := missing_tool("voila", "dashnb workshop"):
        print(f"dashnb workshop: {problem}", file=sys.stderr)
        return 2
    argv, env = workshop_command(open_browser=not args.no_browser, port=args.port)
    print("dashnb: starting the latency lab in presenter mode, offline; open the http://127.0.0.1 URL below")
    replace_process(argv, env)
    return 0


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: give a number from 1 to 65535")
    return port


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "notebooks",
        help="copy the tutorial notebooks into a folder of yours",
        description="Copy the tutorial notebooks (and their data) into DIR. A notebook you edited is never "
        "replaced without asking (on a terminal) or --overwrite; one you left alone is updated.",
    )
    p.add_argument("dir", nargs="?", default=DEFAULT_DIR, metavar="DIR", help=f"default: ./{DEFAULT_DIR}")
    p.add_argument("--overwrite", action="store_true", help="replace edited notebooks with this dashnb's versions")
    p.set_defaults(func=_notebooks, parser=p)

    p = sub.add_parser(
        "lab",
        help="copy the notebooks if needed and open JupyterLab on them",
        description="Copy the notebooks into DIR if needed (keeping your edits), then start JupyterLab there "
        "on 127.0.0.1 with the project's settings (no news popup, warnings only, the URL last).",
    )
    p.add_argument("dir", nargs="?", default=DEFAULT_DIR, metavar="DIR", help=f"default: ./{DEFAULT_DIR}")
    p.add_argument(
        "--offline", action="store_true", help="keep every call on the embedded emulator, even with a key set"
    )
    p.add_argument("--no-browser", action="store_true", help="print the URL, do not open a browser")
    p.add_argument("--port", type=_port, default=None, help="port (default: 8888, or the next free one)")
    p.set_defaults(func=_lab, parser=p)

    p = sub.add_parser(
        "workshop",
        help="the latency lab in presenter mode (Voila, offline)",
        description="Serve the latency lab's panel alone, in large type, with Voila on 127.0.0.1. Every "
        "call stays on this machine, key or no key.",
    )
    p.add_argument("--no-browser", action="store_true", help="print the URL, do not open a browser")
    p.add_argument("--port", type=_port, default=None, help="port (default: 8866, or the next free one)")
    p.set_defaults(func=_workshop, parser=p)
