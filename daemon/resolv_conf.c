/* resolv.conf's nameserver lines. */
#include <string.h>

#include "resolv_conf.h"

#define KEYWORD "nameserver"
#define KEYWORD_LEN (sizeof(KEYWORD) - 1)
/* The longest token worth parsing: an IPv6 address with a scope name. */
#define TOKEN_MAX 64

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* The nameserver address of one line (without its '\n'), if it holds one. */
static bool parse_line(const char *s, size_t len, struct addr *ret)
{
    const char *nul = memchr(s, '\0', len);
    if (nul)
        len = (size_t)(nul - s);
    if (len <= KEYWORD_LEN || memcmp(s, KEYWORD, KEYWORD_LEN) != 0 || !is_blank(s[KEYWORD_LEN]))
        return false;
    size_t i = KEYWORD_LEN;
    while (i < len && is_blank(s[i]))
        i++;
    size_t start = i;
    while (i < len && !is_blank(s[i]) && s[i] != ';' && s[i] != '#' && s[i] != '\r')
        i++;
    size_t n = i - start;
    if (n == 0 || n > TOKEN_MAX)
        return false;
    const char *tok = s + start;
    const char *pct = memchr(tok, '%', n);
    if (pct) {
        /* A scope belongs to a link-local IPv6 address; the address alone is what we match. */
        if (!memchr(tok, ':', (size_t)(pct - tok)))
            return false;
        n = (size_t)(pct - tok);
    }
    return addr_parse(tok, n, ret) == 0;
}

unsigned resolv_conf_parse(const char *buf, size_t len, struct addr *ret, unsigned max)
{
    unsigned n = 0;
    size_t pos = 0;
    while (pos < len && n < max) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - buf) : len;
        struct addr a;
        if (parse_line(buf + pos, end - pos, &a)) {
            bool dup = false;
            for (unsigned i = 0; i < n && !dup; i++)
                dup = addr_equal(&ret[i], &a);
            if (!dup)
                ret[n++] = a;
        }
        pos = end + 1;
    }
    return n;
}
