"""The emulator stays well-behaved with careless and hostile clients, over real sockets.

Its certificate verifies under every loopback name its URLs may use; client mistakes get the
service's 4xx error shapes (never a 500); and its relay holds a bounded number of bytes.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys

import dashscope  # noqa: F401  # imported before the SDK's submodules, as users do
import httpx
import openai
import pytest
import requests
from dashscope import Generation

from dashnb.emulator._limits import MAX_BODY_BYTES, MAX_JSON_DEPTH
from dashnb.emulator._listen import _certificate_names, _url_host

GEN = "/services/aigc/text-generation/generation"
MESSAGES = [{"role": "user", "content": "hi"}]


def _verified_get(url: str, ca_path: str) -> int:
    with requests.Session() as s:
        s.trust_env = False  # verify against the emulator's CA and nothing else
        s.verify = ca_path
        return s.get(url + "/_emulator/stats", timeout=5).status_code


def _ipv6_loopback() -> str | None:
    """Why ::1 cannot be tested here, or None when it can."""
    if not socket.has_ipv6:
        return "this Python has no IPv6 support"
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError as exc:
        return f"cannot bind ::1 here: {exc}"
    return None


# ---- A: the certificate covers every loopback name --------------------------------------------


def test_default_url_is_127_0_0_1_and_localhost_also_verifies(emulator_factory):
    emu = emulator_factory(rtt_ms=0)
    assert emu.base_url.startswith(f"https://127.0.0.1:{emu.port}/")
    assert _verified_get(emu.url, emu.ca_path) == 200
    assert _verified_get(f"https://localhost:{emu.port}", emu.ca_path) == 200


def test_localhost_emulator_listens_where_its_url_says(emulator_factory):
    emu = emulator_factory(rtt_ms=0, host="localhost")
    assert emu.base_url == f"https://localhost:{emu.port}/api/v1"
    assert _verified_get(emu.url, emu.ca_path) == 200
    assert _verified_get(f"https://127.0.0.1:{emu.port}", emu.ca_path) == 200
    why = _ipv6_loopback()
    if why is None:
        # Some resolvers give ::1 for localhost first: it must answer there too, on the same port.
        assert _verified_get(f"https://[::1]:{emu.port}", emu.ca_path) == 200


def test_ipv6_loopback_emulator_verifies(emulator_factory):
    why = _ipv6_loopback()
    if why is not None:
        pytest.skip(why)
    emu = emulator_factory(rtt_ms=0, host="::1")
    assert emu.url == f"https://[::1]:{emu.port}"
    assert _verified_get(emu.url, emu.ca_path) == 200
    # and through the SDK, on the session a notebook would pass it
    with requests.Session() as s:
        s.trust_env, s.verify = False, emu.ca_path
        rsp = Generation.call(
            model="qwen-plus", messages=MESSAGES, api_key=emu.api_key, base_address=emu.base_url, session=s
        )
    assert rsp.status_code == 200


def test_public_host_is_named_in_the_certificate(emulator_factory):
    # A non-loopback address needs a network this machine may not have; 127.0.0.2 is loopback
    # yet not one of the default names, so it stands for "the address serve --public binds to".
    emu = emulator_factory(rtt_ms=0, host="127.0.0.2")
    assert emu.url == f"https://127.0.0.2:{emu.port}"
    assert _verified_get(emu.url, emu.ca_path) == 200


def test_names_for_a_public_host():
    # Not started: a public bind would expose the emulator to this machine's network.
    assert {"localhost", "127.0.0.1", "::1", "192.0.2.10"} <= set(_certificate_names("192.0.2.10"))
    wildcard = _certificate_names("0.0.0.0")
    assert socket.gethostname() in wildcard and "0.0.0.0" not in wildcard
    # 0.0.0.0 is where it listens, not an address to connect to: its URLs name loopback
    assert (_url_host("0.0.0.0"), _url_host("::"), _url_host("192.0.2.10")) == ("127.0.0.1", "::1", "192.0.2.10")


def test_a_name_the_certificate_does_not_cover_fails_verification(emu):
    ctx = ssl.create_default_context(cafile=emu.ca_path)
    with socket.create_connection(("127.0.0.1", emu.port), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError, match="(?i)hostname|match"):
            ctx.wrap_socket(raw, server_hostname="example.invalid")
    # the same context, the right name: the failure above is the name, not the CA
    with socket.create_connection(("127.0.0.1", emu.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() is not None


# ---- B: client mistakes are 4xx in the service's error shape ----------------------------------


def _call(emu, session, **kwargs):
    kwargs.setdefault("api_key", emu.api_key)
    return Generation.call(model="qwen-plus", base_address=emu.base_url, session=session, **kwargs)


@pytest.mark.parametrize("stream", [False, True])
def test_oversized_prompt_is_413_naming_the_limit(emu, session, stream):
    prompt = "x" * (MAX_BODY_BYTES + 1)
    rsp = _call(emu, session, prompt=prompt, stream=stream)
    if stream:
        rsp = next(iter(rsp))
    assert rsp.status_code == 413, (rsp.status_code, rsp.code, rsp.message)
    assert rsp.code == "RequestTooLarge"
    assert str(MAX_BODY_BYTES) in rsp.message and rsp.request_id
    assert emu.stats()["statuses"].get("413") == 1 and "500" not in emu.stats()["statuses"]
    # a prompt just under the limit is answered
    ok = _call(emu, session, prompt="x" * (MAX_BODY_BYTES - 4096))
    assert ok.status_code == 200


def _raw_post(emu, session, data: bytes, *, key=None, path=GEN, base=None):
    headers = {"Authorization": f"Bearer {emu.api_key if key is None else key}", "Content-Type": "application/json"}
    return session.post((base or emu.base_url) + path, data=data, headers=headers, timeout=10)


def _read_reply(tls) -> tuple[int, bytes]:
    """Status and body of the one reply on a connection the server closes after it."""
    data = b""
    while chunk := tls.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize("size", ["small", "too large"])
def test_a_body_still_arriving_is_read_to_its_end(emu, session, size):
    # Most bodies have arrived whole when the server reads them; this one is chunked and its
    # second half is sent only after the server has waited for it, so the other way of reading
    # a body (as it arrives, counting it against the limit) is the one answering.
    prompt = "List three tips for pools" if size == "small" else "x" * MAX_BODY_BYTES
    body = json.dumps({"model": "qwen-plus", "input": {"prompt": prompt}}).encode()
    half = len(body) // 2
    head = (
        f"POST /api/v1{GEN} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {emu.api_key}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    ctx = emu.ssl_context()
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(head.encode() + b"%x\r\n" % half + body[:half] + b"\r\n")
            tls.settimeout(0.5)
            with pytest.raises(TimeoutError):
                tls.recv(1)  # half a body gets no reply: the server waits for the rest
            tls.settimeout(10)
            tls.sendall(b"%x\r\n" % (len(body) - half) + body[half:] + b"\r\n0\r\n\r\n")
            status, reply = _read_reply(tls)
    if size == "small":
        whole = _raw_post(emu, session, body)  # the same body, sent at once with its length
        assert status == 200 and whole.status_code == 200
        assert json.loads(reply)["output"] == whole.json()["output"]
    else:
        assert status == 413 and json.loads(reply)["code"] == "RequestTooLarge"


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
def test_absurdly_nested_json_is_400(emu, session, depth):
    nested = b"[" * depth + b"]" * depth
    body = b'{"model":"qwen-plus","input":{"prompt":"hi"},"parameters":{"x":' + nested + b"}}"
    r = _raw_post(emu, session, body)
    assert r.status_code == 400, r.text
    err = r.json()
    assert set(err) == {"code", "message", "request_id"} and err["code"] == "InvalidParameter"
    assert "nested" in err["message"]
    r = _raw_post(emu, session, body, base=emu.compatible_base_url, path="/chat/completions")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_invalid_json_is_400_in_both_shapes(emu, session):
    r = _raw_post(emu, session, b'{"model": "qwen-plus", ')
    assert r.status_code == 400 and r.json()["code"] == "InvalidParameter"
    r = _raw_post(emu, session, b"\xff\xfe{", base=emu.compatible_base_url, path="/chat/completions")
    assert r.status_code == 400 and "error" in r.json()


def test_non_ascii_key_is_401_not_500(emu, session):
    bad = emu.api_key[:-1] + "é"  # requests sends it as latin-1, a byte that is not UTF-8
    rsp = _call(emu, session, prompt="hi", api_key=bad)
    assert rsp.status_code == 401 and rsp.code == "InvalidApiKey"
    assert "ASCII" in rsp.message and bad not in rsp.message and emu.api_key not in rsp.message
    r = _raw_post(emu, session, json.dumps({"model": "qwen-plus"}).encode(), key=bad)
    assert r.status_code == 401 and set(r.json()) == {"code", "message", "request_id"}
    assert "500" not in emu.stats()["statuses"]


def test_openai_sdk_sees_413_and_400(emu):
    with openai.OpenAI(
        api_key=emu.api_key,
        base_url=emu.compatible_base_url,
        http_client=httpx.Client(verify=emu.ssl_context()),
        max_retries=0,
    ) as client:
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(
                model="qwen-plus", messages=[{"role": "user", "content": "x" * (MAX_BODY_BYTES + 1)}]
            )
        assert info.value.status_code == 413 and str(MAX_BODY_BYTES) in info.value.message
        deep: list = []
        for _ in range(MAX_JSON_DEPTH + 1):
            deep = [deep]
        with pytest.raises(openai.BadRequestError) as bad:
            client.chat.completions.create(model="qwen-plus", messages=MESSAGES, extra_body={"x": deep})
        assert bad.value.status_code == 400


# ---- C: the relay holds a bounded number of bytes ----------------------------------------------

# Runs in its own process so its resident memory is the emulator's alone. A raw socket sends
# a POST body as fast as the relay takes it (the server answers 413 at once and discards the
# rest), for at most SECONDS; a thread samples VmRSS from /proc/self/status meanwhile.
_UPLOAD = r"""
import json, socket, sys, threading, time
from dashnb import emulator

