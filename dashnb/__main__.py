"""Command line: `python -m dashnb serve` runs the emulator; `bench` measures reuse; `doctor` says where calls go.

$ python -m dashnb serve --rtt-ms 40
$ python -m dashnb bench --rtt-ms 40 --calls 50
$ python -m dashnb bench --scenario europe_to_singapore     # assumed rtt and server time
$ python -m dashnb doctor                                   # where calls go, what is trusted, which proxy
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import signal
import sys
import threading
import warnings
from typing import Any

from . import emulator
from ._atomic import write_atomic
from ._doctor import report
from ._endpoint import OFFLINE_ENV, DashScope, offline
from ._install.commands import add_parsers as _install_parsers
from ._measure import compare
from ._modes.registry import DEFAULT_MODES, MODES, check_modes, mode_class
from ._scenarios import SCENARIOS, predict_reuse
from .emulator._options import PROFILE_CHOICES, TLS_CHOICES


def _serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="run the DashScope emulator until Ctrl-C")
    p.add_argument("--rtt-ms", type=float, default=40.0, help="emulated network round trip (default 40)")
    p.add_argument("--jitter-ms", type=float, default=0.0, help="random extra delay per round trip")
    p.add_argument("--tls", choices=TLS_CHOICES, default="1.3", help="TLS version, or off for plain HTTP")
    p.add_argument(
        "--profile",
        choices=PROFILE_CHOICES,
        default="instant",
        help="server time: instant (none but --ttfb-ms; the default) or realistic (each model's assumed "
        "time to first token and tokens per second, with jitter)",
    )
    p.add_argument("--ttfb-ms", type=float, default=0.0, help="server time before the first byte")
    p.add_argument("--ttfb-jitter-ms", type=float, default=0.0, help="random extra server time, 0 to this, per request")
    p.add_argument("--rate-limit", type=float, default=None, help="requests per second before 429 (default: none)")
    p.add_argument(
        "--host", default=None, help="address to listen on (default 127.0.0.1; with --public, 0.0.0.0: every address)"
    )
    p.add_argument("--port", type=int, default=0, help="port (default: any free port)")
    p.add_argument(
        "--public",
        action="store_true",
        help="listen beyond this machine: on every address, or on a non-loopback --host (prints a warning)",
    )
    p.set_defaults(func=_serve, parser=p)


def _as_flags(message: str) -> str:
    """The emulator's messages name its Python options (``rtt_ms``, ``public=True``); on the
    command line the user typed flags, so name those."""
    message = message.replace("public=True (CLI: --public)", "--public")
    return re.sub(r"emulator option (\w+)", lambda m: "--" + m.group(1).replace("_", "-"), message)


def _serve_host(host: str | None, public: bool) -> str:
    """Where `serve` listens: --host, else loopback, or every address when --public asks to be
    reachable from the network (listening on loopback then would make --public do nothing)."""
    if host is not None:
        return host
    return "0.0.0.0" if public else "127.0.0.1"


def _listen_error(exc: OSError, host: str, port: int) -> str:
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return f"cannot listen on {where}: the port is in use; pick another --port, or leave it out for a free one"
    if exc.errno == errno.EACCES:
        return f"cannot listen on {where}: permission denied (ports below 1024 need privileges); pick another --port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: this machine has no such address; check --host"
    return f"cannot listen on {where}: {exc.strerror or exc}"


def _serve_setup(emu: Any) -> str:
    """What to paste to point each client at this emulator, for the shell that runs the client."""
    lines = [
        "In the shell that runs your program:",
        f"  export DASHSCOPE_HTTP_BASE_URL={emu.base_url}",
        f"  export DASHSCOPE_API_KEY={emu.api_key}",
        f"  export OPENAI_BASE_URL={emu.compatible_base_url}",
        f"  export OPENAI_API_KEY={emu.api_key}",
    ]
    if emu.scheme == "https":
        lines += [
            f"  export REQUESTS_CA_BUNDLE={emu.ca_path}",
            f"  export SSL_CERT_FILE={emu.ca_path}",
            "(requests, so Generation.call, trusts REQUESTS_CA_BUNDLE; httpx, so dashscope.Client and the openai",
            "SDK, trusts SSL_CERT_FILE, in place of the system's CAs: set it in this shell only)",
        ]
    messages = '[{"role": "user", "content": "hi"}]'
    snippets = {
        "dashscope SDK, sync (Generation.call):": (
            "from dashscope import Generation",
            'print(Generation.call(model="qwen-plus", prompt="hi").output.text)',
        ),
        "dashscope SDK v2 (dashscope.Client):": (
            "import dashscope",
            f'reply = dashscope.Client().chat.completions.create(model="qwen-plus", messages={messages})',
            "print(reply.choices[0].message.content)",
        ),
        "openai SDK:": (
            "import openai",
            f'reply = openai.OpenAI().chat.completions.create(model="qwen-plus", messages={messages})',
            "print(reply.choices[0].message.content)",
        ),
    }
    if emu.scheme == "https":
        snippets[
            "dashscope SDK, async (AioGeneration.call): its own session trusts certifi's CAs only and ignores "
            "the variables above, so pass a dashnb session, which reads them:"
        ] = (
            "import dashnb",
            "from dashscope import AioGeneration",
            "",
            "async def main():",
            "    s = dashnb.session()  # DASHSCOPE_API_KEY and DASHSCOPE_HTTP_BASE_URL: this emulator",
            '    r = await AioGeneration.call(model="qwen-plus", prompt="hi", session=s.aiohttp)',
            "    print(r.output.text)",
            "",
            "dashnb.run(main())",
        )
    else:  # plain HTTP: nothing to trust, so the SDK's own session will do
        snippets["dashscope SDK, async (AioGeneration.call):"] = (
            "import asyncio",
            "from dashscope import AioGeneration",
            'print(asyncio.run(AioGeneration.call(model="qwen-plus", prompt="hi")).output.text)',
        )
    lines.append("Then, in Python:")
    for title, code in snippets.items():
        lines.append(f"  {title}")
        lines += [f"    {line}".rstrip() for line in code]
    return "\n".join(lines)


def _serve(args) -> int:

    host = _serve_host(args.host, args.public)
    options = dict(
        rtt_ms=args.rtt_ms,
        jitter_ms=args.jitter_ms,
        tls=args.tls,
        profile=args.profile,
        ttfb_ms=args.ttfb_ms,
        ttfb_jitter_ms=args.ttfb_jitter_ms,
        rate_limit=args.rate_limit,
        host=host,
        port=args.port,
        public=args.public,
    )
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            emu = emulator.start(**options)
    except ValueError as exc:
        print(f"dashnb serve: {_as_flags(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:  # the bind failed: one line, not the server thread's traceback
        print(f"dashnb serve: {_listen_error(exc, host, args.port)}", file=sys.stderr)
        return 1
    for w in caught:
        print(f"WARNING: {_as_flags(str(w.message))}", file=sys.stderr)
    done = threading.Event()
    # Set both handlers explicitly: a program started in the background by a non-interactive
    # shell inherits SIGINT as *ignored*, and Python then installs no KeyboardInterrupt handler,
    # so without this `kill -INT` (and a test's Ctrl-C) would not stop it.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    try:
        print(f"DashScope emulator: {emu.label}")
        print(f"  native base URL:      {emu.base_url}")
        print(f"  compatible base URL:  {emu.compatible_base_url}")
        print(f"  CA certificate:       {emu.ca_path}")
        print(f"  test API key:         {emu.api_key}")
        print(_serve_setup(emu))
        print("Serving until Ctrl-C (SIGINT) or SIGTERM.", flush=True)
        done.wait()
    finally:
        emu.stop()
    print("stopped.")
    return 0


def _mode_list(text: str) -> list[str]:
    try:
        return check_modes(m.strip() for m in text.split(",") if m.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _bench_parser(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="compare connection-reuse modes through the dashscope SDK",
        description="Call the model in each mode (interleaved, after a warm-up) and print "
        "p50/p90/p99/mean latency, throughput, and connections opened as the "
        "client and the emulator counted them.",
    )

    p.add_argument("--rtt-ms", type=float, default=None, help="emulated round trip (default 40, or the scenario's)")
    p.add_argument(
        "--scenario",
        choices=list(SCENARIOS),
        default=None,
        help="an assumed network and server time (dashnb.SCENARIOS; --rtt-ms/--ttfb-ms override it)",
    )
    p.add_argument("--calls", type=int, default=50, help="measured calls per mode (default 50)")
    p.add_argument(
        "--concurrency",
        type=int,
        default=16,
        help="threads / async calls in flight for the concurrent modes (default 16)",
    )
    p.add_argument(
        "--modes",
        type=_mode_list,
        nargs="+",
        default=None,
        metavar="MODE",
        help=f"modes, space or comma separated (default: {' '.join(DEFAULT_MODES)}; "
        f"also: {' '.join(m for m in MODES if m not in DEFAULT_MODES)})",
    )
    p.add_argument("--tls", choices=TLS_CHOICES, default="1.3", help="emulator TLS version (default 1.3)")
    p.add_argument(
        "--ttfb-ms",
        type=float,
        default=None,
        help="emulated server time before the first byte (default 0, or the scenario's); the calls are not streamed",
    )
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE ('-' for stdout)")
    p.add_argument(
        "--real",
        action="store_true",
        help="call the real DashScope service instead (needs DASHSCOPE_API_KEY; costs tokens)",
    )
    p.add_argument("--region", choices=("intl", "cn"), default="intl", help="region for --real (default intl)")
    p.add_argument("--model", default="qwen-plus", help="model name (default qwen-plus)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_bench, parser=p)


def _json_path_problem(path: str) -> str | None:
    """Why ``--json path`` could not be written, found before the benchmark runs (not after)."""
    if path == "-":
        return None
    if os.path.isdir(path):
        return f"--json {path}: is a directory; name a file"
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        return f"--json {path}: the directory {parent} does not exist"
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        return f"--json {path}: not writable"
    return None


def _legend(modes: list[str], concurrency: int) -> str:
    width = max(len(m) for m in modes)
    lines = ["modes:"]
    for m in modes:
        lines.append(f"  {m.ljust(width)}  {MODES[m].replace(' N ', f' {concurrency} ')}")
    return "\n".join(lines)


def _bench(args: Any) -> int:
    stop = _StopOnSignals()
    try:
        return _bench_run(args, stop)
    finally:
        stop.restore()


def _bench_run(args: Any, stop: _StopOnSignals) -> int:
    modes = [m for group in args.modes for m in group] if args.modes else list(DEFAULT_MODES)
    if args.calls < 1 or args.concurrency < 1:
        print("dashnb bench: --calls and --concurrency must be >= 1", file=sys.stderr)
        return 2
    if args.json and (problem := _json_path_problem(args.json)):
        print(f"dashnb bench: {problem}", file=sys.stderr)
        return 2
    concurrent = [m for m in modes if mode_class(m).concurrent]
    if concurrent and args.calls <= args.concurrency:
        print(
            f"dashnb bench: warning: --calls {args.calls} is not more than --concurrency {args.concurrency}: "
            f"{', '.join(concurrent)} start every call at once, each on a connection of its own, so nothing "
            f"is reused; pass --calls {2 * args.concurrency} or more to compare reuse",
            file=sys.stderr,
        )
    emu = None
    endpoint: Any
    if args.real:
        emulated = {"--scenario": args.scenario, "--rtt-ms": args.rtt_ms, "--ttfb-ms": args.ttfb_ms}
        given = [k for k, v in emulated.items() if v is not None]
        if given:
            print(
                f"dashnb bench --real: {', '.join(given)} set the emulator's network and server time; the real "
                "service's are what they are (drop them, or drop --real to emulate them)",
                file=sys.stderr,
            )
            return 2

        if offline():
            print(f"dashnb bench --real: {OFFLINE_ENV} is set, which keeps every call on this machine", file=sys.stderr)
            return 2
        endpoint = DashScope(args.region)
        if not endpoint.has_api_key:
            print("dashnb bench --real: set DASHSCOPE_API_KEY (each call costs tokens)", file=sys.stderr)
            return 2
    else:
        sc = SCENARIOS[args.scenario] if args.scenario else None
        rtt = args.rtt_ms if args.rtt_ms is not None else (sc.rtt_ms if sc else 40.0)
        ttfb = args.ttfb_ms if args.ttfb_ms is not None else (sc.ttfb_ms if sc else 0.0)
        try:
            # Private: nothing else in this process may use or reconfigure it during the run.
            emu = endpoint = emulator.start(rtt_ms=rtt, tls=args.tls, ttfb_ms=ttfb, shared=False)
        except ValueError as exc:
            print(f"dashnb bench: {_as_flags(str(exc))}", file=sys.stderr)
            return 2
        if sc is not None:
            print(f"dashnb bench: scenario {sc}", file=sys.stderr)
    server = f", server time {emu.options.ttfb_ms:g} ms" if emu is not None else ""
    print(
        f"dashnb bench: {endpoint.label}{server}; {args.calls} calls per mode, concurrency {args.concurrency}",
        file=sys.stderr,
        flush=True,
    )
    total = args.calls * len(modes)
    try:
        if stop.received:  # a signal while the emulator started: nothing measured, nothing to wait for
            raise KeyboardInterrupt
        stop.running = True
        result = compare(
            modes,
            calls=args.calls,
            concurrency=args.concurrency,
            endpoint=endpoint,
            model=args.model,
            progress=False if args.no_progress else (True if sys.stderr.isatty() else _progress_lines(total)),
        )
    except KeyboardInterrupt as exc:  # SIGINT or SIGTERM (_stop_on_signals)
        stop.running = False
        return _interrupted(args, modes, getattr(exc, "partial", None), stop.received or signal.SIGINT)
    except RuntimeError as exc:
        print(f"dashnb bench: {exc}", file=sys.stderr)
        return 1
    finally:
        stop.running = False  # a signal from here on is noted, and the results are still saved
        if emu is not None:
            emu.stop()
    if args.scenario:
        result.settings["scenario"] = args.scenario
    print(result)
    print(_legend(modes, args.concurrency))
    if emu is not None and {"per_call", "shared"} <= set(modes) and result.ratio("per_call", "shared") is not None:
        print(_model_line(result))
    if args.json and not _save_json(args.json, result):
        return 1
    if stop.received:
        return _SIGNAL_EXIT[stop.received]
    return 1 if any(s.calls and s.errors == s.calls for s in result.summary) else 0


#: The exit codes of a shell's job killed by each signal (128 + its number).
_SIGNAL_EXIT: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}


class _StopOnSignals:
    """SIGINT and SIGTERM during a bench: the first stops the run (a KeyboardInterrupt in the main
    thread, which ``compare`` answers with what it measured); any later one, or one after the run,
    is only noted, so that what was measured is still printed and saved."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.running = False  # True while compare() runs: only then does a signal interrupt
        # Set explicitly, as serve does: a bench started in the background by a non-interactive
        # shell inherits SIGINT as ignored, and a SIGTERM would otherwise end it without a word.
        # (Only the main thread may set handlers: main() called from another thread goes without.)
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in _SIGNAL_EXIT}

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            if handler is not None:  # None: set outside Python, which cannot be put back from here
                signal.signal(sig, handler)

    def _handle(self, signum: int, _frame: Any) -> None:
        first = self.received is None
        if first:
            self.received = signum
        if first and self.running:
            raise KeyboardInterrupt
        # os.write: print() here could re-enter a print the signal interrupted.
        note = f"dashnb bench: {signal.Signals(signum).name}: already stopping; saving what was measured\n"
        os.write(2, note.encode())


