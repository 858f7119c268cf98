"""Ask a model from a notebook cell and watch the reply arrive, on the notebook's shared session.

    >>> import dashnb
    >>> r = dashnb.ask("Why reuse HTTP connections?")            # doctest: +SKIP
    Reusing a connection skips the TCP and TLS handshakes...
    qwen-plus: first token 41.2 ms, total 180.3 ms, reused connection #1 (request 3 on it)
    >>> r.text, r.reused, r.timings.first_token_s                  # doctest: +SKIP

``ask()`` is for exploratory prompting: it calls the official SDK (``Generation.call`` with
``session=dashnb.session().requests``), so every prompt after the first rides on a connection
that is already open; it streams the reply into the cell as it arrives (an updating display in
a notebook, plain stdout elsewhere), then says how long the first token and the whole reply
took and whether the connection was reused. An HTTP error (the SDK returns those instead of
raising) becomes an ``AskError`` saying what to change. The API key never appears in what is
shown, returned or raised.

``complete`` is the call itself (streaming view, error mapping, reuse record); ``dashnb.chat()``
sends each turn of a conversation through it too.
"""

from __future__ import annotations

import dataclasses
import html
import sys
import time
import types
from collections.abc import Callable
from typing import Any

from . import _observe
from ._endpoint import _Secret

__all__ = ["STACKS", "AskError", "AskResult", "AskTimings", "Usage", "ask"]

#: The model ``ask``, ``chat`` and ``%%ask`` use unless told otherwise.
DEFAULT_MODEL = "qwen-plus"

# Redraw a streaming display at most this often: a long reply has hundreds of chunks, and
# each redraw is a message to the front end.
_REDRAW_EVERY_S = 0.05


class AskError(RuntimeError):
    """A call made by ``dashnb.ask`` failed; the message says what to change.

    ``status_code`` is the HTTP status (``None`` when no response came), ``code`` the
    DashScope error code (``"InvalidApiKey"``, ``"Throttling.RateQuota"``...).
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, code: str | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.request_id = request_id


@dataclasses.dataclass(frozen=True)
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None


@dataclasses.dataclass(frozen=True)
class AskTimings:
    """Seconds, from the moment the call started (``time.perf_counter``).

    ``first_token_s``: until the first piece of text arrived (for ``stream=False``, the whole
    reply, which arrives at once). ``handshake_s``: TCP connect + TLS handshake when this call
    opened a connection, ``None`` when it reused one.
    """

    first_token_s: float | None
    total_s: float
    handshake_s: float | None = None


@dataclasses.dataclass(frozen=True, repr=False)
class AskResult:
    """What ``dashnb.ask`` returns; ``str(result)`` is the reply text."""

    text: str
    model: str
    request_id: str | None
    usage: Usage | None
    timings: AskTimings
    reused: bool | None
    connection_id: int | None = None
    requests_on_connection: int | None = None

    def summary(self, *, input_tokens: bool = False) -> str:
        """One line: latency and reuse (what ``ask`` shows under the reply); ``input_tokens``
        adds the tokens sent (a conversation's grow with its history)."""
        return _summary_line(
            self.model,
            self.timings,
            self.reused,
            self.connection_id,
            self.requests_on_connection,
            self.usage,
            input_tokens=input_tokens,
        )

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        preview = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        return f"<AskResult {self.summary()}: {preview!r}>"

    def _repr_html_(self) -> str:
        return _html(self.text, self.summary())


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.1f} ms"


def _summary_line(
    model: str,
    timings: AskTimings,
    reused: bool | None,
    connection_id: int | None,
    requests_on_connection: int | None,
    usage: Usage | None,
    *,
    input_tokens: bool = False,
) -> str:
    parts = [f"{model}: first token {_ms(timings.first_token_s)}, total {_ms(timings.total_s)}"]
    if usage is not None and usage.output_tokens is not None:
        if input_tokens and usage.input_tokens is not None:
            parts.append(f"{usage.input_tokens} in + {usage.output_tokens} out tokens")
        else:
            parts.append(f"{usage.output_tokens} tokens")
    conn = f" #{connection_id}" if connection_id is not None else ""
    if reused is True:
        nth = f" (request {requests_on_connection} on it)" if requests_on_connection else ""
        parts.append(f"reused connection{conn}{nth}")
    elif reused is False:
        hs = f" (connect + TLS {_ms(timings.handshake_s)})" if timings.handshake_s is not None else ""
        parts.append(f"new connection{conn}{hs}")
    else:
        parts.append("connection reuse not observed (not a dashnb session)")
    return ", ".join(parts)


