"""One timed SDK call: the I/O-free record-keeping shared by every mode, sync and async.

    >>> ctx = CallContext(ep, cfg, model="qwen-plus", prompt="hi", concurrency=1, session=None)  # doctest: +SKIP
    >>> ctx.sync_call("shared", 0, 0, s.requests)                                  # doctest: +SKIP
    CallTiming(mode='shared', index=0, ...)

The SDK answers an HTTP error with a response, not an exception; both become (status, error):

    >>> from types import SimpleNamespace as Response
    >>> _outcome(Response(status_code=200)), _outcome(Response(status_code=429, code="Throttling.RateQuota"))
    ((200, None), (429, 'Throttling.RateQuota'))

Every call goes through the official SDK (``Generation.call`` / ``AioGeneration.call``); the
two shells differ only in ``await``. The SDK returns HTTP errors as responses instead of raising,
so both map a response and a transport exception to the same ``(status, error)`` pair.
"""

from __future__ import annotations

import time
from typing import Any

from . import _observe
from ._config.pool import PoolConfig
from ._endpoint import Endpoint
from ._session.manager import NotebookSession
from ._stats import CallTiming

__all__ = ["CallContext"]


def _outcome(resp: Any) -> tuple[int | None, str | None]:
    """(status, error) of an SDK response: the SDK returns HTTP errors instead of raising."""
    status = getattr(resp, "status_code", None)
    if status == 200:
        return status, None
    code = getattr(resp, "code", None)
    return status, (code or f"HTTP {status}")


def timing(
    mode: str,
    index: int,
    block: int,
    start: float,
    end: float,
    status: int | None,
    error: str | None,
    sample: _observe.CallSample,
    reused: bool | None = None,
) -> CallTiming:
    if sample.path is None:  # not an instrumented session: only what the caller could see
        return CallTiming(mode, index, block, start=start, end=end, status=status, error=error, reused=reused)
    return CallTiming(
        mode,
        index,
        block,
        start=start,
        end=end,
        status=status,
        error=error,
        reused=sample.reused,
        queued_s=sample.queued_s,
        connect_s=sample.connect_s,
        tls_s=sample.tls_s,
        ttfb_s=sample.ttfb_s,
        connection_id=sample.connection_id,
        attempts=sample.attempts,
    )


class CallContext:
    """What every mode needs: where to call, with which settings."""

    def __init__(
        self,
        endpoint: Endpoint,
        config: PoolConfig,
        *,
        model: str,
        prompt: str,
        concurrency: int,
        session: NotebookSession | None,
    ) -> None:
        self.endpoint = endpoint
        self.config = config
        self.model = model
        self.prompt = prompt
        self.concurrency = concurrency
        self.user_session = session
        self.sdk_owner: str | None = None  # which sdk_* mode last used the SDK's shared session

    def call_kwargs(self, session: Any = None) -> dict[str, Any]:
        # Per call, not through dashscope's module globals, so a comparison leaves them alone.
        # No api_key here: the callers read it from the endpoint in the call expression itself,
        # so no local of a dashnb frame ever holds it (frame-capturing tools would show it).
        kwargs = dict(model=self.model, prompt=self.prompt, base_address=self.endpoint.base_url)
        if session is not None:  # None: the SDK's own shared session
            kwargs["session"] = session
        return kwargs

    def sync_call(self, mode: str, index: int, block: int, session: Any) -> CallTiming:
        from dashscope import Generation

        with _observe.call_scope() as rec:
            start = time.perf_counter()
            try:
                outcome = _outcome(Generation.call(**self.call_kwargs(session), api_key=self.endpoint.api_key))
            except Exception as exc:  # a transport failure: counted, the run goes on
                outcome = (None, type(exc).__name__)
            end = time.perf_counter()
        return timing(mode, index, block, start, end, *outcome, rec.snapshot())

    async def async_call(self, mode: str, index: int, block: int, session: Any) -> CallTiming:
        from dashscope import AioGeneration

        with _observe.call_scope() as rec:
            start = time.perf_counter()
            try:
                outcome = _outcome(await AioGeneration.call(**self.call_kwargs(session), api_key=self.endpoint.api_key))
            except Exception as exc:
                outcome = (None, type(exc).__name__)
            end = time.perf_counter()
        return timing(mode, index, block, start, end, *outcome, rec.snapshot())
