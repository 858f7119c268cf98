"""What the dashscope SDK itself does with timeouts, retries, trust and sessions, measured on plain
sessions (a bare ``requests.Session`` / ``aiohttp.ClientSession``) and on the SDK's own defaults.

Nothing here goes through dashnb's sessions: these are the facts notebook 05 states as the SDK's,
checked against real sockets (the embedded emulator, and a listener whose accept queue is full for
a TCP connect that never completes). Read alongside the installed SDK's
``dashscope/api_entities/http_request.py`` and ``aio_session.py`` (2.x):

- sync: ``session.post(..., timeout=request_timeout)``, so requests applies ``(t, t)``; a
  ``requests.ConnectionError`` (which includes ``ConnectTimeout``) is resent once;
- async, not streamed: ``ClientTimeout(total=request_timeout)``; streamed:
  ``ClientTimeout(total=None, sock_read=request_timeout)``. A timeout passed per request replaces
  the session's ``ClientTimeout`` whole. An ``aiohttp.ClientConnectionError`` (which includes
  ``SocketTimeoutError``) is resent once; a total timeout (``TimeoutError``) is not.

From the published wheels: the per-request ``ClientTimeout``s and the shared aiohttp session came in
1.26.0, the shared sync session and the resend-once in 1.27.0; up to 1.25.0 every call opened its
own session with ``ClientTimeout(total=request_timeout)`` and nothing was resent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time

import aiohttp
import certifi
import pytest
import requests
from requests.adapters import HTTPAdapter

from dashnb import emulator

dashscope = pytest.importorskip("dashscope")
from dashscope import AioGeneration, Generation  # noqa: E402

T = 0.4  # the request_timeout used throughout: short, and far from the emulator's 5 ms round trip
STALL = 5.0  # how long the emulator stalls: far longer than anything a test waits
# A call ended by its timeout ends before this (a busy machine only adds time; the stall, the
# deadline or a default timeout would end it later): the counts and exception types say the rest.
LONG = STALL - 1.0
STREAM = {"stream": True, "incremental_output": True}
GEN = "/services/aigc/text-generation/generation"
BODY = {"model": "qwen-plus", "input": {"prompt": "hi"}, "parameters": {}}
CLEAR = {"tls_stall": False, "stall_before_headers": 0.0, "stall_mid_stream": 0.0, "rate_limit": None}


@pytest.fixture(scope="module")
def _private_emulator():
    emu = emulator.start(shared=False, rtt_ms=5)
    yield emu
    emu.stop()


@pytest.fixture
def emu(_private_emulator):
    _private_emulator.configure(**CLEAR)
    _private_emulator.reset_stats()
    yield _private_emulator
    _private_emulator.configure(**CLEAR)


@pytest.fixture
def sdk_log(caplog):
    """The SDK's debug log: it says "retrying once" each time it resends a request."""
    caplog.set_level(logging.DEBUG, logger="dashscope")
    return caplog


def _resends(caplog) -> int:
    return sum("retrying once" in r.getMessage() for r in caplog.records if r.name == "dashscope")


def _auth(emu) -> dict:
    return {"Authorization": f"Bearer {emu.api_key}"}


def _call(emu, **kwargs):
    return {"model": "qwen-plus", "prompt": "hi", "api_key": emu.api_key, "base_address": emu.base_url, **kwargs}


def _plain_requests(emu) -> requests.Session:
    """A bare requests.Session trusting the emulator's CA. trust_env=False because with it on a
    REQUESTS_CA_BUNDLE in the environment replaces verify (test_requests_ca_bundle_... below)."""
    s = requests.Session()
    s.trust_env = False
    s.verify = emu.ca_path
    return s


# Before CPython 3.12.8 (python/cpython#118960) an SSL transport closed after a timeout, whose peer
# never answers the TLS shutdown, leaks its socket (a ResourceWarning, an error here); aiohttp
# aborts such transports itself when asked. It changes nothing about timeouts or retries.
_CLEANUP_CLOSED = (3, 13, 0) <= sys.version_info < (3, 13, 1) or sys.version_info < (3, 12, 8)


def _plain_aiohttp(emu, **kwargs) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(ssl=emu.ssl_context(), enable_cleanup_closed=_CLEANUP_CLOSED)
    return aiohttp.ClientSession(connector=connector, **kwargs)


def sync_attempt(session, call):
    """(exception or status, seconds, chunks) for one sync SDK call, streamed ones read to the end."""
    t0, chunks = time.perf_counter(), 0
    try:
        r = Generation.call(**call, session=session)
        if call.get("stream"):
            for _ in r:
                chunks += 1
            outcome = 200
        else:
            outcome = r.status_code
    except Exception as exc:
        outcome = exc
    return outcome, time.perf_counter() - t0, chunks


