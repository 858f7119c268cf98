"""The emulator's defences cannot be walked around, without a key or with one.

Two ways round them were open. A connection that sent a whole request head with a large
``Content-Length`` and then a byte every few seconds was answering a request as far as the relay
knew: never timed out, never evicted, so 140 of them held every slot; and the key was checked only
once the body was in. And the servers behind the relay listened on loopback ports of their own,
where connections met none of the relay's limits and took the process to its file limit.

Where exhaustion is the point the emulator runs in a subprocess with a lowered RLIMIT_NOFILE and
this process plays the clients.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest
import requests
from dashscope import Generation

GEN = "/api/v1/services/aigc/text-generation/generation"
COMPATIBLE = "/compatible-mode/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hi"}]

# The emulator in a process that may open `limit` files; "stats" on stdin prints its stats.
_CHILD = r"""
import json, os, resource, sys
limit, host = int(sys.argv[1]), sys.argv[2]
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
from dashnb import emulator
emu = emulator.start(shared=False, rtt_ms=0, host=host)
print(json.dumps({"port": emu.port, "ca": emu.ca_path, "key": emu.api_key, "url": emu.url}), flush=True)

def open_fds():  # counted without opening anything: there may be no descriptor left
    n = 0
    for fd in range(limit):
        try:
            os.fstat(fd)
            n += 1
        except OSError:
            pass
    return n

for line in sys.stdin:
    if line.strip() == "quit":
        break
    print(json.dumps({"fds": open_fds(), "stats": emu.stats()}), flush=True)
emu.stop()
"""


class _Child:
    def __init__(self, limit: int, host: str = "127.0.0.1"):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(limit), host],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        first = self.proc.stdout.readline()
        assert first, "the emulator's process did not start"
        self.info = json.loads(first)
        self.port = self.info["port"]

    def stats(self) -> dict:
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the emulator's process died"
        return json.loads(line)

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


@pytest.fixture
def child_factory():
    made: list[_Child] = []

    def make(limit: int, host: str = "127.0.0.1") -> _Child:
        made.append(_Child(limit, host))
        return made[-1]

    yield make
    for c in made:
        c.close()


def _listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket process ``pid`` listens on, read from /proc.

    A socket's descriptor links to ``socket:[inode]``; /proc/net/tcp{,6} list each TCP socket's
    inode with its state, 0A being LISTEN. Addresses are hex in the host's byte order.
    """
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                rows = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            cols = row.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state != "0A" or inode not in inodes:
                continue
            hexaddr, hexport = local.split(":")
            raw = bytes.fromhex(hexaddr)
            # Each 32-bit word is in host order: undo it word by word.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4)) if sys.byteorder == "little" else raw
            found.add((socket.inet_ntop(family, raw), int(hexport, 16)))
    return found


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def _good_calls(base: str, ca: str, key: str, n: int, *, path: str = GEN) -> list:
    """Statuses (or exception names) of ``n`` calls through the official SDK, each on a new connection."""
    out: list = []
    for _ in range(n):
        with requests.Session() as s:
            s.trust_env = False
            s.verify = ca
            try:
                rsp = Generation.call(
                    model="qwen-plus", messages=MESSAGES, api_key=key, base_address=base + "/api/v1", session=s
                )
                out.append(rsp.status_code)
            except requests.RequestException as exc:
                out.append(type(exc).__name__)
    return out


# ---- no listening socket but the ones the URLs name ---------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_emulator_listens_only_where_its_urls_say(child_factory, host):
    # Before: four listening sockets (the URL's and three for the servers behind the relay, one per
    # TLS setting), on loopback ports nobody was told of. After: the URL's alone.
    child = child_factory(1024, host)
    found = _listening(child.proc.pid)
    expected = {("127.0.0.1", child.port)}
    if host == "localhost" and _ipv6_loopback():
        expected.add(("::1", child.port))
    print(f"\n[listening, {host}] {sorted(found)}")
    assert found == expected
    assert _good_calls(child.info["url"], child.info["ca"], child.info["key"], 1) == [200]


