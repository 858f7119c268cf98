"""httpx side of the translation: Limits and Timeout, observed pools, streams that keep their connection.

    >>> from dashnb._config import PoolConfig
    >>> from dashnb._translate_httpx import httpx_limits, httpx_timeout
    >>> httpx_limits(PoolConfig(connection_pool_size=64), is_async=True)
    Limits(max_connections=32, max_keepalive_connections=64, keepalive_expiry=300.0)
    >>> httpx_timeout(PoolConfig(connect_timeout=10))
    Timeout(connect=10.0, read=300.0, write=60.0, pool=None)

Imported on first use (by ``dashnb._session`` and the modes), so it may import httpx at the top;
``import dashnb`` never imports httpx.

How each Java (OkHttp) setting is carried over to httpx (httpcore does the pooling):

- ``connection_pool_size`` -> ``Limits(max_keepalive_connections=...)``: idle connections kept.
  httpcore closes idle connections beyond it when the pool is next used, as OkHttp's
  ConnectionPool(maxIdleConnections) does; a burst opens more and churns, never waits for it.
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

A per-request timeout (the openai SDK passes ``Timeout(600, connect=5)`` on every call; the
dashscope v2 client passes one when given ``timeout=``) is merged with the config's, the tighter
of the two winning for each part, as on the requests and aiohttp paths.

Streams. The openai SDK's sync ``Stream`` closes the response as soon as it has read
``data: [DONE]``; the chunked body's end (``0\\r\\n\\r\\n``) usually arrives a moment later, and
httpcore closes a connection whose response was closed before its end was read. So every streamed
completion through a plain ``httpx.Client`` pays a new TCP and TLS handshake. dashnb's transport
knows the protocol: when the caller closes a ``text/event-stream`` response whose last event was
``data: [DONE]``, it reads on for at most ``drain_budget`` seconds (one read, its timeout the
budget). If the body ends in time the connection goes back to the pool; if the budget runs out
or the peer sends anything else (a keep-alive comment, another event), the connection is closed
as before. Streams closed before ``[DONE]`` are closed at once: draining them could mean waiting
for a whole generation. (openai's ``AsyncStream`` drains 0.1 s itself; the dashscope v2 client
reads every stream to its end and needs none of this.)

Observation: a ``httpcore.ConnectionPool`` subclass wraps each connection it creates; the wrapper
numbers the connection and adds httpcore's ``trace`` extension to each request it serves, which
reports the TCP connect, the TLS handshake, the request going out and the response closing.
Nothing patches a socket.
"""

from __future__ import annotations

import logging
import math
import ssl
import time
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

from . import _observe
from ._translate import java_idle_timeout, tighter

if TYPE_CHECKING:  # pragma: no cover
    from ._config import PoolConfig

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_DRAIN_BUDGET",
    "V2_DEFAULTS",
    "V2_ENV_VARS",
    "build_httpx_async_client",
    "build_httpx_client",
    "busy_connections",
    "from_v2",
    "httpx_limits",
    "httpx_timeout",
    "v2_snippet",
]

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


# -- the dashscope v2 client's settings ----------------------------------------------------------

#: The dashscope 2.x client's pool and timeout settings (``dashscope/v2/_config.py`` and
#: ``dashscope/v2/transport/http.py``): name -> default.
V2_DEFAULTS: Mapping[str, float | int] = {
    "http_max_connections": 100,
    "http_max_keepalive_connections": 20,
    "http_keepalive_expiry": 5.0,
    "timeout": 300.0,
    "connect_timeout": 5.0,  # DEFAULT_CONNECT_TIMEOUT in transport/http.py: no setting, no variable
    "max_retries": 2,
}

#: Where each v2 setting can also come from: the environment variable the SDK reads.
V2_ENV_VARS: Mapping[str, str] = {
    "http_max_connections": "DASHSCOPE_HTTP_MAX_CONNECTIONS",
    "http_max_keepalive_connections": "DASHSCOPE_HTTP_MAX_KEEPALIVE_CONNECTIONS",
    "http_keepalive_expiry": "DASHSCOPE_HTTP_KEEPALIVE_EXPIRY",
    "timeout": "DASHSCOPE_TIMEOUT",
    "max_retries": "DASHSCOPE_MAX_RETRIES",
}

