"""The Java SDK's connection settings, as a Python value.

    >>> from dashnb import PoolConfig
    >>> cfg = PoolConfig(connect_timeout=10, connection_pool_size=64, maximum_async_requests=64)
    >>> cfg
    PoolConfig(connect_timeout=10.0, connection_pool_size=64, maximum_async_requests=64)
    >>> PoolConfig.from_java({"connectTimeout": "PT10S", "connectionPoolSize": 64}).connect_timeout
    10.0
    >>> print(cfg.java_snippet())                       # doctest: +ELLIPSIS
    Constants.connectionConfigurations = ConnectionConfigurations.builder()
        .connectTimeout(Duration.ofSeconds(10))...
        .build();...

`PoolConfig` holds the seven settings of the DashScope Java SDK's
``ConnectionConfigurations`` (snake case, seconds as float, counts as int) with the
Java defaults. It validates itself, warns (`PoolConfigWarning`) when the two documented
constraints are broken, and renders a table mapping every setting to its requests/urllib3,
aiohttp and httpx / dashscope v2 counterpart. The Java side (the SDK's names, defaults and environment
variables, Duration text, the builder code) lives in ``dashnb._java``; turning a config
into real session objects happens in ``dashnb._translate``. This module does no I/O and
imports only the standard library.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import sys
import types
import warnings
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar, cast

from . import _java
from ._java import (
    _DURATIONS,
    _JAVA_INT_MAX,
    ENV_VARS,
    JAVA_DEFAULTS,
    JAVA_NAMES,
    _both,
    _default_text,
    _fmt_seconds,
    _show,
)

__all__ = [
    "DEFAULT_POOL_CONFIG",
    "ENV_VARS",
    "JAVA_DEFAULTS",
    "JAVA_NAMES",
    "PoolConfig",
    "PoolConfigWarning",
]


class PoolConfigWarning(UserWarning):
    """A PoolConfig breaks one of the Java SDK's documented constraints.

    Pass ``strict=True`` to PoolConfig to get a ValueError instead.
    """


_COUNT_UNITS = {
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
_MAX_IDLE_SECONDS = float(_JAVA_INT_MAX)


def _check_duration(name: str, value: Any) -> float:
    """Return ``value`` as float seconds, or raise a ValueError saying what to change."""
    fix = (
        f"set it to a number of seconds such as {_fmt_seconds(JAVA_DEFAULTS[name])} "
        f"(Java default {_default_text(name)})"
    )
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        hint = ""
        if isinstance(value, str):
            hint = "; for Java Duration strings such as 'PT10S' use PoolConfig.from_java()"
        raise ValueError(
            f"{_both(name)} must be a number of seconds, got {_show(value)} (a {type(value).__name__}); {fix}{hint}"
        )
    try:
        seconds = float(value)
    except OverflowError:  # an int or Fraction beyond any float: refused below as too long, or negative
        seconds = sys.float_info.max if cast(Any, value) > 0 else -sys.float_info.max
    if math.isnan(seconds):
        raise ValueError(f"{_both(name)} must be a number of seconds, got nan; {fix}")
    if math.isinf(seconds):
        raise ValueError(
            f"{_both(name)} must be finite, got {seconds}; the Java SDK has no 'wait forever' setting, so {fix}"
        )
    if seconds <= 0:
        raise ValueError(
            f"{_both(name)} must be positive, got {_show(value)} seconds; zero means 'no timeout' "
            f"to some libraries and 'fail at once' to others, so {fix}"
        )
    if seconds < _MIN_SECONDS:
        raise ValueError(
            f"{_both(name)} must be at least 0.001 seconds, got {_show(value)}; OkHttp counts "
            f"timeouts in whole milliseconds and turns a shorter one into 'no timeout', so {fix}"
        )
    if name == "connection_idle_timeout":
        if seconds > _MAX_IDLE_SECONDS:
            raise ValueError(
                f"{_both(name)} must be at most {_JAVA_INT_MAX} seconds (a Java int, the most the "
                f"SDK's {ENV_VARS[name]} can hold), got {_show(value)}; {fix}"
            )
    elif seconds > _MAX_SECONDS:
        raise ValueError(
            f"{_both(name)} must be at most 2147483.647 seconds (about 24.8 days, the longest "
            f"timeout OkHttp accepts), got {_show(value)}; {fix}"
        )
    return seconds


def _check_count(name: str, value: Any) -> int:
    """Return ``value`` as int, or raise a ValueError saying what to change."""
    fix = f"set it to at least 1 (Java default {JAVA_DEFAULTS[name]})"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        hint = ""
        if isinstance(value, float) and value.is_integer():
            hint = f"; pass the int {int(value)} instead"
        elif isinstance(value, str):
            hint = "; for text such as '32' use PoolConfig.from_java() or from_env()"
        raise ValueError(
            f"{_both(name)} must be a positive whole number, got {_show(value)} (a {type(value).__name__}); {fix}{hint}"
        )
    count = int(value)
    if count < 1:
        raise ValueError(f"{_both(name)} must be a positive whole number, got {_show(count)}; {fix}")
    if count > _JAVA_INT_MAX:
        raise ValueError(
            f"{_both(name)} must fit in a Java int (at most {_JAVA_INT_MAX}), got {_show(count)}; "
            f"set it to a realistic number of {_COUNT_UNITS[name]} (Java default {JAVA_DEFAULTS[name]})"
        )
    return count


def _check(name: str, value: Any) -> float | int:
    return _check_duration(name, value) if name in _DURATIONS else _check_count(name, value)


def _caller_stacklevel() -> int:
    """stacklevel for warnings.warn called from the caller of this function, pointing past
    this module, dataclasses.replace and the generated __init__ at the user's line."""
    internal = {__file__, _java.__file__, dataclasses.__file__}
    frame: types.FrameType | None = sys._getframe(2)
    level = 2
    while frame is not None and (
        frame.f_code.co_filename in internal
        or (frame.f_code.co_name == "__init__" and frame.f_code.co_filename.startswith("<"))
    ):
        frame = frame.f_back
        level += 1
    return level


