"""What the emulator's server saw: connections, handshakes, requests, statuses, its defences.

The relay and the server update a `Counters` on the emulator's loop; ``Emulator.stats()`` and the
``/_emulator/stats`` route read it through `snapshot`.
"""

from __future__ import annotations

import collections


class Counters:
    """What the server saw. Touched only on the emulator's loop; read through `snapshot`."""

    def __init__(self):
        # Gauges describe the present, so a reset keeps them; the rest counts from the last reset.
        self.open_connections = 0
        self.queued_connections = 0
        self.epoch = 0
        self.reset()

    def reset(self) -> None:
        self.epoch += 1
        self.tcp_connections = 0
        self.tls_handshakes = 0
        self.requests = 0
        self.peak_open_connections = self.open_connections
        self.idle_closed = 0
        # The emulator's defences (see the package docstring): connections turned away at the
        # connection limit, closed to make room for a new one, or closed for a head too slow.
        self.refused = 0
        self.evicted = 0
        self.head_timeouts = 0
        self.body_timeouts = 0  # bodies past body_timeout or slower than body_min_rate
        self.bytes_in = 0
        self.bytes_out = 0
        self.statuses: collections.Counter[str] = collections.Counter()
        self.closed_requests_per_connection: list[int] = []

    # called by the relay
    def tcp_accepted(self, link) -> None:
        self.tcp_connections += 1
        link.epoch = self.epoch

    def opened(self, link) -> None:
        self.open_connections += 1
        if self.open_connections > self.peak_open_connections:
            self.peak_open_connections = self.open_connections

    def closed(self, link) -> None:
        self.open_connections -= 1
        if self._counts(link):
            self.closed_requests_per_connection.append(link.requests)

    def closed_unadmitted(self, link) -> None:
        if self._counts(link):
            self.closed_requests_per_connection.append(0)

    def _counts(self, link) -> bool:
        # A connection opened before the last reset belongs to this count only if it served since.
        return link.epoch == self.epoch or link.requests > 0

    def snapshot(self, open_links) -> dict:
        per_connection = list(self.closed_requests_per_connection)
        per_connection += [link.requests for link in open_links if link.admitted and self._counts(link)]
        return {
            "tcp_connections": self.tcp_connections,
            "tls_handshakes": self.tls_handshakes,
            "requests": self.requests,
            "open_connections": self.open_connections,
            "peak_open_connections": self.peak_open_connections,
            "queued_connections": self.queued_connections,
            "idle_closed": self.idle_closed,
            "refused_connections": self.refused,
            "evicted_connections": self.evicted,
            "head_timeouts": self.head_timeouts,
            "body_timeouts": self.body_timeouts,
            "requests_per_connection": per_connection,
            "statuses": dict(sorted(self.statuses.items())),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
        }
