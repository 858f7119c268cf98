"""What every ``compare`` mode is made of: the ``Mode`` base class, the bases for modes on a
dashnb session or a thread pool, and the sequential/threaded/bounded-async drivers they share.

    >>> from dashnb._modes.base import Mode, SessionMode
    >>> issubclass(SessionMode, Mode), Mode.is_async, SessionMode.path
    (True, False, 'sync')

The modes themselves and their registry live in ``dashnb._modes.registry``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from .._call import CallContext
from .._session.manager import NotebookSession
from .._stats import CallTiming

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


def sequential(call: Callable[[int], CallTiming], indices: Sequence[int], on_done: OnDone) -> list[CallTiming]:
    out = []
    for i in indices:
        t = call(i)
        out.append(t)
        on_done(t)
    return out


def threaded(
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


async def bounded(call: Callable[[int], Any], indices: Sequence[int], limit: int, on_done: OnDone) -> list[CallTiming]:
    """Run ``call(i)`` for every index with at most ``limit`` in flight; ``on_done`` runs here,
    in the driving task, so an exception from it cancels the workers before it propagates."""
    todo = iter(indices)
    done: asyncio.Queue = asyncio.Queue()

    async def worker() -> None:
        try:
            for i in todo:  # one iterator shared by the workers: each index is taken once
                done.put_nowait(await call(i))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            # A call that raises instead of returning its record (a client that cannot even be
            # built: its CA file deleted) must reach the driver, or it waits for that record forever.
            done.put_nowait(exc)

    workers = [asyncio.ensure_future(worker()) for _ in range(min(limit, len(indices)))]
    out = []
    try:
        for _ in indices:
            t = await done.get()
            if isinstance(t, BaseException):
                raise t
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


class SessionMode(Mode):
    """A mode on one dashnb NotebookSession (the caller's, or a private one closed at the end)."""

    path = "sync"

    def __init__(self, ctx: CallContext) -> None:
        super().__init__(ctx)
        self._own = ctx.user_session is None
        self.session = (
            NotebookSession(ctx.config, endpoint=ctx.endpoint, name=f"dashnb.compare:{self.name}")
            if ctx.user_session is None
            else ctx.user_session
        )

    def client_connections(self) -> int | None:
        return self.session.stats()[self.path]["connections_opened"]

    def close(self) -> None:
        if self._own:
            self.session.close()

    async def aclose(self) -> None:
        if self._own and self.path == "async":
            await self.session.__aexit__(None, None, None)


class ThreadPooled(Mode):
    """A mode whose calls come from a pool of ``concurrency`` threads (mixed in before its base)."""

    concurrent = True

    def __init__(self, ctx: CallContext) -> None:
        super().__init__(ctx)
        self._pool = concurrent.futures.ThreadPoolExecutor(ctx.concurrency, thread_name_prefix=f"dashnb-{self.name}")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        super().close()
