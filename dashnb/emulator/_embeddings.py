"""Text embeddings, native (``dashscope.TextEmbedding.call``) and OpenAI-compatible (``/embeddings``).

    >>> v = embed("text-embedding-v4", 64, "connection reuse")
    >>> v == embed("text-embedding-v4", 64, "connection reuse"), round(sum(x * x for x in v), 9)
    (True, 1.0)
    >>> near = cosine(embed("text-embedding-v4", 64, "reuse the connection"), v)
    >>> far = cosine(embed("text-embedding-v4", 64, "a cat on a mat"), v)
    >>> near > far
    True

The vectors are deterministic and unit length, and they carry a little meaning: each word adds
its own pseudo-random direction (a hashing "bag of words"), so texts that share words point the
same way and a retrieval test can check that a query finds the document that shares its words.
They are not a real model's embeddings: synonyms, word order and languages mean nothing here.

Linear in the text, with a small constant: a word's direction is the sum of `_ROWS_PER_WORD` rows,
chosen by one short hash of the word, of a fixed random table per model and dimension; a text
counts how often each row is chosen and multiplies those counts by the table once (numpy). Ten
texts of 8,000 distinct words at 2,048 dimensions take a fraction of a second, not the minute a
full-length hash and a Python sum per word took.
"""

from __future__ import annotations

import base64
import collections
import functools
import hashlib
import math
import re
import struct

import numpy as np

from . import _replies as R
from ._admission import Admitted, Refusal, admit, request_id

__all__ = ["COMPATIBLE_PATH", "EMBEDDING_MODELS", "NATIVE_PATH", "ROUTES", "cosine", "embed"]

NATIVE_PATH = "/api/v1/services/embeddings/text-embedding/text-embedding"
COMPATIBLE_PATH = "/compatible-mode/v1/embeddings"


class _Model:
    def __init__(self, default: int, dimensions: tuple[int, ...], batch: int, compatible: bool):
        self.default, self.dimensions, self.batch, self.compatible = default, dimensions, batch, compatible


#: The text embedding models, as the service documents them: default and allowed dimensions,
#: texts per call; v1/v2 are fixed at 1536 and not served in compatible mode.
EMBEDDING_MODELS = {
    "text-embedding-v1": _Model(1536, (1536,), 25, False),
    "text-embedding-v2": _Model(1536, (1536,), 25, False),
    "text-embedding-v3": _Model(1024, (1024, 768, 512, 256, 128, 64), 10, True),
    "text-embedding-v4": _Model(1024, (2048, 1536, 1024, 768, 512, 256, 128, 64), 10, True),
}
# The longest text a model embeds, in tokens (the service's limit for v3/v4).
MAX_TEXT_TOKENS = 8192
# Words and punctuation marks: the pieces whose directions a vector sums.
_WORDS = re.compile(r"\w+|[^\w\s]", re.UNICODE)


# Rows of a model's direction table, and how many of them (distinct) make one word's direction:
# two words share a row about once in 64 pairs, so unrelated words stay near orthogonal.
_TABLE_ROWS = 1024
_ROWS_PER_WORD = 4


def embed(model: str, dimension: int, text: str) -> list[float]:
    """The emulator's unit vector for ``text``: a sum of one pseudo-random direction per word."""
    counts: collections.Counter[int] = collections.Counter()
    for word, n in collections.Counter(_WORDS.findall(text.lower()) or [text]).items():
        for row in _rows(model, word):
            counts[row] += n
    rows = np.fromiter(counts, dtype=np.intp, count=len(counts))
    weights = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
    # Whole numbers far below 2**53: the sum is exact, the same on every machine and BLAS.
    acc = weights @ _table(model, dimension)[rows].astype(np.float64) + 0.5 * weights.sum()
    return (acc / np.sqrt(acc @ acc)).tolist()


def _rows(model: str, word: str) -> list[int]:
    """The distinct table rows whose sum is ``word``'s direction: one short hash of the word."""
    digest = hashlib.blake2b(f"{model}\x00{word}".encode(), digest_size=2 * _ROWS_PER_WORD).digest()
    rows: list[int] = []
    for i in range(_ROWS_PER_WORD):
        row = int.from_bytes(digest[2 * i : 2 * i + 2], "little") % _TABLE_ROWS
        while row in rows:
            row = (row + 1) % _TABLE_ROWS
        rows.append(row)
    return rows


@functools.lru_cache(maxsize=16)
def _table(model: str, dimension: int) -> np.ndarray:
    """The fixed random rows for ``model`` at ``dimension``, as int8 (2 MiB at most)."""
    raw = hashlib.shake_256(f"{model}\x00{dimension}".encode()).digest(_TABLE_ROWS * dimension)
    # int8 is -128..127, and embed() adds 0.5: centred (and never 0), so unrelated rows are near orthogonal.
    return np.frombuffer(raw, dtype=np.int8).reshape(_TABLE_ROWS, dimension)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


