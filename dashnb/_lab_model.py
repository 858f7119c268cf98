"""The latency lab's model: settings, measurement on private emulators, the latest result.

    >>> import dashnb
    >>> lab = dashnb.lab(rtt_ms=40)         # doctest: +SKIP
    >>> lab                                 # the panel (a VBox); text elsewhere   # doctest: +SKIP
    LatencyLab(rtt 40 ms, TLS 1.3, modes per_call/shared/async)
    >>> lab.model.rtt_ms = 80               # what moving the slider does          # doctest: +SKIP
    >>> result = await lab.model.wait()     # the Comparison for the current settings  # doctest: +SKIP
    >>> result["per_call"].summary.p50_ms   # doctest: +SKIP

Two layers, as in the ipywidgets tutorials:

- ``LabModel`` (traitlets, no widgets): the settings, ``measure()`` (async) and the latest
  results. It owns private emulators and configures them live. Testable in plain asyncio.
- ``LatencyLab`` (an ``ipywidgets.VBox``): controls linked to the model's traits, a status line,
  a plot (an ``Output`` widget filled through its model, so nbval strict mode and every front
  end see the same thing) and a summary table.

Why it never blocks the kernel: a change schedules ``measure()`` as a task on the running loop
(the kernel's, in Jupyter). The SDK calls themselves are blocking, so the task hands each
``dashnb.compare()`` to a worker thread and awaits it; the kernel keeps answering widget messages
meanwhile. A newer change cancels that task; the workers are told to stop at their next call
boundary (``compare()`` stops when its progress callback raises, closing its own sessions), and
the next measurement starts only when they have stopped, so two measurements never share an
emulator's counters.

Why it is quick: by default the modes run side by side, each against its own emulator with the
same settings (the SDK's own-session modes share one, since they share the SDK's globals), so a
change costs the time of the slowest mode rather than the sum. At the default 5 calls per mode,
rtt 40 ms, that is the 5 sequential new-connection calls of ``per_call``: about 0.65 s, so a
slider move shows a new plot in about a second. Side by
side adds a little CPU contention, visible only near rtt 0; ``side_by_side=False`` measures all
modes interleaved on one emulator instead (as ``dashnb.compare`` does), slower but fairer there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import threading
import time
import warnings
from collections.abc import Sequence
from typing import Any

import traitlets
from traitlets import Bool, Enum, Float, HasTraits, Instance, Int, Unicode, observe, validate

from ._config import JAVA_DEFAULTS
from ._measure import compare
from ._modes import MODES, check_modes, mode_class
from ._results import Comparison
from .emulator._options import TLS_CHOICES

__all__ = ["DEFAULT_LAB_MODES", "LabModel", "LabSettings"]

log = logging.getLogger(__name__)

DEFAULT_LAB_MODES = ("per_call", "shared", "async")

# The settings a change of which re-measures (the order of the panel's controls).
SETTINGS = (
    "rtt_ms",
    "tls",
    "connection_pool_size",
    "limit_per_host",
    "connect_timeout",
    "read_timeout",
    "idle_timeout",
    "concurrency",
    "calls",
    "modes",
    "side_by_side",
)


class _Stopped(Exception):
    """Raised from compare()'s progress callback: a newer measurement superseded this one."""


