"""The Java side of PoolConfig: the SDK's names, defaults and environment variables, Java
Duration text, and the Java builder code.

    >>> from dashnb._config.java import ENV_VARS, java_parse_int, parse_text
    >>> ENV_VARS["connection_idle_timeout"]
    'DASHSCOPE_CONNECTION_IDLE_TIME'
    >>> parse_text("connect_timeout", "PT1M30S")
    90.0
    >>> java_parse_int("10"), java_parse_int("0.5"), java_parse_int(" 10")   # as Integer.parseInt
    (10, None, None)

What the Java SDK (``ConnectionConfigurations``, ``OkHttpClientFactory``) does with these
settings, which this module reproduces: each ``DASHSCOPE_*`` variable is read with
``Integer.parseInt`` (durations as whole seconds) and silently replaced by the default when
that throws; the idle timeout reaches OkHttp's ConnectionPool as whole seconds
(``getSeconds()``); the other timeouts reach OkHttp as whole milliseconds (``toMillis()``).

Below ``pool`` (which imports it) and above ``names`` and ``checks``: ``from_env`` is handed the
class to build. Standard library only.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Mapping
from fractions import Fraction
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .checks import check, check_count, check_duration
from .names import (
    COUNTS,
    DURATIONS,
    ENV_VARS,
    JAVA_DEFAULTS,
    JAVA_INT_MAX,
    JAVA_NAMES,
    PoolConfigWarning,
    both,
    caller_stacklevel,
    default_text,
    fmt_seconds,
    show,
)

if TYPE_CHECKING:  # pragma: no cover
    from .pool import PoolConfig

__all__ = ["ENV_VARS", "JAVA_DEFAULTS", "JAVA_NAMES", "from_env", "java_parse_int", "java_snippet", "parse_text"]

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
    total = -total if sign == "-" else total
    try:
        return float(total)
    except OverflowError:  # more seconds than a float holds: validation refuses it as too long
        return sys.float_info.max if total > 0 else -sys.float_info.max


def parse_text(name: str, text: str) -> float | int:
    """Turn ``from_java`` text (seconds, a Java Duration string, digits) into a checked value.

    Not for environment variables: the SDK reads those with Integer.parseInt (``from_env``).
    """
    stripped = text.strip()
    if name in COUNTS:
        if not _INT_RE.fullmatch(stripped):
            raise ValueError(
                f"{both(name)} must be a positive whole number, got {show(text)}; "
                f"write digits only, such as {JAVA_DEFAULTS[name]} (the Java default)"
            )
        return check_count(name, int(stripped))
    seconds = _parse_java_duration(stripped)
    if seconds is None:
        try:
            seconds = float(stripped)
        except ValueError:
            raise ValueError(
                f"{both(name)} must be a number of seconds or a Java Duration, got {show(text)}; "
                f"write it like '10', '0.5', 'PT10S', 'PT1M30S' or 'PT0.5S' "
                f"(Java default {default_text(name)})"
            ) from None
    return check_duration(name, seconds)


# One short comment per builder line of java_snippet().
_JAVA_COMMENTS: Mapping[str, str] = MappingProxyType(
    {
        "connect_timeout": "TCP connect limit",
        "read_timeout": "longest wait between two reads",
        "write_timeout": "longest wait for a write to progress",
        "connection_idle_timeout": "idle pooled connections are closed after this",
        "connection_pool_size": "idle connections kept for reuse",
        "maximum_async_requests": "enqueued (async, stream) calls in flight; execute() bypasses it",
        "maximum_async_requests_per_host": "enqueued calls in flight to one host",
    }
)


def _java_duration(name: str, seconds: float) -> str:
    """The Java Duration the SDK passes on unchanged, or a ValueError where it would not."""
    # repr() gives the shortest text that round-trips, i.e. what the user typed.
    nanos = round(Fraction(repr(seconds)) * 10**9)
    if name == "connection_idle_timeout" and nanos % 10**9:
        whole = nanos // 10**9
        if whole == 0:
            what = (
                f'so {fmt_seconds(seconds)} s becomes 0 and OkHttp refuses it ("keepAliveDuration <= 0: 0") '
                f"when the SDK builds its client"
            )
        else:
            what = f"so {fmt_seconds(seconds)} s becomes {whole} s"
        raise ValueError(
            f"{both(name)} = {fmt_seconds(seconds)} s cannot be written for the Java SDK: it passes the "
            f"idle timeout to OkHttp's ConnectionPool in whole seconds (Duration.getSeconds()), {what}; "
            f"use whole seconds (at least 1) for a config you carry over to Java"
        )
    if nanos % 10**6:
        raise ValueError(
            f"{both(name)} = {fmt_seconds(seconds)} s cannot be written for the Java SDK: OkHttp keeps "
            f"timeouts in whole milliseconds (Duration.toMillis()) and would use "
            f"{nanos // 10**6} ms; use whole milliseconds for a config you carry over to Java"
        )
    if nanos % 10**9 == 0:
        amount, unit = nanos // 10**9, "Seconds"
    else:
        amount, unit = nanos // 10**6, "Millis"
    suffix = "L" if amount > JAVA_INT_MAX else ""
    return f"Duration.of{unit}({amount}{suffix})"


def java_snippet(config: PoolConfig, *, imports: bool = False) -> str:
    """Java code that sets ``config`` in the DashScope Java SDK (``PoolConfig.java_snippet``).

    Raises ValueError for a setting the SDK would change or refuse: a timeout that is not whole
    milliseconds (OkHttp truncates), an idle timeout that is not whole seconds (the SDK passes
    ``getSeconds()``, so under 1 s becomes 0 and OkHttp throws).
    """
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
        arg = _java_duration(name, value) if name in DURATIONS else str(value)
        calls.append((f"    .{camel}({arg})", f"{_JAVA_COMMENTS[name]} (default {default_text(name)})"))
    width = max(len(code) for code, _ in calls)
    lines += [f"{code.ljust(width)}  // {comment}" for code, comment in calls]
    lines.append("    .build();  // set before the first call: the SDK builds its OkHttp client once")
    return "\n".join(lines)


# What OkHttp does with a whole number the SDK did read but PoolConfig cannot hold (zero or
# negative). OkHttpClient.Builder checks timeouts with checkDuration(); ConnectionPool's
# RealConnectionPool requires keepAliveDuration > 0; Dispatcher's setters require >= 1.
_JAVA_REFUSES = {
    "timeout_negative": 'OkHttp refuses a negative timeout ("timeout < 0") when the SDK builds its client',
    "timeout_zero": "OkHttp takes 0 as no timeout at all (wait forever), which PoolConfig cannot express",
    "idle": 'the SDK passes it to OkHttp\'s ConnectionPool, which refuses it ("keepAliveDuration <= 0: {n}")',
    "pool": "OkHttp's ConnectionPool then keeps no idle connection (each one is closed after its call), "
    "which PoolConfig cannot express",
    "dispatcher": 'the SDK passes it to OkHttp\'s Dispatcher, which refuses it ("max < 1: {n}")',
}


def java_parse_int(text: str) -> int | None:
    """What Java's ``Integer.parseInt(text)`` returns, or None where it throws NumberFormatException.

    An optional sign and decimal digits, nothing else: no spaces, no decimal point, no unit, and
    within a Java int. Java's Character.digit accepts any Unicode decimal digit, as Python's
    ``str.isdecimal`` does, but sees UTF-16 units, so digits outside the BMP do not count.
    """
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits or not all(c.isdecimal() and ord(c) < 0x10000 for c in digits):
        return None
    number = int(text)
    return number if -JAVA_INT_MAX - 1 <= number <= JAVA_INT_MAX else None


def _dropped(name: str, var: str, text: str) -> str:
    """Why the Java SDK ignores ``var=text``, what it uses instead, and what to write."""
    if name in DURATIONS:
        how, write = "as a whole number of seconds", "whole seconds such as '10'"
    else:
        how, write = "as a whole number", f"digits only, such as '{JAVA_DEFAULTS[name]}'"
    return (
        f"environment variable {var}={show(text)} is ignored by the Java SDK: it reads {var} with "
        f"Integer.parseInt {how} and silently keeps its default ({default_text(name)}) for anything "
        f"else, so PoolConfig.from_env() keeps {both(name)} at {default_text(name)} too; write {write}"
    )


def _from_java_int(name: str, var: str, number: int) -> float | int:
    """The PoolConfig value for a whole number the SDK read from ``var``, or a ValueError saying
    what the Java SDK does with a value PoolConfig cannot hold."""
    refusal = None
    if name in DURATIONS and name != "connection_idle_timeout" and number <= 0:
        refusal = _JAVA_REFUSES["timeout_zero" if number == 0 else "timeout_negative"]
    elif name == "connection_idle_timeout" and number <= 0:
        refusal = _JAVA_REFUSES["idle"].format(n=number)
    elif name == "connection_pool_size" and number <= 0:
        refusal = _JAVA_REFUSES["pool"]
    elif name in COUNTS and number <= 0:
        refusal = _JAVA_REFUSES["dispatcher"].format(n=number)
    unit = " seconds" if name in DURATIONS else ""
    if refusal:
        raise ValueError(
            f"environment variable {var}={number}: the Java SDK reads {number}{unit} for {both(name)} and "
            f"{refusal}; set a positive value, or unset {var} for the Java default ({default_text(name)})"
        )
    try:
        return check(name, float(number) if name in DURATIONS else number)
    except ValueError as exc:
        raise ValueError(f"environment variable {var}={number}: {exc}") from None


def from_env(cls: type[PoolConfig], environ: Mapping[str, str] | None = None, *, strict: bool = False) -> PoolConfig:
    """``PoolConfig.from_env``: read the seven variables exactly as the Java SDK does.

    ``ConnectionConfigurations`` reads each with ``Integer.parseInt`` (durations as whole seconds,
    ``Duration.ofSeconds``) and keeps its default on NumberFormatException. Here an unset or empty
    variable keeps the default quietly; any other value Java would drop keeps the default with a
    PoolConfigWarning (ValueError when ``strict``); a number Java reads but OkHttp refuses or
    PoolConfig cannot hold raises ValueError.
    """
    if environ is None:
        environ = os.environ
    values: dict[str, Any] = {}
    for name, var in ENV_VARS.items():
        text = environ.get(var)
        if not text:
            continue  # Java: parseInt(null) and parseInt("") throw, so the default, as here
        number = java_parse_int(text)
        if number is None:
            message = _dropped(name, var, text)
            if strict:
                raise ValueError(message + " (strict=True turns this warning into an error)")
            warnings.warn(message, PoolConfigWarning, stacklevel=caller_stacklevel())
            continue
        values[name] = _from_java_int(name, var, number)
    return cls(**values, strict=strict)
