"""The latency lab's model (and its view's wiring) without a kernel or a browser.

Each test drives a LabModel on a plain asyncio loop against the model's own emulators (real
sockets, real TLS, emulated round trips); the browser tests in tests/browser/ cover the panel
in JupyterLab and Voila.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import dataclasses
import io
import json
import pathlib
import re
import time
import types

import pytest
import traitlets
from matplotlib.colors import to_hex

from dashnb import SCENARIOS, PoolConfig, _colors
from dashnb._lab import settings as lab_settings
from dashnb._lab.figure import lab_figure
from dashnb._lab.layout import STATIC_FIGURE
from dashnb._lab.model import LabModel, LabSettings
from dashnb._lab.settings import (
    LAB_SCENARIOS,
    MODE_COLORS,
    TIMEOUT_STOPS,
    PlotScale,
    mode_color,
    next_scale,
    nice_ceiling,
    percentile_note,
    supported,
)
from dashnb._lab.view import lab
from dashnb._modes.registry import MODES
from dashnb._results import Comparison, Measurement
from dashnb._stats import CallTiming, summarize


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def model():
    made = []

    def make(**settings):
        m = LabModel(**settings)
        made.append(m)
        return m

    yield make
    for m in made:
        m.close()


def test_measure_produces_results_that_match_the_emulators(model):
    m = model(rtt_ms=20, calls=4, concurrency=2)

    result = run(m.measure())

    assert result is m.result and m.measured == m.settings()
    assert list(m.latency_ms) == ["per_call", "shared", "async"]
    # Reuse as numbers: a connection per call, one for all, at most one per call in flight.
    assert m.connections == {"per_call": 4, "shared": 1, "async": 2}
    for s in result.summary:
        assert s.calls == 4 and s.errors == 0
        assert s.tcp_connections == s.client_connections  # the emulator counted the same
    assert [r["mode"] for r in m.rows] == ["per_call", "shared", "async"]
    assert m.status.startswith("done in ") and m.error == "" and not m.measuring
    assert m.measurements == 1 and m.duration_s > 0
    # Side by side: one private emulator per mode, configured as the settings say.
    assert len(m.emulators) == 3
    assert all(e.options.rtt_ms == 20 and e.options.tls == "1.3" for e in m.emulators)


def test_a_higher_round_trip_raises_latency_and_reuse_saves_more(model):
    m = model(rtt_ms=10, calls=4, modes=("per_call", "shared"))

    async def both():
        low = (await m.measure()).summary
        m.rtt_ms = 80
        return low, (await m.measure()).summary

    low, high = run(both())
    grew = {a.mode: b.p50_ms - a.p50_ms for a, b in zip(low, high)}
    # +70 ms of round trip: about +70 ms for a reused connection, about +210 ms for a new one.
    assert 40 < grew["shared"] < 150, grew
    assert grew["per_call"] > 1.8 * grew["shared"], grew
    assert all(e.options.rtt_ms == 80 for e in m.emulators)


def test_a_newer_change_cancels_the_running_measurement(model):
    # 200 sequential new-connection calls at 20 ms take about 13 s if left to run.
    m = model(rtt_ms=20, calls=200, modes=("per_call",), debounce_s=0.0, live=True)

    async def scenario():
        some_done = asyncio.Event()
        m.observe(lambda ch: ch["new"][0] >= 3 and some_done.set(), names="progress")
        first = m.schedule()
        await asyncio.wait_for(some_done.wait(), 30)
        started = time.perf_counter()
        m.calls = 3  # a newer change: schedules a new measurement, cancelling the running one
        result = await m.wait()
        return first, result, time.perf_counter() - started

    first, result, elapsed = run(scenario())
    assert first.cancelled()
    assert m.cancelled == 1 and m.measurements == 1
    assert m.measured.calls == 3 and result["per_call"].summary.calls == 3
    assert elapsed < 5, f"the old measurement was not stopped promptly ({elapsed:.1f} s)"
    # The old run stopped early: far fewer than its 200 calls reached the emulator.
    assert m.emulators[0].stats()["requests"] < 60
    # What ran after the cancellation is sound: no errors, counts agree with the emulator.
    s = result["per_call"].summary
    assert s.errors == 0 and s.client_connections == s.tcp_connections == 3
    assert m.status.startswith("done in ")


def test_a_direct_measure_cancels_one_already_running(model):
    m = model(rtt_ms=20, calls=100, modes=("shared",))

    async def scenario():
        first = asyncio.ensure_future(m.measure())
        while m.progress[0] < 2:
            await asyncio.sleep(0.01)  # poll for the first calls, not a stand-in for latency
        m.calls = 2
        second = await m.measure()
        with pytest.raises(asyncio.CancelledError):
            await first
        return second

    second = run(scenario())
    assert second["shared"].summary.calls == 2 and m.result is second
    assert m.cancelled == 1


def test_changes_in_quick_succession_are_debounced_into_one_measurement(model):
    m = model(rtt_ms=0, calls=2, modes=("shared",), debounce_s=0.2, live=True)

    async def scenario():
        for rtt in (5, 10, 15):
            m.rtt_ms = rtt
            await asyncio.sleep(0.02)  # quicker than the debounce
        return await m.wait()

    run(scenario())
    # Nothing started before the changes stopped, so nothing had to be cancelled.
    assert m.measurements == 1 and m.cancelled == 0
    assert m.measured.rtt_ms == 15


def test_failed_calls_are_reported_not_raised(model):
    m = model(rtt_ms=40, calls=2, modes=("shared",), read_timeout=0.01)

    result = run(m.measure())

    s = result["shared"].summary
    assert s.errors == s.calls == 2
    assert m.error == ""  # the measurement itself worked; its calls failed
    assert "failed calls: shared 2/2" in m.status


def test_text_repr_is_short_and_has_no_timings():
    m = LabModel()
    try:
        assert repr(m) == "LabModel(rtt 40 ms, TLS 1.3, modes per_call/shared/async)"
        m.tls, m.rtt_ms, m.modes = "off", 12.5, ("shared",)
        assert repr(m) == "LabModel(rtt 12.5 ms, no TLS, modes shared)"
        view = lab(measure=False)  # no loop running: nothing is scheduled
        assert repr(view) == "LatencyLab(rtt 40 ms, TLS 1.3, modes per_call/shared/async)"
        assert view._repr_mimebundle_()["text/plain"] == repr(view)
        view.close()
    finally:
        m.close()


def test_settings_are_validated():
    with pytest.raises(TypeError, match="unknown lab setting"):
        LabModel(rtt=40)
    m = LabModel()
    try:
        with pytest.raises(traitlets.TraitError, match="unknown mode"):
            m.modes = ("per_call", "pigeon")
        with pytest.raises(traitlets.TraitError):
            m.rtt_ms = -1
        with pytest.raises(traitlets.TraitError):
            m.calls = 0
        with pytest.raises(traitlets.TraitError):
            m.tls = "1.1"
        m.modes = ("shared", "shared", "async")
        assert m.modes == ("shared", "async")
    finally:
        m.close()


def test_the_pool_settings_are_a_pool_config_and_validate_through_it():
    m = LabModel(config=PoolConfig(connection_pool_size=4, maximum_async_requests=4, maximum_async_requests_per_host=2))
    try:
        assert isinstance(m.config, PoolConfig)
        assert (m.connection_pool_size, m.maximum_async_requests, m.maximum_async_requests_per_host) == (4, 4, 2)
        assert m.settings().config == m.config and m.settings().problems == []
        # PoolConfig's own checks and messages, not a copy of them.
        with pytest.raises(traitlets.TraitError, match=r"read_timeout \(Java readTimeout\) must be positive"):
            m.read_timeout = 0
        with pytest.raises(traitlets.TraitError, match="connectionPoolSize"):
            m.connection_pool_size = 0
        with pytest.raises(traitlets.TraitError, match="at least 0.001 seconds"):
            m.connection_idle_timeout = 0.0001
        assert m.read_timeout == 300.0 and m.connection_pool_size == 4  # refused values change nothing
        # Breaking a documented constraint is allowed (the lab lets you try it) and reported.
        m.maximum_async_requests_per_host = 8
        assert len(m.settings().problems) == 1 and "no effect" in m.settings().problems[0]
        m.config = PoolConfig(connect_timeout=5)
        assert m.config == PoolConfig(connect_timeout=5) and m.settings().problems == []
        with pytest.raises(TypeError, match="either config= or the pool settings"):
            LabModel(config=PoolConfig(), connection_pool_size=3)
    finally:
        m.close()


def test_groups_keep_the_sdk_modes_together():
    s = LabSettings(modes=("per_call", "sdk_default", "async", "sdk_threads"))
    assert s.groups() == [["per_call"], ["async"], ["sdk_default", "sdk_threads"]]
    assert LabSettings(modes=("per_call", "shared"), side_by_side=False).groups() == [["per_call", "shared"]]
    assert LabSettings(modes=()).groups() == []


def test_the_view_follows_its_controls():
    async def scenario():
        view = lab(rtt_ms=0, calls=2, modes=("per_call", "shared"), debounce_s=0.0)
        try:
            await view.model.wait()
            first = view.plot.outputs[0]["data"]["image/svg+xml"]
            assert "per_call" in view.table.value and "done in" in view.status.value

            view.controls["rtt_ms"].value = 30  # what a slider release does
            assert view.model.rtt_ms == 30
            await view.model.wait()
            assert view.model.measured.rtt_ms == 30
            assert view.plot.outputs[0]["data"]["image/svg+xml"] != first
            assert len(view.plot.outputs) == 1

            view.mode_picker.menu.value = "async"  # what picking it from the menu does
            assert view.model.modes == ("per_call", "shared", "async")
            assert view.mode_picker.menu.value == ""  # the menu is ready for the next one
            assert "async" not in dict((v, k) for k, v in view.mode_picker.menu.options)
            await view.model.wait()
            assert list(view.model.latency_ms) == ["per_call", "shared", "async"]

            for chip in list(view.mode_picker.chosen.children):
                chip.click()
            await view.model.wait()
            assert "choose at least one mode" in view.status.value
        finally:
            view.close()

    run(scenario())


def test_server_time_adds_to_every_call_and_shrinks_what_reuse_saves(model):
    m = model(rtt_ms=20, calls=3, modes=("per_call", "shared"))

    async def both():
        quick = await m.measure()
        m.ttfb_ms = 300
        return quick, await m.measure()

    quick, slow = run(both())
    assert all(e.options.ttfb_ms == 300 for e in m.emulators)  # it reached the emulators
    assert m.measured.ttfb_ms == 300 and "server 300 ms" in m.measured.label
    grew = {a.mode: b.p50_ms - a.p50_ms for a, b in zip(quick.summary, slow.summary)}
    # 300 ms of server time lands on every call, new connection or not ...
    assert all(200 < ms < 500 for ms in grew.values()), grew
    # ... so the ratio falls while the saving in ms (the handshakes) stays.
    assert slow.ratio("per_call", "shared") < quick.ratio("per_call", "shared")
    assert slow.ratio("per_call", "shared") < 1.6 < quick.ratio("per_call", "shared")


def test_a_scenario_sets_round_trip_and_server_time_until_either_changes():
    m = LabModel(scenario="europe_to_singapore")
    try:
        preset = SCENARIOS["europe_to_singapore"]
        assert (m.rtt_ms, m.ttfb_ms, m.scenario) == (preset.rtt_ms, preset.ttfb_ms, "europe_to_singapore")
        m.scenario = "same_region"
        assert (m.rtt_ms, m.ttfb_ms) == (5, SCENARIOS["same_region"].ttfb_ms)
        m.ttfb_ms = 0  # a hand-made change: no longer the scenario
        assert m.scenario == "custom" and m.rtt_ms == 5
        with pytest.raises(traitlets.TraitError):
            m.scenario = "moon_base"
    finally:
        m.close()
    m = LabModel(scenario="same_region", rtt_ms=50)  # explicit values win
    try:
        assert (m.rtt_ms, m.ttfb_ms, m.scenario) == (50, SCENARIOS["same_region"].ttfb_ms, "custom")
    finally:
        m.close()
    with pytest.raises(ValueError, match="unknown scenario"):
        LabModel(scenario="moon_base")


def test_the_panel_carries_a_picture_of_its_latest_plot_for_static_renders():
    async def scenario():
        view = lab(rtt_ms=0, calls=2, modes=("shared",), debounce_s=0.0)
        try:
            before = view._repr_mimebundle_()
            await view.model.wait()
            after = view._repr_mimebundle_()
            view.controls["ttfb_ms"].value = 100  # the server-time slider reaches the model
            assert view.model.ttfb_ms == 100
            view.controls["scenario"].value = "same_region"
            assert (view.model.rtt_ms, view.model.ttfb_ms) == (5, SCENARIOS["same_region"].ttfb_ms)
            await view.model.wait()
            latest = view._repr_mimebundle_()
            return before, after, latest, view.model.to_png(**STATIC_FIGURE)
        finally:
            view.close()

    before, after, latest, shown = run(scenario())
    assert "image/png" not in before  # nothing measured yet: no picture to offer
    for bundle in (after, latest):
        assert {"text/plain", "application/vnd.jupyter.widget-view+json", "image/png"} <= set(bundle)
        assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG\r\n\x1a\n")
    assert base64.b64decode(latest["image/png"]) == shown  # the latest plot, not the first
    assert latest["image/png"] != after["image/png"]
    assert "server" in latest["text/plain"]


def test_the_committed_lab_notebook_shows_a_picture_without_widgets():
    # GitHub and other renderers without the widget manager skip the widget view: the panel's
    # output must carry its plot as a PNG beside it, not only an empty box.
    nb = json.loads((pathlib.Path(__file__).parents[2] / "notebooks" / "04_latency_lab.ipynb").read_text())
    panel = [c for c in nb["cells"] if c["cell_type"] == "code" and "dashnb.lab()" in "".join(c["source"])]
    assert len(panel) == 1
    (out,) = panel[0]["outputs"]
    assert "application/vnd.jupyter.widget-view+json" in out["data"]
    assert base64.b64decode(out["data"]["image/png"]).startswith(b"\x89PNG\r\n\x1a\n")


def _fds() -> int:
    import gc
    import os

    gc.collect()
    return len(os.listdir("/proc/self/fd"))


def test_close_leaves_no_worker_loop_emulator_or_connection_open():
    from dashnb import emulator

    start, before = _fds(), len(emulator.running())
    m = LabModel(calls=2)
    for rtt in (0, 5):  # two measurements: the workers reuse their loops and pooled connections
        m.rtt_ms = rtt
        assert run(m.measure()) is not None, m.status
    assert len(emulator.running()) == before + 3 and _fds() > start + 5  # it did hold things open
    m.close()
    assert len(emulator.running()) == before
    assert _fds() <= start + 5


def test_lab_again_under_the_same_name_closes_the_previous_panel():
    first = lab(measure=False, calls=2, name="test-again")
    try:
        run(first.model.measure())
        emulators = first.model.emulators
        assert emulators and not any(e.stopped for e in emulators)
        second = lab(measure=False, name="test-again")
        assert all(e.stopped for e in emulators) and first.model._closed and second is not first
        other = lab(measure=False, name="test-other")  # another name: both stay
        assert not second.model._closed
        kept = lab(second.model, measure=False, name="test-again")  # the same model, a new view
        assert not kept.model._closed and kept.model is second.model
    finally:
        for p in (first, second, other, kept):
            p.close()


# -- issue 14: scale, colours, pin, reset, scenarios, export, percentiles, sliders ------------------


def _comparison(latencies_ms: dict[str, list[float]], connections: int = 1) -> Comparison:
    """A Comparison from given call latencies (no I/O), for the plot and export logic."""
    measurements = {}
    for mode, values in latencies_ms.items():
        calls, t = [], 0.0
        for i, ms in enumerate(values):
            calls.append(CallTiming(mode, i, 0, start=t, end=t + ms / 1e3, status=200))
            t += ms / 1e3
        summary = summarize(mode, calls, wall_s=max(t, 1e-3), client_connections=connections)
        measurements[mode] = Measurement(mode, calls, summary)
    return Comparison(measurements, {})


def test_each_mode_keeps_its_colour_whichever_modes_are_ticked(monkeypatch):
    colors = [mode_color(m) for m in MODES]
    assert len(set(colors)) == len(colors)  # every registered mode its own colour
    assert "#d62728" not in colors  # red marks failed calls

    def drawn(modes):
        fig = lab_figure(_comparison({m: [10.0, 12.0] for m in modes}))
        ax = fig.get_axes()[0]
        return {m: to_hex(c.get_facecolor()[0]) for m, c in zip(modes, ax.collections)}

    alone, together = drawn(["shared"]), drawn(["per_call", "threads", "shared"])
    assert alone["shared"] == together["shared"] == MODE_COLORS["shared"]
    assert together["threads"] == MODE_COLORS["threads"]
    # A mode added to the registry later gets a colour of its own, from its place in the registry.
    later = types.MappingProxyType({**MODES, "http2": "a later mode", "pooled_v2": "another"})
    monkeypatch.setattr(_colors, "MODES", later)
    new = mode_color("http2"), mode_color("pooled_v2")
    assert len(set(new)) == 2 and not set(new) & set(MODE_COLORS.values())
    assert drawn(["pooled_v2"])["pooled_v2"] == new[1] == drawn(["http2", "pooled_v2"])["pooled_v2"]
    assert mode_color("unregistered") == mode_color("unregistered")  # stable, not random


def test_the_axis_scale_is_kept_locked_or_fitted():
    assert [nice_ceiling(x) for x in (0, 1, 1.01, 14, 150, 151, 640, 9999)] == [1, 1, 1.5, 15, 150, 200, 750, 10_000]
    quick, slow = _comparison({"shared": [10, 12]}), _comparison({"shared": [300, 320]}, connections=5)
    first = next_scale(None, "keep", quick)
    assert first == PlotScale(15, 1.5)
    grown = next_scale(first, "keep", slow)
    assert grown.latency_ms == 500 and grown.connections == 7.5  # 320 ms + 10% headroom, rounded up
    assert next_scale(grown, "keep", quick) == grown  # keep: never shrinks
    assert next_scale(first, "lock", slow) == first  # lock: never changes
    assert next_scale(grown, "fit", quick) == first  # fit: every run on its own
    # A pinned run counts: its calls stay on the plot.
    assert next_scale(None, "fit", quick, slow).latency_ms == 500


def test_locked_axis_marks_calls_above_it_instead_of_hiding_them():
    fig = lab_figure(_comparison({"shared": [10, 500, 600]}), scale=PlotScale(100, 2), y_axis="lock")
    ax = fig.get_axes()[0]
    assert ax.get_ylim() == (0, 100)
    texts = [t.get_text() for t in ax.texts]
    assert "2 above" in texts and "axis locked" in ax.get_title()
    fitted = lab_figure(_comparison({"shared": [10, 500, 600]})).get_axes()[0]
    assert fitted.get_ylim()[1] >= 600 and not [t for t in fitted.texts if "above" in t.get_text()]


def test_the_axis_keeps_its_scale_while_the_round_trip_goes_up_and_down(model):
    # 200 ms against 10 ms: the fitted axes stay apart even when a busy machine slows the 10 ms run.
    m = model(rtt_ms=200, calls=2, modes=("per_call", "shared"))

    async def runs():
        scales = []
        for rtt in (200, 10, 200):
            m.rtt_ms = rtt
            await m.measure()
            scales.append(m.scale)
        m.y_axis = "fit"  # fits the latest run (rtt 200) at once, no new measurement
        fitted = m.scale
        m.rtt_ms = 10
        await m.measure()
        return scales, fitted, m.scale

    (at_200, at_10, again), fitted, fit_10 = run(runs())
    assert at_10 == at_200 == again  # the 10 ms bars are drawn on the 200 ms scale
    # fit: the latest 200 ms run alone (keep also held the slowest earlier one), then the 10 ms run
    assert fitted.latency_ms <= at_200.latency_ms and fit_10.latency_ms < fitted.latency_ms
    assert m.measurements == 4


def test_pin_a_run_then_compare_with_it(model):
    m = model(rtt_ms=10, calls=2, modes=("per_call", "shared"))
    with pytest.raises(RuntimeError, match="nothing measured yet"):
        m.pin()

    async def scenario():
        await m.measure()
        m.pin()
        pinned = m.pinned
        m.rtt_ms = 60
        await m.measure()
        return pinned

    pinned = run(scenario())
    assert m.pinned is pinned is not m.result and m.pinned_settings.rtt_ms == 10
    notes = m.notes()
    assert "Since the pinned run (rtt 10 ms, TLS 1.3, modes per_call/shared):" in notes
    shared = next(n for n in notes if n.startswith("shared: p50 "))
    before, after = (float(x) for x in re.findall(r"(\d+) -> (\d+) ms", shared)[0])
    assert after - before > 30  # 50 ms more round trip
    assert m.to_dict()["pinned"]["shared"]["calls"] == 2
    with_ghosts = m.to_png()
    m.unpin()
    assert m.pinned is None and not m.pin_changes() and m.to_png() != with_ghosts


def test_reset_brings_every_setting_back_in_one_measurement(model):
    m = model(debounce_s=0.0)
    m.scenario = "pool_too_small"
    m.tls, m.rtt_ms, m.y_axis, m.read_timeout = "1.2", 80, "lock", 0.5
    m.scale = PlotScale(1000, 10)

    async def scenario():
        m.live = True
        m.reset()
        return await m.wait()

    run(scenario())
    assert m.settings() == LabSettings() and m.scenario == "custom" and m.y_axis == "keep"
    assert m.measurements == 1 and m.cancelled == 0
    assert m.scale is not None and m.scale.latency_ms < 1000  # fitted to the new run, not the old scale


def test_named_scenarios_set_what_they_name_and_reuse_the_assumed_networks():
    for name in ("slow_network", "tls_1_2", "pool_too_small", "long_server_time", *SCENARIOS):
        assert name in LAB_SCENARIOS
    m = LabModel(rtt_ms=80)
    try:
        m.scenario = "tls_1_2"
        assert (m.tls, m.rtt_ms) == ("1.2", LabSettings().rtt_ms)  # the defaults, then its values
        m.scenario = "slow_network"
        assert (m.tls, m.rtt_ms, m.ttfb_ms) == ("1.3", SCENARIOS["europe_to_singapore"].rtt_ms, 0)
        m.scenario = "long_server_time"
        assert m.ttfb_ms == SCENARIOS["same_region"].ttfb_ms and m.scenario_description
        m.scenario = "pool_too_small"
        assert m.config.maximum_async_requests == 2 < m.concurrency == 8
        assert "threads" in m.modes and "async" in m.modes and m.settings().problems == []
        m.concurrency = 4  # any setting it fixed, changed by hand: custom again
        assert m.scenario == "custom" and m.scenario_description == ""
        m.scenario = "europe_to_singapore"
        assert (m.rtt_ms, m.ttfb_ms) == (170, 700) and m.concurrency == LabSettings().concurrency
        m.modes = ("shared",)  # modes are not part of a network scenario
        assert m.scenario == "europe_to_singapore"
    finally:
        m.close()


def test_the_pool_too_small_scenario_shows_waiting_and_reopening(model):
    m = model(scenario="pool_too_small")
    result = run(m.measure())
    assert all(s.errors == 0 for s in result.summary)
    conns = m.connections
    assert conns["shared"] == 1
    assert conns["async"] <= 2  # maximumAsyncRequests 2: the other calls waited
    assert conns["threads"] > 2  # 8 threads open what they need; only 2 are kept
    assert any((c.queued_s or 0) > 0.01 for c in result["async"].calls)


def test_percentiles_only_where_the_sample_supports_them():
    nine, ten = _comparison({"a": [10.0] * 9}).summary[0], _comparison({"a": [10.0] * 10}).summary[0]
    assert nine.p90_ms is not None  # computed from any sample ...
    assert supported(nine).p90_ms is None and supported(nine).p50_ms == 10  # ... shown from 10 on
    assert supported(ten).p90_ms == pytest.approx(10) and supported(ten).p99_ms is None
    hundred = _comparison({"a": [10.0] * 100}).summary[0]
    assert supported(hundred).p99_ms == pytest.approx(10)
    note = percentile_note([nine])
    assert "p90 and p99 shown as —" in note and "this run had 9" in note
    assert percentile_note([hundred]) is None
    assert "p99 shown as —" in percentile_note([ten]) and "p90" not in percentile_note([ten]).split(" shown")[0]


def test_export_json_csv_png(model, tmp_path):
    m = model(rtt_ms=0, calls=3, modes=("per_call", "shared"))
    with pytest.raises(RuntimeError, match="nothing to export"):
        m.to_json()
    run(m.measure())
    data = json.loads(m.to_json())
    assert data["lab"]["calls"] == 3 and data["lab"]["config"]["read_timeout"] == 300
    assert data["modes"]["shared"]["p90_ms"] is None and data["modes"]["shared"]["p50_ms"] > 0
    assert len(data["modes"]["per_call"]["calls"]) == 3
    rows = list(csv.DictReader(io.StringIO(m.to_csv())))
    assert len(rows) == 6 and rows[0]["mode"] == "per_call" and float(rows[0]["total_ms"]) > 0
    assert {r["reused"] for r in rows if r["mode"] == "per_call"} == {"False"}
    for suffix in (".json", ".csv", ".png"):
        written = m.save(tmp_path / f"{m.export_name}{suffix}")
        assert written.stat().st_size > 100
    assert (tmp_path / f"{m.export_name}.png").read_bytes().startswith(b"\x89PNG")
    assert m.export_name == "dashnb-lab-rtt0ms-server0ms-tls1.3-3calls"
    with pytest.raises(ValueError, match="json, .csv or .png"):
        m.save(tmp_path / "x.txt")


def test_the_timeout_sliders_reach_every_value_the_notebook_suggests():
    assert {0.03, 120.0, 300.0} <= set(TIMEOUT_STOPS)
    view = lab(measure=False, name="test-sliders")
    try:
        m, k = view.model, view.controls
        k["read_timeout"].value = 0.03  # "readTimeout below the round trip (e.g. 0.03 s at 40 ms)"
        assert m.read_timeout == 0.03
        m.connect_timeout = 7.5  # between two stops, set in code: the slider shows it
        assert k["connect_timeout"].value == 7.5 and k["connect_timeout"].label == "7.5"
        m.connect_timeout = 5.0
        assert 7.5 not in [v for _, v in k["connect_timeout"].options]
        # The values 04 suggests and every scenario's, on the sliders' stops.
        values = {"rtt_ms": {40, 100}, "ttfb_ms": {700}, "calls": {100}}
        for preset in LAB_SCENARIOS.values():
            for name, value in preset.settings().items():
                if name != "modes":
                    values.setdefault(name, set()).add(value)
        for name, wanted in values.items():
            control = k[name]
            for value in wanted:
                if hasattr(control, "step"):
                    assert control.min <= value <= control.max and (value - control.min) % control.step == 0, (
                        name,
                        value,
                    )
                else:
                    assert value in [v for _, v in control.options], (name, value)
    finally:
        view.close()


def test_the_panel_buttons_and_the_save_links():
    async def scenario():
        view = lab(rtt_ms=0, calls=2, modes=("shared",), debounce_s=0.0, name="test-buttons")
        try:
            await view.model.wait()
            assert view.exports.value == ""  # links only when asked for
            view.save.value = True
            links = view.exports.value
            view.buttons["pin"].click()
            assert view.model.pinned is view.model.result
            view.controls["y_axis"].value = "lock"
            assert view.model.y_axis == "lock"
            view.controls["rtt_ms"].value = 20
            await view.model.wait()
            assert "Since the pinned run" in view.table.value and view.exports.value != links
            assert "—" in view.table.value  # 2 calls: no p90, no p99
            view.buttons["unpin"].click()
            assert view.model.pinned is None
            view.buttons["reset"].click()
            assert view.model.rtt_ms == LabSettings().rtt_ms and view.controls["y_axis"].value == "keep"
            await view.model.wait()
            return links
        finally:
            view.close()

    links = run(scenario())
    found = dict(re.findall(r"download='([^']+)' href='data:[^;]+;base64,([^']+)'", links))
    assert sorted(name.rsplit(".", 1)[1] for name in found) == ["csv", "json", "png"]
    data = {name.rsplit(".", 1)[1]: base64.b64decode(b64) for name, b64 in found.items()}
    assert json.loads(data["json"])["lab"]["rtt_ms"] == 0
    assert data["csv"].startswith(b"mode,index,") and data["png"].startswith(b"\x89PNG")


def test_presenter_layout_is_the_same_lab_in_large_type():
    async def scenario():
        view = lab(rtt_ms=0, calls=2, modes=("shared",), debounce_s=0.0, presenter=True, name="test-presenter")
        try:
            await view.model.wait()
            return view, view._dom_classes, view._svg, view.children[0].value
        finally:
            view.close()

    view, classes, svg, css = run(scenario())
    assert "dashnb-lab-presenter" in classes and "<style>" in css and ".dashnb-lab-presenter" in css
    # An SVG whose text stays text, 13 pt in a 7.5 in figure: 16 px and more once scaled to the
    # plot's width in any window of 1024 px or wider (the browser test measures it).
    assert 'width="540pt"' in svg and "font-size: 13px" in svg and "<path" in svg


def test_the_claim_cells_of_04_never_read_the_panel():
    # Moving the panel's sliders must never break a claim: every cell that asserts measures a
    # LabModel (or emulator) of its own.
    nb = json.loads((pathlib.Path(__file__).parents[2] / "notebooks" / "04_latency_lab.ipynb").read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    claims = [src for src in code if "assert " in src]
    assert len(claims) >= 3
    for src in claims:
        assert not re.search(r"\blab\.", src), src


def test_one_redraw_per_measurement_even_when_the_scale_moves():
    async def scenario():
        view = lab(rtt_ms=0, calls=2, modes=("shared",), debounce_s=0.0, name="test-redraws")
        drawn = []
        view.plot.observe(lambda ch: drawn.append(view.model.scale), names="outputs")
        try:
            await view.model.wait()
            view.controls["rtt_ms"].value = 120  # the axis must grow: scale and result both change
            await view.model.wait()
            return drawn, view.model.scale
        finally:
            view.close()

    drawn, final = run(scenario())
    assert len(drawn) == 2 and drawn[-1] == final and drawn[0] != final


def test_the_pool_sliders_say_when_they_change_nothing_and_which_scenario_shows_them():
    # At the defaults (concurrency 2, pools of 32) no pool limit is ever reached.
    hint = lab_settings.pool_hint(LabSettings())
    assert "concurrency 2" in hint and LAB_SCENARIOS["pool_too_small"].label in hint
    shown = LabModel(scenario="pool_too_small")
    try:
        assert lab_settings.pool_hint(shown.settings()) == ""
    finally:
        shown.close()
    sequential = dataclasses.replace(LabSettings(), concurrency=8, calls=16, modes=("per_call", "shared"))
    assert "concurrently" in lab_settings.pool_hint(sequential)


def test_the_mode_picker_groups_every_mode_by_client_family():
    families = {name: lab_settings.mode_family(name) for name in MODES}
    assert set(families.values()) == set(lab_settings.MODE_FAMILIES)
    assert families["shared"] == families["sdk_threads"] == "requests"
    assert families["async"] == families["sdk_async"] == "aiohttp"
    assert families["v2_async_default"].startswith("dashscope") and families["openai_dashnb"].startswith("openai")


def test_the_connections_axis_counts_in_whole_numbers():
    model = LabModel(rtt_ms=0, calls=2, modes=("shared",))
    try:
        result = run(model.measure())
    finally:
        model.close()
    for connections in (1.0, 3.0, 7.5, 20.0):  # nice_ceiling's steps; 7.5 gave ticks at 2.5 and 7.5
        fig = lab_figure(result, scale=PlotScale(latency_ms=100.0, connections=connections))
        ticks = [t for t in fig.axes[1].get_xticks() if 0 <= t <= connections * 2]
        assert ticks and all(float(t).is_integer() for t in ticks), (connections, ticks)
