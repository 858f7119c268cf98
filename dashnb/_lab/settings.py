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

import csv
import dataclasses
import io
import math
import warnings
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from .._colors import MODE_COLORS, mode_color  # noqa: F401 (the lab's names for them)
from .._config.pool import DEFAULT_POOL_CONFIG, PoolConfig, PoolConfigWarning
from .._modes.registry import mode_class
from .._results import Comparison
from .._scenarios import SCENARIOS
from .._stats import ModeSummary

__all__ = [
    "DEFAULT_LAB_MODES",
    "LAB_SCENARIOS",
    "MIN_SAMPLES",
    "MODE_COLORS",
    "MODE_FAMILIES",
    "POOL_FIELDS",
    "SETTINGS",
    "TIMEOUT_STOPS",
    "Y_AXIS_CHOICES",
    "LabScenario",
    "LabSettings",
    "PlotScale",
    "mode_color",
    "mode_family",
    "pool_config",
    "pool_hint",
]

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


#: The client families the lab's mode picker groups modes by, in its order.
MODE_FAMILIES = ("requests", "aiohttp", "dashscope 2.x (httpx)", "openai (httpx)")


def mode_family(name: str) -> str:
    """The client family of mode ``name``: what the picker files it under."""
    if name.startswith("v2_"):
        return MODE_FAMILIES[2]
    if name.startswith("openai_"):
        return MODE_FAMILIES[3]
    return MODE_FAMILIES[1] if mode_class(name).is_async else MODE_FAMILIES[0]


def pool_hint(settings: LabSettings) -> str:
    """Why moving a pool slider changes nothing on the plot now, and what shows it ('' when it can).

    A pool limit shows only when more calls are in flight than it allows, in a mode that runs
    calls concurrently: at the defaults (concurrency 2) no pool setting is ever reached.
    """
    concurrent = [m for m in settings.modes if mode_class(m).concurrent]
    c = settings.config
    smallest = min(c.connection_pool_size, c.maximum_async_requests, c.maximum_async_requests_per_host)
    if concurrent and settings.concurrency > smallest and settings.calls > smallest:
        return ""
    why = (
        "no mode ticked runs calls concurrently (threads, async, sdk_threads, ...)"
        if not concurrent
        else f"concurrency {settings.concurrency} never reaches a pool limit (smallest {smallest})"
    )
    label = LAB_SCENARIOS["pool_too_small"].label
    return (
        f"The pool sliders change nothing yet: {why}. Pick the scenario '{label}', or raise "
        "concurrency (and calls) above a pool slider with threads or async ticked."
    )


# -- lab scenarios: named starting points, built on dashnb.SCENARIOS where they are networks ------


@dataclasses.dataclass(frozen=True)
class LabScenario:
    """A named set of lab settings: the defaults with ``values`` on top. ``modes`` and
    ``side_by_side`` stay as the reader set them unless ``values`` names them."""

    name: str
    label: str
    description: str
    values: Mapping[str, Any]

    def settings(self) -> dict[str, Any]:
        """Every setting this scenario fixes (the defaults, then its own values)."""
        defaults = LabSettings()
        fixed = {"rtt_ms": defaults.rtt_ms, "ttfb_ms": defaults.ttfb_ms, "tls": defaults.tls}
        fixed.update({name: getattr(DEFAULT_POOL_CONFIG, name) for name in POOL_FIELDS})
        fixed.update(concurrency=defaults.concurrency, calls=defaults.calls)
        fixed.update(self.values)
        return fixed


