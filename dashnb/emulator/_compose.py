"""Deterministic replies: the same request always gets the same tokens, reasoning and tool calls.

    >>> from dashnb.emulator._request import parse_native
    >>> from dashnb.emulator._compose import compose
    >>> reply = compose(parse_native({"model": "qwen-plus", "input": {"prompt": "hi"}}), reply_tokens=4)
    >>> "".join(reply.tokens) == reply.text, reply.finish_reason
    (True, 'stop')

A ``Reply`` is a pure function of the request, so a streamed reply concatenates to exactly the
non-streamed one and a notebook can check the text it gets back. The words come from `_prose`,
tool calls from `_tools`, structured values from `_schema`; ``_wire`` frames a Reply for either
protocol.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from . import _prose
from ._limits import MAX_REPLY_TOKENS
from ._request import GenerationRequest
from ._schema import Budget, instance
from ._tools import ToolCall, hints_of, plan_calls

__all__ = ["Reply", "compose", "compose_choices", "count_tokens"]

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)
# Characters a token of generated JSON or arguments may stand for, to size their budget.
_CHARS_PER_TOKEN = 8
_PIECE = re.compile(r"\s*\S+")


@dataclass(frozen=True)
class Reply:
    tokens: tuple[str, ...]
    input_tokens: int
    reasoning: tuple[str, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str = "stop"
    index: int = 0

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    @property
    def reasoning_text(self) -> str:
        return "".join(self.reasoning)

    @property
    def output_tokens(self) -> int:
        if not self.tool_calls:
            return len(self.tokens) + len(self.reasoning)
        return len(self.tokens) + len(self.reasoning) + sum(len(c.pieces) for c in self.tool_calls)

    def usage(self, produced: int | None = None) -> dict:
        out = self.output_tokens if produced is None else produced
        usage: dict = {"input_tokens": self.input_tokens, "output_tokens": out, "total_tokens": self.input_tokens + out}
        if self.reasoning:
            usage["output_tokens_details"] = {"reasoning_tokens": min(out, len(self.reasoning))}
        return usage

    def steps(self):
        """What a stream sends, one step per chunk: (reasoning, content, call index, call piece)."""
        for piece in self.reasoning:
            yield piece, None, None, None
        for piece in self.tokens:
            yield None, piece, None, None
        for k, call in enumerate(self.tool_calls):
            for piece in call.pieces:
                yield None, None, k, piece
        if not self.output_tokens:
            yield None, "", None, None  # an empty reply (a stop string at its start) still ends in one chunk


def count_tokens(text: str) -> int:
    """A stand-in tokenizer: words and punctuation marks. Deterministic, not Qwen's."""
    return len(_WORD.findall(text))


def compose(request: GenerationRequest, *, reply_tokens: int) -> Reply:
    """The reply to a request: the same request always gets the same tokens."""
    return compose_choices(request, reply_tokens=reply_tokens)[0]


def compose_choices(request: GenerationRequest, *, reply_tokens: int) -> tuple[Reply, ...]:
    """One reply per choice asked for (``n``); the native text format has room for one."""
    count = request.n if request.result_format == "message" else 1
    if count == 1:  # nearly every request: no generator to build and run
        return (_compose_one(request, reply_tokens, 0),)
    return tuple(_compose_one(request, reply_tokens, i) for i in range(count))


def _digest(request: GenerationRequest, *extra) -> bytes:
    return hashlib.sha256(json.dumps([request.model, request.messages, request.seed, *extra]).encode()).digest()


def _compose_one(request: GenerationRequest, reply_tokens: int, index: int) -> Reply:
    prompt = next((text for role, text in reversed(request.messages) if role == "user"), "")
    # What shapes the words besides the prompt: the system prompt's language, whether this is the
    # conversation's first reply (which says, once, that it is the emulator's) and, only when the
    # prompt asks about them, the earlier turns' topics. All cached by their text in `_prose`.
    system = next((text for role, text in request.messages if role == "system"), None)
    lang = _prose.language_of(system)
    first = not any(role == "assistant" for role, _ in request.messages)
    earlier = None
    if _prose.asks_about_earlier(prompt):
        users = [text for role, text in request.messages if role == "user"]
        earlier = tuple(_prose.topic_of(text) for text in users[-4:-1])
    input_tokens = sum(count_tokens(c) + 3 for _, c in request.messages)
    if request.tools:
        input_tokens += count_tokens(json.dumps([t.parameters for t in request.tools]))
    variant = 0 if request.seed is None else _digest(request)[0]
    reasoning: tuple[str, ...] = ()
    if request.thinking:
        budget = reply_tokens if request.thinking_budget is None else min(reply_tokens, request.thinking_budget)
        reasoning = _prose.reasoning_words(prompt, budget)
    choice = request.tool_choice
    if request.tool_results and choice == "auto":
        choice = "none"  # tool results are in: answer with them rather than call again
    calls: tuple[ToolCall, ...] = ()
    # What a reply's JSON or arguments may grow to: what max_tokens allows, never more than the
    # longest reply; a schema asking for more is cut there, as the service cuts at the output limit.
    room = Budget(_CHARS_PER_TOKEN * min(request.max_tokens or MAX_REPLY_TOKENS, MAX_REPLY_TOKENS))
    if request.tools and choice != "none":  # the digest costs more than the rest of a plain reply
        seed = _digest(request, index).hex()
        calls = plan_calls(request.tools, choice, request.parallel_tool_calls, prompt, seed, room)
    if calls:
        return Reply((), input_tokens, reasoning, calls, "length" if room.cut else "tool_calls", index)

    limit = request.max_tokens
    if request.response_format == "text":
        n = reply_tokens if limit is None else min(reply_tokens, limit)
        if request.tool_results:
            tokens = _prose.tool_result_words(request.tool_results, n, variant)
        else:
            tokens = _prose.reply_words(prompt, n, variant, index, lang=lang, first=first, earlier=earlier)
        finish = "length" if limit is not None and limit < reply_tokens else "stop"
    else:
        if request.response_format == "json_schema":
            value = instance(request.json_schema, hints_of(prompt), room)
        else:
            value = {
                "answer": "".join(_prose.reply_words(prompt, 12, variant, index, lang=lang, first=False)),
                "source": "dashnb emulator",
            }
        whole = tuple(_PIECE.findall(json.dumps(value, ensure_ascii=False)))
        tokens = whole if limit is None else whole[:limit]  # cut like the service: the JSON stays unfinished
        finish = "length" if len(tokens) < len(whole) or room.cut else "stop"
    if request.stop:
        text = "".join(tokens)
        cut = min((i for i in (text.find(s) for s in request.stop) if i >= 0), default=-1)
        if cut >= 0:
            tokens, finish = tuple(_PIECE.findall(text[:cut])), "stop"
    return Reply(tokens, input_tokens, reasoning, (), finish, index)
