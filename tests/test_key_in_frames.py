"""No frame of a dashnb function holds the API key in a local: tools that capture frame locals
(``pytest --showlocals``, crash reporters, debuggers' post-mortems) would show it.

``ask()`` used to keep the key in ``api_key`` and in the ``kwargs`` it passed to the SDK, the
comparison's calls built a dict with it, and the urllib3 hook received the request headers.
Now the key rides in a masked holder and is revealed only inside the call that hands it over.
"""

from __future__ import annotations

import asyncio
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

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.found: set[str] = set()
        self.frames = 0

    def _trace(self, frame, event, arg):
        path = frame.f_code.co_filename
        if not path.startswith(_PACKAGE) or path.startswith(_EXEMPT):
            return None  # no local tracing of other code: cheaper, and not ours to judge
        self.frames += 1
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
