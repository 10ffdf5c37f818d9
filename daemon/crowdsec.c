/* The CrowdSec watcher and bouncer (see crowdsec.h). One HTTP client, three flows on it: the
 * login (watcher), the alert pushes (watcher, one batch in flight at a time) and the decision
 * polls (bouncer, one in flight at a time). Each flow has its own timer and backoff. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "build-config.h"
#include "crowdsec.h"
#include "lapi.h"
#include "log.h"

bool crowdsec_origin(const char *origin)
{
    return strncmp(origin, "crowdsec:", 9) == 0;
}

#if PBXGUARD_HAVE_LIBCURL
#include "http.h"

#define SINK "crowdsec"
#define PUSH_BATCH 200       /* alerts per POST */
#define BACKOFF_MIN_MS 1000  /* after a network failure */
#define BACKOFF_MAX_MS 30000 /* LAPI down: ask every 30 s at most */
#define AUTH_RETRY_MS 60000  /* wrong credentials will not fix themselves soon */
#define AUTH_RETRY_MAX_MS 300000
#define TOKEN_RENEW_MARGIN_MS (5 * 60000)
#define TOKEN_DEFAULT_LIFE_MS (30 * 60000)
#define LOG_EVERY_MS 10000 /* one line per kind of refusal per 10 s at most */
#define WALK_STEP 32       /* decisions between two looks at the clock */
/* The longest the stream's walk holds the loop in one turn: with the turn's commit of what it
 * applied (nftables and SQLite, some 2 us a decision) the turn stays within 10 ms. */
#define WALK_SLICE_US 7000

enum flow_state { FLOW_OFF = 0, FLOW_CONNECTING, FLOW_UP, FLOW_DOWN, FLOW_UNAUTHORIZED };

static const char *state_name(enum flow_state s)
{
    switch (s) {
    case FLOW_OFF:
        return "off";
    case FLOW_CONNECTING:
        return "connecting";
    case FLOW_UP:
        return "up";
    case FLOW_DOWN:
        return "down";
    case FLOW_UNAUTHORIZED:
        return "unauthorized";
    }
    return "?";
}

/* What LAPI holds for one prefix, as the stream told it: LAPI (1.4.6) sends one decision per
 * value (the longest), so one per prefix is kept. 40 bytes, so that 100k of them stay in the
 * caches' reach; the origin text is interned (few distinct ones: an origin and a scenario). */
struct slot {
    struct addr_prefix prefix;
    bool used;          /* the slot holds a prefix (maybe with no decision left: id 0) */
    bool ours;          /* our own watcher's decision: not applied */
    uint16_t origin;    /* index into the interned origins */
    int64_t id;         /* LAPI's decision id; 0 = none left */
    int64_t expires_ms; /* wall clock */
};
#define ORIGINS_MAX 1024 /* distinct origin texts kept; beyond, "crowdsec:?" */

/* A rate-limited log line: the first of a kind is written, the rest within LOG_EVERY_MS are
 * counted and summed up with the next one written. */
struct ratelog {
    uint64_t last_ms;
    unsigned long suppressed;
};

struct crowdsec {
    struct loop *loop;
    const struct cfg_crowdsec *cfg;
    struct store *store;
    struct judge *judge;
    struct statsd *statsd;
    crowdsec_verdict_fn on_verdict;
    void *data;
    struct http *http;
    char url_login[CFG_PATH_MAX + 32], url_alerts[CFG_PATH_MAX + 32];
    char url_stream[CFG_PATH_MAX + 32], url_startup[CFG_PATH_MAX + 32];
    char hdr_key[CFG_SECRET_MAX + 16];
    char hdr_auth[LAPI_TOKEN_MAX + 32];

    /* watcher */
    enum flow_state watcher;
    bool login_busy, push_busy;
    int64_t token_expire_ms;
    struct loop_timer login_timer, push_timer;
    int64_t login_backoff_ms, push_backoff_ms;
    int64_t pushing_upto; /* outbox id of the batch in flight */
    int64_t last_push_ms;

    /* bouncer */
    enum flow_state bouncer;
    bool poll_busy, need_startup;
    struct loop_timer poll_timer;
    /* A reply being walked, a slice per loop turn. */
    bool walking;
    char *walk_buf;
    struct lapi_stream walk;
    struct loop_timer walk_timer;
    uint64_t walk_t0, walk_lapi_ms;
    bool walk_reconcile; /* a full set, with remote bans in the store before it */
    int64_t poll_backoff_ms;
    int64_t last_poll_ms;
    struct slot *slots;
    size_t nslots, cap, ndecisions;
    char (*origins)[STORE_WHO_MAX]; /* interned origin texts */
    unsigned norigins, last_origin;

    char last_error[200];
    char bouncer_logged[240], watcher_logged[240]; /* the failure logged last, per flow */
    struct ratelog log_refused, log_bad, log_origin;
    struct crowdsec_status st;
};

/* The latest failure of a flow ("watcher", "bouncer"), for status. */
static void set_error(struct crowdsec *cs, const char *flow, const char *what)
{
    snprintf(cs->last_error, sizeof(cs->last_error), "%s: %s", flow, what);
}

static bool ratelog_ok(struct crowdsec *cs, struct ratelog *r)
{
    uint64_t now = loop_now_ms(cs->loop);
    if (r->last_ms && now - r->last_ms < LOG_EVERY_MS) {
        r->suppressed++;
        return false;
    }
    r->last_ms = now;
    return true;
}

