"""Emulator capacity: non-streamed requests per second over kept-alive connections at rtt 0.

The emulator runs in its own process. wrk (if installed) drives it over plain HTTP, since wrk
does not verify certificates and dashnb never talks TLS without verifying; over TLS 1.3 an
aiohttp client in this (separate) process drives it, verifying the emulator's CA. Both use 16
kept-alive connections and POST the SDK's request body.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time

from _common import ServedEmulator, table

CONNECTIONS = 16
SECONDS = 5


def _body(emu):
    return json.dumps(
        {
            "model": "qwen-plus",
            "parameters": {"result_format": "message"},
            "input": {"messages": [{"role": "user", "content": "Say hi."}]},
        }
    )


def _wrk(emu) -> dict | None:
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    lua = (
        f'wrk.method = "POST"\nwrk.body = {json.dumps(_body(emu))}\n'
        f'wrk.headers["Content-Type"] = "application/json; charset=utf-8"\n'
        f'wrk.headers["Authorization"] = "Bearer {emu.api_key}"\n'
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(lua)
    try:
        p = subprocess.run(
            [
                wrk,
                "-t1",
                f"-c{CONNECTIONS}",
                f"-d{SECONDS}s",
                "-s",
                fh.name,
                emu.base_url + "/services/aigc/text-generation/generation",
            ],
            capture_output=True,
            text=True,
            timeout=SECONDS + 30,
        )
    finally:
        os.unlink(fh.name)
    m = re.search(r"Requests/sec:\s*([\d.]+)", p.stdout)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", p.stdout)
    return {"rps": float(m.group(1)) if m else None, "non_2xx": int(non2xx.group(1)) if non2xx else 0}


def _aiohttp(emu) -> dict:
    import asyncio

    import aiohttp

    url = emu.base_url + "/services/aigc/text-generation/generation"
    headers = {"Authorization": f"Bearer {emu.api_key}", "Content-Type": "application/json; charset=utf-8"}
    body = _body(emu).encode()

    async def go():
        conn = aiohttp.TCPConnector(limit=CONNECTIONS, ssl=emu.ssl_context() if url.startswith("https") else True)
        async with aiohttp.ClientSession(connector=conn, trust_env=False) as s:
            done = errors = 0
            stop = time.perf_counter() + SECONDS

            async def worker():
                nonlocal done, errors
                while time.perf_counter() < stop:
                    async with s.post(url, data=body, headers=headers) as r:
                        await r.read()
                        done += 1
                        errors += r.status != 200

            t = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
            return {"rps": done / (time.perf_counter() - t), "non_2xx": errors}

    return asyncio.run(go())


def run() -> tuple[str, dict]:
    rows, data = [], {}
    with ServedEmulator(rtt_ms=0.0, tls="off") as plain:
        w = _wrk(plain)
        if w is not None:
            data["wrk_plain"] = w
            rows.append(["wrk -t1 -c16 (C, plain HTTP)", f"{w['rps']:.0f}", w["non_2xx"]])
        a = _aiohttp(plain)
        data["aiohttp_plain"] = a
        rows.append(["aiohttp client, 16 connections (plain HTTP)", f"{a['rps']:.0f}", a["non_2xx"]])
        s = plain.stats()
    with ServedEmulator(rtt_ms=0.0, tls="1.3") as tls:
        a = _aiohttp(tls)
        data["aiohttp_tls13"] = a
        rows.append(["aiohttp client, 16 connections (TLS 1.3, CA verified)", f"{a['rps']:.0f}", a["non_2xx"]])
    text = "\n".join(
        [
            "## Emulator capacity: non-streamed requests/s over kept-alive connections, rtt 0",
            "",
            f"Emulator in its own process; {CONNECTIONS} kept-alive connections for {SECONDS} s each; "
            f"the SDK's request body. The Python client shares the machine's cores with the server, so its "
            f"figure is a lower bound; wrk's is closer to the server's own limit.",
            "",
            table(["load generator", "requests/s", "non-2xx"], rows),
            "",
            f"(Plain-HTTP run: the emulator saw {s['tcp_connections']} connections for {s['requests']} requests.)",
        ]
    )
    return text, data


if __name__ == "__main__":
    print(run()[0])
