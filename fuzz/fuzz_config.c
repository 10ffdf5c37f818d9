/* Fuzzes the configuration parser: the input is a whole configuration file, parsed with
 * config_load_buffer(). Checks the parser's promises: every error message is one line of
 * printable ASCII (values are quoted escaped, so no control byte reaches a terminal); a valid
 * result holds its bounds (NUL-terminated strings, counts within their arrays); and what
 * config_dump() prints of it reads back as a valid configuration that dumps the same. Aborts on
 * a violation. A secret_file line opens what it names (read-only, non-blocking). The CLI's
 * reader of [general]'s two paths (config_load_paths_buffer()) reads the same input: it keeps the
 * same promises and, on a file the daemon takes, gives the daemon's paths. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NAME "fuzz.conf"

static void check_message(void *data, const char *message)
{
    unsigned *n = data;
    (*n)++;
    bool bad = strncmp(message, NAME, strlen(NAME)) != 0;
    for (const char *c = message; *c; c++)
        if (*c < 0x20 || *c > 0x7e)
            bad = true;
    if (bad) {
        fprintf(stderr, "fuzz_config: message not printable ASCII: ");
        for (const char *c = message; *c; c++)
            fprintf(stderr, *c < 0x20 || *c > 0x7e ? "\\x%02x" : "%c", (unsigned char)*c);
        fputc('\n', stderr);
        abort();
    }
}

static void check_string(const char *s, size_t size, int min)
{
    size_t n = strnlen(s, size);
    if (n == size || (int)n < min)
        abort();
}

static void check_config(const struct config *c)
{
    const struct cfg_general *g = &c->general;
    check_string(g->database, sizeof(g->database), 1);
    check_string(g->control_socket, sizeof(g->control_socket), 1);
    check_string(g->control_group, sizeof(g->control_group), 0);
    check_string(g->lock_file, sizeof(g->lock_file), 1);
    if (g->database[0] != '/' || g->control_socket[0] != '/' || g->lock_file[0] != '/')
        abort();
    for (unsigned i = 0; i < c->nami; i++) {
        const struct cfg_ami *a = &c->ami[i];
        check_string(a->name, sizeof(a->name), 1);
        check_string(a->host, sizeof(a->host), 1);
        check_string(a->username, sizeof(a->username), 1);
        check_string(a->secret, sizeof(a->secret), 1);
        if (a->port == 0 || a->backoff_min_ms > a->backoff_max_ms)
            abort();
        for (const char *s = a->secret; *s; s++)
            if (*s == '\r' || *s == '\n')
                abort();
    }
    const struct cfg_policy *p = &c->policy;
    if (p->maxretry < 1 || p->bantime_max_s < p->bantime_s || p->ipv4_prefix < 8 ||
        p->ipv4_prefix > 32 || p->ipv6_prefix < 32 || p->ipv6_prefix > 128 ||
        p->nservices > CFG_SERVICES_MAX)
        abort();
    for (unsigned i = 0; i < p->nservices; i++)
        check_string(p->services[i].service, sizeof(p->services[i].service), 1);
    const struct cfg_nftables *n = &c->nftables;
    if (n->ntcp_ports > CFG_PORTS_MAX || n->nudp_ports > CFG_PORTS_MAX ||
        strcmp(n->set4, n->set6) == 0)
        abort();
    check_string(c->statsd.prefix, sizeof(c->statsd.prefix), 0);
    check_string(c->statsd.own_prefix, sizeof(c->statsd.own_prefix), 0);
}

/* config_dump() into a new string (free it). */
static char *dump(const struct config *c, size_t *ret_len)
{
    char *out = NULL;
    FILE *f = open_memstream(&out, ret_len);
    if (!f)
        abort();
    config_dump(c, f);
    if (fclose(f) != 0)
        abort();
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config cfg;
    unsigned nmsg = 0;
    int r = config_load_buffer(NAME, (const char *)data, size, &cfg, check_message, &nmsg);
    if (r < 0 || (unsigned)r != nmsg)
        abort();
    /* The CLI's reader of the two paths: the same promises, and on a file the daemon takes,
     * the daemon's paths. */
    struct cfg_paths paths;
    unsigned npaths = 0;
    int rp =
        config_load_paths_buffer(NAME, (const char *)data, size, &paths, check_message, &npaths);
    if (rp < 0 || (unsigned)rp != npaths || (r == 0 && rp != 0))
        abort();
    if (rp == 0) {
        check_string(paths.database, sizeof(paths.database), 1);
        check_string(paths.control_socket, sizeof(paths.control_socket), 1);
        if (paths.database[0] != '/' || paths.control_socket[0] != '/')
            abort();
    }
    if (r == 0 && (strcmp(paths.database, cfg.general.database) != 0 ||
                   strcmp(paths.control_socket, cfg.general.control_socket) != 0))
        abort();
    if (r == 0) {
        check_config(&cfg);
        size_t len1, len2;
        char *first = dump(&cfg, &len1);
        struct config again;
        unsigned nmsg2 = 0;
        if (config_load_buffer(NAME, first, len1, &again, check_message, &nmsg2) != 0)
            abort();
        char *second = dump(&again, &len2);
        if (len1 != len2 || memcmp(first, second, len1) != 0)
            abort();
        free(first);
        free(second);
        config_free(&again);
    }
    config_free(&cfg);
    return 0;
}
