"""NotebookSession, endpoints and the dashscope SDK on real sockets against the emulator."""

from __future__ import annotations

import asyncio
import gc
import importlib
import time

import aiohttp
import pytest
import requests
import trustme

import dashnb
from dashnb import _endpoint, _observe
from dashnb._config.pool import PoolConfig
from dashnb._session import manager as _session

dashscope = pytest.importorskip("dashscope")
from dashscope import AioGeneration, Generation  # noqa: E402

GEN = "/services/aigc/text-generation/generation"
BODY = {"model": "qwen-plus", "input": {"prompt": "hi"}, "parameters": {}}


@pytest.fixture
def sdk(emu):
    """The dashscope SDK pointed at the shared emulator."""
    _endpoint.use_endpoint(emu)
    return emu


def _sync_call(s_requests):
    r = Generation.call(model="qwen-plus", prompt="hello", session=s_requests)
    assert r.status_code == 200, r
    return r


# ---- connection reuse, counted by the server ------------------------------------------------


def test_shared_session_uses_one_connection_for_n_sync_calls(sdk, make_session):
    s = make_session(endpoint=sdk)
    for _ in range(8):
        _sync_call(s.requests)
    assert sdk.stats()["tcp_connections"] == 1
    st = s.stats()
    assert (st["connections_opened"], st["connections_reused"], st["requests"]) == (1, 7, 8)
    assert st["sync"]["requests"] == 8 and st["async"]["requests"] == 0


def test_a_session_per_call_opens_n_connections(sdk, make_session):
    for _ in range(5):
        s = make_session(endpoint=sdk)
        _sync_call(s.requests)
        s.close()
    assert sdk.stats()["tcp_connections"] == 5


def test_async_calls_share_the_pool(sdk, make_session):
    s = make_session(
        PoolConfig(connection_pool_size=4, maximum_async_requests=4, maximum_async_requests_per_host=4), endpoint=sdk
    )

    async def main():
        for _ in range(3):  # sequential: one connection
            r = await AioGeneration.call(model="qwen-plus", prompt="hi", session=s.aiohttp)
            assert r.status_code == 200
        rs = await asyncio.gather(
            *(AioGeneration.call(model="qwen-plus", prompt="hi", session=s.aiohttp) for _ in range(12))
        )
        assert all(r.status_code == 200 for r in rs)
        await s.__aexit__(None, None, None)

    asyncio.run(main())
    stats = sdk.stats()
    assert stats["requests"] == 15
    assert 1 <= stats["tcp_connections"] <= 4  # maximum_async_requests (the Dispatcher's limit) caps it
    assert stats["peak_open_connections"] <= 4


def test_async_burst_beyond_the_pool_churns_instead_of_waiting(emulator_factory, make_session):
    """As in OkHttp: connectionPoolSize caps idle connections kept, not connections open. Pool 4,
    maximumAsyncRequests 32, 16 calls at once: 16 run at once on 16 connections, nobody waits,
    and 4 connections are left open afterwards."""
    emu = emulator_factory(rtt_ms=10, ttfb_ms=200)
    _endpoint.use_endpoint(emu)
    from dashnb._config.pool import PoolConfigWarning

    with pytest.warns(PoolConfigWarning):
        cfg = PoolConfig(connection_pool_size=4)
    s = make_session(cfg, endpoint=emu)

    async def main():
        samples = []

        async def one():
            with _observe.call_scope() as rec:
                r = await AioGeneration.call(model="qwen-plus", prompt="hi", session=s.aiohttp)
            assert r.status_code == 200
            samples.append(rec.snapshot())

        await asyncio.gather(*(one() for _ in range(16)))
        during = emu.stats()
        deadline = time.monotonic() + 3
        while emu.stats()["open_connections"] > 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # the surplus closes cross the emulated network
        await asyncio.sleep(0.1)  # and nothing more closes after that
        after = emu.stats()
        st = s.stats()["async"]
        await s.__aexit__(None, None, None)
        return samples, during, after, st

    samples, during, after, st = asyncio.run(main())
    assert (during["tcp_connections"], during["peak_open_connections"], during["requests"]) == (16, 16, 16)
    assert after["open_connections"] == 4
    assert all(x.queued_s == 0 for x in samples)
    assert (st["connections_opened"], st["connections_open"], st["queued"], st["in_flight"]) == (16, 4, 0, 0)


