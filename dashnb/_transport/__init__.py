"""The mapping from a PoolConfig to requests, aiohttp and httpx objects, observed through their hooks.

    >>> s = build_requests_session(PoolConfig(), endpoint)             # doctest: +SKIP

The rules (which setting becomes which library knob, and why) are ``rules``; ``requests``,
``aiohttp`` and ``httpx`` build each library's objects on them (``httpx`` with ``httpx_pool``, the
observed httpcore pool, and ``httpx_drain``, streams that keep their connection after ``[DONE]``).
The functions here are the only way in from outside the package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import aiohttp
    import httpx
    import requests

    from .. import _observe
    from .._config.pool import PoolConfig
    from .._endpoint import Endpoint

__all__ = [
    "build_aiohttp_session",
    "build_httpx_async_client",
    "build_httpx_client",
    "build_requests_session",
    "wait_idle",
]


# The library modules import requests/urllib3 or aiohttp at their top; importing them here, on
# first use, keeps ``import dashnb`` from paying for either library.


def build_requests_session(
    config: PoolConfig, endpoint: Endpoint, observer: _observe.Observer | None = None
) -> requests.Session:
    """A requests.Session pooled as ``config`` says, trusting exactly ``endpoint``'s CA."""
    from . import requests as _translate_requests  # noqa: PLC0415 (imports requests)

    return _translate_requests.build_requests_session(config, endpoint, observer)


def build_aiohttp_session(
    config: PoolConfig, endpoint: Endpoint, observer: _observe.Observer | None = None
) -> aiohttp.ClientSession:
    """An aiohttp.ClientSession for the running loop, pooled and limited as ``config`` says."""
    from . import aiohttp as _translate_aiohttp  # noqa: PLC0415 (imports aiohttp)

    return _translate_aiohttp.build_aiohttp_session(config, endpoint, observer)


def build_httpx_client(
    config: PoolConfig, endpoint: Endpoint, observer: _observe.Observer | None = None
) -> httpx.Client:
    """An httpx.Client pooled as ``config`` says, trusting ``endpoint``'s CA, whose streams keep
    their connection after ``data: [DONE]``."""
    from . import httpx as _translate_httpx  # noqa: PLC0415 (imports httpx)

    return _translate_httpx.build_httpx_client(config, endpoint, observer)


def build_httpx_async_client(
    config: PoolConfig, endpoint: Endpoint, observer: _observe.Observer | None = None
) -> httpx.AsyncClient:
    """The async twin of ``build_httpx_client`` (one event loop; the caller closes it there)."""
    from . import httpx as _translate_httpx  # noqa: PLC0415 (imports httpx)

    return _translate_httpx.build_httpx_async_client(config, endpoint, observer)


async def wait_idle(session: aiohttp.ClientSession) -> None:
    """Wait until no request made through ``session`` (built here) is queued or unreleased."""
    from . import aiohttp as _translate_aiohttp  # noqa: PLC0415 (imports aiohttp)

    await _translate_aiohttp.wait_idle(session)
