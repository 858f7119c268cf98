"""httpx side of the translation: Limits and Timeout, observed pools, streams that keep their connection.

    >>> from dashnb._config.pool import PoolConfig
    >>> from dashnb._transport.httpx import httpx_limits, httpx_timeout
    >>> httpx_limits(PoolConfig(connection_pool_size=64), is_async=True)
    Limits(max_connections=32, max_keepalive_connections=64, keepalive_expiry=300.0)
    >>> httpx_timeout(PoolConfig(connect_timeout=10))
    Timeout(connect=10.0, read=300.0, write=60.0, pool=None)

Imported on first use (by ``dashnb._session.manager`` and the modes), so it may import httpx at the top;
``import dashnb`` never imports httpx.

How each Java (OkHttp) setting is carried over to httpx (httpcore does the pooling):

- ``connection_pool_size`` -> ``Limits(max_keepalive_connections=...)``: idle connections kept.
  httpcore 1.0 closes a connection that falls idle while the pool holds more connections *in
  total* than that, so a steady concurrency above it churns a connection per call; dashnb's pools
  count only the idle ones, as OkHttp's ConnectionPool(maxIdleConnections) does
  (``dashnb._httpx_keepalive``), and close the surplus when the pool is next used. A burst opens
  more connections, never waits for the limit.
- ``maximum_async_requests`` / ``..._per_host`` -> ``Limits(max_connections=...)`` on the async
  client, set to the smaller of the two: httpx has one limit for all hosts and DashScope is one
  host, so for it the smaller limit is the one OkHttp's Dispatcher enforces. httpx counts open
  *connections* (idle ones included, closing an idle one to another host to make room) where the
  Dispatcher counts *calls*; with one host the two agree. A call past the limit waits for a
  connection, bounded by ``Timeout(pool=...)``. The sync client gets no limit: blocking calls
  bypass OkHttp's Dispatcher (``execute()``), as they do on dashnb's requests path.
- ``connection_idle_timeout`` -> ``Limits(keepalive_expiry=...)``, in whole seconds as the Java
  SDK hands it to OkHttp. httpcore checks it when the pool is next used (OkHttp has a cleanup
  thread): the socket closes later, a stale one is never reused.
- ``connect_timeout`` -> ``Timeout(connect=...)``: httpcore applies it to the TCP connect and to
  the TLS handshake (OkHttp: TCP only; its TLS handshake runs under readTimeout).
- ``read_timeout`` -> ``Timeout(read=...)``: the longest wait for one read, as in OkHttp.
- ``write_timeout`` -> ``Timeout(write=...)``: the longest wait for one write of the request.
  httpx is the only Python stack here with a write timeout like OkHttp's.
- ``Timeout(pool=None)``: how long a call waits for a connection when ``max_connections`` are
  busy. OkHttp has no such timeout (a call queued by the Dispatcher waits, outside the socket
  timeouts), so dashnb leaves it unbounded.

The dashscope v2 client's own settings, read into a PoolConfig and written back, are in
``dashnb._config.v2`` (``from_v2``, ``v2_snippet``).

The transports built here put two more things on httpx, each in its own module: an observed
httpcore pool that numbers its connections (``dashnb._transport.httpx_pool``), and streams that keep their
connection when closed after ``data: [DONE]`` (``dashnb._transport.httpx_drain``, whose ``drain_budget``
defaults to ``DEFAULT_DRAIN_BUDGET``). Nothing patches a socket.

Proxies: httpx reads ``HTTPS_PROXY`` / ``ALL_PROXY`` / ``NO_PROXY`` only when it builds its own
transport, and these clients bring theirs. So for an endpoint that trusts the environment (the
real service) the clients mount, as httpx would, one observed transport per proxy the environment
names (``httpx._utils.get_environment_proxies``: httpx's own rules, ``NO_PROXY`` included), each
on httpcore's proxy pool; an emulator is always reached directly, whatever the environment says.
"""

from __future__ import annotations

import logging
import math
import ssl
import time
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import httpcore
import httpx
from httpx._utils import get_environment_proxies  # httpx's own reading of the proxy variables

from .. import _observe
from .._endpoint import mask_url
from .httpx_drain import AsyncDrainingStream, DrainingStream, DrainState, is_sse
from .httpx_pool import ObservedAsyncConnection, ObservedAsyncPool, ObservedConnection, ObservedPool, Registry
from .rules import java_idle_timeout, tighter

if TYPE_CHECKING:  # pragma: no cover
    from .._config.pool import PoolConfig

