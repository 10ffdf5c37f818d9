#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "statsd.h"

/* The socket tests run in a private network namespace (root), never on the host's loopback. */
static bool have_netns;

static void bring_up_loopback(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {0};
    strcpy(ifr.ifr_name, "lo");
    if (fd >= 0 && ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags |= IFF_UP;
        have_netns = ioctl(fd, SIOCSIFFLAGS, &ifr) == 0;
    }
    if (fd >= 0)
        close(fd);
}

#define NEED_NETNS()                                                                               \
    do {                                                                                           \
        if (!have_netns)                                                                           \
            skip();                                                                                \
    } while (0)

/* ---- the packer ---- */

static void pack_joins_lines_with_newlines_and_no_trailing_one(void **state)
{
    char buf[64];
    struct statsd_pack p = {.buf = buf, .cap = sizeof(buf)};
    assert_int_equal(statsd_pack_add(&p, "a:1|c", 5), 0);
    assert_int_equal(statsd_pack_add(&p, "b:2|c", 5), 0);
    assert_int_equal(p.len, 11);
    assert_int_equal(p.lines, 2);
    assert_memory_equal(buf, "a:1|c\nb:2|c", 11);
}

static void pack_takes_a_line_that_exactly_fills_the_payload(void **state)
{
    char buf[16];
    struct statsd_pack p = {.buf = buf, .cap = sizeof(buf)};
    assert_int_equal(statsd_pack_add(&p, "aaaaaaa", 7), 0);
    /* 7 + newline + 8 = 16 = cap */
    assert_int_equal(statsd_pack_add(&p, "bbbbbbbb", 8), 0);
    assert_int_equal(p.len, 16);
}

static void pack_refuses_a_line_one_byte_over_until_reset(void **state)
{
    char buf[16];
    struct statsd_pack p = {.buf = buf, .cap = sizeof(buf)};
    assert_int_equal(statsd_pack_add(&p, "aaaaaaa", 7), 0);
    assert_int_equal(statsd_pack_add(&p, "bbbbbbbbb", 9), -ENOSPC);
    assert_int_equal(p.len, 7);
    assert_int_equal(p.lines, 1);
    statsd_pack_reset(&p);
    assert_int_equal(statsd_pack_add(&p, "bbbbbbbbb", 9), 0);
    assert_memory_equal(buf, "bbbbbbbbb", 9);
}

static void pack_takes_a_single_line_as_long_as_the_payload(void **state)
{
    char buf[16];
    struct statsd_pack p = {.buf = buf, .cap = sizeof(buf)};
    assert_int_equal(statsd_pack_add(&p, "0123456789abcdef", 16), 0);
}

static void pack_refuses_for_ever_a_line_longer_than_the_payload(void **state)
{
    char buf[16];
    struct statsd_pack p = {.buf = buf, .cap = sizeof(buf)};
    assert_int_equal(statsd_pack_add(&p, "0123456789abcdefg", 17), -EMSGSIZE);
    assert_int_equal(p.len, 0);
}

/* ---- the per-interval address set ---- */

static struct sec_endpoint ep(const char *addr, enum sec_transport t)
{
    struct sec_endpoint e = {.transport = t, .port = 5060};
    assert_int_equal(addr_parse(addr, strlen(addr), &e.addr), 0);
    return e;
}

static void addrset_admits_the_first_n_distinct_addresses_only(void **state)
{
    struct statsd_addrset *set = statsd_addrset_new(2, 1000);
    struct sec_endpoint a = ep("192.0.2.1", SEC_TRANSPORT_UDP),
                        b = ep("2001:db8::1", SEC_TRANSPORT_UDP),
                        c = ep("192.0.2.3", SEC_TRANSPORT_UDP);
    assert_true(statsd_addrset_admit(set, &a, 0));
    assert_true(statsd_addrset_admit(set, &b, 1));
    assert_false(statsd_addrset_admit(set, &c, 2));
    /* Addresses already admitted keep their meter for the rest of the interval. */
    assert_true(statsd_addrset_admit(set, &a, 3));
    assert_true(statsd_addrset_admit(set, &b, 999));
    statsd_addrset_free(set);
}

