"""API keys never show: reprs, HTML reprs, logs, exception texts, session stats, widget state,
executed notebook outputs.

The key is built at run time ("sk-" + 24 random characters), so nothing key-like is committed,
and it is recognisable wherever it might leak.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import pathlib
import re
import secrets
import socket
import subprocess
import sys
import time
import traceback

import aiohttp
import pytest
import requests

import dashnb
from dashnb import _endpoint
from dashnb._session import manager as _session

dashscope = pytest.importorskip("dashscope")
from dashscope import AioGeneration, Generation  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
LOGGERS = ("", "dashnb", "urllib3", "requests", "aiohttp", "asyncio", "dashscope")


def _fake_key() -> str:
    return "sk-" + secrets.token_hex(12)


def _leaks(key: str, *texts: str) -> list[str]:
    # the whole key, and its distinctive tail (a key cut in half must not show either)
    return [t[:200] for t in texts if key in t or key[-12:] in t]


@pytest.fixture
def debug_logs(caplog):
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def _log_text(caplog) -> list[str]:
    out = [caplog.text]
    for r in caplog.records:
        out.append(r.getMessage())
        if r.exc_info:
            out.append("".join(traceback.format_exception(*r.exc_info)))
    return out


def _exception_texts(exc: BaseException) -> list[str]:
    return [str(exc), repr(exc), "".join(traceback.format_exception(exc))]


@pytest.fixture
def unreachable():
    """A 127.0.0.1 port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"https://127.0.0.1:{port}"


def _pointed_at(ep, origin):
    ep._origin = origin  # the real endpoint class and its key handling, at a local address
    return ep


@pytest.mark.parametrize("source", ["env", "argument"])
def test_key_never_in_reprs_logs_exceptions_or_stats(source, unreachable, debug_logs, monkeypatch):
    key = _fake_key()
    if source == "env":
        monkeypatch.setenv("DASHSCOPE_API_KEY", key)
        ep = _endpoint.endpoint()
        assert isinstance(ep, dashnb.DashScope)
    else:
        monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
        ep = dashnb.DashScope("intl", api_key=key)
    assert ep.api_key == key
    _pointed_at(ep, unreachable)
    _endpoint.use_endpoint(ep)
    s = _session.session(endpoint=ep, name=f"secrets-{source}-{time.monotonic_ns()}")
    texts = [repr(ep), str(ep), ep._repr_html_(), str(vars(ep)), repr(s), str(s), s._repr_html_()]
    failures: list[BaseException] = []
    try:
        for call in (
            lambda: Generation.call(model="qwen-plus", prompt="hi", session=s.requests),
            lambda: Generation.call(model="qwen-plus", prompt="hi", stream=True, session=s.requests),
            lambda: s.requests.post(ep.base_url + "/x", headers={"Authorization": f"Bearer {key}"}),
        ):
            with pytest.raises(requests.exceptions.ConnectionError) as info:
                r = call()
                list(r) if not isinstance(r, requests.Response) else r
            failures.append(info.value)

        async def main():
            for stream in (False, True):
                with pytest.raises(aiohttp.ClientConnectionError) as info:
                    r = await AioGeneration.call(model="qwen-plus", prompt="hi", stream=stream, session=s.aiohttp)
                    if stream:
                        [c async for c in r]
                failures.append(info.value)

        asyncio.run(main())

        from dashnb._ask import core as _ask

        with pytest.raises(_ask.AskError) as info:
            _ask.ask("hi", session=s, stream=False)
        failures.append(info.value)
        texts += [repr(s), s._repr_html_(), json.dumps(s.stats()), repr(s.requests.adapters), repr(s.config)]
    finally:
        s.close()
        gc.collect()
    for exc in failures:
        texts += _exception_texts(exc)
    texts += _log_text(debug_logs)
    assert len(failures) == 6 and debug_logs.records  # the failures happened and were logged
    assert any("Starting new HTTPS connection" in r.getMessage() for r in debug_logs.records)
    assert _leaks(key, *texts) == []
    # negative control: the check finds a key where there is one
    assert _leaks(key, f"Authorization: Bearer {key}") and _leaks(key, key[-12:])
    print(
        f"\n[case 12] key by {source}: {len(texts)} texts ({len(debug_logs.records)} log records at DEBUG, "
        f"{len(failures)} exception tracebacks) scanned, 0 leaks"
    )


def test_key_never_in_http_error_replies_or_their_logs(emu, debug_logs):
    """A wrong key sent to the emulator: the 401 reply, the SDK's response object and every
    log line leave the key out."""
    key = _fake_key()
    s = _session.session(endpoint=emu, name=f"secrets-401-{time.monotonic_ns()}")
    try:
        _endpoint.use_endpoint(emu)
        r = Generation.call(model="qwen-plus", prompt="hi", api_key=key, session=s.requests)

        async def main():
            return await AioGeneration.call(model="qwen-plus", prompt="hi", api_key=key, session=s.aiohttp)

        r2 = asyncio.run(main())
    finally:
        s.close()
    assert r.status_code == 401 and r2.status_code == 401
    texts = [repr(r), str(r), repr(r2), str(r2), *_log_text(debug_logs)]
    assert _leaks(key, *texts) == [] and _leaks(emu.api_key, *texts) == []
    print(f"\n[case 12] 401 replies: {len(texts)} texts scanned, 0 leaks")


