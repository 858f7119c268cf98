"""Real OkHttp beside dashnb: the same PoolConfig, the same workloads, the same emulator.

    $ .venv/bin/python benchmarks/crosscheck.py            # runs, prints the table, writes
                                                            # notebooks/data/crosscheck.json
    $ .venv/bin/python benchmarks/crosscheck.py --print    # runs and prints only

The Java side is tests/java/OkHttpCrosscheck.java: an OkHttpClient built the way the
DashScope Java SDK's OkHttpClientFactory builds its one client (ConnectionPool, Dispatcher
maxRequests / maxRequestsPerHost, connect/read/write timeouts, HTTP/1.1 only), compiled into a
temporary directory against the system's OkHttp 3.x and Okio 1.x jars (Debian: libokhttp-java,
libokio-java, default-jdk-headless). The Python side is a dashnb session with the same config:
``.requests`` from threads for the blocking path (OkHttp ``execute()``), ``.aiohttp`` with
``asyncio.gather`` for the async path (OkHttp ``enqueue()``).

Each scenario runs twice, on a fresh private emulator each time: once through Java, once
through dashnb. Per step it records what the server saw (connections opened, peak open, open
once the client settled) and what the client saw (calls that succeeded, peak calls in flight,
which timeout a failure came after). ``tests/java/test_okhttp_crosscheck.py`` asserts that both sides
agree, or differ exactly as documented in ``Step.differs``, and that the recorded table still
matches a fresh run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import Any

from dashnb._atomic import write_atomic

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
JAVA_SOURCE = os.path.join(ROOT, "tests", "java", "OkHttpCrosscheck.java")
RECORD = os.path.join(ROOT, "notebooks", "data", "crosscheck.json")
# Where Debian's libokhttp-java / libokio-java put their jars; another directory can be named
# in DASHNB_JAVA_LIBS (the jars must be OkHttp 3.x and Okio 1.x: plain Java, no Kotlin).
JAR_DIRS = ("/usr/share/java",)
JARS = ("okhttp.jar", "okio.jar")

PATH = "/services/aigc/text-generation/generation"
# The native text-generation body the dashscope SDKs send for a one-message chat.
BODY = json.dumps(
    {
        "model": "qwen-plus",
        "parameters": {"result_format": "message"},
        "input": {"messages": [{"role": "user", "content": "hi"}]},
    },
    separators=(",", ":"),
)

# Facts both sides report for every step; the comparison is over these.
FACTS = ("ok", "opened", "peak_open", "open_after", "peak_in_flight", "fail_after")


# ---------------------------------------------------------------------------------------------
# What runs
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Step:
    """One workload step. ``op``: shared | per_client | threads | async | pause.

    ``fault``: tls_stall (TCP accepted, TLS never answered), stall_headers (request read, no
    response), blackhole (a port whose accept queue is full, so the TCP connect never completes).
    ``differs``: fact -> (OkHttp value, dashnb value, why), for the inherent differences.
    """

    op: str
    n: int = 0
    seconds: float = 0.0
    fault: str | None = None
    differs: dict = dataclasses.field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.op == "pause":
            return f"pause {self.seconds:g} s"
        return f"{self.op} {self.n}" + (f" ({self.fault})" if self.fault else "")


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    about: str
    config: dict
    sync: tuple[Step, ...]
    async_: tuple[Step, ...]
    emulator: dict = dataclasses.field(default_factory=lambda: {"rtt_ms": 20.0, "ttfb_ms": 300.0})

    def pool_config(self):
        from dashnb import PoolConfig
        from dashnb._config.pool import PoolConfigWarning

        with warnings.catch_warnings():
            # pool < maxAsync is one of the cases under test, not a mistake here.
            warnings.simplefilter("ignore", PoolConfigWarning)
            return PoolConfig(**self.config)


_URLLIB3_NO_TIMER = (
    "urllib3 has no idle timer: the connection stays open until the pool is next used, when "
    "dashnb's sweep closes it before handing out a connection (OkHttp's cleanup thread closes it "
    "on time)"
)
_STALE_AT_NEXT_USE = (
    "the connection left open by urllib3 is closed by the next call, which opens its own at once, "
    "so for a moment the server sees both"
)
_TLS_UNDER_READ = (
    "OkHttp applies connectTimeout to the TCP connect only; its TLS handshake runs under "
    "readTimeout. urllib3 and aiohttp bound the TLS handshake with the connect timeout"
)

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "defaults",
        "Java defaults: sequential calls share one connection; concurrent ones open one each and all are kept.",
        {},
        sync=(Step("shared", 4), Step("threads", 8), Step("per_client", 3)),
        async_=(Step("async", 8), Step("async", 8)),
    ),
    Scenario(
        "pool_below_max_async",
        "connectionPoolSize 4 < maximumAsyncRequests 32: a burst of 16 runs on 16 connections at once "
        "(nobody waits), and the pool keeps 4 of them afterwards.",
        {"connection_pool_size": 4},
        sync=(Step("threads", 16), Step("threads", 16)),
        async_=(Step("async", 16), Step("async", 16)),
    ),
    Scenario(
        "per_host_below_max_async",
        "maximumAsyncRequestsPerHost 4: async calls to one host run 4 at a time on 4 connections; "
        "blocking calls are not limited.",
        {"maximum_async_requests_per_host": 4},
        sync=(Step("threads", 16),),
        async_=(Step("async", 16),),
    ),
    Scenario(
        "idle_timeout_shorter_than_pause",
        "connectionIdleTimeout 1 s, then 2.5 s without calls: the idle connection is gone and the next "
        "call opens a new one.",
        {"connection_idle_timeout": 1},
        sync=(
            Step("shared", 1),
            Step("pause", seconds=2.5, differs={"open_after": (0, 1, _URLLIB3_NO_TIMER)}),
            Step("shared", 1, differs={"peak_open": (1, 2, _STALE_AT_NEXT_USE)}),
        ),
        async_=(Step("async", 1), Step("pause", seconds=2.5), Step("async", 1)),
        emulator={"rtt_ms": 20.0},
    ),
    Scenario(
        "timeouts",
        "connectTimeout 0.5 s, readTimeout 1.5 s: a connect that never completes, a TLS handshake "
        "that never completes, a response that never starts.",
        {"connect_timeout": 0.5, "read_timeout": 1.5},
        sync=(
            Step("threads", 2, fault="blackhole"),
            Step(
                "threads",
                2,
                fault="tls_stall",
                differs={"fail_after": ("read_timeout", "connect_timeout", _TLS_UNDER_READ)},
            ),
            Step("threads", 2, fault="stall_headers"),
        ),
        async_=(
            Step("async", 2, fault="blackhole"),
            Step(
                "async",
                2,
                fault="tls_stall",
                differs={"fail_after": ("read_timeout", "connect_timeout", _TLS_UNDER_READ)},
            ),
            Step("async", 2, fault="stall_headers"),
        ),
        emulator={"rtt_ms": 20.0},
    ),
)


# ---------------------------------------------------------------------------------------------
# Java
# ---------------------------------------------------------------------------------------------


def java_toolchain() -> tuple[dict | None, str]:
    """``({"javac", "java", "jars"}, "")`` or ``(None, why not)``."""
    javac, java = shutil.which("javac"), shutil.which("java")
    if javac is None or java is None:
        return None, "no javac/java on PATH (Debian: apt-get install default-jdk-headless)"
    dirs = [d for d in (os.environ.get("DASHNB_JAVA_LIBS"), *JAR_DIRS) if d]
    for d in dirs:
        jars = [os.path.join(d, j) for j in JARS]
        if all(os.path.exists(j) for j in jars):
            return {"javac": javac, "java": java, "jars": jars}, ""
    return None, (
        f"no {' and '.join(JARS)} in {', '.join(dirs)} (Debian: apt-get install libokhttp-java libokio-java; "
        "or name their directory in DASHNB_JAVA_LIBS)"
    )


def compile_java(tool: dict, outdir: str) -> str:
    """Compile the Java side into ``outdir``; returns the classpath to run it with."""
    cp = os.pathsep.join(tool["jars"])
    proc = subprocess.run(
        [tool["javac"], "-nowarn", "-cp", cp, "-d", outdir, JAVA_SOURCE], capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise RuntimeError(f"javac failed:\n{proc.stderr}")
    return os.pathsep.join([*tool["jars"], outdir])


class JavaClient:
    """The Java program as a child process: one command line in, one JSON line out."""

    def __init__(self, tool: dict, classpath: str, emu: Any, config: Any) -> None:
        def ms(seconds: float) -> str:
            return str(round(seconds * 1000))

        args = [
            tool["java"],
            "-cp",
            classpath,
            "OkHttpCrosscheck",
            emu.base_url,
            emu.ca_path,
            ms(config.connect_timeout),
            ms(config.read_timeout),
            ms(config.write_timeout),
            ms(config.connection_idle_timeout),
            str(config.connection_pool_size),
            str(config.maximum_async_requests),
            str(config.maximum_async_requests_per_host),
        ]
        self._proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            # The key goes over stdin, never on a command line (visible in `ps`).
            self._proc.stdin.write(emu.api_key + "\n")
            self._proc.stdin.flush()
            self.versions = self._read()
        except BaseException:
            self.close()
            raise

    def _read(self) -> dict:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            err = self._proc.stderr.read() if self._proc.stderr else ""
            raise RuntimeError(f"the Java side exited: {err.strip()[-2000:]}")
        reply = json.loads(line)
        if "cmd_error" in reply:
            raise RuntimeError(f"the Java side failed a command: {reply['cmd_error']}")
        return reply

    def run(self, op: str, n: int, url: str | None = None) -> dict:
        assert self._proc.stdin is not None
        self._proc.stdin.write(f"{op} {n}{' ' + url if url else ''}\n")
        self._proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        assert self._proc.stdin is not None
        with contextlib.suppress(OSError, ValueError):
            self._proc.stdin.write("quit\n")
        with contextlib.suppress(OSError, ValueError):
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()


# ---------------------------------------------------------------------------------------------
# dashnb
# ---------------------------------------------------------------------------------------------


def _headers(emu: Any) -> dict:
    return {
        "Authorization": f"Bearer {emu.api_key}",
        "Content-Type": "application/json; charset=utf-8",
        "Accept": "application/json; charset=utf-8",
    }


def _summary(outcomes: list[tuple[float, str | None]], elapsed: float, peak: int) -> dict:
    fails = [s for s, err in outcomes if err is not None]
    return {
        "n": len(outcomes),
        "ok": sum(1 for _, err in outcomes if err is None),
        "elapsed_s": round(elapsed, 4),
        "fail_min_s": round(min(fails), 4) if fails else None,
        "fail_max_s": round(max(fails), 4) if fails else None,
        "peak_in_flight": peak,
        "errors": dict(sorted(Counter(err for _, err in outcomes if err is not None).items())),
    }


def _name(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


class _Gauge:
    """Calls in flight, and the most at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = self.peak = 0

    def up(self) -> None:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def down(self) -> None:
        with self._lock:
            self.now -= 1


