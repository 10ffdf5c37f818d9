#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ami_event.h"
#include "ami_frame.h"
#include "seclog_line.h"

#define FIX "fixtures/ami/"
#define MAX_EVENTS 128

static char *slurp(const char *path, size_t *ret_len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *ret_len = (size_t)n;
    return buf;
}

static unsigned ami_events(const char *path, struct sec_event *out, unsigned max)
{
    size_t len;
    char *data = slurp(path, &len);
    struct ami_parser *p = malloc(sizeof(*p));
    assert_non_null(p);
    ami_parser_init(p, true);
    unsigned n = 0;
    size_t off = 0;
    while (off < len) {
        off += ami_parser_feed(p, data + off, len - off);
        const struct ami_frame *f;
        while ((f = ami_parser_next(p))) {
            struct sec_event ev;
            if (ami_event_from_frame(f, "x", &ev, NULL) == AMI_EVENT_OK) {
                assert_true(n < max);
                out[n++] = ev;
            }
        }
    }
    free(p);
    free(data);
    return n;
}

/* Every line of the fixture log, through the reader (the way the source reads files). */
static unsigned log_events(const char *path, struct sec_event *out, unsigned max,
                           unsigned *ret_other, size_t chunk)
{
    size_t len;
    char *data = slurp(path, &len);
    struct seclog_reader *r = malloc(sizeof(*r));
    assert_non_null(r);
    seclog_reader_init(r, 0, NULL, 0);
    unsigned n = 0, other = 0;
    size_t off = 0;
    struct seclog_chunk c;
    while (off < len) {
        size_t room;
        char *dst = seclog_reader_space(r, &room);
        size_t k = len - off < room ? len - off : room;
        if (k > chunk)
            k = chunk;
        memcpy(dst, data + off, k);
        seclog_reader_commit(r, k);
        off += k;
        while (seclog_reader_next(r, &c)) {
            struct sec_event ev;
            struct seclog_line_info info;
            enum seclog_line_result res = seclog_line_parse(c.data, c.len, "x", &ev, &info);
            if (res == SECLOG_LINE_EVENT) {
                assert_true(n < max);
                assert_false(info.injected);
                out[n++] = ev;
            } else {
                assert_int_equal(res, SECLOG_LINE_OTHER);
                other++;
            }
        }
    }
    assert_int_equal(seclog_reader_offset(r), len);
    assert_int_equal(seclog_reader_pending(r), 0);
    free(r);
    free(data);
    *ret_other = other;
    return n;
}

/* The golden test: the log and the AMI capture were taken from the same Asterisk at the same
 * time; every log line must normalize to exactly its AMI twin. */
static void every_log_line_matches_its_ami_twin(void **state)
{
    static struct sec_event ami[MAX_EVENTS], log[MAX_EVENTS];
    unsigned na = ami_events(FIX "asterisk20-ipv4-session.raw", ami, MAX_EVENTS);
    size_t chunks[] = {1, 7, 300, 1 << 20};
    for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
        unsigned other;
        unsigned nl =
            log_events(FIX "asterisk20-ipv4-security.log", log, MAX_EVENTS, &other, chunks[c]);
        assert_int_equal(na, 60);
        assert_int_equal(nl, na);
        assert_int_equal(other, 1); /* Asterisk's banner line */
        for (unsigned i = 0; i < na; i++) {
            if (memcmp(&ami[i], &log[i], sizeof(ami[i])) != 0) {
                char a[ADDR_STRLEN], b[ADDR_STRLEN];
                fail_msg("line %u: log %s %s %s:%u [%s] [%s] %lld != AMI %s %s %s:%u [%s] [%s] "
                         "%lld",
                         i, sec_event_type_name(log[i].type), log[i].service,
                         addr_format(&log[i].remote.addr, a, sizeof(a)), log[i].remote.port,
                         log[i].account, log[i].session, (long long)log[i].event_tv_ms,
                         sec_event_type_name(ami[i].type), ami[i].service,
                         addr_format(&ami[i].remote.addr, b, sizeof(b)), ami[i].remote.port,
                         ami[i].account, ami[i].session, (long long)ami[i].event_tv_ms);
            }
        }
    }
}

/* --- hostile lines --- */

#define PREFIX "[2026-11-26 09:01:49.010] SECURITY[11270] res_security_log.c: "
#define AMI_HEAD                                                                                   \
    "SecurityEvent=\"InvalidAccountID\",EventTV=\"2026-11-26T09:01:49.010+0000\","                 \
    "Severity=\"Error\",Service=\"AMI\",EventVersion=\"1\",AccountID=\""