async def async_attempt(session, call, deadline=3.0):
    """Like sync_attempt; gives up after `deadline` seconds and returns "pending" then."""
    t0, chunks = time.perf_counter(), 0

    async def run():
        nonlocal chunks
        r = await AioGeneration.call(**call, session=session)
        if call.get("stream"):
            async for _ in r:
                chunks += 1
            return 200
        return r.status_code

    task = asyncio.ensure_future(run())
    done, _ = await asyncio.wait({task}, timeout=deadline)
    if not done:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        return "pending", time.perf_counter() - t0, chunks
    try:
        outcome = task.result()
    except Exception as exc:
        outcome = exc
    return outcome, time.perf_counter() - t0, chunks


# ---- async: the SDK's per-request timeout --------------------------------------------------------


def test_async_request_timeout_replaces_the_sessions_client_timeout(emu):
    """A session-level sock_read of 0.3 s is ignored by an SDK call: the SDK passes
    ClientTimeout(total=request_timeout), and aiohttp uses a per-request timeout instead of the
    session's, not merged with it. Control: the same session's own request (no per-request
    timeout) does fail after 0.3 s with the session's sock_read."""
    emu.configure(stall_before_headers=STALL)

    async def main():
        async with _plain_aiohttp(emu, timeout=aiohttp.ClientTimeout(sock_read=0.3)) as s:
            via_sdk = await async_attempt(s, _call(emu, request_timeout=1.2))
            t0 = time.perf_counter()
            try:
                async with s.post(emu.base_url + GEN, json=BODY, headers=_auth(emu)) as r:
                    direct = r.status
            except Exception as exc:
                direct = exc
            return via_sdk, (direct, time.perf_counter() - t0)

    (outcome, took, _), (direct, direct_took) = asyncio.run(main())
    assert type(outcome) is TimeoutError and 1.1 < took < LONG, (outcome, took)
    # the session's own sock_read (0.3 s) ended the control, before the SDK's 1.2 s
    assert isinstance(direct, aiohttp.SocketTimeoutError) and direct_took < took, (direct, direct_took)


def test_async_not_streamed_read_timeout_is_a_total_timeout_and_not_resent(emu, sdk_log):
    emu.configure(stall_before_headers=STALL)

    async def main():
        async with _plain_aiohttp(emu) as s:
            return await async_attempt(s, _call(emu, request_timeout=T))

    outcome, took, _ = asyncio.run(main())
    assert type(outcome) is TimeoutError, repr(outcome)
    assert not isinstance(outcome, aiohttp.ClientConnectionError)
    assert 0.3 < took < LONG, took
    assert emu.stats()["requests"] == 1
    assert _resends(sdk_log) == 0


def test_async_streamed_read_timeout_before_headers_is_resent(emu, sdk_log):
    """sock_read=request_timeout raises SocketTimeoutError, a ClientConnectionError, which the SDK
    resends: the server receives the same POST twice."""
    emu.configure(stall_before_headers=STALL)

    async def main():
        async with _plain_aiohttp(emu) as s:
            return await async_attempt(s, _call(emu, request_timeout=T, **STREAM))

    outcome, took, _ = asyncio.run(main())
    assert isinstance(outcome, aiohttp.SocketTimeoutError), repr(outcome)
    assert isinstance(outcome, aiohttp.ClientConnectionError)
    assert emu.stats()["requests"] == 2
    assert _resends(sdk_log) == 1
    assert 2 * T * 0.8 < took < LONG, took


def test_async_streamed_mid_stream_stall_is_not_resent(emu, sdk_log):
    emu.configure(stall_mid_stream=STALL)

    async def main():
        async with _plain_aiohttp(emu) as s:
            return await async_attempt(s, _call(emu, request_timeout=T, **STREAM))

    outcome, took, chunks = asyncio.run(main())
    assert isinstance(outcome, aiohttp.SocketTimeoutError), repr(outcome)
    assert chunks == 1
    assert emu.stats()["requests"] == 1
    assert _resends(sdk_log) == 0


def test_async_not_streamed_tls_stall_ends_at_the_total_timeout(emu, sdk_log):
    emu.configure(tls_stall=True)

    async def main():
        async with _plain_aiohttp(emu) as s:
            return await async_attempt(s, _call(emu, request_timeout=T))

    outcome, took, _ = asyncio.run(main())
    assert type(outcome) is TimeoutError and 0.3 < took < LONG, (outcome, took)
    stats = emu.stats()
    assert (stats["tcp_connections"], stats["tls_handshakes"], stats["requests"]) == (1, 0, 0), stats
    assert _resends(sdk_log) == 0


