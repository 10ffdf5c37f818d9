/* Fuzzes StatsD name building with attacker-shaped input: whatever the service, address, scope
 * and transport, the line built parses as one StatsD line (no ':', '|', '@', whitespace or
 * control byte in the name) and stays within its bounds. Aborts on a violation.
 * Input: 16 bytes service, 16 bytes scope, 16 bytes address, 1 byte family/transport, rest
 * ignored; short inputs are zero-padded. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "statsd_name.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_line(const char *line, int n)
{
    if (n < 0)
        return;
    if ((size_t)n != strlen(line) || n >= STATSD_LINE_MAX)
        abort();
    const char *colon = strchr(line, ':');
    if (!colon || strchr(colon + 1, ':'))
        abort();
    for (const char *p = line; p < colon; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= ' ' || c >= 0x7f || c == '|' || c == '@' || c == '#')
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t in[49] = {0};
    memcpy(in, data, size < sizeof(in) ? size : sizeof(in));

    char service[SEC_SERVICE_MAX];
    memcpy(service, in, sizeof(service)); /* may be unterminated: read to its bound */
    struct sec_endpoint ep = {0};
    memcpy(ep.scope, in + 16, sizeof(ep.scope));
    memcpy(ep.addr.bytes, in + 32, sizeof(ep.addr.bytes));
    ep.addr.family = (in[48] & 1) ? AF_INET6 : AF_INET;
    if (ep.addr.family == AF_INET)
        memset(ep.addr.bytes + 4, 0, 12);
    ep.transport = (enum sec_transport)((in[48] >> 1) % 6);

    char name[STATSD_NAME_MAX], line[STATSD_LINE_MAX], prefix[STATSD_PREFIX_MAX];
    char pcfg[49];
    memcpy(pcfg, in, 48);
    pcfg[48] = '\0';
    statsd_name_prefix(pcfg, prefix, sizeof(prefix));
    for (int with_addr = 0; with_addr < 2; with_addr++) {
        int n = statsd_name_failed_auth(service, with_addr ? &ep : NULL, name, sizeof(name));
        if (n < 0)
            abort(); /* every bounded input fits */
        check_line(line, statsd_line(line, sizeof(line), prefix, name, -1, "m"));
    }
    /* A raw name handed in directly is filtered too. */
    char raw[49];
    memcpy(raw, in, 48);
    raw[48] = '\0';
    check_line(line, statsd_line(line, sizeof(line), "", raw, 1, "c"));
    return 0;
}
