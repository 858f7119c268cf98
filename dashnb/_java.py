"""The Java side of PoolConfig: the SDK's names, defaults and environment variables, Java
Duration text, and the Java builder code.

    >>> from dashnb._java import ENV_VARS, parse_text
    >>> ENV_VARS["connection_idle_timeout"]
    'DASHSCOPE_CONNECTION_IDLE_TIME'
    >>> parse_text("connect_timeout", "PT1M30S")
    90.0

``dashnb._config`` imports this module; this module imports ``_config`` only inside functions
(for validation and the PoolConfig class), so there is no import cycle. Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from fractions import Fraction
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ._config import PoolConfig

__all__ = ["ENV_VARS", "JAVA_DEFAULTS", "JAVA_NAMES", "from_env", "java_snippet", "parse_text"]

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

_DURATIONS = ("connect_timeout", "read_timeout", "write_timeout", "connection_idle_timeout")
_COUNTS = ("connection_pool_size", "maximum_async_requests", "maximum_async_requests_per_host")
_JAVA_INT_MAX = 2**31 - 1


def _both(name: str) -> str:
    return f"{name} (Java {JAVA_NAMES[name]})"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fmt_seconds(seconds: float) -> str:
    # 15 significant digits hide float noise such as 0.30000000000000004.
    return format(seconds, ".15g")


def _default_text(name: str) -> str:
    default = JAVA_DEFAULTS[name]
    if name in _DURATIONS:
        return f"{_fmt_seconds(default)} s"
    return str(default)


# java.time.Duration.parse's grammar: PnDTnHnMn.nS, each part optional, signs allowed
# (a negative result is then refused by validation with a clearer message).
_DURATION_RE = re.compile(
    r"([-+]?)P(?:([-+]?[0-9]+)D)?"
    r"(T(?:([-+]?[0-9]+)H)?(?:([-+]?[0-9]+)M)?(?:([-+]?)([0-9]+)(?:[.,]([0-9]{0,9}))?S)?)?",
    re.IGNORECASE,
)
_INT_RE = re.compile(r"[-+]?[0-9]+")


def _parse_java_duration(text: str) -> float | None:
    """Seconds in a Java ISO-8601 Duration string ('PT1M30S'), or None if it is not one."""
    m = _DURATION_RE.fullmatch(text)
    if m is None:
        return None
    sign, days, t_part, hours, minutes, s_sign, secs, frac = m.groups()
    if days is None and t_part is None:
        return None  # bare "P"
    if t_part is not None and hours is None and minutes is None and secs is None:
        return None  # "PT" with nothing after it
    total = Fraction(0)
    total += int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes or 0) * 60
    if secs is not None:
        part = int(secs) + (Fraction(int(frac), 10 ** len(frac)) if frac else 0)
        total += -part if s_sign == "-" else part
    return float(-total if sign == "-" else total)


def parse_text(name: str, text: str) -> float | int:
    """Turn configuration text (env var, properties file) into a checked value."""
    from ._config import _check_count, _check_duration  # lazily: _config imports this module

    stripped = text.strip()
    if name in _COUNTS:
        if not _INT_RE.fullmatch(stripped):
            raise ValueError(
                f"{_both(name)} must be a positive whole number, got {_show(text)}; "
                f"write digits only, such as {JAVA_DEFAULTS[name]} (the Java default)"
            )
        return _check_count(name, int(stripped))
    seconds = _parse_java_duration(stripped)
    if seconds is None:
        try:
            seconds = float(stripped)
        except ValueError:
            raise ValueError(
                f"{_both(name)} must be a number of seconds or a Java Duration, got {_show(text)}; "
                f"write it like '10', '0.5', 'PT10S', 'PT1M30S' or 'PT0.5S' "
                f"(Java default {_default_text(name)})"
            ) from None
    return _check_duration(name, seconds)


# One short comment per builder line of java_snippet().
_JAVA_COMMENTS: Mapping[str, str] = MappingProxyType(
    {
        "connect_timeout": "TCP connect limit",
        "read_timeout": "longest wait between two reads",
        "write_timeout": "longest wait for a write to progress",
        "connection_idle_timeout": "idle pooled connections are closed after this",
        "connection_pool_size": "idle connections kept for reuse",
        "maximum_async_requests": "async calls in flight; more wait in a queue",
        "maximum_async_requests_per_host": "async calls in flight to one host",
    }
)


def _java_duration(seconds: float) -> str:
    # repr() gives the shortest text that round-trips, i.e. what the user typed.
    nanos = round(Fraction(repr(seconds)) * 10**9)
    if nanos % 10**9 == 0:
        amount, unit = nanos // 10**9, "Seconds"
    elif nanos % 10**6 == 0:
        amount, unit = nanos // 10**6, "Millis"
    else:
        amount, unit = nanos, "Nanos"
    suffix = "L" if amount > _JAVA_INT_MAX else ""
    return f"Duration.of{unit}({amount}{suffix})"


def java_snippet(config: PoolConfig, *, imports: bool = False) -> str:
    """Java code that sets ``config`` in the DashScope Java SDK (``PoolConfig.java_snippet``)."""
    lines = []
    if imports:
        lines += [
            "import java.time.Duration;",
            "import com.alibaba.dashscope.protocol.ConnectionConfigurations;",
            "import com.alibaba.dashscope.utils.Constants;",
            "",
        ]
    lines += [f"// Warning: {problem}" for problem in config.constraint_problems()]
    lines.append("Constants.connectionConfigurations = ConnectionConfigurations.builder()")
    calls = []
    for name, camel in JAVA_NAMES.items():
        value = getattr(config, name)
        arg = _java_duration(value) if name in _DURATIONS else str(value)
        calls.append((f"    .{camel}({arg})", f"{_JAVA_COMMENTS[name]} (default {_default_text(name)})"))
    width = max(len(code) for code, _ in calls)
    lines += [f"{code.ljust(width)}  // {comment}" for code, comment in calls]
    lines.append("    .build();  // set before the first call: the SDK builds its OkHttp client once")
    return "\n".join(lines)


def from_env(cls: type[PoolConfig], environ: Mapping[str, str] | None = None, *, strict: bool = False) -> PoolConfig:
    """``PoolConfig.from_env``: build ``cls`` from the Java SDK's environment variables."""
    if environ is None:
        import os

        environ = os.environ
    values: dict[str, Any] = {}
    for name, var in ENV_VARS.items():
        text = environ.get(var)
        if text is None or not text.strip():
            continue
        try:
            values[name] = parse_text(name, text)
        except ValueError as exc:
            raise ValueError(f"environment variable {var}={_show(text)}: {exc}") from None
    return cls(**values, strict=strict)
