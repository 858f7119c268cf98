"""aiohttp side of the translation: the connector, connection numbering, the session.

Imported on first use by ``dashnb._transport.rules`` (which documents the mapping), so it may import
aiohttp at the top.

OkHttp's two pieces land on the one ``TCPConnector``: its ``limit`` / ``limit_per_host`` are the
Dispatcher's maxRequests / maxRequestsPerHost (calls past them wait for a slot, and a slot is
held until the connection is released), and ``PoolConfigConnector`` adds what aiohttp's pool
lacks from ConnectionPool: at most ``connection_pool_size`` idle connections are kept, surplus
ones are closed as they come back. Queue waits, new connections, calls in flight and the drain
before closing are observed in the connector's own steps (``connect``, the wait for a slot,
``_create_connection``, ``_release``) and in the request and response classes (``send``,
``start``); no trace config, connection callback or middleware sits on the request path.

What that observes differently from aiohttp's request signals: a request counts as started when
it asks the connector for a connection (with ``trust_env`` aiohttp first looks up netrc and the
proxy environment, off the loop), and a failure is counted where it happens (connect, send,
reading the headers), under the name it has there (``asyncio.TimeoutError`` before aiohttp turns
it into ``ConnectionTimeoutError``). Errors raised after the headers (``raise_for_status``,
redirects) are not transport failures and are not counted.

    >>> import aiohttp
    >>> from dashnb._config.pool import PoolConfig
    >>> from dashnb._transport.aiohttp import merge_aiohttp_timeout
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

from .. import _observe
from .._endpoint import Endpoint, trusts_env
from .rules import java_idle_timeout, tighter

if TYPE_CHECKING:  # pragma: no cover
    from .._config.pool import PoolConfig

log = logging.getLogger(__name__)

_current_record = _observe.current_record

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

    Lets a session being replaced drain before it is closed (``wait_idle``). A request enters
    when it asks the connector for a connection and leaves when that fails or when its
    connection is released (body read, response released or closed).
    """

    __slots__ = ("active", "_idle_waiters")

    def __init__(self) -> None:
        self.active = 0
        self._idle_waiters: list[asyncio.Future] = []

    def enter(self) -> None:
        self.active += 1

    def leave(self) -> None:
        self.active -= 1
        if self.active == 0 and self._idle_waiters:
            self.wake()

    def wake(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait_idle(self) -> None:
        while self.active:
            fut = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(fut)
            await fut


class _ProtocolRegistry:
    """Numbers aiohttp connections (ResponseHandler protocols) and counts which are still open.

    A connection is numbered once, when the connector creates it; its id and request count ride
    on the protocol object, so the per-request path reads two attributes instead of looking the
    protocol up. The weak set only serves ``open_count`` (aiohttp has no close signal).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._protos: weakref.WeakSet = weakref.WeakSet()

    def add(self, proto) -> int:
        cid = _observe.next_connection_id()
        proto._dashnb_id = cid
        proto._dashnb_requests = 0
        proto._dashnb_busy = False  # a request sent on it and not yet released
        with self._lock:  # open_count may list the set from another thread
            self._protos.add(proto)
        return cid

    def open_count(self) -> int:
        with self._lock:
            protos = list(self._protos)
        return sum(1 for p in protos if p.is_connected())


class PoolConfigConnector(aiohttp.TCPConnector):
    """TCPConnector with OkHttp's idle cap, keeping the config's sock_connect on every request,
    and the place where a request's queue wait and new connections are observed.

    ``limit`` / ``limit_per_host`` already behave like OkHttp's Dispatcher (a call waits for a
    slot, holds it until its connection is released, and never waits for the pool). What
    aiohttp lacks is ConnectionPool's ``maxIdleConnections``: its pool keeps every released
    connection until ``keepalive_timeout``. So when a connection comes back and more than
    ``max_idle`` are idle, the longest-idle ones are closed at once, as OkHttp's cleanup does.

    New connections get the config's sock_connect even when a request brings its own
    ClientTimeout (the SDK's non-stream calls pass ClientTimeout(total=...) only): it is
    re-applied in ``_create_connection``, the only step that reads the socket timeouts, so a
    request served from the pool pays nothing for it.

    Observation lives in these overrides rather than in an ``aiohttp.TraceConfig``: with any
    trace config attached aiohttp builds a Trace and a params object and awaits a signal for
    every request start and end, header block, body chunk sent and received, and pool reuse,
    which cost more per request than everything dashnb records.
    """

    def __init__(
        self,
        *,
        pool_config: PoolConfig,
        max_idle: int,
        observer: _observe.Observer | None = None,
        registry: _ProtocolRegistry | None = None,
        activity: _Activity | None = None,
        on_close: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._dashnb_on_close = on_close
        self.pool_config = pool_config
        self._dashnb_read_timeout = pool_config.read_timeout
        self.max_idle = max_idle
        self._dashnb_observer = observer or _observe.Observer()
        self._dashnb_registry = registry or _ProtocolRegistry()
        self._dashnb_activity = activity or _Activity()
        # Requests sent, reused and in flight, counted without the observer's lock: only this
        # session's event loop thread writes them (ObservedRequest.send, _release).
        self._dashnb_counts = self._dashnb_observer.add_path_counters("async", self)
        # Connections this connector has opened: no more can be idle, so while it is at most
        # max_idle, _release need not add up the idle pool.
        self._dashnb_opened = 0
        # The session's ClientTimeout, set by build_aiohttp_session: requests under it need no merge.
        self._dashnb_session_timeout: aiohttp.ClientTimeout | None = None
        # The SDK passes a new but equal ClientTimeout on every call: merge each distinct one once.
        self._merged_timeouts: dict[aiohttp.ClientTimeout, aiohttp.ClientTimeout] = {}

    def _close(self, *args: Any, **kwargs: Any) -> Any:
        # Closing (sync part of close(), run whichever way the session ends): this session's
        # connections stop counting, so its observer drops its probe.
        if self._dashnb_on_close is not None:
            self._dashnb_on_close()
            self._dashnb_on_close = None
        return super()._close(*args, **kwargs)

    def _merge_timeout(self, timeout: aiohttp.ClientTimeout) -> aiohttp.ClientTimeout:
        merged = self._merged_timeouts.get(timeout)
        if merged is None:
            if len(self._merged_timeouts) >= 64:  # callers inventing timeouts: stay bounded
                self._merged_timeouts.clear()
            merged = self._merged_timeouts[timeout] = merge_aiohttp_timeout(timeout, self.pool_config)
        return merged

    def connect(self, req, traces, timeout):
        # One per attempt (the SDK's retry sends a new request through the session): the request
        # is active, for wait_idle, from here until it fails or its connection is released.
        # A plain function handing back aiohttp's coroutine, not a coroutine around it: taking a
        # pooled connection cannot fail (nothing in it awaits), and the two steps that can (the
        # wait for a slot, opening a connection) count their own failures below.
        rec = _current_record()
        if rec is not None:
            rec.start_attempt("async")
        self._dashnb_activity.active += 1
        # aiohttp hands the request's sock_read to the connection right after this returns, and
        # ObservedRequest.send replaces it with the config's where the config's is tighter and can
        # fire first: before the request's total (which runs until the connection is released,
        # body included) would. Decided here, where the request's timeout is known; a request
        # under the session's own timeout (which already carries the config's sock_read) skips it.
        read = self._dashnb_read_timeout
        if read is not None and timeout is not self._dashnb_session_timeout:
            own = timeout.sock_read
            total = timeout.total
            if (own is None or own > read) and (total is None or total > read):
                req._dashnb_read_timeout = read
        return _connector_connect(self, req, traces, timeout)

    def _dashnb_failed(self, exc: BaseException) -> None:
        self._dashnb_observer.request_failed("async", exc)
        self._dashnb_activity.leave()

    async def _wait_for_available_connection(self, key, traces) -> None:
        # The connector's limit / limit_per_host is full: OkHttp's Dispatcher queue.
        obs = self._dashnb_observer
        obs.queue_entered("async")
        t0 = time.perf_counter()
        try:
            await super()._wait_for_available_connection(key, traces)
        except BaseException as exc:  # a cancellation, or the connect timeout while waiting
            self._dashnb_failed(exc)
            raise
        finally:
            obs.queue_left("async", time.perf_counter() - t0)

    async def _create_connection(self, req, traces, timeout):
        # One step in aiohttp (loop.create_connection does TCP and TLS), so no TLS split here.
        t0 = time.perf_counter()
        try:
            proto = await super()._create_connection(req, traces, self._merge_timeout(timeout))
        except BaseException as exc:
            self._dashnb_failed(exc)
            raise
        connect_s = time.perf_counter() - t0
        cid = self._dashnb_registry.add(proto)
        self._dashnb_opened += 1
        self._dashnb_observer.connection_opened("async", connect_s=connect_s, tls_s=None, connection_id=cid)
        if self._closed:  # connect() closes it and raises this right after we return
            self._dashnb_failed(aiohttp.ClientConnectionError("Connector is closed."))
        return proto

    def _release(self, key, protocol, *, should_close: bool = False) -> None:
        # Every way a connection stops serving its request ends here: body read, response
        # released or closed, a failed request, an unreleased Connection collected. (Counted
        # before aiohttp's own early return for a connector that is already closed.) Every
        # protocol here was numbered by _create_connection, so _dashnb_busy is always set.
        if protocol._dashnb_busy:
            protocol._dashnb_busy = False
            self._dashnb_counts.in_flight -= 1
            activity = self._dashnb_activity
            activity.active -= 1
            if not activity.active and activity._idle_waiters:
                activity.wake()
        _connector_release(self, key, protocol, should_close=should_close)
        # _conns: key -> deque of (protocol, time it was released), oldest first; aiohttp's own
        # _get() and _cleanup() read it the same way.
        if self._dashnb_opened > self.max_idle:
            idle = sum(map(len, self._conns.values()))
            if idle > self.max_idle:
                self._evict_surplus_idle(idle)

    def _evict_surplus_idle(self, idle: int) -> None:
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
    """Counts the request on the connection it goes out on, in flight until that connection is
    released (``PoolConfigConnector._release``), and re-applies the config's sock_read.

    aiohttp builds requests from a class, so a session's settings ride on a per-session subclass.
    """

    _dashnb_observer: _observe.Observer
    # The config's sock_read, set per request by PoolConfigConnector.connect only when it must
    # replace the request's own.
    _dashnb_read_timeout: float | None = None

    async def send(self, conn):
        proto = conn._protocol  # the Connection.protocol property, read without a call
        if proto is not None:
            read = self._dashnb_read_timeout
            if read is not None:  # aiohttp set the request's own sock_read just before send()
                proto._read_timeout = read  # the read_timeout property's setter, without the call
            n = proto._dashnb_requests = proto._dashnb_requests + 1
            proto._dashnb_busy = True
            # Observer.request_sent(..., start=True), inlined on the session's own counters.
            c = conn._connector._dashnb_counts
            c.requests += 1
            c.in_flight += 1
            if n > 1:
                c.reused += 1
            rec = _current_record()
            if rec is not None:
                rec.sent(proto._dashnb_id, n, time.perf_counter())
        try:
            return await _request_send(self, conn)
        except BaseException as exc:
            self._dashnb_observer.request_failed("async", exc)
            raise


class ObservedResponse(aiohttp.ClientResponse):
    """Time to first byte: the response headers have been read."""

    _dashnb_observer: _observe.Observer

    async def start(self, connection):
        try:
            resp = await _response_start(self, connection)
        except BaseException as exc:
            self._dashnb_observer.request_failed("async", exc)
            raise
        self._dashnb_observer.response_started(time.perf_counter())
        return resp


# The base class's methods, called directly from the overrides on the per-request path (a
# zero-argument super() builds a proxy object on every call).
_connector_connect = aiohttp.TCPConnector.connect
_connector_release = aiohttp.TCPConnector._release
_request_send = aiohttp.ClientRequest.send
_response_start = aiohttp.ClientResponse.start

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
    config: PoolConfig, endpoint: Endpoint, observer: _observe.Observer | None = None
) -> aiohttp.ClientSession:
    """An aiohttp.ClientSession bound to the running loop, pooled as ``config`` says.

    Must be called inside a running event loop (aiohttp binds sessions to it). The caller owns
    the session and must ``await session.close()`` on the same loop.
    """
    asyncio.get_running_loop()  # a clear RuntimeError outside a loop, before anything is built
    observer = observer or _observe.Observer()
    registry = _ProtocolRegistry()
    unprobe = observer.add_open_probe("async", registry.open_count)
    activity = _Activity()
    request_cls = type(
        "DashnbClientRequest",
        (ObservedRequest,),
        {"_dashnb_observer": observer},
    )
    response_cls = type("DashnbClientResponse", (ObservedResponse,), {"_dashnb_observer": observer})
    connector = PoolConfigConnector(
        pool_config=config,
        observer=observer,
        registry=registry,
        activity=activity,
        on_close=unprobe,
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
    connector._dashnb_session_timeout = timeout
    session = aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        trust_env=trusts_env(endpoint),  # proxies from the environment: real service only
        request_class=request_cls,
        response_class=response_cls,
    )
    _activity[session] = activity
    return session
