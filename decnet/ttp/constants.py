"""Constants shared across the rule format, the stores and the engine."""

from __future__ import annotations

import re
from typing import Final

from decnet.vocabulary import RULE_ID_RE

__all__ = ["RULE_ID_RE"]  # re-exported: the rule-id shape lives with the vocabulary

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

#: A source kind: an open vocabulary (honeypots and rule packs bring their own).
SOURCE_KIND_RE: Final = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

#: Field a rule matches when `match.field` is absent, per source kind. A kind not
#: listed has no default: a rule matching its events names `match.field`.
DEFAULT_MATCH_FIELDS: Final[dict[str, str]] = {
    "command": "command_text",
    "http_request": "raw_url",
    "auth_attempt": "username",
    "payload": "payload_text",
    "email": "subject",
    "intel": "verdict",
    "canary_fingerprint": "ua_signature",
    "credential": "username",
    "identity": "username",
    "ipv6_leak": "addr",
    "tunnel": "dst_ip",
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
#: Largest stored form kept beside a rule's YAML (larger: workers compile the YAML); it
#: also bounds a change message on NATS (its YAML, its form, both JSON-escaped).
MAX_STORED_FORM_BYTES: Final = 128 * 1024
#: Distinct values (kind sets, emit tuples, dates) loaded rules share one copy of.
SHARED_VALUES_MAX: Final = 65_536

#: Changes a subscriber may have pending before it is told to resync.
SUBSCRIBER_QUEUE_BOUND: Final = 10_000

#: Namespace of the deterministic tag uuid (uuid5).
TAG_UUID_NAMESPACE: Final = "6f1d7c5e-3b0a-5a51-9a2c-7d3e2c1b0d4e"

ENV_RULE_STORE_TYPE: Final = "DECNET_TTP_RULE_STORE_TYPE"
ENV_RULES_DIR: Final = "DECNET_TTP_RULES_DIR"
ENV_DB_URL: Final = "DECNET_TTP_DB_URL"
#: NATS server of a fleet (`--nats`), and the name prefix of its streams (`--nats-prefix`).
ENV_NATS_URL: Final = "DECNET_TTP_NATS_URL"
ENV_NATS_PREFIX: Final = "DECNET_TTP_NATS_PREFIX"
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
#: The largest revision a BIGINT column holds; a notification naming more is no revision.
MAX_REVISION: Final = 2**63 - 1
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

# Fleet over NATS JetStream -----------------------------------------------------

#: Default name prefix of every NATS stream, bucket and subject of a deployment.
NATS_DEFAULT_PREFIX: Final = "decnet_ttp"
#: Seconds to connect to NATS before giving up (and following the database).
NATS_CONNECT_TIMEOUT: Final = 2.0
#: (first, longest) pause between attempts at reconnecting to NATS.
NATS_RETRY: Final = (0.1, 2.0)
#: Messages the change stream keeps (older ones go; a worker that far behind reads the DB).
NATS_STREAM_MAX_MSGS: Final = 100_000
#: Seconds between the publisher's reads of the revision row (one cheap query each).
PUBLISH_POLL_INTERVAL: Final = 0.02
#: A writer's commit hint (`PREFIX.commit`): seconds it may spend connecting to NATS and
#: flushing before it gives up (the hint is only a wake-up: the publisher's poll covers it).
COMMIT_HINT_TIMEOUT: Final = 0.25
#: The largest commit hint payload the publisher reads, bytes.
MAX_COMMIT_HINT_BYTES: Final = 256
#: Commit hints that may wake the publisher per second (a token bucket of
#: `COMMIT_HINT_BURST`); more are merged into one wake-up when the next token comes, so a
#: flood of hints costs the database no more than the 20 ms poll it replaces.
COMMIT_HINT_RATE: Final = 50.0
COMMIT_HINT_BURST: Final = 10
#: A worker's safety-net poll of the database while the NATS feed is healthy but no
#: publisher's head beacon vouches for its watermark, seconds.
NATS_SAFETY_POLL_INTERVAL: Final = 30.0
#: Seconds between the lease holder's head beacons (database identity and head revision).
HEAD_BEACON_INTERVAL: Final = 1.0
#: A worker that heard no head beacon for this long falls back to its safety-net poll.
HEAD_BEACON_STALE_AFTER: Final = 5.0
#: Seconds a worker waits for the stream to deliver a revision a beacon announced before
#: it reads the database for it (a message lost, or a publisher stuck after the commit).
HEAD_BEACON_GRACE: Final = 2.0
#: Seconds between a worker's fleet reports.
FLEET_REPORT_INTERVAL: Final = 5.0
#: A worker whose last report is older than this is `silent` (three report intervals).
FLEET_STALE_AFTER: Final = 3 * FLEET_REPORT_INTERVAL
#: Seconds a fleet report is kept in the bucket after the worker's last one.
FLEET_REPORT_TTL: Final = 120.0

# Tag counters of a worker, reported with its fleet report --------------------------
#: "Last hour" counts one bucket a minute (the current minute and the 59 before it);
#: "last day" one bucket an hour (the current hour and the 23 before it).
HITS_MINUTE_BUCKETS: Final = 60
HITS_HOUR_BUCKETS: Final = 24
#: Keys (rule ids; tactic/technique pairs) a worker counts at most; tags of a key past
#: the cap are counted as omitted. A key costs ~0.8 KB (its 86 counters).
HITS_MAX_RULE_KEYS: Final = 20_000
HITS_MAX_TECHNIQUE_KEYS: Final = 2_000
#: Rules itemized in one fleet report (most hits over the day first); the rest are
#: summed as `omitted`. Bounds the report's rule part to ~110 KB (64-character ids).
FLEET_REPORT_MAX_RULES: Final = 1_000
#: Tactic/technique pairs itemized in one fleet report (~50 bytes each).
FLEET_REPORT_MAX_TECHNIQUES: Final = 1_000
#: Latest tags a worker keeps per technique as samples, each serialized within
#: `HITS_SAMPLE_MAX_BYTES` (evidence cut with a visible marker); samples older than a day go.
HITS_SAMPLES_PER_TECHNIQUE: Final = 3
HITS_SAMPLE_MAX_BYTES: Final = 2_048
#: Bytes of samples one fleet report carries at most (the newest of each technique first).
FLEET_REPORT_SAMPLE_BYTES: Final = 32 * 1024
#: Samples the console shows for one technique (newest first, across the fleet).
CONSOLE_SAMPLE_TAGS: Final = 10
#: Seconds the console reuses its sum of the fleet's tag counts (reports come every 5 s).
CONSOLE_HITS_MAX_AGE: Final = 2.0

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

# Cross-event (correlation) rules ----------------------------------------------

#: Live groups (one per group key) each cross-event rule keeps; past it the rule's least
#: recently used group is evicted (and counted).
CORRELATION_MAX_GROUPS: Final = 100_000
#: How far behind the newest event time an event may arrive and still be counted, seconds.
CORRELATION_MAX_LATENESS: Final = 300.0
#: An event timestamped further than this ahead of the wall clock is not correlated (it
#: would otherwise move the event-time watermark and make every real event late), seconds.
CORRELATION_MAX_FUTURE: Final = 86_400.0
#: Longest correlation window a rule may declare, seconds (a week).
CORRELATION_MAX_TIMESPAN: Final = 7 * 86_400.0
#: Largest threshold a correlation rule may declare (a group keeps up to this many items).
CORRELATION_MAX_THRESHOLD: Final = 10_000
#: Group-by or counted values longer than this (characters) are keyed by their SHA-256.
CORRELATION_MAX_KEY_CHARS: Final = 256
#: Distinct values a correlation tag's evidence lists, and how many characters of each.
CORRELATION_EVIDENCE_VALUES: Final = 10
CORRELATION_EVIDENCE_VALUE_CHARS: Final = 128
#: Window of a mapped anchor lifter that declares none, minutes.
LIFTER_DEFAULT_WINDOW_MINUTES: Final = 60

# Rule tests and coverage ------------------------------------------------------

#: Most events one `sequence:` test case of a rule file may hold.
MAX_TEST_SEQUENCE_EVENTS: Final = 1_000
#: ATT&CK Navigator layer file format the coverage layers are written in.
NAVIGATOR_LAYER_VERSION: Final = "4.5"
#: Navigator release the layers name (the first to read ATT&CK v16 content).
NAVIGATOR_VERSION: Final = "5.1.0"
#: ATT&CK version of `ATTACK_RELEASE` as the Navigator writes it ("16").
ATTACK_VERSION: Final = ATTACK_RELEASE.rsplit("-v", 1)[1]
#: Characters of one event shown by `decnet-ttp rules test` for a failing case.
MAX_SHOWN_EVENT_CHARS: Final = 2_000

# Worker HTTP API under attack ---------------------------------------------------

#: Most events one `POST /events` may carry; more is refused (413) unevaluated.
MAX_EVENTS_PER_REQUEST: Final = 5_000
#: Most bytes of tags one `POST /events` response carries; past it tags are omitted
#: and the response says how many and from which event.
MAX_RESPONSE_BYTES: Final = 4 * 1024 * 1024
#: Most tags one `POST /events` response carries (same truncation as the bytes).
MAX_RESPONSE_TAGS: Final = 20_000
#: Longest message of a per-event error entry, characters.
MAX_EVENT_ERROR_CHARS: Final = 200
#: `POST /events` requests in progress at once (body read, evaluation, response write);
#: one more is answered 503 with Retry-After.
MAX_PENDING_REQUESTS: Final = 16
#: Seconds a refused client is told to wait (Retry-After).
RETRY_AFTER_SECONDS: Final = 1
#: Open connections a worker keeps; also capped below the process's file limit.
MAX_CONNECTIONS: Final = 1024
#: File descriptors kept free of connections (database pool, logs).
FD_RESERVE: Final = 64
#: Listen queue of the worker's socket, which is also how many connections the event
#: loop accepts in one turn before the cap applies to them; twice this is kept free of
#: connections too (one burst accepted, one burst evicted and not yet closed), so a
#: flood of connects cannot exhaust the file table.
ACCEPT_BACKLOG: Final = 16
#: Seconds a client has to send a request's line and headers once it starts one.
HEADER_TIMEOUT: Final = 10.0
#: Seconds a client has to send a request's whole body after its headers.
BODY_TIMEOUT: Final = 20.0
#: Seconds an idle keep-alive connection stays open.
KEEP_ALIVE_TIMEOUT: Final = 5.0
#: Seconds a response may wait for a client that stopped reading before it is dropped.
WRITE_TIMEOUT: Final = 30.0
#: Seconds between two log lines of one repeating failure (the second carries a count).
REPEAT_LOG_INTERVAL: Final = 60.0
#: The worker's GIL switch interval, seconds (Python's default is 0.005): how long the
#: evaluation thread may hold the GIL while the event loop waits to answer `/healthz`.
WORKER_SWITCH_INTERVAL: Final = 0.001
#: Prefix of the environment variables of the worker's HTTP limits
#: (`DECNET_TTP_HTTP_MAX_EVENTS`, `DECNET_TTP_HTTP_WRITE_TIMEOUT`, ...).
ENV_HTTP_PREFIX: Final = "DECNET_TTP_HTTP_"
#: Largest chunk of a response body handed to the transport at once, bytes.
RESPONSE_CHUNK_BYTES: Final = 64 * 1024

# Regex fallback (patterns RE2 cannot run) ----------------------------------

#: PCRE2 match steps a fallback search may take per character of its text, plus a base:
#: the search stops (no match, counted) past `STEPS_PER_CHAR * n + STEPS_BASE`, where n
#: is the text length rounded up to a power of two (at least `FALLBACK_MIN_LENGTH_CLASS`).
FALLBACK_STEPS_PER_CHAR: Final = 4
FALLBACK_STEPS_BASE: Final = 1 << 16
FALLBACK_MIN_LENGTH_CLASS: Final = 1 << 10
#: Backtracking memory one fallback search may use (KiB; PCRE2's heap limit).
FALLBACK_HEAP_KIB: Final = 2 << 10
#: Texts longer than this (characters) are not searched by the fallback (no match, counted).
FALLBACK_MAX_TEXT_CHARS: Final = 1 << 20

# Hostile events and tags -----------------------------------------------------

#: Longest text accepted in an event's identifying fields (source_kind, source_id...).
EVENT_MAX_ID_CHARS: Final = 4096
#: Evidence strings longer than this (UTF-8 bytes) are cut, with a visible marker.
EVIDENCE_MAX_VALUE_BYTES: Final = 4096
#: Serialized evidence of one tag stops growing past this (bytes, approximate by the
#: value sizes); later values are dropped and the tag says `evidence_truncated`.
EVIDENCE_MAX_TAG_BYTES: Final = 64 * 1024
#: Evidence containers nested deeper than this are replaced by a marker.
EVIDENCE_MAX_DEPTH: Final = 16

# Operator state: scopes and history ------------------------------------------------
#: How long the state history keeps an entry (pruned by the writer).
STATE_HISTORY_RETENTION_DAYS: Final = 365
#: Entries of state history a filesystem store keeps in memory (oldest dropped first).
STATE_HISTORY_MEMORY: Final = 10_000
#: Scoped states one rule may carry (each is checked per event of the rule).
MAX_SCOPED_STATES_PER_RULE: Final = 64

# Admin API ---------------------------------------------------------------------------
#: What an API token's name may be (it is recorded as `set_by` and `via`).
TOKEN_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
#: Roles of API tokens: viewers read, admins read and write.
TOKEN_ROLES: Final = ("viewer", "admin")
#: Prefix of every API token (recognisable in a secret scanner).
TOKEN_PREFIX: Final = "dttp_"
#: Largest body of a `PUT /api/v1/rules/{rule_id}/state`, in bytes.
MAX_ADMIN_BODY_BYTES: Final = 128 * 1024
#: Most history entries one `GET /api/v1/history` returns.
MAX_HISTORY_PAGE: Final = 10_000

# Operator console (`/ui/` on the master's --http port) -----------------------------------

#: How long a console sign-in lasts without use before it must be made again.
CONSOLE_SESSION_IDLE: Final = 8 * 3600
#: How long a console sign-in lasts at most, used or not.
CONSOLE_SESSION_MAX_AGE: Final = 12 * 3600
#: Sessions kept in memory at most (signed in or on the sign-in page); the stalest go first.
CONSOLE_MAX_SESSIONS: Final = 10_000
#: A silence whose end is this close (seconds) is listed as about to expire on the overview.
CONSOLE_EXPIRING_SOON: Final = 3600
#: Rows the history page shows at most (the filters narrow the rest).
CONSOLE_MAX_ROWS: Final = 1_000
#: Rules per page of the console's rules table.
CONSOLE_RULES_PER_PAGE: Final = 200
#: Rule ids a coverage cell names in its tooltip (the drill-down lists them all).
CONSOLE_CELL_RULE_IDS: Final = 20
#: Rule test reports the console keeps per revision of the rules (the rule pages last seen).
CONSOLE_TEST_REPORTS: Final = 256
#: State changes past its view the console reads from the change log; more: a whole load.
CONSOLE_ADVANCE_MAX: Final = 1_000
#: New rules the console compiles itself from the change log; more: a whole load.
CONSOLE_ADVANCE_NEW_MAX: Final = 50
#: The master's console collects frozen garbage (`gc.unfreeze`) at most this often, seconds.
CONSOLE_GC_UNFREEZE: Final = 600.0

# The master's live mirror of the fleet reports (console overview, /metrics) -------------

#: Largest report kept, bytes of JSON; a larger one is kept as unreadable (its worker shows).
FLEET_MIRROR_MAX_REPORT: Final = 1024 * 1024
#: Bytes of JSON the mirror keeps in all; reports of new workers past it are left out.
FLEET_MIRROR_MAX_BYTES: Final = 64 * 1024 * 1024
#: Workers the mirror keeps at most; new ones past it are left out (logged).
FLEET_MIRROR_MAX_WORKERS: Final = 10_000
#: How long a page waits for the mirror's first copy of the bucket, seconds.
FLEET_MIRROR_FIRST_WAIT: Final = 2.0
#: How often the mirror's watch checks that its NATS connection is still up, seconds.
FLEET_MIRROR_CHECK: Final = 0.5

#: Pattern leaves a field's prefilter patch holds before it is folded into the main
#: buckets: a definition change recompiles the patch (about 15 us per leaf), a fold
#: the buckets the patch's rules live in (up to 512 leaves each), once per this many.
PATCH_LEAVES: Final = 128
