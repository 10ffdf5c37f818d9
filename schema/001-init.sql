-- pbxguard schema, version 1.
--
-- Applied by store.c inside one transaction, which then sets PRAGMA user_version = 1. Later
-- changes go into new numbered files (002-....sql); this file never changes once released.
--
-- Conventions, valid for every table:
--   * Times are Unix milliseconds, UTC, wall clock (*_ms INTEGER). They must survive restarts.
--   * Addresses and prefixes are TEXT in the canonical form written by addr_format() /
--     addr_prefix_format(): "198.51.100.7", "2001:db8::1", "198.51.100.0/24", "2001:db8:1:2::/64".
--     A full-length prefix is written without "/len" (an IPv4 /32 key is just the address).
--   * Text that came from the network (account, ...) is attacker-controlled: arbitrary bytes,
--     possibly invalid UTF-8, at most 128 bytes. Escape it before display; never interpret it.
--   * The daemon is the only writer. Readers (pbxguard report, show) open the file read-only;
--     WAL lets them run while the daemon writes.

-- Names of the Asterisk security event types, so reports can join instead of hard-coding the
-- enum. id is enum sec_event_type (Asterisk's own order, security_events_defs.h).
CREATE TABLE event_types (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
INSERT INTO event_types (id, name) VALUES
    (0, 'FailedACL'),
    (1, 'InvalidAccountID'),
    (2, 'SessionLimit'),
    (3, 'MemoryLimit'),
    (4, 'LoadAverageLimit'),
    (5, 'RequestNotSupported'),
    (6, 'RequestNotAllowed'),
    (7, 'AuthMethodNotAllowed'),
    (8, 'RequestBadFormat'),
    (9, 'SuccessfulAuth'),
    (10, 'UnexpectedAddress'),
    (11, 'ChallengeResponseFailed'),
    (12, 'InvalidPassword'),
    (13, 'ChallengeSent'),
    (14, 'InvalidTransport');

-- Every security event that weighs something under the policy, one row each, including those
-- from whitelisted sources (recorded for reports, never counted). Zero-weight events
-- (SuccessfulAuth, ChallengeSent by default) are not stored.
-- Rows are appended in time order; rowid order is (nearly) time order.
CREATE TABLE failures (
    id          INTEGER PRIMARY KEY,
    ts_ms       INTEGER NOT NULL,   -- when the daemon received it: the sliding window's clock
    key         TEXT NOT NULL,      -- counting key: the prefix the failure counts under
                                    -- ("198.51.100.7", "2001:db8:1:2::/64")
    addr        TEXT NOT NULL,      -- the remote address itself (no port)
    port        INTEGER,            -- remote port, NULL if unknown
    transport   TEXT,               -- 'UDP', 'TCP', 'TLS', 'WS', 'WSS'; NULL if absent
    service     TEXT NOT NULL,      -- 'PJSIP', 'SIP', 'AMI', ... (as Asterisk names it)
    event_type  INTEGER NOT NULL REFERENCES event_types (id),
    account     TEXT,               -- AccountID tried (attacker-controlled); NULL if absent
    source      TEXT NOT NULL,      -- which daemon source saw it: 'ami:pbx1'
    weight      REAL NOT NULL,      -- what it added to the window (0 for whitelisted sources)
    whitelisted INTEGER NOT NULL DEFAULT 0 -- 1: source was whitelisted; recorded, not counted
);
-- The window count: total(weight) for one key over a time range, answered from the index alone.
-- Also serves `show ADDR` (key of the address, then filter on addr).
CREATE INDEX failures_key_ts ON failures (key, ts_ms, weight);
-- Reports over a time range and retention pruning.
CREATE INDEX failures_ts ON failures (ts_ms);

-- Bans, active and ended. A row is never deleted while it is active; ended rows older than the
-- retention are pruned. Also the offence history: the n-th threshold ban of a key within the
-- offence window is its n-th offence.
CREATE TABLE bans (
    id          INTEGER PRIMARY KEY,
    prefix      TEXT NOT NULL,      -- what is banned ("198.51.100.7", "2001:db8:1:2::/64")
    family      INTEGER NOT NULL,   -- 4 or 6
    len         INTEGER NOT NULL,   -- prefix length (32 for one IPv4 address)
    start_ms    INTEGER NOT NULL,   -- when the ban was decided
    expires_ms  INTEGER,            -- when it runs out; NULL = permanent
    reason      TEXT NOT NULL CHECK (reason IN ('threshold', 'manual')),
    origin      TEXT NOT NULL,      -- who decided: the event's source ('ami:pbx1') for
                                    -- threshold bans, the requester ('cli:uid=0') for manual
    failures    REAL NOT NULL DEFAULT 0, -- weighted failures in the window that led to it
    offence     INTEGER NOT NULL DEFAULT 1, -- n-th offence of this key (drives the length)
    service     TEXT,               -- service of the event that tripped it (threshold bans)
    event_type  INTEGER REFERENCES event_types (id), -- type of that event
    ended_ms    INTEGER,            -- NULL while active; else when it ended
    end_reason  TEXT CHECK (end_reason IN ('expired', 'lifted')), -- NULL while active
    lifted_by   TEXT                -- who lifted it ('cli:uid=0'), when end_reason = 'lifted'
);
-- "Is this key banned now", its last ban, and its offence count since a time.
CREATE INDEX bans_prefix_start ON bans (prefix, start_ms);
-- Active bans: listing, restore at start, expiry. Stays small: only rows not yet ended.
CREATE INDEX bans_active ON bans (expires_ms) WHERE ended_ms IS NULL;
-- Reports over a time range (bans started in a day) and pruning of ended bans.
CREATE INDEX bans_start ON bans (start_ms);

-- The daemon's own incidents, for the report: AMI disconnects and reconnects, nftables table
-- repairs, database errors, start and stop.
CREATE TABLE daemon_events (
    id      INTEGER PRIMARY KEY,
    ts_ms   INTEGER NOT NULL,
    kind    TEXT NOT NULL,          -- short tag: 'start', 'stop', 'ami-disconnect',
                                    -- 'ami-connect', 'nft-repair', 'db-error', ...
    source  TEXT,                   -- 'ami:pbx1', 'nft', 'store'; NULL if not specific
    message TEXT NOT NULL           -- human-readable detail (already escaped by the daemon)
);
CREATE INDEX daemon_events_ts ON daemon_events (ts_ms);