__all__ = [
    "DEFAULT_DRAIN_BUDGET",
    "build_httpx_async_client",
    "build_httpx_client",
    "busy_connections",
    "httpx_limits",
    "httpx_timeout",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Seconds a stream closed after ``data: [DONE]`` may wait for its body's end. On the real service
#: and the emulator the end follows [DONE] within a round trip; 0.25 s covers a slow one.
DEFAULT_DRAIN_BUDGET = 0.25


# -- the mapping ---------------------------------------------------------------------------------


def httpx_limits(config: PoolConfig, *, is_async: bool) -> httpx.Limits:
    """``httpx.Limits`` for ``config``: see the module docstring for each field."""
    max_connections = min(config.maximum_async_requests, config.maximum_async_requests_per_host) if is_async else None
    return httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=config.connection_pool_size,
        keepalive_expiry=java_idle_timeout(config),
    )


def httpx_timeout(config: PoolConfig) -> httpx.Timeout:
    """``httpx.Timeout`` for ``config``; ``pool=None`` because OkHttp never times out a queued call."""
    return httpx.Timeout(
        connect=config.connect_timeout, read=config.read_timeout, write=config.write_timeout, pool=None
    )


def _merge_timeout(caller: Mapping[str, Any] | None, config: PoolConfig) -> dict[str, Any]:
    """The request's ``timeout`` extension with the config's limits applied (tighter wins)."""
    caller = caller or {}
    return {
        "connect": tighter(config.connect_timeout, caller.get("connect")),
        "read": tighter(config.read_timeout, caller.get("read")),
        "write": tighter(config.write_timeout, caller.get("write")),
        "pool": caller.get("pool"),
    }


# -- the transports and clients ------------------------------------------------------------------


# httpcore's pools for each kind of proxy (None: direct), sync and async: httpx.HTTPTransport's choice.
_PROXY_POOLS: dict[str | None, tuple[type, type]] = {
    None: (httpcore.ConnectionPool, httpcore.AsyncConnectionPool),
    "http": (httpcore.HTTPProxy, httpcore.AsyncHTTPProxy),
    "https": (httpcore.HTTPProxy, httpcore.AsyncHTTPProxy),
    "socks5": (httpcore.SOCKSProxy, httpcore.AsyncSOCKSProxy),
    "socks5h": (httpcore.SOCKSProxy, httpcore.AsyncSOCKSProxy),
}


def _observed_pool(
    path: str,
    conn_base: type,
    pool_base: type,
    observer: _observe.Observer,
    limits: httpx.Limits,
    ssl_context: ssl.SSLContext,
    proxy: httpx.Proxy | None,
) -> tuple[Any, Any]:
    """An observed httpcore pool with ``limits``, through ``proxy`` (None: direct), and the call
    that drops its open-count probe.

    httpx builds its pool itself and takes no pool class: the transports replace theirs with this
    one, built with the same settings, the proxy's as ``httpx.HTTPTransport(proxy=...)`` gives them."""
    registry = Registry()
    conn_cls = type(f"Dashnb{conn_base.__name__}", (conn_base,), {"_dashnb_observer": observer})
    kwargs: dict[str, Any] = {
        "ssl_context": ssl_context,
        "max_connections": limits.max_connections,
        "max_keepalive_connections": limits.max_keepalive_connections,
        "keepalive_expiry": limits.keepalive_expiry,
    }
    kind = None if proxy is None else proxy.url.scheme
    if proxy is not None:
        kwargs["proxy_url"] = httpcore.URL(
            scheme=proxy.url.raw_scheme, host=proxy.url.raw_host, port=proxy.url.port, target=proxy.url.raw_path
        )
        kwargs["proxy_auth"] = proxy.raw_auth
        if kind in ("http", "https"):
            kwargs.update(proxy_headers=proxy.headers.raw, proxy_ssl_context=proxy.ssl_context)
    # The observed pool in front of httpcore's own pool for this proxy: ObservedPool's
    # create_connection wraps what the proxy pool's creates (a tunnel, a SOCKS connection).
    proxy_base = _PROXY_POOLS[kind][0 if path == "sync" else 1]
    pool_cls = type(
        f"Dashnb{pool_base.__name__}",
        (pool_base, proxy_base) if proxy is not None else (pool_base,),
        {"_dashnb_conn_cls": conn_cls, "_dashnb_registry": registry},
    )
    pool = pool_cls(**kwargs)
    return pool, observer.add_open_probe(path, registry.open_count)


