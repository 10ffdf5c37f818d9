#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ami_frame.h"

static struct ami_parser *P;

static int setup(void **state)
{
    P = malloc(sizeof(*P));
    ami_parser_init(P, false);
    return 0;
}

static int teardown(void **state)
{
    free(P);
    return 0;
}

static void feed_all(struct ami_parser *p, const char *s)
{
    size_t len = strlen(s);
    assert_int_equal(ami_parser_feed(p, s, len), len);
}

static void assert_header(const struct ami_frame *f, unsigned i, const char *name,
                          const char *value)
{
    assert_true(i < f->nheaders);
    const struct ami_header *h = &f->headers[i];
    assert_int_equal(h->name_len, strlen(name));
    assert_memory_equal(h->name, name, h->name_len);
    assert_int_equal(h->value_len, strlen(value));
    if (h->value_len)
        assert_memory_equal(h->value, value, h->value_len);
}

static void banner_is_the_first_line_without_blank_line(void **state)
{
    ami_parser_init(P, true);
    feed_all(P, "Asterisk Call Manager/9.0.0\r\nResponse: Success\r\nMessage: ok\r\n\r\n");
    const struct ami_frame *f = ami_parser_next(P);
    assert_non_null(f);
    assert_int_equal(f->kind, AMI_FRAME_BANNER);
    assert_header(f, 0, "", "Asterisk Call Manager/9.0.0");
    f = ami_parser_next(P);
    assert_non_null(f);
    assert_int_equal(f->kind, AMI_FRAME_RESPONSE);
    assert_int_equal(f->nheaders, 2);
    assert_header(f, 1, "Message", "ok");
    assert_null(ami_parser_next(P));
}

static void crlf_and_bare_lf_both_end_lines(void **state)
{
    feed_all(P, "Event: A\nPrivilege: security,all\r\nX: 1\n\r\nEvent: B\n\n");
    const struct ami_frame *f = ami_parser_next(P);
    assert_non_null(f);
    assert_int_equal(f->kind, AMI_FRAME_EVENT);
    assert_int_equal(f->nheaders, 3);
    assert_header(f, 0, "Event", "A");
    assert_header(f, 1, "Privilege", "security,all");
    assert_header(f, 2, "X", "1");
    f = ami_parser_next(P);
    assert_non_null(f);
    assert_header(f, 0, "Event", "B");
    assert_null(ami_parser_next(P));
}

static void lines_split_at_the_first_colon_only(void **state)
{
    feed_all(P, "Event: RequestBadFormat\r\nRequestType: Action: Originate\r\nK:v:w\r\n\r\n");
    const struct ami_frame *f = ami_parser_next(P);
    assert_non_null(f);
    assert_header(f, 1, "RequestType", "Action: Originate");
    assert_header(f, 2, "K", "v:w");
}

static void empty_values_are_kept(void **state)
{
    feed_all(P, "Event: ChallengeSent\r\nChallenge: \r\nAccountID:\r\n\r\n");
    const struct ami_frame *f = ami_parser_next(P);
    assert_non_null(f);
    assert_int_equal(f->nheaders, 3);
    assert_header(f, 1, "Challenge", "");
    assert_header(f, 2, "AccountID", "");
}

static void stray_blank_lines_between_frames_are_skipped(void **state)
{
    feed_all(P, "\r\n\n\r\nEvent: A\r\n\r\n\r\n\r\nEvent: B\r\n\r\n");
    assert_non_null(ami_parser_next(P));
    const struct ami_frame *f = ami_parser_next(P);
    assert_non_null(f);
    assert_header(f, 0, "Event", "B");
    assert_int_equal(P->stats.discarded, 0);
}

static void a_frame_fed_one_byte_at_a_time_comes_out_whole(void **state)
{
    const char *s = "Event: InvalidPassword\r\nPrivilege: security,all\r\nAccountID: admin\r\n\r\n";
    const struct ami_frame *f = NULL;
    for (size_t i = 0; s[i]; i++) {
        assert_null(f);
        assert_int_equal(ami_parser_feed(P, s + i, 1), 1);
        f = ami_parser_next(P);
    }
    assert_non_null(f);
    assert_int_equal(f->nheaders, 3);
    assert_header(f, 2, "AccountID", "admin");
}

static void a_frame_is_incomplete_until_its_blank_line(void **state)
{
    feed_all(P, "Event: A\r\nX: 1\r\n");
    assert_null(ami_parser_next(P));
    feed_all(P, "Y: 2\r\n\r");
    assert_null(ami_parser_next(P));
    feed_all(P, "\n");
    const struct ami_frame *f = ami_parser_next(P);
    assert_non_null(f);
    assert_int_equal(f->nheaders, 3);
    assert_header(f, 2, "Y", "2");
}

static void header_lookup_is_case_insensitive(void **state)
{
    feed_all(P, "Response: Success\r\nActionID: x1\r\nChallenge: 12345\r\n\r\n");
    const struct ami_frame *f = ami_parser_next(P);
    assert_non_null(f);
    const struct ami_header *h = ami_frame_get(f, "challenge");
    assert_non_null(h);
    assert_true(ami_header_value_is(h, "12345"));
    assert_null(ami_frame_get(f, "Missing"));
}