static void addrset_starts_afresh_each_interval(void **state)
{
    struct statsd_addrset *set = statsd_addrset_new(1, 1000);
    struct sec_endpoint a = ep("192.0.2.1", SEC_TRANSPORT_UDP),
                        c = ep("192.0.2.3", SEC_TRANSPORT_UDP);
    assert_true(statsd_addrset_admit(set, &a, 5000));
    assert_false(statsd_addrset_admit(set, &c, 5999));
    assert_true(statsd_addrset_admit(set, &c, 6000));
    assert_false(statsd_addrset_admit(set, &a, 6001));
    statsd_addrset_free(set);
}

static void addrset_counts_one_address_over_two_transports_twice(void **state)
{
    struct statsd_addrset *set = statsd_addrset_new(1, 1000);
    struct sec_endpoint u = ep("192.0.2.1", SEC_TRANSPORT_UDP),
                        t = ep("192.0.2.1", SEC_TRANSPORT_TCP);
    assert_true(statsd_addrset_admit(set, &u, 0));
    assert_false(statsd_addrset_admit(set, &t, 0));
    statsd_addrset_free(set);
}

static void addrset_with_limit_zero_admits_everything(void **state)
{
    struct statsd_addrset *set = statsd_addrset_new(0, 1000);
    for (unsigned i = 0; i < 1000; i++) {
        struct sec_endpoint e = {.addr = {.family = AF_INET6}, .transport = SEC_TRANSPORT_UDP};
        memcpy(e.addr.bytes, &i, sizeof(i));
        assert_true(statsd_addrset_admit(set, &e, 0));
    }
    statsd_addrset_free(set);
}

static void addrset_holds_a_botnet_to_the_limit_over_many_intervals(void **state)
{
    const unsigned limit = 1000;
    struct statsd_addrset *set = statsd_addrset_new(limit, 1000);
    for (unsigned interval = 0; interval < 5; interval++) {
        unsigned admitted = 0;
        for (unsigned i = 0; i < 20000; i++) {
            struct sec_endpoint e = {.addr = {.family = AF_INET6}, .transport = SEC_TRANSPORT_UDP};
            uint32_t v = i * 2654435761u + interval;
            memcpy(e.addr.bytes + 12, &v, sizeof(v));
            admitted += statsd_addrset_admit(set, &e, interval * 1000ull + 10);
        }
        assert_int_equal(admitted, limit);
    }
    statsd_addrset_free(set);
}

/* ---- the emitter, against real UDP sockets ---- */

struct rx {
    int fd;
    uint16_t port;
};

static struct rx rx_open(int family)
{
    struct rx r;
    r.fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(r.fd >= 0);
    struct sockaddr_storage ss = {0};
    socklen_t sl;
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sl = sizeof(*in);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_addr = in6addr_loopback;
        sl = sizeof(*in6);
    }
    assert_int_equal(bind(r.fd, (struct sockaddr *)&ss, sl), 0);
    sl = sizeof(ss);
    assert_int_equal(getsockname(r.fd, (struct sockaddr *)&ss, &sl), 0);
    r.port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                     : ((struct sockaddr_in6 *)&ss)->sin6_port);
    return r;
}

/* The next datagram as a string, or NULL if none arrives within timeout_ms. */
static char *rx_next(struct rx *r, int timeout_ms)
{
    static char buf[65536];
    struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
    if (poll(&pfd, 1, timeout_ms) != 1)
        return NULL;
    ssize_t n = recv(r->fd, buf, sizeof(buf) - 1, 0);
    assert_true(n >= 0);
    buf[n] = '\0';
    return buf;
}

