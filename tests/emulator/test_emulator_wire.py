"""What the emulator does with legal-but-unusual and malformed HTTP on the wire (issue 19, finding 7).

Raw sockets (and raw TLS) to the emulator on loopback, because the official SDKs never send these:
a half-close after the request, ``Expect: 100-continue``, ``Content-Length: -1``, an HTTP/2 preface;
then where it listens (IPv4-mapped loopback, ``--public``) and what a forked child keeps of it.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import warnings

import pytest

from dashnb import __main__ as cli
from dashnb.emulator import EmulatorOptions, _options
from dashnb.emulator._server import NATIVE_PATH, STATS_PATH

_BODY = json.dumps({"model": "qwen-plus", "input": {"prompt": "hi"}}).encode()
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _connect(emu, *, alpn: list[str] | None = None) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", emu.port), timeout=10)
    if emu.scheme == "https":
        ctx = emu.ssl_context()
        if alpn:
            ctx.set_alpn_protocols(alpn)
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
    sock.settimeout(10)
    return sock


def _head(emu, *extra: str, length: int = len(_BODY)) -> bytes:
    lines = [
        f"POST {NATIVE_PATH} HTTP/1.1",
        "Host: emulator",
        f"Authorization: Bearer {emu.api_key}",
        "Content-Type: application/json",
        f"Content-Length: {length}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_all(sock: socket.socket) -> bytes:
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def _no_tracebacks(caplog) -> None:
    # Under pytest the loggers' records come here instead of stderr (where a kernel shows them).
    with_tb = [r.getMessage() for r in caplog.records if r.exc_info]
    assert with_tb == [], with_tb


# ---- 1. a request, then a half-close -----------------------------------------------------------


@pytest.mark.parametrize("tls", ["1.3", "off"])
@pytest.mark.parametrize("ttfb_ms", [0, 50])
def test_a_request_then_a_half_close_gets_its_reply_and_counts_once(emulator_factory, tls, ttfb_ms):
    # HTTP/1.1 lets a client shut its sending side after its last request and still read the
    # reply. Before: no reply at all (TLS: counted as a 200 all the same; plain: as cancelled).
    emu = emulator_factory(rtt_ms=0, tls=tls, ttfb_ms=ttfb_ms)
    with _connect(emu) as s:
        s.sendall(_head(emu) + _BODY)
        socket.socket.shutdown(s, socket.SHUT_WR)  # TCP's half-close, under TLS too (no close_notify)
        reply = _read_all(s)  # up to the server's close: the connection ends once answered
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n"), reply[:200]
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["output"]["text"]
    st = emu.stats()
    assert (st["requests"], st["statuses"]) == (1, {"200": 1})


# ---- 2. Expect: 100-continue -------------------------------------------------------------------


@pytest.mark.parametrize("tls", ["1.3", "off"])
def test_expect_100_continue_is_answered_before_the_body_is_sent(emulator_factory, tls):
    emu = emulator_factory(rtt_ms=0, tls=tls)
    with _connect(emu) as s:
        s.sendall(_head(emu, "Expect: 100-continue"))
        interim = b""
        while b"\r\n\r\n" not in interim:  # before: nothing came, and this timed out
            chunk = s.recv(4096)
            assert chunk, interim
            interim += chunk
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n"), interim
        s.sendall(_BODY)
        final = interim.split(b"\r\n\r\n", 1)[1]
        while b"\r\n\r\n" not in final:
            final += s.recv(65536)
    assert final.startswith(b"HTTP/1.1 200 OK\r\n"), final[:200]


def test_an_expectation_other_than_100_continue_is_refused_with_417(emulator_factory):
    emu = emulator_factory(rtt_ms=0, tls="off")
    with _connect(emu) as s:
        s.sendall(_head(emu, "Expect: tea", "Connection: close") + _BODY)
        reply = _read_all(s)
    assert reply.startswith(b"HTTP/1.1 417 "), reply[:200]
    assert "100-continue" in json.loads(reply.split(b"\r\n\r\n", 1)[1])["message"]


# ---- 3. a malformed request --------------------------------------------------------------------


@pytest.mark.parametrize("tls", ["1.3", "off"])
def test_a_negative_content_length_gets_a_clear_400_and_no_traceback(emulator_factory, caplog, tls):
    emu = emulator_factory(rtt_ms=0, tls=tls)
    for _ in range(20):
        with _connect(emu) as s:
            s.sendall(_head(emu, length=-1))
            reply = _read_all(s)
        assert reply.startswith(b"HTTP/1.") and b" 400 Bad Request\r\n" in reply.split(b"\r\n", 1)[0] + b"\r\n"
        body = json.loads(reply.split(b"\r\n\r\n", 1)[1])
        assert body["code"] == "BadRequest" and "Content-Length" in body["message"], body
        assert emu.api_key not in reply.decode()
    _no_tracebacks(caplog)
    # One line a second at most, whatever the number of requests (before: one traceback each).
    assert len([r for r in caplog.records if "malformed" in r.getMessage()]) <= 5


@pytest.mark.slow
def test_serve_answers_100_malformed_requests_without_filling_stderr():
    # Before: 1,100 lines of tracebacks on serve's stderr for these 100 requests.
    proc = subprocess.Popen(
        [sys.executable, "-m", "dashnb", "serve", "--rtt-ms", "0", "--tls", "off"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        base = ""
        for line in proc.stdout:
            if "DASHSCOPE_HTTP_BASE_URL=" in line:
                base = line.split("=", 1)[1].strip()
            if line.startswith("Serving"):
                break
        port = int(base.split(":")[2].split("/")[0])
        for _ in range(100):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.settimeout(10)
                s.sendall(f"POST {NATIVE_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".encode())
                assert b" 400 " in _read_all(s).split(b"\r\n", 1)[0]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
    assert "Traceback" not in err
    assert len(err.splitlines()) <= 10, err


# ---- 4. HTTP/2 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tls", ["1.3", "off"])
def test_an_http2_client_is_refused_with_a_505_and_no_traceback(emulator_factory, caplog, tls):
    emu = emulator_factory(rtt_ms=0, tls=tls)
    with _connect(emu, alpn=["h2"]) as s:
        if tls != "off":
            assert s.selected_alpn_protocol() is None  # h2 is not agreed to: the client must not assume it
        s.sendall(_H2_PREFACE)
        reply = _read_all(s)
    assert reply.startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n"), reply[:200]
    assert "HTTP/1.1" in json.loads(reply.split(b"\r\n\r\n", 1)[1])["message"]
    _no_tracebacks(caplog)
    # The emulator still serves HTTP/1.1 afterwards.
    with _connect(emu) as s:
        s.sendall(_head(emu, "Connection: close") + _BODY)
        assert _read_all(s).startswith(b"HTTP/1.1 200 OK\r\n")


# ---- 5. where it listens -----------------------------------------------------------------------


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 on this machine")
def test_stats_answer_an_ipv4_loopback_client_of_a_dual_stack_listener(emulator_factory):
    # A `--host ::` listener sees 127.0.0.1 as ::ffff:127.0.0.1. Bound here to that mapped
    # loopback address itself (never a real interface); clients connect over 127.0.0.1 only.
    # Before: the stats route answered 403, and the host was refused without public=True.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emu = emulator_factory(rtt_ms=0, tls="off", host="::ffff:127.0.0.1", public=True)
    # Loopback: nothing is exposed, nothing to warn of.
    assert [str(w.message) for w in caught if w.category is UserWarning] == []
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as s:
        s.settimeout(10)
        s.sendall(f"GET {STATS_PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        reply = _read_all(s)
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n"), reply[:300]
    assert "tcp_connections" in json.loads(reply.split(b"\r\n\r\n", 1)[1])


def test_public_on_a_loopback_host_does_not_claim_to_be_reachable(emulator_factory):
    # Before: "reachable from your network" while listening on 127.0.0.1 (a UserWarning, an error here).
    emu = emulator_factory(rtt_ms=0, public=True)
    assert emu.host == "127.0.0.1"


def test_the_exposure_warning_names_non_loopback_hosts_only():
    for host in ("127.0.0.1", "::1", "localhost", "::ffff:127.0.0.1", "127.0.0.2"):
        assert _options.exposure_warning(EmulatorOptions(host=host, public=True)) is None, host
    for host in ("0.0.0.0", "::", "192.0.2.7"):
        message = _options.exposure_warning(EmulatorOptions(host=host, public=True))
        assert message and "reachable from your network" in message and host in message, host


def test_serve_public_without_host_listens_on_every_address():
    # What `serve --public` asks for; before, it listened on 127.0.0.1 and warned it was public.
    assert cli._serve_host(None, False) == "127.0.0.1"
    assert cli._serve_host(None, True) == "0.0.0.0"
    assert cli._serve_host("::1", True) == "::1"
    assert cli._serve_host("127.0.0.1", True) == "127.0.0.1"


# ---- 6. a forked child and a stopped emulator -----------------------------------------------------

_FORK = r"""
import json, os, socket, sys
from dashnb import emulator

emu = emulator.start(shared=False, rtt_ms=0, tls="off")
port = emu.port
r, w = os.pipe()
pid = os.fork()
if pid == 0:  # the child only waits: it holds whatever descriptors it was given
    os.close(w)
    os.read(r, 1)
    os._exit(0)
os.close(r)
out = {}
with socket.create_connection(("127.0.0.1", port), timeout=10) as s:  # the parent still serves
    s.settimeout(10)
    s.sendall(b"GET /compatible-mode/v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out["served"] = s.recv(12).decode()
emu.stop()
try:
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
    out["after_stop"] = "connected"
except ConnectionRefusedError:
    out["after_stop"] = "refused"
except OSError as exc:
    out["after_stop"] = type(exc).__name__
os.write(w, b"x")
os.waitpid(pid, 0)
print(json.dumps(out))
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no os.fork on this platform")
def test_a_forked_child_does_not_keep_a_stopped_emulator_listening():
    # Before: the child's copy kept the port listening; connections were queued and never answered.
    # In a subprocess: forking pytest itself would copy its threads' state too.
    r = subprocess.run([sys.executable, "-c", _FORK], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out == {"served": "HTTP/1.1 401", "after_stop": "refused"}, out
