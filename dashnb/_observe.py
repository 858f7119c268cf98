"""I/O-free connection counters and per-call records, fed by the library hooks in ``_translate``.

    >>> from dashnb import _observe
    >>> obs = _observe.Observer()
    >>> with _observe.call_scope() as rec:
    ...     obs.connection_opened("sync", connect_s=0.01, tls_s=0.02, connection_id=1)
    ...     obs.request_sent("sync", connection_id=1, requests_on_connection=1)
    >>> rec.reused, obs.snapshot().sync.connections_opened
    (False, 1)

Nothing here touches a socket: the urllib3 connection/pool subclasses and the aiohttp connector,
request and response subclasses in ``_translate_*`` call these methods at each decision, and this
module only counts and timestamps. Counters are guarded by one lock because the sync path is
used from worker threads, except those an aiohttp session keeps for itself (``add_path_counters``:
written only on its event loop's thread); the per-call record is found through a
``contextvars.ContextVar``.

Context caveat: a ``ContextVar`` follows the code that makes the call. ``asyncio`` tasks copy
the context when they are created and ``asyncio.to_thread`` copies it too, but a bare
``threading.Thread`` or ``loop.run_in_executor`` starts with an empty context: open the
``call_scope()`` inside the thread (or task) that makes the call. Tasks created inside one scope
share its record, so use one scope per call, not one around an ``asyncio.gather``.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import dataclasses
import itertools
import threading
import weakref
from collections.abc import Callable, Iterator

from ._snapshot import PathStats, SessionStats, StatsResult

__all__ = [
    "CallRecord",
    "CallSample",
    "Observer",
    "PathStats",
    "SessionStats",
    "StatsResult",
    "call_scope",
    "current_record",
    "next_connection_id",
]

PATHS = ("sync", "async")

# One process-wide sequence, so a connection id names one connection even when several
# sessions (or a reconfigured session's old and new pools) are compared side by side.
_connection_ids = itertools.count(1)
_ids_lock = threading.Lock()


def next_connection_id() -> int:
    with _ids_lock:
        return next(_connection_ids)


@dataclasses.dataclass(frozen=True)
class CallSample:
    """What one SDK call did on the wire, frozen once the call is over.

    ``reused`` is ``None`` when no request reached a connection (e.g. a connect timeout).
    ``connect_s`` is the TCP connect on the sync path; aiohttp opens TCP and TLS in one
    step, so on the async path it is TCP+TLS together and ``tls_s`` stays ``None``.
    ``queued_s`` adds every wait for a slot of the aiohttp connector, whose limits are
    maximum_async_requests and ..._per_host (OkHttp's Dispatcher); urllib3 pools never block here.
    Fields describe the last attempt (the SDK retries once on a dropped connection);
    ``attempts`` says how many requests the call sent.
    """

    path: str | None = None
    reused: bool | None = None
    queued_s: float = 0.0
    connect_s: float | None = None
    tls_s: float | None = None
    ttfb_s: float | None = None
    connection_id: int | None = None
    requests_on_connection: int | None = None
    attempts: int = 0
    error: str | None = None


class CallRecord:
    """The mutable record the hooks fill during one call; ``snapshot()`` freezes it."""

    __slots__ = (
        "path",
        "reused",
        "queued_s",
        "connect_s",
        "tls_s",
        "ttfb_s",
        "connection_id",
        "requests_on_connection",
        "attempts",
        "error",
        "_sent_at",
    )

    def __init__(self) -> None:
        self.path: str | None = None
        self.attempts = 0
        self.error: str | None = None
        self._reset_attempt()

    def start_attempt(self, path: str) -> None:
        """A request is about to look for a connection: what it records replaces the last attempt's."""
        if self.attempts:  # the first attempt finds the fields as __init__ left them
            self._reset_attempt()
        self.path = path
        self.attempts += 1
        self.error = None

    def _reset_attempt(self) -> None:
        self.reused: bool | None = None
        self.queued_s = 0.0
        self.connect_s: float | None = None
        self.tls_s: float | None = None
        self.ttfb_s: float | None = None
        self.connection_id: int | None = None
        self.requests_on_connection: int | None = None
        self._sent_at: float | None = None

    def sent(self, connection_id: int | None, requests_on_connection: int, sent_at: float | None) -> None:
        """The attempt's request went out on a connection (its second request or later: a reuse)."""
        self.reused = requests_on_connection > 1
        self.connection_id = connection_id
        self.requests_on_connection = requests_on_connection
        self._sent_at = sent_at

    def snapshot(self) -> CallSample:
        return CallSample(
            path=self.path,
            reused=self.reused,
            queued_s=self.queued_s,
            connect_s=self.connect_s,
            tls_s=self.tls_s,
            ttfb_s=self.ttfb_s,
            connection_id=self.connection_id,
            requests_on_connection=self.requests_on_connection,
            attempts=self.attempts,
            error=self.error,
        )

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(self.snapshot()).items())
        return f"CallRecord({fields})"


