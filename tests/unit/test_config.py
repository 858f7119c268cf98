"""PoolConfig: the Java SDK's connection settings as a validated, renderable value."""

from __future__ import annotations

import dataclasses
import doctest
import re
import subprocess
import sys
from decimal import Decimal
from fractions import Fraction
from html.parser import HTMLParser

import pytest

from dashnb._config import names as _names
from dashnb._config import pool as _config
from dashnb._config.pool import (
    DEFAULT_POOL_CONFIG,
    ENV_VARS,
    JAVA_DEFAULTS,
    JAVA_NAMES,
    PoolConfig,
    PoolConfigWarning,
)

# The table of the Java SDK's ConnectionConfigurations: (Python name, Java name, default, env var).
REFERENCE = [
    ("connect_timeout", "connectTimeout", 120, "DASHSCOPE_CONNECTION_TIMEOUT"),
    ("read_timeout", "readTimeout", 300, "DASHSCOPE_READ_TIMEOUT"),
    ("write_timeout", "writeTimeout", 60, "DASHSCOPE_WRITE_TIMEOUT"),
    ("connection_idle_timeout", "connectionIdleTimeout", 300, "DASHSCOPE_CONNECTION_IDLE_TIME"),
    ("connection_pool_size", "connectionPoolSize", 32, "DASHSCOPE_CONNECTION_POOL_SIZE"),
    ("maximum_async_requests", "maximumAsyncRequests", 32, "DASHSCOPE_MAXIMUM_ASYNC_REQUESTS"),
    (
        "maximum_async_requests_per_host",
        "maximumAsyncRequestsPerHost",
        32,
        "DASHSCOPE_MAXIMUM_ASYNC_REQUESTS_PER_HOST",
    ),
]
DURATIONS = [r[0] for r in REFERENCE[:4]]
COUNTS = [r[0] for r in REFERENCE[4:]]
ALL = DURATIONS + COUNTS


# -- defaults ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "java", "default", "env"), REFERENCE)
def test_defaults_match_the_java_reference_table(name, java, default, env):
    config = PoolConfig()
    assert getattr(config, name) == default
    assert type(getattr(config, name)) is (float if name in DURATIONS else int)
    assert JAVA_NAMES[name] == java
    assert ENV_VARS[name] == env
    assert JAVA_DEFAULTS[name] == default
    assert PoolConfig.JAVA_DEFAULTS[name] == default


def test_named_constants_cover_exactly_the_seven_settings_in_order():
    names = [r[0] for r in REFERENCE]
    assert list(JAVA_NAMES) == names
    assert list(ENV_VARS) == names
    assert list(JAVA_DEFAULTS) == names
    assert [f.name for f in dataclasses.fields(PoolConfig)] == [*names, "strict"]
    assert DEFAULT_POOL_CONFIG == PoolConfig()
    assert PoolConfig().strict is False


@pytest.mark.parametrize("mapping", [JAVA_NAMES, ENV_VARS, JAVA_DEFAULTS])
def test_named_constants_are_read_only(mapping):
    with pytest.raises(TypeError):
        mapping["connect_timeout"] = 1  # type: ignore[index]


def test_keyword_only():
    with pytest.raises(TypeError):
        PoolConfig(10)  # type: ignore[misc]


# -- validation ----------------------------------------------------------------------------

BAD_DURATIONS = [
    pytest.param(0, id="zero-int"),
    pytest.param(0.0, id="zero-float"),
    pytest.param(-1, id="negative"),
    pytest.param(-0.5, id="negative-float"),
    pytest.param(float("nan"), id="nan"),
    pytest.param(float("inf"), id="inf"),
    pytest.param(float("-inf"), id="-inf"),
    pytest.param(True, id="bool-true"),
    pytest.param(False, id="bool-false"),
    pytest.param("10", id="str"),
    pytest.param("PT10S", id="duration-str"),
    pytest.param(None, id="none"),
    pytest.param([10], id="list"),
    pytest.param(Decimal("10"), id="decimal"),
    pytest.param(0.0004, id="below-1ms"),
    pytest.param(1e300, id="huge"),
]
BAD_COUNTS = [
    pytest.param(0, id="zero"),
    pytest.param(-1, id="negative"),
    pytest.param(2.5, id="fractional-float"),
    pytest.param(32.0, id="integral-float"),
    pytest.param(float("nan"), id="nan"),
    pytest.param(float("inf"), id="inf"),
    pytest.param(True, id="bool-true"),
    pytest.param(False, id="bool-false"),
    pytest.param("32", id="str"),
    pytest.param(None, id="none"),
    pytest.param(Fraction(64, 2), id="fraction"),
    pytest.param(2**31, id="above-java-int"),
]


def _assert_actionable(message: str, name: str) -> None:
    assert name in message
    assert f"Java {JAVA_NAMES[name]}" in message
    assert "set it to" in message  # says what to change
    assert f"Java default {_names.default_text(name)}" in message