_V2_INTS = ("http_max_connections", "http_max_keepalive_connections", "max_retries")


def _v2_values(source: Any) -> dict[str, Any]:
    """The v2 settings named by ``source``: a ``dashscope.v2`` Config, a Client / AsyncClient,
    or a mapping of setting names (as in ``config.toml``) and/or environment variables."""
    config = getattr(source, "config", source)  # a Client has .config
    if not isinstance(config, Mapping) and hasattr(config, "http_max_connections"):
        values = {name: getattr(config, name) for name in V2_DEFAULTS if hasattr(config, name)}
        transport = getattr(getattr(source, "transport", None), "http_client", None)
        timeout = getattr(transport, "timeout", None)
        if isinstance(timeout, httpx.Timeout) and timeout.connect is not None:
            values["connect_timeout"] = timeout.connect
        return values
    if not isinstance(config, Mapping):
        raise TypeError(
            "from_v2() takes a dashscope.Client / AsyncClient, its .config, or a mapping of v2 setting "
            f"names or DASHSCOPE_* environment variables; got {type(source).__name__}"
        )
    by_env = {env: name for name, env in V2_ENV_VARS.items()}
    values = {}
    for key, raw in config.items():
        name = str(by_env.get(key, key))
        if name not in V2_DEFAULTS:
            if isinstance(key, str) and key.startswith("DASHSCOPE_"):
                continue  # another of the SDK's variables (API key, region...): not a pool setting
            raise ValueError(
                f"unknown dashscope v2 setting {key!r}; pool settings are {', '.join(V2_DEFAULTS)} "
                f"(or their variables {', '.join(V2_ENV_VARS.values())})"
            )
        if raw is None or raw == "":
            continue  # the SDK treats an empty variable as unset
        try:
            values[name] = int(raw) if name in _V2_INTS else float(raw)
        except (TypeError, ValueError):
            kind = "an integer" if name in _V2_INTS else "a number"
            raise ValueError(f"dashscope v2 setting {key}={raw!r}: the SDK expects {kind}") from None
    return values


def from_v2(source: Any, *, strict: bool = False) -> PoolConfig:
    """A PoolConfig with the pool and timeouts a dashscope 2.x client would use.

    Missing settings take the v2 defaults. ``http_max_connections`` becomes both Dispatcher
    limits (httpx has one limit, DashScope is one host), ``timeout`` the read and write timeouts,
    the fixed 5 s connect timeout ``connect_timeout``. The v2 defaults (100 connections, 20 kept)
    break the Java SDK's ``maximumAsyncRequests <= connectionPoolSize``, so they warn
    (PoolConfigWarning): a burst of more than 20 calls closes the extras once idle.

    A client given ``http_client=`` reports the settings it resolved, not that client's pool:
    read the pool you passed from its own configuration instead.
    """
    from ._config import PoolConfig

    v = {**V2_DEFAULTS, **_v2_values(source)}
    if v["http_max_keepalive_connections"] < 1:
        raise ValueError(
            "http_max_keepalive_connections=0 keeps no idle connection, so every call opens a new one; "
            "PoolConfig.connection_pool_size must be at least 1"
        )
    return PoolConfig(
        connect_timeout=v["connect_timeout"],
        read_timeout=v["timeout"],
        write_timeout=v["timeout"],
        connection_idle_timeout=v["http_keepalive_expiry"],
        connection_pool_size=v["http_max_keepalive_connections"],
        maximum_async_requests=v["http_max_connections"],
        maximum_async_requests_per_host=v["http_max_connections"],
        strict=strict,
    )


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def v2_snippet(config: PoolConfig) -> str:
    """Environment lines (and the same as ``dashscope.settings``) that give a dashscope 2.x client
    ``config``'s pool, with what v2 cannot take from it said as comments."""
    total = min(config.maximum_async_requests, config.maximum_async_requests_per_host)
    pairs = [
        ("http_max_connections", str(total)),
        ("http_max_keepalive_connections", str(config.connection_pool_size)),
        ("http_keepalive_expiry", _num(config.connection_idle_timeout)),
        ("timeout", _num(config.read_timeout)),
    ]
    lines = ["# environment (read when a dashscope.Client is created)"]
    lines += [f"{V2_ENV_VARS[name]}={value}" for name, value in pairs]
    lines += ["", "# or in Python, before creating the client", "import dashscope"]
    lines += [f"dashscope.settings.{name} = {value}" for name, value in pairs]
    notes = []
    if config.write_timeout != config.read_timeout:
        notes.append(f"write_timeout {_num(config.write_timeout)} s: v2 uses `timeout` for read, write and pool alike")
    if config.connect_timeout != V2_DEFAULTS["connect_timeout"]:
        notes.append(
            f"connect_timeout {_num(config.connect_timeout)} s: v2's is fixed at 5 s; pass "
            "http_client=httpx.Client(timeout=httpx.Timeout(..., connect=...)) (dashnb.session().httpx does)"
        )
    if config.maximum_async_requests != config.maximum_async_requests_per_host:
        notes.append("v2 has one connection limit, not a global and a per-host one: the smaller is used")
    lines += [""] + [f"# {n}" for n in notes] if notes else []
    return "\n".join(lines).rstrip()


