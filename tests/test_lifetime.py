"""Nothing a notebook re-runs or shares leaks or breaks: the lab panel, the shared emulator.

The shared-emulator cases run in a child interpreter: they stop and replace the process's
default emulator, which the rest of the test run must not see.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


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
