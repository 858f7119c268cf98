"""When the relay's held chunks leave: deadlines on the event loop, to the microsecond on Linux.

    >>> import asyncio
    >>> loop = asyncio.new_event_loop()
    >>> clock = make_clock(loop)
    >>> type(clock).__name__ in ("_PreciseClock", "_LoopClock")
    True
    >>> clock.close(); loop.close()

``make_clock(loop)`` returns an object with ``call_at(when, fn)`` (``when`` on ``loop.time()``)
and ``close()``: a timerfd-backed clock on Linux selector loops, asyncio's own timers elsewhere.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import os
import sys
import time

log = logging.getLogger(__name__)

__all__ = ["make_clock"]


class _Timer:
    """A cancellable deadline of `_PreciseClock` (the same two methods as an asyncio TimerHandle)."""

    __slots__ = ("fn", "_cancelled")

    def __init__(self, fn):
        self.fn = fn
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled


class _PreciseClock:
    """Runs callbacks at `loop.time()` deadlines through one Linux timerfd, to the microsecond.

    Why not `loop.call_at`: asyncio waits in epoll_wait, whose timeout is whole milliseconds,
    and both `selectors.EpollSelector` and `select.epoll.poll` round it *up*. A chunk due in
    19.7 ms is therefore written at 20 ms or later: up to 1 ms late per crossing, 2 per round
    trip, whatever the RTT. A timerfd armed at an absolute CLOCK_MONOTONIC time (the clock
    behind `loop.time()` on selector loops) has no such rounding and no timer slack; it wakes
    the same epoll_wait as a readable file descriptor, so nothing here blocks the loop.

    What remains is the machine's wake-up latency: a thread that slept on an idle core runs
    again some time after its timer expires (measured on a 2-vCPU VM: about 60 us after a 5 ms
    sleep, 100-250 us after 20-50 ms, up to 500 us), and a chunk is late by that much. So, with
    ``spin`` > 0, the timerfd fires ``spin`` seconds ahead of the next deadline and the clock
    polls for the deadline through the event loop: one step per loop iteration, each iteration
    polling the sockets (epoll_wait with a zero timeout, the GIL released) and running whatever
    else is ready before the next step. A spin never runs a callback early (`_run_due` compares
    with `loop.time()` only), never holds back another connection's I/O by more than one step,
    and lasts at most ``spin`` seconds per deadline: its CPU cost, paid only while bytes are in
    flight. ``spun`` and ``spins`` count it.
    """

    def __init__(self, loop, fd: int, settime, spin: float = 0.0) -> None:
        self.loop = loop
        self.fd = fd
        self._settime = settime  # (fd, absolute monotonic ns) -> None
        self._heap: list[tuple[float, int, _Timer]] = []
        self._seq = itertools.count()  # ties keep their order of arrival
        self._armed: float | None = None  # the deadline the timerfd is armed for (it fires `spin` ahead)
        self._closed = False
        self.spin = spin
        self._spin_since: float | None = None  # while spinning: since when
        # Seconds spent spinning (wall time from the early wake to the last deadline it covered,
        # other callbacks run in between included: an upper bound on the CPU the spin costs),
        # and how many spins there were. Benchmarks read them on the loop.
        self.spun = 0.0
        self.spins = 0
        loop.add_reader(fd, self._fire)

    def call_at(self, when: float, fn):
        if self._closed:  # shutting down: whatever still asks for a timer gets the loop's
            return self.loop.call_at(when, fn)
        timer = _Timer(fn)
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        if self._spin_since is None and (self._armed is None or when < self._armed):
            self._arm(when)
        return timer

    def _arm(self, when: float) -> None:
        self._armed = when
        # Rounded up: the timer may fire late by the kernel's wake-up latency, never early
        # (with a spin it fires `spin` ahead on purpose, and `_run_due` still waits for `when`).
        self._settime(self.fd, max(1, math.ceil((when - self.spin) * 1e9)))

    def _fire(self) -> None:
        try:
            os.read(self.fd, 8)  # the expiration count; reading it re-arms readiness
        except BlockingIOError:
            pass
        self._armed = None
        try:
            self._run_due()
        finally:
            self._next()

    def _run_due(self) -> None:
        heap = self._heap
        now = self.loop.time()
        while heap and (heap[0][2]._cancelled or heap[0][0] <= now):
            timer = heapq.heappop(heap)[2]
            if not timer._cancelled:
                try:
                    timer.fn()
                except Exception as exc:  # one failing callback must not stall every other timer
                    self.loop.call_exception_handler({"message": "relay timer callback failed", "exception": exc})

    def _next(self) -> None:
        """After running what was due: spin up to the next deadline if it is that close, else sleep."""
        heap = self._heap
        if self._closed or not heap:
            self._end_spin()
            return
        now = self.loop.time()
        if heap[0][0] - now <= self.spin:
            # Due within the spin window: poll for it through the event loop instead of sleeping.
            # One step per loop iteration: every iteration polls the sockets (epoll_wait with a
            # zero timeout, the GIL released) and runs everything else that is ready before the
            # next step, so the spin never holds back another connection's bytes.
            if self._spin_since is None:
                self._spin_since = now
                self.spins += 1
            self.loop.call_soon(self._step)
            return
        self._end_spin()
        self._arm(heap[0][0])

    def _step(self) -> None:
        try:
            self._run_due()
        finally:
            self._next()

    def _end_spin(self) -> None:
        if self._spin_since is not None:
            self.spun += self.loop.time() - self._spin_since
            self._spin_since = None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._heap.clear()
        self.loop.remove_reader(self.fd)
        os.close(self.fd)


class _LoopClock:
    """The portable fallback: asyncio's own timers (exact on kqueue and select; epoll rounds up)."""

    def __init__(self, loop) -> None:
        self.loop = loop

    def call_at(self, when: float, fn):
        return self.loop.call_at(when, fn)

    def close(self) -> None:
        pass


