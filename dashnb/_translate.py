"""Turn a PoolConfig and an endpoint into requests / aiohttp objects: the only place that does.

    >>> from dashnb._config import PoolConfig
    >>> from dashnb._translate import build_requests_session, merge_requests_timeout
    >>> merge_requests_timeout(300, PoolConfig(connect_timeout=10))   # the SDK passes 300
    (10.0, 300)
    >>> s = build_requests_session(PoolConfig(), endpoint)             # doctest: +SKIP
    >>> Generation.call(model="qwen-plus", prompt="hi", session=s)     # doctest: +SKIP

How each Java (OkHttp) setting is carried over:

- ``connection_pool_size`` -> urllib3 ``pool_maxsize`` with ``pool_block=False``: like OkHttp's
  ``ConnectionPool`` it caps connections *kept* for reuse; a burst opens extra connections which
  are discarded when they come back. For aiohttp -> ``TCPConnector(limit=...)``, which caps
  connections *open* (callers wait for a slot instead).
- ``connection_idle_timeout`` -> aiohttp ``keepalive_timeout``. urllib3 has no idle timeout, so
  the pool here stamps each connection when it is returned and closes those idle longer than this
  whenever the pool is next used (OkHttp runs a cleanup thread instead; the difference is only
  *when* the socket is closed, never whether a stale one is reused).
- ``maximum_async_requests`` / ``..._per_host`` -> an aiohttp client middleware holding
  ``asyncio.Semaphore`` slots per host, then globally, like OkHttp's ``Dispatcher``. The wait
  happens before any socket timeout starts, and the slot is held until the response is released
  (body read or closed), not just until its headers arrive. ``limit_per_host`` is set to the
  same number. Blocking (sync) calls bypass them, as in Java.
- ``connect_timeout`` / ``read_timeout``: see ``merge_requests_timeout`` and
  ``merge_aiohttp_timeout``. A timeout is a limit, and when the caller and the config both set
  one, the tighter wins. The dashscope SDK passes ``request_timeout`` (default 300 s) on every
  call, so "the caller's value wins" would make the config's timeouts dead knobs for every SDK
  call; "tighter wins" keeps the Java settings in force while ``request_timeout=`` can still
  shorten a call. To lengthen one, raise the config's value.
- ``write_timeout``: neither library has one; it is not emulated.

aiohttp quirk: for non-stream calls the SDK passes ``ClientTimeout(total=request_timeout)``, which
*replaces* the session's ``ClientTimeout`` (so ``sock_connect`` / ``sock_read`` would silently be
gone); for streams it passes ``ClientTimeout(total=None, sock_read=request_timeout)``. The
connector and request classes below re-apply the config's ``sock_connect`` / ``sock_read`` to
whatever timeout the request carries, using the same tighter-wins rule.

Retries: urllib3 retries are off (``max_retries=0``) because the SDK already resends once on a
connection error; retries at both layers would multiply (and resend a POST up to four times).
Note that the SDK's retry also catches connect timeouts (``requests.ConnectTimeout`` is a
``ConnectionError``; aiohttp's connect and socket-read timeouts are ``ClientConnectionError``),
so through the SDK such a failure takes about twice the configured timeout.

Trust: sessions trust exactly ``endpoint.ca_path`` (certifi when ``None``). requests sessions use
``trust_env=False`` so ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` cannot replace that; this also
ignores ``HTTP(S)_PROXY`` / ``NO_PROXY`` and ``~/.netrc`` (set ``session.proxies`` explicitly if
you need a proxy). aiohttp sessions are built with ``trust_env=False`` for the same reason.

Observation goes through the libraries' own extension points (urllib3 connection/pool classes,
aiohttp ``TraceConfig``, middleware, ``request_class``), never by patching sockets.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from . import _observe

if TYPE_CHECKING:  # pragma: no cover
    import aiohttp
    import requests

    from ._config import PoolConfig

log = logging.getLogger(__name__)

__all__ = [
    "build_aiohttp_session",
    "build_requests_session",
    "merge_aiohttp_timeout",
    "merge_requests_timeout",
]


def _tighter(config_value: float | None, caller_value: float | None) -> float | None:
    """The stricter of two limits; ``None`` means "no limit from that side"."""
    if caller_value is None:
        return config_value
    if config_value is None:
        return caller_value
    return min(config_value, caller_value)


def merge_requests_timeout(caller: Any, config: PoolConfig) -> Any:
    """The timeout a request made through a dashnb requests session actually gets.

    - no timeout from the caller -> ``(connect_timeout, read_timeout)``
    - one number ``t`` (what the SDK passes: ``request_timeout``) -> ``(min(connect_timeout, t),
      min(read_timeout, t))``
    - a ``(connect, read)`` tuple -> each part tightened the same way (``None`` parts take the config)
    - a ``urllib3.Timeout`` object is passed through untouched (an explicit, advanced choice).
    """
    connect, read = config.connect_timeout, config.read_timeout
    if caller is None:
        return (connect, read)
    if isinstance(caller, tuple):
        if len(caller) != 2:
            raise ValueError(f"timeout tuple must be (connect, read), got {caller!r}")
        return (_tighter(connect, caller[0]), _tighter(read, caller[1]))
    if isinstance(caller, (int, float)) and not isinstance(caller, bool):
        return (_tighter(connect, caller), _tighter(read, caller))
    return caller


def merge_aiohttp_timeout(timeout: aiohttp.ClientTimeout, config: PoolConfig) -> aiohttp.ClientTimeout:
    """``timeout`` with the config's socket limits re-applied (tighter wins); ``total`` and
    ``connect`` (which includes waiting for a pooled connection) stay the caller's."""
    import aiohttp

    sock_connect = _tighter(config.connect_timeout, timeout.sock_connect)
    sock_read = _tighter(config.read_timeout, timeout.sock_read)
    if sock_connect == timeout.sock_connect and sock_read == timeout.sock_read:
        return timeout
    return aiohttp.ClientTimeout(
        total=timeout.total,
        connect=timeout.connect,
        sock_read=sock_read,
        sock_connect=sock_connect,
        ceil_threshold=timeout.ceil_threshold,
    )