# -- observation ---------------------------------------------------------------------------------


class _Registry:
    """The connections one client opened, for the open-connection gauge (httpcore closes a
    connection it cannot reuse from inside, without telling the pool, so closes are probed)."""

    def __init__(self) -> None:
        self._conns: weakref.WeakSet = weakref.WeakSet()

    def add(self, conn: Any) -> None:
        self._conns.add(conn)

    def open_count(self) -> int:
        return sum(1 for c in list(self._conns) if c._dashnb_id is not None and not c.is_closed())


class _RequestWatch:
    """What one request did on one connection, fed by httpcore's trace events."""

    __slots__ = ("conn", "outer", "tcp0", "tcp_s", "tls0", "tls_s", "sent", "finished")

    def __init__(self, conn: Any, outer: Any) -> None:
        self.conn = conn
        self.outer = outer
        self.tcp0 = self.tls0 = 0.0
        self.tcp_s: float | None = None
        self.tls_s: float | None = None
        self.sent = self.finished = False

    def event(self, name: str) -> None:
        now = time.perf_counter()
        conn = self.conn
        obs: _observe.Observer = conn._dashnb_observer
        if name == "connection.connect_tcp.started":
            self.tcp0 = now
        elif name == "connection.connect_tcp.complete":
            self.tcp_s = now - self.tcp0
        elif name == "connection.start_tls.started":
            self.tls0 = now
        elif name == "connection.start_tls.complete":
            self.tls_s = now - self.tls0
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


def _outer_trace(request: httpcore.Request) -> Any:
    """The caller's own trace callback, if any (not one of ours left on a re-sent request)."""
    trace = request.extensions.get("trace")
    watch = getattr(trace, "_dashnb_watch", None)
    return watch.outer if watch is not None else trace


def _set_trace(request: httpcore.Request, trace: Any, watch: _RequestWatch) -> None:
    trace._dashnb_watch = watch
    # In place: httpx hands httpcore the request's own extensions dict, and the drain changes
    # the read timeout in that same dict later.
    request.extensions["trace"] = trace


class _ObservedConnection(httpcore.ConnectionInterface):
    """A pooled connection that numbers itself and watches each request it serves."""

    _dashnb_observer: _observe.Observer
    _dashnb_path = "sync"

    def __init__(self, inner: httpcore.ConnectionInterface) -> None:
        self._inner = inner
        self._dashnb_id: int | None = None
        self._dashnb_requests = 0

    def handle_request(self, request: httpcore.Request) -> httpcore.Response:
        watch = _RequestWatch(self, _outer_trace(request))

        def trace(name: str, info: dict[str, Any]) -> None:
            watch.event(name)
            if watch.outer is not None:
                watch.outer(name, info)

        _set_trace(request, trace, watch)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()

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


