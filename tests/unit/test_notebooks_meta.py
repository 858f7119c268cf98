"""The committed notebooks: structure a reader on GitHub and nbval rely on, and no secrets or local paths.

Whether the cells still produce the committed outputs is nbval's job (`make test`); this checks the
files themselves, so a notebook saved half-run, with a traceback, a key or a machine's path in it
fails here with a message naming the cell.
"""

from __future__ import annotations

import json
import pathlib
import re

import nbformat
import pytest

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[2] / "notebooks"
ALL = sorted(NOTEBOOKS.glob("*.ipynb"))

# What must never be shown in a committed output.
FORBIDDEN = {
    "a DashScope-style API key": re.compile(r"\bsk-[A-Za-z0-9]{16,}"),
    "an emulator test key": re.compile(r"\bemu-[A-Za-z0-9_-]{12,}"),
    "an Authorization header": re.compile(r"Bearer\s+[A-Za-z0-9._-]{8,}"),
    "a temporary-file path": re.compile(r"(?:/private)?(?:/tmp|/var/folders)/"),
    "a home-folder path": re.compile(r"(?:/home/[^/\s]+|/root|/Users/[^/\s]+)/"),
    "a virtualenv/site-packages path": re.compile(r"site-packages/|\.venv/"),
}


# "What you will learn", "what you will see and try", "you'll learn"...
LEARN = re.compile(r"\blearn|\byou(?: will|'ll)\b", re.IGNORECASE)


def _output_texts(output) -> list[str]:
    texts = []
    if output.get("output_type") == "stream":
        texts.append(output.get("text", ""))
    for value in (output.get("data") or {}).values():
        texts.append(value if isinstance(value, str) else json.dumps(value))
    if output.get("output_type") == "error":
        texts += [output.get("ename", ""), output.get("evalue", ""), *output.get("traceback", [])]
    return texts


def problems(nb) -> list[str]:
    """Everything wrong with one notebook, one message per problem."""
    found = []
    spec = nb.metadata.get("kernelspec", {})
    if spec.get("name") != "python3":
        found.append(f"kernelspec is {spec.get('name')!r}, expected 'python3'")
    if not nb.cells or nb.cells[0].cell_type != "markdown":
        found.append("the first cell must be markdown saying what the reader will learn")
    elif not LEARN.search(nb.cells[0].source):
        found.append("the first markdown cell must say what the reader will learn")
    meta = json.dumps(nb.metadata)
    for what, pattern in FORBIDDEN.items():
        if pattern.search(meta):
            found.append(f"notebook metadata contains {what}")
    code = [c for c in nb.cells if c.cell_type == "code"]
    if code and not any(c.outputs for c in code):
        found.append("no code cell has an output: commit the notebook with outputs from a clean run")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        head = cell.source.strip().splitlines()[0][:50] if cell.source.strip() else ""
        where = f"cell {i} ({head!r})"
        if cell.source.strip() and cell.get("execution_count") is None:
            found.append(f"{where} was not executed")
        for output in cell.outputs:
            if output.get("output_type") == "error":
                found.append(f"{where} has an error output ({output.get('ename')}); catch it and print the message")
            for text in _output_texts(output):
                for what, pattern in FORBIDDEN.items():
                    if pattern.search(text):
                        found.append(f"{where} output contains {what}")
                if "Traceback (most recent call last)" in text:
                    found.append(f"{where} output contains a traceback")
    if [c.get("execution_count") for c in code if c.get("execution_count") is not None] != list(
        range(1, 1 + sum(1 for c in code if c.get("execution_count") is not None))
    ):
        found.append("execution counts are not 1, 2, 3...: run the notebook top to bottom in a fresh kernel")
    return sorted(set(found), key=found.index)


def test_there_are_notebooks():
    assert ALL, f"no notebooks in {NOTEBOOKS.name}/"


@pytest.mark.parametrize("path", ALL, ids=[p.name for p in ALL])
def test_notebook_is_committed_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert problems(nb) == []


# -- the checker itself catches what it should (negative controls) ---------------------------------


def _nb(*cells, kernel="python3"):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": "Python 3", "language": "python"}
    nb.cells = list(cells)
    return nb


def _md(text="# Title\n\nWhat you will learn: things."):
    return nbformat.v4.new_markdown_cell(text)


