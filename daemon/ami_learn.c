/* The trust queries, as a small state machine on the session's loop.
 *
 * A refresh: ModuleCheck res_pjsip.so first, alone (it tells a missing privilege apart before
 * anything else is asked, and its answer says whether PJSIP is there); then ModuleCheck for
 * the other modules, and for each module that is loaded its listing action. The listings are
 * lists (a Success response with "EventList: start", list events, a "...Complete" event); an
 * EndpointList names the endpoints, each asked about with PJSIPShowEndpoint. Asking only for
 * modules that are loaded keeps Asterisk from answering "Invalid/unknown command", which it
 * reports as a RequestBadFormat security event against our own address.
 *
 * When every answer is in, the host names are resolved (resolver.c), and the set is handed
 * over. A name that does not resolve keeps the addresses it had in the last set: a DNS outage
 * must not drop a trunk's protection. */
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ami_learn.h"
#include "ami_trust.h"
#include "log.h"
#include "resolver.h"

#define WINDOW 8                /* actions in flight at once */
#define ANSWER_TIMEOUT_MS 30000 /* no answer for this long: the refresh failed */
#define RESOLVE_TIMEOUT_MS 15000
#define TRIGGER_DELAY_MS 500 /* reload events come in bursts: wait for the last one */
#define MIN_SPACING_MS 5000  /* between the starts of two refreshes */
#define MIN_REFRESH_MS 60000 /* the shortest period honoured */
#define LOG_CHANGES_MAX 8    /* changes listed in a log line, the rest counted */

enum act_kind {
    A_PROBE = 0, /* ModuleCheck res_pjsip.so */
    A_MOD_OUTREG,
    A_MOD_SIP,
    A_MOD_IAX,
    A_ENDPOINTS,
    A_ENDPOINT,
    A_REGS,
    A_SIPPEERS,
    A_IAXPEERS,
};

struct act {
    enum act_kind kind;
    char *arg; /* A_ENDPOINT: the endpoint's name */
};

struct inflight {
    struct act act;
    unsigned seq;
};

/* A prefix of the set handed over last, with the host name it was resolved from ("" if it
 * was numeric), so that a name that fails to resolve next time keeps its addresses. */
struct learned {
    struct policy_wl_entry e;
    char host[AMI_TRUST_HOST_MAX];
};

struct ami_learn {
    struct loop *loop;
    char session[48];
    char username[64];
    int64_t refresh_ms;
    struct ami_learn_io io;

    enum ami_learn_state state;
    bool connected;
    bool saw_system; /* a system-class event arrived since login */
    unsigned gen, seq;
    bool answered; /* the refresh got an answer: later reload events may postdate it */
    bool rerun;    /* a reload event arrived while the refresh was running */
    uint64_t last_start_ms;

    struct act *queue;
    size_t qhead, qlen, qcap;
    struct inflight inflight[WINDOW];
    unsigned ninflight;

    struct ami_trust_item *items;
    unsigned nitems, items_cap;
    bool items_capped;
    unsigned nendpoints;
    bool endpoints_capped;

    struct resolver *res;
    char **names;
    unsigned nnames;

    struct learned *cur;
    unsigned ncur;
    /* What the last refresh logged as too wide or unresolved, so that a refresh logs only what
     * is new ("prefix" or "name" strings, bounded). */
    char **noted, **noting;
    unsigned nnoted, nnoting;
    struct ami_learn_status st;

    int64_t answer_timeout_ms, spacing_ms, trigger_delay_ms;
    struct loop_timer t_deadline; /* an answer (or the resolver) is overdue */
    struct loop_timer t_next;     /* the next refresh */

    bool denied_logged, unsupported_logged, noreload_logged, failed_logged, capped_logged;
};

static void start_refresh(struct loop *l, void *data);

const char *ami_learn_state_name(enum ami_learn_state state)
{
    switch (state) {
    case AMI_LEARN_IDLE:
        return "waiting";
    case AMI_LEARN_RUNNING:
        return "learning";
    case AMI_LEARN_OK:
        return "ok";
    case AMI_LEARN_DENIED:
        return "denied";
    case AMI_LEARN_UNSUPPORTED:
        return "unsupported";
    case AMI_LEARN_FAILED:
        return "failed";
    }
    return "?";
}