@pytest.mark.slow
def test_async_streamed_call_has_no_connect_limit(emu):
    """ClientTimeout(total=None, sock_read=t) sets no connect limit at all, and sock_read only
    starts once the request is sent: a TLS handshake that never completes hangs the call. The
    control is the same call not streamed, which the total timeout ends."""
    emu.configure(tls_stall=True)

    async def main():
        async with _plain_aiohttp(emu) as s:
            streamed = await async_attempt(s, _call(emu, request_timeout=0.3, **STREAM), deadline=2.0)
            not_streamed = await async_attempt(s, _call(emu, request_timeout=0.3), deadline=2.0)
            return streamed, not_streamed

    (streamed, took, _), (control, _, _) = asyncio.run(main())
    assert streamed == "pending" and took >= 2.0, (streamed, took)
    assert type(control) is TimeoutError, repr(control)


@pytest.mark.slow
def test_sdk_default_aiohttp_session_streamed_call_has_no_connect_limit_either(emu):
    """Without session= the SDK's own aiohttp session gets the same per-request timeouts. Its
    certifi-only trust never matters here: the handshake never gets as far as the certificate."""
    emu.configure(tls_stall=True)

    async def main():
        try:
            streamed = await async_attempt(None, _call(emu, **STREAM), deadline=2.0)
            not_streamed = await async_attempt(None, _call(emu, request_timeout=T), deadline=2.0)
        finally:
            await dashscope.close_shared_aio_session()
        return streamed, not_streamed

    (streamed, took, _), (control, control_took, _) = asyncio.run(main())
    assert streamed == "pending" and took >= 2.0, (streamed, took)
    assert type(control) is TimeoutError and 0.3 < control_took < 2.0, (control, control_took)


# ---- sync: request_timeout becomes (t, t) --------------------------------------------------------


class RecordingAdapter(HTTPAdapter):
    """An ordinary HTTPAdapter that remembers the timeout each send() was given."""

    def __init__(self):
        super().__init__()
        self.timeouts = []

    def send(self, request, **kwargs):
        self.timeouts.append(kwargs.get("timeout"))
        return super().send(request, **kwargs)


def test_sync_request_timeout_is_passed_as_one_number_for_connect_and_read(emu):
    """requests turns a single number into (connect=t, read=t): a stalled TLS handshake and a
    stall before the headers both end after t."""
    with _plain_requests(emu) as s:
        adapter = RecordingAdapter()
        s.mount("https://", adapter)
        emu.configure(tls_stall=True)
        tls, tls_took, _ = sync_attempt(s, _call(emu, request_timeout=T))
        emu.configure(tls_stall=False, stall_before_headers=STALL)
        headers, headers_took, _ = sync_attempt(s, _call(emu, request_timeout=T))
        emu.configure(stall_before_headers=0.0)
        assert Generation.call(**_call(emu), session=s).status_code == 200
    assert adapter.timeouts == [T, T, 300], adapter.timeouts  # 300: DEFAULT_REQUEST_TIMEOUT_SECONDS
    assert isinstance(tls, requests.ReadTimeout) and 0.3 < tls_took < LONG, (tls, tls_took)
    assert isinstance(headers, requests.ReadTimeout) and 0.3 < headers_took < LONG, (headers, headers_took)


def test_sync_stalled_tls_handshake_is_a_read_timeout_and_not_resent(emu, sdk_log):
    emu.configure(tls_stall=True)
    with _plain_requests(emu) as s:
        outcome, took, _ = sync_attempt(s, _call(emu, request_timeout=T))
    assert isinstance(outcome, requests.ReadTimeout), repr(outcome)
    assert not isinstance(outcome, requests.ConnectionError)
    assert emu.stats()["tcp_connections"] == 1
    assert _resends(sdk_log) == 0


