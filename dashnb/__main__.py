"""Command line: `python -m dashnb serve` runs the emulator; `python -m dashnb bench` measures reuse.

$ python -m dashnb serve --rtt-ms 40
$ python -m dashnb bench --rtt-ms 40 --calls 50
"""

from __future__ import annotations

import argparse
import sys


def _serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="run the DashScope emulator until Ctrl-C")
    p.add_argument("--rtt-ms", type=float, default=40.0, help="emulated network round trip (default 40)")
    p.add_argument("--jitter-ms", type=float, default=0.0, help="random extra delay per round trip")
    p.add_argument("--tls", choices=("1.3", "1.2", "off"), default="1.3", help="TLS version, or off for plain HTTP")
    p.add_argument("--ttfb-ms", type=float, default=0.0, help="server time before the first byte")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback unless --public)")
    p.add_argument("--port", type=int, default=0, help="port (default: any free port)")
    p.add_argument("--public", action="store_true", help="allow a non-loopback --host (prints a warning)")
    p.set_defaults(func=_serve)


def _serve(args) -> int:
    import signal
    import threading
    import warnings

    from . import emulator

    options = dict(
        rtt_ms=args.rtt_ms,
        jitter_ms=args.jitter_ms,
        tls=args.tls,
        ttfb_ms=args.ttfb_ms,
        host=args.host,
        port=args.port,
        public=args.public,
    )
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            emu = emulator.start(**options)
    except ValueError as exc:
        print(f"dashnb serve: {exc}", file=sys.stderr)
        return 2
    for w in caught:
        print(f"WARNING: {w.message}", file=sys.stderr)
    print(f"DashScope emulator: {emu.label}")
    print(f"  native base URL:      {emu.base_url}")
    print(f"  compatible base URL:  {emu.compatible_base_url}")
    print(f"  CA certificate:       {emu.ca_path}")
    print(f"  test API key:         {emu.api_key}")
    print("Point the dashscope SDK at it (in the shell that runs your program):")
    print(f"  export DASHSCOPE_HTTP_BASE_URL={emu.base_url}")
    print(f"  export DASHSCOPE_API_KEY={emu.api_key}")
    if emu.scheme == "https":
        print(f"  export REQUESTS_CA_BUNDLE={emu.ca_path}   # so requests trusts the emulator's CA")
    print("Serving until Ctrl-C.", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
    print("stopped.")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashnb", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    try:
        from ._measure import add_bench_parser
    except ModuleNotFoundError as exc:
        if exc.name != "dashnb._measure":
            raise
    else:
        add_bench_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