class SyncSide:
    """dashnb's requests session, used from threads: OkHttp's execute() path."""

    def __init__(self, emu: Any, config: Any) -> None:
        import dashnb

        self._emu, self._config = emu, config
        self._sessions = [dashnb.session(config, endpoint=emu, name=f"crosscheck-{uuid.uuid4().hex}")]

    def _one(self, http: Any, url: str, gauge: _Gauge) -> tuple[float, str | None]:
        # Blocking calls have no dispatcher in either library: a call is in flight from its start.
        t0 = time.perf_counter()
        gauge.up()
        try:
            r = http.post(url + PATH, data=BODY, headers=_headers(self._emu))
            r.content  # noqa: B018 - read the body, as OkHttp's caller does
            return time.perf_counter() - t0, None if r.status_code == 200 else f"HTTP {r.status_code}"
        except Exception as exc:
            return time.perf_counter() - t0, _name(exc)
        finally:
            gauge.down()

    def run(self, op: str, n: int, url: str) -> dict:
        import dashnb

        gauge, t0 = _Gauge(), time.perf_counter()
        shared = self._sessions[0].requests
        if op == "shared":
            outcomes = [self._one(shared, url, gauge) for _ in range(n)]
        elif op == "per_client":
            outcomes = []
            for _ in range(n):
                # Like a new OkHttpClient per call: a new pool each time, left open (not closed).
                s = dashnb.session(self._config, endpoint=self._emu, name=f"crosscheck-{uuid.uuid4().hex}")
                self._sessions.append(s)
                outcomes.append(self._one(s.requests, url, gauge))
        elif op == "threads":
            barrier = threading.Barrier(n)
            results: list[Any] = [None] * n

            def worker(i: int) -> None:
                barrier.wait()
                results[i] = self._one(shared, url, gauge)

            threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            outcomes = results
        else:
            raise ValueError(f"no sync op {op!r}")
        return _summary(outcomes, time.perf_counter() - t0, gauge.peak)

    def pause(self, seconds: float) -> None:
        time.sleep(seconds)

    def close(self) -> None:
        for s in self._sessions:
            s.close()


