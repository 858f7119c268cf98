"""The relay's defences of the kernel it runs in: its own accept loop, the connection limit
(refusing with a 503, or evicting the connection that has given the server nothing to do the
longest), the head, body and idle deadlines, and what it does when the process runs out of file
descriptors.

A connection whose head is in but whose body is still arriving is not being answered: the server
waits on it. So it has a deadline (``body_timeout``) and a minimum rate (``body_min_rate``, judged
from ``BODY_RATE_GRACE_S`` after the head), and it may be evicted like an idle one, counted from
the end of its head, so a byte every few seconds buys it nothing.

The relay owns one ``Defences``. It sees the relay's connections (the relay's own ``links``), and
hands a connection back to the relay to be forgotten through ``lost``: it decides, the relay keeps
the books. ``client_side`` makes the protocol for an accepted socket (`_link._ClientSide`).
"""

from __future__ import annotations

import asyncio
import collections
import errno
import json
import logging
import socket
import uuid
from collections.abc import Callable
from typing import Any

from ._link import Link, _ClientSide
from ._options import auto_connection_limit

log = logging.getLogger(__name__)

# Refusals at the connection limit that may linger at once (each holds its socket for up to
# _REFUSAL_LINGER_S, so the client reads the 503 before the close); beyond, they close at once.
_MAX_LINGERING = 32
_REFUSAL_LINGER_S = 0.5
OUT_OF_FILES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
#: Seconds after its head before a body's average rate is held to ``body_min_rate``: time for a
#: client that waits before sending it (``Expect: 100-continue`` waits about a second).
BODY_RATE_GRACE_S = 5.0
# Connections accepted per wake-up of a listening socket (the limit is checked before each), and
# how long accepting pauses when it fails for want of descriptors.
_ACCEPT_BATCH = 16
_ACCEPT_RETRY_S = 0.1


