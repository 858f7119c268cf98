"""A conversation with a model from a notebook: each turn carries the history, on the notebook's session.

    >>> import dashnb
    >>> c = dashnb.chat(system="Answer in one sentence.")                 # doctest: +SKIP
    >>> c.ask("What is a TLS handshake?")                                  # doctest: +SKIP
    A TLS handshake is ...
    turn 1 · qwen-plus: first token 41.2 ms, total 180.3 ms, 24 in + 16 out tokens, reused connection #1 ...
    >>> c.ask("And why does skipping it make a call faster?")             # doctest: +SKIP
    turn 2 · qwen-plus: ..., 67 in + 16 out tokens, reused connection #1 (request 3 on it)
    >>> c.history          # what the next turn sends after the system prompt  # doctest: +SKIP
    >>> c.reset(system="Answer in French.")    # a new conversation             # doctest: +SKIP

Each turn is one ``dashnb.ask``-style call (the same core: streaming, errors that say what to
change, the key never shown) whose messages are the system prompt, the history and the new
prompt; only a turn that succeeds is added to the history, so a failed one can be asked again.
The line under each reply gives the turn's tokens in and out (the input grows with the history)
and whether it reused a pooled connection. In a notebook the reply renders as Markdown while it
streams, as HTML made here and sanitized; raw HTML and script links in it are shown as text, never
run (``_markdown``).
"""

from __future__ import annotations

from typing import Any

from .._endpoint import Secret
from .core import DEFAULT_MODEL, AskResult, check_params, complete, resolve_session
from .result import current_cell

__all__ = ["Chat", "chat"]

_ROLES = ("user", "assistant")
# How much of the transcript a repr shows: the last few messages, each cut to one short line.
_REPR_MESSAGES = 4
_REPR_CHARS = 60


class _Keep:
    """``reset()``'s default: keep the current model / system prompt (``None`` removes the prompt)."""

    def __repr__(self) -> str:
        return "<keep>"


_KEEP: Any = _Keep()


def _check_model(model: Any) -> str:
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model must be a model name such as {DEFAULT_MODEL!r}, got {model!r}")
    return model.strip()


def _check_system(system: Any) -> str | None:
    if system is None:
        return None
    if not isinstance(system, str):
        raise TypeError(f"system must be a string or None, got {type(system).__name__}")
    return system if system.strip() else None  # an empty prompt means none


def _check_history(history: Any, system: str | None) -> tuple[list[tuple[str, str]], str | None]:
    """(messages, system) from a list of {"role", "content"} dicts; a leading system message
    becomes the system prompt."""
    if history is None:
        return [], system
    if isinstance(history, (str, bytes)) or not hasattr(history, "__iter__"):
        raise TypeError('history must be a list of {"role": ..., "content": ...} dicts')
    out: list[tuple[str, str]] = []
    for i, m in enumerate(history):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise TypeError(f'history[{i}] must be a dict with a string "role" and a string "content"')
        role = m["role"]
        if role == "system" and i == 0:
            if system is not None:
                raise ValueError("history starts with a system message and system= is given too: pass one of them")
            system = _check_system(m["content"])
        elif role not in _ROLES:
            where = " (a system message may only come first)" if role == "system" else ""
            raise ValueError(f"history[{i}] has role {role!r}; a conversation has 'user' and 'assistant'{where}")
        else:
            out.append((role, m["content"]))
    return out, system


def _short(text: str) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= _REPR_CHARS else one_line[: _REPR_CHARS - 3] + "..."


