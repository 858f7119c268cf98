"""The relay's clock: chunks leave at their due time, never before, without millisecond rounding."""

from __future__ import annotations

import asyncio
import random
import socket
import statistics
import sys
import time

import pytest

from dashnb.emulator import _clock

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the precise clock is a Linux timerfd")


def _on_fresh_loop(coro_fn):
    loop = asyncio.new_event_loop()
    try:
        clock = _clock.make_clock(loop)
        try:
            return loop.run_until_complete(coro_fn(loop, clock))
        finally:
            clock.close()
    finally:
        loop.close()


@linux_only
def test_relay_uses_the_precise_clock_on_linux_selector_loops():
    assert _on_fresh_loop(lambda loop, clock: _return(type(clock))) is _clock._PreciseClock


async def _return(value):
    return value


@linux_only
def test_precise_clock_fires_in_deadline_order_never_early_and_skips_cancelled():
    async def scenario(loop, clock):
        rng = random.Random(3)
        start = loop.time()
        fired: list[tuple[float, int, float]] = []
        done = loop.create_future()
        expected = []
        timers = []
        for i in range(60):
            # Some deadlines shared (ties keep arrival order), some already past.
            when = start + rng.choice([-0.001, 0.0005, 0.002, 0.002, rng.uniform(0.0, 0.03)])
            timers.append((when, i, clock.call_at(when, lambda w=when, i=i: fired.append((w, i, loop.time())))))
        for when, i, t in timers:
            if i % 7 == 3:
                t.cancel()
            else:
                expected.append((when, i))
        clock.call_at(start + 0.05, lambda: done.set_result(None))
        await done
        return fired, sorted(expected)

    fired, expected = _on_fresh_loop(scenario)
    assert [(w, i) for w, i, _ in fired] == expected  # all, in order, none cancelled
    assert all(at >= w for w, _, at in fired), "a timer fired before its deadline"


@linux_only
def test_precise_clock_does_not_round_waits_up_to_whole_milliseconds():
    # asyncio's epoll wait rounds a 0.3 ms timeout up to 1 ms, so loop.call_at is >= 0.7 ms late
    # here every time; the timerfd is late only by the kernel's wake-up latency.
    async def scenario(loop, clock):
        late = []
        for _ in range(30):
            fut = loop.create_future()
            when = loop.time() + 0.0003
            clock.call_at(when, lambda f=fut: f.set_result(loop.time()))
            late.append(await fut - when)
        return late

    late = _on_fresh_loop(scenario)
    assert min(late) >= 0
    assert statistics.median(late) < 0.0005, f"median lateness {statistics.median(late) * 1e6:.0f} us"


def test_a_closed_clock_hands_timers_to_the_loop():
    async def scenario(loop, clock):
        clock.close()
        clock.close()  # twice is harmless
        fut = loop.create_future()
        clock.call_at(loop.time() + 0.001, lambda: fut.set_result(True))
        return await fut

    assert _on_fresh_loop(scenario) is True


