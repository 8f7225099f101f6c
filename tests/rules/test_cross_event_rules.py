"""The shipped cross-event rules on realistic event sequences, near misses included.

Sequences follow what SSH/Telnet honeypots record: bots cycling through password
lists every second or two, Mirai-style Telnet pairs, spraying one password across
accounts, port forwarding requests, and survey scripts run right after login.
"""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pytest

from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.engine.events import Event, Tag
from decnet.ttp.rules.loader import load_directory

ROOT = Path(__file__).resolve().parents[2]
PACK = load_directory(ROOT / "rules" / "ttp")
CROSS_EVENT = {"R0073", "R0074", "R0075", "R0076", "R0077", "R0078"}
T0 = 1_780_000_000.0
_ids = itertools.count()

PASSWORDS = ["123456", "password", "admin", "root", "12345", "qwerty", "1234", "toor",
             "changeme", "raspberry", "111111", "abc123", "letmein", "ubnt", "default"]
MIRAI_PAIRS = [("root", "xc3511"), ("root", "vizxv"), ("admin", "admin"), ("root", "888888"),
               ("root", "xmhdipc"), ("root", "default"), ("root", "juantech"),
               ("support", "support"), ("root", "54321"), ("user", "user"), ("admin", "1234")]


@pytest.fixture
def engine() -> RuleEngine:
    return RuleEngine(PACK.rules.values())


def login(at: float, user: str, password: str, *, ok: bool = False,
          ip: str = "203.0.113.50", service: str = "ssh", session: str = "a1b2c3") -> Event:
    return Event("auth_attempt", f"login-{next(_ids)}",
                 {"username": user, "password": password,
                  "result": "success" if ok else "failed", "service": service},
                 session_id=session, src_ip=ip, sensor="hp-frankfurt-1", timestamp=T0 + at)


def command(at: float, text: str, session: str = "s-9f8e") -> Event:
    return Event("command", f"cmd-{next(_ids)}", {"command_text": text},
                 session_id=session, src_ip="198.51.100.23", timestamp=T0 + at)


def tunnel(at: float, dst: str, port: int = 443, ip: str = "192.0.2.77") -> Event:
    return Event("tunnel", f"tcpip-{next(_ids)}", {"dst_ip": dst, "dst_port": port},
                 session_id="t-1", src_ip=ip, timestamp=T0 + at)


def cross(engine: RuleEngine, events: list[Event]) -> list[Tag]:
    return [t for e in events for t in engine.evaluate(e) if t.rule_id in CROSS_EVENT]


def counts(tags: list[Tag]) -> Counter[str]:
    """Firings per rule (a rule with two emits fires once with two tags)."""
    return Counter(rule_id for rule_id, _ in {(t.rule_id, t.source_id) for t in tags})


def test_the_cross_event_rules_are_loaded_as_such() -> None:
    for rule_id in CROSS_EVENT:
        rule = PACK.rules[rule_id]
        assert rule.is_correlation and not rule.matchers, rule_id


def test_ssh_password_list_brute_force(engine: RuleEngine) -> None:
    # one bot, three connections, 1.5 s between tries, root then admin
    events = [login(i * 1.5, "root" if i < 10 else "admin", PASSWORDS[i % len(PASSWORDS)],
                    session=f"sess-{i // 4}") for i in range(14)]
    tags = cross(engine, events)
    assert counts(tags) == {"R0073": 1, "R0075": 1}
    brute = next(t for t in tags if t.rule_id == "R0073")
    assert brute.source_id == events[9].source_id
    assert brute.sub_technique_id == "T1110.001"
    assert brute.evidence["group"] == {"src_ip": "203.0.113.50"}
    assert brute.sensor == "hp-frankfurt-1" and brute.session_id == "sess-2"
    assert brute.evidence["username"] == "root" and brute.evidence["service"] == "ssh"
    guessing = next(t for t in tags if t.rule_id == "R0075")
    assert guessing.evidence["group"] == {"src_ip": "203.0.113.50", "username": "root"}
    assert guessing.evidence["distinct"] == 5


def test_a_long_brute_force_is_one_tag_per_window(engine: RuleEngine) -> None:
    events = [login(i * 2.0, "root", PASSWORDS[i % len(PASSWORDS)]) for i in range(300)]
    # 600 s of tries: two five-minute windows
    assert counts(cross(engine, events))["R0073"] == 2


def test_telnet_mirai_pairs(engine: RuleEngine) -> None:
    events = [login(i * 0.8, user, password, service="telnet", ip="198.51.100.200")
              for i, (user, password) in enumerate(MIRAI_PAIRS)]
    assert counts(cross(engine, events)) == {"R0073": 1, "R0075": 1}


