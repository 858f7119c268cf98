"""Throughput: async mode at rtt 50 ms, concurrency 64, 2,000 calls.

Against: raw aiohttp with the same connector settings (no SDK, no dashnb hooks: what the wire
allows this client), the ceiling concurrency / rtt, and the SDK's own shared sessions under the
same load. The emulator runs in its own process (its own core and interpreter lock), so the
client under test is what is measured. dashnb and raw aiohttp run interleaved in rounds on
pools opened by a warm-up.
"""

from __future__ import annotations

import json
import time

from _common import ServedEmulator, table

RTT_MS = 50.0
CONCURRENCY = 64
CALLS = 2000
ROUNDS = 4


def _raw_block(session, url, body, headers, n, limit):
    import asyncio

    async def go():
        sem = asyncio.Semaphore(limit)
        errors = 0

        async def one():
            nonlocal errors
            async with sem:
                async with session.post(url, data=body, headers=headers) as r:
                    await r.read()
                    errors += r.status != 200

        await asyncio.gather(*(one() for _ in range(n)))
        return errors

    return go()


def run() -> tuple[str, dict]:
    import aiohttp

    from dashnb import _call, _measure
    from dashnb._config.pool import PoolConfig
    from dashnb._modes import base as _modes_base
    from dashnb._run import run as arun
    from dashnb._session.manager import NotebookSession

    cfg = PoolConfig(
        connection_pool_size=CONCURRENCY,
        maximum_async_requests=CONCURRENCY,
        maximum_async_requests_per_host=CONCURRENCY,
    )
    ceiling = CONCURRENCY / (RTT_MS / 1000.0)
    rows, data = [], {}
    t_all = time.perf_counter()
    with ServedEmulator(rtt_ms=RTT_MS, tls="1.3") as emu:
        url = emu.base_url + "/services/aigc/text-generation/generation"
        body = json.dumps(
            {"model": "qwen-plus", "parameters": {"result_format": "text"}, "input": {"prompt": "Say hi."}}
        ).encode()
        headers = {
            "Authorization": f"Bearer {emu.api_key}",
            "Content-Type": "application/json; charset=utf-8",
            "Accept": "application/json; charset=utf-8",
        }
        ns = NotebookSession(cfg, endpoint=emu, name="bench-throughput")

        async def make_raw():
            # The connector dashnb builds for this config, minus dashnb's hooks.
            return aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=CONCURRENCY,
                    limit_per_host=CONCURRENCY,
                    keepalive_timeout=cfg.connection_idle_timeout,
                    ssl=emu.ssl_context(),
                ),
                trust_env=False,
            )

        raw = arun(make_raw())
        sdk_bare = arun(make_raw())
        ctx = _call.CallContext(emu, cfg, model="qwen-plus", prompt="Say hi.", concurrency=CONCURRENCY, session=None)

        def sdk_bare_block(n):
            async def call(i):
                return await ctx.async_call("sdk_bare", i, 0, sdk_bare)

            return _modes_base.bounded(call, range(n), CONCURRENCY, lambda t: None)

        per = CALLS // ROUNDS
        # Warm-up: open both pools to full size.
        _measure.compare(
            ["async"],
            calls=CONCURRENCY * 2,
            concurrency=CONCURRENCY,
            session=ns,
            endpoint=emu,
            rounds=1,
            progress=False,
            config=cfg,
        )
        arun(_raw_block(raw, url, body, headers, CONCURRENCY * 2, CONCURRENCY))
        arun(sdk_bare_block(CONCURRENCY * 2))
        bare_wall, bare_errors = 0.0, 0
        dn_wall = raw_wall = 0.0
        dn_calls = dn_errors = raw_errors = 0
        s0 = emu.stats()
        for _ in range(ROUNDS):
            r = _measure.compare(
                ["async"],
                calls=per,
                concurrency=CONCURRENCY,
                session=ns,
                endpoint=emu,
                rounds=1,
                progress=False,
                warmup=False,
                config=cfg,
            )
            s = r["async"].summary
            dn_wall += s.wall_s
            dn_calls += s.calls
            dn_errors += s.errors
            t = time.perf_counter()
            raw_errors += arun(_raw_block(raw, url, body, headers, per, CONCURRENCY))
            raw_wall += time.perf_counter() - t
            t = time.perf_counter()
            bare_errors += sum(not c.ok for c in arun(sdk_bare_block(per)))
            bare_wall += time.perf_counter() - t
        s1 = emu.stats()
        arun(raw.close())
        arun(sdk_bare.close())
        bare_rps = (CALLS - bare_errors) / bare_wall
        data["sdk_on_bare_aiohttp"] = {"rps": bare_rps, "errors": bare_errors, "calls": CALLS}
        ns.close()
        dn_rps, raw_rps = (dn_calls - dn_errors) / dn_wall, (CALLS - raw_errors) / raw_wall
        new_conns = s1["tcp_connections"] - s0["tcp_connections"]
        data["async_dashnb"] = {"rps": dn_rps, "errors": dn_errors, "calls": dn_calls}
        data["raw_aiohttp"] = {"rps": raw_rps, "errors": raw_errors, "calls": CALLS}
        data["ceiling_rps"] = ceiling
        rows.append(
            [
                "dashnb `async` (AioGeneration.call, session=.aiohttp)",
                dn_calls,
                dn_errors,
                f"{dn_rps:.0f}",
                f"{100 * dn_rps / raw_rps:.0f}%",
                f"{100 * dn_rps / ceiling:.0f}%",
            ]
        )
        rows.append(
            [
                "SDK AioGeneration.call on a bare aiohttp session, same connector",
                CALLS,
                bare_errors,
                f"{bare_rps:.0f}",
                f"{100 * bare_rps / raw_rps:.0f}%",
                f"{100 * bare_rps / ceiling:.0f}%",
            ]
        )
        rows.append(
            [
                "raw aiohttp, same connector, no SDK",
                CALLS,
                raw_errors,
                f"{raw_rps:.0f}",
                "100%",
                f"{100 * raw_rps / ceiling:.0f}%",
            ]
        )

        # The SDK's own sessions, same load. Sync: its shared requests.Session from 64 threads
        # (the emulator's CA through REQUESTS_CA_BUNDLE for the run), vs dashnb's from 64 threads.
        r = _measure.compare(
            ["sdk_threads", "threads"],
            calls=CALLS,
            concurrency=CONCURRENCY,
            endpoint=emu,
            rounds=2,
            progress=False,
            config=cfg,
        )
        for mode, label in (
            ("sdk_threads", "SDK default sync session, 64 threads"),
            ("threads", "dashnb requests session, 64 threads"),
        ):
            s = r[mode].summary
            data[mode] = {
                "rps": s.throughput_rps,
                "errors": s.errors,
                "p50_ms": s.p50_ms,
                "tcp_connections": s.tcp_connections,
            }
            rows.append(
                [
                    label,
                    s.calls,
                    s.errors,
                    f"{s.throughput_rps:.0f}",
                    f"{100 * s.throughput_rps / raw_rps:.0f}%",
                    f"{100 * s.throughput_rps / ceiling:.0f}%",
                ]
            )
        sync_note = (
            f"Connections opened for {CALLS} calls: SDK default sync {r['sdk_threads'].summary.tcp_connections}"
            f" (its pool keeps 10 and discards the rest), dashnb threads {r['threads'].summary.tcp_connections}; "
            f"dashnb async opened {new_conns} during the measured rounds (pools warm)."
        )

    # The SDK's shared aiohttp session trusts certifi only, so it can reach the emulator only
    # over plain HTTP; dashnb async is measured beside it on the same plain-HTTP emulator.
    with ServedEmulator(rtt_ms=RTT_MS, tls="off") as plain:
        r = _measure.compare(
            ["sdk_async", "async"],
            calls=CALLS,
            concurrency=CONCURRENCY,
            endpoint=plain,
            rounds=2,
            progress=False,
            config=cfg,
        )
        for mode, label in (
            ("sdk_async", "SDK default aiohttp session (plain HTTP)"),
            ("async", "dashnb `async` (plain HTTP)"),
        ):
            s = r[mode].summary
            data[f"{mode}_plain"] = {
                "rps": s.throughput_rps,
                "errors": s.errors,
                "p50_ms": s.p50_ms,
                "tcp_connections": s.tcp_connections,
            }
            rows.append(
                [label, s.calls, s.errors, f"{s.throughput_rps:.0f}", "-", f"{100 * s.throughput_rps / ceiling:.0f}%"]
            )
    text = "\n".join(
        [
            "## Throughput: async at rtt 50 ms, concurrency 64, 2,000 calls",
            "",
            f"Emulator in its own process (rtt {RTT_MS:g} ms). Ceiling = concurrency / rtt = "
            f"{CONCURRENCY} / {RTT_MS / 1000:g} s = {ceiling:.0f} calls/s. "
            f"dashnb async, the SDK on bare aiohttp, and raw aiohttp: {ROUNDS} interleaved "
            f"rounds of {per} calls after a warm-up that opened both pools. "
            "Goal: dashnb async >= 95% of raw aiohttp. "
            f"dashnb async vs the SDK on bare aiohttp isolates dashnb's hooks from the SDK's own per-call work.",
            "",
            table(["client", "calls", "errors", "calls/s", "vs raw aiohttp", "vs ceiling"], rows),
            "",
            sync_note,
            "",
            f"({time.perf_counter() - t_all:.0f} s.)",
        ]
    )
    return text, data


if __name__ == "__main__":
    print(run()[0])