static struct cfg_statsd cfg_for(const char *host, uint16_t port)
{
    struct cfg_statsd c = {.enabled = true,
                           .port = port,
                           .own_prefix = "pbxguard",
                           .type = CFG_STATSD_COUNTER,
                           .per_address = true,
                           .per_address_limit = 1000,
                           .max_payload = 1432,
                           .flush_interval_ms = 60000};
    snprintf(c.host, sizeof(c.host), "%s", host);
    return c;
}

static struct sec_event failure(const char *service, const char *addr, enum sec_transport t)
{
    struct sec_event ev = {.type = SEC_INVALID_PASSWORD, .remote = ep(addr, t)};
    snprintf(ev.service, sizeof(ev.service), "%s", service);
    return ev;
}

static void failed_auth_sends_the_two_original_meters_over_ipv4(void **state)
{
    NEED_NETNS();
    struct rx r = rx_open(AF_INET);
    struct cfg_statsd cfg = cfg_for("127.0.0.1", r.port);
    struct statsd *s = statsd_new(&cfg);
    assert_non_null(s);
    struct sec_event ev = failure("PJSIP", "1.2.3.4", SEC_TRANSPORT_UDP);
    statsd_failed_auth(s, &ev);
    statsd_flush(s);
    assert_string_equal(rx_next(&r, 2000), "security.failed_auth.PJSIP.count:1|c\n"
                                           "security.failed_auth.PJSIP.IPV4/UDP/1_2_3_4:1|c");
    assert_null(rx_next(&r, 50));
    struct statsd_stats st;
    statsd_get_stats(s, &st);
    assert_int_equal(st.datagrams_sent, 1);
    assert_int_equal(st.lines_sent, 2);
    assert_int_equal(st.datagrams_dropped, 0);
    statsd_free(s);
    close(r.fd);
}

static void meter_type_and_prefix_apply_over_ipv6(void **state)
{
    NEED_NETNS();
    struct rx r = rx_open(AF_INET6);
    struct cfg_statsd cfg = cfg_for("::1", r.port);
    cfg.type = CFG_STATSD_METER;
    strcpy(cfg.prefix, "asterisk");
    struct statsd *s = statsd_new(&cfg);
    assert_non_null(s);
    struct sec_event ev = failure("AMI", "2001:db8::1", SEC_TRANSPORT_TCP);
    statsd_failed_auth(s, &ev);
    statsd_flush(s);
    assert_string_equal(rx_next(&r, 2000),
                        "asterisk.security.failed_auth.AMI.count:1|m\n"
                        "asterisk.security.failed_auth.AMI.IPV6/TCP/2001_db8__1:1|m");
    statsd_free(s);
    close(r.fd);
}

static void hostile_service_arrives_as_one_parsable_line(void **state)
{
    NEED_NETNS();
    struct rx r = rx_open(AF_INET);
    struct cfg_statsd cfg = cfg_for("127.0.0.1", r.port);
    cfg.per_address = false;
    struct statsd *s = statsd_new(&cfg);
    struct sec_event ev = failure("a:b|c@d e\n", "1.2.3.4", SEC_TRANSPORT_UDP);
    statsd_failed_auth(s, &ev);
    statsd_flush(s);
    assert_string_equal(rx_next(&r, 2000), "security.failed_auth.a_b_c_d_e_.count:1|c");
    statsd_free(s);
    close(r.fd);
}

static void per_address_meter_can_be_turned_off(void **state)
{
    NEED_NETNS();
    struct rx r = rx_open(AF_INET);
    struct cfg_statsd cfg = cfg_for("127.0.0.1", r.port);
    cfg.per_address = false;
    struct statsd *s = statsd_new(&cfg);
    struct sec_event ev = failure("SIP", "192.0.2.9", SEC_TRANSPORT_UDP);
    statsd_failed_auth(s, &ev);
    statsd_failed_auth(s, &ev);
    statsd_flush(s);
    assert_string_equal(rx_next(&r, 2000),
                        "security.failed_auth.SIP.count:1|c\nsecurity.failed_auth.SIP.count:1|c");
    statsd_free(s);
    close(r.fd);
}