def _html(text: str, footer: str) -> str:
    return (
        f'<div class="dashnb-ask"><div style="white-space:pre-wrap">{html.escape(text)}</div>'
        f'<div style="color:#777;font-size:smaller;margin-top:4px">{html.escape(footer)}</div></div>'
    )


class _Live:
    """What is on screen while a reply streams; displayed through an IPython display handle.

    As HTML (the reply verbatim) or, for a conversation, as Markdown made inert (``_markdown``);
    text/plain always, for front ends that render neither.
    """

    def __init__(self, model: str, *, markdown: bool = False) -> None:
        self.text = ""
        self.footer = f"{model}: waiting for the first token..."
        self.markdown = markdown

    def __repr__(self) -> str:
        return f"{self.text}\n{self.footer}" if self.text else self.footer

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        if self.markdown:
            from ._markdown import escape_footer, inert

            shown = f"{inert(self.text)}\n\n" if self.text else ""
            return {"text/markdown": f"{shown}*{escape_footer(self.footer)}*", "text/plain": repr(self)}
        return {"text/html": _html(self.text, self.footer), "text/plain": repr(self)}


def _notebook_display():
    """IPython's ``display`` when running in a kernel with a front end, else None.

    A script never imported IPython, so looking in sys.modules keeps scripts from paying for it.
    """
    if "IPython" not in sys.modules:
        return None
    try:
        from IPython import get_ipython
        from IPython.display import display
    except Exception:  # a broken IPython install: fall back to printing
        return None
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return None  # the terminal IPython has no display ids to update
    return display


class _View:
    """Shows the reply as it grows: a display handle in a notebook, stdout elsewhere."""

    def __init__(self, model: str, *, markdown: bool = False) -> None:
        self._display = _notebook_display()
        self._live = _Live(model, markdown=markdown)
        self._handle = None
        self._last = 0.0
        if self._display is not None:
            self._handle = self._display(self._live, display_id=True)

    def add(self, piece: str) -> None:
        self._live.text += piece
        if self._handle is None:
            sys.stdout.write(piece)
            sys.stdout.flush()
            return
        now = time.perf_counter()
        if now - self._last >= _REDRAW_EVERY_S:
            self._last = now
            self._handle.update(self._live)

    def finish(self, footer: str) -> None:
        self._live.footer = footer
        if self._handle is None:
            if self._live.text:
                sys.stdout.write("\n")
            sys.stdout.write(footer + "\n")
            sys.stdout.flush()
        else:
            self._handle.update(self._live)

    def fail(self, message: str) -> None:
        self.finish(f"failed: {message}")


# A 4xx (but 429) is the request's fault: asking again unchanged fails the same way, so the hint
# says what in *your request* to change. A 5xx or 429 is the service's state: try again.
_HINTS = {
    400: "Your request was refused: check the model name and the extra parameters "
    "(everything passed to ask() besides its own arguments is sent to the service as is).",
    401: "Your request's API key was refused. Set DASHSCOPE_API_KEY to a Model Studio key for this region "
    "(Singapore 'intl' and Beijing 'cn' keys differ; dashnb.DashScope('cn') targets Beijing) and "
    "point the session at it: dashnb.session(endpoint=dashnb.endpoint()).",
    403: "Your request's key may not use this model here: check the model name, and that the key and the "
    "endpoint are in the same region.",
    404: "Your request went where nothing answers: check the model name and the region of the endpoint.",
    413: "Your request is too large: shorten the prompt or the system message to fit the limit named above.",
    429: "Rate limited: wait a moment and try again, or make fewer calls at once (the limit is per key and model).",
}
_CLIENT_HINT = (
    "Your request was refused: change what the message above names; asking again unchanged fails the same way."
)
_SERVER_HINT = (
    "The service failed on its side, not because of your request: try again in a moment (ask again); "
    "if it keeps failing, try another model."
)


_MALFORMED_HINT = (
    "The reply was malformed: the SDK could not parse one of its events, so the text "
    "would have a hole in it. Nothing was kept; ask again, and report it if it persists."
)


def _hint(status: int | None, code: str | None) -> str:
    if code == "Unknown":  # the SDK's label for an event whose data was not JSON
        return _MALFORMED_HINT
    if code == "InvalidApiKey":
        status = 401
    if status in _HINTS:
        return _HINTS[status]
    if status is not None and status >= 500:
        return _SERVER_HINT
    if status is not None and 400 <= status < 500:
        return _CLIENT_HINT
    return ""


