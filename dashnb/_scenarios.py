"""When reuse matters: network scenarios (assumptions) and a model of what reuse saves.

    >>> p = predict_reuse(rtt_ms=170)                 # Europe to Singapore, no server time
    >>> round(p.ratio, 1), round(p.saved_ms)
    (3.0, 343)
    >>> round(predict_reuse(rtt_ms=170, ttfb_ms=700).ratio, 2)   # the same with 0.7 s of server time
    1.39
    >>> round(predict_reuse(rtt_ms=5, ttfb_ms=700).ratio, 2)     # same region: reuse hardly shows
    1.02
    >>> SCENARIOS["europe_to_singapore"].rtt_ms
    170.0

The model: a call on a kept-alive connection costs one round trip plus server time plus a little
CPU (``overhead_ms``); a call on a new connection adds the handshakes' round trips (TCP, then
TLS 1.3: 2 more round trips; TLS 1.2: 3; plain HTTP: 1) and their CPU (``handshake_ms``). So the
saving per new connection is fixed by the network, ``k x RTT + handshake``, while the call it is
compared with grows with server time: reuse matters most for short calls, many small calls, long
round trips and bursts (a burst of new connections also costs TLS CPU and ephemeral ports).

Standard library only and no I/O: the emulator makes exactly these round trips, so notebooks and
tests check measurements against this model (with margins for the CPU terms, which depend on the
machine and its load). The real service adds what the model leaves out: DNS lookups, TCP slow
start, load balancers, and server time that varies from call to call.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from types import MappingProxyType

__all__ = [
    "CALL_OVERHEAD_MS",
    "HANDSHAKE_MS",
    "NEW_CONNECTION_RTTS",
    "SCENARIOS",
    "ReusePrediction",
    "Scenario",
    "predict_reuse",
    "scenario",
]

#: Round trips a new connection costs before its request can go: TCP's, then TLS's
#: (TLS 1.3 needs one, TLS 1.2 two; "off" is plain HTTP).
NEW_CONNECTION_RTTS: Mapping[str, int] = MappingProxyType({"1.3": 2, "1.2": 3, "off": 1})

#: CPU of a new connection (TLS handshake on both ends, a new session object), ms. Seen on the
#: emulator over loopback at rtt 0: per_call minus shared p50, 2-5 ms; slower on a loaded machine.
HANDSHAKE_MS = 3.0

#: CPU of any call (the SDK building the request and parsing the reply, the server's routing), ms.
#: Seen on the emulator at rtt 0 with no server time: shared p50 about 1.5-2 ms.
CALL_OVERHEAD_MS = 2.0


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of milliseconds >= 0, got {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class ReusePrediction:
    """What the model predicts for one call on a new connection (``per_call``) and on a reused
    one (``shared``): latencies in ms, their ratio and the saving. Build with ``predict_reuse``."""

    rtt_ms: float
    ttfb_ms: float = 0.0
    generation_ms: float = 0.0
    tls: str = "1.3"
    handshake_ms: float = HANDSHAKE_MS
    overhead_ms: float = CALL_OVERHEAD_MS

    def __post_init__(self) -> None:
        for name in ("rtt_ms", "ttfb_ms", "generation_ms", "handshake_ms", "overhead_ms"):
            object.__setattr__(self, name, _number(name, getattr(self, name)))
        if self.tls not in NEW_CONNECTION_RTTS:
            raise ValueError(f"tls must be one of {', '.join(NEW_CONNECTION_RTTS)}, got {self.tls!r}")

    @property
    def server_ms(self) -> float:
        """Server time of a call: to the first byte, then generating the rest."""
        return self.ttfb_ms + self.generation_ms

    @property
    def reused_ms(self) -> float:
        """A call on a kept-alive connection: one round trip, server time, per-call CPU."""
        return self.rtt_ms + self.server_ms + self.overhead_ms

    @property
    def saved_ms(self) -> float:
        """What a new connection adds, so what reusing one saves: handshake round trips and CPU."""
        return NEW_CONNECTION_RTTS[self.tls] * self.rtt_ms + (self.handshake_ms if self.tls != "off" else 0.0)

    @property
    def new_connection_ms(self) -> float:
        return self.reused_ms + self.saved_ms

    @property
    def ratio(self) -> float:
        """per_call p50 / shared p50 as the model expects it."""
        return self.new_connection_ms / self.reused_ms

    def ratio_range(self, cpu_factor: float = 4.0) -> tuple[float, float]:
        """The lowest and highest ratio with the CPU terms anywhere from ``1/cpu_factor`` to
        ``cpu_factor`` times their values. The round trips and server time are exact on the
        emulator; the CPU terms depend on the machine and its load, so this is the honest margin
        for checking a measurement (wide at a short round trip, where CPU is most of a call)."""
        if not cpu_factor >= 1:
            raise ValueError(f"cpu_factor must be >= 1, got {cpu_factor!r}")
        # The ratio falls as the per-call CPU grows and rises with the handshake CPU.
        low = dataclasses.replace(
            self, handshake_ms=self.handshake_ms / cpu_factor, overhead_ms=self.overhead_ms * cpu_factor
        )
        high = dataclasses.replace(
            self, handshake_ms=self.handshake_ms * cpu_factor, overhead_ms=self.overhead_ms / cpu_factor
        )
        return low.ratio, high.ratio

    def explains(self, measured_ratio: float, *, cpu_factor: float = 4.0, slack: float = 0.15) -> bool:
        """Whether a measured per_call/shared ratio fits the model: inside ``ratio_range`` widened
        by ``slack`` (a fraction) either way, for timer and scheduling noise."""
        low, high = self.ratio_range(cpu_factor)
        return low / (1 + slack) <= measured_ratio <= high * (1 + slack)

    def __str__(self) -> str:
        tls = "plain HTTP" if self.tls == "off" else f"TLS {self.tls}"
        return (
            f"rtt {self.rtt_ms:g} ms, server {self.server_ms:g} ms, {tls}: new connection "
            f"~{self.new_connection_ms:.0f} ms, reused ~{self.reused_ms:.0f} ms, "
            f"ratio {self.ratio:.2f}, reuse saves ~{self.saved_ms:.0f} ms per call"
        )


def predict_reuse(
    rtt_ms: float,
    ttfb_ms: float = 0.0,
    *,
    tls: str = "1.3",
    generation_ms: float = 0.0,
    handshake_ms: float = HANDSHAKE_MS,
    overhead_ms: float = CALL_OVERHEAD_MS,
) -> ReusePrediction:
    """Predict per_call vs shared latency for one sequential call (no queueing, no jitter).

    ``ttfb_ms``: server time before the first byte; ``generation_ms``: server time after it (a
    streamed reply's tokens; for a non-streamed call all server time is ``ttfb_ms``).
    ``tls``: "1.3", "1.2" or "off". ``.ratio`` is the per_call/shared p50 ratio.

        >>> predict_reuse(40).ratio > predict_reuse(40, 500).ratio > 1
        True
        >>> round(predict_reuse(170, tls="1.2").ratio, 2), round(predict_reuse(170, tls="off").ratio, 2)
        (3.98, 1.99)
    """
    return ReusePrediction(
        rtt_ms=rtt_ms,
        ttfb_ms=ttfb_ms,
        generation_ms=generation_ms,
        tls=tls,
        handshake_ms=handshake_ms,
        overhead_ms=overhead_ms,
    )


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A network (and server time) to emulate. The numbers are ASSUMPTIONS chosen to be typical,
    not measurements of any real route or of DashScope's servers: measure your own route
    (``python -m dashnb bench --real``) before relying on them."""

    name: str
    label: str
    rtt_ms: float
    ttfb_ms: float
    description: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "rtt_ms", _number("rtt_ms", self.rtt_ms))
        object.__setattr__(self, "ttfb_ms", _number("ttfb_ms", self.ttfb_ms))

    def predict(self, tls: str = "1.3") -> ReusePrediction:
        return predict_reuse(self.rtt_ms, self.ttfb_ms, tls=tls)

    def __str__(self) -> str:
        return f"{self.label}: rtt {self.rtt_ms:g} ms, server {self.ttfb_ms:g} ms (assumed). {self.description}"