# ---------------------------------------------------------------------------------------------
# requests / urllib3
# ---------------------------------------------------------------------------------------------


class _ObservedConnectionMixin:
    """Times TCP connect vs TLS handshake, numbers connections and counts their requests.

    Mixed into urllib3's HTTP(S)Connection; ``_dashnb_observer`` is set on a per-session
    subclass. urllib3 reuses the same object after closing a dropped socket, so every
    ``connect()`` starts a new connection id and request count.
    """

    _dashnb_observer: _observe.Observer
    _dashnb_id: int | None = None
    _dashnb_requests: int = 0
    _dashnb_busy: bool = False
    _dashnb_idle_since: float | None = None
    _dashnb_tcp_s: float | None = None
    _dashnb_tls: bool = False

    def _new_conn(self):  # the TCP connect
        t0 = time.perf_counter()
        sock = super()._new_conn()  # type: ignore[misc]
        self._dashnb_tcp_s = time.perf_counter() - t0
        return sock

    def connect(self) -> None:
        t0 = time.perf_counter()
        self._dashnb_tcp_s = None
        super().connect()  # type: ignore[misc]
        total = time.perf_counter() - t0
        tcp = self._dashnb_tcp_s if self._dashnb_tcp_s is not None else total
        tls = total - tcp if self._dashnb_tls else None
        self._dashnb_id = _observe.next_connection_id()
        self._dashnb_requests = 0
        self._dashnb_observer.connection_opened("sync", connect_s=tcp, tls_s=tls, connection_id=self._dashnb_id)
        log.debug(
            "opened connection %d to %s:%s (tcp %.1f ms, tls %s)",
            self._dashnb_id,
            self.host,
            self.port,
            tcp * 1e3,
            "-" if tls is None else f"{tls * 1e3:.1f} ms",
        )

    def request(self, *args, **kwargs):
        if self.sock is None:  # plain http: http.client connects lazily inside request()
            self.connect()
        self._dashnb_requests += 1
        if not self._dashnb_busy:
            self._dashnb_busy = True
            self._dashnb_observer.request_started("sync")
        self._dashnb_observer.request_sent(
            "sync",
            connection_id=self._dashnb_id,
            sent_at=time.perf_counter(),
            requests_on_connection=self._dashnb_requests,
        )
        return super().request(*args, **kwargs)  # type: ignore[misc]

    def getresponse(self):
        resp = super().getresponse()  # type: ignore[misc]
        self._dashnb_observer.response_started(time.perf_counter())
        return resp

    def _dashnb_done(self) -> None:
        if self._dashnb_busy:
            self._dashnb_busy = False
            self._dashnb_observer.request_finished("sync")

    def close(self) -> None:
        was_open = self.sock is not None
        try:
            super().close()  # type: ignore[misc]
        finally:
            self._dashnb_done()
            if was_open:
                self._dashnb_observer.connection_closed("sync")


