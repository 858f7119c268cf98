"""httpcore's pools keeping connections by the number *idle*, as OkHttp's ConnectionPool does.

    >>> import httpcore
    >>> from dashnb._transport.httpx_keepalive import IdleKeepalive
    >>> class Pool(IdleKeepalive, httpcore.ConnectionPool): ...
    >>> Pool(max_keepalive_connections=20).connections
    []

httpcore 1.0.x closes a connection that falls idle while the pool holds more connections **in
total** than ``max_keepalive_connections`` (the cleanup loop at the top of
``ConnectionPool._assign_requests_to_connections``, in ``_sync/`` and ``_async/``: it measures
``len([c.is_idle() for c in self._connections])``, the length of a list of booleans, which is the
number of all connections). So at a steady concurrency above that limit every released connection
is closed and the next call opens a new one: with ``dashscope.Client``'s defaults (20 kept, 100
open) 32 threads open a connection for nearly every call. OkHttp's ``ConnectionPool(maxIdle...)``
evicts only idle connections beyond its limit, and so does this mixin: a pool keeps at most
``max(concurrency, max_keepalive_connections)`` connections and churns none at a steady load.

httpcore internals this relies on (``tests/clients/test_httpx_keepalive.py`` fails, naming the entry, when
a release changes one):

- ``_assign_requests_to_connections(self) -> list``: a plain method (also on the async pool),
  called with the pool's state locked whenever a request is added or released, returning the
  connections it took out of ``_connections`` for the caller to close;
- ``_connections``: the pool's list of connections, which that method edits in place;
- ``_max_keepalive_connections``: the limit, read by that method's cleanup loop and nowhere else.

The override closes the idle surplus itself, then runs httpcore's method with the limit lifted for
the duration of the call, so everything else (expiry, closed connections, assignment, making room
under ``max_connections``) stays httpcore's.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

__all__ = ["IdleKeepalive", "idle_surplus"]

log = logging.getLogger(__name__)


def idle_surplus(connections: list[Any], keep: int) -> list[Any]:
    """The idle connections beyond the first ``keep`` idle ones (closed or expired ones are left
    to httpcore, which drops them first anyway)."""
    idle = [c for c in connections if c.is_idle() and not c.is_closed() and not c.has_expired()]
    return idle[keep:]


class IdleKeepalive:
    """Mixin for httpcore's ``ConnectionPool`` and ``AsyncConnectionPool`` (put it first among the
    bases): ``max_keepalive_connections`` counts idle connections only."""

    _connections: list[Any]
    _max_keepalive_connections: int

    def _assign_requests_to_connections(self) -> list[Any]:
        keep = self._max_keepalive_connections
        closing = idle_surplus(self._connections, keep)
        for connection in closing:
            self._connections.remove(connection)
        if closing:
            log.debug("closing %d idle connection(s) beyond the %d kept", len(closing), keep)
        # Lifted only inside httpcore's call, made with the pool locked (its lock in a thread, a
        # plain call between two awaits on a loop), so no other reader sees the lifted value.
        self._max_keepalive_connections = sys.maxsize
        try:
            closing += super()._assign_requests_to_connections()  # type: ignore[misc]
        finally:
            self._max_keepalive_connections = keep
        return closing
