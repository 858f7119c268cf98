"""Where calls go: the real DashScope service or the embedded emulator.

    >>> import dashnb
    >>> ep = dashnb.endpoint()          # DashScope if DASHSCOPE_API_KEY is set, else the emulator  # doctest: +SKIP
    >>> dashnb.use_endpoint(ep)          # point the dashscope SDK at it                              # doctest: +SKIP
    >>> dashnb.DashScope("intl")
    DashScope(region='intl', api_key=<missing>)
    >>> dashnb.DashScope(base_url="https://gw.example.com/dashscope/api/v1").compatible_base_url
    'https://gw.example.com/dashscope/compatible-mode/v1'

An endpoint is anything with the attributes of ``Endpoint`` (``label``, ``base_url``,
``compatible_base_url``, ``api_key``, ``ca_path``, ``ssl_context()``, ``is_emulator``, and
optionally ``trust_env``); the emulator handle returned by ``dashnb.emulator.start()`` is one
too (duck typed). One that is an emulator (``is_emulator``) also has what ``EmulatorLike`` names:
whether it was ``stopped``, its ``options``, ``configure()`` and ``stats()``; ``as_emulator(ep)``
returns it typed as such, or None.

The offline switch: ``DASHNB_OFFLINE=1`` makes ``endpoint()`` return the emulator even when
``DASHSCOPE_API_KEY`` is set (a presenter's laptop, a train): no call then leaves the machine.
``where_calls_go(ep, calls=N)`` is the sentence a notebook's first cell prints about it.

Trust and proxies: sessions for the real service (``DashScope``, ``trust_env = True``) read
the environment as requests does: ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY`` and
``~/.netrc``, and the CA bundle from ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE`` or
``SSL_CERT_FILE`` (OpenSSL's variable, which requests itself ignores but aiohttp and httpx
honour; dashnb applies the same bundle to both kinds of session). Emulator sessions trust
exactly the emulator's CA and read nothing from the environment.
"""

from __future__ import annotations

import html
import logging
import os
import ssl
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import certifi

from . import emulator

__all__ = [
    "DashScope",
    "Endpoint",
    "MissingApiKeyError",
    "apply_to_sdk",
    "endpoint",
    "offline",
    "use_endpoint",
    "where_calls_go",
]

log = logging.getLogger(__name__)

API_KEY_ENV = "DASHSCOPE_API_KEY"
# dashnb's own switch: set, calls go to the embedded emulator whatever else the environment says.
OFFLINE_ENV = "DASHNB_OFFLINE"
# Values that leave the switch off; anything else turns it on (a typo errs on the side of offline).
OFF_VALUES = ("", "0", "false", "no", "off")
# What the dashscope SDK reads at import for its module-level base URLs (dashscope/common/env.py).
BASE_URL_ENV = "DASHSCOPE_HTTP_BASE_URL"
COMPATIBLE_BASE_URL_ENV = "DASHSCOPE_COMPATIBLE_BASE_URL"
# requests' order (REQUESTS_CA_BUNDLE, then CURL_CA_BUNDLE), then OpenSSL's SSL_CERT_FILE.
CA_BUNDLE_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")
_NATIVE_PATH, _COMPATIBLE_PATH = "/api/v1", "/compatible-mode/v1"

_REGIONS = {
    "intl": ("https://dashscope-intl.aliyuncs.com", "DashScope intl (Singapore)"),
    "cn": ("https://dashscope.aliyuncs.com", "DashScope cn (Beijing)"),
}
# Other names people use for the same two regions: cities, and the Alibaba Cloud region ids the
# dashscope SDK uses (DASHSCOPE_API_REGION; dashscope/common/env.py).
_REGION_ALIASES = {
    "singapore": "intl",
    "ap-southeast-1": "intl",
    "international": "intl",
    "beijing": "cn",
    "cn-beijing": "cn",
    "china": "cn",
}
# Regions the SDK reaches only through a Model Studio workspace host (its MAAS_REGIONS), with
# the city each Alibaba Cloud region id stands for.
_WORKSPACE_REGIONS = {
    "us-east-1": "Virginia",
    "eu-central-1": "Frankfurt",
    "ap-northeast-1": "Tokyo",
    "cn-hongkong": "Hong Kong",
}


def _region_code(region: Any) -> str:
    """'intl' or 'cn' for a region code, city or Alibaba Cloud region id; else a ValueError
    that says which code is which city."""
    if isinstance(region, str):
        key = region.strip().lower()
        if key in _REGIONS:
            return key
        if key in _REGION_ALIASES:
            return _REGION_ALIASES[key]
        if key in _WORKSPACE_REGIONS:
            raise ValueError(
                f"region {region!r} ({_WORKSPACE_REGIONS[key]}) is served through a Model Studio workspace "
                f"host: pass DashScope(base_url='https://<workspace-id>.{key}.maas.aliyuncs.com/api/v1')"
            )
    raise ValueError(
        f"region must be 'intl' (Singapore; also 'singapore', 'ap-southeast-1') or 'cn' (Beijing; also "
        f"'beijing', 'cn-beijing'), got {region!r}; other regions (Virginia us-east-1, Frankfurt eu-central-1, "
        "Tokyo ap-northeast-1, Hong Kong cn-hongkong) take a workspace base_url=..."
    )


