"""Measure what connection reuse saves: per-call timings, modes side by side, a benchmark CLI.

    >>> import dashnb
    >>> r = dashnb.compare(modes=("per_call", "shared"), calls=20)    # doctest: +SKIP
    >>> r                          # a table in a notebook, text elsewhere    # doctest: +SKIP
    >>> r.ratio("per_call", "shared")                                  # doctest: +SKIP
    3.0
    >>> r.plot()                   # latency distribution + per-call timeline  # doctest: +SKIP
    >>> m = dashnb.measure("async", calls=200, concurrency=32)         # doctest: +SKIP

    $ python -m dashnb bench --rtt-ms 40 --calls 50 --json bench.json

Every call goes through the official SDK (``Generation.call`` / ``AioGeneration.call``); modes
differ only in the ``session=`` they pass. Modes run interleaved in rounds (A B C A B C ...) so
that machine noise hits all of them alike, after a warm-up on throwaway sessions that is not
counted (imports, first TLS context); each mode's own first connection *is* counted, since
opening it is part of what that mode costs.

Against the emulator, each mode's connection count is cross-checked with the emulator's own
counters, read before and after each of its blocks: nothing else should use the same emulator
while a comparison runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from . import _observe
from ._stats import CallTiming, ModeSummary, format_table, html_table, summarize

__all__ = ["Comparison", "MODES", "Measurement", "add_bench_parser", "compare", "measure"]

log = logging.getLogger(__name__)

MODES: dict[str, str] = {
    "per_call": "a new requests.Session per call, closed after (no reuse: the baseline)",
    "sdk_default": "no session=: the SDK's own shared requests.Session",
    "shared": "one dashnb-configured requests.Session for every call",
    "threads": "one dashnb requests.Session used from N threads",
    "async": "one dashnb aiohttp.ClientSession, at most N calls in flight",
    "async_per_call": "a new aiohttp.ClientSession per call, at most N in flight",
    "sdk_threads": "no session=, from N threads: the SDK's shared requests.Session (10 pooled connections)",
    "sdk_async": "no session=, async: the SDK's shared aiohttp session (trusts certifi's CAs only)",
}
DEFAULT_MODES = ("per_call", "sdk_default", "shared", "threads", "async", "async_per_call")
_CONCURRENT = {"threads", "async", "async_per_call", "sdk_threads", "sdk_async"}
_ASYNC = {"async", "async_per_call", "sdk_async"}
_SDK_SYNC = {"sdk_default", "sdk_threads"}

# A progress bar by default only when the run is long enough for one to help.
_AUTO_PROGRESS_CALLS = 200


# ---------------------------------------------------------------------------------------------
# one call
# ---------------------------------------------------------------------------------------------


def _outcome(resp: Any) -> tuple[int | None, str | None]:
    """(status, error) of an SDK response: the SDK returns HTTP errors instead of raising."""
    status = getattr(resp, "status_code", None)
    if status == 200:
        return status, None
    code = getattr(resp, "code", None)
    return status, (code or f"HTTP {status}")


def _timing(
    mode: str,
    index: int,
    block: int,
    start: float,
    end: float,
    status: int | None,
    error: str | None,
    sample: _observe.CallSample,
    reused: bool | None = None,
) -> CallTiming:
    if sample.path is None:  # not an instrumented session: only what the caller could see
        return CallTiming(mode, index, block, start=start, end=end, status=status, error=error, reused=reused)
    return CallTiming(
        mode,
        index,
        block,
        start=start,
        end=end,
        status=status,
        error=error,
        reused=sample.reused,
        queued_s=sample.queued_s,
        connect_s=sample.connect_s,
        tls_s=sample.tls_s,
        ttfb_s=sample.ttfb_s,
        connection_id=sample.connection_id,
        attempts=sample.attempts,
    )


class _Context:
    """What every mode needs: where to call, with which settings."""

    def __init__(self, endpoint: Any, config: Any, *, model: str, prompt: str, concurrency: int, session: Any) -> None:
        self.endpoint = endpoint
        self.config = config
        self.model = model
        self.prompt = prompt
        self.concurrency = concurrency
        self.user_session = session
        self.sdk_owner: str | None = None  # which sdk_* mode last used the SDK's shared session

    def call_kwargs(self, session: Any = None) -> dict[str, Any]:
        # Per call, not through dashscope's module globals, so a comparison leaves them alone.
        kwargs = dict(
            model=self.model, prompt=self.prompt, api_key=self.endpoint.api_key, base_address=self.endpoint.base_url
        )
        if session is not None:  # None: the SDK's own shared session
            kwargs["session"] = session
        return kwargs

    def sync_call(self, mode: str, index: int, block: int, session: Any) -> CallTiming:
        from dashscope import Generation

        kwargs = self.call_kwargs(session)
        status = error = None
        with _observe.call_scope() as rec:
            start = time.perf_counter()
            try:
                resp = Generation.call(**kwargs)
            except Exception as exc:  # a transport failure: counted, the run goes on
                error = type(exc).__name__
            else:
                status, error = _outcome(resp)
            end = time.perf_counter()
        return _timing(mode, index, block, start, end, status, error, rec.snapshot())

    async def async_call(self, mode: str, index: int, block: int, session: Any) -> CallTiming:
        from dashscope import AioGeneration

        kwargs = self.call_kwargs(session)
        status = error = None
        with _observe.call_scope() as rec:
            start = time.perf_counter()
            try:
                resp = await AioGeneration.call(**kwargs)
            except Exception as exc:
                error = type(exc).__name__
            else:
                status, error = _outcome(resp)
            end = time.perf_counter()
        return _timing(mode, index, block, start, end, status, error, rec.snapshot())


# ---------------------------------------------------------------------------------------------
# modes
# ---------------------------------------------------------------------------------------------

OnDone = Callable[[CallTiming], None]


class _Mode:
    """One way of calling. Sync modes implement ``run_block``; async ones ``arun_block``."""

    name = ""
    is_async = False
    concurrent = False

    def __init__(self, ctx: _Context) -> None:
        self.ctx = ctx

    def skip_reason(self) -> str | None:
        return None

    def client_connections(self) -> int | None:
        return None

    def begin_block(self) -> None:
        pass

    def end_block(self) -> None:
        pass

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    @property
    def concurrency(self) -> int:
        return self.ctx.concurrency if self.concurrent else 1

    def run_block(self, indices: Sequence[int], block: int, on_done: OnDone) -> list[CallTiming]:
        raise NotImplementedError

    async def arun_block(self, indices: Sequence[int], block: int, on_done: OnDone) -> list[CallTiming]:
        raise NotImplementedError


def _sequential(call: Callable[[int], CallTiming], indices: Sequence[int], on_done: OnDone) -> list[CallTiming]:
    out = []
    for i in indices:
        t = call(i)
        out.append(t)
        on_done(t)
    return out


def _threaded(
    pool: concurrent.futures.ThreadPoolExecutor,
    call: Callable[[int], CallTiming],
    indices: Sequence[int],
    on_done: OnDone,
) -> list[CallTiming]:
    futures = [pool.submit(call, i) for i in indices]
    out = []
    try:
        for f in concurrent.futures.as_completed(futures):
            t = f.result()
            out.append(t)
            on_done(t)
    except BaseException:
        # Ctrl-C or a failing callback: start nothing new, let the calls on the wire finish so
        # every connection goes back to its pool in a known state, then stop.
        for f in futures:
            f.cancel()
        concurrent.futures.wait(futures)
        raise
    return out


async def _bounded(call: Callable[[int], Any], indices: Sequence[int], limit: int, on_done: OnDone) -> list[CallTiming]:
    """Run ``call(i)`` for every index with at most ``limit`` in flight; ``on_done`` runs here,
    in the driving task, so an exception from it cancels the workers before it propagates."""
    todo = iter(indices)
    done: asyncio.Queue = asyncio.Queue()

    async def worker() -> None:
        for i in todo:  # one iterator shared by the workers: each index is taken once
            done.put_nowait(await call(i))

    workers = [asyncio.ensure_future(worker()) for _ in range(min(limit, len(indices)))]
    out = []
    try:
        for _ in indices:
            t = await done.get()
            out.append(t)
            on_done(t)
    except BaseException:
        for w in workers:
            w.cancel()
        # Cancelled aiohttp requests close their connections; the pool itself stays usable.
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    await asyncio.gather(*workers)
    return out


class _SessionMode(_Mode):
    """A mode on one dashnb NotebookSession (the caller's, or a private one closed at the end)."""

    path = "sync"

    def __init__(self, ctx: _Context) -> None:
        super().__init__(ctx)
        self._own = ctx.user_session is None
        if self._own:
            from ._session import NotebookSession

            self.session = NotebookSession(ctx.config, endpoint=ctx.endpoint, name=f"dashnb.compare:{self.name}")
        else:
            self.session = ctx.user_session

    def client_connections(self) -> int | None:
        return self.session.stats()[self.path]["connections_opened"]

    def close(self) -> None:
        if self._own:
            self.session.close()

    async def aclose(self) -> None:
        if self._own and self.path == "async":
            await self.session.__aexit__(None, None, None)


class _Shared(_SessionMode):
    name = "shared"

    def run_block(self, indices, block, on_done):
        s = self.session.requests
        return _sequential(lambda i: self.ctx.sync_call(self.name, i, block, s), indices, on_done)


class _ThreadPooled(_Mode):
    """A mode whose calls come from a pool of ``concurrency`` threads (mixed in before its base)."""

    concurrent = True

    def __init__(self, ctx: _Context) -> None:
        super().__init__(ctx)
        self._pool = concurrent.futures.ThreadPoolExecutor(ctx.concurrency, thread_name_prefix=f"dashnb-{self.name}")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        super().close()


class _Threads(_ThreadPooled, _SessionMode):
    name = "threads"

    def run_block(self, indices, block, on_done):
        s = self.session.requests
        return _threaded(self._pool, lambda i: self.ctx.sync_call(self.name, i, block, s), indices, on_done)


class _Async(_SessionMode):
    name = "async"
    path = "async"
    is_async = True
    concurrent = True

    async def arun_block(self, indices, block, on_done):
        aio = self.session.aiohttp
        return await _bounded(
            lambda i: self.ctx.async_call(self.name, i, block, aio), indices, self.ctx.concurrency, on_done
        )


class _PerCall(_Mode):
    """A new session per call. Built like a dashnb session (same trust, same hooks) so that the
    only difference from ``shared`` is the reuse itself, and its connections can be counted."""

    name = "per_call"

    def __init__(self, ctx: _Context) -> None:
        super().__init__(ctx)
        self.observer = _observe.Observer()

    def client_connections(self) -> int | None:
        return self.observer.snapshot().total.connections_opened

    def _one(self, i: int, block: int) -> CallTiming:
        from ._translate import build_requests_session

        s = build_requests_session(self.ctx.config, self.ctx.endpoint, self.observer)
        try:
            return self.ctx.sync_call(self.name, i, block, s)
        finally:
            s.close()

    def run_block(self, indices, block, on_done):
        return _sequential(lambda i: self._one(i, block), indices, on_done)


class _AsyncPerCall(_PerCall):
    name = "async_per_call"
    is_async = True
    concurrent = True

    async def _aone(self, i: int, block: int) -> CallTiming:
        from ._translate import build_aiohttp_session

        s = build_aiohttp_session(self.ctx.config, self.ctx.endpoint, self.observer)
        try:
            return await self.ctx.async_call(self.name, i, block, s)
        finally:
            await s.close()

    async def arun_block(self, indices, block, on_done):
        return await _bounded(lambda i: self._aone(i, block), indices, self.ctx.concurrency, on_done)


def _sdk_pool_connections() -> int:
    """Connections the SDK's shared requests.Session has opened, from urllib3's own pool counters."""
    from dashscope.api_entities import http_request

    session = getattr(http_request, "_shared_sync_session", None)
    if session is None:
        return 0
    total = 0
    for adapter in {id(a): a for a in session.adapters.values()}.values():
        manager = getattr(adapter, "poolmanager", None)
        if manager is None:
            continue
        for key in manager.pools.keys():
            pool = manager.pools.get(key)
            total += getattr(pool, "num_connections", 0) if pool is not None else 0
    return total


class _SdkDefault(_Mode):
    """No ``session=``: the SDK's module-level requests.Session (``trust_env`` on).

    It trusts what the environment says, so for an emulator the emulator's CA is put in
    ``REQUESTS_CA_BUNDLE`` for the duration of each block and the previous value restored
    after (this is process-wide: other threads calling requests meanwhile would see it too).
    The SDK's session is closed before this mode first uses it and at the end, so its counts
    start from zero; urllib3's pool counters say how many connections it opened.
    """

    name = "sdk_default"

    def __init__(self, ctx: _Context) -> None:
        super().__init__(ctx)
        self._saved: tuple[bool, str | None] | None = None

    def client_connections(self) -> int | None:
        return _sdk_pool_connections()

    def begin_block(self) -> None:
        import dashscope

        if self.ctx.sdk_owner != self.name:  # start clean; never borrow another mode's connections
            dashscope.close_shared_sync_session()
            self.ctx.sdk_owner = self.name
        ca = getattr(self.ctx.endpoint, "ca_path", None)
        if ca:
            self._saved = ("REQUESTS_CA_BUNDLE" in os.environ, os.environ.get("REQUESTS_CA_BUNDLE"))
            os.environ["REQUESTS_CA_BUNDLE"] = ca

    def end_block(self) -> None:
        if self._saved is not None:
            had, value = self._saved
            if had:
                os.environ["REQUESTS_CA_BUNDLE"] = value  # type: ignore[assignment]
            else:
                os.environ.pop("REQUESTS_CA_BUNDLE", None)
            self._saved = None

    def close(self) -> None:
        import dashscope

        if self.ctx.sdk_owner == self.name:
            dashscope.close_shared_sync_session()
            self.ctx.sdk_owner = None

    def _one(self, i: int, block: int) -> CallTiming:
        before = _sdk_pool_connections()
        t = self.ctx.sync_call(self.name, i, block, None)
        # One call at a time, so the pool's counter tells whether this call opened a connection.
        if t.status is not None:
            t = CallTiming(
                t.mode,
                t.index,
                t.block,
                start=t.start,
                end=t.end,
                status=t.status,
                error=t.error,
                reused=_sdk_pool_connections() == before,
            )
        return t

    def run_block(self, indices, block, on_done):
        return _sequential(lambda i: self._one(i, block), indices, on_done)


class _SdkThreads(_ThreadPooled, _SdkDefault):
    name = "sdk_threads"

    def run_block(self, indices, block, on_done):
        return _threaded(self._pool, lambda i: self.ctx.sync_call(self.name, i, block, None), indices, on_done)


class _SdkAsync(_Mode):
    name = "sdk_async"
    is_async = True
    concurrent = True

    def skip_reason(self) -> str | None:
        ep = self.ctx.endpoint
        if getattr(ep, "ca_path", None) and not str(ep.base_url).startswith("http://"):
            return (
                "the SDK's shared aiohttp session trusts certifi's CA bundle only (it ignores "
                "REQUESTS_CA_BUNDLE and SSL_CERT_FILE), so it cannot verify the emulator's private CA; "
                "use mode 'async' (session=), or an emulator with tls='off'"
            )
        return None

    async def arun_block(self, indices, block, on_done):
        return await _bounded(
            lambda i: self.ctx.async_call(self.name, i, block, None), indices, self.ctx.concurrency, on_done
        )

    async def aclose(self) -> None:
        import dashscope

        await dashscope.close_shared_aio_session()


_MODE_CLASSES: dict[str, type[_Mode]] = {
    "per_call": _PerCall,
    "sdk_default": _SdkDefault,
    "shared": _Shared,
    "threads": _Threads,
    "async": _Async,
    "async_per_call": _AsyncPerCall,
    "sdk_threads": _SdkThreads,
    "sdk_async": _SdkAsync,
}


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------


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
        return _plot({self.mode: self}, **kwargs)


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

    def connection_mismatches(self) -> dict[str, tuple[int, int]]:
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
        return (
            f"{st.get('endpoint', '?')}: {st.get('calls')} calls per mode, concurrency "
            f"{st.get('concurrency')}, {st.get('rounds')} interleaved rounds"
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
        import html

        return html_table(
            self.summary, caption=f"<b>dashnb.compare</b> {html.escape(self._title())}", notes=self.notes()
        )

    def plot(self, **kwargs: Any):
        return _plot(self.measurements, **kwargs)


def _show_figures_as_png(figure_type) -> None:
    """Let IPython render a bare Figure as a picture. pyplot's inline backend registers this only
    once pyplot is imported, which dashnb avoids (a pyplot figure would also show twice)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return
    png = shell.display_formatter.formatters["image/png"]
    try:
        png.lookup_by_type(figure_type)
        return  # already shown as a picture (e.g. after %matplotlib inline)
    except KeyError:
        pass
    from IPython.core.pylabtools import print_figure

    png.for_type(figure_type, lambda fig: print_figure(fig, "png", bbox_inches="tight"))


def _plot(measurements: dict[str, Measurement], *, max_calls: int = 60):
    """Left: latency distribution (ECDF) per mode. Right: a per-call timeline of each mode's
    first block, each bar split into waiting for a slot, connect + TLS handshake, and request."""
    from matplotlib.figure import Figure  # lazily; a Figure (not pyplot) displays once in Jupyter

    _show_figures_as_png(Figure)
    shown = {k: m for k, m in measurements.items() if not m.skipped and m.calls}
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    ax_dist, ax_line = fig.subplots(1, 2, width_ratios=(1, 1.3))
    colors = {}
    for name, m in shown.items():
        xs = sorted(c.total * 1e3 for c in m.calls if c.ok)
        if not xs:
            continue
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        (line,) = ax_dist.step(xs, ys, where="post", label=f"{name} (p50 {m.summary.p50_ms:.0f} ms)")
        colors[name] = line.get_color()
    ax_dist.set_xlabel("call latency (ms)")
    ax_dist.set_ylabel("fraction of calls at most this slow")
    ax_dist.set_title("Latency distribution")
    ax_dist.grid(alpha=0.3)
    if colors:
        ax_dist.legend(fontsize="small", loc="lower right")
        lo = min(min(c.total for c in m.calls if c.ok) for m in shown.values() if any(c.ok for c in m.calls))
        hi = max(max(c.total for c in m.calls if c.ok) for m in shown.values() if any(c.ok for c in m.calls))
        if lo > 0 and hi / lo > 20:
            ax_dist.set_xscale("log")

    per_mode = max(5, max_calls // max(1, len(shown)))
    row, ticks, labels = 0, [], []
    seg = {"queued": "#bbbbbb", "handshake": "tab:orange", "request": "tab:blue"}
    for name, m in shown.items():
        first = sorted(m.calls, key=lambda c: c.start)[:per_mode]
        # Blocks ran apart (other modes ran in between): lay this mode's blocks end to end.
        offset, shift, prev = 0.0, {}, None
        for c in first:
            if c.block != prev:
                span_start = min(x.start for x in first if x.block == c.block)
                shift[c.block] = offset - span_start
                offset += max(x.end for x in first if x.block == c.block) - span_start
                prev = c.block
        top = row
        for c in first:
            x = (c.start + shift[c.block]) * 1e3
            q = (c.queued_s or 0.0) * 1e3
            h = (c.handshake_s or 0.0) * 1e3
            rest = max(0.0, c.total * 1e3 - q - h)
            for width, key in ((q, "queued"), (h, "handshake"), (rest, "request")):
                if width > 0:
                    ax_line.barh(row, width, left=x, height=0.8, color=seg[key], edgecolor="none" if c.ok else "red")
                x += width
            row += 1
        ticks.append((top + row - 1) / 2)
        labels.append(name)
        row += 1  # a gap between modes
    ax_line.set_yticks(ticks, labels)
    ax_line.invert_yaxis()
    ax_line.set_xlabel("ms of the mode's own run time (its blocks laid end to end)")
    ax_line.set_title("Per call: connect + TLS handshake vs request")
    from matplotlib.patches import Patch

    ax_line.legend(
        handles=[
            Patch(color=seg["handshake"], label="connect + TLS handshake"),
            Patch(color=seg["request"], label="request (to last byte)"),
            Patch(color=seg["queued"], label="waiting for a slot"),
        ],
        fontsize="small",
        loc="lower right",
    )
    return fig


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------


class _Progress:
    """``progress``: None (a bar for long runs), True/False, or a callable(done, total)."""

    def __init__(self, progress: Any, total: int) -> None:
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


def _server_counts(endpoint: Any) -> dict | None:
    stats = getattr(endpoint, "stats", None)
    if not getattr(endpoint, "is_emulator", False) or not callable(stats):
        return None
    return stats()


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


def _default_config(concurrency: int):
    from ._config import PoolConfig

    n = max(32, concurrency)
    return PoolConfig(connection_pool_size=n, maximum_async_requests=n, maximum_async_requests_per_host=n)


def _warm_up(ctx: _Context, sync: bool, aio: bool) -> None:
    """Calls on throwaway sessions, not counted: imports, code paths, first TLS context."""
    from ._run import run
    from ._translate import build_aiohttp_session, build_requests_session

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


def _settings(ctx: _Context, modes: Sequence[str], calls: int, rounds: int) -> dict[str, Any]:
    ep = ctx.endpoint
    opts = getattr(ep, "options", None)
    try:
        from importlib.metadata import version

        sdk = version("dashscope")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        sdk = None
    cfg = ctx.config
    return {
        "endpoint": getattr(ep, "label", type(ep).__name__),
        "emulator": bool(getattr(ep, "is_emulator", False)),
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
    config: Any = None,
    endpoint: Any = None,
    session: Any = None,
    model: str = "qwen-plus",
    prompt: str = "Say hi.",
    warmup: bool = True,
    rounds: int | None = None,
    progress: Any = None,
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

    Ctrl-C (KeyboardInterrupt) or an exception from ``progress`` stops the run: no new calls
    start, calls in flight finish or are cancelled, private sessions are closed, the caller's
    session stays usable, and the exception propagates.
    """
    modes = list(dict.fromkeys(modes))
    unknown = [m for m in modes if m not in _MODE_CLASSES]
    if unknown or not modes:
        raise ValueError(f"unknown mode(s) {unknown or modes!r}; choose from {', '.join(MODES)}")
    for name, value in (("calls", calls), ("concurrency", concurrency)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    if endpoint is None:
        from ._endpoint import endpoint as default_endpoint

        endpoint = session.endpoint if session is not None else default_endpoint()
    if config is None:
        config = session.config if session is not None else _default_config(concurrency)

    ctx = _Context(endpoint, config, model=model, prompt=prompt, concurrency=concurrency, session=session)
    objs: dict[str, _Mode] = {}
    results: dict[str, Measurement] = {}
    try:
        for name in modes:
            objs[name] = _MODE_CLASSES[name](ctx)
        skipped = {name: m.skip_reason() for name, m in objs.items()}
        active = [name for name in modes if skipped[name] is None]
        if rounds is None:
            rounds = _auto_rounds(calls, concurrency, any(objs[m].concurrent for m in active))
        blocks = _blocks(calls, max(1, min(rounds, calls)))
        settings = _settings(ctx, modes, calls, len(blocks))
        if warmup and active:
            _warm_up(ctx, sync=any(not objs[m].is_async for m in active), aio=any(objs[m].is_async for m in active))
        records: dict[str, list[CallTiming]] = {m: [] for m in active}
        wall = dict.fromkeys(active, 0.0)
        client: dict[str, int | None] = dict.fromkeys(active, 0)
        server: dict[str, dict | None] = {m: dict.fromkeys(_SERVER_KEYS, 0) for m in active}
        bar = _Progress(progress, calls * len(active))
        try:
            for b, block in enumerate(blocks):
                for name in active:
                    bar.mode(name)
                    _run_block(objs[name], block, b, bar, records[name], wall, client, server)
        finally:
            bar.close()
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
    finally:
        _close_modes(objs)
    return Comparison(results, settings)


def _run_block(
    mode: _Mode, block: range, b: int, bar: _Progress, records: list, wall: dict, client: dict, server: dict
) -> None:
    from ._run import run

    name = mode.name
    mode.begin_block()
    try:
        c0, s0 = mode.client_connections(), _server_counts(mode.ctx.endpoint)
        t0 = time.perf_counter()
        if mode.is_async:
            out = run(mode.arun_block(block, b, bar))
        else:
            out = mode.run_block(block, b, bar)
        t1 = time.perf_counter()
        c1, s1 = mode.client_connections(), _server_counts(mode.ctx.endpoint)
    finally:
        mode.end_block()
    records.extend(sorted(out, key=lambda t: t.index))
    wall[name] += t1 - t0
    client[name] = None if c0 is None or c1 is None or client[name] is None else client[name] + c1 - c0
    if s0 is None or s1 is None:
        server[name] = None
    elif server[name] is not None:
        for k in _SERVER_KEYS:
            server[name][k] += s1[k] - s0[k]
    log.debug("%s block %d: %d calls in %.3f s", name, b, len(out), t1 - t0)


def _close_modes(objs: dict[str, _Mode]) -> None:
    from ._run import run

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


# ---------------------------------------------------------------------------------------------
# CLI: python -m dashnb bench
# ---------------------------------------------------------------------------------------------


def _mode_list(text: str) -> list[str]:
    out = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in out if m not in MODES]
    if bad:
        import argparse

        raise argparse.ArgumentTypeError(f"unknown mode(s) {', '.join(bad)}; choose from {', '.join(MODES)}")
    return out


def add_bench_parser(sub: Any) -> None:
    """Add the ``bench`` subcommand to the ``python -m dashnb`` parser."""
    p = sub.add_parser(
        "bench",
        help="compare connection-reuse modes through the dashscope SDK",
        description="Call the model in each mode (interleaved, after a warm-up) and print "
        "p50/p90/p99/mean latency, throughput, and connections opened as the "
        "client and the emulator counted them.",
    )
    p.add_argument("--rtt-ms", type=float, default=40.0, help="emulated round trip (default 40)")
    p.add_argument("--calls", type=int, default=50, help="measured calls per mode (default 50)")
    p.add_argument(
        "--concurrency",
        type=int,
        default=16,
        help="threads / async calls in flight for the concurrent modes (default 16)",
    )
    p.add_argument(
        "--modes",
        type=_mode_list,
        nargs="+",
        default=None,
        metavar="MODE",
        help=f"modes, space or comma separated (default: {' '.join(DEFAULT_MODES)}; "
        f"also: {' '.join(m for m in MODES if m not in DEFAULT_MODES)})",
    )
    p.add_argument("--tls", choices=("1.3", "1.2", "off"), default="1.3", help="emulator TLS version (default 1.3)")
    p.add_argument("--ttfb-ms", type=float, default=0.0, help="emulated server time before the first byte")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE ('-' for stdout)")
    p.add_argument(
        "--real",
        action="store_true",
        help="call the real DashScope service instead (needs DASHSCOPE_API_KEY; costs tokens)",
    )
    p.add_argument("--region", choices=("intl", "cn"), default="intl", help="region for --real (default intl)")
    p.add_argument("--model", default="qwen-plus", help="model name (default qwen-plus)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_bench)


def _bench(args: Any) -> int:
    modes = [m for group in args.modes for m in group] if args.modes else list(DEFAULT_MODES)
    if args.calls < 1 or args.concurrency < 1:
        print("dashnb bench: --calls and --concurrency must be >= 1", file=sys.stderr)
        return 2
    emu = None
    if args.real:
        from ._endpoint import DashScope

        endpoint = DashScope(args.region)
        if not endpoint.has_api_key:
            print("dashnb bench --real: set DASHSCOPE_API_KEY (each call costs tokens)", file=sys.stderr)
            return 2
    else:
        from . import emulator

        try:
            emu = endpoint = emulator.start(rtt_ms=args.rtt_ms, tls=args.tls, ttfb_ms=args.ttfb_ms)
        except ValueError as exc:
            print(f"dashnb bench: {exc}", file=sys.stderr)
            return 2
    print(
        f"dashnb bench: {endpoint.label}; {args.calls} calls per mode, concurrency {args.concurrency}",
        file=sys.stderr,
        flush=True,
    )
    try:
        result = compare(
            modes,
            calls=args.calls,
            concurrency=args.concurrency,
            endpoint=endpoint,
            model=args.model,
            progress=False if args.no_progress else (True if sys.stderr.isatty() else False),
        )
    except KeyboardInterrupt:
        print("dashnb bench: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"dashnb bench: {exc}", file=sys.stderr)
        return 1
    finally:
        if emu is not None:
            emu.stop()
    print(result)
    if args.json:
        text = result.to_json()
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w", encoding="utf-8") as fh:
                fh.write(text + "\n")
            print(f"wrote {args.json}", file=sys.stderr)
    return 1 if any(s.calls and s.errors == s.calls for s in result.summary) else 0