def _refusal(limit: int) -> bytes:
    """The plain-HTTP reply to a connection over the limit: a 503 in DashScope's error shape."""
    rid = str(uuid.uuid4())
    body = json.dumps(
        {
            "code": "ServiceUnavailable",
            "message": f"The emulator is at its limit of {limit} open connections (connection_limit); "
            "close idle connections or try again in a moment.",
            "request_id": rid,
        }
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nx-request-id: {rid}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class _RateLimitedLog:
    """At most one log line a second per kind; the line says how many it stood for."""

    def __init__(self, loop) -> None:
        self.loop = loop
        self.last: dict[str, float] = {}
        self.skipped: collections.Counter[str] = collections.Counter()

    def warning(self, kind: str, msg: str, *args) -> None:
        now = self.loop.time()
        if now - self.last.get(kind, -1e9) < 1.0:
            self.skipped[kind] += 1
            return
        self.last[kind] = now
        more = self.skipped.pop(kind, 0)
        log.warning(msg + (f" ({more} more like this in the last second)" if more else ""), *args)


class Defences:
    """The relay's accept loop and the limits and deadlines it keeps (see the module docstring)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        options: Callable[[], Any],
        counters: Any,
        links: dict[int, Link],
        warn: _RateLimitedLog,
        lost: Callable[[Link], None],
        client_side: Callable[[int | None], _ClientSide],
    ) -> None:
        self.loop = loop
        self.options = options  # () -> EmulatorOptions (swapped live by configure)
        self.counters = counters
        self.links = links  # the relay's: read here, changed only by the relay
        self.warn = warn
        self.lost = lost  # the relay forgets a connection closed here (Relay._client_lost)
        self.client_side = client_side  # (limit it is over, or None) -> the protocol for an accepted socket
        self.listeners: list[socket.socket] = []
        self.auto_limit = auto_connection_limit()
        self.lingering = 0  # refused connections still open (see _MAX_LINGERING)
        self.starting = 0  # accepted sockets whose transport is being made
        self.sweep_handle: asyncio.TimerHandle | None = None
        self.closed = False

    async def listen(self, socks) -> None:
        # Our own accept loop, not loop.create_server: asyncio's accepts up to its backlog (1024)
        # connections a tick before any protocol sees one, so a burst of waiting connections could
        # take every descriptor the process has whatever the limit; and out of descriptors it logs
        # a traceback per failed accept. Here the limit is checked before each accept.
        for sock in socks:
            sock.setblocking(False)
            self.listeners.append(sock)
            self.loop.add_reader(sock.fileno(), self._accept, sock)
        self.sweep_handle = self.loop.call_later(self._sweep_every(), self._sweep)

    def close(self) -> None:
        """Stop accepting and sweeping; the relay closes the connections."""
        self.closed = True
        if self.sweep_handle is not None:
            self.sweep_handle.cancel()
            self.sweep_handle = None
        for sock in self.listeners:
            self.loop.remove_reader(sock.fileno())
            sock.close()

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:  # out of descriptors (or memory): wait, give some back
                self._cannot_accept(sock, exc)
                return
            conn.setblocking(False)
            limit = self.connection_limit()
            refuse = len(self.links) + self.starting >= limit and not self.evict_one(
                f"at the connection limit ({limit})"
            )
            self.starting += 1
            self.loop.create_task(self._start(conn, limit if refuse else None))

    async def _start(self, conn: socket.socket, refuse: int | None) -> None:
        protocol = self.client_side(refuse)
        try:
            await self.loop.connect_accepted_socket(lambda: protocol, conn)
        except OSError as exc:
            log.debug("relay could not take an accepted connection: %s", exc)
            conn.close()
        except asyncio.CancelledError:  # the emulator is stopping
            conn.close()
            raise
        finally:
            if not protocol.made:
                self.starting -= 1  # connection_made never ran: it counts this one down otherwise

    def _cannot_accept(self, sock: socket.socket, exc: OSError) -> None:
        self.warn.warning(
            "accept",
            "emulator cannot accept connections: %s; closing its longest-idle connection and retrying",
            exc.strerror or exc,
        )
        self.evict_one(f"cannot accept: {exc.strerror or exc}")
        self.loop.remove_reader(sock.fileno())
        self.loop.call_later(_ACCEPT_RETRY_S, self._resume_accepting, sock)

    def _resume_accepting(self, sock: socket.socket) -> None:
        if not self.closed:
            self.loop.add_reader(sock.fileno(), self._accept, sock)

    # -- defences: the connection limit, deadlines, running out of files --------------------

    def connection_limit(self) -> int:
        return self.options().connection_limit or self.auto_limit

    def _evictable(self, link: Link) -> bool:
        # Nothing being answered and no reply on its way: the client loses no work.
        return not link.busy and not link.closed and (link.to_client is None or not link.to_client.queue)

    def _waiting_since(self, link: Link) -> float | None:
        """Since when the connection has given the server nothing to answer, or None while it has.

        Idle: since its last bytes. Sending a body: since its head, whatever trickles in after.
        """
        if link.closed:
            return None
        if link.mid_body():
            return link.body_since
        return link.last_activity if self._evictable(link) else None

    def evict_one(self, why: str) -> bool:
        """Close the connection waiting the longest to make room; False when every one is busy."""
        waiting = ((since, link) for link in self.links.values() if (since := self._waiting_since(link)) is not None)
        oldest = min(waiting, key=lambda pair: pair[0], default=None)
        if oldest is None:
            return False
        victim = oldest[1]
        self.counters.evicted += 1
        log.debug("closing connection %d, waiting the longest: %s", victim.id, why)
        self._drop(victim)
        return True

    def _drop(self, link: Link) -> None:
        """Close a connection now, both sides, freeing its descriptors."""
        if not link.client.is_closing():
            link.client.close()
        self.lost(link)

    def refuse(self, transport, limit: int) -> bool:
        """Turn a connection away; True when it lingers to deliver the 503."""
        self.counters.refused += 1
        self.warn.warning(
            "refused",
            "emulator refused a connection: all %d connections it may hold (connection_limit) are busy",
            limit,
        )
        if self.options().tls != "off" or self.lingering >= _MAX_LINGERING:
            # A TLS client could not read a plain-text reply: it sees the connection close.
            transport.abort()
            return False
        self.lingering += 1
        transport.write(_refusal(limit))
        if transport.can_write_eof():
            transport.write_eof()
        # Closing with the client's request unread would reset the connection and could destroy
        # the reply before the client reads it: read and discard for a moment, then close.
        self.loop.call_later(_REFUSAL_LINGER_S, transport.abort)
        return True

    def _sweep_every(self) -> float:
        opts = self.options()
        grace = BODY_RATE_GRACE_S if opts.body_min_rate is not None else None
        timeouts = [t for t in (opts.head_timeout, opts.idle_timeout, opts.body_timeout, grace) if t is not None]
        return min([1.0] + [max(0.02, t / 4) for t in timeouts])

    def _sweep(self) -> None:
        """Close connections past their deadlines: too slow to send a head or a body, or idle too long."""
        self.sweep_handle = None
        opts = self.options()
        now = self.loop.time()
        for link in list(self.links.values()):
            if not link.admitted or link.closed:
                continue
            if link.busy:
                if link.mid_body():
                    self._check_body(link, opts, now)
                continue
            if link.head_since is not None:
                if opts.head_timeout is not None and now - link.head_since > opts.head_timeout:
                    self.counters.head_timeouts += 1
                    log.debug("closing connection %d: no complete request head in %gs", link.id, opts.head_timeout)
                    self._drop(link)
            elif (
                opts.idle_timeout is not None and now - link.last_activity > opts.idle_timeout and self._evictable(link)
            ):
                self.counters.idle_closed += 1
                log.debug("closing connection %d: idle for %gs (idle_timeout)", link.id, opts.idle_timeout)
                self._drop(link)
        if not self.closed:
            self.sweep_handle = self.loop.call_later(self._sweep_every(), self._sweep)

    def _check_body(self, link: Link, opts, now: float) -> None:
        """Close a connection whose body is past its deadline, or arriving slower than the minimum rate."""
        took = now - link.body_since
        if opts.body_timeout is not None and took > opts.body_timeout:
            why = f"body not complete {opts.body_timeout:g}s after its head (body_timeout)"
        elif (
            opts.body_min_rate is not None
            and took >= BODY_RATE_GRACE_S
            and (link.bytes_in - link.body_mark) / took < opts.body_min_rate
        ):
            why = f"body arriving slower than {opts.body_min_rate:g} bytes a second (body_min_rate)"
        else:
            return
        self.counters.body_timeouts += 1
        log.debug("closing connection %d: %s", link.id, why)
        self._drop(link)
