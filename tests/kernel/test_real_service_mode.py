"""The notebooks that call `dashnb.endpoint()` pass in real-service mode.

With DASHSCOPE_API_KEY set, those notebooks treat the endpoint as the real service: they may
assert only what stays true there (connection counts from dashnb's records, never end-to-end
ratios or the emulator's own counters). A real key cannot be used in tests, so the "service" here
is an emulator that behaves like the real one from a client's side: 300-900 ms to the first
token, a rate limit, a round trip, and a CA the client learns only from the environment, the way
a corporate CA is usually supplied: SSL_CERT_FILE for Python's ssl module (aiohttp, httpx) and
REQUESTS_CA_BUNDLE for requests, which does not read SSL_CERT_FILE. (The SDK's default aiohttp
session trusts certifi alone, so the notebooks must say where such a CA cannot reach.) The
notebooks reach it through the SDK's own DASHSCOPE_HTTP_BASE_URL, as they would reach a gateway.
"""

from __future__ import annotations

import pathlib
import time

import pytest
from _kernels import execute_notebook

from dashnb import emulator

REPO = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
# The notebooks that call dashnb.endpoint(); 03-05 run on private emulators by design.
REAL_SERVICE_NOTEBOOKS = ["00_quickstart.ipynb", "01_sync_sessions.ipynb", "02_async_connector.ipynb"]


@pytest.fixture(scope="module")
def service_like():
    emu = emulator.start(shared=False, rtt_ms=20, ttfb_ms=300, ttfb_jitter_ms=600, rate_limit=200, seed=3)
    yield emu
    emu.stop()


@pytest.mark.kernel
@pytest.mark.slow
@pytest.mark.parametrize("name", REAL_SERVICE_NOTEBOOKS)
def test_notebook_passes_against_a_service_like_endpoint(name, service_like, tmp_path):
    # Every cell's text says which mode it ran in; make sure this run really was the real-service one.
    service_like.reset_stats()
    t0 = time.perf_counter()
    nb = execute_notebook(
        NOTEBOOKS / name,
        tmp_path,
        env_changes={
            "DASHSCOPE_API_KEY": service_like.api_key,
            "DASHSCOPE_HTTP_BASE_URL": service_like.base_url,
            "SSL_CERT_FILE": service_like.ca_path,
            "REQUESTS_CA_BUNDLE": service_like.ca_path,
        },
        drop=("CURL_CA_BUNDLE", "DASHNB_OFFLINE"),
    )
    took = time.perf_counter() - t0
    served = service_like.stats()["requests"]
    assert served > 0, f"{name} sent nothing to the service-like endpoint"
    outputs = "".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for c in nb.cells for o in c.get("outputs", [])
    )
    assert service_like.api_key not in outputs
    # The first cell says where the calls go and, there, how many it will make.
    first = next(c for c in nb.cells if c.cell_type == "code")
    said = "".join(o.get("text", "") for o in first.outputs)
    origin = service_like.base_url.rsplit("/api/v1", 1)[0]
    assert f"calls go to: DashScope at {origin}" in said and "model calls there, each billed in tokens" in said, said
    print(f"\n{name}: real-service mode, {served} requests served, {took:.0f} s")


@pytest.mark.kernel
@pytest.mark.slow
def test_the_offline_switch_keeps_a_notebook_off_the_service_though_a_key_is_set(service_like, tmp_path):
    service_like.reset_stats()
    nb = execute_notebook(
        NOTEBOOKS / "00_quickstart.ipynb",
        tmp_path,
        env_changes={
            "DASHSCOPE_API_KEY": service_like.api_key,
            "DASHSCOPE_HTTP_BASE_URL": service_like.base_url,
            "DASHNB_OFFLINE": "1",
        },
        drop=("CURL_CA_BUNDLE", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"),
    )
    assert service_like.stats()["requests"] == 0
    first = next(c for c in nb.cells if c.cell_type == "code")
    said = "".join(o.get("text", "") for o in first.outputs)
    assert said.startswith("calls go to: the local emulator") and "DASHNB_OFFLINE is set" in said, said