@pytest.mark.parametrize("bad", BAD_DURATIONS)
@pytest.mark.parametrize("name", DURATIONS)
def test_impossible_durations_raise_naming_both_spellings(name, bad):
    with pytest.raises(ValueError) as info:
        PoolConfig(**{name: bad})
    _assert_actionable(str(info.value), name)


@pytest.mark.parametrize("name", ["connect_timeout", "read_timeout", "write_timeout"])
def test_socket_timeouts_stop_at_the_longest_okhttp_accepts(name):
    assert getattr(PoolConfig(**{name: 2_147_483.647}), name) == 2_147_483.647
    with pytest.raises(ValueError, match="the longest timeout OkHttp accepts") as info:
        PoolConfig(**{name: 2_147_483.648})
    _assert_actionable(str(info.value), name)


def test_idle_timeout_may_be_as_long_as_java_reads_from_its_variable():
    # ConnectionPool takes a long, and DASHSCOPE_CONNECTION_IDLE_TIME is an int of seconds.
    assert PoolConfig(connection_idle_timeout=2**31 - 1).connection_idle_timeout == 2**31 - 1
    with pytest.raises(ValueError, match="DASHSCOPE_CONNECTION_IDLE_TIME") as info:
        PoolConfig(connection_idle_timeout=2**31)
    _assert_actionable(str(info.value), "connection_idle_timeout")


@pytest.mark.parametrize("bad", BAD_COUNTS)
@pytest.mark.parametrize("name", COUNTS)
def test_impossible_counts_raise_naming_both_spellings(name, bad):
    with pytest.raises(ValueError) as info:
        # Lift the other limits so only the value under test can be the problem.
        PoolConfig(**{n: 2**31 - 1 for n in COUNTS if n != name}, **{name: bad})
    _assert_actionable(str(info.value), name)


def test_integral_float_for_a_count_says_which_int_to_pass():
    with pytest.raises(ValueError, match="pass the int 32 instead"):
        PoolConfig(connection_pool_size=32.0)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (float("inf"), "must be finite"),
        (float("nan"), "got nan"),
        (0, "must be positive"),
        (0.0005, "at least 0.001 seconds"),
        (3e6, "at most 2147483.647 seconds"),
    ],
)
def test_duration_messages_give_the_specific_reason(bad, reason):
    with pytest.raises(ValueError, match=reason):
        PoolConfig(read_timeout=bad)


def test_string_duration_points_to_from_java():
    with pytest.raises(ValueError, match=r"PoolConfig\.from_java\(\)"):
        PoolConfig(connect_timeout="PT10S")


@pytest.mark.parametrize("name", DURATIONS)
@pytest.mark.parametrize(
    ("given", "stored"),
    [(10, 10.0), (0.001, 0.001), (2_147_483.647, 2_147_483.647), (Fraction(1, 4), 0.25)],
)
def test_durations_accept_real_numbers_and_store_float(name, given, stored):
    value = getattr(PoolConfig(**{name: given}), name)
    assert type(value) is float
    assert value == stored


@pytest.mark.parametrize("count", [1, 7, 2**31 - 1])
@pytest.mark.parametrize("name", COUNTS)
def test_counts_accept_positive_java_ints(name, count):
    # Equal counts everywhere keep the constraints satisfied.
    value = getattr(PoolConfig(**{n: count for n in COUNTS}), name)
    assert type(value) is int
    assert value == count


@pytest.mark.parametrize("bad", [1, 0, "yes", None])
def test_strict_must_be_a_bool(bad):
    with pytest.raises(ValueError, match="strict"):
        PoolConfig(strict=bad)


def test_ints_and_floats_compare_equal_after_normalising():
    assert PoolConfig(connect_timeout=10) == PoolConfig(connect_timeout=10.0)
    assert hash(PoolConfig(connect_timeout=10)) == hash(PoolConfig(connect_timeout=10.0))


# -- constraints ---------------------------------------------------------------------------


def test_more_async_requests_than_pooled_connections_warns():
    with pytest.warns(PoolConfigWarning) as record:
        config = PoolConfig(maximum_async_requests=64, maximum_async_requests_per_host=64)
    assert len(record) == 1
    message = str(record[0].message)
    assert "maximumAsyncRequests" in message and "connectionPoolSize" in message
    assert "closed" in message and "opens them again" in message  # the consequence, in plain words
    assert "at most 32" in message and "at least 64" in message  # what to change
    assert config.maximum_async_requests == 64  # a warning, the config still exists


def test_per_host_limit_above_global_limit_warns():
    with pytest.warns(PoolConfigWarning) as record:
        PoolConfig(maximum_async_requests=8, maximum_async_requests_per_host=16)
    assert len(record) == 1
    message = str(record[0].message)
    assert "maximumAsyncRequestsPerHost" in message and "maximumAsyncRequests " in message
    assert "can never be reached" in message
    assert "at most 8" in message and "at least 16" in message