#define AMI_TAIL                                                                                   \
    "\",SessionID=\"0x7fdb10f3c3e0\",LocalAddress=\"IPV4/TCP/127.0.0.1/5038\","                    \
    "RemoteAddress=\"IPV4/TCP/198.51.100.66/49129\",SessionTV=\"1970-01-01T00:00:00.000+0000\""
#define ATTACKER "198.51.100.66"
#define VICTIM "203.0.113.5"

static enum seclog_line_result parse_text(const char *text, size_t len, struct sec_event *ev,
                                          struct seclog_line_info *info)
{
    char *copy = malloc(len + 1);
    assert_non_null(copy);
    memcpy(copy, text, len);
    memset(ev, 0, sizeof(*ev));
    enum seclog_line_result r = seclog_line_parse(copy, len, "seclog:t", ev, info);
    free(copy);
    return r;
}

static enum seclog_line_result parse_account(const char *account, struct sec_event *ev,
                                             struct seclog_line_info *info)
{
    char line[20000];
    int n = snprintf(line, sizeof(line), "%s%s%s%s", PREFIX, AMI_HEAD, account, AMI_TAIL);
    assert_true(n > 0 && (size_t)n < sizeof(line));
    return parse_text(line, (size_t)n, ev, info);
}

static void assert_remote(const struct sec_event *ev, const char *want)
{
    char a[ADDR_STRLEN];
    assert_string_equal(addr_format(&ev->remote.addr, a, sizeof(a)), want);
}

static void plain_line_is_an_event(void **state)
{
    struct sec_event ev;
    struct seclog_line_info info;
    assert_int_equal(parse_account("hacker", &ev, &info), SECLOG_LINE_EVENT);
    assert_remote(&ev, ATTACKER);
    assert_int_equal(ev.remote.port, 49129);
    assert_int_equal(ev.type, SEC_INVALID_ACCOUNT_ID);
    assert_string_equal(ev.account, "hacker");
    assert_string_equal(ev.source, "seclog:t");
    assert_false(info.injected);
    assert_true(info.date.valid && info.date.has_year);
    assert_int_equal(info.date.ms, 10);
}

/* The issue's own example: an AMI login as `x",RemoteAddress="IPV4/TCP/203.0.113.5/5038`. */
static void injected_remote_address_counts_for_the_attacker(void **state)
{
    struct sec_event ev;
    struct seclog_line_info info;
    const char *acct = "x\",RemoteAddress=\"IPV4/TCP/" VICTIM "/5038";
    assert_int_equal(parse_account(acct, &ev, &info), SECLOG_LINE_EVENT);
    assert_remote(&ev, ATTACKER);
    assert_true(info.injected);
    assert_string_equal(ev.account, acct);
    assert_string_equal(ev.session, "0x7fdb10f3c3e0");
}

static void injected_service_is_ignored(void **state)
{
    struct sec_event ev;
    struct seclog_line_info info;
    assert_int_equal(parse_account("x\",Service=\"PJSIP", &ev, &info), SECLOG_LINE_EVENT);
    assert_string_equal(ev.service, "AMI");
    assert_remote(&ev, ATTACKER);
    assert_true(info.injected);
}

/* A whole fake tail planted in AccountID: Asterisk's own fields still come last, and the only
 * reading that fits puts the fake ones inside AccountID. */
static void injected_fake_tail_counts_for_the_attacker(void **state)
{
    struct sec_event ev;
    struct seclog_line_info info;
    const char *acct = "x\",SessionID=\"1\",LocalAddress=\"IPV4/TCP/127.0.0.1/5038\","
                       "RemoteAddress=\"IPV4/TCP/" VICTIM "/5038\","
                       "SessionTV=\"1970-01-01T00:00:00.000+0000";
    assert_int_equal(parse_account(acct, &ev, &info), SECLOG_LINE_EVENT);
    assert_remote(&ev, ATTACKER);
    assert_true(ev.account_truncated);
    assert_memory_equal(ev.account, acct, SEC_ACCOUNT_MAX - 1);
}

/* The same, ending in a field a client may fill (Module) that could swallow Asterisk's tail:
 * two readings, two addresses. Nobody is counted, and the counter says why. */
