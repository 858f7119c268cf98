"""A pytest plugin: the ``dashscope_emulator`` fixture, for testing code that calls DashScope.

Installed with dashnb (entry point ``pytest11``), so any test can ask for it::

    def test_summary(dashscope_emulator):
        import dashscope

        rsp = dashscope.Generation.call(model="qwen-plus", prompt="hi")   # no key, no base URL
        assert rsp.status_code == 200
        assert dashscope_emulator.stats()["requests"] == 1

One emulator runs per test session (started the first time a test uses the fixture, stopped at the
end); before each test it is reset: its options back to where the session started it, its counters
at zero, the SDKs' pooled connections to it closed. While the test runs, the clients need no
arguments to reach it and to trust it:

- the dashscope SDK's module settings (``dashscope.api_key``, ``base_http_api_url``,
  ``base_compatible_api_url``) name the emulator, and so do ``DASHSCOPE_API_KEY``,
  ``DASHSCOPE_HTTP_BASE_URL``, ``DASHSCOPE_COMPATIBLE_BASE_URL`` and ``DASHSCOPE_BASE_URL``, the
  environment that ``dashscope.Client`` (2.x) reads when it is created;
- ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` point the openai SDK (and LangChain's ``ChatOpenAI``) at
  its compatible mode, and so do ``openai.api_key`` / ``openai.base_url`` (the module-level client,
  cached in ``openai._client``, is the test's own and the previous one comes back after it);
- the emulator's CA is the one CA trusted by requests (``REQUESTS_CA_BUNDLE``, used by the dashscope
  module API) and httpx (``SSL_CERT_FILE``, used by ``dashscope.Client`` and openai). Verification
  stays on: only the emulator's certificate verifies, so a call that escapes to the real service
  fails instead of spending tokens. aiohttp callers pass ``dashscope_emulator.ssl_context()``.

All of it is restored when the test ends. A test may stop the emulator: the next test gets a new
one. The fixture's value is the running
:class:`dashnb.emulator.Emulator`: ``.api_key``, ``.base_url``, ``.compatible_base_url``, ``.ca_path``,
``.ssl_context()``, ``.stats()``, and ``.configure(...)`` to change latency, faults or the server-time
profile for this test only. ``.script`` says what the next requests get (a reply, tool calls, thinking,
an error of the catalogue, a stall, a dropped stream; the usual replies once it is empty) and
``.journal`` what they asked; both start empty in each test::

    def test_agent_asks_for_the_weather(dashscope_emulator):
        dashscope_emulator.script.tool_call("get_weather", {"city": "Paris"}).reply("Sunny, 18 degrees.")
        run_my_agent("What is the weather in Paris?")
        assert dashscope_emulator.journal[-1].messages[-1]["role"] == "tool"

Options for the session's emulator come from the ``dashscope_emulator_options`` fixture (default: no
added latency, ``profile="instant"``); override it in a conftest.py::

    @pytest.fixture(scope="session")
    def dashscope_emulator_options():
        return {"rtt_ms": 20, "profile": "realistic"}

Loading the plugin imports nothing heavy: the emulator and the SDKs are imported when a test first
asks for the fixture. Disable it with ``-p no:dashnb.pytest_plugin``.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

import pytest

__all__ = ["dashscope_emulator", "dashscope_emulator_options", "dashscope_emulator_server"]


@pytest.fixture(scope="session")
def dashscope_emulator_options() -> dict:
    """Options for the session's emulator (``dashnb.emulator.start`` keywords); override to change."""
    return {"rtt_ms": 0.0}


@pytest.fixture(scope="session")
def dashscope_emulator_server(dashscope_emulator_options):
    """The session's emulator, as started; tests use ``dashscope_emulator``, which also resets it."""
    from dashnb import emulator

    # Private: nothing else in the process (dashnb.endpoint(), a notebook helper) shares or stops it.
    emu = emulator.start(shared=False, **dashscope_emulator_options)
    yield emu
    emu.stop()


