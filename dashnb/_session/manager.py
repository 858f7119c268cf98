"""Named, long-lived HTTP sessions for DashScope calls, safe to create in a cell you re-run.

    >>> import dashnb
    >>> s = dashnb.session(dashnb.PoolConfig(connection_pool_size=8))          # doctest: +SKIP
    >>> Generation.call(model="qwen-plus", prompt="hi", session=s.requests)    # doctest: +SKIP
    >>> await AioGeneration.call(model="qwen-plus", prompt="hi", session=s.aiohttp)  # doctest: +SKIP
    >>> s.stats()["connections_opened"]                                        # doctest: +SKIP
    1

``dashnb.session()`` returns the same object for the same name every time (re-running a cell, or
``importlib.reload(dashnb)``, opens no new connections). Passing a different config reconfigures
that object in place: new calls get new pools, the old requests pool is closed (requests still in
flight finish, and their connections close when released), the old aiohttp sessions are closed on
their own loops once their requests are released.

``.httpx`` (an ``httpx.Client``) and ``.httpx_async`` (an ``httpx.AsyncClient``, one per loop like
``.aiohttp``) serve the dashscope 2.x ``Client`` / ``AsyncClient`` and the openai SDK, from the same
config and counted in the same stats.

``.aiohttp`` is per event loop (aiohttp sessions cannot move between loops): the first use on a
loop creates one, a loop that closed gets a fresh one next time. Each is closed on its loop when
the session is closed, when ``asyncio.run()`` (or ``dashnb.run``'s loop) shuts down - through
the loop's async-generator shutdown hook, which runs before the loop closes - or at exit. That
per-loop machinery lives in ``loops``; the notebook table in ``view``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import weakref
from typing import Any

from .. import _observe, _transport
from .._config.checks import unknown_keyword_error
from .._config.pool import PoolConfig
from .._endpoint import Endpoint, endpoint, replacement
from .._run import abandon, before_loops_close
from .loops import (
    OUTSIDE_LOOP,
    OUTSIDE_LOOP_HTTPX,
    PENDING,
    AioEntry,
    HttpxAsync,
    close_aio,
    close_httpx_when_idle,
    detach,
    retire,
    running_loop,
    start_guard,
)
from .view import session_html

__all__ = ["NotebookSession", "session"]

log = logging.getLogger(__name__)

# Kept across importlib.reload() of this module (reload re-runs the code in the same namespace)
# and untouched by reloading the package root, which is where notebooks usually reload.
if "_REGISTRY" not in globals():
    _REGISTRY: dict[str, NotebookSession] = {}
    _REGISTRY_LOCK = threading.RLock()
    # Every session, for the fork hook; and what a forked child inherited and must never use.
    _ALL_SESSIONS: weakref.WeakSet = weakref.WeakSet()
    _INHERITED: list = []


class NotebookSession:
    """One named set of HTTP pools (requests + one aiohttp session per loop) built from a PoolConfig.

    Use ``dashnb.session()`` rather than the constructor: it keeps one object per name.
    """

    def __init__(
        self, config: PoolConfig | None = None, *, endpoint: Endpoint | None = None, name: str = "default"
    ) -> None:
        self.name = name
        self._lock = threading.RLock()
        self._config = _check_config(config)
        self._endpoint = endpoint if endpoint is not None else _default_endpoint()
        self._observer = _observe.Observer()
        self._requests: Any = None
        self._aio: dict[asyncio.AbstractEventLoop, AioEntry] = {}
        self._httpx: Any = None
        self._httpx_aio: dict[asyncio.AbstractEventLoop, AioEntry] = {}
        self._closed = False
        self._generation = 1
        _ALL_SESSIONS.add(self)

    # -- what it is ---------------------------------------------------------------------------
    @property
    def config(self):
        return self._config

    @property
    def endpoint(self):
        return self._endpoint

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def observer(self) -> _observe.Observer:
        return self._observer

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"dashnb session {self.name!r} is closed; call dashnb.session() for a new one")

    # -- the library sessions ----------------------------------------------------------------
    @property
    def requests(self):
        """The requests.Session for sync calls (``Generation.call(..., session=s.requests)``)."""
        with self._lock:
            self._check_open()
            if self._requests is None:
                self._requests = _transport.build_requests_session(self._config, self._endpoint, self._observer)
                log.debug("session %r: built requests session for %r", self.name, self._config)
            return self._requests

    @property
    def aiohttp(self):
        """The aiohttp.ClientSession for the running loop (``AioGeneration.call(..., session=s.aiohttp)``)."""
        loop = running_loop()
        if loop is None:
            raise RuntimeError(OUTSIDE_LOOP)
        with self._lock:
            self._check_open()
            self._prune()
            entry = self._aio.get(loop)
            if entry is None or entry.session.closed:
                aio = _transport.build_aiohttp_session(self._config, self._endpoint, self._observer)
                entry = self._aio[loop] = AioEntry(aio, start_guard(aio))
                log.debug("session %r: built aiohttp session for loop %#x", self.name, id(loop))
            return entry.session

    @property
    def httpx(self):
        """The httpx.Client for sync calls: ``dashscope.Client(http_client=s.httpx)``,
        ``openai.OpenAI(base_url=..., http_client=s.httpx)``."""
        with self._lock:
            self._check_open()
            if self._httpx is None:
                self._httpx = _transport.build_httpx_client(self._config, self._endpoint, self._observer)
                log.debug("session %r: built httpx client for %r", self.name, self._config)
            return self._httpx

    @property
    def httpx_async(self):
        """The httpx.AsyncClient for the running loop: ``dashscope.AsyncClient(http_client=s.httpx_async)``,
        ``openai.AsyncOpenAI(base_url=..., http_client=s.httpx_async)``. One per loop, as ``.aiohttp``."""
        loop = running_loop()
        if loop is None:
            raise RuntimeError(OUTSIDE_LOOP_HTTPX)
        with self._lock:
            self._check_open()
            self._prune()
            entry = self._httpx_aio.get(loop)
            if entry is None or entry.session.closed:
                holder = HttpxAsync(_transport.build_httpx_async_client(self._config, self._endpoint, self._observer))
                entry = self._httpx_aio[loop] = AioEntry(holder, start_guard(holder))
                log.debug("session %r: built httpx async client for loop %#x", self.name, id(loop))
            return entry.session.client

    def _prune(self) -> None:
        for per_loop in (self._aio, self._httpx_aio):
            for loop, entry in list(per_loop.items()):
                if loop.is_closed() or entry.session.closed:
                    del per_loop[loop]
                    if not entry.session.closed:
                        detach(entry)

    def _after_fork_in_child(self) -> None:
        """In a forked child: forget the parent's pools without closing them (their sockets and
        loops are the parent's; closing a TLS connection here could write to it). The next call
        opens fresh connections; the counters go on."""

        self._lock = threading.RLock()
        self._observer._after_fork_in_child()
        for loop in (*self._aio, *self._httpx_aio):
            abandon(loop)
        if self._requests is not None or self._aio or self._httpx is not None or self._httpx_aio:
            _INHERITED.append((self._requests, self._aio, self._httpx, self._httpx_aio))
            self._requests, self._aio, self._httpx, self._httpx_aio = None, {}, None, {}
            self._generation += 1

    # -- changing and ending -------------------------------------------------------------------
    def configure(self, config: PoolConfig | None = None, *, endpoint: Endpoint | None = None) -> NotebookSession:
        """Switch to another config and/or endpoint; a no-op when nothing changes."""
        new_config = self._config if config is None else _check_config(config)
        new_endpoint = self._endpoint if endpoint is None else endpoint
        with self._lock:
            self._check_open()
            if new_config == self._config and (new_endpoint is self._endpoint or new_endpoint == self._endpoint):
                return self
            old_requests, old_aio = self._requests, self._aio
            old_httpx, old_httpx_aio = self._httpx, self._httpx_aio
            self._config, self._endpoint = new_config, new_endpoint
            self._requests, self._aio = None, {}
            self._httpx, self._httpx_aio = None, {}
            self._generation += 1
        log.debug("session %r reconfigured to %r", self.name, new_config)
        if old_requests is not None:
            # Safe with requests in flight: urllib3 closes a connection returned to a closed pool.
            old_requests.close()
        for loop, entry in old_aio.items():
            close_aio(loop, entry, drain=True)
        if old_httpx is not None:
            close_httpx_when_idle(old_httpx)
        for loop, entry in old_httpx_aio.items():
            close_aio(loop, entry, drain=True)
        return self

    def close(self, *, _wait: float = 0.0) -> None:
        """Close every pool of this session (sync; aiohttp sessions are closed on their own loops)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            requests_session, aio = self._requests, self._aio
            self._requests, self._aio = None, {}
            httpx_client, httpx_aio = self._httpx, self._httpx_aio
            self._httpx, self._httpx_aio = None, {}
        if requests_session is not None:
            requests_session.close()
        if httpx_client is not None:
            httpx_client.close()
        for loop, entry in (*aio.items(), *httpx_aio.items()):
            close_aio(loop, entry, drain=False, wait=_wait)
        with _REGISTRY_LOCK:
            if _REGISTRY.get(self.name) is self:
                del _REGISTRY[self.name]

    def __enter__(self) -> NotebookSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> NotebookSession:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        # Close this loop's aiohttp session here, awaited, so it is done when the block ends.
        loop = asyncio.get_running_loop()
        with self._lock:
            entries = [self._aio.pop(loop, None), self._httpx_aio.pop(loop, None)]
        for entry in entries:
            if entry is not None:
                await retire(entry, drain=False)
        self.close()

    # -- looking at it -------------------------------------------------------------------------
    def stats(self) -> _observe.StatsResult:
        """Counters since the session was created (across reconfigurations): a dict of
        connections_opened, connections_reused, connections_closed, connections_open, requests,
        in_flight, queued, errors, and the same under "sync" (requests, httpx.Client) and "async"
        (aiohttp, httpx.AsyncClient); it shows itself as one line (or a small table in a notebook)."""
        return _observe.StatsResult(self._observer.snapshot())

    def _label(self) -> str:
        return self._endpoint.label

    def __repr__(self) -> str:
        st = self._observer.snapshot().total
        state = "closed" if self._closed else "open"
        return (
            f"<NotebookSession {self.name!r} ({state}) {self._config!r} -> {self._label()}: "
            f"{st.requests} requests, {st.connections_opened} connections opened, "
            f"{st.connections_reused} reuses, {st.in_flight} in flight>"
        )

    def _repr_html_(self) -> str:
        return session_html(self.name, self._closed, self._label(), self._config, self._observer.snapshot())