def _progress_lines(total: int) -> Any:
    """Without a terminal for a bar: a line at the first call and every tenth of the run, so a log
    (or a job in the background) shows that it runs and how far."""
    step = max(1, total // 10)

    def progress(done: int, total: int) -> None:
        if done == 1 or done % step == 0 or done == total:
            print(f"dashnb bench: {done}/{total} calls", file=sys.stderr, flush=True)

    return progress


def _interrupted(args: Any, modes: list[str], partial: Any, signum: int) -> int:
    name = signal.Signals(signum).name
    done = sum(s.calls for s in partial.summary) if partial is not None else 0
    if not done:
        print(f"dashnb bench: interrupted by {name} before any call finished; nothing to save", file=sys.stderr)
        return _SIGNAL_EXIT[signum]
    partial.settings["interrupted"] = name
    if args.scenario:
        partial.settings["scenario"] = args.scenario
    print(partial)
    print(_legend(modes, args.concurrency))
    saved = ""
    if args.json and _save_json(args.json, partial, quiet=True) and args.json != "-":
        saved = f"; saved to {args.json}"
    print(
        f"dashnb bench: interrupted by {name} after {done} of {args.calls * len(modes)} calls: "
        f"the results above are partial{saved}",
        file=sys.stderr,
    )
    return _SIGNAL_EXIT[signum]


def _save_json(path: str, result: Any, *, quiet: bool = False) -> bool:
    """Write ``result`` as JSON to ``path`` ('-': stdout); atomically, so a failed write (a full
    disk) leaves the previous file whole. False, with the JSON on stdout, when it cannot."""
    text = result.to_json()
    if path == "-":
        print(text)
        return True
    try:
        write_atomic(path, text + "\n")
    except OSError as exc:  # checked before the run, yet it can still fail: keep the results
        print(
            f"dashnb bench: cannot write {path} ({exc.strerror or exc}); {path} is unchanged; the JSON follows",
            file=sys.stderr,
        )
        print(text)
        return False
    if not quiet:
        print(f"wrote {path}", file=sys.stderr)
    return True


def _model_line(result: Any) -> str:
    st = result.settings
    p = predict_reuse(st["rtt_ms"], st["ttfb_ms"], tls=st["tls"])
    return f"model (dashnb.predict_reuse): {p}; measured per_call/shared p50 {result.ratio('per_call', 'shared'):.2f}x"


def _doctor_parser(sub: Any) -> None:
    p = sub.add_parser(
        "doctor",
        help="say where calls go, what is trusted and which proxy is used (never prints a key)",
        description="Where dashnb's calls go (and why), the CA bundle sessions trust and where it comes "
        "from, the proxy the real service would be reached through, and the versions in use. "
        "Reads the environment only: no call is made.",
    )
    p.set_defaults(func=_doctor, parser=p)


def _doctor(args: Any) -> int:
    text, ok = report()
    print(text)
    return 0 if ok else 1


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m dashnb", description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _bench_parser(sub)
    _doctor_parser(sub)
    _install_parsers(sub)  # notebooks, lab, workshop
    return top


def main(argv=None) -> int:
    # parse_known_args, so that an unknown flag is reported with the usage of the command it was
    # given to (`serve --foo` shows serve's flags), not the top-level usage.
    args, unknown = parser().parse_known_args(argv)
    if unknown:
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
