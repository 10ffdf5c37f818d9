-- pbxguard schema, version 6: bans that come from elsewhere (a fleet's shared table, or any
-- other remote source), the outbox of local ban changes waiting to be published, and each remote
-- source's read position.
--
-- bans.reason gains 'remote': a ban another node (or service) decided, which passed this node's
-- rules before it reached the kernel. Its origin names where it came from ('cluster:NODE',
-- 'crowdsec:...'). SQLite cannot change a CHECK constraint in place, so the table is rebuilt
-- with its rows, ids and indexes.
CREATE TABLE bans_new (
    id          INTEGER PRIMARY KEY,
    prefix      TEXT NOT NULL,
    family      INTEGER NOT NULL,
    len         INTEGER NOT NULL,
    start_ms    INTEGER NOT NULL,
    expires_ms  INTEGER,
    reason      TEXT NOT NULL CHECK (reason IN ('threshold', 'manual', 'remote')),
    origin      TEXT NOT NULL,      -- threshold: the event's source ('ami:pbx1'); manual: the
                                    -- requester ('cli:uid=0'); remote: 'cluster:NODE', ...
    failures    REAL NOT NULL DEFAULT 0,
    offence     INTEGER NOT NULL DEFAULT 1,
    service     TEXT,
    event_type  INTEGER REFERENCES event_types (id),
    ended_ms    INTEGER,
    end_reason  TEXT CHECK (end_reason IN ('expired', 'lifted')),
    lifted_by   TEXT,
    note        TEXT
);
INSERT INTO bans_new (id, prefix, family, len, start_ms, expires_ms, reason, origin, failures,
                      offence, service, event_type, ended_ms, end_reason, lifted_by, note)
    SELECT id, prefix, family, len, start_ms, expires_ms, reason, origin, failures, offence,
           service, event_type, ended_ms, end_reason, lifted_by, note FROM bans;
DROP TABLE bans;
ALTER TABLE bans_new RENAME TO bans;
CREATE INDEX bans_prefix_start ON bans (prefix, start_ms);
CREATE INDEX bans_active ON bans (expires_ms) WHERE ended_ms IS NULL;
CREATE INDEX bans_start ON bans (start_ms);
-- What 005 put on bans, which went with the old table: the index of the active bans' pages and
-- the triggers that keep bans_open (its rows stay as they were: the copy fired no trigger).
CREATE INDEX bans_active_list ON bans (id, expires_ms) WHERE ended_ms IS NULL;
CREATE TRIGGER bans_open_insert AFTER INSERT ON bans WHEN NEW.ended_ms IS NULL
BEGIN
    INSERT INTO bans_open (family, reason, n) VALUES (NEW.family, NEW.reason, 1)
        ON CONFLICT (family, reason) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER bans_open_end AFTER UPDATE OF ended_ms ON bans
    WHEN OLD.ended_ms IS NULL AND NEW.ended_ms IS NOT NULL
BEGIN
    UPDATE bans_open SET n = n - 1 WHERE family = OLD.family AND reason = OLD.reason;
END;
CREATE TRIGGER bans_open_delete AFTER DELETE ON bans WHEN OLD.ended_ms IS NULL
BEGIN
    UPDATE bans_open SET n = n - 1 WHERE family = OLD.family AND reason = OLD.reason;
END;

-- Local ban changes waiting to be published to a remote sink ('cluster', ...): written in the
-- same transaction as the ban itself, deleted once the sink has acknowledged them, so a change
-- is published at least once even across a restart or a long outage of the sink. Sinks make a
-- re-sent change harmless (idempotent).
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY,
    sink        TEXT NOT NULL,      -- 'cluster'
    op          TEXT NOT NULL CHECK (op IN ('ban', 'unban')),
    prefix      TEXT NOT NULL,
    start_ms    INTEGER NOT NULL,   -- when the change was decided (local wall clock)
    expires_ms  INTEGER,            -- ban: when it runs out; NULL = permanent (or an unban)
    reason      TEXT NOT NULL,      -- 'threshold', 'manual'
    note        TEXT                -- the admin's note of a manual ban
);
CREATE INDEX outbox_sink ON outbox (sink, id);

-- How far each remote source has been read: the shared table's sequence number for 'cluster'.
CREATE TABLE remote_cursor (
    source     TEXT PRIMARY KEY,    -- 'cluster'
    position   INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