class _ObservedAsyncConnection(httpcore.AsyncConnectionInterface):
    """The async twin of ``_ObservedConnection`` (httpcore awaits async trace callbacks)."""

    _dashnb_observer: _observe.Observer
    _dashnb_path = "async"

    def __init__(self, inner: httpcore.AsyncConnectionInterface) -> None:
        self._inner = inner
        self._dashnb_id: int | None = None
        self._dashnb_requests = 0

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        watch = _RequestWatch(self, _outer_trace(request))

        async def trace(name: str, info: dict[str, Any]) -> None:
            watch.event(name)
            if watch.outer is not None:
                await watch.outer(name, info)

        _set_trace(request, trace, watch)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()

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


class _ObservedPool(httpcore.ConnectionPool):
    _dashnb_conn_cls: type[_ObservedConnection]
    _dashnb_registry: _Registry

    def create_connection(self, origin: httpcore.Origin) -> httpcore.ConnectionInterface:
        conn = self._dashnb_conn_cls(super().create_connection(origin))
        self._dashnb_registry.add(conn)
        return conn


class _ObservedAsyncPool(httpcore.AsyncConnectionPool):
    _dashnb_conn_cls: type[_ObservedAsyncConnection]
    _dashnb_registry: _Registry

    def create_connection(self, origin: httpcore.Origin) -> httpcore.AsyncConnectionInterface:
        conn = self._dashnb_conn_cls(super().create_connection(origin))
        self._dashnb_registry.add(conn)
        return conn


# -- streams that keep their connection ----------------------------------------------------------

_DONE = (b"data: [DONE]", b"data:[DONE]")


def _after_done(tail: bytes) -> bool:
    """Does the body read so far end with a complete ``data: [DONE]`` event?"""
    if not (tail.endswith(b"\n\n") or tail.endswith(b"\r\n\r\n") or tail.endswith(b"\r\r")):
        return False
    return tail.rstrip(b"\r\n").endswith(_DONE)


def _is_sse(response: httpx.Response) -> bool:
    return (
        response.extensions.get("http_version", b"HTTP/1.1") == b"HTTP/1.1"
        and response.headers.get("content-type", "").split(";")[0].strip().lower() == "text/event-stream"
        and "content-encoding" not in response.headers  # the tail would be compressed bytes
    )


class _DrainState:
    __slots__ = ("request", "budget", "observer", "path", "sse", "tail", "ended", "closed")

    def __init__(self, request: httpx.Request, budget: float, observer: _observe.Observer, path: str, sse: bool):
        self.request = request
        self.budget = budget
        self.observer = observer
        self.path = path
        self.sse = sse
        self.tail = b""
        self.ended = self.closed = False

    def seen(self, chunk: bytes) -> None:
        self.tail = (self.tail + chunk)[-64:]

    def should_drain(self) -> bool:
        return self.sse and not self.ended and self.budget > 0 and _after_done(self.tail)

    def set_budget(self) -> Any:
        ext = self.request.extensions
        saved = ext.get("timeout")
        # httpcore reads the read timeout when a new pass over the body starts: this one gets the budget.
        ext["timeout"] = {**(saved or {}), "read": self.budget}
        return saved

    def done(self, saved: Any, outcome: str, t0: float) -> None:
        self.request.extensions["timeout"] = saved
        log.debug("drain after [DONE]: %s in %.1f ms", outcome, (time.perf_counter() - t0) * 1e3)


