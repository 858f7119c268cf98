"""PoolConfig's checks of one value, and the words of its errors: each setting's range as the
Java SDK and OkHttp take it, and "did you mean" for a mistyped keyword.

    >>> from dashnb._config.checks import check_duration, _closest_field
    >>> check_duration("connect_timeout", 10)
    10.0
    >>> _closest_field("pool_size"), _closest_field("connectTimeout")
    ('connection_pool_size', 'connect_timeout')

Only the standard library and ``dashnb._config.names`` (the SDK's names, defaults and text forms).
"""

from __future__ import annotations

import difflib
import math
import numbers
import sys
from typing import Any, cast

from .names import (
    DURATIONS,
    ENV_VARS,
    JAVA_DEFAULTS,
    JAVA_INT_MAX,
    JAVA_NAMES,
    both,
    default_text,
    fmt_seconds,
    show,
)

COUNT_UNITS = {
    "connection_pool_size": "connections",
    "maximum_async_requests": "requests",
    "maximum_async_requests_per_host": "requests",
}

# OkHttp keeps timeouts as a Java int of milliseconds: it rejects longer ones, and a
# Duration under 1 ms truncates to 0, which OkHttp reads as "no timeout at all".
_MIN_SECONDS = 0.001
_MAX_SECONDS = 2_147_483.647
# The idle timeout is no socket timeout: ConnectionPool takes a long, and the SDK's
# DASHSCOPE_CONNECTION_IDLE_TIME is a Java int of seconds, so that is the limit here.
_MAX_IDLE_SECONDS = float(JAVA_INT_MAX)


def check_duration(name: str, value: Any) -> float:
    """Return ``value`` as float seconds, or raise a ValueError saying what to change."""
    fix = (
        f"set it to a number of seconds such as {fmt_seconds(JAVA_DEFAULTS[name])} (Java default {default_text(name)})"
    )
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        hint = ""
        if isinstance(value, str):
            hint = "; for Java Duration strings such as 'PT10S' use PoolConfig.from_java()"
        raise ValueError(
            f"{both(name)} must be a number of seconds, got {show(value)} (a {type(value).__name__}); {fix}{hint}"
        )
    try:
        seconds = float(value)
    except OverflowError:  # an int or Fraction beyond any float: refused below as too long, or negative
        seconds = sys.float_info.max if cast(Any, value) > 0 else -sys.float_info.max
    if math.isnan(seconds):
        raise ValueError(f"{both(name)} must be a number of seconds, got nan; {fix}")
    if math.isinf(seconds):
        raise ValueError(
            f"{both(name)} must be finite, got {seconds}; the Java SDK has no 'wait forever' setting, so {fix}"
        )
    if seconds <= 0:
        raise ValueError(
            f"{both(name)} must be positive, got {show(value)} seconds; zero means 'no timeout' "
            f"to some libraries and 'fail at once' to others, so {fix}"
        )
    if seconds < _MIN_SECONDS:
        raise ValueError(
            f"{both(name)} must be at least 0.001 seconds, got {show(value)}; OkHttp counts "
            f"timeouts in whole milliseconds and turns a shorter one into 'no timeout', so {fix}"
        )
    if name == "connection_idle_timeout":
        if seconds > _MAX_IDLE_SECONDS:
            raise ValueError(
                f"{both(name)} must be at most {JAVA_INT_MAX} seconds (a Java int, the most the "
                f"SDK's {ENV_VARS[name]} can hold), got {show(value)}; {fix}"
            )
    elif seconds > _MAX_SECONDS:
        raise ValueError(
            f"{both(name)} must be at most 2147483.647 seconds (about 24.8 days, the longest "
            f"timeout OkHttp accepts), got {show(value)}; {fix}"
        )
    return seconds


def check_count(name: str, value: Any) -> int:
    """Return ``value`` as int, or raise a ValueError saying what to change."""
    fix = f"set it to at least 1 (Java default {JAVA_DEFAULTS[name]})"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        hint = ""
        if isinstance(value, float) and value.is_integer():
            hint = f"; pass the int {int(value)} instead"
        elif isinstance(value, str):
            hint = "; for text such as '32' use PoolConfig.from_java() or from_env()"
        raise ValueError(
            f"{both(name)} must be a positive whole number, got {show(value)} (a {type(value).__name__}); {fix}{hint}"
        )
    count = int(value)
    if count < 1:
        raise ValueError(f"{both(name)} must be a positive whole number, got {show(count)}; {fix}")
    if count > JAVA_INT_MAX:
        raise ValueError(
            f"{both(name)} must fit in a Java int (at most {JAVA_INT_MAX}), got {show(count)}; "
            f"set it to a realistic number of {COUNT_UNITS[name]} (Java default {JAVA_DEFAULTS[name]})"
        )
    return count


def check(name: str, value: Any) -> float | int:
    return check_duration(name, value) if name in DURATIONS else check_count(name, value)


def suggest(key: str) -> str | None:
    """The Java name closest to a mistyped key, if any is close."""

    def squash(s: str) -> str:
        return s.replace("_", "").replace("-", "").lower()

    by_squashed = {}
    for snake, camel in JAVA_NAMES.items():
        by_squashed[squash(snake)] = camel
        by_squashed[squash(camel)] = camel
    close = difflib.get_close_matches(squash(key), list(by_squashed), n=1, cutoff=0.6)
    return by_squashed[close[0]] if close else None


def _closest_field(key: str) -> str | None:
    """The PoolConfig field a mistyped keyword most likely meant (``pool_size`` ->
    ``connection_pool_size``, ``connectTimeout`` -> ``connect_timeout``), or None."""
    if key in JAVA_NAMES:
        return key
    # A shortened name ("pool_size", "idle_timeout") is too far from the whole one for
    # get_close_matches (or closer to another: idle_timeout ~ write_timeout); the one field
    # that ends with it is what was meant.
    ends = [name for name in JAVA_NAMES if name.endswith("_" + key.lower())]
    if len(ends) == 1:
        return ends[0]
    camel = suggest(key)
    if camel is not None:
        return {c: s for s, c in JAVA_NAMES.items()}[camel]
    close = difflib.get_close_matches(key.lower(), list(JAVA_NAMES), n=1, cutoff=0.5)
    return close[0] if close else None


def unknown_keyword_error(where: str, key: str, value: Any, *, own: tuple[str, ...] = ()) -> TypeError:
    """A TypeError for ``where(key=value)`` that says what was meant: one of ``own`` (the
    callable's own keywords) or a PoolConfig setting, spelled as the call should be."""
    close_own = difflib.get_close_matches(key, own, n=1, cutoff=0.75)
    if close_own:
        return TypeError(f"{where}() got an unexpected keyword argument {key!r}; did you mean {close_own[0]}=?")
    field = _closest_field(key)
    if field is None:
        valid = ", ".join((*own, *JAVA_NAMES))
        return TypeError(f"{where}() got an unexpected keyword argument {key!r}; valid keywords: {valid}")
    if where == "PoolConfig":
        return TypeError(
            f"PoolConfig() got an unexpected keyword argument {key!r}; did you mean {field}= "
            f"(Java {JAVA_NAMES[field]})? PoolConfig({field}={value!r})"
        )
    return TypeError(
        f"{where}() got an unexpected keyword argument {key!r}: pool settings go in a PoolConfig; "
        f"did you mean {where}(dashnb.PoolConfig({field}={value!r}))?"
    )
