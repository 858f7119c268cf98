"""Turn a PoolConfig and an endpoint into requests / aiohttp / httpx objects: the only place that does.

    >>> from dashnb._config.pool import PoolConfig
    >>> from dashnb._transport import build_requests_session
    >>> from dashnb._transport.rules import merge_requests_timeout
    >>> merge_requests_timeout(300, PoolConfig(connect_timeout=10))   # the SDK passes 300
    (10.0, 300.0)
    >>> s = build_requests_session(PoolConfig(), endpoint)             # doctest: +SKIP
    >>> Generation.call(model="qwen-plus", prompt="hi", session=s)     # doctest: +SKIP

How each Java (OkHttp) setting is carried over:

OkHttp has two separate pieces, and they must not be confused: ``ConnectionPool`` decides which
connections are *kept* once idle; the ``Dispatcher`` decides how many *async* calls run at once.
Neither makes a call wait for a connection: a call the Dispatcher admits opens a new connection
if no idle one is free (checked against real OkHttp 3.x by tests/java/test_okhttp_crosscheck.py).

- ``connection_pool_size`` -> idle connections kept. urllib3 ``pool_maxsize`` with
  ``pool_block=False`` does exactly that: a burst opens extra connections, which are discarded
  when they come back to a full pool. aiohttp has no such cap (it keeps every released
  connection until ``keepalive_timeout``), so dashnb's connector closes the longest-idle
  connections beyond this number whenever one is released. Either way a burst larger than the
  pool churns (new TCP and TLS handshakes next time) but never waits.
- ``maximum_async_requests`` / ``..._per_host`` -> aiohttp ``TCPConnector(limit=...,
  limit_per_host=...)``, which behave like OkHttp's Dispatcher: a call beyond them waits for a
  slot (FIFO per host), holds it until its response is released (body read or closed), and the
  wait is outside the socket timeouts. Blocking (sync) calls are not limited, as OkHttp's
  ``execute()`` is not: the requests side has no equivalent, and needs none.
- ``connection_idle_timeout`` -> aiohttp ``keepalive_timeout``, in whole seconds as the Java SDK
  hands it to OkHttp (``Duration.getSeconds()``; see ``java_idle_timeout``). aiohttp checks on a
  timer every ``keepalive_timeout``, so an idle connection closes between one and two timeouts
  after its last use (OkHttp: on time), and is never reused once older than the timeout.
  urllib3 has no idle timeout, so the pool here stamps each connection when it is returned and
  closes those idle longer than this whenever the pool is next used (OkHttp runs a cleanup
  thread instead; the difference is only *when* the socket is closed, never whether a stale one
  is reused).
- ``connect_timeout`` / ``read_timeout``: see ``merge_requests_timeout`` and
  ``aiohttp.merge_aiohttp_timeout``. A timeout is a limit, and when the caller and the config both set
  one, the tighter wins. The dashscope SDK passes ``request_timeout`` (default 300 s) on every
  call, so "the caller's value wins" would make the config's timeouts dead knobs for every SDK
  call; "tighter wins" keeps the Java settings in force while ``request_timeout=`` can still
  shorten a call. To lengthen one, raise the config's value.
- ``write_timeout``: neither library has one; it is not emulated. (httpx has one: see
  ``dashnb._transport.httpx``, which maps every setting to ``httpx.Limits`` / ``httpx.Timeout``.)

aiohttp quirk: for non-stream calls the SDK passes ``ClientTimeout(total=request_timeout)``, which
*replaces* the session's ``ClientTimeout`` (so ``sock_connect`` / ``sock_read`` would silently be
gone); for streams it passes ``ClientTimeout(total=None, sock_read=request_timeout)``. The
connector and request classes below re-apply the config's ``sock_connect`` / ``sock_read`` to
whatever timeout the request carries, using the same tighter-wins rule.

Retries: urllib3 retries are off (``max_retries=0``) because the SDK already resends once on a
connection error; retries at both layers would multiply (and resend a POST up to four times).
Note that the SDK's retry also catches connect timeouts (``requests.ConnectTimeout`` is a
``ConnectionError``; aiohttp's connect and socket-read timeouts are ``ClientConnectionError``),
so through the SDK such a failure takes about twice the configured timeout.

Trust: sessions trust ``endpoint.ca_path`` (certifi when ``None``), and pass the endpoint's
``trust_env`` (False when absent) to each library (httpx's proxies are mounted by
``_translate_httpx``, since httpx reads none when given a transport). Emulator endpoints have none, so their
sessions trust exactly the emulator's CA and ignore ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE``,
``HTTP(S)_PROXY`` / ``NO_PROXY`` and ``~/.netrc``. ``DashScope`` endpoints set ``trust_env = True``
and take ``ca_path`` from the environment, so real-service sessions use proxies and CA bundles
as requests does (see ``dashnb._endpoint``).

Observation goes through the classes the libraries let a caller supply (urllib3 connection/pool
classes; aiohttp's connector, ``request_class`` and ``response_class``), never by patching
sockets. aiohttp's ``TraceConfig`` would also do, but any trace config makes aiohttp build and
await a signal for every header block and body chunk of every request, which cost more than
everything dashnb records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .._config.pool import PoolConfig

__all__ = ["java_idle_timeout", "merge_requests_timeout", "tighter"]


def tighter(config_value: float | None, caller_value: float | None) -> float | None:
    """The stricter of two limits; ``None`` means "no limit from that side"."""
    if caller_value is None:
        return config_value
    if config_value is None:
        return caller_value
    return min(config_value, caller_value)


def java_idle_timeout(config: PoolConfig) -> float:
    """The idle timeout OkHttp gets from the Java SDK: ``Duration.getSeconds()``, whole seconds.

    1.5 s becomes 1 s. Under one second the SDK would pass 0, which OkHttp's ConnectionPool
    refuses ("keepAliveDuration <= 0"), so there is no Java equivalent; the value is kept as given.

        >>> from dashnb._config.pool import PoolConfig
        >>> java_idle_timeout(PoolConfig(connection_idle_timeout=1.5))
        1.0
    """
    seconds = float(int(config.connection_idle_timeout))
    return seconds if seconds >= 1 else config.connection_idle_timeout


def merge_requests_timeout(caller: Any, config: PoolConfig) -> Any:
    """The timeout a request made through a dashnb requests session actually gets.

    - no timeout from the caller -> ``(connect_timeout, read_timeout)``
    - one number ``t`` (what the SDK passes: ``request_timeout``) -> ``(min(connect_timeout, t),
      min(read_timeout, t))``
    - a ``(connect, read)`` tuple -> each part tightened the same way (``None`` parts take the config)
    - a ``urllib3.Timeout`` object is passed through untouched (an explicit, advanced choice).
    """
    connect, read = config.connect_timeout, config.read_timeout
    if caller is None:
        return (connect, read)
    if isinstance(caller, tuple):
        if len(caller) != 2:
            raise ValueError(f"timeout tuple must be (connect, read), got {caller!r}")
        return (tighter(connect, caller[0]), tighter(read, caller[1]))
    if isinstance(caller, (int, float)) and not isinstance(caller, bool):
        return (tighter(connect, caller), tighter(read, caller))
    return caller
