"""Smaller things a long-lived kernel must not accumulate or misreport (issue 10, finding 11)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

import dashnb
from dashnb import emulator

# ---- an observer probe per event loop -------------------------------------------------------------


@pytest.mark.parametrize("client", ["aiohttp", "httpx_async"])
def test_event_loops_used_and_gone_leave_no_open_probe_behind(emu, make_session, client):
    # Every loop a session is used on gets an aiohttp session (or httpx client) and a probe that
    # counts its open connections. Before, none was ever removed: 1,500 asyncio.run() calls left
    # 1,500 probes, and stats() went from 0.09 ms to 7.9 ms. Now a probe goes with its client.
    s = make_session(endpoint=emu)

    async def touch():
        getattr(s, client)  # the first use on this loop builds its client (and probe)

    for _ in range(1500):
        asyncio.run(touch())
    probes = len(s.observer._open_probes["async"])
    assert probes <= 1, probes


def test_the_open_count_stays_right_as_probes_come_and_go(emu, make_session):
    from dashscope import AioGeneration

    s = make_session(endpoint=emu)

    async def call():
        r = await AioGeneration.call(
            model="qwen-plus", prompt="hi", api_key=emu.api_key, base_address=emu.base_url, session=s.aiohttp
        )
        assert r.status_code == 200
        return s.stats()["async"]["connections_open"]

    assert [asyncio.run(call()) for _ in range(3)] == [1, 1, 1]  # open while its loop runs
    st = s.stats()["async"]
    assert st["connections_opened"] == 3 and st["connections_open"] == 0 and st["connections_closed"] == 3


# ---- emulator temp dirs ---------------------------------------------------------------------------

_START_AND_WAIT = """
import sys, time
from dashnb import emulator
emu = emulator.start(shared=False, rtt_ms=0)
print(emu._tmpdir, flush=True)
time.sleep(60)
"""

_START_AND_STOP = """
from dashnb import emulator
emulator.start(shared=False, rtt_ms=0).stop()
"""


def _dirs(root) -> set[str]:
    return {n for n in os.listdir(root) if n.startswith("dashnb-emulator-")}


@pytest.mark.slow
def test_the_temp_dir_of_a_killed_process_is_removed_by_the_next_one(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-c", _START_AND_WAIT], stdout=subprocess.PIPE, text=True, env=env)
    try:
        left = proc.stdout.readline().strip()
        assert os.path.isfile(os.path.join(left, "ca.pem"))
    finally:
        proc.send_signal(signal.SIGKILL)  # no exit handler runs: what a forced kernel restart does
        proc.wait()
        proc.stdout.close()
    assert os.path.isdir(left)  # the kill left it
    _age(left)  # the sweep leaves a directory younger than ten minutes alone
    subprocess.run([sys.executable, "-c", _START_AND_STOP], env=env, check=True, timeout=60)
    assert _dirs(tmp_path) == set()  # the next process removed it, and its own


def _age(path, seconds: float = 3600) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


# What a live emulator in another PID namespace looks like from here: a directory named with a pid
# that does not run in this namespace, old, its lock held by a process that does run.
_HOLD_AS_ANOTHER_NAMESPACE = """
import fcntl, os, sys, time
path = sys.argv[1]
os.mkdir(path, 0o700)
open(os.path.join(path, "ca.pem"), "w").close()
fd = os.open(os.path.join(path, "owner.lock"), os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
then = time.time() - 3600
os.utime(path, (then, then))
print("holding", flush=True)
sys.stdin.read()
"""


@pytest.mark.slow
def test_a_live_emulator_whose_pid_is_not_visible_here_keeps_its_temp_dir(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    held = tmp_path / f"dashnb-emulator-{_dead_pid()}-other-namespace"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_AS_ANOTHER_NAMESPACE, str(held)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        subprocess.run([sys.executable, "-c", _START_AND_STOP], env=env, check=True, timeout=60)
        assert (held / "ca.pem").is_file()  # its pid is dead here, yet its lock says it lives
    finally:
        holder.stdin.close()  # the holder exits, and the kernel releases its lock
        holder.wait(timeout=60)
        holder.stdout.close()
    subprocess.run([sys.executable, "-c", _START_AND_STOP], env=env, check=True, timeout=60)
    assert _dirs(tmp_path) == set()  # and once no one holds it, it is swept


def test_a_live_processs_temp_dir_is_never_removed(tmp_path, monkeypatch):
    live = tmp_path / f"dashnb-emulator-{os.getppid()}-x"  # our parent runs
    live.mkdir()
    other = tmp_path / "dashnb-emulator-notapid"
    other.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", _START_AND_STOP], env=env, check=True, timeout=60)
    assert _dirs(tmp_path) == {live.name, other.name}


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors through /proc")
def test_failed_starts_leave_no_descriptor_and_no_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        before = _open_fds()
        for _ in range(5):  # before: each failed start leaked the sockets of the servers it had started
            with pytest.raises(OSError):
                emulator.start(shared=False, port=port)
        assert _open_fds() == before
    monkeypatch.setitem(sys.modules, "trustme", None)  # the CA cannot be made: fails in the constructor
    with pytest.raises(ImportError):
        emulator.start(shared=False, rtt_ms=0)
    assert _dirs(tmp_path) == set()


# ---- a request followed by a half-close ------------------------------------------------------------


# Covered in tests/emulator/test_emulator_wire.py: such a request now gets its reply (and counts once).


# ---- absurd PoolConfig numbers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"read_timeout": 10**30}, "read_timeout"),
        ({"connect_timeout": 10**400}, "connect_timeout"),
        ({"connection_idle_timeout": 10**400}, "connection_idle_timeout"),
        ({"read_timeout": -(10**400)}, "read_timeout"),
        ({"connection_pool_size": 10**5000}, "connection_pool_size"),
        ({"maximum_async_requests": -(10**5000)}, "maximum_async_requests"),
    ],
)
def test_absurd_pool_config_numbers_are_a_value_error_naming_the_field(settings, field):
    with pytest.raises(ValueError, match=field) as info:
        dashnb.PoolConfig(**settings)
    assert len(str(info.value)) < 600  # says the allowed range; does not print 5,000 digits


@pytest.mark.parametrize(
    "text", ["PT" + "9" * 400 + "S", "-PT" + "9" * 400 + "S", "P" + "9" * 400 + "D", "PT" + "9" * 400 + "H"]
)
def test_absurd_java_durations_are_a_value_error_naming_the_field(text):
    with pytest.raises(ValueError, match="readTimeout"):
        dashnb.PoolConfig.from_java({"readTimeout": text})
