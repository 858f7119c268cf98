"""Fidelity: do shared and per_call p50 match the physical model of the emulated network?

Model (per the emulator's network model): a call on a kept-alive connection costs 1 RTT plus
server time; a call on a new connection costs 1 RTT for TCP, 1 (TLS 1.3) or 2 (TLS 1.2) for the
handshake, 1 for the request, plus server time plus the handshake's CPU. Server time and
handshake CPU are measured at rtt 0 in the same run (shared p50 at rtt 0 = server + client time
of a call; per_call p50 at rtt 0 = that + handshake CPU), so the prediction is:

    shared   = rtt + shared_p50(rtt 0)
    per_call = k * rtt + per_call_p50(rtt 0),   k = 3 (TLS 1.3) or 4 (TLS 1.2)
"""

from __future__ import annotations

import sys
import time

from _common import ms, pct, table

RTTS = (10.0, 40.0, 100.0)
CALLS = {0.0: 60, 10.0: 40, 40.0: 30, 100.0: 20}
GOAL = 5.0


def run() -> tuple[str, dict]:
    from dashnb import _measure, emulator

    emu = emulator.start(rtt_ms=0.0)
    rows, data = [], {}
    t_start = time.perf_counter()
    for tls, k in (("1.3", 3), ("1.2", 4)):
        emu.configure(tls=tls, rtt_ms=0.0)
        base = _measure.compare(["per_call", "shared"], calls=CALLS[0.0], endpoint=emu, progress=False)
        shared0, per_call0 = base["shared"].summary.p50_ms, base["per_call"].summary.p50_ms
        rows.append([tls, "0", "shared", ms(shared0), "(baseline: server + client time)", "", "", ""])
        rows.append(
            [
                tls,
                "0",
                "per_call",
                ms(per_call0),
                f"(baseline: + handshake CPU {per_call0 - shared0:.1f} ms)",
                "",
                "",
                "",
            ]
        )
        for rtt in RTTS:
            emu.configure(rtt_ms=rtt)
            r = _measure.compare(["per_call", "shared"], calls=CALLS[rtt], endpoint=emu, progress=False)
            for mode, predicted in (("shared", rtt + shared0), ("per_call", k * rtt + per_call0)):
                s = r[mode].summary
                err = 100.0 * (s.p50_ms - predicted) / predicted
                data[f"tls{tls}_rtt{rtt:g}_{mode}"] = {
                    "measured_ms": s.p50_ms,
                    "predicted_ms": predicted,
                    "error_pct": err,
                    "errors": s.errors,
                }
                rows.append(
                    [
                        tls,
                        f"{rtt:g}",
                        mode,
                        ms(s.p50_ms),
                        ms(predicted),
                        pct(err),
                        f"{s.p50_ms - predicted:+.1f}",
                        "yes" if abs(err) <= GOAL else "NO",
                    ]
                )
    emu.stop()
    worst = max(abs(v["error_pct"]) for v in data.values())
    data["worst_error_pct"] = worst
    text = "\n".join(
        [
            "## Fidelity: p50 against the physical model",
            "",
            'Embedded emulator (same process), `dashnb.compare(["per_call", "shared"])` through '
            "`Generation.call`, interleaved, warm-up excluded. Calls per mode: "
            + ", ".join(f"{c} at rtt {r:g}" for r, c in CALLS.items())
            + ". "
            "Prediction: shared = rtt + shared p50 at rtt 0; per_call = k x rtt + per_call p50 at rtt 0 "
            "(k = 3 for TLS 1.3, 4 for TLS 1.2). Goal: within 5%.",
            "",
            table(["TLS", "rtt ms", "mode", "p50 ms", "predicted ms", "error", "excess ms", "within 5%"], rows),
            "",
            f"Worst error: {worst:.1f}% ({time.perf_counter() - t_start:.0f} s).",
        ]
    )
    return text, data


if __name__ == "__main__":
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    print(run()[0])
