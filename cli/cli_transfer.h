/* `pbxguard export` and `pbxguard import`: the active bans out of a daemon, in a form another
 * daemon, a spreadsheet or `nft -f` on a host without pbxguard takes; and bans into one, from
 * such a file, a plain list, or fail2ban's database. Both speak to the daemon over its control
 * socket only: export pages through `list`, import asks `ban` for each entry, so every
 * imported ban passes the rules a manual ban passes. */
#pragma once
#include <stdbool.h>

/* argv[0] is the command's name; socket and config are the global -s and -c, or NULL; json the
 * global --json given before the command (import's summary as JSON; an export has its own
 * --format). Each returns the exit code. */
int cli_export_main(int argc, char **argv, const char *socket, const char *config, bool json);
int cli_import_main(int argc, char **argv, const char *socket, const char *config, bool json);

/* The nftables table an export writes: not pbxguardd's own name, so that loading it never
 * touches a running daemon's table. */
#define CLI_EXPORT_NFT_TABLE "pbxguard_export"
