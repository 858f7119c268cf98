"""The emulator defends the process it runs in (a kernel, usually) against idle and hostile clients.

Each connection costs it three file descriptors. Without a defence, a few hundred idle loopback
connections from any local process used up the kernel's open-file limit, and asyncio's accept
loop then logged thousands of tracebacks a second. Where exhaustion is the point, the emulator
runs in a subprocess with a lowered RLIMIT_NOFILE and this process plays the clients.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from dashnb.emulator import EmulatorOptions
from dashnb.emulator._options import auto_connection_limit

GEN = "/api/v1/services/aigc/text-generation/generation"
BODY = json.dumps({"model": "qwen-plus", "input": {"prompt": "hi"}}).encode()

# The emulator in a process that may open `limit` files; commands on stdin, answers on stdout,
# its log (WARNING and up, asyncio's included) on stderr.
_CHILD = r"""
import json, logging, os, resource, sys
limit, tls = int(sys.argv[1]), sys.argv[2]
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
from dashnb import emulator
emu = emulator.start(shared=False, rtt_ms=0, tls=tls)
hog = []

def open_fds():  # counted without opening anything: there may be no descriptor left
    n = 0
    for fd in range(limit):
        try:
            os.fstat(fd)
            n += 1
        except OSError:
            pass
    return n