class AsyncSide:
    """dashnb's aiohttp session, calls gathered on one loop: OkHttp's enqueue() path.

    Calls in flight are counted from the moment a call holds one of the connector's slots
    (aiohttp's on_connection_create_start, sent once the slot is taken, or
    on_connection_reuseconn) until its body is read or it fails: aiohttp has no separate
    dispatcher stage, so that is when a call is past every limit, as an OkHttp call is past the
    Dispatcher.
    """

    def __init__(self, emu: Any, config: Any) -> None:
        import dashnb

        self._emu = emu
        self._session = dashnb.session(config, endpoint=emu, name=f"crosscheck-{uuid.uuid4().hex}")
        self._gauge = _Gauge()
        self._traced: set[int] = set()

    def _http(self) -> Any:
        import aiohttp

        http = self._session.aiohttp
        if id(http) not in self._traced:
            gauge = self._gauge

            async def holding(session, ctx, params):
                state = ctx.trace_request_ctx
                if state is not None and not state.holding:
                    state.holding = True
                    gauge.up()

            tc = aiohttp.TraceConfig()
            tc.on_connection_create_start.append(holding)
            tc.on_connection_reuseconn.append(holding)
            tc.freeze()
            # An observer added after construction: ClientSession reads this list on every request.
            http.trace_configs.append(tc)
            self._traced.add(id(http))
        return http

    async def _one(self, http: Any, url: str) -> tuple[float, str | None]:
        state = types.SimpleNamespace(holding=False)
        t0 = time.perf_counter()
        try:
            async with http.post(url + PATH, data=BODY, headers=_headers(self._emu), trace_request_ctx=state) as r:
                await r.read()
                return time.perf_counter() - t0, None if r.status == 200 else f"HTTP {r.status}"
        except Exception as exc:
            return time.perf_counter() - t0, _name(exc)
        finally:
            if state.holding:
                self._gauge.down()

    async def run(self, op: str, n: int, url: str) -> dict:
        if op != "async":
            raise ValueError(f"no async op {op!r}")
        http = self._http()
        self._gauge.peak = self._gauge.now
        t0 = time.perf_counter()
        outcomes = await asyncio.gather(*(self._one(http, url) for _ in range(n)))
        return _summary(list(outcomes), time.perf_counter() - t0, self._gauge.peak)

    async def pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds)  # the loop keeps running: aiohttp's idle timer can fire

    async def close(self) -> None:
        await self._session.__aexit__(None, None, None)


