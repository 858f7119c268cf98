"""Streams that keep their httpx connection: the body's end read after ``data: [DONE]``.

The openai SDK's sync ``Stream`` closes the response as soon as it has read
``data: [DONE]``; the chunked body's end (``0\\r\\n\\r\\n``) usually arrives a moment later, and
httpcore closes a connection whose response was closed before its end was read. So every streamed
completion through a plain ``httpx.Client`` pays a new TCP and TLS handshake. dashnb's transport
(``dashnb._transport.httpx``) wraps each response body in a ``DrainingStream``, which knows the
protocol: when the caller closes a ``text/event-stream`` response whose last event was
``data: [DONE]``, it reads on for at most the drain budget (one read, its timeout the budget).
If the body ends in time the connection goes back to the pool; if the budget runs out or the
peer sends anything else (a keep-alive comment, another event), the connection is closed as
before. Streams closed before ``[DONE]`` are closed at once: draining them could mean waiting
for a whole generation. (openai's ``AsyncStream`` drains 0.1 s itself; the dashscope v2 client
reads every stream to its end and needs none of this.)

    >>> from dashnb._transport.httpx_drain import after_done
    >>> after_done(b'data: {"x": 1}\\n\\ndata: [DONE]\\n\\n'), after_done(b"data: [DONE]")
    (True, False)

Imported with the transports, so it imports httpx at the top.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx

from .. import _observe

log = logging.getLogger(__name__)

__all__ = ["AsyncDrainingStream", "DrainState", "DrainingStream", "after_done", "is_sse"]

_DONE = (b"data: [DONE]", b"data:[DONE]")


def after_done(tail: bytes) -> bool:
    """Does the body read so far end with a complete ``data: [DONE]`` event?"""
    if not (tail.endswith(b"\n\n") or tail.endswith(b"\r\n\r\n") or tail.endswith(b"\r\r")):
        return False
    return tail.rstrip(b"\r\n").endswith(_DONE)


def is_sse(response: httpx.Response) -> bool:
    return (
        response.extensions.get("http_version", b"HTTP/1.1") == b"HTTP/1.1"
        and response.headers.get("content-type", "").split(";")[0].strip().lower() == "text/event-stream"
        and "content-encoding" not in response.headers  # the tail would be compressed bytes
    )


class DrainState:
    __slots__ = ("request", "budget", "observer", "path", "sse", "tail", "ended", "closed")

    def __init__(self, request: httpx.Request, budget: float, observer: _observe.Observer, path: str, sse: bool):
        self.request = request
        self.budget = budget
        self.observer = observer
        self.path = path
        self.sse = sse
        self.tail = b""
        self.ended = self.closed = False

    def seen(self, chunk: bytes) -> None:
        self.tail = (self.tail + chunk)[-64:]

    def should_drain(self) -> bool:
        return self.sse and not self.ended and self.budget > 0 and after_done(self.tail)

    def set_budget(self) -> Any:
        ext = self.request.extensions
        saved = ext.get("timeout")
        # httpcore reads the read timeout when a new pass over the body starts: this one gets the budget.
        ext["timeout"] = {**(saved or {}), "read": self.budget}
        return saved

    def done(self, saved: Any, outcome: str, t0: float) -> None:
        self.request.extensions["timeout"] = saved
        log.debug("drain after [DONE]: %s in %.1f ms", outcome, (time.perf_counter() - t0) * 1e3)


class DrainingStream(httpx.SyncByteStream):
    """The response body, passed through; closing it after ``data: [DONE]`` first reads the
    body's end within the budget, so httpcore can keep the connection."""

    def __init__(self, inner: httpx.SyncByteStream, state: DrainState) -> None:
        self._inner = inner
        self._s = state
        # httpcore's body iterator closes the connection when it is closed half-read, and a reader
        # that stops at [DONE] drops its iterators (closing them) before it closes the response.
        # Held here, ours stays open until close() has drained; then closing it does nothing.
        self._it: Any = None

    def __iter__(self):
        s = self._s
        if self._it is None:
            self._it = iter(self._inner)
        it = self._it
        try:
            while True:
                try:
                    chunk = next(it)
                except StopIteration:
                    break
                if s.sse:
                    s.seen(chunk)
                yield chunk
        except GeneratorExit:
            raise
        except Exception as exc:
            s.observer.request_failed(s.path, exc)
            raise
        s.ended = True

    def close(self) -> None:
        s = self._s
        if s.closed:
            return
        s.closed = True
        try:
            if s.should_drain():
                self._drain()
            self._inner.close()
        finally:
            self._it = None

    def _drain(self) -> None:
        s = self._s
        t0 = time.perf_counter()
        saved = s.set_budget()
        outcome = "body ended, connection kept"
        try:
            # A new pass over the same response: httpcore carries on where the caller stopped.
            # Leaving it early (more data) closes the connection, as closing the response would.
            for chunk in self._inner:
                if chunk:
                    outcome = "peer kept talking, connection closed"
                    break
        except Exception as exc:  # the budget ran out: the caller's output is complete, do not fail it
            outcome = f"{type(exc).__name__}, connection closed"
        finally:
            s.done(saved, outcome, t0)


class AsyncDrainingStream(httpx.AsyncByteStream):
    """The async twin of ``DrainingStream``."""

    def __init__(self, inner: httpx.AsyncByteStream, state: DrainState) -> None:
        self._inner = inner
        self._s = state
        # As in DrainingStream: an abandoned async iterator is closed by the loop's finalizer,
        # at the next await (inside the drain); holding httpcore's here keeps the connection.
        self._it: Any = None

    async def __aiter__(self):
        s = self._s
        if self._it is None:
            self._it = self._inner.__aiter__()
        it = self._it
        try:
            while True:
                try:
                    chunk = await it.__anext__()
                except StopAsyncIteration:
                    break
                if s.sse:
                    s.seen(chunk)
                yield chunk
        except GeneratorExit:
            raise
        except Exception as exc:
            s.observer.request_failed(s.path, exc)
            raise
        s.ended = True

    async def aclose(self) -> None:
        s = self._s
        if s.closed:
            return
        s.closed = True
        try:
            if s.should_drain():
                await self._drain()
            await self._inner.aclose()
        finally:
            it, self._it = self._it, None
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()  # httpcore's stream is closed already: this only ends the generator

    async def _drain(self) -> None:
        s = self._s
        t0 = time.perf_counter()
        saved = s.set_budget()
        outcome = "body ended, connection kept"
        it = self._inner.__aiter__()
        try:
            async for chunk in it:
                if chunk:
                    outcome = "peer kept talking, connection closed"
                    break
        except Exception as exc:
            outcome = f"{type(exc).__name__}, connection closed"
        finally:
            # An async generator left early is not closed by refcounting: close it now, which
            # closes the connection (it was not at the body's end).
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:  # noqa: S110 - closing after a failure: nothing left to report
                    pass
            s.done(saved, outcome, t0)