@dataclasses.dataclass(frozen=True)
class LabSettings:
    """A snapshot of the lab's settings: what one measurement ran with."""

    rtt_ms: float = 40.0
    tls: str = "1.3"
    # The pool starts where the Java SDK does.
    connection_pool_size: int = int(JAVA_DEFAULTS["connection_pool_size"])
    limit_per_host: int = int(JAVA_DEFAULTS["maximum_async_requests_per_host"])
    connect_timeout: float = JAVA_DEFAULTS["connect_timeout"]
    read_timeout: float = JAVA_DEFAULTS["read_timeout"]
    idle_timeout: float = JAVA_DEFAULTS["connection_idle_timeout"]
    concurrency: int = 2
    calls: int = 5
    modes: tuple[str, ...] = DEFAULT_LAB_MODES
    side_by_side: bool = True

    def pool_config(self):
        """(PoolConfig, constraint problems). ``connection_pool_size`` is Java's
        connectionPoolSize (idle connections kept: requests' pool_maxsize, the aiohttp
        connector's idle cap) and also its maximumAsyncRequests, as the Java docs advise (aiohttp's
        ``limit``); ``limit_per_host`` is Java's maximumAsyncRequestsPerHost."""
        from ._config import PoolConfig, PoolConfigWarning

        with warnings.catch_warnings():
            # Breaking a constraint is something the lab lets you try; it is reported in the
            # panel (constraint_problems) rather than as a warning in the kernel log.
            warnings.simplefilter("ignore", PoolConfigWarning)
            cfg = PoolConfig(
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
                connection_idle_timeout=self.idle_timeout,
                connection_pool_size=self.connection_pool_size,
                maximum_async_requests=self.connection_pool_size,
                maximum_async_requests_per_host=self.limit_per_host,
            )
        return cfg, cfg.constraint_problems()

    def groups(self) -> list[list[str]]:
        """Modes measured together on one emulator: all of them, or one group per mode side
        by side (the sdk_* modes share the SDK's module-level sessions, so they stay together)."""
        if not self.side_by_side:
            return [list(self.modes)] if self.modes else []
        sdk = [m for m in self.modes if mode_class(m).sdk_session]
        return [[m] for m in self.modes if not mode_class(m).sdk_session] + ([sdk] if sdk else [])

    @property
    def label(self) -> str:
        tls = "no TLS" if self.tls == "off" else f"TLS {self.tls}"
        modes = "/".join(self.modes) if self.modes else "none"
        return f"rtt {self.rtt_ms:g} ms, {tls}, modes {modes}"


_DEFAULTS = LabSettings()


