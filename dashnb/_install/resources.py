"""Where the files dashnb ships beside its code are: the notebooks, the lab settings, the presenter template.

    >>> from dashnb._install.resources import notebooks_dir
    >>> (notebooks_dir() / "00_quickstart.ipynb").is_file()
    True

A wheel carries the repository's notebooks/ as ``dashnb/_notebooks`` (pyproject.toml's
``[tool.hatch.build.targets.wheel]``); an editable install imports dashnb from a checkout, where they
are still at notebooks/ beside the package. Both are looked up, the wheel's first.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent
# JupyterLab setting defaults (no news popup): a folder for JUPYTER_CONFIG_PATH.
JUPYTER_CONFIG = PACKAGE / "_jupyter" / "etc" / "jupyter"
# The dashnb-presenter Voila template: a folder for JUPYTER_PATH.
JUPYTER_SHARE = PACKAGE / "_jupyter" / "share" / "jupyter"
WORKSHOP_NOTEBOOK = "workshop.ipynb"


def notebooks_dir() -> Path:
    """The folder holding the tutorial notebooks (and their data/) that came with this dashnb."""
    packaged = PACKAGE / "_notebooks"
    if packaged.is_dir():
        return packaged
    checkout = PACKAGE.parent
    if (checkout / "notebooks").is_dir() and (checkout / "pyproject.toml").is_file():
        return checkout / "notebooks"
    raise FileNotFoundError(
        f"this dashnb ({PACKAGE}) has no notebooks: neither {packaged} nor a checkout's notebooks/ exists; "
        "reinstall it from a wheel or a checkout (pip install --force-reinstall 'dashnb[lab]')"
    )
