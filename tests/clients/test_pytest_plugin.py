"""The pytest plugin: the README's example test runs as written, the fixture resets the emulator
before each test and restores the environment after it, and loading the plugin imports nothing heavy.

    python -m pytest tests/clients/test_pytest_plugin.py -q
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The inner runs name the plugin, as the installed entry point does, and run in a subprocess so
# that their emulator and environment are their own; warnings are errors there as here.
ARGS = ("-p", "dashnb.pytest_plugin", "-p", "no:cacheprovider", "-W", "error", "-p", "no:randomly")


@pytest.fixture
def inner(pytester, monkeypatch):
    # The inner pytest imports dashnb from this checkout, whatever version is installed.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    # Only this plugin: others installed beside it (nbval, langsmith's) import what they like.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return pytester


def readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Testing your own code against the emulator", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the README's plugin section should hold exactly one python example"
    return blocks[0]


def test_readme_example_passes(inner):
    inner.makepyfile(test_readme=readme_example())
    result = inner.runpytest_subprocess(*ARGS)
    result.assert_outcomes(passed=1)


def test_fixture_resets_the_emulator_and_restores_the_environment(inner, monkeypatch):
    # What the outer world had: a key and CA bundles of its own, no OpenAI base URL.
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-outer-key")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/outer/ca.pem")
    monkeypatch.setenv("SSL_CERT_FILE", "/outer/ssl.pem")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    inner.makepyfile(
        test_inner="""
        import os, sys

        def test_0_plugin_loaded_nothing_heavy():
            heavy = [m for m in ("dashscope", "openai", "aiohttp", "requests", "httpx") if m in sys.modules]
            assert heavy == []

        def test_1_changes_the_emulator(dashscope_emulator):
            import dashscope
            assert os.environ["DASHSCOPE_API_KEY"] == dashscope.api_key == dashscope_emulator.api_key
            assert os.environ["OPENAI_BASE_URL"] == dashscope_emulator.compatible_base_url
            assert os.environ["REQUESTS_CA_BUNDLE"] == os.environ["SSL_CERT_FILE"] == dashscope_emulator.ca_path
            dashscope_emulator.configure(error_rate=1.0, profile="realistic")
            assert dashscope.Generation.call(model="qwen-plus", prompt="hi").status_code == 500

        def test_2_gets_it_back_fresh(dashscope_emulator):
            import dashscope
            assert dashscope_emulator.options.error_rate == 0 and dashscope_emulator.options.profile == "instant"
            assert dashscope_emulator.stats()["requests"] == 0
            assert dashscope.Generation.call(model="qwen-plus", prompt="hi").status_code == 200

        def test_3_environment_restored():
            import dashscope
            assert os.environ["DASHSCOPE_API_KEY"] == dashscope.api_key == "sk-outer-key"
            assert os.environ["REQUESTS_CA_BUNDLE"] == "/outer/ca.pem"
            assert os.environ["SSL_CERT_FILE"] == "/outer/ssl.pem"
            assert os.environ.get("OPENAI_BASE_URL") is None
            assert "127.0.0.1" not in dashscope.base_http_api_url
        """
    )
    result = inner.runpytest_subprocess(*ARGS, "-v")
    result.assert_outcomes(passed=4)


def test_a_stopped_emulator_and_the_openai_module_client_do_not_leak_into_later_tests(inner, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-outer-openai")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    inner.makepyfile(
        test_inner="""
        import openai

        def test_0_stops_it(dashscope_emulator):
            dashscope_emulator.stop()

        def test_1_still_gets_a_working_one(dashscope_emulator):
            import dashscope
            assert not dashscope_emulator.stopped
            assert dashscope.Generation.call(model="qwen-plus", prompt="hi").status_code == 200
            assert dashscope_emulator.stats()["requests"] == 1

        def test_2_openai_module_client(dashscope_emulator):
            messages = [{"role": "user", "content": "hi"}]
            reply = openai.chat.completions.create(model="qwen-plus", messages=messages)
            assert reply.choices[0].message.content
            assert openai._client is not None  # the module client is cached now

        def test_3_module_client_restored():
            assert openai._client is None and openai.base_url is None and openai.api_key is None
        """
    )
    result = inner.runpytest_subprocess(*ARGS, "-v")
    result.assert_outcomes(passed=4)


def test_script_and_journal_start_empty_in_each_test(inner):
    inner.makepyfile(
        test_inner="""
        import dashscope

        def test_0_leaves_turns_and_requests_behind(dashscope_emulator):
            dashscope_emulator.script.reply("scripted").reply("left over")
            rsp = dashscope.Generation.call(model="qwen-plus", prompt="hi")
            assert rsp.output.text == "scripted"
            assert len(dashscope_emulator.script) == 1 and len(dashscope_emulator.journal) == 1

        def test_1_starts_clean(dashscope_emulator):
            assert len(dashscope_emulator.script) == 0 and len(dashscope_emulator.journal) == 0
            rsp = dashscope.Generation.call(model="qwen-plus", prompt="hi")
            assert rsp.output.text != "left over"
            [entry] = dashscope_emulator.journal.entries
            assert entry.protocol == "native" and entry.messages[-1]["content"] == "hi"
        """
    )
    result = inner.runpytest_subprocess(*ARGS, "-v")
    result.assert_outcomes(passed=2)


def test_importing_the_plugin_is_light():
    code = (
        "import sys, dashnb.pytest_plugin; "
        "print([m for m in ('dashscope', 'openai', 'aiohttp', 'requests', 'httpx', 'trustme') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_entry_point_is_named_after_its_module():
    # The name lets pytest_plugins / -p name the module too without registering it twice.
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["entry-points"]["pytest11"] == {"dashnb.pytest_plugin": "dashnb.pytest_plugin"}