def _raw_call(sock) -> float:
    t0 = time.perf_counter()
    sock.sendall(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, _, body = buf.partition(b"\r\n\r\n")
    length = next(
        int(v) for k, _, v in (h.partition(b":") for h in head.split(b"\r\n")) if k.lower() == b"content-length"
    )
    while len(body) < length:
        body += sock.recv(65536)
    return time.perf_counter() - t0


def test_each_crossing_holds_half_the_rtt_and_the_relay_records_how_late_it_left(emulator_factory):
    # rtt 1 ms: 0.5 ms per crossing, the case millisecond rounding hurt most (it made a reused
    # call cost ~2.2 ms). Plain HTTP and a raw socket: nothing but the relay is on the path.
    emu = emulator_factory(rtt_ms=0, tls="off")
    with socket.create_connection(("127.0.0.1", emu.port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(5):
            _raw_call(sock)
        base = statistics.median(_raw_call(sock) for _ in range(30))
        emu.configure(rtt_ms=1)
        _raw_call(sock)
        emu._call(emu._relay.lateness.clear)
        calls = [_raw_call(sock) for _ in range(30)]
        late = emu._call(lambda: list(emu._relay.lateness))
    assert min(calls) >= 0.001  # two crossings of 0.5 ms each, never shortened
    assert len(late) >= 60 and min(late) >= 0  # every held chunk recorded, none left early
    if isinstance(emu._relay.clock, _clock._PreciseClock):
        assert emu._relay.clock.spins > 0  # woke ahead of its deadlines (relay.CLOCK_SPIN) and still none early
    excess = statistics.median(calls) - 0.001 - base
    assert excess < 0.0006, f"reused call at rtt 1 ms exceeds rtt + rtt-0 time by {excess * 1000:.2f} ms"


def test_both_sides_of_the_relay_send_without_nagle_delay(emulator_factory):
    # Nagle holds a small write until the previous one is acknowledged: a relay chunk must
    # leave when it is due. The client-facing socket is TCP, with Nagle off; the server-facing
    # one is a socket pair, where there is no Nagle (and no port for anyone else to reach).
    emu = emulator_factory(rtt_ms=0, tls="off")
    with socket.create_connection(("127.0.0.1", emu.port)) as sock:
        _raw_call(sock)

        def sockets():
            return [
                (link.client.get_extra_info("socket"), link.upstream.get_extra_info("socket"))
                for link in emu._relay.links.values()
            ]

        [(client, upstream)] = emu._call(sockets)
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert upstream.family == socket.AF_UNIX


@linux_only
def test_a_failing_timer_callback_is_reported_and_later_timers_still_fire():
    async def scenario(loop, clock):
        errors, fired = [], []
        loop.set_exception_handler(lambda _loop, context: errors.append(context["exception"]))
        done = loop.create_future()

        def boom():
            raise RuntimeError("boom")

        now = loop.time()
        clock.call_at(now + 0.001, boom)
        clock.call_at(now + 0.001, lambda: fired.append(1))
        clock.call_at(now + 0.005, lambda: done.set_result(None))
        # Bounded: a clock that stopped re-arming after the failure would never get here.
        await asyncio.wait_for(done, 2.0)
        return errors, fired

    errors, fired = _on_fresh_loop(scenario)
    assert [type(e) for e in errors] == [RuntimeError] and fired == [1]


def _spinning(spin, scenario):
    """Runs scenario(loop, clock) on a fresh loop with a precise clock of this spin: (result, clock)."""
    loop = asyncio.new_event_loop()
    try:
        clock = _clock.make_clock(loop, spin=spin)
        try:
            return loop.run_until_complete(scenario(loop, clock)), clock
        finally:
            clock.close()
    finally:
        loop.close()


@linux_only
def test_a_spinning_clock_wakes_ahead_but_never_runs_a_timer_early():
    # spin: the timerfd fires 2 ms ahead and the clock polls for the deadline. Whatever the
    # early wake, a timer runs at or after its deadline, in deadline order.
    async def scenario(loop, clock):
        rng = random.Random(5)
        start = loop.time()
        fired: list[tuple[float, int, float]] = []
        done = loop.create_future()
        expected = []
        for i in range(40):
            when = start + rng.choice([0.001, 0.004, 0.004, rng.uniform(0.0, 0.06)])
            clock.call_at(when, lambda w=when, i=i: fired.append((w, i, loop.time())))
            expected.append((when, i))
        clock.call_at(start + 0.08, lambda: done.set_result(None))
        await asyncio.wait_for(done, 5.0)
        return fired, sorted(expected)

    (fired, expected), clock = _spinning(0.002, scenario)
    assert [(w, i) for w, i, _ in fired] == expected
    early = [(at - w) * 1e6 for w, _, at in fired if at < w]
    assert not early, f"timers ran early by {early} us"
    assert clock.spins > 0  # it did wake ahead and poll


@linux_only
def test_a_spin_leaves_the_loop_free_for_other_connections():
    # A 50 ms spin window: the clock polls from +10 ms to its deadline at +60 ms. Bytes that
    # arrive on a socket at +30 ms, and an asyncio timer due at +30 ms, are handled then, not
    # after the spin: it polls through the loop instead of blocking it.
    async def scenario(loop, clock):
        a, b = socket.socketpair()
        a.setblocking(False)
        got: dict[str, float] = {}
        start = loop.time()
        loop.add_reader(a.fileno(), lambda: (a.recv(10), got.setdefault("bytes", loop.time())))
        loop.call_at(start + 0.03, lambda: got.setdefault("timer", loop.time()))
        loop.call_at(start + 0.03, lambda: b.send(b"x"))
        done = loop.create_future()
        clock.call_at(start + 0.06, lambda: done.set_result(loop.time()))
        deadline_ran = await asyncio.wait_for(done, 5.0)
        loop.remove_reader(a.fileno())
        a.close()
        b.close()
        return start, got, deadline_ran

    (start, got, deadline_ran), clock = _spinning(0.05, scenario)
    assert clock.spins == 1
    assert deadline_ran >= start + 0.06
    assert got["timer"] < start + 0.06 and got["bytes"] < start + 0.06, (got, start)


@linux_only
def test_a_spin_costs_at_most_its_window_per_deadline():
    # Five deadlines 100 ms apart, a 3 ms window: five spins of about 3 ms each, the clock asleep
    # in between (a clock that kept polling would spin for the whole 400 ms). The bound is far
    # from both, as a busy machine stretches each spin by whatever the scheduler takes.
    async def scenario(loop, clock):
        start = loop.time()
        done = loop.create_future()
        for i in range(5):
            clock.call_at(start + 0.1 * (i + 1), lambda i=i: i == 4 and done.set_result(None))
        await asyncio.wait_for(done, 5.0)

    _, clock = _spinning(0.003, scenario)
    # At most one spin per deadline: fewer when the machine wakes the clock later than its window
    # (the deadline is then already due, nothing to spin for).
    assert clock.spins <= 5
    assert clock.spun < 0.150, f"spun {clock.spun * 1000:.1f} ms for five 3 ms windows"
