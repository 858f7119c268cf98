"""Overhead: what dashnb's instrumentation costs per call, at rtt 0 where nothing hides it.

Same workload, interleaved in rounds: sequential calls through the SDK on one kept-alive
connection, once with a dashnb session and once with a bare requests.Session /
aiohttp.ClientSession configured alike: the same CA trusted, ``trust_env`` off, the same pool
settings (urllib3 ``pool_maxsize``, no retries, no blocking; aiohttp ``limit``,
``limit_per_host``, ``keepalive_timeout``, ``enable_cleanup_closed``) and the same session
timeouts, i.e. what a careful user would build by hand from the same PoolConfig. Both go through
the same timing wrapper, so the difference is dashnb's observation (plus, on the SDK's aiohttp
path, the config's socket timeouts that dashnb re-applies over the SDK's own ClientTimeout where
they are tighter than its total: with the defaults, none on a kept-alive connection).
Also the same without the SDK (a raw POST of the SDK's body), where the relative cost is largest.

The emulator runs in its own process so that its CPU time is not charged to the client's
interpreter. Several runs, each with fresh sessions and interleaving both variants round by
round (alternating which goes first); the table shows the median over runs of each variant's p50
and of the per-run difference, and the range of that difference across runs. Control rows pit
two identical bare sessions against each other: what the method reads when there is nothing to
find. Batches are 80 calls: the first calls after a switch of workload are slower, and shorter
batches weigh them more (for dashnb's longer code path more than for the bare one).

    $ .venv/bin/python benchmarks/overhead.py [runs]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

from _common import ServedEmulator, pct, table

RUNS = 7
ROUNDS = 6
PER_ROUND = 80
GOAL = 3.0


def _bodies(emu):
    url = emu.base_url + "/services/aigc/text-generation/generation"
    body = json.dumps(
        {
            "model": "qwen-plus",
            "parameters": {"result_format": "message"},
            "input": {"messages": [{"role": "user", "content": "Say hi."}]},
        }
    ).encode()
    headers = {
        "Authorization": f"Bearer {emu.api_key}",
        "Content-Type": "application/json; charset=utf-8",
        "Accept": "application/json; charset=utf-8",
    }
    return url, body, headers


def _bare_requests(cfg, emu):
    """A requests.Session built by hand the way dashnb's adapter is, minus the observation."""
    import requests
    from requests.adapters import HTTPAdapter

    s = requests.Session()
    s.trust_env = False
    s.verify = emu.ca_path
    adapter = HTTPAdapter(pool_connections=10, pool_maxsize=cfg.connection_pool_size, max_retries=0, pool_block=False)
    s.mount("https://", adapter)
    s.mount("http://", adapter)
    return s


def _bare_aiohttp(cfg, emu):
    """An aiohttp.ClientSession with dashnb's connector limits and session timeouts, unobserved."""
    import aiohttp

    from dashnb._transport import aiohttp as _translate_aiohttp
    from dashnb._transport.rules import java_idle_timeout

    connector = aiohttp.TCPConnector(
        limit=cfg.maximum_async_requests,
        limit_per_host=cfg.maximum_async_requests_per_host,
        keepalive_timeout=java_idle_timeout(cfg),
        ssl=emu.ssl_context(),
        enable_cleanup_closed=_translate_aiohttp._NEEDS_CLEANUP_CLOSED,
    )
    timeout = aiohttp.ClientTimeout(
        total=None, connect=None, sock_connect=cfg.connect_timeout, sock_read=cfg.read_timeout
    )
    return aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False)