static void addresses_over_the_limit_are_suppressed_and_reported(void **state)
{
    NEED_NETNS();
    struct rx r = rx_open(AF_INET);
    struct cfg_statsd cfg = cfg_for("127.0.0.1", r.port);
    cfg.per_address_limit = 1;
    struct statsd *s = statsd_new(&cfg);
    struct sec_event a = failure("PJSIP", "192.0.2.1", SEC_TRANSPORT_UDP);
    struct sec_event b = failure("PJSIP", "192.0.2.2", SEC_TRANSPORT_UDP);
    statsd_failed_auth_at(s, &a, 100);
    statsd_failed_auth_at(s, &b, 101);
    statsd_failed_auth_at(s, &b, 102);
    statsd_flush(s);
    assert_string_equal(rx_next(&r, 2000), "security.failed_auth.PJSIP.count:1|c\n"
                                           "security.failed_auth.PJSIP.IPV4/UDP/192_0_2_1:1|c\n"
                                           "security.failed_auth.PJSIP.count:1|c\n"
                                           "security.failed_auth.PJSIP.count:1|c\n"
                                           "pbxguard.statsd.suppressed:2|c");
    struct statsd_stats st;
    statsd_get_stats(s, &st);
    assert_int_equal(st.lines_suppressed, 2);
    /* The report is sent once, not again at the next flush. */
    statsd_flush(s);
    assert_null(rx_next(&r, 50));
    statsd_free(s);
    close(r.fd);
}

static void own_meters_go_under_the_own_prefix(void **state)
{
    NEED_NETNS();
    struct rx r = rx_open(AF_INET);
    struct cfg_statsd cfg = cfg_for("127.0.0.1", r.port);
    struct statsd *s = statsd_new(&cfg);
    statsd_count_by(s, STATSD_M_BANS, "policy", 1);
    statsd_count_by(s, STATSD_M_UNBANS, "bad:reason|x", 2);
    statsd_count_by(s, STATSD_M_EVENTS, sec_event_type_name(SEC_CHALLENGE_SENT), 1);
    statsd_count(s, STATSD_M_AMI_RECONNECTS, 1);
    statsd_gauge(s, STATSD_M_BANS_ACTIVE_IPV4, 42);
    statsd_gauge(s, STATSD_M_BANS_ACTIVE_IPV6, -1);
    statsd_flush(s);
    assert_string_equal(rx_next(&r, 2000), "pbxguard.bans.policy:1|c\n"
                                           "pbxguard.unbans.bad_reason_x:2|c\n"
                                           "pbxguard.events.ChallengeSent:1|c\n"
                                           "pbxguard.ami.reconnects:1|c\n"
                                           "pbxguard.bans.active.ipv4:42|g\n"
                                           "pbxguard.bans.active.ipv6:0|g\n"
                                           "pbxguard.bans.active.ipv6:-1|g");
    statsd_free(s);
    close(r.fd);
}

static void lines_beyond_the_payload_size_go_in_further_datagrams(void **state)
{
    NEED_NETNS();
    struct rx r = rx_open(AF_INET);
    struct cfg_statsd cfg = cfg_for("127.0.0.1", r.port);
    /* "pbxguard.nft.errors:1|c" is 23 bytes: three lines and two newlines fill 71 exactly. */
    cfg.max_payload = 71;
    struct statsd *s = statsd_new(&cfg);
    for (int i = 0; i < 7; i++)
        statsd_count(s, STATSD_M_NFT_ERRORS, 1);
    const char *three = "pbxguard.nft.errors:1|c\npbxguard.nft.errors:1|c\npbxguard.nft.errors:1|c";
    /* Two full datagrams left when the buffer filled, before any flush. */
    assert_string_equal(rx_next(&r, 2000), three);
    assert_string_equal(rx_next(&r, 2000), three);
    assert_null(rx_next(&r, 50));
    statsd_flush(s);
    assert_string_equal(rx_next(&r, 2000), "pbxguard.nft.errors:1|c");
    statsd_free(s);
    close(r.fd);
}

