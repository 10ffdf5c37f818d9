/* Fuzzes the security log reader and line parser with arbitrary file contents, fed in chunks
 * whose size comes from the input (so every split point gets exercised). Checks the promises:
 * every byte is taken and accounted for (lines + the unfinished one), lines hold no newline and
 * respect the bound, events stay within their bounds, an event's RemoteAddress is the text of a
 * RemoteAddress field of the line, parsing a line again gives the same answer, and no
 * ExpectedResponse value survives a parse. Aborts on a violation.
 * Input: byte 0 = chunk size (0 = everything at once); the rest is the file. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ami_event.h"
#include "seclog_line.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct seclog_reader reader;
static char copy[SECLOG_LINE_MAX];

static void check_endpoint(const struct sec_endpoint *ep)
{
    if (ep->addr.family != AF_INET && ep->addr.family != AF_INET6)
        abort();
    if ((unsigned)ep->transport > SEC_TRANSPORT_WSS || !memchr(ep->scope, '\0', sizeof(ep->scope)))
        abort();
}

static void check_event(const struct sec_event *ev)
{
    if ((unsigned)ev->type >= SEC_EVENT_TYPE_COUNT)
        abort();
    if (!memchr(ev->service, '\0', sizeof(ev->service)) ||
        !memchr(ev->account, '\0', sizeof(ev->account)) ||
        !memchr(ev->session, '\0', sizeof(ev->session)) ||
        !memchr(ev->source, '\0', sizeof(ev->source)))
        abort();
    check_endpoint(&ev->remote);
    if (ev->has_local)
        check_endpoint(&ev->local);
}

/* The proven address is the value of some `RemoteAddress="...` field of the line. */
static void check_remote_is_in_line(const char *line, size_t len, const struct sec_event *ev)
{
    static const char tag[] = "RemoteAddress=\"";
    const char *p = line, *e = line + len;
    while ((p = memmem(p, (size_t)(e - p), tag, sizeof(tag) - 1))) {
        p += sizeof(tag) - 1;
        const char *q = memchr(p, '"', (size_t)(e - p));
        struct sec_endpoint ep;
        if (q && ami_event_parse_address(p, (size_t)(q - p), &ep) == 0 &&
            memcmp(&ep, &ev->remote, sizeof(ep)) == 0)
            return;
    }
    abort();
}

/* In the body (from the first `SecurityEvent="`: the date before it is the admin's format). */
static void check_wiped(const char *line, size_t len)
{
    static const char tag[] = "\",ExpectedResponse=\"";
    const char *p = memmem(line, len, "SecurityEvent=\"", 15), *e = line + len;
    if (!p)
        abort();
    while ((p = memmem(p, (size_t)(e - p), tag, sizeof(tag) - 1))) {
        p += sizeof(tag) - 1;
        for (; p < e && *p != '"'; p++)
            if (*p != '*')
                abort();
    }
}

static void check_line(char *line, size_t len)
{
    struct sec_event ev, again;
    struct seclog_line_info info, info2;
    enum seclog_line_result r = seclog_line_parse(line, len, "seclog:fuzz", &ev, &info);
    if (r == SECLOG_LINE_EVENT) {
        check_event(&ev);
        check_remote_is_in_line(line, len, &ev);
    } else if (r == SECLOG_LINE_MALFORMED) {
        if (info.bad <= SECLOG_BAD_NONE || info.bad >= SECLOG_BAD_COUNT)
            abort();
    } else if (r != SECLOG_LINE_OTHER) {
        abort();
    }
    if (r != SECLOG_LINE_OTHER)
        check_wiped(line, len);
    /* Wiping changes no quote: the answer is the same the second time. (Except where the wipe
     * covers the evidence itself, a second record or a NUL byte inside a value: the first
     * answer, the one that counts, was "malformed" then.) */
    if (info.bad == SECLOG_BAD_TWO_RECORDS || info.bad == SECLOG_BAD_NUL)
        return;
    memcpy(copy, line, len);
    enum seclog_line_result r2 = seclog_line_parse(copy, len, "seclog:fuzz", &again, &info2);
    if (r2 != r || info2.bad != info.bad || info2.injected != info.injected)
        abort();
    if (r == SECLOG_LINE_EVENT && memcmp(&ev, &again, sizeof(ev)) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = data[0] ? data[0] : size;
    data++;
    size--;
    seclog_reader_init(&reader, 0, NULL, 0);
    size_t off = 0;
    uint64_t consumed = 0;
    struct seclog_chunk c;
    for (unsigned turns = 0; off < size && turns < 4 * size + 16; turns++) {
        size_t room;
        char *dst = seclog_reader_space(&reader, &room);
        if (room == 0)
            abort(); /* the reader must always make room once its lines are pulled */
        size_t n = size - off < chunk ? size - off : chunk;
        if (n > room)
            n = room;
        memcpy(dst, data + off, n);
        seclog_reader_commit(&reader, n);
        off += n;
        while (seclog_reader_next(&reader, &c)) {
            if (c.len > SECLOG_LINE_MAX || memchr(c.data, '\n', c.len))
                abort();
            if (!c.oversized) {
                if (c.end_off <= consumed)
                    abort();
                consumed = c.end_off;
            }
            check_line(c.data, c.len);
        }
    }
    if (off != size)
        abort();
    if (seclog_reader_offset(&reader) < consumed || seclog_reader_offset(&reader) > size)
        abort();
    if (!reader.skipping && seclog_reader_offset(&reader) + seclog_reader_pending(&reader) != size)
        abort();
    return 0;
}