_current: contextvars.ContextVar[CallRecord | None] = contextvars.ContextVar("dashnb_call_record", default=None)


#: The record of the call running in this context, or None. The ContextVar's own getter, so the
#: hooks that run on every request pay no Python call for it.
current_record: Callable[[], CallRecord | None] = _current.get


@contextlib.contextmanager
def call_scope() -> Iterator[CallRecord]:
    """Collect what the next call(s) in this context do on the wire into one record."""
    rec = CallRecord()
    token = _current.set(rec)
    try:
        yield rec
    finally:
        _current.reset(token)


class _Counters:
    __slots__ = ("opened", "reused", "closed", "requests", "in_flight", "queued", "errors")

    def __init__(self) -> None:
        self.opened = self.reused = self.closed = self.requests = self.in_flight = self.queued = self.errors = 0


class Observer:
    """Thread-safe counters for one session, split by path ("sync" = requests, "async" = aiohttp).

    A path may register an ``open_probe`` (a callable returning how many of its connections
    are open right now) when it cannot see closes itself; aiohttp has no close signal, so the
    async path counts live protocols instead, and ``connections_closed`` is derived.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._c = {p: _Counters() for p in PATHS}
        # Each probe belongs to one aiohttp session (one per event loop the session is used on):
        # it is removed when that session's connector closes, and held weakly in case nothing
        # closes it, so asyncio.run() after asyncio.run() leaves no probe behind.
        self._open_probes: dict[str, dict[int, Callable[[], Callable[[], int] | None]]] = {p: {} for p in PATHS}
        self._probe_ids = itertools.count()
        # Paths counted by probes: once a path has had one, its open connections are what the
        # live probes say (0 when all are gone), not opened - closed (aiohttp reports no close).
        self._probed: set[str] = set()
        # Counters one writer keeps without the lock (add_path_counters), read by snapshot() beside
        # the observer's own; those whose owner is gone wait in _dead until folded into them.
        self._own: dict[str, dict[int, _Counters]] = {p: {} for p in PATHS}
        self._dead: collections.deque[tuple[str, int]] = collections.deque()

    def _after_fork_in_child(self) -> None:
        # A lock another thread held at the fork would stay held; the parent's aiohttp sessions'
        # connections are not this process's to count.
        self._lock = threading.Lock()
        for refs in self._open_probes.values():
            refs.clear()

    # -- connection events ---------------------------------------------------------------
    def connection_opened(
        self, path: str, *, connect_s: float | None, tls_s: float | None, connection_id: int | None = None
    ) -> None:
        with self._lock:
            self._c[path].opened += 1
        rec = _current.get()
        if rec is not None:
            rec.connect_s = connect_s
            rec.tls_s = tls_s
            if connection_id is not None:
                rec.connection_id = connection_id

    def connection_closed(self, path: str) -> None:
        with self._lock:
            self._c[path].closed += 1

    def add_open_probe(self, path: str, probe: Callable[[], int]) -> Callable[[], None]:
        """Count ``probe()`` among ``path``'s open connections until the returned function is
        called (or, for a bound method, until its object is garbage)."""
        ref: Callable[[], Callable[[], int] | None]
        if hasattr(probe, "__self__") and hasattr(probe, "__func__"):
            ref = weakref.WeakMethod(probe)
        else:
            ref = lambda: probe  # noqa: E731
        with self._lock:
            key = next(self._probe_ids)
            self._open_probes[path][key] = ref
            self._probed.add(path)

        def remove() -> None:
            with self._lock:
                self._open_probes[path].pop(key, None)

        return remove

    def add_path_counters(self, path: str, owner: object) -> _Counters:
        """Counters for ``path`` that one thread updates without taking the lock, for a hot path
        with a single writer (an aiohttp session's hooks all run on its event loop's thread).

        ``snapshot()`` adds them to the observer's own; once ``owner`` is garbage (nothing can
        write them any more) they are folded in. The finalizer only queues them (a deque append
        is atomic): it may run during a garbage collection triggered while this thread holds the
        lock, which is not re-entrant.
        """
        counters = _Counters()
        with self._lock:
            key = next(self._probe_ids)
            self._own[path][key] = counters
        weakref.finalize(owner, self._dead.append, (path, key))
        return counters

    def _fold_dead(self) -> None:  # with the lock held
        while self._dead:
            path, key = self._dead.popleft()
            c = self._own[path].pop(key, None)
            if c is not None:
                base = self._c[path]
                for name in _Counters.__slots__:
                    setattr(base, name, getattr(base, name) + getattr(c, name))

    def probe_count(self) -> int:
        """How many open probes are registered (live ones; for tests and leak hunts)."""
        with self._lock:
            return sum(1 for v in self._open_probes.values() for ref in v.values() if ref() is not None)

    # -- request events ------------------------------------------------------------------
    def attempt_started(self, path: str) -> None:
        """A request is about to look for a connection (one per attempt, retries included)."""
        rec = _current.get()
        if rec is not None:
            rec.start_attempt(path)

    def queue_entered(self, path: str) -> None:
        with self._lock:
            self._c[path].queued += 1

    def queue_left(self, path: str, waited_s: float) -> None:
        with self._lock:
            self._c[path].queued -= 1
        self.waited(waited_s)

    def waited(self, waited_s: float) -> None:
        rec = _current.get()
        if rec is not None:
            rec.queued_s += waited_s

    def request_started(self, path: str) -> None:
        """In flight from now until released: holding its connection, from the moment the request is
        sent until the connection goes back to the pool or is closed (sync and async alike)."""
        with self._lock:
            self._c[path].in_flight += 1

    def request_sent(
        self,
        path: str,
        *,
        connection_id: int | None,
        requests_on_connection: int,
        sent_at: float | None = None,
        start: bool = False,
    ) -> None:
        """The request went out on a connection; a connection's second request is a reuse.

        ``start=True`` also does what ``request_started`` does, under the same lock acquisition.
        """
        reused = requests_on_connection > 1
        with self._lock:
            c = self._c[path]
            c.requests += 1
            if reused:
                c.reused += 1
            if start:
                c.in_flight += 1
        rec = _current.get()
        if rec is not None:
            rec.sent(connection_id, requests_on_connection, sent_at)

    def response_started(self, now: float) -> None:
        """Response headers arrived: time to first byte, measured from the request being sent."""
        rec = _current.get()
        if rec is not None and rec._sent_at is not None:
            rec.ttfb_s = now - rec._sent_at

    def request_finished(self, path: str) -> None:
        with self._lock:
            self._c[path].in_flight -= 1

    def request_failed(self, path: str, exc: BaseException) -> None:
        with self._lock:
            self._c[path].errors += 1
        rec = _current.get()
        if rec is not None:
            rec.error = type(exc).__name__

    # -- reading -------------------------------------------------------------------------
    def snapshot(self) -> SessionStats:
        with self._lock:
            self._fold_dead()
            raw = {}
            for p, c in self._c.items():
                counts = [c.opened, c.reused, c.closed, c.requests, c.in_flight, c.queued, c.errors]
                for own in self._own[p].values():
                    mine = (own.opened, own.reused, own.closed, own.requests, own.in_flight, own.queued, own.errors)
                    for i, n in enumerate(mine):
                        counts[i] += n
                raw[p] = tuple(counts)
            probed = set(self._probed)
            probes: dict[str, list[Callable[[], int]]] = {}
            for p, refs in self._open_probes.items():
                probes[p] = []
                for key, ref in list(refs.items()):
                    probe = ref()
                    if probe is None:
                        del refs[key]  # its session is gone
                    else:
                        probes[p].append(probe)
        out = {}
        for p, (opened, reused, closed, requests, in_flight, queued, errors) in raw.items():
            if p in probed:
                open_now = sum(probe() for probe in probes[p])
                closed = opened - open_now
            else:
                open_now = opened - closed
            out[p] = PathStats(
                connections_opened=opened,
                connections_reused=reused,
                connections_closed=closed,
                connections_open=open_now,
                requests=requests,
                in_flight=in_flight,
                queued=queued,
                errors=errors,
            )
        return SessionStats(sync=out["sync"], async_=out["async"])