def _scrub(text: str, secrets: list[_Secret]) -> str:
    for secret in secrets:
        if secret.reveal():  # revealed in expressions only: no local of this frame holds the key
            text = text.replace(secret.reveal(), "<api key>")
    return text


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


def _httpx_call(stack: str, session: Any, ep: Any, kwargs: dict[str, Any], key: _Secret) -> Any:
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


def resolve_session(session: Any) -> Any:
    """``session``, or the notebook's default one (``dashnb.session()``) when it is None."""
    if session is None:
        from ._session import session as default_session

        session = default_session()
    if not hasattr(session, "requests") or not hasattr(session, "endpoint"):
        raise TypeError(f"session must be a dashnb session (dashnb.session()), got {type(session).__name__}")
    return session


def check_params(params: dict[str, Any], who: str) -> None:
    """Refuse what the caller's own arguments decide (everything else goes to the service)."""
    if "messages" in params or "prompt" in params:
        raise TypeError(
            f"{who} builds the messages itself, from the prompt and the system prompt. For a conversation "
            "use dashnb.chat(): `c = dashnb.chat(system=...)`, then `c.ask(prompt)` once per turn keeps "
            "the history (or, in a notebook, `%load_ext dashnb` and a %%ask cell per turn); to go on from "
            "messages you already have, `dashnb.chat(history=messages)`."
        )
    for own in ("session", "model", "stream", "system"):
        if own in params:  # unreachable through the signatures; kept for **dict callers
            raise TypeError(f"pass {own}= as {who}'s own keyword")