def _check_config(config: Any):
    if config is None:
        return PoolConfig()
    if isinstance(config, int) and not isinstance(config, bool):
        raise TypeError(
            f"config must be a dashnb.PoolConfig, got the number {config}; for a pool of {config} "
            f"connections: dashnb.session(dashnb.PoolConfig(connection_pool_size={config}))"
        )
    if isinstance(config, str):
        raise TypeError(f"config must be a dashnb.PoolConfig, got the text {config!r}; did you mean name={config!r}?")
    if not isinstance(config, PoolConfig):
        raise TypeError(
            f"config must be a dashnb.PoolConfig, got {type(config).__name__}; "
            f"for Java-style settings use PoolConfig.from_java({{...}})"
        )
    return config


def _default_endpoint():
    return endpoint()


def session(
    config: PoolConfig | None = None, *, endpoint: Endpoint | None = None, name: str = "default", **mistyped: Any
) -> NotebookSession:
    """The session called ``name``: created on first use, the same object afterwards.

    ``config=None`` / ``endpoint=None`` keep what the session has (or use the defaults when it is
    new: ``PoolConfig()`` and ``dashnb.endpoint()``). A different config or endpoint reconfigures
    the existing object in place. (``mistyped`` only catches a misplaced keyword, such as a pool
    setting, to say what was meant.)
    """
    if mistyped:
        key, value = next(iter(mistyped.items()))
        raise unknown_keyword_error("dashnb.session", key, value, own=("config", "endpoint", "name"))
    with _REGISTRY_LOCK:
        existing = _REGISTRY.get(name)
        if existing is not None and not existing.closed:
            if endpoint is None:  # its shared emulator stopped anyway: switch to a running one
                endpoint = replacement(existing.endpoint)
            return existing.configure(config, endpoint=endpoint)
        s = NotebookSession(config, endpoint=endpoint, name=name)
        _REGISTRY[name] = s
        return s


