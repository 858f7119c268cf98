"""The httpx generation's modes: the dashscope 2.x client and the openai SDK, each sync or async,
streamed or not, on its own defaults or on the session's httpx client; and ``ssl_cert_file``,
a guarded ``SSL_CERT_FILE`` for code that builds a default client by hand (the modes no longer
need it: they hand each client the emulator's CA, ``_trusting``).

    >>> from dashnb._modes.httpx import HTTPX_MODES
    >>> [m.name for m in HTTPX_MODES][:2]
    ['v2_default', 'v2_dashnb']
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

from .. import _observe
from .._call import timing
from .._stats import CallTiming
from .base import Mode, SessionMode, bounded, sequential

# -- the httpx generation: the dashscope 2.x client and the openai SDK ---------------------------
#
# A ``*_default`` mode builds the SDK's client as a user would, on the SDK's own defaults. To reach
# an emulator that client must trust its CA, and the process environment is not the way: a
# ``SSL_CERT_FILE`` set while the client is built is seen by every thread meanwhile (one reading
# the emulator's CA path, another building a client for the real service). So the CA goes to the
# one client: openai's ``DefaultHttpxClient(verify=...)`` is its own defaults with our trust; the
# dashscope 2.x client offers no such hook, so the SSL context of the httpx client it built is told
# to trust the CA too (``_trust_ca``). A ``*_dashnb`` mode passes the session's ``.httpx`` /
# ``.httpx_async``, so dashnb's hooks count its calls. Nothing here imports httpx, openai or
# dashscope until a mode runs.


# The environment is the process's: two runs building clients at once would each save the
# other's value and restore it, leaving SSL_CERT_FILE naming a CA deleted with its emulator. One
# block at a time (re-entrant for a nested one), and always put back.
_ENV_LOCK = threading.RLock()


@contextlib.contextmanager
def ssl_cert_file(path: str | None) -> Iterator[None]:
    """``SSL_CERT_FILE=path`` inside the block (None: leave the environment alone). httpx and
    httpx2 clients built inside trust exactly that bundle. It is process-wide while it lasts
    (the SDKs' default clients read no other setting), so blocks take turns under a lock and
    the previous value is always restored; keep them to the building of a client."""
    if not path:
        yield
        return
    with _ENV_LOCK:
        had, old = "SSL_CERT_FILE" in os.environ, os.environ.get("SSL_CERT_FILE")
        os.environ["SSL_CERT_FILE"] = path
        try:
            yield
        finally:
            if had:
                os.environ["SSL_CERT_FILE"] = old  # type: ignore[assignment]
            else:
                os.environ.pop("SSL_CERT_FILE", None)


def _trust_ca(http_client: Any, ca_path: str) -> None:
    """Make an httpx client built on its defaults trust ``ca_path`` as well, before it connects.

    httpx keeps no public handle on the SSL context it built; its connection pool holds it
    (``Client._transport._pool._ssl_context``, one per client), and every connection of the client
    starts TLS with it. A release that moves it fails here, saying so, not with a certificate error.
    """
    pool = getattr(getattr(http_client, "_transport", None), "_pool", None)
    context = getattr(pool, "_ssl_context", None)
    if not isinstance(context, ssl.SSLContext):
        raise RuntimeError(
            f"cannot make {type(http_client).__module__}.{type(http_client).__name__} trust the emulator's CA: "
            "its SSL context is no longer at ._transport._pool._ssl_context in this release; use the *_dashnb "
            "modes (the session's own httpx client) instead"
        )
    context.load_verify_locations(cafile=ca_path)


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


class _HttpxMode(SessionMode):
    """One SDK client for the whole run: its own defaults, or on the session's httpx client."""

    sdk: ClassVar[str] = ""  # "v2" or "openai"
    stream: ClassVar[bool] = False
    dashnb: ClassVar[bool] = False

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self._client: Any = None
        self._loop: Any = None

    def client_connections(self) -> int | None:
        return super().client_connections() if self.dashnb else None

    def _build(self) -> Any:
        ep = self.ctx.endpoint
        ca = None if self.dashnb else ep.ca_path
        http: dict[str, Any] = {}
        if self.dashnb:
            http["http_client"] = self.session.httpx_async if self.is_async else self.session.httpx
        if self.sdk == "v2":
            import dashscope

            cls = dashscope.AsyncClient if self.is_async else dashscope.Client
            client = cls(api_key=ep.api_key, base_url=ep.base_url, **http)
            if ca:
                _trust_ca(client._transport.http_client, ca)
            return client
        import openai

        if ca:  # the SDK's documented way to keep its defaults (timeouts, limits) on a client of one's own
            default = openai.DefaultAsyncHttpxClient if self.is_async else openai.DefaultHttpxClient
            http["http_client"] = default(verify=ep.ssl_context())
        ocls = openai.AsyncOpenAI if self.is_async else openai.OpenAI
        return ocls(api_key=ep.api_key, base_url=ep.compatible_base_url, **http)

    def _messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.ctx.prompt}]

    def _one(self, i: int, block: int) -> CallTiming:
        if self._client is None:
            self._client = self._build()
        with _observe.call_scope() as rec:
            start = time.perf_counter()
            try:
                reply = self._client.chat.completions.create(
                    model=self.ctx.model, messages=self._messages(), stream=self.stream
                )
                if self.stream:
                    for _chunk in reply:
                        pass
                outcome: tuple[int | None, str | None] = (200, None)
            except Exception as exc:  # counted, the run goes on
                outcome = (_status(exc), type(exc).__name__)
            end = time.perf_counter()
        return timing(self.name, i, block, start, end, *outcome, rec.snapshot())

    async def _aone(self, i: int, block: int) -> CallTiming:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:  # an async client belongs to one loop
            self._client, self._loop = self._build(), loop
        with _observe.call_scope() as rec:
            start = time.perf_counter()
            try:
                reply = await self._client.chat.completions.create(
                    model=self.ctx.model, messages=self._messages(), stream=self.stream
                )
                if self.stream:
                    async for _chunk in reply:
                        pass
                outcome: tuple[int | None, str | None] = (200, None)
            except Exception as exc:
                outcome = (_status(exc), type(exc).__name__)
            end = time.perf_counter()
        return timing(self.name, i, block, start, end, *outcome, rec.snapshot())

    def run_block(self, indices, block, on_done):
        return sequential(lambda i: self._one(i, block), indices, on_done)

    async def arun_block(self, indices, block, on_done):
        # One call at a time, as a person prompting does (and so that reuse is what is measured).
        return await bounded(lambda i: self._aone(i, block), indices, 1, on_done)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and not self.is_async:
            client.close()  # a client given http_client= leaves it open: the session closes it
        super().close()

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            close = getattr(client, "aclose", None) or client.close
            await close()
        await super().aclose()


