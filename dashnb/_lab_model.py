"""The latency lab's model: settings, measurement on private emulators, the latest result.

    >>> from dashnb import LabModel
    >>> model = LabModel(rtt_ms=40, calls=5)    # no widgets, no emulator started yet
    >>> model
    LabModel(rtt 40 ms, TLS 1.3, modes per_call/shared/async)
    >>> result = await model.measure()          # the Comparison for these settings   # doctest: +SKIP
    >>> model.close()

``LabModel`` (traitlets, no widgets) holds the settings, ``measure()`` (async) and the latest
results; it owns private emulators and configures them live, and is testable in plain asyncio.
The panel (``dashnb._lab_view.LatencyLab``) is a thin view linked to its traits.

Why it never blocks the kernel: a change schedules ``measure()`` as a task on the running loop
(the kernel's, in Jupyter). The SDK calls themselves are blocking, so the task hands each
``dashnb.compare()`` to a worker thread and awaits it; the kernel keeps answering widget messages
meanwhile. A newer change cancels that task; the workers are told to stop at their next call
boundary (``compare()`` stops when its progress callback raises, closing its own sessions), and
the next measurement starts only when they have stopped, so two measurements never share an
emulator's counters.

Why it is quick: by default the modes run side by side, each against its own emulator with the
same settings (the SDK's own-session modes share one, since they share the SDK's globals), so a
change costs the time of the slowest mode: at the defaults (5 calls per mode, rtt 40 ms) about
0.65 s. ``side_by_side=False`` measures all modes interleaved on one emulator instead (as
``dashnb.compare`` does): slower, but fairer near rtt 0, where side by side competes for CPU.

The pool settings are the Java SDK's (``PoolConfig`` fields, validated by ``PoolConfig``);
``scenario`` picks a named starting point from ``LAB_SCENARIOS`` (slow network, TLS 1.2, pool
too small, long server time, then the assumed networks of ``dashnb.SCENARIOS``): the defaults
with the scenario's values on top; changing any of those by hand makes it "custom" again.
``reset()`` brings every setting back to its default.

What the panel shows is decided here too, so it is tested here: ``scale`` (the plot's axes,
kept between runs unless ``y_axis`` says "fit", see ``Y_AXIS_CHOICES``), ``pin()`` (a run kept
for before/after), ``summary`` and ``notes()`` (percentiles only where the sample supports
them, ``MIN_SAMPLES``), and the export of the latest run (``to_json``, ``to_csv``, ``to_png``,
``save``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import itertools
import json
import logging
import os
import pathlib
import threading
import time
from collections.abc import Sequence
from typing import Any

import traitlets
from traitlets import Bool, Enum, Float, HasTraits, Instance, Int, Unicode, observe, validate

from ._config import DEFAULT_POOL_CONFIG, PoolConfig
from ._lab_settings import (
    DEFAULT_LAB_MODES,
    LAB_SCENARIOS,
    POOL_FIELDS,
    SETTINGS,
    Y_AXIS_CHOICES,
    LabSettings,
    PlotScale,
    calls_csv,
    done_text,
    export_dict,
    lab_scenario,
    merge,
    next_scale,
    percentile_note,
    pool_config,
    supported,
)
from ._measure import compare
from ._modes import MODES, check_modes
from ._results import Comparison
from ._stats import ModeSummary
from .emulator._options import TLS_CHOICES

__all__ = ["DEFAULT_LAB_MODES", "LAB_SCENARIOS", "LabModel", "LabSettings"]

log = logging.getLogger(__name__)

_DEFAULTS = LabSettings()
_CUSTOM = "custom"


class _Stopped(Exception):
    """Raised from compare()'s progress callback: a newer measurement superseded this one."""