def _code(src="print(1)", outputs=None, count=1):
    cell = nbformat.v4.new_code_cell(src)
    cell.execution_count = count
    cell.outputs = outputs if outputs is not None else [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    return cell


def test_a_clean_notebook_passes():
    assert problems(_nb(_md(), _code(), _code("x = 2", outputs=[], count=2))) == []


@pytest.mark.parametrize(
    "text, what",
    [
        # Built from parts so the repository itself never holds a key-like or machine-like literal.
        ("key: " + "sk" + "-" + "abcdefghijklmnopqrstu\n", "API key"),
        ("emu-Abc123_xyz-9876543\n", "emulator test key"),
        ("Authorization: Bearer abc.def-ghi123\n", "Authorization header"),
        ("CA at /tmp/dashnb-emulator-x/ca.pem\n", "temporary-file path"),
        ("File /home/alice/project/x.py\n", "home-folder path"),
        ("File " + "/ro" + "ot/" + "work/x.py\n", "home-folder path"),
        ("in .venv/lib/python3.11/site-packages/dashscope\n", "site-packages"),
        ("Traceback (most recent call last):\n  boom\n", "traceback"),
    ],
)
def test_forbidden_output_is_reported(text, what):
    out = nbformat.v4.new_output("stream", name="stdout", text=text)
    found = problems(_nb(_md(), _code(outputs=[out])))
    assert any(what in p for p in found), found


def test_structure_problems_are_reported():
    assert any("kernelspec" in p for p in problems(_nb(_md(), _code(), kernel="other")))
    assert any("first cell" in p for p in problems(_nb(_code())))
    assert any("learn" in p for p in problems(_nb(_md("# Just a title"), _code())))
    assert any("not executed" in p for p in problems(_nb(_md(), _code(count=None, outputs=[]))))
    assert any("no code cell has an output" in p for p in problems(_nb(_md(), _code(outputs=[]))))
    assert any("execution counts" in p for p in problems(_nb(_md(), _code(count=3))))
    err = nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=[])
    assert any("error output" in p for p in problems(_nb(_md(), _code(outputs=[err]))))


# -- notebooks that fit a 1280 px window and lead somewhere -----------------------------------------

# JupyterLab's code cells at a 1280x800 window, file browser open, show about 100 characters.
MAX_CODE_LINE = 100
START_PAGE = "README.md"
# A markdown link's target, or a file name in backticks: `01_sync_sessions.ipynb`.
POINTS_TO = re.compile(r"\]\(([^)\s#]+)[^)]*\)|`([\w.-]+\.(?:ipynb|md))`")


def long_code_lines(nb) -> list[str]:
    """Each code line wider than MAX_CODE_LINE, named by cell and line."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for n, line in enumerate(cell.source.splitlines(), 1):
            if len(line) > MAX_CODE_LINE:
                found.append(f"cell {i} line {n} has {len(line)} characters (at most {MAX_CODE_LINE}): {line[:60]!r}")
    return found


def next_problems(nb, folder: pathlib.Path) -> list[str]:
    """What is wrong with the notebook's ending: it must be a markdown cell with a "Next" that points
    to a file in ``folder`` (another notebook, or the start page)."""
    if not nb.cells or nb.cells[-1].cell_type != "markdown":
        return ["the last cell must be markdown with a 'Next' pointing to the next notebook (or the start page)"]
    text = nb.cells[-1].source
    at = text.find("Next")
    if at < 0:
        return ["the last cell has no 'Next': point to the next notebook (or the start page)"]
    targets = [a or b for a, b in POINTS_TO.findall(text[at:])]
    if not targets:
        return ["the last cell's 'Next' names no notebook: link one, e.g. [01_x.ipynb](01_x.ipynb)"]
    missing = [t for t in targets if not (folder / t).is_file()]
    return [f"the last cell's 'Next' points to {t}, which is not in {folder.name}/" for t in missing]


@pytest.mark.parametrize("path", ALL, ids=[p.name for p in ALL])
def test_code_lines_fit_a_1280px_window(path):
    assert long_code_lines(nbformat.read(path, as_version=4)) == []


@pytest.mark.parametrize("path", ALL, ids=[p.name for p in ALL])
def test_every_notebook_ends_with_a_next(path):
    assert next_problems(nbformat.read(path, as_version=4), NOTEBOOKS) == []


def test_the_quickstart_names_every_notebook_and_the_workshop():
    text = "\n".join(c.source for c in nbformat.read(NOTEBOOKS / "00_quickstart.ipynb", as_version=4).cells)
    missing = [p.name for p in ALL if p.name != "00_quickstart.ipynb" and p.name not in text]
    assert missing == [], f"00_quickstart.ipynb does not name {missing}"


def test_the_start_page_lists_every_notebook():
    page = NOTEBOOKS / START_PAGE
    assert page.is_file(), f"{NOTEBOOKS.name}/{START_PAGE} is the start page JupyterLab shows"
    text = page.read_text(encoding="utf-8")
    targets = {a or b for a, b in POINTS_TO.findall(text)}
    assert {p.name for p in ALL} <= targets, sorted({p.name for p in ALL} - targets)


def test_the_fit_checks_catch_what_they_should(tmp_path):
    (tmp_path / "01_next.ipynb").write_text("{}", encoding="utf-8")
    wide = _code("x = 1  # " + "a comment that runs on " * 5)
    assert long_code_lines(_nb(_md(), wide)) and long_code_lines(_nb(_md(), _code())) == []
    ends = {
        "a code cell last": _nb(_md(), _code()),
        "no Next": _nb(_md(), _code(), _md("## Summary\n\nDone.")),
        "Next naming nothing": _nb(_md(), _md("Next: the async lesson.")),
        "Next to a missing file": _nb(_md(), _md("Next: [02](02_missing.ipynb)")),
    }
    for what, nb in ends.items():
        assert next_problems(nb, tmp_path), what
    assert next_problems(_nb(_md(), _md("Next: [01](01_next.ipynb)")), tmp_path) == []
    assert next_problems(_nb(_md(), _md("Next: `01_next.ipynb`")), tmp_path) == []