_WHAT = {
    "v2": ("dashscope.Client", "dashscope.AsyncClient"),
    "openai": ("openai.OpenAI", "openai.AsyncOpenAI"),
}


def _describe(sdk: str, is_async: bool, dashnb: bool, stream: bool) -> str:
    what = _WHAT[sdk][is_async]
    text = (
        f"{what} on the session's {'httpx_async' if is_async else 'httpx'} client"
        if dashnb
        else f"{what} with its defaults"
    )
    if stream:
        text += ", streamed"
        if sdk == "openai" and not is_async and not dashnb:
            text += " (the sync Stream drops its connection at [DONE])"
    return text


def _make_httpx_mode(sdk: str, is_async: bool, dashnb: bool, stream: bool) -> type[Mode]:
    name = "_".join(
        p
        for p in (sdk, "async" if is_async else "", "stream" if stream else "", "dashnb" if dashnb else "default")
        if p
    )
    return type(
        f"_Mode_{name}",
        (_HttpxMode,),
        {
            "name": name,
            "description": _describe(sdk, is_async, dashnb, stream),
            "sdk": sdk,
            "is_async": is_async,
            "stream": stream,
            "dashnb": dashnb,
            "path": "async" if is_async else "sync",
            "concurrent": False,
        },
    )


#: Every combination, in display order: the v2 client, then openai; sync, then async.
HTTPX_MODES: tuple[type[Mode], ...] = tuple(
    _make_httpx_mode(sdk, is_async, dashnb, stream)
    for sdk in ("v2", "openai")
    for is_async in (False, True)
    for stream in (False, True)
    for dashnb in (False, True)
)
