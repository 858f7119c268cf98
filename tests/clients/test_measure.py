"""dashnb.compare / measure: records, statistics, connection counts cross-checked with the emulator."""

from __future__ import annotations

import dataclasses
import doctest
import io
import json
import math
import os
import typing

import pytest

from dashnb import SCENARIOS, DashScope, PoolConfig, _measure, predict_reuse
from dashnb._endpoint import Endpoint
from dashnb._scenarios import NEW_CONNECTION_RTTS
from dashnb._stats import CallTiming, format_table, percentile, summarize
from dashnb.emulator import TLS_CHOICES

REQUIRED = {"p50_ms", "p90_ms", "p99_ms", "mean_ms", "calls", "errors", "tcp_connections", "throughput_rps"}


# -- statistics on known samples ------------------------------------------------------------


def test_percentile_interpolates_like_numpy_linear():
    xs = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert percentile(xs, 0) == 15.0
    assert percentile(xs, 100) == 50.0
    assert percentile(xs, 50) == 35.0
    assert percentile(xs, 40) == pytest.approx(29.0)  # rank 1.6: 20 + 0.6 * 15
    assert percentile(reversed(xs), 90) == pytest.approx(46.0)
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(xs, 101)


def test_summary_counts_errors_apart_and_computes_from_samples():
    ok = [
        CallTiming(
            "m",
            i,
            0,
            start=float(i),
            end=float(i) + (i + 1) / 100,
            status=200,
            reused=i > 0,
            connect_s=0.001 if i == 0 else None,
            tls_s=0.002 if i == 0 else None,
        )
        for i in range(10)
    ]
    bad = CallTiming("m", 10, 0, start=10.0, end=10.0001, error="ConnectionError")
    s = summarize("m", [*ok, bad], wall_s=2.0, client_connections=1, server={"tcp_connections": 1})
    assert (s.calls, s.errors) == (11, 1)
    assert s.p50_ms == pytest.approx(55.0)  # 10..100 ms: the failed call does not count
    assert s.mean_ms == pytest.approx(55.0)
    assert s.p90_ms == pytest.approx(91.0)
    assert s.min_ms == pytest.approx(10.0) and s.max_ms == pytest.approx(100.0)
    assert s.throughput_rps == pytest.approx(5.0)  # 10 good calls in 2 s
    assert s.reused_calls == 9
    assert s.handshake_ms == pytest.approx(3.0)
    assert s.connections_agree is True
    assert ok[3].total == pytest.approx(0.04)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ok[0].start = 1.0  # frozen
    assert "skipped: why" in format_table([summarize("x", [], wall_s=0, skipped="why"), s])


# -- against the emulator ---------------------------------------------------------------------


def test_per_call_is_much_slower_than_shared_at_rtt_40(emulator_factory):
    emu = emulator_factory(rtt_ms=40)
    r = _measure.compare(["per_call", "shared"], calls=6, endpoint=emu, progress=False)
    per_call, shared = r["per_call"].summary, r["shared"].summary
    assert per_call.errors == shared.errors == 0
    # The model says 3 RTT vs 1 RTT; 2x leaves a wide margin for a busy machine.
    assert per_call.p50_ms > 2 * shared.p50_ms
    assert r.ratio("per_call", "shared") > 2
    assert shared.p50_ms >= 40  # can never beat one round trip
    assert "per_call p50 is" in str(r)


def test_connection_counts_match_the_emulator_in_every_mode(emu):
    modes = ["per_call", "sdk_default", "shared", "threads", "async", "async_per_call", "sdk_threads"]
    r = _measure.compare(modes, calls=8, concurrency=4, endpoint=emu, progress=False)
    for s in r.summary:
        assert s.errors == 0, s
        assert s.client_connections is not None and s.tcp_connections is not None, s
        assert s.client_connections == s.tcp_connections, s
        assert s.tls_handshakes == s.tcp_connections, s
    assert r.connection_mismatches() == {}
    assert r["per_call"].summary.client_connections == 8
    assert r["async_per_call"].summary.client_connections == 8
    assert r["shared"].summary.client_connections == 1
    # sdk_default and sdk_threads share the SDK's one session, which is reset whenever the
    # other one used it, so each sdk_default block starts without a connection.
    assert r["sdk_default"].summary.client_connections == r.settings["rounds"] == 2
    assert 1 <= r["threads"].summary.client_connections <= 4
    assert 1 <= r["async"].summary.client_connections <= 4
    # Records carry what the hooks saw.
    per_call = r["per_call"].calls
    assert all(c.reused is False and c.tls_s is not None and c.connect_s is not None for c in per_call)
    assert all(c.status == 200 for m in r for c in m.calls)