/* --- the refresh's working state --- */

static void clear_queue(struct ami_learn *a)
{
    for (size_t i = 0; i < a->qlen; i++)
        free(a->queue[(a->qhead + i) % a->qcap].arg);
    a->qhead = a->qlen = 0;
    for (unsigned i = 0; i < a->ninflight; i++)
        free(a->inflight[i].act.arg);
    a->ninflight = 0;
}

static void clear_work(struct ami_learn *a)
{
    clear_queue(a);
    a->nitems = 0;
    a->items_capped = false;
    a->nendpoints = 0;
    a->endpoints_capped = false;
    resolver_free(a->res);
    a->res = NULL;
    for (unsigned i = 0; i < a->nnames; i++)
        free(a->names[i]);
    free(a->names);
    a->names = NULL;
    a->nnames = 0;
    loop_timer_cancel(a->loop, &a->t_deadline);
}

static int enqueue(struct ami_learn *a, enum act_kind kind, const char *arg, size_t arglen)
{
    if (a->qlen == a->qcap) {
        size_t cap = a->qcap ? a->qcap * 2 : 16;
        struct act *q = malloc(cap * sizeof(*q));
        if (!q)
            return -ENOMEM;
        for (size_t i = 0; i < a->qlen; i++)
            q[i] = a->queue[(a->qhead + i) % a->qcap];
        free(a->queue);
        a->queue = q;
        a->qcap = cap;
        a->qhead = 0;
    }
    struct act *x = &a->queue[(a->qhead + a->qlen) % a->qcap];
    x->kind = kind;
    x->arg = NULL;
    if (arg) {
        x->arg = strndup(arg, arglen);
        if (!x->arg)
            return -ENOMEM;
    }
    a->qlen++;
    return 0;
}

/* --- sending --- */

static int send_act(struct ami_learn *a, const struct act *x, unsigned seq)
{
    static const char *const module[] = {
        [A_PROBE] = "res_pjsip.so",
        [A_MOD_OUTREG] = "res_pjsip_outbound_registration.so",
        [A_MOD_SIP] = "chan_sip.so",
        [A_MOD_IAX] = "chan_iax2.so",
    };
    char id[48], text[512];
    int n;
    snprintf(id, sizeof(id), AMI_LEARN_ACTION_ID "%u-%u", a->gen, seq);
    switch (x->kind) {
    case A_PROBE:
    case A_MOD_OUTREG:
    case A_MOD_SIP:
    case A_MOD_IAX:
        n = snprintf(text, sizeof(text),
                     "Action: ModuleCheck\r\nActionID: %s\r\nModule: %s\r\n\r\n", id,
                     module[x->kind]);
        break;
    case A_ENDPOINTS:
        n = snprintf(text, sizeof(text), "Action: PJSIPShowEndpoints\r\nActionID: %s\r\n\r\n", id);
        break;
    case A_ENDPOINT:
        n = snprintf(text, sizeof(text),
                     "Action: PJSIPShowEndpoint\r\nActionID: %s\r\nEndpoint: %s\r\n\r\n", id,
                     x->arg);
        break;
    case A_REGS:
        n = snprintf(text, sizeof(text),
                     "Action: PJSIPShowRegistrationsOutbound\r\nActionID: %s\r\n\r\n", id);
        break;
    case A_SIPPEERS:
        n = snprintf(text, sizeof(text), "Action: SIPpeers\r\nActionID: %s\r\n\r\n", id);
        break;
    case A_IAXPEERS:
        n = snprintf(text, sizeof(text), "Action: IAXpeerlist\r\nActionID: %s\r\n\r\n", id);
        break;
    default:
        return 0;
    }
    if (n < 0 || (size_t)n >= sizeof(text))
        return 0; /* cannot happen with the bounded names; skipped if it did */
    return a->io.send(a->io.data, text, (size_t)n);
}

static void collected(struct ami_learn *a);

/* Sends what the window allows; when nothing is queued or in flight, the answers are all in.
 * Returns -1 if the session was torn down meanwhile. */
