"""The latency lab's model: settings, measurement on private emulators, the latest result.

    >>> from dashnb import LabModel
    >>> model = LabModel(rtt_ms=40, calls=5)    # no widgets, no emulator started yet
    >>> model
    LabModel(rtt 40 ms, TLS 1.3, modes per_call/shared/async)
    >>> result = await model.measure()          # the Comparison for these settings   # doctest: +SKIP
    >>> model.close()

``LabModel`` (traitlets, no widgets) holds the settings, ``measure()`` (async) and the latest
results; it owns private emulators and configures them live, and is testable in plain asyncio.
The panel (``dashnb._lab.view.LatencyLab``) is a thin view linked to its traits.

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

The settings are traits of ``LabInputs`` (``dashnb._lab.inputs``: validated by ``PoolConfig``,
named starting points in ``scenario``), the latest result, its plot axes, a pinned run and the
export are ``LabResults`` (``dashnb._lab.results``); ``LabModel`` joins the two and measures.
``reset()`` brings every setting back to its default.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import itertools
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import traitlets
from traitlets import Bool, Float, Int, Unicode, observe

from .. import emulator
from .._config.pool import PoolConfig
from .._measure import compare
from .._modes.registry import MODES
from .._results import Comparison
from .inputs import CUSTOM, LabInputs
from .results import LabResults
from .settings import (
    DEFAULT_LAB_MODES,
    LAB_SCENARIOS,
    POOL_FIELDS,
    SETTINGS,
    LabSettings,
    done_text,
    lab_scenario,
    merge,
    next_scale,
)

__all__ = ["DEFAULT_LAB_MODES", "LAB_SCENARIOS", "LabModel", "LabSettings"]

log = logging.getLogger(__name__)


class _Stopped(Exception):
    """Raised from compare()'s progress callback: a newer measurement superseded this one."""


class LabModel(LabInputs, LabResults):
    """Settings, measurement and results of the latency lab; no widgets involved.

    Set traits (``model.rtt_ms = 80``) and ``await model.measure()``, or set ``live = True`` and
    every change schedules a debounced measurement on the running loop (``schedule()``).
    ``await model.wait()`` returns the latest ``Comparison`` once nothing is pending.
    """

    live = Bool(False, help="re-measure (debounced) on every settings change")
    debounce_s = Float(0.05, help="quiet time after a change before measuring")

    # What the view shows. Set on the loop's thread only.
    status = Unicode("not measured yet")
    error = Unicode("", help="the last measurement's failure, '' when it succeeded")
    measuring = Bool(False)
    progress = traitlets.Tuple((0, 0), help="(calls done, calls planned) of the running measurement")
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
        if settings.get("scenario") not in (None, CUSTOM):
            fixed = lab_scenario(settings["scenario"]).settings()
            # Values given explicitly win over the scenario's; then it is "custom".
            settings = {**fixed, **settings}
            if any(settings[name] != value for name, value in fixed.items()):
                settings["scenario"] = CUSTOM
        super().__init__(**settings)

    def __repr__(self) -> str:
        return f"LabModel({self.settings().label})"

    def reset(self) -> None:
        """Every setting back to its default (one re-measurement when live); the plot's axis
        fits the next run again. A pinned run stays pinned (unpin() removes it)."""
        defaults = LabSettings()
        values: dict[str, Any] = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults)}
        values.update({name: getattr(defaults.config, name) for name in POOL_FIELDS})
        del values["config"]
        with self.hold_trait_notifications():
            self.scenario = CUSTOM
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


def _check(stop: threading.Event) -> None:
    if stop.is_set():
        raise _Stopped()


def _log_failure(task: asyncio.Task) -> None:
    # measure() reports its own failures; anything else would otherwise vanish unretrieved.
    if not task.cancelled() and task.exception() is not None:
        log.error("latency lab task failed", exc_info=task.exception())
