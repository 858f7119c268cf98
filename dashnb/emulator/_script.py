"""What a test tells the emulator to answer next (`Script`), and what it was asked (`Journal`).

    >>> script = Script()
    >>> script.tool_call("get_weather", {"city": "Paris"}).reply("18 degrees and sunny")
    <Script: 2 turns pending: tool_call get_weather, reply>
    >>> script.take().calls
    (('get_weather', '{"city": "Paris"}'),)

A script is a queue of turns. Each text-generation request, on either protocol, takes the next
one: a reply (text, tool calls, thinking), an error from the catalogue (`_errors`), a stall, or a
dropped connection. A request the service would refuse (a bad parameter) is refused as usual and
takes no turn. With the queue empty the emulator answers as always, deterministically (`_compose`).

The journal keeps what each text-generation request asked, newest last, at most `JOURNAL_MAXLEN`
of them and `JOURNAL_MAX_BYTES` of their bodies (older ones fall off): protocol, model, messages,
tools, the other parameters, and the headers without the API key. The emulator runs on its own
thread, a test on another: both objects take a lock for what must not interleave, and an empty
script costs a request one length check.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections import deque
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from ._compose import Reply
from ._errors import ServiceError, lookup
from ._request import GenerationRequest
from ._tools import ToolCall

__all__ = ["JOURNAL_MAXLEN", "JOURNAL_MAX_BYTES", "Journal", "JournalEntry", "Script", "Turn", "scripted_reply"]

#: The most requests a journal keeps; older ones are dropped first.
JOURNAL_MAXLEN = 1000
#: The most body bytes a journal keeps (bodies may be up to 1 MiB each): older requests are dropped
#: first, so a run of large requests cannot make a kernel hold a gigabyte of them.
JOURNAL_MAX_BYTES = 32 * 1024 * 1024

_PIECE = re.compile(r"\s*\S+")
_KINDS = ("reply", "tool_calls", "error", "stall", "drop")


@dataclass(frozen=True)
class Turn:
    """One scripted answer. ``calls`` holds (name, arguments as JSON text) pairs."""

    kind: str
    text: str = ""
    calls: tuple[tuple[str, str], ...] = ()
    thinking: str | None = None
    error: ServiceError | None = None
    seconds: float = 0.0

    def __str__(self) -> str:
        if self.kind == "tool_calls":
            return "tool_call " + ", ".join(name for name, _ in self.calls)
        if self.kind == "error":
            return f"error {self.error.code}" if self.error else "error"
        if self.kind == "stall":
            return f"stall {self.seconds:g} s"
        return self.kind


def _arguments(name: object, arguments: Any) -> tuple[str, str]:
    if not isinstance(name, str) or not name:
        raise ValueError(f"a scripted tool call needs the tool's name as a string, got {name!r}")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ValueError(f"the arguments of scripted tool call {name!r} must be a dict, got {type(arguments).__name__}")
    try:
        return name, json.dumps(arguments, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the arguments of scripted tool call {name!r} must be JSON-serializable: {exc}") from None


def _text(what: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {type(value).__name__}")
    return value


class Script:
    """The turns the emulator answers with next, in order; see the module's docstring.

    Each verb queues one turn and returns the script, so turns chain:
    ``script.tool_call("a", {...}).tool_call("b", {...}).reply("done")``.
    """

    def __init__(self) -> None:
        self._turns: deque[Turn] = deque()
        self._thinking: str | None = None  # for the next turn queued (`thinking`)
        self._lock = threading.Lock()

    # -- verbs ----------------------------------------------------------------------------

    def reply(self, text: str, *, thinking: str | None = None) -> Script:
        """Answer the next request with ``text`` (and ``thinking`` as its reasoning, if given)."""
        return self._push(Turn("reply", text=_text("a scripted reply", text)), thinking)

    def tool_call(self, name: str, arguments: dict | None = None, *, thinking: str | None = None) -> Script:
        """Answer the next request by calling tool ``name`` with ``arguments`` (a JSON-able dict)."""
        return self._push(Turn("tool_calls", calls=(_arguments(name, arguments),)), thinking)

    def tool_calls(self, *calls: tuple[str, dict], thinking: str | None = None) -> Script:
        """Answer the next request with several tool calls at once: ``tool_calls(("a", {...}), ("b", {...}))``."""
        if not calls or not all(isinstance(c, tuple) and len(c) == 2 for c in calls):
            raise ValueError("tool_calls takes one or more (name, arguments) pairs")
        return self._push(Turn("tool_calls", calls=tuple(_arguments(n, a) for n, a in calls)), thinking)

    def thinking(self, text: str) -> Script:
        """The reasoning of the next turn queued (a reply or tool call), as ``thinking=`` would give it."""
        with self._lock:
            self._thinking = _text("scripted thinking", text)
        return self

    def error(self, name: str, message: str | None = None) -> Script:
        """Refuse the next request with an error of the catalogue, by code (``"Throttling.RateQuota"``)
        or short name (``"rate_quota"``); ``message`` replaces the catalogue's words."""
        found = lookup(name)
        if message is not None:
            found = replace(found, message=_text("an error's message", message))
        return self._push(Turn("error", error=found), None)

    def stall(self, seconds: float) -> Script:
        """Wait ``seconds`` before answering the next request (``math.inf``: until the client gives up);
        the answer is then the usual one."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or math.isnan(seconds) or seconds < 0:
            raise ValueError(f"stall takes seconds >= 0 (math.inf to never answer), got {seconds!r}")
        return self._push(Turn("stall", seconds=float(seconds)), None)

    def drop(self) -> Script:
        """Break the next answer off: a stream after its first two chunks, a whole reply halfway
        through its promised length (the connection closes; the next request is answered as usual)."""
        return self._push(Turn("drop"), None)

    def clear(self) -> None:
        """Forget every turn not yet taken."""
        with self._lock:
            self._turns.clear()
            self._thinking = None

    # -- reading --------------------------------------------------------------------------

    @property
    def pending(self) -> tuple[Turn, ...]:
        """The turns not yet taken, next first."""
        with self._lock:
            return tuple(self._turns)

    def __len__(self) -> int:
        return len(self._turns)

    def __repr__(self) -> str:
        turns = self.pending
        if not turns:
            return "<Script: empty (the emulator's own replies)>"
        return f"<Script: {len(turns)} turn{'s' * (len(turns) != 1)} pending: {', '.join(map(str, turns))}>"

    # -- the server's side ----------------------------------------------------------------

    def take(self) -> Turn | None:
        """The next turn, or None when the script is empty (the usual case: one length check)."""
        if not self._turns:
            return None
        with self._lock:
            return self._turns.popleft() if self._turns else None

    def _push(self, turn: Turn, thinking: str | None) -> Script:
        with self._lock:
            if thinking is None:
                thinking, self._thinking = self._thinking, None
            if thinking is not None:
                if turn.kind not in ("reply", "tool_calls"):
                    raise ValueError(f"thinking goes with a reply or a tool call, not with {turn.kind}")
                turn = replace(turn, thinking=_text("scripted thinking", thinking))
            self._turns.append(turn)
        return self


def scripted_reply(turn: Turn, usual: Reply, request: GenerationRequest) -> Reply:
    """The reply a reply or tool-call turn gives instead of ``usual`` (whose token counts it keeps)."""
    if turn.thinking is not None:
        reasoning = tuple(_PIECE.findall(turn.thinking))
    else:
        reasoning = usual.reasoning  # the request asked for thinking: it gets the usual words
    calls: tuple[ToolCall, ...] = ()
    if turn.calls:
        seed = hashlib.sha256(json.dumps([request.messages, turn.calls, usual.index]).encode()).hexdigest()
        calls = tuple(
            ToolCall(id=f"call_{seed[:8]}{k:02d}{seed[8:22]}", name=name, arguments=arguments)
            for k, (name, arguments) in enumerate(turn.calls)
        )
    return replace(
        usual,
        tokens=tuple(_PIECE.findall(turn.text)),
        reasoning=reasoning,
        tool_calls=calls,
        finish_reason="tool_calls" if calls else "stop",
    )


# Headers that carry a key: never kept (dashscope and openai send it as Authorization).
_SECRET_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "proxy-authorization", "cookie"})


class JournalEntry:
    """One text-generation request as the emulator received it: read-only views of its own parsed body.

    Only the protocol, the body and the headers without the key are kept when the request arrives;
    the rest is read from the body when asked for, so keeping a journal costs a request a few
    microseconds.
    """

    __slots__ = ("_body", "_headers", "protocol", "stream")
    protocol: str  # "native" or "compatible"
    stream: bool
    _body: dict
    _headers: dict

    def __init__(self, protocol: str, body: dict, headers: dict, stream: bool):
        object.__setattr__(self, "protocol", protocol)
        object.__setattr__(self, "stream", stream)
        object.__setattr__(self, "_body", body)
        object.__setattr__(self, "_headers", headers)

    def __setattr__(self, name, value):
        raise AttributeError("a journal entry is read-only")

    @property
    def model(self) -> Any:
        return self._body.get("model")

    def _native_parts(self) -> tuple[dict, dict]:
        inp = self._body.get("input")
        params = self._body.get("parameters")
        return (inp if isinstance(inp, dict) else {}), (params if isinstance(params, dict) else {})

    @property
    def messages(self) -> tuple:
        """The conversation as sent (a native prompt becomes one user message)."""
        if self.protocol == "native":
            inp, _ = self._native_parts()
            messages = inp.get("messages")
            if not messages and isinstance(inp.get("prompt"), str):
                messages = [{"role": "user", "content": inp["prompt"]}]
        else:
            messages = self._body.get("messages")
        return tuple(messages) if isinstance(messages, list) else ()

    @property
    def tools(self) -> tuple:
        tools = self._native_parts()[1].get("tools") if self.protocol == "native" else self._body.get("tools")
        return tuple(tools) if isinstance(tools, list) else ()

    @property
    def params(self) -> MappingProxyType:
        """Every other parameter (native: ``parameters``; compatible: the body's other keys)."""
        if self.protocol == "native":
            params = {k: v for k, v in self._native_parts()[1].items() if k != "tools"}
        else:
            params = {k: v for k, v in self._body.items() if k not in ("model", "messages", "tools")}
        return MappingProxyType(params)

    @property
    def headers(self) -> MappingProxyType:
        """Lower-case names; no Authorization or other key-bearing header."""
        return MappingProxyType(self._headers)

    @property
    def last_message(self) -> Any:
        messages = self.messages
        return messages[-1] if messages else None

    def __repr__(self) -> str:
        return f"<JournalEntry {self.protocol} {self.model!r}: {len(self.messages)} messages, {len(self.tools)} tools>"


class Journal:
    """The text-generation requests received, oldest first: at most `JOURNAL_MAXLEN` of them and
    `JOURNAL_MAX_BYTES` of their bodies (the oldest go first)."""

    def __init__(self, maxlen: int = JOURNAL_MAXLEN, max_bytes: int = JOURNAL_MAX_BYTES) -> None:
        self._entries: deque[tuple[JournalEntry, int]] = deque()
        self._maxlen, self._max_bytes, self._bytes = maxlen, max_bytes, 0
        self._lock = threading.Lock()

    def record(self, protocol: str, body: object, headers, *, stream: bool, key: str, size: int = 0) -> None:
        """Keep what one request asked (the server calls this; a body that is no object is skipped)."""
        if isinstance(body, dict):
            kept = {
                low: value
                for name, value in headers.items()
                if (low := name.lower()) not in _SECRET_HEADERS and key not in value  # a key pasted elsewhere too
            }
            entry = JournalEntry(protocol, body, kept, stream)
            with self._lock:
                self._entries.append((entry, size))
                self._bytes += size
                while len(self._entries) > self._maxlen or (self._bytes > self._max_bytes and len(self._entries) > 1):
                    self._bytes -= self._entries.popleft()[1]

    @property
    def entries(self) -> tuple[JournalEntry, ...]:
        with self._lock:
            return tuple(entry for entry, _ in self._entries)

    @property
    def last(self) -> JournalEntry | None:
        """The latest request, or None."""
        with self._lock:
            return self._entries[-1][0] if self._entries else None

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self):
        return iter(self.entries)

    def __getitem__(self, index: int) -> JournalEntry:
        return self.entries[index]

    def __repr__(self) -> str:
        entries = self.entries
        if not entries:
            return "<Journal: no requests>"
        models = ", ".join(f"{e.protocol} {e.model}" for e in entries[-3:])
        return f"<Journal: {len(entries)} request{'s' * (len(entries) != 1)}, latest: {models}>"
