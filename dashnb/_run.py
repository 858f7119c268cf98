"""Run a coroutine from sync code anywhere: a script, a notebook cell, a widget callback.

    >>> import dashnb
    >>> async def twice(x):
    ...     return 2 * x
    >>> dashnb.run(twice(21))
    42

Two situations:

- **No loop is running in this thread** (a script, a worker thread): the coroutine runs on a
  persistent event loop owned by this thread, created on the first ``run()`` and reused by the
  next ones. ``asyncio.run()`` would create and close a loop per call, and since aiohttp sessions
  belong to one loop, every call would then open new connections: a ``dashnb.session()``'s
  ``.aiohttp`` made inside one ``run()`` keeps its pooled connections for the next ``run()``.
  Tasks the coroutine leaves behind stay scheduled until a later ``run()`` (they are not
  cancelled as ``asyncio.run`` would). A thread's loop is closed when the thread ends (its
  pending tasks cancelled, its async generators - the dashnb aiohttp sessions - shut down), and
  the main thread's at interpreter exit, after the sessions on it.
- **A loop is already running in this thread** (a Jupyter cell, an ipywidgets callback: both run
  inside the kernel's loop): ``nest_asyncio2`` is applied to that loop - lazily, on the first such
  call, never at import - and the coroutine runs to completion on it, re-entrantly. In a cell,
  prefer ``await coro`` (IPython runs top-level ``await``); ``run()`` is for code that must stay
  sync, like a widget callback. nest_asyncio2 switches asyncio to its pure-Python Task/Future
  (Python < 3.14) for the rest of the process; that is what keeps ``asyncio.current_task()`` and
  therefore aiohttp's timeouts working inside the nested run.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["before_loops_close", "run"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_local = threading.local()
_loops: set[asyncio.AbstractEventLoop] = set()  # open persistent loops, to close at exit
_loops_lock = threading.Lock()
_nest_lock = threading.Lock()


class _LoopHolder:
    """Holds a thread's persistent loop in ``_local``. When the thread ends, Python drops the
    thread's ``threading.local`` values, and this holder's finaliser closes the loop (and, through
    its async-generator shutdown, the dashnb aiohttp sessions on it): a short-lived worker thread
    would otherwise keep its loop's selector and self-pipe (and any pooled connection) open until
    the interpreter exits."""

    __slots__ = ("__weakref__", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        weakref.finalize(self, _retire_loop, loop, os.getpid()).atexit = False  # close_loops() covers exit


def _retire_loop(loop: asyncio.AbstractEventLoop, pid: int) -> None:
    if os.getpid() != pid:
        # A forked child drops the parent's threads, and with them their holders: the loop's
        # epoll instance is shared with the parent, so closing it here (which unregisters its
        # self-pipe) would break the parent's loop. Leave it be.
        abandon(loop)
        return
    with _loops_lock:
        _loops.discard(loop)
    _close_loop(loop)


# Loops a forked child inherited: kept referenced, and never run or closed in the child.
_INHERITED: list[asyncio.AbstractEventLoop] = []


def abandon(loop: asyncio.AbstractEventLoop) -> None:
    """In a forked child: make sure this process never runs or closes the parent's ``loop``.

    Its epoll instance is the parent's (fork shares it): closing the loop here, even by garbage
    collection at exit, unregisters the parent's file descriptors from it, and the parent's loop
    then waits for events that never come. So it is marked closed without being closed; its
    transports then refuse to schedule anything (a TLS one cannot even start its shutdown, which
    would write to the parent's connection).
    """
    _INHERITED.append(loop)
    if isinstance(loop, asyncio.BaseEventLoop) and not loop.is_closed():
        loop._closed = True  # type: ignore[attr-defined]  # asyncio has no public "forget"


def _after_fork_in_child() -> None:
    global _loops_lock, _nest_lock
    _loops_lock, _nest_lock = threading.Lock(), threading.Lock()
    for loop in list(_loops):
        abandon(loop)
    _loops.clear()
    # The forking thread's loop is the parent's too; dropping its holder abandons it (the
    # finaliser sees another pid), and the next run() here makes a fresh one.
    _local.holder = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _thread_loop() -> asyncio.AbstractEventLoop:
    holder = getattr(_local, "holder", None)
    if holder is None or holder.loop.is_closed():
        loop = asyncio.new_event_loop()
        with _loops_lock:
            _loops.add(loop)
        _local.holder = _LoopHolder(loop)
        log.debug("created the persistent event loop of thread %s", threading.current_thread().name)
        return loop
    return holder.loop


def thread_loop() -> asyncio.AbstractEventLoop:
    """The persistent loop ``run()`` uses in this thread when no loop is running."""
    return _thread_loop()


def _allow_nesting(loop: asyncio.AbstractEventLoop) -> None:
    with _nest_lock:
        if getattr(loop, "_nest_patched", False):
            return
        import nest_asyncio2

        if not isinstance(loop, asyncio.BaseEventLoop):
            raise RuntimeError(
                f"dashnb.run() cannot run inside a running {type(loop).__name__} loop (nest_asyncio2 "
                f"patches only asyncio's own loops); use `await` instead"
            )
        nest_asyncio2.apply(loop)
        log.debug("applied nest_asyncio2 to the running %s", type(loop).__name__)


def run(coro: Awaitable[T]) -> T:
    """Run ``coro`` to completion and return its result, whether or not a loop is running."""
    if not asyncio.iscoroutine(coro) and not asyncio.isfuture(coro) and not hasattr(coro, "__await__"):
        raise TypeError(f"dashnb.run() needs a coroutine or awaitable, got {type(coro).__name__}")
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not None:
        _allow_nesting(running)
        return running.run_until_complete(coro)

    loop = _thread_loop()
    task = asyncio.ensure_future(coro, loop=loop)
    try:
        return loop.run_until_complete(task)
    finally:
        if not task.done():  # interrupted (e.g. KeyboardInterrupt): do not leave it half-run
            task.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(task)


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    if loop.is_closed() or loop.is_running():
        return
    try:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    except Exception:  # pragma: no cover - best effort at exit
        log.debug("error while closing an event loop at exit", exc_info=True)
    finally:
        loop.close()


def close_loops() -> None:
    """Close the persistent loops (at interpreter exit; exposed for tests)."""
    with _loops_lock:
        loops = list(_loops)
        _loops.clear()
    for loop in loops:
        _close_loop(loop)


_BEFORE_LOOPS_CLOSE: list[Callable[[], None]] = []


def before_loops_close(callback: Callable[[], None]) -> None:
    """Have ``callback`` run at interpreter exit while the loops are still open (the session
    manager closes its sessions there, each on its own loop)."""
    _BEFORE_LOOPS_CLOSE.append(callback)


def _at_exit() -> None:
    # The one exit hook: what needs the loops first, then the loops. Two atexit hooks would run
    # in the reverse order of their modules' imports, which nothing here fixes.
    for callback in reversed(_BEFORE_LOOPS_CLOSE):
        try:
            callback()
        except Exception:  # pragma: no cover - best effort at exit; the loops must still close
            log.debug("error in an exit callback", exc_info=True)
    close_loops()


atexit.register(_at_exit)
