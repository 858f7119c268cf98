"""An embedded DashScope-compatible HTTPS server with the round-trip time of a real network.

    >>> from dashnb import emulator
    >>> emu = emulator.start(rtt_ms=40)          # doctest: +SKIP
    >>> emu.base_url                              # doctest: +SKIP
    'https://127.0.0.1:40123/api/v1'
    >>> emu.configure(rtt_ms=100)                 # live, no restart   # doctest: +SKIP
    >>> emu.stats()["tcp_connections"]            # doctest: +SKIP

It runs on its own event loop in a background thread, so a blocking call in a notebook cell can
never starve it, and it listens on 127.0.0.1 only unless told otherwise. The certificate comes
from a CA made for this process (trustme) and names localhost, 127.0.0.1, ::1 and the host it
serves on; clients trust that CA explicitly: `ca_path` for requests, `ssl_context()` for aiohttp.
Nothing here disables verification.

The network model, per connection: every byte waits rtt/2 each way; a new connection costs one
round trip for TCP, one more for TLS 1.3 (two for TLS 1.2). So a call on a kept-alive connection
takes about 1 RTT plus server time, and a call on a new TLS 1.3 connection about 3 RTT plus
server time plus the handshake's CPU.
"""

from __future__ import annotations

import atexit
import shutil
import threading
import warnings
import weakref

from ._emulator import REGISTRY, Emulator
from ._options import TLS_CHOICES, EmulatorOptions

__all__ = ["TLS_CHOICES", "Emulator", "EmulatorOptions", "running", "start"]


_ALL: weakref.WeakSet[Emulator] = weakref.WeakSet()  # every emulator started, to stop at exit
_REGISTRY_LOCK = threading.Lock()


def start(*, shared: bool = True, **options) -> Emulator:
    """Start an emulator, or return the one this process already runs with the same options.

    Re-running a cell is safe: the same call gives back the running emulator, its live options
    reset to what the call asks for (a slider may have changed them since).

    ``shared=False`` always starts a new, private emulator that no other ``start()`` call will
    hand out (for code that reconfigures it live or reads its counters); stop it yourself.
    """
    opts = EmulatorOptions(**options)
    if opts.public:
        warnings.warn(
            f"the emulator listens on {opts.host}, reachable from your network; its test key and stats are not secret",
            UserWarning,
            stacklevel=2,
        )
    if not shared:
        return _launch(opts)
    with _REGISTRY_LOCK:
        emu = REGISTRY.get(opts)
        if emu is not None and not emu._stopped:
            if emu.options != opts:
                emu.configure(**opts.live)
            return emu
        emu = _launch(opts)
        REGISTRY[opts] = emu
        return emu


def _launch(opts: EmulatorOptions) -> Emulator:
    emu = Emulator(opts)
    try:
        emu._start()
    except BaseException:
        emu._stopped = True
        shutil.rmtree(emu._tmpdir, ignore_errors=True)
        raise
    _ALL.add(emu)
    return emu


def running() -> list[Emulator]:
    """The emulators this process runs."""
    return [e for e in list(_ALL) if not e._stopped]


@atexit.register
def _stop_all() -> None:
    for emu in running():
        emu.stop()
