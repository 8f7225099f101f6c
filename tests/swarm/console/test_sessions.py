"""Console sessions: random ids, idle and absolute expiry, a bounded table, sign-out of
every session of a token."""

from __future__ import annotations

from decnet.swarm.console.sessions import Sessions
from decnet.ttp.constants import (
    CONSOLE_MAX_SESSIONS,
    CONSOLE_SESSION_IDLE,
    CONSOLE_SESSION_MAX_AGE,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ids_and_csrf_tokens_are_random_and_distinct() -> None:
    sessions = Sessions()
    made = [sessions.new("alice", "admin") for _ in range(50)]
    assert len({s.id for s in made}) == 50 and len({s.csrf for s in made}) == 50
    assert all(len(s.id) >= 40 and s.id != s.csrf for s in made)
    assert made[0].csrf_ok(made[0].csrf) and not made[0].csrf_ok(made[1].csrf)
    assert not made[0].csrf_ok(None) and not made[0].csrf_ok("")


def test_a_session_ends_when_idle_and_at_its_maximum_age() -> None:
    clock = Clock()
    sessions = Sessions(clock)
    idle = sessions.new("alice", "viewer")
    clock.now += CONSOLE_SESSION_IDLE - 1
    assert sessions.get(idle.id) is idle
    clock.now += CONSOLE_SESSION_IDLE + 1
    assert sessions.get(idle.id) is None

    busy = sessions.new("bob", "admin")
    started = clock.now
    while clock.now - started < CONSOLE_SESSION_MAX_AGE - 60:
        clock.now += CONSOLE_SESSION_IDLE / 2
        assert sessions.get(busy.id) is busy
    clock.now = started + CONSOLE_SESSION_MAX_AGE + 1
    assert sessions.get(busy.id) is None
    assert sessions.get("") is None and sessions.get("made-up") is None


def test_the_table_is_bounded_and_drops_the_stalest() -> None:
    sessions = Sessions(Clock())
    kept = sessions.new("alice", "admin")
    first_anonymous = sessions.new()
    for _ in range(CONSOLE_MAX_SESSIONS):
        sessions.get(kept.id)  # alice keeps using hers
        sessions.new()
    assert len(sessions) == CONSOLE_MAX_SESSIONS
    assert sessions.get(kept.id) is kept
    assert sessions.get(first_anonymous.id) is None


def test_ending_every_session_of_a_token() -> None:
    sessions = Sessions()
    a, b, c = sessions.new("ci", "admin"), sessions.new("ci", "admin"), sessions.new("bob")
    sessions.end_all_of("ci")
    assert sessions.get(a.id) is None and sessions.get(b.id) is None
    assert sessions.get(c.id) is c
    sessions.end(c.id)
    assert sessions.get(c.id) is None