def test_streamed_sdk_call_reuses_the_connection(sdk, make_session):
    s = make_session(endpoint=sdk)

    async def main():
        for _ in range(3):
            chunks = [
                c
                async for c in await AioGeneration.call(model="qwen-plus", prompt="hi", stream=True, session=s.aiohttp)
            ]
            assert chunks and all(c.status_code == 200 for c in chunks)
        assert s.stats()["async"]["in_flight"] == 0

    asyncio.run(main())
    assert sdk.stats()["tcp_connections"] == 1


def test_call_scope_reports_reuse_for_sdk_calls(sdk, make_session):
    s = make_session(endpoint=sdk)
    samples = []
    for _ in range(2):
        with _observe.call_scope() as rec:
            _sync_call(s.requests)
        samples.append(rec.snapshot())
    assert [x.reused for x in samples] == [False, True]
    assert samples[0].tls_s is not None and samples[1].connection_id == samples[0].connection_id


# ---- timeouts -------------------------------------------------------------------------------


def _within(elapsed, target):
    # The limit ended the call: not before it (less a timer's slack), and long before the
    # emulator's stall would have (30 s; the TLS stall never ends). A busy machine only adds time.
    assert target * 0.8 <= elapsed < target + 10, (elapsed, target)


def test_connect_timeout_fires_on_a_stalled_tls_handshake(emulator_factory, make_session):
    emu = emulator_factory(rtt_ms=0, tls_stall=True)
    s = make_session(PoolConfig(connect_timeout=0.5), endpoint=emu)
    t0 = time.perf_counter()
    # urllib3 reports a TLS handshake that times out as a *read* timeout, though the limit in
    # force is the connect timeout (the TCP connect itself succeeded).
    with pytest.raises(requests.exceptions.ReadTimeout, match=r"read timeout=0\.5"):
        s.requests.post(emu.base_url + GEN, json=BODY, headers={"Authorization": f"Bearer {emu.api_key}"})
    _within(time.perf_counter() - t0, 0.5)

    async def main():
        t0 = time.perf_counter()
        with pytest.raises(aiohttp.ConnectionTimeoutError):
            await s.aiohttp.post(
                emu.base_url + GEN,
                json=BODY,
                headers={"Authorization": f"Bearer {emu.api_key}"},
                timeout=aiohttp.ClientTimeout(total=300),
            )
        return time.perf_counter() - t0

    _within(asyncio.run(main()), 0.5)


def test_stalled_handshake_through_the_sdk(emulator_factory, make_session):
    # Sync: urllib3 raises ReadTimeout for the stalled handshake, which the SDK does not retry,
    # so one attempt. Async: ConnectionTimeoutError is a ClientConnectionError, which the SDK
    # retries once, so two attempts (documented in dashnb._transport.rules).
    emu = emulator_factory(rtt_ms=0, tls_stall=True)
    _endpoint.use_endpoint(emu)
    s = make_session(PoolConfig(connect_timeout=0.4), endpoint=emu)
    t0 = time.perf_counter()
    with pytest.raises(requests.exceptions.ReadTimeout):
        Generation.call(model="qwen-plus", prompt="hi", session=s.requests)
    _within(time.perf_counter() - t0, 0.4)

    async def main():
        t0 = time.perf_counter()
        with pytest.raises(aiohttp.ConnectionTimeoutError):
            await AioGeneration.call(model="qwen-plus", prompt="hi", session=s.aiohttp)
        return time.perf_counter() - t0

    _within(asyncio.run(main()), 0.8)
    assert emu.stats()["tcp_connections"] == 3


