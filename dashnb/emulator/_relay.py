"""A TCP relay that gives loopback the round-trip time of a real network.

Every byte is held for rtt/2 in each direction. Delivery is pipelined: a chunk read at time t
leaves at t + rtt/2 whatever else is in flight, so a burst costs rtt/2 once, not once per chunk.
Order is kept (with jitter a chunk never overtakes the one before it).

On loopback the kernel completes the TCP handshake at once. The relay charges that round trip
to the first bytes the client sends: they cannot leave before accept + 1 RTT, exactly when a
client on a real network would have its SYN-ACK. A TLS handshake then costs its own round trips
naturally, because its messages cross the relay like any other bytes.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import json
import logging
import random
import socket
import uuid
from typing import Any

from ._clock import make_clock
from ._options import auto_connection_limit

log = logging.getLogger(__name__)

_EOF = object()

# Bytes the relay may hold for one direction of one connection (in its delay queue, or for a
# connection still waiting for its upstream or for a slot) before it stops reading from the
# sender; it reads again once the held bytes fall to the low-water mark. A real path holds at
# most its window in flight, so this caps throughput at about HIGH / (rtt/2), like TCP's window
# does, instead of letting a fast sender on loopback pile up everything it has.
HIGH_WATER = 4 << 20
LOW_WATER = 1 << 20

# Refusals at the connection limit that may linger at once (each holds its socket for up to
# _REFUSAL_LINGER_S, so the client reads the 503 before the close); beyond, they close at once.
_MAX_LINGERING = 32
_REFUSAL_LINGER_S = 0.5
_OUT_OF_FILES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
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


class _Gate:
    """Reading from one transport, paused while any reason holds it (several parts of the relay may)."""

    __slots__ = ("transport", "reasons")

    def __init__(self, transport=None):
        self.transport = transport
        self.reasons: set[str] = set()

    def attach(self, transport) -> None:
        self.transport = transport
        if self.reasons:
            transport.pause_reading()

    def hold(self, reason: str) -> None:
        if not self.reasons and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self.reasons.add(reason)

    def release(self, reason: str) -> None:
        if reason not in self.reasons:
            return
        self.reasons.discard(reason)
        if not self.reasons and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def level(self, reason: str, held: int) -> None:
        """Hold above the high-water mark, release at or below the low one, else leave as is."""
        if held > HIGH_WATER:
            self.hold(reason)
        elif held <= LOW_WATER:
            self.release(reason)


class _Delay:
    """One direction of one connection: a time-ordered queue drained by a single timer."""

    __slots__ = ("loop", "clock", "lateness", "sink", "queue", "timer", "last_due", "closed", "on_eof", "held", "gate")

    def __init__(self, loop, clock, lateness, sink, on_eof, gate: _Gate):
        self.loop = loop
        self.clock = clock
        self.lateness = lateness  # the relay's record of how late held chunks left
        self.sink = sink  # transport to write to
        self.queue: collections.deque[tuple[float, Any]] = collections.deque()  # bytes or _EOF
        self.timer = None
        self.last_due = 0.0
        self.closed = False
        self.on_eof = on_eof
        self.held = 0  # bytes queued, not yet written
        self.gate = gate  # reading from the sender: paused while too much is held

    def push(self, item, due: float) -> None:
        # Never deliver before the previous chunk: jitter must not reorder a byte stream.
        due = max(due, self.last_due)
        self.last_due = due
        if due <= self.loop.time() and not self.queue:
            self._deliver(item)
            return
        self.queue.append((due, item))
        if item is not _EOF:
            self.held += len(item)
            self.gate.level("held", self.held)
        if self.timer is None:
            self.timer = self.clock.call_at(due, self._drain)

    def _drain(self) -> None:
        self.timer = None
        now = self.loop.time()
        q = self.queue
        # Only what is due: a timer that fires early (asyncio runs one up to its clock's
        # resolution ahead) re-arms instead of delivering ahead of time.
        while q and q[0][0] <= now:
            due, item = q.popleft()
            if item is not _EOF:
                self.held -= len(item)
                if not self.closed:
                    # Stamped as it is written, after any chunk written before it in this pass.
                    self.lateness.append(self.loop.time() - due)
            self._deliver(item)
        if not self.closed:
            self.gate.level("held", self.held)
        if q and not self.closed:
            self.timer = self.clock.call_at(q[0][0], self._drain)

    def _deliver(self, item) -> None:
        if self.closed:
            return
        if item is _EOF:
            self.closed = True
            self.on_eof()
            return
        if not self.sink.is_closing():
            self.sink.write(item)

    def cancel(self) -> None:
        self.closed = True
        self.queue.clear()
        self.held = 0
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Link:
    """Relay state for one client connection; the server side reads it to count and to close idle links."""

    _ids = 0

    def __init__(self, relay: Relay, client_transport):
        Link._ids += 1
        self.id = Link._ids
        self.relay = relay
        self.client = client_transport
        self.peer = client_transport.get_extra_info("peername")
        self.upstream = None  # transport to the backend server
        self.accepted_at = relay.loop.time()
        self.last_activity = self.accepted_at
        self.requests = 0
        self.epoch = 0  # the counters' reset generation this connection was accepted in
        self.busy = 0  # requests being answered; an idle timer never fires during one
        # Since when a request head has been awaited (accepted, or bytes came after the last
        # request ended); None while a request is being answered or the connection is idle.
        self.head_since: float | None = None
        self.admitted = False
        self.closed = False
        self.idle_handle = None
        self.to_server: _Delay | None = None
        self.to_client: _Delay | None = None
        self.stalled = False  # tls_stall: accepted, never answered
        self.backlog: list[object] = []  # client bytes read while the connection waits for a slot
        self.backlog_bytes = 0
        self.pending: list[tuple[float, object]] = []  # (due, bytes) read before the upstream connection is ready
        self.pending_bytes = 0
        self.client_gate = _Gate(client_transport)  # reading from the client
        self.server_gate = _Gate()  # reading from the upstream, once connected


def _no_delay(transport) -> None:
    """Nagle off, as on any server's socket: a chunk leaves when the relay writes it.

    asyncio does this itself only for sockets whose proto is IPPROTO_TCP; the emulator's
    listening socket is made with proto 0, and the connections accepted from it inherit that.
    """
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _ClientSide(asyncio.Protocol):
    # ``refuse``: the connection limit it is over. The link then stays None: the 503 goes out,
    # and what the client sends is discarded.
    def __init__(self, relay: Relay, refuse: int | None = None):
        self.relay = relay
        self.refuse = refuse
        self.made = False
        self.lingering = False  # a refusal whose 503 is going out (counted in relay.lingering)
        self.link: Link | None = None

    def connection_made(self, transport):
        self.made = True
        self.relay.starting -= 1
        transport.set_write_buffer_limits(high=1 << 20)
        _no_delay(transport)
        if self.refuse is not None:
            self.lingering = self.relay._refuse(transport, self.refuse)
        else:
            self.link = self.relay._accepted(transport)

    def data_received(self, data):
        if self.link is not None:
            self.relay._from_client(self.link, data)

    def eof_received(self):
        if self.link is None:
            return False
        self.relay._client_eof(self.link)
        return True  # keep our side open until the EOF has crossed the relay

    def connection_lost(self, exc):
        if self.lingering:
            self.relay.lingering -= 1
        elif self.link is not None:
            self.relay._client_lost(self.link)

    def pause_writing(self):
        if self.link is not None:
            self.link.server_gate.hold("sink")

    def resume_writing(self):
        if self.link is not None:
            self.link.server_gate.release("sink")


class _ServerSide(asyncio.Protocol):
    def __init__(self, relay: Relay, link: Link):
        self.relay = relay
        self.link = link

    def connection_made(self, transport):
        transport.set_write_buffer_limits(high=1 << 20)

    def data_received(self, data):
        self.relay._from_server(self.link, data)

    def eof_received(self):
        self.relay._server_eof(self.link)
        return True

    def connection_lost(self, exc):
        self.relay._server_eof(self.link)

    def pause_writing(self):
        self.link.client_gate.hold("sink")

    def resume_writing(self):
        self.link.client_gate.release("sink")


class Relay:
    """Accepts client connections and forwards them, delayed, to the backend the options choose."""

    def __init__(self, loop, options_getter, backend_for, counters, rng: random.Random):
        self.loop = loop
        self._options = options_getter  # () -> EmulatorOptions (swapped live by configure)
        self._backend_for = backend_for  # (options) -> (host, port) or None for "never finish TLS"
        self.counters = counters
        self.rng = rng
        self.links: dict[int, Link] = {}
        self.by_upstream_port: dict[int, Link] = {}
        self.waiting: collections.deque[Link] = collections.deque()
        self.listeners: list[socket.socket] = []
        self.clock = make_clock(loop)
        # Seconds each held chunk left after its due time (the latest ones): what the relay adds
        # to the model's rtt/2 per crossing. Benchmarks read and clear it on the loop.
        self.lateness: collections.deque[float] = collections.deque(maxlen=100_000)
        self.auto_limit = auto_connection_limit()
        self.lingering = 0  # refused connections still open (see _MAX_LINGERING)
        self.starting = 0  # accepted sockets whose transport is being made
        self.warn = _RateLimitedLog(loop)
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._closed = False

    async def listen(self, socks) -> None:
        # Our own accept loop, not loop.create_server: asyncio's accepts up to its backlog (1024)
        # connections a tick before any protocol sees one, so a burst of waiting connections could
        # take every descriptor the process has whatever the limit; and out of descriptors it logs
        # a traceback per failed accept. Here the limit is checked before each accept.
        for sock in socks:
            sock.setblocking(False)
            self.listeners.append(sock)
            self.loop.add_reader(sock.fileno(), self._accept, sock)
        self._sweep_handle = self.loop.call_later(self._sweep_every(), self._sweep)

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
        protocol = _ClientSide(self, refuse)
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
        if not self._closed:
            self.loop.add_reader(sock.fileno(), self._accept, sock)

    # -- defences: the connection limit, deadlines, running out of files --------------------

    def connection_limit(self) -> int:
        return self._options().connection_limit or self.auto_limit

    def _evictable(self, link: Link) -> bool:
        # Nothing being answered and no reply on its way: the client loses no work.
        return not link.busy and not link.closed and (link.to_client is None or not link.to_client.queue)

    def evict_one(self, why: str) -> bool:
        """Close the connection idle the longest to make room; False when every one is busy."""
        victim = min(filter(self._evictable, self.links.values()), key=lambda lk: lk.last_activity, default=None)
        if victim is None:
            return False
        self.counters.evicted += 1
        log.debug("closing connection %d, idle the longest: %s", victim.id, why)
        self._drop(victim)
        return True

    def _drop(self, link: Link) -> None:
        """Close a connection now, both sides, freeing its descriptors."""
        if not link.client.is_closing():
            link.client.close()
        self._client_lost(link)

    def _refuse(self, transport, limit: int) -> bool:
        """Turn a connection away; True when it lingers to deliver the 503."""
        self.counters.refused += 1
        self.warn.warning(
            "refused",
            "emulator refused a connection: all %d connections it may hold (connection_limit) are busy",
            limit,
        )
        if self._options().tls != "off" or self.lingering >= _MAX_LINGERING:
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
        opts = self._options()
        timeouts = [t for t in (opts.head_timeout, opts.idle_timeout) if t is not None]
        return min([1.0] + [max(0.02, t / 4) for t in timeouts])

    def _sweep(self) -> None:
        """Close connections past their deadlines: too slow to send a head, or idle too long."""
        self._sweep_handle = None
        opts = self._options()
        now = self.loop.time()
        for link in list(self.links.values()):
            if not link.admitted or link.busy or link.closed:
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
        if not self._closed:
            self._sweep_handle = self.loop.call_later(self._sweep_every(), self._sweep)

    def exception_handler(self, loop, context) -> None:
        """The emulator loop's handler. The servers behind the relay accept through asyncio, whose
        accept loop, out of descriptors, reports every failed accept (up to 1024 a tick) with a
        traceback: one line a second here, and the longest-idle connection's descriptors back."""
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _OUT_OF_FILES and "accept" in context.get("message", ""):
            if self.warn.last.get("accept", -1e9) + 1.0 <= loop.time():
                self.evict_one("the process is out of file descriptors")
            self.warn.warning("accept", "emulator cannot accept connections: %s; retrying", exc.strerror or exc)
            return
        loop.default_exception_handler(context)

    # -- timing ---------------------------------------------------------------------------

    def _one_way(self, opts) -> float:
        delay = opts.rtt_ms / 2000.0
        if opts.jitter_ms:
            delay += self.rng.uniform(0.0, opts.jitter_ms / 2000.0)
        return delay

    # -- connection lifecycle -------------------------------------------------------------

    def _accepted(self, transport) -> Link:
        link = Link(self, transport)
        self.links[link.id] = link
        self.counters.tcp_accepted(link)
        opts = self._options()
        if opts.max_connections is not None and self.counters.open_connections >= opts.max_connections:
            # Like a server whose accept queue is full of work: the client is connected but nobody talks to it.
            self.waiting.append(link)
            self.counters.queued_connections = len(self.waiting)
            log.debug(
                "connection %d waits: %d open (cap %d)", link.id, self.counters.open_connections, opts.max_connections
            )
        else:
            self._admit(link)
        return link

    def _admit(self, link: Link) -> None:
        link.admitted = True
        link.head_since = self.loop.time()
        self.counters.opened(link)
        opts = self._options()
        target = self._backend_for(opts)
        if target is None:
            link.stalled = True
            return
        link.to_client = _Delay(
            self.loop, self.clock, self.lateness, link.client, lambda: self._close_client(link), link.server_gate
        )
        self.arm_idle(link)
        self.loop.create_task(self._connect_upstream(link, target))

    async def _connect_upstream(self, link: Link, target) -> None:
        try:
            transport, _ = await self.loop.create_connection(lambda: _ServerSide(self, link), *target)
        except OSError as exc:  # the backend is gone: we are stopping
            log.debug("relay could not reach backend: %s", exc)
            self._abort(link)
            return
        if link.closed:
            transport.close()
            return
        link.upstream = transport
        link.server_gate.attach(transport)
        self.by_upstream_port[transport.get_extra_info("sockname")[1]] = link
        link.to_server = _Delay(
            self.loop, self.clock, self.lateness, transport, lambda: self._half_close_upstream(link), link.client_gate
        )
        pending, link.pending, link.pending_bytes = link.pending, [], 0
        for due, item in pending:
            link.to_server.push(item, due)
        link.to_server.gate.level("held", link.to_server.held)  # the pending bytes are now the queue's

    def _from_client(self, link: Link, data: bytes) -> None:
        now = self.loop.time()
        link.last_activity = now
        self.counters.bytes_in += len(data)
        if link.stalled:
            return  # a handshake that never completes: the bytes go nowhere
        if not link.admitted:
            # Waiting for a slot: keep what the client sent, but no more than a window of it.
            link.backlog.append(data)
            link.backlog_bytes += len(data)
            if link.backlog_bytes > HIGH_WATER:
                link.client_gate.hold("backlog")
            return
        if not link.busy and link.head_since is None:
            link.head_since = now  # a new request is coming: its head has a deadline
        opts = self._options()
        # The TCP handshake round trip: nothing the client sends can arrive before it completes.
        due = max(now, link.accepted_at + opts.rtt_ms / 1000.0) + self._one_way(opts)
        if link.to_server is None:
            link.pending.append((due, data))
            link.pending_bytes += len(data)
            link.client_gate.level("held", link.pending_bytes)
        else:
            link.to_server.push(data, due)

    def _from_server(self, link: Link, data: bytes) -> None:
        now = self.loop.time()
        link.last_activity = now
        self.counters.bytes_out += len(data)
        if link.to_client is not None:
            link.to_client.push(data, now + self._one_way(self._options()))

    def _client_eof(self, link: Link) -> None:
        if not link.admitted:
            link.backlog.append(_EOF)
            return
        if link.stalled:
            self._abort(link)
            return
        due = self.loop.time() + self._one_way(self._options())
        if link.to_server is None:
            link.pending.append((due, _EOF))
        else:
            link.to_server.push(_EOF, due)

    def _server_eof(self, link: Link) -> None:
        if link.to_client is not None and not link.to_client.closed:
            link.to_client.push(_EOF, self.loop.time() + self._one_way(self._options()))

    def _half_close_upstream(self, link: Link) -> None:
        if link.upstream is not None and not link.upstream.is_closing():
            if link.upstream.can_write_eof():
                link.upstream.write_eof()
            else:
                link.upstream.close()

    def _close_client(self, link: Link) -> None:
        # The server's FIN has crossed the network: the client now sees the connection end.
        if not link.client.is_closing():
            link.client.close()

    def close_idle(self, link: Link) -> None:
        """The server side gave up on an idle connection, as a load balancer does."""
        log.debug("closing connection %d after keep-alive idle timeout", link.id)
        self.counters.idle_closed += 1
        if link.upstream is not None and not link.upstream.is_closing():
            link.upstream.close()
        if link.to_client is not None:
            link.to_client.push(_EOF, self.loop.time() + self._one_way(self._options()))

    def _abort(self, link: Link) -> None:
        if not link.client.is_closing():
            link.client.abort()
        self._client_lost(link)

    def _client_lost(self, link: Link) -> None:
        if link.closed:
            return
        link.closed = True
        self.links.pop(link.id, None)
        if link.idle_handle is not None:
            link.idle_handle.cancel()
        for d in (link.to_server, link.to_client):
            if d is not None:
                d.cancel()
        if link.upstream is not None:
            self.by_upstream_port.pop(link.upstream.get_extra_info("sockname")[1], None)
            if not link.upstream.is_closing():
                link.upstream.close()
        if link.admitted:
            self.counters.closed(link)
            self.admit_waiting()
        else:
            try:
                self.waiting.remove(link)
            except ValueError:
                pass
            self.counters.queued_connections = len(self.waiting)
            self.counters.closed_unadmitted(link)

    def admit_waiting(self) -> None:
        opts = self._options()
        while self.waiting and (opts.max_connections is None or self.counters.open_connections < opts.max_connections):
            link = self.waiting.popleft()
            self.counters.queued_connections = len(self.waiting)
            # Admitted late: the server takes the connection now, so the handshake's round trip starts now.
            link.accepted_at = self.loop.time()
            self._admit(link)
            backlog, link.backlog, link.backlog_bytes = link.backlog, [], 0
            for data in backlog:
                if data is _EOF:
                    self._client_eof(link)
                else:
                    self._from_client(link, data)  # type: ignore[arg-type]  # not _EOF, so bytes
            link.client_gate.release("backlog")  # the delay queue's own mark governs from here

    # -- server-side keep-alive idle timeout ----------------------------------------------

    def arm_idle(self, link: Link) -> None:
        timeout = self._options().keepalive_timeout
        if link.idle_handle is not None:
            link.idle_handle.cancel()
            link.idle_handle = None
        if timeout is not None and not link.closed:
            link.idle_handle = self.loop.call_at(link.last_activity + timeout, self._idle_check, link)

    def _idle_check(self, link: Link) -> None:
        link.idle_handle = None
        timeout = self._options().keepalive_timeout
        if timeout is None or link.closed:
            return
        if link.busy or self.loop.time() - link.last_activity < timeout:
            # Re-arm lazily rather than on every byte: one timer per connection, rarely moved.
            link.idle_handle = self.loop.call_at(
                max(link.last_activity + timeout, self.loop.time() + 0.001), self._idle_check, link
            )
            return
        self.close_idle(link)

    def rearm_all(self) -> None:
        for link in list(self.links.values()):
            if link.admitted:
                self.arm_idle(link)

    def close_all(self) -> None:
        self._closed = True
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
        for link in list(self.links.values()):
            self._abort(link)
        for sock in self.listeners:
            self.loop.remove_reader(sock.fileno())
            sock.close()
        self.clock.close()