static int pump(struct ami_learn *a)
{
    while (a->qlen && a->ninflight < WINDOW) {
        struct act x = a->queue[a->qhead];
        a->qhead = (a->qhead + 1) % a->qcap;
        a->qlen--;
        unsigned seq = ++a->seq;
        struct inflight *f = &a->inflight[a->ninflight++];
        f->act = x;
        f->seq = seq;
        if (send_act(a, &x, seq) < 0)
            return -1;
    }
    if (a->ninflight == 0 && a->qlen == 0)
        collected(a);
    return 0;
}

/* --- publishing --- */

static bool too_wide(const struct addr_prefix *p)
{
    return p->len < (p->addr.family == AF_INET ? AMI_LEARN_MIN_PREFIX4 : AMI_LEARN_MIN_PREFIX6);
}

struct builder {
    struct learned *v;
    unsigned n, cap;
    unsigned ignored;
};

static void set_text(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* snprintf() into a bounded field, where cutting is intended. */
static void set_text(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

/* "pjsip:identify/carrier1 (ami:pbx1)", "pjsip:registration/carrier2 sip.carrier2.example
 * (ami:pbx1)": cut to fit, which only ever shortens a long host name's label. */
static void label_of(const struct ami_learn *a, const struct ami_trust_item *it, char *buf,
                     size_t len)
{
    if (it->numeric)
        set_text(buf, len, "%s/%s (%s)", ami_trust_kind_name(it->kind), it->name, a->session);
    else
        set_text(buf, len, "%s/%s %s (%s)", ami_trust_kind_name(it->kind), it->name, it->host,
                 a->session);
}

#define NOTED_MAX 64

/* Notes key for the next refresh; returns true if the last refresh had not noted it (so it
 * is worth a log line now). */
static bool note(struct ami_learn *a, const char *key)
{
    bool old = false;
    for (unsigned i = 0; i < a->nnoted && !old; i++)
        old = strcmp(a->noted[i], key) == 0;
    if (a->nnoting < NOTED_MAX) {
        if (!a->noting)
            a->noting = calloc(NOTED_MAX, sizeof(*a->noting));
        if (a->noting && (a->noting[a->nnoting] = strdup(key)))
            a->nnoting++;
    }
    return !old;
}

static void free_notes(char **v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* The notes of this refresh become the ones to compare the next refresh with. */
static void turn_notes(struct ami_learn *a)
{
    free_notes(a->noted, a->nnoted);
    a->noted = a->noting;
    a->nnoted = a->nnoting;
    a->noting = NULL;
    a->nnoting = 0;
}

static void add_entry(struct ami_learn *a, struct builder *b, const struct addr_prefix *p,
                      const char *label, const char *host)
{
    if (too_wide(p)) {
        char ps[ADDR_STRLEN];
        b->ignored++;
        addr_prefix_format(p, ps, sizeof(ps));
        if (note(a, ps))
            log_warn("%s: not trusting %s (%s): wider than /%u, it would make too many sources "
                     "immune",
                     a->session, ps, label,
                     p->addr.family == AF_INET ? AMI_LEARN_MIN_PREFIX4 : AMI_LEARN_MIN_PREFIX6);
        return;
    }
    for (unsigned i = 0; i < b->n; i++)
        if (addr_prefix_equal(&b->v[i].e.prefix, p))
            return; /* the first label found for a prefix stays */
    if (b->n == AMI_LEARN_ENTRIES_MAX) {
        a->items_capped = true;
        return;
    }
    if (b->n == b->cap) {
        unsigned cap = b->cap ? b->cap * 2 : 32;
        struct learned *v = realloc(b->v, cap * sizeof(*v));
        if (!v)
            return;
        b->v = v;
        b->cap = cap;
    }
    struct learned *e = &b->v[b->n++];
    memset(e, 0, sizeof(*e));
    e->e.prefix = *p;
    snprintf(e->e.label, sizeof(e->e.label), "%s", label);
    snprintf(e->host, sizeof(e->host), "%s", host ? host : "");
}

static bool same_entry(const struct learned *x, const struct learned *y)
{
    return addr_prefix_equal(&x->e.prefix, &y->e.prefix) && strcmp(x->e.label, y->e.label) == 0;
}

static bool contains(const struct learned *v, unsigned n, const struct learned *x)
{
    for (unsigned i = 0; i < n; i++)
        if (same_entry(&v[i], x))
            return true;
    return false;
}

/* One line for what changed: "+192.0.2.50 pjsip:identify/carrier1 (ami:pbx1), -...". */
static void log_changes(struct ami_learn *a, const struct learned *nv, unsigned nn)
{
    char line[1024], ps[ADDR_STRLEN];
    size_t o = 0;
    unsigned listed = 0, more = 0, added = 0, removed = 0;
    line[0] = '\0';
    for (int pass = 0; pass < 2; pass++) {
        const struct learned *from = pass ? a->cur : nv, *other = pass ? nv : a->cur;
        unsigned nfrom = pass ? a->ncur : nn, nother = pass ? nn : a->ncur;
        for (unsigned i = 0; i < nfrom; i++) {
            if (contains(other, nother, &from[i]))
                continue;
            pass ? removed++ : added++;
            if (listed == LOG_CHANGES_MAX || o >= sizeof(line) - 1) {
                more++;
                continue;
            }
            int w = snprintf(
                line + o, sizeof(line) - o, "%s%c%s %s", listed ? ", " : "", pass ? '-' : '+',
                addr_prefix_format(&from[i].e.prefix, ps, sizeof(ps)), from[i].e.label);
            if (w > 0)
                o += (size_t)w < sizeof(line) - o ? (size_t)w : sizeof(line) - o - 1;
            listed++;
        }
    }
    if (!added && !removed) {
        log_debug("%s: learned trust unchanged (%u prefixes)", a->session, nn);
        return;
    }
    if (more)
        snprintf(line + o, sizeof(line) - o, ", and %u more", more);
    log_notice("%s: trusting %u address%s Asterisk talks to (%u new, %u dropped): %s", a->session,
               nn, nn == 1 ? "" : "es", added, removed, line);
}

static void schedule(struct ami_learn *a, uint64_t delay_ms)
{
    uint64_t now = loop_now_ms(a->loop);
    uint64_t spacing = (uint64_t)a->spacing_ms;
    if (a->last_start_ms && now + delay_ms < a->last_start_ms + spacing)
        delay_ms = a->last_start_ms + spacing - now;
    loop_timer_arm(a->loop, &a->t_next, delay_ms);
}

static void schedule_periodic(struct ami_learn *a)
{
    if (a->refresh_ms <= 0)
        return;
    schedule(a, (uint64_t)(a->refresh_ms < MIN_REFRESH_MS ? MIN_REFRESH_MS : a->refresh_ms));
}

static void publish(struct ami_learn *a)
{
    struct builder b = {0};
    unsigned unresolved = 0;
    char label[POLICY_LABEL_MAX];
    loop_timer_cancel(a->loop, &a->t_deadline);
    for (unsigned i = 0; i < a->nitems; i++) {
        const struct ami_trust_item *it = &a->items[i];
        label_of(a, it, label, sizeof(label));
        if (it->numeric) {
            add_entry(a, &b, &it->prefix, label, NULL);
            continue;
        }
        unsigned k = 0;
        while (k < a->nnames && strcmp(a->names[k], it->host) != 0)
            k++;
        const struct addrinfo *ai = NULL;
        int err = k < a->nnames && a->res ? resolver_result(a->res, k, &ai) : EAI_AGAIN;
        unsigned got = 0;
        for (; err == 0 && ai; ai = ai->ai_next) {
            struct addr ad;
            char buf[INET6_ADDRSTRLEN];
            if (getnameinfo(ai->ai_addr, ai->ai_addrlen, buf, sizeof(buf), NULL, 0,
                            NI_NUMERICHOST) != 0)
                continue;
            char *pct = strchr(buf, '%');
            if (pct)
                *pct = '\0';
            if (addr_parse(buf, strlen(buf), &ad) < 0)
                continue;
            struct addr_prefix p;
            addr_prefix_of(&ad, addr_max_len(&ad), &p);
            add_entry(a, &b, &p, label, it->host);
            got++;
        }
        if (got)
            continue;
        unresolved++;
        /* Not resolved now: the addresses it had last time stay. */
        for (unsigned j = 0; j < a->ncur; j++)
            if (strcmp(a->cur[j].host, it->host) == 0 && strcmp(a->cur[j].e.label, label) == 0)
                add_entry(a, &b, &a->cur[j].e.prefix, label, it->host);
        if (note(a, it->host))
            log_info("%s: %s did not resolve (%s)%s", a->session, it->host,
                     err == EAI_INPROGRESS ? "timed out" : gai_strerror(err),
                     a->ncur ? "; its last known addresses stay trusted" : "");
    }
    if (a->items_capped && !a->capped_logged) {
        a->capped_logged = true;
        log_warn("%s: Asterisk reports more than %u addresses or %u endpoints; only the first are "
                 "trusted",
                 a->session, AMI_LEARN_ENTRIES_MAX, AMI_LEARN_ENDPOINTS_MAX);
    }
    struct policy_wl_entry *out = calloc(b.n ? b.n : 1, sizeof(*out));
    if (!out) {
        free(b.v);
        log_err("%s: out of memory handing over the learned trust", a->session);
        return;
    }
    for (unsigned i = 0; i < b.n; i++)
        out[i] = b.v[i].e;
    log_changes(a, b.v, b.n);
    turn_notes(a);
    a->io.learned(a->io.data, out, b.n);
    free(out);
    free(a->cur);
    a->cur = b.v;
    a->ncur = b.n;
    a->st.entries = b.n;
    a->st.unresolved = unresolved;
    a->st.ignored = b.ignored;
    a->st.refreshed_ms = loop_wall_ms(a->loop);
    a->state = AMI_LEARN_OK;
    a->failed_logged = false;
    clear_work(a);
    if (a->rerun) {
        a->rerun = false;
        schedule(a, 0);
    } else {
        schedule_periodic(a);
    }
}

static void on_resolved(void *data)
{
    publish(data);
}

/* Every answer is in: resolve the host names among the items, then publish. */
static void collected(struct ami_learn *a)
{
    for (unsigned i = 0; i < a->nitems; i++) {
        const struct ami_trust_item *it = &a->items[i];
        if (it->numeric)
            continue;
        bool seen = false;
        for (unsigned k = 0; k < a->nnames && !seen; k++)
            seen = strcmp(a->names[k], it->host) == 0;
        if (seen || a->nnames == AMI_LEARN_NAMES_MAX)
            continue;
        if (!a->names)
            a->names = calloc(AMI_LEARN_NAMES_MAX, sizeof(*a->names));
        if (!a->names || !(a->names[a->nnames] = strdup(it->host)))
            break;
        a->nnames++;
    }
    if (a->nnames == 0) {
        publish(a);
        return;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM};
    a->res = resolver_start(a->loop, (const char *const *)a->names, a->nnames, NULL, &hints,
                            on_resolved, a);
    if (!a->res) {
        log_warn("%s: cannot resolve the trunks' host names: %s", a->session, strerror(errno));
        publish(a);
        return;
    }
    loop_timer_arm(a->loop, &a->t_deadline, RESOLVE_TIMEOUT_MS);
}

/* --- answers --- */

static void on_item(void *data, const struct ami_trust_item *item)
{
    struct ami_learn *a = data;
    if (a->nitems == AMI_LEARN_ENTRIES_MAX) {
        a->items_capped = true;
        return;
    }
    if (a->nitems == a->items_cap) {
        unsigned cap = a->items_cap ? a->items_cap * 2 : 32;
        struct ami_trust_item *v = realloc(a->items, cap * sizeof(*v));
        if (!v)
            return;
        a->items = v;
        a->items_cap = cap;
    }
    a->items[a->nitems++] = *item;
}

static void on_endpoint(void *data, const char *name, size_t len)
{
    struct ami_learn *a = data;
    if (a->nendpoints == AMI_LEARN_ENDPOINTS_MAX) {
        a->items_capped = true;
        return;
    }
    if (enqueue(a, A_ENDPOINT, name, len) == 0)
        a->nendpoints++;
}

/* Drops the refresh in progress; what was learned before stays in force. */
static void abandon(struct ami_learn *a, enum ami_learn_state state)
{
    a->gen++;
    clear_work(a);
    a->state = state;
}

static void denied(struct ami_learn *a, const char *what)
{
    abandon(a, AMI_LEARN_DENIED);
    if (a->denied_logged)
        return;
    a->denied_logged = true;
    log_warn("%s: Asterisk refused %s (\"Permission denied\"), so the trunks and static peers "
             "it talks to cannot be learned and stay bannable; detection and bans are not "
             "affected. To fix it, give the AMI user \"%s\" in Asterisk's manager.conf "
             "\"read = security,system\" and \"write = system\", run \"manager reload\" in "
             "Asterisk, and pbxguardd learns them at its next login; or set learn_trust = no "
             "in [%s] to stop asking",
             a->session, what, a->username, a->session);
}

static void unsupported(struct ami_learn *a, const char *msg)
{
    abandon(a, AMI_LEARN_UNSUPPORTED);
    if (a->unsupported_logged)
        return;
    a->unsupported_logged = true;
    log_warn("%s: the manager interface does not answer ModuleCheck (\"%s\"): no trust can be "
             "learned from it (Asterisk 12 or later answers it); detection is not affected",
             a->session, msg);
}

static struct inflight *find_inflight(struct ami_learn *a, const struct ami_frame *f)
{
    const struct ami_header *h = f->nheaders > 1 ? &f->headers[1] : NULL;
    if (!h || !(h->name_len == 8 && ami_caseeq(h->name, "ActionID", 8)))
        h = ami_frame_get(f, "ActionID");
    if (!h)
        return NULL;
    /* "pbxguard-trust-G-N" */
    const size_t plen = sizeof(AMI_LEARN_ACTION_ID) - 1;
    if (h->value_len <= plen || h->value_len > plen + 24)
        return NULL;
    char buf[32];
    memcpy(buf, h->value + plen, h->value_len - plen);
    buf[h->value_len - plen] = '\0';
    unsigned gen, seq;
    char end;
    if (sscanf(buf, "%u-%u%c", &gen, &seq, &end) != 2 || gen != a->gen)
        return NULL;
    for (unsigned i = 0; i < a->ninflight; i++)
        if (a->inflight[i].seq == seq)
            return &a->inflight[i];
    return NULL;
}

static void complete(struct ami_learn *a, struct inflight *f)
{
    free(f->act.arg);
    *f = a->inflight[--a->ninflight];
}

static bool message_is(const struct ami_frame *f, const char *text)
{
    const struct ami_header *m = ami_frame_get(f, "Message");
    size_t n = strlen(text);
    /* Some of Asterisk's messages end in a stray "\n" (astman_send_error_va(..."%s\n")), which
     * the framing has already taken: compare the start. */
    return m && m->value_len >= n && memcmp(m->value, text, n) == 0;
}

/* After the first answer of a refresh at login: no system event so far means read = system
 * is missing (Asterisk sends FullyBooted right after the login reply when it is there). */
static void check_reloads_followed(struct ami_learn *a)
{
    a->st.reloads_followed = a->saw_system;
    if (a->saw_system || a->noreload_logged)
        return;
    a->noreload_logged = true;
    log_warn("%s: no system events arrive, so Asterisk's reloads go unnoticed and the learned "
             "trust is refreshed only at login%s; give the AMI user \"%s\" \"read = "
             "security,system\" in manager.conf to follow reloads",
             a->session, a->refresh_ms > 0 ? " and every trust_refresh" : "", a->username);
}

static void on_response(struct ami_learn *a, struct inflight *f, const struct ami_frame *r)
{
    bool ok = ami_header_value_is(&r->headers[0], "Success");
    if (!ok && message_is(r, "Permission denied")) {
        denied(a, f->act.kind <= A_MOD_IAX ? "ModuleCheck" : "a trust query");
        return;
    }
    switch (f->act.kind) {
    case A_PROBE:
        if (!ok && !message_is(r, "Module not loaded")) {
            char msg[96];
            const struct ami_header *m = ami_frame_get(r, "Message");
            log_escape(m ? m->value : "", m ? m->value_len : 0, msg, sizeof(msg));
            unsupported(a, msg);
            return;
        }
        if (ok) {
            enqueue(a, A_MOD_OUTREG, NULL, 0);
            enqueue(a, A_ENDPOINTS, NULL, 0);
        }
        enqueue(a, A_MOD_SIP, NULL, 0);
        enqueue(a, A_MOD_IAX, NULL, 0);
        complete(a, f);
        return;
    case A_MOD_OUTREG:
    case A_MOD_SIP:
    case A_MOD_IAX:
        if (ok)
            enqueue(a,
                    f->act.kind == A_MOD_OUTREG ? A_REGS
                    : f->act.kind == A_MOD_SIP  ? A_SIPPEERS
                                                : A_IAXPEERS,
                    NULL, 0);
        complete(a, f);
        return;
    default:
        /* A list begins ("EventList: start") and ends with its Complete event; any other
         * answer (an error such as "No endpoints found", or an endpoint deleted meanwhile) ends
         * the action with nothing learned from it. */
        if (ok && ami_frame_get(r, "EventList"))
            return;
        complete(a, f);
        return;
    }
}

/* Whether a list event is one the action lists (or the end of its list): an address is taken
 * only from the answer to the question that asks for it. */
static bool event_fits(enum act_kind kind, const struct ami_frame *f)
{
    const struct ami_header *ev = &f->headers[0];
    const struct ami_header *list = ami_frame_get(f, "EventList");
    if (list && ami_header_value_is(list, "Complete"))
        return kind >= A_ENDPOINTS;
    switch (kind) {
    case A_ENDPOINTS:
        return ami_header_value_is(ev, "EndpointList");
    case A_ENDPOINT:
        return ami_header_value_is(ev, "IdentifyDetail") ||
               ami_header_value_is(ev, "ContactStatusDetail");
    case A_REGS:
        return ami_header_value_is(ev, "OutboundRegistrationDetail");
    case A_SIPPEERS:
    case A_IAXPEERS:
        return ami_header_value_is(ev, "PeerEntry");
    default:
        return false;
    }
}

void ami_learn_frame(struct ami_learn *a, const struct ami_frame *f)
{
    if (a->state != AMI_LEARN_RUNNING)
        return;
    struct inflight *x = find_inflight(a, f);
    if (!x)
        return;
    if (!a->answered) {
        a->answered = true;
        check_reloads_followed(a);
    }
    loop_timer_arm(a->loop, &a->t_deadline, (uint64_t)a->answer_timeout_ms);
    if (f->kind == AMI_FRAME_RESPONSE) {
        on_response(a, x, f);
    } else if (event_fits(x->act.kind, f)) {
        struct ami_trust_fns fns = {.item = on_item, .endpoint = on_endpoint};
        bool done = false;
        ami_trust_from_frame(f, &fns, a, &done);
        if (done)
            complete(a, x);
    }
    if (a->state == AMI_LEARN_RUNNING && !a->res)
        pump(a);
}

bool ami_learn_owns(const struct ami_frame *f)
{
    if (f->nheaders < 2 || (f->kind != AMI_FRAME_RESPONSE && f->kind != AMI_FRAME_EVENT))
        return false;
    const struct ami_header *h = &f->headers[1];
    const size_t plen = sizeof(AMI_LEARN_ACTION_ID) - 1;
    return h->name_len == 8 && ami_caseeq(h->name, "ActionID", 8) && h->value_len > plen &&
           memcmp(h->value, AMI_LEARN_ACTION_ID, plen) == 0;
}

/* --- triggers --- */

static void start_refresh(struct loop *l, void *data)
{
    struct ami_learn *a = data;
    if (!a->connected || a->state == AMI_LEARN_DENIED || a->state == AMI_LEARN_UNSUPPORTED)
        return;
    if (a->state == AMI_LEARN_RUNNING) {
        a->rerun = true;
        return;
    }
    a->gen++;
    clear_work(a);
    a->state = AMI_LEARN_RUNNING;
    a->answered = false;
    a->rerun = false;
    a->last_start_ms = loop_now_ms(l);
    loop_timer_cancel(l, &a->t_next);
    loop_timer_arm(l, &a->t_deadline, (uint64_t)a->answer_timeout_ms);
    if (enqueue(a, A_PROBE, NULL, 0) < 0) {
        abandon(a, AMI_LEARN_FAILED);
        return;
    }
    pump(a);
}

static void on_deadline(struct loop *l, void *data)
{
    struct ami_learn *a = data;
    if (a->state != AMI_LEARN_RUNNING)
        return;
    if (a->res) {
        /* The resolver is late: publish with what it has; the late names keep their last
         * addresses. */
        publish(a);
        return;
    }
    abandon(a, AMI_LEARN_FAILED);
    if (!a->failed_logged) {
        a->failed_logged = true;
        log_warn("%s: Asterisk did not answer the trust queries within %llds; the trust "
                 "learned before stays in force, and the next refresh tries again",
                 a->session, (long long)(a->answer_timeout_ms / 1000));
    }
    schedule_periodic(a);
}

void ami_learn_connected(struct ami_learn *a)
{
    a->connected = true;
    a->saw_system = false;
    if (a->state == AMI_LEARN_DENIED || a->state == AMI_LEARN_UNSUPPORTED)
        a->state = AMI_LEARN_IDLE; /* manager.conf may have been fixed: ask again */
    a->last_start_ms = 0;
    start_refresh(a->loop, a);
}

void ami_learn_disconnected(struct ami_learn *a)
{
    a->connected = false;
    loop_timer_cancel(a->loop, &a->t_next);
    if (a->state == AMI_LEARN_RUNNING)
        abandon(a, a->st.refreshed_ms ? AMI_LEARN_OK : AMI_LEARN_IDLE);
}

void ami_learn_system_event(struct ami_learn *a, const struct ami_frame *f)
{
    a->saw_system = true;
    const struct ami_header *ev = &f->headers[0];
    static const char *const triggers[] = {"Reload", "Load", "Unload", "FullyBooted"};
    bool trigger = false;
    for (size_t i = 0; i < sizeof(triggers) / sizeof(triggers[0]) && !trigger; i++)
        trigger = ami_header_value_is(ev, triggers[i]);
    if (!trigger || !a->connected)
        return;
    if (a->state == AMI_LEARN_RUNNING) {
        /* Before the first answer, the running refresh is asked after the event: it sees the
         * new configuration already. */
        if (a->answered)
            a->rerun = true;
        return;
    }
    schedule(a, (uint64_t)a->trigger_delay_ms);
}

/* --- lifecycle --- */

struct ami_learn *ami_learn_new(struct loop *l, const char *session, const char *username,
                                int64_t refresh_ms, struct ami_learn_io io)
{
    if (!io.send || !io.learned) {
        errno = EINVAL;
        return NULL;
    }
    struct ami_learn *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->loop = l;
    snprintf(a->session, sizeof(a->session), "%s", session);
    snprintf(a->username, sizeof(a->username), "%s", username);
    a->refresh_ms = refresh_ms;
    a->io = io;
    a->answer_timeout_ms = ANSWER_TIMEOUT_MS;
    a->spacing_ms = MIN_SPACING_MS;
    a->trigger_delay_ms = TRIGGER_DELAY_MS;
    loop_timer_init(&a->t_deadline, on_deadline, a);
    loop_timer_init(&a->t_next, start_refresh, a);
    return a;
}

void ami_learn_free(struct ami_learn *a)
{
    if (!a)
        return;
    clear_work(a);
    loop_timer_cancel(a->loop, &a->t_next);
    free(a->queue);
    free(a->items);
    free(a->cur);
    free_notes(a->noted, a->nnoted);
    free_notes(a->noting, a->nnoting);
    free(a);
}

void ami_learn_get_status(const struct ami_learn *a, struct ami_learn_status *ret_status)
{
    *ret_status = a->st;
    ret_status->state = a->state;
}

void ami_learn_set_timing(struct ami_learn *a, int64_t answer_timeout_ms, int64_t spacing_ms,
                          int64_t trigger_delay_ms)
{
    a->answer_timeout_ms = answer_timeout_ms;
    a->spacing_ms = spacing_ms;
    a->trigger_delay_ms = trigger_delay_ms;
}