# A short non-streamed reply from a mid-size model is assumed to take about 0.7 s of server time
# (long answers take seconds, a one-word classification less): the same value in each network
# scenario, so that only the network differs between them.
_CHAT_MS = 700.0

SCENARIOS: Mapping[str, Scenario] = MappingProxyType(
    {
        s.name: s
        for s in (
            Scenario(
                "same_region",
                "same region (~5 ms)",
                5,
                _CHAT_MS,
                "Assumed: the client runs in the service's own cloud region (e.g. a VM in Singapore "
                "calling the intl endpoint); about 5 ms round trip, 0.7 s of server time.",
            ),
            Scenario(
                "across_the_pacific",
                "across the Pacific (~130 ms)",
                130,
                _CHAT_MS,
                "Assumed: a client on the US west coast calling an endpoint in East Asia; about "
                "130 ms round trip, 0.7 s of server time.",
            ),
            Scenario(
                "europe_to_singapore",
                "Europe to Singapore (~170 ms)",
                170,
                _CHAT_MS,
                "Assumed: a client in western Europe calling the intl endpoint in Singapore; about "
                "170 ms round trip, 0.7 s of server time.",
            ),
            Scenario(
                "small_calls_from_europe",
                "small calls, Europe to Singapore",
                170,
                100,
                "Assumed: many small calls (a short classification or extraction, about 0.1 s of "
                "server time) over the same 170 ms route: where reuse saves the most.",
            ),
        )
    }
)


def scenario(name: str) -> Scenario:
    """``SCENARIOS[name]`` with an error that lists the choices."""
    try:
        return SCENARIOS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}") from None
