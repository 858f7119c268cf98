"""Results are not lost: a failed write leaves the previous file whole, a `bench` stopped by SIGINT
or SIGTERM prints and saves what it measured, and a run whose emulator CA is deleted stops with
a clear error instead of hanging.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import queue
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dashnb import LabModel, _measure
from dashnb._run import run

REPO = Path(__file__).resolve().parents[2]
PREVIOUS = {"settings": {"note": "the previous run"}, "modes": {}}


@contextlib.contextmanager
def _file_size_limit(size: int):
    """Writes past ``size`` bytes fail (EFBIG, as a full disk fails with ENOSPC) in this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write; do not kill the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)


def test_lab_save_that_fails_leaves_the_previous_file_whole(tmp_path):
    m = LabModel(rtt_ms=0, calls=3, modes=("per_call", "shared"))
    try:
        run(m.measure())
    finally:
        m.close()
    target = tmp_path / "lab.json"
    target.write_text(json.dumps(PREVIOUS), encoding="utf-8")
    assert len(m.to_json()) > 2048
    with _file_size_limit(2048), pytest.raises(OSError):
        m.save(target)
    assert json.loads(target.read_text(encoding="utf-8")) == PREVIOUS
    assert os.listdir(tmp_path) == ["lab.json"]  # no temporary file left behind
    m.save(target)  # and with room it is replaced
    assert json.loads(target.read_text(encoding="utf-8"))["lab"]["calls"] == 3


_FULL_DISK_BENCH = """
import resource, signal, sys
from dashnb.__main__ import main
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (3000, resource.RLIM_INFINITY))
sys.exit(main(sys.argv[1:]))
"""
_MANY_MODES = "per_call,shared,threads,async,async_per_call,sdk_default,v2_dashnb,openai_dashnb"


def _env(tmp_path: Path) -> dict[str, str]:
    # TMPDIR: the bench's emulator keeps its CA under tmp_path, where these tests can find it.
    return {**os.environ, "TMPDIR": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}


@pytest.mark.slow
def test_bench_json_on_a_full_disk_keeps_the_previous_file(tmp_path):
    prev = tmp_path / "prev.json"
    prev.write_text(json.dumps(PREVIOUS), encoding="utf-8")
    args = ["--rtt-ms", "0", "--calls", "2", "--concurrency", "1", "--modes", _MANY_MODES, "--no-progress"]
    p = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_BENCH, "bench", *args, "--json", str(prev)],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(tmp_path),
        cwd=REPO,
    )
    assert p.returncode == 1, p.stderr
    assert f"cannot write {prev}" in p.stderr and "is unchanged" in p.stderr
    assert json.loads(prev.read_text(encoding="utf-8")) == PREVIOUS
    assert '"modes"' in p.stdout  # the results are not lost: the JSON went to stdout instead
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []


class _Bench:
    """``python -m dashnb bench`` started as a non-interactive shell's background job would be:
    SIGINT ignored (inherited), its stderr read line by line as it comes."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dashnb", "bench", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(tmp_path),
            cwd=REPO,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.err: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        try:
            while True:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
                assert line is not None, f"bench ended before printing {pattern!r}: {''.join(self.err)}"
                if re.search(pattern, line):
                    return line
        except BaseException:
            self.proc.kill()
            self.finish()
            raise

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        try:
            self.proc.wait(timeout=timeout)  # not communicate(): it would read stderr from the reader
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=30)  # stderr is at its end once the process has exited
        assert self.proc.stdout is not None and self.proc.stderr is not None
        out = self.proc.stdout.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.returncode, out, "".join(self.err)


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_bench_stopped_by_a_signal_prints_and_saves_what_it_measured(tmp_path, sig, code):
    out_json = tmp_path / "bench.json"
    total = 2 * 300
    bench = _Bench(tmp_path, "--rtt-ms", "20", "--calls", "300", "--modes", "per_call,shared", "--json", str(out_json))
    bench.wait_for(r"dashnb bench: \d+/600 calls")  # at least one call has finished
    bench.proc.send_signal(sig)
    rc, out, err = bench.finish()
    name = signal.Signals(sig).name
    assert rc == code, err
    assert f"interrupted by {name} after" in err and "partial" in err
    assert "INTERRUPTED" in out and "per_call" in out
    saved = json.loads(out_json.read_text(encoding="utf-8"))
    assert saved["settings"]["interrupted"] == name
    done = sum(m["calls"] for m in saved["modes"].values())
    assert 1 <= done < total


@pytest.mark.slow
def test_bench_whose_ca_is_deleted_mid_run_says_so_within_seconds(tmp_path):
    bench = _Bench(tmp_path, "--rtt-ms", "20", "--calls", "300", "--modes", "per_call,shared,async,async_per_call")
    bench.wait_for(r"dashnb bench: \d+/1200 calls")
    for d in glob.glob(str(tmp_path / f"dashnb-emulator-{bench.proc.pid}-*")):
        shutil.rmtree(d)
    t0 = time.monotonic()
    rc, _out, err = bench.finish(timeout=120)
    elapsed = time.monotonic() - t0
    assert rc == 1, err
    assert "was deleted during the run" in err and "TMPDIR" in err and "Traceback" not in err
    assert elapsed < 60, f"{elapsed:.0f} s to notice"  # wide: it takes a second or two


@pytest.mark.slow
def test_compare_whose_ca_is_deleted_mid_block_raises_instead_of_hanging(emulator_factory):
    # async_per_call builds a session per call: with the CA gone that raises, which used to kill
    # its worker task silently and leave the block waiting for a record that never came.
    emu = emulator_factory(rtt_ms=0)
    outcome: list[BaseException | None] = []

    def delete_ca(done: int, _total: int) -> None:
        if done == 2:
            shutil.rmtree(os.path.dirname(emu.ca_path))

    def run() -> None:
        try:
            _measure.compare(
                ["async_per_call"], calls=40, concurrency=2, endpoint=emu, warmup=False, progress=delete_ca
            )
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "compare() hung after its emulator's CA was deleted"
    assert isinstance(outcome[0], RuntimeError) and "was deleted during the run" in str(outcome[0])