static void two_readings_prove_nothing(void **state)
{
    struct sec_event ev;
    struct seclog_line_info info;
    const char *acct = "x\",SessionID=\"1\",LocalAddress=\"IPV4/TCP/127.0.0.1/5038\","
                       "RemoteAddress=\"IPV4/TCP/" VICTIM "/5038\",Module=\"m";
    assert_int_equal(parse_account(acct, &ev, &info), SECLOG_LINE_MALFORMED);
    assert_int_equal(info.bad, SECLOG_BAD_AMBIGUOUS);
}

/* PJSIP: the Call-ID (SessionID) and the digest fields after RemoteAddress are the client's. */
static void call_id_and_digest_injection_is_ambiguous(void **state)
{
    const char *line = PREFIX
        "SecurityEvent=\"ChallengeResponseFailed\",EventTV=\"2026-11-26T09:02:12.067+0000\","
        "Severity=\"Error\",Service=\"PJSIP\",EventVersion=\"1\",AccountID=\"1001\","
        "SessionID=\"s\",LocalAddress=\"IPV4/UDP/127.0.0.1/5060\",RemoteAddress=\"IPV4/UDP/" VICTIM
        "/5060\",Challenge=\"c\",Response=\"r\",LocalAddress=\"IPV4/UDP/127.0.0.1/"
        "5060\",RemoteAddress=\"IPV4/UDP/" ATTACKER "/5060\",Challenge=\"n\","
        "Response=\"d\",ExpectedResponse=\"\"";
    struct sec_event ev;
    struct seclog_line_info info;
    assert_int_equal(parse_text(line, strlen(line), &ev, &info), SECLOG_LINE_MALFORMED);
    assert_int_equal(info.bad, SECLOG_BAD_AMBIGUOUS);
}

/* A fake RemoteAddress after the real one (an AMI action name is the client's) cannot take its
 * place: fields come in a fixed order. */
static void injection_after_the_address_counts_for_the_attacker(void **state)
{
    const char *line =
        PREFIX "SecurityEvent=\"RequestBadFormat\",EventTV=\"2026-11-26T09:02:03.937+0000\","
               "Severity=\"Error\",Service=\"AMI\",EventVersion=\"1\",SessionID=\"0x7fdb28001460\","
               "LocalAddress=\"IPV4/TCP/127.0.0.1/5038\",RemoteAddress=\"IPV4/TCP/" ATTACKER
               "/53952\",RequestType=\"Action: x\",RemoteAddress=\"IPV4/TCP/" VICTIM "/5038\","
               "SessionTV=\"1970-01-01T00:00:00.000+0000\",AccountID=\"\"";
    struct sec_event ev;
    struct seclog_line_info info;
    assert_int_equal(parse_text(line, strlen(line), &ev, &info), SECLOG_LINE_EVENT);
    assert_remote(&ev, ATTACKER);
    assert_true(info.injected);
}

static void trailing_backslash_is_data(void **state)
{
    struct sec_event ev;
    struct seclog_line_info info;
    assert_int_equal(parse_account("x\\", &ev, &info), SECLOG_LINE_EVENT);
    assert_string_equal(ev.account, "x\\");
    assert_remote(&ev, ATTACKER);
    assert_false(info.injected);
}

static void lone_quote_is_data(void **state)
{
    struct sec_event ev;
    struct seclog_line_info info;
    assert_int_equal(parse_account("\"", &ev, &info), SECLOG_LINE_EVENT);
    assert_string_equal(ev.account, "\"");
    assert_remote(&ev, ATTACKER);
    assert_int_equal(parse_account("\"\"\",", &ev, &info), SECLOG_LINE_EVENT);
    assert_string_equal(ev.account, "\"\"\",");
}

static void invalid_utf8_is_data(void **state)
{
    struct sec_event ev;
    struct seclog_line_info info;
    assert_int_equal(parse_account("\xff\xfe\xc3(", &ev, &info), SECLOG_LINE_EVENT);
    assert_string_equal(ev.account, "\xff\xfe\xc3(");
    assert_remote(&ev, ATTACKER);
}

static void long_account_is_truncated_not_rejected(void **state)
{
    char acct[4001];
    memset(acct, 'A', 4000);
    acct[4000] = '\0';
    struct sec_event ev;
    struct seclog_line_info info;
    assert_int_equal(parse_account(acct, &ev, &info), SECLOG_LINE_EVENT);
    assert_true(ev.account_truncated);
    assert_int_equal(strlen(ev.account), SEC_ACCOUNT_MAX - 1);
    assert_remote(&ev, ATTACKER);
}

