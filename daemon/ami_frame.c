#include <string.h>

#include "ami_frame.h"

void ami_parser_init(struct ami_parser *p, bool expect_banner)
{
    p->start = p->scan = p->end = 0;
    p->want_banner = expect_banner;
    p->discarding = false;
    p->discard_bol = false;
    p->emitted = false;
    memset(&p->stats, 0, sizeof(p->stats));
    p->frame.kind = AMI_FRAME_OTHER;
    p->frame.nheaders = 0;
}

/* The frame last returned is gone once the caller comes back; start collecting a new one. */
static void forget_emitted(struct ami_parser *p)
{
    if (p->emitted) {
        p->frame.nheaders = 0;
        p->emitted = false;
    }
}

/* Moves the unconsumed bytes to the front, fixing the pointers of the headers collected so far
 * for the frame in progress. */
static void compact(struct ami_parser *p)
{
    size_t shift = p->start;
    if (shift == 0)
        return;
    memmove(p->buf, p->buf + shift, p->end - shift);
    p->end -= shift;
    p->scan -= shift;
    p->start = 0;
    for (unsigned i = 0; i < p->frame.nheaders; i++) {
        p->frame.headers[i].name -= shift;
        p->frame.headers[i].value -= shift;
    }
}

char *ami_parser_space(struct ami_parser *p, size_t *ret_len)
{
    forget_emitted(p);
    compact(p);
    *ret_len = sizeof(p->buf) - p->end;
    return p->buf + p->end;
}

void ami_parser_commit(struct ami_parser *p, size_t n)
{
    if (n > sizeof(p->buf) - p->end)
        n = sizeof(p->buf) - p->end;
    p->end += n;
    p->stats.bytes += n;
}

size_t ami_parser_feed(struct ami_parser *p, const void *data, size_t len)
{
    size_t room;
    char *dst = ami_parser_space(p, &room);
    if (len > room)
        len = room;
    memcpy(dst, data, len);
    ami_parser_commit(p, len);
    return len;
}

/* Enters discard mode for the frame in progress; bytes are dropped up to its blank line. */
static void start_discard(struct ami_parser *p, enum ami_discard reason, bool at_bol)
{
    p->stats.discarded++;
    p->stats.by_reason[reason]++;
    p->discarding = true;
    p->discard_bol = at_bol;
    p->frame.nheaders = 0;
    /* The bad frame may hold an ExpectedResponse line (the correct MD5 key) that was never
     * parsed, so never wiped: wipe what was read of it. */
    memset(p->buf + p->start, 0, p->scan - p->start);
    p->start = p->scan;
}

static bool skip_discarded_bytes(struct ami_parser *p);

/* Skips bytes up to and including the blank line that ends the bad frame. Returns true once in
 * sync again, false if more bytes are needed (everything consumed so far is dropped). The
 * skipped bytes are wiped, as in start_discard(). */
static bool skip_discarded(struct ami_parser *p)
{
    size_t from = p->scan;
    bool synced = skip_discarded_bytes(p);
    memset(p->buf + from, 0, p->scan - from);
    return synced;
}

static bool skip_discarded_bytes(struct ami_parser *p)
{
    while (p->scan < p->end) {
        if (p->discard_bol) {
            char c = p->buf[p->scan];
            if (c == '\n') {
                p->scan++;
                p->discarding = false;
                p->start = p->scan;
                return true;
            }
            if (c == '\r') {
                if (p->scan + 1 == p->end)
                    break; /* "\r" then maybe "\n": keep it and wait */
                if (p->buf[p->scan + 1] == '\n') {
                    p->scan += 2;
                    p->discarding = false;
                    p->start = p->scan;
                    return true;
                }
            }
        }
        const char *nl = memchr(p->buf + p->scan, '\n', p->end - p->scan);
        if (!nl) {
            p->scan = p->end;
            p->discard_bol = false;
            break;
        }
        p->scan = (size_t)(nl - p->buf) + 1;
        p->discard_bol = true;
    }
    p->start = p->scan;
    return false;
}

static const struct ami_frame *emit(struct ami_parser *p, enum ami_frame_kind kind)
{
    p->frame.kind = kind;
    p->emitted = true;
    p->start = p->scan;
    p->stats.frames++;
    return &p->frame;
}

static enum ami_frame_kind kind_of(const struct ami_header *h)
{
    if (h->name_len == 5 && ami_caseeq(h->name, "Event", 5))
        return AMI_FRAME_EVENT;
    if (h->name_len == 8 && ami_caseeq(h->name, "Response", 8))
        return AMI_FRAME_RESPONSE;
    return AMI_FRAME_OTHER;
}

/* Header names whose values are secrets: told apart by length first, so the common header
 * costs one switch. */