def test_both_constraints_broken_warns_twice():
    with pytest.warns(PoolConfigWarning) as record:
        PoolConfig(connection_pool_size=4, maximum_async_requests=8, maximum_async_requests_per_host=16)
    assert len(record) == 2


@pytest.mark.parametrize(
    ("counts", "names"),
    [
        (
            {"maximum_async_requests": 64, "maximum_async_requests_per_host": 64},
            ("maximumAsyncRequests", "connectionPoolSize"),
        ),
        (
            {"maximum_async_requests": 8, "maximum_async_requests_per_host": 16},
            ("maximumAsyncRequestsPerHost", "maximumAsyncRequests"),
        ),
    ],
)
def test_strict_turns_constraint_warnings_into_errors(counts, names):
    with pytest.raises(ValueError) as info:
        PoolConfig(**counts, strict=True)
    for name in names:
        assert name in str(info.value)


@pytest.mark.parametrize(
    "counts",
    [
        {"connection_pool_size": 8, "maximum_async_requests": 8, "maximum_async_requests_per_host": 8},
        {"connection_pool_size": 64, "maximum_async_requests": 8, "maximum_async_requests_per_host": 1},
    ],
)
def test_constraints_met_means_no_warning(counts):
    # filterwarnings=error would turn any warning into a failure here.
    config = PoolConfig(**counts, strict=True)
    assert config.constraint_problems() == []


def test_warning_points_at_the_callers_line():
    with pytest.warns(PoolConfigWarning) as record:
        PoolConfig(maximum_async_requests=64)
    with pytest.warns(PoolConfigWarning) as record_replace:
        DEFAULT_POOL_CONFIG.replace(maximum_async_requests=64)
    with pytest.warns(PoolConfigWarning) as record_java:
        PoolConfig.from_java({"maximumAsyncRequests": 64})
    for rec in (record, record_replace, record_java):
        assert rec[0].filename == __file__


# -- from_java -----------------------------------------------------------------------------


def test_from_java_with_numbers():
    config = PoolConfig.from_java(
        {
            "connectTimeout": 10,
            "readTimeout": 30.5,
            "writeTimeout": 5,
            "connectionIdleTimeout": 90,
            "connectionPoolSize": 256,
            "maximumAsyncRequests": 256,
            "maximumAsyncRequestsPerHost": 128,
        }
    )
    assert config == PoolConfig(
        connect_timeout=10.0,
        read_timeout=30.5,
        write_timeout=5.0,
        connection_idle_timeout=90.0,
        connection_pool_size=256,
        maximum_async_requests=256,
        maximum_async_requests_per_host=128,
    )


def test_from_java_missing_settings_keep_java_defaults():
    assert PoolConfig.from_java({}) == DEFAULT_POOL_CONFIG
    assert PoolConfig.from_java({"readTimeout": 5}) == PoolConfig(read_timeout=5)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT10S", 10.0),
        ("PT2M", 120.0),
        ("PT1M30S", 90.0),
        ("PT0.5S", 0.5),
        ("PT0,5S", 0.5),
        ("PT1H", 3600.0),
        ("PT1H2M3.25S", 3723.25),
        ("P1D", 86400.0),
        ("P1DT12H", 129600.0),
        ("PT0.001S", 0.001),
        ("PT1.123456789S", 1.123456789),
        ("pt10s", 10.0),
        ("  PT10S  ", 10.0),
        ("PT-10S", None),
        ("-PT10S", None),
        ("10", 10.0),
        ("2.5", 2.5),
    ],
)
@pytest.mark.parametrize("name", DURATIONS)
def test_from_java_duration_strings(name, text, seconds):
    mapping = {JAVA_NAMES[name]: text}
    if seconds is None:
        with pytest.raises(ValueError, match="must be positive"):
            PoolConfig.from_java(mapping)
    else:
        assert getattr(PoolConfig.from_java(mapping), name) == seconds


@pytest.mark.parametrize(
    "text", ["PT", "P", "PT10", "10 seconds", "P1W", "PT1.5M", "PT1.1234567891S", "", "1e", "S10TP"]
)
def test_from_java_bad_duration_names_key_and_both_spellings(text):
    with pytest.raises(ValueError) as info:
        PoolConfig.from_java({"connectTimeout": text})
    message = str(info.value)
    assert "'connectTimeout'" in message
    assert "connect_timeout (Java connectTimeout)" in message
    assert "PT10S" in message  # shows the expected shape


def test_from_java_accepts_snake_case_and_digit_strings_for_counts():
    config = PoolConfig.from_java({"connect_timeout": "PT5S", "connection_pool_size": "64", "maximumAsyncRequests": 64})
    assert config == PoolConfig(connect_timeout=5, connection_pool_size=64, maximum_async_requests=64)