static int64_t backoff_next(int64_t *b, int64_t min, int64_t max)
{
    int64_t d = *b ? *b : min;
    *b = d * 2 > max ? max : d * 2;
    return d;
}

/* --- the decision table: prefix -> decisions --- */

static uint64_t mix(uint64_t x)
{
    /* splitmix64's finalizer: every input bit moves every output bit. */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t prefix_hash(const struct addr_prefix *p)
{
    uint64_t a, b;
    memcpy(&a, p->addr.bytes, 8);
    memcpy(&b, p->addr.bytes + 8, 8);
    return mix(a ^ mix(b ^ ((uint64_t)p->len << 8 | p->addr.family)));
}

static int table_resize(struct crowdsec *cs, size_t cap)
{
    struct slot *ns = calloc(cap, sizeof(*ns));
    if (!ns)
        return -ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < cs->cap; i++) {
        struct slot *o = &cs->slots[i];
        if (!o->used || !o->id) /* a prefix with no decision left is dropped here */
            continue;
        size_t j = prefix_hash(&o->prefix) & (cap - 1);
        while (ns[j].used)
            j = (j + 1) & (cap - 1);
        ns[j] = *o;
        n++;
    }
    free(cs->slots);
    cs->slots = ns;
    cs->cap = cap;
    cs->nslots = n;
    return 0;
}

/* Room for n prefixes without growing (a full set's size, guessed from its bytes). */
static void table_reserve(struct crowdsec *cs, size_t n)
{
    size_t cap = cs->cap ? cs->cap : 1024;
    while (cap < 2 * n && cap < ((size_t)1 << 26))
        cap *= 2;
    if (cap > cs->cap)
        table_resize(cs, cap);
}

static struct slot *slot_find(struct crowdsec *cs, const struct addr_prefix *p, bool create)
{
    if (create && (cs->nslots + 1) * 2 > cs->cap &&
        table_resize(cs, cs->cap ? cs->cap * 2 : 1024) < 0)
        return NULL;
    if (!cs->cap)
        return NULL;
    size_t j = prefix_hash(p) & (cs->cap - 1);
    while (cs->slots[j].used) {
        if (addr_prefix_equal(&cs->slots[j].prefix, p))
            return &cs->slots[j];
        j = (j + 1) & (cs->cap - 1);
    }
    if (!create)
        return NULL;
    struct slot *s = &cs->slots[j];
    memset(s, 0, sizeof(*s));
    s->used = true;
    s->prefix = *p;
    cs->nslots++;
    return s;
}

static void table_clear(struct crowdsec *cs)
{
    free(cs->slots);
    cs->slots = NULL;
    cs->cap = cs->nslots = cs->ndecisions = 0;
}

/* Whether the slot holds a decision still running that is not ours. */
static bool slot_live(const struct slot *s, int64_t now_ms)
{
    return s->used && s->id && !s->ours && s->expires_ms > now_ms;
}

/* The index of an origin text, interned. */
static uint16_t origin_intern(struct crowdsec *cs, const char *text)
{
    if (cs->norigins && strcmp(cs->origins[cs->last_origin], text) == 0)
        return (uint16_t)cs->last_origin;
    for (unsigned i = 0; i < cs->norigins; i++)
        if (strcmp(cs->origins[i], text) == 0)
            return (uint16_t)(cs->last_origin = i);
    if (!cs->origins) {
        cs->origins = calloc(ORIGINS_MAX, sizeof(*cs->origins));
        if (!cs->origins)
            return UINT16_MAX;
    }
    if (cs->norigins == ORIGINS_MAX)
        return UINT16_MAX;
    snprintf(cs->origins[cs->norigins], sizeof(cs->origins[0]), "%s", text);
    return (uint16_t)(cs->last_origin = cs->norigins++);
}

static const char *origin_text(const struct crowdsec *cs, uint16_t i)
{
    return i < cs->norigins ? cs->origins[i] : "crowdsec:?";
}

/* --- applying decisions --- */

static void origin_of(const struct lapi_decision *d, char *out, size_t len)
{
    /* "crowdsec:cscli/manual 'ban' from 'x'": the scenario is free text; its control bytes were
     * refused when it was read, and it is cut to fit the store's origin column. */
    int n = snprintf(out, len, "crowdsec:%s/", d->origin);
    if (n > 0 && (size_t)n < len)
        snprintf(out + n, len - (size_t)n, "%.*s", (int)(len - (size_t)n - 1), d->scenario);
}

static bool origin_accepted(const struct crowdsec *cs, const char *origin)
{
    for (unsigned i = 0; i < cs->cfg->norigins; i++)
        if (strcasecmp(cs->cfg->origins[i], origin) == 0)
            return true;
    return false;
}

