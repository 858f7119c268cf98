"""The httpx generation: the mapping, dashnb's httpx clients, and streams that keep their connection.

The stream tests run the official SDKs (openai, dashscope 2.x) against the emulator, and the
drain's edge cases against a small real TLS server that ends its chunked body late, never, or
after trickling keep-alive comments.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
import warnings

import pytest

httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")
dashscope = pytest.importorskip("dashscope")

from dashnb import PoolConfig, PoolConfigWarning  # noqa: E402
from dashnb._transport import httpx as T  # noqa: E402

MSGS = [{"role": "user", "content": "hi"}]


# -- mapping -------------------------------------------------------------------------------------


def test_limits_and_timeout_follow_the_config():
    cfg = PoolConfig(
        connect_timeout=3,
        read_timeout=30,
        write_timeout=7,
        connection_idle_timeout=90.5,
        connection_pool_size=8,
        maximum_async_requests=8,
        maximum_async_requests_per_host=4,
    )
    lim = T.httpx_limits(cfg, is_async=True)
    assert (lim.max_connections, lim.max_keepalive_connections, lim.keepalive_expiry) == (4, 8, 90.0)
    assert T.httpx_limits(cfg, is_async=False).max_connections is None  # blocking calls bypass the Dispatcher
    assert T.httpx_timeout(cfg) == httpx.Timeout(connect=3, read=30, write=7, pool=None)


def test_caller_timeout_merges_tighter_wins():
    merged = T._merge_timeout({"connect": 5.0, "read": 600.0, "write": 1.0, "pool": 600.0}, PoolConfig(read_timeout=20))
    assert merged == {"connect": 5.0, "read": 20.0, "write": 1.0, "pool": 600.0}


def test_from_v2_defaults_env_and_snippet_round_trip():
    with pytest.warns(
        PoolConfigWarning, match="maximumAsyncRequests \\(100\\) is larger than connectionPoolSize \\(20\\)"
    ):
        cfg = PoolConfig.from_v2({})
    assert (cfg.connection_idle_timeout, cfg.connection_pool_size, cfg.maximum_async_requests) == (5.0, 20, 100)
    assert (cfg.connect_timeout, cfg.read_timeout, cfg.write_timeout) == (5.0, 300.0, 300.0)
    env = {
        "DASHSCOPE_HTTP_MAX_CONNECTIONS": "16",
        "DASHSCOPE_HTTP_MAX_KEEPALIVE_CONNECTIONS": "16",
        "DASHSCOPE_HTTP_KEEPALIVE_EXPIRY": "120",
        "DASHSCOPE_TIMEOUT": "60",
        "DASHSCOPE_API_KEY": "not a pool setting",
    }
    cfg = PoolConfig.from_v2(env)
    assert (cfg.maximum_async_requests, cfg.connection_pool_size, cfg.connection_idle_timeout) == (16, 16, 120.0)
    lines = dict(line.split("=", 1) for line in cfg.v2_snippet().splitlines() if line.startswith("DASHSCOPE_"))
    assert PoolConfig.from_v2(lines) == cfg
    with pytest.raises(ValueError, match="expects an integer"):
        PoolConfig.from_v2({"DASHSCOPE_HTTP_MAX_CONNECTIONS": "many"})
    with pytest.raises(ValueError, match="unknown dashscope v2 setting"):
        PoolConfig.from_v2({"http_max_conections": 3})


def test_from_v2_reads_a_real_client(monkeypatch, emu):
    monkeypatch.setenv("DASHSCOPE_HTTP_KEEPALIVE_EXPIRY", "30")
    monkeypatch.setenv("DASHSCOPE_HTTP_MAX_KEEPALIVE_CONNECTIONS", "100")
    with dashscope.Client(api_key=emu.api_key, base_url=emu.base_url) as client:
        cfg = PoolConfig.from_v2(client)
    assert (cfg.connection_idle_timeout, cfg.connection_pool_size, cfg.connect_timeout) == (30.0, 100, 5.0)


# -- sessions ------------------------------------------------------------------------------------


def _stream_openai(client, n=10):
    for _ in range(n):
        for _chunk in client.chat.completions.create(model="qwen-plus", messages=MSGS, stream=True):
            pass


def test_plain_openai_client_drops_streamed_connections(emu):
    """The upstream behaviour dashnb fixes: a negative control for the next test."""
    with httpx.Client(verify=emu.ssl_context()) as plain:
        client = openai.OpenAI(api_key=emu.api_key, base_url=emu.compatible_base_url, http_client=plain)
        _stream_openai(client)
    assert emu.stats()["tcp_connections"] == 10


def test_session_httpx_keeps_streamed_connections_and_counts_them(emu, make_session):
    s = make_session(endpoint=emu)
    client = openai.OpenAI(api_key=emu.api_key, base_url=emu.compatible_base_url, http_client=s.httpx)
    _stream_openai(client)
    for _ in range(10):
        client.chat.completions.create(model="qwen-plus", messages=MSGS)
    st = s.stats()["sync"]
    assert emu.stats()["tcp_connections"] == 1
    assert (st["connections_opened"], st["connections_reused"], st["requests"], st["in_flight"]) == (1, 19, 20, 0)
    assert s.httpx is s.httpx  # one client per session, re-run cells reuse it


def test_session_httpx_serves_the_v2_client_with_the_endpoint_key(emu, make_session):
    s = make_session(endpoint=emu)
    client = dashscope.Client(base_url=emu.base_url, http_client=s.httpx)
    for stream in (False, True):
        for _ in range(5):
            reply = client.chat.completions.create(model="qwen-plus", messages=MSGS, stream=stream)
            if stream:
                for _chunk in reply:
                    pass
    assert emu.stats()["tcp_connections"] == 1
    assert emu.stats()["statuses"] == {"200": 10}
    # The key goes to the endpoint only: another origin gets no Authorization header.
    request = s.httpx.build_request("GET", "https://example.invalid/x")
    flow = s.httpx._auth.sync_auth_flow(request)  # type: ignore[attr-defined]
    assert "authorization" not in next(flow).headers
    assert emu.api_key not in repr(s.httpx._auth)  # type: ignore[attr-defined]


def test_session_httpx_async_per_loop_and_closed_with_session(emu, make_session):
    s = make_session(endpoint=emu)

    async def run():
        client = openai.AsyncOpenAI(api_key=emu.api_key, base_url=emu.compatible_base_url, http_client=s.httpx_async)
        for _ in range(5):
            async for _chunk in await client.chat.completions.create(model="qwen-plus", messages=MSGS, stream=True):
                pass
        v2 = dashscope.AsyncClient(base_url=emu.base_url, http_client=s.httpx_async)
        for _ in range(5):
            await v2.chat.completions.create(model="qwen-plus", messages=MSGS)
        return s.httpx_async

    first = asyncio.run(run())
    assert first.is_closed  # asyncio.run's shutdown closed it on its loop
    second = asyncio.run(run())
    assert second is not first
    assert emu.stats()["tcp_connections"] == 2  # one per loop, ten calls each
    assert s.stats()["async"]["connections_opened"] == 2
    with pytest.raises(RuntimeError, match="running event loop"):
        s.httpx_async  # noqa: B018
    sync_client = s.httpx
    s.close()
    assert sync_client.is_closed


def test_reconfigure_builds_new_clients(emu, make_session):
    s = make_session(endpoint=emu)
    old = s.httpx
    s.configure(PoolConfig(connection_pool_size=4, maximum_async_requests=4, maximum_async_requests_per_host=4))
    assert old.is_closed and s.httpx is not old


# -- the drain against servers that end the body late, never, or keep talking ------------------


class _SSEServer:
    """A real TLS server on 127.0.0.1 answering every request with one SSE event and
    ``data: [DONE]``, then ending the chunked body as ``mode`` says."""

    def __init__(self, tmp_path, mode: str, delay: float = 0.0):
        import trustme

        ca = trustme.CA()
        self.ca_path = str(tmp_path / "ca.pem")
        ca.cert_pem.write_to_path(self.ca_path)
        self._ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(self._ctx)
        self.mode, self.delay = mode, delay
        self.accepted = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()

    # Endpoint attributes dashnb's builders read.
    label = "test SSE server"
    trust_env = False

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/v1"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_path)

    def _accept(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                raw, _ = self._sock.accept()
            except OSError:
                continue
            self.accepted += 1
            t = threading.Thread(target=self._serve, args=(raw,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            with self._ctx.wrap_socket(raw, server_side=True) as conn:
                conn.settimeout(5)
                buf = b""
                while not self._stop.is_set():
                    while b"\r\n\r\n" not in buf:
                        data = conn.recv(65536)
                        if not data:
                            return
                        buf += data
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    while len(buf) < length:
                        buf += conn.recv(65536)
                    buf = buf[length:]
                    self._answer(conn)
                    if self.mode != "prompt":
                        return
        except (OSError, ssl.SSLError):
            return

    def _answer(self, conn) -> None:
        def chunk(payload: bytes) -> bytes:
            return b"%x\r\n%s\r\n" % (len(payload), payload)

        event = (
            b'data: {"id":"1","object":"chat.completion.chunk","created":0,"model":"m",'
            b'"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n'
        )
        conn.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            + chunk(event)
            + chunk(b"data: [DONE]\n\n")
        )
        if self.mode == "prompt":
            conn.sendall(b"0\r\n\r\n")
        elif self.mode == "late":
            time.sleep(self.delay)
            conn.sendall(b"0\r\n\r\n")
        elif self.mode == "trickle":
            for _ in range(100):
                if self._stop.wait(0.02):
                    return
                conn.sendall(chunk(b": keep-alive\n\n"))
        elif self.mode == "never":
            self._stop.wait(10)

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        for t in self._threads:
            t.join(5)


@pytest.fixture
def sse_server(tmp_path):
    servers = []

    def make(mode, delay=0.0):
        srv = _SSEServer(tmp_path, mode, delay)
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.close()


BUDGET = 0.3


def _openai_streams(srv, n, *, budget=BUDGET):
    """Stream n completions through dashnb's client; the longest time from [DONE] read to the
    stream returning (what the caller waits for the drain)."""
    with T.build_httpx_client(PoolConfig(), srv, drain_budget=budget) as http:
        client = openai.OpenAI(api_key="test", base_url=srv.base_url, http_client=http)
        waits = []
        for _ in range(n):
            stream = client.chat.completions.create(model="m", messages=MSGS, stream=True)
            it = iter(stream)
            next(it)  # the one content chunk; [DONE] is next
            t0 = time.perf_counter()
            for _chunk in it:
                pass
            waits.append(time.perf_counter() - t0)
    return waits


def test_drain_keeps_connection_when_end_arrives_in_budget(sse_server):
    srv = sse_server("prompt")
    waits = _openai_streams(srv, 5)
    assert srv.accepted == 1
    assert max(waits) < BUDGET


def test_drain_disabled_is_the_plain_behaviour(sse_server):
    srv = sse_server("prompt")
    _openai_streams(srv, 3, budget=0)
    assert srv.accepted == 3


@pytest.mark.parametrize("mode", ["late", "never", "trickle"])
def test_drain_gives_up_within_budget(sse_server, mode):
    srv = sse_server(mode, delay=1.0)  # late: the end comes after the budget
    waits = _openai_streams(srv, 3)
    assert srv.accepted == 3  # each connection was closed, not reused half-read
    # Never longer than the budget (plus scheduling slack); the trickle is cut at its first comment.
    assert max(waits) < BUDGET + 0.25
    if mode == "trickle":
        assert max(waits) < BUDGET


def test_async_drain_gives_up_within_budget(sse_server):
    srv = sse_server("never")

    async def run():
        async with T.build_httpx_async_client(PoolConfig(), srv, drain_budget=BUDGET) as http:
            # A raw reader that stops at [DONE] and closes, as openai's sync Stream does.
            t0 = None
            async with http.stream("POST", "/chat", json={}) as resp:
                async for line in resp.aiter_lines():
                    if line == "data: [DONE]":
                        t0 = time.perf_counter()
                        break
            return time.perf_counter() - t0

    with warnings.catch_warnings():
        wait = asyncio.run(run())
    assert wait < BUDGET + 0.25


# -- ask() on either stack -----------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["v2", "openai"])
def test_ask_on_httpx_stacks_keeps_the_connection_across_a_pause(emu, make_session, capsys, stack):
    import dashnb

    s = make_session(endpoint=emu)
    first = dashnb.ask("hi", session=s, stack=stack)
    time.sleep(0.5)  # a pause longer than the (scaled) expiry of the control below
    second = dashnb.ask("hi again", session=s, stack=stack, stream=False)
    assert first.text and second.text
    assert (first.reused, second.reused) == (False, True)
    assert emu.stats()["tcp_connections"] == 1
    assert emu.api_key not in capsys.readouterr().out


def test_ask_reconnects_after_a_pause_longer_than_the_idle_timeout(emu, make_session, capsys):
    """The negative control: an idle timeout shorter than the pause (the v2 default's 5 s, scaled
    down with the pause) costs a new connection on the next prompt."""
    import dashnb

    s = make_session(PoolConfig(connection_idle_timeout=0.2), endpoint=emu)
    dashnb.ask("hi", session=s, stack="openai")
    time.sleep(0.5)
    second = dashnb.ask("hi again", session=s, stack="openai")
    assert second.reused is False
    assert emu.stats()["tcp_connections"] == 2


def test_ask_httpx_error_is_an_ask_error(emu, make_session, capsys):
    import dashnb

    s = make_session(endpoint=emu)
    with pytest.raises(dashnb.AskError) as info:
        dashnb.ask("hi", session=s, stack="v2", api_key="sk-wrong")
    assert info.value.status_code == 401
    with pytest.raises(ValueError, match="stack must be one of"):
        dashnb.ask("hi", session=s, stack="httpx")


def test_drain_failures_leave_nothing_in_flight_or_open(sse_server):
    from dashnb import _observe

    srv = sse_server("trickle")
    obs = _observe.Observer()
    with T.build_httpx_client(PoolConfig(), srv, obs, drain_budget=BUDGET) as http:
        client = openai.OpenAI(api_key="test", base_url=srv.base_url, http_client=http)
        for _ in range(2):
            for _chunk in client.chat.completions.create(model="m", messages=MSGS, stream=True):
                pass
        st = obs.snapshot().sync
        assert (st.requests, st.connections_opened, st.connections_reused) == (2, 2, 0)
        assert (st.in_flight, st.connections_open, st.errors) == (0, 0, 0)


def test_async_raw_stream_stopped_at_done_keeps_its_connection(sse_server):
    """Any reader that stops at [DONE] and closes, not only openai's: here httpx's own API."""
    srv = sse_server("prompt")

    async def run():
        async with T.build_httpx_async_client(PoolConfig(), srv, drain_budget=BUDGET) as http:
            for _ in range(3):
                async with http.stream("POST", "/chat", json={}) as resp:
                    async for line in resp.aiter_lines():
                        if line == "data: [DONE]":
                            break

    asyncio.run(run())
    assert srv.accepted == 1


def test_stream_closed_before_done_is_not_drained(sse_server):
    """Leaving a stream early closes at once: draining could wait for a whole generation."""
    srv = sse_server("never")
    with T.build_httpx_client(PoolConfig(), srv, drain_budget=5.0) as http:
        t0 = time.perf_counter()
        with http.stream("POST", "/chat", json={}) as resp:
            for _line in resp.iter_lines():
                break  # the first event, before [DONE]
        assert time.perf_counter() - t0 < 2.0
    assert srv.accepted == 1


def test_compare_counts_the_streamed_pitfall_and_its_fix(emulator_factory):
    import dashnb

    lab = emulator_factory(rtt_ms=0)
    modes = ["openai_stream_default", "openai_stream_dashnb", "v2_async_stream_default"]
    result = dashnb.compare(modes, calls=5, endpoint=lab, rounds=1, warmup=False, progress=False)
    by_mode = {s.mode: s for s in result.summary}
    assert {m: by_mode[m].tcp_connections for m in modes} == {
        "openai_stream_default": 5,
        "openai_stream_dashnb": 1,
        "v2_async_stream_default": 1,
    }
    assert by_mode["openai_stream_dashnb"].client_connections == 1  # dashnb's hooks agree with the server
    assert by_mode["openai_stream_default"].client_connections is None  # no hooks on the SDK's own client
    assert not any(s.errors for s in result.summary)


def test_sync_raw_stream_stopped_at_done_keeps_its_connection(sse_server):
    """The reader drops its line iterator (closing it) before it closes the response."""
    srv = sse_server("prompt")
    with T.build_httpx_client(PoolConfig(), srv, drain_budget=BUDGET) as http:
        for _ in range(3):
            with http.stream("POST", "/chat", json={}) as resp:
                for line in resp.iter_lines():
                    if line == "data: [DONE]":
                        break
    assert srv.accepted == 1