/* Longer than the logger's buffer: this can only be a record cut by Asterisk and run together
 * with the next one, whose RemoteAddress is someone else's. */
static void value_of_64k_is_too_long(void **state)
{
    size_t n = 64 * 1024;
    char *acct = malloc(n + 1);
    assert_non_null(acct);
    memset(acct, 'A', n);
    acct[n] = '\0';
    size_t cap = n + 1024;
    char *line = malloc(cap);
    assert_non_null(line);
    int len = snprintf(line, cap, "%s%s%s%s", PREFIX, AMI_HEAD, acct, AMI_TAIL);
    struct sec_event ev;
    struct seclog_line_info info;
    assert_int_equal(parse_text(line, (size_t)len, &ev, &info), SECLOG_LINE_MALFORMED);
    assert_int_equal(info.bad, SECLOG_BAD_TOO_LONG);
    free(line);
    free(acct);
}

static void merged_records_prove_nothing(void **state)
{
    /* A record cut at 1023 bytes by a small logger buffer, the next one on the same line. */
    char acct[1100];
    memset(acct, 'B', 1000);
    acct[1000] = '\0';
    char line[4096];
    int n = snprintf(line, sizeof(line), "%s%s%s%s%s%s", PREFIX, AMI_HEAD, acct, PREFIX,
                     AMI_HEAD "y", AMI_TAIL);
    struct sec_event ev;
    struct seclog_line_info info;
    assert_int_equal(parse_text(line, (size_t)n, &ev, &info), SECLOG_LINE_MALFORMED);
    assert_int_equal(info.bad, SECLOG_BAD_TWO_RECORDS);
}

static void nul_byte_proves_nothing(void **state)
{
    char line[2048];
    int n = snprintf(line, sizeof(line), "%s%sab", PREFIX, AMI_HEAD);
    line[n - 1] = '\0';
    n += snprintf(line + n, sizeof(line) - (size_t)n, "%s", AMI_TAIL);
    struct sec_event ev;
    struct seclog_line_info info;
    assert_int_equal(parse_text(line, (size_t)n, &ev, &info), SECLOG_LINE_MALFORMED);
    assert_int_equal(info.bad, SECLOG_BAD_NUL);
}

/* A line cut anywhere (a crash mid-write, a copy taken mid-line) either proves nothing or names
 * the real address, never another. */
static void line_cut_anywhere_never_names_another_address(void **state)
{
    char line[2048];
    const char *acct = "x\",RemoteAddress=\"IPV4/TCP/" VICTIM "/5038";
    int n = snprintf(line, sizeof(line), "%s%s%s%s", PREFIX, AMI_HEAD, acct, AMI_TAIL);
    unsigned events = 0, malformed = 0;
    for (int cut = 0; cut <= n; cut++) {
        struct sec_event ev;
        struct seclog_line_info info;
        enum seclog_line_result r = parse_text(line, (size_t)cut, &ev, &info);
        if (r == SECLOG_LINE_EVENT) {
            assert_remote(&ev, ATTACKER);
            events++;
        } else if (r == SECLOG_LINE_MALFORMED) {
            assert_true(info.bad == SECLOG_BAD_STRUCTURE || info.bad == SECLOG_BAD_REMOTE);
            malformed++;
        }
    }
    /* Whole, and cut right after RemoteAddress's closing quote (SessionTV is optional). */
    assert_int_equal(events, 2);
    assert_true(malformed > 300);
}

static void unknown_event_is_counted(void **state)
{
    const char *line = PREFIX "SecurityEvent=\"NewFancyEvent\",EventTV=\"x\"";
    struct sec_event ev;
    struct seclog_line_info info;
    assert_int_equal(parse_text(line, strlen(line), &ev, &info), SECLOG_LINE_MALFORMED);
    assert_int_equal(info.bad, SECLOG_BAD_UNKNOWN_EVENT);
}

static void other_lines_are_skipped(void **state)
{
    const char *lines[] = {
        "[2026-11-26 09:01:47.730] Asterisk 20.20.1 built by root @ vm on a x86_64 running Linux",
        "[2026-11-26 09:01:47.730] NOTICE[11270] chan_sip.c: Registration from '\"x\" "
        "<sip:x@1.2.3.4>' failed for '203.0.113.5:5060' - Wrong password",
        "[2026-11-26 09:01:47.730] SECURITY[11270] res_other.c: SecurityEvent=\"FailedACL\"",
        "SecurityEvent=\"FailedACL\",EventTV=\"\",RemoteAddress=\"IPV4/UDP/203.0.113.5/5060\"",
        "",
        "garbage",
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        struct sec_event ev;
        struct seclog_line_info info;
        assert_int_equal(parse_text(lines[i], strlen(lines[i]), &ev, &info), SECLOG_LINE_OTHER);
    }
}

