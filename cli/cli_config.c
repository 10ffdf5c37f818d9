/* The CLI's two paths from the configuration, with the errors an admin can act on. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

#include "cli_config.h"
#include "config.h"

struct sink {
    const char *who;
};

static void print_error(void *data, const char *message)
{
    const struct sink *s = data;
    fprintf(stderr, "%s: %s\n", s->who, message);
}

int cli_config_path(const char *config, enum cli_path which, const char *who, char *buf, size_t len)
{
    const char *path = config ? config : CFG_DEFAULT_PATH;
    const char *what = which == CLI_PATH_SOCKET ? "control socket" : "database";
    const char *option = which == CLI_PATH_SOCKET ? "-s PATH" : "--db PATH";
    struct sink sink = {who};
    struct cfg_paths paths;
    struct config defaults;

    config_defaults(&defaults);
    const char *fallback =
        which == CLI_PATH_SOCKET ? defaults.general.control_socket : defaults.general.database;
    if (!config && access(path, F_OK) < 0 && errno == ENOENT) {
        snprintf(buf, len, "%s", fallback); /* no configuration file: the defaults hold */
        return 0;
    }

    int r = config_load_paths(path, &paths, print_error, &sink);
    bool denied = r == -EACCES || r == -EPERM;
    if (r < 0 && !config) {
        fprintf(stderr,
                "%s: using the default %s %s; the file holds the configured one: make it readable "
                "to you (e.g. group-readable, with the AMI secrets in a 0600 secret_file) or give "
                "%s\n",
                who, what, fallback, option);
        snprintf(buf, len, "%s", fallback);
        return 0;
    }
    if (r < 0 && denied) {
        fprintf(stderr,
                "%s: %s is needed for its [general] %s only: make it readable to you (e.g. "
                "group-readable, with the AMI secrets in a 0600 secret_file) or give %s\n",
                who, path, which == CLI_PATH_SOCKET ? "control_socket" : "database", option);
        return r;
    }
    if (r < 0)
        return r;
    if (r > 0)
        return -EINVAL;
    snprintf(buf, len, "%s", which == CLI_PATH_SOCKET ? paths.control_socket : paths.database);
    return 0;
}
