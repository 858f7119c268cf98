"""The ways of calling that ``compare`` measures side by side: one class per mode, one registry.

    >>> from dashnb._modes import MODES, check_modes, mode_class
    >>> check_modes(["shared", "async"])
    ['shared', 'async']
    >>> mode_class("sdk_default").sdk_session, mode_class("async").is_async
    (True, True)
    >>> "per_call" in MODES
    True
    >>> MODES["openai_stream_default"]
    'openai.OpenAI with its defaults, streamed (the sync Stream drops its connection at [DONE])'

A mode is a class with a ``name``, a ``description`` and flags (``is_async``, ``concurrent``,
``sdk_session``: it calls without ``session=``, on the SDK's own module-level session). Sync
modes implement ``run_block``, async ones ``arun_block``. To add a mode, write its class and
list it in ``_ALL``; ``MODES``, ``DEFAULT_MODES`` and the validators follow from there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

from . import _observe
from ._call import CallContext, _timing
from ._stats import CallTiming

__all__ = ["DEFAULT_MODES", "MODES", "Mode", "check_modes", "mode_class", "ssl_cert_file"]


OnDone = Callable[[CallTiming], None]


class Mode:
    """One way of calling. Sync modes implement ``run_block``; async ones ``arun_block``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    is_async: ClassVar[bool] = False
    concurrent: ClassVar[bool] = False
    sdk_session: ClassVar[bool] = False  # no session=: the SDK's own module-level session
    default: ClassVar[bool] = False  # one of DEFAULT_MODES

    def __init__(self, ctx: CallContext) -> None:
        self.ctx = ctx

    def skip_reason(self) -> str | None:
        return None

    def client_connections(self) -> int | None:
        return None

    def begin_block(self) -> None:
        pass

    def end_block(self) -> None:
        pass

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    @property
    def concurrency(self) -> int:
        return self.ctx.concurrency if self.concurrent else 1

    def run_block(self, indices: Sequence[int], block: int, on_done: OnDone) -> list[CallTiming]:
        raise NotImplementedError

    async def arun_block(self, indices: Sequence[int], block: int, on_done: OnDone) -> list[CallTiming]:
        raise NotImplementedError


def _sequential(call: Callable[[int], CallTiming], indices: Sequence[int], on_done: OnDone) -> list[CallTiming]:
    out = []
    for i in indices:
        t = call(i)
        out.append(t)
        on_done(t)
    return out


def _threaded(
    pool: concurrent.futures.ThreadPoolExecutor,
    call: Callable[[int], CallTiming],
    indices: Sequence[int],
    on_done: OnDone,
) -> list[CallTiming]:
    futures = [pool.submit(call, i) for i in indices]
    out = []
    try:
        for f in concurrent.futures.as_completed(futures):
            t = f.result()
            out.append(t)
            on_done(t)
    except BaseException:
        # Ctrl-C or a failing callback: start nothing new, let the calls on the wire finish so
        # every connection goes back to its pool in a known state, then stop.
        for f in futures:
            f.cancel()
        concurrent.futures.wait(futures)
        raise
    return out


async def _bounded(call: Callable[[int], Any], indices: Sequence[int], limit: int, on_done: OnDone) -> list[CallTiming]:
    """Run ``call(i)`` for every index with at most ``limit`` in flight; ``on_done`` runs here,
    in the driving task, so an exception from it cancels the workers before it propagates."""
    todo = iter(indices)
    done: asyncio.Queue = asyncio.Queue()

    async def worker() -> None:
        for i in todo:  # one iterator shared by the workers: each index is taken once
            done.put_nowait(await call(i))

    workers = [asyncio.ensure_future(worker()) for _ in range(min(limit, len(indices)))]
    out = []
    try:
        for _ in indices:
            t = await done.get()
            out.append(t)
            on_done(t)
    except BaseException:
        for w in workers:
            w.cancel()
        # Cancelled aiohttp requests close their connections; the pool itself stays usable.
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    await asyncio.gather(*workers)
    return out