# ---------------------------------------------------------------------------------------------
# Faults and server facts
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def blackhole() -> Iterator[str]:
    """A loopback URL whose TCP connect never completes.

    A listening socket that never accepts, its accept queue (backlog 0) filled first: Linux then
    drops further SYNs, so a client's connect waits until its own connect timeout.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(3):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", port))
            fillers.append(s)
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.settimeout(0.2)
        try:
            probe.connect(("127.0.0.1", port))
        except TimeoutError:
            pass
        else:
            raise RuntimeError("could not make a loopback port whose connect hangs (accept queue not full)")
        finally:
            probe.close()
        yield f"https://127.0.0.1:{port}/api/v1"
    finally:
        for s in fillers:
            s.close()
        listener.close()


@contextlib.contextmanager
def fault(emu: Any, name: str | None) -> Iterator[str]:
    """Apply a step's fault; yields the base URL to call."""
    if name is None:
        yield emu.base_url
    elif name == "blackhole":
        with blackhole() as url:
            yield url
    elif name == "tls_stall":
        emu.configure(tls_stall=True)
        try:
            yield emu.base_url
        finally:
            emu.configure(tls_stall=False)
    elif name == "stall_headers":
        emu.configure(stall_before_headers=30.0)
        try:
            yield emu.base_url
        finally:
            emu.configure(stall_before_headers=0.0)
    else:
        raise ValueError(f"unknown fault {name!r}")


def _settled_open(emu: Any, quiet: float = 0.3, limit: float = 3.0) -> int:
    """Open connections once the count has not changed for ``quiet`` seconds (closes cross the
    emulated network, and OkHttp's pool cleanup runs on its own thread)."""
    deadline = time.monotonic() + limit
    last, since = emu.stats()["open_connections"], time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.02)
        now = emu.stats()["open_connections"]
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


