-- pbxguard schema, version 7: failures as small integers, and their history rolled up by the
-- hour.
--
-- A failure row was 113-127 bytes (text keys and addresses, names repeated in every row, two
-- indexes); it is now about 30, in one B-tree that is also the window's index. Rows older than
-- the window (findtime, at least an hour) are rolled up into per-source, per-hour aggregates by
-- the daemon, a bounded batch at a time, and deleted: a month of steady scanning stays in the
-- hundreds of megabytes instead of tens of gigabytes.
--
-- Packed forms (store.c: key_pack(), addr_pack()), never text:
--   * A counting key is a BLOB: 4 bytes (an IPv4 address), 8 (an IPv6 /64: its first 8 bytes),
--     16 (an IPv6 address), or the 4 or 16 address bytes followed by one byte of prefix length
--     for any other length (5 or 17 bytes).
--   * An address is stored as what its key does not say: the bytes of the address from byte
--     (key length / 8) on. x'' (empty) is the key's own address (a full-length key); an IPv6
--     address under its /64 is its last 8 bytes.
--   * account 0 is "no account"; other ids are rows of accounts. kind is a row of failure_kinds.
--   * flags: bit 0 the source was whitelisted (recorded, never counted).

-- What a failure was, as one small id: its service, event type and the daemon source that saw
-- it. A handful of rows.
CREATE TABLE failure_kinds (
    id         INTEGER PRIMARY KEY,
    service    TEXT NOT NULL,      -- 'PJSIP', 'SIP', 'AMI', ... (as Asterisk names it)
    event_type INTEGER NOT NULL REFERENCES event_types (id),
    source     TEXT NOT NULL,      -- 'ami:pbx1'
    used_ms    INTEGER NOT NULL,   -- the newest failure written with it (unused rows are pruned)
    UNIQUE (service, event_type, source)
);

-- Account names tried (attacker text: arbitrary bytes, at most 128; escape before display).
CREATE TABLE accounts (
    id      INTEGER PRIMARY KEY,   -- from 1; 0 in a failure means none
    name    TEXT NOT NULL UNIQUE,
    used_ms INTEGER NOT NULL       -- the newest failure written with it, to the hour (pruning)
);

-- The raw failures: the sliding windows' rows, and the recent past until it is rolled up.
-- Clustered on (key, ts_ms): a window count reads one contiguous range of this one B-tree.
CREATE TABLE failures_compact (
    key       BLOB NOT NULL,       -- counting key (packed)
    ts_ms     INTEGER NOT NULL,    -- the window's clock: when the daemon received it
    seq       INTEGER NOT NULL,    -- tells apart failures of one key in one millisecond
    addr      BLOB NOT NULL,       -- the remote address, packed against key (x'': the key's own)
    port      INTEGER,             -- remote port, NULL if unknown
    transport INTEGER,             -- enum sec_transport (1 UDP, 2 TCP, 3 TLS, 4 WS, 5 WSS); NULL
    kind      INTEGER NOT NULL,    -- failure_kinds.id
    account   INTEGER NOT NULL,    -- accounts.id, 0 = none
    weight    REAL NOT NULL,       -- what it added to the window (0 for whitelisted sources)
    flags     INTEGER NOT NULL,    -- bit 0: whitelisted
    PRIMARY KEY (key, ts_ms, seq)
) WITHOUT ROWID;

INSERT INTO failure_kinds (service, event_type, source, used_ms)
    SELECT service, event_type, source, max(ts_ms) FROM failures GROUP BY 1, 2, 3;
INSERT INTO accounts (name, used_ms)
    SELECT account, max(ts_ms) FROM failures WHERE account IS NOT NULL AND account <> ''
    GROUP BY account;
-- pbxguard_key() and pbxguard_addr() are the store's own functions (key_pack(), addr_pack()),
-- registered on the connection that migrates; a row whose text they cannot pack (never written
-- by pbxguardd) is left out.
INSERT INTO failures_compact (key, ts_ms, seq, addr, port, transport, kind, account, weight, flags)
    SELECT pbxguard_key(f.key), f.ts_ms, f.id, pbxguard_addr(f.addr, f.key), f.port,
           CASE f.transport WHEN 'UDP' THEN 1 WHEN 'TCP' THEN 2 WHEN 'TLS' THEN 3 WHEN 'WS' THEN 4
                            WHEN 'WSS' THEN 5 END,
           k.id, coalesce(a.id, 0), f.weight, f.whitelisted != 0
    FROM failures AS f
    JOIN failure_kinds AS k ON k.service = f.service AND k.event_type = f.event_type
                               AND k.source = f.source
    LEFT JOIN accounts AS a ON a.name = f.account
    WHERE pbxguard_key(f.key) IS NOT NULL AND pbxguard_addr(f.addr, f.key) IS NOT NULL;
DROP TABLE failures;
ALTER TABLE failures_compact RENAME TO failures;

-- History: what the raw rows of one key said within one hour, by address, kind, account and
-- flags. Clustered on the hour: a report reads the hours of its period and nothing else.
CREATE TABLE failure_hours (
    hour      INTEGER NOT NULL,    -- ts_ms / 3600000
    key       BLOB NOT NULL,
    addr      BLOB NOT NULL,
    kind      INTEGER NOT NULL,
    account   INTEGER NOT NULL,
    flags     INTEGER NOT NULL,
    n         INTEGER NOT NULL,    -- failures
    weight    REAL NOT NULL,       -- their total weight
    first_off INTEGER NOT NULL,    -- the first and last of them: ms after the hour's start
    last_off  INTEGER NOT NULL,
    PRIMARY KEY (hour, key, addr, kind, account, flags)
) WITHOUT ROWID;

-- The same history by key: one row per key and hour with its totals. It answers "when was this
-- source seen, how often" (list, new sources) and lists the hours to read for `show`.
CREATE TABLE failure_key_hours (
    key       BLOB NOT NULL,
    hour      INTEGER NOT NULL,
    n         INTEGER NOT NULL,
    weight    REAL NOT NULL,
    first_off INTEGER NOT NULL,
    last_off  INTEGER NOT NULL,
    PRIMARY KEY (key, hour)
) WITHOUT ROWID;

-- The first failure of each key in the rolled-up history ("was this source seen before?", for
-- a report's new sources): one row per key, kept by the roll-up and the retention.
CREATE TABLE failure_keys (
    key      BLOB PRIMARY KEY,
    first_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- Failures recorded per hour (raw and rolled up alike), kept by the store at each commit:
-- status's "today" and the time of the newest failure without reading the failures.
CREATE TABLE failure_counts (
    hour    INTEGER PRIMARY KEY,
    n       INTEGER NOT NULL,
    last_ms INTEGER NOT NULL       -- the newest failure of the hour
);
INSERT INTO failure_counts (hour, n, last_ms)
    SELECT ts_ms / 3600000, count(*), max(ts_ms) FROM failures GROUP BY 1;
