"""Where calls go: the real DashScope service or the embedded emulator.

    >>> import dashnb
    >>> ep = dashnb.endpoint()          # DashScope if DASHSCOPE_API_KEY is set, else the emulator  # doctest: +SKIP
    >>> dashnb.use_endpoint(ep)          # point the dashscope SDK at it                              # doctest: +SKIP
    >>> dashnb.DashScope("intl")
    DashScope(region='intl', api_key=<missing>)

An endpoint is anything with the attributes of ``Endpoint`` (``label``, ``base_url``,
``compatible_base_url``, ``api_key``, ``ca_path``, ``ssl_context()``, ``is_emulator``); the
emulator handle returned by ``dashnb.emulator.start()`` is one too (duck typed).
"""

from __future__ import annotations

import os
import ssl
from typing import Any, Protocol, runtime_checkable

__all__ = ["DashScope", "Endpoint", "MissingApiKeyError", "apply_to_sdk", "endpoint", "use_endpoint"]

API_KEY_ENV = "DASHSCOPE_API_KEY"

_REGIONS = {
    "intl": ("https://dashscope-intl.aliyuncs.com", "DashScope intl (Singapore)"),
    "cn": ("https://dashscope.aliyuncs.com", "DashScope cn (Beijing)"),
}


@runtime_checkable
class Endpoint(Protocol):
    """What sessions and measurements need to know about a server."""

    label: str
    base_url: str
    compatible_base_url: str
    api_key: str
    ca_path: str | None
    is_emulator: bool

    def ssl_context(self) -> ssl.SSLContext: ...


class MissingApiKeyError(RuntimeError):
    """No API key for the real service."""


class DashScope:
    """The real DashScope service in one region ("intl" = Singapore, "cn" = Beijing).

    The key comes from ``api_key`` or the ``DASHSCOPE_API_KEY`` environment variable (read when
    the key is first needed, so setting the variable later works). It is kept private: reprs
    say ``<set>`` or ``<missing>``; reading ``.api_key`` without one raises
    ``MissingApiKeyError``. Keys differ between regions.
    """

    is_emulator = False
    ca_path = None  # trust the public CAs (certifi), as the service's certificate is public

    def __init__(self, region: str = "intl", api_key: str | None = None) -> None:
        if region not in _REGIONS:
            raise ValueError(f"region must be one of {sorted(_REGIONS)}, got {region!r}")
        if api_key is not None and (not isinstance(api_key, str) or not api_key.strip()):
            raise ValueError("api_key must be a non-empty string (or None to read DASHSCOPE_API_KEY)")
        self.region = region
        self._origin, self.label = _REGIONS[region]
        self.__key = api_key

    @property
    def base_url(self) -> str:
        return f"{self._origin}/api/v1"

    @property
    def compatible_base_url(self) -> str:
        return f"{self._origin}/compatible-mode/v1"

    @property
    def has_api_key(self) -> bool:
        return bool(self.__key or os.environ.get(API_KEY_ENV, "").strip())

    @property
    def api_key(self) -> str:
        key = self.__key or os.environ.get(API_KEY_ENV, "").strip()
        if not key:
            raise MissingApiKeyError(
                f"no API key for {self.label}: set the {API_KEY_ENV} environment variable or pass "
                f"DashScope({self.region!r}, api_key=...); keys are per region "
                f"(https://www.alibabacloud.com/help/en/model-studio/get-api-key)"
            )
        return key

    def ssl_context(self) -> ssl.SSLContext:
        import certifi

        return ssl.create_default_context(cafile=certifi.where())

    def apply_to_sdk(self) -> None:
        apply_to_sdk(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DashScope):
            return NotImplemented
        return (self.region, self.__key) == (other.region, other.__key)

    def __hash__(self) -> int:
        return hash((DashScope, self.region))

    def __repr__(self) -> str:
        return f"DashScope(region={self.region!r}, api_key={'<set>' if self.has_api_key else '<missing>'})"

    def _repr_html_(self) -> str:
        import html

        key = "set" if self.has_api_key else f"missing (set {API_KEY_ENV})"
        return f"<b>{html.escape(self.label)}</b> <code>{html.escape(self.base_url)}</code>, API key {html.escape(key)}"


def endpoint(*, region: str = "intl") -> Any:
    """The default endpoint: DashScope when ``DASHSCOPE_API_KEY`` is set, else the emulator
    (``dashnb.emulator.start()``, started once and shared in this process)."""
    if os.environ.get(API_KEY_ENV, "").strip():
        return DashScope(region)
    from . import emulator

    return emulator.start()


def apply_to_sdk(ep: Any) -> None:
    """Point the dashscope SDK's module-level settings (base URL, key) at ``ep``.

    The SDK reads ``DASHSCOPE_API_KEY`` / ``DASHSCOPE_HTTP_BASE_URL`` once at import; after that,
    only these attributes count. The SDK's own shared sessions (used when no ``session=`` is
    passed) trust certifi only, so calls to the emulator need a dashnb session's ``session=``.
    """
    import dashscope  # lazily: importing it costs about a second

    dashscope.base_http_api_url = ep.base_url
    dashscope.api_key = ep.api_key


def use_endpoint(ep: Any = None) -> Any:
    """Point the dashscope SDK at ``ep`` (default: ``endpoint()``) and return it."""
    if ep is None:
        ep = endpoint()
    apply_to_sdk(ep)
    return ep
