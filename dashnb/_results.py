"""What ``compare()`` returns: a ``Measurement`` per mode inside a ``Comparison``.

    >>> r = dashnb.compare(modes=("per_call", "shared"), calls=20)     # doctest: +SKIP
    >>> r.ratio("per_call", "shared")                                   # doctest: +SKIP
    3.0
    >>> print(r.to_json())                                              # doctest: +SKIP

A mode that could not run says why instead of showing numbers:

    >>> from dashnb._stats import summarize
    >>> Measurement("sdk_async", [], summarize("sdk_async", [], wall_s=0.0, skipped="certifi only"))
    <Measurement sdk_async: skipped (certifi only)>

Both render as a table in a notebook (``_repr_html_``) and as text elsewhere; ``plot()`` hands
the measurements to ``dashnb._plot``.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

from ._modes.registry import MODES
from ._plot import plot_measurements
from ._stats import CallTiming, ModeSummary, format_table, html_table

__all__ = ["Comparison", "Interrupted", "Measurement"]


class Measurement:
    """One mode's calls (``.calls``, frozen ``CallTiming`` records) and their ``.summary``."""

    def __init__(self, mode: str, calls: Sequence[CallTiming], summary: ModeSummary) -> None:
        self.mode = mode
        self.description = MODES.get(mode, "")
        self.calls: tuple[CallTiming, ...] = tuple(calls)
        self.summary = summary

    @property
    def skipped(self) -> str | None:
        return self.summary.skipped

    def to_dict(self, *, calls: bool = False) -> dict[str, Any]:
        out = {"description": self.description, **self.summary.to_dict()}
        out.pop("mode")
        if calls:
            out["calls"] = [c.to_dict() for c in self.calls]
        return out

    def __repr__(self) -> str:
        s = self.summary
        if s.skipped:
            return f"<Measurement {self.mode}: skipped ({s.skipped})>"
        return (
            f"<Measurement {self.mode}: {s.calls} calls, p50 {_f(s.p50_ms)} ms, p90 {_f(s.p90_ms)} ms, "
            f"{s.errors} errors, {s.client_connections} connections opened>"
        )

    def __str__(self) -> str:
        return format_table([self.summary])

    def _repr_html_(self) -> str:
        return html_table([self.summary], caption=f"<b>{self.mode}</b>: {self.description}")

    def plot(self, **kwargs: Any):
        return plot_measurements({self.mode: self}, **kwargs)


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


class Comparison:
    """What ``compare()`` returns: one ``Measurement`` per mode plus the settings used.

    ``result["shared"]`` is a Measurement; ``result.summary`` the ModeSummary list;
    ``result.ratio("per_call", "shared")`` compares p50s; ``to_dict()`` / ``to_json()`` have the
    shape of ``python -m dashnb bench --json``; ``plot()`` draws the latency distributions and a
    per-call timeline (handshake vs request).
    """

    def __init__(self, measurements: dict[str, Measurement], settings: dict[str, Any]) -> None:
        self.measurements = dict(measurements)
        self.settings = dict(settings)

    def __getitem__(self, mode: str) -> Measurement:
        return self.measurements[mode]

    def __iter__(self):
        return iter(self.measurements.values())

    @property
    def modes(self) -> list[str]:
        return list(self.measurements)

    @property
    def summary(self) -> list[ModeSummary]:
        return [m.summary for m in self.measurements.values()]

    def ratio(self, a: str, b: str, stat: str = "p50_ms") -> float | None:
        x, y = getattr(self[a].summary, stat), getattr(self[b].summary, stat)
        return None if x is None or not y else x / y

    def connection_mismatches(self) -> dict[str, tuple[int | None, int | None]]:
        """Modes whose client-side connection count differs from the emulator's: (client, server)."""
        return {s.mode: (s.client_connections, s.tcp_connections) for s in self.summary if s.connections_agree is False}

    def notes(self) -> list[str]:
        out = []
        if "per_call" in self.measurements and "shared" in self.measurements:
            r = self.ratio("per_call", "shared")
            if r is not None:
                out.append(f"per_call p50 is {r:.1f}x shared p50.")
        checked = [s for s in self.summary if s.connections_agree is not None]
        if checked:
            bad = self.connection_mismatches()
            out.append(
                "Client and emulator connection counts agree for every mode."
                if not bad
                else "Client and emulator connection counts DISAGREE for: "
                + ", ".join(f"{m} (client {c}, server {s})" for m, (c, s) in bad.items())
            )
        return out

    def _title(self) -> str:
        st = self.settings
        # Server time is not in the emulator's label, and it decides how much reuse shows.
        server = f", server time {st['ttfb_ms']:g} ms" if st.get("ttfb_ms") else ""
        scenario = f" (scenario {st['scenario']}: assumed values)" if st.get("scenario") else ""
        return (
            f"{st.get('endpoint', '?')}{server}{scenario}: {st.get('calls')} calls per mode, concurrency "
            f"{st.get('concurrency')}, {st.get('rounds')} interleaved rounds"
            + ("; INTERRUPTED: only the calls that finished" if st.get("interrupted") else "")
        )

    def to_dict(self, *, calls: bool = False) -> dict[str, Any]:
        return {
            "settings": dict(self.settings),
            "modes": {name: m.to_dict(calls=calls) for name, m in self.measurements.items()},
        }

    def to_json(self, *, calls: bool = False, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(calls=calls), indent=indent, allow_nan=False, default=str)

    def __str__(self) -> str:
        return "\n".join([self._title(), format_table(self.summary), *self.notes()])

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return html_table(
            self.summary, caption=f"<b>dashnb.compare</b> {html.escape(self._title())}", notes=self.notes()
        )

    def plot(self, **kwargs: Any):
        return plot_measurements(self.measurements, **kwargs)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped a ``compare()``. Still a KeyboardInterrupt (so it stops what called it too),
    carrying what was measured before it: ``.partial``, whose settings say ``"interrupted": True``."""

    def __init__(self, partial: Comparison) -> None:
        super().__init__("compare() was interrupted; what it measured so far is in .partial")
        self.partial = partial
