"""`python -m dashnb bench`: runs the embedded emulator, prints a table, writes the JSON shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys

REQUIRED = {"p50_ms", "p90_ms", "p99_ms", "mean_ms", "calls", "errors", "tcp_connections", "throughput_rps"}


def _bench(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "dashnb", "bench", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_bench_writes_valid_json(tmp_path):
    out = tmp_path / "bench.json"
    p = _bench(
        "--rtt-ms", "0", "--calls", "3", "--concurrency", "2", "--modes", "per_call,shared", "async", "--json", str(out)
    )
    assert p.returncode == 0, p.stderr
    assert "per_call" in p.stdout and "conns client/server" in p.stdout
    d = json.loads(out.read_text())
    assert set(d) == {"settings", "modes"}
    assert d["settings"]["rtt_ms"] == 0 and d["settings"]["calls"] == 3 and d["settings"]["concurrency"] == 2
    assert list(d["modes"]) == ["per_call", "shared", "async"]
    for name, mode in d["modes"].items():
        assert REQUIRED <= set(mode), name
        assert mode["calls"] == 3 and mode["errors"] == 0
        assert mode["tcp_connections"] == mode["client_connections"], name
    assert d["modes"]["per_call"]["tcp_connections"] == 3
    assert d["modes"]["shared"]["tcp_connections"] == 1


def test_bench_refuses_unknown_modes_and_real_without_key(tmp_path):
    p = _bench("--modes", "fastest")
    assert p.returncode == 2 and "unknown mode" in p.stderr
    env = {k: v for k, v in os.environ.items() if k != "DASHSCOPE_API_KEY"}
    p = _bench("--real", env=env)
    assert p.returncode == 2 and "DASHSCOPE_API_KEY" in p.stderr


def test_bench_scenario_and_server_time_reach_the_emulator(tmp_path):
    out = tmp_path / "bench.json"
    p = _bench(
        "--scenario", "same_region", "--ttfb-ms", "60", "--calls", "2", "--modes", "per_call,shared",
        "--json", str(out), "--no-progress",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    # The scenario's round trip, the explicit server time over the scenario's.
    assert (d["settings"]["rtt_ms"], d["settings"]["ttfb_ms"], d["settings"]["scenario"]) == (5, 60, "same_region")
    for name, mode in d["modes"].items():
        assert mode["errors"] == 0 and mode["min_ms"] >= 65, name  # rtt + server time on every call
    assert "server time 60 ms" in p.stderr and "(assumed)" in p.stderr
    assert "server time 60 ms" in p.stdout and "model (dashnb.predict_reuse)" in p.stdout


def test_bench_refuses_emulated_settings_for_the_real_service():
    env = {k: v for k, v in os.environ.items() if k != "DASHSCOPE_API_KEY"}
    for flag in (["--scenario", "same_region"], ["--ttfb-ms", "100"], ["--rtt-ms", "5"]):
        p = _bench("--real", *flag, env=env)
        assert p.returncode == 2 and "the real service's are what they are" in p.stderr, flag