def complete(
    messages: list[dict[str, str]],
    *,
    model: str,
    session: Any,
    stream: bool,
    params: dict[str, Any],
    markdown: bool = False,
    footer: Callable[[AskResult], str] = AskResult.summary,
    stack: str = "dashscope",
) -> AskResult:
    """One SDK call with these messages, shown as it streams; the core of ``ask`` and ``Chat.ask``.

    ``session`` is a dashnb session (``resolve_session``); ``params`` go to the service as they
    are, but ``api_key``, which replaces the endpoint's key for this call and never shows.
    ``footer`` says what the line under the reply reads. ``stack``: one of ``STACKS``. Raises
    ``AskError``.
    """
    if stack not in STACKS:
        raise ValueError(f"stack must be one of {', '.join(map(repr, STACKS))}, got {stack!r}")
    from dashscope import Generation  # lazily: importing dashscope costs about a second

    params = dict(params)
    ep = session.endpoint
    label = str(getattr(ep, "label", "the endpoint"))
    if getattr(ep, "stopped", False):  # else requests reports the deleted CA file, "check the network"
        raise AskError(
            f"{label} has been stopped, so nothing answers there: point the session at a running "
            f"endpoint (dashnb.session(endpoint=dashnb.endpoint())) or start one (dashnb.emulator.start())."
        )
    # The key lives in a masked holder, revealed only in the call that hands it to the SDK: a
    # local holding it would show in any tool that captures frame locals (pytest --showlocals,
    # crash reporters), and so would the kwargs dict if it went in there.
    given = params.pop("api_key", None)  # the caller's own str, or a Chat's holder
    key = given if isinstance(given, _Secret) else _Secret((given or ep.api_key,))
    secrets = [key]
    kwargs = dict(
        model=model,
        messages=messages,
        base_address=ep.base_url,
        session=session.requests,
        result_format="message",
    )
    kwargs.update(params)
    if stream:
        kwargs.update(stream=True, incremental_output=True)
    else:
        kwargs["stream"] = False
    if stack != "dashscope":  # the v2 client and openai take OpenAI's arguments
        kwargs = {"model": model, "messages": messages, "stream": stream, **params}

    view = _View(model, markdown=markdown)
    pieces: list[str] = []
    first: float | None = None
    request_id: str | None = None
    usage: Usage | None = None

    def failed(resp: Any) -> AskError:
        status = getattr(resp, "status_code", None)
        code = getattr(resp, "code", None) or None
        detail = _scrub(str(getattr(resp, "message", "") or ""), secrets).strip().rstrip(".")
        rid = getattr(resp, "request_id", None)
        text = f"{model} on {label}: HTTP {status}" + (f" {code}" if code else "") + (f": {detail}" if detail else "")
        hint = _hint(status, code)
        err = AskError(f"{text}. {hint}".rstrip(), status_code=status, code=code, request_id=rid)
        view.fail(f"HTTP {status}" + (f" {code}" if code else ""))
        return err

    with _observe.call_scope() as rec:
        start = time.perf_counter()
        try:
            if stack == "dashscope":
                result = Generation.call(**kwargs, api_key=key.reveal())
            else:
                result = _httpx_call(stack, session, ep, kwargs, key)
            responses: Any = result if stream else (result,)
            try:
                for resp in responses:
                    if stack == "dashscope" and getattr(resp, "status_code", None) != 200:
                        raise failed(resp)
                    request_id = getattr(resp, "request_id", None) or request_id
                    if stack == "dashscope":
                        usage = _usage(resp) or usage
                        piece = _piece(resp)
                    else:
                        usage = _httpx_usage(getattr(resp, "usage", None)) or usage
                        piece = _httpx_piece(resp)
                    if piece:
                        if first is None:
                            first = time.perf_counter() - start
                        pieces.append(piece)
                        view.add(piece)
            finally:
                close = getattr(responses, "close", None)
                if close is not None:  # a stream left early: release its connection
                    close()
        except AskError:
            raise
        except KeyboardInterrupt:
            view.fail("interrupted")  # else the display says "waiting for the first token" forever
            raise
        except Exception as exc:
            status = getattr(exc, "status_code", None)
            if stack != "dashscope" and isinstance(status, int):  # the v2 and openai SDKs raise HTTP errors
                raise failed(
                    types.SimpleNamespace(
                        status_code=status,
                        code=getattr(exc, "code", None),
                        message=getattr(exc, "message", None) or str(exc),
                        request_id=getattr(exc, "request_id", None),
                    )
                ) from None
            # Transport failures (timeouts, refused or dropped connections, TLS errors) are raised
            # by the SDK; their text names the host, never the key, but scrub it anyway.
            why = _scrub(f"{type(exc).__name__}: {exc}", secrets)
            view.fail(type(exc).__name__)
            raise AskError(
                f"{model} on {label}: no answer ({why}). Check the network, the endpoint's "
                f"region, and request_timeout= if the call timed out."
            ) from None
        total = time.perf_counter() - start
        sample = rec.snapshot()

    handshake = None
    if sample.reused is False and (sample.connect_s is not None or sample.tls_s is not None):
        handshake = (sample.connect_s or 0.0) + (sample.tls_s or 0.0)
    timings = AskTimings(first_token_s=first if stream else total, total_s=total, handshake_s=handshake)
    res = AskResult(
        text="".join(pieces),
        model=model,
        request_id=request_id,
        usage=usage,
        timings=timings,
        reused=sample.reused,
        connection_id=sample.connection_id,
        requests_on_connection=sample.requests_on_connection,
    )
    view.finish(footer(res))
    return res


def ask(
    prompt: str | None = None,
    *,
    model: str = DEFAULT_MODEL,
    session: Any = None,
    stream: bool = True,
    system: str | None = None,
    stack: str = "dashscope",
    **params: Any,
) -> AskResult:
    """Send ``prompt`` to ``model`` through ``session`` (default ``dashnb.session()``), show the
    reply as it arrives with its latency and whether the connection was reused, and return an
    ``AskResult``.

    ``system``: an optional system message. ``stack``: ``"dashscope"`` (the 1.x SDK's
    ``Generation.call`` on ``session.requests``), ``"v2"`` (``dashscope.Client`` on
    ``session.httpx``) or ``"openai"`` (``openai.OpenAI`` on ``session.httpx``, compatible mode).
    Either way the connection is the session's, and its idle timeout (the Java default, 300 s)
    outlasts the pause while you read a reply, so the next prompt reuses it; the v2 client's own
    default (5 s) would not. ``params``: further SDK/service parameters (``temperature=0.2``,
    ``max_tokens=200``, ``request_timeout=30``...). Raises ``AskError`` when the service answers
    with an HTTP error or cannot be reached.

    One prompt, one reply, no memory: for a conversation that carries its history from turn to
    turn use ``dashnb.chat()`` (``ask`` refuses ``messages=`` and says so).
    """
    check_params(params, "ask()")  # first: ask(messages=...) without a prompt should hear about chat()
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("ask() needs a non-empty prompt string")
    session = resolve_session(session)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return complete(messages, model=model, session=session, stream=stream, params=params, stack=stack)
