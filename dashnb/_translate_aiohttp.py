"""aiohttp side of the translation: the connector, connection numbering, the session.

Imported on first use by ``dashnb._translate`` (which documents the mapping), so it may import
aiohttp at the top.

OkHttp's two pieces land on the one ``TCPConnector``: its ``limit`` / ``limit_per_host`` are the
Dispatcher's maxRequests / maxRequestsPerHost (calls past them wait for a slot, and a slot is
held until the connection is released), and ``PoolConfigConnector`` adds what aiohttp's pool
lacks from ConnectionPool: at most ``connection_pool_size`` idle connections are kept, surplus
ones are closed as they come back. Queue waits, calls in flight and the drain before closing are
read from aiohttp's ``TraceConfig`` signals and connection callbacks; no middleware sits on the
request path.

    >>> import aiohttp
    >>> from dashnb._config import PoolConfig
    >>> from dashnb._translate_aiohttp import merge_aiohttp_timeout
    >>> merge_aiohttp_timeout(aiohttp.ClientTimeout(total=300), PoolConfig(read_timeout=10)).sock_read
    10.0
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp

from . import _observe
from ._translate import java_idle_timeout, tighter

if TYPE_CHECKING:  # pragma: no cover
    from ._config import PoolConfig

log = logging.getLogger(__name__)

__all__ = ["build_aiohttp_session", "merge_aiohttp_timeout", "wait_idle"]


def merge_aiohttp_timeout(timeout: aiohttp.ClientTimeout, config: PoolConfig) -> aiohttp.ClientTimeout:
    """``timeout`` with the config's socket limits re-applied (tighter wins); ``total`` and
    ``connect`` (which includes waiting for a pooled connection) stay the caller's."""
    sock_connect = tighter(config.connect_timeout, timeout.sock_connect)
    sock_read = tighter(config.read_timeout, timeout.sock_read)
    if sock_connect == timeout.sock_connect and sock_read == timeout.sock_read:
        return timeout
    return aiohttp.ClientTimeout(
        total=timeout.total,
        connect=timeout.connect,
        sock_read=sock_read,
        sock_connect=sock_connect,
        ceil_threshold=timeout.ceil_threshold,
    )


class _Activity:
    """Requests of one session that have started and not yet released their connection.

    Lets a session being replaced drain before it is closed (``wait_idle``). Fed by the trace
    callbacks below: a request enters at ``on_request_start`` and leaves when it fails or when
    its connection is released (body read, response released or closed).
    """

    def __init__(self) -> None:
        self.active = 0
        self._idle_waiters: list[asyncio.Future] = []

    def enter(self) -> None:
        self.active += 1

    def leave(self) -> None:
        self.active -= 1
        if self.active == 0:
            waiters, self._idle_waiters = self._idle_waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    async def wait_idle(self) -> None:
        while self.active:
            fut = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(fut)
            await fut


def _once(fn: Callable[[], None]) -> Callable[[], None]:
    """``fn`` guarded to run at most once, whichever of several paths reaches it first."""
    done = False

    def call() -> None:
        nonlocal done
        if not done:
            done = True
            fn()

    return call


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


def _trace_config(observer: _observe.Observer, activity: _Activity) -> aiohttp.TraceConfig:
    """The observation that needs no patching: aiohttp's own request and connection signals."""

    async def request_start(session, ctx, params):
        # One per attempt: the SDK's retry sends a new request through the session.
        observer.attempt_started("async")
        activity.enter()
        # A request leaves once: when its connection is released, or when it fails (a failure
        # after the headers also releases the connection).
        ctx.dashnb_leave = _once(activity.leave)
        ctx.dashnb_queued_at = None

    async def queued_start(session, ctx, params):
        # The connector's limit / limit_per_host is full: OkHttp's Dispatcher queue.
        observer.queue_entered("async")
        ctx.dashnb_queued_at = time.perf_counter()

    async def queued_end(session, ctx, params):
        observer.queue_left("async", time.perf_counter() - ctx.dashnb_queued_at)
        ctx.dashnb_queued_at = None

    async def create_start(session, ctx, params):
        ctx.create_at = time.perf_counter()

    async def create_end(session, ctx, params):
        # One step in aiohttp (loop.create_connection does TCP and TLS), so no TLS split here.
        observer.connection_opened("async", connect_s=time.perf_counter() - ctx.create_at, tls_s=None)

    async def reuse(session, ctx, params):
        log.debug("reusing a pooled aiohttp connection")

    async def request_end(session, ctx, params):
        observer.response_started(time.perf_counter())
        conn = params.response.connection
        if conn is None:  # the whole body came with the headers and is already released
            ctx.dashnb_leave()
        else:
            conn.add_callback(ctx.dashnb_leave)

    async def request_exception(session, ctx, params):
        # Also a cancellation or a timeout while waiting for a slot: the wait ends here.
        if getattr(ctx, "dashnb_queued_at", None) is not None:
            observer.queue_left("async", time.perf_counter() - ctx.dashnb_queued_at)
            ctx.dashnb_queued_at = None
        observer.request_failed("async", params.exception)
        ctx.dashnb_leave()

    tc = aiohttp.TraceConfig()
    tc.on_request_start.append(request_start)
    tc.on_connection_queued_start.append(queued_start)
    tc.on_connection_queued_end.append(queued_end)
    tc.on_connection_create_start.append(create_start)
    tc.on_connection_create_end.append(create_end)
    tc.on_connection_reuseconn.append(reuse)
    tc.on_request_end.append(request_end)
    tc.on_request_exception.append(request_exception)
    return tc