static void other_prefix_layouts_are_read(void **state)
{
    const char *lines[] = {
        /* default dateformat, call id, [plain] formatter */
        "[Nov 26 09:01:49] SECURITY[11270] res_security_log.c: " AMI_HEAD "a" AMI_TAIL,
        "[Nov  6 09:01:49] SECURITY[11270][C-0000002a] res_security_log.c: " AMI_HEAD "a" AMI_TAIL,
        "[Nov 26 09:01:49] SECURITY[11270]: res_security_log.c:96 "
        "security_event_stasis_cb: " AMI_HEAD "a" AMI_TAIL,
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        struct sec_event ev;
        struct seclog_line_info info;
        assert_int_equal(parse_text(lines[i], strlen(lines[i]), &ev, &info), SECLOG_LINE_EVENT);
        assert_remote(&ev, ATTACKER);
        assert_true(info.date.valid);
        assert_false(info.date.has_year);
        assert_int_equal(info.date.mon, 11);
        assert_int_equal(info.date.hour, 9);
    }
}

static void expected_response_is_wiped_even_in_bad_lines(void **state)
{
    const char *key = "aed47347522d0383b9dbe799b60aca5e";
    char good[1024], bad[1024];
    int n = snprintf(good, sizeof(good),
                     "%sSecurityEvent=\"ChallengeResponseFailed\",EventTV=\"2026-11-26T09:01:53."
                     "417+0000\",Severity=\"Error\",Service=\"AMI\",EventVersion=\"1\",AccountID="
                     "\"\",SessionID=\"0x7fdb4c001ab0\",LocalAddress=\"IPV4/TCP/127.0.0.1/5038\","
                     "RemoteAddress=\"IPV4/TCP/127.0.0.1/53242\",Challenge=\"158133824\","
                     "Response=\"9204a67a1051c70d97c2aeb74dea8be8\",ExpectedResponse=\"%s\","
                     "SessionTV=\"1970-01-01T00:00:00.000+0000\"",
                     PREFIX, key);
    memcpy(bad, good, (size_t)n);
    struct sec_event ev;
    struct seclog_line_info info;
    assert_int_equal(seclog_line_parse(good, (size_t)n, "x", &ev, &info), SECLOG_LINE_EVENT);
    assert_null(memmem(good, (size_t)n, key, strlen(key)));
    assert_non_null(strstr(good, "ExpectedResponse=\"********************************\""));
    /* Cut inside the key, and with a NUL: malformed, and still wiped. */
    char *k = memmem(bad, (size_t)n, key, strlen(key));
    size_t cut = (size_t)(k - bad) + 20;
    assert_int_equal(seclog_line_parse(bad, cut, "x", &ev, &info), SECLOG_LINE_MALFORMED);
    assert_null(memmem(bad, cut, key, 20));
}

/* --- the reader --- */

static void feed(struct seclog_reader *r, const char *s, size_t n)
{
    while (n) {
        size_t room;
        char *d = seclog_reader_space(r, &room);
        assert_true(room > 0);
        size_t k = n < room ? n : room;
        memcpy(d, s, k);
        seclog_reader_commit(r, k);
        s += k;
        n -= k;
    }
}

static void reader_holds_a_partial_line_and_tracks_offsets(void **state)
{
    static struct seclog_reader r;
    seclog_reader_init(&r, 1000, NULL, 0);
    struct seclog_chunk c;
    feed(&r, "one\ntw", 6);
    assert_true(seclog_reader_next(&r, &c));
    assert_int_equal(c.len, 3);
    assert_memory_equal(c.data, "one", 3);
    assert_int_equal(c.end_off, 1004);
    assert_false(seclog_reader_next(&r, &c));
    assert_int_equal(seclog_reader_offset(&r), 1004);
    assert_int_equal(seclog_reader_pending(&r), 2);
    feed(&r, "o\n", 2);
    assert_true(seclog_reader_next(&r, &c));
    assert_memory_equal(c.data, "two", 3);
    assert_int_equal(seclog_reader_offset(&r), 1008);
    assert_false(seclog_reader_next(&r, &c));
}