class Chat:
    """A conversation: a model, an optional system prompt, the history, one result per turn.

    Use ``dashnb.chat()``. ``ask(prompt)`` sends a turn; ``model`` and ``system`` may be changed
    between turns (they apply from the next one); ``reset()`` starts a new conversation.
    ``session=None`` means the notebook's default session, looked up at every turn (so
    reconfiguring ``dashnb.session()`` applies to the conversation too).
    """

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        system: str | None = None,
        session: Any = None,
        stream: bool = True,
        markdown: bool = True,
        history: Any = None,
        **params: Any,
    ) -> None:
        # First: a refused argument's traceback must not show it.
        if params.get("api_key") is not None and not isinstance(params["api_key"], Secret):
            params["api_key"] = Secret((params["api_key"],))  # vars(), __dict__, debuggers: <secret>
        check_params(params, "dashnb.chat()")
        self._model = _check_model(model)
        self._history, self._system = _check_history(history, _check_system(system))
        self._session = session
        self.stream = bool(stream)
        self.markdown = bool(markdown)
        self._turns: list[AskResult] = []
        self._api_key = params.pop("api_key", None)
        self._params = params

    # -- settings ------------------------------------------------------------------------------
    @property
    def model(self) -> str:
        return self._model

    @model.setter
    def model(self, model: str) -> None:
        self._model = _check_model(model)

    @property
    def system(self) -> str | None:
        """The system prompt sent first in every turn (None: none)."""
        return self._system

    @system.setter
    def system(self, system: str | None) -> None:
        self._system = _check_system(system)

    # -- what was said -------------------------------------------------------------------------
    @property
    def history(self) -> list[dict[str, str]]:
        """The turns so far as messages (a copy), without the system prompt."""
        return [{"role": role, "content": content} for role, content in self._history]

    @property
    def turns(self) -> tuple[AskResult, ...]:
        """One result per turn this object sent (timings, usage, reuse), oldest first."""
        return tuple(self._turns)

    @property
    def last(self) -> AskResult | None:
        return self._turns[-1] if self._turns else None

    def messages(self, prompt: str) -> list[dict[str, str]]:
        """What a turn with ``prompt`` sends: the system prompt, the history, the prompt."""
        head = [{"role": "system", "content": self._system}] if self._system else []
        return [*head, *self.history, {"role": "user", "content": prompt}]

    # -- talking ---------------------------------------------------------------------------------
    def ask(self, prompt: str, **params: Any) -> AskResult:
        """Send ``prompt`` with the history, show the reply as it streams, add both to the history.

        ``params`` go to the service for this turn only, over the conversation's own (``max_tokens``,
        ``temperature``...). Raises ``AskError`` (the history is then unchanged).
        """
        # First: from here on no local of this frame holds the key.
        if params.get("api_key") is not None and not isinstance(params["api_key"], Secret):
            params["api_key"] = Secret((params["api_key"],))
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("a turn needs a non-empty prompt string")
        check_params(params, "Chat.ask()")
        merged = {**self._params, **params}
        if "api_key" not in merged and self._api_key is not None:
            merged["api_key"] = self._api_key  # the holder: complete() reveals it in the SDK call only
        earlier = sum(1 for role, _ in self._history if role == "user")
        turn = earlier + 1
        result = complete(
            self.messages(prompt),
            model=self._model,
            session=resolve_session(self._session),
            stream=self.stream,
            params=merged,
            markdown=self.markdown,
            footer=lambda r: f"turn {turn} · " + r.summary(input_tokens=True, earlier_turns=earlier),
        )
        self._history += [("user", prompt), ("assistant", result.text)]
        self._turns.append(result)
        return result

    def reset(self, *, model: str = _KEEP, system: str | None = _KEEP) -> Chat:
        """Start a new conversation: forget the history (and the turns), optionally with another
        model or system prompt (``system=None`` removes it). Returns the conversation."""
        if model is not _KEEP:
            self.model = model
        if system is not _KEEP:
            self.system = system
        self._history = []
        self._turns = []
        return self

    # -- looking at it -----------------------------------------------------------------------------
    def __len__(self) -> int:
        """The number of turns in the history (user messages)."""
        return sum(1 for role, _ in self._history if role == "user")

    def _head(self) -> str:
        # getattr throughout: a repr is also taken of a half-built Chat (a refused argument's
        # traceback with capture_locals=True), before __init__ set anything.
        session = getattr(self, "_session", None)
        where = "the notebook's session" if session is None else f"session {getattr(session, 'name', '?')!r}"
        n = sum(1 for role, _ in getattr(self, "_history", ()) if role == "user")
        head = f"<Chat {getattr(self, '_model', '?')}, {n} turn{'' if n == 1 else 's'} on {where}"
        if not n:
            head += ': c.ask("...") sends the first turn'
        return head

    def __repr__(self) -> str:
        history = getattr(self, "_history", [])
        turns = getattr(self, "_turns", [])
        lines = [self._head()]
        system = getattr(self, "_system", None)
        if system:
            lines.append(f"  system: {_short(system)!r}")
        shown = history[-_REPR_MESSAGES:]
        if len(history) > len(shown):
            lines.append(f"  ... {len(history) - len(shown)} earlier messages")
        lines += [f"  {role}: {_short(content)!r}" for role, content in shown]
        if turns:
            lines.append(f"  last turn: {turns[-1].summary(input_tokens=True)}")
        return "\n".join(lines) + ">"

    def _ipython_display_(self) -> None:
        from IPython.display import display

        # One display per reply: in the cell that just streamed the last turn, only the head line.
        last = self.last
        text = self._head() + ">" if last is not None and last._shown_in == current_cell() else repr(self)
        display({"text/plain": text}, raw=True)


def chat(
    prompt: str | None = None,
    /,
    *,
    model: str = DEFAULT_MODEL,
    system: str | None = None,
    session: Any = None,
    stream: bool = True,
    markdown: bool = True,
    history: Any = None,
    **params: Any,
) -> Chat:
    """A new conversation with ``model`` on ``session`` (default: the notebook's, ``dashnb.session()``).

    ``prompt``: the first turn, asked at once (``dashnb.chat("What is TLS?")``); then ``.ask()``
    goes on. Returns the conversation (a ``Chat``).
    ``system``: the system prompt. ``history``: messages to go on from (a list of
    ``{"role": "user" | "assistant", "content": ...}``, optionally led by a system message).
    ``markdown``: render replies as Markdown in a notebook, sanitized (else as plain text). ``params``: sent
    with every turn (``max_tokens=200``, ``temperature=0.2``, ``api_key=...``, which never shows).
    """
    # First, as in Chat(): no local of this frame shows it.
    if params.get("api_key") is not None and not isinstance(params["api_key"], Secret):
        params["api_key"] = Secret((params["api_key"],))
    conversation = Chat(
        model=model, system=system, session=session, stream=stream, markdown=markdown, history=history, **params
    )
    if prompt is not None:
        conversation.ask(prompt)
    return conversation
