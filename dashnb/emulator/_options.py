"""The emulator's settings: a frozen dataclass that checks itself.

    >>> EmulatorOptions(rtt_ms=40, tls="1.2").live["tls"]
    '1.2'
    >>> EmulatorOptions(tls="1.1")
    Traceback (most recent call last):
    ...
    ValueError: emulator option tls must be one of 1.3, 1.2, off, got '1.1'

Standard library only, so the CLI and the lab can name the choices without starting anything.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from dataclasses import dataclass

from ._limits import MAX_REPLY_TOKENS
from ._profiles import PROFILE_CHOICES

__all__ = [
    "DEFAULT_BODY_MIN_RATE",
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_HEAD_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "FIXED",
    "PROFILE_CHOICES",
    "TLS_CHOICES",
    "EmulatorOptions",
    "auto_connection_limit",
    "exposure_warning",
    "is_loopback",
]

#: TLS versions the emulator speaks, or "off" for plain HTTP.
TLS_CHOICES = ("1.3", "1.2", "off")
#: Seconds a connection may take, from being accepted or from the end of its last request, to send
#: a complete request head (TLS handshake included): slower ones are closed (slowloris).
DEFAULT_HEAD_TIMEOUT = 30.0
#: Seconds a request's body may take to arrive after its head: slower ones are closed (slow POST).
DEFAULT_BODY_TIMEOUT = 30.0
#: Bytes a second a body must average (as they cross the network, TLS records included), judged
#: from a few seconds after its head: a trickle is closed long before the deadline.
DEFAULT_BODY_MIN_RATE = 1024.0
#: Seconds a kept-alive connection may stay idle before the emulator closes it.
DEFAULT_IDLE_TIMEOUT = 300.0
_MALFORMED = (None, "truncated_body", "bad_sse", "wrong_content_type", "no_output")


@dataclass(frozen=True)
class EmulatorOptions:
    """How the emulated network and server behave. All but host/port/public change live."""

    rtt_ms: float = 40.0
    jitter_ms: float = 0.0
    tls: str = "1.3"
    # Server time: the profile's per-model pace ("instant": none; "realistic": see _profiles),
    # plus ttfb_ms and uniform(0, ttfb_jitter_ms) per request; token_rate, if set, paces a stream.
    profile: str = "instant"
    ttfb_ms: float = 0.0
    ttfb_jitter_ms: float = 0.0
    token_rate: float = 0.0
    keepalive_timeout: float | None = None
    connection_close: bool = False
    rate_limit: float | None = None
    error_rate: float = 0.0
    error_status: int = 500
    stall_before_headers: float = 0.0
    stall_mid_stream: float = 0.0
    tls_stall: bool = False
    max_connections: int | None = None
    # Defences of the process the emulator runs in (a kernel, usually) against idle or hostile
    # local clients; see the emulator package's docstring, "Defences".
    connection_limit: int | None = None  # None: auto_connection_limit(), a share of the open-file limit
    head_timeout: float | None = DEFAULT_HEAD_TIMEOUT
    body_timeout: float | None = DEFAULT_BODY_TIMEOUT
    body_min_rate: float | None = DEFAULT_BODY_MIN_RATE
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT
    reply_tokens: int = 16
    malformed: str | None = None
    # Refuse what the service refuses in thinking mode (see `_errors.REFUSALS`); False keeps the
    # leniency of earlier versions for tests written against it.
    strict: bool = True
    seed: int = 0
    host: str = "127.0.0.1"
    port: int = 0
    public: bool = False

    def __post_init__(self):
        def number(name, *, allow_none=False, allow_inf=False, positive=False):
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise ValueError(f"emulator option {name} must be a number, got {value!r}")
            if math.isinf(value) and not allow_inf:
                raise ValueError(f"emulator option {name} must be finite, got {value!r}")
            if value < 0 or (positive and value == 0):
                raise ValueError(f"emulator option {name} must be {'> 0' if positive else '>= 0'}, got {value!r}")
            object.__setattr__(self, name, float(value))

        for name in ("rtt_ms", "jitter_ms", "ttfb_ms", "ttfb_jitter_ms", "token_rate", "error_rate"):
            number(name)
        for name in ("stall_before_headers", "stall_mid_stream"):
            number(name, allow_inf=True)
        number("keepalive_timeout", allow_none=True, positive=True)
        number("head_timeout", allow_none=True, positive=True)
        number("body_timeout", allow_none=True, positive=True)
        number("body_min_rate", allow_none=True, positive=True)
        number("idle_timeout", allow_none=True, positive=True)
        number("rate_limit", allow_none=True, positive=True)
        if self.error_rate > 1:
            raise ValueError(f"emulator option error_rate is a fraction from 0 to 1, got {self.error_rate!r}")
        if self.tls not in TLS_CHOICES:
            raise ValueError(f"emulator option tls must be one of {', '.join(TLS_CHOICES)}, got {self.tls!r}")
        if self.profile not in PROFILE_CHOICES:
            raise ValueError(
                f"emulator option profile must be one of {', '.join(PROFILE_CHOICES)}, got {self.profile!r}"
            )
        if self.error_status not in (500, 503):
            raise ValueError(f"emulator option error_status must be 500 or 503, got {self.error_status!r}")
        if self.malformed not in _MALFORMED:
            raise ValueError(f"emulator option malformed must be one of {_MALFORMED}, got {self.malformed!r}")
        for name in ("max_connections", "connection_limit", "reply_tokens"):
            value = getattr(self, name)
            if name in ("max_connections", "connection_limit") and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"emulator option {name} must be a whole number >= 1, got {value!r}")
        if self.reply_tokens > MAX_REPLY_TOKENS:
            raise ValueError(
                f"emulator option reply_tokens must be at most {MAX_REPLY_TOKENS} (the longest reply the emulator "
                f"composes), got {self.reply_tokens!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"emulator option seed must be a whole number, got {self.seed!r}")
        for name in ("connection_close", "tls_stall", "public", "strict"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"emulator option {name} must be True or False, got {getattr(self, name)!r}")
        if not isinstance(self.port, int) or not 0 <= self.port < 65536:
            raise ValueError(f"emulator option port must be 0 (any free port) or a port number, got {self.port!r}")
        if not is_loopback(self.host) and not self.public:
            raise ValueError(
                f"the emulator binds to loopback only; {self.host!r} is not a loopback address. "
                "Pass public=True (CLI: --public) if you really mean to expose it to your network."
            )

    @property
    def live(self) -> dict:
        """The options `configure()` may change, as a dict."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in FIXED}


#: Options fixed for an emulator's life (``configure()`` refuses to change them).
FIXED = ("host", "port", "public")


def auto_connection_limit() -> int:
    """The default ``connection_limit``: an eighth of this process's open-file limit, 16 to 1024.

    Each connection costs the emulator three file descriptors (the client's socket and both ends
    of its hop to the server behind the relay), so this keeps the emulator to about 3/8 of what
    the process may open: a kernel running three emulators still has files to spare.
    """
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):  # no resource module (Windows)
        return 64
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return 1024
    return max(16, min(1024, soft // 8))


def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches: ``localhost``, 127.0.0.0/8, ::1, and their
    IPv4-mapped form (``::ffff:127.0.0.1``), which a dual-stack ``::`` socket reports for IPv4 peers."""
    if host == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    return (mapped or addr).is_loopback


def exposure_warning(options: EmulatorOptions) -> str | None:
    """The warning an emulator listening beyond this machine deserves, or None on loopback.

    ``public=True`` only permits a non-loopback host: with a loopback one nothing is exposed.
    """
    if is_loopback(options.host):
        return None
    where = options.host or "every address"
    return f"the emulator listens on {where}, reachable from your network; its test key and stats are not secret"
