"""A TCP relay that gives loopback the round-trip time of a real network.

Every byte is held for rtt/2 in each direction. Delivery is pipelined: a chunk read at time t
leaves at t + rtt/2 whatever else is in flight, so a burst costs rtt/2 once, not once per chunk.
Order is kept (with jitter a chunk never overtakes the one before it).

On loopback the kernel completes the TCP handshake at once. The relay charges that round trip
to the first bytes the client sends: they cannot leave before accept + 1 RTT, exactly when a
client on a real network would have its SYN-ACK. A TLS handshake then costs its own round trips
naturally, because its messages cross the relay like any other bytes.

The servers behind the relay (one per TLS setting) listen nowhere. For each connection the relay
makes a socket pair, keeps one end and hands the other to the server as an accepted connection
(TLS terminated there, as before). So the only sockets a client can reach are the ones the URLs
name, and every connection passes the relay's defences; each still costs three descriptors.

The relay owns its defences (accept loop, connection limit, deadlines: `_defences`), which see its
connections and hand back the ones they close; one connection's state, gates and delay queues are
in `_link`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from ._clock import make_clock
from ._defences import OUT_OF_FILES, Defences, _RateLimitedLog
from ._link import _EOF, HIGH_WATER, Link, _ClientSide, _Delay, _ServerSide

log = logging.getLogger(__name__)

# Seconds ahead of a held chunk's due time at which the relay's clock wakes and polls for it (see
# `_clock._PreciseClock`): enough to cover most of an idle core's wake-up latency, so a chunk
# leaves within microseconds of its due time instead of 50-300 us after it. Costs up to this much
# CPU per crossing while bytes are in flight; 0 sleeps to every deadline.
CLOCK_SPIN = 0.0003
# How long a client's FIN, having crossed the network, waits at the relay for the request sent
# before it to reach the server behind it (loopback: well under a millisecond on an idle machine)
# before it is passed on anyway.
HALF_CLOSE_GRACE = 1.0


@dataclass(frozen=True)
class Backend:
    """A server behind the relay: its protocol factory (aiohttp's server) and its TLS context, if any."""

    server: Callable[[], asyncio.BaseProtocol]
    ssl: ssl.SSLContext | None


class Relay:
    """Accepts client connections and forwards them, delayed, to the backend the options choose."""

    def __init__(self, loop, options_getter, backend_for, counters, rng: random.Random):
        self.loop = loop
        self._options = options_getter  # () -> EmulatorOptions (swapped live by configure)
        self._backend_for = backend_for  # (options) -> Backend, or None for "never finish TLS"
        self.counters = counters
        self.rng = rng
        self.links: dict[int, Link] = {}
        self.by_handler: dict[object, Link] = {}  # the server's protocol for each link -> the link
        self.waiting: collections.deque[Link] = collections.deque()
        self.clock = make_clock(loop, spin=CLOCK_SPIN)
        # Seconds each held chunk left after its due time (the latest ones): what the relay adds
        # to the model's rtt/2 per crossing. Benchmarks read and clear it on the loop.
        self.lateness: collections.deque[float] = collections.deque(maxlen=100_000)
        self.warn = _RateLimitedLog(loop)
        self.defences = Defences(
            loop,
            options_getter,
            counters,
            self.links,
            self.warn,
            lost=self._client_lost,
            client_side=lambda refuse: _ClientSide(self, self.defences, refuse),
        )

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

    async def _connect_upstream(self, link: Link, backend: Backend) -> None:
        try:
            near, far = socket.socketpair()
        except OSError as exc:
            if exc.errno in OUT_OF_FILES:
                self.warn.warning(
                    "accept",
                    "emulator cannot accept connections: %s; closing its longest-idle connection",
                    exc.strerror or exc,
                )
                self.defences.evict_one(f"cannot reach its server: {exc.strerror or exc}")
            else:
                log.debug("relay could not make a socket pair: %s", exc)
            self._abort(link)
            return
        self.loop.create_task(self._serve_pair(link, backend, far))
        try:
            transport, _ = await self.loop.connect_accepted_socket(lambda: _ServerSide(self, link), near)
        except OSError as exc:
            log.debug("relay could not take its end of a socket pair: %s", exc)
            near.close()
            self._abort(link)
            return
        if link.closed:
            transport.close()
            return
        link.upstream = transport
        link.server_gate.attach(transport)
        link.to_server = _Delay(
            self.loop, self.clock, self.lateness, transport, lambda: self._half_close_upstream(link), link.client_gate
        )
        pending, link.pending, link.pending_bytes = link.pending, [], 0
        for due, item in pending:
            link.to_server.push(item, due)
        link.to_server.gate.level("held", link.to_server.held)  # the pending bytes are now the queue's

    async def _serve_pair(self, link: Link, backend: Backend, far: socket.socket) -> None:
        """The server takes its end of the pair as an accepted connection (and its TLS handshake)."""
        if link.closed:
            far.close()
            return

        def handler():
            protocol = backend.server()
            link.handler = protocol
            self.by_handler[protocol] = link  # how the server finds the link of a request
            return protocol

        try:
            await self.loop.connect_accepted_socket(handler, far, ssl=backend.ssl)
        except OSError as exc:  # a failed or timed-out handshake, as a listening server sees it
            log.debug("connection %d: the server could not take it: %s", link.id, exc)
            far.close()
        finally:
            if link.closed:
                self.by_handler.pop(link.handler, None)

    def _from_client(self, link: Link, data: bytes) -> None:
        now = self.loop.time()
        link.last_activity = now
        link.spoke = True
        link.bytes_in += len(data)
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
        if opts.rtt_ms or opts.jitter_ms:
            # The TCP handshake round trip: nothing the client sends can arrive before it completes.
            due = max(now, link.accepted_at + opts.rtt_ms / 1000.0) + self._one_way(opts)
        else:
            due = now  # what the line above gives with no network to cross, without its calls
        if link.to_server is None:
            link.pending.append((due, data))
            link.pending_bytes += len(data)
            link.client_gate.level("held", link.pending_bytes)
        else:
            link.to_server.push(data, due, now)

    def _from_server(self, link: Link, data: bytes) -> None:
        now = self.loop.time()
        link.last_activity = now
        self.counters.bytes_out += len(data)
        if link.to_client is not None:
            opts = self._options()
            # With no network to cross the chunk is due now: spare the call (and the queue, in push).
            due = now + self._one_way(opts) if opts.rtt_ms or opts.jitter_ms else now
            link.to_client.push(data, due, now)

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
        # The client's FIN has crossed the network. HTTP/1.1 lets a client half-close after its
        # last request and still read the reply, but the server behind the relay would lose it
        # (aiohttp closes on a FIN; asyncio's TLS ends the session on one). So while a request
        # may be on its way or being answered the FIN waits here, and the server answers with
        # Connection: close (DashScopeApp.handle); its close then crosses back to the client.
        if not link.client_eof and not link.stalling and (link.busy or (link.head_since is not None and link.spoke)):
            link.client_eof = True
            self.loop.call_later(HALF_CLOSE_GRACE, self._half_close_waited, link)
            return
        self.forward_eof(link)

    def _half_close_waited(self, link: Link) -> None:
        # The FIN waits at most this grace. TCP cannot tell a half-close from a client that gave
        # up, and a handler that stalls (stall_before_headers) or waits for a body that can no
        # longer come must not hold the connection open: a reply slower than the grace is lost,
        # and counted as cancelled, not as its status (DashScopeApp.handle).
        if not link.closed:
            self.forward_eof(link)

    def forward_eof(self, link: Link) -> None:
        """Pass the client's FIN on to the server (once its reply is out, if it waited)."""
        if link.eof_forwarded:
            return
        link.eof_forwarded = True
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
        self.by_handler.pop(link.handler, None)
        if link.upstream is not None and not link.upstream.is_closing():
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
        self.defences.close()
        for link in list(self.links.values()):
            self._abort(link)
        self.clock.close()