class _SessionMode(Mode):
    """A mode on one dashnb NotebookSession (the caller's, or a private one closed at the end)."""

    path = "sync"

    def __init__(self, ctx: CallContext) -> None:
        super().__init__(ctx)
        self._own = ctx.user_session is None
        if self._own:
            from ._session import NotebookSession

            self.session = NotebookSession(ctx.config, endpoint=ctx.endpoint, name=f"dashnb.compare:{self.name}")
        else:
            self.session = ctx.user_session

    def client_connections(self) -> int | None:
        return self.session.stats()[self.path]["connections_opened"]

    def close(self) -> None:
        if self._own:
            self.session.close()

    async def aclose(self) -> None:
        if self._own and self.path == "async":
            await self.session.__aexit__(None, None, None)


class _Shared(_SessionMode):
    name = "shared"
    description = "one dashnb-configured requests.Session for every call"
    default = True

    def run_block(self, indices, block, on_done):
        s = self.session.requests
        return _sequential(lambda i: self.ctx.sync_call(self.name, i, block, s), indices, on_done)


class _ThreadPooled(Mode):
    """A mode whose calls come from a pool of ``concurrency`` threads (mixed in before its base)."""

    concurrent = True

    def __init__(self, ctx: CallContext) -> None:
        super().__init__(ctx)
        self._pool = concurrent.futures.ThreadPoolExecutor(ctx.concurrency, thread_name_prefix=f"dashnb-{self.name}")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        super().close()


class _Threads(_ThreadPooled, _SessionMode):
    name = "threads"
    description = "one dashnb requests.Session used from N threads"
    default = True

    def run_block(self, indices, block, on_done):
        s = self.session.requests
        return _threaded(self._pool, lambda i: self.ctx.sync_call(self.name, i, block, s), indices, on_done)


class _Async(_SessionMode):
    name = "async"
    description = "one dashnb aiohttp.ClientSession, at most N calls in flight"
    default = True
    path = "async"
    is_async = True
    concurrent = True

    async def arun_block(self, indices, block, on_done):
        aio = self.session.aiohttp
        return await _bounded(
            lambda i: self.ctx.async_call(self.name, i, block, aio), indices, self.ctx.concurrency, on_done
        )


class _PerCall(Mode):
    """A new session per call. Built like a dashnb session (same trust, same hooks) so that the
    only difference from ``shared`` is the reuse itself, and its connections can be counted."""

    name = "per_call"
    description = "a new requests.Session per call, closed after (no reuse: the baseline)"
    default = True

    def __init__(self, ctx: CallContext) -> None:
        super().__init__(ctx)
        self.observer = _observe.Observer()

    def client_connections(self) -> int | None:
        return self.observer.snapshot().total.connections_opened

    def _one(self, i: int, block: int) -> CallTiming:
        from ._translate import build_requests_session

        s = build_requests_session(self.ctx.config, self.ctx.endpoint, self.observer)
        try:
            return self.ctx.sync_call(self.name, i, block, s)
        finally:
            s.close()

    def run_block(self, indices, block, on_done):
        return _sequential(lambda i: self._one(i, block), indices, on_done)


class _AsyncPerCall(_PerCall):
    name = "async_per_call"
    description = "a new aiohttp.ClientSession per call, at most N in flight"
    default = True
    is_async = True
    concurrent = True

    async def _aone(self, i: int, block: int) -> CallTiming:
        from ._translate import build_aiohttp_session

        s = build_aiohttp_session(self.ctx.config, self.ctx.endpoint, self.observer)
        try:
            return await self.ctx.async_call(self.name, i, block, s)
        finally:
            await s.close()

    async def arun_block(self, indices, block, on_done):
        return await _bounded(lambda i: self._aone(i, block), indices, self.ctx.concurrency, on_done)


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


class _SdkDefault(Mode):
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
            ca = getattr(self.ctx.endpoint, "ca_path", None)
            if ca:
                # The session the SDK's calls without session= use (dashscope/api_entities/http_request.py).
                session = http_request._get_shared_sync_session()
                self._saved = (session, session.verify, session.trust_env)
                session.verify = ca
                if getattr(self.ctx.endpoint, "is_emulator", False):
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
        return _sequential(lambda i: self._one(i, block), indices, on_done)


class _SdkThreads(_ThreadPooled, _SdkDefault):
    name = "sdk_threads"
    description = "no session=, from N threads: the SDK's shared requests.Session (10 pooled connections)"
    sdk_session = True

    def run_block(self, indices, block, on_done):
        return _threaded(self._pool, lambda i: self.ctx.sync_call(self.name, i, block, None), indices, on_done)