static void reader_gives_back_a_line_and_keeps_the_tail(void **state)
{
    static struct seclog_reader r;
    seclog_reader_init(&r, 500, "before\n", 7);
    struct seclog_chunk c;
    size_t tl;
    const char *t = seclog_reader_tail(&r, &tl);
    assert_int_equal(tl, 7);
    assert_memory_equal(t, "before\n", 7);
    feed(&r, "alpha\nbeta\n", 11);
    assert_true(seclog_reader_next(&r, &c));
    assert_true(seclog_reader_next(&r, &c));
    assert_memory_equal(c.data, "beta", 4);
    seclog_reader_unread(&r, &c);
    assert_int_equal(seclog_reader_offset(&r), 506);
    t = seclog_reader_tail(&r, &tl);
    assert_memory_equal(t + tl - 6, "alpha\n", 6);
    assert_true(seclog_reader_next(&r, &c));
    assert_memory_equal(c.data, "beta", 4);
    assert_int_equal(seclog_reader_offset(&r), 511);
    /* Through many compactions, the tail is always the last bytes before the position. */
    char line[100];
    size_t total = 7 + 11;
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(line, sizeof(line), "line number %d\n", i);
        feed(&r, line, (size_t)n);
        total += (size_t)n;
        while (seclog_reader_next(&r, &c))
            ;
        t = seclog_reader_tail(&r, &tl);
        assert_int_equal(tl, total < SECLOG_TAIL_MAX ? total : SECLOG_TAIL_MAX);
        assert_memory_equal(t + tl - (size_t)n, line, (size_t)n);
    }
}

static void reader_cuts_oversized_lines_and_resyncs(void **state)
{
    static struct seclog_reader r;
    seclog_reader_init(&r, 0, NULL, 0);
    size_t big = 100 * 1024;
    char *s = malloc(big + 16);
    assert_non_null(s);
    memset(s, 'Z', big);
    memcpy(s + big, "\nnext\n", 6);
    struct seclog_chunk c;
    unsigned oversized = 0, lines = 0;
    size_t off = 0, total = big + 6;
    while (off < total) {
        size_t room;
        char *d = seclog_reader_space(&r, &room);
        size_t k = total - off < room ? total - off : room;
        memcpy(d, s + off, k);
        seclog_reader_commit(&r, k);
        off += k;
        while (seclog_reader_next(&r, &c)) {
            if (c.oversized) {
                oversized++;
                assert_int_equal(c.len, SECLOG_LINE_MAX);
                assert_int_equal(seclog_reader_offset(&r), 0);
            } else {
                lines++;
                assert_int_equal(c.len, 4);
                assert_memory_equal(c.data, "next", 4);
            }
        }
    }
    assert_int_equal(oversized, 1);
    assert_int_equal(lines, 1);
    assert_int_equal(seclog_reader_offset(&r), total);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_log_line_matches_its_ami_twin),
        cmocka_unit_test(plain_line_is_an_event),
        cmocka_unit_test(injected_remote_address_counts_for_the_attacker),
        cmocka_unit_test(injected_service_is_ignored),
        cmocka_unit_test(injected_fake_tail_counts_for_the_attacker),
        cmocka_unit_test(two_readings_prove_nothing),
        cmocka_unit_test(call_id_and_digest_injection_is_ambiguous),
        cmocka_unit_test(injection_after_the_address_counts_for_the_attacker),
        cmocka_unit_test(trailing_backslash_is_data),
        cmocka_unit_test(lone_quote_is_data),
        cmocka_unit_test(invalid_utf8_is_data),
        cmocka_unit_test(long_account_is_truncated_not_rejected),
        cmocka_unit_test(value_of_64k_is_too_long),
        cmocka_unit_test(merged_records_prove_nothing),
        cmocka_unit_test(nul_byte_proves_nothing),
        cmocka_unit_test(line_cut_anywhere_never_names_another_address),
        cmocka_unit_test(unknown_event_is_counted),
        cmocka_unit_test(other_lines_are_skipped),
        cmocka_unit_test(other_prefix_layouts_are_read),
        cmocka_unit_test(expected_response_is_wiped_even_in_bad_lines),
        cmocka_unit_test(reader_holds_a_partial_line_and_tracks_offsets),
        cmocka_unit_test(reader_gives_back_a_line_and_keeps_the_tail),
        cmocka_unit_test(reader_cuts_oversized_lines_and_resyncs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
