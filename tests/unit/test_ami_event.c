#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ami_event.h"
#include "ami_frame.h"

/* The expected normalization of every security event in the fixture captures, written from the
 * captures themselves (tests/fixtures/ami/), in stream order. */
struct golden {
    enum sec_event_type type;
    const char *service;
    int version;
    const char *remote;
    uint16_t port;
    enum sec_transport transport;
    const char *account;
    const char *session;
    int64_t event_tv_ms;
};

static const struct golden golden_ipv4[] = {
    {SEC_SUCCESSFUL_AUTH, "AMI", 1, "127.0.0.1", 53226, SEC_TRANSPORT_TCP, "guard",
     "0x7fdb3c0011a0", 1795683707957LL},
    {SEC_INVALID_ACCOUNT_ID, "AMI", 1, "127.0.0.1", 53234, SEC_TRANSPORT_TCP, "hacker",
     "0x7fdb10f3c3e0", 1795683709010LL},
    {SEC_INVALID_PASSWORD, "AMI", 2, "127.0.0.1", 53240, SEC_TRANSPORT_TCP, "admin",
     "0x7fdb440011a0", 1795683711213LL},
    {SEC_CHALLENGE_RESPONSE_FAILED, "AMI", 1, "127.0.0.1", 53242, SEC_TRANSPORT_TCP, "",
     "0x7fdb4c001ab0", 1795683713417LL},
    {SEC_INVALID_ACCOUNT_ID, "AMI", 1, "127.0.0.1", 53244, SEC_TRANSPORT_TCP, "ghost",
     "0x7fdb10f3c3e0", 1795683715619LL},
    {SEC_SUCCESSFUL_AUTH, "AMI", 1, "127.0.0.1", 53924, SEC_TRANSPORT_TCP, "admin",
     "0x7fdb18001460", 1795683717822LL},
    {SEC_SUCCESSFUL_AUTH, "AMI", 1, "127.0.0.1", 53930, SEC_TRANSPORT_TCP, "admin",
     "0x7fdb14001d60", 1795683719326LL},
    {SEC_REQUEST_BAD_FORMAT, "AMI", 1, "127.0.0.1", 53930, SEC_TRANSPORT_TCP, "admin",
     "0x7fdb14001d60", 1795683719327LL},
    {SEC_FAILED_ACL, "AMI", 1, "127.0.0.1", 53944, SEC_TRANSPORT_TCP, "locked", "0x7fdb20001460",
     1795683720529LL},
    {SEC_REQUEST_NOT_ALLOWED, "AMI", 1, "127.0.0.1", 53946, SEC_TRANSPORT_TCP, "", "0x7fdb1c002050",
     1795683722734LL},
    {SEC_REQUEST_BAD_FORMAT, "AMI", 1, "127.0.0.1", 53952, SEC_TRANSPORT_TCP, "", "0x7fdb28001460",
     1795683723937LL},
    {SEC_SUCCESSFUL_AUTH, "AMI", 1, "127.0.0.1", 53954, SEC_TRANSPORT_TCP, "guard",
     "0x7fdb24005a10", 1795683725140LL},
    {SEC_REQUEST_NOT_ALLOWED, "AMI", 1, "127.0.0.1", 53954, SEC_TRANSPORT_TCP, "guard",
     "0x7fdb24005a10", 1795683725143LL},
    {SEC_INVALID_PASSWORD, "AMI", 2, "127.0.0.1", 51226, SEC_TRANSPORT_TCP, "admin",
     "0x7fdb2c004080", 1795683728553LL},
    {SEC_INVALID_PASSWORD, "AMI", 2, "127.0.0.1", 51228, SEC_TRANSPORT_TCP, "admin",
     "0x7fdb3800aaa0", 1795683728553LL},
    {SEC_INVALID_PASSWORD, "AMI", 2, "127.0.0.1", 51236, SEC_TRANSPORT_TCP, "admin",
     "0x7fdb34001a40", 1795683728554LL},
    {SEC_INVALID_PASSWORD, "AMI", 2, "127.0.0.1", 51248, SEC_TRANSPORT_TCP, "admin",
     "0x7fdb40001a40", 1795683728554LL},
    {SEC_INVALID_PASSWORD, "AMI", 2, "127.0.0.1", 51264, SEC_TRANSPORT_TCP, "admin",
     "0x7fdb3c002e50", 1795683728554LL},
    {SEC_INVALID_ACCOUNT_ID, "PJSIP", 1, "127.0.0.1", 36122, SEC_TRANSPORT_UDP, "9999",
     "725f6ecdc0243333@pbxguard-test", 1795683731057LL},
    {SEC_CHALLENGE_SENT, "PJSIP", 1, "127.0.0.1", 36122, SEC_TRANSPORT_UDP, "<unknown>",
     "725f6ecdc0243333@pbxguard-test", 1795683731057LL},
    {SEC_CHALLENGE_SENT, "PJSIP", 1, "127.0.0.1", 36122, SEC_TRANSPORT_UDP, "1001",
     "af71b9d917db9b61@pbxguard-test", 1795683732060LL},
    {SEC_CHALLENGE_RESPONSE_FAILED, "PJSIP", 1, "127.0.0.1", 36122, SEC_TRANSPORT_UDP, "1001",
     "af71b9d917db9b61@pbxguard-test", 1795683732067LL},
    {SEC_CHALLENGE_SENT, "PJSIP", 1, "127.0.0.1", 36122, SEC_TRANSPORT_UDP, "1001",
     "408bc71b63334014@pbxguard-test", 1795683733070LL},
    {SEC_SUCCESSFUL_AUTH, "PJSIP", 1, "127.0.0.1", 36122, SEC_TRANSPORT_UDP, "1001",
     "408bc71b63334014@pbxguard-test", 1795683733074LL},
    {SEC_INVALID_ACCOUNT_ID, "PJSIP", 1, "127.0.0.1", 36122, SEC_TRANSPORT_UDP, "9998",
     "fdf5fab4c589d399@pbxguard-test", 1795683734082LL},
    {SEC_CHALLENGE_SENT, "PJSIP", 1, "127.0.0.1", 36122, SEC_TRANSPORT_UDP, "<unknown>",
     "fdf5fab4c589d399@pbxguard-test", 1795683734083LL},
    {SEC_INVALID_ACCOUNT_ID, "PJSIP", 1, "127.0.0.1", 36122, SEC_TRANSPORT_UDP, "9998",
     "fdf5fab4c589d399@pbxguard-test", 1795683734085LL},
    {SEC_CHALLENGE_RESPONSE_FAILED, "PJSIP", 1, "127.0.0.1", 36122, SEC_TRANSPORT_UDP, "<unknown>",
     "fdf5fab4c589d399@pbxguard-test", 1795683734085LL},
    {SEC_INVALID_ACCOUNT_ID, "PJSIP", 1, "127.0.0.1", 36122, SEC_TRANSPORT_UDP, "friendly-scanner",
     "f184049a1f330fab@pbxguard-test", 1795683735087LL},
    {SEC_CHALLENGE_SENT, "PJSIP", 1, "127.0.0.1", 36122, SEC_TRANSPORT_UDP, "<unknown>",
     "f184049a1f330fab@pbxguard-test", 1795683735087LL},
    {SEC_INVALID_ACCOUNT_ID, "PJSIP", 1, "127.0.0.1", 36122, SEC_TRANSPORT_UDP, "100",
     "eaf27159d3ea56a7@pbxguard-test", 1795683736093LL},
    {SEC_CHALLENGE_SENT, "PJSIP", 1, "127.0.0.1", 36122, SEC_TRANSPORT_UDP, "<unknown>",
     "eaf27159d3ea56a7@pbxguard-test", 1795683736094LL},
    {SEC_INVALID_ACCOUNT_ID, "PJSIP", 1, "127.0.0.1", 47006, SEC_TRANSPORT_UDP, "8888",
     "95435714876639e0@pbxguard-test", 1795683737096LL},
    {SEC_CHALLENGE_RESPONSE_FAILED, "PJSIP", 1, "127.0.0.1", 47006, SEC_TRANSPORT_UDP, "<unknown>",
     "95435714876639e0@pbxguard-test", 1795683737096LL},
    {SEC_INVALID_ACCOUNT_ID, "PJSIP", 1, "127.0.0.1", 47006, SEC_TRANSPORT_UDP, "8888",
     "d6c339f101a84ff2@pbxguard-test", 1795683737298LL},
    {SEC_CHALLENGE_RESPONSE_FAILED, "PJSIP", 1, "127.0.0.1", 47006, SEC_TRANSPORT_UDP, "<unknown>",
     "d6c339f101a84ff2@pbxguard-test", 1795683737299LL},
    {SEC_INVALID_ACCOUNT_ID, "PJSIP", 1, "127.0.0.1", 47006, SEC_TRANSPORT_UDP, "8888",
     "4ba805a8a1457ab6@pbxguard-test", 1795683737501LL},
    {SEC_CHALLENGE_RESPONSE_FAILED, "PJSIP", 1, "127.0.0.1", 47006, SEC_TRANSPORT_UDP, "<unknown>",
     "4ba805a8a1457ab6@pbxguard-test", 1795683737501LL},
    {SEC_INVALID_ACCOUNT_ID, "PJSIP", 1, "127.0.0.1", 47006, SEC_TRANSPORT_UDP, "8888",
     "68822eb77643b51c@pbxguard-test", 1795683737703LL},
    {SEC_CHALLENGE_RESPONSE_FAILED, "PJSIP", 1, "127.0.0.1", 47006, SEC_TRANSPORT_UDP, "<unknown>",
     "68822eb77643b51c@pbxguard-test", 1795683737703LL},
    {SEC_INVALID_ACCOUNT_ID, "PJSIP", 1, "127.0.0.1", 47006, SEC_TRANSPORT_UDP, "8888",
     "ecac80c54aa347af@pbxguard-test", 1795683737905LL},
    {SEC_CHALLENGE_RESPONSE_FAILED, "PJSIP", 1, "127.0.0.1", 47006, SEC_TRANSPORT_UDP, "<unknown>",
     "ecac80c54aa347af@pbxguard-test", 1795683737905LL},
    {SEC_INVALID_ACCOUNT_ID, "PJSIP", 1, "127.0.0.1", 47006, SEC_TRANSPORT_UDP, "8888",
     "7f3797fed82b96f8@pbxguard-test", 1795683738107LL},
    {SEC_CHALLENGE_RESPONSE_FAILED, "PJSIP", 1, "127.0.0.1", 47006, SEC_TRANSPORT_UDP, "<unknown>",
     "7f3797fed82b96f8@pbxguard-test", 1795683738108LL},
    {SEC_CHALLENGE_SENT, "SIP", 1, "127.0.0.1", 39794, SEC_TRANSPORT_UDP, "9999", "0x7fdb300028b0",
     1795683739810LL},
    {SEC_INVALID_PASSWORD, "SIP", 2, "127.0.0.1", 39794, SEC_TRANSPORT_UDP, "9999",
     "0x7fdb300028b0", 1795683739811LL},
    {SEC_CHALLENGE_SENT, "SIP", 1, "127.0.0.1", 39794, SEC_TRANSPORT_UDP, "1001", "0x7fdb30007770",
     1795683740813LL},
    {SEC_INVALID_PASSWORD, "SIP", 2, "127.0.0.1", 39794, SEC_TRANSPORT_UDP, "1001",
     "0x7fdb30007770", 1795683740814LL},
    {SEC_CHALLENGE_SENT, "SIP", 1, "127.0.0.1", 39794, SEC_TRANSPORT_UDP, "1001", "0x7fdb30009f40",
     1795683741816LL},
    {SEC_SUCCESSFUL_AUTH, "SIP", 1, "127.0.0.1", 39794, SEC_TRANSPORT_UDP, "1001", "0x7fdb30009f40",
     1795683741819LL},
    {SEC_CHALLENGE_SENT, "SIP", 1, "127.0.0.1", 39794, SEC_TRANSPORT_UDP,
     "sip:friendly-scanner@127.0.0.1:5070", "0x7fdb3000d0c0", 1795683742821LL},
    {SEC_CHALLENGE_SENT, "SIP", 1, "127.0.0.1", 39794, SEC_TRANSPORT_UDP,
     "sip:friendly-scanner@127.0.0.1:5070", "0x7fdb300117e0", 1795683743822LL},
    {SEC_CHALLENGE_RESPONSE_FAILED, "SIP", 1, "127.0.0.1", 39794, SEC_TRANSPORT_UDP,
     "sip:friendly-scanner@127.0.0.1:5070", "0x7fdb300117e0", 1795683743825LL},
    {SEC_INVALID_ACCOUNT_ID, "SIP", 1, "127.0.0.1", 39794, SEC_TRANSPORT_UDP, "9997",
     "0x7fdb300144a0", 1795683745846LL},
    {SEC_INVALID_ACCOUNT_ID, "PJSIP", 1, "127.0.0.1", 5099, SEC_TRANSPORT_UDP, "7777",
     "1-22303@127.0.0.1", 1795683748473LL},
    {SEC_CHALLENGE_SENT, "PJSIP", 1, "127.0.0.1", 5099, SEC_TRANSPORT_UDP, "<unknown>",
     "1-22303@127.0.0.1", 1795683748473LL},
    {SEC_INVALID_ACCOUNT_ID, "PJSIP", 1, "127.0.0.1", 5099, SEC_TRANSPORT_UDP, "7777",
     "1-22303@127.0.0.1", 1795683748475LL},
    {SEC_CHALLENGE_RESPONSE_FAILED, "PJSIP", 1, "127.0.0.1", 5099, SEC_TRANSPORT_UDP, "<unknown>",
     "1-22303@127.0.0.1", 1795683748475LL},
    {SEC_CHALLENGE_SENT, "PJSIP", 1, "127.0.0.1", 5099, SEC_TRANSPORT_UDP, "1001",
     "1-22632@127.0.0.1", 1795683749587LL},
    {SEC_CHALLENGE_RESPONSE_FAILED, "PJSIP", 1, "127.0.0.1", 5099, SEC_TRANSPORT_UDP, "1001",
     "1-22632@127.0.0.1", 1795683749589LL},
};
static const struct golden golden_timestampevents[] = {
    {SEC_SUCCESSFUL_AUTH, "AMI", 1, "127.0.0.1", 36836, SEC_TRANSPORT_TCP, "guard",
     "0x7f23c00013d0", 1795683768633LL},
    {SEC_INVALID_ACCOUNT_ID, "AMI", 1, "127.0.0.1", 36850, SEC_TRANSPORT_TCP, "hacker",
     "0x7f239637f3e0", 1795683769685LL},
    {SEC_INVALID_PASSWORD, "AMI", 2, "127.0.0.1", 36856, SEC_TRANSPORT_TCP, "admin",
     "0x7f23c80011a0", 1795683771888LL},
    {SEC_CHALLENGE_RESPONSE_FAILED, "AMI", 1, "127.0.0.1", 36870, SEC_TRANSPORT_TCP, "",
     "0x7f23d0001ab0", 1795683774091LL},
    {SEC_INVALID_ACCOUNT_ID, "PJSIP", 1, "127.0.0.1", 41500, SEC_TRANSPORT_UDP, "9999",
     "ac19f280dab68123@pbxguard-test", 1795683776295LL},
    {SEC_CHALLENGE_SENT, "PJSIP", 1, "127.0.0.1", 41500, SEC_TRANSPORT_UDP, "<unknown>",
     "ac19f280dab68123@pbxguard-test", 1795683776295LL},
    {SEC_CHALLENGE_SENT, "PJSIP", 1, "127.0.0.1", 41500, SEC_TRANSPORT_UDP, "1001",
     "d5227990d3a87a5d@pbxguard-test", 1795683777297LL},
    {SEC_CHALLENGE_RESPONSE_FAILED, "PJSIP", 1, "127.0.0.1", 41500, SEC_TRANSPORT_UDP, "1001",
     "d5227990d3a87a5d@pbxguard-test", 1795683777304LL},
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

struct capture_result {
    unsigned banners, security, not_security, unknown, malformed;
    unsigned matched;
};

static void check_event(const struct sec_event *ev, const struct golden *g, unsigned i)
{
    char buf[ADDR_STRLEN];
    struct addr want;
    assert_int_equal(addr_parse(g->remote, strlen(g->remote), &want), 0);
    if (ev->type != g->type || strcmp(ev->service, g->service) != 0 || ev->version != g->version ||
        !addr_equal(&ev->remote.addr, &want) || ev->remote.port != g->port ||
        ev->remote.transport != g->transport || strcmp(ev->account, g->account) != 0 ||
        strcmp(ev->session, g->session) != 0 || ev->event_tv_ms != g->event_tv_ms ||
        strcmp(ev->source, "ami:test") != 0 || !ev->has_local || ev->account_truncated) {
        fail_msg("event %u: got %s %s v%d %s/%u %s account=\"%s\" session=\"%s\" tv=%lld", i,
                 sec_event_type_name(ev->type), ev->service, ev->version,
                 addr_format(&ev->remote.addr, buf, sizeof(buf)), ev->remote.port,
                 sec_transport_name(ev->remote.transport), ev->account, ev->session,
                 (long long)ev->event_tv_ms);
    }
}

/* Feeds a capture through the parser in chunks of `chunk` bytes and checks each event. */
static struct capture_result replay(const char *file, size_t chunk, const struct golden *g,
                                    size_t ng)
{
    char path[512];
    snprintf(path, sizeof(path), "fixtures/ami/%s", file);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    static char data[1 << 20];
    size_t len = fread(data, 1, sizeof(data), fp);
    fclose(fp);

    struct ami_parser *p = malloc(sizeof(*p));
    ami_parser_init(p, true);
    struct capture_result r = {0};
    for (size_t off = 0; off < len;) {
        size_t n = len - off < chunk ? len - off : chunk;
        off += ami_parser_feed(p, data + off, n);
        const struct ami_frame *f;
        while ((f = ami_parser_next(p))) {
            if (f->kind == AMI_FRAME_BANNER) {
                r.banners++;
                continue;
            }
            struct sec_event ev;
            enum ami_event_bad bad = AMI_BAD_NONE;
            switch (ami_event_from_frame(f, "ami:test", &ev, &bad)) {
            case AMI_EVENT_OK:
                assert_true(r.security < ng);
                check_event(&ev, &g[r.security], r.security);
                r.security++;
                break;
            case AMI_EVENT_NOT_SECURITY:
                r.not_security++;
                break;
            case AMI_EVENT_UNKNOWN:
                r.unknown++;
                break;
            case AMI_EVENT_MALFORMED:
                r.malformed++;
                break;
            }
        }
    }
    assert_int_equal(p->stats.discarded, 0);
    free(p);
    return r;
}

static void every_event_of_the_ipv4_capture_normalizes_as_expected(void **state)
{
    static const size_t chunks[] = {1, 7, 500, 1 << 20};
    for (size_t i = 0; i < N(chunks); i++) {
        struct capture_result r =
            replay("asterisk20-ipv4-session.raw", chunks[i], golden_ipv4, N(golden_ipv4));
        assert_int_equal(r.banners, 1);
        assert_int_equal(r.security, 60);
        assert_int_equal(N(golden_ipv4), 60);
        /* login response, FullyBooted, 3 PeerStatus, 2 ContactStatus, logoff response */
        assert_int_equal(r.not_security, 8);
        assert_int_equal(r.unknown, 0);
        assert_int_equal(r.malformed, 0);
    }
}

static void every_event_of_the_timestampevents_capture_normalizes_as_expected(void **state)
{
    struct capture_result r = replay("asterisk20-timestampevents-session.raw", 4096,
                                     golden_timestampevents, N(golden_timestampevents));
    assert_int_equal(r.security, 8);
    assert_int_equal(N(golden_timestampevents), 8);
    assert_int_equal(r.unknown + r.malformed, 0);
}

/* --- single frames --- */

static struct ami_parser *P;

static enum ami_event_result normalize(const char *text, struct sec_event *ev,
                                       enum ami_event_bad *bad)
{
    ami_parser_init(P, false);
    assert_int_equal(ami_parser_feed(P, text, strlen(text)), strlen(text));
    const struct ami_frame *f = ami_parser_next(P);
    assert_non_null(f);
    return ami_event_from_frame(f, "ami:pbx1", ev, bad);
}

static int setup(void **state)
{
    P = malloc(sizeof(*P));
    return 0;
}

static int teardown(void **state)
{
    free(P);
    return 0;
}

#define EV(name, extra)                                                                            \
    "Event: " name "\r\nPrivilege: security,all\r\nEventTV: 2025-06-02T14:07:31.402+0200\r\n"      \
    "Severity: Error\r\nService: PJSIP\r\nEventVersion: 1\r\nAccountID: 1001\r\n"                  \
    "SessionID: abc@x\r\nLocalAddress: IPV4/UDP/203.0.113.10/5060\r\n" extra "\r\n"

static void wrong_md5_key_keeps_no_trace_of_the_expected_response(void **state)
{
    const char *key = "aed47347522d0383b9dbe799b60aca5e";
    char text[1024];
    snprintf(text, sizeof(text),
             EV("ChallengeResponseFailed", "RemoteAddress: IPV4/TCP/192.0.2.44/51514\r\n"
                                           "Challenge: 158133824\r\nResponse: 9204a6\r\n"
                                           "ExpectedResponse: %s\r\n"),
             key);
    struct sec_event ev;
    assert_int_equal(normalize(text, &ev, NULL), AMI_EVENT_OK);
    assert_int_equal(ev.type, SEC_CHALLENGE_RESPONSE_FAILED);
    assert_null(memmem(&ev, sizeof(ev), key, strlen(key)));
    assert_null(memmem(P->buf, sizeof(P->buf), key, strlen(key)));
}

static void privilege_need_not_be_the_second_header(void **state)
{
    struct sec_event ev;
    enum ami_event_bad bad;
    assert_int_equal(normalize("Event: InvalidPassword\r\n"
                               "RemoteAddress: IPV4/TCP/192.0.2.44/51514\r\n"
                               "Service: AMI\r\nPrivilege: security,all\r\n\r\n",
                               &ev, &bad),
                     AMI_EVENT_OK);
    assert_int_equal(ev.type, SEC_INVALID_PASSWORD);
    assert_string_equal(ev.service, "AMI");
    assert_int_equal(ev.remote.port, 51514);
}

static void unknown_event_names_are_reported_not_fatal(void **state)
{
    struct sec_event ev;
    assert_int_equal(
        normalize(EV("BrandNewEvent", "RemoteAddress: IPV4/UDP/192.0.2.1/5060\r\n"), &ev, NULL),
        AMI_EVENT_UNKNOWN);
}

static void system_events_are_not_security_events(void **state)
{
    struct sec_event ev;
    assert_int_equal(
        normalize("Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n",
                  &ev, NULL),
        AMI_EVENT_NOT_SECURITY);
    assert_int_equal(normalize("Response: Success\r\nPing: Pong\r\n\r\n", &ev, NULL),
                     AMI_EVENT_NOT_SECURITY);
}

static void missing_remote_address_is_malformed(void **state)
{
    struct sec_event ev;
    enum ami_event_bad bad = AMI_BAD_NONE;
    assert_int_equal(normalize(EV("InvalidPassword", ""), &ev, &bad), AMI_EVENT_MALFORMED);
    assert_int_equal(bad, AMI_BAD_NO_REMOTE);
}

static void unparsable_remote_address_is_malformed(void **state)
{
    struct sec_event ev;
    enum ami_event_bad bad = AMI_BAD_NONE;
    assert_int_equal(
        normalize(EV("InvalidPassword", "RemoteAddress: IPV4/UDP/evil/5060\r\n"), &ev, &bad),
        AMI_EVENT_MALFORMED);
    assert_int_equal(bad, AMI_BAD_REMOTE_ADDRESS);
}

static void long_account_ids_are_truncated_and_flagged(void **state)
{
    char text[2048], acct[600];
    memset(acct, 'A', sizeof(acct) - 1);
    acct[sizeof(acct) - 1] = '\0';
    snprintf(text, sizeof(text),
             "Event: InvalidAccountID\r\nPrivilege: security,all\r\nService: PJSIP\r\n"
             "AccountID: %s\r\nRemoteAddress: IPV4/UDP/192.0.2.1/5060\r\n\r\n",
             acct);
    struct sec_event ev;
    assert_int_equal(normalize(text, &ev, NULL), AMI_EVENT_OK);
    assert_true(ev.account_truncated);
    assert_int_equal(strlen(ev.account), SEC_ACCOUNT_MAX - 1);
}

static void attacker_text_in_account_stays_data(void **state)
{
    struct sec_event ev;
    assert_int_equal(normalize("Event: InvalidAccountID\r\nPrivilege: security,all\r\n"
                               "AccountID: %s%n\"', DROP TABLE\r\n"
                               "RemoteAddress: IPV4/UDP/192.0.2.1/5060\r\n\r\n",
                               &ev, NULL),
                     AMI_EVENT_OK);
    assert_string_equal(ev.account, "%s%n\"', DROP TABLE");
    assert_false(ev.account_truncated);
}

static void event_fields_are_all_mapped(void **state)
{
    struct sec_event ev;
    char buf[ADDR_STRLEN];
    assert_int_equal(
        normalize(EV("InvalidAccountID", "RemoteAddress: IPV6/UDP/2001:db8:bad::66/5071\r\n"), &ev,
                  NULL),
        AMI_EVENT_OK);
    assert_int_equal(ev.type, SEC_INVALID_ACCOUNT_ID);
    assert_string_equal(ev.service, "PJSIP");
    assert_int_equal(ev.version, 1);
    assert_string_equal(ev.account, "1001");
    assert_string_equal(ev.session, "abc@x");
    assert_string_equal(addr_format(&ev.remote.addr, buf, sizeof(buf)), "2001:db8:bad::66");
    assert_int_equal(ev.remote.port, 5071);
    assert_int_equal(ev.remote.transport, SEC_TRANSPORT_UDP);
    assert_true(ev.has_local);
    assert_string_equal(addr_format(&ev.local.addr, buf, sizeof(buf)), "203.0.113.10");
    assert_int_equal(ev.event_tv_ms, 1748866051402LL);
    assert_string_equal(ev.source, "ami:pbx1");
    assert_int_equal(ev.received_ms, 0);
}

static void all_fifteen_event_names_are_known(void **state)
{
    for (int t = 0; t < SEC_EVENT_TYPE_COUNT; t++) {
        char text[512];
        snprintf(text, sizeof(text),
                 "Event: %s\r\nPrivilege: security,all\r\n"
                 "RemoteAddress: IPV4/UDP/192.0.2.1/5060\r\n\r\n",
                 sec_event_type_name((enum sec_event_type)t));
        struct sec_event ev;
        assert_int_equal(normalize(text, &ev, NULL), AMI_EVENT_OK);
        assert_int_equal(ev.type, t);
    }
}

/* --- address fields --- */

struct addr_case {
    const char *in;
    int ret;
    const char *addr;
    uint16_t port;
    enum sec_transport transport;
    const char *scope;
};

static void address_fields_parse_as_asterisk_writes_them(void **state)
{
    static const struct addr_case cases[] = {
        {"IPV4/UDP/198.51.100.23/5071", 0, "198.51.100.23", 5071, SEC_TRANSPORT_UDP, ""},
        {"IPV4/TCP/0.0.0.0/5038", 0, "0.0.0.0", 5038, SEC_TRANSPORT_TCP, ""},
        {"IPV4/TLS/192.0.2.8/40122", 0, "192.0.2.8", 40122, SEC_TRANSPORT_TLS, ""},
        {"IPV4/WS/192.0.2.8/1", 0, "192.0.2.8", 1, SEC_TRANSPORT_WS, ""},
        {"IPV4/WSS/192.0.2.8/65535", 0, "192.0.2.8", 65535, SEC_TRANSPORT_WSS, ""},
        {"IPV4/192.0.2.8/5060", 0, "192.0.2.8", 5060, SEC_TRANSPORT_NONE, ""},
        {"IPV6/UDP/2001:db8::1/5060", 0, "2001:db8::1", 5060, SEC_TRANSPORT_UDP, ""},
        {"IPV6/2001:db8::1/5060", 0, "2001:db8::1", 5060, SEC_TRANSPORT_NONE, ""},
        {"IPV6/UDP/fe80::1%eth0/5060", 0, "fe80::1", 5060, SEC_TRANSPORT_UDP, "eth0"},
        {"IPV6/TCP/::/5038", 0, "::", 5038, SEC_TRANSPORT_TCP, ""},
        {"IPV6/UDP/::ffff:192.0.2.7/5060", 0, "192.0.2.7", 5060, SEC_TRANSPORT_UDP, ""},
        {"IPV4/UDP/192.0.2.7/0", 0, "192.0.2.7", 0, SEC_TRANSPORT_UDP, ""},
        {"ipv4/udp/192.0.2.7/5060", 0, "192.0.2.7", 5060, SEC_TRANSPORT_UDP, ""},
        {"IPV\x14/UDP/192.0.2.7/5060", -EINVAL},
        {"IPV4/UDP/01.2.3.4/5060", -EINVAL},
        {"IPV4/UDP/1.2.3/5060", -EINVAL},
        {"IPV4/UDP/1.2.3.4.5/5060", -EINVAL},
        {"IPV4/UDP/1.2.3.256/5060", -EINVAL},
        {"IPV4/UDP/1..3.4/5060", -EINVAL},
        {"", -EINVAL},
        {"IPV4", -EINVAL},
        {"IPV4/1.2.3.4", -EINVAL},
        {"IPV4/UDP/1.2.3.4/65536", -EINVAL},
        {"IPV4/UDP/1.2.3.4/", -EINVAL},
        {"IPV4/UDP/1.2.3.4/50a", -EINVAL},
        {"IPV4/SCTP/1.2.3.4/5060", -EINVAL},
        {"IPV5/UDP/1.2.3.4/5060", -EINVAL},
        {"IPV4/UDP/2001:db8::1/5060", -EINVAL},
        {"IPV6/UDP/1.2.3.4/5060", -EINVAL},
        {"IPV4/UDP/1.2.3.4%eth0/5060", -EINVAL},
        {"IPV6/UDP/fe80::1%/5060", -EINVAL},
        {"IPV6/UDP/fe80::1%averyveryverylongname/1", -EINVAL},
        {"IPV4/UDP/1.2.3.4/5060/7", -EINVAL},
        {"IPV4/UDP/[::1]/5060", -EINVAL},
        {"IPV4/UDP/1.2.3.4/-1", -EINVAL},
    };
    for (size_t i = 0; i < N(cases); i++) {
        const struct addr_case *c = &cases[i];
        struct sec_endpoint ep;
        memset(&ep, 0xa5, sizeof(ep));
        int r = ami_event_parse_address(c->in, strlen(c->in), &ep);
        if (r != c->ret)
            fail_msg("\"%s\": got %d, want %d", c->in, r, c->ret);
        if (r < 0)
            continue;
        char buf[ADDR_STRLEN];
        assert_string_equal(addr_format(&ep.addr, buf, sizeof(buf)), c->addr);
        assert_int_equal(ep.port, c->port);
        assert_int_equal(ep.transport, c->transport);
        assert_string_equal(ep.scope, c->scope);
    }
}

/* --- EventTV --- */

struct time_case {
    const char *in;
    int ret;
    int64_t ms;
};

static void event_times_parse_to_utc_milliseconds(void **state)
{
    static const struct time_case cases[] = {
        {"2025-06-02T14:07:31.402+0000", 0, 1748873251402LL},
        {"2025-06-02T14:07:31.402+0200", 0, 1748866051402LL},
        {"2025-06-02T14:07:31.402-0530", 0, 1748893051402LL},
        {"2025-06-02T14:07:31.402+02:00", 0, 1748866051402LL},
        {"2025-06-02T14:07:31Z", 0, 1748873251000LL},
        {"2025-06-02T14:07:31.4+0000", 0, 1748873251400LL},
        {"2025-06-02T14:07:31.402999+0000", 0, 1748873251402LL},
        {"2025-06-02T14:07:31", 0, 1748873251000LL},
        {"1970-01-01T00:00:00.000+0000", 0, 0},
        {"2024-02-29T23:59:59.999+0000", 0, 1709251199999LL},
        {"2026-11-26T09:01:47.957+0000", 0, 1795683707957LL},
        {"1368439853-500975", 0, 1368439853500LL},
        {"", -EINVAL},
        {"yesterday", -EINVAL},
        {"2025-13-02T14:07:31.402+0000", -EINVAL},
        {"2025-06-02T14:07:31.+0000", -EINVAL},
        {"2025-06-02T14:07:31.402+02", -EINVAL},
        {"2025-06-02T14:07:31.402 junk", -EINVAL},
        {"2025-06-02 14:07:31", -EINVAL},
        {"-5", -EINVAL},
        {"5-", -EINVAL},
        {"12a-5", -EINVAL},
    };
    for (size_t i = 0; i < N(cases); i++) {
        int64_t ms = -1;
        int r = ami_event_parse_time(cases[i].in, strlen(cases[i].in), &ms);
        if (r != cases[i].ret)
            fail_msg("\"%s\": got %d, want %d", cases[i].in, r, cases[i].ret);
        if (r == 0 && ms != cases[i].ms)
            fail_msg("\"%s\": got %lld, want %lld", cases[i].in, (long long)ms,
                     (long long)cases[i].ms);
        if (r < 0)
            assert_int_equal(ms, -1);
    }
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(every_event_of_the_ipv4_capture_normalizes_as_expected),
        T(every_event_of_the_timestampevents_capture_normalizes_as_expected),
        T(wrong_md5_key_keeps_no_trace_of_the_expected_response),
        T(privilege_need_not_be_the_second_header),
        T(unknown_event_names_are_reported_not_fatal),
        T(system_events_are_not_security_events),
        T(missing_remote_address_is_malformed),
        T(unparsable_remote_address_is_malformed),
        T(long_account_ids_are_truncated_and_flagged),
        T(attacker_text_in_account_stays_data),
        T(event_fields_are_all_mapped),
        T(all_fifteen_event_names_are_known),
        T(address_fields_parse_as_asterisk_writes_them),
        T(event_times_parse_to_utc_milliseconds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
