-- pbxguard schema, version 5: `list` pages through the active bans in id order (oldest first),
-- a bounded slice per request, and counts them by family and reason. Both are read from this
-- index alone, which holds only the active rows: a page never walks the ended bans of the
-- history, and a count never reads the table.
CREATE INDEX bans_active_list ON bans (id, family, reason, expires_ms) WHERE ended_ms IS NULL;
