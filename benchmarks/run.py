"""Run every benchmark and write benchmarks/RESULTS.md (`make bench`).

    $ .venv/bin/python benchmarks/run.py            # all, about two minutes
    $ .venv/bin/python benchmarks/run.py fidelity   # one (prints it, leaves RESULTS.md alone)

Not part of `make test`: these measure, they do not assert. Each benchmark measures the things
it compares side by side in one run, interleaved, after a warm-up.
"""

from __future__ import annotations

import datetime
import importlib
import os
import sys
import time

from dashnb._atomic import write_atomic

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

BENCHMARKS = ("bench_defaults", "fidelity", "overhead", "throughput", "capacity")


def main(argv: list[str]) -> int:
    from _common import machine

    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    sections, data = [], {}
    t0 = time.perf_counter()
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        text, figures = importlib.import_module(name).run()
        sections.append(text)
        data[name] = figures
        if argv:
            print(text + "\n")
    if argv:
        return 0
    m = machine()
    now = datetime.datetime.now(datetime.timezone.utc)
    head = "\n".join(
        [
            "# Benchmark results",
            "",
            f"- Date: {now:%Y-%m-%d %H:%M} UTC",
            f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['os']}",
            f"- Software: Python {m['python']}, dashscope {m['dashscope']}, aiohttp {m['aiohttp']}, "
            f"requests {m['requests']}, urllib3 {m['urllib3']}",
            "- Reproduce: `make bench` (runs `.venv/bin/python benchmarks/run.py`; one benchmark: "
            "`.venv/bin/python benchmarks/run.py fidelity`)",
            f"- Total run time: {time.perf_counter() - t0:.0f} s",
            "",
            "All calls go through the official dashscope SDK unless a row says otherwise; latencies are "
            "per-call wall times (`time.perf_counter()`), p50 unless stated. Figures from one run on a "
            "shared machine: expect a few percent of noise between runs.",
        ]
    )
    write_atomic(os.path.join(HERE, "RESULTS.md"), head + "\n\n" + "\n\n".join(sections) + "\n")
    print(f"wrote {os.path.join(HERE, 'RESULTS.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
