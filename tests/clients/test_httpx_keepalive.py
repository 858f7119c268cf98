"""httpcore's keep-alive rule and dashnb's: ``max_keepalive_connections`` counts idle connections.

httpcore 1.0 closes a released connection while its pool holds more connections in total than
``max_keepalive_connections``; dashnb's pools (``dashnb._transport.httpx_keepalive``) close only idle ones
beyond it, as OkHttp does. Counted at the emulator, on real TLS, through the official SDKs.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import warnings

import pytest

httpx = pytest.importorskip("httpx")
httpcore = pytest.importorskip("httpcore")
openai = pytest.importorskip("openai")
dashscope = pytest.importorskip("dashscope")

from dashnb import PoolConfig  # noqa: E402
from dashnb._modes.httpx import ssl_cert_file  # noqa: E402
from dashnb._transport.httpx import DashnbAsyncTransport, DashnbTransport  # noqa: E402
from dashnb._transport.httpx_keepalive import IdleKeepalive  # noqa: E402

MSGS = [{"role": "user", "content": "hi"}]
KEEP = 20  # dashscope.Client's http_max_keepalive_connections (its http_max_connections: 100)
# Server time spread, so that replies do not land in waves.
SPREAD = {"ttfb_ms": 50.0, "ttfb_jitter_ms": 400.0}
# For the bound, also long beside the clients' own work: N threads then really keep N calls in
# flight (a steady concurrency). A client stalled long enough to hold a backlog of more than 20
# finished calls sees them idle at once and closes the surplus (so would OkHttp): few transitions
# from one call to the next, spread over a second, keep that backlog out of reach of a busy machine.
STEADY = {"ttfb_ms": 100.0, "ttfb_jitter_ms": 700.0}


def _v2_defaults() -> PoolConfig:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # maximumAsyncRequests (100) > connectionPoolSize (20): known
        return PoolConfig.from_v2({})


# -- the httpcore internals dashnb._transport.httpx_keepalive relies on ------------------------------------


@pytest.mark.parametrize("pool_cls", [httpcore.ConnectionPool, httpcore.AsyncConnectionPool])
def test_httpcore_internals_the_idle_rule_relies_on(pool_cls):
    where = f"httpcore {httpcore.__version__} {pool_cls.__name__}"
    why = "dashnb._transport.httpx_keepalive.IdleKeepalive overrides it: revisit that module for this release"
    method = getattr(pool_cls, "_assign_requests_to_connections", None)
    assert method is not None, f"{where} has no _assign_requests_to_connections; {why}"
    assert not inspect.iscoroutinefunction(method), f"{where}._assign_requests_to_connections is async; {why}"
    assert list(inspect.signature(method).parameters) == ["self"], (
        f"{where}._assign_requests_to_connections takes arguments now; {why}"
    )
    pool = pool_cls(max_connections=50, max_keepalive_connections=7)
    assert isinstance(getattr(pool, "_connections", None), list), f"{where} keeps no _connections list; {why}"
    assert getattr(pool, "_max_keepalive_connections", None) == 7, (
        f"{where} keeps its limit elsewhere than _max_keepalive_connections; {why}"
    )
    readers = sorted(
        name
        for name, fn in vars(pool_cls).items()
        if inspect.isfunction(fn) and "_max_keepalive_connections" in inspect.getsource(fn)
    )
    assert readers == ["__init__", "_assign_requests_to_connections"], (
        f"{where} reads _max_keepalive_connections in {readers}, and the override lifts it only for "
        f"_assign_requests_to_connections; {why}"
    )


def test_every_observed_pool_keeps_by_idle_count(emu, make_session):
    s = make_session(endpoint=emu)
    proxy = httpx.Proxy("http://127.0.0.1:9")  # never connected to: only the pool's class is looked at
    transports = [
        s.httpx._transport,  # type: ignore[attr-defined]
        DashnbTransport(PoolConfig(), emu.ssl_context(), s.observer, 0.25, proxy),
        DashnbAsyncTransport(PoolConfig(), emu.ssl_context(), s.observer, 0.25),
    ]
    for transport in transports:
        method = type(transport._pool)._assign_requests_to_connections
        assert method is IdleKeepalive._assign_requests_to_connections, type(transport._pool).__mro__
    transports[1].close()


# -- the rule, one connection at a time ----------------------------------------------------------


def _churn(client, url: str, held: int, turns: int) -> None:
    """``held`` requests in flight, then ``turns`` times: one finishes, another starts."""

    def start() -> httpx.Response:
        r = client.send(client.build_request("POST", url, json={"model": "qwen-plus", "messages": MSGS}), stream=True)
        for _chunk in r.stream:  # read to the body's end, without closing: the request is still in flight
            pass
        return r

    open_ = [start() for _ in range(held)]
    for _ in range(turns):
        open_.pop(0).close()  # released while `held - 1` others are in flight: 1 idle connection
        open_.append(start())
    for r in open_:
        r.close()


def test_httpcore_closes_a_released_connection_while_more_than_keep_are_open(emu):
    """The upstream rule, the negative control for the next test. If this fails, httpcore now
    counts idle connections only, and dashnb._transport.httpx_keepalive may go."""
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=KEEP)
    with httpx.Client(verify=emu.ssl_context(), limits=limits) as plain:
        _churn(plain, emu.compatible_base_url + "/chat/completions", held=KEEP + 4, turns=10)
    assert emu.stats()["tcp_connections"] == KEEP + 4 + 10  # every turn: a new connection


def test_dashnb_pool_keeps_a_released_connection_while_few_are_idle(emu, make_session):
    s = make_session(_v2_defaults(), endpoint=emu)
    _churn(s.httpx, emu.compatible_base_url + "/chat/completions", held=KEEP + 4, turns=10)
    assert emu.stats()["tcp_connections"] == KEEP + 4  # every turn reused the one released
    # Then all of them idle: only KEEP are kept, the surplus closed the next time the pool is used.
    s.httpx.post(emu.compatible_base_url + "/chat/completions", json={"model": "qwen-plus", "messages": MSGS})
    assert sum(not c.is_closed() for c in s.httpx._transport._pool.connections) == KEEP  # type: ignore[attr-defined]


def test_dashnb_async_pool_keeps_a_released_connection_while_few_are_idle(emu, make_session):
    s = make_session(_v2_defaults(), endpoint=emu)
    url = emu.compatible_base_url + "/chat/completions"

    async def run() -> None:
        client = s.httpx_async

        async def start() -> httpx.Response:
            request = client.build_request("POST", url, json={"model": "qwen-plus", "messages": MSGS})
            r = await client.send(request, stream=True)
            async for _chunk in r.stream:
                pass
            return r

        open_ = [await start() for _ in range(KEEP + 4)]
        for _ in range(10):
            await open_.pop(0).aclose()
            open_.append(await start())
        for r in open_:
            await r.aclose()

    asyncio.run(run())
    assert emu.stats()["tcp_connections"] == KEEP + 4


# -- the SDKs at a steady concurrency, with real threads -----------------------------------------


def _threads(n: int, calls: int, call) -> None:
    """``n`` threads, started together, each making ``calls`` calls one after another."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait(timeout=60)
            for _ in range(calls):
                call()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, name=f"keepalive-{i}") for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a worker thread is still running after 120 s"
    assert not errors, errors[:3]


