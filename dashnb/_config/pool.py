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
variables, Duration text, the builder code) lives in ``dashnb._config.java``; the checks of each value and
the words of the errors in ``dashnb._config.checks``; the table in ``dashnb._config.table``; turning
a config into real session objects happens in ``dashnb._transport.rules``. This module does no I/O and
imports only the standard library.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

from . import java as _java
from . import table as _config_table
from . import v2 as _v2
from .checks import check, suggest, unknown_keyword_error
from .names import ENV_VARS, JAVA_DEFAULTS, JAVA_NAMES, PoolConfigWarning, both, caller_stacklevel, show

__all__ = [
    "DEFAULT_POOL_CONFIG",
    "ENV_VARS",
    "JAVA_DEFAULTS",
    "JAVA_NAMES",
    "PoolConfig",
    "PoolConfigWarning",
]


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
            raise ValueError(f"strict must be True or False, got {show(self.strict)}")
        for name in JAVA_NAMES:
            object.__setattr__(self, name, check(name, getattr(self, name)))
        problems = self.constraint_problems()
        if problems and self.strict:
            raise ValueError(" ".join(problems) + " (strict=True turns this warning into an error)")
        if problems:
            level = caller_stacklevel()
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
                close = suggest(str(key))
                hint = f"did you mean {close!r}? " if close else ""
                raise ValueError(
                    f"unknown setting {show(key)} in PoolConfig.from_java(); {hint}valid names: "
                    f"{', '.join(JAVA_NAMES.values())} (or in snake_case: {', '.join(JAVA_NAMES)})"
                )
            if name in values:
                raise ValueError(f"{both(name)} given twice, as {given_as[name]!r} and {key!r}; keep one")
            given_as[name] = key
            try:
                values[name] = _java.parse_text(name, value) if isinstance(value, str) else check(name, value)
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
        (see ``dashnb._config.v2.from_v2``)."""
        return _v2.from_v2(cls, source, strict=strict)

    def v2_snippet(self) -> str:
        """The environment variables (and ``dashscope.settings`` lines) giving a dashscope 2.x
        client this pool, with what v2 cannot take said as comments."""
        return _v2.v2_snippet(self)

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
        return _config_table.rows(self)

    def describe(self) -> str:
        """The rows() table as plain text, for print() and logs."""
        return _config_table.describe(self)

    def _repr_html_(self) -> str:
        return _config_table.repr_html(self)


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