@pytest.mark.slow
def test_1100_direct_connection_attempts_leave_a_good_client_served(child_factory):
    # Before: 1,100 connections straight to the servers behind the relay (every listening port but
    # the URL's, read from /proc) took the process to its file limit (1024 of 1024 descriptors
    # open), where anything else the process opens fails. After: there is no such port, and the
    # same attempts on the URL's port meet its limit (1024 // 8 = 128 connections, 3 descriptors
    # each), which closes the longest-idle to make room.
    wanted = 1100 + 200
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"this process may open {hard} files; the attack needs {wanted}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    child = child_factory(1024)
    start = child.stats()["fds"]
    ports = sorted({port for _, port in _listening(child.proc.pid)} - {child.port}) or [child.port]
    socks = []
    try:
        for i in range(1100):
            s = socket.socket()
            s.setblocking(False)  # an attempt, not a wait: a full backlog must not stall the test
            s.connect_ex(("127.0.0.1", ports[i % len(ports)]))
            socks.append(s)
        time.sleep(1.0)  # the emulator takes the burst
        held = child.stats()
        served = _good_calls(child.info["url"], child.info["ca"], child.info["key"], 5)
    finally:
        for s in socks:
            s.close()
    st = held["stats"]
    print(
        f"\n[1,100 attempts on ports {ports}] fds {start} -> {held['fds']} (limit 1024); good calls {served}; "
        f"evicted {st['evicted_connections']}"
    )
    assert served == [200] * 5
    assert held["fds"] <= start + 3 * 128 + 16
    assert st["open_connections"] <= 128


# ---- slow bodies: a deadline, a minimum rate, evictable ------------------------------------------


def _head(key: str, length: int, path: str = GEN) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def _tls_connect(emu, timeout: float = 10.0) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", emu.port), timeout=timeout)
    return emu.ssl_context().wrap_socket(raw, server_hostname="localhost")


def _cut(sock: socket.socket) -> bool:
    """True when the server has closed ``sock`` (EOF or reset), False while it stays open."""
    try:
        sock.setblocking(False)
        try:
            return sock.recv(1) == b""
        except ssl.SSLWantReadError:
            return False
        except BlockingIOError:
            return False
    except (ssl.SSLError, OSError):
        return True
    finally:
        try:
            sock.setblocking(True)
        except OSError:
            pass