/* A ban the judge accepted or refused, from the remaining time of prefix's longest decision. */
static int apply_ban(struct crowdsec *cs, const struct addr_prefix *p, int64_t remaining_ms,
                     const char *origin, const char *value)
{
    struct judge_remote rb = {.prefix = *p,
                              .remaining_ms = remaining_ms,
                              .origin = origin,
                              .note = NULL,
                              .max_prefix4 = cs->cfg->max_prefix4,
                              .max_prefix6 = cs->cfg->max_prefix6};
    struct verdict v = {0};
    enum judge_remote_refusal why = JUDGE_REMOTE_OK;
    int r = judge_remote_ban(cs->judge, &rb, loop_wall_ms(cs->loop), &v, &why);
    if (r == -EPERM) {
        cs->st.refused++;
        statsd_count_by(cs->statsd, "crowdsec.refused", judge_remote_refusal_name(why), 1);
        if (ratelog_ok(cs, &cs->log_refused)) {
            char esc[4 * STORE_WHO_MAX];
            log_escape(origin, strlen(origin), esc, sizeof(esc));
            log_warn("crowdsec: decision for %s refused (%s; from %s)%s", value,
                     judge_remote_refusal_name(why), esc,
                     cs->log_refused.suppressed ? "; more refusals were not logged" : "");
            cs->log_refused.suppressed = 0;
        }
        return 0;
    }
    if (r < 0)
        return r;
    if (v.action == VERDICT_BAN) {
        cs->st.applied++;
        statsd_count(cs->statsd, "crowdsec.applied", 1);
        cs->on_verdict(cs->data, &v);
        /* A full set is summed up in one line; a change in the stream gets its own. */
        if (!cs->need_startup) {
            char esc[4 * STORE_WHO_MAX], dur[32];
            log_escape(origin, strlen(origin), esc, sizeof(esc));
            log_notice("crowdsec: banned %s for %s (%s)", value,
                       lapi_duration_format(remaining_ms, dur, sizeof(dur)), esc);
        }
    }
    return 0;
}

/* Whether an active ban of exactly p exists that is not CrowdSec's (a local one). */
static bool local_ban_active(struct crowdsec *cs, const struct addr_prefix *p, int64_t now_ms)
{
    struct store_ban b;
    return store_ban_last(cs->store, p, &b) == 0 && store_ban_active(&b, now_ms) &&
           !(b.reason == STORE_BAN_REMOTE && crowdsec_origin(b.origin));
}

static int on_new(struct crowdsec *cs, const struct lapi_decision *d, int64_t now_ms)
{
    if (d->duration_ms <= 0)
        return 0; /* ran out on the way */
    struct slot *s = slot_find(cs, &d->prefix, true);
    if (!s)
        return -ENOMEM;
    bool ours = strcmp(d->scenario, cs->cfg->scenario) == 0 &&
                strcasecmp(d->origin, "crowdsec") == 0 && local_ban_active(cs, &d->prefix, now_ms);
    int64_t expires = now_ms + d->duration_ms;
    if (!s->id)
        cs->ndecisions++;
    else if (s->expires_ms > expires && !s->ours)
        return 0; /* a longer one holds the prefix already */
    char origin[STORE_WHO_MAX];
    origin_of(d, origin, sizeof(origin));
    s->id = d->id;
    s->expires_ms = expires;
    s->ours = ours;
    s->origin = origin_intern(cs, origin);
    if (ours) {
        cs->st.ours++;
        return 0;
    }
    return apply_ban(cs, &d->prefix, d->duration_ms, origin, d->value);
}

/* Lifts the ban of exactly p if it is CrowdSec's; a local ban of p is never touched. */
static int lift_crowdsec_ban(struct crowdsec *cs, const struct addr_prefix *p, int64_t now_ms)
{
    struct store_ban b;
    if (store_ban_last(cs->store, p, &b) != 0 || !store_ban_active(&b, now_ms) ||
        b.reason != STORE_BAN_REMOTE || !crowdsec_origin(b.origin))
        return 0; /* nothing of CrowdSec's (never applied, refused, or a local ban) */
    struct verdict v = {0};
    int r = judge_remote_unban(cs->judge, p, "crowdsec", now_ms, &v);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return r;
    cs->st.deleted++;
    cs->on_verdict(cs->data, &v);
    return 1;
}

/* LAPI (1.4.6) sends one "new" decision per value, the longest, and a "deleted" one only once
 * no decision at all is left for the value (with the id of the last one, which may be one it
 * never sent). So a delete means: nothing holds this prefix in CrowdSec any more. Deleting
 * the longer of two decisions of one value says nothing on the stream: the ban runs until the
 * longer one's end, as with CrowdSec's own bouncers. */
static int on_deleted(struct crowdsec *cs, const struct lapi_decision *d, int64_t now_ms)
{
    struct slot *s = slot_find(cs, &d->prefix, false);
    if (s && s->id) {
        s->id = 0;
        cs->ndecisions--;
    }
    int r = lift_crowdsec_ban(cs, &d->prefix, now_ms);
    if (r <= 0 || d->prefix.len == addr_max_len(&d->prefix.addr))
        return r;
    /* A lifted range held the narrower decisions inside it (the judge does not store a ban a
     * wider one already holds): they are enforced on their own now. Rare, so a walk. */
    r = 0;
    for (size_t i = 0; r >= 0 && i < cs->cap; i++) {
        struct slot *in = &cs->slots[i];
        if (!slot_live(in, now_ms) || addr_prefix_equal(&in->prefix, &d->prefix) ||
            !addr_prefix_covers(&d->prefix, &in->prefix))
            continue;
        char value[ADDR_STRLEN];
        r = apply_ban(cs, &in->prefix, in->expires_ms - now_ms, origin_text(cs, in->origin),
                      addr_prefix_format(&in->prefix, value, sizeof(value)));
    }
    return r;
}