def offline() -> bool:
    """Whether ``DASHNB_OFFLINE`` is on: ``endpoint()`` then returns the emulator, key or no key."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in OFF_VALUES


@runtime_checkable
class Endpoint(Protocol):
    """What sessions and measurements need to know about a server (read-only: properties will do)."""

    @property
    def label(self) -> str: ...

    @property
    def base_url(self) -> str: ...

    @property
    def compatible_base_url(self) -> str: ...

    @property
    def api_key(self) -> str: ...

    @property
    def ca_path(self) -> str | None: ...

    @property
    def is_emulator(self) -> bool: ...

    def ssl_context(self) -> ssl.SSLContext: ...


@runtime_checkable
class EmulatorLike(Endpoint, Protocol):
    """An endpoint that is an emulator on this machine: what a measurement reads and sets on it."""

    @property
    def stopped(self) -> bool: ...

    @property
    def options(self) -> Any: ...  # the emulator's options (an EmulatorOptions)

    def configure(self, **changes: Any) -> Any: ...

    def stats(self) -> dict[str, Any]: ...


def trusts_env(ep: Endpoint) -> bool:
    """Whether sessions for ``ep`` read proxies and the CA bundle from the environment: only an
    endpoint that says so (``trust_env``, an optional member of ``Endpoint``: the real service),
    never an emulator, which is always reached directly."""
    # Read with defaults: test servers stand in for endpoints with only the members they use.
    return bool(getattr(ep, "trust_env", False)) and not getattr(ep, "is_emulator", False)


def as_emulator(ep: object) -> EmulatorLike | None:
    """``ep`` when it is an emulator (``is_emulator`` and what ``EmulatorLike`` names), else None.

    >>> as_emulator(DashScope("intl")) is None
    True
    """
    # is_emulator first: isinstance reads every property the protocol names (Python 3.11), and a
    # real service's api_key raises when no key is set.
    if getattr(ep, "is_emulator", False) is True and isinstance(ep, EmulatorLike):
        return ep
    return None


def env_ca_bundle() -> str | None:
    """The CA bundle the environment names for real-service sessions, or None (certifi)."""
    for var in CA_BUNDLE_ENV:
        path = os.environ.get(var)
        if path:  # requests skips an empty value too
            return path
    return None


class Secret(tuple):
    """Holds the key so that ``vars()``, ``__dict__``, debuggers and frame-capturing tools show
    ``<secret>``, not it: ``Secret((key,))``.

    A tuple subclass so that making one runs no Python code: a Python ``__init__`` would hold
    the key in a local of its own frame, visible to a tracer or a crash reporter.
    """

    __slots__ = ()

    def reveal(self) -> str:
        return self[0]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__

    def __reduce__(self):  # never pickled into a file or a kernel message
        raise TypeError("an API key is not pickled")

    def __reduce_ex__(self, protocol):  # copy and pickle ask this one first
        raise TypeError("an API key is not pickled")


def mask_url(url: str) -> str:
    """``url`` as it may be shown: user name and password, query values and fragment masked.

        >>> mask_url("https://alice:pw@gw.example.com:8443/api/v1?api_key=k&region=intl#t")
        'https://***:***@gw.example.com:8443/api/v1?api_key=***&region=***#***'
        >>> mask_url("alice:pw@proxy:8080"), mask_url("localhost")
        ('***:***@proxy:8080', 'localhost')

    Every query value is masked, not only the ones named like a secret: a gateway's signature or
    token may have any name. A value without ``scheme://`` (``HTTPS_PROXY=user:pw@proxy:8080``,
    which proxies accept) is read as one that starts with its host, as requests and httpx read
    it. What cannot be read at all shows as ``<not a valid URL>``.
    """
    text = url.strip()
    bare = "://" not in text
    try:
        parts = urlsplit(("//" + text) if bare else text)
        port = parts.port  # raises ValueError on a bad port
    except ValueError:
        return "<not a valid URL>"
    if "@" in parts.path + parts.query + parts.fragment:  # a password with '/', '?' or '#' in it, cut there
        return "***" if bare else f"{parts.scheme}://***"
    netloc = parts.netloc
    if "@" in netloc:
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        netloc = "***:***@" + host + (f":{port}" if port is not None else "")
    query = "&".join(
        f"{item.partition('=')[0]}=***" if "=" in item else "***" for item in parts.query.split("&") if item
    )
    shown = urlunsplit(parts._replace(netloc=netloc, query=query, fragment="***" if parts.fragment else ""))
    return shown[2:] if bare else shown


def split_base_url(url: Any, what: str) -> tuple[str, str]:
    """(origin, path) of a base URL, refusing what would leak or break; the URL is never echoed,
    since a mistaken one may carry a credential."""

    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"{what} must be a non-empty string such as 'https://dashscope-intl.aliyuncs.com/api/v1'")
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise ValueError(f"{what} is not a valid URL") from None
    if parts.scheme != "https":
        raise ValueError(f"{what} must start with https:// (the API key travels in every request)")
    if not parts.hostname:
        raise ValueError(f"{what} has no host name")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{what} must not contain a user name or password; pass the key as api_key")
    if parts.query or parts.fragment:
        raise ValueError(f"{what} must not have a query (?...) or fragment (#...): the SDK appends paths to it")
    return f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")


class MissingApiKeyError(RuntimeError):
    """No API key for the real service."""


class DashScope:
    """The real DashScope service: a region ("intl" = Singapore, "cn" = Beijing; the city or the
    Alibaba Cloud region id works too: "singapore", "ap-southeast-1", "beijing", "cn-beijing") or
    any base URL.

    ``base_url`` replaces the region's URL (an API gateway, a workspace endpoint such as
    ``https://<workspace>.ap-southeast-1.maas.aliyuncs.com/api/v1``); it is the native API base,
    as ``dashscope.base_http_api_url``. The OpenAI-compatible base is derived from it when it ends
    in ``/api/v1``, otherwise pass ``compatible_base_url``.

    The key comes from ``api_key`` or the ``DASHSCOPE_API_KEY`` environment variable (read when
    the key is first needed, so setting the variable later works). It is kept private: reprs
    say ``<set>`` or ``<missing>``; reading ``.api_key`` without one raises
    ``MissingApiKeyError``. Keys differ between regions.

    Sessions for this endpoint read proxies and the CA bundle from the environment
    (``trust_env``; see the module docstring).
    """

    is_emulator = False
    # Real-service sessions honour HTTPS_PROXY / NO_PROXY and the CA-bundle variables, as
    # requests does; emulator handles have no such attribute (or False) and ignore them.
    trust_env = True

    def __init__(
        self,
        region: str = "intl",
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        compatible_base_url: str | None = None,
    ) -> None:
        region = _region_code(region)
        if api_key is not None and (not isinstance(api_key, str) or not api_key.strip()):
            raise ValueError("api_key must be a non-empty string (or None to read DASHSCOPE_API_KEY)")
        self.region = region
        self._origin, self.label = _REGIONS[region]
        self._path = _NATIVE_PATH
        self._custom = base_url is not None
        if base_url is not None:
            self._origin, self._path = split_base_url(base_url, "base_url")
            self.label = f"DashScope at {self._origin}"
        self._compatible: str | None = None
        if compatible_base_url is not None:
            origin, path = split_base_url(compatible_base_url, "compatible_base_url")
            self._compatible = origin + path
        self.__key = Secret((api_key,)) if api_key is not None else None

    @property
    def base_url(self) -> str:
        return f"{self._origin}{self._path}"

    @property
    def compatible_base_url(self) -> str:
        if self._compatible is not None:
            return self._compatible
        if self._path.endswith(_NATIVE_PATH):
            return f"{self._origin}{self._path[: -len(_NATIVE_PATH)]}{_COMPATIBLE_PATH}"
        raise ValueError(
            f"no OpenAI-compatible base URL for {self.base_url}: it does not end in {_NATIVE_PATH}, "
            f"so pass DashScope(..., compatible_base_url=...)"
        )

    @property
    def ca_path(self) -> str | None:
        """The CA bundle sessions trust: from the environment (see ``CA_BUNDLE_ENV``), else None
        for certifi's public CAs, as the service's certificate is public."""
        return env_ca_bundle()

    @property
    def has_api_key(self) -> bool:
        return bool(self.__key or os.environ.get(API_KEY_ENV, "").strip())

    @property
    def api_key(self) -> str:
        # No local holds the key (a frame-capturing tool would show it): returned as it is read.
        if self.__key is not None:
            return self.__key.reveal()
        if os.environ.get(API_KEY_ENV, "").strip():
            return os.environ[API_KEY_ENV].strip()
        raise MissingApiKeyError(
            f"no API key for {self.label}: set the {API_KEY_ENV} environment variable or pass "
            f"DashScope({self.region!r}, api_key=...); keys are per region "
            f"(https://www.alibabacloud.com/help/en/model-studio/get-api-key)"
        )

    def ssl_context(self) -> ssl.SSLContext:
        path = self.ca_path or certifi.where()
        if os.path.isdir(path):  # requests accepts a directory of hashed certificates too
            return ssl.create_default_context(capath=path)
        return ssl.create_default_context(cafile=path)

    def apply_to_sdk(self) -> None:
        apply_to_sdk(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DashScope):
            return NotImplemented
        mine = (self.region, self.base_url, self._compatible, self.__key)
        return mine == (other.region, other.base_url, other._compatible, other.__key)

    def __hash__(self) -> int:
        return hash((DashScope, self.region, self.base_url))

    def __repr__(self) -> str:
        where = f", base_url={self.base_url!r}" if self._custom else ""
        return f"DashScope(region={self.region!r}{where}, api_key={'<set>' if self.has_api_key else '<missing>'})"

    def _repr_html_(self) -> str:
        key = "set" if self.has_api_key else f"missing (set {API_KEY_ENV})"
        return f"<b>{html.escape(self.label)}</b> <code>{html.escape(self.base_url)}</code>, API key {html.escape(key)}"


def endpoint(*, region: str = "intl") -> Endpoint:
    """The default endpoint: DashScope when ``DASHSCOPE_API_KEY`` is set, else the emulator
    (``dashnb.emulator.start()``, started once and shared in this process). ``DASHNB_OFFLINE=1``
    forces the emulator even with a key.

    Like the dashscope SDK, it honours ``DASHSCOPE_HTTP_BASE_URL`` (and
    ``DASHSCOPE_COMPATIBLE_BASE_URL``) for the real service; an empty value counts as unset.
    """
    if os.environ.get(API_KEY_ENV, "").strip() and not offline():
        urls = {}
        for var, arg in ((BASE_URL_ENV, "base_url"), (COMPATIBLE_BASE_URL_ENV, "compatible_base_url")):
            value = os.environ.get(var, "").strip()
            if value:
                split_base_url(value, f"environment variable {var}")  # an error names the variable
                urls[arg] = value
        return DashScope(region, **urls)

    return emulator.default()


def _why() -> str:
    """Why endpoint() chose what it chose, in the environment's own words."""
    if offline():
        return f"{OFFLINE_ENV} is set" + (f", so {API_KEY_ENV} is not used" if os.environ.get(API_KEY_ENV) else "")
    if os.environ.get(API_KEY_ENV, "").strip():
        return f"{API_KEY_ENV} is set; {OFFLINE_ENV}=1 would keep calls on this machine"
    return f"no {API_KEY_ENV} is set"


