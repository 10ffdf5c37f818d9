-- pbxguard schema, version 3: successful logins per counting key. A key that produced a
-- SuccessfulAuth within [policy] trust_window is judged against trusted_maxretry instead of
-- maxretry (an office behind one NAT address where one phone has a stale password). One row
-- per key, updated in place, so a flood of successes costs one indexed upsert per event and
-- the table never grows beyond the number of keys that ever logged in within the retention.
CREATE TABLE successes (
    key      TEXT PRIMARY KEY,    -- counting key, as in failures.key
    first_ms INTEGER NOT NULL,    -- first SuccessfulAuth recorded for the key
    last_ms  INTEGER NOT NULL,    -- the latest one: the trust window counts from here
    count    INTEGER NOT NULL DEFAULT 1,
    addr     TEXT NOT NULL,       -- the address of the latest one
    account  TEXT,                -- its AccountID (network text: escape before display)
    service  TEXT                 -- its service ('PJSIP', 'SIP', 'AMI')
) WITHOUT ROWID;
-- Retention pruning.
CREATE INDEX successes_last ON successes (last_ms);