static void expected_response_is_wiped_by_the_parser(void **state)
{
    const char *key = "aed47347522d0383b9dbe799b60aca5e";
    char s[256];
    snprintf(s, sizeof(s), "Event: ChallengeResponseFailed\r\nExpectedResponse: %s\r\n\r\n", key);
    feed_all(P, s);
    const struct ami_frame *f = ami_parser_next(P);
    assert_non_null(f);
    assert_header(f, 1, "ExpectedResponse", "");
    assert_null(memmem(P->buf, sizeof(P->buf), key, strlen(key)));
}

static void expected_response_of_a_discarded_frame_is_wiped_too(void **state)
{
    const char *key = "aed47347522d0383b9dbe799b60aca5e";
    char s[16384];
    size_t o = (size_t)snprintf(s, sizeof(s), "Event: ChallengeResponseFailed\r\n");
    /* More headers than AMI_HEADERS_MAX: the frame is discarded before ExpectedResponse (at
     * the end) is parsed, and while it is skipped. */
    for (int i = 0; i < AMI_HEADERS_MAX + 72; i++)
        o += (size_t)snprintf(s + o, sizeof(s) - o, "X%d: y\r\n", i);
    o += (size_t)snprintf(s + o, sizeof(s) - o, "ExpectedResponse: %s\r\n\r\n", key);
    snprintf(s + o, sizeof(s) - o, "Event: Next\r\n\r\n");
    feed_all(P, s);
    const struct ami_frame *f = ami_parser_next(P);
    assert_non_null(f);
    assert_header(f, 0, "Event", "Next");
    assert_int_equal(P->stats.discarded, 1);
    assert_null(memmem(P->buf, sizeof(P->buf), key, strlen(key)));
}

static void credentials_in_auth_details_are_wiped(void **state)
{
    feed_all(P, "Event: AuthDetail\r\nActionID: a\r\nObjectType: auth\r\nUsername: u\r\n"
                "Password: hunter2-pw\r\nMd5Cred: 0123md5cred\r\npassword: lower-pw\r\n"
                "PasswordDigest: digest-pw\r\nOauthSecret: oauth-pw\r\n"
                "RefreshToken: refresh-pw\r\nRealm: r\r\n\r\n");
    const struct ami_frame *f = ami_parser_next(P);
    assert_non_null(f);
    assert_header(f, 3, "Username", "u");
    assert_header(f, 4, "Password", "");
    assert_header(f, 5, "Md5Cred", "");
    assert_header(f, 6, "password", "");
    assert_header(f, 7, "PasswordDigest", "");
    assert_header(f, 8, "OauthSecret", "");
    assert_header(f, 9, "RefreshToken", "");
    assert_header(f, 10, "Realm", "r");
    static const char *const secrets[] = {"hunter2-pw", "0123md5cred", "lower-pw",
                                          "digest-pw",  "oauth-pw",    "refresh-pw"};
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
        assert_null(memmem(P->buf, sizeof(P->buf), secrets[i], strlen(secrets[i])));
}

static void security_class_is_told_from_privilege(void **state)
{
    feed_all(P, "Event: InvalidPassword\r\nPrivilege: security,all\r\n\r\n"
                "Event: PeerStatus\r\nPrivilege: system,all\r\n\r\n"
                "Event: Odd\r\nPrivilege: securityx,all\r\n\r\n"
                "Response: Success\r\nPrivilege: security\r\n\r\n"
                "Event: Late\r\nX: 1\r\nPrivilege: all,security\r\n\r\n");
    assert_true(ami_frame_is_security(ami_parser_next(P)));
    assert_false(ami_frame_is_security(ami_parser_next(P)));
    assert_false(ami_frame_is_security(ami_parser_next(P)));
    assert_false(ami_frame_is_security(ami_parser_next(P)));
    assert_true(ami_frame_is_security(ami_parser_next(P)));
}

static void a_line_without_colon_discards_its_frame_only(void **state)
{
    feed_all(P, "Event: A\r\ngarbage here\r\nX: 1\r\n\r\nEvent: B\r\n\r\n");
    const struct ami_frame *f = ami_parser_next(P);
    assert_non_null(f);
    assert_header(f, 0, "Event", "B");
    assert_int_equal(P->stats.discarded, 1);
    assert_int_equal(P->stats.by_reason[AMI_DISCARD_NO_COLON], 1);
}

static void an_overlong_line_is_discarded_without_losing_sync(void **state)
{
    size_t n = 1024 * 1024;
    char *big = malloc(n);
    memset(big, 'a', n);
    feed_all(P, "Event: A\r\nX: ");
    for (size_t off = 0; off < n;) {
        off += ami_parser_feed(P, big + off, n - off);
        assert_null(ami_parser_next(P));
    }
    free(big);
    feed_all(P, "\r\nY: 2\r\n\r\nEvent: B\r\nZ: 3\r\n\r\n");
    const struct ami_frame *f = ami_parser_next(P);
    assert_non_null(f);
    assert_header(f, 0, "Event", "B");
    assert_header(f, 1, "Z", "3");
    assert_int_equal(P->stats.discarded, 1);
    assert_int_equal(P->stats.by_reason[AMI_DISCARD_LINE_TOO_LONG], 1);
}

