-- pbxguard schema, version 2: the admin's note on a manual ban (`pbxguard ban --reason TEXT`),
-- so `show` and `list` can say why someone banned it by hand months later. Admin text, at most
-- 200 bytes; NULL for threshold bans and manual bans without a note.
ALTER TABLE bans ADD COLUMN note TEXT;
