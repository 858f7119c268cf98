"""``%load_ext dashnb``: a ``%%ask`` cell magic, one conversation continued from cell to cell.

    %load_ext dashnb

    %%ask -s "Answer in one sentence."
    What is a TLS handshake?

    %%ask
    And why does skipping it make a call faster?

    %%ask --new -m qwen-max
    A new conversation, with another model.

    %ask And in one line?      # the line magic asks too: the rest of the line is the prompt

    conversation = %ask        # the dashnb.Chat behind the cells: .history, .turns, .reset()

A ``%%ask`` cell sends its body as the next turn of the current conversation (a ``dashnb.chat()``
on the notebook's session), renders the reply as Markdown while it streams (as sanitized HTML,
``_markdown``: nothing in a reply runs), and ends with the turn's tokens, latency and connection
reuse. ``-m`` and ``-s`` change the conversation's model and system prompt from that turn on
(``-s ""`` removes it); ``--new`` starts a new one. Without a rich front end (terminal IPython)
the reply is printed as plain text. An error ends the cell with its one-paragraph message, no
traceback, labelled for what failed: ``UsageError`` for the options, ``AskError`` for the call
(a model the service does not know: a short "did you mean" and "change -m"). Loaded only by
``%load_ext``: ``import dashnb`` never imports IPython.
"""

from __future__ import annotations

import io
import re
import shlex
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from .chat import Chat
from .core import DEFAULT_MODEL, AskError

__all__ = ["AskMagics", "load_ipython_extension", "unload_ipython_extension"]

# Module-level rather than on the Magics object, so that `%reload_ext dashnb` (which makes a new
# one) keeps the conversation going.
_current: Chat | None = None


def conversation(*, new: bool = False, model: str | None = None, system: str | None = None) -> Chat:
    """The conversation ``%%ask`` continues (created on first use); ``new`` starts another.

    ``model`` / ``system`` change it from the next turn on; ``system=""`` removes the prompt.
    """
    global _current
    if new or _current is None:
        _current = Chat(model=model or DEFAULT_MODEL, system=system or None)
        return _current
    if model is not None:
        _current.model = model
    if system is not None:
        _current.system = system
    return _current


_TAKES_VALUE = frozenset({"-m", "--model", "-s", "--system"})


def _split(line: str) -> tuple[list[str], str]:
    """(the leading options, the prompt): what follows the options is the prompt, as typed.

    Options are split with shell quoting, quotes removed (-s "be brief" is the prompt be brief:
    IPython's own parse_argstring keeps them); the prompt is not, so "What's TLS?" stays whole.
    ``--`` ends the options.
    """
    stream = io.StringIO(line)
    lexer = shlex.shlex(stream, posix=True)
    lexer.whitespace_split = True
    argv: list[str] = []
    while True:
        rest = line[stream.tell() :].lstrip()
        if not rest.startswith("-") and not (argv and argv[-1] in _TAKES_VALUE):
            return argv, rest.strip()
        try:
            token = lexer.get_token()
        except ValueError as exc:
            raise UsageError(f'%ask options: {exc} (quote a system prompt with spaces: -s "be brief")') from None
        if token is None or token == "--":
            return argv, line[stream.tell() :].strip() if token else ""
        argv.append(token)


def _parse(line: str) -> tuple[Any, str]:
    argv, prompt = _split(line)
    try:
        return AskMagics.ask.parser.parse_args(argv), prompt
    except UsageError as exc:
        raise UsageError(f"%ask: {exc} (%ask? lists the options)") from None


def _shown_without_traceback(err: AskError) -> AskError:
    """``err``, shown by IPython as its one-paragraph message under its own name: a traceback
    through the magic machinery would bury what to change."""
    err._render_traceback_ = lambda: [f"{type(err).__name__}: {err}"]  # type: ignore[attr-defined]
    return err


@magics_class
class AskMagics(Magics):
    @magic_arguments()
    @argument("-m", "--model", help=f"the model, from this turn on (default {DEFAULT_MODEL})")
    @argument("-s", "--system", help='the system prompt, from this turn on; -s "" removes it')
    @argument("--new", action="store_true", help="start a new conversation (forget the history)")
    @line_cell_magic
    def ask(self, line: str, cell: str | None = None) -> Any:
        """Ask the model, continuing the conversation of the earlier %%ask cells.

        %%ask [-m MODEL] [-s SYSTEM] [--new]
        <the prompt: the rest of the cell>

        %ask [-m MODEL] [-s SYSTEM] [--new] the prompt, on one line

        Without a prompt, %ask [-m MODEL] [-s SYSTEM] [--new] sets the conversation up without
        asking anything and returns it (a dashnb.Chat: .history, .turns, .reset()).
        """
        global _current
        args, prompt = _parse(line)
        if cell is not None:
            if prompt:
                raise UsageError(
                    f"%%ask takes options on its line, and the prompt under it: move {prompt!r} into the "
                    "cell (or ask it on one line with the line magic: %ask your question)"
                )
            if not cell.strip():
                raise UsageError(
                    "%%ask needs a prompt: write it in the cell, under the %%ask line (or ask on one "
                    "line: %ask your question)"
                )
            prompt = cell.strip()
        before = _current, _current and (_current.model, _current.system)
        try:
            chat = conversation(new=args.new, model=args.model, system=args.system)
        except ValueError as exc:  # -m ""
            raise UsageError(f"%%ask: {exc}") from None
        if not prompt:
            return chat
        try:
            chat.ask(prompt)
        except AskError as err:
            # A failed turn changes nothing: the next cell continues the conversation as it was
            # (a mistyped -m must not stick).
            _current, settings = before
            if _current is not None and settings:
                _current.model, _current.system = settings
            if err.unknown_model is not None:  # said the way it was typed here
                fixed = AskError(
                    str(err).replace("Change model= to", "Change -m to"),
                    status_code=err.status_code,
                    code=err.code,
                    request_id=err.request_id,
                )
                fixed.unknown_model = err.unknown_model
                err = fixed
            raise _shown_without_traceback(err) from None
        return None


# "%ask What is TLS?" ends with "?", which IPython reads as a request for help on "TLS" (its
# help-end transform runs before the magic is called): a line magic whose argument is a question
# must become the call itself first. Cleanup transforms see every line before IPython's own.
_ASK_LINE = re.compile(r"^([ \t]*)%ask(?:[ \t]+(.*?))?[ \t]*(\n?)$")


def _ask_line_as_call(lines: list[str]) -> list[str]:
    if lines and lines[0].lstrip().startswith("%%"):  # a cell magic's body is its own
        return lines
    return [
        _ASK_LINE.sub(lambda m: f"{m[1]}get_ipython().run_line_magic('ask', {m[2] or ''!r}){m[3]}", line)
        for line in lines
    ]


def load_ipython_extension(ipython: Any) -> None:
    """Called by ``%load_ext dashnb``."""
    ipython.register_magics(AskMagics)
    if _ask_line_as_call not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.append(_ask_line_as_call)


def unload_ipython_extension(ipython: Any) -> None:
    """Called by ``%unload_ext dashnb``: removes ``%ask`` / ``%%ask`` (the conversation stays)."""
    manager = ipython.magics_manager
    for kind in ("line", "cell"):
        if isinstance(getattr(manager.magics[kind].get("ask"), "__self__", None), AskMagics):
            del manager.magics[kind]["ask"]
    manager.registry.pop("AskMagics", None)
    if _ask_line_as_call in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.remove(_ask_line_as_call)
