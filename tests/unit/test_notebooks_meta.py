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