def test_read_timeout_fires_when_headers_stall(emulator_factory, make_session):
    emu = emulator_factory(rtt_ms=0, stall_before_headers=30.0)
    _endpoint.use_endpoint(emu)
    s = make_session(PoolConfig(read_timeout=0.5), endpoint=emu)
    t0 = time.perf_counter()
    with pytest.raises(requests.exceptions.ReadTimeout):  # not retried by the SDK
        Generation.call(model="qwen-plus", prompt="hi", session=s.requests)
    _within(time.perf_counter() - t0, 0.5)

    async def main():
        t0 = time.perf_counter()
        with pytest.raises(aiohttp.ServerTimeoutError):
            # the SDK's non-stream ClientTimeout(total=300) replaces the session timeout; the
            # config's sock_read must still hold
            await s.aiohttp.post(
                emu.base_url + GEN,
                json=BODY,
                headers={"Authorization": f"Bearer {emu.api_key}"},
                timeout=aiohttp.ClientTimeout(total=300),
            )
        return time.perf_counter() - t0

    _within(asyncio.run(main()), 0.5)


def test_sdk_request_timeout_still_tightens(emulator_factory, make_session):
    emu = emulator_factory(rtt_ms=0, stall_before_headers=30.0)
    _endpoint.use_endpoint(emu)
    s = make_session(PoolConfig(read_timeout=60), endpoint=emu)
    t0 = time.perf_counter()
    with pytest.raises(requests.exceptions.ReadTimeout):
        Generation.call(model="qwen-plus", prompt="hi", session=s.requests, request_timeout=0.5)
    _within(time.perf_counter() - t0, 0.5)


# ---- trust ----------------------------------------------------------------------------------


def test_requests_ca_bundle_does_not_change_trust(sdk, make_session, tmp_path, monkeypatch):
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other))
    s = make_session(endpoint=sdk)
    _sync_call(s.requests)


def test_an_untrusted_ca_fails(sdk, make_session, tmp_path):
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))

    class Impostor:  # the emulator's address, another CA
        label, base_url, compatible_base_url, api_key = "x", sdk.base_url, sdk.compatible_base_url, sdk.api_key
        ca_path, is_emulator = str(other), True

        def ssl_context(self):
            import ssl

            return ssl.create_default_context(cafile=self.ca_path)

    s = make_session(endpoint=Impostor())
    with pytest.raises(requests.exceptions.SSLError):
        Generation.call(model="qwen-plus", prompt="hi", session=s.requests)

    async def main():
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await AioGeneration.call(model="qwen-plus", prompt="hi", session=s.aiohttp)

    asyncio.run(main())


# ---- the registry and lifecycle -------------------------------------------------------------


def test_same_name_same_object_and_reconfigure_in_place(sdk, make_session):
    s = make_session(endpoint=sdk, name="registry-test")
    _sync_call(s.requests)
    assert _session.session(name="registry-test") is s
    assert _session.session(PoolConfig(), endpoint=sdk, name="registry-test") is s
    old_requests = s.requests
    assert sdk.stats()["tcp_connections"] == 1

    new = PoolConfig(connection_pool_size=4, maximum_async_requests=4, maximum_async_requests_per_host=4)
    assert _session.session(new, name="registry-test") is s
    assert s.config == new and s.requests is not old_requests
    assert s.requests.get_adapter("https://x/")._pool_maxsize == 4
    _sync_call(s.requests)
    assert sdk.stats()["tcp_connections"] == 2
    # the old pool was closed: the emulator sees its connection go
    deadline = time.monotonic() + 5
    while sdk.stats()["open_connections"] != 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sdk.stats()["open_connections"] == 1
    assert s.stats()["requests"] == 2  # counters carry over a reconfiguration


