"""Server-time profiles (instant, realistic) and the embedding / vision endpoints' refusals.

python -m pytest tests/emulator/test_emulator_profiles.py -q
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from dashnb.emulator import EmulatorOptions
from dashnb.emulator._profiles import GAP_SPREAD, PROFILES, TTFT_SPREAD, ServerClock, model_pace

MESSAGES = [{"role": "user", "content": "hi"}]


# ---- the profiles' arithmetic ------------------------------------------------------------------


def test_instant_adds_only_what_ttfb_and_token_rate_ask_for():
    clock = ServerClock()
    opts = EmulatorOptions()
    assert opts.profile == "instant"
    assert clock.first_byte(opts, "qwen-max", tokens=100, stream=False) == 0.0
    assert clock.token_gap(opts, "qwen-max") == 0.0
    opts = EmulatorOptions(ttfb_ms=30, token_rate=50)
    assert clock.first_byte(opts, "qwen-max", tokens=100, stream=False) == pytest.approx(0.030)
    assert clock.token_gap(opts, "qwen-max") == pytest.approx(0.020)


def test_realistic_paces_each_model_within_its_jitter():
    clock = ServerClock()
    opts = EmulatorOptions(profile="realistic", ttfb_ms=10)
    for model in ("qwen-turbo", "qwen-plus", "qwen3-max"):
        pace = model_pace(model)
        firsts = [clock.first_byte(opts, model, tokens=1, stream=True) for _ in range(50)]
        assert min(firsts) >= (10 + pace.ttft_ms * TTFT_SPREAD[0]) / 1000
        assert max(firsts) <= (10 + pace.ttft_ms * TTFT_SPREAD[1]) / 1000
        assert len(set(firsts)) > 1  # jitter
        gaps = [clock.token_gap(opts, model) for _ in range(50)]
        assert min(gaps) >= GAP_SPREAD[0] / pace.tokens_per_s and max(gaps) <= GAP_SPREAD[1] / pace.tokens_per_s
        # Not streamed: the whole reply is generated before the first byte.
        whole = clock.first_byte(opts, model, tokens=21, stream=False)
        assert whole >= (10 + pace.ttft_ms * TTFT_SPREAD[0] + 20 * 1000 / pace.tokens_per_s * GAP_SPREAD[0]) / 1000
    # Bigger models are slower, in the assumptions at least.
    assert model_pace("qwen-turbo").ttft_ms < model_pace("qwen-plus").ttft_ms < model_pace("qwen3-max").ttft_ms
    # A set token_rate wins over the model's pace.
    assert clock.token_gap(EmulatorOptions(profile="realistic", token_rate=10), "qwen-plus") == pytest.approx(0.1)


def test_realistic_jitter_repeats_with_the_seed():
    def run(seed):
        clock, opts = ServerClock(), EmulatorOptions(profile="realistic", seed=seed)
        return [clock.first_byte(opts, "qwen-plus", tokens=5, stream=False) for _ in range(5)]

    assert run(1) == run(1) != run(2)


def test_unknown_profile_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="profile must be one of instant, realistic, got 'slow'"):
        EmulatorOptions(profile="slow")
    assert set(PROFILES) == {"instant", "realistic"} and all(p.description for p in PROFILES.values())


# ---- on the wire ---------------------------------------------------------------------------------


def _post(session, emu, path, body, **headers):
    start = time.perf_counter()
    rsp = session.post(
        emu.url + path, json=body, headers={"Authorization": f"Bearer {emu.api_key}", **headers}, timeout=30
    )
    return rsp, time.perf_counter() - start


GENERATION = "/compatible-mode/v1/chat/completions"


def test_profile_switches_live_and_sets_server_time(emu, session):
    # qwen3-max's assumed first token is 800 ms, at least 600 with jitter; a loopback call at
    # rtt 0 with no server time takes milliseconds, so 0.5 s is a wide margin both ways.
    slowest_first = model_pace("qwen3-max").ttft_ms * TTFT_SPREAD[0] / 1000
    body = {"model": "qwen3-max", "messages": MESSAGES}
    rsp, instant = _post(session, emu, GENERATION, body)
    assert rsp.status_code == 200 and instant < 0.5
    emu.configure(profile="realistic")
    rsp, realistic = _post(session, emu, GENERATION, body)
    assert rsp.status_code == 200 and realistic >= slowest_first
    emu.configure(profile="instant")
    rsp, again = _post(session, emu, GENERATION, body)
    assert rsp.status_code == 200 and again < 0.5


def test_realistic_stream_paces_its_chunks(emulator_factory, session):
    emu = emulator_factory(rtt_ms=0, profile="realistic", reply_tokens=8)
    session.verify = emu.ca_path
    pace = model_pace("qwen-turbo")
    start = time.perf_counter()
    arrivals = []
    with session.post(
        emu.url + GENERATION,
        json={"model": "qwen-turbo", "messages": MESSAGES, "stream": True},
        headers={"Authorization": f"Bearer {emu.api_key}"},
        stream=True,
        timeout=30,
    ) as rsp:
        for line in rsp.iter_lines():
            if line.startswith(b"data: {"):
                arrivals.append(time.perf_counter() - start)
    # The first chunk waits for the first token; the token chunks after it come at the model's pace.
    assert arrivals[0] >= pace.ttft_ms * TTFT_SPREAD[0] / 1000
    min_gap = GAP_SPREAD[0] / pace.tokens_per_s
    assert arrivals[-1] - arrivals[0] >= (len(arrivals) - 1) * min_gap


def test_serve_takes_a_profile():
    help_text = subprocess.run(
        [sys.executable, "-m", "dashnb", "serve", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    assert "--profile {instant,realistic}" in help_text
    bad = subprocess.run(
        [sys.executable, "-m", "dashnb", "serve", "--profile", "slow"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "invalid choice: 'slow'" in bad.stderr


# ---- embedding and vision endpoints refuse what the service refuses ----------------------------

EMBED_NATIVE = "/api/v1/services/embeddings/text-embedding/text-embedding"
EMBED_COMPAT = "/compatible-mode/v1/embeddings"
VISION = "/api/v1/services/aigc/multimodal-generation/generation"


@pytest.mark.parametrize(
    "path,body,status,words",
    [
        (EMBED_NATIVE, {"model": "text-embedding-v4", "input": {}}, 400, "input.texts"),
        (EMBED_NATIVE, {"model": "text-embedding-v4", "input": {"texts": ["ok", " "]}}, 400, "texts[1] is empty"),
        (EMBED_NATIVE, {"model": "text-embedding-v9", "input": {"texts": ["x"]}}, 400, "Model not exist"),
        (
            EMBED_NATIVE,
            {"model": "text-embedding-v4", "input": {"texts": ["x"]}, "parameters": {"output_type": "sparse"}},
            400,
            "dense",
        ),
        (EMBED_COMPAT, {"model": "text-embedding-v4", "input": [1, 2, 3]}, 400, "list of strings"),
        (EMBED_COMPAT, {"model": "text-embedding-v4", "input": "x", "encoding_format": "hex"}, 400, "encoding_format"),
        (VISION, {"model": "qwen-vl-plus", "input": {"messages": []}}, 400, "input.messages"),
        (
            VISION,
            {
                "model": "qwen-vl-plus",
                "input": {"messages": [{"role": "user", "content": [{"image": "file:///x.png"}]}]},
            },
            400,
            "uploaded by the SDK",
        ),
        (
            VISION,
            {
                "model": "qwen-vl-plus",
                "input": {"messages": [{"role": "user", "content": [{"image": "x", "text": "y"}]}]},
            },
            400,
            "exactly one of",
        ),
        (
            VISION,
            {"model": "qwen3-vl-plus", "input": {"messages": MESSAGES}, "parameters": {"enable_thinking": True}},
            400,
            "does not emulate enable_thinking",
        ),
    ],
)
def test_bad_requests_are_refused_in_the_protocols_shape(emu, session, path, body, status, words):
    rsp, _ = _post(session, emu, path, body)
    assert rsp.status_code == status
    payload = rsp.json()
    message = payload["error"]["message"] if path.startswith("/compatible-mode") else payload["message"]
    assert words in message


@pytest.mark.parametrize("path", [EMBED_NATIVE, EMBED_COMPAT, VISION])
def test_new_endpoints_check_the_key_and_the_rate_limit(emu, session, path):
    body = (
        {"model": "qwen-vl-plus", "input": {"messages": MESSAGES}}
        if path == VISION
        else {"model": "text-embedding-v4", "input": {"texts": ["x"]} if path == EMBED_NATIVE else "x"}
    )
    wrong = session.post(emu.url + path, json=body, headers={"Authorization": "Bearer sk-wrong"}, timeout=30)
    assert wrong.status_code == 401 and "sk-wrong" not in wrong.text
    emu.configure(rate_limit=1)
    assert _post(session, emu, path, body)[0].status_code == 200
    limited = _post(session, emu, path, body)[0]
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert session.get(emu.url + path, timeout=30).status_code == 405


def test_request_ids_match_the_header(emu, session):
    native, _ = _post(session, emu, EMBED_NATIVE, {"model": "text-embedding-v4", "input": {"texts": ["x"]}})
    assert native.json()["request_id"] == native.headers["x-request-id"]
    compat, _ = _post(session, emu, EMBED_COMPAT, {"model": "text-embedding-v4", "input": "x"})
    assert compat.json()["id"] == compat.headers["x-request-id"]
    refused, _ = _post(session, emu, VISION, {"model": "qwen-vl-plus", "input": {}})
    assert refused.json()["request_id"] == refused.headers["x-request-id"]


def test_every_catalogue_embedding_model_is_served():
    from dashnb.emulator._catalogue import CATALOGUE
    from dashnb.emulator._embeddings import EMBEDDING_MODELS

    listed = {name for name, info in CATALOGUE.items() if info.kind == "embedding"}
    assert listed and listed <= set(EMBEDDING_MODELS)


def test_vision_reply_cut_by_max_tokens_says_length(emu, session):
    body = {"model": "qwen-vl-max", "input": {"messages": MESSAGES}, "parameters": {"max_tokens": 3}}
    rsp, _ = _post(session, emu, VISION, body)
    choice = rsp.json()["output"]["choices"][0]
    assert choice["finish_reason"] == "length" and rsp.json()["usage"]["output_tokens"] == 3
    body["parameters"]["max_tokens"] = 0
    assert _post(session, emu, VISION, body)[0].status_code == 400