class _DrainingStream(httpx.SyncByteStream):
    """The response body, passed through; closing it after ``data: [DONE]`` first reads the
    body's end within the budget, so httpcore can keep the connection."""

    def __init__(self, inner: httpx.SyncByteStream, state: _DrainState) -> None:
        self._inner = inner
        self._s = state
        # httpcore's body iterator closes the connection when it is closed half-read, and a reader
        # that stops at [DONE] drops its iterators (closing them) before it closes the response.
        # Held here, ours stays open until close() has drained; then closing it does nothing.
        self._it: Any = None

    def __iter__(self):
        s = self._s
        if self._it is None:
            self._it = iter(self._inner)
        it = self._it
        try:
            while True:
                try:
                    chunk = next(it)
                except StopIteration:
                    break
                if s.sse:
                    s.seen(chunk)
                yield chunk
        except GeneratorExit:
            raise
        except Exception as exc:
            s.observer.request_failed(s.path, exc)
            raise
        s.ended = True

    def close(self) -> None:
        s = self._s
        if s.closed:
            return
        s.closed = True
        try:
            if s.should_drain():
                self._drain()
            self._inner.close()
        finally:
            self._it = None

    def _drain(self) -> None:
        s = self._s
        t0 = time.perf_counter()
        saved = s.set_budget()
        outcome = "body ended, connection kept"
        try:
            # A new pass over the same response: httpcore carries on where the caller stopped.
            # Leaving it early (more data) closes the connection, as closing the response would.
            for chunk in self._inner:
                if chunk:
                    outcome = "peer kept talking, connection closed"
                    break
        except Exception as exc:  # the budget ran out: the caller's output is complete, do not fail it
            outcome = f"{type(exc).__name__}, connection closed"
        finally:
            s.done(saved, outcome, t0)


class _AsyncDrainingStream(httpx.AsyncByteStream):
    """The async twin of ``_DrainingStream``."""

    def __init__(self, inner: httpx.AsyncByteStream, state: _DrainState) -> None:
        self._inner = inner
        self._s = state
        # As in _DrainingStream: an abandoned async iterator is closed by the loop's finalizer,
        # at the next await (inside the drain); holding httpcore's here keeps the connection.
        self._it: Any = None

    async def __aiter__(self):
        s = self._s
        if self._it is None:
            self._it = self._inner.__aiter__()
        it = self._it
        try:
            while True:
                try:
                    chunk = await it.__anext__()
                except StopAsyncIteration:
                    break
                if s.sse:
                    s.seen(chunk)
                yield chunk
        except GeneratorExit:
            raise
        except Exception as exc:
            s.observer.request_failed(s.path, exc)
            raise
        s.ended = True

    async def aclose(self) -> None:
        s = self._s
        if s.closed:
            return
        s.closed = True
        try:
            if s.should_drain():
                await self._drain()
            await self._inner.aclose()
        finally:
            it, self._it = self._it, None
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()  # httpcore's stream is closed already: this only ends the generator

    async def _drain(self) -> None:
        s = self._s
        t0 = time.perf_counter()
        saved = s.set_budget()
        outcome = "body ended, connection kept"
        it = self._inner.__aiter__()
        try:
            async for chunk in it:
                if chunk:
                    outcome = "peer kept talking, connection closed"
                    break
        except Exception as exc:
            outcome = f"{type(exc).__name__}, connection closed"
        finally:
            # An async generator left early is not closed by refcounting: close it now, which
            # closes the connection (it was not at the body's end).
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:  # noqa: S110 - closing after a failure: nothing left to report
                    pass
            s.done(saved, outcome, t0)


# -- the transports and clients ------------------------------------------------------------------


def _pool_kwargs(limits: httpx.Limits, ssl_context: ssl.SSLContext) -> dict[str, Any]:
    return {
        "ssl_context": ssl_context,
        "max_connections": limits.max_connections,
        "max_keepalive_connections": limits.max_keepalive_connections,
        "keepalive_expiry": limits.keepalive_expiry,
    }