@pytest.mark.parametrize("text", ["2.5", "32.0", "many", ""])
def test_from_java_bad_count_text(text):
    with pytest.raises(ValueError, match=r"connection_pool_size \(Java connectionPoolSize\)"):
        PoolConfig.from_java({"connectionPoolSize": text})


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [
        ("connectTimout", "connectTimeout"),
        ("CONNECT_TIMEOUT", "connectTimeout"),
        ("poolSize", "connectionPoolSize"),
        ("maxAsyncRequestsPerHost", "maximumAsyncRequestsPerHost"),
        ("connection_idle_time", "connectionIdleTimeout"),
    ],
)
def test_from_java_unknown_key_suggests_a_close_name(key, suggestion):
    with pytest.raises(ValueError) as info:
        PoolConfig.from_java({key: 1})
    message = str(info.value)
    assert f"did you mean {suggestion!r}?" in message
    for java in JAVA_NAMES.values():
        assert java in message


def test_from_java_unknown_key_without_close_match_lists_valid_names():
    with pytest.raises(ValueError) as info:
        PoolConfig.from_java({"colour": "blue"})
    message = str(info.value)
    assert "did you mean" not in message
    assert "'colour'" in message
    assert all(java in message for java in JAVA_NAMES.values())
    assert all(snake in message for snake in JAVA_NAMES)


def test_from_java_same_setting_twice_is_refused():
    with pytest.raises(ValueError, match="given twice"):
        PoolConfig.from_java({"connectTimeout": 1, "connect_timeout": 2})


def test_from_java_validates_numbers_too():
    with pytest.raises(ValueError, match=r"connection_pool_size \(Java connectionPoolSize\)"):
        PoolConfig.from_java({"connectionPoolSize": 0})
    with pytest.raises(ValueError, match=r"read_timeout \(Java readTimeout\)"):
        PoolConfig.from_java({"readTimeout": True})


def test_from_java_needs_a_mapping():
    with pytest.raises(TypeError, match="mapping"):
        PoolConfig.from_java([("connectTimeout", 1)])  # type: ignore[arg-type]


def test_from_java_strict():
    with pytest.raises(ValueError, match="connectionPoolSize"):
        PoolConfig.from_java({"maximumAsyncRequests": 64}, strict=True)


# -- from_env ------------------------------------------------------------------------------


def test_from_env_reads_every_java_variable():
    environ = {
        "DASHSCOPE_CONNECTION_TIMEOUT": "10",
        "DASHSCOPE_READ_TIMEOUT": "60",
        "DASHSCOPE_WRITE_TIMEOUT": "5",
        "DASHSCOPE_CONNECTION_IDLE_TIME": "600",
        "DASHSCOPE_CONNECTION_POOL_SIZE": "128",
        "DASHSCOPE_MAXIMUM_ASYNC_REQUESTS": "64",
        "DASHSCOPE_MAXIMUM_ASYNC_REQUESTS_PER_HOST": "16",
        "UNRELATED": "x",
    }
    assert PoolConfig.from_env(environ) == PoolConfig(
        connect_timeout=10,
        read_timeout=60,
        write_timeout=5,
        connection_idle_timeout=600,
        connection_pool_size=128,
        maximum_async_requests=64,
        maximum_async_requests_per_host=16,
    )


@pytest.mark.parametrize("environ", [{}, {"DASHSCOPE_READ_TIMEOUT": ""}])
def test_from_env_unset_or_empty_keeps_defaults_quietly(environ):
    assert PoolConfig.from_env(environ) == DEFAULT_POOL_CONFIG  # filterwarnings=error: no warning


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("+10", 10.0),  # Integer.parseInt takes a leading sign
        ("0010", 10.0),
        ("\uff11\uff10", 10.0),  # fullwidth digits: Java's Character.digit takes any BMP decimal digit
        ("2147483", 2147483.0),  # the longest whole-second timeout OkHttp accepts
    ],
)
def test_from_env_reads_what_integer_parseint_reads(text, seconds):
    assert PoolConfig.from_env({"DASHSCOPE_READ_TIMEOUT": text}).read_timeout == seconds


def test_from_env_idle_time_takes_any_positive_java_int():
    config = PoolConfig.from_env({"DASHSCOPE_CONNECTION_IDLE_TIME": "3000000"})
    assert config.connection_idle_timeout == 3_000_000


