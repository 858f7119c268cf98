"""Shared fixtures: one embedded emulator for the whole run, reset before each test."""

from __future__ import annotations

import gc
import os
import sys
import time

import pytest
import requests
from _pytest.logging import caplog_records_key

from dashnb import emulator as _emulator

# Tests that set DASHSCOPE_API_KEY mean the real-service path; a DASHNB_OFFLINE exported in the
# shell that runs them (a presenter's) would send those to the emulator. Tests of the switch set it.
os.environ.pop("DASHNB_OFFLINE", None)

# The dashscope_emulator fixture's plugin is an entry point of the installed package; naming it here
# too lets a checkout run before it is (re)installed (the entry point has the module's name, so it
# never loads twice). pytester runs the README's example test.
pytest_plugins = ["dashnb.pytest_plugin", "pytester"]

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


def _wait_closed(emu, seconds: float, floor: int = 0) -> int:
    """Open connections above ``floor`` left after up to ``seconds`` (closes cross the relay
    asynchronously, later on a busy machine: the wait ends as soon as they are in)."""
    deadline = time.monotonic() + seconds
    while (n := emu.stats()["open_connections"] - floor) > 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    return max(n, 0)


@pytest.fixture
def emu(_shared_emulator, request):
    """The shared emulator (rtt 0, TLS 1.3), back at its start options with fresh counters and no
    connection left open. A test that leaves one open (a session it never closed) errors in its
    own teardown, so the leak is reported where it happened instead of skewing the next test."""
    _shared_emulator.configure(**_emulator.EmulatorOptions(**FAST).live)
    _close_sdk_shared_sessions()
    # A leak is reported by the test that caused it (below); here only wait for closes in flight.
    # What is still open then was left by an earlier test, already reported: not this test's.
    already_open = _wait_closed(_shared_emulator, 5.0)
    _shared_emulator.reset_stats()
    _shared_emulator.script.clear()
    _shared_emulator.journal.clear()
    yield _shared_emulator
    _shared_emulator.configure(**_emulator.EmulatorOptions(**FAST).live)
    _close_sdk_shared_sessions()
    # A reply that broke mid-body can leave its connection open until the exception that reports
    # it is garbage collected (seen through the SDK on the malformed-reply tests), and pytest keeps
    # this test's log records, whose tracebacks reach that connection, until the run ends. Drop
    # them (the call's report already has its log section) and collect: what stays open leaked.
    for records in request.node.stash.get(caplog_records_key, {}).values():
        records.clear()
    gc.collect()
    left = _wait_closed(_shared_emulator, 5.0, floor=already_open)
    if left:
        pytest.fail(f"this test left {left} connection(s) to the shared emulator open: close what it opened")


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
def make_session(emu):
    """dashnb sessions with fresh names (so counts start at zero), all closed when the test ends.

    It depends on ``emu`` so that these sessions are closed before ``emu`` checks for leaks."""
    from dashnb._session import manager as _session

    made = []

    def make(config=None, *, endpoint, name=None):
        s = _session.session(config, endpoint=endpoint, name=name or f"test-{len(made)}-{time.monotonic_ns()}")
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()
    gc.collect()


@pytest.fixture
def session(emu):
    """A requests.Session trusting exactly the emulator's CA (trust_env off: REQUESTS_CA_BUNDLE may be set)."""
    with requests.Session() as s:
        s.trust_env = False
        s.verify = emu.ca_path
        yield s
