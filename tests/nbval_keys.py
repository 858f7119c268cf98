"""While nbval runs each notebook (once per ``make test``), scan every output it produced for keys.

An API key must never reach a notebook's output. nbval compares outputs with the committed ones,
but cells marked ``NBVAL_IGNORE_OUTPUT`` are not compared, so this hook reads what each cell
actually printed: key-shaped text (a DashScope ``sk-`` key, an emulator ``emu-`` key) fails the
cell, whichever key the kernel used.

A plugin rather than a notebooks/conftest.py, so the folder learners open holds lessons only:
`make test` loads it with ``-p tests.nbval_keys``.
"""

import json
import re

import pytest

KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9]{16,}|\bemu-[A-Za-z0-9_-]{16}\b")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield
    outputs = getattr(item, "test_outputs", None)  # what nbval's cell item just executed
    if outputs:
        found = KEY_LIKE.findall(json.dumps(outputs, default=str))
        if found:
            masked = sorted({k[:4] + "..." for k in found})
            raise AssertionError(f"{item.name}: an API key appears in this cell's output ({', '.join(masked)})")
    return result