class _SdkAsync(Mode):
    name = "sdk_async"
    description = "no session=, async: the SDK's shared aiohttp session (trusts certifi's CAs only)"
    sdk_session = True
    is_async = True
    concurrent = True

    def skip_reason(self) -> str | None:
        ep = self.ctx.endpoint
        if getattr(ep, "ca_path", None) and not str(ep.base_url).startswith("http://"):
            return (
                "the SDK's shared aiohttp session trusts certifi's CA bundle only (it ignores "
                "REQUESTS_CA_BUNDLE and SSL_CERT_FILE), so it cannot verify the emulator's private CA; "
                "use mode 'async' (session=), or an emulator with tls='off'"
            )
        return None

    async def arun_block(self, indices, block, on_done):
        return await _bounded(
            lambda i: self.ctx.async_call(self.name, i, block, None), indices, self.ctx.concurrency, on_done
        )

    async def aclose(self) -> None:
        import dashscope

        # The SDK's type stub calls this a plain function; it is a coroutine function.
        await dashscope.close_shared_aio_session()  # type: ignore[func-returns-value,misc]


# -- the httpx generation: the dashscope 2.x client and the openai SDK ---------------------------
#
# A ``*_default`` mode builds the SDK's client as a user would, with no ``http_client=``: it trusts
# what the environment says, so for the emulator its CA is named in ``SSL_CERT_FILE`` while the
# client is built (httpx and httpx2 read it then, in ``create_ssl_context``). A ``*_dashnb`` mode
# passes the session's ``.httpx`` / ``.httpx_async``, so dashnb's hooks count its calls. Nothing
# here imports httpx, openai or dashscope until a mode runs.


# The environment is the process's: two runs building clients at once would each save the
# other's value and restore it, leaving SSL_CERT_FILE naming a CA deleted with its emulator. One
# block at a time (re-entrant for a nested one), and always put back.
_ENV_LOCK = threading.RLock()


@contextlib.contextmanager
def ssl_cert_file(path: str | None) -> Iterator[None]:
    """``SSL_CERT_FILE=path`` inside the block (None: leave the environment alone). httpx and
    httpx2 clients built inside trust exactly that bundle. It is process-wide while it lasts
    (the SDKs' default clients read no other setting), so blocks take turns under a lock and
    the previous value is always restored; keep them to the building of a client."""
    if not path:
        yield
        return
    with _ENV_LOCK:
        had, old = "SSL_CERT_FILE" in os.environ, os.environ.get("SSL_CERT_FILE")
        os.environ["SSL_CERT_FILE"] = path
        try:
            yield
        finally:
            if had:
                os.environ["SSL_CERT_FILE"] = old  # type: ignore[assignment]
            else:
                os.environ.pop("SSL_CERT_FILE", None)


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


class _HttpxMode(_SessionMode):
    """One SDK client for the whole run: its own defaults, or on the session's httpx client."""

    sdk: ClassVar[str] = ""  # "v2" or "openai"
    stream: ClassVar[bool] = False
    dashnb: ClassVar[bool] = False

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self._client: Any = None
        self._loop: Any = None

    def client_connections(self) -> int | None:
        return super().client_connections() if self.dashnb else None

    def _build(self) -> Any:
        ep = self.ctx.endpoint
        http: dict[str, Any] = {}
        if self.dashnb:
            http["http_client"] = self.session.httpx_async if self.is_async else self.session.httpx
        with ssl_cert_file(None if self.dashnb else getattr(ep, "ca_path", None)):
            if self.sdk == "v2":
                import dashscope

                cls = dashscope.AsyncClient if self.is_async else dashscope.Client
                return cls(api_key=ep.api_key, base_url=ep.base_url, **http)
            import openai

            ocls = openai.AsyncOpenAI if self.is_async else openai.OpenAI
            return ocls(api_key=ep.api_key, base_url=ep.compatible_base_url, **http)

    def _messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.ctx.prompt}]

    def _one(self, i: int, block: int) -> CallTiming:
        if self._client is None:
            self._client = self._build()
        with _observe.call_scope() as rec:
            start = time.perf_counter()
            try:
                reply = self._client.chat.completions.create(
                    model=self.ctx.model, messages=self._messages(), stream=self.stream
                )
                if self.stream:
                    for _chunk in reply:
                        pass
                outcome: tuple[int | None, str | None] = (200, None)
            except Exception as exc:  # counted, the run goes on
                outcome = (_status(exc), type(exc).__name__)
            end = time.perf_counter()
        return _timing(self.name, i, block, start, end, *outcome, rec.snapshot())

    async def _aone(self, i: int, block: int) -> CallTiming:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:  # an async client belongs to one loop
            self._client, self._loop = self._build(), loop
        with _observe.call_scope() as rec:
            start = time.perf_counter()
            try:
                reply = await self._client.chat.completions.create(
                    model=self.ctx.model, messages=self._messages(), stream=self.stream
                )
                if self.stream:
                    async for _chunk in reply:
                        pass
                outcome: tuple[int | None, str | None] = (200, None)
            except Exception as exc:
                outcome = (_status(exc), type(exc).__name__)
            end = time.perf_counter()
        return _timing(self.name, i, block, start, end, *outcome, rec.snapshot())

    def run_block(self, indices, block, on_done):
        return _sequential(lambda i: self._one(i, block), indices, on_done)

    async def arun_block(self, indices, block, on_done):
        # One call at a time, as a person prompting does (and so that reuse is what is measured).
        return await _bounded(lambda i: self._aone(i, block), indices, 1, on_done)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and not self.is_async:
            client.close()  # a client given http_client= leaves it open: the session closes it
        super().close()

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            close = getattr(client, "aclose", None) or client.close
            await close()
        await super().aclose()


