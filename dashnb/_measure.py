"""Measure what connection reuse saves: run modes side by side and compare them.

    >>> import dashnb
    >>> r = dashnb.compare(modes=("per_call", "shared"), calls=20)    # doctest: +SKIP
    >>> r                          # a table in a notebook, text elsewhere    # doctest: +SKIP
    >>> m = dashnb.measure("async", calls=200, concurrency=32)         # doctest: +SKIP
    >>> r = dashnb.compare(endpoint=emu, rtt_ms=170, ttfb_ms=700)     # an emulator, set for the run  # doctest: +SKIP
    >>> r = dashnb.compare(endpoint=emu, scenario="same_region")      # dashnb.SCENARIOS   # doctest: +SKIP

    $ python -m dashnb bench --rtt-ms 40 --calls 50 --json bench.json
    $ python -m dashnb bench --scenario europe_to_singapore

Modes (``dashnb._modes.registry``) differ only in the ``session=`` they pass to the SDK. They run
interleaved in rounds (A B C A B C ...) so that machine noise hits all of them alike, after a
warm-up on throwaway sessions that is not counted (imports, first TLS context); each mode's own
first connection *is* counted, since opening it is part of what that mode costs.

Against the emulator, each mode's connection count is cross-checked with the emulator's own
counters, read before and after each of its blocks: nothing else should use the same emulator
while a comparison runs.

``rtt_ms``, ``ttfb_ms`` and ``scenario`` set the emulator's round trip and server time for one
run and restore them afterwards. Without server time (the emulator's default) a comparison shows
the most reuse can save: a real call adds the model's own time, and the saving (a fixed number
of round trips per new connection) becomes a smaller share of each call (``dashnb.predict_reuse``).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from ._call import CallContext
from ._config.pool import PoolConfig
from ._endpoint import Endpoint, as_emulator
from ._endpoint import endpoint as default_endpoint
from ._modes.registry import DEFAULT_MODES, Mode, check_modes, mode_class
from ._results import Comparison, Interrupted, Measurement
from ._run import run
from ._scenarios import scenario as find_scenario
from ._session.manager import NotebookSession
from ._stats import CallTiming, summarize
from ._transport import build_aiohttp_session, build_requests_session

__all__ = ["compare", "measure"]

log = logging.getLogger(__name__)

# A progress bar by default only when the run is long enough for one to help.
_AUTO_PROGRESS_CALLS = 200

#: ``progress=``: None (a bar for long runs), True, False, or a callable(done, total).
ProgressArg = bool | Callable[[int, int], object] | None


@dataclass(frozen=True)
class _Plan:
    """One comparison as ``compare`` checked and completed it: what ``_compare`` runs."""

    modes: list[str]
    calls: int
    concurrency: int
    config: PoolConfig
    endpoint: Endpoint
    session: NotebookSession | None
    model: str
    prompt: str
    warmup: bool
    rounds: int | None
    progress: ProgressArg


class _Progress:
    """``progress``: None (a bar for long runs), True/False, or a callable(done, total)."""

    def __init__(self, progress: ProgressArg, total: int) -> None:
        self.total = total
        self.done = 0
        self._callback = progress if callable(progress) else None
        self._bar = None
        show = (total >= _AUTO_PROGRESS_CALLS) if progress is None else (progress is True)
        if show and self._callback is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, unit="call", desc="dashnb.compare", leave=False)

    def mode(self, name: str) -> None:
        if self._bar is not None:
            self._bar.set_description(f"dashnb.compare {name}", refresh=False)

    def __call__(self, _t: CallTiming) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.update(1)
        if self._callback is not None:
            self._callback(self.done, self.total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _server_counts(endpoint: Endpoint) -> dict[str, Any] | None:
    emu = as_emulator(endpoint)
    return None if emu is None else emu.stats()


_SERVER_KEYS = ("tcp_connections", "tls_handshakes", "requests")


def _blocks(calls: int, rounds: int) -> list[range]:
    """``calls`` indices split into ``rounds`` contiguous, nearly equal blocks."""
    edges = [round(calls * r / rounds) for r in range(rounds + 1)]
    return [range(a, b) for a, b in zip(edges, edges[1:]) if b > a]


def _auto_rounds(calls: int, concurrency: int, any_concurrent: bool) -> int:
    rounds = min(5, calls)
    if any_concurrent:  # a block smaller than the concurrency could never fill it
        rounds = min(rounds, max(1, calls // concurrency))
    return max(1, rounds)


def _default_config(concurrency: int) -> PoolConfig:
    n = max(32, concurrency)
    return PoolConfig(connection_pool_size=n, maximum_async_requests=n, maximum_async_requests_per_host=n)


def _warm_up(ctx: CallContext, sync: bool, aio: bool) -> None:
    """Calls on throwaway sessions, not counted: imports, code paths, first TLS context."""

    failures = []
    if sync:
        s = build_requests_session(ctx.config, ctx.endpoint)
        try:
            t = ctx.sync_call("warm-up", 0, -1, s)
        finally:
            s.close()
        if t.status is None:
            failures.append(t.error)
    if aio:

        async def one() -> CallTiming:
            s = build_aiohttp_session(ctx.config, ctx.endpoint)
            try:
                return await ctx.async_call("warm-up", 0, -1, s)
            finally:
                await s.close()

        t = run(one())
        if t.status is None:
            failures.append(t.error)
    if failures:
        raise RuntimeError(
            f"warm-up call to {ctx.endpoint.label} failed ({', '.join(map(str, failures))}); "
            f"is the endpoint reachable and its CA trusted?"
        )


def _emulated(endpoint: Endpoint, rtt_ms: float | None, ttfb_ms: float | None, scenario: str | None) -> dict[str, Any]:
    """The emulator options a run asks for (explicit values over the scenario's); refuses them
    for an endpoint that is not an emulator, whose network and server time are real."""
    changes: dict[str, Any] = {}
    if scenario is not None:
        sc = find_scenario(scenario)
        changes = {"rtt_ms": sc.rtt_ms, "ttfb_ms": sc.ttfb_ms}
    changes.update({k: v for k, v in (("rtt_ms", rtt_ms), ("ttfb_ms", ttfb_ms)) if v is not None})
    if changes and as_emulator(endpoint) is None:
        asked = (("scenario", scenario), ("rtt_ms", rtt_ms), ("ttfb_ms", ttfb_ms))
        given = ", ".join(name for name, value in asked if value is not None)
        raise ValueError(
            f"{given} set an emulator's round trip and server time, but "
            f"{endpoint.label!r} is not an emulator: the real service's network "
            f"and server time are what they are. Measure it without them, or pass "
            f"endpoint=dashnb.emulator.start(shared=False) to emulate them."
        )
    return changes


@contextlib.contextmanager
def _configured(endpoint: Endpoint, changes: dict[str, Any]) -> Iterator[None]:
    """The emulator configured with ``changes`` for the block, then as it was."""
    emu = as_emulator(endpoint)
    if not changes or emu is None:  # _emulated refuses changes for any other endpoint
        yield
        return
    before = {k: getattr(emu.options, k) for k in changes}
    emu.configure(**changes)  # validates: a bad value raises before anything runs
    log.debug("emulator %s configured for this run: %s", emu.label, changes)
    try:
        yield
    finally:
        emu.configure(**before)


def _settings(ctx: CallContext, modes: Sequence[str], calls: int, rounds: int) -> dict[str, Any]:
    ep = ctx.endpoint
    emu = as_emulator(ep)
    opts = emu.options if emu is not None else None
    try:
        sdk = version("dashscope")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        sdk = None
    cfg = ctx.config
    return {
        "endpoint": ep.label,
        "emulator": emu is not None,
        "rtt_ms": getattr(opts, "rtt_ms", None),
        "tls": getattr(opts, "tls", None),
        "ttfb_ms": getattr(opts, "ttfb_ms", None),
        "modes": list(modes),
        "calls": calls,
        "concurrency": ctx.concurrency,
        "rounds": rounds,
        "model": ctx.model,
        "config": repr(cfg),
        "connection_pool_size": cfg.connection_pool_size,
        "maximum_async_requests": cfg.maximum_async_requests,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "dashscope": sdk,
        "cpus": os.cpu_count(),
    }


def compare(
    modes: Iterable[str] = DEFAULT_MODES,
    *,
    calls: int = 30,
    concurrency: int = 8,
    config: PoolConfig | None = None,
    endpoint: Endpoint | None = None,
    session: NotebookSession | None = None,
    model: str = "qwen-plus",
    prompt: str = "Say hi.",
    warmup: bool = True,
    rounds: int | None = None,
    progress: ProgressArg = None,
    rtt_ms: float | None = None,
    ttfb_ms: float | None = None,
    scenario: str | None = None,
) -> Comparison:
    """Call the model ``calls`` times in each mode and return a ``Comparison``.

    - ``modes``: names from ``dashnb.MODES`` (default: the six of ``DEFAULT_MODES``).
    - ``concurrency``: threads (``threads``, ``sdk_threads``) or calls in flight (async modes).
    - ``config``: the PoolConfig of the dashnb sessions; default: the Java defaults, with the
      pool and async limits raised to ``concurrency`` if it is larger (so they do not queue).
    - ``endpoint``: default ``dashnb.endpoint()`` (the emulator unless DASHSCOPE_API_KEY is set).
    - ``session``: a ``dashnb.session()`` to use for shared/threads/async (left open, and its
      connections may already be warm); default: a private session per mode, closed at the end.
    - ``rounds``: interleaving rounds (default: up to 5, fewer when blocks would be smaller
      than ``concurrency``). ``progress``: None = a tqdm bar for runs of 200+ calls, True, False,
      or a callable ``(done, total)``.
    - ``rtt_ms``, ``ttfb_ms`` (server time before the first byte; the calls are not streamed,
      so that is all of it), ``scenario`` (a name from ``dashnb.SCENARIOS``: its rtt_ms and
      ttfb_ms, which explicit values override): an emulator endpoint is configured with them for
      this run and restored after it. ValueError for the real service.

    Ctrl-C (KeyboardInterrupt) or an exception from ``progress`` stops the run: no new calls
    start, calls in flight finish or are cancelled, private sessions are closed, the caller's
    session stays usable, and the exception propagates. A Ctrl-C propagates as ``Interrupted``
    (a KeyboardInterrupt) whose ``.partial`` is the Comparison of the calls that finished.
    An emulator endpoint stopped, or its CA file deleted, during the run: RuntimeError saying so.
    """
    modes = check_modes(modes)
    for name, value in (("calls", calls), ("concurrency", concurrency)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    if endpoint is None:
        endpoint = session.endpoint if session is not None else default_endpoint()
    if config is None:
        config = session.config if session is not None else _default_config(concurrency)
    changes = _emulated(endpoint, rtt_ms, ttfb_ms, scenario)
    plan = _Plan(modes, calls, concurrency, config, endpoint, session, model, prompt, warmup, rounds, progress)
    with _configured(endpoint, changes):
        result = _compare(plan)
    result.settings["scenario"] = scenario
    return result


def _compare(plan: _Plan) -> Comparison:
    modes, calls, concurrency, endpoint = plan.modes, plan.calls, plan.concurrency, plan.endpoint
    ctx = CallContext(
        endpoint, plan.config, model=plan.model, prompt=plan.prompt, concurrency=concurrency, session=plan.session
    )
    objs: dict[str, Mode] = {}
    try:
        for name in modes:
            objs[name] = mode_class(name)(ctx)
        skipped = {name: m.skip_reason() for name, m in objs.items()}
        active = [name for name in modes if skipped[name] is None]
        rounds = plan.rounds
        if rounds is None:
            rounds = _auto_rounds(calls, concurrency, any(objs[m].concurrent for m in active))
        blocks = _blocks(calls, max(1, min(rounds, calls)))
        settings = _settings(ctx, modes, calls, len(blocks))
        if plan.warmup and active:
            _warm_up(ctx, sync=any(not objs[m].is_async for m in active), aio=any(objs[m].is_async for m in active))
        records: dict[str, list[CallTiming]] = {m: [] for m in active}
        wall = dict.fromkeys(active, 0.0)
        client: dict[str, int | None] = dict.fromkeys(active, 0)
        server: dict[str, dict | None] = {m: dict.fromkeys(_SERVER_KEYS, 0) for m in active}
        bar = _Progress(plan.progress, calls * len(active))
        try:
            for b, block in enumerate(blocks):
                for name in active:
                    bar.mode(name)
                    _run_block(objs[name], block, b, bar, records[name], wall, client, server)
        except KeyboardInterrupt as exc:
            # What was measured is kept: the calls that finished, the blocks' counts so far.
            partial = Comparison(_measurements(modes, objs, skipped, records, wall, client, server), settings)
            partial.settings["interrupted"] = True
            raise Interrupted(partial) from exc
        finally:
            bar.close()
        results = _measurements(modes, objs, skipped, records, wall, client, server)
    except Exception:
        # A CA file deleted mid-run surfaces as a FileNotFoundError from whichever client built
        # its TLS context next: replace it with what happened and what to do.
        _check_endpoint(endpoint)
        raise
    finally:
        _close_modes(objs)
    return Comparison(results, settings)


def _measurements(
    modes: list[str],
    objs: dict[str, Mode],
    skipped: dict[str, str | None],
    records: dict[str, list[CallTiming]],
    wall: dict[str, float],
    client: dict[str, int | None],
    server: dict[str, dict | None],
) -> dict[str, Measurement]:
    results: dict[str, Measurement] = {}
    for name in modes:
        m = objs[name]
        if skipped[name] is not None:
            summary = summarize(name, [], wall_s=0.0, concurrency=m.concurrency, skipped=skipped[name])
        else:
            summary = summarize(
                name,
                records[name],
                wall_s=wall[name],
                concurrency=m.concurrency,
                client_connections=client[name],
                server=server[name],
            )
        results[name] = Measurement(name, records.get(name, ()), summary)
    return results


def _run_block(
    mode: Mode, block: range, b: int, bar: _Progress, records: list, wall: dict, client: dict, server: dict
) -> None:
    name = mode.name
    finished: list[CallTiming] = []

    def on_done(t: CallTiming) -> None:
        finished.append(t)  # what a block cut short still measured
        bar(t)

    _check_endpoint(mode.ctx.endpoint)
    mode.begin_block()
    try:
        c0, s0 = mode.client_connections(), _server_counts(mode.ctx.endpoint)
        t0 = time.perf_counter()
        try:
            if mode.is_async:
                out = run(mode.arun_block(block, b, on_done))
            else:
                out = mode.run_block(block, b, on_done)
        except KeyboardInterrupt:
            # Keep the calls that finished and, if they can still be read, the counts so far.
            records.extend(sorted(finished, key=lambda t: t.index))
            wall[name] += time.perf_counter() - t0
            try:
                c1, s1 = mode.client_connections(), _server_counts(mode.ctx.endpoint)
            except Exception:
                c1 = s1 = None
            _add_counts(name, client, server, c0, c1, s0, s1)
            raise
        t1 = time.perf_counter()
        c1, s1 = mode.client_connections(), _server_counts(mode.ctx.endpoint)
    finally:
        mode.end_block()
    records.extend(sorted(out, key=lambda t: t.index))
    wall[name] += t1 - t0
    _add_counts(name, client, server, c0, c1, s0, s1)
    log.debug("%s block %d: %d calls in %.3f s", name, b, len(out), t1 - t0)
    # A CA deleted mid-block fails that block's new connections quickly: say why, now.
    _check_endpoint(mode.ctx.endpoint)


def _add_counts(name: str, client: dict, server: dict, c0: Any, c1: Any, s0: Any, s1: Any) -> None:
    client[name] = None if c0 is None or c1 is None or client[name] is None else client[name] + c1 - c0
    if s0 is None or s1 is None:
        server[name] = None
    elif server[name] is not None:
        for k in _SERVER_KEYS:
            server[name][k] += s1[k] - s0[k]


def _check_endpoint(endpoint: Endpoint) -> None:
    """Stop the run with a clear error when its emulator stopped or its CA file was deleted:
    every call after that fails (or, waiting on a server that is gone, only times out)."""
    emu = as_emulator(endpoint)
    if emu is None:
        return
    if emu.stopped:
        raise RuntimeError(
            f"{emu.label} was stopped during the run (stop() or force=True elsewhere in this "
            "process); start a new one with dashnb.emulator.start() and run again"
        )
    ca = emu.ca_path
    if ca and emu.base_url.startswith("https:") and not os.path.isfile(ca):
        raise RuntimeError(
            f"the CA certificate of {emu.label} was deleted during the run ({ca} no longer "
            "exists, so no client can verify the emulator any more): something removed files from "
            "the temporary directory, such as a temp-file cleaner. Run again; if it recurs, set "
            "TMPDIR to a directory that no cleaner sweeps"
        )


def _close_modes(objs: dict[str, Mode]) -> None:
    aio = [m for m in objs.values() if m.is_async]
    if aio:

        async def close_all() -> None:
            for m in aio:
                with contextlib.suppress(Exception):
                    await m.aclose()

        with contextlib.suppress(Exception):
            run(close_all())
    for m in objs.values():
        try:
            m.close()
        except Exception:  # closing is best effort; the first error is what the caller needs
            log.debug("closing mode %s failed", m.name, exc_info=True)


def measure(mode: str = "shared", *, calls: int = 30, concurrency: int = 8, **kwargs: Any) -> Measurement:
    """One mode alone (``compare([mode], ...)[mode]``); same keyword arguments as ``compare``."""
    return compare([mode], calls=calls, concurrency=concurrency, **kwargs)[mode]
