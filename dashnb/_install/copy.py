"""Copy the packaged notebooks into a folder of the user's, never losing an edit.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from dashnb._install.copy import copy_notebooks
    >>> dest = Path(tempfile.mkdtemp()) / "nb"
    >>> report = copy_notebooks(dest)
    >>> "copied" in str(report) and (dest / "00_quickstart.ipynb").is_file()
    True
    >>> str(copy_notebooks(dest)).splitlines()[-1].endswith("up to date")
    True
    >>> import shutil; shutil.rmtree(dest.parent)

A manifest (``.dashnb-notebooks.json``) records the hash of every file as it was copied. On a later
copy a file that still has that hash was not touched by the user, so a newer dashnb's version may
replace it; a file with any other content was edited (running a notebook and saving it counts) and
is replaced only when the user says so: by ``overwrite=True`` or by answering ``ask``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .resources import notebooks_dir

MANIFEST = ".dashnb-notebooks.json"
# Never copied out: editor state that may sit in a checkout's notebooks/.
SKIPPED_PARTS = frozenset({".ipynb_checkpoints", "__pycache__"})

COPIED, UPDATED, UP_TO_DATE, REPLACED, KEPT = "copied", "updated", "up to date", "replaced", "kept"


@dataclass(frozen=True)
class CopyReport:
    """What happened to each file: path relative to ``dest`` -> one of the outcomes above."""

    dest: Path
    outcomes: dict[str, str] = field(default_factory=dict)

    def count(self, outcome: str) -> int:
        return sum(1 for v in self.outcomes.values() if v == outcome)

    def __str__(self) -> str:
        lines = [f"{rel}: {what}" for rel, what in self.outcomes.items() if what != UP_TO_DATE]
        kept = self.count(KEPT)
        if kept:
            lines.append(
                f"kept {kept} edited file(s) as they are; `dashnb notebooks {self.dest} --overwrite` replaces them "
                "with this dashnb's versions"
            )
        done = ", ".join(f"{self.count(o)} {o}" for o in (COPIED, UPDATED, REPLACED, KEPT, UP_TO_DATE) if self.count(o))
        lines.append(f"notebooks in {self.dest}: {done or 'nothing to copy'}")
        return "\n".join(lines)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sources(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*") if p.is_file() and not SKIPPED_PARTS.intersection(p.relative_to(root).parts)
    )


def _read_manifest(dest: Path) -> dict[str, str]:
    try:
        data = json.loads((dest / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: every differing file then counts as edited, the safe side
    files = data.get("files") if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}


def copy_notebooks(
    dest: Path | str,
    *,
    overwrite: bool = False,
    ask: Callable[[str], bool] | None = None,
    source: Path | None = None,
) -> CopyReport:
    """Copy the notebooks (and their data/) into ``dest``, creating it if needed.

    A file missing from ``dest`` is copied; one the user has not changed since it was copied is
    updated; an edited one is kept unless ``overwrite`` is true or ``ask(relative_path)`` returns
    true."""
    src = Path(source) if source is not None else notebooks_dir()
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise NotADirectoryError(f"{dest} is a file; name a folder to copy the notebooks into")
    if dest.resolve() == src.resolve():
        raise ValueError(f"{dest} is where dashnb's own notebooks are; name another folder to copy them into")
    manifest = _read_manifest(dest)
    outcomes: dict[str, str] = {}
    for path in _sources(src):
        rel = path.relative_to(src).as_posix()
        target = dest / rel
        new = _digest(path)
        if not target.exists():
            outcome = COPIED
        else:
            have = _digest(target)
            if have == new:
                outcome = UP_TO_DATE
            elif manifest.get(rel) == have:
                outcome = UPDATED
            elif overwrite or (ask is not None and ask(rel)):
                outcome = REPLACED
            else:
                outcome = KEPT
        if outcome in (COPIED, UPDATED, REPLACED):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        if outcome != KEPT:
            manifest[rel] = new
        outcomes[rel] = outcome
    dest.mkdir(parents=True, exist_ok=True)
    (dest / MANIFEST).write_text(json.dumps({"files": manifest}, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return CopyReport(dest, outcomes)