class DashnbTransport(httpx.HTTPTransport):
    """httpx's transport on an observed httpcore pool, with the config's timeouts and the drain."""

    def __init__(
        self,
        config: PoolConfig,
        ssl_context: ssl.SSLContext,
        observer: _observe.Observer,
        drain_budget: float,
        proxy: httpx.Proxy | None = None,
    ) -> None:
        limits = httpx_limits(config, is_async=False)
        # httpx checks the proxy (its scheme; socksio for SOCKS) and builds a pool this replaces.
        super().__init__(verify=ssl_context, limits=limits, trust_env=False, proxy=proxy)
        self._pool, self._dashnb_unprobe = _observed_pool(
            "sync", ObservedConnection, ObservedPool, observer, limits, ssl_context, proxy
        )
        self.proxy = proxy
        self.pool_config = config
        self.observer = observer
        self.drain_budget = drain_budget

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        obs = self.observer
        obs.attempt_started("sync")
        request.extensions["timeout"] = _merge_timeout(request.extensions.get("timeout"), self.pool_config)
        try:
            response = super().handle_request(request)
        except Exception as exc:
            obs.request_failed("sync", exc)
            raise
        obs.response_started(time.perf_counter())
        assert isinstance(response.stream, httpx.SyncByteStream)
        state = DrainState(request, self.drain_budget, obs, "sync", is_sse(response))
        response.stream = DrainingStream(response.stream, state)
        return response

    def close(self) -> None:
        self._dashnb_unprobe()  # its connections no longer count: the observer drops its probe
        super().close()

    def __repr__(self) -> str:
        return f"<DashnbTransport {self.pool_config!r}{_via(self.proxy)}>"


class DashnbAsyncTransport(httpx.AsyncHTTPTransport):
    """The async twin of ``DashnbTransport``."""

    def __init__(
        self,
        config: PoolConfig,
        ssl_context: ssl.SSLContext,
        observer: _observe.Observer,
        drain_budget: float,
        proxy: httpx.Proxy | None = None,
    ) -> None:
        limits = httpx_limits(config, is_async=True)
        # httpx checks the proxy (its scheme; socksio for SOCKS) and builds a pool this replaces.
        super().__init__(verify=ssl_context, limits=limits, trust_env=False, proxy=proxy)
        self._pool, self._dashnb_unprobe = _observed_pool(
            "async", ObservedAsyncConnection, ObservedAsyncPool, observer, limits, ssl_context, proxy
        )
        self.proxy = proxy
        self.pool_config = config
        self.observer = observer
        self.drain_budget = drain_budget

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        obs = self.observer
        obs.attempt_started("async")
        request.extensions["timeout"] = _merge_timeout(request.extensions.get("timeout"), self.pool_config)
        try:
            response = await super().handle_async_request(request)
        except Exception as exc:
            obs.request_failed("async", exc)
            raise
        obs.response_started(time.perf_counter())
        assert isinstance(response.stream, httpx.AsyncByteStream)
        state = DrainState(request, self.drain_budget, obs, "async", is_sse(response))
        response.stream = AsyncDrainingStream(response.stream, state)
        return response

    async def aclose(self) -> None:
        self._dashnb_unprobe()  # its connections no longer count: the observer drops its probe
        await super().aclose()

    def __repr__(self) -> str:
        return f"<DashnbAsyncTransport {self.pool_config!r}{_via(self.proxy)}>"


def _via(proxy: httpx.Proxy | None) -> str:
    return "" if proxy is None else f" via {mask_url(str(proxy.url))}"


class EndpointAuth(httpx.Auth):
    """Adds the endpoint's key to requests for the endpoint's own origin that carry none.

    The dashscope v2 client puts its key only on the httpx client it builds itself: given
    ``http_client=``, it sends no ``Authorization`` header (``SyncTransport.__init__`` in
    ``dashscope/v2/transport/http.py``). Requests that bring their own key (the openai SDK's) and
    requests to any other host are left alone, so the key never leaves for somewhere else. The
    key is read when a request is sent, never stored here.
    """

    def __init__(self, endpoint: Any) -> None:
        self._endpoint = endpoint
        self._origin = httpx.URL(endpoint.base_url).copy_with(path="/", query=None)

    def auth_flow(self, request: httpx.Request):
        url = request.url
        same = (url.scheme, url.host, url.port) == (self._origin.scheme, self._origin.host, self._origin.port)
        # Read in the expressions, into no local: this generator stays suspended for the whole
        # request, and a frame-capturing tool would show a local holding the key.
        if same and "authorization" not in request.headers and getattr(self._endpoint, "api_key", None):
            request.headers["Authorization"] = f"Bearer {self._endpoint.api_key}"
        yield request

    def __repr__(self) -> str:
        return f"<EndpointAuth for {getattr(self._endpoint, 'label', 'endpoint')}>"