static bool is_secret(const char *name, size_t len)
{
    switch (len) {
    case 7:
        return ami_caseeq(name, "Md5Cred", 7);
    case 8:
        return ami_caseeq(name, "Password", 8);
    case 11:
        return ami_caseeq(name, "OauthSecret", 11);
    case 12:
        return ami_caseeq(name, "RefreshToken", 12);
    case 14:
        return ami_caseeq(name, "PasswordDigest", 14);
    case 16:
        return ami_caseeq(name, "ExpectedResponse", 16);
    }
    return false;
}

const struct ami_frame *ami_parser_next(struct ami_parser *p)
{
    forget_emitted(p);
    for (;;) {
        if (p->discarding && !skip_discarded(p))
            return NULL;

        size_t line = p->scan;
        const char *nl = memchr(p->buf + line, '\n', p->end - line);
        if (!nl) {
            if (p->end - line > AMI_LINE_MAX) {
                p->scan = p->end;
                start_discard(p, AMI_DISCARD_LINE_TOO_LONG, false);
                continue;
            }
            if (p->end - p->start >= sizeof(p->buf)) {
                /* The buffer holds nothing but this frame and it still has not ended. */
                bool bol = p->scan == p->end;
                p->scan = p->end;
                start_discard(p, AMI_DISCARD_FRAME_TOO_BIG, bol);
                continue;
            }
            return NULL;
        }
        size_t len = (size_t)(nl - (p->buf + line));
        p->scan = line + len + 1;
        if (len > 0 && p->buf[line + len - 1] == '\r')
            len--;
        const char *s = p->buf + line;

        if (len > AMI_LINE_MAX) {
            start_discard(p, AMI_DISCARD_LINE_TOO_LONG, true);
            continue;
        }
        if (p->want_banner) {
            p->want_banner = false;
            p->frame.nheaders = 1;
            p->frame.headers[0] = (struct ami_header){
                .name = s, .name_len = 0, .value = s, .value_len = (uint32_t)len};
            return emit(p, AMI_FRAME_BANNER);
        }
        if (len == 0) {
            if (p->frame.nheaders == 0) {
                p->start = p->scan; /* a stray blank line between frames */
                continue;
            }
            return emit(p, kind_of(&p->frame.headers[0]));
        }
        const char *colon = memchr(s, ':', len);
        if (!colon) {
            start_discard(p, AMI_DISCARD_NO_COLON, true);
            continue;
        }
        if (p->frame.nheaders == AMI_HEADERS_MAX) {
            start_discard(p, AMI_DISCARD_TOO_MANY_HEADERS, true);
            continue;
        }
        struct ami_header *h = &p->frame.headers[p->frame.nheaders++];
        const char *v = colon + 1, *e = s + len;
        while (v < e && (*v == ' ' || *v == '\t'))
            v++;
        h->name = s;
        h->name_len = (uint32_t)(colon - s);
        h->value = v;
        h->value_len = (uint32_t)(e - v);
        if (is_secret(s, h->name_len)) {
            memset((char *)v, 0, h->value_len);
            h->value_len = 0;
        }
    }
}

const struct ami_header *ami_frame_get(const struct ami_frame *f, const char *name)
{
    size_t len = strlen(name);
    for (unsigned i = 0; i < f->nheaders; i++) {
        const struct ami_header *h = &f->headers[i];
        if (h->name_len == len && ami_caseeq(h->name, name, len))
            return h;
    }
    return NULL;
}

bool ami_header_value_is(const struct ami_header *h, const char *s)
{
    size_t len = strlen(s);
    return h->value_len == len && memcmp(h->value, s, len) == 0;
}

bool ami_frame_is_security(const struct ami_frame *f)
{
    return ami_frame_has_class(f, "security");
}

bool ami_frame_has_class(const struct ami_frame *f, const char *cls)
{
    if (f->kind != AMI_FRAME_EVENT)
        return false;
    size_t clen = strlen(cls);
    /* Privilege comes right after Event on every event Asterisk writes; look there first. */
    const struct ami_header *h = NULL;
    if (f->nheaders > 1 && f->headers[1].name_len == 9 &&
        ami_caseeq(f->headers[1].name, "Privilege", 9))
        h = &f->headers[1];
    else
        h = ami_frame_get(f, "Privilege");
    if (!h)
        return false;
    /* A comma-separated list of classes: "security,all". */
    const char *v = h->value, *e = h->value + h->value_len;
    while (v < e) {
        const char *comma = memchr(v, ',', (size_t)(e - v));
        size_t n = comma ? (size_t)(comma - v) : (size_t)(e - v);
        if (n == clen && memcmp(v, cls, clen) == 0)
            return true;
        if (!comma)
            break;
        v = comma + 1;
    }
    return false;
}

const char *ami_discard_name(enum ami_discard reason)
{
    switch (reason) {
    case AMI_DISCARD_LINE_TOO_LONG:
        return "line too long";
    case AMI_DISCARD_TOO_MANY_HEADERS:
        return "too many headers";
    case AMI_DISCARD_FRAME_TOO_BIG:
        return "frame too big";
    case AMI_DISCARD_NO_COLON:
        return "line without a colon";
    case AMI_DISCARD_COUNT:
        break;
    }
    return "?";
}