static int on_decision(void *data, const struct lapi_decision *d)
{
    struct crowdsec *cs = data;
    int64_t now = loop_wall_ms(cs->loop);
    if (d->bad != LAPI_OK) {
        /* A deleted captcha or country decision is nothing to us; a new one is counted. */
        if (d->deleted)
            return 0;
        cs->st.ignored++;
        statsd_count_by(cs->statsd, "crowdsec.ignored", lapi_bad_name(d->bad), 1);
        if (d->bad != LAPI_BAD_TYPE && d->bad != LAPI_BAD_SCOPE && ratelog_ok(cs, &cs->log_bad)) {
            char esc[4 * LAPI_VALUE_MAX];
            log_escape(d->value, strlen(d->value), esc, sizeof(esc));
            log_warn("crowdsec: decision %lld ignored: %s (value \"%s\")%s", (long long)d->id,
                     lapi_bad_name(d->bad), esc,
                     cs->log_bad.suppressed ? "; more were not logged" : "");
            cs->log_bad.suppressed = 0;
        }
        return 0;
    }
    if (!d->deleted && !origin_accepted(cs, d->origin)) {
        {
            cs->st.ignored++;
            statsd_count_by(cs->statsd, "crowdsec.ignored", "origin", 1);
            if (ratelog_ok(cs, &cs->log_origin)) {
                log_info("crowdsec: decisions of origin %s are not enforced ([crowdsec] origins)",
                         d->origin);
                cs->log_origin.suppressed = 0;
            }
        }
        return 0;
    }
    int r = d->deleted ? on_deleted(cs, d, now) : on_new(cs, d, now);
    return r < 0 ? r : 0;
}

/* After a full set: every CrowdSec ban the set no longer holds is lifted. */
struct stale {
    struct crowdsec *cs;
    struct addr_prefix *v;
    size_t n, cap;
};

static int collect_stale(void *data, const struct store_ban *b)
{
    struct stale *st = data;
    if (b->reason != STORE_BAN_REMOTE || !crowdsec_origin(b->origin))
        return 0;
    struct slot *s = slot_find(st->cs, &b->prefix, false);
    if (s && slot_live(s, loop_wall_ms(st->cs->loop)))
        return 0;
    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 64;
        struct addr_prefix *v = realloc(st->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        st->v = v;
        st->cap = cap;
    }
    st->v[st->n++] = b->prefix;
    return 0;
}

/* Whether the store held active remote bans (CrowdSec's among them, maybe) when a full set
 * began: if it held none, the set cannot leave a stale one behind and the walk of every active
 * ban after it is saved. A store error says yes (the walk decides). */
static bool crowdsec_bans_stored(struct crowdsec *cs)
{
    struct store_active_tally t;
    if (store_bans_active_tally(cs->store, loop_wall_ms(cs->loop), &t) < 0)
        return true;
    return t.n[0][STORE_BAN_REMOTE] + t.n[1][STORE_BAN_REMOTE] > 0;
}

static int reconcile(struct crowdsec *cs)
{
    struct stale st = {.cs = cs};
    int64_t now = loop_wall_ms(cs->loop);
    int r = store_bans_active(cs->store, now, collect_stale, &st);
    for (size_t i = 0; r >= 0 && i < st.n; i++) {
        struct verdict v = {0};
        r = judge_remote_unban(cs->judge, &st.v[i], "crowdsec", now, &v);
        if (r == -ENOENT) {
            r = 0;
            continue;
        }
        if (r == 0) {
            cs->st.deleted++;
            cs->on_verdict(cs->data, &v);
        }
    }
    if (st.n)
        log_info("crowdsec: %zu bans no longer among LAPI's decisions were lifted", st.n);
    free(st.v);
    return r;
}

/* --- the bouncer: polls --- */

static void poll_now(struct crowdsec *cs);

static void on_poll_timer(struct loop *l, void *data)
{
    poll_now(data);
}

static void bouncer_state(struct crowdsec *cs, enum flow_state s)
{
    if (cs->bouncer == s)
        return;
    if (s == FLOW_UP && cs->bouncer != FLOW_CONNECTING)
        log_notice("crowdsec: LAPI %s answers the bouncer again", cs->cfg->lapi_url);
    cs->bouncer = s;
}

static void poll_failed(struct crowdsec *cs, const struct http_reply *r, const char *what)
{
    cs->st.poll_errors++;
    statsd_count(cs->statsd, "crowdsec.poll_errors", 1);
    cs->need_startup = true;
    uint64_t delay;
    if (r && (r->status == 401 || r->status == 403)) {
        if (cs->bouncer != FLOW_UNAUTHORIZED) {
            char msg[160];
            lapi_error_message(r->body, r->len, msg, sizeof(msg));
            log_err("crowdsec: LAPI %s refuses the bouncer's API key (HTTP %ld%s%s): check "
                    "[crowdsec] api_key_file (cscli bouncers add NAME gives a key); asking "
                    "again every minute",
                    cs->cfg->lapi_url, r->status, msg[0] ? ": " : "", msg);
        }
        set_error(cs, "bouncer", "API key refused");
        cs->bouncer = FLOW_UNAUTHORIZED;
        delay = (uint64_t)backoff_next(&cs->poll_backoff_ms, AUTH_RETRY_MS, AUTH_RETRY_MAX_MS);
    } else {
        /* Once per outage, and again when the reason changes (garbage, then a flood). */
        if (cs->bouncer != FLOW_DOWN || strcmp(cs->bouncer_logged, what) != 0)
            log_warn("crowdsec: LAPI %s: decision stream failed: %s; enforcing what is known, "
                     "asking again",
                     cs->cfg->lapi_url, what);
        snprintf(cs->bouncer_logged, sizeof(cs->bouncer_logged), "%s", what);
        set_error(cs, "bouncer", what);
        cs->bouncer = FLOW_DOWN;
        int64_t min =
            cs->cfg->poll_interval_ms > BACKOFF_MIN_MS ? cs->cfg->poll_interval_ms : BACKOFF_MIN_MS;
        delay = (uint64_t)backoff_next(&cs->poll_backoff_ms, min, BACKOFF_MAX_MS);
    }
    loop_timer_arm(cs->loop, &cs->poll_timer, delay);
}