class PoolConfigConnector(aiohttp.TCPConnector):
    """TCPConnector with OkHttp's idle cap, keeping the config's sock_connect on every request.

    ``limit`` / ``limit_per_host`` already behave like OkHttp's Dispatcher (a call waits for a
    slot, holds it until its connection is released, and never waits for the pool). What
    aiohttp lacks is ConnectionPool's ``maxIdleConnections``: its pool keeps every released
    connection until ``keepalive_timeout``. So when a connection comes back and more than
    ``max_idle`` are idle, the longest-idle ones are closed at once, as OkHttp's cleanup does.

    ``connect`` re-applies the config's sock_connect when a request brings its own ClientTimeout
    (the SDK's non-stream calls pass ClientTimeout(total=...) only).
    """

    def __init__(self, *, pool_config: PoolConfig, max_idle: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pool_config = pool_config
        self.max_idle = max_idle

    async def connect(self, req, traces, timeout):
        return await super().connect(req, traces, merge_aiohttp_timeout(timeout, self.pool_config))

    def _release(self, key, protocol, *, should_close: bool = False) -> None:
        super()._release(key, protocol, should_close=should_close)
        self._evict_surplus_idle()

    def _evict_surplus_idle(self) -> None:
        # _conns: key -> deque of (protocol, time it was released), oldest first; aiohttp's own
        # _get() and _cleanup() read it the same way.
        idle = sum(len(conns) for conns in self._conns.values())
        while idle > self.max_idle:
            key = min(self._conns, key=lambda k: self._conns[k][0][1])
            conns = self._conns[key]
            proto, _ = conns.popleft()
            if not conns:
                del self._conns[key]
            idle -= 1
            log.debug(
                "closing an idle connection to %s:%s: %d idle > connection_pool_size %d",
                key.host,
                key.port,
                idle + 1,
                self.max_idle,
            )
            transport = proto.transport
            proto.close()
            if key.is_ssl and not self._cleanup_closed_disabled:
                self._cleanup_closed_transports.append(transport)


class ObservedRequest(aiohttp.ClientRequest):
    """Numbers the connection a request goes out on, counts it in flight until that connection
    is released, and re-applies the config's sock_read.

    aiohttp builds requests from a class, so a session's settings ride on a per-session subclass.
    """

    _dashnb_observer: _observe.Observer
    _dashnb_registry: _ProtocolRegistry
    _dashnb_read_timeout: float | None = None

    async def send(self, conn):
        proto = conn.protocol
        if proto is not None:
            # aiohttp set the request's own sock_read (maybe None) just before send().
            proto.read_timeout = tighter(self._dashnb_read_timeout, proto.read_timeout)
            cid, n = self._dashnb_registry.tag(proto)
            obs = self._dashnb_observer
            obs.request_started("async")
            # Connection callbacks run once, when it is released or closed: body read, response
            # released or closed, or the request failed.
            conn.add_callback(lambda: obs.request_finished("async"))
            obs.request_sent("async", connection_id=cid, requests_on_connection=n, sent_at=time.perf_counter())
        return await super().send(conn)


_activity: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

# Before CPython 3.12.8 (python/cpython#118960) an SSL transport whose peer never answers the
# TLS shutdown (e.g. a connection dropped after a read timeout) leaks its socket when the loop
# closes; aiohttp then aborts such transports itself if asked. Newer Pythons warn if asked.
_NEEDS_CLEANUP_CLOSED = (3, 13, 0) <= sys.version_info < (3, 13, 1) or sys.version_info < (3, 12, 8)


async def wait_idle(session: aiohttp.ClientSession) -> None:
    """Wait until no request made through ``session`` (built here) is queued or unreleased."""
    activity = _activity.get(session)
    if activity is not None:
        await activity.wait_idle()


def build_aiohttp_session(
    config: PoolConfig, endpoint: Any, observer: _observe.Observer | None = None
) -> aiohttp.ClientSession:
    """An aiohttp.ClientSession bound to the running loop, pooled as ``config`` says.

    Must be called inside a running event loop (aiohttp binds sessions to it). The caller owns
    the session and must ``await session.close()`` on the same loop.
    """
    asyncio.get_running_loop()  # a clear RuntimeError outside a loop, before anything is built
    observer = observer or _observe.Observer()
    registry = _ProtocolRegistry()
    observer.add_open_probe("async", registry.open_count)
    activity = _Activity()
    request_cls = type(
        "DashnbClientRequest",
        (ObservedRequest,),
        {"_dashnb_observer": observer, "_dashnb_registry": registry, "_dashnb_read_timeout": config.read_timeout},
    )
    connector = PoolConfigConnector(
        pool_config=config,
        # Dispatcher.maxRequests / maxRequestsPerHost: calls beyond them wait for a slot.
        limit=config.maximum_async_requests,
        limit_per_host=config.maximum_async_requests_per_host,
        # ConnectionPool(maxIdleConnections, keepAliveDuration): what is kept, and how long.
        max_idle=config.connection_pool_size,
        keepalive_timeout=java_idle_timeout(config),
        ssl=endpoint.ssl_context(),
        enable_cleanup_closed=_NEEDS_CLEANUP_CLOSED,
    )
    timeout = aiohttp.ClientTimeout(
        total=None, connect=None, sock_connect=config.connect_timeout, sock_read=config.read_timeout
    )
    session = aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        trust_env=bool(getattr(endpoint, "trust_env", False)),  # proxies from the environment: real service only
        trace_configs=[_trace_config(observer, activity)],
        request_class=request_cls,
    )
    _activity[session] = activity
    return session
