"""No frame of a dashnb function holds the API key in a local: tools that capture frame locals
(``pytest --showlocals``, crash reporters, debuggers' post-mortems) would show it.

``ask()`` used to keep the key in ``api_key`` and in the ``kwargs`` it passed to the SDK, the
comparison's calls built a dict with it, and the urllib3 hook received the request headers.
Now the key rides in a masked holder and is revealed only inside the call that hands it over.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
import traceback
from collections.abc import Mapping

import pytest

import dashnb
from dashnb import _measure
from dashnb._ask import core as _ask

_PACKAGE = os.path.dirname(dashnb.__file__) + os.sep
# The emulator's server side sees the key because clients send it there; it runs on its own
# thread (not traced here) and its key is a generated test key it hands out anyway.
_EXEMPT = os.path.join(_PACKAGE, "emulator") + os.sep


def _shows(value, secret: str, depth: int = 0) -> bool:
    """Whether ``value`` shows the key: as a string, inside a container, or in a dashnb object's repr.

    Other libraries' objects are not repr'd: some reprs take locks (httpcore's pool) or cache
    state (aiohttp's response headers), and calling them at an arbitrary moment would hang or
    break the very call being watched. A key they carry is theirs to hide; what dashnb must not
    do is hold it itself, which is a string or a container of one.
    """
    if depth > 4:
        return False
    owner = next((c for c in type(value).__mro__ if "__repr__" in c.__dict__), object)
    if owner.__module__.startswith("dashnb"):  # a repr dashnb wrote (the secret holder's among them)
        try:
            return secret in repr(value)
        except Exception:  # a half-built object: nothing to show a tool either
            return False
    if isinstance(value, str):
        return secret in value
    if isinstance(value, bytes):
        return secret.encode() in value
    if isinstance(value, Mapping):
        return any(_shows(k, secret, depth + 1) or _shows(v, secret, depth + 1) for k, v in list(value.items()))
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_shows(v, secret, depth + 1) for v in list(value))
    return False


def _leaks(frame, secret: str) -> list[str]:
    return [
        f"{frame.f_code.co_name}() local {name!r} in {os.path.basename(frame.f_code.co_filename)}"
        for name, value in list(frame.f_locals.items())
        if _shows(value, secret)
    ]


class _FrameSpy:
    """Looks at every dashnb frame at every line, call, return and exception event (this thread
    and threads started meanwhile) and records each local whose repr contains ``secret``."""

    def __init__(self, secret: str, entry: object = None, settled: str = "") -> None:
        self.secret = secret
        self.found: set[str] = set()
        self.frames = 0
        # The public function the caller hands the key to: on entry its argument is the caller's
        # own str, which its first statement puts in a holder; from the line ``settled`` starts
        # on, its frame must hold none.
        self.entry = getattr(entry, "__code__", None)
        self.settled = 0
        if entry is not None:
            lines, start = inspect.getsourcelines(entry)  # type: ignore[arg-type]
            self.settled = start + next(i for i, line in enumerate(lines) if settled in line and "def " not in line)

    def _trace(self, frame, event, arg):
        path = frame.f_code.co_filename
        if not path.startswith(_PACKAGE) or path.startswith(_EXEMPT):
            return None  # no local tracing of other code: cheaper, and not ours to judge
        self.frames += 1
        if not (frame.f_code is self.entry and frame.f_lineno < self.settled):
            self.found.update(_leaks(frame, self.secret))
        return self._trace

    def __enter__(self) -> _FrameSpy:
        sys.settrace(self._trace)
        import threading

        threading.settrace(self._trace)
        return self

    def __exit__(self, *exc) -> None:
        import threading

        sys.settrace(None)
        threading.settrace(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("stack", _ask.STACKS)
@pytest.mark.parametrize("stream", [True, False])
def test_ask_holds_the_key_in_no_local(emu, make_session, stream, stack, capsys):
    s = make_session(endpoint=emu)
    with _FrameSpy(emu.api_key) as spy:
        result = dashnb.ask("hello", session=s, stream=stream, stack=stack)
    assert result.text
    assert spy.frames > 50  # the spy saw ask() and the hooks under it
    assert spy.found == set()


@pytest.mark.parametrize("stack", _ask.STACKS)
@pytest.mark.parametrize("stream", [True, False])
def test_ask_given_a_key_holds_it_in_no_local(emu, make_session, stream, stack, capsys):
    """ask(api_key=...) with the caller's own key: past ask()'s first line, no dashnb frame
    holds it (the endpoint's key here is another one, so only the argument can reach the call)."""
    other = dashnb.DashScope("intl", api_key="sk-other-" + "3" * 24, base_url=emu.base_url)
    s = make_session(endpoint=_Trusting(other, emu))
    with _FrameSpy(emu.api_key, entry=dashnb.ask, settled="check_params(") as spy:
        result = dashnb.ask("hello", session=s, stream=stream, stack=stack, api_key=emu.api_key)
    assert result.text  # the emulator accepted the key: it reached the SDK
    assert spy.frames > 50
    assert spy.found == set()


class _Trusting:
    """A DashScope endpoint that trusts the emulator's CA (no environment needed)."""

    def __init__(self, ep, emu) -> None:
        self._ep, self._emu = ep, emu
        self.label, self.base_url, self.compatible_base_url = ep.label, ep.base_url, ep.compatible_base_url
        self.ca_path, self.is_emulator, self.trust_env = emu.ca_path, False, False

    @property
    def api_key(self) -> str:
        return self._ep.api_key

    def ssl_context(self):
        return self._emu.ssl_context()


def test_asks_traceback_from_a_failure_holds_no_key(make_session, monkeypatch, capsys):
    secret = "sk-frames-" + "7" * 24
    # The real service's endpoint type, aimed at a closed port: the call fails inside ask().
    ep = dashnb.DashScope("intl", api_key=secret, base_url="https://127.0.0.1:9/api/v1")
    s = make_session(endpoint=ep)
    with _FrameSpy(secret) as spy:
        with pytest.raises(dashnb.AskError) as info:
            dashnb.ask("hello", session=s, request_timeout=2)
    assert spy.found == set()
    tb_frames = [f for f, _ in traceback.walk_tb(info.value.__traceback__) if f.f_code.co_filename.startswith(_PACKAGE)]
    assert any(f.f_code is _ask.ask.__code__ for f in tb_frames)
    for frame in tb_frames:
        assert _leaks(frame, secret) == []
    assert secret not in str(info.value)


def test_comparison_calls_hold_the_key_in_no_local(emu):
    with _FrameSpy(emu.api_key) as spy:
        r = _measure.compare(["shared", "async"], calls=2, endpoint=emu, progress=False, warmup=False)
    assert r["shared"].summary.errors == 0 and r["async"].summary.errors == 0
    assert spy.found == set()
    asyncio.set_event_loop(None)


def test_a_chat_given_a_key_holds_it_in_no_local_while_it_talks(emu, make_session, capsys):
    s = make_session(endpoint=emu)
    c = dashnb.chat(session=s, api_key=emu.api_key)  # the caller's own value, kept in a holder
    assert emu.api_key not in str(vars(c))
    with _FrameSpy(emu.api_key) as spy:
        c.ask("hello")
        c.ask("again")
    assert len(c.turns) == 2
    assert spy.found == set()


# ---- what a failed ask() raises -----------------------------------------------------------------


def _shown_by(value, secret: str, depth: int = 0) -> bool:
    """Whether ``value``'s repr, or the repr of anything in it (plain containers, recursively), shows
    the key. The key's holder is a tuple subclass with a repr of its own: opaque, as to any tool."""
    try:
        if secret in repr(value):
            return True
    except Exception:  # a repr that fails shows nothing
        return False
    if depth < 4 and type(value) is dict:
        return any(_shown_by(k, secret, depth + 1) or _shown_by(v, secret, depth + 1) for k, v in list(value.items()))
    if depth < 4 and type(value) in (list, tuple, set, frozenset):
        return any(_shown_by(v, secret, depth + 1) for v in list(value))
    return False


def _where_the_error_shows(exc: BaseException, secret: str, *, formatted: bool = True) -> list[str]:
    """Every place reachable from ``exc`` that shows the key: its text, its ``__cause__`` and
    ``__context__`` (recursively), every local of every frame in each one's traceback but this
    test file's own (the catching frame), and the text a crash reporter writes with locals."""
    found: list[str] = []
    seen: set[int] = set()

    def visit(e: BaseException | None, where: str) -> None:
        if e is None or id(e) in seen:
            return
        seen.add(id(e))
        if secret in str(e) or secret in repr(e):
            found.append(f"{where}: its text")
        for frame, _ in traceback.walk_tb(e.__traceback__):
            if frame.f_code.co_filename == __file__:
                continue
            for name, value in list(frame.f_locals.items()):
                if _shown_by(value, secret):
                    found.append(f"{where}: {frame.f_code.co_name}() local {name!r}")
        visit(e.__cause__, where + ".__cause__")
        visit(e.__context__, where + ".__context__")

    visit(exc, type(exc).__name__)
    if not formatted:
        return found
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next  # the catching test's frame, live while this runs: its locals are not dashnb's
    text = "".join(traceback.TracebackException(type(exc), exc, tb, capture_locals=True).format())
    if secret in text:
        at = text.index(secret)
        found.append(f"TracebackException(capture_locals=True).format(): {text[max(0, at - 300) : at + 40]!r}")
    return found


FAILURES = ("bad model", "401", "500", "refused", "timeout")


@pytest.mark.slow
@pytest.mark.parametrize("stack", _ask.STACKS)
@pytest.mark.parametrize("failure", FAILURES)
def test_what_a_failed_ask_raises_reaches_no_frame_holding_the_key(emu, make_session, monkeypatch, failure, stack):
    """ask(api_key=K) on a real-service endpoint (the emulator, trusted through SSL_CERT_FILE),
    failing in five ways: neither the AskError nor anything it reaches (its chain, its frames'
    locals) shows K. The SDKs' own frames hold K, so the error must not keep their exceptions."""
    from dashnb._endpoint import Secret

    monkeypatch.setenv("SSL_CERT_FILE", emu.ca_path)
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    # The key a caller passes: the emulator's own (so that the other failures get past its
    # check), or a wrong one for the 401. Held in a holder here so this frame does not show it.
    key = Secret(("sk-wrong-" + "5" * 24,)) if failure == "401" else Secret((emu.api_key,))
    base_url = emu.base_url
    if failure == "refused":
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            base_url = f"https://127.0.0.1:{sock.getsockname()[1]}/api/v1"
    ep = dashnb.DashScope("intl", api_key="sk-session-" + "1" * 24, base_url=base_url)
    s = make_session(endpoint=ep)
    params: dict = {"request_timeout": 1} if stack == "dashscope" else {"timeout": 1.0}
    model = "no-such-model" if failure == "bad model" else "qwen-plus"
    if failure == "500":
        emu.configure(error_rate=1.0, error_status=500)
    elif failure == "timeout":
        emu.configure(stall_before_headers=30)
    with pytest.raises(dashnb.AskError) as info:
        dashnb.ask("hello", model=model, session=s, stack=stack, stream=False, api_key=key.reveal(), **params)
    err = info.value
    expected = {"bad model": (400, 404), "401": (401,), "500": (500,), "refused": (None,), "timeout": (None,)}
    assert err.status_code in expected[failure], str(err)
    assert err.__cause__ is None and err.__context__ is None
    assert _where_the_error_shows(err, key.reveal()) == []
    # negative control: the walk finds a key an error does keep
    try:
        try:
            raise RuntimeError("inner")
        except RuntimeError:
            held = {"api_key": key.reveal()}  # noqa: F841 (a frame local the walk must see)
            raise ValueError("outer")  # noqa: B904 (chained on purpose: __context__)
    except ValueError as control:
        assert _where_the_error_shows(control, key.reveal())


@pytest.mark.slow
def test_what_a_failed_chat_turn_raises_reaches_no_frame_holding_the_key(emu, make_session, monkeypatch, capsys):
    """A conversation's turn given its own key (Chat.ask(prompt, api_key=K)), refused with a 401."""
    from dashnb._endpoint import Secret

    key = Secret(("sk-turn-" + "6" * 24,))
    c = dashnb.chat(session=make_session(endpoint=emu))
    with pytest.raises(dashnb.AskError) as info:
        c.ask("hello", api_key=key.reveal())
    assert info.value.status_code == 401
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert _where_the_error_shows(info.value, key.reveal()) == []


def test_a_chat_refusing_its_arguments_raises_no_frame_holding_the_key(emu, make_session):
    from dashnb._endpoint import Secret

    key = Secret(("sk-init-" + "8" * 24,))
    with pytest.raises(TypeError, match="dashnb.chat") as info:
        dashnb.chat(session=make_session(endpoint=emu), api_key=key.reveal(), messages=[])
    # Locals only: formatting them with TracebackException(capture_locals=True) calls the repr of
    # the half-built Chat, which raises AttributeError (a separate matter: Chat.__repr__).
    assert _where_the_error_shows(info.value, key.reveal(), formatted=False) == []
