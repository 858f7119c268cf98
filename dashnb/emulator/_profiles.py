"""Server-time profiles: how long the emulated *model* takes, apart from the network.

    >>> PROFILES["instant"].server_time
    False
    >>> pace = model_pace("qwen-plus")
    >>> pace.ttft_ms, pace.tokens_per_s
    (400.0, 60.0)
    >>> model_pace("qwen3-max-preview") == model_pace("qwen3-max")   # a family shares its pace
    True
    >>> model_pace("qwen3.7-flash") == model_pace("qwen-flash")      # else its tier does
    True

``instant`` (the default) adds no server time beyond what ``ttfb_ms`` / ``token_rate`` ask for,
so lessons about the network see only the network. ``realistic`` gives each model a time to
first token and a generation speed, with jitter, so agent code and UIs meet the waits they will
meet in production: a non-streamed reply arrives after ``ttft + tokens / rate``, a streamed one
sends its first chunk after ``ttft`` and the next ones at the model's pace.

The figures are assumptions of the right order, not measurements of the service (which vary by
region, load, prompt length and day): small models answer sooner and faster than large ones,
thinking and vision models start later. Standard library only and no I/O.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["PROFILES", "PROFILE_CHOICES", "ModelPace", "Profile", "ServerClock", "model_pace"]


@dataclass(frozen=True)
class Profile:
    name: str
    server_time: bool  # whether the model's own pace applies
    description: str


PROFILES: Mapping[str, Profile] = MappingProxyType(
    {
        "instant": Profile(
            "instant",
            False,
            "no model time: replies are ready at once unless ttfb_ms/token_rate say otherwise "
            "(lessons about the network)",
        ),
        "realistic": Profile(
            "realistic",
            True,
            "each model's assumed time to first token and tokens per second, with jitter "
            "(agent code and UIs meeting production-like waits)",
        ),
    }
)
PROFILE_CHOICES = tuple(PROFILES)


@dataclass(frozen=True)
class ModelPace:
    ttft_ms: float  # time to first token (server side)
    tokens_per_s: float  # generation speed after it

    def __post_init__(self):
        if self.ttft_ms < 0 or self.tokens_per_s <= 0:
            raise ValueError(f"a model pace needs ttft_ms >= 0 and tokens_per_s > 0, got {self}")


# Longest prefix wins: "qwen3-max-preview" paces like "qwen3-max". Assumed figures (see above).
_PACES: Mapping[str, ModelPace] = MappingProxyType(
    {
        "qwen-flash": ModelPace(200.0, 150.0),
        "qwen-turbo": ModelPace(250.0, 120.0),
        "qwen-plus": ModelPace(400.0, 60.0),
        "qwen-long": ModelPace(600.0, 50.0),
        "qwen-max": ModelPace(700.0, 35.0),
        "qwen3-max": ModelPace(800.0, 35.0),
        "qwen3-coder": ModelPace(500.0, 60.0),
        "qwen3-235b": ModelPace(600.0, 40.0),
        "qwen3-32b": ModelPace(400.0, 50.0),
        "qwen3-8b": ModelPace(250.0, 90.0),
        "qwen2.5-72b": ModelPace(500.0, 40.0),
        "qwen2.5-7b": ModelPace(250.0, 90.0),
        "qwen-vl": ModelPace(700.0, 40.0),  # vision models read the image first
        "qwen2.5-vl": ModelPace(700.0, 40.0),
        "qwen3-vl": ModelPace(700.0, 45.0),
        "qvq": ModelPace(1200.0, 35.0),
        "qwq": ModelPace(1000.0, 40.0),
        # Embeddings produce no tokens: the whole call is their "first token".
        "text-embedding": ModelPace(60.0, 1000.0),
    }
)
_DEFAULT_PACE = ModelPace(500.0, 50.0)
# Newer generations (qwen3.5-plus, qwen3.7-max, ...) pace like the tier their name says.
_TIERS = ("flash", "turbo", "plus", "max")

# Jitter: time to first token spreads more (queueing, prompt length) than the pace of tokens.
TTFT_SPREAD = (0.75, 1.5)
GAP_SPREAD = (0.8, 1.25)


def model_pace(model: str) -> ModelPace:
    """The pace the realistic profile assumes for ``model`` (its family's, else a middle one)."""
    best = ""
    for prefix in _PACES:
        if model.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    if best:
        return _PACES[best]
    tier = next((t for t in _TIERS if f"-{t}" in model), None)
    return _PACES[f"qwen-{tier}"] if tier else _DEFAULT_PACE


class ServerClock:
    """Server time per request under the live options; jitter from one RNG seeded by ``seed``,
    so a run repeats. Used on the emulator's loop only."""

    def __init__(self) -> None:
        self._rng: random.Random | None = None
        self._seed: int | None = None

    def _random(self, opts) -> random.Random:
        if self._rng is None or self._seed != opts.seed:
            self._rng, self._seed = random.Random(opts.seed), opts.seed
        return self._rng

    def first_byte(self, opts, model: str, *, tokens: int, stream: bool) -> float:
        """Seconds before the first byte of the reply: ttfb_ms (plus its jitter) under any profile,
        and under ``realistic`` the model's time to first token, plus, when the reply is not
        streamed, the time to generate all its ``tokens``."""
        ms = opts.ttfb_ms
        if opts.ttfb_jitter_ms:
            ms += self._random(opts).uniform(0, opts.ttfb_jitter_ms)
        if PROFILES[opts.profile].server_time:
            pace = model_pace(model)
            rng = self._random(opts)
            ms += pace.ttft_ms * rng.uniform(*TTFT_SPREAD)
            if not stream and tokens > 1:
                ms += sum(self._gap_ms(pace, rng) for _ in range(tokens - 1))
        return ms / 1000.0

    def token_gap(self, opts, model: str) -> float:
        """Seconds between two streamed chunks: 1/token_rate if set, else the realistic pace, else 0."""
        if opts.token_rate:
            return 1.0 / opts.token_rate
        if PROFILES[opts.profile].server_time:
            return self._gap_ms(model_pace(model), self._random(opts)) / 1000.0
        return 0.0

    @staticmethod
    def _gap_ms(pace: ModelPace, rng: random.Random) -> float:
        return 1000.0 / pace.tokens_per_s * rng.uniform(*GAP_SPREAD)