def sessions() -> dict[str, NotebookSession]:
    """The open named sessions (a copy)."""
    with _REGISTRY_LOCK:
        return dict(_REGISTRY)


def close_all(wait: float = 2.0) -> None:
    """Close every named session (at interpreter exit, before the loops: ``_run.before_loops_close``)."""
    with _REGISTRY_LOCK:
        all_sessions = list(_REGISTRY.values())
    for s in all_sessions:
        with contextlib.suppress(Exception):
            s.close(_wait=wait)


def _after_fork_in_child() -> None:
    global _REGISTRY_LOCK
    _REGISTRY_LOCK = threading.RLock()
    PENDING.clear()  # tasks of the parent's loops
    for s in list(_ALL_SESSIONS):
        s._after_fork_in_child()
    # The SDK's own module-level session (calls without session=) pools connections too.

    http_request = sys.modules.get("dashscope.api_entities.http_request")
    if http_request is not None and getattr(http_request, "_shared_sync_session", None) is not None:
        _INHERITED.append(getattr(http_request, "_shared_sync_session"))  # noqa: B009
        # dashscope/api_entities/http_request.py: recreated lazily on the next call without session=.
        setattr(http_request, "_shared_sync_session", None)  # noqa: B010
        setattr(http_request, "_shared_sync_session_lock", threading.Lock())  # noqa: B010


if hasattr(os, "register_at_fork") and not globals().get("_FORK_HOOK_REGISTERED"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
    _FORK_HOOK_REGISTERED = True

if not globals().get("_ATEXIT_REGISTERED"):
    # Sessions close on their loops, so at exit they must close before the loops do: _run's one
    # exit hook runs this first, whatever order the two modules were imported in.
    before_loops_close(close_all)
    _ATEXIT_REGISTERED = True
