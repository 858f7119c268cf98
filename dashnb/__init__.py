"""dashnb: see and tune HTTP connection reuse for DashScope (Qwen) calls in a notebook.

    >>> import dashnb
    >>> s = dashnb.session(dashnb.PoolConfig(connection_pool_size=8))   # doctest: +SKIP
    >>> from dashscope import Generation                                # doctest: +SKIP
    >>> Generation.call(model="qwen-plus", prompt="hi", session=s.requests)  # doctest: +SKIP

Importing this package is cheap: the heavy libraries (dashscope, aiohttp, requests,
matplotlib, ipywidgets) load the first time a name that needs them is used.
"""

from __future__ import annotations

import importlib
import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

# Public name -> private module that defines it; resolved on first access (PEP 562).
_LAZY = {
    "AskError": "._ask",
    "AskResult": "._ask",
    "LabModel": "._lab_model",
    "ask": "._ask",
    "lab": "._lab_view",
    "CallTiming": "._stats",
    "Comparison": "._results",
    "DashScope": "._endpoint",
    "Endpoint": "._endpoint",
    "MODES": "._modes",
    "Measurement": "._results",
    "NotebookSession": "._session",
    "PoolConfig": "._config",
    "PoolConfigWarning": "._config",
    "compare": "._measure",
    "endpoint": "._endpoint",
    "measure": "._measure",
    "run": "._run",
    "session": "._session",
    "use_endpoint": "._endpoint",
}

__all__ = sorted([*_LAZY, "emulator"])


def __getattr__(name: str):
    if name == "emulator":
        return importlib.import_module(".emulator", __name__)
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'dashnb' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *__all__])
