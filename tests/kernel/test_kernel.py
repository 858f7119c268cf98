"""In a real Jupyter kernel: re-running a session cell, and "Run All" through a dashnb.run() cell."""

from __future__ import annotations

import os
import time

import pytest
from _kernels import collect, run_cell, running_kernel

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

jupyter_client = pytest.importorskip("jupyter_client")


@pytest.fixture
def kernel(tmp_path):
    with running_kernel(tmp_path) as (km, kc):
        yield km, kc


SETUP = """
import gc, os, warnings
warnings.simplefilter("always", ResourceWarning)   # make any leak visible in the outputs
import dashnb
from dashnb import _endpoint, _run, emulator
from dashnb._session import manager as _session
from dashscope import AioGeneration, Generation
emu = emulator.start(rtt_ms=0)
_endpoint.use_endpoint(emu)
"""

SESSION_CELL = """
s = _session.session(dashnb.PoolConfig(connection_pool_size=4, maximum_async_requests=4,
                                       maximum_async_requests_per_host=4), endpoint=emu)
r = Generation.call(model="qwen-plus", prompt="hi", session=s.requests)
r2 = await AioGeneration.call(model="qwen-plus", prompt="hi", session=s.aiohttp)
gc.collect()
print(id(s), r.status_code, r2.status_code, len(os.listdir("/proc/self/fd")))
"""


def test_rerunning_a_session_cell_keeps_one_session_and_stable_fds(kernel):
    km, kc = kernel
    out = run_cell(kc, SETUP)
    assert "Error" not in out and "Warning" not in out, out
    pid = km.provisioner.pid
    lines = []
    t0 = time.perf_counter()
    for i in range(200):
        out = run_cell(kc, SESSION_CELL)
        assert "Unclosed" not in out and "Warning" not in out and "ERROR" not in out, out
        lines.append(out.split())
        if i == 4:
            fds_after_warmup = len(os.listdir(f"/proc/{pid}/fd"))
    per_run = (time.perf_counter() - t0) / 200
    fds_end = len(os.listdir(f"/proc/{pid}/fd"))
    ids = {line[0] for line in lines}
    assert len(ids) == 1, ids  # the same object every time
    assert all(line[1:3] == ["200", "200"] for line in lines)
    assert abs(fds_end - fds_after_warmup) <= 2, (fds_after_warmup, fds_end)
    stats = run_cell(kc, "print(emu.stats()['tcp_connections'], s.stats()['connections_opened'])").split()
    assert stats == ["2", "2"], stats  # one sync + one async connection, for 400 calls
    print(f"\n200 re-runs: {per_run * 1e3:.1f} ms per run, fds {fds_after_warmup} -> {fds_end}")


RUN_ALL = [
    "import asyncio, time\nfrom dashnb import _run\norder = []",
    "async def work():\n    await asyncio.sleep(0.3)\n    return 'done'\norder.append(('run', _run.run(work())))",
    "order.append('third')",
    "order.append('fourth')\nprint(order)",
]


def test_run_all_with_a_run_cell_runs_each_cell_once_in_order(kernel):
    km, kc = kernel
    # What "Run All" does: every execute request is sent at once and queued by the kernel.
    msg_ids = [kc.execute(code) for code in RUN_ALL]
    outputs, order = collect(kc, msg_ids)
    assert order == msg_ids  # each cell started once, in order
    assert all("ERROR" not in "".join(o) for o in outputs.values()), outputs
    assert "".join(outputs[msg_ids[-1]]).strip() == "[('run', 'done'), 'third', 'fourth']"
    # and once more, now that nest_asyncio2 is in place
    msg_ids = [kc.execute(code) for code in RUN_ALL]
    outputs, order = collect(kc, msg_ids)
    assert order == msg_ids
    assert "".join(outputs[msg_ids[-1]]).strip() == "[('run', 'done'), 'third', 'fourth']"