def _trickle_until_cut(sock: socket.socket, every: float, most: float) -> float | None:
    """Send a body byte every ``every`` s until the server cuts the connection: seconds it took, or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < most:
        try:
            sock.sendall(b" ")
        except (ssl.SSLError, OSError):
            return time.monotonic() - t0
        deadline = time.monotonic() + every
        while time.monotonic() < deadline:
            if _cut(sock):
                return time.monotonic() - t0
            time.sleep(0.02)
    return None


@pytest.mark.slow
def test_a_slow_body_is_cut_at_its_deadline(emulator_factory):
    emu = emulator_factory(rtt_ms=0, body_timeout=1.5, body_min_rate=None)
    with _tls_connect(emu) as s:
        s.sendall(_head(emu.api_key, 1_000_000))
        took = _trickle_until_cut(s, 0.2, 30.0)
    print(f"\n[slow body, body_timeout 1.5 s] cut after {took} s")
    assert took is not None, "a body trickling a byte every 0.2 s was never cut"
    assert took >= 1.5
    assert emu.stats()["body_timeouts"] == 1


@pytest.mark.slow
def test_a_body_below_the_minimum_rate_is_cut(emulator_factory):
    from dashnb.emulator._defences import BODY_RATE_GRACE_S

    emu = emulator_factory(rtt_ms=0, body_timeout=None, body_min_rate=500)
    with _tls_connect(emu) as s:
        s.sendall(_head(emu.api_key, 1_000_000))
        took = _trickle_until_cut(s, 0.2, 60.0)
    print(f"\n[slow body, 500 B/s minimum] cut after {took} s")
    assert took is not None, "a body at about 100 bytes a second (TLS records included) was never cut"
    assert took >= BODY_RATE_GRACE_S
    assert emu.stats()["body_timeouts"] == 1
    # A whole body at once, under the same settings: answered.
    assert _good_calls(emu.url, emu.ca_path, emu.api_key, 1) == [200]


def test_a_body_option_must_be_positive_or_none():
    from dashnb.emulator import EmulatorOptions

    for name in ("body_timeout", "body_min_rate"):
        assert getattr(EmulatorOptions(**{name: None}), name) is None
        for bad in (0, -1, "fast", float("nan")):
            with pytest.raises(ValueError, match=name):
                EmulatorOptions(**{name: bad})


class _SlowBodies:
    """Keeps ``n`` connections open with a whole head and a body trickling a byte every ``every`` s,
    opening a new one for each the server cuts; records how long each lived."""

    def __init__(self, emu, n: int, every: float):
        self.emu, self.n, self.every = emu, n, every
        self.socks: list[tuple[ssl.SSLSocket, float]] = []
        self.lifetimes: list[float] = []
        self.opened = 0
        self.stop = threading.Event()
        for _ in range(n):
            self._open()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _open(self) -> None:
        try:
            s = _tls_connect(self.emu, timeout=5)
            s.sendall(_head(self.emu.api_key, 1_000_000))
        except (ssl.SSLError, OSError):
            return  # refused or cut at once: the next round tries again
        self.opened += 1
        self.socks.append((s, time.monotonic()))

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            alive = []
            for s, born in self.socks:
                try:
                    s.sendall(b" ")
                    if not _cut(s):
                        alive.append((s, born))
                        continue
                except (ssl.SSLError, OSError):
                    pass
                self.lifetimes.append(time.monotonic() - born)
                s.close()
            self.socks = alive
            while len(self.socks) < self.n and not self.stop.is_set():
                self._open()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        for s, _ in self.socks:
            s.close()


@pytest.mark.slow
def test_a_good_client_is_served_while_140_slow_bodies_are_held(emulator_factory):
    # Before: the 140 slow bodies held all 128 slots, unevictable and never timed out: every good
    # call was turned away. After: a slow body is evictable, so a good call takes its slot, and the
    # minimum rate cuts each one after BODY_RATE_GRACE_S.
    emu = emulator_factory(rtt_ms=0, connection_limit=128)
    attack = _SlowBodies(emu, 140, every=1.0)
    try:
        time.sleep(1.0)
        held = emu.stats()["open_connections"]
        t0 = time.monotonic()
        served = _good_calls(emu.url, emu.ca_path, emu.api_key, 8)
        took = time.monotonic() - t0
        time.sleep(max(0.0, 9.0 - took))  # long enough for the first slow bodies to be cut
    finally:
        attack.close()
    st = emu.stats()
    first = min(attack.lifetimes, default=None)
    print(
        f"\n[140 slow bodies] {held} held; good calls {served} in {took:.1f} s; attack opened {attack.opened}, "
        f"{len(attack.lifetimes)} cut (first after {first} s); evicted {st['evicted_connections']}, "
        f"body timeouts {st.get('body_timeouts')}"
    )
    assert held >= 120  # the slots are the attack's (a few may be changing hands)
    assert served == [200] * 8
    assert st["evicted_connections"] >= 8
    assert st["body_timeouts"] >= 1


# ---- the key is checked on the head ----------------------------------------------------------------


@pytest.mark.parametrize("path", [GEN, COMPATIBLE])
def test_a_bad_key_is_refused_before_the_body_is_sent(emu, path):
    # Before: the server read the whole body first; a head alone got no reply at all.
    with _tls_connect(emu) as s:
        s.sendall(_head("not-the-key", 100_000, path))
        s.settimeout(10)
        reply = s.recv(65536)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 "), reply[:200]
    assert b"not-the-key" not in reply
    # The same 401 as for the same bad key with its body sent.
    with requests.Session() as session:
        session.trust_env, session.verify = False, emu.ca_path
        whole = session.post(emu.url + path, data=b"{}", headers={"Authorization": "Bearer not-the-key"}, timeout=10)
    assert whole.status_code == 401

    def shape(payload: dict) -> tuple:
        error = payload.get("error", payload)  # compatible mode nests it, as OpenAI does
        return error["code"], error["message"]

    assert shape(json.loads(body)) == shape(whole.json())


def test_the_right_key_on_a_head_alone_waits_for_the_body(emu):
    # The negative control of the test above: with the key right, the server reads the body.
    with _tls_connect(emu) as s:
        s.sendall(_head(emu.api_key, 100_000))
        s.settimeout(0.5)
        with pytest.raises(TimeoutError):
            s.recv(1)
