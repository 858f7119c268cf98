"""What ``ask`` returns: the reply, its token usage and timings, and the one line under it
saying how long it took and whether the connection was reused.

    >>> from dashnb._ask.result import AskResult, AskTimings
    >>> r = AskResult("Hi.", "qwen-plus", None, None, AskTimings(0.0412, 0.1803), reused=True, connection_id=1)
    >>> r.summary()
    'qwen-plus: first token 41.2 ms, total 180.3 ms, reused connection #1'
"""

from __future__ import annotations

import dataclasses
import html
import sys


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
    # The notebook cell that showed this reply as it streamed: shown as that cell's result, it
    # would show the reply a second time.
    _shown_in: int | None = dataclasses.field(default=None, init=False, compare=False)

    def summary(self, *, input_tokens: bool = False, earlier_turns: int | None = None) -> str:
        """One line: latency and reuse (what ``ask`` shows under the reply); ``input_tokens``
        adds the tokens sent (a conversation's grow with its history), ``earlier_turns`` how many
        earlier turns they carried."""
        return _summary_line(
            self.model,
            self.timings,
            self.reused,
            self.connection_id,
            self.requests_on_connection,
            self.usage,
            input_tokens=input_tokens,
            earlier_turns=earlier_turns,
        )

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        preview = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        return f"<AskResult {self.summary()}: {preview!r}>"

    def _repr_html_(self) -> str:
        return _html(self.text, self.summary())

    def _ipython_display_(self) -> None:
        # One display per reply: the cell that streamed it shows nothing more; any other shows it.
        if self._shown_in is not None and self._shown_in == current_cell():
            return
        from IPython.display import display

        display({"text/html": self._repr_html_(), "text/plain": repr(self)}, raw=True)


def current_cell() -> int | None:
    """The execution count of the notebook cell running now, or None outside a kernel.

    A script never imported IPython, so looking in sys.modules keeps scripts from paying for it.
    """
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    if shell is None or getattr(shell, "kernel", None) is None:
        return None
    count = getattr(shell, "execution_count", None)
    return count if isinstance(count, int) else None


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
    earlier_turns: int | None = None,
) -> str:
    parts = [f"{model}: first token {_ms(timings.first_token_s)}, total {_ms(timings.total_s)}"]
    if usage is not None and usage.output_tokens is not None:
        if input_tokens and usage.input_tokens is not None:
            parts.append(f"{usage.input_tokens} in + {usage.output_tokens} out tokens")
        else:
            parts.append(f"{usage.output_tokens} tokens")
    if earlier_turns is not None:  # why a conversation's input grows: the history goes with each turn
        parts.append(f"{earlier_turns} earlier turn{'' if earlier_turns == 1 else 's'} sent")
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


def footer_html(footer: str) -> str:
    """The line of timings under a reply, as plain text in HTML."""
    return f'<div style="color:#777;font-size:smaller;margin-top:4px">{html.escape(footer)}</div>'


def _html(text: str, footer: str) -> str:
    """A reply shown as plain text (every character escaped), with its footer."""
    escaped = f'<div style="white-space:pre-wrap">{html.escape(text)}</div>'
    return f'<div class="dashnb-ask">{escaped}{footer_html(footer)}</div>'