mode, rtt, total, seconds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])

def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

emu = emulator.start(shared=False, rtt_ms=rtt, tls="off", max_connections=1 if mode == "queued" else None)
peak, stop = [0], threading.Event()

def watch():
    while not stop.is_set():
        peak[0] = max(peak[0], rss_kib())
        time.sleep(0.005)

chunk = memoryview(bytes(1 << 20))

def push(sock, sent, budget):
    end = time.monotonic() + budget
    while sent < total and time.monotonic() < end:
        try:
            sent += sock.send(chunk[: min(len(chunk), total - sent)])
        except TimeoutError:
            pass
    return sent

holder = socket.create_connection(("127.0.0.1", emu.port)) if mode == "queued" else None
if holder is not None:  # takes the only slot, so the next connection waits in the queue
    while emu.stats()["open_connections"] < 1:
        time.sleep(0.01)
base = rss_kib()
watcher = threading.Thread(target=watch, daemon=True)
watcher.start()
s = socket.create_connection(("127.0.0.1", emu.port))
s.settimeout(0.2)
head = "POST /api/v1/services/aigc/text-generation/generation HTTP/1.1\r\n"
head += f"Host: emulator\r\nContent-Length: {total}\r\n\r\n"
s.sendall(head.encode())
out = {"sent_waiting": push(s, 0, seconds)}
if holder is not None:
    out["queued"] = emu.stats()["queued_connections"]
    holder.close()  # frees the slot: the waiting connection is admitted and its bytes flow
    out["sent"] = push(s, out["sent_waiting"], seconds)
