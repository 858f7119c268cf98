"""The models the emulator answers for, and what each can do.

    >>> CATALOGUE["qwen-plus"].thinking
    'hybrid'
    >>> model_card("qwen-plus")["object"]
    'model'

Where the names come from: the installed ``dashscope`` SDK (2.0.2) names its current chat models in
its examples and its CLI's model list (``examples/legacy_1x/generation/*.py`` default to
``qwen3.7-plus``; ``acli/config.py`` lists qwen3.8-max, qwen3.7-max, qwen3.7-plus, qwen3.5-plus,
qwen3.5-flash, qwen3-max, qwen-max, qwen-plus, qwen-turbo and the vision models; the examples also use
qwen3.8-flash, qwen3-vl-flash and text-embedding-v4). Older names the service still serves (qwen-flash,
qwen-long, the open-source qwen3 and qwen2.5 models, qwq-plus) stay, so code written last year runs too.
An unknown name gets the service's 400, so a typo is caught offline as well.

What each model can do follows the service's documentation, simplified: "hybrid" models think only
when asked (``enable_thinking``), "only" models always think and stream only, and the open-source
qwen3 models think by default and refuse a non-streamed call unless thinking is switched off.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CATALOGUE", "CHAT_MODELS", "ModelInfo", "model_card"]


@dataclass(frozen=True)
class ModelInfo:
    kind: str = "chat"  # "chat", "vision" (chat with image input) or "embedding"
    thinking: str | None = None  # None (cannot think), "hybrid" (asked per call) or "only" (always thinks)
    thinks_by_default: bool = False  # the open-source qwen3 models: enable_thinking defaults to true
    stream_only: bool = False
    tools: bool = True


_HYBRID = ModelInfo(thinking="hybrid")
_PLAIN = ModelInfo()
_OPEN_QWEN3 = ModelInfo(thinking="hybrid", thinks_by_default=True)

CATALOGUE: dict[str, ModelInfo] = {
    # current names, from the SDK's examples and CLI
    "qwen3.8-max": _HYBRID,
    "qwen3.8-flash": _HYBRID,
    "qwen3.7-max": _HYBRID,
    "qwen3.7-plus": _HYBRID,
    "qwen3.5-plus": _HYBRID,
    "qwen3.5-flash": _HYBRID,
    "qwen3-max": _PLAIN,
    "qwen-max": _PLAIN,
    "qwen-plus": _HYBRID,
    "qwen-turbo": _HYBRID,
    "qwen-flash": _HYBRID,
    "qwen-long": _PLAIN,
    "qwen3-coder-plus": _PLAIN,
    # open-source weights the service hosts
    "qwen3-235b-a22b": _OPEN_QWEN3,
    "qwen3-32b": _OPEN_QWEN3,
    "qwen3-8b": _OPEN_QWEN3,
    "qwen2.5-72b-instruct": _PLAIN,
    "qwen2.5-7b-instruct": _PLAIN,
    # thinking only
    "qwq-plus": ModelInfo(thinking="only", stream_only=True),
    # vision and embedding models, for the routes that serve them
    "qwen3-vl-plus": ModelInfo(kind="vision", thinking="hybrid"),
    "qwen3-vl-flash": ModelInfo(kind="vision", thinking="hybrid"),
    "qwen-vl-max": ModelInfo(kind="vision"),
    "qwen-vl-plus": ModelInfo(kind="vision"),
    "text-embedding-v4": ModelInfo(kind="embedding", tools=False),
    "text-embedding-v3": ModelInfo(kind="embedding", tools=False),
}

#: Models the text-generation routes accept (vision models answer text prompts too).
CHAT_MODELS = frozenset(name for name, info in CATALOGUE.items() if info.kind in ("chat", "vision"))


def model_card(name: str) -> dict:
    """The OpenAI-style description of one model (``GET /compatible-mode/v1/models/{id}``)."""
    return {"id": name, "object": "model", "created": 0, "owned_by": "emulator"}