class LabModel(HasTraits):
    """Settings, measurement and results of the latency lab; no widgets involved.

    Set traits (``model.rtt_ms = 80``) and ``await model.measure()``, or set ``live = True`` and
    every change schedules a debounced measurement on the running loop (``schedule()``).
    ``await model.wait()`` returns the latest ``Comparison`` once nothing is pending.
    """

    rtt_ms = Float(_DEFAULTS.rtt_ms, help="emulated round trip, ms")
    tls = Enum(TLS_CHOICES, default_value=_DEFAULTS.tls, help="emulator TLS version, or off (plain HTTP)")
    connection_pool_size = Int(
        _DEFAULTS.connection_pool_size,
        help="Java connectionPoolSize and maximumAsyncRequests (pool_maxsize, aiohttp limit)",
    )
    limit_per_host = Int(_DEFAULTS.limit_per_host, help="Java maximumAsyncRequestsPerHost = aiohttp limit_per_host")
    connect_timeout = Float(_DEFAULTS.connect_timeout, help="seconds")
    read_timeout = Float(_DEFAULTS.read_timeout, help="seconds")
    idle_timeout = Float(_DEFAULTS.idle_timeout, help="connection_idle_timeout, seconds")
    concurrency = Int(_DEFAULTS.concurrency, help="threads / async calls in flight (concurrent modes)")
    calls = Int(_DEFAULTS.calls, help="measured calls per mode")
    modes = traitlets.Tuple(default_value=_DEFAULTS.modes, help="names from dashnb.MODES")
    side_by_side = Bool(_DEFAULTS.side_by_side, help="each mode on its own emulator, in parallel")

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
        unknown = set(settings) - set(SETTINGS) - {"live", "debounce_s"}
        if unknown:
            raise TypeError(f"unknown lab setting(s) {', '.join(sorted(unknown))}; choose from {', '.join(SETTINGS)}")
        super().__init__(**settings)
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

    # -- validation ------------------------------------------------------------------------

    @validate("rtt_ms")
    def _check_rtt(self, proposal):
        value = proposal["value"]
        if not 0 <= value <= 10_000:
            raise traitlets.TraitError(f"rtt_ms must be between 0 and 10000 ms, got {value!r}")
        return value

    @validate("connection_pool_size", "limit_per_host", "concurrency", "calls")
    def _check_count(self, proposal):
        value = proposal["value"]
        if value < 1:
            raise traitlets.TraitError(f"{proposal['trait'].name} must be at least 1, got {value!r}")
        return value

    @validate("connect_timeout", "read_timeout", "idle_timeout")
    def _check_timeout(self, proposal):
        value = proposal["value"]
        if not 0.001 <= value <= 2_147_483:
            raise traitlets.TraitError(
                f"{proposal['trait'].name} must be between 0.001 and 2147483 seconds, got {value!r}"
            )
        return value

    @validate("modes")
    def _check_modes(self, proposal):
        modes = tuple(proposal["value"])
        try:
            return tuple(check_modes(modes)) if modes else ()
        except ValueError as exc:
            raise traitlets.TraitError(str(exc)) from None

    # -- settings --------------------------------------------------------------------------

    def settings(self) -> LabSettings:
        return LabSettings(**{name: getattr(self, name) for name in SETTINGS})

    def __repr__(self) -> str:
        return f"LabModel({self.settings().label})"

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
        config, problems = settings.pool_config()
        stop = self._stop = threading.Event()
        total = settings.calls * len(settings.modes)
        self.progress = (0, total)
        counter = _Counter()

        def tick(done: int) -> None:
            if gen == self._generation and self.measuring:
                self.progress = (done, total)
                self.status = f"measuring... {done}/{total} calls ({settings.label})"

        def progress(_done: int, _total: int) -> None:  # in a worker thread
            if stop.is_set():
                raise _Stopped()
            done = counter.add()
            if not loop.is_closed():
                loop.call_soon_threadsafe(tick, done)

        warm = not self._warmed
        started = time.perf_counter()
        self._futures = [
            self._pool.submit(self._run_group, i, modes, settings, config, warm, progress, stop)
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
        result = _merge(comparisons, settings)
        self.error = ""
        self.problems = problems
        self.measured = settings
        self.result = result
        self.measurements += 1
        self.status = _done_text(result, duration)
        return result

    def _emulator(self, i: int, settings: LabSettings):
        from . import emulator

        with self._emu_lock:
            while len(self._emulators) <= i:
                # Private (shared=False): the lab reconfigures it on every change and reads its
                # counters, so no other start() call may hand it out.
                self._emulators.append(emulator.start(rtt_ms=settings.rtt_ms, tls=settings.tls, shared=False))
            return self._emulators[i]

    def _run_group(
        self,
        i: int,
        modes: Sequence[str],
        settings: LabSettings,
        config: Any,
        warm: bool,
        progress: Any,
        stop: threading.Event,
    ) -> Comparison:
        if stop.is_set():
            raise _Stopped()
        emu = self._emulator(i, settings)
        emu.configure(rtt_ms=settings.rtt_ms, tls=settings.tls)
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
            config=config,
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


class _Counter:
    def __init__(self) -> None:
        self._n = 0
        self._lock = threading.Lock()

    def add(self) -> int:
        with self._lock:
            self._n += 1
            return self._n


def _log_failure(task: asyncio.Task) -> None:
    # measure() reports its own failures; anything else would otherwise vanish unretrieved.
    if not task.cancelled() and task.exception() is not None:
        log.error("latency lab task failed", exc_info=task.exception())


def _merge(comparisons: Sequence[Comparison], settings: LabSettings) -> Comparison:
    measurements = {}
    for c in comparisons:
        measurements.update(c.measurements)
    ordered = {m: measurements[m] for m in settings.modes if m in measurements}
    merged = dict(comparisons[0].settings)
    if len(comparisons) > 1:
        merged["endpoint"] = (
            f"{len(comparisons)} emulators side by side "
            f"({'no TLS' if settings.tls == 'off' else 'TLS ' + settings.tls}, "
            f"rtt {settings.rtt_ms:g} ms)"
        )
    merged.update(modes=list(settings.modes), side_by_side=settings.side_by_side, lab=dataclasses.asdict(settings))
    return Comparison(ordered, merged)


def _done_text(result: Comparison, seconds: float) -> str:
    text = f"done in {seconds:.1f} s"
    failed = [(s.mode, s.errors, s.calls) for s in result.summary if s.errors]
    if failed:
        codes = sorted({c.error for m in result for c in m.calls if c.error})
        text += "; failed calls: " + ", ".join(f"{m} {e}/{n}" for m, e, n in failed)
        text += f" ({', '.join(codes)})"
    return text
