/* Fuzzes the reading of Asterisk's answers to the trust queries: the input is parsed as AMI
 * frames (no banner) and every frame goes through ami_trust_from_frame(); the whole input is
 * also read as an identify Match list, a SIP URI and a netmask. Checks that every result stays
 * within its bounds (NUL-terminated names of printable ASCII, host names of name characters,
 * prefixes of a known family with no host bits, lengths within the family). Aborts on a
 * violation. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ami_frame.h"
#include "ami_trust.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ami_parser parser;

static void check_prefix(const struct addr_prefix *p)
{
    if (p->addr.family != AF_INET && p->addr.family != AF_INET6)
        abort();
    if (p->len > addr_max_len(&p->addr))
        abort();
    struct addr_prefix q;
    addr_prefix_of(&p->addr, p->len, &q);
    if (!addr_prefix_equal(&q, p))
        abort(); /* host bits left set */
}

static void check_host(const char *h, size_t cap)
{
    const char *nul = memchr(h, '\0', cap);
    if (!nul || nul == h)
        abort();
    for (const char *c = h; c < nul; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '.' || *c == '_'))
            abort();
}

static void on_item(void *data, const struct ami_trust_item *it)
{
    if ((unsigned)it->kind >= AMI_TRUST_KIND_COUNT)
        abort();
    const char *nul = memchr(it->name, '\0', sizeof(it->name));
    if (!nul)
        abort();
    for (const char *c = it->name; c < nul; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
            abort();
    if (it->numeric)
        check_prefix(&it->prefix);
    else
        check_host(it->host, sizeof(it->host));
}

static void on_endpoint(void *data, const char *name, size_t len)
{
    if (len == 0 || len > 255)
        abort();
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            abort();
}

static void on_match(void *data, const struct addr_prefix *p)
{
    check_prefix(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ami_trust_fns fns = {.item = on_item, .endpoint = on_endpoint};
    ami_parser_init(&parser, false);
    size_t off = 0;
    while (off < size) {
        off += ami_parser_feed(&parser, data + off, size - off);
        const struct ami_frame *f;
        while ((f = ami_parser_next(&parser))) {
            bool complete = false;
            ami_trust_from_frame(f, &fns, NULL, &complete);
        }
    }

    const char *s = (const char *)data;
    ami_trust_parse_match(s, size, on_match, NULL);

    char host[AMI_TRUST_HOST_MAX];
    struct addr a;
    bool numeric = false;
    if (ami_trust_uri_host(s, size, host, sizeof(host), &a, &numeric) == 0) {
        if (numeric) {
            if (a.family != AF_INET && a.family != AF_INET6)
                abort();
        } else {
            check_host(host, sizeof(host));
        }
    }
    unsigned len;
    if (ami_trust_mask_len(s, size, AF_INET, &len) == 0 && len > 32)
        abort();
    if (ami_trust_mask_len(s, size, AF_INET6, &len) == 0 && len > 128)
        abort();
    return 0;
}
