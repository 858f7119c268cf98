"""Reliability in a real Jupyter kernel, with its stderr captured: leaks, "Run All", interrupts.

tests/kernel/test_kernel.py covers re-running a session cell 200 times and "Run All" through a
dashnb.run() cell, reading the cells' outputs. These add what only the kernel process's own
stderr shows (asyncio and aiohttp report "Unclosed client session" through logging, and
ResourceWarnings raised in __del__ go to stderr), the "Run All" case with real SDK calls inside
the run() cell, and a KeyboardInterrupt (the kernel's interrupt) during a gather of 200 calls.
"""

from __future__ import annotations

import time

import pytest
from _kernels import collect, run_cell, running_kernel

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

jupyter_client = pytest.importorskip("jupyter_client")

LEAK_WORDS = ("Unclosed", "ResourceWarning", "Exception ignored", "Task was destroyed", "never awaited")


@pytest.fixture
def kernel(tmp_path):
    stderr_path = tmp_path / "kernel-stderr.txt"
    with running_kernel(tmp_path, stderr_path=stderr_path, always_warn=True) as (km, kc):
        yield km, kc, stderr_path


def _run(kc, code, timeout=120.0) -> str:
    return run_cell(kc, code, timeout, with_other=True)


def _no_leaks(text: str) -> None:
    found = [w for w in LEAK_WORDS if w in text]
    assert not found, (found, text[-3000:])


SETUP = """
import asyncio, gc, os, warnings
warnings.simplefilter("always")
import dashnb
from dashnb import _endpoint, _run, emulator
from dashnb._session import manager as _session
from dashscope import AioGeneration, Generation
emu = emulator.start(rtt_ms=0)
_endpoint.use_endpoint(emu)
def live_pools():
    import aiohttp, requests
    objs = gc.get_objects()
    return (sum(isinstance(o, aiohttp.ClientSession) and not o.closed for o in objs),
            sum(isinstance(o, requests.Session) for o in objs))
"""

SESSION_CELL = """
s = _session.session(dashnb.PoolConfig(connection_pool_size=4, maximum_async_requests=4,
                                       maximum_async_requests_per_host=4), endpoint=emu)
r = Generation.call(model="qwen-plus", prompt="hi", session=s.requests)
rs = await asyncio.gather(*(AioGeneration.call(model="qwen-plus", prompt="hi", session=s.aiohttp) for _ in range(3)))
gc.collect()
print(r.status_code, *[x.status_code for x in rs], *live_pools(), len(os.listdir("/proc/self/fd")))
"""


def test_session_cell_200_reruns_one_live_pool_and_a_clean_stderr(kernel):
    km, kc, stderr_path = kernel
    _no_leaks(_run(kc, SETUP))
    fds, pools = [], set()
    t0 = time.perf_counter()
    for _ in range(200):
        out = _run(kc, SESSION_CELL)
        _no_leaks(out)
        fields = out.split()
        assert fields[:4] == ["200"] * 4, out
        pools.add(tuple(fields[4:6]))
        fds.append(int(fields[6]))
    took = time.perf_counter() - t0
    _run(kc, "gc.collect(); import sys; sys.stderr.flush()")
    stderr = stderr_path.read_text(errors="replace")
    _no_leaks(stderr)
    # one live aiohttp session and one requests session, all 200 times
    assert pools == {("1", "1")}, pools
    assert max(fds[5:]) - min(fds[5:]) <= 2, (fds[:10], fds[-10:])
    assert _run(kc, "print(emu.stats()['peak_open_connections'])").strip() in {"1", "2", "3", "4", "5"}
    print(
        f"\n[case 1] 200 re-runs ({took / 200 * 1e3:.0f} ms each): live pools {pools}, fds "
        f"{min(fds[5:])}..{max(fds[5:])}, kernel stderr {len(stderr)} bytes, 0 leak reports"
    )


RUN_ALL = [
    "import asyncio\nfrom dashnb import _run\norder = []",
    "async def work():\n"
    "    rs = await asyncio.gather(*(AioGeneration.call(model='qwen-plus', prompt='hi', session=s.aiohttp)\n"
    "                                for _ in range(5)))\n"
    "    return [int(r.status_code) for r in rs]\n"
    "order.append(('run', _run.run(work())))",
    "order.append(('sync', int(Generation.call(model='qwen-plus', prompt='hi', session=s.requests).status_code)))",
    "order.append('fourth')\nprint(order)",
]


def test_run_all_with_sdk_calls_inside_run(kernel):
    km, kc, stderr_path = kernel
    _no_leaks(_run(kc, SETUP + "\ns = _session.session(endpoint=emu)"))
    t0 = time.perf_counter()
    msg_ids = [kc.execute(code) for code in RUN_ALL]
    outputs, order = collect(kc, msg_ids, 120.0)
    took = time.perf_counter() - t0
    assert order == msg_ids
    assert all("ERROR" not in "".join(outputs[m]) for m in msg_ids), outputs
    assert "".join(outputs[msg_ids[-1]]).strip() == "[('run', [200, 200, 200, 200, 200]), ('sync', 200), 'fourth']"
    _no_leaks(stderr_path.read_text(errors="replace"))
    print(f"\n[case 2] Run All of {len(RUN_ALL)} cells with 5 SDK calls in run(): in order, once each, {took:.2f} s")


GATHER_CELL = """
emu.configure(stall_before_headers=60.0)
s = _session.session(dashnb.PoolConfig(connection_pool_size=8, maximum_async_requests=8,
                                       maximum_async_requests_per_host=8), endpoint=emu, name="interrupted")
tasks = [asyncio.ensure_future(AioGeneration.call(model="qwen-plus", prompt="hi", session=s.aiohttp))
         for _ in range(200)]
print("started", flush=True)
await asyncio.gather(*tasks)
"""

AFTER_CELL = """
await asyncio.sleep(0.2)
st = s.stats()["async"]
emu.configure(stall_before_headers=0.0)
r = await AioGeneration.call(model="qwen-plus", prompt="hi", session=s.aiohttp)
print(sum(t.cancelled() for t in tasks), sum(not t.done() for t in tasks), st["in_flight"], st["queued"], r.status_code)
"""


def test_interrupt_during_a_gather_of_200_calls(kernel):
    km, kc, stderr_path = kernel
    _no_leaks(_run(kc, SETUP))
    msg_id = kc.execute(GATHER_CELL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until the calls are on the wire
        msg = kc.get_iopub_msg(timeout=30)
        if msg["msg_type"] == "stream" and "started" in msg["content"]["text"]:
            break
    time.sleep(0.5)
    t0 = time.perf_counter()
    km.interrupt_kernel()
    outputs, _ = collect(kc, [msg_id], 120.0)
    took = time.perf_counter() - t0
    assert "ERROR KeyboardInterrupt" in "".join(outputs[msg_id]) or "ERROR CancelledError" in "".join(
        outputs[msg_id]
    ), outputs
    fields = _run(kc, AFTER_CELL).split()
    cancelled, pending, in_flight, queued, status = map(int, fields[-5:])
    _run(kc, "gc.collect()")
    _no_leaks(stderr_path.read_text(errors="replace"))
    # every task of the gather ended (cancelled by the interrupt), none left running
    assert pending == 0 and cancelled == 200, fields
    assert in_flight == 0 and queued == 0 and status == 200, fields
    print(
        f"\n[case 5] kernel interrupt during gather(200): cell ended in {took:.2f} s, {cancelled} tasks cancelled, "
        f"in_flight {in_flight}, queued {queued}, next call {status}"
    )
