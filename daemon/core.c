/* The pipeline glue. Grows as the modules land: AMI sources, policy + store, nftables, StatsD. */
#include <errno.h>
#include <stdlib.h>

#include "core.h"
#include "log.h"

struct core {
    struct loop *loop;
    const struct config *cfg;
};

struct core *core_new(struct loop *l, const struct config *cfg)
{
    struct core *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->loop = l;
    c->cfg = cfg;
    return c;
}

int core_reload(struct core *c, const struct config *cfg)
{
    c->cfg = cfg;
    return 0;
}

void core_free(struct core *c)
{
    free(c);
}
