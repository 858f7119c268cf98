"""The Java SDK's seven settings by name: their Java spellings, defaults and environment
variables, and how a value or a default is written in a message.

    >>> from dashnb._config.names import JAVA_NAMES, default_text
    >>> JAVA_NAMES["connection_pool_size"], default_text("read_timeout")
    ('connectionPoolSize', '300 s')

The ground floor of ``dashnb._config``: ``checks``, ``java``, ``table``, ``v2`` and ``pool`` all
read these. Standard library only.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import types
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["ENV_VARS", "JAVA_DEFAULTS", "JAVA_NAMES", "PoolConfigWarning"]

JAVA_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "connect_timeout": "connectTimeout",
        "read_timeout": "readTimeout",
        "write_timeout": "writeTimeout",
        "connection_idle_timeout": "connectionIdleTimeout",
        "connection_pool_size": "connectionPoolSize",
        "maximum_async_requests": "maximumAsyncRequests",
        "maximum_async_requests_per_host": "maximumAsyncRequestsPerHost",
    }
)

ENV_VARS: Mapping[str, str] = MappingProxyType(
    {
        "connect_timeout": "DASHSCOPE_CONNECTION_TIMEOUT",
        "read_timeout": "DASHSCOPE_READ_TIMEOUT",
        "write_timeout": "DASHSCOPE_WRITE_TIMEOUT",
        # Not ..._IDLE_TIMEOUT: the Java SDK spells this one differently.
        "connection_idle_timeout": "DASHSCOPE_CONNECTION_IDLE_TIME",
        "connection_pool_size": "DASHSCOPE_CONNECTION_POOL_SIZE",
        "maximum_async_requests": "DASHSCOPE_MAXIMUM_ASYNC_REQUESTS",
        "maximum_async_requests_per_host": "DASHSCOPE_MAXIMUM_ASYNC_REQUESTS_PER_HOST",
    }
)

JAVA_DEFAULTS: Mapping[str, float | int] = MappingProxyType(
    {
        "connect_timeout": 120.0,
        "read_timeout": 300.0,
        "write_timeout": 60.0,
        "connection_idle_timeout": 300.0,
        "connection_pool_size": 32,
        "maximum_async_requests": 32,
        "maximum_async_requests_per_host": 32,
    }
)

DURATIONS = ("connect_timeout", "read_timeout", "write_timeout", "connection_idle_timeout")
COUNTS = ("connection_pool_size", "maximum_async_requests", "maximum_async_requests_per_host")
JAVA_INT_MAX = 2**31 - 1


def both(name: str) -> str:
    return f"{name} (Java {JAVA_NAMES[name]})"


def show(value: Any) -> str:
    if isinstance(value, int) and value.bit_length() > 256:
        # repr() of an int past 4300 digits raises ValueError, and no one reads 80 digits anyway
        return f"a{' negative' if value < 0 else ''} number of about {int(value.bit_length() * 0.30103)} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def fmt_seconds(seconds: float) -> str:
    # 15 significant digits hide float noise such as 0.30000000000000004.
    return format(seconds, ".15g")


def default_text(name: str) -> str:
    default = JAVA_DEFAULTS[name]
    if name in DURATIONS:
        return f"{fmt_seconds(default)} s"
    return str(default)


# The modules whose frames a warning points past (this one is never on the stack when it warns).
_HERE = os.path.dirname(os.path.abspath(__file__))


class PoolConfigWarning(UserWarning):
    """A PoolConfig breaks one of the Java SDK's documented constraints.

    Pass ``strict=True`` to PoolConfig to get a ValueError instead.
    """


def caller_stacklevel() -> int:
    """stacklevel for warnings.warn called from the caller of this function, pointing past
    PoolConfig's module, ``java``, dataclasses.replace and the generated __init__ at the user's line."""
    internal = {os.path.join(_HERE, "pool.py"), os.path.join(_HERE, "java.py"), dataclasses.__file__}
    frame: types.FrameType | None = sys._getframe(2)
    level = 2
    while frame is not None and (
        frame.f_code.co_filename in internal
        or (frame.f_code.co_name == "__init__" and frame.f_code.co_filename.startswith("<"))
    ):
        frame = frame.f_back
        level += 1
    return level