static void walk_done(struct crowdsec *cs, int e);

/* One slice of the stream's walk: at most WALK_SLICE_US of the loop's time, then the turn ends
 * (its bans reach the kernel, its transaction commits, AMI events are judged) and the walk
 * carries on in the next. */
static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void on_walk_timer(struct loop *l, void *data)
{
    struct crowdsec *cs = data;
    uint64_t t0 = mono_us();
    int r;
    while ((r = lapi_stream_next(&cs->walk, WALK_STEP, on_decision, cs)) == 1)
        if (mono_us() - t0 >= WALK_SLICE_US) {
            loop_timer_arm(l, &cs->walk_timer, 0);
            return;
        }
    walk_done(cs, r);
}

static void walk_free(struct crowdsec *cs)
{
    loop_timer_cancel(cs->loop, &cs->walk_timer);
    free(cs->walk_buf);
    cs->walk_buf = NULL;
    cs->walking = false;
}

static void walk_done(struct crowdsec *cs, int e)
{
    bool startup = cs->need_startup;
    size_t len = cs->walk.len;
    walk_free(cs);
    cs->poll_busy = false;
    if (e == 0 && startup && cs->walk_reconcile)
        e = reconcile(cs);
    if (e < 0) {
        poll_failed(cs, NULL, e == -EBADMSG ? "the reply is not a decision stream" : strerror(-e));
        return;
    }
    if (startup)
        log_notice("crowdsec: %zu decisions read from LAPI's full set (%zu bytes, LAPI answered "
                   "in %llu ms) and applied in %llu ms (%llu applied, %llu refused, %llu ignored "
                   "so far)",
                   cs->ndecisions, len, (unsigned long long)cs->walk_lapi_ms,
                   (unsigned long long)(loop_clock_mono_ms() - cs->walk_t0),
                   (unsigned long long)cs->st.applied, (unsigned long long)cs->st.refused,
                   (unsigned long long)cs->st.ignored);
    cs->need_startup = false;
    cs->poll_backoff_ms = 0;
    cs->st.polls++;
    cs->last_poll_ms = loop_wall_ms(cs->loop);
    bouncer_state(cs, FLOW_UP);
    loop_timer_arm(cs->loop, &cs->poll_timer, (uint64_t)cs->cfg->poll_interval_ms);
}

static void on_poll_reply(void *data, const struct http_reply *r)
{
    struct crowdsec *cs = data;
    cs->poll_busy = false;
    if (r->err == -ECANCELED)
        return;
    char what[240];
    if (r->err) {
        snprintf(what, sizeof(what), "%s",
                 r->err == -EMSGSIZE ? "reply larger than max_reply_mib" : r->errmsg);
        poll_failed(cs, r, what);
        return;
    }
    if (r->status != 200) {
        char msg[160];
        lapi_error_message(r->body, r->len, msg, sizeof(msg));
        snprintf(what, sizeof(what), "HTTP %ld%s%s", r->status, msg[0] ? ": " : "", msg);
        poll_failed(cs, r, what);
        return;
    }
    /* The reply is kept (taken over from the HTTP client, not copied) and walked a slice per
     * loop turn; no poll runs meanwhile. */
    cs->walk_buf = http_reply_take(r);
    if (!cs->walk_buf) {
        poll_failed(cs, NULL, "out of memory");
        return;
    }
    lapi_stream_begin(&cs->walk, cs->walk_buf, r->len);
    cs->walking = cs->poll_busy = true;
    cs->walk_t0 = loop_clock_mono_ms();
    cs->walk_lapi_ms = r->elapsed_ms;
    if (cs->need_startup) {
        /* A full set: what it does not hold is gone. Sized for it at once (LAPI spends some
         * 140 bytes on a decision; fewer bytes each only cost a resize on the way). */
        table_clear(cs);
        table_reserve(cs, r->len / 128);
        cs->walk_reconcile = crowdsec_bans_stored(cs);
    }
    on_walk_timer(cs->loop, cs);
}

static void poll_now(struct crowdsec *cs)
{
    if (cs->poll_busy)
        return;
    const char *hdrs[] = {cs->hdr_key, NULL};
    int r = http_request(cs->http, HTTP_GET, cs->need_startup ? cs->url_startup : cs->url_stream,
                         hdrs, NULL, 0, on_poll_reply, cs, NULL);
    if (r < 0) {
        set_error(cs, "bouncer", strerror(-r));
        loop_timer_arm(cs->loop, &cs->poll_timer, BACKOFF_MAX_MS);
        return;
    }
    cs->poll_busy = true;
}

/* --- the watcher: login and pushes --- */

static void login_now(struct crowdsec *cs);
static void push_now(struct crowdsec *cs);

static void on_login_timer(struct loop *l, void *data)
{
    login_now(data);
}

static void on_push_timer(struct loop *l, void *data)
{
    push_now(data);
}

