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

Server time follows a profile (``start(profile=...)``, live with ``configure(profile=...)``):
``instant``, the default, adds none beyond ``ttfb_ms``/``token_rate``; ``realistic`` paces each
model with an assumed time to first token and tokens per second, with jitter (see ``_profiles``).
Besides text generation it serves text embeddings and vision input (``_embeddings``,
``_multimodal``); ``dashnb.pytest_plugin`` hands it to tests as the ``dashscope_emulator`` fixture.
A test scripts what the next text-generation requests get (``emu.script.tool_call("get_weather",
{"city": "Paris"}).reply("Sunny.")``) and reads what they asked (``emu.journal``); see ``_script``.
Like the service, it refuses what thinking mode does not serve (``_errors.REFUSALS``) unless
started or configured with ``strict=False``.

The network model, per connection: every byte waits rtt/2 each way; a new connection costs one
round trip for TCP, one more for TLS 1.3 (two for TLS 1.2). So a call on a kept-alive connection
takes about 1 RTT plus server time, and a call on a new TLS 1.3 connection about 3 RTT plus
server time plus the handshake's CPU. Held bytes never leave before their due time and, on Linux,
within microseconds after it: the relay wakes 0.3 ms ahead of each deadline and polls for it
through its event loop (``_relay.CLOCK_SPIN``), which costs up to 0.3 ms of CPU per crossing
while bytes are in flight, and nothing while the network is idle. What no emulator removes: a
machine whose cores run code slower after idling makes every call that waits on a network a
little slower than its back-to-back time, on a real network as here (``benchmarks/fidelity.py``
measures it).

Defences. The emulator usually runs inside a notebook kernel, and any local process can connect
to it; each connection costs it three file descriptors. So it guards the kernel's open files. It
listens only where its URLs say (the servers behind the relay take each connection over a socket
pair, never a port of their own), so every connection meets these defences:

- ``connection_limit`` (default: an eighth of the process's open-file limit, 16 to 1024; 128
  under the usual 1024): at the limit, a new connection first closes the connection that has
  given the server nothing to answer the longest (idle, or still sending a request body, counted
  from the end of its head), as nginx reuses keep-alive connections. If every connection is
  being answered, the new one is refused: over plain HTTP with a ``503 ServiceUnavailable``
  in DashScope's error shape and ``Connection: close``; over TLS the connection is closed (a
  TLS client could not read a plain reply). ``stats()`` counts ``evicted_connections`` and
  ``refused_connections``; a refusal logs a warning, at most one line a second.
- ``head_timeout`` (default 30 s): a connection must deliver a complete request head within
  this long of being accepted (TLS handshake included) or of its bytes starting a new request;
  slower ones (slowloris) are closed and counted in ``head_timeouts``.
- ``body_timeout`` (default 30 s) and ``body_min_rate`` (default 1024 bytes a second, judged from
  5 s after the head): a request body must arrive within this long of its head, and at least this
  fast; slower ones (slow POST) are closed and counted in ``body_timeouts``. The key is checked on
  the head: without the right one, the 401 comes before the body is read.
- ``idle_timeout`` (default 300 s): a kept-alive connection idle this long is closed (counted in
  ``idle_closed``, like the ``keepalive_timeout`` of the lessons, which is off by default).
- Out of file descriptors anyway (something else in the process took them), accepting pauses
  for 0.1 s and the longest-idle connection is closed, with one log line a second at most
  instead of asyncio's traceback per failed accept.

