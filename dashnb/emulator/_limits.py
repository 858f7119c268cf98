"""The limits every request meets before the emulator parses it: the body's size, the JSON's depth,
and the rate limit's token bucket. Shared by text generation (`_server`) and the other APIs
(`_admission`).
"""

from __future__ import annotations

#: The largest request body the emulator reads; a bigger one gets 413 naming this limit.
MAX_BODY_BYTES = 1 << 20
#: JSON nested deeper than this is refused with 400: no DashScope request needs more than a few levels.
MAX_JSON_DEPTH = 64
#: The most tokens one reply may have: the cap of ``reply_tokens`` and of what a JSON reply or a
#: tool call's arguments may grow to (the longest output a Qwen model gives is of this order).
MAX_REPLY_TOKENS = 32768


class _RateLimiter:
    """A token bucket: `rate` requests a second, bursts up to `rate`."""

    def __init__(self):
        self.rate = None
        self.tokens = 0.0
        self.stamp = 0.0

    def take(self, rate: float, now: float) -> float:
        """0 if the request may pass, else the seconds until it could."""
        if rate != self.rate:
            self.rate, self.tokens, self.stamp = rate, max(1.0, rate), now
        capacity = max(1.0, rate)
        self.tokens = min(capacity, self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / rate


class _TooLarge(Exception):
    def __init__(self, size: int | None):
        self.size = size


class _TooDeep(Exception):
    pass


async def _read_body(request, limit: int) -> bytes:
    """The body, or `_TooLarge` as soon as it is known to exceed ``limit`` (never buffered past it)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _TooLarge(declared)
    content = request.content
    if content.is_eof():
        # The whole body has arrived (a small one nearly always has, with its head): take it
        # at once instead of awaiting readany() for it and again for the end.
        body = content.read_nowait()
        if len(body) > limit:
            raise _TooLarge(declared)
        return body
    # readany() until it returns b"", which is all iter_any() does, without the iterator and
    # its frame per chunk; and a body that came in one chunk is returned uncopied.
    read = content.readany
    chunks = []
    size = 0
    while chunk := await read():
        size += len(chunk)
        if size > limit:
            raise _TooLarge(declared)
        chunks.append(chunk)
    return b"".join(chunks)


def _depth(value) -> int:
    """How deeply arrays and objects nest in a parsed JSON value (iterative: no recursion limit)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level)
            if level <= MAX_JSON_DEPTH:
                todo.extend((x, level + 1) for x in item)
    return deepest