def _timerfd_api():
    """(fd, settime) for a non-blocking CLOCK_MONOTONIC timerfd, or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    # ctypes, not os.timerfd_create: that is Python 3.13+, and this package supports 3.10.
    import ctypes

    class Timespec(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    class Itimerspec(ctypes.Structure):
        _fields_ = [("it_interval", Timespec), ("it_value", Timespec)]

    libc = ctypes.CDLL(None, use_errno=True)
    create, set_ = libc.timerfd_create, libc.timerfd_settime
    create.argtypes, create.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    set_.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(Itimerspec), ctypes.c_void_p]
    set_.restype = ctypes.c_int
    fd = create(time.CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)  # TFD_NONBLOCK | TFD_CLOEXEC
    if fd < 0:
        raise OSError(ctypes.get_errno(), "timerfd_create failed")

    def settime(fd: int, ns: int) -> None:
        spec = Itimerspec(Timespec(0, 0), Timespec(*divmod(ns, 1_000_000_000)))
        if set_(fd, 1, ctypes.byref(spec), None) != 0:  # 1: TFD_TIMER_ABSTIME
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")

    return fd, settime


def make_clock(loop, spin: float = 0.0):
    """The precise clock where the loop is a selector loop on Linux, else asyncio's timers.

    spin: seconds ahead of a deadline to wake and poll for it (see `_PreciseClock`); 0 sleeps to it.
    """
    # loop.time() must be CLOCK_MONOTONIC for absolute deadlines to match: true of asyncio's
    # selector loops (time.monotonic), not promised by other loop implementations.
    if isinstance(loop, asyncio.SelectorEventLoop):
        try:
            api = _timerfd_api()
        except (OSError, AttributeError) as exc:
            log.debug("no timerfd (%s): relay timers use the event loop's own", exc)
            api = None
        if api is not None:
            fd, settime = api
            return _PreciseClock(loop, fd, settime, spin=spin)
    return _LoopClock(loop)
