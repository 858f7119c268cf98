"""Measuring the SDK's own session never touches the process environment.

``sdk_default`` calls without ``session=``, on the SDK's module-level requests.Session. It
used to trust the emulator's CA by setting ``REQUESTS_CA_BUNDLE`` for each block and restoring
it after: two runs at once restored each other's value, and in 2 of 20 trials left the variable
naming a CA file already deleted, which broke every later call in the process that honours it.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from dashnb import _measure, emulator

_VARS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")


class _EnvWatcher:
    """Samples the CA variables from another thread: every value they took while it ran."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str | None]] = set()
        self.missing: set[str] = set()  # values naming a file that was not there
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for var in _VARS:
                value = os.environ.get(var)
                self.seen.add((var, value))
                if value and not os.path.exists(value):
                    self.missing.add(value)
            time.sleep(0.0005)

    def __enter__(self) -> _EnvWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _two_at_once(mode: str, errors: list[str]) -> None:
    def run() -> None:
        own = emulator.start(shared=False, rtt_ms=0)  # a CA of its own, deleted when it stops
        try:
            r = _measure.compare([mode], calls=4, endpoint=own, progress=False, warmup=False)
            s = r[mode].summary
            if s.errors or s.calls != 4:
                errors.append(f"{s.calls} calls, {s.errors} errors")
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            own.stop()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.mark.slow
def test_two_concurrent_sdk_default_runs_never_change_the_environment(emu):
    before = {var: os.environ.get(var) for var in _VARS}
    errors: list[str] = []
    with _EnvWatcher() as watcher:
        for _ in range(20):
            _two_at_once("sdk_default", errors)
    after = {var: os.environ.get(var) for var in _VARS}
    assert after == before
    assert watcher.seen == set(before.items()), "the environment changed during the runs"
    assert not watcher.missing
    assert errors == []  # and both runs still trusted their own emulator


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["openai_default", "v2_async_default"])
def test_concurrent_httpx_default_runs_always_restore_ssl_cert_file(emu, mode):
    # The SDKs' own httpx clients read their CA from SSL_CERT_FILE when they are built, and
    # nothing else: the mode sets it for that moment. Before the lock, two runs at once left it
    # naming a deleted CA in 4 of 20 trials (openai_default), 2 of 20 (v2_async_default).
    before = {var: os.environ.get(var) for var in _VARS}
    errors: list[str] = []
    with _EnvWatcher() as watcher:
        for _ in range(20):
            _two_at_once(mode, errors)
    assert {var: os.environ.get(var) for var in _VARS} == before
    assert not watcher.missing  # never named a file that was gone
    assert errors == []


@pytest.mark.slow
def test_httpx_default_modes_leave_the_environment_alone_while_they_run(emu):
    # The *_default modes used to set SSL_CERT_FILE process-wide while they built each SDK client:
    # another thread reading it meanwhile (here, the watcher) saw the emulator's CA path. Each
    # client now gets the CA itself. Frequent thread switches, so the watcher runs inside a build.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    modes = ["v2_default", "v2_async_default", "openai_default", "openai_async_stream_default"]
    before = {var: os.environ.get(var) for var in _VARS}
    try:
        with _EnvWatcher() as watcher:
            for _ in range(3):
                r = _measure.compare(modes, calls=2, endpoint=emu, progress=False, warmup=False)
                assert [r[m].summary.errors for m in modes] == [0] * len(modes)  # and they trusted it
    finally:
        sys.setswitchinterval(interval)
    assert watcher.seen == set(before.items()), "the environment changed while compare() ran"
