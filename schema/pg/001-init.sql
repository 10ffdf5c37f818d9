-- pbxguard fleet schema (PostgreSQL), version 1.
--
-- Applied by pbxguardd itself (daemon/cluster.c) inside one transaction that first takes the
-- advisory lock 0x70627831 ("pbx1"), so that nodes starting together migrate it once; the
-- version is kept in pbxguard_schema. Later changes go into new numbered files (002-....sql);
-- this file never changes once released. Every object lives in the role's search_path (give
-- the role its own schema: README, "Running a fleet").

-- One row per banned prefix: the fleet's truth. NOTIFY only wakes the nodes; each node reads
-- the rows whose seq is above its cursor.
CREATE SEQUENCE pbxguard_seq;
CREATE TABLE pbxguard_bans (
    prefix  cidr PRIMARY KEY,
    -- Commit-ordered: pbxguard_publish() takes nextval() under an advisory transaction lock, so
    -- a reader that sees seq N has seen every smaller number that still exists.
    seq     bigint NOT NULL UNIQUE,
    expires timestamptz,                    -- NULL = permanent (or a tombstone)
    deleted boolean NOT NULL DEFAULT false, -- a tombstone: the ban was lifted fleet-wide
    node    text NOT NULL,                  -- who set this state: the node's [cluster] node
    reason  text NOT NULL,                  -- 'threshold', 'manual' (the deciding node's)
    note    text,                           -- the admin's note of a manual ban, escaped
    updated timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pbxguard_bans_expires ON pbxguard_bans (expires);

-- The one write path. Each element i of the arrays is one ban (deleted false; ms = its remaining
-- time, NULL = permanent) or one unban (deleted true), decided age_ms ago on the sender's clock.
-- Expiry is computed here, on the server's clock, so skewed node clocks do not matter.
--   * The longest ban wins: a ban that does not outlast the row's active one (within 2 s) leaves
--     the row as it is, so an unchanged re-send gets no new number.
--   * An unban is a tombstone with a new number; lifting a prefix that is not banned is a no-op.
--   * A ban decided before the prefix was lifted does not bring it back (a late outbox).
-- Returns the highest number given (0 if none) and NOTIFYs it on channel pbxguard_bans.
CREATE FUNCTION pbxguard_publish(p_prefix cidr[], p_ms bigint[], p_age_ms bigint[],
                                 p_deleted boolean[], p_reason text[], p_note text[],
                                 p_node text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    cur     pbxguard_bans%ROWTYPE;
    found_  boolean;
    s       bigint;
    top     bigint := 0;
    new_exp timestamptz;
    decided timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(1885435954); -- 0x70627832 "pbx2": writers one at a time
    FOR i IN 1 .. coalesce(array_length(p_prefix, 1), 0) LOOP
        decided := now() - coalesce(p_age_ms[i], 0) * interval '1 millisecond';
        SELECT * INTO cur FROM pbxguard_bans WHERE prefix = p_prefix[i];
        found_ := FOUND;
        IF p_deleted[i] THEN
            IF NOT found_ OR cur.deleted THEN
                CONTINUE;
            END IF;
            s := nextval('pbxguard_seq');
            UPDATE pbxguard_bans SET seq = s, deleted = true, expires = NULL, node = p_node,
                   reason = p_reason[i], note = p_note[i], updated = now()
             WHERE prefix = p_prefix[i];
        ELSE
            new_exp := CASE WHEN p_ms[i] IS NULL THEN NULL
                            ELSE now() + p_ms[i] * interval '1 millisecond' END;
            IF new_exp IS NOT NULL AND new_exp <= now() THEN
                CONTINUE;
            END IF;
            IF found_ THEN
                IF cur.deleted AND cur.updated >= decided THEN
                    CONTINUE;
                END IF;
                IF NOT cur.deleted AND (cur.expires IS NULL OR cur.expires > now())
                   AND (cur.expires IS NULL
                        OR (new_exp IS NOT NULL AND new_exp <= cur.expires + interval '2 s')) THEN
                    CONTINUE;
                END IF;
                s := nextval('pbxguard_seq');
                UPDATE pbxguard_bans SET seq = s, deleted = false, expires = new_exp,
                       node = p_node, reason = p_reason[i], note = p_note[i], updated = now()
                 WHERE prefix = p_prefix[i];
            ELSE
                s := nextval('pbxguard_seq');
                INSERT INTO pbxguard_bans (prefix, seq, expires, deleted, node, reason, note)
                     VALUES (p_prefix[i], s, new_exp, false, p_node, p_reason[i], p_note[i]);
            END IF;
        END IF;
        top := s;
    END LOOP;
    IF top > 0 THEN
        PERFORM pg_notify('pbxguard_bans', top::text);
    END IF;
    RETURN top;
END;
$$;

-- Rows nobody needs any more: bans expired a day ago, tombstones older than 30 days (a node
-- away longer than that misses those unbans; its own copies of the bans have expired by then
-- unless they were permanent). Called by the nodes now and then.
CREATE FUNCTION pbxguard_prune() RETURNS bigint
LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM pbxguard_bans
         WHERE (NOT deleted AND expires < now() - interval '1 day')
            OR (deleted AND updated < now() - interval '30 days')
        RETURNING 1)
    SELECT count(*) FROM gone;
$$;