# Values the Java SDK's Integer.parseInt throws on, so it silently keeps its default.
JAVA_DROPS = [
    ("DASHSCOPE_WRITE_TIMEOUT", "0.5", "60 s"),
    ("DASHSCOPE_CONNECTION_IDLE_TIME", "1.5", "300 s"),
    ("DASHSCOPE_READ_TIMEOUT", "PT10S", "300 s"),
    ("DASHSCOPE_READ_TIMEOUT", "10s", "300 s"),
    ("DASHSCOPE_CONNECTION_TIMEOUT", " 10", "120 s"),
    ("DASHSCOPE_CONNECTION_TIMEOUT", "10\n", "120 s"),
    ("DASHSCOPE_CONNECTION_TIMEOUT", "  ", "120 s"),
    ("DASHSCOPE_CONNECTION_TIMEOUT", "1_000", "120 s"),
    ("DASHSCOPE_CONNECTION_TIMEOUT", "\U0001d7cf", "120 s"),  # a decimal digit outside the BMP
    ("DASHSCOPE_CONNECTION_TIMEOUT", "+", "120 s"),
    ("DASHSCOPE_CONNECTION_POOL_SIZE", "32.5", "32"),
    ("DASHSCOPE_MAXIMUM_ASYNC_REQUESTS", "lots", "32"),
    ("DASHSCOPE_MAXIMUM_ASYNC_REQUESTS_PER_HOST", "2147483648", "32"),  # above a Java int
]


@pytest.mark.parametrize(("var", "value", "default"), JAVA_DROPS)
def test_from_env_keeps_the_java_default_and_warns_where_java_drops_the_value(var, value, default):
    with pytest.warns(PoolConfigWarning) as record:
        config = PoolConfig.from_env({var: value})
    assert config == DEFAULT_POOL_CONFIG  # what the Java SDK ends up with
    assert len(record) == 1
    message = str(record[0].message)
    name = next(n for n, v in ENV_VARS.items() if v == var)
    assert f"{var}={value!r}" in message  # the variable and the value
    assert "Integer.parseInt" in message and f"silently keeps its default ({default})" in message  # what Java does
    assert f"{name} (Java {JAVA_NAMES[name]}) at {default}" in message
    assert record[0].filename == __file__  # points at the caller's line
    with pytest.raises(ValueError, match="strict=True") as info:
        PoolConfig.from_env({var: value}, strict=True)
    assert f"{var}={value!r}" in str(info.value)


def test_from_env_drops_only_the_bad_variable():
    with pytest.warns(PoolConfigWarning, match="DASHSCOPE_READ_TIMEOUT"):
        config = PoolConfig.from_env({"DASHSCOPE_READ_TIMEOUT": "0.5", "DASHSCOPE_CONNECTION_TIMEOUT": "7"})
    assert config == PoolConfig(connect_timeout=7)


@pytest.mark.parametrize(
    ("var", "value", "java_does"),
    [
        ("DASHSCOPE_CONNECTION_TIMEOUT", "0", "no timeout at all"),
        ("DASHSCOPE_WRITE_TIMEOUT", "-0", "no timeout at all"),
        ("DASHSCOPE_READ_TIMEOUT", "-5", '"timeout < 0"'),
        ("DASHSCOPE_WRITE_TIMEOUT", "2147484", "the longest timeout OkHttp accepts"),
        ("DASHSCOPE_CONNECTION_IDLE_TIME", "0", '"keepAliveDuration <= 0: 0"'),
        ("DASHSCOPE_CONNECTION_POOL_SIZE", "0", "keeps no idle connection"),
        ("DASHSCOPE_MAXIMUM_ASYNC_REQUESTS", "0", '"max < 1: 0"'),
        ("DASHSCOPE_MAXIMUM_ASYNC_REQUESTS_PER_HOST", "-1", '"max < 1: -1"'),
    ],
)
def test_from_env_number_java_reads_but_cannot_use_raises(var, value, java_does):
    with pytest.raises(ValueError) as info:
        PoolConfig.from_env({var: value})
    message = str(info.value)
    assert var in message and java_does in message
    name = next(n for n, v in ENV_VARS.items() if v == var)
    assert f"{name} (Java {JAVA_NAMES[name]})" in message


def test_from_env_defaults_to_os_environ(monkeypatch):
    for var in ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DASHSCOPE_CONNECTION_POOL_SIZE", "48")
    assert PoolConfig.from_env() == PoolConfig(connection_pool_size=48)


def test_from_env_constraint_warning_and_strict():
    environ = {"DASHSCOPE_MAXIMUM_ASYNC_REQUESTS": "64"}
    with pytest.warns(PoolConfigWarning, match="connectionPoolSize"):
        PoolConfig.from_env(environ)
    with pytest.raises(ValueError, match="connectionPoolSize"):
        PoolConfig.from_env(environ, strict=True)


# -- java_snippet --------------------------------------------------------------------------

_BUILDER_LINE = re.compile(r"^    \.(\w+)\((?:Duration\.of(Seconds|Millis|Nanos)\((\d+)L?\)|(\d+))\)\s+// \S.*$")
_UNIT = {"Seconds": Fraction(1), "Millis": Fraction(1, 1000), "Nanos": Fraction(1, 10**9)}


