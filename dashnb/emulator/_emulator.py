"""``Emulator``: one running server (its thread, loop, relay and CA) and its endpoint face.

Start one with ``dashnb.emulator.start()``; this module only defines the class.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import html
import logging
import os
import random
import secrets
import shutil
import socket
import ssl
import threading
import weakref
from typing import Any

from ._listen import _certificate_names, _listen, _url_host
from ._options import FIXED, EmulatorOptions
from ._script import Journal, Script
from ._tempdir import _sweep_stale_dirs, make_dir

__all__ = ["REGISTRY", "Emulator"]

log = logging.getLogger(__name__)

_STARTUP_TIMEOUT = 30.0
_DEFAULTS = EmulatorOptions()

#: Shared emulators by the options they were started with (``start()`` hands these out).
REGISTRY: dict[EmulatorOptions, Emulator] = {}
# Guards REGISTRY and the shared emulators' holds: start() handing one out and stop() deciding
# to stop it must not interleave.
LOCK = threading.RLock()
# Every emulator this process started, for the fork hook below.
_STARTED: weakref.WeakSet[Emulator] = weakref.WeakSet()


def _close_listeners_in_child() -> None:
    """After os.fork(), in the child: close the copies of the parent's listening sockets.

    A forked child holds a copy of every descriptor, and a listening socket stays open while any
    copy does: once the parent stopped its emulator, clients would still connect (the kernel
    queues them) to a socket no one accepts from, and hang. The child never serves them anyway.
    """
    for emu in list(_STARTED):
        emu._close_listeners()


class Emulator:
    """A running emulator. Also an endpoint: sessions and the dashscope SDK can point at it."""

    is_emulator = True

    def __init__(self, options: EmulatorOptions):
        self._options = options
        self._start_options = options
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        # Shared emulators (start(shared=True)) are stopped only when no one uses them any more:
        # _holds counts the start() calls not yet released by stop(), _pinned is set while the
        # default endpoint (dashnb.endpoint()) hands it out.
        self._shared = False
        self._holds = 0
        self._pinned = False
        # The process that runs the server and owns its files: a forked child has neither the
        # thread nor the right to delete the CA the parent's clients still trust.
        self._pid = os.getpid()
        _sweep_stale_dirs()
        # Named with the owning pid and locked while this emulator lives, so that a later
        # process can tell a dead one's leftovers (and leaves a live one's alone).
        self._tmpdir, self._lock_fd = make_dir()
        self._api_key = "emu-" + secrets.token_urlsafe(12)
        try:
            self._ca_path, self._server_contexts = self._make_tls()
        except BaseException:
            self._remove_dir()
            raise
        self._rng = random.Random(options.seed)
        self._backends: dict[str, Any] = {}  # TLS setting -> the relay's Backend
        self._listeners: list[socket.socket] = []  # the relay's (see _close_listeners)
        # What tests script the server to answer next, and what it was asked (see `_script`).
        self._script = Script()
        self._journal = Journal()
        _STARTED.add(self)

    # -- TLS ------------------------------------------------------------------------------

    def _make_tls(self):
        import trustme

        ca = trustme.CA(organization_name="dashnb emulator CA")
        # Every name a client on this machine may use for loopback, and the address it was told
        # to serve on: any URL the emulator hands out verifies; any other name fails verification.
        cert = ca.issue_cert(*_certificate_names(self._options.host))
        ca_path = os.path.join(self._tmpdir, "ca.pem")
        fd = os.open(ca_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(ca.cert_pem.bytes())
        contexts = {}
        for version in ("1.3", "1.2"):
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert.configure_cert(ctx)
            if version == "1.3":
                ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            else:
                ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            # No session tickets: every new connection pays a full handshake, as the lesson says.
            ctx.options |= ssl.OP_NO_TICKET
            ctx.num_tickets = 0
            contexts[version] = ctx
        return ca_path, contexts

    # -- lifecycle ------------------------------------------------------------------------

    def _start(self) -> Emulator:
        ready: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._thread_main, args=(ready,), name="dashnb-emulator", daemon=True)
        self._thread.start()
        ready.result(timeout=_STARTUP_TIMEOUT)
        log.debug("emulator listening on %s", self.url)
        return self

    def _thread_main(self, ready: concurrent.futures.Future) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # report start-up failures to the starting thread
            try:
                # What started before the failure (the relay's listening sockets, its clock)
                # holds sockets and descriptors: close them, or each failed start leaks them.
                loop.run_until_complete(self._undo_start())
            finally:
                loop.close()
                if not ready.done():
                    ready.set_exception(exc)
            return
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._shutdown())
            loop.close()

    async def _serve(self) -> None:
        from ._relay import Backend, Relay
        from ._server import Counters, DashScopeApp

        loop = asyncio.get_running_loop()
        self._counters = Counters()
        self._relay = Relay(loop, lambda: self._options, self._backend_for, self._counters, self._rng)
        self._app = DashScopeApp(
            loop=loop,
            options=lambda: self._options,
            api_key=self._api_key,
            relay=self._relay,
            counters=self._counters,
            script=self._script,
            journal=self._journal,
        )
        # The servers behind the relay, one per TLS setting. They listen nowhere: the relay hands
        # each of them one end of a socket pair per connection (see `_relay`), so the only sockets
        # a client can reach are the ones the URLs name, and every connection meets its defences.
        for name, ctx in (("1.3", self._server_contexts["1.3"]), ("1.2", self._server_contexts["1.2"]), ("off", None)):
            self._backends[name] = Backend(self._app.make_server(tls=ctx is not None), ctx)
        socks = _listen(self._options.host, self._options.port)
        self._listeners += socks
        self._port = socks[0].getsockname()[1]
        await self._relay.defences.listen(socks)

    async def _undo_start(self) -> None:
        relay = getattr(self, "_relay", None)
        if relay is not None:
            relay.close_all()
        self._close_listeners()

    def _backend_for(self, opts: EmulatorOptions):
        if opts.tls_stall and opts.tls != "off":
            return None
        return self._backends[opts.tls]

    async def _shutdown(self) -> None:
        self._relay.close_all()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self, *, force: bool = False) -> None:
        """Stop serving, close every connection, delete the CA file. Safe to call twice.

        A shared emulator (``start(shared=True)``, the default endpoint's) may be in use elsewhere
        (the default session, another cell's ``with``): ``stop()`` then only releases one
        ``start()``, and the server stops when none is left and the default endpoint does not use
        it. ``force=True`` stops it anyway (sessions on it then fail, saying it was stopped).
        """
        if os.getpid() != self._pid:
            log.debug("%s belongs to process %d: a forked child leaves it running", self.label, self._pid)
            return
        with LOCK:
            if self._stopped:
                return
            if self._shared and not force:
                self._holds = max(0, self._holds - 1)
                if self._holds or self._pinned:
                    log.debug(
                        "%s still in use (%d start() calls, default endpoint: %s): not stopped",
                        self.label,
                        self._holds,
                        self._pinned,
                    )
                    return
            self._stopped = True
            if REGISTRY.get(self._start_options) is self:
                del REGISTRY[self._start_options]
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        # The loop closed them on its way out; if it could not (stuck, or it died), the port must
        # still stop taking connections: a stopped emulator that clients hang on is worse.
        if self._thread is None or not self._thread.is_alive():
            self._close_listeners()
        self._remove_dir()

    def _remove_dir(self) -> None:
        shutil.rmtree(self._tmpdir, ignore_errors=True)
        fd, self._lock_fd = self._lock_fd, -1
        if fd >= 0:
            os.close(fd)  # the lock goes with it: removed first, so no sweep races the removal

    def _close_listeners(self) -> None:
        for sock in self._listeners:
            sock.close()  # a no-op on one already closed

    @property
    def stopped(self) -> bool:
        """True once the server has stopped (calls to it can no longer succeed)."""
        return self._stopped

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- calling into the loop ------------------------------------------------------------

    def _call(self, fn, *args):
        """Run fn on the emulator's loop and return its result (directly if already there)."""
        if self._stopped:
            raise RuntimeError("this emulator has been stopped; start a new one with dashnb.emulator.start()")
        if os.getpid() != self._pid:
            raise RuntimeError(
                f"{self.label} runs in process {self._pid}, and this is a forked child of it ({os.getpid()}), "
                "where its event loop does not run: calls to its URL over new connections work, but its "
                "stats and settings are the parent's; start an emulator of this process with dashnb.emulator.start()"
            )
        try:
            if asyncio.get_running_loop() is self._loop:
                return fn(*args)
        except RuntimeError:
            pass
        loop = self._loop
        if loop is None:  # pragma: no cover - _start sets it before returning the handle
            raise RuntimeError("this emulator has not started")
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run():
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # pragma: no cover - handed to the caller
                fut.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return fut.result(timeout=10)

    # -- public surface -------------------------------------------------------------------

    @property
    def options(self) -> EmulatorOptions:
        return self._options

    def configure(self, **changes) -> Emulator:
        """Change latency and behaviour live. Unknown or fixed options raise ValueError."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(EmulatorOptions)}
        if unknown:
            raise ValueError(f"unknown emulator option(s): {', '.join(sorted(unknown))}")
        fixed = {k for k in changes if k in FIXED and changes[k] != getattr(self._options, k)}
        if fixed:
            raise ValueError(f"{', '.join(sorted(fixed))} cannot change while running; start another emulator")
        new = dataclasses.replace(self._options, **changes)  # validates

        def apply():
            old = self._options
            self._options = new
            if new.seed != old.seed:
                self._rng.seed(new.seed)
            if new.error_rate != old.error_rate or new.rate_limit != old.rate_limit:
                self._app.reset_sequences()
            if new.keepalive_timeout != old.keepalive_timeout:
                self._relay.rearm_all()
            if new.max_connections != old.max_connections:
                self._relay.admit_waiting()

        self._call(apply)
        return self

    def stats(self) -> dict:
        """Server-side counts since the last reset (open/queued connections are live gauges)."""
        return self._call(lambda: self._counters.snapshot(self._relay.links.values()))

    def reset_stats(self) -> None:
        def reset():
            self._counters.reset()
            for link in self._relay.links.values():
                link.requests = 0
            self._app.reset_sequences()

        self._call(reset)

    @property
    def script(self) -> Script:
        """The turns this emulator answers text-generation requests with next, before its own replies:
        ``emu.script.tool_call("get_weather", {"city": "Paris"}).reply("Sunny.")``. Shared by every
        user of a shared emulator; the pytest fixture clears it before each test."""
        return self._script

    @property
    def journal(self) -> Journal:
        """The text-generation requests this emulator received (the latest 1000, and 32 MiB of bodies:
        ``_script.JOURNAL_MAXLEN``, ``JOURNAL_MAX_BYTES``), with their protocol, model, messages,
        tools, parameters and headers (never the key). The pytest fixture clears it before each test."""
        return self._journal

    @property
    def host(self) -> str:
        return self._options.host

    @property
    def port(self) -> int:
        return self._port

    @property
    def scheme(self) -> str:
        return "http" if self._options.tls == "off" else "https"

    @property
    def url(self) -> str:
        host = _url_host(self.host)
        host = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{host}:{self._port}"

    @property
    def base_url(self) -> str:
        return self.url + "/api/v1"

    @property
    def compatible_base_url(self) -> str:
        return self.url + "/compatible-mode/v1"

    @property
    def api_key(self) -> str:
        return self._api_key

    @property
    def ca_path(self) -> str:
        return self._ca_path

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this emulator's CA and nothing else."""
        return ssl.create_default_context(cafile=self._ca_path)

    @property
    def label(self) -> str:
        o = self._options
        tls = "plain HTTP" if o.tls == "off" else f"TLS {o.tls}"
        return f"emulator {_url_host(self.host)}:{self._port} ({tls}, rtt {o.rtt_ms:g} ms)"

    def apply_to_sdk(self) -> None:
        """Point the dashscope SDK's module-level settings at this emulator."""
        import dashscope

        dashscope.base_http_api_url = self.base_url
        dashscope.api_key = self._api_key

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running"
        changed = {k: v for k, v in self._options.live.items() if v != getattr(_DEFAULTS, k)}
        extra = "".join(f", {k}={v!r}" for k, v in changed.items())
        return f"<Emulator {state} {self.url} tls={self._options.tls} rtt_ms={self._options.rtt_ms:g}{extra}>"

    def _repr_html_(self) -> str:
        o = self._options
        rows = [
            ("state", "stopped" if self._stopped else "running"),
            ("native base URL", self.base_url),
            ("compatible base URL", self.compatible_base_url),
            ("TLS", "off (plain HTTP)" if o.tls == "off" else o.tls),
            ("round trip", f"{o.rtt_ms:g} ms" + (f" ± {o.jitter_ms:g} ms" if o.jitter_ms else "")),
            ("CA to trust", self._ca_path),
            ("API key", "generated test key (see .api_key)"),
        ]
        rows += [
            (k, repr(v))
            for k, v in o.live.items()
            if v != getattr(_DEFAULTS, k) and k not in ("rtt_ms", "tls", "jitter_ms")
        ]
        if not self._stopped:
            s = self.stats()
            rows.append(
                (
                    "seen so far",
                    f"{s['tcp_connections']} TCP connections, {s['tls_handshakes']} TLS handshakes, "
                    f"{s['requests']} requests, {s['open_connections']} open (peak {s['peak_open_connections']})",
                )
            )
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
            for k, v in rows
        )
        return f"<table><caption style='text-align:left'><b>DashScope emulator</b></caption>{body}</table>"


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_close_listeners_in_child)