class DashnbTransport(httpx.HTTPTransport):
    """httpx's transport on an observed httpcore pool, with the config's timeouts and the drain."""

    def __init__(
        self, config: PoolConfig, ssl_context: ssl.SSLContext, observer: _observe.Observer, drain_budget: float
    ) -> None:
        limits = httpx_limits(config, is_async=False)
        super().__init__(verify=ssl_context, limits=limits, trust_env=False)
        registry = _Registry()
        observer.add_open_probe("sync", registry.open_count)
        conn_cls = type("DashnbConnection", (_ObservedConnection,), {"_dashnb_observer": observer})
        pool_cls = type(
            "DashnbConnectionPool", (_ObservedPool,), {"_dashnb_conn_cls": conn_cls, "_dashnb_registry": registry}
        )
        # httpx builds its pool itself and takes no pool class: replace it with the observed one,
        # built with the same settings (no proxy: dashnb's endpoints connect directly).
        self._pool = pool_cls(**_pool_kwargs(limits, ssl_context))
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
        state = _DrainState(request, self.drain_budget, obs, "sync", _is_sse(response))
        response.stream = _DrainingStream(response.stream, state)
        return response

    def __repr__(self) -> str:
        return f"<DashnbTransport {self.pool_config!r}>"


class DashnbAsyncTransport(httpx.AsyncHTTPTransport):
    """The async twin of ``DashnbTransport``."""

    def __init__(
        self, config: PoolConfig, ssl_context: ssl.SSLContext, observer: _observe.Observer, drain_budget: float
    ) -> None:
        limits = httpx_limits(config, is_async=True)
        super().__init__(verify=ssl_context, limits=limits, trust_env=False)
        registry = _Registry()
        observer.add_open_probe("async", registry.open_count)
        conn_cls = type("DashnbAsyncConnection", (_ObservedAsyncConnection,), {"_dashnb_observer": observer})
        pool_cls = type(
            "DashnbAsyncConnectionPool",
            (_ObservedAsyncPool,),
            {"_dashnb_conn_cls": conn_cls, "_dashnb_registry": registry},
        )
        self._pool = pool_cls(**_pool_kwargs(limits, ssl_context))
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
        state = _DrainState(request, self.drain_budget, obs, "async", _is_sse(response))
        response.stream = _AsyncDrainingStream(response.stream, state)
        return response

    def __repr__(self) -> str:
        return f"<DashnbAsyncTransport {self.pool_config!r}>"


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
        if same and "authorization" not in request.headers:
            key = getattr(self._endpoint, "api_key", None)
            if key:
                request.headers["Authorization"] = f"Bearer {key}"
        yield request

    def __repr__(self) -> str:
        return f"<EndpointAuth for {getattr(self._endpoint, 'label', 'endpoint')}>"


def _client_kwargs(config: PoolConfig, endpoint: Any) -> dict[str, Any]:
    return {
        "base_url": endpoint.base_url,
        "timeout": httpx_timeout(config),
        "auth": EndpointAuth(endpoint),
        # Proxies from the environment for the real service only, as on the other paths; the CA is
        # the endpoint's, given to the transport.
        "trust_env": bool(getattr(endpoint, "trust_env", False)),
    }


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
    transport = DashnbTransport(config, _ssl_context(endpoint), observer or _observe.Observer(), drain_budget)
    client = httpx.Client(transport=transport, **_client_kwargs(config, endpoint))
    _TRANSPORTS[client] = transport
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
    transport = DashnbAsyncTransport(config, _ssl_context(endpoint), observer or _observe.Observer(), drain_budget)
    client = httpx.AsyncClient(transport=transport, **_client_kwargs(config, endpoint))
    _TRANSPORTS[client] = transport
    return client


_TRANSPORTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def busy_connections(client: Any) -> int:
    """Connections of a client built here that are serving a request (or being opened)."""
    transport = _TRANSPORTS.get(client)
    if transport is None:
        return 0
    return sum(1 for c in transport._pool.connections if not c.is_idle() and not c.is_closed())


def _check_budget(budget: Any) -> None:
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or math.isnan(budget) or budget < 0:
        raise ValueError(f"drain_budget must be a number of seconds >= 0 (0: never drain), got {budget!r}")
    if math.isinf(budget):
        raise ValueError("drain_budget must be finite: an unbounded drain could wait for a whole generation")
