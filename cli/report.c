/* The report's data model and the parsing of report times. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "report.h"

/* Local time's offset from UTC at t, in seconds east. */
static int64_t local_offset(int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!localtime_r(&tt, &tm))
        return 0;
    return tm.tm_gmtoff;
}

int report_init(struct report *r, int64_t from, int64_t to)
{
    if (to <= from)
        return -EINVAL;
    memset(r, 0, sizeof(*r));
    r->from = from;
    r->to = to;

    /* An hourly chart reads well up to a week; beyond that days, then weeks. */
    int64_t len = to - from;
    if (len <= 7 * 86400)
        r->bucket_s = 3600;
    else if (len <= 400 * 86400)
        r->bucket_s = 86400;
    else
        r->bucket_s = 7 * 86400;

    int64_t local = from + local_offset(from);
    int64_t rem = local % r->bucket_s;
    if (rem < 0)
        rem += r->bucket_s;
    r->bucket_start = from - rem;
    int64_t n = (to - r->bucket_start + r->bucket_s - 1) / r->bucket_s;
    if (n <= 0 || n > 100000)
        return -EINVAL;
    r->buckets = calloc((size_t)n, sizeof(*r->buckets));
    if (!r->buckets)
        return -ENOMEM;
    r->nbuckets = (unsigned)n;
    return 0;
}

void report_release(struct report *r)
{
    if (!r)
        return;
    free(r->ban_reasons);
    free(r->by_service);
    free(r->top);
    free(r->accounts);
    free(r->new_sources);
    free(r->buckets);
    free(r->incidents);
    free(r->runs);
    memset(r, 0, sizeof(*r));
}

/* Grows *arr (of n elements of size sz) by one zeroed element; returns it or NULL. */
static void *grow(void *arr_ptr, unsigned *n, size_t sz)
{
    void **arr = arr_ptr;
    if (*n >= 1000000)
        return NULL;
    char *p = realloc(*arr, (*n + 1) * sz);
    if (!p)
        return NULL;
    *arr = p;
    char *e = p + (size_t)*n * sz;
    memset(e, 0, sz);
    (*n)++;
    return e;
}

static void copy_str(char *dst, size_t dstlen, const char *src)
{
    size_t len = src ? strnlen(src, dstlen - 1) : 0;
    if (len)
        memcpy(dst, src, len);
    dst[len] = '\0';
}

int report_add_count(struct report_count **arr, unsigned *n, const char *name, uint64_t count)
{
    struct report_count *c = grow(arr, n, sizeof(**arr));
    if (!c)
        return -ENOMEM;
    copy_str(c->name, sizeof(c->name), name);
    c->n = count;
    return 0;
}

int report_add_source(struct report *r, const struct report_source *s)
{
    struct report_source *d = grow(&r->top, &r->ntop, sizeof(*r->top));
    if (!d)
        return -ENOMEM;
    *d = *s;
    d->key[sizeof(d->key) - 1] = '\0';
    if (d->nservices > REPORT_SERVICES_MAX)
        d->nservices = REPORT_SERVICES_MAX;
    for (unsigned i = 0; i < d->nservices; i++)
        d->services[i][SEC_SERVICE_MAX - 1] = '\0';
    return 0;
}

int report_add_account(struct report *r, const char *name, uint64_t attempts, uint64_t sources)
{
    struct report_account *a = grow(&r->accounts, &r->naccounts, sizeof(*r->accounts));
    if (!a)
        return -ENOMEM;
    copy_str(a->name, sizeof(a->name), name);
    a->attempts = attempts;
    a->sources = sources;
    return 0;
}

int report_add_new_source(struct report *r, const char *key, int64_t first_seen, uint64_t attempts)
{
    struct report_new_source *s = grow(&r->new_sources, &r->nnew_sources, sizeof(*r->new_sources));
    if (!s)
        return -ENOMEM;
    copy_str(s->key, sizeof(s->key), key);
    s->first_seen = first_seen;
    s->attempts = attempts;
    return 0;
}

int report_add_run(struct report *r, const struct report_run *run)
{
    struct report_run *d = grow(&r->runs, &r->nruns, sizeof(*r->runs));
    if (!d)
        return -ENOMEM;
    *d = *run;
    d->version[sizeof(d->version) - 1] = '\0';
    d->config[sizeof(d->config) - 1] = '\0';
    d->reason[sizeof(d->reason) - 1] = '\0';
    return 0;
}

/* Reads exactly n digits; returns the value or -1. */
static int digits(const char **p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *p += n;
    return v;
}

int report_time_parse(const char *s, int64_t *ret_time)
{
    struct tm tm = {0};
    const char *p = s;
    int y, mo, d, h = 0, mi = 0, sec = 0;

    if (!s)
        return -EINVAL;
    if ((y = digits(&p, 4)) < 0 || *p++ != '-' || (mo = digits(&p, 2)) < 0 || *p++ != '-' ||
        (d = digits(&p, 2)) < 0)
        return -EINVAL;
    if (*p == 'T' || *p == ' ') {
        p++;
        if ((h = digits(&p, 2)) < 0 || *p++ != ':' || (mi = digits(&p, 2)) < 0)
            return -EINVAL;
        if (*p == ':') {
            p++;
            if ((sec = digits(&p, 2)) < 0)
                return -EINVAL;
        }
    }

    bool has_offset = false;
    int64_t offset = 0;
    if (*p == 'Z') {
        has_offset = true;
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1;
        int oh, om;
        if ((oh = digits(&p, 2)) < 0)
            return -EINVAL;
        if (*p == ':')
            p++;
        if ((om = digits(&p, 2)) < 0 || oh > 23 || om > 59)
            return -EINVAL;
        has_offset = true;
        offset = sign * (oh * 3600 + om * 60);
    }
    if (*p)
        return -EINVAL;

    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 ||
        sec > 60)
        return -EINVAL;
    if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return -EINVAL;

    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    int64_t t;
    if (has_offset) {
        t = (int64_t)timegm(&tm) - offset;
    } else {
        tm.tm_isdst = -1;
        time_t tt = mktime(&tm);
        if (tt == (time_t)-1)
            return -EINVAL;
        t = tt;
    }
    *ret_time = t;
    return 0;
}
