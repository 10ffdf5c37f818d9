-- pbxguard schema, version 4: the daemon's runs, so that the report can say when pbxguardd
-- started, stopped cleanly, and died (a crash, the OOM killer, a watchdog abort, a power loss:
-- any end that left no clean-stop record), and how long nothing was judged.
--
-- One row per start. A clean stop fills stop_ms. A run that left no clean stop is found by the
-- next start, which sets its died_ms to the time of the last thing it wrote (its heartbeat,
-- refreshed by the maintenance timer every minute, or a newer row of failures, bans or
-- daemon_events). The next run's down_ms is then how long the daemon was not running.
CREATE TABLE daemon_runs (
    id          INTEGER PRIMARY KEY,
    start_ms    INTEGER NOT NULL,   -- when it started (wall clock)
    version     TEXT NOT NULL,      -- pbxguardd's version
    config      TEXT NOT NULL,      -- the configuration file it read
    pid         INTEGER NOT NULL,
    alive_ms    INTEGER NOT NULL,   -- its last heartbeat (start_ms at first)
    stop_ms     INTEGER,            -- a clean stop: when; NULL while running, or if it died
    stop_reason TEXT,               -- what stopped it: 'SIGTERM', 'SIGINT', 'start failed', ...
    uptime_ms   INTEGER,            -- a clean stop: how long it ran (monotonic clock)
    died_ms     INTEGER,            -- it left no clean stop: the time of the last thing it wrote
    down_ms     INTEGER             -- not running before this start (since the previous run's
                                    -- stop or last write); NULL if no earlier run is recorded
);
-- The report's period lookups, and pruning.
CREATE INDEX daemon_runs_start ON daemon_runs (start_ms);
