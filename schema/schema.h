/* The SQL migrations, built into the binary from schema/NNN-*.sql by schema/embed.py.
 * schema_migrations[i] brings a database from user_version i to i + 1. */
#pragma once

extern const char *const schema_migrations[];
extern const unsigned schema_nmigrations; /* = the newest schema version this binary knows */
