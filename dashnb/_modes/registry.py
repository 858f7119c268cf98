"""The ways of calling that ``compare`` measures side by side: one class per mode, one registry.

    >>> from dashnb._modes.registry import MODES, check_modes, mode_class
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

Here: the modes on a dashnb session (or a new one per call) and the registry. Their bases and
drivers are in ``base``; the ``sdk_*`` modes (the SDK's own sessions) in ``sdk``;
the v2/openai modes and ``ssl_cert_file`` in ``httpx``.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping

from .. import _observe
from .._call import CallContext
from .._stats import CallTiming
from .._transport import build_aiohttp_session, build_requests_session
from .base import Mode, SessionMode, ThreadPooled, bounded, sequential, threaded
from .httpx import HTTPX_MODES, ssl_cert_file
from .sdk import SdkAsync, SdkDefault, SdkThreads

__all__ = ["DEFAULT_MODES", "MODES", "Mode", "check_modes", "mode_class", "ssl_cert_file"]


class _Shared(SessionMode):
    name = "shared"
    description = "one dashnb-configured requests.Session for every call"
    default = True

    def run_block(self, indices, block, on_done):
        s = self.session.requests
        return sequential(lambda i: self.ctx.sync_call(self.name, i, block, s), indices, on_done)


class _Threads(ThreadPooled, SessionMode):
    name = "threads"
    description = "one dashnb requests.Session used from N threads"
    default = True

    def run_block(self, indices, block, on_done):
        s = self.session.requests
        return threaded(self._pool, lambda i: self.ctx.sync_call(self.name, i, block, s), indices, on_done)


class _Async(SessionMode):
    name = "async"
    description = "one dashnb aiohttp.ClientSession, at most N calls in flight"
    default = True
    path = "async"
    is_async = True
    concurrent = True

    async def arun_block(self, indices, block, on_done):
        aio = self.session.aiohttp
        return await bounded(
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
        s = build_requests_session(self.ctx.config, self.ctx.endpoint, self.observer)
        try:
            return self.ctx.sync_call(self.name, i, block, s)
        finally:
            s.close()

    def run_block(self, indices, block, on_done):
        return sequential(lambda i: self._one(i, block), indices, on_done)


class _AsyncPerCall(_PerCall):
    name = "async_per_call"
    description = "a new aiohttp.ClientSession per call, at most N in flight"
    default = True
    is_async = True
    concurrent = True

    async def _aone(self, i: int, block: int) -> CallTiming:
        s = build_aiohttp_session(self.ctx.config, self.ctx.endpoint, self.observer)
        try:
            return await self.ctx.async_call(self.name, i, block, s)
        finally:
            await s.close()

    async def arun_block(self, indices, block, on_done):
        return await bounded(lambda i: self._aone(i, block), indices, self.ctx.concurrency, on_done)


# Registry order is display order (tables, plots, the lab's check boxes).
_ALL: tuple[type[Mode], ...] = (
    _PerCall,
    SdkDefault,
    _Shared,
    _Threads,
    _Async,
    _AsyncPerCall,
    SdkThreads,
    SdkAsync,
    *HTTPX_MODES,
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