static void a_complete_overlong_line_is_discarded(void **state)
{
    char line[AMI_LINE_MAX + 32];
    memset(line, 'b', sizeof(line));
    memcpy(line, "X: ", 3);
    line[sizeof(line) - 1] = '\0';
    feed_all(P, "Event: A\r\n");
    feed_all(P, line);
    feed_all(P, "\r\n\r\nEvent: B\r\n\r\n");
    const struct ami_frame *f = ami_parser_next(P);
    assert_non_null(f);
    assert_header(f, 0, "Event", "B");
    assert_int_equal(P->stats.by_reason[AMI_DISCARD_LINE_TOO_LONG], 1);
}

static void too_many_headers_discard_the_frame(void **state)
{
    feed_all(P, "Event: A\r\n");
    for (int i = 0; i < AMI_HEADERS_MAX + 5; i++)
        feed_all(P, "H: v\r\n");
    feed_all(P, "\r\nEvent: B\r\n\r\n");
    const struct ami_frame *f = ami_parser_next(P);
    assert_non_null(f);
    assert_header(f, 0, "Event", "B");
    assert_int_equal(P->stats.by_reason[AMI_DISCARD_TOO_MANY_HEADERS], 1);
}

static void exactly_the_header_limit_is_accepted(void **state)
{
    feed_all(P, "Event: A\r\n");
    for (int i = 1; i < AMI_HEADERS_MAX; i++)
        feed_all(P, "H: v\r\n");
    feed_all(P, "\r\n");
    const struct ami_frame *f = ami_parser_next(P);
    assert_non_null(f);
    assert_int_equal(f->nheaders, AMI_HEADERS_MAX);
}

static void a_frame_larger_than_the_buffer_is_discarded(void **state)
{
    char line[4000];
    memset(line, 'c', sizeof(line));
    memcpy(line, "L: ", 3);
    line[sizeof(line) - 3] = '\r';
    line[sizeof(line) - 2] = '\n';
    line[sizeof(line) - 1] = '\0';
    feed_all(P, "Event: A\r\n");
    /* 100 lines of 4 KB: under the header limit, over the frame limit. */
    for (int i = 0; i < 100; i++) {
        const char *s = line;
        size_t left = strlen(line);
        while (left) {
            size_t took = ami_parser_feed(P, s, left);
            s += took;
            left -= took;
            assert_null(ami_parser_next(P));
        }
    }
    feed_all(P, "\r\nEvent: B\r\n\r\n");
    const struct ami_frame *f = ami_parser_next(P);
    assert_non_null(f);
    assert_header(f, 0, "Event", "B");
    assert_int_equal(P->stats.by_reason[AMI_DISCARD_FRAME_TOO_BIG], 1);
}

static void space_and_commit_read_in_place(void **state)
{
    const char *s = "Event: A\r\nX: 1\r\n\r\n";
    size_t room;
    char *dst = ami_parser_space(P, &room);
    assert_true(room >= strlen(s));
    memcpy(dst, s, strlen(s));
    ami_parser_commit(P, strlen(s));
    const struct ami_frame *f = ami_parser_next(P);
    assert_non_null(f);
    assert_header(f, 1, "X", "1");
    assert_int_equal(P->stats.bytes, strlen(s));
    assert_int_equal(P->stats.frames, 1);
}

static void leading_blanks_of_values_are_skipped(void **state)
{
    feed_all(P, "Event:\t  A b \r\n\r\n");
    const struct ami_frame *f = ami_parser_next(P);
    assert_non_null(f);
    assert_header(f, 0, "Event", "A b ");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(banner_is_the_first_line_without_blank_line),
        T(crlf_and_bare_lf_both_end_lines),
        T(lines_split_at_the_first_colon_only),
        T(empty_values_are_kept),
        T(stray_blank_lines_between_frames_are_skipped),
        T(a_frame_fed_one_byte_at_a_time_comes_out_whole),
        T(a_frame_is_incomplete_until_its_blank_line),
        T(header_lookup_is_case_insensitive),
        T(expected_response_is_wiped_by_the_parser),
        T(expected_response_of_a_discarded_frame_is_wiped_too),
        T(credentials_in_auth_details_are_wiped),
        T(security_class_is_told_from_privilege),
        T(a_line_without_colon_discards_its_frame_only),
        T(an_overlong_line_is_discarded_without_losing_sync),
        T(a_complete_overlong_line_is_discarded),
        T(too_many_headers_discard_the_frame),
        T(exactly_the_header_limit_is_accepted),
        T(a_frame_larger_than_the_buffer_is_discarded),
        T(space_and_commit_read_in_place),
        T(leading_blanks_of_values_are_skipped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
