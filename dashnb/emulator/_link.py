"""One connection through the relay: its state (`Link`), the gates and delay queues that hold its
bytes for rtt/2 each way, and the two asyncio protocols that feed them (client side, backend side).

Each ``_Delay`` is one direction: a chunk pushed at time t leaves at t + rtt/2, in order, and the
sender is paused (``_Gate``) while more than ``HIGH_WATER`` bytes are held, as a TCP window would.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from typing import Any

# The relay these parts belong to, and its defences, are typed as Any here: they import this
# module, never the other way round (they drive a link through the methods the protocols below call).
_Relay = Any
_Defences = Any

_EOF = object()

# Bytes the relay may hold for one direction of one connection (in its delay queue, or for a
# connection still waiting for its upstream or for a slot) before it stops reading from the
# sender; it reads again once the held bytes fall to the low-water mark. A real path holds at
# most its window in flight, so this caps throughput at about HIGH / (rtt/2), like TCP's window
# does, instead of letting a fast sender on loopback pile up everything it has.
HIGH_WATER = 4 << 20
LOW_WATER = 1 << 20


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

    def push(self, item, due: float, now: float | None = None) -> None:
        """Send ``item`` at ``due``; ``now``, if given, is the loop's time the caller just read."""
        # Never deliver before the previous chunk: jitter must not reorder a byte stream.
        if due < self.last_due:
            due = self.last_due
        self.last_due = due
        # Due already (always, at rtt 0) and nothing ahead of it: out at once, no timer.
        if not self.queue and due <= (self.loop.time() if now is None else now):
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

    def __init__(self, relay: _Relay, client_transport):
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
        # The request whose body is still arriving (its StreamReader, set by the server once the
        # head is in), since when, and the relay's byte count then: a body has its own deadline
        # and minimum rate, and a connection sending one slowly may be evicted.
        self.body: Any = None
        self.body_since = 0.0
        self.body_mark = 0
        self.bytes_in = 0  # bytes read from the client
        self.handler: object = None  # the server's protocol for this connection, once it has one
        self.admitted = False
        self.closed = False
        self.idle_handle = None
        self.to_server: _Delay | None = None
        self.to_client: _Delay | None = None
        self.stalled = False  # tls_stall: accepted, never answered
        self.spoke = False  # the client has sent bytes (a request may be on its way)
        self.stalling = False  # the handler is in a stall fault: a FIN from the client goes on at once
        # The client half-closed: its FIN waits at the relay until the request it sent is
        # answered (client_eof), or has been passed on to the server (eof_forwarded).
        self.client_eof = False
        self.eof_forwarded = False
        self.backlog: list[object] = []  # client bytes read while the connection waits for a slot
        self.backlog_bytes = 0
        self.pending: list[tuple[float, object]] = []  # (due, bytes) read before the upstream connection is ready
        self.pending_bytes = 0
        self.client_gate = _Gate(client_transport)  # reading from the client
        self.server_gate = _Gate()  # reading from the upstream, once connected

    def mid_body(self) -> bool:
        """A request's head is in and its body is still arriving."""
        return self.body is not None and not self.body.is_eof()


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
    def __init__(self, relay: _Relay, defences: _Defences, refuse: int | None = None):
        self.relay = relay
        self.defences = defences
        self.refuse = refuse
        self.made = False
        self.lingering = False  # a refusal whose 503 is going out (counted in defences.lingering)
        self.link: Link | None = None

    def connection_made(self, transport):
        self.made = True
        self.defences.starting -= 1
        transport.set_write_buffer_limits(high=1 << 20)
        _no_delay(transport)
        if self.refuse is not None:
            self.lingering = self.defences.refuse(transport, self.refuse)
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
            self.defences.lingering -= 1
        elif self.link is not None:
            self.relay._client_lost(self.link)

    def pause_writing(self):
        if self.link is not None:
            self.link.server_gate.hold("sink")

    def resume_writing(self):
        if self.link is not None:
            self.link.server_gate.release("sink")


class _ServerSide(asyncio.Protocol):
    def __init__(self, relay: _Relay, link: Link):
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