def _environment(emu) -> dict[str, str]:
    env = {
        "DASHSCOPE_API_KEY": emu.api_key,
        "DASHSCOPE_HTTP_BASE_URL": emu.base_url,
        "DASHSCOPE_COMPATIBLE_BASE_URL": emu.compatible_base_url,
        "DASHSCOPE_BASE_URL": emu.base_url,
        "OPENAI_API_KEY": emu.api_key,
        "OPENAI_BASE_URL": emu.compatible_base_url,
    }
    if emu.scheme == "https":
        env["REQUESTS_CA_BUNDLE"] = emu.ca_path
        env["SSL_CERT_FILE"] = emu.ca_path
    return env


def _point_openai_module(emu, monkeypatch) -> None:
    """openai's module-level client (``openai.chat.completions.create`` without a client) caches
    itself in ``openai._client`` from ``openai.api_key`` / ``openai.base_url``: give the test one
    of its own on the emulator, and put back what was there (cached client included) afterwards."""
    try:
        import openai
    except ImportError:  # not installed: nothing to point
        return
    monkeypatch.setattr(openai, "_client", None)
    monkeypatch.setattr(openai, "api_key", emu.api_key)
    monkeypatch.setattr(openai, "base_url", emu.compatible_base_url + "/")  # as the client keeps it


def _close_sdk_pools() -> None:
    # The module API keeps one requests.Session for calls made without session=: its connections
    # belong to the previous test (and their counts would show in this one's stats).
    http_request = sys.modules.get("dashscope.api_entities.http_request")
    if http_request is not None:
        http_request.close_shared_sync_session()


# A test that stopped the session's emulator (dashscope_emulator.stop()) must not break the
# tests after it: the next one gets a fresh emulator, kept here and stopped with the session.
_REPLACEMENT = pytest.StashKey[Any]()


def _running(emu, options: dict, config: pytest.Config):
    if not emu.stopped:
        return emu
    current = config.stash.get(_REPLACEMENT, None)
    if current is None or current.stopped:
        from dashnb import emulator

        current = emulator.start(shared=False, **options)
        config.stash[_REPLACEMENT] = current
        config.add_cleanup(current.stop)
    return current


@pytest.fixture
def dashscope_emulator(dashscope_emulator_server, dashscope_emulator_options, monkeypatch, request):
    """The session's DashScope emulator, reset, with the SDKs pointed at it for this test."""
    from dashnb.emulator import EmulatorOptions

    emu = _running(dashscope_emulator_server, dashscope_emulator_options, request.config)
    emu.configure(**EmulatorOptions(**dashscope_emulator_options).live)
    _close_sdk_pools()
    # Counts start at zero. A connection a client still pools from an earlier test (LangChain's
    # ChatOpenAI shares one httpx client per process) stays open and counts again once it serves.
    emu.reset_stats()
    # No turn scripted by an earlier test answers this one, and its journal starts empty.
    emu.script.clear()
    emu.journal.clear()

    # Imported before the environment changes: it reads DASHSCOPE_* once, at import, and what it
    # read then is what the settings go back to after the test.
    import dashscope

    for name, value in _environment(emu).items():
        monkeypatch.setenv(name, value)
    # A workspace or region set for the real service would make dashscope.Client build its own URLs.
    for name in ("DASHSCOPE_WORKSPACE", "DASHSCOPE_WORKSPACE_ID", "DASHSCOPE_REGION", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(dashscope, "api_key", emu.api_key)
    monkeypatch.setattr(dashscope, "base_http_api_url", emu.base_url)
    monkeypatch.setattr(dashscope, "base_compatible_api_url", emu.compatible_base_url)
    _point_openai_module(emu, monkeypatch)
    yield emu
    _close_sdk_pools()
    gc.collect()  # clients the test dropped close their connections now, not in a later test
