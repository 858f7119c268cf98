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
import sys as _sys

from ._extras import lab_extra_error as _lab_extra_error

__version__ = "0.1.0"

# Once: importlib.reload(dashnb) runs this again, and each run would stack another handler.
if not any(isinstance(h, _logging.NullHandler) for h in _logging.getLogger(__name__).handlers):
    _logging.getLogger(__name__).addHandler(_logging.NullHandler())

# Written out, sorted, and checked against _LAZY by a test (tests/unit/test_packaging.py), so that
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
    "AskError": "._ask.core",
    "AskResult": "._ask.core",
    "CallTiming": "._stats",
    "Chat": "._ask.chat",
    "Comparison": "._results",
    "DashScope": "._endpoint",
    "Endpoint": "._endpoint",
    "LabModel": "._lab.model",
    "LatencyLab": "._lab.view",
    "MODES": "._modes.registry",
    "Measurement": "._results",
    "MissingApiKeyError": "._endpoint",
    "ModeSummary": "._stats",
    "NotebookSession": "._session.manager",
    "PoolConfig": "._config.pool",
    "PoolConfigWarning": "._config.pool",
    "ReusePrediction": "._scenarios",
    "SCENARIOS": "._scenarios",
    "Scenario": "._scenarios",
    "ask": "._ask.core",
    "chat": "._ask.chat",
    "compare": "._measure",
    "endpoint": "._endpoint",
    "lab": "._lab.view",
    "measure": "._measure",
    "predict_reuse": "._scenarios",
    "run": "._run",
    "session": "._session.manager",
    "use_endpoint": "._endpoint",
    "where_calls_go": "._endpoint",
}

# IPython's hooks for `%load_ext dashnb` (it looks them up with hasattr): resolved here, not
# defined here, so that importing dashnb never imports IPython, and not public names.
_IPYTHON_HOOKS = ("load_ipython_extension", "unload_ipython_extension")


def _name_public_classes() -> None:
    # As httpx does: a public class says `dashnb.PoolConfig` in its repr and in tracebacks, not
    # the private module that defines it. Done for every loaded module's public classes, so a
    # class met only as a return value or an exception is renamed too.
    for name, module in _LAZY.items():
        value = getattr(_sys.modules.get(__name__ + module), name, None)
        if isinstance(value, type) and value.__module__ != __name__:
            value.__module__ = __name__


def __getattr__(name: str):
    if name == "emulator":
        return _importlib.import_module(".emulator", __name__)
    if name in _IPYTHON_HOOKS:
        hook = getattr(_importlib.import_module("._ask.magic", __name__), name)
        _name_public_classes()
        return hook
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
    _name_public_classes()
    return value


def __dir__():
    return sorted({*__all__, "__version__"})