def _parse_snippet(snippet: str) -> dict:
    """Read the builder calls back into a from_java() mapping, checking the code's shape."""
    lines = [ln for ln in snippet.splitlines() if ln and not ln.startswith(("//", "import "))]
    assert lines[0] == "Constants.connectionConfigurations = ConnectionConfigurations.builder()"
    assert lines[-1].startswith("    .build();")
    mapping = {}
    for line in lines[1:-1]:
        m = _BUILDER_LINE.match(line)
        assert m, line
        method, unit, amount, count = m.groups()
        mapping[method] = float(int(amount) * _UNIT[unit]) if unit else int(count)
    assert list(mapping) == list(JAVA_NAMES.values())  # every builder method, in order
    code = "\n".join(ln.split("//")[0] for ln in snippet.splitlines())
    assert code.count("(") == code.count(")")
    assert code.count(";") == code.count("import ") + 1  # only the statement and imports end with ;
    return mapping


def test_java_snippet_for_defaults():
    snippet = PoolConfig().java_snippet()
    assert ".connectTimeout(Duration.ofSeconds(120))" in snippet
    assert ".readTimeout(Duration.ofSeconds(300))" in snippet
    assert ".writeTimeout(Duration.ofSeconds(60))" in snippet
    assert ".connectionIdleTimeout(Duration.ofSeconds(300))" in snippet
    assert ".connectionPoolSize(32)" in snippet
    assert ".maximumAsyncRequests(32)" in snippet
    assert ".maximumAsyncRequestsPerHost(32)" in snippet
    assert "import" not in snippet
    assert PoolConfig.from_java(_parse_snippet(snippet)) == PoolConfig()


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (PoolConfig(connect_timeout=10), ".connectTimeout(Duration.ofSeconds(10))"),
        (PoolConfig(read_timeout=0.25), ".readTimeout(Duration.ofMillis(250))"),
        (PoolConfig(read_timeout=0.1 + 0.2), ".readTimeout(Duration.ofMillis(300))"),
        (PoolConfig(write_timeout=1.5), ".writeTimeout(Duration.ofMillis(1500))"),
        (PoolConfig(write_timeout=0.001), ".writeTimeout(Duration.ofMillis(1))"),
        (PoolConfig(connect_timeout=2_147_483.647), ".connectTimeout(Duration.ofMillis(2147483647))"),
        (PoolConfig(connection_idle_timeout=1), ".connectionIdleTimeout(Duration.ofSeconds(1))"),
        (PoolConfig(connection_idle_timeout=3_000_000), ".connectionIdleTimeout(Duration.ofSeconds(3000000))"),
        (PoolConfig(connection_pool_size=256), ".connectionPoolSize(256)"),
        (
            PoolConfig(connection_pool_size=256, maximum_async_requests=256, maximum_async_requests_per_host=256),
            ".maximumAsyncRequestsPerHost(256)",
        ),
    ],
)
def test_java_snippet_for_custom_values(config, expected):
    snippet = config.java_snippet()
    assert expected in snippet
    expected_values = {java: getattr(config, name) for name, java in JAVA_NAMES.items()}
    assert _parse_snippet(snippet) == pytest.approx(expected_values, rel=1e-12)


@pytest.mark.parametrize(
    ("changes", "java_does"),
    [
        ({"connection_idle_timeout": 0.5}, '0.5 s becomes 0 and OkHttp refuses it ("keepAliveDuration <= 0: 0")'),
        ({"connection_idle_timeout": 0.999}, "becomes 0"),
        ({"connection_idle_timeout": 1.5}, "1.5 s becomes 1 s"),
        ({"write_timeout": 0.0015}, "would use 1 ms"),
        ({"read_timeout": 1.0005}, "would use 1000 ms"),
    ],
)
def test_java_snippet_refuses_a_value_the_sdk_would_change_or_reject(changes, java_does):
    config = PoolConfig(**changes)  # fine for Python: only the Java side cannot take it
    (name,) = changes
    with pytest.raises(ValueError) as info:
        config.java_snippet()
    message = str(info.value)
    assert f"{name} (Java {JAVA_NAMES[name]})" in message and java_does in message


def test_java_snippet_has_a_comment_per_setting_and_optional_imports():
    snippet = PoolConfig(connect_timeout=10).java_snippet(imports=True)
    assert "import java.time.Duration;" in snippet
    assert "import com.alibaba.dashscope.protocol.ConnectionConfigurations;" in snippet
    assert "import com.alibaba.dashscope.utils.Constants;" in snippet
    builder_lines = [ln for ln in snippet.splitlines() if ln.startswith("    .") and "build()" not in ln]
    assert len(builder_lines) == 7
    assert all("// " in ln and "(default " in ln for ln in builder_lines)
    _parse_snippet(snippet)


