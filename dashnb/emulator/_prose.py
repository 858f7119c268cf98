"""The emulator's words: a deterministic reply that answers the prompt's shape, like an assistant.

    >>> words = reply_words("How does connection reuse help?", n=16)
    >>> len(words), words[0], words[-1][-1]
    (16, 'Here', '.')
    >>> "".join(reply_words("List three tips for pools", n=50)).count("\\n")
    3

A greeting gets a greeting, a list request a numbered list, a request for code a fenced Python
block, a question about earlier turns names them, a question a short answer about its topic, a
conversation ending in tool results a reply that reads them back. The reply is in the language the
system prompt names (``language_of``: Chinese, French, German, Spanish or Japanese from a small
phrase table, English otherwise), never repeats the prompt back (it names the prompt's topic in
whole words), has exactly ``n`` words (the emulator's length setting, or ``max_tokens``) and ends
at a sentence boundary. The first reply of a conversation (no assistant turn before it) ends by
saying, once, that it comes from the emulator; later turns do not repeat it.
"""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass

__all__ = [
    "asks_about_earlier",
    "fit",
    "language_of",
    "reasoning_words",
    "reply_words",
    "tool_result_words",
    "topic_of",
]

# The same small program in every language: short enough to fit the default 16-word reply.
_CODE = '\n```python\nimport dashnb\nprint(dashnb.ask("Hi").reused)\n```\n'


@dataclass(frozen=True)
class _Phrases:
    """One language's sentences; ``{topic}`` is the prompt's topic in the user's own words."""

    greeting: str
    list_many: str  # {count}, {topic}
    list_one: str
    yes_no: str
    question: str
    statement: str
    code: str  # {code}: the fenced block, between a lead-in and a closing sentence
    earlier: str  # {topics}
    then: str  # joins the earlier topics
    first_turn: str
    real_model: str
    notice: str  # said once per conversation: this is the emulator
    your_prompt: str  # the topic when the prompt's words do not make one
    more: tuple[str, ...]  # the lesson's themes, said once the shaped part is said
    short: tuple[str, ...]  # closing sentences of different lengths, to end on exactly n words
    join: str = " "  # between sentences
    token: re.Pattern = re.compile(r"\s*\S+")  # what one word (one streamed token) is


_CJK_TOKEN = re.compile(r"\s*(?:[!-~]+|\S)[。！？，、：；）」』]*")

_EN = _Phrases(
    greeting="Hello! How can I help you today?",
    list_many="Here are {count} points about {topic}.",
    list_one="Here is one point about {topic}.",
    yes_no="That depends on details I cannot check from here, so I say neither yes nor no.",
    question="Here is a short answer about {topic}.",
    statement="Thanks; here are a few notes on {topic}.",
    code="In Python:{code}It shows whether the connection was reused.",
    earlier="Earlier you asked about {topics}.",
    then=", then ",
    first_turn="This is the first turn, so nothing came before it.",
    real_model="A real Qwen model would say more about {topic}.",
    notice="From the dashnb emulator.",
    your_prompt="your question",
    more=(
        "A kept-alive connection skips the TCP and TLS handshakes.",
        "Each new connection costs extra round trips.",
        "One shared session lets many calls share a few sockets.",
        "The pool keeps idle connections warm until the idle timeout.",
        "Too few pooled connections make calls queue.",
        "Timeouts bound how long a call may wait.",
        "Streaming sends the reply token by token.",
    ),
    short=(
        "Measure it in your own notebook.",
        "Ask again for more detail.",
        "Happy to say more.",
        "Hope that helps.",
        "Measure it.",
        "Cheers.",
    ),
)

