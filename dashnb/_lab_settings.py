"""The latency lab's settings: one frozen snapshot per measurement, holding a ``PoolConfig``.

    >>> s = LabSettings(rtt_ms=170, ttfb_ms=700, config=pool_config(connection_pool_size=4,
    ...                 maximum_async_requests=4, maximum_async_requests_per_host=4))
    >>> s.label
    'rtt 170 ms, server 700 ms, TLS 1.3, modes per_call/shared/async'
    >>> s.config.maximum_async_requests, s.problems
    (4, [])

The pool settings are the Java SDK's own (``PoolConfig`` fields, validated by ``PoolConfig``);
the lab adds the emulated network and server time, and the load.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

from ._config import DEFAULT_POOL_CONFIG, PoolConfig, PoolConfigWarning
from ._modes import mode_class
from ._results import Comparison

__all__ = ["DEFAULT_LAB_MODES", "POOL_FIELDS", "SETTINGS", "LabSettings", "pool_config"]

DEFAULT_LAB_MODES = ("per_call", "shared", "async")

#: The PoolConfig fields the lab shows (write_timeout has no Python equivalent to show).
POOL_FIELDS = (
    "connection_pool_size",
    "maximum_async_requests",
    "maximum_async_requests_per_host",
    "connect_timeout",
    "read_timeout",
    "connection_idle_timeout",
)

#: The LabModel traits a change of which re-measures (the order of the panel's controls).
SETTINGS = ("rtt_ms", "ttfb_ms", "tls", *POOL_FIELDS, "concurrency", "calls", "modes", "side_by_side")


def pool_config(**values: Any) -> PoolConfig:
    """A PoolConfig that may break the Java SDK's constraints without a warning: the lab lets
    you try that and reports it in the panel (``LabSettings.problems``) instead of the kernel log.
    Impossible values still raise ValueError, with PoolConfig's message."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PoolConfigWarning)
        return PoolConfig(**values)


@dataclasses.dataclass(frozen=True)
class LabSettings:
    """A snapshot of the lab's settings: what one measurement ran with."""

    rtt_ms: float = 40.0
    ttfb_ms: float = 0.0
    tls: str = "1.3"
    # The pool starts where the Java SDK does (PoolConfig is frozen, so sharing it is safe).
    config: PoolConfig = DEFAULT_POOL_CONFIG
    concurrency: int = 2
    calls: int = 5
    modes: tuple[str, ...] = DEFAULT_LAB_MODES
    side_by_side: bool = True

    @property
    def problems(self) -> list[str]:
        """The Java SDK's documented constraints that ``config`` breaks, in plain words."""
        return self.config.constraint_problems()

    def groups(self) -> list[list[str]]:
        """Modes measured together on one emulator: all of them, or one group per mode side
        by side (the sdk_* modes share the SDK's module-level sessions, so they stay together)."""
        if not self.side_by_side:
            return [list(self.modes)] if self.modes else []
        sdk = [m for m in self.modes if mode_class(m).sdk_session]
        return [[m] for m in self.modes if not mode_class(m).sdk_session] + ([sdk] if sdk else [])

    def emulator_options(self) -> dict[str, Any]:
        return {"rtt_ms": self.rtt_ms, "ttfb_ms": self.ttfb_ms, "tls": self.tls}

    @property
    def network(self) -> str:
        tls = "no TLS" if self.tls == "off" else f"TLS {self.tls}"
        server = f", server {self.ttfb_ms:g} ms" if self.ttfb_ms else ""
        return f"rtt {self.rtt_ms:g} ms{server}, {tls}"

    @property
    def label(self) -> str:
        modes = "/".join(self.modes) if self.modes else "none"
        return f"{self.network}, modes {modes}"


def merge(comparisons: Sequence[Comparison], settings: LabSettings) -> Comparison:
    """One Comparison from the groups measured side by side, modes in the settings' order."""
    measurements = {}
    for c in comparisons:
        measurements.update(c.measurements)
    ordered = {m: measurements[m] for m in settings.modes if m in measurements}
    merged = dict(comparisons[0].settings)
    if len(comparisons) > 1:
        tls = "no TLS" if settings.tls == "off" else f"TLS {settings.tls}"
        # Like an emulator's label; Comparison adds the server time.
        merged["endpoint"] = f"{len(comparisons)} emulators side by side ({tls}, rtt {settings.rtt_ms:g} ms)"
    lab = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings) if f.name != "config"}
    merged.update(modes=list(settings.modes), side_by_side=settings.side_by_side, lab=lab, config=repr(settings.config))
    return Comparison(ordered, merged)


def done_text(result: Comparison, seconds: float) -> str:
    text = f"done in {seconds:.1f} s"
    failed = [(s.mode, s.errors, s.calls) for s in result.summary if s.errors]
    if failed:
        codes = sorted({c.error for m in result for c in m.calls if c.error})
        text += "; failed calls: " + ", ".join(f"{m} {e}/{n}" for m, e, n in failed)
        text += f" ({', '.join(codes)})"
    return text
