/* Two generations of an open-addressing table of 64-bit identity hashes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "seen.h"

#define SLOTS (2 * SEEN_CAP) /* load factor at most 1/2: short probes */

struct gen {
    uint64_t slot[SLOTS]; /* 0 = empty */
    unsigned n;
    int64_t since_ms; /* when this generation started */
};

struct seen {
    struct gen g[2];
    unsigned cur; /* the generation being filled */
    int64_t complete_ms;
    /* The EventTV range of everything ever added: an event outside it was never added, and is
     * told so without hashing it (a backfill of the past asks for millions of those). */
    int64_t min_tv, max_tv;
};

/* FNV-1a over the identity's fields, then a final mix: any hash of good spread would do. */
static uint64_t identity(const struct sec_event *ev)
{
    uint64_t h = 1469598103934665603ULL;
#define MIX(p, n)                                                                                  \
    for (size_t i_ = 0; i_ < (n); i_++)                                                            \
        h = (h ^ ((const unsigned char *)(p))[i_]) * 1099511628211ULL;
    uint32_t type = (uint32_t)ev->type;
    MIX(&type, sizeof(type));
    MIX(&ev->event_tv_ms, sizeof(ev->event_tv_ms));
    MIX(&ev->remote.addr.family, sizeof(ev->remote.addr.family));
    MIX(ev->remote.addr.bytes, sizeof(ev->remote.addr.bytes));
    MIX(&ev->remote.port, sizeof(ev->remote.port));
    uint32_t tr = (uint32_t)ev->remote.transport;
    MIX(&tr, sizeof(tr));
    MIX(ev->session, strnlen(ev->session, sizeof(ev->session)));
#undef MIX
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h ? h : 1;
}

struct seen *seen_new(int64_t now_ms)
{
    struct seen *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->g[0].since_ms = s->g[1].since_ms = now_ms;
    s->complete_ms = now_ms;
    s->min_tv = INT64_MAX;
    s->max_tv = INT64_MIN;
    return s;
}

void seen_free(struct seen *s)
{
    free(s);
}

static bool gen_has(const struct gen *g, uint64_t h)
{
    for (unsigned i = (unsigned)h % SLOTS;; i = (i + 1) % SLOTS) {
        if (g->slot[i] == h)
            return true;
        if (!g->slot[i])
            return false;
    }
}

void seen_add(struct seen *s, const struct sec_event *ev, int64_t now_ms)
{
    if (!ev->event_tv_ms)
        return;
    if (ev->event_tv_ms < s->min_tv)
        s->min_tv = ev->event_tv_ms;
    if (ev->event_tv_ms > s->max_tv)
        s->max_tv = ev->event_tv_ms;
    uint64_t h = identity(ev);
    struct gen *g = &s->g[s->cur];
    if (gen_has(g, h))
        return;
    if (g->n == SEEN_CAP) {
        /* The older generation goes: what it alone held is forgotten from now on. */
        s->cur ^= 1;
        g = &s->g[s->cur];
        s->complete_ms = s->g[s->cur ^ 1].since_ms;
        memset(g->slot, 0, sizeof(g->slot));
        g->n = 0;
        g->since_ms = now_ms;
    }
    unsigned i = (unsigned)h % SLOTS;
    while (g->slot[i])
        i = (i + 1) % SLOTS;
    g->slot[i] = h;
    g->n++;
}

bool seen_has(const struct seen *s, const struct sec_event *ev)
{
    if (!ev->event_tv_ms || ev->event_tv_ms < s->min_tv || ev->event_tv_ms > s->max_tv)
        return false;
    uint64_t h = identity(ev);
    return gen_has(&s->g[0], h) || gen_has(&s->g[1], h);
}

int64_t seen_complete_since(const struct seen *s)
{
    return s->complete_ms;
}