@pytest.fixture
def full_backlog():
    """A port on 127.0.0.1 where the TCP handshake never completes: a listener that never
    accepts, its accept queue already full, so the kernel drops further SYNs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            c.connect(("127.0.0.1", port))
        fillers.append(c)
    time.sleep(0.05)
    probe = socket.socket()
    probe.settimeout(0.2)
    try:
        with pytest.raises(TimeoutError):  # the premise: a connect here does not complete
            probe.connect(("127.0.0.1", port))
    finally:
        probe.close()
    yield port
    for c in fillers:
        c.close()
    listener.close()


def test_sync_tcp_connect_timeout_is_resent(emu, full_backlog, sdk_log, caplog):
    """ConnectTimeout is a requests.ConnectionError, so the SDK resends it: two connection
    attempts (urllib3 logs each) and about twice the timeout. Control: the same session without
    the SDK makes one attempt."""
    caplog.set_level(logging.DEBUG, logger="urllib3.connectionpool")
    base = f"https://127.0.0.1:{full_backlog}/api/v1"

    def attempts() -> int:
        return sum("Starting new HTTPS connection" in r.getMessage() for r in caplog.records)

    with _plain_requests(emu) as s:
        outcome, took, _ = sync_attempt(s, _call(emu, request_timeout=0.3, base_address=base))
        via_sdk = attempts()
        with pytest.raises(requests.ConnectTimeout):
            s.post(base + GEN, json=BODY, timeout=0.3)
        direct = attempts() - via_sdk
    assert isinstance(outcome, requests.ConnectTimeout) and isinstance(outcome, requests.ConnectionError)
    assert (via_sdk, direct) == (2, 1)
    assert _resends(sdk_log) == 1
    assert 0.5 < took < LONG, took


def test_sync_stall_before_headers_is_not_resent(emu, sdk_log):
    emu.configure(stall_before_headers=STALL)
    with _plain_requests(emu) as s:
        outcome, took, _ = sync_attempt(s, _call(emu, request_timeout=T))
    assert isinstance(outcome, requests.ReadTimeout) and 0.3 < took < LONG, (outcome, took)
    assert emu.stats()["requests"] == 1
    assert _resends(sdk_log) == 0


def test_sync_not_streamed_stall_mid_body_is_resent_after_the_server_answered(emu, sdk_log):
    """requests reads a non-streamed body inside session.post and reports a read timeout there as
    ConnectionError; the SDK resends it although the server had already started answering: the
    server receives the POST twice. A streamed body is read after session.post returned, so the
    same stall mid-stream is not resent."""
    emu.configure(stall_mid_stream=STALL)
    with _plain_requests(emu) as s:
        outcome, took, _ = sync_attempt(s, _call(emu, request_timeout=T))
        posts = emu.stats()["requests"]
        resends = _resends(sdk_log)
        emu.reset_stats()
        streamed, _, chunks = sync_attempt(s, _call(emu, request_timeout=T, **STREAM))
    assert type(outcome) is requests.ConnectionError and "Read timed out" in str(outcome), repr(outcome)
    assert (posts, resends) == (2, 1)
    assert 2 * T * 0.8 < took < LONG, took
    assert type(streamed) is requests.ConnectionError and chunks == 1, (streamed, chunks)
    assert emu.stats()["requests"] == 1
    assert _resends(sdk_log) == 1


# ---- trust ------------------------------------------------------------------------------------------


def test_requests_ca_bundle_overrides_session_verify_when_trust_env_is_on(emu, monkeypatch):
    """requests merges environment settings per request and the environment's CA bundle wins over
    session.verify. Pointing REQUESTS_CA_BUNDLE at certifi makes the emulator's CA untrusted."""
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    with requests.Session() as s:
        s.verify = emu.ca_path
        overridden, _, _ = sync_attempt(s, _call(emu))
        s.trust_env = False
        ignored, _, _ = sync_attempt(s, _call(emu))
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    with requests.Session() as s:
        s.verify = emu.ca_path
        unset, _, _ = sync_attempt(s, _call(emu))
    assert isinstance(overridden, requests.exceptions.SSLError), repr(overridden)
    assert (ignored, unset) == (200, 200)


def test_sdk_default_sync_session_follows_requests_ca_bundle_and_reuses(emu, monkeypatch):
    """The SDK's own sync session (no session=) is a plain requests.Session with trust_env on,
    shared by every call (2.x): REQUESTS_CA_BUNDLE decides what it trusts, and two calls go over
    one connection."""
    http_request = sys.modules["dashscope.api_entities.http_request"]
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    try:
        http_request.close_shared_sync_session()
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", emu.ca_path)
        first = Generation.call(**_call(emu)).status_code
        second = Generation.call(**_call(emu)).status_code
        connections = emu.stats()["tcp_connections"]
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
        http_request.close_shared_sync_session()
        with pytest.raises(requests.exceptions.SSLError):
            Generation.call(**_call(emu))
    finally:
        http_request.close_shared_sync_session()
    assert (first, second, connections) == (200, 200, 1)


