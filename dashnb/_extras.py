"""Which optional extra brings which library, and the message when one is missing.

    >>> print(missing_extra_message("ipywidgets", "dashnb.lab()"))
    dashnb.lab() needs ipywidgets, which comes with the lab extra: pip install 'dashnb[lab]'

The base package (the session manager, the emulator, ``ask``, the pytest plugin) needs none of
these; the notebooks, the latency lab, plots and the presenter mode do.
"""

from __future__ import annotations

# Top-level module -> the extra of pyproject.toml that installs it.
LAB_MODULES = frozenset(
    {"ipywidgets", "matplotlib", "traitlets", "IPython", "openai", "jupyterlab", "voila", "ipykernel"}
)


def missing_extra_message(module: str, feature: str) -> str:
    return f"{feature} needs {module}, which comes with the lab extra: pip install 'dashnb[lab]'"


def lab_extra_error(exc: ModuleNotFoundError, feature: str) -> ImportError | None:
    """An ImportError naming the extra to install when ``exc`` is about a [lab] library, else None."""
    top = (exc.name or "").split(".")[0]
    if top not in LAB_MODULES:
        return None
    error = ImportError(missing_extra_message(top, feature))
    error.name = exc.name
    return error