def _suggest(key: str) -> str | None:
    """The Java name closest to a mistyped key, if any is close."""
    import difflib  # only needed on the error path

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
    import difflib  # only needed on the error path

    if key in JAVA_NAMES:
        return key
    # A shortened name ("pool_size", "idle_timeout") is too far from the whole one for
    # get_close_matches (or closer to another: idle_timeout ~ write_timeout); the one field
    # that ends with it is what was meant.
    ends = [name for name in JAVA_NAMES if name.endswith("_" + key.lower())]
    if len(ends) == 1:
        return ends[0]
    camel = _suggest(key)
    if camel is not None:
        return {c: s for s, c in JAVA_NAMES.items()}[camel]
    close = difflib.get_close_matches(key.lower(), list(JAVA_NAMES), n=1, cutoff=0.5)
    return close[0] if close else None


def unknown_keyword_error(where: str, key: str, value: Any, *, own: tuple[str, ...] = ()) -> TypeError:
    """A TypeError for ``where(key=value)`` that says what was meant: one of ``own`` (the
    callable's own keywords) or a PoolConfig setting, spelled as the call should be."""
    import difflib

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


# Inline, so every front end gets it: JupyterLab right-aligns table cells by default. The table
# takes the output area's width and no more (fixed layout, percentage columns from _table_open),
# and long words such as environment variable names wrap, so it fits a 1280 px screen however many
# library columns it has.
_CELL = ' style="text-align:left; vertical-align:top; overflow-wrap:anywhere; padding:0.3em 0.4em"'


def _table_open(head: tuple[str, ...]) -> str:
    """The opening tag and column widths of the settings table: the three short columns (name,
    value, env var) fixed, the rest sharing what is left, the note half as wide again as each
    library column."""
    fixed = (14.0, 11.0, 15.0)
    libraries = len(head) - len(fixed) - 1
    share = (100.0 - sum(fixed)) / (libraries + 1.5)
    widths = [*fixed, *([share] * libraries), 1.5 * share]
    cols = "".join(f'<col style="width:{w:.1f}%">' for w in widths)
    return (
        '<table class="dashnb-poolconfig" style="table-layout:fixed; width:100%; max-width:100%; '
        f'font-size:0.92em; margin-left:0"><colgroup>{cols}</colgroup>'
    )