def test_shared_opens_one_connection_for_sequential_calls(emu):
    m = _measure.measure("shared", calls=10, endpoint=emu, progress=False)
    s = m.summary
    assert (s.calls, s.client_connections, s.tcp_connections, s.reused_calls) == (10, 1, 1, 9)
    assert len({c.connection_id for c in m.calls}) == 1
    assert [c.reused for c in m.calls] == [False] + [True] * 9
    assert all(c.ttfb_s is not None and 0 < c.ttfb_s <= c.total for c in m.calls)
    assert emu.stats()["requests_per_connection"][-1] >= 10


def test_modes_interleave(emu):
    r = _measure.compare(["per_call", "shared"], calls=6, rounds=3, endpoint=emu, progress=False)
    spans = sorted((c.start, c.mode) for m in r for c in m.calls)
    order = [mode for _, mode in spans]
    assert (
        order
        == ["per_call"] * 2 + ["shared"] * 2 + ["per_call"] * 2 + ["shared"] * 2 + ["per_call"] * 2 + ["shared"] * 2
    )
    assert r.settings["rounds"] == 3


def test_sdk_async_against_a_private_ca_is_skipped_with_the_reason(emu):
    r = _measure.compare(["sdk_async", "shared"], calls=2, endpoint=emu, progress=False)
    assert "certifi" in r["sdk_async"].skipped
    assert r["sdk_async"].calls == ()
    assert "skipped" in str(r) and "certifi" in r._repr_html_()
    d = r.to_dict()
    assert d["modes"]["sdk_async"]["skipped"] and d["modes"]["shared"]["calls"] == 2


def test_sdk_async_runs_over_plain_http(emulator_factory):
    emu = emulator_factory(rtt_ms=0, tls="off")
    r = _measure.compare(["sdk_async", "async"], calls=4, concurrency=2, endpoint=emu, progress=False)
    assert r["sdk_async"].skipped is None
    assert r["sdk_async"].summary.errors == 0 and r["sdk_async"].summary.calls == 4
    assert r["sdk_async"].summary.tcp_connections >= 1
    assert r["sdk_async"].summary.client_connections is None  # the SDK's own session is not observable


def test_sdk_default_trusts_the_emulator_only_for_the_run(emu):
    before = os.environ.get("REQUESTS_CA_BUNDLE")
    r = _measure.compare(["sdk_default"], calls=3, endpoint=emu, progress=False)
    assert r["sdk_default"].summary.errors == 0
    assert os.environ.get("REQUESTS_CA_BUNDLE") == before


def test_warm_up_fails_fast_when_the_ca_is_not_trusted(emu):
    class Untrusted:  # the emulator, but trusting certifi instead of its CA: a negative control
        label, base_url, api_key, ca_path, is_emulator = "untrusted", emu.base_url, emu.api_key, None, False

        def ssl_context(self):
            import ssl

            import certifi

            return ssl.create_default_context(cafile=certifi.where())

    with pytest.raises(RuntimeError, match="warm-up call to untrusted failed"):
        _measure.compare(["shared"], calls=2, endpoint=Untrusted(), progress=False)


def test_bad_arguments_are_refused(emu):
    with pytest.raises(ValueError, match="unknown mode"):
        _measure.compare(["fastest"], endpoint=emu)
    with pytest.raises(ValueError, match="calls"):
        _measure.compare(["shared"], calls=0, endpoint=emu)


# -- results ------------------------------------------------------------------------------------