static void a_line_longer_than_the_payload_is_dropped_and_counted(void **state)
{
    NEED_NETNS();
    struct rx r = rx_open(AF_INET);
    struct cfg_statsd cfg = cfg_for("127.0.0.1", r.port);
    cfg.max_payload = 64; /* the minimum */
    struct statsd *s = statsd_new(&cfg);
    char longname[80];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    statsd_count(s, longname, 1);
    statsd_flush(s);
    assert_string_equal(rx_next(&r, 2000), "pbxguard.statsd.dropped:1|c");
    struct statsd_stats st;
    statsd_get_stats(s, &st);
    assert_int_equal(st.lines_dropped, 1);
    assert_int_equal(st.buffer_size, 64);
    statsd_free(s);
    close(r.fd);
}

static void with_nothing_listening_datagrams_are_dropped_and_nothing_grows(void **state)
{
    NEED_NETNS();
    struct rx r = rx_open(AF_INET);
    uint16_t port = r.port;
    close(r.fd); /* nothing listens there now: ICMP port unreachable, then ECONNREFUSED */
    struct cfg_statsd cfg = cfg_for("127.0.0.1", port);
    struct statsd *s = statsd_new(&cfg);
    assert_non_null(s);
    struct sec_event ev = failure("PJSIP", "192.0.2.1", SEC_TRANSPORT_UDP);
    struct statsd_stats st;
    for (int i = 0; i < 200; i++) {
        for (int j = 0; j < 50; j++)
            statsd_failed_auth(s, &ev);
        statsd_flush(s);
        statsd_get_stats(s, &st);
        assert_int_equal(st.buffered, 0);
    }
    statsd_get_stats(s, &st);
    assert_true(st.datagrams_dropped > 0);
    assert_true(st.lines_dropped > 0);
    assert_int_equal(st.send_errno, ECONNREFUSED);
    assert_int_equal(st.buffer_size, 1432);
    statsd_free(s);
}

static void server_without_a_route_is_not_an_error_but_its_datagrams_are_dropped(void **state)
{
    NEED_NETNS();
    /* The namespace has only loopback: no route to TEST-NET-1. */
    struct cfg_statsd cfg = cfg_for("192.0.2.1", 8125);
    struct statsd *s = statsd_new(&cfg);
    assert_non_null(s);
    statsd_count(s, STATSD_M_DB_ERRORS, 1);
    statsd_flush(s);
    statsd_count(s, STATSD_M_DB_ERRORS, 1);
    statsd_flush(s);
    struct statsd_stats st;
    statsd_get_stats(s, &st);
    assert_int_equal(st.datagrams_sent, 0);
    assert_int_equal(st.datagrams_dropped, 2);
    assert_int_equal(st.send_errno, ENETUNREACH);
    statsd_free(s);
}

static void disabled_emitter_opens_nothing_and_sends_nothing(void **state)
{
    struct cfg_statsd cfg = cfg_for("127.0.0.1", 9);
    cfg.enabled = false;
    struct statsd *s = statsd_new(&cfg);
    assert_non_null(s);
    struct sec_event ev = failure("PJSIP", "192.0.2.1", SEC_TRANSPORT_UDP);
    statsd_failed_auth(s, &ev);
    statsd_count(s, STATSD_M_DB_ERRORS, 1);
    statsd_flush(s);
    struct statsd_stats st;
    statsd_get_stats(s, &st);
    assert_int_equal(st.datagrams_sent + st.datagrams_dropped + st.lines_dropped, 0);
    statsd_free(s);
    statsd_free(NULL);
}