def test_java_snippet_flags_broken_constraints_in_a_comment():
    with pytest.warns(PoolConfigWarning):
        config = PoolConfig(maximum_async_requests=64)
    snippet = config.java_snippet()
    warning_lines = [ln for ln in snippet.splitlines() if ln.startswith("// Warning:")]
    assert len(warning_lines) == 1 and "connectionPoolSize" in warning_lines[0]
    assert PoolConfig().java_snippet().count("Warning") == 0


# -- repr and rendering --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "text"),
    [
        (PoolConfig(), "PoolConfig()"),
        (PoolConfig(connect_timeout=120), "PoolConfig()"),
        (
            PoolConfig(connect_timeout=10, connection_pool_size=256),
            "PoolConfig(connect_timeout=10.0, connection_pool_size=256)",
        ),
        (PoolConfig(read_timeout=0.5, strict=True), "PoolConfig(read_timeout=0.5, strict=True)"),
    ],
)
def test_repr_shows_only_non_defaults(config, text):
    assert repr(config) == text
    assert eval(text, {"PoolConfig": PoolConfig}) == config


class _TableParser(HTMLParser):
    """Collects the text of every <td>/<th> per <tr>, and any stray '<' in text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None
        self.paragraphs: list[str] = []
        self.in_p = False

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = []
        elif tag == "br" and self.cell is not None:
            self.cell.append("\n")
        elif tag == "p":
            self.in_p = True
            self.paragraphs.append("")

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.rows[-1].append("".join(self.cell))
            self.cell = None
        elif tag == "p":
            self.in_p = False

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)
        elif self.in_p:
            self.paragraphs[-1] += data


def _parse_html(config: PoolConfig) -> _TableParser:
    parser = _TableParser()
    parser.feed(config._repr_html_())
    parser.close()
    return parser


def test_repr_html_table_has_the_promised_columns_and_every_setting():
    parser = _parse_html(PoolConfig())
    header, *body = parser.rows
    # Four columns, the libraries stacked in one, so that it fits a 1280 px window.
    assert header == ["setting", "value", "in Python", "note"]
    assert [row[0].split("\n")[0] for row in body] == list(JAVA_NAMES.values())
    assert [row[0].split("\n")[2] for row in body] == [f"env {v}" for v in ENV_VARS.values()]
    assert all(len(row) == 4 for row in body)


def test_repr_html_shares_rows_with_plain_data():
    config = PoolConfig(connect_timeout=10)
    body = _parse_html(config).rows[1:]
    for cells, row in zip(body, config.rows(), strict=True):
        assert cells[1].split("\n")[0] == row["value_text"]
        libraries = f"requests / urllib3: {row['requests']}aiohttp: {row['aiohttp']}"
        assert cells[2] == f"{libraries}httpx / dashscope v2: {row['httpx']}"
        assert cells[3] == row["note"]


def test_repr_html_write_timeout_has_no_equivalent_note():
    body = {row[0].split("\n")[0]: row for row in _parse_html(PoolConfig()).rows[1:]}
    write = body["writeTimeout"]
    assert write[2].startswith("requests / urllib3: no equivalentaiohttp: no equivalent")
    assert "does not emulate" in write[3]
    assert "httpx / dashscope v2: Timeout(write=" in write[2]


def test_repr_html_escapes_text():
    raw = PoolConfig()._repr_html_()
    assert "&lt;=" in raw  # the notes say "maximumAsyncRequests <= connectionPoolSize"
    assert "<=" not in raw
    assert "dashnb&#x27;s" in raw
    text = "".join(cell for row in _parse_html(PoolConfig()).rows for cell in row)
    assert "maximumAsyncRequests <= connectionPoolSize" in text


def test_repr_html_shows_values_with_units_and_warnings():
    with pytest.warns(PoolConfigWarning):
        config = PoolConfig(connect_timeout=2.5, maximum_async_requests=64)
    parser = _parse_html(config)
    body = {row[0].split("\n")[0]: row for row in parser.rows[1:]}
    assert body["connectTimeout"][1] == "2.5 s\ndefault 120 s"
    assert body["connectionPoolSize"][1] == "32 connections\ndefault 32 connections"
    assert body["maximumAsyncRequests"][1] == "64 requests\ndefault 32 requests"
    assert "<strong>2.5 s</strong>" in config._repr_html_()  # changed values stand out
    assert len(parser.paragraphs) == 1 and "connectionPoolSize" in parser.paragraphs[0]
    assert _parse_html(PoolConfig()).paragraphs == []


@pytest.mark.parametrize(
    ("name", "requests_fact", "aiohttp_fact"),
    [
        ("connect_timeout", "timeout=(connect, read)", "ClientTimeout(sock_connect=...)"),
        ("read_timeout", "timeout=(connect, read)", "ClientTimeout(sock_read=...)"),
        ("write_timeout", "no equivalent", "no equivalent"),
        ("connection_idle_timeout", "dashnb's adapter closes", "TCPConnector(keepalive_timeout=...)"),
        ("connection_pool_size", "HTTPAdapter(pool_maxsize=...)", "dashnb closes the surplus"),
        ("maximum_async_requests", "blocking calls bypass", "TCPConnector(limit=...)"),
        ("maximum_async_requests_per_host", "blocking calls bypass", "TCPConnector(limit_per_host=...)"),
    ],
)
def test_rows_state_the_equivalents(name, requests_fact, aiohttp_fact):
    row = next(r for r in PoolConfig().rows() if r["setting"] == name)
    assert requests_fact in row["requests"]
    assert aiohttp_fact in row["aiohttp"]
    assert row["java_name"] == JAVA_NAMES[name] and row["env_var"] == ENV_VARS[name]
    assert row["value"] == JAVA_DEFAULTS[name] and row["changed"] is False


def test_rows_say_the_dispatcher_limits_only_enqueued_calls_and_the_pool_only_idle_ones():
    rows = {r["setting"]: r for r in PoolConfig().rows()}
    for name in ("maximum_async_requests", "maximum_async_requests_per_host"):
        assert "enqueued" in rows[name]["note"]
    assert "execute()" in rows["maximum_async_requests"]["note"]
    pool = rows["connection_pool_size"]
    assert "Idle connections kept" in pool["note"]
    assert "limit" not in pool["aiohttp"]  # not aiohttp's cap on open connections
    assert "whole seconds" in rows["connection_idle_timeout"]["note"]


def test_rows_are_plain_data_in_setting_order():
    rows = PoolConfig(connection_pool_size=64).rows()
    assert [r["setting"] for r in rows] == list(JAVA_NAMES)
    assert [r["changed"] for r in rows] == [False] * 4 + [True, False, False]
    for row in rows:
        assert all(isinstance(v, (str, int, float, bool)) for v in row.values())


def test_describe_is_a_readable_text_table():
    with pytest.warns(PoolConfigWarning):
        config = PoolConfig(connect_timeout=10, maximum_async_requests=64)
    text = config.describe()
    assert text.splitlines()[0] == repr(config)
    assert "connectTimeout = 10 s  (changed)" in text
    for java, env in zip(JAVA_NAMES.values(), ENV_VARS.values(), strict=True):
        assert java in text and env in text
    assert "Warning: maximumAsyncRequests (64) is larger than connectionPoolSize (32)" in text
    assert "<" not in text.replace("<=", "")  # no markup leaks into the text form


# -- immutability and replace --------------------------------------------------------------


@pytest.mark.parametrize("name", [*ALL, "strict"])
def test_frozen(name):
    config = PoolConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(config, name, 1)
    assert config == DEFAULT_POOL_CONFIG


def test_replace_returns_a_changed_copy():
    changed = DEFAULT_POOL_CONFIG.replace(connect_timeout=5, connection_pool_size=64)
    assert changed == PoolConfig(connect_timeout=5.0, connection_pool_size=64)
    assert DEFAULT_POOL_CONFIG == PoolConfig()
    assert type(changed.connect_timeout) is float


@pytest.mark.parametrize(
    ("changes", "setting"),
    [
        ({"connection_pool_size": 0}, "connection_pool_size (Java connectionPoolSize)"),
        ({"read_timeout": -1}, "read_timeout (Java readTimeout)"),
        ({"write_timeout": float("nan")}, "write_timeout (Java writeTimeout)"),
        ({"maximum_async_requests": 2.5}, "maximum_async_requests (Java maximumAsyncRequests)"),
    ],
)
def test_replace_validates(changes, setting):
    with pytest.raises(ValueError) as info:
        DEFAULT_POOL_CONFIG.replace(**changes)
    assert setting in str(info.value)


def test_replace_rechecks_constraints():
    with pytest.warns(PoolConfigWarning):
        DEFAULT_POOL_CONFIG.replace(maximum_async_requests=64)
    with pytest.raises(ValueError, match="connectionPoolSize"):
        PoolConfig(strict=True).replace(maximum_async_requests=64)


# -- module hygiene ------------------------------------------------------------------------


def test_module_docstring_example_runs():
    results = doctest.testmod(_config, optionflags=doctest.ELLIPSIS)
    assert results.attempted >= 3
    assert results.failed == 0


def test_importing_config_loads_no_http_library():
    code = (
        "import sys, dashnb._config.pool\n"
        "heavy = [m for m in ('requests', 'urllib3', 'aiohttp', 'dashscope', 'ipywidgets') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_package_exports_config_names():
    import dashnb

    assert dashnb.PoolConfig is PoolConfig
    assert dashnb.PoolConfigWarning is PoolConfigWarning
    assert issubclass(PoolConfigWarning, UserWarning)
