"""The emulator's words: a deterministic reply that answers the prompt's shape.

    >>> words = reply_words("How does connection reuse help?", n=16)
    >>> len(words), words[0], words[-1][-1]
    (16, 'You', '.')
    >>> "".join(reply_words("List three tips for pools", n=30)).count("\\n")
    3

A greeting gets a greeting, a list request a numbered list, a question a placeholder answer that
quotes it, a conversation ending in tool results a reply that reads them back; every reply says it
comes from the emulator, has exactly ``n`` words (the emulator's length setting, or ``max_tokens``)
and ends at a sentence boundary, padded with short honest sentences where the content runs out.
"""

from __future__ import annotations

import functools
import itertools
import re

__all__ = ["fit", "reasoning_words", "reply_words", "tool_result_words", "topic_of"]

# Each exactly as many words as its index: the last, partly filled, stretch of a reply.
_FILLERS = (
    "",
    "Emulated.",
    "Emulated reply.",
    "An emulated reply.",
    "This reply is emulated.",
    "This is an emulated reply.",
    "That is all the emulator says.",
    "That is all the emulator says here.",
    "That is all the dashnb emulator says here.",
    "That is all the dashnb emulator has to say.",
    "That is all the dashnb emulator has to say here.",
    "That is all the dashnb emulator has to say about this.",
    "That is all the dashnb emulator has to say about this prompt.",
    "That is really all the dashnb emulator has to say about this prompt.",
)

# More to say once the shaped part is said: the lesson's themes, in a rotation the request picks.
_MORE = (
    "A kept-alive connection skips the TCP and TLS handshakes on every later call.",
    "Each new connection costs extra round trips before the prompt is sent.",
    "One shared session per notebook lets many calls share a few sockets.",
    "The pool keeps idle connections warm until the idle timeout closes them.",
    "Too few pooled connections make calls queue; too many can overload the server.",
    "Timeouts bound how long a call may wait to connect and to read.",
    "Streaming sends the reply token by token as the server produces it.",
)

_GREETING = re.compile(r"^\s*(say\s+)?(hi|hello|hey|good (morning|afternoon|evening)|greetings|你好|您好)\b", re.I)
_LIST = re.compile(r"\b(list|name|enumerate|bullet|steps|tips|ideas|ways|reasons|examples|points)\b|列出", re.I)
_NUMBERS = {
    "one": 1,
    "a single": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
}
_COUNT = re.compile(r"\b(\d{1,2}|one|a single|two|three|four|five|six|seven|eight|nine|ten)\b", re.I)
_YES_NO = re.compile(r"^\s*(is|are|am|can|could|do|does|did|should|would|will|has|have|was|were|may|must)\b", re.I)
_WH = re.compile(r"^\s*(how|what|why|when|where|which|who|whom|whose)\b", re.I)
_LEAD = re.compile(
    r"^\s*((how|what|why|when|where|which|who|whom|whose)\s+)?"
    r"((is|are|am|can|could|do|does|did|should|would|will|has|have|was|were|may|must)\s+)?"
    r"((please|list|name|give me|tell me( about)?|explain|describe|write|summari[sz]e)\s+)?"
    r"((\d{1,2}|one|two|three|four|five|six|seven|eight|nine|ten)\s+)?"
    r"((tips|ideas|ways|reasons|examples|points|steps|things)\s+)?"
    r"((for|about|on|of|to)\s+)?",
    re.I,
)
_DANGLING = frozenset("a an the of to for and or in on at with by from as is are".split())
_CONJUNCTION = re.compile(r"^\s*(and|but|so|then|also|ok|okay|now)\b[\s,]*", re.I)
_END = re.compile(r"[.!?…。！？][\"'”’)\]]*$")


def fit(units, more, n: int) -> tuple[str, ...]:
    """Exactly ``n`` word tokens from whole ``units`` (then ``more``, cycled), padded with fillers.

    A unit is a sentence or a list item (starting with a newline); every one ends a sentence, so
    the reply does too. Tokens keep their leading whitespace: joined, they give the text.
    """
    out: list[str] = []
    used = 0
    supply = itertools.chain(units, itertools.cycle(more)) if more else iter(units)
    for unit in supply:
        k = len(unit.split())
        if used + k > n:
            break
        out.append(unit)
        used += k
        if used == n:
            break
    left = n - used
    while left > 0:
        step = min(left, len(_FILLERS) - 1)
        out.append(_FILLERS[step])
        left -= step
    if not out:
        return ()
    text = out[0] + "".join(u if u.startswith("\n") else " " + u for u in out[1:])
    return tuple(re.findall(r"\s*\S+", text))