# What each setting is called elsewhere (requests/urllib3, aiohttp, httpx and the dashscope v2
# client, note); shared by rows(), describe() and _repr_html_().
_EQUIVALENTS: Mapping[str, tuple[str, str, str, str]] = MappingProxyType(
    {
        "connect_timeout": (
            "timeout=(connect, read): the connect part; urllib3 Timeout(connect=...)",
            "ClientTimeout(sock_connect=...)",
            "Timeout(connect=...): TCP connect and TLS handshake. v2 client: fixed at 5 s, no setting or variable "
            "(pass http_client= to change it)",
            "aiohttp's sock_connect bounds the TCP and TLS handshakes of a new connection; "
            "urllib3 applies the connect timeout to each socket operation of both handshakes and "
            "keeps it on the socket while sending the request. OkHttp applies connectTimeout to "
            "the TCP connect only; its TLS handshake runs under readTimeout.",
        ),
        "read_timeout": (
            "timeout=(connect, read): the read part; urllib3 Timeout(read=...)",
            "ClientTimeout(sock_read=...)",
            "Timeout(read=...). v2 client: timeout / DASHSCOPE_TIMEOUT (300 s), which is its write and pool "
            "timeout too",
            "The longest wait between two pieces of the response, not the total time of a call: "
            "a stream that keeps trickling never hits it (same in OkHttp, urllib3 and aiohttp).",
        ),
        "write_timeout": (
            "no equivalent",
            "no equivalent",
            "Timeout(write=...): each write of the request, like OkHttp's writeTimeout. v2 client: timeout / "
            "DASHSCOPE_TIMEOUT",
            "Neither requests nor aiohttp has a write timeout, and dashnb does not emulate one. "
            "(urllib3 sends the request while the connect timeout is still on the socket, so a "
            "send stalled longer than connect_timeout fails, but that cannot be set on its own.)",
        ),
        "connection_idle_timeout": (
            "none in requests/urllib3; dashnb's adapter closes pooled connections idle longer than this",
            "TCPConnector(keepalive_timeout=...)",
            "Limits(keepalive_expiry=...), checked when the pool is next used. v2 client: http_keepalive_expiry / "
            "DASHSCOPE_HTTP_KEEPALIVE_EXPIRY, 5 s by default: a person reading a reply for longer reconnects on "
            "the next prompt",
            "OkHttp's ConnectionPool closes connections idle this long. The SDK passes it in whole "
            "seconds (Duration.getSeconds()): a fraction is dropped, and under 1 s becomes 0, which "
            "OkHttp refuses. A server or load balancer may close idle connections sooner; reusing "
            "one it already closed costs an error or a retry.",
        ),
        "connection_pool_size": (
            "HTTPAdapter(pool_maxsize=...), with pool_block=False",
            "none in aiohttp (it keeps every idle connection); dashnb closes the surplus when a connection is released",
            "Limits(max_keepalive_connections=...): idle connections kept, as in OkHttp. v2 client: "
            "http_max_keepalive_connections / DASHSCOPE_HTTP_MAX_KEEPALIVE_CONNECTIONS (20)",
            "Idle connections kept for reuse, not a cap on open ones: OkHttp's ConnectionPool "
            "(maxIdleConnections) and urllib3's pool_maxsize both let a burst open more and close "
            "the extra ones once idle.",
        ),
        "maximum_async_requests": (
            "none: blocking calls bypass the Dispatcher, as OkHttp's execute() does; bound them "
            "with your thread pool (ThreadPoolExecutor(max_workers=...))",
            "TCPConnector(limit=...): connections in use at once (calls in flight); more calls wait",
            "Limits(max_connections=...): open connections, idle ones included, for sync and async calls alike; a "
            "call past it waits up to Timeout(pool=...), which Java lacks (dashnb: async client only, pool=None). "
            "v2 client: http_max_connections / DASHSCOPE_HTTP_MAX_CONNECTIONS (100)",
            "OkHttp Dispatcher.maxRequests counts only enqueued calls (enqueue(): the SDK's "
            "streams, callbacks and duplex calls); blocking execute() calls bypass it and are "
            "never queued. Keep maximumAsyncRequests <= connectionPoolSize.",
        ),
        "maximum_async_requests_per_host": (
            "none: blocking calls bypass the Dispatcher, as OkHttp's execute() does",
            "TCPConnector(limit_per_host=...)",
            "none: max_connections counts every host; for DashScope (one host) dashnb uses the smaller of the two "
            "limits. v2 client: none",
            "OkHttp Dispatcher.maxRequestsPerHost: enqueued calls only, as above. Keep "
            "maximumAsyncRequestsPerHost <= maximumAsyncRequests, or it can never be reached.",
        ),
    }
)


