-- pbxguard schema, version 9: Asterisk's security log as a second source of events.
--
-- A failure keeps what the log source needs to count an event once, whichever source saw it
-- first (store_failure_seen(): the same EventTV, event type, RemoteAddress with port and
-- transport, and SessionID), as two small integers beside the compact row:
--   * tv_off: EventTV (Asterisk's own time of the event, Unix ms) minus ts_ms. A live event is
--     stamped by Asterisk a few ms before the daemon receives it, a backfilled one is recorded
--     at its own time: a value of one or two bytes, usually 0 or a small negative number.
--     NULL: the event had no EventTV (never matched).
--   * session: a 32-bit hash (FNV-1a) of the SessionID, NULL if it had none. A hash, not the
--     text (a SIP Call-ID is the client's text, up to 128 bytes): the lookup compares it
--     together with the exact EventTV, type, address, port and transport, so two different
--     events would also have to collide in it.
-- The lookup reads one range of the key's rows around the event's time through the table's own
-- primary key (key, ts_ms, seq): no index is added. Roll-ups drop both columns (an hour's
-- aggregate is past any gap a log could fill).
--
-- flags gains bit 1 (value 2): the failure was backfilled, read from the security log for a
-- time no AMI session covered (the daemon was down, a session was lost); its ts_ms is then the
-- event's own time. The roll-ups group by flags, so reports count backfilled failures apart in
-- the raw rows and in failure_hours alike.
ALTER TABLE failures ADD COLUMN tv_off INTEGER;
ALTER TABLE failures ADD COLUMN session INTEGER;

-- Where each [seclog:NAME] source stands in its file, written in the same transaction as the
-- failures judged from the lines before it: a restart resumes exactly there.
CREATE TABLE seclog_cursor (
    name       TEXT PRIMARY KEY,    -- 'seclog:NAME'
    path       TEXT NOT NULL,       -- the file's path when the cursor was written
    dev        INTEGER NOT NULL,    -- the file's identity (st_dev, st_ino): after a rotation the
    ino        INTEGER NOT NULL,    -- old file is found again under its new name
    pos        INTEGER NOT NULL,    -- bytes of that file read (always at the end of a line)
    tail       BLOB,                -- the last bytes before pos: recognizes the copy that
                                    -- copytruncate leaves, and a file rewritten in place
    line_ms    INTEGER,             -- the time of the last line read, NULL if none yet
    updated_ms INTEGER NOT NULL
);
