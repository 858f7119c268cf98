"""dashnb.run(): from plain sync code, and nested inside an already running loop.

The nested cases run in a child interpreter: nest_asyncio2 patches asyncio for the whole process
(pure-Python Task/Future), which must not leak into the rest of the test run.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

from dashnb import _run
from dashnb._config.pool import PoolConfig
from dashnb._session import manager as _session


def test_run_returns_the_result_and_keeps_one_loop_per_thread():
    async def where():
        return asyncio.get_running_loop()

    first = _run.run(where())
    second = _run.run(where())
    assert first is second and not first.is_closed()
    assert _run.run(asyncio.sleep(0, result=42)) == 42


def test_run_rejects_non_awaitables():
    with pytest.raises(TypeError):
        _run.run(42)


def test_run_propagates_exceptions():
    async def boom():
        raise ValueError("x")

    with pytest.raises(ValueError):
        _run.run(boom())


def test_aiohttp_session_survives_across_runs(emu):
    s = _session.session(PoolConfig(), endpoint=emu, name="run-test")
    try:

        async def call():
            async with s.aiohttp.get(emu.url + "/_emulator/stats") as r:
                assert r.status == 200
            return s.aiohttp

        a = _run.run(call())
        b = _run.run(call())
        assert a is b
        assert emu.stats()["tcp_connections"] == 1
    finally:
        s.close()


def _child(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "Unclosed" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr
    return proc.stdout


def test_run_inside_a_running_loop_and_timeouts_still_fire():
    out = _child("""
        import asyncio, time, aiohttp, sys
        import dashnb
        from dashnb import _run, emulator
        from dashnb._session import manager as _session
        from dashnb._config.pool import PoolConfig

        emu = emulator.start(rtt_ms=0)
        s = _session.session(PoolConfig(read_timeout=0.5), endpoint=emu)
        assert "nest_asyncio2" not in sys.modules   # never at import

        async def stalled(timeout=None):
            t0 = time.perf_counter()
            try:
                kw = {} if timeout is None else {"timeout": timeout}
                await s.aiohttp.post(emu.base_url + "/services/aigc/text-generation/generation",
                                     json={"model": "qwen-plus", "input": {"prompt": "hi"}},
                                     headers={"Authorization": "Bearer " + emu.api_key}, **kw)
            except (aiohttp.ServerTimeoutError, asyncio.TimeoutError) as e:
                return type(e).__name__, time.perf_counter() - t0
            return "no timeout", time.perf_counter() - t0

        def sync_callback():          # e.g. an ipywidgets observer: sync code inside the loop
            return _run.run(stalled())

        def sync_callback_total():
            return _run.run(stalled(aiohttp.ClientTimeout(total=0.3)))

        async def cell():             # a notebook cell: the loop is already running
            assert asyncio.get_running_loop().is_running()
            async with s.aiohttp.get(emu.url + "/_emulator/stats") as r:   # warm: TLS set up
                await r.read()
            emu.configure(stall_before_headers=30.0)
            return sync_callback(), sync_callback_total(), await asyncio.sleep(0, result="after")

        (name, dt), (name2, dt2), after = asyncio.run(cell())
        print(name, round(dt, 2), name2, round(dt2, 2), after)
        assert "nest_asyncio2" in sys.modules
        # each limit, not the 30 s stall, ended its call (a busy machine only adds time)
        assert name == "SocketTimeoutError" and 0.4 <= dt < 10, (name, dt)   # sock_read
        assert name2 == "TimeoutError" and 0.24 <= dt2 < 10, (name2, dt2)   # total: needs current_task()
        emu.configure(stall_before_headers=0.0)
        s.close()
        emu.stop()
    """)
    assert "after" in out


def test_script_calling_asyncio_run_twice_and_run_is_clean():
    # The loop policy of a plain script: sessions per loop, closed as each loop shuts down,
    # dashnb.run's own loop closed at exit; -W error turns any leak warning into a failure.
    out = _child("""
        import asyncio, gc
        from dashnb import _run, emulator
        from dashnb._session import manager as _session
        emu = emulator.start(rtt_ms=0)
        s = _session.session(endpoint=emu)

        async def call():
            async with s.aiohttp.get(emu.url + "/_emulator/stats") as r:
                await r.read()
            return s.aiohttp

        a = asyncio.run(call())
        b = asyncio.run(call())
        c = _run.run(call())
        d = _run.run(call())
        assert a is not b and a.closed and b.closed
        assert c is d and not c.closed
        gc.collect()
        print("tcp", emu.stats()["tcp_connections"])
    """)
    assert "tcp 3" in out


def test_short_lived_threads_do_not_leak_their_loops():
    # Each thread's dashnb.run() loop (selector + self-pipe, and the pooled connection of the
    # session's aiohttp on it) must be closed when the thread ends, not at interpreter exit.
    out = _child("""
        import gc, os, threading
        import dashnb
        from dashnb import emulator

        emu = emulator.start(rtt_ms=0)
        s = dashnb.session(endpoint=emu, name="threads")

        async def noop():
            return 1

        async def call():
            async with s.aiohttp.get(emu.url + "/_emulator/stats") as r:
                assert r.status == 200
            again = s.aiohttp  # the same session for the rest of this run()
            return again

        def worker():
            first = dashnb.run(call())
            assert dashnb.run(call()) is first  # kept across runs on one thread
            dashnb.run(noop())

        def fds():
            gc.collect()
            return len(os.listdir("/proc/self/fd"))

        dashnb.run(noop())
        start = fds()
        for _ in range(50):
            t = threading.Thread(target=worker)
            t.start()
            t.join()
        print(start, fds(), emu.stats()["tcp_connections"])
        s.close()
    """)
    start, end, connections = map(int, out.split())
    assert connections == 50  # one kept-alive connection per thread: each really opened one
    assert end - start <= 5, (start, end)


def test_sessions_close_on_their_loops_before_the_loops_close_at_exit():
    # The session manager is imported before the loop runner here (dashnb.session, then
    # dashnb.run), the order in which atexit alone would close the loops first. The child's own
    # hook, registered before dashnb's, runs after them and reports the session's state.
    proc = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "-c",
            textwrap.dedent("""
                import atexit, logging
                seen = {}
                atexit.register(lambda: print("closed:", seen["aio"].closed, flush=True))
                import dashnb
                logging.basicConfig(level=logging.DEBUG, format="%(name)s %(message)s")
                s = dashnb.session(name="exit-order")

                async def make():
                    return s.aiohttp

                seen["aio"] = dashnb.run(make())
            """),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "closed: True" in proc.stdout, (proc.stdout, proc.stderr)
    # Logged only when a loop shuts down with a session's client still open on it.
    assert "event loop shutting down" not in proc.stderr, proc.stderr