@pytest.mark.slow
@pytest.mark.parametrize("threads", [21, 32])
def test_v2_client_defaults_open_a_connection_per_call_above_20_threads(emu, threads):
    """The SDK's own pool (httpcore's rule, keep 20 of at most 100): far more connections than
    threads. If this fails, httpcore now counts idle connections only: revisit the notebook 06 claim."""
    emu.configure(**SPREAD)
    with ssl_cert_file(emu.ca_path):
        client = dashscope.Client(api_key=emu.api_key, base_url=emu.base_url)
    with client:
        emu.reset_stats()
        _threads(threads, 6, lambda: client.chat.completions.create(model="qwen-plus", messages=MSGS))
    st = emu.stats()
    assert st["requests"] == threads * 6
    assert st["tcp_connections"] > 2 * threads, st["tcp_connections"]


@pytest.mark.slow
@pytest.mark.parametrize("threads", [16, 21, 32, 64])
@pytest.mark.parametrize("sdk", ["v2", "openai"])
def test_sdks_on_dashnb_httpx_open_at_most_one_connection_per_thread(emu, make_session, sdk, threads):
    emu.configure(**STEADY)
    s = make_session(_v2_defaults(), endpoint=emu)
    if sdk == "v2":
        client = dashscope.Client(base_url=emu.base_url, http_client=s.httpx)
    else:
        client = openai.OpenAI(api_key=emu.api_key, base_url=emu.compatible_base_url, http_client=s.httpx)
    emu.reset_stats()
    _threads(threads, 2, lambda: client.chat.completions.create(model="qwen-plus", messages=MSGS))
    st = emu.stats()
    assert st["requests"] == threads * 2
    assert st["tcp_connections"] <= max(threads, KEEP), st["tcp_connections"]


@pytest.mark.slow
@pytest.mark.parametrize("sdk", ["v2", "openai"])
def test_async_sdks_on_dashnb_httpx_async_open_at_most_one_connection_per_task(emu, make_session, sdk):
    emu.configure(**STEADY)
    s = make_session(_v2_defaults(), endpoint=emu)
    tasks = 32

    async def run() -> None:
        if sdk == "v2":
            client = dashscope.AsyncClient(base_url=emu.base_url, http_client=s.httpx_async)
        else:
            client = openai.AsyncOpenAI(
                api_key=emu.api_key, base_url=emu.compatible_base_url, http_client=s.httpx_async
            )

        async def work() -> None:
            for _ in range(2):
                await client.chat.completions.create(model="qwen-plus", messages=MSGS)

        await asyncio.gather(*(work() for _ in range(tasks)))

    emu.reset_stats()
    asyncio.run(run())
    st = emu.stats()
    assert st["requests"] == tasks * 2
    assert st["tcp_connections"] <= max(tasks, KEEP), st["tcp_connections"]
