"""Real OkHttp is the referee: dashnb's pooling must do what the Java SDK's client does.

The Java side (tests/java/OkHttpCrosscheck.java) is compiled here, into a temporary
directory, against the system's OkHttp 3.x jars, and configured as the DashScope Java SDK's
OkHttpClientFactory configures OkHttp. benchmarks/crosscheck.py runs each workload through it
and through a dashnb session with the same PoolConfig, each on a fresh emulator, and compares
what the server saw and what the client saw. Without javac or the jars these tests skip.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "benchmarks"))

import crosscheck  # noqa: E402

java = pytest.mark.java


@pytest.fixture(scope="module")
def tool():
    found, why = crosscheck.java_toolchain()
    if found is None:
        pytest.skip(f"the OkHttp crosscheck needs Java and OkHttp: {why}")
    return found


@pytest.fixture(scope="module")
def table(tool):
    """Every scenario through OkHttp and through dashnb, once for the module (about a minute)."""
    return crosscheck.run_all(tool)


def _rows(table, scenario, mode):
    sc = next(s for s in table["scenarios"] if s["name"] == scenario)
    return sc[mode]


@pytest.fixture(scope="module")
def recorded():
    with open(crosscheck.RECORD, encoding="utf-8") as fh:
        return json.load(fh)


# -- the Java side is the SDK's client -----------------------------------------------------------


def test_java_side_builds_the_client_as_the_sdk_does():
    with open(crosscheck.JAVA_SOURCE, encoding="utf-8") as fh:
        src = fh.read()
    # The lines of OkHttpClientFactory.createInstance, as they configure OkHttp.
    for line in (
        "dispatcher.setMaxRequests(maxRequests)",
        "dispatcher.setMaxRequestsPerHost(maxRequestsPerHost)",
        ".connectTimeout(Duration.ofMillis(connectMs))",
        ".readTimeout(Duration.ofMillis(readMs))",
        ".writeTimeout(Duration.ofMillis(writeMs))",
        ".protocols(Collections.singletonList(Protocol.HTTP_1_1))",
        ".connectionPool(new ConnectionPool(poolSize, idleSeconds, TimeUnit.SECONDS))",
        "Duration.ofMillis(idleMs).getSeconds()",
    ):
        assert line in src, line
    # Trust is the emulator's CA only: no trust-all manager, no hostname bypass.
    assert "hostnameVerifier" not in src and "checkServerTrusted" not in src


@java
def test_okhttp_refuses_an_idle_timeout_under_one_second(tool, tmp_path):
    """The SDK passes Duration.getSeconds() to ConnectionPool: 0.5 s becomes 0, which OkHttp refuses."""
    from dashnb import PoolConfig, emulator

    classpath = crosscheck.compile_java(tool, str(tmp_path))
    with emulator.start(shared=False, rtt_ms=0) as emu:
        with pytest.raises(RuntimeError, match=r"keepAliveDuration <= 0: 0"):
            crosscheck.JavaClient(tool, classpath, emu, PoolConfig(connection_idle_timeout=0.5))
        # Negative control: one second is accepted.
        client = crosscheck.JavaClient(tool, classpath, emu, PoolConfig(connection_idle_timeout=1))
        try:
            assert client.versions["okhttp"].startswith("okhttp/3.")
        finally:
            client.close()


# -- OkHttp's behaviour, as measured ---------------------------------------------------------------


@java
def test_okhttp_never_waits_for_the_pool(table):
    """Pool 4, maxAsync 32, 16 enqueued calls: 16 at once on 16 connections, 4 kept afterwards."""
    first, second = _rows(table, "pool_below_max_async", "async")
    ok = first["okhttp"]
    assert (ok["ok"], ok["opened"], ok["peak_open"], ok["peak_in_flight"], ok["open_after"]) == (16, 16, 16, 16, 4)
    assert second["okhttp"]["opened"] == 12  # 4 reused, 12 new: churn, not blocking


@java
def test_okhttp_dispatcher_limits_enqueued_calls_per_host_but_not_execute(table):
    (sync,) = _rows(table, "per_host_below_max_async", "sync")
    (async_,) = _rows(table, "per_host_below_max_async", "async")
    assert async_["okhttp"]["peak_in_flight"] == 4 and async_["okhttp"]["opened"] == 4
    assert sync["okhttp"]["peak_in_flight"] == 16 and sync["okhttp"]["opened"] == 16


@java
def test_okhttp_tls_handshake_runs_under_read_timeout(table):
    rows = {r["step"]: r for r in _rows(table, "timeouts", "sync")}
    assert rows["threads 2 (blackhole)"]["okhttp"]["fail_after"] == "connect_timeout"
    assert rows["threads 2 (tls_stall)"]["okhttp"]["fail_after"] == "read_timeout"
    assert rows["threads 2 (stall_headers)"]["okhttp"]["fail_after"] == "read_timeout"


# -- dashnb agrees ---------------------------------------------------------------------------------


@java
@pytest.mark.parametrize("scenario", [s.name for s in crosscheck.SCENARIOS])
def test_dashnb_agrees_with_okhttp(table, scenario):
    """Every compared fact equal, or different exactly as the scenario documents."""
    one = {**table, "scenarios": [s for s in table["scenarios"] if s["name"] == scenario]}
    assert crosscheck.disagreements(one) == []


@java
def test_dashnb_async_burst_churns_like_okhttp(table):
    first, second = _rows(table, "pool_below_max_async", "async")
    d = first["dashnb"]
    assert (d["ok"], d["opened"], d["peak_open"], d["peak_in_flight"], d["open_after"]) == (16, 16, 16, 16, 4)
    assert second["dashnb"]["opened"] == 12


@java
def test_recorded_table_matches_a_fresh_run(table, recorded):
    fresh, old = crosscheck.comparable(table), crosscheck.comparable(recorded)
    changed = [f"{o} -> {f}" for o, f in zip(old, fresh) if o != f]
    assert len(fresh) == len(old) and not changed, (
        "notebooks/data/crosscheck.json is stale; run `make crosscheck` and commit it:\n" + "\n".join(changed)
    )


# -- the record and the comparison itself (no Java needed) ---------------------------------------


def test_recorded_table_is_labelled(recorded):
    datetime.date.fromisoformat(recorded["recorded"])
    versions = recorded["versions"]
    assert re.fullmatch(r"okhttp/3\.\d+\.\d+", versions["okhttp"])
    for key in ("java", "python", "aiohttp", "urllib3", "requests"):
        assert versions[key], key
    assert [s["name"] for s in recorded["scenarios"]] == [s.name for s in crosscheck.SCENARIOS]
    assert crosscheck.disagreements(recorded) == []


def test_a_disagreement_is_reported(recorded):
    broken = copy.deepcopy(recorded)
    row = _rows(broken, "pool_below_max_async", "async")[0]
    row["dashnb"]["opened"] = 4  # what the old mapping (limit = pool size) measured
    problems = crosscheck.disagreements(broken)
    assert problems == ["pool_below_max_async / async / async 16 / opened: OkHttp 16, dashnb 4"]
    # A documented difference that stops holding is reported too.
    broken = copy.deepcopy(recorded)
    pause = _rows(broken, "idle_timeout_shorter_than_pause", "sync")[1]
    pause["dashnb"]["open_after"] = 0
    assert len(crosscheck.disagreements(broken)) == 1


def test_fail_after_names_one_timeout_and_not_two():
    from dashnb import PoolConfig

    cfg = PoolConfig(connect_timeout=0.5, read_timeout=1.5)

    def fail_after(lo, hi):
        return crosscheck._fail_after({"fail_min_s": lo, "fail_max_s": hi}, cfg)

    assert fail_after(None, None) is None
    assert fail_after(0.50, 0.56) == "connect_timeout"
    assert fail_after(1.50, 1.70) == "read_timeout"
    assert fail_after(1.00, 1.02).startswith("other")  # a connect timeout twice (a retry)
    assert fail_after(3.00, 3.05).startswith("other")  # a read timeout twice
    assert fail_after(0.30, 0.52).startswith("other")  # earlier than the limit
