/* The fleet's PostgreSQL migrations, built into the daemon from schema/pg/NNN-*.sql by
 * schema/embed.py. pg_schema_migrations[i] brings the shared schema from version i to i + 1. */
#pragma once

extern const char *const pg_schema_migrations[];
extern const unsigned pg_schema_nmigrations; /* = the newest fleet schema this binary knows */
