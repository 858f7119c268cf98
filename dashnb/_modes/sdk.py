"""The ``sdk_*`` modes: calls without ``session=``, on the dashscope SDK's own module-level
sessions, and the lock and trust handling that lets a run borrow them and put them back.

    >>> from dashnb._modes.sdk import SdkDefault, SdkAsync
    >>> SdkDefault.name, SdkDefault.sdk_session, SdkAsync.is_async
    ('sdk_default', True, True)
"""

from __future__ import annotations

import threading
from typing import Any

from .._call import CallContext
from .._stats import CallTiming
from .base import Mode, ThreadPooled, bounded, sequential, threaded


def _sdk_pool_connections() -> int:
    """Connections the SDK's shared requests.Session has opened, from urllib3's own pool counters."""
    from dashscope.api_entities import http_request

    session = getattr(http_request, "_shared_sync_session", None)
    if session is None:
        return 0
    total = 0
    for adapter in {id(a): a for a in session.adapters.values()}.values():
        manager = getattr(adapter, "poolmanager", None)
        if manager is None:
            continue
        for key in manager.pools.keys():
            pool = manager.pools.get(key)
            total += getattr(pool, "num_connections", 0) if pool is not None else 0
    return total


# The SDK has one module-level requests.Session per process: two runs measuring it at once
# would share its connections and its trust. Each sdk_* block holds this lock (so concurrent
# runs take turns, block by block), and so does closing that session.
_SDK_SESSION_LOCK = threading.Lock()


class SdkDefault(Mode):
    """No ``session=``: the SDK's module-level requests.Session.

    To reach an emulator it must trust the emulator's CA. Nothing process-wide changes for
    that (no ``REQUESTS_CA_BUNDLE``): for the duration of each block the SDK's own session
    object gets ``verify=`` the CA and, for an emulator, ``trust_env=False`` (requests lets a
    CA variable of the environment override ``verify`` otherwise, and no proxy applies to a
    loopback emulator); both are put back after the block. The blocks of concurrent runs take
    turns (``_SDK_SESSION_LOCK``). The SDK's session is closed before this mode first uses it
    and at the end, so its counts start from zero; urllib3's pool counters say how many
    connections it opened.
    """

    name = "sdk_default"
    description = "no session=: the SDK's own shared requests.Session"
    default = True
    sdk_session = True

    def __init__(self, ctx: CallContext) -> None:
        super().__init__(ctx)
        self._saved: tuple[Any, Any, bool] | None = None
        self._holding = False

    def client_connections(self) -> int | None:
        return _sdk_pool_connections()

    def begin_block(self) -> None:
        import dashscope
        from dashscope.api_entities import http_request

        _SDK_SESSION_LOCK.acquire()
        self._holding = True
        try:
            if self.ctx.sdk_owner != self.name:  # start clean; never borrow another mode's connections
                dashscope.close_shared_sync_session()
                self.ctx.sdk_owner = self.name
            ca = self.ctx.endpoint.ca_path
            if ca:
                # The session the SDK's calls without session= use (dashscope/api_entities/http_request.py).
                session = http_request._get_shared_sync_session()
                self._saved = (session, session.verify, session.trust_env)
                session.verify = ca
                if self.ctx.endpoint.is_emulator:
                    session.trust_env = False
        except BaseException:
            self.end_block()
            raise

    def end_block(self) -> None:
        if self._saved is not None:
            session, verify, trust_env = self._saved
            session.verify, session.trust_env = verify, trust_env
            self._saved = None
        if self._holding:
            self._holding = False
            _SDK_SESSION_LOCK.release()

    def close(self) -> None:
        import dashscope

        with _SDK_SESSION_LOCK:
            if self.ctx.sdk_owner == self.name:
                dashscope.close_shared_sync_session()
                self.ctx.sdk_owner = None

    def _one(self, i: int, block: int) -> CallTiming:
        before = _sdk_pool_connections()
        t = self.ctx.sync_call(self.name, i, block, None)
        # One call at a time, so the pool's counter tells whether this call opened a connection.
        if t.status is not None:
            t = CallTiming(
                t.mode,
                t.index,
                t.block,
                start=t.start,
                end=t.end,
                status=t.status,
                error=t.error,
                reused=_sdk_pool_connections() == before,
            )
        return t

    def run_block(self, indices, block, on_done):
        return sequential(lambda i: self._one(i, block), indices, on_done)


class SdkThreads(ThreadPooled, SdkDefault):
    name = "sdk_threads"
    description = "no session=, from N threads: the SDK's shared requests.Session (10 pooled connections)"
    sdk_session = True

    def run_block(self, indices, block, on_done):
        return threaded(self._pool, lambda i: self.ctx.sync_call(self.name, i, block, None), indices, on_done)


class SdkAsync(Mode):
    name = "sdk_async"
    description = "no session=, async: the SDK's shared aiohttp session (trusts certifi's CAs only)"
    sdk_session = True
    is_async = True
    concurrent = True

    def skip_reason(self) -> str | None:
        ep = self.ctx.endpoint
        if ep.ca_path and not ep.base_url.startswith("http://"):
            return (
                "the SDK's shared aiohttp session trusts certifi's CA bundle only (it ignores "
                "REQUESTS_CA_BUNDLE and SSL_CERT_FILE), so it cannot verify the emulator's private CA; "
                "use mode 'async' (session=), or an emulator with tls='off'"
            )
        return None

    async def arun_block(self, indices, block, on_done):
        return await bounded(
            lambda i: self.ctx.async_call(self.name, i, block, None), indices, self.ctx.concurrency, on_done
        )

    async def aclose(self) -> None:
        import dashscope

        # The SDK's type stub calls this a plain function; it is a coroutine function.
        await dashscope.close_shared_aio_session()  # type: ignore[func-returns-value,misc]