class LabModel(HasTraits):
    """Settings, measurement and results of the latency lab; no widgets involved.

    Set traits (``model.rtt_ms = 80``) and ``await model.measure()``, or set ``live = True`` and
    every change schedules a debounced measurement on the running loop (``schedule()``).
    ``await model.wait()`` returns the latest ``Comparison`` once nothing is pending.
    """

    rtt_ms = Float(_DEFAULTS.rtt_ms, help="emulated round trip, ms")
    ttfb_ms = Float(_DEFAULTS.ttfb_ms, help="emulated server time before the first byte, ms")
    tls = Enum(TLS_CHOICES, default_value=_DEFAULTS.tls, help="emulator TLS version, or off (plain HTTP)")
    scenario = Enum(
        (_CUSTOM, *LAB_SCENARIOS),
        default_value=_CUSTOM,
        help="a name from LAB_SCENARIOS (the lab's lessons and dashnb.SCENARIOS' assumed networks)",
    )
    # The Java SDK's settings under their PoolConfig names; PoolConfig validates them.
    connection_pool_size = Int(DEFAULT_POOL_CONFIG.connection_pool_size, help="Java connectionPoolSize")
    maximum_async_requests = Int(DEFAULT_POOL_CONFIG.maximum_async_requests, help="Java maximumAsyncRequests")
    maximum_async_requests_per_host = Int(
        DEFAULT_POOL_CONFIG.maximum_async_requests_per_host, help="Java maximumAsyncRequestsPerHost"
    )
    connect_timeout = Float(DEFAULT_POOL_CONFIG.connect_timeout, help="Java connectTimeout, seconds")
    read_timeout = Float(DEFAULT_POOL_CONFIG.read_timeout, help="Java readTimeout, seconds")
    connection_idle_timeout = Float(
        DEFAULT_POOL_CONFIG.connection_idle_timeout, help="Java connectionIdleTimeout, seconds"
    )
    concurrency = Int(_DEFAULTS.concurrency, help="threads / async calls in flight (concurrent modes)")
    calls = Int(_DEFAULTS.calls, help="measured calls per mode")
    modes = traitlets.Tuple(default_value=_DEFAULTS.modes, help="names from dashnb.MODES")
    side_by_side = Bool(_DEFAULTS.side_by_side, help="each mode on its own emulator, in parallel")

    # How the plot looks; changing these redraws, it never re-measures.
    y_axis = Enum(Y_AXIS_CHOICES, default_value="keep", help="keep (grow only), lock, or fit every run")
    scale = Instance(PlotScale, allow_none=True, help="the plot's axes for the latest result")
    pinned = Instance(Comparison, allow_none=True, help="a run kept for before/after (ghost marks)")
    pinned_settings = Instance(LabSettings, allow_none=True, help="the settings `pinned` was measured with")

    live = Bool(False, help="re-measure (debounced) on every settings change")
    debounce_s = Float(0.05, help="quiet time after a change before measuring")

    # What the view shows. Set on the loop's thread only.
    status = Unicode("not measured yet")
    error = Unicode("", help="the last measurement's failure, '' when it succeeded")
    measuring = Bool(False)
    progress = traitlets.Tuple((0, 0), help="(calls done, calls planned) of the running measurement")
    result = Instance(Comparison, allow_none=True)
    measured = Instance(LabSettings, allow_none=True, help="the settings `result` was measured with")
    problems: traitlets.List[str] = traitlets.List(help="PoolConfig constraints the measured settings break")
    duration_s = Float(None, allow_none=True, help="wall time of the last finished measurement")
    measurements = Int(0, help="finished measurements")
    cancelled = Int(0, help="measurements cancelled by a newer one")

    def __init__(self, **settings: Any) -> None:
        unknown = set(settings) - set(SETTINGS) - {"live", "debounce_s", "scenario", "config"}
        if unknown:
            raise TypeError(
                f"unknown lab setting(s) {', '.join(sorted(unknown))}; choose from "
                f"{', '.join(SETTINGS)}, scenario, config"
            )
        self._emulators: list[Any] = []
        self._emu_lock = threading.Lock()
        # One worker per possible group; threads keep their dashnb.run() loops between runs.
        self._pool = concurrent.futures.ThreadPoolExecutor(len(MODES), thread_name_prefix="dashnb-lab")
        self._futures: list[concurrent.futures.Future] = []
        self._stop: threading.Event | None = None
        self._generation = 0
        self._task: asyncio.Task | None = None  # the scheduled (debounced) measurement
        self._measure_task: asyncio.Task | None = None  # the task inside measure()
        self._warmed = False
        self._closed = False
        config = settings.pop("config", None)
        if config is not None:
            if set(POOL_FIELDS) & set(settings):
                raise TypeError("pass either config= or the pool settings one by one, not both")
            if not isinstance(config, PoolConfig):
                raise TypeError(f"config must be a dashnb.PoolConfig, got {type(config).__name__}")
            settings.update({name: getattr(config, name) for name in POOL_FIELDS})
        if settings.get("scenario") not in (None, _CUSTOM):
            fixed = lab_scenario(settings["scenario"]).settings()
            # Values given explicitly win over the scenario's; then it is "custom".
            settings = {**fixed, **settings}
            if any(settings[name] != value for name, value in fixed.items()):
                settings["scenario"] = _CUSTOM
        super().__init__(**settings)

    # -- validation ------------------------------------------------------------------------

    @validate("rtt_ms", "ttfb_ms")
    def _check_ms(self, proposal):
        value = proposal["value"]
        if not 0 <= value <= 10_000:
            raise traitlets.TraitError(f"{proposal['trait'].name} must be between 0 and 10000 ms, got {value!r}")
        return value

    @validate("concurrency", "calls")
    def _check_count(self, proposal):
        value = proposal["value"]
        if value < 1:
            raise traitlets.TraitError(f"{proposal['trait'].name} must be at least 1, got {value!r}")
        return value

    @validate(*POOL_FIELDS)
    def _check_pool(self, proposal):
        name = proposal["trait"].name
        try:
            checked = pool_config(**{**self._pool_values(), name: proposal["value"]})
        except ValueError as exc:  # PoolConfig's own message: what is wrong and what to set
            raise traitlets.TraitError(str(exc)) from None
        return getattr(checked, name)

    @validate("modes")
    def _check_modes(self, proposal):
        modes = tuple(proposal["value"])
        try:
            return tuple(check_modes(modes)) if modes else ()
        except ValueError as exc:
            raise traitlets.TraitError(str(exc)) from None

    # -- settings --------------------------------------------------------------------------

    def _pool_values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in POOL_FIELDS}

    @property
    def config(self) -> PoolConfig:
        """The pool settings as a PoolConfig (what the measured sessions are built from)."""
        return pool_config(**self._pool_values())

    @config.setter
    def config(self, value: PoolConfig) -> None:
        if not isinstance(value, PoolConfig):
            raise traitlets.TraitError(f"config must be a dashnb.PoolConfig, got {type(value).__name__}")
        with self.hold_trait_notifications():  # one change (one re-measurement) for all fields
            for name in POOL_FIELDS:
                setattr(self, name, getattr(value, name))

    def settings(self) -> LabSettings:
        plain = {f.name: getattr(self, f.name) for f in dataclasses.fields(LabSettings) if f.name != "config"}
        return LabSettings(**plain, config=self.config)

    def __repr__(self) -> str:
        return f"LabModel({self.settings().label})"

    @observe("scenario")
    def _apply_scenario(self, change) -> None:
        preset = LAB_SCENARIOS.get(change["new"])
        if preset is not None:
            self._set_all(preset.settings())

    def _set_all(self, values: dict[str, Any]) -> None:
        # One notification burst (one re-measurement); the pool fields go in as one PoolConfig so
        # that no half-changed combination is validated on the way.
        pool = {name: values.pop(name) for name in POOL_FIELDS if name in values}
        with self.hold_trait_notifications():
            if pool:
                self.config = pool_config(**{**self._pool_values(), **pool})
            for name, value in values.items():
                setattr(self, name, value)

    @observe(*SETTINGS)
    def _leave_scenario(self, _change) -> None:
        preset = LAB_SCENARIOS.get(self.scenario)
        if preset is not None and any(getattr(self, k) != v for k, v in preset.settings().items()):
            self.scenario = _CUSTOM

    @property
    def scenario_description(self) -> str:
        """What the chosen scenario shows ('' for custom settings)."""
        preset = LAB_SCENARIOS.get(self.scenario)
        return preset.description if preset is not None else ""

    def reset(self) -> None:
        """Every setting back to its default (one re-measurement when live); the plot's axis
        fits the next run again. A pinned run stays pinned (unpin() removes it)."""
        defaults = LabSettings()
        values: dict[str, Any] = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults)}
        values.update({name: getattr(defaults.config, name) for name in POOL_FIELDS})
        del values["config"]
        with self.hold_trait_notifications():
            self.scenario = _CUSTOM
            self._set_all(values)
            self.y_axis = "keep"
            self.scale = None

    @observe(*SETTINGS)
    def _settings_changed(self, change) -> None:
        if not self.live:
            return
        try:
            self.schedule()
        except RuntimeError:  # no running loop (a plain script): say how to measure instead
            self.status = "settings changed; no event loop is running, so call `await model.measure()`"

    # -- scheduling ------------------------------------------------------------------------

    def schedule(self, delay: float | None = None) -> asyncio.Task:
        """Measure after ``delay`` (default ``debounce_s``) seconds of quiet, as a task on the
        running loop; a pending or running scheduled measurement is cancelled first.
        Never blocks; raises RuntimeError outside a running loop."""
        loop = asyncio.get_running_loop()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = loop.create_task(self._debounced(self.debounce_s if delay is None else delay))
        self._task.add_done_callback(_log_failure)
        return self._task

    async def _debounced(self, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        await self.measure()

    async def wait(self) -> Comparison | None:
        """Wait until no measurement is pending or running; the latest result (or None)."""
        while True:
            pending = [t for t in (self._task, self._measure_task) if t is not None and not t.done()]
            if not pending:
                return self.result
            # asyncio.wait, unlike awaiting the task, neither raises when that task is
            # cancelled by a newer change nor cancels it when we are cancelled.
            await asyncio.wait(pending)

    # -- measuring -------------------------------------------------------------------------

    async def measure(self) -> Comparison | None:
        """Measure with the current settings; store and return the Comparison.

        Cancels any measurement still running (its task gets CancelledError). Failures do not
        raise: they go to ``error`` / ``status`` and the result stays the previous one (None is
        returned). Raises asyncio.CancelledError when a newer measurement cancels this one.
        """
        if self._closed:
            raise RuntimeError("this LabModel is closed")
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        old = self._measure_task
        if old is not None and old is not me and not old.done():
            old.cancel()
        self._measure_task = me
        self._generation += 1
        gen = self._generation
        if self._stop is not None:
            self._stop.set()  # at once, not when the old task next runs
        settings = self.settings()
        try:
            return await self._measure(loop, gen, settings)
        except asyncio.CancelledError:
            self.cancelled += 1
            if gen == self._generation:
                self.status = "cancelled"
            raise
        finally:
            if gen == self._generation:
                self.measuring = False
            if self._measure_task is me:
                self._measure_task = None

    async def _measure(self, loop, gen: int, settings: LabSettings) -> Comparison | None:
        self.measuring = True
        self.status = f"measuring... ({settings.label})"
        # The previous measurement's workers stop at their next call boundary; wait for them
        # so that they never overlap with ours on an emulator.
        if self._futures:
            await asyncio.wait([asyncio.wrap_future(f) for f in self._futures])
        groups = settings.groups()
        if not groups:
            self.status = "choose at least one mode"
            return None
        stop = self._stop = threading.Event()
        total = settings.calls * len(settings.modes)
        self.progress = (0, total)
        counter, counter_lock = itertools.count(1), threading.Lock()  # shared by the workers

        def tick(done: int) -> None:
            if gen == self._generation and self.measuring:
                self.progress = (done, total)
                self.status = f"measuring... {done}/{total} calls ({settings.label})"

        def progress(_done: int, _total: int) -> None:  # in a worker thread
            if stop.is_set():
                raise _Stopped()
            with counter_lock:
                done = next(counter)
            if not loop.is_closed():
                loop.call_soon_threadsafe(tick, done)

        warm = not self._warmed
        started = time.perf_counter()
        self._futures = [
            self._pool.submit(self._run_group, i, modes, settings, warm, progress, stop)
            for i, modes in enumerate(groups)
        ]
        try:
            comparisons = await asyncio.gather(*(asyncio.wrap_future(f) for f in self._futures))
        except asyncio.CancelledError:
            stop.set()
            raise
        except Exception as exc:  # shown in the panel; the previous result stays
            stop.set()
            self.error = f"{type(exc).__name__}: {exc}"
            self.status = f"error: {self.error}"
            log.debug("lab measurement failed", exc_info=True)
            return None
        self._warmed = True
        self.duration_s = duration = time.perf_counter() - started
        result = merge(comparisons, settings)
        self.error = ""
        self.problems = settings.problems
        self.measured = settings
        # Together: a view redrawing on either sees the new result on its new scale.
        with self.hold_trait_notifications():
            self.scale = next_scale(self.scale, self.y_axis, result, self.pinned)
            self.result = result
        self.measurements += 1
        self.status = done_text(result, duration)
        return result

    def _emulator(self, i: int, settings: LabSettings):
        from . import emulator

        with self._emu_lock:
            while len(self._emulators) <= i:
                # Private (shared=False): the lab reconfigures it on every change and reads its
                # counters, so no other start() call may hand it out.
                self._emulators.append(emulator.start(shared=False, **settings.emulator_options()))
            return self._emulators[i]

    def _run_group(
        self,
        i: int,
        modes: Sequence[str],
        settings: LabSettings,
        warm: bool,
        progress: Any,
        stop: threading.Event,
    ) -> Comparison:
        if stop.is_set():
            raise _Stopped()
        emu = self._emulator(i, settings)
        emu.configure(**settings.emulator_options())
        if warm:
            # compare()'s own warm-up would use the lab's settings, and a read timeout set below
            # the round trip would then fail it: warm up (imports, first TLS context, each mode's
            # code path) with the default config, and count nothing of it.
            compare(
                modes, calls=1, concurrency=1, endpoint=emu, warmup=True, progress=lambda _done, _total: _check(stop)
            )
        return compare(
            modes,
            calls=settings.calls,
            concurrency=settings.concurrency,
            config=settings.config,
            endpoint=emu,
            warmup=False,
            progress=progress,
        )

    @property
    def emulators(self) -> list[Any]:
        """The private emulators this model started (one per group of modes measured side by side)."""
        return list(self._emulators)

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
        from ._plot import lab_figure_png

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
            target.write_bytes(self.to_png())
        elif target.suffix in writers:
            target.write_text(writers[target.suffix](), encoding="utf-8")
        else:
            raise ValueError(f"save() writes .json, .csv or .png, not {target.suffix or 'no suffix'!r}")
        return target

    # -- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        """Cancel what runs, stop the workers and this model's emulators."""
        if self._closed:
            return
        self._closed = True
        self.live = False
        try:
            current = asyncio.current_task()
        except RuntimeError:  # no running loop
            current = None
        for task in (self._task, self._measure_task):
            if task is not None and task is not current and not task.done():
                task.cancel()
        if self._stop is not None:
            self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        for emu in self._emulators:
            emu.stop()


def _count(x: int | None) -> str:
    return "?" if x is None else str(x)


def _check(stop: threading.Event) -> None:
    if stop.is_set():
        raise _Stopped()


def _log_failure(task: asyncio.Task) -> None:
    # measure() reports its own failures; anything else would otherwise vanish unretrieved.
    if not task.cancelled() and task.exception() is not None:
        log.error("latency lab task failed", exc_info=task.exception())
