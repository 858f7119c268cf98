"""``%load_ext dashnb``: a ``%%ask`` cell magic, one conversation continued from cell to cell.

    %load_ext dashnb

    %%ask -s "Answer in one sentence."
    What is a TLS handshake?

    %%ask
    And why does skipping it make a call faster?

    %%ask --new -m qwen-max
    A new conversation, with another model.

    conversation = %ask        # the dashnb.Chat behind the cells: .history, .turns, .reset()

A ``%%ask`` cell sends its body as the next turn of the current conversation (a ``dashnb.chat()``
on the notebook's session), renders the reply as Markdown while it streams (as sanitized HTML,
``_markdown``: nothing in a reply runs), and ends with the turn's tokens, latency and connection
reuse. ``-m`` and ``-s`` change the conversation's model and system prompt from that turn on
(``-s ""`` removes it); ``--new`` starts a new one. Without a rich front end (terminal IPython)
the reply is printed as plain text. An error ends the cell with its one-paragraph message, no
traceback. Loaded only by ``%load_ext``: ``import dashnb`` never imports IPython.
"""

from __future__ import annotations

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


def _parse(line: str) -> Any:
    # Shell quoting, quotes removed (-s "be brief" is the prompt be brief): IPython's own
    # parse_argstring splits without removing them.
    try:
        argv = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f'%%ask options: {exc} (quote a system prompt with spaces: -s "be brief")') from None
    try:
        return AskMagics.ask.parser.parse_args(argv)
    except UsageError as exc:
        raise UsageError(f"%%ask: {exc} (%%ask? lists the options)") from None


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

        As a line magic, %ask [-m MODEL] [-s SYSTEM] [--new] sets the conversation up without
        asking anything and returns it (a dashnb.Chat: .history, .turns, .reset()).
        """
        global _current
        args = _parse(line)
        if cell is not None and not cell.strip():
            raise UsageError("%%ask needs a prompt: write it in the cell, under the %%ask line")
        before = _current, _current and (_current.model, _current.system)
        try:
            chat = conversation(new=args.new, model=args.model, system=args.system)
        except ValueError as exc:  # -m ""
            raise UsageError(f"%%ask: {exc}") from None
        if cell is None:
            return chat
        try:
            chat.ask(cell.strip())
        except AskError as err:
            # A failed turn changes nothing: the next cell continues the conversation as it was
            # (a mistyped -m must not stick). The message says what to change; a traceback
            # through the magic machinery would bury it.
            _current, settings = before
            if _current is not None and settings:
                _current.model, _current.system = settings
            raise UsageError(str(err)) from None
        return None


def load_ipython_extension(ipython: Any) -> None:
    """Called by ``%load_ext dashnb``."""
    ipython.register_magics(AskMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """Called by ``%unload_ext dashnb``: removes ``%ask`` / ``%%ask`` (the conversation stays)."""
    manager = ipython.magics_manager
    for kind in ("line", "cell"):
        if isinstance(getattr(manager.magics[kind].get("ask"), "__self__", None), AskMagics):
            del manager.magics[kind]["ask"]
    manager.registry.pop("AskMagics", None)
