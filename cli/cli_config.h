/* The two paths the CLI takes from the configuration file: the control socket and the database.
 * It reads nothing else from it (config_load_paths()), so a member of the control group who
 * may read the file, but not the daemon's AMI secrets, can use it. */
#pragma once
#include <stddef.h>

enum cli_path { CLI_PATH_SOCKET, CLI_PATH_DATABASE };

/* Puts which path into buf: from the file config (-c), else from the default configuration
 * file, else the built-in default. Absent default file: the built-in default, silently. A file
 * that exists but cannot be read: with -c an error; without, a warning and the built-in
 * default. Every message goes to stderr, prefixed with who ("pbxguard", "pbxguard report") and
 * saying what to do. Returns 0, or -errno / -EINVAL when the caller should exit 1. */
int cli_config_path(const char *config, enum cli_path which, const char *who, char *buf,
                    size_t len);