def run(runs: int = RUNS) -> tuple[str, dict]:
    from dashnb import _call
    from dashnb._config.pool import PoolConfig
    from dashnb._run import run as arun
    from dashnb._stats import percentile
    from dashnb._transport.rules import build_aiohttp_session, build_requests_session

    emu = ServedEmulator(rtt_ms=0.0, tls="1.3")
    cfg = PoolConfig()
    ctx = _call.CallContext(emu, cfg, model="qwen-plus", prompt="Say hi.", concurrency=1, session=None)
    url, body, headers = _bodies(emu)

    def sdk_sync(session):
        return [ctx.sync_call("x", i, 0, session).total for i in range(PER_ROUND)]

    def sdk_async(session):
        async def go():
            return [(await ctx.async_call("x", i, 0, session)).total for i in range(PER_ROUND)]

        return arun(go())

    def raw_sync(session):
        out = []
        for _ in range(PER_ROUND):
            t = time.perf_counter()
            r = session.post(url, data=body, headers=headers, timeout=30)
            r.json()
            out.append(time.perf_counter() - t)
        return out

    def raw_async(session):
        async def go():
            out = []
            for _ in range(PER_ROUND):
                t = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as r:
                    await r.json()
                out.append(time.perf_counter() - t)
            return out

        return arun(go())

    # name -> (runner, library, variant against "bare"). The "bare again" rows compare two bare
    # sessions built identically: what the method measures when there is no difference at all.
    cases = {
        "SDK Generation.call (requests)": (sdk_sync, "requests", "dashnb"),
        "SDK AioGeneration.call (aiohttp)": (sdk_async, "aiohttp", "dashnb"),
        "raw POST (requests)": (raw_sync, "requests", "dashnb"),
        "raw POST (aiohttp)": (raw_async, "aiohttp", "dashnb"),
        "control: raw POST (requests), bare vs bare": (raw_sync, "requests", "bare2"),
        "control: raw POST (aiohttp), bare vs bare": (raw_async, "aiohttp", "bare2"),
    }

    async def make_aio():
        return {
            "bare": _bare_aiohttp(cfg, emu),
            "bare2": _bare_aiohttp(cfg, emu),
            "dashnb": build_aiohttp_session(cfg, emu),
        }

    async def close_aio(sessions):
        for s in sessions.values():
            await s.close()

    def batch(fn, session):
        cpu = time.process_time()
        wall = fn(session)
        return wall, (time.process_time() - cpu) / len(wall)

    load = [os.getloadavg()[0]]
    per_run = {name: [] for name in cases}  # name -> [(bare p50, other p50, bare cpu, other cpu)] per run
    t0 = time.perf_counter()
    for _ in range(runs):
        # Fresh sessions and connections every run: a given socket pair or object layout can be
        # a few microseconds faster or slower for the whole life of a session.
        sessions = {
            "requests": {
                "bare": _bare_requests(cfg, emu),
                "bare2": _bare_requests(cfg, emu),
                "dashnb": build_requests_session(cfg, emu),
            },
            "aiohttp": arun(make_aio()),
        }
        for fn, lib, other in cases.values():  # warm-up: connections, TLS, first-call paths
            batch(fn, sessions[lib]["bare"]), batch(fn, sessions[lib][other])
        wall = {(c, v): [] for c in cases for v in ("bare", "other")}
        cpu = {(c, v): [] for c in cases for v in ("bare", "other")}
        for r in range(ROUNDS):
            for name, (fn, lib, other) in cases.items():
                order = (("bare", "bare"), ("other", other))
                for slot, variant in order if r % 2 == 0 else order[::-1]:
                    w, c = batch(fn, sessions[lib][variant])
                    wall[(name, slot)] += w
                    cpu[(name, slot)].append(c)
        for name in cases:
            per_run[name].append(
                (
                    percentile(wall[(name, "bare")], 50),
                    percentile(wall[(name, "other")], 50),
                    statistics.median(cpu[(name, "bare")]),
                    statistics.median(cpu[(name, "other")]),
                )
            )
        for s in sessions["requests"].values():
            s.close()
        arun(close_aio(sessions["aiohttp"]))
    elapsed = time.perf_counter() - t0
    load.append(os.getloadavg()[0])
    emu.stop()

    rows, data = [], {}
    for name, per in per_run.items():
        b = statistics.median(p[0] for p in per) * 1e3
        d = statistics.median(p[1] for p in per) * 1e3
        diff_us = statistics.median((p[1] - p[0]) * 1e6 for p in per)
        diff_pct = [100.0 * (p[1] - p[0]) / p[0] for p in per]
        cpu_us = statistics.median((p[3] - p[2]) * 1e6 for p in per)
        over = statistics.median(diff_pct)
        control = name.startswith("control")
        data[name] = {
            "bare_p50_ms": b,
            "dashnb_p50_ms": d,  # for a control row: the second bare session
            "difference_us": diff_us,
            "overhead_pct": over,
            "overhead_pct_per_run": diff_pct,
            "client_cpu_difference_us": cpu_us,
            "calls_each_per_run": ROUNDS * PER_ROUND,
            "runs": runs,
        }
        rows.append(
            [
                name,
                f"{b:.3f}",
                f"{d:.3f}",
                f"{diff_us:+.1f}",
                pct(over),
                f"{pct(min(diff_pct))} .. {pct(max(diff_pct))}",
                f"{cpu_us:+.1f}",
                "-" if control else ("yes" if over <= GOAL else "NO"),
            ]
        )
    data["load_average"] = load
    text = "\n".join(
        [
            "## Overhead: dashnb-instrumented vs bare sessions at rtt 0",
            "",
            f"Emulator in its own process at rtt 0, TLS 1.3, one kept-alive connection per session, "
            f"sequential calls. Bare sessions are configured as dashnb's are (same CA, trust_env off, "
            f"same pool limits and session timeouts). {runs} runs, each with fresh sessions and "
            f"{ROUNDS} interleaved rounds of {PER_ROUND} calls per variant ({ROUNDS * PER_ROUND} each "
            f"per run, order alternating), after a warm-up. Per run: p50 of each call's wall time, "
            f"and the client process's CPU time per call (median over its batches); the table shows "
            f"medians over runs. Goal: <= 3% on p50.",
            "",
            table(
                [
                    "workload",
                    "bare p50 ms",
                    "dashnb p50 ms",
                    "difference us",
                    "overhead",
                    "range over runs",
                    "client CPU us/call",
                    "<= 3%",
                ],
                rows,
            ),
            "",
            f"({elapsed:.0f} s; 1-minute load average {load[0]:.2f} before, {load[1]:.2f} after, on "
            f"{os.cpu_count()} CPUs.) The control rows compare two identically built bare sessions: "
            f"their figures are the method's noise. At rtt 0 the whole call is client + server CPU; at "
            f"a real RTT of tens of milliseconds the same absolute difference is a far smaller fraction.",
        ]
    )
    return text, data


if __name__ == "__main__":
    print(run(int(sys.argv[1]) if len(sys.argv) > 1 else RUNS)[0])
