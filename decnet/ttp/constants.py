"""Constants shared across the rule format, the stores and the engine."""

from __future__ import annotations

import re
from typing import Final

RULE_ID_RE: Final = re.compile(r"^[A-Za-z0-9_]{1,64}$")
TACTIC_ID_RE: Final = re.compile(r"^TA\d{4}$")
TECHNIQUE_ID_RE: Final = re.compile(r"^T\d{4}$")
SUB_TECHNIQUE_ID_RE: Final = re.compile(r"^T\d{4}\.\d{3}$")

#: MITRE ATT&CK enterprise tactics: id -> name.
ENTERPRISE_TACTICS: Final[dict[str, str]] = {
    "TA0043": "reconnaissance",
    "TA0042": "resource-development",
    "TA0001": "initial-access",
    "TA0002": "execution",
    "TA0003": "persistence",
    "TA0004": "privilege-escalation",
    "TA0005": "defense-evasion",
    "TA0006": "credential-access",
    "TA0007": "discovery",
    "TA0008": "lateral-movement",
    "TA0009": "collection",
    "TA0011": "command-and-control",
    "TA0010": "exfiltration",
    "TA0040": "impact",
}

#: ATT&CK release the tags are expressed against.
ATTACK_RELEASE: Final = "enterprise-attack-v16"

#: Field a rule matches when `match.field` is absent, per source kind.
DEFAULT_MATCH_FIELDS: Final[dict[str, str]] = {
    "command": "command_text",
    "http_request": "raw_url",
    "auth_attempt": "username",
    "payload": "payload_text",
    "email": "subject",
}
SOURCE_KINDS: Final = frozenset(DEFAULT_MATCH_FIELDS)

#: Payload keys copied into a `command` tag's evidence when present.
COMMAND_CONTEXT_FIELDS: Final = ("uid", "user", "src", "pwd")

#: Rule files the stores read; anything else in the directory is ignored silently.
RULE_FILE_SUFFIXES: Final = (".yaml", ".yml")

# Hostile-input bounds for rule files.
MAX_RULE_FILE_BYTES: Final = 256 * 1024
MAX_YAML_NODES: Final = 20_000
MAX_YAML_DEPTH: Final = 32

#: Changes a subscriber may have pending before it is told to resync.
SUBSCRIBER_QUEUE_BOUND: Final = 10_000

#: Namespace of the deterministic tag uuid (uuid5).
TAG_UUID_NAMESPACE: Final = "6f1d7c5e-3b0a-5a51-9a2c-7d3e2c1b0d4e"

ENV_RULE_STORE_TYPE: Final = "DECNET_TTP_RULE_STORE_TYPE"
ENV_RULES_DIR: Final = "DECNET_TTP_RULES_DIR"
ENV_DB_URL: Final = "DECNET_TTP_DB_URL"
ENV_TRACING: Final = "DECNET_DEVELOPER_TRACING"

DEFAULT_RULES_DIR: Final = "rules/ttp"
DEFAULT_DB_URL: Final = "sqlite+aiosqlite:///decnet-ttp.db"

#: Bus announcements that may wait for a slow bus before new ones are dropped (and counted).
BUS_OUTBOX_BOUND: Final = 10_000

#: How long a removed rule file may take to reappear (editors that unlink, then write)
#: before its rule is announced as deleted.
DELETE_GRACE_SECONDS: Final = 0.05

# Database store ------------------------------------------------------------

#: Change-log entries kept for tailing workers; a worker further behind reloads everything.
CHANGE_LOG_RETENTION: Final = 100_000
#: Change-log entries a tailing worker reads per query while catching up.
CHANGE_LOG_BATCH: Final = 5_000
#: Default poll interval of `tail_db`, seconds.
TAIL_POLL_INTERVAL: Final = 1.0
#: A single poll (or catch-up read) that takes longer than this is abandoned and retried.
TAIL_QUERY_TIMEOUT: Final = 10.0
#: PostgreSQL channel a write notifies (payload: the revision) at commit.
NOTIFY_CHANNEL: Final = "decnet_ttp_changes"
#: Seconds between keep-alive queries on an idle LISTEN connection.
LISTEN_KEEPALIVE: Final = 30.0
#: Seconds to open a database connection before giving up.
DB_CONNECT_TIMEOUT: Final = 5.0
#: Seconds a single database statement may run (PostgreSQL) before it fails.
DB_COMMAND_TIMEOUT: Final = 30.0
#: SQLite: how long a writer waits for another process's write lock, milliseconds.
SQLITE_BUSY_TIMEOUT_MS: Final = 5_000
#: Master lease: a holder whose heartbeat has not moved for this long may be replaced.
MASTER_LEASE_TTL: Final = 10.0

# Operator commands -----------------------------------------------------------

#: Longest `--by` of `decnet-ttp state set|clear`: the width of `ttp_rule_state.set_by`
#: (VARCHAR(255); PostgreSQL and MariaDB refuse longer, SQLite would store it).
MAX_STATE_BY_CHARS: Final = 255
#: Longest `--reason`, UTF-8 bytes: `ttp_rule_state.reason` is TEXT, 65,535 bytes on
#: MariaDB/MySQL (the tightest of the supported databases).
MAX_STATE_REASON_BYTES: Final = 65_535
#: Longest line `decnet-ttp tag` reads; a longer one is skipped (and reported) unread.
MAX_EVENT_LINE_BYTES: Final = 1024 * 1024

# Input adapters and the tag job ----------------------------------------------

#: Open Cowrie sessions whose protocol is remembered for their logins (oldest forgotten).
MAX_TRACKED_SESSIONS: Final = 100_000
#: Source addresses and sessions the tag summary counts at most; past the cap the least
#: seen half is dropped, so the counts of a key seen after a drop are lower bounds.
SUMMARY_TRACKED_KEYS: Final = 10_000
#: Techniques kept per address or session in the tag summary.
SUMMARY_TECHNIQUES_PER_KEY: Final = 32
#: Rows of each table of the tag summary.
SUMMARY_TOP: Final = 10
#: Distinct unknown event ids the tag summary counts (the rest are counted together).
SUMMARY_UNKNOWN_KINDS: Final = 100
#: Bytes of input the tag job reads into one block of whole lines.
TAG_BLOCK_BYTES: Final = 256 * 1024
#: Blocks in flight per worker process of `tag --jobs N`.
TAG_BLOCKS_IN_FLIGHT_PER_WORKER: Final = 2
#: Lines of a tunnelled stream read for an HTTP request line and headers, and the longest
#: line looked at.
TUNNEL_HEADER_LINES: Final = 64
TUNNEL_HEADER_LINE_CHARS: Final = 8192

# Store outages ---------------------------------------------------------------

#: First wait before retrying a failed expiry revert, seconds; doubled per failure.
EXPIRY_RETRY_INITIAL: Final = 1.0
#: Longest wait between retries of a failed expiry revert, seconds.
EXPIRY_RETRY_MAX: Final = 30.0
#: First wait before a master retries after a database failure, seconds; doubled per
#: failure up to a quarter of the lease TTL (its heartbeat period).
MASTER_RETRY_INITIAL: Final = 0.05

#: Largest `POST /events` body a worker accepts, in bytes.
MAX_EVENT_BODY_BYTES: Final = 1 << 20
#: Where a worker's HTTP API listens by default.
DEFAULT_WORKER_HTTP: Final = "127.0.0.1:8080"
