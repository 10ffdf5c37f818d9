/* Fuzzes the resolv.conf reader: whatever the file holds, it returns at most max addresses,
 * each a valid IPv4 or IPv6 address, no two the same, in file order (a smaller max gives a
 * prefix of a larger one's result), and each one reads back from its own "nameserver" line.
 * Aborts on a violation. Input: the file's bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "resolv_conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct addr all[RESOLV_CONF_MAX_SERVERS], few[3];
    /* A copy of exactly size bytes, so ASan sees any read past the end. */
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    unsigned n = resolv_conf_parse(buf, size, all, RESOLV_CONF_MAX_SERVERS);
    unsigned m = resolv_conf_parse(buf, size, few, 3);
    free(buf);
    if (n > RESOLV_CONF_MAX_SERVERS || m > 3 || m > n || (n >= 3 && m != 3))
        abort();
    for (unsigned i = 0; i < m; i++)
        if (!addr_equal(&few[i], &all[i]))
            abort();
    for (unsigned i = 0; i < n; i++) {
        if (all[i].family != AF_INET && all[i].family != AF_INET6)
            abort();
        if (all[i].family == AF_INET)
            for (int k = 4; k < 16; k++)
                if (all[i].bytes[k])
                    abort();
        for (unsigned k = 0; k < i; k++)
            if (addr_equal(&all[i], &all[k]))
                abort();
        char line[ADDR_STRLEN + 16], a[ADDR_STRLEN];
        struct addr back;
        int len =
            snprintf(line, sizeof(line), "nameserver %s\n", addr_format(&all[i], a, sizeof(a)));
        if (resolv_conf_parse(line, (size_t)len, &back, 1) != 1 || !addr_equal(&back, &all[i]))
            abort();
    }
    return 0;
}
