"""How a PoolConfig shows itself: what each setting is called in requests/urllib3, aiohttp and
httpx / the dashscope v2 client, as rows, as plain text and as a notebook table.

    >>> from dashnb import PoolConfig
    >>> from dashnb._config.table import rows
    >>> [r["java_name"] for r in rows(PoolConfig())][:2]
    ['connectTimeout', 'readTimeout']

``PoolConfig.rows()``, ``describe()`` and ``_repr_html_()`` call the functions here.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .checks import _COUNT_UNITS
from .names import _DURATIONS, ENV_VARS, JAVA_DEFAULTS, JAVA_NAMES, _default_text, _fmt_seconds

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
            "Limits(max_keepalive_connections=...): idle connections kept, as in OkHttp, on dashnb's "
            "pools; httpcore's own pool counts all open ones against it, so a steady concurrency above "
            "it reconnects per call. v2 client: http_max_keepalive_connections / "
            "DASHSCOPE_HTTP_MAX_KEEPALIVE_CONNECTIONS (20)",
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


def rows(config: Any) -> list[dict[str, Any]]:
    """One dict per setting: names, value, default, env var, Python equivalents, note."""
    out = []
    for name, camel in JAVA_NAMES.items():
        value = getattr(config, name)
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


def describe(config: Any) -> str:
    """The rows() table as plain text, for print() and logs."""
    lines = [repr(config)]
    for row in rows(config):
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
    for problem in config.constraint_problems():
        lines += ["", f"Warning: {problem}"]
    return "\n".join(lines)


def repr_html(config: Any) -> str:
    """The rows() table as HTML, for a notebook."""

    esc = html.escape
    head = ("Java name", "value", "env var", "requests / urllib3", "aiohttp", "httpx / dashscope v2", "note")
    parts = [
        _table_open(head),
        f"<caption>{esc(repr(config))}</caption>",
        "<thead><tr>" + "".join(f"<th{_CELL}>{esc(h)}</th>" for h in head) + "</tr></thead>",
        "<tbody>",
    ]
    for row in rows(config):
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
    parts += [f"<p><strong>Warning:</strong> {esc(p)}</p>" for p in config.constraint_problems()]
    return "\n".join(parts)
