"""Shared fixtures: one embedded emulator for the whole run, reset before each test."""

from __future__ import annotations

import gc
import sys
import time

import pytest

from dashnb import emulator as _emulator

# The shared emulator runs with no added latency so tests are quick; tests about timing
# start their own with `emulator_factory(rtt_ms=...)`.
FAST = {"rtt_ms": 0.0}


@pytest.fixture(scope="session")
def _shared_emulator():
    emu = _emulator.start(**FAST)
    yield emu
    emu.stop()


def _close_sdk_shared_sessions() -> None:
    # The SDK keeps a module-level requests.Session (and its pooled connections) for calls made
    # without session=; close it so one test's connections never show in the next one's gauges.
    http_request = sys.modules.get("dashscope.api_entities.http_request")
    if http_request is not None:
        http_request.close_shared_sync_session()


@pytest.fixture
def emu(_shared_emulator):
    """The shared emulator (rtt 0, TLS 1.3), back at its start options with fresh counters and,
    as far as clients allow, no connection left open by an earlier test."""
    _shared_emulator.configure(**_emulator.EmulatorOptions(**FAST).live)
    _close_sdk_shared_sessions()
    deadline = time.monotonic() + 2.0
    while _shared_emulator.stats()["open_connections"] and time.monotonic() < deadline:
        time.sleep(0.01)  # closes cross the relay asynchronously
    _shared_emulator.reset_stats()
    yield _shared_emulator
    _shared_emulator.configure(**_emulator.EmulatorOptions(**FAST).live)
    _close_sdk_shared_sessions()


@pytest.fixture
def emulator_factory():
    """Start emulators with custom options; each is stopped when the test ends."""
    started = []

    def make(**options):
        emu = _emulator.start(shared=False, **options)
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()


@pytest.fixture
def make_session():
    """dashnb sessions with fresh names (so counts start at zero), all closed when the test ends."""
    from dashnb import _session

    made = []

    def make(config=None, *, endpoint, name=None):
        s = _session.session(config, endpoint=endpoint, name=name or f"test-{len(made)}-{time.monotonic_ns()}")
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()
    gc.collect()