def test_brute_force_near_misses(engine: RuleEngine) -> None:
    nine = [login(i * 20.0, "root", PASSWORDS[i]) for i in range(9)]
    # ten failures, one every three minutes: never ten in five minutes
    slow = [login(i * 180.0, "admin", "x", ip="203.0.113.51") for i in range(10)]
    # ten failures from ten addresses (a botnet spread thin): no single source
    spread = [login(i, "root", "x", ip=f"192.0.2.{i}") for i in range(10)]
    assert counts(cross(engine, nine + slow + spread)) == {"R0075": 1}  # root: 5+ passwords


def test_password_spraying(engine: RuleEngine) -> None:
    users = ["root", "admin", "user", "test", "oracle", "ubuntu"]
    events = [login(i * 40.0, user, "Summer2026!", ip="203.0.113.60")
              for i, user in enumerate(users)]
    tags = cross(engine, events)
    assert counts(tags) == {"R0076": 1}
    (spray,) = tags
    assert spray.sub_technique_id == "T1110.003"
    assert spray.evidence["group"] == {"src_ip": "203.0.113.60", "password": "Summer2026!"}
    assert sorted(spray.evidence["values"]) == sorted(users[:5])


def test_spraying_near_misses(engine: RuleEngine) -> None:
    four = [login(i, u, "Winter1", ip="203.0.113.61")
            for i, u in enumerate(["root", "admin", "user", "test"])]
    mixed = [login(i, u, f"pw{i}", ip="203.0.113.62")
             for i, u in enumerate(["root", "admin", "user", "test", "oracle"])]
    assert cross(engine, four + mixed) == []


def test_login_success_after_brute_force(engine: RuleEngine) -> None:
    failures = [login(i * 1.0, "root", PASSWORDS[i % 15]) for i in range(12)]
    success = login(95.0, "root", "admin123", ok=True, session="sess-win")
    tags = cross(engine, [*failures, success])
    valid = [t for t in tags if t.rule_id == "R0074"]
    assert len(valid) == 1
    assert valid[0].source_id == success.source_id and valid[0].technique_id == "T1078"
    assert valid[0].evidence["password"] == "admin123"


def test_login_success_near_misses(engine: RuleEngine) -> None:
    # a user who mistyped twice, then logged in
    typos = [login(0, "deploy", "hunter2x", ip="192.0.2.150"),
             login(4, "deploy", "hunter22", ip="192.0.2.150"),
             login(9, "deploy", "hunter2", ok=True, ip="192.0.2.150")]
    # a success from another address than the one that brute-forced
    brute = [login(100 + i, "root", PASSWORDS[i]) for i in range(10)]
    other = login(130, "root", "toor", ok=True, ip="192.0.2.151")
    # a success from the brute-forcing address, but two hours later
    late = login(100 + 7200, "root", "toor", ok=True)
    tags = cross(engine, [*typos, *brute, other, late])
    assert "R0074" not in counts(tags)


def test_tunnel_fan_out(engine: RuleEngine) -> None:
    events = [tunnel(i * 5.0, f"93.184.{i}.10", 80 if i % 2 else 443) for i in range(12)]
    tags = cross(engine, events)
    assert counts(tags) == {"R0077": 1}
    assert tags[0].sub_technique_id == "T1090.001" and tags[0].evidence["distinct"] == 10


def test_tunnel_near_misses(engine: RuleEngine) -> None:
    nine = [tunnel(i, f"10.9.0.{i}", ip="192.0.2.78") for i in range(9)]
    one_host = [tunnel(i, "142.250.74.100", ip="192.0.2.79") for i in range(50)]
    slow = [tunnel(i * 120.0, f"10.8.0.{i}", ip="192.0.2.80") for i in range(10)]
    assert cross(engine, nine + one_host + slow) == []


SURVEY = ["uname -a", "cat /proc/cpuinfo | grep name | wc -l", "free -m | grep Mem",
          "lscpu | grep Model", "w", "crontab -l", "whoami"]


def test_scripted_recon_burst(engine: RuleEngine) -> None:
    events = [command(i * 0.4, text) for i, text in enumerate(SURVEY)]
    tags = cross(engine, events)
    assert counts(tags) == {"R0078": 1}
    assert tags[0].evidence["group"] == {"session_id": "s-9f8e"}
    assert {t.technique_id for t in tags} == {"T1082", "T1059"}


def test_recon_near_misses(engine: RuleEngine) -> None:
    typed = [command(i * 30.0, text, session="s-human") for i, text in enumerate(SURVEY)]
    four = [command(i * 0.5, text, session="s-four") for i, text in enumerate(SURVEY[:4])]
    four += [command(3 + i * 0.5, text, session="s-four")
             for i, text in enumerate(["cd /tmp", "ls -la", "echo ok"])]
    split = [command(i * 0.5, text, session=f"s-split-{i}") for i, text in enumerate(SURVEY)]
    assert cross(engine, typed + four + split) == []


def test_single_failed_logins_are_not_brute_force(engine: RuleEngine) -> None:
    for user in ("root", "admin", "guest", "pi", "oracle"):
        tags = engine.evaluate(login(0, user, "123456", ip=f"192.0.2.{len(user)}"))
        assert all(t.technique_id != "T1110" for t in tags), (user, tags)
