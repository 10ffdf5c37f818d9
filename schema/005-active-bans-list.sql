-- pbxguard schema, version 5: the active bans, paged and counted without walking them all.
--
-- `list` pages through the active bans in id order (oldest first), a bounded slice per
-- request, from an index that holds only the rows not yet ended: a page never walks the ended
-- bans of the history.
CREATE INDEX bans_active_list ON bans (id, expires_ms) WHERE ended_ms IS NULL;

-- How many bans are not yet ended, by family and reason, kept by the triggers below in the
-- same transaction as the change, so counting the active bans (status, the bans.active gauges,
-- the first page of `list`) reads these rows and subtracts the few bans whose time has run
-- out but that the daemon has not marked as expired yet, instead of walking every ban.
CREATE TABLE bans_open (
    family INTEGER NOT NULL,  -- 4 or 6
    reason TEXT NOT NULL,     -- 'threshold' or 'manual'
    n      INTEGER NOT NULL,  -- bans of that family and reason with ended_ms NULL
    PRIMARY KEY (family, reason)
) WITHOUT ROWID;
INSERT INTO bans_open (family, reason, n)
    SELECT family, reason, count(*) FROM bans WHERE ended_ms IS NULL GROUP BY family, reason;

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
