"""The latency lab's latest result as the panel shows it: figures, the plot's axes, a pinned run, export.

    >>> from dashnb._lab.results import LabResults
    >>> results = LabResults()                  # nothing measured yet
    >>> results.summary, results.notes(), results.pin_changes()
    ([], [], [])

``LabResults`` is the results half of ``dashnb._lab.model.LabModel`` (a traitlets class, no
widgets): what the panel shows is decided here, so it is tested here. ``scale`` (the plot's
axes, kept between runs unless ``y_axis`` says "fit", see ``Y_AXIS_CHOICES``), ``pin()`` (a run
kept for before/after), ``summary`` and ``notes()`` (percentiles only where the sample supports
them, ``MIN_SAMPLES``), and the export of the latest run (``to_json``, ``to_csv``, ``to_png``,
``save``). The model's measurement sets ``result``, ``measured``, ``problems`` and ``scale``.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import traitlets
from traitlets import Enum, HasTraits, Instance, observe

from .._atomic import write_atomic
from .._results import Comparison
from .._stats import ModeSummary
from .figure import lab_figure_png
from .settings import (
    Y_AXIS_CHOICES,
    LabSettings,
    PlotScale,
    calls_csv,
    export_dict,
    percentile_note,
    supported,
)

__all__ = ["LabResults"]


class LabResults(HasTraits):
    """The latest result, the run pinned for before/after and the plot's axes, as plain data."""

    # How the plot looks; changing these redraws, it never re-measures.
    y_axis = Enum(Y_AXIS_CHOICES, default_value="keep", help="keep (grow only), lock, or fit every run")
    scale = Instance(PlotScale, allow_none=True, help="the plot's axes for the latest result")
    pinned = Instance(Comparison, allow_none=True, help="a run kept for before/after (ghost marks)")
    pinned_settings = Instance(LabSettings, allow_none=True, help="the settings `pinned` was measured with")

    # Set by the measurement, on the loop's thread only.
    result = Instance(Comparison, allow_none=True)
    measured = Instance(LabSettings, allow_none=True, help="the settings `result` was measured with")
    problems: traitlets.List[str] = traitlets.List(help="PoolConfig constraints the measured settings break")

    # -- results, as plain data ---------------------------------------------------------------

    @property
    def latency_ms(self) -> dict[str, float | None]:
        """p50 latency per mode of the latest result."""
        return {s.mode: s.p50_ms for s in self.result.summary} if self.result else {}

    @property
    def connections(self) -> dict[str, int | None]:
        """Connections the client opened per mode in the latest result."""
        return {s.mode: s.client_connections for s in self.result.summary} if self.result else {}

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The latest summary table as dicts (ModeSummary.to_dict())."""
        return [s.to_dict() for s in self.result.summary] if self.result else []

    @property
    def summary(self) -> list[ModeSummary]:
        """The latest summary, with the percentiles its sample cannot support set to None
        (see ``MIN_SAMPLES``): what the panel's table shows."""
        return [supported(s) for s in self.result.summary] if self.result else []

    def notes(self) -> list[str]:
        """What the panel says under its table: the comparison's notes, why a percentile is
        missing, the pool constraints the settings break, the change since the pinned run."""
        if self.result is None:
            return []
        note = percentile_note(self.result.summary)
        # Most telling first: what the run shows, what the settings break, what changed.
        return [*self.result.notes(), *self.problems, *self.pin_changes(), *([note] if note else [])]

    # -- the plot's axes -------------------------------------------------------------------

    @observe("y_axis")
    def _y_axis_changed(self, change) -> None:
        if change["new"] == "fit" and self.result is not None:
            self.fit_y_axis()

    def fit_y_axis(self) -> None:
        """Fit the plot's axes to the latest result (and the pinned run) now."""
        self.scale = PlotScale.fit(self.result, self.pinned) if self.result is not None else None

    # -- before / after ----------------------------------------------------------------------

    def pin(self) -> None:
        """Keep the latest result as "before": the plot shows it as ghost marks and the notes
        say how each mode changed since, until ``unpin()`` or the next ``pin()``."""
        if self.result is None or self.measured is None:
            raise RuntimeError("nothing measured yet: there is no run to pin")
        with self.hold_trait_notifications():
            self.pinned_settings = self.measured
            self.pinned = self.result

    def unpin(self) -> None:
        with self.hold_trait_notifications():
            self.pinned = None
            self.pinned_settings = None

    def pin_changes(self) -> list[str]:
        """One line per mode in both the pinned and the latest run: p50 and connections, then
        and now."""
        if self.pinned is None or self.result is None or self.pinned_settings is None:
            return []
        before = {s.mode: s for s in self.pinned.summary}
        lines = []
        for now in self.result.summary:
            then = before.get(now.mode)
            if then is None or then.p50_ms is None or now.p50_ms is None:
                continue
            lines.append(
                f"{now.mode}: p50 {then.p50_ms:.0f} -> {now.p50_ms:.0f} ms, connections "
                f"{_count(then.client_connections)} -> {_count(now.client_connections)}"
            )
        if lines:
            lines.insert(0, f"Since the pinned run ({self.pinned_settings.label}):")
        return lines

    # -- export ------------------------------------------------------------------------------

    def _exported(self) -> tuple[Comparison, LabSettings]:
        if self.result is None or self.measured is None:
            raise RuntimeError("nothing measured yet: there is nothing to export")
        return self.result, self.measured

    def to_dict(self) -> dict[str, Any]:
        """The latest measurement as plain data (settings, figures, every call, the pinned
        run's figures); percentiles only where the sample supports them."""
        result, settings = self._exported()
        return export_dict(result, settings, self.pinned)

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False, default=str)

    def to_csv(self) -> str:
        """Every call of the latest measurement, one row each (times in ms)."""
        return calls_csv(self._exported()[0])

    def to_png(self, *, dpi: int = 100, figsize: tuple[float, float] = (10, 3.6)) -> bytes:
        """The plot the panel shows, as a PNG (needs matplotlib)."""
        result, settings = self._exported()
        return lab_figure_png(
            result, settings, scale=self.scale, pinned=self.pinned, y_axis=self.y_axis, dpi=dpi, figsize=figsize
        )

    @property
    def export_name(self) -> str:
        """A file name (no suffix) that says what was measured."""
        _result, s = self._exported()
        tls = "plain" if s.tls == "off" else f"tls{s.tls}"
        return f"dashnb-lab-rtt{s.rtt_ms:g}ms-server{s.ttfb_ms:g}ms-{tls}-{s.calls}calls"

    def save(self, path: str | os.PathLike) -> pathlib.Path:
        """Write the latest measurement to ``path``: .json, .csv or .png by its suffix."""
        target = pathlib.Path(path)
        writers = {".json": self.to_json, ".csv": self.to_csv}
        if target.suffix == ".png":
            data: str | bytes = self.to_png()
        elif target.suffix in writers:
            data = writers[target.suffix]()
        else:
            raise ValueError(f"save() writes .json, .csv or .png, not {target.suffix or 'no suffix'!r}")
        # Atomic: a full disk or an interrupted write leaves the previous file as it was.
        return write_atomic(target, data)


def _count(x: int | None) -> str:
    return "?" if x is None else str(x)
