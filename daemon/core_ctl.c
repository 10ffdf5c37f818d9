/* The control commands (docs/control-protocol.md), answered from the core's state. */
#include <errno.h>
#include <string.h>

#include "core_internal.h"
#include "ctl.h"
#include "log.h"

static json_t *handle(void *data, const char *cmd, json_t *req, const struct ctl_peer *peer)
{
    return ctl_error(CTL_CODE_USAGE, "unknown command \"%s\"", cmd);
}

int core_ctl_start(struct core *c)
{
    c->ctl = ctl_new(c->loop, &c->cfg->general, handle, c);
    if (!c->ctl) {
        int e = errno;
        log_err("control socket %s: %s", c->cfg->general.control_socket,
                e == EADDRINUSE ? "another pbxguardd is serving it" : strerror(e));
        return -e;
    }
    return 0;
}

void core_ctl_stop(struct core *c)
{
    ctl_free(c->ctl);
    c->ctl = NULL;
}
