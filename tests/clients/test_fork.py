"""A forked child never uses the parent's pooled sockets or event loops, nor deletes its files.

Before: the child's first call went out on the parent's pooled TLS connection (after which the
parent's own call hung), ``emu.stats()`` in the child waited 10 s for a loop that does not run
there and raised a bare TimeoutError, and a child that exited normally deleted the parent's CA
file, so every later call of the parent failed. The scenario runs in a subprocess: forking the
pytest process itself would copy its threads' state too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")

_SCRIPT = r"""
import json, os, sys, time
import dashnb
from dashnb import emulator
from dashscope import AioGeneration, Generation

emu = emulator.start(shared=False, rtt_ms=0)
s = dashnb.session(endpoint=emu, name="fork-test")

def call():
    r = Generation.call(model="qwen-plus", prompt="hi", api_key=emu.api_key, base_address=emu.base_url,
                        session=s.requests)
    return r.status_code

async def acall():
    r = await AioGeneration.call(model="qwen-plus", prompt="hi", api_key=emu.api_key, base_address=emu.base_url,
                                 session=s.aiohttp)
    return r.status_code

def hcall():  # the openai SDK on the session's httpx client
    import openai

    client = openai.OpenAI(api_key=emu.api_key, base_url=emu.compatible_base_url, http_client=s.httpx)
    client.chat.completions.create(model="qwen-plus", messages=[{"role": "user", "content": "hi"}])
    return 200

def opened():
    st = s.stats()
    return st["sync"]["connections_opened"], st["async"]["connections_opened"]

out = {"parent_before": [call(), dashnb.run(acall()), hcall()], "tcp_before": emu.stats()["tcp_connections"]}
opened_before = opened()
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    child = {}
    t0 = time.monotonic()
    try:
        emu.stats()
        child["stats"] = "answered"
    except RuntimeError as exc:
        child["stats"] = str(exc)
    child["stats_s"] = time.monotonic() - t0
    child["calls"] = [call(), dashnb.run(acall()), hcall()]
    child["opened"] = [a - b for a, b in zip(opened(), opened_before)]
    own = emulator.start()  # the child's own emulator, not the parent's
    child["own_is_new"] = own is not emu and own.stats()["tcp_connections"] == 0
    own.stop()
    os.write(w, json.dumps(child).encode())
    os.close(w)
    sys.exit(0)  # a normal exit: atexit handlers run in the child
os.close(w)
with os.fdopen(r) as f:
    out["child"] = json.loads(f.read() or "{}")
_, status = os.waitpid(pid, 0)
out["child_exit"] = os.waitstatus_to_exitcode(status)
out["ca_exists"] = os.path.exists(emu.ca_path)
out["parent_after"] = [call(), dashnb.run(acall()), hcall()]
out["parent_opened_after"] = [a - b for a, b in zip(opened(), opened_before)]
out["tcp_after"] = emu.stats()["tcp_connections"]
s.close()
emu.stop()
print(json.dumps(out))
"""


def test_a_forked_child_uses_fresh_connections_and_leaves_the_parent_working():
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    child = out["child"]
    print(f"\n[fork] {out}")
    assert out["parent_before"] == [200, 200, 200]
    # In the child: a clear error at once for what needs the parent's loop ...
    assert "forked child" in child["stats"] and child["stats_s"] < 1.0
    # ... calls that work, each on a new connection of its own (requests and httpx count as
    # sync, aiohttp as async) ...
    assert child["calls"] == [200, 200, 200]
    assert child["opened"] == [2, 1]
    assert child["own_is_new"] is True
    assert out["child_exit"] == 0
    # ... and the parent is untouched: its CA file is there, its pooled connections still
    # serve it (no new connection opened), and the server saw the child's two connections.
    assert out["ca_exists"] is True
    assert out["parent_after"] == [200, 200, 200]
    assert out["parent_opened_after"] == [0, 0]
    assert out["tcp_after"] == out["tcp_before"] + 3
