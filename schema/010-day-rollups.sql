-- pbxguard schema, version 10: the hourly history rolled up a second time, by the day, for the
-- reports of whole days.
--
-- A report reads every hourly row of its period (failure_hours): a week of scanning from 100k
-- sources is two million of them, nearly one per failure when the accounts tried vary. What a
-- report needs of a whole day is much less: each source's attempts, first and last failure;
-- each account's attempts and the sources that tried it; the attempts by kind and hour. The
-- roll-up writes these four beside the hourly rows, in the same transaction, so for every day
-- they hold exactly what that day's hourly rows say. A report reads them for the whole UTC days
-- of its period and the hourly rows for the hours before and after (store_report.c).
--
-- Days are UTC: day = hour / 24, and offsets are milliseconds after the day's start. The
-- retention deletes the hourly rows before its cutoff first, then the days all of whose hours
-- are gone; a report uses a day's rows only if none of its hours is older than the cutoff
-- (failure_retention), so it never reads a day whose hours are partly gone.

-- Each source's failures of a day: one row per key and day.
CREATE TABLE failure_key_days (
    day       INTEGER NOT NULL,    -- hour / 24
    key       BLOB NOT NULL,
    n         INTEGER NOT NULL,
    first_off INTEGER NOT NULL,    -- its first and last failure of the day: ms after the day's
    last_off  INTEGER NOT NULL,    -- start
    PRIMARY KEY (day, key)
) WITHOUT ROWID;

-- Each account's attempts of a day (account 0, none, is left out).
CREATE TABLE failure_account_days (
    day     INTEGER NOT NULL,
    account INTEGER NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (day, account)
) WITHOUT ROWID;

-- Which sources tried each account on a day: a report reads the rows of its top accounts only,
-- a seek per account and day.
CREATE TABLE failure_account_keys (
    day     INTEGER NOT NULL,
    account INTEGER NOT NULL,
    key     BLOB NOT NULL,
    PRIMARY KEY (day, account, key)
) WITHOUT ROWID;

-- The failures of each hour by kind and flags (the report's chart and its counts by service and
-- event type). An hourly row counts in the hour it belongs to.
CREATE TABLE failure_kind_hours (
    hour  INTEGER NOT NULL,
    kind  INTEGER NOT NULL,
    flags INTEGER NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (hour, kind, flags)
) WITHOUT ROWID;

-- Where the retention has pruned the hourly history up to: the hours before before_hour are
-- gone, or going, batch by batch (0: never pruned). One row.
CREATE TABLE failure_retention (
    id          INTEGER PRIMARY KEY CHECK (id = 0),
    before_hour INTEGER NOT NULL
);
INSERT INTO failure_retention (id, before_hour) VALUES (0, 0);

-- The history already rolled up, rolled up again: the daily rows say what the hourly rows held
-- at this point, whatever the retention had left of them.
INSERT INTO failure_key_days (day, key, n, first_off, last_off)
    SELECT hour / 24, key, sum(n), min(hour * 3600000 + first_off) - hour / 24 * 86400000,
           max(hour * 3600000 + last_off) - hour / 24 * 86400000
    FROM failure_key_hours GROUP BY key, hour / 24;
INSERT INTO failure_account_days (day, account, n)
    SELECT hour / 24, account, sum(n) FROM failure_hours WHERE account <> 0
    GROUP BY hour / 24, account;
INSERT INTO failure_account_keys (day, account, key)
    SELECT DISTINCT hour / 24, account, key FROM failure_hours WHERE account <> 0;
INSERT INTO failure_kind_hours (hour, kind, flags, n)
    SELECT hour, kind, flags, sum(n) FROM failure_hours GROUP BY hour, kind, flags;
