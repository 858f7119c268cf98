"""dashnb: see and tune HTTP connection reuse for DashScope (Qwen) calls in a notebook.

    >>> import dashnb
    >>> s = dashnb.session(dashnb.PoolConfig(connection_pool_size=8))   # doctest: +SKIP
    >>> from dashscope import Generation                                # doctest: +SKIP
    >>> Generation.call(model="qwen-plus", prompt="hi", session=s.requests)  # doctest: +SKIP

In a notebook, ``%load_ext dashnb`` adds a ``%%ask`` cell magic (a conversation continued
from cell to cell; see ``dashnb.chat()`` for the same from Python).

Importing this package is cheap: the heavy libraries (dashscope, aiohttp, requests,
matplotlib, ipywidgets) load the first time a name that needs them is used.
"""

import importlib as _importlib
import logging as _logging

from ._extras import lab_extra_error as _lab_extra_error

__version__ = "0.1.0"

_logging.getLogger(__name__).addHandler(_logging.NullHandler())

# Written out, sorted, and checked against _LAZY by a test (tests/test_packaging.py), so that
# a name can be neither exported by accident nor forgotten.
__all__ = [
    "AskError",
    "AskResult",
    "CallTiming",
    "Chat",
    "Comparison",
    "DashScope",
    "Endpoint",
    "LabModel",
    "LatencyLab",
    "MODES",
    "Measurement",
    "MissingApiKeyError",
    "ModeSummary",
    "NotebookSession",
    "PoolConfig",
    "PoolConfigWarning",
    "ReusePrediction",
    "SCENARIOS",
    "Scenario",
    "ask",
    "chat",
    "compare",
    "emulator",
    "endpoint",
    "lab",
    "measure",
    "predict_reuse",
    "run",
    "session",
    "use_endpoint",
    "where_calls_go",
]

# Public name -> private module that defines it; resolved on first access (PEP 562).
_LAZY = {
    "AskError": "._ask",
    "AskResult": "._ask",
    "CallTiming": "._stats",
    "Chat": "._chat",
    "Comparison": "._results",
    "DashScope": "._endpoint",
    "Endpoint": "._endpoint",
    "LabModel": "._lab_model",
    "LatencyLab": "._lab_view",
    "MODES": "._modes",
    "Measurement": "._results",
    "MissingApiKeyError": "._endpoint",
    "ModeSummary": "._stats",
    "NotebookSession": "._session",
    "PoolConfig": "._config",
    "PoolConfigWarning": "._config",
    "ReusePrediction": "._scenarios",
    "SCENARIOS": "._scenarios",
    "Scenario": "._scenarios",
    "ask": "._ask",
    "chat": "._chat",
    "compare": "._measure",
    "endpoint": "._endpoint",
    "lab": "._lab_view",
    "measure": "._measure",
    "predict_reuse": "._scenarios",
    "run": "._run",
    "session": "._session",
    "use_endpoint": "._endpoint",
    "where_calls_go": "._endpoint",
}

# IPython's hooks for `%load_ext dashnb` (it looks them up with hasattr): resolved here, not
# defined here, so that importing dashnb never imports IPython, and not public names.
_IPYTHON_HOOKS = ("load_ipython_extension", "unload_ipython_extension")


def __getattr__(name: str):
    if name == "emulator":
        return _importlib.import_module(".emulator", __name__)
    if name in _IPYTHON_HOOKS:
        return getattr(_importlib.import_module("._magic", __name__), name)
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'dashnb' has no attribute {name!r}") from None
    try:
        imported = _importlib.import_module(module, __name__)
    except ModuleNotFoundError as exc:  # a base install using a [lab] feature: say what to install
        raise (_lab_extra_error(exc, f"dashnb.{name}") or exc) from exc
    value = getattr(imported, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*__all__, "__version__"})