def where_calls_go(ep: Endpoint | None = None, *, calls: int | None = None) -> str:
    """One or two lines for a notebook's first cell: where calls go, why, and (on the real
    service, where each call costs tokens) how many calls the notebook will make there.

        >>> import dashnb
        >>> print(where_calls_go(dashnb.DashScope("cn", api_key="sk-example"), calls=17))
        calls go to: DashScope cn (Beijing) https://dashscope.aliyuncs.com/api/v1
        this notebook makes 17 model calls there, each billed in tokens; DASHNB_OFFLINE=1 keeps them on this machine
    """
    if ep is None:
        ep = endpoint()
    if ep.is_emulator:
        return f"calls go to: the local {ep.label}, no tokens spent ({_why()})"
    text = f"calls go to: {ep.label} {ep.base_url}"
    if calls is not None:
        text += (
            f"\nthis notebook makes {calls} model calls there, each billed in tokens; "
            f"{OFFLINE_ENV}=1 keeps them on this machine"
        )
    return text


def replacement(ep: Endpoint) -> Endpoint | None:
    """A running stand-in for ``ep`` when it is a shared emulator that was stopped (the default
    session then recovers on its own); None when ``ep`` is usable, or not ours to replace."""
    if not (isinstance(ep, emulator.Emulator) and ep.stopped):
        return None

    new = emulator.replacement(ep)
    if new is not None:
        log.warning("%s was stopped; using a fresh shared emulator, %s", ep.label, new.label)
    return new


def apply_to_sdk(ep: Endpoint) -> None:
    """Point the dashscope SDK's module-level settings (base URL, key) at ``ep``.

    The SDK reads ``DASHSCOPE_API_KEY`` / ``DASHSCOPE_HTTP_BASE_URL`` once at import; after that,
    only these attributes count. The SDK's own shared sessions (used when no ``session=`` is
    passed) trust certifi only, so calls to the emulator need a dashnb session's ``session=``.
    """
    import dashscope  # lazily: importing it costs about a second

    dashscope.base_http_api_url = ep.base_url
    dashscope.api_key = ep.api_key


def use_endpoint(ep: Endpoint | None = None) -> Endpoint:
    """Point the dashscope SDK at ``ep`` (default: ``endpoint()``) and return it."""
    if ep is None:
        ep = endpoint()
    apply_to_sdk(ep)
    return ep