class _IdleEvictingPoolMixin:
    """A urllib3 connection pool that closes connections idle longer than ``_dashnb_idle_timeout``.

    Returned connections are stamped; each checkout first sweeps the pool (under the queue's
    own lock, so no other thread can be handed a connection while it is being closed). A closed
    connection object stays in the pool and reconnects when next used, as urllib3 does for
    connections it finds dropped.
    """

    _dashnb_idle_timeout: float | None = None
    _dashnb_observer: _observe.Observer

    def _dashnb_sweep(self) -> None:
        idle = self._dashnb_idle_timeout
        pool = self.pool  # type: ignore[attr-defined]
        if idle is None or pool is None:
            return
        now = time.monotonic()
        with pool.mutex:
            for conn in pool.queue:
                since = getattr(conn, "_dashnb_idle_since", None)
                if conn is not None and since is not None and not conn.is_closed and now - since > idle:
                    log.debug(
                        "closing connection %s to %s: idle %.1f s > connection_idle_timeout %.1f s",
                        getattr(conn, "_dashnb_id", "?"),
                        self.host,
                        now - since,
                        idle,
                    )  # type: ignore
                    conn.close()

    def _get_conn(self, timeout=None):
        t0 = time.perf_counter()
        self._dashnb_sweep()
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        self._dashnb_observer.waited(time.perf_counter() - t0)
        return conn

    def _put_conn(self, conn) -> None:
        if conn is not None:
            conn._dashnb_idle_since = time.monotonic()
            if isinstance(conn, _ObservedConnectionMixin):
                conn._dashnb_done()
        super()._put_conn(conn)  # type: ignore[misc]


def _pool_classes(config: PoolConfig, observer: _observe.Observer) -> dict[str, type]:
    """Per-session urllib3 pool classes (urllib3 builds pools from classes, so the settings ride on them)."""
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    attrs = {"_dashnb_observer": observer, "_dashnb_idle_timeout": config.connection_idle_timeout}
    http_conn = type(
        "ObservedHTTPConnection",
        (_ObservedConnectionMixin, HTTPConnection),
        {"_dashnb_observer": observer, "_dashnb_tls": False},
    )
    https_conn = type(
        "ObservedHTTPSConnection",
        (_ObservedConnectionMixin, HTTPSConnection),
        {"_dashnb_observer": observer, "_dashnb_tls": True},
    )
    return {
        "http": type(
            "DashnbHTTPConnectionPool",
            (_IdleEvictingPoolMixin, HTTPConnectionPool),
            {**attrs, "ConnectionCls": http_conn},
        ),
        "https": type(
            "DashnbHTTPSConnectionPool",
            (_IdleEvictingPoolMixin, HTTPSConnectionPool),
            {**attrs, "ConnectionCls": https_conn},
        ),
    }


def _adapter_class():
    from requests.adapters import HTTPAdapter

    class PoolConfigAdapter(HTTPAdapter):
        """HTTPAdapter carrying a PoolConfig: pool size, default/merged timeouts, idle eviction."""

        def __init__(self, config: PoolConfig, observer: _observe.Observer) -> None:
            self.pool_config = config
            self.observer = observer
            self._pool_classes = _pool_classes(config, observer)
            super().__init__(
                pool_connections=10, pool_maxsize=config.connection_pool_size, max_retries=0, pool_block=False
            )

        def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
            super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)
            # An instance attribute: only this adapter's PoolManager builds observed pools.
            self.poolmanager.pool_classes_by_scheme = self._pool_classes

        def proxy_manager_for(self, proxy, **proxy_kwargs):
            manager = super().proxy_manager_for(proxy, **proxy_kwargs)
            manager.pool_classes_by_scheme = self._pool_classes
            return manager

        def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
            self.observer.attempt_started("sync")
            try:
                return super().send(
                    request,
                    stream=stream,
                    timeout=merge_requests_timeout(timeout, self.pool_config),
                    verify=verify,
                    cert=cert,
                    proxies=proxies,
                )
            except Exception as exc:
                self.observer.request_failed("sync", exc)
                raise

        def __repr__(self) -> str:
            return f"<PoolConfigAdapter {self.pool_config!r}>"

    return PoolConfigAdapter


_adapter_cls = None
_adapter_lock = threading.Lock()