def _lab_scenarios() -> dict[str, LabScenario]:
    far, chat = SCENARIOS["europe_to_singapore"], SCENARIOS["same_region"].ttfb_ms
    own = (
        LabScenario(
            "slow_network",
            f"slow network (rtt {far.rtt_ms:g} ms)",
            f"The round trip of {far.label} (assumed) and a server that answers at once: every new "
            "connection costs two more round trips, so per_call takes about three times as long as shared.",
            {"rtt_ms": far.rtt_ms, "ttfb_ms": 0.0},
        ),
        LabScenario(
            "tls_1_2",
            "TLS 1.2",
            "TLS 1.2 needs one more round trip than TLS 1.3 to open a connection: per_call pays it on "
            "every call, reused connections never.",
            {"tls": "1.2"},
        ),
        LabScenario(
            "pool_too_small",
            "pool too small (2 connections, 8 in flight)",
            "8 calls in flight, 2 connections allowed: async calls wait for a connection, in waves; "
            "threads open what the burst needs and keep only 2, so the next burst opens them again.",
            {
                "connection_pool_size": 2,
                "maximum_async_requests": 2,
                "maximum_async_requests_per_host": 2,
                "concurrency": 8,
                "calls": 16,
                "modes": ("shared", "threads", "async"),
            },
        ),
        LabScenario(
            "long_server_time",
            f"long server time ({chat / 1000:g} s)",
            f"{chat:g} ms before the first byte (the assumed time of a short reply): reuse saves the same "
            "milliseconds, but they are a small share of a call.",
            {"ttfb_ms": chat},
        ),
    )
    networks = (
        LabScenario(s.name, s.label, str(s), {"rtt_ms": s.rtt_ms, "ttfb_ms": s.ttfb_ms}) for s in SCENARIOS.values()
    )
    return {s.name: s for s in (*own, *networks)}


#: The lab's scenarios by name: four lessons, then the assumed networks of ``dashnb.SCENARIOS``.
LAB_SCENARIOS: Mapping[str, LabScenario] = MappingProxyType(_lab_scenarios())


def lab_scenario(name: str) -> LabScenario:
    """``LAB_SCENARIOS[name]`` with an error that lists the choices."""
    try:
        return LAB_SCENARIOS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(LAB_SCENARIOS)}") from None


# -- slider stops ------------------------------------------------------------------------------