def _fail_after(row: dict, config: Any) -> str | None:
    """Which configured timeout the failures came after (None when nothing failed).

    The nearest timeout names them, if every failure came no earlier than 90% of it and no later
    than 40% (at least 0.35 s) after it: slack for a loaded machine, too little to pass a call
    that timed out twice (a retry) as one timeout.
    """
    lo, hi = row.get("fail_min_s"), row.get("fail_max_s")
    if lo is None or hi is None:
        return None
    limits = {"connect_timeout": config.connect_timeout, "read_timeout": config.read_timeout}
    name = min(limits, key=lambda k: abs(hi - limits[k]))
    limit = limits[name]
    if lo >= 0.9 * limit and hi <= limit + max(0.35, 0.4 * limit):
        return name
    return f"other ({lo:.2f}-{hi:.2f} s)"


def _facts(client: dict, server_before: dict, server_after: dict, open_after: int, config: Any) -> dict:
    return {
        "ok": client.get("ok"),
        "opened": server_after["tcp_connections"] - server_before["tcp_connections"],
        "peak_open": server_after["peak_open_connections"],
        "open_after": open_after,
        "peak_in_flight": client.get("peak_in_flight"),
        "fail_after": _fail_after(client, config),
        # Not compared (timing or wording), kept for the record:
        "elapsed_s": client.get("elapsed_s"),
        "fail_min_s": client.get("fail_min_s"),
        "fail_max_s": client.get("fail_max_s"),
        "errors": client.get("errors", {}),
    }


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


def _start_emulator(scenario: Scenario) -> Any:
    from dashnb import emulator

    return emulator.start(shared=False, **scenario.emulator)


def _run_java(tool: dict, classpath: str, scenario: Scenario, mode: str) -> tuple[list[dict], dict]:
    config = scenario.pool_config()
    steps = scenario.sync if mode == "sync" else scenario.async_
    emu = _start_emulator(scenario)
    client = JavaClient(tool, classpath, emu, config)
    rows = []
    try:
        for step in steps:
            emu.reset_stats()
            before = emu.stats()
            if step.op == "pause":
                time.sleep(step.seconds)
                result: dict = {}
            else:
                with fault(emu, step.fault) as url:
                    result = client.run(step.op, step.n, None if url == emu.base_url else url)
            after = emu.stats()
            rows.append(_facts(result, before, after, _settled_open(emu), config))
    finally:
        client.close()
        emu.stop()
    return rows, {"okhttp": client.versions.get("okhttp"), "java": client.versions.get("java")}


def _run_dashnb_sync(scenario: Scenario) -> list[dict]:
    config = scenario.pool_config()
    emu = _start_emulator(scenario)
    side = SyncSide(emu, config)
    rows = []
    try:
        for step in scenario.sync:
            emu.reset_stats()
            before = emu.stats()
            if step.op == "pause":
                side.pause(step.seconds)
                result: dict = {}
            else:
                with fault(emu, step.fault) as url:
                    result = side.run(step.op, step.n, url)
            after = emu.stats()
            rows.append(_facts(result, before, after, _settled_open(emu), config))
    finally:
        side.close()
        emu.stop()
    return rows


def _run_dashnb_async(scenario: Scenario) -> list[dict]:
    config = scenario.pool_config()
    emu = _start_emulator(scenario)

    async def main() -> list[dict]:
        side = AsyncSide(emu, config)
        rows = []
        try:
            for step in scenario.async_:
                emu.reset_stats()
                before = emu.stats()
                if step.op == "pause":
                    await side.pause(step.seconds)
                    result: dict = {}
                else:
                    with fault(emu, step.fault) as url:
                        result = await side.run(step.op, step.n, url)
                after = emu.stats()
                # Settle off the loop: aiohttp must keep running (its timers close connections).
                open_after = await asyncio.to_thread(_settled_open, emu)
                rows.append(_facts(result, before, after, open_after, config))
        finally:
            await side.close()
        return rows

    try:
        return asyncio.run(main())
    finally:
        emu.stop()


