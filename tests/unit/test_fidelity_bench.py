"""The fidelity benchmark's arithmetic: model, excess and the machine control, on synthetic passes."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "benchmarks"))

import fidelity  # noqa: E402


def _cell(p50, cpu=1.0, late=None, spin=None):
    return {"p50_ms": p50, "cpu_ms": cpu, "late_us": late, "spin_ms": spin, "errors": 0}


def _pass(extra_ms: float, machine: bool = True) -> dict:
    """One pass: rtt-0 calls of 1 ms (shared) and 4 ms (per_call), each rtt cell `extra_ms` over the model."""
    out = {}
    for tls, k in (("1.3", 3), ("1.2", 4)):
        cells = {"0": {"shared": _cell(1.0), "per_call": _cell(4.0)}}
        for rtt in fidelity.RTTS:
            cells[f"{rtt:g}"] = {
                "shared": _cell(rtt + 1.0 + extra_ms, late=50.0, spin=0.6),
                "per_call": _cell(k * rtt + 4.0 + extra_ms, late=50.0, spin=1.2),
            }
            cells[f"gap{rtt:g}"] = {"shared": _cell(1.5), "per_call": _cell(4.5)}
            if machine:
                cells[f"machine{rtt:g}"] = {"unit": _cell(1.0 + rtt / 1000.0)}
        if machine:
            cells["machine0"] = {"unit": _cell(1.0)}
        out[f"tls{tls}"] = cells
    return out


def test_the_machine_control_is_charged_once_per_round_trip_a_call_waits_through():
    data = fidelity.figures(fidelity._median_of_runs([_pass(0.2), _pass(0.4), _pass(0.3)]))
    shared, new12 = data["tls1.3_rtt100_shared"], data["tls1.2_rtt100_per_call"]
    assert shared["excess_ms"] == pytest.approx(0.3)  # the median of the three passes
    assert shared["machine_ms"] == pytest.approx(0.1)  # one pause of 100 ms: +0.1 ms
    assert new12["machine_ms"] == pytest.approx(0.4)  # TLS 1.2, new connection: four pauses
    assert new12["beyond_machine_ms"] == pytest.approx(0.3 - 0.4)
    assert shared["spin_us_per_crossing"] == pytest.approx(300.0)  # 0.6 ms over 2 crossings
    assert new12["spin_us_per_crossing"] == pytest.approx(200.0)  # 1.2 ms over 6


def test_passes_saved_before_the_machine_control_still_report():
    # An older pass (no machine cells) beside a newer one: the control comes from the pass that has it.
    data = fidelity.figures(fidelity._median_of_runs([_pass(0.2, machine=False), _pass(0.2)]))
    assert data["tls1.3_rtt40_shared"]["machine_ms"] == pytest.approx(0.04)
    old = fidelity.figures(fidelity._median_of_runs([_pass(0.2, machine=False)]))
    assert old["tls1.3_rtt40_shared"]["machine_ms"] is None
    text = fidelity.render(old, 1, 0.0)
    assert "machine control" in text and "| - |" in text
