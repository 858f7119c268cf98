"""The per-loop clients of a NotebookSession (its aiohttp sessions and httpx.AsyncClients) and
how each is closed on its own loop, whatever state that loop is in: now, scheduled on it, from
another thread, or marked closed when the loop is already gone. Also the wait for a replaced
httpx client's requests in flight before it closes.

    >>> import asyncio
    >>> from dashnb._session.loops import running_loop
    >>> async def inside():
    ...     return running_loop() is not None
    >>> running_loop() is None, asyncio.run(inside())
    (True, True)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Any

from .. import _transport

log = logging.getLogger(__name__)

# Kept across importlib.reload() of this module (reload re-runs the code in the same namespace).
if "PENDING" not in globals():
    # Close tasks scheduled on running loops: a task only weakly referenced could be collected.
    PENDING: set = set()

OUTSIDE_LOOP = """\
NotebookSession.aiohttp needs a running event loop (an aiohttp session belongs to one loop), and \
none is running here. In a notebook cell, await the call directly (top-level await works there):
    r = await AioGeneration.call(model="qwen-plus", prompt="hi", session=s.aiohttp)
In a script or other sync code, read s.aiohttp inside a coroutine and run that coroutine:
    async def main():
        return await AioGeneration.call(model="qwen-plus", prompt="hi", session=s.aiohttp)

    r = dashnb.run(main())
(dashnb.run(AioGeneration.call(..., session=s.aiohttp)) fails the same way: the argument \
s.aiohttp is read before any loop runs.)"""


OUTSIDE_LOOP_HTTPX = (
    "NotebookSession.httpx_async needs a running event loop (an httpx.AsyncClient's connections belong "
    "to one loop). Use it inside a coroutine: `dashscope.AsyncClient(base_url=..., http_client=s.httpx_async)` "
    "in a notebook cell (top-level await works there), or s.httpx from sync code."
)


class HttpxAsync:
    """An httpx.AsyncClient in the shape the aiohttp close machinery below expects."""

    __slots__ = ("client",)

    def __init__(self, client: Any) -> None:
        self.client = client

    @property
    def closed(self) -> bool:
        return bool(self.client.is_closed)

    @property
    def connector(self) -> None:  # nothing to detach: httpx binds no loop until a request is made
        return None

    async def wait_idle(self) -> None:
        await _httpx_wait_idle(self.client, asyncio.sleep)

    async def close(self) -> None:
        await self.client.aclose()


async def _httpx_wait_idle(client: Any, sleep: Any) -> None:
    # httpcore has no "idle" signal; poll the pool's public list of connections (bounded).
    from .._transport.httpx import busy_connections  # noqa: PLC0415 (imports httpx)

    for _ in range(6000):
        if not busy_connections(client):
            return
        await sleep(0.05)


def close_httpx_when_idle(client: Any) -> None:
    """Close a replaced sync httpx client once its requests in flight are done (closing the pool
    now would break them), in a daemon thread when any are."""
    from .._transport.httpx import busy_connections  # noqa: PLC0415 (imports httpx)

    if not busy_connections(client):
        client.close()
        return

    def wait_then_close() -> None:
        for _ in range(6000):
            if not busy_connections(client):
                break
            time.sleep(0.05)
        client.close()

    threading.Thread(target=wait_then_close, name="dashnb-httpx-close", daemon=True).start()


class AioEntry:
    __slots__ = ("session", "guard")

    def __init__(self, session: Any, guard: Any) -> None:
        self.session = session
        self.guard = guard


async def _close_on_loop_shutdown(aio: Any):
    """Started once per aiohttp session: the loop's shutdown_asyncgens() (run by asyncio.run and
    Runner.close before closing the loop) finalizes it, which closes the session on its loop."""
    try:
        yield
    finally:
        if not aio.closed:
            log.debug("event loop shutting down: closing its dashnb aiohttp session")
            await aio.close()


def start_guard(aio: Any) -> Any:
    guard = _close_on_loop_shutdown(aio)
    # asend() registers the generator with the running loop (its firstiter hook); driving the
    # awaitable by hand runs the body up to `yield` without awaiting anything.
    step = guard.asend(None)
    try:
        step.send(None)
    except StopIteration:
        pass
    return guard


async def retire(entry: AioEntry, drain: bool) -> None:
    try:
        if drain:
            if isinstance(entry.session, HttpxAsync):
                await entry.session.wait_idle()
            else:
                await _transport.wait_idle(entry.session)
        await entry.session.close()
    finally:
        with contextlib.suppress(Exception):
            await entry.guard.aclose()


def running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _schedule(loop: asyncio.AbstractEventLoop, coro: Any) -> None:
    task = loop.create_task(coro)
    PENDING.add(task)
    task.add_done_callback(PENDING.discard)


def close_aio(loop: asyncio.AbstractEventLoop, entry: AioEntry, *, drain: bool, wait: float = 0.0) -> None:
    """Close one aiohttp session on its own loop, whatever state that loop is in."""
    if entry.session.closed:
        return
    if loop.is_closed():
        detach(entry)
    elif loop is running_loop():  # we are on it (a cell, a callback): cannot block, so schedule
        _schedule(loop, retire(entry, drain))
    elif loop.is_running():  # running in another thread
        fut = asyncio.run_coroutine_threadsafe(retire(entry, drain), loop)
        if wait:
            with contextlib.suppress(Exception):
                fut.result(wait)
    else:  # stopped (e.g. dashnb.run()'s loop between two runs): nothing in flight can progress
        try:
            loop.run_until_complete(retire(entry, drain=False))
        except RuntimeError:  # another loop is running in this thread; close when this one runs
            _schedule(loop, retire(entry, drain))


def detach(entry: AioEntry) -> None:
    """The loop closed without shutting down its async generators (``loop.close()`` alone): the
    transports cannot be closed through it any more. Mark the connector closed so neither aiohttp
    nor we try to use or close it again."""
    connector = entry.session.connector
    if connector is not None and not connector.closed:
        # On a closed loop close() only marks the connector closed and returns an awaitable that
        # does nothing; drive it here so it is not left un-awaited.
        step = connector.close().__await__()
        with contextlib.suppress(StopIteration):
            step.send(None)
    entry.guard = None