_LANGUAGES = {
    "en": _EN,
    "fr": _Phrases(
        greeting="Bonjour ! Comment puis-je vous aider ?",
        list_many="Voici {count} points sur {topic}.",
        list_one="Voici un point sur {topic}.",
        yes_no="Cela dépend de détails que je ne peux pas vérifier d'ici : ni oui ni non.",
        question="Voici une réponse courte sur {topic}.",
        statement="Merci ; voici quelques notes sur {topic}.",
        code="En Python :{code}Il indique si la connexion a été réutilisée.",
        earlier="Plus tôt, vous avez posé des questions sur {topics}.",
        then=", puis ",
        first_turn="C'est le premier tour : rien ne le précède.",
        real_model="Un vrai modèle Qwen en dirait plus sur {topic}.",
        notice="Réponse de l'émulateur dashnb.",
        your_prompt="votre question",
        more=(
            "Une connexion gardée ouverte évite les poignées de main TCP et TLS.",
            "Chaque nouvelle connexion coûte des allers-retours en plus.",
            "Une session partagée par notebook réutilise quelques sockets.",
            "Le pool garde les connexions inactives jusqu'au délai d'expiration.",
        ),
        short=(
            "Posez une autre question au besoin.",
            "Je peux en dire plus.",
            "J'espère que ça aide.",
            "Mesurez par vous-même.",
            "Bonne continuation.",
            "Voilà.",
        ),
    ),
    "de": _Phrases(
        greeting="Hallo! Wie kann ich helfen?",
        list_many="Hier sind {count} Punkte zu {topic}.",
        list_one="Hier ist ein Punkt zu {topic}.",
        yes_no="Das hängt von Details ab, die ich von hier nicht prüfen kann: weder ja noch nein.",
        question="Hier ist eine kurze Antwort zu {topic}.",
        statement="Danke; hier einige Notizen zu {topic}.",
        code="In Python:{code}Es zeigt, ob die Verbindung wiederverwendet wurde.",
        earlier="Vorhin haben Sie nach {topics} gefragt.",
        then=", dann ",
        first_turn="Das ist die erste Runde; davor kam nichts.",
        real_model="Ein echtes Qwen-Modell würde mehr zu {topic} sagen.",
        notice="Antwort des dashnb-Emulators.",
        your_prompt="Ihrer Frage",
        more=(
            "Eine offen gehaltene Verbindung spart den TCP- und TLS-Handshake.",
            "Jede neue Verbindung kostet zusätzliche Roundtrips.",
            "Eine gemeinsame Sitzung pro Notebook teilt sich wenige Sockets.",
            "Der Pool hält ruhende Verbindungen bis zum Idle-Timeout offen.",
        ),
        short=(
            "Fragen Sie gern nach mehr Details.",
            "Ich kann gern mehr sagen.",
            "Ich hoffe, das hilft.",
            "Messen Sie selbst.",
            "Viel Erfolg.",
            "Gern.",
        ),
    ),
    "es": _Phrases(
        greeting="¡Hola! ¿En qué puedo ayudarle?",
        list_many="Aquí tiene {count} puntos sobre {topic}.",
        list_one="Aquí tiene un punto sobre {topic}.",
        yes_no="Depende de detalles que no puedo comprobar desde aquí: ni sí ni no.",
        question="Aquí tiene una respuesta breve sobre {topic}.",
        statement="Gracias; aquí van unas notas sobre {topic}.",
        code="En Python:{code}Muestra si la conexión se reutilizó.",
        earlier="Antes preguntó por {topics}.",
        then=", luego ",
        first_turn="Este es el primer turno; no hubo nada antes.",
        real_model="Un modelo Qwen real diría más sobre {topic}.",
        notice="Respuesta del emulador dashnb.",
        your_prompt="su pregunta",
        more=(
            "Una conexión mantenida abierta evita los saludos TCP y TLS.",
            "Cada conexión nueva cuesta viajes de ida y vuelta extra.",
            "Una sesión compartida por notebook usa pocos sockets.",
            "El pool mantiene las conexiones inactivas hasta su tiempo límite.",
        ),
        short=(
            "Pregunte de nuevo para más detalles.",
            "Con gusto puedo decir más.",
            "Espero que esto ayude.",
            "Mídalo usted mismo.",
            "Buena suerte.",
            "Saludos.",
        ),
    ),
    # Chinese and Japanese put no spaces between words: a word here is a character (with the
    # punctuation after it) or a run of ASCII, roughly as Qwen's tokenizer splits them.
    "zh": _Phrases(
        greeting="你好！有什么可以帮你？",
        list_many="关于{topic}，有以下{count}点。",
        list_one="关于{topic}，有一点。",
        yes_no="这取决于我在这里无法核实的细节，所以不说是或否。",
        question="关于{topic}，简答如下。",
        statement="谢谢，关于{topic}有几点说明。",
        code="Python示例：{code}它显示连接是否被复用。",
        earlier="你之前问过{topics}。",
        then="，然后是",
        first_turn="这是第一轮对话，之前没有内容。",
        real_model="真正的Qwen模型会就{topic}说得更多。",
        notice="dashnb模拟器作答，非Qwen。",
        your_prompt="你的问题",
        more=(
            "保持连接可以省去TCP和TLS握手。",
            "每个新连接都要多花几次往返。",
            "一个笔记本共用一个会话就能复用少量套接字。",
            "连接池会保留空闲连接直到超时。",
        ),
        short=("希望对你有帮助。", "欢迎继续提问。", "可以测一测。", "请多测量。", "祝顺利。", "谢谢。", "好。"),
        join="",
        token=_CJK_TOKEN,
    ),
    "ja": _Phrases(
        greeting="こんにちは！何をお手伝いしましょうか？",
        list_many="{topic}について{count}点あります。",
        list_one="{topic}について1点あります。",
        yes_no="ここからは確認できない詳細によるので、はいともいいえとも言えません。",
        question="{topic}について簡答します。",
        statement="ありがとうございます。{topic}についてのメモです。",
        code="Pythonでの例です：{code}接続が再利用されたかを表示します。",
        earlier="先ほどは{topics}について質問されました。",
        then="、次に",
        first_turn="これが最初のやり取りで、その前はありません。",
        real_model="本物のQwenモデルなら{topic}についてもっと説明します。",
        notice="dashnb模擬の回答。",
        your_prompt="ご質問",
        more=(
            "接続を保ち続けるとTCPとTLSのハンドシェイクを省けます。",
            "新しい接続ごとに往復が余分にかかります。",
            "ノートブックで一つのセッションを共有すると接続を再利用できます。",
            "プールはアイドルタイムアウトまで接続を保持します。",
        ),
        short=("お役に立てば幸いです。", "ご質問をどうぞ。", "以上です。", "どうぞ。", "以上。", "完。"),
        join="",
        token=_CJK_TOKEN,
    ),
}