static void login_failed(struct crowdsec *cs, const struct http_reply *r, const char *what)
{
    cs->st.login_errors++;
    uint64_t delay;
    if (r && (r->status == 401 || r->status == 403)) {
        if (cs->watcher != FLOW_UNAUTHORIZED)
            log_err("crowdsec: LAPI %s refuses the watcher's login as %s (%s): check [crowdsec] "
                    "machine_id and password_file (cscli machines add %s --password ...); "
                    "asking again every minute",
                    cs->cfg->lapi_url, cs->cfg->machine_id, what, cs->cfg->machine_id);
        cs->watcher = FLOW_UNAUTHORIZED;
        delay = (uint64_t)backoff_next(&cs->login_backoff_ms, AUTH_RETRY_MS, AUTH_RETRY_MAX_MS);
    } else {
        if (cs->watcher != FLOW_DOWN || strcmp(cs->watcher_logged, what) != 0)
            log_warn("crowdsec: LAPI %s: watcher login failed: %s; bans wait in the outbox",
                     cs->cfg->lapi_url, what);
        snprintf(cs->watcher_logged, sizeof(cs->watcher_logged), "%s", what);
        cs->watcher = FLOW_DOWN;
        delay = (uint64_t)backoff_next(&cs->login_backoff_ms, BACKOFF_MIN_MS, BACKOFF_MAX_MS);
    }
    set_error(cs, "watcher", what);
    loop_timer_arm(cs->loop, &cs->login_timer, delay);
}

static void on_login_reply(void *data, const struct http_reply *r)
{
    struct crowdsec *cs = data;
    cs->login_busy = false;
    if (r->err == -ECANCELED)
        return;
    char what[240];
    if (r->err) {
        login_failed(cs, r, r->errmsg);
        return;
    }
    if (r->status != 200) {
        char msg[160];
        lapi_error_message(r->body, r->len, msg, sizeof(msg));
        snprintf(what, sizeof(what), "HTTP %ld%s%s", r->status, msg[0] ? ": " : "", msg);
        login_failed(cs, r, what);
        return;
    }
    char token[LAPI_TOKEN_MAX];
    int64_t expire = 0;
    if (lapi_login_parse(r->body, r->len, token, sizeof(token), &expire) < 0) {
        login_failed(cs, NULL, "the reply holds no token");
        return;
    }
    snprintf(cs->hdr_auth, sizeof(cs->hdr_auth), "Authorization: Bearer %s", token);
    explicit_bzero(token, sizeof(token));
    int64_t now = loop_wall_ms(cs->loop);
    int64_t life = expire > now ? expire - now : TOKEN_DEFAULT_LIFE_MS;
    /* Renewed before it runs out: 5 minutes ahead, or at 80% of a shorter life. */
    int64_t renew = life > 2 * TOKEN_RENEW_MARGIN_MS ? life - TOKEN_RENEW_MARGIN_MS : life * 4 / 5;
    cs->token_expire_ms = now + life;
    loop_timer_arm(cs->loop, &cs->login_timer, (uint64_t)(renew > 1000 ? renew : 1000));
    if (cs->watcher != FLOW_UP)
        log_notice("crowdsec: logged in to LAPI %s as %s", cs->cfg->lapi_url, cs->cfg->machine_id);
    cs->watcher = FLOW_UP;
    cs->login_backoff_ms = 0;
    cs->st.logins++;
    push_now(cs);
}

static void login_now(struct crowdsec *cs)
{
    if (cs->login_busy)
        return;
    char *body = lapi_login_body(cs->cfg->machine_id, cs->cfg->password, cs->cfg->scenario);
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    int r = body ? http_request(cs->http, HTTP_POST, cs->url_login, hdrs, body, strlen(body),
                                on_login_reply, cs, NULL)
                 : -ENOMEM;
    if (body) {
        explicit_bzero(body, strlen(body));
        free(body);
    }
    if (r < 0) {
        loop_timer_arm(cs->loop, &cs->login_timer, BACKOFF_MAX_MS);
        return;
    }
    cs->login_busy = true;
    if (cs->watcher == FLOW_OFF)
        cs->watcher = FLOW_CONNECTING;
}

struct batch {
    struct crowdsec *cs;
    struct lapi_alerts *alerts;
    int64_t now_ms, upto;
    int err;
};

static int add_entry(void *data, const struct store_outbox_entry *e)
{
    struct batch *b = data;
    b->upto = e->id;
    if (e->unban)
        return 0; /* LAPI keeps decisions until they run out; cscli deletes them */
    int64_t remaining = e->expires_ms ? e->expires_ms - b->now_ms : 0;
    if (e->expires_ms && remaining <= 0)
        return 0; /* ran out while waiting: nothing to publish */
    struct lapi_alert al = {.prefix = e->prefix,
                            .start_ms = e->start_ms,
                            .now_ms = b->now_ms,
                            .remaining_ms = remaining,
                            .scenario = b->cs->cfg->scenario,
                            .reason = store_ban_reason_name(e->reason),
                            .events = 1};
    int r = lapi_alerts_add(b->alerts, &al);
    if (r < 0)
        b->err = r;
    return r;
}

static void push_failed(struct crowdsec *cs, const char *what)
{
    cs->st.push_errors++;
    statsd_count(cs->statsd, "crowdsec.push_errors", 1);
    set_error(cs, "watcher", what);
    loop_timer_arm(cs->loop, &cs->push_timer,
                   (uint64_t)backoff_next(&cs->push_backoff_ms, BACKOFF_MIN_MS, BACKOFF_MAX_MS));
}

