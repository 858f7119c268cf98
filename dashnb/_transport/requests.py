"""requests / urllib3 side of the translation: observed connections, idle eviction, the adapter.

    >>> from dashnb._config.pool import PoolConfig
    >>> from dashnb._transport.requests import PoolConfigAdapter
    >>> PoolConfigAdapter(PoolConfig(connection_pool_size=64))
    <PoolConfigAdapter PoolConfig(connection_pool_size=64)>

Imported on first use by ``dashnb._transport.rules`` (which documents the mapping), so it may import
requests and urllib3 at the top.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Any

import certifi
import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import Timeout

from .. import _observe
from .._endpoint import Endpoint, trusts_env
from .rules import java_idle_timeout, merge_requests_timeout

if TYPE_CHECKING:  # pragma: no cover
    from .._config.pool import PoolConfig

log = logging.getLogger(__name__)

__all__ = ["PoolConfigAdapter", "build_requests_session"]


class _ObservedConnectionMixin:
    """Times TCP connect vs TLS handshake, numbers connections and counts their requests.

    Mixed into urllib3's HTTP(S)Connection; ``_dashnb_observer`` is set on a per-session
    subclass. urllib3 reuses the same object after closing a dropped socket, so every
    ``connect()`` starts a new connection id and request count.
    """

    # Provided by the urllib3 connection class this is mixed into.
    host: str
    port: int
    sock: Any

    _dashnb_observer: _observe.Observer
    _dashnb_id: int | None = None
    _dashnb_requests: int = 0
    _dashnb_busy: bool = False
    _dashnb_idle_since: float | None = None
    _dashnb_tcp_s: float | None = None
    _dashnb_tls: bool = False

    def _new_conn(self):  # the TCP connect
        t0 = time.perf_counter()
        sock = super()._new_conn()  # type: ignore[misc]  # a mixin: the urllib3 class provides it
        self._dashnb_tcp_s = time.perf_counter() - t0
        return sock

    def connect(self) -> None:
        t0 = time.perf_counter()
        self._dashnb_tcp_s = None
        super().connect()  # type: ignore[misc]  # a mixin: the urllib3 class provides it
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

    # putrequest, not request: request() receives the headers, and with them the API key, which
    # a frame-capturing tool (pytest --showlocals, a crash reporter) would then find in this frame.
    def putrequest(self, *args, **kwargs):
        if self.sock is None:  # plain http: http.client connects lazily when the request is sent
            self.connect()
        n = self._dashnb_requests = self._dashnb_requests + 1
        # In flight from the first request sent on this checkout until the pool gets it back.
        start = not self._dashnb_busy
        self._dashnb_busy = True
        self._dashnb_observer.request_sent(
            "sync", connection_id=self._dashnb_id, requests_on_connection=n, sent_at=time.perf_counter(), start=start
        )
        return super().putrequest(*args, **kwargs)  # type: ignore[misc]  # as above

    def getresponse(self):
        resp = super().getresponse()  # type: ignore[misc]  # as above
        self._dashnb_observer.response_started(time.perf_counter())
        return resp

    def _dashnb_done(self) -> None:
        if self._dashnb_busy:
            self._dashnb_busy = False
            self._dashnb_observer.request_finished("sync")

    def close(self) -> None:
        was_open = self.sock is not None
        try:
            super().close()  # type: ignore[misc]  # a mixin: the urllib3 class provides it
        finally:
            self._dashnb_done()
            if was_open:
                self._dashnb_observer.connection_closed("sync")


class _IdleEvictingPoolMixin:
    """A urllib3 connection pool that closes connections idle longer than ``_dashnb_idle_timeout``.

    Returned connections are stamped; a checkout first sweeps the pool (under the queue's own
    lock, so no other thread can be handed a connection while it is being closed) whenever a
    connection may have expired: the pool keeps the earliest time one can (``_dashnb_next_sweep``,
    never later than the true earliest expiry), so checkouts before that skip the sweep. A
    closed connection object stays in the pool and reconnects when next used, as urllib3 does for
    connections it finds dropped.

    urllib3 pools built here never block (``pool_block=False``), so a checkout has no queue wait
    to time: a call's ``queued_s`` stays 0 on this path.
    """

    host: str  # provided by the urllib3 pool class this is mixed into
    _dashnb_idle_timeout: float | None = None
    _dashnb_observer: _observe.Observer
    _dashnb_next_sweep: float = math.inf
    _dashnb_lock: threading.Lock

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._dashnb_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def _dashnb_sweep(self, now: float) -> None:
        idle = self._dashnb_idle_timeout
        pool = self.pool  # type: ignore[attr-defined]
        if idle is None or pool is None:
            return
        next_sweep = math.inf
        with pool.mutex:
            for conn in pool.queue:
                since = getattr(conn, "_dashnb_idle_since", None)
                if conn is None or since is None or conn.is_closed:
                    continue
                if now - since > idle:
                    log.debug(
                        "closing connection %s to %s: idle %.1f s > connection_idle_timeout %.1f s",
                        getattr(conn, "_dashnb_id", "?"),
                        self.host,
                        now - since,
                        idle,
                    )
                    conn.close()
                else:
                    next_sweep = min(next_sweep, since + idle)
            # Written under the queue's lock: a connection returned after this scan lowers the
            # bound only after it is in the queue, so after this write (see _put_conn).
            with self._dashnb_lock:
                self._dashnb_next_sweep = next_sweep

    def _get_conn(self, timeout=None):
        if self._dashnb_idle_timeout is not None:
            now = time.monotonic()
            if now > self._dashnb_next_sweep:
                self._dashnb_sweep(now)
        return super()._get_conn(timeout)  # type: ignore[misc]  # a mixin: the urllib3 class provides it

    def _put_conn(self, conn) -> None:
        if conn is None:
            super()._put_conn(conn)  # type: ignore[misc]  # a mixin: the urllib3 class provides it
            return
        since = conn._dashnb_idle_since = time.monotonic()
        if getattr(conn, "_dashnb_busy", False):  # conn._dashnb_done(), inlined: once per request
            conn._dashnb_busy = False
            self._dashnb_observer.request_finished("sync")
        super()._put_conn(conn)  # type: ignore[misc]
        if self._dashnb_idle_timeout is not None:
            expires = since + self._dashnb_idle_timeout
            with self._dashnb_lock:
                if expires < self._dashnb_next_sweep:
                    self._dashnb_next_sweep = expires


def _pool_classes(config: PoolConfig, observer: _observe.Observer) -> dict[str, type]:
    """Per-session urllib3 pool classes (urllib3 builds pools from classes, so the settings ride on them)."""
    attrs = {"_dashnb_observer": observer, "_dashnb_idle_timeout": java_idle_timeout(config)}
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


class PoolConfigAdapter(HTTPAdapter):
    """HTTPAdapter carrying a PoolConfig: pool size, default/merged timeouts, idle eviction."""

    def __init__(self, config: PoolConfig, observer: _observe.Observer | None = None) -> None:
        self.pool_config = config
        self.observer = observer or _observe.Observer()
        self._pool_classes = _pool_classes(config, self.observer)
        self._timeouts: dict[Any, Timeout] = {}
        super().__init__(pool_connections=10, pool_maxsize=config.connection_pool_size, max_retries=0, pool_block=False)

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)
        # An instance attribute: only this adapter's PoolManager builds observed pools.
        self.poolmanager.pool_classes_by_scheme = self._pool_classes

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = self._pool_classes
        return manager

    def _timeout_for(self, timeout: Any) -> Any:
        """``merge_requests_timeout`` as a urllib3 Timeout, built once per distinct caller value
        (the SDK passes the same number on every call). urllib3 clones a Timeout before using
        it, so one object can serve every request."""
        if timeout is not None and type(timeout) not in (int, float, tuple):
            return merge_requests_timeout(timeout, self.pool_config)
        try:
            return self._timeouts[timeout]
        except KeyError:
            pass
        except TypeError:  # a tuple holding something unhashable: let requests judge it
            return merge_requests_timeout(timeout, self.pool_config)
        connect, read = merge_requests_timeout(timeout, self.pool_config)
        if len(self._timeouts) >= 64:  # callers inventing timeouts: stay bounded
            self._timeouts.clear()
        merged = self._timeouts[timeout] = Timeout(connect=connect, read=read)
        return merged

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        self.observer.attempt_started("sync")
        try:
            return super().send(
                request,
                stream=stream,
                timeout=self._timeout_for(timeout),
                verify=verify,
                cert=cert,
                proxies=proxies,
            )
        except Exception as exc:
            self.observer.request_failed("sync", exc)
            raise

    def __repr__(self) -> str:
        return f"<PoolConfigAdapter {self.pool_config!r}>"


def build_requests_session(
    config: PoolConfig, endpoint: Endpoint, observer: _observe.Observer | None = None
) -> requests.Session:
    """A requests.Session pooled as ``config`` says, trusting ``endpoint``'s CA (and, for an
    endpoint with ``trust_env``, the environment's proxies and CA bundle)."""
    session = requests.Session()
    # For the emulator, trust exactly its CA: with trust_env, REQUESTS_CA_BUNDLE (set on some
    # machines) would silently replace session.verify and HTTPS_PROXY would reroute the calls.
    session.trust_env = trusts_env(endpoint)
    session.verify = endpoint.ca_path or certifi.where()
    adapter = PoolConfigAdapter(config, observer)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