# A language named in the system prompt, in English, in itself and in the other languages here.
_NAMES = {
    "zh": r"chinese|mandarin|中文|汉语|漢語|普通话|简体|chinois|chinesisch|chino|中国語",
    "fr": r"french|fran[cç]ais|franz[oö]sisch|franc[eé]s|フランス語|法语|法文",
    "de": r"german|deutsch|allemand|alem[aá]n|ドイツ語|德语|德文",
    "es": r"spanish|espa[nñ]ol|espagnol|spanisch|スペイン語|西班牙语",
    "ja": r"japanese|日本語|japonais|japanisch|japon[eé]s|日语|日文",
    "en": r"english|anglais|englisch|ingl[eé]s|英语|英文|英語",
}
_LANGUAGE = re.compile("|".join(f"(?P<{code}>{names})" for code, names in _NAMES.items()), re.I)

_GREETING = re.compile(r"^\s*(say\s+)?(hi|hello|hey|good (morning|afternoon|evening)|greetings|你好|您好)\b", re.I)
_LIST = re.compile(r"\b(list|name|enumerate|bullet|steps|tips|ideas|ways|reasons|examples|points)\b|列出", re.I)
_CODE_ASK = re.compile(
    r"\b(code|snippet|function|script|program|implement\w*|python|fonction|funktion|función|código)\b"
    r"|代码|程序|コード",
    re.I,
)
_EARLIER = re.compile(
    r"\b(what|which) (did|have) (i|we) (just )?(ask|said|say|talk|discuss)"
    r"|\b(earlier|previous(ly)?|so far|recap|remind me|you said|i asked|my (first|last|previous) question)\b"
    r"|之前|前面|刚才|先ほど|さっき|\bvorhin\b|\bzuvor\b|\bplus tôt\b|\bprécédemment\b|\banteriormente\b",
    re.I,
)
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
    r"^\s*((how|what|why|when|where|which|who|whom|whose)('s|’s)?\s+)?"
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
# A topic longer than this is not named at all (rather than cut inside a word).
_TOPIC_CHARS = 64


