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
An unknown name gets the service's refusal (400 on the native protocol, 404 ``model_not_found`` on
compatible mode), so a typo is caught offline as well.

Versions. The service lists, beside each family's stable name, a ``-latest`` alias and dated
snapshots (``qwen-plus-latest``, ``qwen-plus-2025-07-28``; older ones are dated by month and day,
``qwen-plus-0428``): see Model Studio's model list and its "Deep thinking" page ("Only the latest and
0428 versions of Qwen-Plus ..."). `family` maps every such name to its family by a pattern, so a new
snapshot needs no entry here:

    >>> family("qwen-plus-2025-07-28"), family("qwq-plus-latest"), family("qwen-plus-0428")
    ('qwen-plus', 'qwq-plus', 'qwen-plus')
    >>> family("qwen-plus-2025-13-01") is None, family("qwen-pluss") is None
    (True, True)

What each model can do follows the service's documentation, simplified: "hybrid" models think only
when asked (``enable_thinking``), "only" models always think and stream only, and the open-source
qwen3 models think by default and refuse a non-streamed call unless thinking is switched off.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CATALOGUE", "CHAT_MODELS", "ModelInfo", "family", "is_chat_model", "model_card", "model_info"]


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

#: The families the text-generation routes accept (vision models answer text prompts too); their
#: ``-latest`` aliases and dated snapshots are accepted as well (see `family`).
CHAT_MODELS = frozenset(name for name, info in CATALOGUE.items() if info.kind in ("chat", "vision"))

# A family's name, then "-latest" or a snapshot's date: YYYY-MM-DD, or MMDD for the older ones.
_VERSION = re.compile(
    r"(?P<family>.+?)-(?:latest|20\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])|(?:0[1-9]|1[0-2])\d\d)"
)


def family(name: object) -> str | None:
    """The catalogue's name for ``name``: itself, or the family of a ``-latest`` alias or dated
    snapshot; None for a name the service does not serve."""
    if not isinstance(name, str):
        return None
    if name in CATALOGUE:
        return name
    m = _VERSION.fullmatch(name) if len(name) <= 64 else None
    return m.group("family") if m and m.group("family") in CATALOGUE else None


def model_info(name: str) -> ModelInfo:
    """What the model ``name`` (a family, an alias or a snapshot) can do; KeyError if none."""
    known = family(name)
    if known is None:
        raise KeyError(name)
    return CATALOGUE[known]


def is_chat_model(name: object) -> bool:
    """True for a name the text-generation routes answer for."""
    known = family(name)
    return known is not None and known in CHAT_MODELS


def model_card(name: str) -> dict:
    """The OpenAI-style description of one model (``GET /compatible-mode/v1/models/{id}``)."""
    return {"id": name, "object": "model", "created": 0, "owned_by": "emulator"}
