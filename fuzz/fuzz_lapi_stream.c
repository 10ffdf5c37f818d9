/* Fuzzes the decision stream reader: whatever LAPI (or something posing as it) sends, the walk
 * returns 0 or -EBADMSG, and every decision it delivers holds NUL-terminated printable text
 * within its bounds; a usable one (LAPI_OK) is a ban of an Ip or Range scope whose prefix has
 * no host bits and a duration within +-100 years; a walk in steps of 1 and of 3 decisions
 * delivers as many and ends the same; and the walk that reads every element with jansson (the
 * reference reader) delivers the very same decisions and ends the same as the one that reads
 * plain elements in place. Aborts on a violation. Input: the reply's body. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lapi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_text(const char *s, size_t size)
{
    size_t n = strnlen(s, size);
    if (n == size)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            abort();
}

/* The decisions of one walk, kept to compare the two readers. */
struct kept {
    struct lapi_decision *d;
    unsigned n, cap;
};

static int keep(void *data, const struct lapi_decision *d)
{
    struct kept *k = data;
    if (k->n == k->cap) {
        unsigned cap = k->cap ? k->cap * 2 : 16;
        struct lapi_decision *v = realloc(k->d, cap * sizeof(*v));
        if (!v)
            abort();
        k->d = v;
        k->cap = cap;
    }
    k->d[k->n++] = *d;
    return 0;
}

static int check(void *data, const struct lapi_decision *d)
{
    unsigned *n = data;
    (*n)++;
    if (d->bad != LAPI_OK)
        return 0;
    check_text(d->origin, sizeof(d->origin));
    check_text(d->type, sizeof(d->type));
    check_text(d->scope, sizeof(d->scope));
    check_text(d->value, sizeof(d->value));
    check_text(d->scenario, sizeof(d->scenario));
    if (d->id <= 0 || strcasecmp(d->type, "ban") != 0)
        abort();
    if (strcasecmp(d->scope, "ip") != 0 && strcasecmp(d->scope, "range") != 0)
        abort();
    struct addr_prefix p;
    addr_prefix_of(&d->prefix.addr, d->prefix.len, &p);
    if (!addr_prefix_equal(&p, &d->prefix) || d->prefix.len > addr_max_len(&d->prefix.addr))
        abort();
    const int64_t limit = 100LL * 365 * 86400 * 1000;
    if (d->duration_ms > limit || d->duration_ms < -limit)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    unsigned n = 0;
    int r = lapi_stream_parse(buf, size, check, &n);
    if (r != 0 && r != -EBADMSG)
        abort();
    for (unsigned step = 1; step <= 3; step += 2) {
        struct lapi_stream st;
        unsigned m = 0;
        int q;
        lapi_stream_begin(&st, buf, size);
        while ((q = lapi_stream_next(&st, step, check, &m)) == 1)
            ;
        if (q != r || m != n)
            abort();
    }
    /* Both readers see the same decisions, field for field (each reader clears a decision
     * before filling it, so its padding compares too). */
    struct kept fast = {0}, ref = {0};
    for (int reference = 0; reference <= 1; reference++) {
        struct lapi_stream st;
        lapi_stream_begin(&st, buf, size);
        st.reference = reference;
        int q;
        while ((q = lapi_stream_next(&st, 7, keep, reference ? &ref : &fast)) == 1)
            ;
        if (q != r)
            abort();
    }
    if (fast.n != ref.n || fast.n != n || (n && memcmp(fast.d, ref.d, n * sizeof(*fast.d)) != 0))
        abort();
    free(fast.d);
    free(ref.d);
    free(buf);
    return 0;
}