static void on_push_reply(void *data, const struct http_reply *r)
{
    struct crowdsec *cs = data;
    cs->push_busy = false;
    if (r->err == -ECANCELED)
        return;
    if (r->err) {
        /* LAPI is gone (or stalls): the watcher starts over with a login, which pushes what
         * waits once LAPI answers again. */
        if (cs->watcher == FLOW_UP)
            log_warn("crowdsec: LAPI %s: sending alerts failed: %s; they stay in the outbox",
                     cs->cfg->lapi_url, r->errmsg);
        cs->watcher = FLOW_DOWN;
        snprintf(cs->watcher_logged, sizeof(cs->watcher_logged), "%s", r->errmsg);
        cs->st.push_errors++;
        statsd_count(cs->statsd, "crowdsec.push_errors", 1);
        set_error(cs, "watcher", r->errmsg);
        loop_timer_arm(
            cs->loop, &cs->login_timer,
            (uint64_t)backoff_next(&cs->login_backoff_ms, BACKOFF_MIN_MS, BACKOFF_MAX_MS));
        return;
    }
    if (r->status == 401 || r->status == 403) {
        /* The token ran out or LAPI restarted with a new secret: log in again, then push. */
        cs->watcher = FLOW_CONNECTING;
        login_now(cs);
        return;
    }
    if (r->status != 200 && r->status != 201) {
        char msg[160], what[240];
        lapi_error_message(r->body, r->len, msg, sizeof(msg));
        snprintf(what, sizeof(what), "HTTP %ld%s%s", r->status, msg[0] ? ": " : "", msg);
        log_warn("crowdsec: LAPI %s refused alerts: %s; they stay in the outbox", cs->cfg->lapi_url,
                 what);
        push_failed(cs, what);
        return;
    }
    int n = lapi_alerts_reply(r->body, r->len);
    int e = store_outbox_delete(cs->store, SINK, cs->pushing_upto);
    if (e < 0) {
        push_failed(cs, "the outbox cannot be updated");
        return;
    }
    if (n > 0) {
        cs->st.alerts_sent += (uint64_t)n;
        statsd_count(cs->statsd, "crowdsec.alerts", n);
    }
    cs->push_backoff_ms = 0;
    cs->last_push_ms = loop_wall_ms(cs->loop);
    push_now(cs); /* the next batch, if any */
}

static void push_now(struct crowdsec *cs)
{
    if (cs->push_busy || cs->watcher != FLOW_UP || !cs->cfg->publish)
        return;
    struct batch b = {.cs = cs, .alerts = lapi_alerts_new(), .now_ms = loop_wall_ms(cs->loop)};
    if (!b.alerts)
        return;
    int r = store_outbox_list(cs->store, SINK, 0, PUSH_BATCH, add_entry, &b);
    if (r < 0 || b.err < 0) {
        lapi_alerts_free(b.alerts);
        push_failed(cs, "the outbox cannot be read");
        return;
    }
    if (b.upto == 0) {
        lapi_alerts_free(b.alerts);
        return; /* empty */
    }
    if (lapi_alerts_count(b.alerts) == 0) {
        /* Only entries with nothing to send: done with them. */
        lapi_alerts_free(b.alerts);
        store_outbox_delete(cs->store, SINK, b.upto);
        loop_timer_arm(cs->loop, &cs->push_timer, 0);
        return;
    }
    size_t len;
    char *body = lapi_alerts_dump(b.alerts, &len);
    lapi_alerts_free(b.alerts);
    if (!body)
        return;
    const char *hdrs[] = {cs->hdr_auth, "Content-Type: application/json", NULL};
    r = http_request(cs->http, HTTP_POST, cs->url_alerts, hdrs, body, len, on_push_reply, cs, NULL);
    free(body);
    if (r < 0) {
        push_failed(cs, strerror(-r));
        return;
    }
    cs->push_busy = true;
    cs->pushing_upto = b.upto;
}

int crowdsec_publish(struct crowdsec *cs, const struct verdict *v, int64_t now_ms)
{
    if (!cs || !cs->cfg->publish || v->action != VERDICT_BAN ||
        (v->reason != VERDICT_THRESHOLD && v->reason != VERDICT_MANUAL))
        return 0;
    struct store_outbox_entry e = {
        .prefix = v->prefix,
        .start_ms = now_ms,
        .expires_ms = v->timeout_ms ? now_ms + v->timeout_ms : 0,
        .reason = v->reason == VERDICT_MANUAL ? STORE_BAN_MANUAL : STORE_BAN_THRESHOLD,
    };
    int r = store_outbox_add(cs->store, SINK, &e, NULL);
    if (r < 0)
        return r;
    /* Sent after this turn's commit: the entry is in the database before LAPI hears of it. */
    if (!cs->push_busy)
        loop_timer_arm(cs->loop, &cs->push_timer, 0);
    return 0;
}

/* --- lifecycle --- */

static struct http *make_http(struct loop *l, const struct cfg_crowdsec *cfg)
{
    struct http_opts o = {.ca_file = cfg->ca_file,
                          .cert_file = cfg->cert_file,
                          .key_file = cfg->key_file,
                          .connect_timeout_ms = cfg->timeout_ms,
                          .timeout_ms = cfg->timeout_ms,
                          .max_reply = (size_t)cfg->max_reply_mib << 20};
    return http_new(l, &o);
}

