"""aiohttp side of the translation: the dispatcher queue, connection numbering, the session.

Imported on first use by ``dashnb._translate`` (which documents the mapping), so it may import
aiohttp at the top.

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
from typing import TYPE_CHECKING, Any

import aiohttp

from . import _observe
from ._translate import tighter

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


class _RequestQueue:
    """aiohttp client middleware: OkHttp's Dispatcher limits for async calls.

    The per-host slot is taken before the global one, so a call waiting for a busy host does not
    hold a global slot other hosts could use (OkHttp skips such calls when promoting too).
    asyncio.Semaphore is FIFO, so calls start in the order they asked.
    """

    def __init__(self, config: PoolConfig, observer: _observe.Observer) -> None:
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
            fut = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(fut)
            await fut

    async def __call__(self, req, handler):
        obs = self._observer
        obs.attempt_started("async")
        host = req.url.host or ""
        per_host = self._per_host.get(host)
        if per_host is None:
            per_host = self._per_host[host] = asyncio.Semaphore(self._max_per_host)
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


def _trace_config(observer: _observe.Observer) -> aiohttp.TraceConfig:
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


class PoolConfigConnector(aiohttp.TCPConnector):
    """TCPConnector that keeps the config's sock_connect even when a request brings its own
    ClientTimeout (the SDK's non-stream calls pass ClientTimeout(total=...) only)."""

    def __init__(self, *, pool_config: PoolConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pool_config = pool_config

    async def connect(self, req, traces, timeout):
        return await super().connect(req, traces, merge_aiohttp_timeout(timeout, self.pool_config))


class ObservedRequest(aiohttp.ClientRequest):
    """Numbers the connection a request goes out on and re-applies the config's sock_read.

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
            self._dashnb_observer.request_sent(
                "async", connection_id=cid, requests_on_connection=n, sent_at=time.perf_counter()
            )
        return await super().send(conn)


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
    asyncio.get_running_loop()  # a clear RuntimeError outside a loop, before anything is built
    observer = observer or _observe.Observer()
    registry = _ProtocolRegistry()
    observer.add_open_probe("async", registry.open_count)
    request_cls = type(
        "DashnbClientRequest",
        (ObservedRequest,),
        {"_dashnb_observer": observer, "_dashnb_registry": registry, "_dashnb_read_timeout": config.read_timeout},
    )
    ssl_context = endpoint.ssl_context()
    connector = PoolConfigConnector(
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
        trust_env=bool(getattr(endpoint, "trust_env", False)),  # proxies from the environment: real service only
        trace_configs=[_trace_config(observer)],
        middlewares=(queue,),
        request_class=request_cls,
    )
    _queues[session] = queue
    return session