def requests_adapter(config: PoolConfig, observer: _observe.Observer | None = None):
    """The HTTPAdapter for ``config`` (exposed for tests and for mounting on your own session)."""
    global _adapter_cls
    with _adapter_lock:
        if _adapter_cls is None:
            _adapter_cls = _adapter_class()
    return _adapter_cls(config, observer or _observe.Observer())


def build_requests_session(
    config: PoolConfig, endpoint: Any, observer: _observe.Observer | None = None
) -> requests.Session:
    """A requests.Session pooled as ``config`` says, trusting exactly ``endpoint``'s CA."""
    import certifi
    import requests

    session = requests.Session()
    # Without this, REQUESTS_CA_BUNDLE (set on some machines) silently replaces session.verify.
    session.trust_env = False
    session.verify = getattr(endpoint, "ca_path", None) or certifi.where()
    adapter = requests_adapter(config, observer)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


# ---------------------------------------------------------------------------------------------
# aiohttp
# ---------------------------------------------------------------------------------------------


class _RequestQueue:
    """aiohttp client middleware: OkHttp's Dispatcher limits for async calls.

    The per-host slot is taken before the global one, so a call waiting for a busy host does not
    hold a global slot other hosts could use (OkHttp skips such calls when promoting too).
    asyncio.Semaphore is FIFO, so calls start in the order they asked.
    """

    def __init__(self, config: PoolConfig, observer: _observe.Observer) -> None:
        import asyncio

        self._asyncio = asyncio
        self._max_per_host = config.maximum_async_requests_per_host
        self._global = asyncio.Semaphore(config.maximum_async_requests)
        self._per_host: dict[str, Any] = {}
        self._observer = observer
        self._active = 0  # queued or holding a slot
        self._idle_waiters: list[Any] = []

    def _leave(self) -> None:
        self._active -= 1
        if self._active == 0:
            waiters, self._idle_waiters = self._idle_waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    async def wait_idle(self) -> None:
        """Return once no request is queued or holding a slot (used to drain before closing)."""
        while self._active:
            fut = self._asyncio.get_running_loop().create_future()
            self._idle_waiters.append(fut)
            await fut

    async def __call__(self, req, handler):
        obs = self._observer
        obs.attempt_started("async")
        host = req.url.host or ""
        per_host = self._per_host.get(host)
        if per_host is None:
            per_host = self._per_host[host] = self._asyncio.Semaphore(self._max_per_host)
        t0 = time.perf_counter()
        obs.queue_entered("async")
        self._active += 1
        try:
            await per_host.acquire()
            try:
                await self._global.acquire()
            except BaseException:
                per_host.release()
                raise
        except BaseException:
            self._leave()
            raise
        finally:
            obs.queue_left("async", time.perf_counter() - t0)
        obs.request_started("async")
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._global.release()
                per_host.release()
                obs.request_finished("async")
                self._leave()

        try:
            resp = await handler(req)
        except BaseException:
            release()
            raise
        obs.response_started(time.perf_counter())
        # The slot follows the connection: aiohttp calls these callbacks when the response is
        # read to the end, released or closed (also when an unread response is garbage collected).
        conn = resp.connection
        if conn is None:  # the whole body came with the headers and is already released
            release()
        else:
            conn.add_callback(release)
        return resp


