"""_translate: PoolConfig -> requests adapter / aiohttp session, checked on real TLS sockets."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time

import aiohttp
import certifi
import pytest
import requests
import trustme
from aiohttp import web

from dashnb import _observe, _transport
from dashnb._config.pool import PoolConfig
from dashnb._transport import aiohttp as _translate_aiohttp
from dashnb._transport import rules as _translate

# ---- a small TLS server whose handlers the tests control ------------------------------------


class _Endpoint:
    """The attributes _translate needs from an endpoint, for a server made in this file."""

    is_emulator = False

    def __init__(self, ca_path: str | None) -> None:
        self.ca_path = ca_path

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_path or certifi.where())


class Server:
    """aiohttp.web over TLS on 127.0.0.1 in its own thread and loop; records request order.

    GET /slow?name=X&hold=S   answers after S seconds
    GET /stream?name=X        sends headers and one chunk, then the rest when release(X) is called
    """

    def __init__(self, tmp_path) -> None:
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self.ca_path = str(tmp_path / "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_path)
        self._server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self._server_ctx)
        self.arrivals: list[str] = []
        self.active = 0
        self.peak = 0
        self.active_by_host: dict[str, int] = {}
        self.peak_by_host: dict[str, int] = {}
        self._gates: dict[str, asyncio.Event] = {}
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/slow", self._slow)
        app.router.add_get("/stream", self._stream)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._server_ctx)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def _enter(self, request) -> str:
        name = request.query.get("name", "")
        host = request.host.split(":")[0]
        self.arrivals.append(name)
        self.active += 1
        self.peak = max(self.peak, self.active)
        self.active_by_host[host] = self.active_by_host.get(host, 0) + 1
        self.peak_by_host[host] = max(self.peak_by_host.get(host, 0), self.active_by_host[host])
        return host

    def _leave(self, host: str) -> None:
        self.active -= 1
        self.active_by_host[host] -= 1

    async def _slow(self, request):
        host = self._enter(request)
        try:
            await asyncio.sleep(float(request.query.get("hold", "0")))
            return web.Response(text="ok")
        finally:
            self._leave(host)

    async def _stream(self, request):
        host = self._enter(request)
        try:
            gate = self._gates.setdefault(request.query["name"], asyncio.Event())
            resp = web.StreamResponse()
            await resp.prepare(request)
            await resp.write(b"first ")
            await gate.wait()
            await resp.write(b"rest")
            await resp.write_eof()
            return resp
        finally:
            self._leave(host)

    def release(self, name: str) -> None:
        def go():
            self._gates.setdefault(name, asyncio.Event()).set()

        self._loop.call_soon_threadsafe(go)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}{path}"

    def endpoint(self) -> _Endpoint:
        return _Endpoint(self.ca_path)

    def stop(self) -> None:
        async def down():
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(down(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path)
    yield srv
    srv.stop()


# ---- timeout merge rules --------------------------------------------------------------------

CFG = PoolConfig(connect_timeout=10, read_timeout=60)


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        (None, (10.0, 60.0)),  # nothing from the caller: the config's pair
        (300, (10.0, 60.0)),  # the SDK's default request_timeout cannot loosen either
        (5, (5, 5)),  # request_timeout=5 tightens both
        (30, (10.0, 30)),
        ((2, None), (2, 60.0)),  # tuple parts tighten separately; None takes the config
        ((None, 120), (10.0, 60.0)),
    ],
)
def test_requests_timeout_merge_tighter_wins(caller, expected):
    assert _translate.merge_requests_timeout(caller, CFG) == expected


def test_requests_timeout_merge_passes_urllib3_timeout_objects_through():
    from urllib3.util import Timeout

    t = Timeout(connect=1, read=2)
    assert _translate.merge_requests_timeout(t, CFG) is t


def test_aiohttp_timeout_merge_restores_socket_limits_the_sdk_drops():
    # What AioGeneration.call passes for a non-stream call: total only.
    sdk = aiohttp.ClientTimeout(total=300)
    merged = _translate_aiohttp.merge_aiohttp_timeout(sdk, CFG)
    assert (merged.total, merged.connect, merged.sock_connect, merged.sock_read) == (300, None, 10.0, 60.0)
    # ... and for a stream: sock_read only; a tighter caller value wins.
    stream = _translate_aiohttp.merge_aiohttp_timeout(aiohttp.ClientTimeout(total=None, sock_read=5), CFG)
    assert (stream.total, stream.sock_connect, stream.sock_read) == (None, 10.0, 5)


# ---- requests: adapter settings and trust ---------------------------------------------------


def test_requests_session_settings():
    cfg = PoolConfig(
        connection_pool_size=7,
        maximum_async_requests=7,
        maximum_async_requests_per_host=7,
        connect_timeout=3,
        read_timeout=9,
        connection_idle_timeout=4,
    )
    s = _transport.build_requests_session(cfg, _Endpoint("/some/ca.pem"))
    try:
        adapter = s.get_adapter("https://example.invalid/")
        assert adapter is s.get_adapter("http://example.invalid/")
        assert adapter._pool_maxsize == 7
        assert adapter._pool_block is False
        assert adapter.max_retries.total == 0
        assert s.trust_env is False
        assert s.verify == "/some/ca.pem"
        pool = adapter.poolmanager.connection_from_url("https://example.invalid/")
        assert pool.pool.maxsize == 7
        assert pool._dashnb_idle_timeout == 4
    finally:
        s.close()
    # The real service: certifi's bundle, named explicitly (not left to the environment).
    s = _transport.build_requests_session(cfg, _Endpoint(None))
    assert s.verify == certifi.where()
    s.close()


def test_requests_default_timeout_applies_when_caller_passes_none(server):
    # The server holds the answer 2 s; read_timeout 0.5 s must cut it without any timeout= argument.
    cfg = PoolConfig(read_timeout=0.5)
    with _transport.build_requests_session(cfg, server.endpoint()) as s:
        t0 = time.perf_counter()
        with pytest.raises(requests.exceptions.ReadTimeout):
            s.get(server.url("/slow?hold=2"))
        assert 0.4 < time.perf_counter() - t0 < 0.6
        # a caller's shorter timeout wins, the second time too (the adapter keeps what it merged)
        for _ in range(2):
            t0 = time.perf_counter()
            with pytest.raises(requests.exceptions.ReadTimeout):
                s.get(server.url("/slow?hold=2"), timeout=0.2)
            assert 0.15 < time.perf_counter() - t0 < 0.4
        with pytest.raises(requests.exceptions.ReadTimeout):  # and a (connect, read) tuple
            s.get(server.url("/slow?hold=2"), timeout=(None, 0.2))


def test_requests_ca_bundle_env_cannot_change_trust(server, tmp_path, monkeypatch):
    other = trustme.CA()
    other_path = str(tmp_path / "other.pem")
    other.cert_pem.write_to_path(other_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", other_path)
    monkeypatch.setenv("CURL_CA_BUNDLE", other_path)
    with _transport.build_requests_session(PoolConfig(), server.endpoint()) as s:
        assert s.get(server.url("/slow")).text == "ok"
    # negative control: a session trusting the other CA fails
    with _transport.build_requests_session(PoolConfig(), _Endpoint(other_path)) as s:
        with pytest.raises(requests.exceptions.SSLError):
            s.get(server.url("/slow"))


def test_requests_pool_keeps_pool_size_connections_and_counts_reuse(server):
    obs = _observe.Observer()
    cfg = PoolConfig(connection_pool_size=2, maximum_async_requests=2, maximum_async_requests_per_host=2)
    with _transport.build_requests_session(cfg, server.endpoint(), obs) as s:
        # 4 at once from threads: 4 connections open (pool_block=False), only 2 kept afterwards.
        barrier = threading.Barrier(4)

        def call():
            barrier.wait()
            assert s.get(server.url("/slow?hold=0.3")).text == "ok"

        threads = [threading.Thread(target=call) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        st = obs.snapshot().sync
        assert st.connections_opened == 4
        assert st.connections_open == 2  # two discarded: the pool keeps pool_size
        assert st.in_flight == 0
        for _ in range(3):
            s.get(server.url("/slow"))
        st = obs.snapshot().sync
        assert st.connections_opened == 4 and st.connections_reused == 3 and st.requests == 7


def test_requests_idle_connections_are_discarded(server):
    obs = _observe.Observer()
    with _transport.build_requests_session(PoolConfig(connection_idle_timeout=0.3), server.endpoint(), obs) as s:
        s.get(server.url("/slow"))
        s.get(server.url("/slow"))
        assert obs.snapshot().sync.connections_opened == 1
        time.sleep(0.5)  # let the pooled connection sit idle longer than connection_idle_timeout
        with _observe.call_scope() as rec:
            s.get(server.url("/slow"))
        assert rec.reused is False
        assert obs.snapshot().sync.connections_opened == 2
        assert obs.snapshot().sync.connections_closed == 1


def test_requests_call_record_times_tcp_and_tls(server):
    with _transport.build_requests_session(PoolConfig(), server.endpoint()) as s:
        with _observe.call_scope() as first:
            s.get(server.url("/slow"))
        with _observe.call_scope() as second:
            s.get(server.url("/slow"))
    a, b = first.snapshot(), second.snapshot()
    assert a.reused is False and a.connect_s > 0 and a.tls_s > 0 and a.ttfb_s > 0
    assert b.reused is True and b.connect_s is None and b.connection_id == a.connection_id
    assert b.requests_on_connection == 2
    with pytest.raises(AttributeError):
        a.reused = True  # samples are frozen


# ---- aiohttp: connector, timeouts, dispatcher limits -----------------------------------------


def test_aiohttp_session_settings():
    cfg = PoolConfig(
        connection_pool_size=12,
        maximum_async_requests=10,
        maximum_async_requests_per_host=6,
        connection_idle_timeout=42,
        connect_timeout=3,
        read_timeout=9,
    )

    async def main():
        s = _transport.build_aiohttp_session(cfg, _Endpoint(None))
        try:
            c = s.connector
            # limit / limit_per_host are the Dispatcher's; the pool size caps idle connections only.
            assert (c.limit, c.limit_per_host, c.max_idle) == (10, 6, 12)
            assert c._keepalive_timeout == 42
            assert (s.timeout.total, s.timeout.connect, s.timeout.sock_connect, s.timeout.sock_read) == (
                None,
                None,
                3,
                9,
            )
            assert s.trust_env is False
        finally:
            await s.close()

    asyncio.run(main())


@pytest.mark.parametrize(("given", "used"), [(1.5, 1.0), (300, 300.0), (1, 1.0), (0.5, 0.5)])
def test_idle_timeout_is_whole_seconds_as_the_java_sdk_passes_it(given, used):
    cfg = PoolConfig(connection_idle_timeout=given)
    assert _translate.java_idle_timeout(cfg) == used

    async def main():
        s = _transport.build_aiohttp_session(cfg, _Endpoint(None))
        try:
            return s.connector._keepalive_timeout
        finally:
            await s.close()

    assert asyncio.run(main()) == used


def test_idle_connections_beyond_the_pool_size_close_longest_idle_first(server):
    """Pool size 1, two hosts: the second host's connection coming back pushes out the first's."""
    cfg = PoolConfig(connection_pool_size=1, maximum_async_requests=1, maximum_async_requests_per_host=1)
    obs = _observe.Observer()

    async def main():
        async with _transport.build_aiohttp_session(cfg, server.endpoint(), obs) as s:
            conns = s.connector._conns  # aiohttp's idle pool: key -> deque of (protocol, released at)

            async def get(host):
                async with s.get(server.url("/slow?name=x&hold=0", host=host)) as r:
                    assert await r.text() == "ok"

            await get("127.0.0.1")
            first = [p for d in conns.values() for p, _ in d]
            assert len(first) == 1 and obs.snapshot().async_.connections_open == 1
            await get("localhost")
            kept = [(k.host, p) for k, d in conns.items() for p, _ in d]
            assert [h for h, _ in kept] == ["localhost"]
            assert not first[0].is_connected()  # closed, not just forgotten
            assert obs.snapshot().async_.connections_open == 1
            await get("localhost")  # the kept one is reused
            assert obs.snapshot().async_.connections_opened == 2

    asyncio.run(main())


def test_aiohttp_session_needs_a_running_loop():
    with pytest.raises(RuntimeError):
        _transport.build_aiohttp_session(PoolConfig(), _Endpoint(None))


def test_request_queue_caps_global_concurrency_in_order(server):
    cfg = PoolConfig(connection_pool_size=8, maximum_async_requests=2, maximum_async_requests_per_host=2)
    obs = _observe.Observer()

    async def main():
        async with _transport.build_aiohttp_session(cfg, server.endpoint(), obs) as s:

            async def one(i):
                async with s.get(server.url(f"/slow?name={i}&hold=0.15")) as r:
                    return await r.text()

            tasks = []
            for i in range(6):
                tasks.append(asyncio.create_task(one(i)))
                await asyncio.sleep(0)  # start them in a known order
            assert await asyncio.gather(*tasks) == ["ok"] * 6

    asyncio.run(main())
    assert server.peak == 2
    assert server.arrivals == [str(i) for i in range(6)]
    st = obs.snapshot().async_
    assert st.requests == 6 and st.in_flight == 0 and st.queued == 0


def test_request_queue_per_host_limit_does_not_block_other_hosts(server):
    cfg = PoolConfig(connection_pool_size=8, maximum_async_requests=4, maximum_async_requests_per_host=1)

    async def main():
        async with _transport.build_aiohttp_session(cfg, server.endpoint()) as s:

            async def one(host, i):
                async with s.get(server.url(f"/slow?name={host}{i}&hold=0.2", host=host)) as r:
                    return await r.text()

            t0 = time.perf_counter()
            await asyncio.gather(*(one(h, i) for i in range(3) for h in ("127.0.0.1", "localhost")))
            return time.perf_counter() - t0

    elapsed = asyncio.run(main())
    assert server.peak_by_host == {"127.0.0.1": 1, "localhost": 1}
    assert server.peak == 2
    # 3 rounds of 0.2 s; the peaks above show the two hosts side by side
    assert 0.55 < elapsed < 5


def test_streamed_body_keeps_its_slot_until_released(server):
    cfg = PoolConfig(connection_pool_size=4, maximum_async_requests=1, maximum_async_requests_per_host=1)
    obs = _observe.Observer()

    async def main():
        async with _transport.build_aiohttp_session(cfg, server.endpoint(), obs) as s:
            first = await s.get(server.url("/stream?name=A"))
            assert await first.content.readexactly(6) == b"first "
            second = asyncio.create_task(s.get(server.url("/slow?name=B")))
            await asyncio.sleep(0.3)  # give B every chance to start if the slot were free
            assert server.arrivals == ["A"]  # headers of A arrived, its body is not done: B waits
            assert obs.snapshot().async_.queued == 1
            server.release("A")
            assert await first.read() == b"rest"
            first.release()
            r = await asyncio.wait_for(second, 5)
            assert await r.text() == "ok"
            r.release()

    asyncio.run(main())
    assert server.arrivals == ["A", "B"]


def test_queue_wait_is_outside_socket_timeouts(server):
    # One slot; the first request holds it 0.6 s. The second waits that long in the queue,
    # which must not count against its 0.4 s sock_read (as in OkHttp's Dispatcher).
    cfg = PoolConfig(
        connection_pool_size=2,
        maximum_async_requests=1,
        maximum_async_requests_per_host=1,
        read_timeout=0.4,
        connect_timeout=0.4,
    )
    obs = _observe.Observer()

    async def main():
        async with _transport.build_aiohttp_session(cfg, server.endpoint(), obs) as s:

            async def one(name, hold):
                with _observe.call_scope() as rec:
                    async with s.get(server.url(f"/slow?name={name}&hold={hold}")) as r:
                        await r.text()
                return rec.snapshot()

            first = asyncio.create_task(one("A", 0.3))
            await asyncio.sleep(0)
            second = asyncio.create_task(one("B", 0.3))
            return await first, await second

    a, b = asyncio.run(main())
    assert b.queued_s > 0.25 and a.queued_s < 0.05


def test_aiohttp_read_timeout_survives_the_sdks_total_only_timeout(server):
    cfg = PoolConfig(read_timeout=0.4)

    async def main():
        async with _transport.build_aiohttp_session(cfg, server.endpoint()) as s:
            t0 = time.perf_counter()
            with pytest.raises(aiohttp.ServerTimeoutError):
                # what AioGeneration.call passes for a non-stream call
                await s.get(server.url("/slow?hold=3"), timeout=aiohttp.ClientTimeout(total=300))
            return time.perf_counter() - t0

    assert 0.35 < asyncio.run(main()) < 0.6


def test_aiohttp_records_reuse_and_connection_ids(server):
    async def main():
        async with _transport.build_aiohttp_session(PoolConfig(), server.endpoint()) as s:
            out = []
            for _ in range(2):
                with _observe.call_scope() as rec:
                    async with s.get(server.url("/slow")) as r:
                        await r.text()
                out.append(rec.snapshot())
            return out

    a, b = asyncio.run(main())
    assert a.reused is False and a.connect_s > 0 and a.tls_s is None and a.ttfb_s > 0
    assert b.reused is True and b.connection_id == a.connection_id


def test_aiohttp_failures_are_counted_once_and_release_everything(server):
    # A failure at each step a request goes through: reading the headers (sock_read), and
    # connecting (a port nobody listens on). Each counts one error on the call's record, leaves
    # nothing in flight or queued, and lets wait_idle return.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    obs = _observe.Observer()

    async def main():
        async with _transport.build_aiohttp_session(PoolConfig(read_timeout=0.3), server.endpoint(), obs) as s:
            with _observe.call_scope() as stalled:
                with pytest.raises(aiohttp.ServerTimeoutError):
                    await s.get(server.url("/slow?hold=2"))
            with _observe.call_scope() as refused:
                with pytest.raises(aiohttp.ClientConnectorError):
                    await s.get(f"https://127.0.0.1:{closed_port}/")
            await asyncio.wait_for(_transport.wait_idle(s), 1)
            async with s.get(server.url("/slow")) as r:  # the session still works
                assert await r.text() == "ok"
        return stalled.snapshot(), refused.snapshot()

    stalled, refused = asyncio.run(main())
    st = obs.snapshot().async_
    assert (st.errors, st.in_flight, st.queued, st.requests) == (2, 0, 0, 2)
    assert stalled.error is not None and stalled.attempts == 1 and stalled.reused is False
    assert refused.error is not None and refused.attempts == 1 and refused.connection_id is None
    assert stalled.ttfb_s is None  # no headers ever arrived


def test_aiohttp_total_no_longer_than_read_timeout_still_bounds_the_call(server):
    # When the request's total is no longer than the config's read_timeout, the config's sock_read
    # is not armed (it could never fire first); the call is still cut at the total.
    cfg = PoolConfig(read_timeout=0.5)

    async def main():
        async with _transport.build_aiohttp_session(cfg, server.endpoint()) as s:
            armed = []
            for total in (0.4, 1.0):  # the socket read timeout the response is read under
                name = f"T{total}"  # a body held back, so the response still holds its connection
                async with s.get(server.url(f"/stream?name={name}"), timeout=aiohttp.ClientTimeout(total=total)) as r:
                    armed.append(r.connection.protocol.read_timeout)
                    server.release(name)
                    assert await r.read() == b"first rest"
            t0 = time.perf_counter()
            with pytest.raises(asyncio.TimeoutError):
                await s.get(server.url("/slow?hold=3"), timeout=aiohttp.ClientTimeout(total=0.3))
            return armed, time.perf_counter() - t0

    armed, took = asyncio.run(main())
    assert armed == [None, 0.5]
    assert 0.25 < took < 2.0  # the total, not the 3 s hold, ended it


def test_requests_sweep_bound_still_finds_a_younger_idle_connection(server):
    # The pool skips its idle sweep until a connection may have expired. A sweep that closes an
    # old connection must still leave the bound at the younger one's expiry, so that it too is
    # closed, not reused, once idle too long.
    obs = _observe.Observer()
    cfg = PoolConfig(connection_idle_timeout=0.4)
    with _transport.build_requests_session(cfg, server.endpoint(), obs) as s:
        s.get(server.url("/slow"))  # builds the pool (one connection, back in it)
        manager = s.get_adapter(server.url("/")).poolmanager
        (pool,) = [manager.pools[key] for key in manager.pools.keys()]  # the one that call used
        conns = [pool._get_conn() for _ in range(3)]
        for c in conns[1:]:  # one request each: urllib3 drops a connection with unread bytes
            c.request("GET", "/slow")  # (a fresh TLS 1.3 one has its session tickets pending)
            assert c.getresponse().data == b"ok"
        old, young, kept = conns
        pool._put_conn(old)
        time.sleep(0.3)  # idle time for `old` (the thing under test)
        pool._put_conn(young)
        pool._put_conn(kept)
        time.sleep(0.2)  # old idle 0.5 s > 0.4, young and kept 0.2 s
        assert pool._get_conn() is kept  # LIFO; this checkout swept `old` away
        assert old.is_closed and not young.is_closed
        closed_first = obs.snapshot().sync.connections_closed
        time.sleep(0.4)  # young idle 0.6 s > 0.4
        again = pool._get_conn()
        assert again is young and young.is_closed  # closed before being handed out
        assert obs.snapshot().sync.connections_closed == closed_first + 1
        pool._put_conn(again)
        pool._put_conn(kept)


def test_aiohttp_request_released_after_its_session_closed_leaves_flight(server):
    # A response still being read when its session closes: the connector is closed by the time
    # the response is released, and the request must still stop counting as in flight.
    obs = _observe.Observer()

    async def main():
        s = _transport.build_aiohttp_session(PoolConfig(), server.endpoint(), obs)
        r = await s.get(server.url("/stream?name=late"))
        assert await r.content.readexactly(6) == b"first "
        busy = obs.snapshot().async_.in_flight
        await s.close()
        r.release()
        server.release("late")
        return busy

    assert asyncio.run(main()) == 1
    st = obs.snapshot().async_
    assert (st.in_flight, st.requests, st.errors) == (0, 1, 0)


def test_aiohttp_call_cancelled_while_queued_is_a_failure_and_leaves(server):
    # One slot, held 0.4 s; a second call waits for it and is cancelled while waiting. It counts
    # one error, leaves the queue, and does not keep wait_idle waiting once the first is done.
    cfg = PoolConfig(connection_pool_size=2, maximum_async_requests=1, maximum_async_requests_per_host=1)
    obs = _observe.Observer()

    async def main():
        async with _transport.build_aiohttp_session(cfg, server.endpoint(), obs) as s:

            async def one(name, hold):
                async with s.get(server.url(f"/slow?name={name}&hold={hold}")) as r:
                    return await r.text()

            first = asyncio.create_task(one("A", 0.4))
            await asyncio.sleep(0)
            second = asyncio.create_task(one("B", 0))
            while obs.snapshot().async_.queued == 0:
                await asyncio.sleep(0.01)
            second.cancel()
            with pytest.raises(asyncio.CancelledError):
                await second
            waiting = obs.snapshot().async_
            assert await first == "ok"
            await asyncio.wait_for(_transport.wait_idle(s), 1)
            return waiting

    waiting = asyncio.run(main())
    assert (waiting.queued, waiting.errors, waiting.in_flight) == (0, 1, 1)
    st = obs.snapshot().async_
    assert (st.requests, st.errors, st.in_flight, st.queued) == (1, 1, 0, 0)
    assert server.arrivals == ["A"]


def test_aiohttp_session_counts_outlive_the_session(server):
    # A session keeps its request counters itself (written without the observer's lock); once
    # the session is gone they are folded into the observer's, so nothing it counted is lost.
    import gc

    obs = _observe.Observer()

    async def main():
        async with _transport.build_aiohttp_session(PoolConfig(), server.endpoint(), obs) as s:
            for _ in range(3):
                async with s.get(server.url("/slow")) as r:
                    assert await r.text() == "ok"
            live = obs.snapshot().async_
        return live

    for run in range(2):  # two event loops, two sessions on one observer
        live = asyncio.run(main())
        assert (live.requests, live.connections_reused, live.in_flight) == (3 * run + 3, 2 * run + 2, 0)
    gc.collect()
    st = obs.snapshot().async_
    assert (st.requests, st.connections_reused, st.in_flight, st.connections_opened) == (6, 4, 0, 2)
    assert obs._own["async"] == {}  # both sessions' counters folded in, none left to add up