@functools.lru_cache(maxsize=256)
def language_of(system: str | None) -> str:
    """The language a system prompt names first (``"zh"``, ``"fr"``, ``"de"``, ``"es"``, ``"ja"``),
    else ``"en"``: "Answer in French" and "用中文回答" both name one."""
    m = _LANGUAGE.search(system) if system else None
    return m.lastgroup or "en" if m else "en"


@functools.lru_cache(maxsize=512)
def asks_about_earlier(prompt: str) -> bool:
    """Whether a prompt asks about the conversation's earlier turns ("What did I ask before?")."""
    return _EARLIER.search(prompt) is not None


def _words(unit: str, token: re.Pattern = _EN.token) -> int:
    return len(token.findall(unit))


def _close(left: int, short: tuple[str, ...], token: re.Pattern) -> list[str]:
    """Closing sentences of exactly ``left`` words, longest first; a one-word one makes any count."""
    out: list[str] = []
    by_length = sorted(short, key=lambda s: _words(s, token), reverse=True)
    while left > 0:
        for sentence in by_length:
            k = _words(sentence, token)
            if k <= left:
                out.append(sentence)
                left -= k
    return out


def fit(units, more, n: int, *, say: _Phrases = _EN, tail: str = "") -> tuple[str, ...]:
    """Exactly ``n`` word tokens from whole ``units`` (then ``more``, cycled), closed by the
    language's short sentences; ``tail`` (the emulator notice) last, if there is room for it after
    the first unit.

    A unit is a sentence, a list item (starting with a newline) or a code block with the sentences
    around it; every one ends a sentence, so the reply does too. Tokens keep their leading
    whitespace: joined, they give the text.
    """
    units = list(units)
    token = say.token
    room = n
    if tail and (not units or _words(units[0], token) + _words(tail, token) <= n):
        room -= _words(tail, token)  # the content's first unit comes before the notice
    else:
        tail = ""
    out: list[str] = []
    used = 0
    supply = itertools.chain(units, itertools.cycle(more)) if more else iter(units)
    for unit in supply:
        k = _words(unit, token)
        if used + k > room:
            break
        out.append(unit)
        used += k
        if used == room:
            break
    out += _close(room - used, say.short, token)
    if tail:
        out.append(tail)
    if not out:
        return ()
    text = out[0] + "".join(u if u.startswith("\n") else say.join + u for u in out[1:])
    return tuple(token.findall(text))


def _sentence(text: str) -> str:
    return text if _END.search(text) else text + "."


def _quote(text: str, words: int = 8) -> str:
    parts = text.split()
    clipped = " ".join(parts[:words]) + ("…" if len(parts) > words else "")
    return "\u201c" + clipped.replace("\u201c", "'").replace("\u201d", "'") + "\u201d"


def topic_of(prompt: str, words: int = 6) -> str:
    """The few words a prompt is about, whole: its question word, verb and count stripped; ``""``
    when they do not make a short topic."""
    line = prompt.strip().splitlines()[0] if prompt.strip() else ""
    line = re.split(r"(?<=[?!.。？！])\s", line, maxsplit=1)[0]  # the first sentence says what it is about
    line = _CONJUNCTION.sub("", line, count=1)
    rest = _LEAD.sub("", line, count=1)
    # rstrip, not a regex anchored at the end: that one retries from every mark of a long run (quadratic).
    rest = rest.rstrip("?!.。？！,;:").strip()
    parts = rest.split()[:words]
    while parts and len(" ".join(parts)) > _TOPIC_CHARS:  # drop whole words, never cut one
        parts.pop()
    while parts and parts[-1].lower() in _DANGLING:  # "cost of opening a" reads better without the "a"
        parts.pop()
    return " ".join(parts)