``None`` switches a timeout off; ``connection_limit`` takes any whole number >= 1.
"""

from __future__ import annotations

import atexit
import os
import threading
import warnings
import weakref

from . import _emulator
from ._emulator import LOCK, REGISTRY, Emulator
from ._options import TLS_CHOICES, EmulatorOptions, exposure_warning

__all__ = ["TLS_CHOICES", "Emulator", "EmulatorOptions", "running", "start"]


_ALL: weakref.WeakSet[Emulator] = weakref.WeakSet()  # every emulator started, to stop at exit
_REGISTRY_LOCK = LOCK
# Private emulators started with a name: a re-run cell replaces its own instead of adding one.
_NAMED: dict[str, Emulator] = {}


def start(*, shared: bool = True, name: str | None = None, **options) -> Emulator:
    """Start an emulator, or return the one this process already runs with the same options.

    Re-running a cell is safe: the same call gives back the running emulator, its live options
    reset to what the call asks for (a slider may have changed them since).

    ``shared=False`` always starts a new, private emulator that no other ``start()`` call will
    hand out (for code that reconfigures it live or reads its counters); stop it yourself. Give
    it a ``name`` in a notebook cell: starting a private emulator under a name stops the one
    started under that name before, so re-running the cell leaves one emulator, not one per run.

    A shared emulator is used by everyone who asks for it, the default session among them, so
    no one can stop it from under the others: each ``start()`` counts as one use, ``stop()`` (or
    leaving ``with emulator.start():``) releases one, and the server stops when none is left and
    ``dashnb.endpoint()`` does not hand it out (``stop(force=True)`` stops it regardless).
    """
    opts = EmulatorOptions(**options)
    exposed = exposure_warning(opts)
    if exposed:
        warnings.warn(exposed, UserWarning, stacklevel=2)
    if name is not None and shared:
        raise ValueError("name= is for private emulators: pass shared=False with it")
    if not shared:
        if name is None:
            return _launch(opts)
        with _REGISTRY_LOCK:
            previous = _NAMED.pop(name, None)
        if previous is not None and not previous._stopped:
            previous.stop()
        emu = _launch(opts)
        with _REGISTRY_LOCK:
            _NAMED[name] = emu
        return emu
    emu = _shared(opts)
    with _REGISTRY_LOCK:
        emu._holds += 1
    return emu


def _shared(opts: EmulatorOptions) -> Emulator:
    with _REGISTRY_LOCK:
        emu = REGISTRY.get(opts)
        if emu is not None and not emu._stopped:
            if emu.options != opts:
                emu.configure(**opts.live)
            return emu
        emu = _launch(opts)
        emu._shared = True
        REGISTRY[opts] = emu
        return emu


def default() -> Emulator:
    """The shared emulator ``dashnb.endpoint()`` hands out, with default options; pinned: no
    ``stop()`` of a user of it stops it while the default endpoint uses it. If it was stopped
    anyway (``stop(force=True)``), this starts a fresh one."""
    with _REGISTRY_LOCK:
        emu = _shared(EmulatorOptions())
        emu._pinned = True
        return emu


def replacement(emu: Emulator) -> Emulator | None:
    """For a stopped shared emulator, the shared one now running with its options (started
    if need be); None for a private one or one still running (its owner decides)."""
    if not emu._stopped or not emu._shared:
        return None
    if emu._start_options == EmulatorOptions():
        return default()
    with _REGISTRY_LOCK:
        new = _shared(emu._start_options)
        new._holds += 1  # the session that switches to it uses it from now on
        return new


def _launch(opts: EmulatorOptions) -> Emulator:
    emu = Emulator(opts)
    try:
        emu._start()
    except BaseException:
        emu._stopped = True
        emu._remove_dir()
        raise
    _ALL.add(emu)
    return emu


def running() -> list[Emulator]:
    """The emulators this process runs."""
    return [e for e in list(_ALL) if not e._stopped]


def _after_fork_in_child() -> None:
    # The parent's emulators keep serving the parent (a child may still call their URLs), but
    # start() in the child must not hand them out: their loops do not run here. A lock another
    # thread held at the fork would stay held forever.
    global _REGISTRY_LOCK
    _REGISTRY_LOCK = _emulator.LOCK = threading.RLock()
    REGISTRY.clear()
    # Their loops look running here (asyncio records the thread that ran them), so nothing in
    # the child closes them: stop() returns at once in a process that did not start them.


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _stop_all() -> None:
    for emu in running():
        emu.stop(force=True)
