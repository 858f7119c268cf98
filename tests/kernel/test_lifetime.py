"""Nothing a notebook re-runs or shares leaks or breaks: the lab panel, the shared emulator.

The shared-emulator cases run in a child interpreter: they stop and replace the process's
default emulator, which the rest of the test run must not see.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def _child(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_shared_emulator_cannot_be_stopped_from_under_the_default_session():
    out = _child("""
        import dashnb
        from dashnb import emulator

        def ok():
            dashnb.ask("hi")  # raises AskError when nothing answers
            return True

        s = dashnb.session()
        ep = s.endpoint
        assert ep is dashnb.endpoint() and ep.is_emulator and ok()
        with emulator.start() as same:  # a with on the emulator the default session uses
            assert same is ep
        assert not ep.stopped and ok()
        ep.stop()  # a handle this code did not start
        assert not ep.stopped and ok()
        emulator.start().stop()
        assert not ep.stopped and ok()
        print("held")

        # Nobody else uses these: stop() and the end of a with still stop them.
        with emulator.start(rtt_ms=5) as alone:
            pass
        with emulator.start(shared=False) as private:
            pass
        assert alone.stopped and private.stopped
        gone = dashnb.session(endpoint=private, name="explicit")
        try:
            dashnb.ask("hi", session=gone)
        except dashnb.AskError as exc:
            print("explicit:", exc)

        # Stopped anyway: the default session recovers on a fresh shared emulator.
        ep.stop(force=True)
        assert ep.stopped and ok()
        assert dashnb.session().endpoint is dashnb.endpoint() is not ep
        assert not dashnb.endpoint().stopped
        print("recovered", len(emulator.running()))
    """)
    assert "held" in out
    assert "has been stopped" in out and "Check the network" not in out and "CA certificate" not in out
    assert "recovered 1" in out


LEVEL = """
import os, threading
import dashnb.emulator
await lab.model.wait()
print("LEVEL", threading.active_count(), len(os.listdir("/proc/self/fd")), len(dashnb.emulator.running()),
      lab.model.measurements, repr(lab.model.error))
"""


def _level(out: str) -> tuple[int, int, int]:
    line = next(line for line in out.splitlines() if line.startswith("LEVEL"))
    _, threads, fds, emulators, measurements, error = line.split(maxsplit=5)
    assert int(measurements) >= 1 and error == "''", out  # each panel really measured
    return int(threads), int(fds), int(emulators)


@pytest.mark.kernel
@pytest.mark.slow
def test_rerunning_the_lab_cell_twenty_times_leaks_nothing(tmp_path):
    pytest.importorskip("jupyter_client")
    from _kernels import run_cell, running_kernel

    with running_kernel(tmp_path) as (_km, kc):
        run_cell(kc, "import dashnb", 120)
        out = run_cell(kc, "lab = dashnb.lab(calls=2)\n" + LEVEL, 120)
        once = _level(out)
        assert once[2] == 3, out  # the lab's own emulators: per_call, shared, async side by side
        for i in range(20):
            # Half the re-runs come while the previous panel is still measuring.
            wait = "await lab.model.wait()" if i % 2 else ""
            out = run_cell(kc, f"lab = dashnb.lab(calls=2)\n{wait}", 120)
            assert "Error" not in out, out
        out = run_cell(kc, LEVEL, 120)
        threads, fds, emulators = _level(out)
    print("one run:", once, "after 20 re-runs:", (threads, fds, emulators))
    assert emulators == once[2], (once, out)
    # Before the fix each re-run added 3 emulators and 6 threads; a worker pool may start a
    # thread or two more or fewer depending on timing, which is not a leak.
    assert threads <= once[0] + 2, (once, out)
    assert fds <= once[1] + 10, (once, out)


def test_a_named_private_emulator_replaces_the_one_started_under_its_name():
    # What a re-run notebook cell does: the same start() again. Without a name each run adds an
    # emulator (its thread keeps it alive); with one, the previous one is stopped.
    from dashnb import emulator

    before = len(emulator.running())
    first = emulator.start(shared=False, name="rerun-test")
    second = emulator.start(shared=False, name="rerun-test")
    try:
        assert first.stopped and not second.stopped
        assert len(emulator.running()) == before + 1
        other = emulator.start(shared=False, name="another")
        assert not second.stopped and len(emulator.running()) == before + 2
        other.stop()
    finally:
        second.stop()
    assert len(emulator.running()) == before
    with pytest.raises(ValueError, match="shared=False"):
        emulator.start(name="rerun-test")
