"""What a newcomer meets first: the README's snippets, s.stats(), the offline switch, `doctor`,
what `serve` prints (run as printed), the CLI's errors and the Python hints."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import dashnb
from dashnb.__main__ import parser

ROOT = Path(__file__).resolve().parents[2]
# Variables that would send a subprocess somewhere else than where the test means it to go.
_STEERING = (
    "DASHSCOPE_API_KEY",
    "DASHSCOPE_HTTP_BASE_URL",
    "DASHSCOPE_BASE_URL",
    "DASHSCOPE_COMPATIBLE_BASE_URL",
    "DASHNB_OFFLINE",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
)


def _fresh_env(**extra: str) -> dict[str, str]:
    """This environment as a fresh machine has it: no key, no endpoint or CA variables; dashnb
    from this checkout."""
    env = {k: v for k, v in os.environ.items() if k not in _STEERING}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def _python(code: str, env: dict[str, str], cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


# ---- the README ---------------------------------------------------------------------------------


def _fenced(lang: str) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


@pytest.mark.slow
def test_every_readme_python_block_runs_as_pasted(tmp_path):
    blocks = _fenced("python")
    assert len(blocks) >= 3
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            env=_fresh_env(),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for code in blocks
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for code, p, (_, err) in zip(blocks, procs, outs):
        assert p.returncode == 0, f"README block failed:\n{code}\n{err[-2000:]}"
    first_look = next(out for code, (out, _) in zip(blocks, outs) if "Generation.call" in code)
    # What the block's comments promise, checked against what it printed.
    assert "calls go to: the local emulator" in first_look
    assert "<session stats: 5 requests, 1 connection opened, 4 reused" in first_look


def test_every_readme_cli_line_parses():
    commands = [line.split("#")[0] for block in _fenced("sh") for line in block.splitlines()]
    lines = [line for line in commands if "-m dashnb " in line]
    assert len(lines) >= 3
    for line in lines:
        args = line.split("-m dashnb", 1)[1].split()
        parser().parse_args(args)  # exits (fails the test) on a flag that does not exist


# ---- s.stats() ----------------------------------------------------------------------------------


def test_stats_is_one_readable_line_and_still_the_dict(emu):
    from dashscope import Generation

    s = dashnb.session(endpoint=emu, name=f"stats-{secrets.token_hex(3)}")
    try:
        for _ in range(5):
            r = Generation.call(model="qwen-plus", prompt="hi", session=s.requests, **emu_call(emu))
            assert r.status_code == 200
        st = s.stats()
        assert repr(st) == str(st) == "<session stats: 5 requests, 1 connection opened, 4 reused, 1 open, 0 errors>"
        assert "\n" not in repr(st)
        # Every way callers use it: keys, nested paths, a plain dict, JSON, attributes.
        assert st["connections_reused"] == st.connections_reused == 4 and st["sync"]["requests"] == 5
        assert st["async"]["requests"] == 0
        assert isinstance(st, dict) and json.loads(json.dumps(st)) == dict(st)
        html = st._repr_html_()
        assert html.count("<tr>") == 1 + len(st.SHOWN) and "connections reused" in html
    finally:
        s.close()


def emu_call(emu):
    return {"api_key": emu.api_key, "base_address": emu.base_url}


# ---- the offline switch -------------------------------------------------------------------------


@pytest.mark.parametrize("value, offline", [("1", True), ("yes", True), ("0", False), ("", False), ("off", False)])
def test_offline_switch_forces_the_emulator_even_with_a_key(monkeypatch, value, offline):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-" + secrets.token_hex(8))
    monkeypatch.delenv("DASHSCOPE_HTTP_BASE_URL", raising=False)
    monkeypatch.setenv("DASHNB_OFFLINE", value)
    ep = dashnb.endpoint()
    assert ep.is_emulator is offline
    said = dashnb.where_calls_go(ep, calls=12)
    if offline:
        assert said.startswith("calls go to: the local emulator") and "DASHNB_OFFLINE is set" in said
        assert "model calls" not in said  # nothing to count against the emulator
    else:
        assert "dashscope-intl.aliyuncs.com" in said and "12 model calls" in said and "DASHNB_OFFLINE=1" in said


def test_bench_real_refuses_while_offline():
    env = _fresh_env(DASHSCOPE_API_KEY="sk-" + secrets.token_hex(8), DASHNB_OFFLINE="1")
    p = subprocess.run(
        [sys.executable, "-m", "dashnb", "bench", "--real"], env=env, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 2 and "DASHNB_OFFLINE" in p.stderr


def test_every_notebook_first_cell_says_where_calls_go():
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        first = next(c for c in nb["cells"] if c["cell_type"] == "code")
        out = "".join("".join(o.get("text", "")) for o in first.get("outputs", []) if o.get("name") == "stdout")
        assert "calls go to:" in out, path.name


# ---- doctor -------------------------------------------------------------------------------------


def _doctor(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dashnb", "doctor"], env=_fresh_env(**env), capture_output=True, text=True, timeout=60
    )


def test_doctor_answers_where_trust_and_proxy_and_never_prints_secrets(tmp_path):
    key, password = "sk-" + secrets.token_hex(12), secrets.token_hex(6)
    bundle = tmp_path / "corp-ca.pem"
    bundle.write_text("not checked here")
    p = _doctor(
        DASHSCOPE_API_KEY=key,
        REQUESTS_CA_BUNDLE=str(bundle),
        HTTPS_PROXY=f"http://alice:{password}@proxy.example:3128",
        NO_PROXY="localhost",
    )
    assert p.returncode == 0, p.stderr
    out = p.stdout + p.stderr
    assert key not in out and key[3:] not in out and password not in out
    assert "the real DashScope service, https://dashscope-intl.aliyuncs.com/api/v1" in out
    assert f"{bundle} (from REQUESTS_CA_BUNDLE)" in out
    assert "proxy.example:3128" in out and "NO_PROXY=localhost" in out

    p = _doctor(DASHSCOPE_API_KEY=key, DASHNB_OFFLINE="1")
    assert p.returncode == 0 and key not in p.stdout
    assert "the embedded emulator" in p.stdout and "DASHNB_OFFLINE=1 is set" in p.stdout
    assert "certifi's public CAs" in p.stdout and "proxy:         none" in p.stdout


def test_doctor_fails_when_the_named_ca_bundle_is_missing(tmp_path):
    p = _doctor(DASHSCOPE_API_KEY="sk-x", SSL_CERT_FILE=str(tmp_path / "gone.pem"))
    assert p.returncode == 1 and "MISSING" in p.stdout and "(from SSL_CERT_FILE)" in p.stdout


# ---- serve: every printed set-up, run as printed ------------------------------------------------


def _start_serve(*args: str, preexec_fn=None) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "dashnb", "serve", "--rtt-ms", "1", *args],
        env=_fresh_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec_fn,
    )
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("Serving"):
            break
    return proc, lines


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


def _setup(lines: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """The exports and the code snippets (title -> code) that serve printed."""
    exports = dict(line.split("export ", 1)[1].split("=", 1) for line in lines if line.startswith("  export "))
    snippets: dict[str, list[str]] = {}
    title = None
    for line in lines[lines.index("Then, in Python:") + 1 :]:
        if line.startswith("    ") or (line == "" and title):
            snippets[title].append(line)  # type: ignore[index]
        elif line.startswith("  "):
            title = line.strip()
            snippets[title] = []
        else:
            break
    return exports, {t: textwrap.dedent("\n".join(code)) for t, code in snippets.items()}


@pytest.mark.slow
def test_serve_prints_a_working_setup_for_every_client(tmp_path):
    proc, lines = _start_serve()
    try:
        exports, snippets = _setup(lines)
        assert exports["REQUESTS_CA_BUNDLE"] == exports["SSL_CERT_FILE"] and exports["OPENAI_BASE_URL"].endswith(
            "/compatible-mode/v1"
        )
        assert [t.split(" (")[0].rstrip(":") for t in snippets] == [
            "dashscope SDK, sync",
            "dashscope SDK v2",
            "openai SDK",
            "dashscope SDK, async",
        ]
        env = _fresh_env(**exports)
        # The claim behind the async snippet: the SDK's own async session ignores the CA variables.
        plain_async = (
            "import asyncio\nfrom dashscope import AioGeneration\n"
            'asyncio.run(AioGeneration.call(model="qwen-plus", prompt="hi"))'
        )
        pipes = {"env": env, "cwd": tmp_path, "text": True, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        runs = {t: subprocess.Popen([sys.executable, "-c", c], **pipes) for t, c in snippets.items()}
        runs["plain async"] = subprocess.Popen([sys.executable, "-c", plain_async], **pipes)
        results = {t: (p.communicate(timeout=120), p.returncode) for t, p in runs.items()}
        for title in snippets:
            (out, err), rc = results[title]
            assert rc == 0 and out.strip(), f"{title}\n{snippets[title]}\n{err[-2000:]}"
        (_, err), rc = results["plain async"]
        assert rc != 0 and "CERTIFICATE_VERIFY_FAILED" in err
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=15) == 0
        finally:
            _stop(proc)


def test_serve_over_plain_http_prints_a_working_async_line(tmp_path):
    proc, lines = _start_serve("--tls", "off")
    try:
        exports, snippets = _setup(lines)
        assert "SSL_CERT_FILE" not in exports
        title = next(t for t in snippets if t.startswith("dashscope SDK, async"))
        done = _python(snippets[title], _fresh_env(**exports), tmp_path)
        assert done.returncode == 0 and done.stdout.strip(), done.stderr[-2000:]
    finally:
        _stop(proc)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_stops_on_sigint_and_sigterm_even_when_started_with_sigint_ignored(sig):
    # What a shell does to a background job of a script: SIGINT ignored, inherited through exec.
    proc, lines = _start_serve(preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        ca = next(x.split(":", 1)[1].strip() for x in lines if "CA certificate" in x)
        assert os.path.exists(ca)
        proc.send_signal(sig)
        assert proc.wait(timeout=15) == 0
        assert not os.path.exists(ca)  # stopped cleanly, its files removed
    finally:
        _stop(proc)


# ---- CLI errors ---------------------------------------------------------------------------------


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dashnb", *args], env=_fresh_env(), capture_output=True, text=True, timeout=timeout
    )


def test_busy_port_is_one_line_not_a_traceback():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        p = _cli("serve", "--port", str(port))
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == [
        f"dashnb serve: cannot listen on 127.0.0.1:{port}: the port is in use; "
        "pick another --port, or leave it out for a free one"
    ]


def test_errors_name_flags_not_python_names():
    p = _cli("serve", "--rtt-ms", "-1")
    assert p.returncode == 2 and "--rtt-ms must be >= 0" in p.stderr and "rtt_ms" not in p.stderr
    p = _cli("serve", "--host", "0.0.0.0")
    assert p.returncode == 2 and "--public" in p.stderr and "public=True" not in p.stderr
    p = _cli("bench", "--ttfb-ms", "-5", "--calls", "1")
    assert p.returncode == 2 and "--ttfb-ms" in p.stderr and "ttfb_ms" not in p.stderr


def test_unknown_flag_shows_the_usage_of_its_command():
    p = _cli("serve", "--foo")
    assert p.returncode == 2 and "usage: python -m dashnb serve" in p.stderr and "--rtt-ms" in p.stderr
    assert "unrecognized arguments: --foo" in p.stderr
    p = _cli("bench", "--callz", "3")
    assert p.returncode == 2 and "usage: python -m dashnb bench" in p.stderr


@pytest.mark.parametrize("where", ["missing-dir/out.json", "."])
def test_bench_checks_the_json_path_before_measuring(tmp_path, where):
    t0 = time.monotonic()
    p = _cli("bench", "--json", str(tmp_path / where), "--calls", "200")
    assert p.returncode == 2 and "--json" in p.stderr, p.stderr
    assert "calls per mode" not in p.stderr  # nothing was started
    assert time.monotonic() - t0 < 30


def test_bench_warns_when_calls_cannot_reuse_and_explains_each_mode():
    p = _cli("bench", "--rtt-ms", "0", "--calls", "3", "--concurrency", "4", "--modes", "shared,threads",
             "--no-progress")  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "warning: --calls 3 is not more than --concurrency 4" in p.stderr and "threads" in p.stderr
    legend = p.stdout[p.stdout.index("modes:") :]
    assert "shared " in legend and "one dashnb requests.Session used from 4 threads" in legend
    p = _cli("bench", "--rtt-ms", "0", "--calls", "2", "--concurrency", "1", "--modes", "threads", "--no-progress")
    assert p.returncode == 0 and "warning" not in p.stderr


# ---- Python hints -------------------------------------------------------------------------------


def test_keyword_typos_say_what_was_meant():
    with pytest.raises(TypeError, match=r"did you mean dashnb.session\(dashnb.PoolConfig\(connection_pool_size=8\)\)"):
        dashnb.session(connection_pool_size=8)
    with pytest.raises(TypeError, match=r"did you mean endpoint="):
        dashnb.session(endpont=None)
    with pytest.raises(TypeError, match=r"did you mean connection_pool_size= .*PoolConfig\(connection_pool_size=8\)"):
        dashnb.PoolConfig(pool_size=8)
    with pytest.raises(TypeError, match=r"did you mean connection_idle_timeout="):
        dashnb.PoolConfig(idle_timeout=8)
    with pytest.raises(TypeError, match=r"takes settings by name"):
        dashnb.PoolConfig(8)  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"dashnb.session\(dashnb.PoolConfig\(connection_pool_size=8\)\)"):
        dashnb.session(8)
    assert "from_java" not in _type_error(lambda: dashnb.session(8))


def _type_error(fn) -> str:
    try:
        fn()
    except TypeError as exc:
        return str(exc)
    raise AssertionError("no TypeError")


def test_regions_by_city_and_region_id():
    assert dashnb.DashScope(region="singapore") == dashnb.DashScope(region="intl")
    assert dashnb.DashScope(region="ap-southeast-1").base_url == "https://dashscope-intl.aliyuncs.com/api/v1"
    assert dashnb.DashScope(region="Beijing").region == "cn"
    with pytest.raises(ValueError, match=r"'intl' \(Singapore.*'cn' \(Beijing") as info:
        dashnb.DashScope(region="mars")
    assert "Frankfurt" in str(info.value)
    with pytest.raises(ValueError, match=r"us-east-1.*Virginia.*us-east-1\.maas\.aliyuncs\.com"):
        dashnb.DashScope(region="us-east-1")


def test_the_loop_error_example_works_when_followed_literally(emu, tmp_path):
    s = dashnb.session(name=f"loop-{secrets.token_hex(3)}", endpoint=emu)
    try:
        with pytest.raises(RuntimeError) as info:
            s.aiohttp  # noqa: B018 (outside a loop)
    finally:
        s.close()
    message = str(info.value)
    example = textwrap.dedent(message[message.index("    async def main") : message.index("(dashnb.run(Aio")])
    code = (
        "import dashnb\nfrom dashscope import AioGeneration\n"
        "dashnb.use_endpoint()\ns = dashnb.session()\n" + example + "\nprint(r.status_code, r.output.text)\n"
    )
    done = _python(code, _fresh_env(), tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("200 "), done.stderr[-2000:]


# ---- a quiet, quick first run -------------------------------------------------------------------


def _make(tmp_path: Path, target: str, *args: str) -> str:
    """Run a Makefile target with .venv/bin replaced by stubs that print what they were given."""
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("python", "dashnb"):
        stub = bin_dir / tool
        stub.write_text('#!/bin/sh\necho "DASHNB_OFFLINE=$DASHNB_OFFLINE ARGS=$*"\n')
        stub.chmod(0o755)
    stamps = {"STAMP": tmp_path / "stamp", "LAB_STAMP": tmp_path / "lab-stamp"}
    for stamp in stamps.values():
        stamp.touch()  # newer than pyproject.toml: nothing to install
    env = {k: v for k, v in os.environ.items() if k not in ("DASHNB_OFFLINE", "MAKEFLAGS")}
    done = subprocess.run(
        ["make", "-s", "-C", str(ROOT), target, f"BIN={bin_dir}", *(f"{k}={v}" for k, v in stamps.items()), *args],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_lab_and_workshop_run_the_dashnb_commands(tmp_path):
    # The Makefile calls the installed commands (tests/unit/test_install_commands.py checks what they start).
    out = _make(tmp_path, "lab", "OFFLINE=1")
    assert out.strip() == "DASHNB_OFFLINE=1 ARGS=lab notebooks"
    assert _make(tmp_path, "lab").strip() == "DASHNB_OFFLINE= ARGS=lab notebooks"  # without OFFLINE, the key decides
    assert _make(tmp_path, "workshop").strip() == "DASHNB_OFFLINE= ARGS=workshop"  # offline by itself


def test_make_lab_installs_the_lab_extra_and_make_test_every_extra(tmp_path):
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    env = {k: v for k, v in os.environ.items() if k != "MAKEFLAGS"}
    printed = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "-p", "-n", "clean"], env=env, capture_output=True, text=True, timeout=60
    ).stdout
    variables = dict(re.findall(r"^(LAB_STAMP|STAMP) := (\S+)$", printed, re.M))
    assert variables == {"LAB_STAMP": ".venv/.installed-lab", "STAMP": ".venv/.installed-test+lab+dev+docs"}
    recipe = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target, stamp in (("lab", "LAB_STAMP"), ("workshop", "LAB_STAMP"), ("docs", "STAMP"), ("lint", "STAMP")):
        assert re.search(rf"^{target}: \$\({stamp}\)$", recipe, re.M), target


def test_install_is_one_line_per_phase_not_pip_quiet_nor_pip_verbose():
    recipe = (ROOT / "Makefile").read_text(encoding="utf-8")
    install = recipe[recipe.index("$(VENV)/.installed-%: pyproject.toml") : recipe.index("\nlab:")]
    assert "--quiet" not in install and " -q " not in install
    assert install.count('echo "dashnb: [') == 3 and "$(INSTALL_LOG)" in install


def test_the_projects_lab_never_asks_about_jupyter_news(tmp_path):
    # JupyterLab's own settings machinery, reading the folder `make lab` points JUPYTER_CONFIG_PATH at.
    code = textwrap.dedent(
        """
        import json, sys
        from jupyterlab_server.settings_utils import _get_overrides
        overrides, error = _get_overrides(sys.argv[1])
        print(json.dumps(overrides.get("@jupyterlab/apputils-extension:notification")))
        """
    )
    env = _fresh_env(
        JUPYTER_CONFIG_PATH=str(ROOT / "dashnb" / "_jupyter" / "etc" / "jupyter"), JUPYTER_CONFIG_DIR=str(tmp_path)
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"fetchNews": "false", "checkForUpdates": False}
    schema = json.loads(
        (Path(sys.prefix) / "share/jupyter/lab/schemas/@jupyterlab/apputils-extension/notification.json").read_text()
    )
    assert {"const": "false", "title": "Never"} in schema["properties"]["fetchNews"]["oneOf"]


def test_the_licence_is_an_spdx_string_with_a_backend_that_takes_it():
    tomllib = pytest.importorskip("tomllib")
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    # A licence table is deprecated (PEP 639); the SPDX string needs hatchling 1.27 or newer.
    assert meta["project"]["license"] == "Apache-2.0" and meta["project"]["license-files"] == ["LICENSE"]
    assert meta["build-system"]["requires"] == ["hatchling>=1.27"]


@pytest.mark.parametrize("pip_fails", [False, True])
def test_install_prints_its_phases_and_on_failure_pips_last_lines(tmp_path, pip_fails):
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    stub = venv / "bin" / "python"
    stub.write_text(
        "#!/bin/sh\n"
        'echo "Collecting something (pip output, for the log only)"\n'
        f'case "$*" in *"-e "*) {"echo ERROR: no matching distribution; exit 1" if pip_fails else "exit 0"};; esac\n'
    )
    stub.chmod(0o755)
    stamp = venv / ".installed-test+lab+dev+docs"
    done = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "install", f"VENV={venv}"],
        env={k: v for k, v in os.environ.items() if k != "MAKEFLAGS"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert "dashnb: [2/3] updating pip" in out and "dashnb: [3/3] installing" in out
    assert "Collecting something" not in done.stdout or pip_fails  # pip's own lines only when it failed
    if pip_fails:
        assert done.returncode != 0 and "ERROR: no matching distribution" in out and not stamp.exists()
    else:
        assert done.returncode == 0 and "dashnb: installed" in out and stamp.exists()
        assert (venv / "install.log").read_text().count("Collecting something") == 2