print(json.dumps({"port": emu.port, "ca": emu.ca_path, "key": emu.api_key}), flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "hog":  # what else in the process (a notebook's files) takes every descriptor
        try:
            while True:
                hog.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
    elif cmd == "release":
        for fd in hog:
            os.close(fd)
        hog.clear()
    elif cmd == "quit":
        break
    st = emu.stats()
    print(json.dumps({"fds": open_fds(), "stats": st}), flush=True)
emu.stop()
"""


class _Child:
    def __init__(self, limit: int, tls: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(limit), tls],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        first = self.proc.stdout.readline()
        assert first, self.proc.stderr.read()
        self.info = json.loads(first)
        self.port = self.info["port"]
        self.log_lines: list[str] = []
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        for line in self.proc.stderr:
            self.log_lines.append(line)

    def ask(self, cmd: str = "stats") -> dict:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the emulator's process died:\n" + "".join(self.log_lines[-40:])
        return json.loads(line)

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture
def child_factory():
    made = []

    def make(limit: int, tls: str = "1.3") -> _Child:
        c = _Child(limit, tls)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def _idle_connections(port: int, n: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(n)]


def _good_call(child: _Child, tls: str = "1.3") -> tuple[int | str, float]:
    """(status or exception name, seconds) of one well-behaved call on a new connection."""
    scheme = "http" if tls == "off" else "https"
    with requests.Session() as s:
        s.trust_env = False
        s.verify = child.info["ca"]
        t0 = time.monotonic()
        try:
            r = s.post(
                f"{scheme}://127.0.0.1:{child.port}{GEN}",
                data=BODY,
                headers={"Authorization": f"Bearer {child.info['key']}", "Content-Type": "application/json"},
                timeout=10,
            )
            return r.status_code, time.monotonic() - t0
        except requests.RequestException as exc:
            return type(exc).__name__, time.monotonic() - t0


# ---- in a process with 256 descriptors ------------------------------------------------------------


@pytest.mark.slow
def test_400_idle_connections_cannot_exhaust_the_process_and_a_good_client_is_served(child_factory):
    # Before: the 400 connections took all 256 descriptors, the good call failed (ConnectionError),
    # and asyncio logged 41,904 lines in 10 s. After: the emulator holds at most its limit
    # (256 // 8 = 32 connections, 3 descriptors each), closing the longest-idle to make room.
    child = child_factory(256)
    start = child.ask()["fds"]
    socks = _idle_connections(child.port, 400)
    try:
        time.sleep(1.0)  # the relay takes the burst
        held = child.ask()
        status, seconds = _good_call(child)
        time.sleep(2.0)
        after = child.ask()
    finally:
        for s in socks:
            s.close()
    print(
        f"\n[400 idle] fds {start} -> {held['fds']} (limit 256), good call {status} in {seconds:.2f} s, log lines "
        f"{len(child.log_lines)}, evicted {after['stats']['evicted_connections']}"
    )
    assert status == 200 and seconds < 5
    assert held["fds"] <= start + 3 * 32 + 16
    assert held["stats"]["open_connections"] <= 32
    assert after["stats"]["evicted_connections"] >= 400 - 32
    assert len(child.log_lines) <= 4, "".join(child.log_lines[:20])


@pytest.mark.slow
def test_out_of_descriptors_logs_at_most_a_line_a_second_then_recovers(child_factory):
    # Something else in the process took every descriptor: the emulator cannot accept. Before,
    # asyncio's accept loop logged a traceback per failed accept (thousands of lines a second).
    child = child_factory(256, tls="off")
    child.ask("hog")
    socks = _idle_connections(child.port, 50)  # queued in the kernel: accept() fails on each
    try:
        t0 = time.monotonic()
        time.sleep(3.0)
        lines = len(child.log_lines)
        elapsed = time.monotonic() - t0
        child.ask("release")
        status, seconds = _good_call(child, "off")
    finally:
        for s in socks:
            s.close()
    print(f"\n[out of files] {lines} log lines in {elapsed:.1f} s; after release: {status} in {seconds:.2f} s")
    assert 1 <= lines <= elapsed + 2, "".join(child.log_lines[:20])
    assert all("cannot accept" in line for line in child.log_lines[:lines])
    assert status == 200 and seconds < 5


# ---- in this process: the limit, the refusal, the deadlines -------------------------------------


def _request_head(emu) -> bytes:
    return (
        f"POST {GEN} HTTP/1.1\r\nHost: emulator\r\nAuthorization: Bearer {emu.api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
    ).encode()


def _read_all(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def _wait_for(predicate, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_the_default_limit_is_a_share_of_the_open_file_limit():
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    expected = 1024 if soft == resource.RLIM_INFINITY else max(16, min(1024, soft // 8))
    assert auto_connection_limit() == expected
    assert EmulatorOptions().connection_limit is None  # None: that automatic value
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="connection_limit"):
            EmulatorOptions(connection_limit=bad)
    for name in ("head_timeout", "idle_timeout"):
        with pytest.raises(ValueError, match=name):
            EmulatorOptions(**{name: 0})


def test_beyond_the_limit_with_every_connection_busy_a_client_gets_a_503_in_dashscope_shape(emulator_factory):
    emu = emulator_factory(rtt_ms=0, tls="off", connection_limit=2, ttfb_ms=1500)
    busy = [socket.create_connection(("127.0.0.1", emu.port)) for _ in range(2)]
    try:
        for s in busy:
            s.sendall(_request_head(emu) + BODY)
        assert _wait_for(lambda: emu.stats()["requests"] == 2)  # both being answered: none evictable
        with socket.create_connection(("127.0.0.1", emu.port)) as extra:
            extra.sendall(_request_head(emu) + BODY)
            reply = _read_all(extra)
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 ")
        error = json.loads(body)
        assert error["code"] == "ServiceUnavailable" and "connection_limit" in error["message"]
        assert set(error) == {"code", "message", "request_id"}
        # The busy ones were not touched: both get their reply.
        for s in busy:
            s.settimeout(5)
            assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
    finally:
        for s in busy:
            s.close()
    st = emu.stats()
    assert st["refused_connections"] == 1 and st["evicted_connections"] == 0
    # The refused connection lingered only to deliver its 503, then closed.
    assert _wait_for(lambda: emu._call(lambda: emu._relay.defences.lingering) == 0)


def test_beyond_the_limit_a_tls_client_sees_the_connection_close(emulator_factory):
    emu = emulator_factory(rtt_ms=0, connection_limit=1, ttfb_ms=1500)
    with requests.Session() as s:
        s.trust_env, s.verify = False, emu.ca_path
        worker = threading.Thread(
            target=lambda: s.post(
                emu.base_url + "/services/aigc/text-generation/generation",
                data=BODY,
                headers={"Authorization": f"Bearer {emu.api_key}"},
                timeout=10,
            )
        )
        worker.start()
        try:
            assert _wait_for(lambda: emu.stats()["requests"] == 1)
            with pytest.raises(requests.ConnectionError):
                with requests.Session() as other:
                    other.trust_env, other.verify = False, emu.ca_path
                    other.get(emu.url + "/_emulator/stats", timeout=5)
        finally:
            worker.join()
    assert emu.stats()["refused_connections"] >= 1


def test_at_the_limit_the_longest_idle_connection_makes_room(emulator_factory):
    emu = emulator_factory(rtt_ms=0, tls="off", connection_limit=2)
    idle = [socket.create_connection(("127.0.0.1", emu.port)) for _ in range(2)]
    try:
        assert _wait_for(lambda: emu.stats()["open_connections"] == 2)
        with requests.Session() as s:
            s.trust_env = False
            r = s.post(
                emu.base_url + "/services/aigc/text-generation/generation",
                data=BODY,
                headers={"Authorization": f"Bearer {emu.api_key}"},
                timeout=5,
            )
        assert r.status_code == 200
        assert _read_all(idle[0], 2.0) == b""  # the oldest idle one was closed for it
    finally:
        for s in idle:
            s.close()
    st = emu.stats()
    assert st["evicted_connections"] == 1 and st["refused_connections"] == 0


def test_a_request_head_sent_too_slowly_is_cut_off(emulator_factory):
    emu = emulator_factory(rtt_ms=0, tls="off", head_timeout=0.3)
    with socket.create_connection(("127.0.0.1", emu.port)) as slow:
        slow.sendall(_request_head(emu)[:20])  # then nothing: slowloris
        t0 = time.monotonic()
        assert _read_all(slow, 5.0) == b""
        waited = time.monotonic() - t0
    assert 0.25 <= waited < 2.0
    assert emu.stats()["head_timeouts"] == 1


def test_the_head_deadline_never_cuts_a_kept_alive_connection_or_a_slow_reply(emulator_factory):
    emu = emulator_factory(rtt_ms=0, tls="off", head_timeout=0.2, ttfb_ms=600)
    with socket.create_connection(("127.0.0.1", emu.port)) as s:
        for _ in range(2):
            s.sendall(_request_head(emu) + BODY)
            s.settimeout(5)
            reply = s.recv(65536)
            assert reply.startswith(b"HTTP/1.1 200 ")  # 600 ms of server time: past the head deadline
            time.sleep(0.6)  # idle between requests: the idle deadline's business, not the head's
    st = emu.stats()
    assert st["head_timeouts"] == 0 and st["requests"] == 2


def test_an_idle_kept_alive_connection_is_closed_after_idle_timeout(emulator_factory):
    emu = emulator_factory(rtt_ms=0, tls="off", idle_timeout=0.3)
    with socket.create_connection(("127.0.0.1", emu.port)) as s:
        s.sendall(_request_head(emu) + BODY)
        s.settimeout(5)
        assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
        t0 = time.monotonic()
        assert _read_all(s, 5.0) == b""
        assert 0.25 <= time.monotonic() - t0 < 2.0
    assert emu.stats()["idle_closed"] == 1