def test_key_never_in_lab_widget_state(monkeypatch):
    try:
        from dashnb._lab import view as _lab
    except ModuleNotFoundError:
        pytest.skip("dashnb._lab does not exist yet: widget state not checked")
    pytest.importorskip("ipywidgets")
    key = _fake_key()
    monkeypatch.setenv("DASHSCOPE_API_KEY", key)

    async def main():
        lab = _lab.lab(measure=False, rtt_ms=0, calls=2)
        try:
            lab.model.schedule(0)
            assert await lab.model.wait() is not None  # one measurement ran: status, plot, table filled
            keys = [e.api_key for e in lab.model.emulators]
            states = []

            def walk(widget, seen):
                if id(widget) in seen:
                    return
                seen.add(id(widget))
                states.append(json.dumps(widget.get_state(), default=str))
                for value in widget.get_state().values():
                    for child in value if isinstance(value, (list, tuple)) else [value]:
                        if hasattr(child, "get_state"):
                            walk(child, seen)
                for child in getattr(widget, "children", ()):
                    walk(child, seen)

            walk(lab, set())
            return keys, states, repr(lab), repr(lab.model)
        finally:
            lab.close()

    keys, states, *reprs = asyncio.run(main())
    assert keys and states
    for k in [key, *keys]:
        assert _leaks(k, *states, *reprs) == []
    print(f"\n[case 12] lab: {len(states)} widget states + reprs scanned for {1 + len(keys)} keys, 0 leaks")


KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9]{16,}|\bemu-[A-Za-z0-9_-]{16}\b")


@pytest.mark.kernel
@pytest.mark.slow
@pytest.mark.parametrize("leak", [True, False])
def test_nbval_run_fails_a_cell_that_prints_a_key(leak, tmp_path):
    """tests/nbval_keys.py (the plugin `make test` loads with -p) scans what nbval executes (each
    notebook runs once per make test): a cell that prints an emulator's key fails even when its
    output is not compared; the same notebook without the print passes (the control)."""
    import nbformat

    show = "print(emu.api_key)" if leak else "print(len(emu.api_key))"
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("from dashnb import emulator\nemu = emulator.start(shared=False, rtt_ms=0)"),
            nbformat.v4.new_code_cell("# NBVAL_IGNORE_OUTPUT\n" + show),
            nbformat.v4.new_code_cell("emu.stop()"),
        ]
    )
    nbformat.write(nb, tmp_path / "leak.ipynb")
    env = {**os.environ, "IPYTHONDIR": str(tmp_path / "ipython"), "MPLCONFIGDIR": str(tmp_path / "mpl")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))  # for -p tests.nbval_keys
    env.pop("DASHSCOPE_API_KEY", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--nbval-lax",
            "--nbval-current-env",
            "-p",
            "tests.nbval_keys",
            "leak.ipynb",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    if leak:
        assert proc.returncode == 1, proc.stdout[-2000:]
        assert "an API key appears in this cell's output (emu-...)" in proc.stdout
        assert not KEY_LIKE.findall(proc.stdout)  # the report itself masks the key
    else:
        assert proc.returncode == 0, proc.stdout[-2000:]


# ---- the doctor: every URL it prints is masked -----------------------------------------------------


def _doctor_output(**env: str) -> str:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not (k.upper().endswith("_PROXY") or k.startswith(("DASHSCOPE_", "DASHNB_")) or k.endswith("_CA_BUNDLE"))
    }
    clean["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), clean.get("PYTHONPATH")]))
    p = subprocess.run(
        [sys.executable, "-m", "dashnb", "doctor"], env={**clean, **env}, capture_output=True, text=True, timeout=120
    )
    assert p.returncode in (0, 1), p.stderr[-2000:]
    return p.stdout + p.stderr


def test_doctor_masks_credentials_in_every_url_it_prints():
    """Hostile values: a password and a token in the compatible base URL, a scheme-less proxy
    with user info, an ALL_PROXY with a query token, a NO_PROXY entry that is a URL with a
    password. None of the secrets shows; the hosts still do (the doctor stays useful)."""
    pw = {name: secrets.token_hex(8) for name in ("compat", "token", "bare", "lower", "all", "alltok", "no")}
    key = _fake_key()
    out = _doctor_output(
        DASHSCOPE_API_KEY=key,
        DASHSCOPE_COMPATIBLE_BASE_URL=f"https://bob:{pw['compat']}@gw.example.com/compatible-mode/v1?api_key={pw['token']}",
        HTTPS_PROXY=f"carol:{pw['bare']}@proxy.example:8080",
        https_proxy=f"dave:{pw['lower']}@proxy2.example:8080",
        ALL_PROXY=f"socks5://erin:{pw['all']}@socks.example:1080/?sig={pw['alltok']}",
        NO_PROXY=f"localhost,https://frank:{pw['no']}@internal.example",
    )
    assert [name for name, value in pw.items() if value in out] == []
    assert _leaks(key, out) == []
    assert "proxy.example:8080" in out and "socks.example:1080" in out and "NO_PROXY=localhost" in out
    # The compatible base URL is refused as endpoint() refuses it, without echoing it.
    assert "compatible:  refused" in out and "gw.example.com" not in out

    # A valid compatible URL is shown; the service base URL with a token is refused unechoed.
    out = _doctor_output(
        DASHSCOPE_API_KEY=key,
        DASHSCOPE_HTTP_BASE_URL=f"https://gw.example.com/api/v1?token={pw['token']}",
        DASHSCOPE_COMPATIBLE_BASE_URL="https://gw.example.com/compatible-mode/v1",
        HTTPS_PROXY=f"http://carol:{pw['bare']}@proxy.example:8080?auth={pw['alltok']}",
    )
    assert [name for name, value in pw.items() if value in out] == []
    assert "nowhere: DASHSCOPE_HTTP_BASE_URL must not have a query" in out
    assert "https://gw.example.com/compatible-mode/v1 (from DASHSCOPE_COMPATIBLE_BASE_URL)" in out
    assert "http://***:***@proxy.example:8080" in out