def _sentence(text: str) -> str:
    return text if _END.search(text) else text + "."


def _quote(text: str, words: int = 8) -> str:
    parts = text.split()
    clipped = " ".join(parts[:words]) + ("…" if len(parts) > words else "")
    return "\u201c" + clipped.replace("\u201c", "'").replace("\u201d", "'") + "\u201d"


def topic_of(prompt: str, words: int = 4) -> str:
    """The few words a prompt is about: its question word, verb and count stripped."""
    line = prompt.strip().splitlines()[0] if prompt.strip() else ""
    line = re.split(r"(?<=[?!.。？！])\s", line, maxsplit=1)[0]  # the first sentence says what it is about
    rest = _LEAD.sub("", line, count=1)
    # rstrip, not a regex anchored at the end: that one retries from every mark of a long run (quadratic).
    rest = rest.rstrip("?!.。？！,;:").strip()
    parts = rest.split()[:words]
    while parts and parts[-1].lower() in _DANGLING:  # "cost of opening a" reads better without the "a"
        parts.pop()
    return " ".join(parts) if parts else "your prompt"


@functools.lru_cache(maxsize=512)
def reply_words(prompt: str, n: int, variant: int = 0, choice: int = 0) -> tuple[str, ...]:
    """The reply to a user's prompt, ``n`` word tokens long; ``variant`` (from the seed) and
    ``choice`` (of ``n`` choices) pick another wording."""
    # "And why ...?" is still a question: look past a leading conjunction.
    head = _CONJUNCTION.sub("", prompt, count=1)
    topic = topic_of(head)
    # The seed's variant rotates what follows the shaped part, so another seed reads differently.
    more = _MORE[variant % len(_MORE) :] + _MORE[: variant % len(_MORE)]
    if not variant:
        more = (f"A real Qwen model would say more about {topic}.", *more)
    if _GREETING.search(prompt):
        units = [
            "Hello!",
            "This is the dashnb emulator, answering in place of Qwen.",
            "Ask it something and it answers in your prompt's shape.",
        ]
    elif _LIST.search(prompt):
        m = _COUNT.search(prompt)
        count = 3
        if m:
            word = m.group(1).lower()
            count = int(word) if word.isdigit() else _NUMBERS[word]
        count = max(1, min(count, 10))
        units = [
            f"Here are {count} emulated points about {topic}."
            if count > 1
            else f"Here is one emulated point about {topic}."
        ]
        ordinals = ("First", "Second", "Third", "Fourth", "Fifth", "Sixth", "Seventh", "Eighth", "Ninth", "Tenth")
        units += [f"\n{i}. {ordinals[i - 1]} point about {topic}." for i in range(1, count + 1)]
    elif _YES_NO.search(head):
        units = [
            f"You asked: {_sentence(_quote(prompt))}",
            "The dashnb emulator cannot judge that, so it says neither yes nor no.",
        ]
    elif _WH.search(head) or "?" in prompt or "？" in prompt:
        units = [
            f"You asked: {_sentence(_quote(prompt))}",
            "This is the dashnb emulator, so here is a placeholder answer.",
            f"It is about {topic}.",
        ]
    else:
        units = [
            f"You wrote: {_sentence(_quote(prompt))}",
            "This is the dashnb emulator's placeholder reply, not a real model's.",
            f"It is about {topic}.",
        ]
    if choice:
        units[0:0] = [f"(Choice {choice + 1}.)"]
    return fit(units, more, n)


@functools.lru_cache(maxsize=256)
def reasoning_words(prompt: str, n: int) -> tuple[str, ...]:
    """What a thinking model "thinks" first: a placeholder that says what it read."""
    units = [
        "Emulated reasoning, a placeholder.",
        f"The user wrote {_sentence(_quote(prompt))}",
        "I am the dashnb emulator, not a model that thinks.",
        f"The prompt is about {topic_of(prompt)}.",
        "I will answer in the shape the prompt asks for.",
    ]
    return fit(units, (), n)


@functools.lru_cache(maxsize=256)
def tool_result_words(results: tuple, n: int, variant: int = 0) -> tuple[str, ...]:
    """A reply after tool results, ``((name, content), ...)``: it reads them back, quoted."""
    units = [f"The tool {name or 'call'} returned {_sentence(_quote(content, 10))}" for name, content in results[:4]]
    units.append("The dashnb emulator only reads tool results back; a real model would reason over them.")
    more = (_FILLERS[-1],) if variant % 2 else _MORE
    return fit(units, more, n)
