"""The emulator's replies read like an assistant's: the system prompt's language, code as a fenced
block, earlier turns named when asked, whole sentences and whole words, the emulator named once."""

from __future__ import annotations

import re

import pytest

from dashnb._ask import markdown as _markdown
from dashnb.emulator import _replies as R

_END = re.compile(r"[.!?。！？][\"'\u201d)]*$")
NOTICE = {"en": "dashnb emulator", "fr": "émulateur dashnb", "de": "dashnb-Emulators", "es": "emulador dashnb"}


def reply(*messages, reply_tokens=40, **params):
    body = {"model": "qwen-plus", "input": {"messages": [{"role": r, "content": c} for r, c in messages]}}
    if params:
        body["parameters"] = params
    return R.compose(R.parse_native(body), reply_tokens=reply_tokens)


@pytest.mark.parametrize(
    "system,lang,marker",
    [
        ("Answer in French.", "fr", "Voici"),
        ("用中文回答", "zh", "关于"),
        ("Antworte auf Deutsch.", "de", "Hier ist"),
        ("Responde en español.", "es", "Aquí tiene"),
        ("日本語で答えてください。", "ja", "について"),
        ("Be brief.", "en", "Here is"),
    ],
)
def test_the_reply_follows_the_language_the_system_prompt_names(system, lang, marker):
    r = reply(("system", system), ("user", "What is a TLS handshake?"))
    assert marker in r.text, r.text
    assert r.output_tokens == len(r.tokens) == 40 and "".join(r.tokens) == r.text
    assert _END.search(r.text), r.text
    if lang in NOTICE:
        assert NOTICE[lang] in r.text


def test_a_request_for_code_gets_a_fenced_block_that_renders_as_code():
    for tokens in (16, 60):
        r = reply(("user", "Write Python code that reuses a connection."), reply_tokens=tokens)
        assert "\n```python\n" in r.text and "\n```\n" in r.text, r.text
        assert "<pre><code" in _markdown.to_html(r.text)
        assert _END.search(r.text) and r.output_tokens == tokens


def test_asked_about_earlier_turns_the_reply_names_them():
    r = reply(
        ("user", "What is a TLS handshake?"),
        ("assistant", "An answer."),
        ("user", "How big should a pool be?"),
        ("assistant", "Another."),
        ("user", "What did I ask earlier?"),
    )
    assert "a TLS handshake" in r.text and "big should a pool be" in r.text, r.text
    alone = reply(("user", "What did I ask earlier?"))
    assert "first turn" in alone.text


def test_the_emulator_says_so_in_the_first_reply_only():
    first = reply(("user", "What is a TLS handshake?"))
    later = reply(("user", "What is a TLS handshake?"), ("assistant", first.text), ("user", "And why?"))
    assert first.text.count("emulator") == 1, first.text
    assert "emulator" not in later.text, later.text


@pytest.mark.parametrize("tokens", [1, 3, 7, 16, 17, 33, 100, 500])
def test_replies_end_at_a_sentence_and_never_cut_or_echo_the_prompt(tokens):
    long = "Why does supercalifragilisticexpialidocious-connection-reuse matter so much for latency in notebooks?"
    for prompt in (long, "x" * 500 + "?", "List five tips for pools", "你好", "Is it fast?"):
        r = reply(("user", prompt), reply_tokens=tokens)
        assert r.output_tokens == tokens and _END.search(r.text), r.text
        assert "You asked" not in r.text and "…" not in r.text and "..." not in r.text
        # The prompt's words appear whole or not at all: no word of it is cut.
        words = set(re.findall(r"[\w-]+", prompt))
        for token in re.findall(r"[\w-]+", r.text):
            assert token in words or not any(w.startswith(token) and w != token for w in words if len(w) > 12)
    assert "x" * 500 not in reply(("user", "x" * 500 + "?")).text


def test_replies_stay_deterministic_per_seed():
    a = reply(("system", "Answer in French."), ("user", "What is TLS?"), seed=7)
    b = reply(("system", "Answer in French."), ("user", "What is TLS?"), seed=7)
    c = reply(("system", "Answer in French."), ("user", "What is TLS?"), seed=8)
    assert a == b and a.text != c.text