def test_reload_keeps_the_registry(sdk, make_session):
    s = make_session(endpoint=sdk, name="reload-test")
    importlib.reload(dashnb)
    assert _session.session(name="reload-test") is s
    importlib.reload(_session)
    assert _session.session(name="reload-test") is s


def test_aiohttp_outside_a_loop_says_what_to_do(sdk, make_session):
    s = make_session(endpoint=sdk)
    with pytest.raises(RuntimeError, match=r"dashnb\.run"):
        s.aiohttp


def test_asyncio_run_twice_gets_a_session_per_loop_without_warnings(sdk, make_session):
    s = make_session(endpoint=sdk)
    seen = []

    async def main():
        seen.append(s.aiohttp)
        r = await AioGeneration.call(model="qwen-plus", prompt="hi", session=s.aiohttp)
        assert r.status_code == 200

    asyncio.run(main())
    asyncio.run(main())
    assert seen[0] is not seen[1]
    assert seen[0].closed  # closed on its own loop as asyncio.run shut it down
    seen.clear()
    gc.collect()  # an "Unclosed client session" ResourceWarning would fail the test here
    assert sdk.stats()["tcp_connections"] == 2


def test_close_closes_everything_and_context_manager(sdk):
    with _session.NotebookSession(endpoint=sdk, name="cm") as s:
        _sync_call(s.requests)

        async def main():
            await AioGeneration.call(model="qwen-plus", prompt="hi", session=s.aiohttp)

        loop = asyncio.new_event_loop()
        loop.run_until_complete(main())
    assert s.closed
    aio = [e.session for e in s._aio.values()]
    assert aio == []  # handed over and closed on its (stopped) loop
    loop.close()
    deadline = time.monotonic() + 5
    while sdk.stats()["open_connections"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sdk.stats()["open_connections"] == 0
    with pytest.raises(RuntimeError, match="closed"):
        s.requests
    gc.collect()


def test_repr_never_shows_the_key(sdk, make_session):
    s = make_session(endpoint=sdk)
    _sync_call(s.requests)
    assert sdk.api_key not in repr(s) and sdk.api_key not in s._repr_html_()
    assert "1 requests" in repr(s) and "1 connections opened" in repr(s)


# ---- endpoints ------------------------------------------------------------------------------


def test_dashscope_endpoint_hides_the_key(monkeypatch):
    for var in ("DASHSCOPE_API_KEY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(var, raising=False)  # no CA bundle named: certifi (ca_path None)
    ep = _endpoint.DashScope("cn", api_key="sk-secret-123")
    assert ep.base_url == "https://dashscope.aliyuncs.com/api/v1"
    assert ep.compatible_base_url == "https://dashscope.aliyuncs.com/compatible-mode/v1"
    assert "sk-secret" not in repr(ep) and "<set>" in repr(ep)
    assert "sk-secret" not in ep._repr_html_()
    assert ep.api_key == "sk-secret-123" and ep.ca_path is None and not ep.is_emulator
    intl = _endpoint.DashScope()
    assert intl.base_url == "https://dashscope-intl.aliyuncs.com/api/v1"
    assert "<missing>" in repr(intl)
    with pytest.raises(_endpoint.MissingApiKeyError, match="DASHSCOPE_API_KEY"):
        intl.api_key
    with pytest.raises(ValueError):
        _endpoint.DashScope("eu")


def test_endpoint_picks_dashscope_when_a_key_is_set(monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-from-env")
    ep = _endpoint.endpoint()
    assert isinstance(ep, _endpoint.DashScope) and ep.api_key == "sk-from-env"
    assert "sk-from-env" not in repr(ep)
    monkeypatch.delenv("DASHSCOPE_API_KEY")
    ep = _endpoint.endpoint()
    assert ep.is_emulator and isinstance(ep, _endpoint.Endpoint)


def test_use_endpoint_points_the_sdk(emu):
    _endpoint.use_endpoint(emu)
    assert dashscope.base_http_api_url == emu.base_url and dashscope.api_key == emu.api_key
