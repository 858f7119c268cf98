"""The replies of each stack ``ask`` calls through, read the same way: the 1.x SDK's
``GenerationResponse`` and the OpenAI-shaped replies of the dashscope 2.x client and the openai
SDK, and the call through the session's httpx client for those two.

    >>> from dashnb._ask.stacks import STACKS
    >>> STACKS
    ('dashscope', 'v2', 'openai')
"""

from __future__ import annotations

from typing import Any

from .._endpoint import Secret
from .result import Usage


def _usage(resp: Any) -> Usage | None:
    u = getattr(resp, "usage", None)
    if not u:
        return None
    get = u.get if hasattr(u, "get") else (lambda k: getattr(u, k, None))
    return Usage(get("input_tokens"), get("output_tokens"), get("total_tokens"))


def _piece(resp: Any) -> str:
    """The text a response (or stream chunk) carries, in message or text result format."""
    out = getattr(resp, "output", None)
    if not out:
        return ""
    choices = out.get("choices") if hasattr(out, "get") else None
    if choices:
        msg = choices[0].get("message") or {}
        content = msg.get("content")
        if isinstance(content, list):  # multimodal-style content parts
            return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        return content or ""
    return (out.get("text") if hasattr(out, "get") else None) or ""


#: What ``ask(stack=...)`` calls through: the 1.x SDK (``Generation.call``) on the session's
#: requests.Session, the dashscope 2.x ``Client`` or the openai SDK (compatible mode) on the
#: session's httpx client.
STACKS = ("dashscope", "v2", "openai")


def _httpx_usage(u: Any) -> Usage | None:
    if u is None:
        return None

    def get(*names: str) -> Any:
        for n in names:
            v = getattr(u, n, None)
            if v is not None:
                return v
        return None

    return Usage(get("input_tokens", "prompt_tokens"), get("output_tokens", "completion_tokens"), get("total_tokens"))


def _httpx_piece(item: Any) -> str:
    """The text of a v2 / openai reply or stream chunk (both have OpenAI's shape)."""
    choices = getattr(item, "choices", None) or []
    if not choices:
        return ""
    part = getattr(choices[0], "delta", None) or getattr(choices[0], "message", None)
    return (getattr(part, "content", None) or "") if part is not None else ""


def _httpx_call(stack: str, session: Any, ep: Any, kwargs: dict[str, Any], key: Secret) -> Any:
    """The reply (or the stream of chunks) of one call through the session's httpx client.

    The key is revealed only in the calls that take it: no local of this frame holds it."""
    if stack == "v2":
        import dashscope

        # Given http_client=, the v2 client sends no key of its own (it keys only the client it
        # builds); a per-call api_key= it does send.
        client = dashscope.Client(api_key=key.reveal(), base_url=ep.base_url, http_client=session.httpx)
        return client.chat.completions.create(api_key=key.reveal(), **kwargs)
    import openai

    oclient = openai.OpenAI(api_key=key.reveal(), base_url=ep.compatible_base_url, http_client=session.httpx)
    return oclient.chat.completions.create(**kwargs)