#: Seconds a timeout slider stops at: every value the notebooks suggest (0.03 s read timeout at a
#: 40 ms round trip) and the Java SDK's defaults (120 s connect, 300 s read and idle).
TIMEOUT_STOPS = (0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


def timeout_stops(current: float) -> tuple[float, ...]:
    """The stops, plus ``current`` when it is set in code to a value between them."""
    return tuple(sorted({*TIMEOUT_STOPS, float(current)}))


# -- percentiles the sample supports ------------------------------------------------------------

#: Successful calls a mode needs before a percentile means anything: with fewer than 10 calls the
#: "p90" is just the slowest call or an interpolation next to it, with fewer than 100 so is p99.
MIN_SAMPLES = MappingProxyType({"p90_ms": 10, "p99_ms": 100})


def supported(summary: ModeSummary) -> ModeSummary:
    """``summary`` with the percentiles its sample cannot support set to None."""
    good = summary.calls - summary.errors
    drop: dict[str, Any] = {name: None for name, need in MIN_SAMPLES.items() if good < need}
    return dataclasses.replace(summary, **drop) if drop else summary


def percentile_note(summaries: Sequence[ModeSummary]) -> str | None:
    """Why some percentiles are shown as "—", or None when every one is shown."""
    counts = [s.calls - s.errors for s in summaries if not s.skipped]
    if not counts:
        return None
    fewest = min(counts)
    missing = [name[:3] for name, need in MIN_SAMPLES.items() if fewest < need]
    if not missing:
        return None
    needs = ", ".join(f"{name[:3]} at least {need}" for name, need in MIN_SAMPLES.items() if name[:3] in missing)
    return (
        f"{' and '.join(missing)} shown as —: too few successful calls per mode ({needs}; this run "
        f"had {fewest}). Raise 'calls per mode' to see them."
    )


# -- plot scale --------------------------------------------------------------------------------

#: How the latency axis behaves between runs: "keep" grows it when a run does not fit and never
#: shrinks it (so lowering the round trip shows shorter bars, not new tick labels); "lock" never
#: changes it (calls above it are marked at the top); "fit" fits every run on its own.
Y_AXIS_CHOICES = ("keep", "lock", "fit")


@dataclasses.dataclass(frozen=True)
class PlotScale:
    """The plot's axes: latency (ms, from 0) and connections opened (from 0)."""

    latency_ms: float
    connections: float

    @classmethod
    def fit(cls, *results: Comparison | None) -> PlotScale:
        """Round ceilings with some headroom above the slowest call and the most connections."""
        latencies = [c.total * 1e3 for r in results if r is not None for m in r for c in m.calls if c.ok]
        conns = [s.client_connections or 0 for r in results if r is not None for s in r.summary]
        return cls(nice_ceiling(max(latencies, default=0) * 1.1), nice_ceiling(max(conns, default=0) * 1.3))

    def grow(self, other: PlotScale) -> PlotScale:
        return PlotScale(max(self.latency_ms, other.latency_ms), max(self.connections, other.connections))


def nice_ceiling(x: float) -> float:
    """The smallest of 1, 1.5, 2, 3, 5, 7.5 times a power of ten that is >= x (at least 1)."""
    if not x > 1:
        return 1.0
    power = 10.0 ** math.floor(math.log10(x))
    for step in (1, 1.5, 2, 3, 5, 7.5, 10):
        if step * power >= x * (1 - 1e-12):
            return float(step * power)
    return 10.0 * power  # pragma: no cover (10 x power is always >= x)


def next_scale(current: PlotScale | None, policy: str, *results: Comparison | None) -> PlotScale:
    """The scale after a new result: see ``Y_AXIS_CHOICES``."""
    fitted = PlotScale.fit(*results)
    if current is None or policy == "fit":
        return fitted
    if policy == "lock":
        return current
    return current.grow(fitted)


# -- export ------------------------------------------------------------------------------------

CSV_FIELDS = (
    "mode",
    "index",
    "block",
    "start_ms",
    "total_ms",
    "ok",
    "status",
    "error",
    "reused",
    "queued_ms",
    "connect_ms",
    "tls_ms",
    "ttfb_ms",
    "connection_id",
)


def _ms_or_none(x: float | None) -> float | None:
    return None if x is None else round(x * 1e3, 3)


def calls_csv(result: Comparison) -> str:
    """Every call of ``result`` as CSV, one row per call; times in ms from the mode's first call."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for m in result:
        t0 = min((c.start for c in m.calls), default=0.0)
        for c in sorted(m.calls, key=lambda c: (c.start, c.index)):
            writer.writerow(
                {
                    "mode": m.mode,
                    "index": c.index,
                    "block": c.block,
                    "start_ms": round((c.start - t0) * 1e3, 3),
                    "total_ms": round(c.total * 1e3, 3),
                    "ok": c.ok,
                    "status": c.status,
                    "error": c.error,
                    "reused": c.reused,
                    "queued_ms": _ms_or_none(c.queued_s),
                    "connect_ms": _ms_or_none(c.connect_s),
                    "tls_ms": _ms_or_none(c.tls_s),
                    "ttfb_ms": _ms_or_none(c.ttfb_s),
                    "connection_id": c.connection_id,
                }
            )
    return out.getvalue()


def export_dict(result: Comparison, settings: LabSettings, pinned: Comparison | None = None) -> dict[str, Any]:
    """The measurement as plain data: settings, per-mode figures (percentiles only where the
    sample supports them), every call, and the pinned run's figures when one is pinned."""
    data = result.to_dict(calls=True)
    for s in result.summary:
        data["modes"][s.mode].update({k: v for k, v in supported(s).to_dict().items() if k in MIN_SAMPLES})
    data["lab"] = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings) if f.name != "config"}
    data["lab"]["modes"] = list(settings.modes)
    data["lab"]["config"] = {name: getattr(settings.config, name) for name in POOL_FIELDS}
    data["percentiles"] = {
        name[:3]: f"reported with at least {need} successful calls" for name, need in MIN_SAMPLES.items()
    }
    if pinned is not None:
        data["pinned"] = {s.mode: supported(s).to_dict() for s in pinned.summary}
    return data
