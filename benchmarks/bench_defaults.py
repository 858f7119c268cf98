"""`python -m dashnb bench --rtt-ms 40` as shipped: every default mode, 50 calls, concurrency 16."""

from __future__ import annotations

import time


def run() -> tuple[str, dict]:
    from dashnb import _measure, emulator

    emu = emulator.start(rtt_ms=40.0)
    emu.configure(rtt_ms=40.0, tls="1.3")
    t = time.perf_counter()
    r = _measure.compare(calls=50, concurrency=16, endpoint=emu, progress=False)
    elapsed = time.perf_counter() - t
    emu.stop()
    text = "\n".join(
        [
            "## `python -m dashnb bench --rtt-ms 40` (defaults: 50 calls per mode, concurrency 16)",
            "",
            "Embedded emulator, TLS 1.3, rtt 40 ms; modes interleaved in rounds after a warm-up. "
            "Connections: opened as dashnb's hooks (or urllib3's pool counters, for the SDK's own session) "
            "saw them / accepted as the emulator counted them.",
            "",
            "```",
            str(r),
            "```",
            "",
            f"({elapsed:.0f} s.) The concurrent modes' p90/p99 are the calls that opened one of their "
            f"connections; their p50 is a reused connection.",
        ]
    )
    return text, r.to_dict()
