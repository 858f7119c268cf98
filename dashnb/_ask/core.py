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
sends each turn of a conversation through it too. What it returns is in ``result``, what it
shows while streaming in ``view``, what a failure says in ``errors``, and how each stack's
replies are read in ``stacks``.
"""

from __future__ import annotations

import re
import time
import types
from collections.abc import Callable
from typing import Any

from .. import _observe
from .._endpoint import Secret
from .._session import manager as _sessions
from .errors import AskError, _hint, _scrub
from .result import AskResult, AskTimings, Usage, current_cell
from .stacks import STACKS, _httpx_call, _httpx_piece, _httpx_usage, _piece, _usage
from .view import _View

__all__ = ["STACKS", "AskError", "AskResult", "AskTimings", "Usage", "ask"]

#: The model ``ask``, ``chat`` and ``%%ask`` use unless told otherwise.
DEFAULT_MODEL = "qwen-plus"

# How the service and the emulator say a model name is wrong ("Model not exist", "The model `x`
# does not exist or you do not have access to it").
_NO_MODEL = re.compile(r"model\b.{0,80}?\b(not exist|does not exist)", re.I | re.S)


def resolve_session(session: Any) -> Any:
    """``session``, or the notebook's default one (``dashnb.session()``) when it is None."""
    if session is None:
        default_session = _sessions.session  # looked up now: tests replace it

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
    model_arg: str = "model=",
) -> AskResult:
    """One SDK call with these messages, shown as it streams; the core of ``ask`` and ``Chat.ask``.

    ``session`` is a dashnb session (``resolve_session``); ``params`` go to the service as they
    are, but ``api_key``, which replaces the endpoint's key for this call and never shows.
    ``footer`` says what the line under the reply reads. ``stack``: one of ``STACKS``.
    ``model_arg``: how the caller names the model (``model=``, ``-m``), for the hint when the
    service has no such model. Raises ``AskError``.
    """
    if stack not in STACKS:
        raise ValueError(f"stack must be one of {', '.join(map(repr, STACKS))}, got {stack!r}")
    from dashscope import Generation  # lazily: importing dashscope costs about a second

    if params.get("api_key") is not None and not isinstance(params["api_key"], Secret):
        # In the caller's dict too, so its frame stops showing the key (a Chat's merged params).
        params["api_key"] = Secret((params["api_key"],))
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
    key = params.pop("api_key", None) or Secret((ep.api_key,))
    if not isinstance(key.reveal(), str) or not key.reveal().strip():
        raise ValueError("api_key must be a non-empty string (or leave it out to use the endpoint's key)")
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
        unknown = status in (400, 404) and _NO_MODEL.search(detail) is not None
        if unknown:  # the one thing to change is the model: say it the way the caller wrote it
            hint = f"Change {model_arg} to a model name this endpoint serves (the default is {DEFAULT_MODEL!r})."
        sep = " " if text.endswith(("?", "!")) else ". "
        err = AskError(f"{text}{sep}{hint}".rstrip(), status_code=status, code=code, request_id=rid)
        err.unknown_model = model if unknown else None
        view.fail(f"HTTP {status}" + (f" {code}" if code else ""))
        return err

    # A failure is raised only after the SDK's objects are dropped and outside the except
    # clause: raised inside it, the AskError's __context__ would keep the SDK's exception, whose
    # traceback reaches frames that hold the key (the SDK's own locals), and so would the reply
    # objects left in this frame's locals.
    error: AskError | None = None
    result: Any = None
    responses: Any = None
    resp: Any = None
    with _observe.call_scope() as rec:
        start = time.perf_counter()
        try:
            if stack == "dashscope":
                result = Generation.call(**kwargs, api_key=key.reveal())
            else:
                result = _httpx_call(stack, session, ep, kwargs, key)
            responses = result if stream else (result,)
            try:
                for resp in responses:
                    if stack == "dashscope" and getattr(resp, "status_code", None) != 200:
                        error = failed(resp)
                        break
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
                close = None
        except KeyboardInterrupt:
            view.fail("interrupted")  # else the display says "waiting for the first token" forever
            raise
        except Exception as exc:
            error = _failure(exc, stack, failed, model, label, secrets, view)
        if error is None:
            total = time.perf_counter() - start
            sample = rec.snapshot()
        result = responses = resp = None
    if error is not None:
        raise error

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
    if view.in_notebook:
        object.__setattr__(res, "_shown_in", current_cell())
    return res


def _failure(
    exc: Exception, stack: str, failed: Callable[[Any], AskError], model: str, label: str, secrets: list, view: _View
) -> AskError:
    """The ``AskError`` that says what ``exc`` (raised by an SDK) means; it keeps nothing of ``exc``."""
    status = getattr(exc, "status_code", None)
    if stack != "dashscope" and isinstance(status, int):  # the v2 and openai SDKs raise HTTP errors
        return failed(
            types.SimpleNamespace(
                status_code=status,
                code=getattr(exc, "code", None),
                message=getattr(exc, "message", None) or str(exc),
                request_id=getattr(exc, "request_id", None),
            )
        )
    # Transport failures (timeouts, refused or dropped connections, TLS errors) are raised
    # by the SDK; their text names the host, never the key, but scrub it anyway.
    why = _scrub(f"{type(exc).__name__}: {exc}", secrets)
    view.fail(type(exc).__name__)
    return AskError(
        f"{model} on {label}: no answer ({why}). Check the network, the endpoint's "
        f"region, and request_timeout= if the call timed out."
    )


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
    # First: from here on no local of this frame holds the key.
    if params.get("api_key") is not None and not isinstance(params["api_key"], Secret):
        params["api_key"] = Secret((params["api_key"],))
    check_params(params, "ask()")  # first: ask(messages=...) without a prompt should hear about chat()
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("ask() needs a non-empty prompt string")
    session = resolve_session(session)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return complete(messages, model=model, session=session, stream=stream, params=params, stack=stack)
