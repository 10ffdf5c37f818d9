#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "addr.h"
#include "statsd_name.h"

static bool segment_byte_ok(unsigned char c, bool keep_dots)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c == '_' || c == '-' || (keep_dots && c == '.');
}

size_t statsd_name_segment(const char *in, size_t len, bool keep_dots, char *out, size_t outlen)
{
    if (outlen == 0)
        return 0;
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < outlen; i++)
        out[n++] = segment_byte_ok((unsigned char)in[i], keep_dots) ? in[i] : '_';
    out[n] = '\0';
    return n;
}

void statsd_name_prefix(const char *cfg, char *buf, size_t buflen)
{
    if (buflen == 0)
        return;
    char tmp[STATSD_PREFIX_MAX];
    size_t len = statsd_name_segment(cfg, strlen(cfg), true, tmp, sizeof(tmp));
    size_t n = 0;
    /* Room is kept for the trailing '.' and the NUL. */
    for (size_t i = 0; i < len && n + 2 < buflen; i++) {
        if (tmp[i] == '.' && (n == 0 || buf[n - 1] == '.'))
            continue;
        buf[n++] = tmp[i];
    }
    while (n > 0 && buf[n - 1] == '.')
        n--;
    if (n > 0)
        buf[n++] = '.';
    buf[n] = '\0';
}

int statsd_name_address(const struct sec_endpoint *ep, char *buf, size_t buflen)
{
    const char *fam;
    if (ep->addr.family == AF_INET)
        fam = "IPV4";
    else if (ep->addr.family == AF_INET6)
        fam = "IPV6";
    else
        return -EAFNOSUPPORT;

    /* The address as Asterisk prints it (scope included), then made one safe segment: the
     * dots of IPv4, the colons of IPv6 and the '%' of a scope all become '_'. */
    char text[ADDR_STRLEN + 1 + SEC_SCOPE_MAX];
    addr_format(&ep->addr, text, ADDR_STRLEN);
    size_t tlen = strlen(text);
    size_t slen = strnlen(ep->scope, sizeof(ep->scope));
    if (slen > 0) {
        text[tlen++] = '%';
        memcpy(text + tlen, ep->scope, slen);
        tlen += slen;
    }
    char safe[sizeof(text) + 1];
    statsd_name_segment(text, tlen, false, safe, sizeof(safe));

    const char *tr = sec_transport_name(ep->transport);
    int n = snprintf(buf, buflen, "%s/%s%s%s", fam, tr, *tr ? "/" : "", safe);
    if (n < 0 || (size_t)n >= buflen)
        return -ENOBUFS;
    return n;
}

int statsd_name_failed_auth(const char *service, const struct sec_endpoint *ep, char *buf,
                            size_t buflen)
{
    char svc[SEC_SERVICE_MAX];
    size_t svclen = strnlen(service, SEC_SERVICE_MAX);
    if (svclen == 0)
        strcpy(svc, "unknown");
    else
        statsd_name_segment(service, svclen, false, svc, sizeof(svc));

    char addr[STATSD_NAME_MAX];
    if (ep) {
        int r = statsd_name_address(ep, addr, sizeof(addr));
        if (r < 0)
            return r;
    } else {
        strcpy(addr, "count");
    }
    int n = snprintf(buf, buflen, "security.failed_auth.%s.%s", svc, addr);
    if (n < 0 || (size_t)n >= buflen)
        return -ENOBUFS;
    return n;
}

static bool line_byte_ok(unsigned char c)
{
    return segment_byte_ok(c, true) || c == '/';
}

int statsd_line(char *buf, size_t buflen, const char *prefix, const char *name, int64_t value,
                const char *type)
{
    size_t plen = strlen(prefix), nlen = strlen(name);
    char num[24];
    int numlen = snprintf(num, sizeof(num), ":%" PRId64 "|", value);
    size_t tlen = strlen(type);
    size_t total = plen + nlen + (size_t)numlen + tlen;
    if (total >= buflen)
        return -ENOBUFS;
    char *p = buf;
    for (size_t i = 0; i < plen; i++)
        *p++ = line_byte_ok((unsigned char)prefix[i]) ? prefix[i] : '_';
    for (size_t i = 0; i < nlen; i++)
        *p++ = line_byte_ok((unsigned char)name[i]) ? name[i] : '_';
    memcpy(p, num, (size_t)numlen);
    p += numlen;
    for (size_t i = 0; i < tlen; i++)
        *p++ = (type[i] >= 'a' && type[i] <= 'z') ? type[i] : 'c';
    *p = '\0';
    return (int)total;
}
