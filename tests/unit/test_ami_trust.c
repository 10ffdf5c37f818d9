/* Reading Asterisk's answers to the trust queries: the fixtures written from Asterisk 20's
 * source (tests/fixtures/ami/TRUST-RESPONSES.md), and the string parsers, table-driven. */
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

#include "ami_frame.h"
#include "ami_trust.h"
#include "store_fixtures.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

struct got {
    struct ami_trust_item items[32];
    unsigned nitems;
    char endpoints[8][64];
    unsigned nendpoints;
    unsigned frames, recognized, complete;
};

static void on_item(void *data, const struct ami_trust_item *it)
{
    struct got *g = data;
    assert_true(g->nitems < N(g->items));
    g->items[g->nitems++] = *it;
}

static void on_endpoint(void *data, const char *name, size_t len)
{
    struct got *g = data;
    assert_true(g->nendpoints < N(g->endpoints) && len < sizeof(g->endpoints[0]));
    memcpy(g->endpoints[g->nendpoints], name, len);
    g->endpoints[g->nendpoints++][len] = '\0';
}

static struct ami_parser parser;

/* Feeds a fixture through the frame parser and ami_trust_from_frame(). */
static void read_fixture(const char *name, struct got *g)
{
    char path[256];
    snprintf(path, sizeof(path), "fixtures/ami/%s", name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[1 << 16];
    size_t len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    memset(g, 0, sizeof(*g));
    struct ami_trust_fns fns = {.item = on_item, .endpoint = on_endpoint};
    ami_parser_init(&parser, false);
    size_t off = 0;
    while (off < len) {
        off += ami_parser_feed(&parser, buf + off, len - off);
        const struct ami_frame *fr;
        while ((fr = ami_parser_next(&parser))) {
            bool complete = false;
            g->frames++;
            if (ami_trust_from_frame(fr, &fns, g, &complete))
                g->recognized++;
            if (complete)
                g->complete++;
            /* Asterisk's answers carry our ActionID right after the first line. */
            if (fr->kind == AMI_FRAME_RESPONSE || ami_frame_get(fr, "ActionID")) {
                assert_true(fr->nheaders > 1);
                assert_true(fr->headers[1].name_len == 8);
                assert_memory_equal(fr->headers[1].name, "ActionID", 8);
            }
        }
    }
    /* Nothing was thrown away: EndpointDetail's 145 lines fit. */
    assert_int_equal(parser.stats.discarded, 0);
}

static void assert_numeric(const struct ami_trust_item *it, enum ami_trust_kind kind,
                           const char *name, const char *prefix)
{
    assert_int_equal(it->kind, kind);
    assert_string_equal(it->name, name);
    assert_true(it->numeric);
    char buf[ADDR_STRLEN];
    assert_string_equal(addr_prefix_format(&it->prefix, buf, sizeof(buf)), prefix);
}

static void assert_host(const struct ami_trust_item *it, enum ami_trust_kind kind, const char *name,
                        const char *host)
{
    assert_int_equal(it->kind, kind);
    assert_string_equal(it->name, name);
    assert_false(it->numeric);
    assert_string_equal(it->host, host);
}

static void a_trunk_yields_its_identify_matches_and_static_contact(void **state)
{
    struct got g;
    read_fixture("trust-pjsip-endpoint-trunk.raw", &g);
    assert_int_equal(g.frames, 8);
    assert_int_equal(g.complete, 1);
    assert_int_equal(g.nitems, 4);
    assert_numeric(&g.items[0], AMI_TRUST_IDENTIFY, "carrier1-identify", "192.0.2.50");
    assert_numeric(&g.items[1], AMI_TRUST_IDENTIFY, "carrier1-identify", "198.51.100.0/24");
    /* "!198.51.100.7/..." is an exclusion: skipped. The IPv6 match has a port. */
    assert_numeric(&g.items[2], AMI_TRUST_IDENTIFY, "carrier1-identify", "2001:db8:50::1");
    assert_host(&g.items[3], AMI_TRUST_CONTACT, "carrier1", "carrier1.example.net");
}

static void a_phones_registered_contact_is_never_trusted(void **state)
{
    struct got g;
    read_fixture("trust-pjsip-endpoint-phone.raw", &g);
    assert_int_equal(g.complete, 1);
    assert_int_equal(g.nitems, 0);
}

static void the_endpoint_list_names_every_endpoint(void **state)
{
    struct got g;
    read_fixture("trust-pjsip-endpoints.raw", &g);
    assert_int_equal(g.nendpoints, 2);
    assert_string_equal(g.endpoints[0], "carrier1");
    assert_string_equal(g.endpoints[1], "1001");
    assert_int_equal(g.complete, 1);
    assert_int_equal(g.nitems, 0);
}

static void a_registration_yields_its_server_by_name(void **state)
{
    struct got g;
    read_fixture("trust-pjsip-registrations.raw", &g);
    assert_int_equal(g.nitems, 1);
    assert_host(&g.items[0], AMI_TRUST_REGISTRATION, "carrier2", "sip.carrier2.example");
    assert_int_equal(g.complete, 1);
}

static void only_static_sip_and_iax_peers_are_trusted(void **state)
{
    struct got g;
    read_fixture("trust-sippeers.raw", &g);
    assert_int_equal(g.nitems, 1);
    assert_numeric(&g.items[0], AMI_TRUST_SIP_PEER, "sipgw", "192.0.2.55");
    read_fixture("trust-iaxpeerlist.raw", &g);
    assert_int_equal(g.nitems, 1);
    assert_numeric(&g.items[0], AMI_TRUST_IAX_PEER, "iaxtrunk", "2001:db8:60::1");
}

static void plain_responses_and_system_events_are_not_list_items(void **state)
{
    struct got g;
    read_fixture("trust-responses.raw", &g);
    assert_int_equal(g.frames, 7);
    assert_int_equal(g.recognized, 0);
    assert_int_equal(g.nitems, 0);
}

static void auth_secrets_in_answers_are_wiped_by_the_parser(void **state)
{
    FILE *f = fopen("fixtures/ami/trust-pjsip-endpoint-trunk.raw", "rb");
    assert_non_null(f);
    static char buf[1 << 16];
    size_t len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    assert_non_null(memmem(buf, len, "carrier-secret-123", 18));
    ami_parser_init(&parser, false);
    assert_int_equal(ami_parser_feed(&parser, buf, len), len);
    const struct ami_frame *fr;
    unsigned auths = 0;
    while ((fr = ami_parser_next(&parser))) {
        const struct ami_header *p = ami_frame_get(fr, "Password");
        if (p && ami_header_value_is(&fr->headers[0], "AuthDetail")) {
            auths++;
            assert_int_equal(p->value_len, 0);
        }
    }
    assert_int_equal(auths, 1);
    assert_null(memmem(parser.buf, sizeof(parser.buf), "carrier-secret-123", 18));
}

struct collect {
    char out[8][ADDR_STRLEN];
    unsigned n;
};

static void collect_prefix(void *data, const struct addr_prefix *p)
{
    struct collect *c = data;
    if (c->n < N(c->out))
        addr_prefix_format(p, c->out[c->n++], ADDR_STRLEN);
}

static void match_lists_parse_as_asterisk_writes_them(void **state)
{
    static const struct {
        const char *in;
        const char *out[4]; /* NULL-terminated */
    } cases[] = {
        {"192.0.2.50/255.255.255.255", {"192.0.2.50"}},
        {"192.0.2.77/255.255.255.0", {"192.0.2.0/24"}}, /* host bits cleared */
        {"192.0.2.50:5060/255.255.255.255", {"192.0.2.50"}},
        {"2001:db8::1/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", {"2001:db8::1"}},
        {"[2001:db8::1]:5061/ffff:ffff:ffff:ffff::", {"2001:db8::/64"}},
        {"2001:db8::/ffff:ffff::", {"2001:db8::/32"}},
        {" 198.51.100.0/24 , 203.0.113.9/32 ", {"198.51.100.0/24", "203.0.113.9"}},
        {"!192.0.2.1/255.255.255.255,192.0.2.2/255.255.255.255", {"192.0.2.2"}},
        {"192.0.2.1", {"192.0.2.1"}},
        {"192.0.2.1/255.0.255.0", {NULL}},        /* not contiguous */
        {"192.0.2.1/ffff:ffff::", {NULL}},        /* mask of another family */
        {"192.0.2.1/33", {NULL}},                 /* too long */
        {"host.example/255.255.255.255", {NULL}}, /* a name: Asterisk resolves them */
        {"", {NULL}},
        {",,,", {NULL}},
        {"[2001:db8::1/64", {NULL}},
    };
    for (size_t i = 0; i < N(cases); i++) {
        struct collect c = {0};
        unsigned n = ami_trust_parse_match(cases[i].in, strlen(cases[i].in), collect_prefix, &c);
        unsigned want = 0;
        while (want < 4 && cases[i].out[want])
            want++;
        if (n != want)
            fail_msg("case %zu \"%s\": %u prefixes, want %u", i, cases[i].in, n, want);
        for (unsigned k = 0; k < want; k++)
            assert_string_equal(c.out[k], cases[i].out[k]);
    }
}

static void sip_uris_give_their_host(void **state)
{
    static const struct {
        const char *uri;
        const char *host; /* a name, or the address written back; NULL: refused */
        bool numeric;
    } cases[] = {
        {"sip:sip.carrier.example", "sip.carrier.example", false},
        {"sip:pbx-account@sip.carrier.example:5060;transport=tcp", "sip.carrier.example", false},
        {"SIPS:Carrier.Example", "Carrier.Example", false},
        {"<sip:trunk@192.0.2.50:5060>", "192.0.2.50", true},
        {"sip:[2001:db8::50]:5061;lr", "2001:db8::50", true},
        {"sip:[fe80::1%eth0]", "fe80::1", true},
        {"sip:user;x=y@host.example?subject=z", "host.example", false},
        {"sip:proxy.example;lr", "proxy.example", false},
        {"  sip:a.example  ", "a.example", false},
        {"tel:+15551234", NULL, false},
        {"http://x.example", NULL, false},
        {"sip:", NULL, false},
        {"sip:user@", NULL, false},
        {"sip:192.0.2.300", NULL, false},
        {"sip:bad host.example", NULL, false},
        {"sip:host\r\nInjected: x", NULL, false},
        {"sip:[2001:db8::1", NULL, false},
        {"sip:-leading.example", NULL, false},
        {"", NULL, false},
    };
    for (size_t i = 0; i < N(cases); i++) {
        char host[AMI_TRUST_HOST_MAX];
        struct addr a;
        bool numeric = false;
        int r = ami_trust_uri_host(cases[i].uri, strlen(cases[i].uri), host, sizeof(host), &a,
                                   &numeric);
        if (!cases[i].host) {
            if (r == 0)
                fail_msg("case %zu \"%s\" accepted", i, cases[i].uri);
            continue;
        }
        if (r != 0)
            fail_msg("case %zu \"%s\" refused", i, cases[i].uri);
        assert_int_equal(numeric, cases[i].numeric);
        if (numeric) {
            char buf[ADDR_STRLEN];
            assert_string_equal(addr_format(&a, buf, sizeof(buf)), cases[i].host);
        } else {
            assert_string_equal(host, cases[i].host);
        }
    }
    /* A name longer than 253 bytes is no DNS name. */
    char longuri[300] = "sip:";
    memset(longuri + 4, 'a', 260);
    longuri[264] = '\0';
    char host[AMI_TRUST_HOST_MAX];
    struct addr a;
    bool numeric;
    assert_int_equal(ami_trust_uri_host(longuri, strlen(longuri), host, sizeof(host), &a, &numeric),
                     -EINVAL);
}

static void masks_give_their_length(void **state)
{
    static const struct {
        const char *mask;
        int family;
        int len; /* -1: refused */
    } cases[] = {
        {"255.255.255.255", AF_INET, 32},
        {"255.255.255.0", AF_INET, 24},
        {"0.0.0.0", AF_INET, 0},
        {"255.255.254.0", AF_INET, 23},
        {"24", AF_INET, 24},
        {"33", AF_INET, -1},
        {"255.0.255.0", AF_INET, -1},
        {"ffff:ffff::", AF_INET6, 32},
        {"ffff:ffff:ffff:ffff::", AF_INET6, 64},
        {"::", AF_INET6, 0},
        {"64", AF_INET6, 64},
        {"129", AF_INET6, -1},
        {"ffff::ffff", AF_INET6, -1},
        {"255.255.255.0", AF_INET6, -1},
        {"", AF_INET, -1},
        {"x", AF_INET, -1},
    };
    for (size_t i = 0; i < N(cases); i++) {
        unsigned len = 999;
        int r = ami_trust_mask_len(cases[i].mask, strlen(cases[i].mask), cases[i].family, &len);
        if (cases[i].len < 0)
            assert_int_not_equal(r, 0);
        else
            assert_int_equal(len, (unsigned)cases[i].len);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_trunk_yields_its_identify_matches_and_static_contact),
        cmocka_unit_test(a_phones_registered_contact_is_never_trusted),
        cmocka_unit_test(the_endpoint_list_names_every_endpoint),
        cmocka_unit_test(a_registration_yields_its_server_by_name),
        cmocka_unit_test(only_static_sip_and_iax_peers_are_trusted),
        cmocka_unit_test(plain_responses_and_system_events_are_not_list_items),
        cmocka_unit_test(auth_secrets_in_answers_are_wiped_by_the_parser),
        cmocka_unit_test(match_lists_parse_as_asterisk_writes_them),
        cmocka_unit_test(sip_uris_give_their_host),
        cmocka_unit_test(masks_give_their_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
