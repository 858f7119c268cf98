"""The dashscope 2.x client's pool settings, to and from a PoolConfig.

    >>> from dashnb import PoolConfig
    >>> config = PoolConfig.from_v2({"DASHSCOPE_HTTP_MAX_CONNECTIONS": "8", "http_max_keepalive_connections": 8})
    >>> config.maximum_async_requests, config.connection_pool_size, config.connect_timeout
    (8, 8, 5.0)

The v2 client pools with httpx (``dashscope/v2/_config.py``, ``dashscope/v2/transport/http.py``):
``from_v2`` reads its settings (a client, its config, or its variables) into a PoolConfig, and
``v2_snippet`` writes a PoolConfig back as the variables and ``dashscope.settings`` lines that
give a v2 client the same pool. ``dashnb._transport.httpx`` maps a PoolConfig onto httpx itself.

Standard library only: a client's httpx timeout is recognised through the httpx that client
already imported, so ``import dashnb`` never imports httpx. ``PoolConfig`` hands ``from_v2`` the
class to build, so this module sits below ``pool``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .pool import PoolConfig

__all__ = ["V2_DEFAULTS", "V2_ENV_VARS", "from_v2", "v2_snippet"]

#: The dashscope 2.x client's pool and timeout settings (``dashscope/v2/_config.py`` and
#: ``dashscope/v2/transport/http.py``): name -> default.
V2_DEFAULTS: Mapping[str, float | int] = {
    "http_max_connections": 100,
    "http_max_keepalive_connections": 20,
    "http_keepalive_expiry": 5.0,
    "timeout": 300.0,
    "connect_timeout": 5.0,  # DEFAULT_CONNECT_TIMEOUT in transport/http.py: no setting, no variable
    "max_retries": 2,
}

#: Where each v2 setting can also come from: the environment variable the SDK reads.
V2_ENV_VARS: Mapping[str, str] = {
    "http_max_connections": "DASHSCOPE_HTTP_MAX_CONNECTIONS",
    "http_max_keepalive_connections": "DASHSCOPE_HTTP_MAX_KEEPALIVE_CONNECTIONS",
    "http_keepalive_expiry": "DASHSCOPE_HTTP_KEEPALIVE_EXPIRY",
    "timeout": "DASHSCOPE_TIMEOUT",
    "max_retries": "DASHSCOPE_MAX_RETRIES",
}

_V2_INTS = ("http_max_connections", "http_max_keepalive_connections", "max_retries")


def _v2_values(source: Any) -> dict[str, Any]:
    """The v2 settings named by ``source``: a ``dashscope.v2`` Config, a Client / AsyncClient,
    or a mapping of setting names (as in ``config.toml``) and/or environment variables."""
    config = getattr(source, "config", source)  # a Client has .config
    if not isinstance(config, Mapping) and hasattr(config, "http_max_connections"):
        values = {name: getattr(config, name) for name in V2_DEFAULTS if hasattr(config, name)}
        transport = getattr(getattr(source, "transport", None), "http_client", None)
        timeout = getattr(transport, "timeout", None)
        httpx = sys.modules.get("httpx")  # a client that has an httpx transport has imported httpx
        if httpx is not None and isinstance(timeout, httpx.Timeout) and timeout.connect is not None:
            values["connect_timeout"] = timeout.connect
        return values
    if not isinstance(config, Mapping):
        raise TypeError(
            "from_v2() takes a dashscope.Client / AsyncClient, its .config, or a mapping of v2 setting "
            f"names or DASHSCOPE_* environment variables; got {type(source).__name__}"
        )
    by_env = {env: name for name, env in V2_ENV_VARS.items()}
    values = {}
    for key, raw in config.items():
        name = str(by_env.get(key, key))
        if name not in V2_DEFAULTS:
            if isinstance(key, str) and key.startswith("DASHSCOPE_"):
                continue  # another of the SDK's variables (API key, region...): not a pool setting
            raise ValueError(
                f"unknown dashscope v2 setting {key!r}; pool settings are {', '.join(V2_DEFAULTS)} "
                f"(or their variables {', '.join(V2_ENV_VARS.values())})"
            )
        if raw is None or raw == "":
            continue  # the SDK treats an empty variable as unset
        try:
            values[name] = int(raw) if name in _V2_INTS else float(raw)
        except (TypeError, ValueError):
            kind = "an integer" if name in _V2_INTS else "a number"
            raise ValueError(f"dashscope v2 setting {key}={raw!r}: the SDK expects {kind}") from None
    return values


def from_v2(cls: type[PoolConfig], source: Any, *, strict: bool = False) -> PoolConfig:
    """A PoolConfig with the pool and timeouts a dashscope 2.x client would use.

    Missing settings take the v2 defaults. ``http_max_connections`` becomes both Dispatcher
    limits (httpx has one limit, DashScope is one host), ``timeout`` the read and write timeouts,
    the fixed 5 s connect timeout ``connect_timeout``. The v2 defaults (100 connections, 20 kept)
    break the Java SDK's ``maximumAsyncRequests <= connectionPoolSize``, so they warn
    (PoolConfigWarning): a burst of more than 20 calls closes the extras once idle.

    A client given ``http_client=`` reports the settings it resolved, not that client's pool:
    read the pool you passed from its own configuration instead.
    """
    v = {**V2_DEFAULTS, **_v2_values(source)}
    if v["http_max_keepalive_connections"] < 1:
        raise ValueError(
            "http_max_keepalive_connections=0 keeps no idle connection, so every call opens a new one; "
            "PoolConfig.connection_pool_size must be at least 1"
        )
    return cls(
        connect_timeout=v["connect_timeout"],
        read_timeout=v["timeout"],
        write_timeout=v["timeout"],
        connection_idle_timeout=v["http_keepalive_expiry"],
        connection_pool_size=v["http_max_keepalive_connections"],
        maximum_async_requests=v["http_max_connections"],
        maximum_async_requests_per_host=v["http_max_connections"],
        strict=strict,
    )


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def v2_snippet(config: PoolConfig) -> str:
    """Environment lines (and the same as ``dashscope.settings``) that give a dashscope 2.x client
    ``config``'s pool, with what v2 cannot take from it said as comments."""
    total = min(config.maximum_async_requests, config.maximum_async_requests_per_host)
    pairs = [
        ("http_max_connections", str(total)),
        ("http_max_keepalive_connections", str(config.connection_pool_size)),
        ("http_keepalive_expiry", _num(config.connection_idle_timeout)),
        ("timeout", _num(config.read_timeout)),
    ]
    lines = ["# environment (read when a dashscope.Client is created)"]
    lines += [f"{V2_ENV_VARS[name]}={value}" for name, value in pairs]
    lines += ["", "# or in Python, before creating the client", "import dashscope"]
    lines += [f"dashscope.settings.{name} = {value}" for name, value in pairs]
    notes = []
    if config.write_timeout != config.read_timeout:
        notes.append(f"write_timeout {_num(config.write_timeout)} s: v2 uses `timeout` for read, write and pool alike")
    if config.connect_timeout != V2_DEFAULTS["connect_timeout"]:
        notes.append(
            f"connect_timeout {_num(config.connect_timeout)} s: v2's is fixed at 5 s; pass "
            "http_client=httpx.Client(timeout=httpx.Timeout(..., connect=...)) (dashnb.session().httpx does)"
        )
    if config.maximum_async_requests != config.maximum_async_requests_per_host:
        notes.append("v2 has one connection limit, not a global and a per-host one: the smaller is used")
    lines += [""] + [f"# {n}" for n in notes] if notes else []
    return "\n".join(lines).rstrip()