class _Invalid(Exception):
    def __init__(self, message: str, code: str = "InvalidParameter"):
        super().__init__(message)
        self.message, self.code = message, code


def _texts(value, *, name: str) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise _Invalid(f"{name} must be a non-empty string or a non-empty list of strings.")
    for i, t in enumerate(texts):
        if not t.strip():
            raise _Invalid(f"{name}[{i}] is empty: every text must have some content.")
        if R.count_tokens(t) > MAX_TEXT_TOKENS:
            raise _Invalid(f"{name}[{i}] is longer than {MAX_TEXT_TOKENS} tokens.")
    return texts


def _model(name, *, compatible: bool) -> _Model:
    known = [m for m, spec in EMBEDDING_MODELS.items() if spec.compatible or not compatible]
    if not isinstance(name, str) or name not in known:
        raise _Invalid(f"Model not exist: {name!r}. The emulator embeds with: {', '.join(known)}.")
    return EMBEDDING_MODELS[name]


def _dimension(spec: _Model, value, *, name: str) -> int:
    if value is None:
        return spec.default
    if isinstance(value, bool) or not isinstance(value, int) or value not in spec.dimensions:
        allowed = ", ".join(str(d) for d in spec.dimensions)
        raise _Invalid(f"{name} must be one of {allowed} for this model, got {value!r}.")
    return value


def _vectors(model: str, spec: _Model, texts: list[str], dimension: int) -> list[list[float]]:
    if len(texts) > spec.batch:
        raise _Invalid(f"Too many texts: this model embeds at most {spec.batch} per call, got {len(texts)}.")
    return [embed(model, dimension, t) for t in texts]


async def _wait(app, opts, model: str) -> None:
    import asyncio

    seconds = app.clock.first_byte(opts, model, tokens=1, stream=False)
    if seconds:
        await asyncio.sleep(seconds)  # server time, as the profile says


async def native(app, request):
    """``POST /api/v1/services/embeddings/text-embedding/text-embedding`` (TextEmbedding.call)."""
    fail = Refusal(app, request_id(request), compatible=False)
    got = await admit(app, request, fail)
    if not isinstance(got, Admitted):
        return got
    body = got.body
    try:
        spec = _model(body.get("model"), compatible=False)
        inp = body.get("input")
        if not isinstance(inp, dict) or "texts" not in inp:
            raise _Invalid("Input is missing: send input.texts, a list of strings.")
        texts = _texts(inp["texts"], name="input.texts")
        params = body.get("parameters") or {}
        if not isinstance(params, dict):
            raise _Invalid("parameters must be a JSON object.")
        dimension = _dimension(spec, params.get("dimension"), name="parameters.dimension")
        if params.get("output_type", "dense") != "dense":
            raise _Invalid("The emulator returns dense vectors only: output_type must be 'dense'.")
        vectors = _vectors(body["model"], spec, texts, dimension)
    except _Invalid as exc:
        return fail(400, exc.code, exc.message)
    await _wait(app, got.opts, body["model"])
    payload = {
        "output": {"embeddings": [{"text_index": i, "embedding": v} for i, v in enumerate(vectors)]},
        "usage": {"total_tokens": sum(R.count_tokens(t) for t in texts)},
        "request_id": got.rid,
    }
    return await app._body(request, payload, got.opts)


async def compatible(app, request):
    """``POST /compatible-mode/v1/embeddings`` (openai ``client.embeddings.create``)."""
    fail = Refusal(app, request_id(request), compatible=True)
    got = await admit(app, request, fail)
    if not isinstance(got, Admitted):
        return got
    body = got.body
    try:
        spec = _model(body.get("model"), compatible=True)
        texts = _texts(body.get("input"), name="input")
        dimension = _dimension(spec, body.get("dimensions"), name="dimensions")
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise _Invalid(f"encoding_format must be 'float' or 'base64', got {encoding!r}.")
        vectors = _vectors(body["model"], spec, texts, dimension)
    except _Invalid as exc:
        return fail(400, exc.code, exc.message)
    await _wait(app, got.opts, body["model"])

    def encoded(v):
        # base64 of little-endian float32s: what the openai SDK asks for by default and decodes.
        return base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() if encoding == "base64" else v

    tokens = sum(R.count_tokens(t) for t in texts)
    payload = {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": encoded(v)} for i, v in enumerate(vectors)],
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        "id": got.rid,
    }
    return await app._body(request, payload, got.opts)


ROUTES = {NATIVE_PATH: native, COMPATIBLE_PATH: compatible}
