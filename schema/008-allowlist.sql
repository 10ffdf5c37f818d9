-- pbxguard schema, version 8: the runtime allowlist (pbxguard allow).
--
-- Prefixes an admin allowed on the control socket: never banned automatically, kept across
-- restarts, each with who allowed it, why, and until when. The configuration's [whitelist] is
-- not stored here: the file is its record. The daemon keeps the whole list in memory and
-- deletes a row when its entry expires or is removed.
CREATE TABLE allowlist (
    prefix     TEXT PRIMARY KEY,   -- canonical, host bits clear: '203.0.113.0/24', '2001:db8::1/128'
    added_ms   INTEGER NOT NULL,
    expires_ms INTEGER,            -- NULL: until removed
    added_by   TEXT NOT NULL,      -- 'cli:uid=0': the control socket peer's credentials
    reason     TEXT                -- the admin's words, NULL for none
);