else:
    out["sent"] = out["sent_waiting"]
time.sleep(0.2)
stop.set()
watcher.join()
out["growth_mib"] = (peak[0] - base) / 1024
s.close()
emu.stop()
print(json.dumps(out))
"""

_MIB = 1 << 20


def _upload(mode: str, rtt_ms: float, total: int, seconds: float) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _UPLOAD, mode, str(rtt_ms), str(total), str(seconds)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\n[relay {mode}] rtt {rtt_ms:g} ms, {total / 1e6:.0f} MB offered: {result}")
    return result


@pytest.mark.slow
def test_an_upload_at_rtt_1000_ms_grows_the_process_by_less_than_64_mb():
    # Before the bound the relay read all 200 MB in a fraction of a second and held it for
    # rtt/2 (about 190 MiB of growth). Now it reads a window, about HIGH_WATER per rtt/2.
    r = _upload("upload", 1000, 200_000_000, 4.0)
    assert r["growth_mib"] < 64
    # Bounded memory by stopping altogether would pass the line above: the upload must move,
    # about 8 MiB/s after the first 1.5 s (TCP handshake + one way); kernel buffers add more.
    assert r["sent"] >= 12 * _MIB


@pytest.mark.slow
def test_a_queued_connection_holds_a_bounded_backlog_then_flows():
    r = _upload("queued", 200, 200_000_000, 2.0)
    assert r["queued"] == 1
    assert r["growth_mib"] < 64
    assert r["sent_waiting"] < 64 * _MIB  # read no further than a window while waiting
    assert r["sent"] - r["sent_waiting"] >= 8 * _MIB  # admitted: the rest of the upload moves