def _client_kwargs(config: PoolConfig, endpoint: Any) -> dict[str, Any]:
    return {
        "base_url": endpoint.base_url,
        "timeout": httpx_timeout(config),
        "auth": EndpointAuth(endpoint),
        # The CA is the endpoint's, given to the transport; the proxies are the mounts below.
        "trust_env": bool(getattr(endpoint, "trust_env", False)),
    }


def _proxy_mounts(endpoint: Any, transport_for: Callable[[httpx.Proxy], T]) -> dict[str, T | None]:
    """httpx's ``mounts=``: the environment's proxies (``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``...)
    as httpx itself reads them, each as a transport built by ``transport_for``, for an endpoint
    that trusts the environment (the real service); none for an emulator, which is always reached
    directly. A ``NO_PROXY`` host mounts None: the client's own transport, direct.

    httpx reads these only when it builds its transport itself (``transport=`` turns them off),
    so dashnb mounts them as httpx would, in front of its own observed pools. Read when the
    client is built, as httpx does."""
    if getattr(endpoint, "is_emulator", False) or not getattr(endpoint, "trust_env", False):
        return {}
    made: dict[str, T] = {}  # one transport (one pool) per proxy, however many schemes name it
    mounts: dict[str, T | None] = {}
    for pattern, url in get_environment_proxies().items():
        if url is not None and url not in made:
            made[url] = transport_for(httpx.Proxy(url))
            log.debug("httpx requests matching %s go through %s", pattern, mask_url(url))
        mounts[pattern] = None if url is None else made[url]
    return mounts


def _ssl_context(endpoint: Any) -> ssl.SSLContext:
    return endpoint.ssl_context()


def build_httpx_client(
    config: PoolConfig,
    endpoint: Any,
    observer: _observe.Observer | None = None,
    *,
    drain_budget: float = DEFAULT_DRAIN_BUDGET,
) -> httpx.Client:
    """An ``httpx.Client`` pooled as ``config`` says, trusting ``endpoint``'s CA, observed, whose
    streams keep their connection after ``[DONE]``. The caller closes it."""
    _check_budget(drain_budget)
    ctx, obs = _ssl_context(endpoint), observer or _observe.Observer()
    transport = DashnbTransport(config, ctx, obs, drain_budget)
    mounts = _proxy_mounts(endpoint, lambda proxy: DashnbTransport(config, ctx, obs, drain_budget, proxy))
    client = httpx.Client(transport=transport, mounts=mounts, **_client_kwargs(config, endpoint))
    _TRANSPORTS[client] = (transport, *{id(t): t for t in mounts.values() if t is not None}.values())
    return client


def build_httpx_async_client(
    config: PoolConfig,
    endpoint: Any,
    observer: _observe.Observer | None = None,
    *,
    drain_budget: float = DEFAULT_DRAIN_BUDGET,
) -> httpx.AsyncClient:
    """The async twin of ``build_httpx_client``; use it on one event loop, close it there."""
    _check_budget(drain_budget)
    ctx, obs = _ssl_context(endpoint), observer or _observe.Observer()
    transport = DashnbAsyncTransport(config, ctx, obs, drain_budget)
    mounts = _proxy_mounts(endpoint, lambda proxy: DashnbAsyncTransport(config, ctx, obs, drain_budget, proxy))
    client = httpx.AsyncClient(transport=transport, mounts=mounts, **_client_kwargs(config, endpoint))
    _TRANSPORTS[client] = (transport, *{id(t): t for t in mounts.values() if t is not None}.values())
    return client


_TRANSPORTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def busy_connections(client: Any) -> int:
    """Connections of a client built here that are serving a request (or being opened)."""
    transports = _TRANSPORTS.get(client, ())
    return sum(1 for t in transports for c in t._pool.connections if not c.is_idle() and not c.is_closed())


def _check_budget(budget: Any) -> None:
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or math.isnan(budget) or budget < 0:
        raise ValueError(f"drain_budget must be a number of seconds >= 0 (0: never drain), got {budget!r}")
    if math.isinf(budget):
        raise ValueError("drain_budget must be finite: an unbounded drain could wait for a whole generation")