static void set_urls(struct crowdsec *cs)
{
    const struct cfg_crowdsec *c = cs->cfg;
    size_t n = strlen(c->lapi_url);
    int trim = n && c->lapi_url[n - 1] == '/';
    int w = (int)(n - (size_t)trim);
    snprintf(cs->url_login, sizeof(cs->url_login), "%.*s/v1/watchers/login", w, c->lapi_url);
    snprintf(cs->url_alerts, sizeof(cs->url_alerts), "%.*s/v1/alerts", w, c->lapi_url);
    snprintf(cs->url_stream, sizeof(cs->url_stream), "%.*s/v1/decisions/stream", w, c->lapi_url);
    snprintf(cs->url_startup, sizeof(cs->url_startup), "%.*s/v1/decisions/stream?startup=true", w,
             c->lapi_url);
    snprintf(cs->hdr_key, sizeof(cs->hdr_key), "X-Api-Key: %s", c->api_key);
}

static void start(struct crowdsec *cs)
{
    cs->need_startup = true;
    if (cs->cfg->enforce) {
        cs->bouncer = FLOW_CONNECTING;
        loop_timer_arm(cs->loop, &cs->poll_timer, 0);
    }
    if (cs->cfg->publish)
        loop_timer_arm(cs->loop, &cs->login_timer, 0);
}

struct crowdsec *crowdsec_new(struct loop *l, const struct cfg_crowdsec *cfg, struct store *store,
                              struct judge *judge, struct statsd *statsd,
                              crowdsec_verdict_fn on_verdict, void *data)
{
    struct crowdsec *cs = calloc(1, sizeof(*cs));
    if (!cs)
        return NULL;
    cs->loop = l;
    cs->cfg = cfg;
    cs->store = store;
    cs->judge = judge;
    cs->statsd = statsd;
    cs->on_verdict = on_verdict;
    cs->data = data;
    loop_timer_init(&cs->login_timer, on_login_timer, cs);
    loop_timer_init(&cs->push_timer, on_push_timer, cs);
    loop_timer_init(&cs->poll_timer, on_poll_timer, cs);
    loop_timer_init(&cs->walk_timer, on_walk_timer, cs);
    cs->http = make_http(l, cfg);
    if (!cs->http) {
        free(cs);
        return NULL;
    }
    set_urls(cs);
    start(cs);
    return cs;
}

static void stop(struct crowdsec *cs)
{
    loop_timer_cancel(cs->loop, &cs->login_timer);
    loop_timer_cancel(cs->loop, &cs->push_timer);
    loop_timer_cancel(cs->loop, &cs->poll_timer);
    walk_free(cs);
    http_free(cs->http);
    cs->http = NULL;
    cs->login_busy = cs->push_busy = cs->poll_busy = false;
    cs->watcher = cs->bouncer = FLOW_OFF;
}

void crowdsec_free(struct crowdsec *cs)
{
    if (!cs)
        return;
    stop(cs);
    table_clear(cs);
    free(cs->origins);
    explicit_bzero(cs->hdr_auth, sizeof(cs->hdr_auth));
    explicit_bzero(cs->hdr_key, sizeof(cs->hdr_key));
    free(cs);
}

void crowdsec_set_config(struct crowdsec *cs, const struct cfg_crowdsec *cfg)
{
    cs->cfg = cfg;
}

int crowdsec_reconfigure(struct crowdsec *cs, const struct cfg_crowdsec *cfg)
{
    struct http *h = make_http(cs->loop, cfg);
    if (!h)
        return -errno;
    stop(cs);
    cs->http = h;
    cs->cfg = cfg;
    set_urls(cs);
    cs->login_backoff_ms = cs->push_backoff_ms = cs->poll_backoff_ms = 0;
    start(cs);
    return 0;
}

void crowdsec_get_status(struct crowdsec *cs, struct crowdsec_status *ret)
{
    struct crowdsec_status s = cs->st;
    s.publish = cs->cfg->publish;
    s.enforce = cs->cfg->enforce;
    s.watcher = cs->cfg->publish ? state_name(cs->watcher) : "off";
    s.bouncer = cs->cfg->enforce ? state_name(cs->bouncer) : "off";
    snprintf(s.last_error, sizeof(s.last_error), "%s", cs->last_error);
    s.last_poll_ms = cs->last_poll_ms;
    s.last_push_ms = cs->last_push_ms;
    s.decisions = cs->ndecisions;
    uint64_t n = 0;
    if (store_outbox_count(cs->store, SINK, &n) == 0)
        s.outbox = n;
    *ret = s;
}

#else /* !PBXGUARD_HAVE_LIBCURL: the configuration refuses [crowdsec]; nothing runs. */

struct crowdsec *crowdsec_new(struct loop *l, const struct cfg_crowdsec *cfg, struct store *store,
                              struct judge *judge, struct statsd *statsd,
                              crowdsec_verdict_fn on_verdict, void *data)
{
    errno = ENOTSUP;
    return NULL;
}

void crowdsec_free(struct crowdsec *cs)
{
}

void crowdsec_set_config(struct crowdsec *cs, const struct cfg_crowdsec *cfg)
{
}

int crowdsec_reconfigure(struct crowdsec *cs, const struct cfg_crowdsec *cfg)
{
    return -ENOTSUP;
}

int crowdsec_publish(struct crowdsec *cs, const struct verdict *v, int64_t now_ms)
{
    return 0;
}

void crowdsec_get_status(struct crowdsec *cs, struct crowdsec_status *ret)
{
    memset(ret, 0, sizeof(*ret));
}
#endif
