"""Shared fixtures: one embedded emulator for the whole run, reset before each test."""

from __future__ import annotations

import gc
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


@pytest.fixture
def emu(_shared_emulator):
    """The shared emulator (rtt 0, TLS 1.3), back at its start options with fresh counters."""
    _shared_emulator.configure(**_emulator.EmulatorOptions(**FAST).live)
    _shared_emulator.reset_stats()
    yield _shared_emulator
    # Leave no connection behind for the next test's counts.
    _shared_emulator.configure(**_emulator.EmulatorOptions(**FAST).live)


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