def _run_script(code: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=full_env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.slow
def test_sdk_default_aiohttp_session_trusts_certifi_only(emu):
    """The SDK's shared aiohttp session uses ssl.create_default_context(cafile=certifi.where()):
    neither SSL_CERT_FILE nor REQUESTS_CA_BUNDLE makes it trust another CA. Control: in the same
    process aiohttp's own default context does follow SSL_CERT_FILE."""
    code = """
    import asyncio, os, aiohttp
    from dashscope import AioGeneration

    async def main():
        try:
            r = await AioGeneration.call(model="qwen-plus", prompt="hi", api_key=os.environ["EMU_KEY"],
                                         base_address=os.environ["EMU_BASE"])
            print("sdk", r.status_code)
        except aiohttp.ClientConnectorCertificateError:
            print("sdk certificate-error")
        import dashscope
        await dashscope.close_shared_aio_session()
        async with aiohttp.ClientSession() as s:
            async with s.post(os.environ["EMU_BASE"] + "/services/aigc/text-generation/generation",
                              json={"model": "qwen-plus", "input": {"prompt": "hi"}},
                              headers={"Authorization": "Bearer " + os.environ["EMU_KEY"]}) as r:
                print("aiohttp-default", r.status)

    asyncio.run(main())
    """
    ca = emu.ca_path
    done = _run_script(
        code, EMU_KEY=emu.api_key, EMU_BASE=emu.base_url, SSL_CERT_FILE=ca, REQUESTS_CA_BUNDLE=ca, DASHSCOPE_API_KEY=""
    )
    assert done.stdout.split("\n")[:2] == ["sdk certificate-error", "aiohttp-default 200"], (done.stdout, done.stderr)


# ---- the SDK's own aiohttp session: reuse and closing -------------------------------------------


@pytest.fixture(scope="module")
def plain_http_emulator():
    # Plain HTTP, so that the SDK's certifi-only default session can reach it.
    emu = emulator.start(shared=False, rtt_ms=5, tls="off")
    yield emu
    emu.stop()


@pytest.mark.slow
@pytest.mark.parametrize("close", [False, True], ids=["left-open", "closed"])
def test_sdk_default_aiohttp_session_reuses_and_must_be_closed(plain_http_emulator, close):
    """Two calls without session= share one connection (2.x keeps a session per event loop).
    Left open, the session is reported as "Unclosed client session" once asyncio.run has closed
    its loop; `await dashscope.close_shared_aio_session()` before the end prevents that."""
    emu = plain_http_emulator
    emu.reset_stats()
    code = f"""
    import asyncio, os
    import dashscope
    from dashscope import AioGeneration

    async def main():
        for _ in range(2):
            r = await AioGeneration.call(model="qwen-plus", prompt="hi", api_key=os.environ["EMU_KEY"],
                                         base_address=os.environ["EMU_BASE"])
            print(r.status_code)
        if {close!r}:
            await dashscope.close_shared_aio_session()

    asyncio.run(main())
    """
    done = _run_script(code, EMU_KEY=emu.api_key, EMU_BASE=emu.base_url, DASHSCOPE_API_KEY="")
    assert done.stdout.split() == ["200", "200"], (done.stdout, done.stderr)
    assert emu.stats()["tcp_connections"] == 1
    assert ("Unclosed client session" in done.stderr) is (not close), done.stderr


def test_close_shared_aio_session_is_exported_by_the_installed_sdk():
    assert dashscope.__version__.startswith("2.")
    assert asyncio.iscoroutinefunction(dashscope.close_shared_aio_session)
    assert callable(dashscope.close_shared_sync_session)


# ---- HTTP errors -----------------------------------------------------------------------------------


def test_a_429_response_carries_retry_after_in_headers_sync_and_async(emu, sdk_log):
    """The SDK returns HTTP errors as responses (no exception, no resend), and response.headers
    holds the server's headers, Retry-After included. It is a plain dict: the key is spelled as
    the server sent it."""
    emu.configure(rate_limit=1)
    with _plain_requests(emu) as s:
        ok = Generation.call(**_call(emu), session=s)
        limited = Generation.call(**_call(emu), session=s)

    async def main():
        async with _plain_aiohttp(emu) as s:
            return await AioGeneration.call(**_call(emu), session=s)

    limited_async = asyncio.run(main())
    assert ok.status_code == 200 and "Retry-After" not in ok.headers
    for r in (limited, limited_async):
        assert r.status_code == 429 and r.code == "Throttling.RateQuota" and r.output is None
        assert type(r.headers) is dict and r.headers.get("Retry-After") == "1", r.headers
    assert emu.stats()["requests"] == 3
    assert _resends(sdk_log) == 0
