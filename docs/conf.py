"""Sphinx settings of the docs site (`make docs`): README, the executed notebooks, the API reference
from the docstrings, and CONTRIBUTING, rendered from where they live in the repository.

    python -m sphinx -b html -W --keep-going -c docs -d build/docs-doctrees . build/docs

The source folder is the repository root so that README's and the notebooks' relative links hold
as they are; ``include_patterns`` keeps everything else out. The site is offline: no font, script or
widget library from a CDN (furo needs none; myst-nb's widget scripts are switched off and a widget
shows the picture saved with it). The notebooks are rendered as committed (executed, with outputs):
one with an error output or a code cell never run fails the build, as a broken link does under -W.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sphinx.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the checkout's dashnb, for autodoc

project = "dashnb"
author = "dashnb contributors"
copyright = "dashnb contributors"

extensions = ["myst_nb", "sphinx.ext.autodoc"]
root_doc = "docs/index"
include_patterns = ["README.md", "CONTRIBUTING.md", "docs/*.md", "notebooks/[0-9]*.ipynb"]
exclude_patterns = ["build", ".venv", "**/.ipynb_checkpoints"]

# Notebooks: as committed, never executed here; a widget is shown as the picture saved with it.
nb_execution_mode = "off"
nb_ipywidgets_js: dict = {}
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"

html_theme = "furo"
html_title = "dashnb"
html_static_path: list[str] = []
html_show_sourcelink = False


def _notebook_problems(path: Path) -> list[str]:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    problems = []
    for number, cell in enumerate(notebook["cells"], 1):
        if cell["cell_type"] != "code" or not "".join(cell["source"]).strip():
            continue
        if cell.get("execution_count") is None:
            problems.append(f"{path.name} cell {number}: never executed")
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                problems.append(f"{path.name} cell {number}: {output.get('ename')}: {output.get('evalue')}")
    return problems


def _check_notebooks(app) -> None:
    notebooks = sorted((Path(app.srcdir) / "notebooks").glob("[0-9]*.ipynb"))
    problems = [p for nb in notebooks for p in _notebook_problems(nb)]
    if problems:
        raise ConfigError("notebooks must be executed without errors before the site is built:\n" + "\n".join(problems))


# The root document is docs/index (the source folder is the repository), so the site's own
# index.html, the page a reader opens first, sends them there.
_REDIRECT = (
    '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>dashnb</title>'
    '<meta http-equiv="refresh" content="0; url=docs/index.html"></head>'
    '<body><a href="docs/index.html">dashnb</a></body></html>\n'
)


def _write_redirect(app, exception) -> None:
    if exception is None and app.builder.format == "html":
        (Path(app.outdir) / "index.html").write_text(_REDIRECT, encoding="utf-8")


def setup(app) -> None:
    app.connect("builder-inited", _check_notebooks)
    app.connect("build-finished", _write_redirect)