_WHAT = {
    "v2": ("dashscope.Client", "dashscope.AsyncClient"),
    "openai": ("openai.OpenAI", "openai.AsyncOpenAI"),
}


def _describe(sdk: str, is_async: bool, dashnb: bool, stream: bool) -> str:
    what = _WHAT[sdk][is_async]
    text = (
        f"{what} on the session's {'httpx_async' if is_async else 'httpx'} client"
        if dashnb
        else f"{what} with its defaults"
    )
    if stream:
        text += ", streamed"
        if sdk == "openai" and not is_async and not dashnb:
            text += " (the sync Stream drops its connection at [DONE])"
    return text


def _make_httpx_mode(sdk: str, is_async: bool, dashnb: bool, stream: bool) -> type[Mode]:
    name = "_".join(
        p
        for p in (sdk, "async" if is_async else "", "stream" if stream else "", "dashnb" if dashnb else "default")
        if p
    )
    return type(
        f"_Mode_{name}",
        (_HttpxMode,),
        {
            "name": name,
            "description": _describe(sdk, is_async, dashnb, stream),
            "sdk": sdk,
            "is_async": is_async,
            "stream": stream,
            "dashnb": dashnb,
            "path": "async" if is_async else "sync",
            "concurrent": False,
        },
    )


#: Every combination, in display order: the v2 client, then openai; sync, then async.
_HTTPX_MODES: tuple[type[Mode], ...] = tuple(
    _make_httpx_mode(sdk, is_async, dashnb, stream)
    for sdk in ("v2", "openai")
    for is_async in (False, True)
    for stream in (False, True)
    for dashnb in (False, True)
)


# Registry order is display order (tables, plots, the lab's check boxes).
_ALL: tuple[type[Mode], ...] = (
    _PerCall,
    _SdkDefault,
    _Shared,
    _Threads,
    _Async,
    _AsyncPerCall,
    _SdkThreads,
    _SdkAsync,
    *_HTTPX_MODES,
)
_REGISTRY: dict[str, type[Mode]] = {cls.name: cls for cls in _ALL}

#: Every mode's name and what it does (read-only).
MODES: Mapping[str, str] = types.MappingProxyType({cls.name: cls.description for cls in _ALL})
#: What ``compare()`` and ``python -m dashnb bench`` run when not told otherwise.
DEFAULT_MODES: tuple[str, ...] = tuple(cls.name for cls in _ALL if cls.default)


def check_modes(names: Iterable[str]) -> list[str]:
    """``names`` without repeats, in the order given; ValueError naming the choices otherwise."""
    if isinstance(names, str):
        names = [names]
    out = list(dict.fromkeys(names))
    unknown = [m for m in out if m not in _REGISTRY]
    if unknown or not out:
        raise ValueError(f"unknown mode(s) {unknown or out!r}; choose from {', '.join(MODES)}")
    return out


def mode_class(name: str) -> type[Mode]:
    """The class of mode ``name`` (KeyError for an unknown one; see ``check_modes``)."""
    return _REGISTRY[name]
