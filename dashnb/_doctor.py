"""``python -m dashnb doctor``: where calls go, what is trusted, which proxy (from the environment only).

    >>> from dashnb._doctor import report
    >>> text, ok = report({"DASHNB_OFFLINE": "1", "DASHSCOPE_API_KEY": "sk-never-shown"})
    >>> "sk-never-shown" in text, text.splitlines()[1]
    (False, 'calls go to:   the embedded emulator, started in-process on 127.0.0.1 (no tokens spent)')

It makes no call and starts nothing: each answer is what ``dashnb.endpoint()`` and the sessions
it builds would do with this environment. The API key is never shown, only whether it is set;
a proxy URL's user name and password are masked.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version

import certifi

from . import __version__
from ._endpoint import (
    API_KEY_ENV,
    BASE_URL_ENV,
    CA_BUNDLE_ENV,
    COMPATIBLE_BASE_URL_ENV,
    OFF_VALUES,
    OFFLINE_ENV,
    mask_url,
    split_base_url,
)

__all__ = ["report"]

_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy")
_INTL = "https://dashscope-intl.aliyuncs.com/api/v1"


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def report(environ: Mapping[str, str] | None = None) -> tuple[str, bool]:
    """The doctor's text and whether everything it checked is usable (False: something will fail)."""
    env = os.environ if environ is None else environ
    ok = True
    lines = ["dashnb doctor (reads the environment; makes no call)"]
    key_set = bool(env.get(API_KEY_ENV, "").strip())
    offline = env.get(OFFLINE_ENV, "").strip().lower() not in OFF_VALUES
    base = env.get(BASE_URL_ENV, "").strip()

    # -- where calls go -----------------------------------------------------------------------
    if offline or not key_set:
        lines.append("calls go to:   the embedded emulator, started in-process on 127.0.0.1 (no tokens spent)")
        why = f"{OFFLINE_ENV}={env.get(OFFLINE_ENV)} is set" if offline else f"{API_KEY_ENV} is not set"
        lines.append(f"  because:     {why}")
        lines.append(f"  API key:     {'set, but not used offline' if key_set else 'not set (none needed)'}")
    else:
        target = mask_url(base) if base else _INTL
        if base:
            try:
                split_base_url(base, BASE_URL_ENV)
            except ValueError as exc:
                target, ok = f"nowhere: {exc}", False
        lines.append(f"calls go to:   the real DashScope service, {target} (each call costs tokens)")
        lines.append(
            f"  because:     {API_KEY_ENV} is set and {OFFLINE_ENV} is not; {OFFLINE_ENV}=1 keeps calls on this machine"
        )
        lines.append(
            f"  base URL:    {'from ' + BASE_URL_ENV if base else 'region intl (Singapore), the default'}"
            + ("" if base else "; DashScope(region='cn') for Beijing")
        )
        compatible = env.get(COMPATIBLE_BASE_URL_ENV, "").strip()
        if compatible:
            try:
                split_base_url(compatible, COMPATIBLE_BASE_URL_ENV)
                lines.append(f"  compatible:  {mask_url(compatible)} (from {COMPATIBLE_BASE_URL_ENV})")
            except ValueError as exc:  # what endpoint() would raise; the message never echoes the URL
                lines.append(f"  compatible:  refused: {exc}")
                ok = False
        lines.append("  API key:     set (never shown)")

    # -- what is trusted -----------------------------------------------------------------------

    bundle, source = None, None
    for var in CA_BUNDLE_ENV:
        if env.get(var):
            bundle, source = env[var], var
            break
    lines.append("trusted CAs:")
    lines.append("  emulator:    its own CA only (made for each process; nothing from the environment)")
    if bundle is None:
        lines.append(f"  real service: certifi's public CAs, {certifi.where()} (no {'/'.join(CA_BUNDLE_ENV)} set)")
    else:
        exists = os.path.exists(bundle)
        lines.append(
            f"  real service: {bundle} (from {source})" + ("" if exists else ": MISSING, every call will fail")
        )
        ok = ok and exists
        lines.append(
            "  note:        the SDK's own async session (AioGeneration.call without session=) ignores it "
            "and trusts certifi only"
        )

    # -- which proxy ---------------------------------------------------------------------------
    proxies = {var: env[var] for var in _PROXY_VARS if env.get(var)}
    if not proxies:
        lines.append("proxy:         none (no HTTPS_PROXY / ALL_PROXY set): straight to the service")
    else:
        # NO_PROXY is a list of hosts, not a URL, but a mistaken entry may be one: mask each.
        shown = ", ".join(f"{var}={','.join(mask_url(part) for part in v.split(','))}" for var, v in proxies.items())
        lines.append(f"proxy:         {shown}")
        lines.append("  used by:     real-service sessions (requests, aiohttp and httpx); never for the emulator")

    # -- versions ------------------------------------------------------------------------------

    versions = ", ".join(f"{name} {_version(name)}" for name in ("dashscope", "requests", "aiohttp", "openai"))
    lines.append(f"versions:      dashnb {__version__}, {versions}, Python {platform.python_version()}")
    return "\n".join(lines), ok