def test_json_shape_and_renderings(emu):
    r = _measure.compare(["per_call", "shared", "async"], calls=4, concurrency=2, endpoint=emu, progress=False)
    d = json.loads(r.to_json())
    assert set(d) == {"settings", "modes"}
    assert d["settings"]["calls"] == 4 and d["settings"]["concurrency"] == 2
    assert d["settings"]["rtt_ms"] == 0 and d["settings"]["tls"] == "1.3"
    assert list(d["modes"]) == ["per_call", "shared", "async"]
    for mode in d["modes"].values():
        assert REQUIRED <= set(mode)
        assert mode["calls"] == 4 and mode["errors"] == 0
    with_calls = r.to_dict(calls=True)
    assert len(with_calls["modes"]["shared"]["calls"]) == 4
    assert set(with_calls["modes"]["shared"]["calls"][0]) >= {"start", "end", "total", "reused", "ttfb_s"}
    text, page = str(r), r._repr_html_()
    for name in ("per_call", "shared", "async"):
        assert name in text and name in page
    assert emu.api_key not in text + page + r.to_json() + repr(r["shared"])


def test_plot_draws_distribution_and_timeline(emu):
    r = _measure.compare(["per_call", "shared"], calls=4, endpoint=emu, progress=False)
    fig = r.plot()
    dist, timeline = fig.axes[:2]
    assert len(dist.get_lines()) == 2
    assert len(timeline.patches) >= 8  # one bar segment at least per call
    fig.savefig(io.BytesIO(), format="png")


