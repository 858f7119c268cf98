"""httpx observed without patching a socket: an httpcore pool whose connections number themselves.

Used by ``dashnb._transport.httpx``'s transports (imported with them, so it imports httpcore at
the top). ``ObservedPool`` (and its async twin) wraps each connection it creates, direct or through
a proxy's tunnel (the transports put it in front of httpcore's proxy pools too); the wrapper
numbers the connection and adds httpcore's ``trace`` extension to each request it serves, which
reports the TCP connect, the TLS handshake, the request going out and the response closing, to
a ``dashnb._observe.Observer``. A ``Registry`` holds one client's connections for the
open-connection gauge. Both pools keep connections by the number idle, as OkHttp does
(``dashnb._httpx_keepalive``), not by httpcore's count of all connections.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import Any

import httpcore

from .. import _observe
from .httpx_keepalive import IdleKeepalive

log = logging.getLogger(__name__)

__all__ = [
    "ObservedAsyncConnection",
    "ObservedAsyncPool",
    "ObservedConnection",
    "ObservedPool",
    "Registry",
    "RequestWatch",
]


class Registry:
    """The connections one client opened, for the open-connection gauge (httpcore closes a
    connection it cannot reuse from inside, without telling the pool, so closes are probed)."""

    def __init__(self) -> None:
        self._conns: weakref.WeakSet = weakref.WeakSet()

    def add(self, conn: Any) -> None:
        self._conns.add(conn)

    def open_count(self) -> int:
        return sum(1 for c in list(self._conns) if c._dashnb_id is not None and not c.is_closed())


class RequestWatch:
    """What one request did on one connection, fed by httpcore's trace events."""

    __slots__ = ("conn", "outer", "tcp0", "tcp_s", "tls0", "tls_s", "sent", "finished")

    def __init__(self, conn: Any, outer: Any) -> None:
        self.conn = conn
        self.outer = outer
        self.tcp0 = self.tls0 = 0.0
        self.tcp_s: float | None = None
        self.tls_s: float | None = None
        self.sent = self.finished = False

    def event(self, name: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        conn = self.conn
        obs: _observe.Observer = conn._dashnb_observer
        if name == "connection.connect_tcp.started":
            self.tcp0 = now
        elif name == "connection.connect_tcp.complete":
            self.tcp_s = now - self.tcp0
        # "connection.start_tls" on a direct connection; "proxy.start_tls" for the service's TLS
        # inside a proxy's tunnel (after the proxy's own, when the proxy is https://).
        elif name.endswith("start_tls.started"):
            self.tls0 = now
        elif name.endswith("start_tls.complete"):
            self.tls_s = now - self.tls0
        elif name.endswith(".send_request_headers.started") and _is_connect(info):
            pass  # the tunnel's CONNECT to a proxy: the connection is not open to the service yet
        elif name.endswith(".send_request_headers.started") and not self.sent:
            self.sent = True
            if conn._dashnb_id is None:  # the first request: this connection was just opened
                conn._dashnb_id = _observe.next_connection_id()
                obs.connection_opened(
                    conn._dashnb_path, connect_s=self.tcp_s, tls_s=self.tls_s, connection_id=conn._dashnb_id
                )
                log.debug("opened connection %d (tcp %s s, tls %s s)", conn._dashnb_id, self.tcp_s, self.tls_s)
            n = conn._dashnb_requests = conn._dashnb_requests + 1
            obs.request_sent(
                conn._dashnb_path, connection_id=conn._dashnb_id, requests_on_connection=n, sent_at=now, start=True
            )
        elif name.endswith(".response_closed.complete") or name.endswith(".response_closed.failed"):
            if self.sent and not self.finished:
                self.finished = True
                obs.request_finished(conn._dashnb_path)


def _is_connect(info: dict[str, Any]) -> bool:
    request = info.get("request")
    return getattr(request, "method", None) == b"CONNECT"


def _outer_trace(request: httpcore.Request) -> Any:
    """The caller's own trace callback, if any (not one of ours left on a re-sent request)."""
    trace = request.extensions.get("trace")
    watch = getattr(trace, "_dashnb_watch", None)
    return watch.outer if watch is not None else trace


def _set_trace(request: httpcore.Request, trace: Any, watch: RequestWatch) -> None:
    trace._dashnb_watch = watch
    # In place: httpx hands httpcore the request's own extensions dict, and the drain changes
    # the read timeout in that same dict later.
    request.extensions["trace"] = trace


class _Delegating:
    """What httpcore asks a connection about its state, answered by the connection it wraps
    (the same for the sync and the async twin)."""

    _inner: Any
    _dashnb_id: int | None

    def info(self) -> str:
        return self._inner.info()

    def can_handle_request(self, origin: httpcore.Origin) -> bool:
        return self._inner.can_handle_request(origin)

    def is_available(self) -> bool:
        return self._inner.is_available()

    def has_expired(self) -> bool:
        return self._inner.has_expired()

    def is_idle(self) -> bool:
        return self._inner.is_idle()

    def is_closed(self) -> bool:
        return self._inner.is_closed()

    def __repr__(self) -> str:
        return f"<dashnb connection {self._dashnb_id} {self._inner!r}>"


class ObservedConnection(_Delegating, httpcore.ConnectionInterface):
    """A pooled connection that numbers itself and watches each request it serves."""

    _dashnb_observer: _observe.Observer
    _dashnb_path = "sync"

    def __init__(self, inner: httpcore.ConnectionInterface) -> None:
        self._inner = inner
        self._dashnb_id: int | None = None
        self._dashnb_requests = 0

    def handle_request(self, request: httpcore.Request) -> httpcore.Response:
        watch = RequestWatch(self, _outer_trace(request))

        def trace(name: str, info: dict[str, Any]) -> None:
            watch.event(name, info)
            if watch.outer is not None:
                watch.outer(name, info)

        _set_trace(request, trace, watch)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class ObservedAsyncConnection(_Delegating, httpcore.AsyncConnectionInterface):
    """The async twin of ``ObservedConnection`` (httpcore awaits async trace callbacks)."""

    _dashnb_observer: _observe.Observer
    _dashnb_path = "async"

    def __init__(self, inner: httpcore.AsyncConnectionInterface) -> None:
        self._inner = inner
        self._dashnb_id: int | None = None
        self._dashnb_requests = 0

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        watch = RequestWatch(self, _outer_trace(request))

        async def trace(name: str, info: dict[str, Any]) -> None:
            watch.event(name, info)
            if watch.outer is not None:
                await watch.outer(name, info)

        _set_trace(request, trace, watch)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class ObservedPool(IdleKeepalive, httpcore.ConnectionPool):
    _dashnb_conn_cls: type[ObservedConnection]
    _dashnb_registry: Registry

    def create_connection(self, origin: httpcore.Origin) -> httpcore.ConnectionInterface:
        conn = self._dashnb_conn_cls(super().create_connection(origin))
        self._dashnb_registry.add(conn)
        return conn


class ObservedAsyncPool(IdleKeepalive, httpcore.AsyncConnectionPool):
    _dashnb_conn_cls: type[ObservedAsyncConnection]
    _dashnb_registry: Registry

    def create_connection(self, origin: httpcore.Origin) -> httpcore.AsyncConnectionInterface:
        conn = self._dashnb_conn_cls(super().create_connection(origin))
        self._dashnb_registry.add(conn)
        return conn