def run_all(tool: dict, scenarios: tuple[Scenario, ...] = SCENARIOS, progress: bool = False) -> dict:
    """Every scenario through OkHttp and through dashnb; the table ``RECORD`` holds."""
    import importlib.metadata as md

    versions: dict = {}
    out = []
    with tempfile.TemporaryDirectory(prefix="dashnb-okhttp-") as classes:
        classpath = compile_java(tool, classes)
        for scenario in scenarios:
            entry: dict = {"name": scenario.name, "about": scenario.about, "config": _java_config(scenario)}
            for mode in ("sync", "async"):
                steps = scenario.sync if mode == "sync" else scenario.async_
                if not steps:
                    continue
                if progress:
                    print(f"  {scenario.name} / {mode} ...", file=sys.stderr, flush=True)
                java_rows, versions = _run_java(tool, classpath, scenario, mode)
                py_rows = _run_dashnb_sync(scenario) if mode == "sync" else _run_dashnb_async(scenario)
                entry[mode] = [
                    {
                        "step": step.label,
                        "okhttp": j,
                        "dashnb": p,
                        "differs": {k: {"okhttp": v[0], "dashnb": v[1], "why": v[2]} for k, v in step.differs.items()},
                    }
                    for step, j, p in zip(steps, java_rows, py_rows)
                ]
            out.append(entry)
    return {
        "recorded": datetime.date.today().isoformat(),
        "versions": {
            **versions,
            "python": platform.python_version(),
            "aiohttp": md.version("aiohttp"),
            "urllib3": md.version("urllib3"),
            "requests": md.version("requests"),
        },
        "facts": list(FACTS),
        "scenarios": out,
    }


def _java_config(scenario: Scenario) -> dict:
    from dashnb._config.pool import JAVA_NAMES

    config = scenario.pool_config()
    return {JAVA_NAMES[k]: getattr(config, k) for k in JAVA_NAMES}


def disagreements(table: dict) -> list[str]:
    """Steps where OkHttp and dashnb differ other than as documented (empty when all agree)."""
    problems = []
    for sc in table["scenarios"]:
        for mode in ("sync", "async"):
            for row in sc.get(mode, []):
                for fact in FACTS:
                    j, p = row["okhttp"][fact], row["dashnb"][fact]
                    expected = row["differs"].get(fact)
                    where = f"{sc['name']} / {mode} / {row['step']} / {fact}"
                    if expected is None and j != p:
                        problems.append(f"{where}: OkHttp {j!r}, dashnb {p!r}")
                    elif expected is not None and (j, p) != (expected["okhttp"], expected["dashnb"]):
                        problems.append(
                            f"{where}: documented as OkHttp {expected['okhttp']!r} vs dashnb {expected['dashnb']!r}, "
                            f"measured OkHttp {j!r} vs dashnb {p!r}"
                        )
    return problems


def comparable(table: dict) -> list[tuple]:
    """The compared facts of a table, in order (what a fresh run must reproduce)."""
    rows = []
    for sc in table["scenarios"]:
        for mode in ("sync", "async"):
            for row in sc.get(mode, []):
                for side in ("okhttp", "dashnb"):
                    rows.append((sc["name"], mode, row["step"], side, *(row[side][f] for f in FACTS)))
    return rows


def render(table: dict) -> str:
    v = table["versions"]
    lines = [
        f"OkHttp vs dashnb, recorded {table['recorded']}: {v.get('okhttp')} on Java {v.get('java')}; "
        f"Python {v['python']}, aiohttp {v['aiohttp']}, urllib3 {v['urllib3']}",
        "",
    ]
    head = ("scenario", "path", "step", "ok", "opened", "peak open", "open after", "in flight", "failed after")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---" for _ in head) + "|")
    for sc in table["scenarios"]:
        for mode in ("sync", "async"):
            for row in sc.get(mode, []):
                cells = []
                for fact in FACTS:
                    j, p = row["okhttp"][fact], row["dashnb"][fact]
                    mark = " *" if fact in row["differs"] else ""
                    cells.append(f"{j}" if j == p else f"{j} / {p}{mark}")
                lines.append(f"| {sc['name']} | {mode} | {row['step']} | " + " | ".join(cells) + " |")
    lines += ["", "One value: OkHttp and dashnb agree. 'a / b': OkHttp a, dashnb b (* a documented difference)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print", action="store_true", help="print the table only; leave the record alone")
    args = parser.parse_args(argv)
    tool, why = java_toolchain()
    if tool is None:
        print(f"crosscheck needs Java and OkHttp: {why}", file=sys.stderr)
        return 2
    table = run_all(tool, progress=True)
    print(render(table))
    problems = disagreements(table)
    for p in problems:
        print(f"DISAGREES: {p}", file=sys.stderr)
    if not args.print:
        os.makedirs(os.path.dirname(RECORD), exist_ok=True)
        write_atomic(RECORD, json.dumps(table, indent=1, sort_keys=False) + "\n")
        print(f"\nwrote {os.path.relpath(RECORD, ROOT)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    raise SystemExit(main())