def test_progress_bar_and_callback(emu, capsys):
    seen = []
    _measure.compare(["shared"], calls=3, endpoint=emu, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    _measure.compare(["shared"], calls=3, endpoint=emu, progress=True)  # tqdm.auto, no warnings
    assert "dashnb.compare" in capsys.readouterr().err


# -- interruption -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["shared", "threads", "async", "sdk_default"])
def test_interrupt_stops_cleanly_and_the_session_stays_usable(emu, mode):
    from dashscope import Generation

    from dashnb._run import run
    from dashnb._session.manager import session

    s = session(endpoint=emu, name=f"test-measure-interrupt-{mode}")
    bundle = os.environ.get("REQUESTS_CA_BUNDLE")

    def stop_after_three(done, total):
        if done == 3:
            raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            _measure.compare([mode], calls=12, concurrency=4, session=s, endpoint=emu, progress=stop_after_three)
        assert os.environ.get("REQUESTS_CA_BUNDLE") == bundle
        st = s.stats()
        assert st["in_flight"] == 0 and st["queued"] == 0
        assert emu.stats()["requests"] < 12 + 2  # it stopped early (12 calls + warm-up would be 14)
        # The same session still works, sync and async.
        resp = Generation.call(
            model="qwen-plus", prompt="hi", session=s.requests, api_key=emu.api_key, base_address=emu.base_url
        )
        assert resp.status_code == 200

        async def one():
            from dashscope import AioGeneration

            return await AioGeneration.call(
                model="qwen-plus", prompt="hi", session=s.aiohttp, api_key=emu.api_key, base_address=emu.base_url
            )

        assert run(one()).status_code == 200
        assert s.stats()["in_flight"] == 0
    finally:
        s.close()


# -- server time, scenarios and the model of what reuse saves -------------------------------------


def test_server_time_is_set_for_the_run_and_restored_after(emu):
    r = _measure.compare(
        ["per_call", "shared"], calls=2, concurrency=1, endpoint=emu, rtt_ms=10, ttfb_ms=150, progress=False
    )
    assert (r.settings["rtt_ms"], r.settings["ttfb_ms"], r.settings["scenario"]) == (10, 150, None)
    assert "server time 150 ms" in str(r)
    for s in r.summary:
        assert s.errors == 0 and s.min_ms >= 160  # one round trip and the server time, at least
    assert (emu.options.rtt_ms, emu.options.ttfb_ms) == (0, 0)  # restored

    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _measure.compare(["shared"], calls=3, endpoint=emu, ttfb_ms=50, progress=stop)
    assert emu.options.ttfb_ms == 0  # restored after an interrupted run too


def test_a_scenario_sets_the_emulator_and_explicit_values_win(emu):
    r = _measure.compare(["shared"], calls=2, endpoint=emu, scenario="same_region", ttfb_ms=0, progress=False)
    assert (r.settings["rtt_ms"], r.settings["ttfb_ms"]) == (SCENARIOS["same_region"].rtt_ms, 0)
    assert r.settings["scenario"] == "same_region" and "assumed" in str(r)
    assert emu.options.rtt_ms == 0
    with pytest.raises(ValueError, match="unknown scenario 'moon_base'; choose from same_region"):
        _measure.compare(["shared"], endpoint=emu, scenario="moon_base")


def test_compare_is_typed_with_the_config_and_endpoint_types():
    hints = typing.get_type_hints(_measure.compare)
    assert hints["config"] == PoolConfig | None
    assert hints["endpoint"] == Endpoint | None
    assert typing.Any not in (hints["session"], hints["progress"])


def test_server_time_is_refused_for_the_real_service(emu):
    real = DashScope("intl", api_key="sk-" + "x" * 24)
    for kwargs in ({"ttfb_ms": 100}, {"rtt_ms": 5}, {"scenario": "same_region"}):
        with pytest.raises(ValueError, match="is not an emulator") as info:
            _measure.compare(["shared"], endpoint=real, **kwargs)
        assert "x" * 24 not in str(info.value)
    with pytest.raises(ValueError, match="ttfb_ms must be >= 0"):
        _measure.compare(["shared"], endpoint=emu, ttfb_ms=-1)
    assert emu.options.ttfb_ms == 0 and emu.stats()["requests"] == 0  # refused before any call


def test_the_model_explains_the_measured_ratio_and_rejects_a_model_without_server_time(emulator_factory):
    emu = emulator_factory(rtt_ms=40)
    for ttfb in (0, 300):
        r = _measure.compare(["per_call", "shared"], calls=3, concurrency=1, endpoint=emu, ttfb_ms=ttfb, progress=False)
        measured = r.ratio("per_call", "shared")
        model = predict_reuse(40, ttfb)
        assert model.explains(measured), (ttfb, measured, model.ratio_range())
        # A broken model that leaves server time out: right at 0, wrong with 300 ms.
        assert predict_reuse(40).explains(measured) is (ttfb == 0), (ttfb, measured)


def test_the_model_module_doctests_pass():
    from dashnb import _scenarios

    results = doctest.testmod(_scenarios)
    assert results.attempted >= 6 and results.failed == 0


def test_the_model_counts_handshake_round_trips_per_tls_version():
    assert set(NEW_CONNECTION_RTTS) == set(TLS_CHOICES)
    p = predict_reuse(100, 0, tls="1.2", handshake_ms=0, overhead_ms=0)
    assert (p.new_connection_ms, p.reused_ms, p.saved_ms, p.ratio) == (400, 100, 300, 4)
    assert predict_reuse(100, 100, tls="1.3", handshake_ms=0, overhead_ms=0).ratio == 2
    assert predict_reuse(100, tls="off", handshake_ms=9, overhead_ms=0).saved_ms == 100  # no TLS, no TLS CPU
    low, high = predict_reuse(5).ratio_range()
    assert low < predict_reuse(5).ratio < high
    with pytest.raises(ValueError, match="tls must be one of"):
        predict_reuse(5, tls="1.1")
    with pytest.raises(ValueError, match="rtt_ms must be a finite number"):
        predict_reuse(float("nan"))


def test_scenarios_are_frozen_assumptions():
    assert {"same_region", "europe_to_singapore", "across_the_pacific"} <= set(SCENARIOS)
    s = SCENARIOS["europe_to_singapore"]
    assert (s.rtt_ms, s.ttfb_ms) == (170, 700) and "Assumed" in s.description
    with pytest.raises(TypeError):
        SCENARIOS["mine"] = s  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.rtt_ms = 1  # type: ignore[misc]
    # Reuse saves most where calls are short and the way is long.
    ratios = {name: sc.predict().ratio for name, sc in SCENARIOS.items()}
    assert ratios["same_region"] < ratios["across_the_pacific"] < ratios["europe_to_singapore"]
    assert max(ratios, key=ratios.get) == "small_calls_from_europe"