@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class PoolConfig:
    """Connection pool and timeout settings, named and defaulted as in the Java SDK.

    Durations are seconds (ints are accepted and stored as float), counts are ints. Values
    Python can use but Java cannot (a 0.5 s idle timeout) are allowed; ``java_snippet()``
    refuses them. Impossible values raise ValueError; breaking ``maximum_async_requests <=
    connection_pool_size`` or ``maximum_async_requests_per_host <= maximum_async_requests``
    emits PoolConfigWarning, or raises ValueError when ``strict=True``.
    """

    connect_timeout: float = JAVA_DEFAULTS["connect_timeout"]
    read_timeout: float = JAVA_DEFAULTS["read_timeout"]
    write_timeout: float = JAVA_DEFAULTS["write_timeout"]
    connection_idle_timeout: float = JAVA_DEFAULTS["connection_idle_timeout"]
    connection_pool_size: int = int(JAVA_DEFAULTS["connection_pool_size"])
    maximum_async_requests: int = int(JAVA_DEFAULTS["maximum_async_requests"])
    maximum_async_requests_per_host: int = int(JAVA_DEFAULTS["maximum_async_requests_per_host"])
    strict: bool = False

    JAVA_DEFAULTS: ClassVar[Mapping[str, float | int]] = JAVA_DEFAULTS
    JAVA_NAMES: ClassVar[Mapping[str, str]] = JAVA_NAMES
    ENV_VARS: ClassVar[Mapping[str, str]] = ENV_VARS

    def __post_init__(self) -> None:
        if not isinstance(self.strict, bool):
            raise ValueError(f"strict must be True or False, got {_show(self.strict)}")
        for name in JAVA_NAMES:
            object.__setattr__(self, name, _check(name, getattr(self, name)))
        problems = self.constraint_problems()
        if problems and self.strict:
            raise ValueError(" ".join(problems) + " (strict=True turns this warning into an error)")
        if problems:
            level = _caller_stacklevel()
            for problem in problems:
                warnings.warn(problem, PoolConfigWarning, stacklevel=level)

    # -- constraints ---------------------------------------------------------------------

    def constraint_problems(self) -> list[str]:
        """Plain-language descriptions of the documented constraints this config breaks."""
        problems = []
        pool, total, per_host = (
            self.connection_pool_size,
            self.maximum_async_requests,
            self.maximum_async_requests_per_host,
        )
        if total > pool:
            problems.append(
                f"maximumAsyncRequests ({total}) is larger than connectionPoolSize ({pool}): up to "
                f"{total} async requests may run at once, each on its own connection, but only {pool} "
                f"idle connections are kept, so after each burst the extra ones are closed and the "
                f"next burst opens them again (a new TCP and TLS handshake each time), in OkHttp and "
                f"in dashnb's sessions alike. Lower "
                f"maximum_async_requests (Java maximumAsyncRequests) to at most {pool} or raise "
                f"connection_pool_size (Java connectionPoolSize) to at least {total}."
            )
        if per_host > total:
            problems.append(
                f"maximumAsyncRequestsPerHost ({per_host}) is larger than maximumAsyncRequests "
                f"({total}): the global limit is always reached first, so the per-host limit can "
                f"never be reached and has no effect. Lower maximum_async_requests_per_host (Java "
                f"maximumAsyncRequestsPerHost) to at most {total} or raise maximum_async_requests "
                f"(Java maximumAsyncRequests) to at least {per_host}."
            )
        return problems

    # -- construction ----------------------------------------------------------------------

    def replace(self, **changes: Any) -> PoolConfig:
        """A copy with some settings changed (dataclasses.replace); validation runs again."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_java(cls, mapping: Mapping[str, Any], *, strict: bool = False) -> PoolConfig:
        """Build from Java names (``connectTimeout``...) or snake_case names.

        Durations may be numbers of seconds or Java Duration strings ("PT10S", "PT1M30S",
        "PT0.5S", "P1D"); counts may be ints or digit strings. Missing settings keep the Java
        defaults; unknown names raise ValueError with the closest valid name.
        """
        if not isinstance(mapping, Mapping):
            raise TypeError(
                f"PoolConfig.from_java() needs a mapping of setting names to values, got {type(mapping).__name__}"
            )
        by_name = {**{camel: snake for snake, camel in JAVA_NAMES.items()}, **{s: s for s in JAVA_NAMES}}
        values: dict[str, Any] = {}
        given_as: dict[str, str] = {}
        for key, value in mapping.items():
            name = by_name.get(key) if isinstance(key, str) else None
            if name is None:
                close = _suggest(str(key))
                hint = f"did you mean {close!r}? " if close else ""
                raise ValueError(
                    f"unknown setting {_show(key)} in PoolConfig.from_java(); {hint}valid names: "
                    f"{', '.join(JAVA_NAMES.values())} (or in snake_case: {', '.join(JAVA_NAMES)})"
                )
            if name in values:
                raise ValueError(f"{_both(name)} given twice, as {given_as[name]!r} and {key!r}; keep one")
            given_as[name] = key
            try:
                values[name] = _java.parse_text(name, value) if isinstance(value, str) else _check(name, value)
            except ValueError as exc:
                raise ValueError(f"PoolConfig.from_java() key {key!r}: {exc}") from None
        return cls(**values, strict=strict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, strict: bool = False) -> PoolConfig:
        """Build from the Java SDK's environment variables (``DASHSCOPE_CONNECTION_TIMEOUT``...),
        reading exactly what the SDK reads.

        ``environ`` defaults to ``os.environ``. The SDK parses each with ``Integer.parseInt``:
        durations are whole seconds ("10"; not "0.5", "PT10S" or " 10"), counts whole numbers.
        Unset or empty variables keep the Java defaults. A value the SDK silently ignores keeps
        the Java default here too, with a PoolConfigWarning naming the variable, the value and
        what Java does (a ValueError when ``strict=True``). A number the SDK reads but OkHttp
        refuses, or that PoolConfig cannot hold (0 = "no timeout"), raises ValueError.
        """
        return _java.from_env(cls, environ, strict=strict)

    @classmethod
    def from_v2(cls, source: Any, *, strict: bool = False) -> PoolConfig:
        """Build from the dashscope 2.x client's settings: a ``dashscope.Client`` / ``AsyncClient``,
        its ``.config``, or a mapping of its setting names or ``DASHSCOPE_HTTP_*`` variables
        (see ``dashnb._translate_httpx.from_v2``; imports httpx)."""
        from ._translate_httpx import from_v2

        config = from_v2(source, strict=strict)
        return config if type(config) is cls else cls(**{n: getattr(config, n) for n in JAVA_NAMES}, strict=strict)

    def v2_snippet(self) -> str:
        """The environment variables (and ``dashscope.settings`` lines) giving a dashscope 2.x
        client this pool, with what v2 cannot take said as comments (imports httpx)."""
        from ._translate_httpx import v2_snippet

        return v2_snippet(self)

    # -- rendering -------------------------------------------------------------------------

    def __repr__(self) -> str:
        changed = [
            f"{name}={getattr(self, name)!r}" for name in JAVA_NAMES if getattr(self, name) != JAVA_DEFAULTS[name]
        ]
        if self.strict:
            changed.append("strict=True")
        return f"PoolConfig({', '.join(changed)})"

    def java_snippet(self, *, imports: bool = False) -> str:
        """Java code that sets the same configuration in the DashScope Java SDK.

        Raises ValueError naming the setting for a value the SDK cannot take as it is: an idle
        timeout that is not whole seconds (the SDK passes whole seconds to OkHttp, so 0.5 s
        becomes 0 and OkHttp throws), or a timeout that is not whole milliseconds.
        """
        return _java.java_snippet(self, imports=imports)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per setting: names, value, default, env var, Python equivalents, note."""
        out = []
        for name, camel in JAVA_NAMES.items():
            value = getattr(self, name)
            if name in _DURATIONS:
                shown, default_shown = f"{_fmt_seconds(value)} s", _default_text(name)
            else:
                unit = _COUNT_UNITS[name]
                shown, default_shown = f"{value} {unit}", f"{JAVA_DEFAULTS[name]} {unit}"
            requests_eq, aiohttp_eq, httpx_eq, note = _EQUIVALENTS[name]
            out.append(
                {
                    "setting": name,
                    "java_name": camel,
                    "value": value,
                    "value_text": shown,
                    "default": JAVA_DEFAULTS[name],
                    "default_text": default_shown,
                    "changed": value != JAVA_DEFAULTS[name],
                    "env_var": ENV_VARS[name],
                    "requests": requests_eq,
                    "aiohttp": aiohttp_eq,
                    "httpx": httpx_eq,
                    "note": note,
                }
            )
        return out

    def describe(self) -> str:
        """The rows() table as plain text, for print() and logs."""
        lines = [repr(self)]
        for row in self.rows():
            mark = "  (changed)" if row["changed"] else ""
            lines += [
                "",
                f"{row['java_name']} = {row['value_text']}{mark}",
                f"    default:          {row['default_text']}; env {row['env_var']}; Python {row['setting']}",
                f"    requests/urllib3: {row['requests']}",
                f"    aiohttp:          {row['aiohttp']}",
                f"    httpx / v2:       {row['httpx']}",
                f"    note:             {row['note']}",
            ]
        for problem in self.constraint_problems():
            lines += ["", f"Warning: {problem}"]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        esc = html.escape
        head = ("Java name", "value", "env var", "requests / urllib3", "aiohttp", "httpx / dashscope v2", "note")
        parts = [
            _table_open(head),
            f"<caption>{esc(repr(self))}</caption>",
            "<thead><tr>" + "".join(f"<th{_CELL}>{esc(h)}</th>" for h in head) + "</tr></thead>",
            "<tbody>",
        ]
        for row in self.rows():
            value = esc(row["value_text"])
            if row["changed"]:
                value = f"<strong>{value}</strong>"
            cells = (
                f"<code>{esc(row['java_name'])}</code><br><small>{esc(row['setting'])}</small>",
                f"{value}<br><small>default {esc(row['default_text'])}</small>",
                f"<code>{esc(row['env_var'])}</code>",
                esc(row["requests"]),
                esc(row["aiohttp"]),
                esc(row["httpx"]),
                esc(row["note"]),
            )
            parts.append("<tr>" + "".join(f"<td{_CELL}>{c}</td>" for c in cells) + "</tr>")
        parts += ["</tbody>", "</table>"]
        parts += [f"<p><strong>Warning:</strong> {esc(p)}</p>" for p in self.constraint_problems()]
        return "\n".join(parts)


_generated_init = PoolConfig.__init__


@functools.wraps(_generated_init)
def _init_with_hints(self: PoolConfig, *args: Any, **kwargs: Any) -> None:
    # The dataclass's own __init__ would say only "unexpected keyword argument" or "takes 1
    # positional argument": say which setting was meant.
    if args:
        raise TypeError(
            f"PoolConfig() takes settings by name, got {len(args)} positional "
            f"argument{'s' if len(args) > 1 else ''}; for example PoolConfig(connection_pool_size=8)"
        )
    for key, value in kwargs.items():
        if key not in _INIT_KEYWORDS:
            raise unknown_keyword_error("PoolConfig", key, value)
    _generated_init(self, **kwargs)


_INIT_KEYWORDS = frozenset(f.name for f in dataclasses.fields(PoolConfig))
PoolConfig.__init__ = _init_with_hints  # type: ignore[method-assign]

DEFAULT_POOL_CONFIG = PoolConfig()