static void reload_moves_to_the_new_server(void **state)
{
    NEED_NETNS();
    struct rx a = rx_open(AF_INET), b = rx_open(AF_INET6);
    struct cfg_statsd cfg = cfg_for("127.0.0.1", a.port);
    struct statsd *s = statsd_new(&cfg);
    statsd_count(s, STATSD_M_DB_ERRORS, 1);
    struct cfg_statsd cfg2 = cfg_for("::1", b.port);
    strcpy(cfg2.own_prefix, "pg2.");
    assert_int_equal(statsd_reload(s, &cfg2), 0);
    /* What was buffered went to the old server at the reload. */
    assert_string_equal(rx_next(&a, 2000), "pbxguard.db.errors:1|c");
    statsd_count(s, STATSD_M_DB_ERRORS, 1);
    statsd_flush(s);
    assert_string_equal(rx_next(&b, 2000), "pg2.db.errors:1|c");
    assert_null(rx_next(&a, 50));
    statsd_free(s);
    close(a.fd);
    close(b.fd);
}

static void failed_reload_keeps_the_running_configuration(void **state)
{
    NEED_NETNS();
    struct rx a = rx_open(AF_INET);
    struct cfg_statsd cfg = cfg_for("127.0.0.1", a.port);
    struct statsd *s = statsd_new(&cfg);
    struct cfg_statsd bad = cfg_for("nonexistent.invalid", 8125);
    assert_true(statsd_reload(s, &bad) < 0);
    statsd_count(s, STATSD_M_DB_ERRORS, 1);
    statsd_flush(s);
    assert_string_equal(rx_next(&a, 2000), "pbxguard.db.errors:1|c");
    statsd_free(s);
    close(a.fd);
}

static void unresolvable_host_fails_statsd_new(void **state)
{
    NEED_NETNS();
    struct cfg_statsd bad = cfg_for("nonexistent.invalid", 8125);
    errno = 0;
    assert_null(statsd_new(&bad));
    assert_true(errno != 0);
}

int main(void)
{
    /* A private network namespace of our own when root; the socket tests skip otherwise. */
    if (geteuid() == 0 && unshare(CLONE_NEWNET) == 0)
        bring_up_loopback();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pack_joins_lines_with_newlines_and_no_trailing_one),
        cmocka_unit_test(pack_takes_a_line_that_exactly_fills_the_payload),
        cmocka_unit_test(pack_refuses_a_line_one_byte_over_until_reset),
        cmocka_unit_test(pack_takes_a_single_line_as_long_as_the_payload),
        cmocka_unit_test(pack_refuses_for_ever_a_line_longer_than_the_payload),
        cmocka_unit_test(addrset_admits_the_first_n_distinct_addresses_only),
        cmocka_unit_test(addrset_starts_afresh_each_interval),
        cmocka_unit_test(addrset_counts_one_address_over_two_transports_twice),
        cmocka_unit_test(addrset_with_limit_zero_admits_everything),
        cmocka_unit_test(addrset_holds_a_botnet_to_the_limit_over_many_intervals),
        cmocka_unit_test(failed_auth_sends_the_two_original_meters_over_ipv4),
        cmocka_unit_test(meter_type_and_prefix_apply_over_ipv6),
        cmocka_unit_test(hostile_service_arrives_as_one_parsable_line),
        cmocka_unit_test(per_address_meter_can_be_turned_off),
        cmocka_unit_test(addresses_over_the_limit_are_suppressed_and_reported),
        cmocka_unit_test(own_meters_go_under_the_own_prefix),
        cmocka_unit_test(lines_beyond_the_payload_size_go_in_further_datagrams),
        cmocka_unit_test(a_line_longer_than_the_payload_is_dropped_and_counted),
        cmocka_unit_test(with_nothing_listening_datagrams_are_dropped_and_nothing_grows),
        cmocka_unit_test(server_without_a_route_is_not_an_error_but_its_datagrams_are_dropped),
        cmocka_unit_test(disabled_emitter_opens_nothing_and_sends_nothing),
        cmocka_unit_test(reload_moves_to_the_new_server),
        cmocka_unit_test(failed_reload_keeps_the_running_configuration),
        cmocka_unit_test(unresolvable_host_fails_statsd_new),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