class _ProtocolRegistry:
    """Numbers aiohttp connections (ResponseHandler protocols) and counts which are still open."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._protos: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def tag(self, proto) -> tuple[int, int]:
        with self._lock:
            entry = self._protos.get(proto)
            if entry is None:
                entry = self._protos[proto] = [_observe.next_connection_id(), 0]
            entry[1] += 1
            return entry[0], entry[1]

    def open_count(self) -> int:
        with self._lock:
            protos = list(self._protos.keys())
        return sum(1 for p in protos if p.is_connected())


def _trace_config(observer: _observe.Observer):
    import aiohttp

    async def queued_start(session, ctx, params):
        ctx.queued_at = time.perf_counter()

    async def queued_end(session, ctx, params):
        observer.waited(time.perf_counter() - ctx.queued_at)

    async def create_start(session, ctx, params):
        ctx.create_at = time.perf_counter()

    async def create_end(session, ctx, params):
        # One step in aiohttp (loop.create_connection does TCP and TLS), so no TLS split here.
        observer.connection_opened("async", connect_s=time.perf_counter() - ctx.create_at, tls_s=None)

    async def reuse(session, ctx, params):
        log.debug("reusing a pooled aiohttp connection")

    async def request_exception(session, ctx, params):
        observer.request_failed("async", params.exception)

    tc = aiohttp.TraceConfig()
    tc.on_connection_queued_start.append(queued_start)
    tc.on_connection_queued_end.append(queued_end)
    tc.on_connection_create_start.append(create_start)
    tc.on_connection_create_end.append(create_end)
    tc.on_connection_reuseconn.append(reuse)
    tc.on_request_exception.append(request_exception)
    return tc


_aio_classes: tuple[type, type] | None = None


def _aiohttp_classes() -> tuple[type, type]:
    """Connector and request subclasses (built once, on first use, so aiohttp loads lazily)."""
    global _aio_classes
    if _aio_classes is not None:
        return _aio_classes
    import aiohttp

    class PoolConfigConnector(aiohttp.TCPConnector):
        """TCPConnector that keeps the config's sock_connect even when a request brings its own
        ClientTimeout (the SDK's non-stream calls pass ClientTimeout(total=...) only)."""

        def __init__(self, *, pool_config: PoolConfig, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.pool_config = pool_config

        async def connect(self, req, traces, timeout):
            return await super().connect(req, traces, merge_aiohttp_timeout(timeout, self.pool_config))

    class ObservedRequest(aiohttp.ClientRequest):
        """Numbers the connection a request goes out on and re-applies the config's sock_read."""

        _dashnb_observer: _observe.Observer
        _dashnb_registry: _ProtocolRegistry
        _dashnb_read_timeout: float | None = None

        async def send(self, conn):
            proto = conn.protocol
            if proto is not None:
                # aiohttp set the request's own sock_read (maybe None) just before send().
                proto.read_timeout = _tighter(self._dashnb_read_timeout, proto.read_timeout)
                cid, n = self._dashnb_registry.tag(proto)
                self._dashnb_observer.request_sent(
                    "async", connection_id=cid, requests_on_connection=n, sent_at=time.perf_counter()
                )
            return await super().send(conn)

    _aio_classes = (PoolConfigConnector, ObservedRequest)
    return _aio_classes


_queues: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

# Before CPython 3.12.8 (python/cpython#118960) an SSL transport whose peer never answers the
# TLS shutdown (e.g. a connection dropped after a read timeout) leaks its socket when the loop
# closes; aiohttp then aborts such transports itself if asked. Newer Pythons warn if asked.
_NEEDS_CLEANUP_CLOSED = (3, 13, 0) <= sys.version_info < (3, 13, 1) or sys.version_info < (3, 12, 8)


async def wait_idle(session: aiohttp.ClientSession) -> None:
    """Wait until no request made through ``session`` (built here) is queued or unreleased."""
    queue = _queues.get(session)
    if queue is not None:
        await queue.wait_idle()


def build_aiohttp_session(
    config: PoolConfig, endpoint: Any, observer: _observe.Observer | None = None
) -> aiohttp.ClientSession:
    """An aiohttp.ClientSession bound to the running loop, pooled and queued as ``config`` says.

    Must be called inside a running event loop (aiohttp binds sessions to it). The caller owns
    the session and must ``await session.close()`` on the same loop.
    """
    import asyncio

    import aiohttp

    asyncio.get_running_loop()  # a clear RuntimeError outside a loop, before anything is built
    observer = observer or _observe.Observer()
    connector_cls, request_base = _aiohttp_classes()
    registry = _ProtocolRegistry()
    observer.add_open_probe("async", registry.open_count)
    request_cls = type(
        "DashnbClientRequest",
        (request_base,),
        {"_dashnb_observer": observer, "_dashnb_registry": registry, "_dashnb_read_timeout": config.read_timeout},
    )
    ssl_context = endpoint.ssl_context()
    connector = connector_cls(
        pool_config=config,
        limit=config.connection_pool_size,
        limit_per_host=config.maximum_async_requests_per_host,
        keepalive_timeout=config.connection_idle_timeout,
        ssl=ssl_context,
        enable_cleanup_closed=_NEEDS_CLEANUP_CLOSED,
    )
    timeout = aiohttp.ClientTimeout(
        total=None, connect=None, sock_connect=config.connect_timeout, sock_read=config.read_timeout
    )
    queue = _RequestQueue(config, observer)
    session = aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        trust_env=False,
        trace_configs=[_trace_config(observer)],
        middlewares=(queue,),
        request_class=request_cls,
    )
    _queues[session] = queue
    return session
