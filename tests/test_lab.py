"""The latency lab's model (and its view's wiring) without a kernel or a browser.

Each test drives a LabModel on a plain asyncio loop against the model's own emulators (real
sockets, real TLS, emulated round trips); the browser tests in tests/browser/ cover the panel
in JupyterLab and Voila.
"""

from __future__ import annotations

import asyncio
import base64
import json
import pathlib
import time

import pytest
import traitlets

from dashnb import SCENARIOS, PoolConfig
from dashnb._lab_model import LabModel, LabSettings
from dashnb._lab_view import lab


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
            first = view.plot.outputs[0]["data"]["image/png"]
            assert "per_call" in view.table.value and "done in" in view.status.value

            view.controls["rtt_ms"].value = 30  # what a slider release does
            assert view.model.rtt_ms == 30
            await view.model.wait()
            assert view.model.measured.rtt_ms == 30
            assert view.plot.outputs[0]["data"]["image/png"] != first
            assert len(view.plot.outputs) == 1

            view.mode_boxes["async"].value = True
            assert view.model.modes == ("per_call", "shared", "async")
            await view.model.wait()
            assert list(view.model.latency_ms) == ["per_call", "shared", "async"]

            for box in view.mode_boxes.values():
                box.value = False
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
            return before, after, latest, view.plot.outputs[0]["data"]["image/png"]
        finally:
            view.close()

    before, after, latest, shown = run(scenario())
    assert "image/png" not in before  # nothing measured yet: no picture to offer
    for bundle in (after, latest):
        assert {"text/plain", "application/vnd.jupyter.widget-view+json", "image/png"} <= set(bundle)
        assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG\r\n\x1a\n")
    assert latest["image/png"] == shown != after["image/png"]  # the latest plot, not the first
    assert "server" in latest["text/plain"]


def test_the_committed_lab_notebook_shows_a_picture_without_widgets():
    # GitHub and other renderers without the widget manager skip the widget view: the panel's
    # output must carry its plot as a PNG beside it, not only an empty box.
    nb = json.loads((pathlib.Path(__file__).parent.parent / "notebooks" / "04_latency_lab.ipynb").read_text())
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