@functools.lru_cache(maxsize=512)
def reply_words(
    prompt: str,
    n: int,
    variant: int = 0,
    choice: int = 0,
    *,
    lang: str = "en",
    first: bool = True,
    earlier: tuple[str, ...] | None = None,
) -> tuple[str, ...]:
    """The reply to a user's prompt, ``n`` word tokens long.

    ``variant`` (from the seed) and ``choice`` (of ``n`` choices) pick another wording; ``lang``
    (``language_of`` the system prompt) the language; ``first``: no assistant turn came before,
    so the reply says it is the emulator's; ``earlier``: the topics of the earlier user turns,
    when the prompt asks about them (``asks_about_earlier``).
    """
    say = _LANGUAGES.get(lang, _EN)
    # "And why ...?" is still a question: look past a leading conjunction.
    head = _CONJUNCTION.sub("", prompt, count=1)
    topic = topic_of(head) or say.your_prompt
    # The seed's variant rotates what follows the shaped part, so another seed reads differently.
    more = say.more[variant % len(say.more) :] + say.more[: variant % len(say.more)]
    if earlier is not None or _GREETING.search(prompt):
        named = [t for t in earlier or () if t]
        if earlier is None:
            units = [say.greeting]
        else:
            units = [say.earlier.format(topics=say.then.join(named)) if named else say.first_turn]
    else:
        shaped = _answer(prompt, head, topic, say, variant)
        units = shaped if isinstance(shaped, list) else [shaped]
        if not variant:  # honest about what a real model would do with this prompt
            more = (say.real_model.format(topic=topic), *more)
    if choice:  # in the first unit, which must fit for the notice to
        units[0] = f"({choice + 1}.) {units[0]}"
    return fit(units, more, n, say=say, tail=say.notice if first else "")


def _answer(prompt: str, head: str, topic: str, say: _Phrases, variant: int) -> str | list[str]:
    """The shaped part of an answer: code, a list, or a sentence for the kind of question."""
    if _CODE_ASK.search(prompt):
        return say.code.format(code=_CODE)
    if _LIST.search(prompt):
        m = _COUNT.search(prompt)
        count = 3
        if m:
            word = m.group(1).lower()
            count = int(word) if word.isdigit() else _NUMBERS[word]
        count = max(1, min(count, 10))
        lead = say.list_many.format(count=count, topic=topic) if count > 1 else say.list_one.format(topic=topic)
        return [lead, *(f"\n{i}. {say.more[(variant + i - 1) % len(say.more)]}" for i in range(1, count + 1))]
    if _YES_NO.search(head):
        return say.yes_no
    if _WH.search(head) or "?" in prompt or "？" in prompt:
        return say.question.format(topic=topic)
    return say.statement.format(topic=topic)


@functools.lru_cache(maxsize=256)
def reasoning_words(prompt: str, n: int) -> tuple[str, ...]:
    """What a thinking model "thinks" first: a placeholder that says what it read."""
    units = [
        "Emulated reasoning, a placeholder.",
        f"The user wrote {_sentence(_quote(prompt))}",
        "I am the dashnb emulator, not a model that thinks.",
        f"The prompt is about {topic_of(prompt) or 'what it says'}.",
        "I will answer in the shape the prompt asks for.",
    ]
    return fit(units, (), n)


@functools.lru_cache(maxsize=256)
def tool_result_words(results: tuple, n: int, variant: int = 0) -> tuple[str, ...]:
    """A reply after tool results, ``((name, content), ...)``: it reads them back, quoted."""
    units = [f"The tool {name or 'call'} returned {_sentence(_quote(content, 10))}" for name, content in results[:4]]
    units.append("A real model would reason over them.")
    more = (_EN.short[0],) if variant % 2 else _EN.more
    return fit(units, more, n, tail="Read back by the dashnb emulator.")
