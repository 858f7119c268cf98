"""The private parts of requests/urllib3, aiohttp, httpx/httpcore and dashscope that dashnb relies on.

One test per entry of docs/internals.md. A release that renames, removes or reshapes one of them fails
here with a message naming the entry and the dashnb module that depends on it, instead of failing
somewhere inside a measurement.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpcore
import httpx
import pytest
import requests
import urllib3
from aiohttp import client_proto, connector
from dashscope.api_entities import http_request
from httpx import _utils
from urllib3 import connection, connectionpool


@dataclass(frozen=True)
class Internal:
    library: str
    name: str
    used_by: str
    check: Callable[[], None]

    def __str__(self) -> str:
        return f"{self.library} {self.name}"


def _params(fn: Callable, expected: list[str]) -> None:
    got = [p for p in inspect.signature(fn).parameters if p != "self"]
    assert got == expected, f"parameters are now {got}, dashnb was written for {expected}"


def _aiohttp_conns() -> None:
    async def probe() -> None:
        conn = aiohttp.TCPConnector()
        try:
            assert isinstance(conn._conns, dict), f"_conns is now a {type(conn._conns).__name__}, not a dict"
        finally:
            await conn.close()

    asyncio.run(probe())


def _aiohttp_connection_protocol() -> None:
    src = inspect.getsource(connector.Connection.__init__)
    assert re.search(r"self\._protocol\b[^=\n]*= protocol\b", src), "Connection no longer keeps _protocol"
    assert re.search(r"self\._connector\b[^=\n]*= connector\b", src), "Connection no longer keeps _connector"


def _aiohttp_read_timeout() -> None:
    src = inspect.getsource(client_proto.ResponseHandler)
    assert "self._read_timeout" in src, "ResponseHandler no longer keeps its read timeout in _read_timeout"
    prop = client_proto.ResponseHandler.read_timeout
    assert isinstance(prop, property) and prop.fset is not None, "read_timeout is no longer a settable property"


def _httpx_pool() -> None:
    for transport in (httpx.HTTPTransport(), httpx.AsyncHTTPTransport()):
        pool = transport._pool
        assert isinstance(pool, httpcore.ConnectionPool | httpcore.AsyncConnectionPool), (
            f"{type(transport).__name__}._pool is now a {type(pool).__name__}"
        )
        assert hasattr(pool, "_ssl_context"), f"{type(pool).__name__} no longer keeps _ssl_context"


def _httpx_environment_proxies() -> None:
    _params(_utils.get_environment_proxies, [])
    assert isinstance(_utils.get_environment_proxies(), dict)


def _httpcore_assign() -> None:
    for pool in (httpcore.ConnectionPool, httpcore.AsyncConnectionPool):
        _params(pool._assign_requests_to_connections, [])
        _params(pool.create_connection, ["origin"])
        made = pool(max_keepalive_connections=3)
        assert isinstance(made._connections, list), f"{pool.__name__}._connections is no longer a list"
        assert made._max_keepalive_connections == 3, f"{pool.__name__} no longer keeps _max_keepalive_connections"


def _dashscope_shared_session() -> None:
    session = http_request._get_shared_sync_session()
    assert isinstance(session, requests.Session), f"the shared session is now a {type(session).__name__}"
    http_request.close_shared_sync_session()


INTERNALS = [
    Internal(
        "aiohttp",
        "TCPConnector._release(key, protocol, *, should_close)",
        "_transport/aiohttp.py",
        lambda: _params(aiohttp.TCPConnector._release, ["key", "protocol", "should_close"]),
    ),
    Internal(
        "aiohttp",
        "BaseConnector._create_connection(req, traces, timeout)",
        "_transport/aiohttp.py",
        lambda: _params(aiohttp.TCPConnector._create_connection, ["req", "traces", "timeout"]),
    ),
    Internal(
        "aiohttp",
        "BaseConnector._wait_for_available_connection(key, traces)",
        "_transport/aiohttp.py",
        lambda: _params(aiohttp.TCPConnector._wait_for_available_connection, ["key", "traces"]),
    ),
    Internal(
        "aiohttp",
        "BaseConnector._close(*, abort_ssl)",
        "_transport/aiohttp.py",
        lambda: _params(aiohttp.TCPConnector._close, ["abort_ssl"]),
    ),
    Internal("aiohttp", "BaseConnector._conns (dict of idle connections)", "_transport/aiohttp.py", _aiohttp_conns),
    Internal("aiohttp", "Connection._protocol and _connector", "_transport/aiohttp.py", _aiohttp_connection_protocol),
    Internal("aiohttp", "ResponseHandler._read_timeout", "_transport/aiohttp.py", _aiohttp_read_timeout),
    Internal(
        "urllib3",
        "HTTPConnectionPool._get_conn(timeout)",
        "_transport/requests.py",
        lambda: _params(connectionpool.HTTPConnectionPool._get_conn, ["timeout"]),
    ),
    Internal(
        "urllib3",
        "HTTPConnectionPool._put_conn(conn)",
        "_transport/requests.py",
        lambda: _params(connectionpool.HTTPConnectionPool._put_conn, ["conn"]),
    ),
    Internal(
        "urllib3",
        "HTTPConnection._new_conn()",
        "_transport/requests.py",
        lambda: _params(connection.HTTPConnection._new_conn, []),
    ),
    Internal("httpx", "HTTPTransport._pool and its _ssl_context", "_transport/httpx.py, _modes/httpx.py", _httpx_pool),
    Internal("httpx", "_utils.get_environment_proxies()", "_transport/httpx.py", _httpx_environment_proxies),
    Internal(
        "httpcore",
        "ConnectionPool._assign_requests_to_connections(), create_connection(origin), "
        "_connections, _max_keepalive_connections",
        "_transport/httpx_pool.py, _transport/httpx_keepalive.py",
        _httpcore_assign,
    ),
    Internal(
        "dashscope",
        "api_entities.http_request._get_shared_sync_session()",
        "_modes/sdk.py",
        _dashscope_shared_session,
    ),
]


@pytest.mark.parametrize("internal", INTERNALS, ids=str)
def test_a_library_internal_dashnb_relies_on_is_still_there(internal: Internal) -> None:
    versions = f"aiohttp {aiohttp.__version__}, urllib3 {urllib3.__version__}, httpx {httpx.__version__}, " + (
        f"httpcore {httpcore.__version__}"
    )
    try:
        internal.check()
    except (AssertionError, AttributeError, TypeError, ValueError, OSError) as exc:
        pytest.fail(
            f"{internal} changed ({versions}): {exc}. dashnb/{internal.used_by} relies on it; "
            "see docs/internals.md for what it is used for and what to change.",
            pytrace=False,
        )


def test_every_internal_is_listed_in_the_docs() -> None:
    page = (Path(__file__).parents[2] / "docs" / "internals.md").read_text(encoding="utf-8")
    missing = [str(i) for i in INTERNALS if f"`{i.name}`" not in page]
    assert not missing, f"docs/internals.md does not list: {missing}"


def test_a_changed_signature_is_reported_with_the_entry_and_its_user() -> None:
    """Negative control: a check against a signature that is not the library's fails, naming it."""

    def reshaped(self, key, protocol, should_close=False, extra=None): ...

    with pytest.raises(AssertionError, match="parameters are now"):
        _params(reshaped, ["key", "protocol", "should_close"])
