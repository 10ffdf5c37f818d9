/* The trust queries' state machine against a scripted Asterisk: the fixtures written from
 * Asterisk 20's source answer the actions the learner sends (their ActionIDs rewritten to the
 * ones it chose), on a real loop (timers, the resolver). Hostile and broken answers included:
 * refusals, unknown commands, silence, stale and unsolicited ActionIDs, endless lists,
 * catch-all matches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ami_frame.h"
#include "ami_learn.h"
#include "log.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define SENT_MAX 64

struct sent {
    char action[48], id[48], arg[300];
};

struct world {
    struct loop *loop;
    struct ami_learn *learn;
    struct sent sent[SENT_MAX];
    unsigned nsent;
    struct policy_wl_entry learned[AMI_LEARN_ENTRIES_MAX];
    unsigned nlearned;
    unsigned learned_calls;
    struct loop_timer stop;
    struct ami_parser parser;
};

static void header_value(const char *text, const char *name, char *out, size_t cap)
{
    out[0] = '\0';
    const char *h = strstr(text, name);
    if (!h)
        return;
    h += strlen(name);
    size_t n = strcspn(h, "\r\n");
    if (n >= cap)
        n = cap - 1;
    memcpy(out, h, n);
    out[n] = '\0';
}

static int fake_send(void *data, const char *text, size_t len)
{
    struct world *w = data;
    assert_true(w->nsent < SENT_MAX);
    /* Every action is one well-formed frame: no stray blank line, no CR or LF inside a value. */
    assert_true(len >= 4 && memcmp(text + len - 4, "\r\n\r\n", 4) == 0);
    assert_null(memmem(text, len - 4, "\r\n\r\n", 4));
    struct sent *s = &w->sent[w->nsent++];
    header_value(text, "Action: ", s->action, sizeof(s->action));
    header_value(text, "ActionID: ", s->id, sizeof(s->id));
    header_value(text, strstr(text, "Module: ") ? "Module: " : "Endpoint: ", s->arg,
                 sizeof(s->arg));
    return 0;
}

static void fake_learned(void *data, const struct policy_wl_entry *e, unsigned n)
{
    struct world *w = data;
    assert_true(n <= AMI_LEARN_ENTRIES_MAX);
    memcpy(w->learned, e, n * sizeof(*e));
    w->nlearned = n;
    w->learned_calls++;
    loop_stop(w->loop);
}

static void on_stop(struct loop *l, void *data)
{
    loop_stop(l);
}

static int setup(void **state)
{
    struct world *w = calloc(1, sizeof(*w));
    w->loop = loop_new();
    struct ami_learn_io io = {.send = fake_send, .learned = fake_learned, .data = w};
    w->learn = ami_learn_new(w->loop, "ami:pbx1", "guard", 0, io);
    assert_non_null(w->learn);
    ami_learn_set_timing(w->learn, 30000, 0, 0);
    loop_timer_init(&w->stop, on_stop, w);
    log_set_level(LOG_LVL_ERR); /* the learner's warnings are expected here */
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    struct world *w = *state;
    ami_learn_free(w->learn);
    loop_timer_cancel(w->loop, &w->stop);
    loop_free(w->loop);
    free(w);
    return 0;
}

/* Runs the loop until learned() has been called calls times in all, or ms pass. */
static void run_until(struct world *w, unsigned calls, uint64_t ms)
{
    if (w->learned_calls >= calls)
        return;
    loop_timer_arm(w->loop, &w->stop, ms);
    loop_run(w->loop);
    loop_timer_cancel(w->loop, &w->stop);
}

/* Runs the loop for ms, whatever happens. */
static void run_for(struct world *w, uint64_t ms)
{
    run_until(w, UINT32_MAX, ms);
}

/* Feeds text as Asterisk's answer: frames the learner owns go to it, system events too. */
static void feed(struct world *w, const char *text, size_t len)
{
    ami_parser_init(&w->parser, false);
    size_t off = 0;
    while (off < len) {
        off += ami_parser_feed(&w->parser, text + off, len - off);
        const struct ami_frame *f;
        while ((f = ami_parser_next(&w->parser))) {
            if (ami_learn_owns(f))
                ami_learn_frame(w->learn, f);
            else if (ami_frame_has_class(f, "system"))
                ami_learn_system_event(w->learn, f);
        }
    }
}

static void feedf(struct world *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void feedf(struct world *w, const char *fmt, ...)
{
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof(buf));
    feed(w, buf, (size_t)n);
}

/* The action sent last with this name (and arg, if not NULL). */
static const struct sent *find(struct world *w, const char *action, const char *arg)
{
    for (unsigned i = w->nsent; i > 0; i--) {
        const struct sent *s = &w->sent[i - 1];
        if (strcmp(s->action, action) == 0 && (!arg || strcmp(s->arg, arg) == 0))
            return s;
    }
    fail_msg("no %s %s was sent", action, arg ? arg : "");
    return NULL;
}

/* A fixture, every ActionID line rewritten to id, fed as the answer. */
static void answer_fixture(struct world *w, const char *name, const char *id)
{
    char path[256];
    snprintf(path, sizeof(path), "fixtures/ami/%s", name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char in[1 << 16], out[1 << 17];
    size_t len = fread(in, 1, sizeof(in), f);
    fclose(f);
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(in + i, '\n', len - i);
        size_t l = nl ? (size_t)(nl - (in + i)) + 1 : len - i;
        if (l > 10 && memcmp(in + i, "ActionID: ", 10) == 0)
            o += (size_t)snprintf(out + o, sizeof(out) - o, "ActionID: %s\r\n", id);
        else {
            memcpy(out + o, in + i, l);
            o += l;
        }
        i += l;
    }
    feed(w, out, o);
}

static void module(struct world *w, const char *mod, bool loaded)
{
    const struct sent *s = find(w, "ModuleCheck", mod);
    if (loaded)
        feedf(w, "Response: Success\r\nActionID: %s\r\nVersion: \r\n\r\n", s->id);
    else
        feedf(w, "Response: Error\r\nActionID: %s\r\nMessage: Module not loaded\r\n\r\n", s->id);
}

static bool learned_has(struct world *w, const char *prefix, const char *label_part)
{
    for (unsigned i = 0; i < w->nlearned; i++) {
        char buf[ADDR_STRLEN];
        if (strcmp(addr_prefix_format(&w->learned[i].prefix, buf, sizeof(buf)), prefix) == 0 &&
            strstr(w->learned[i].label, label_part))
            return true;
    }
    return false;
}

static enum ami_learn_state state_of(struct world *w)
{
    struct ami_learn_status st;
    ami_learn_get_status(w->learn, &st);
    return st.state;
}

/* Answers a whole refresh from the fixtures: PJSIP with two endpoints and a registration,
 * chan_sip, no chan_iax2. */
static void answer_everything(struct world *w)
{
    module(w, "res_pjsip.so", true);
    assert_string_equal(w->sent[w->nsent - 1].action, "ModuleCheck"); /* the window filled */
    module(w, "res_pjsip_outbound_registration.so", true);
    module(w, "chan_sip.so", true);
    module(w, "chan_iax2.so", false);
    answer_fixture(w, "trust-pjsip-endpoints.raw", find(w, "PJSIPShowEndpoints", NULL)->id);
    /* Answered out of order: the phone before the trunk. */
    answer_fixture(w, "trust-pjsip-endpoint-phone.raw", find(w, "PJSIPShowEndpoint", "1001")->id);
    answer_fixture(w, "trust-sippeers.raw", find(w, "SIPpeers", NULL)->id);
    answer_fixture(w, "trust-pjsip-registrations.raw",
                   find(w, "PJSIPShowRegistrationsOutbound", NULL)->id);
    answer_fixture(w, "trust-pjsip-endpoint-trunk.raw",
                   find(w, "PJSIPShowEndpoint", "carrier1")->id);
}

static void a_refresh_learns_what_the_fixtures_say(void **state)
{
    struct world *w = *state;
    ami_learn_connected(w->learn);
    assert_int_equal(w->nsent, 1); /* the probe goes alone */
    assert_string_equal(w->sent[0].arg, "res_pjsip.so");
    feedf(w, "Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 1\r\nLastReload: 1\r\n"
             "Status: Fully Booted\r\n\r\n");
    answer_everything(w);
    run_until(w, 1, 20000); /* the two host names (.example) do not resolve */
    assert_int_equal(w->learned_calls, 1);
    assert_int_equal(w->nlearned, 4);
    assert_true(learned_has(w, "192.0.2.50", "pjsip:identify/carrier1-identify (ami:pbx1)"));
    assert_true(learned_has(w, "198.51.100.0/24", "pjsip:identify/carrier1-identify"));
    assert_true(learned_has(w, "2001:db8:50::1", "pjsip:identify/carrier1-identify"));
    assert_true(learned_has(w, "192.0.2.55", "sip:peer/sipgw (ami:pbx1)"));
    struct ami_learn_status st;
    ami_learn_get_status(w->learn, &st);
    assert_int_equal(st.state, AMI_LEARN_OK);
    assert_int_equal(st.entries, 4);
    assert_int_equal(st.unresolved, 2);
    assert_true(st.reloads_followed);
    assert_true(st.refreshed_ms > 0);
    /* No listing was asked of chan_iax2, which is not loaded. */
    for (unsigned i = 0; i < w->nsent; i++)
        assert_string_not_equal(w->sent[i].action, "IAXpeerlist");
}

static void stale_and_unsolicited_answers_are_ignored(void **state)
{
    struct world *w = *state;
    ami_learn_connected(w->learn);
    const char *probe = w->sent[0].id;
    /* Another generation, an unknown sequence number, a malformed id, a look-alike prefix. */
    static const char *const bad[] = {"pbxguard-trust-99-1", "pbxguard-trust-1-99",
                                      "pbxguard-trust-x", "pbxguard-trust-1-1-1",
                                      "pbxguard-trustee-1-1"};
    for (size_t i = 0; i < N(bad); i++)
        feedf(w,
              "Event: IdentifyDetail\r\nActionID: %s\r\nObjectName: evil\r\nMatch: "
              "203.0.113.1/255.255.255.255\r\n\r\nResponse: Success\r\nActionID: %s\r\n\r\n",
              bad[i], bad[i]);
    assert_int_equal(w->nsent, 1);
    assert_int_equal(state_of(w), AMI_LEARN_RUNNING);
    /* A list event for the probe (which is no list) is not an address either. */
    feedf(w, "Event: IdentifyDetail\r\nActionID: %s\r\nMatch: 203.0.113.2/32\r\n\r\n", probe);
    module(w, "res_pjsip.so", false);
    module(w, "chan_sip.so", false);
    module(w, "chan_iax2.so", false);
    run_until(w, 1, 2000);
    assert_int_equal(w->learned_calls, 1);
    assert_int_equal(w->nlearned, 0);
}

static void a_refusal_is_final_until_the_next_login(void **state)
{
    struct world *w = *state;
    ami_learn_connected(w->learn);
    feedf(w, "Response: Error\r\nActionID: %s\r\nMessage: Permission denied\r\n\r\n",
          w->sent[0].id);
    assert_int_equal(state_of(w), AMI_LEARN_DENIED);
    /* Reload events do not ask again: each ask costs a RequestNotAllowed event. */
    feedf(w, "Event: Reload\r\nPrivilege: system,all\r\nModule: All\r\nStatus: 0\r\n\r\n");
    run_for(w, 100);
    assert_int_equal(w->nsent, 1);
    assert_int_equal(w->learned_calls, 0);
    ami_learn_disconnected(w->learn);
    ami_learn_connected(w->learn);
    assert_int_equal(w->nsent, 2);
    assert_int_equal(state_of(w), AMI_LEARN_RUNNING);
}

static void a_peer_that_does_not_know_modulecheck_is_left_alone(void **state)
{
    struct world *w = *state;
    ami_learn_connected(w->learn);
    feedf(w,
          "Response: Error\r\nActionID: %s\r\nMessage: Invalid/unknown command: ModuleCheck. "
          "Use Action: ListCommands to show available commands.\r\n\r\n",
          w->sent[0].id);
    assert_int_equal(state_of(w), AMI_LEARN_UNSUPPORTED);
    run_for(w, 100);
    assert_int_equal(w->nsent, 1);
}

static void silence_fails_the_refresh_and_keeps_what_was_learned(void **state)
{
    struct world *w = *state;
    ami_learn_connected(w->learn);
    module(w, "res_pjsip.so", false);
    module(w, "chan_sip.so", true);
    module(w, "chan_iax2.so", false);
    answer_fixture(w, "trust-sippeers.raw", find(w, "SIPpeers", NULL)->id);
    run_until(w, 1, 2000);
    assert_int_equal(w->nlearned, 1);
    /* The next refresh gets no answer at all. */
    ami_learn_set_timing(w->learn, 50, 0, 0);
    feedf(w, "Event: Reload\r\nPrivilege: system,all\r\nModule: chan_sip.so\r\nStatus: 0\r\n\r\n");
    run_for(w, 500);
    assert_int_equal(state_of(w), AMI_LEARN_FAILED);
    assert_int_equal(w->learned_calls, 1); /* nothing handed over: the last set stays */
    struct ami_learn_status st;
    ami_learn_get_status(w->learn, &st);
    assert_int_equal(st.entries, 1);
}

static void a_reload_after_the_first_answer_runs_the_refresh_again(void **state)
{
    struct world *w = *state;
    static const char reload[] =
        "Event: Reload\r\nPrivilege: system,all\r\nModule: res_pjsip.so\r\nStatus: 0\r\n\r\n";
    ami_learn_connected(w->learn);
    /* Before any answer: the refresh asks after the reload anyway. */
    feed(w, reload, strlen(reload));
    module(w, "res_pjsip.so", false);
    /* After an answer: what was asked may predate the reload. */
    feed(w, reload, strlen(reload));
    module(w, "chan_sip.so", false);
    module(w, "chan_iax2.so", false);
    run_until(w, 1, 2000);
    assert_int_equal(w->learned_calls, 1);
    run_for(w, 100); /* the second refresh starts */
    unsigned probes = 0;
    for (unsigned i = 0; i < w->nsent; i++)
        probes += strcmp(w->sent[i].arg, "res_pjsip.so") == 0;
    assert_int_equal(probes, 2);
    assert_int_equal(state_of(w), AMI_LEARN_RUNNING);
}

static void an_endless_list_is_capped_and_catch_alls_are_not_trusted(void **state)
{
    struct world *w = *state;
    ami_learn_connected(w->learn);
    module(w, "res_pjsip.so", true);
    module(w, "res_pjsip_outbound_registration.so", false);
    module(w, "chan_sip.so", false);
    module(w, "chan_iax2.so", false);
    const char *eps = find(w, "PJSIPShowEndpoints", NULL)->id;
    feedf(w,
          "Response: Success\r\nActionID: %s\r\nEventList: start\r\nMessage: x\r\n\r\n"
          "Event: EndpointList\r\nActionID: %s\r\nObjectName: big\r\n\r\n"
          "Event: EndpointList\r\nActionID: %s\r\nObjectName: bad\x01name\r\n\r\n"
          "Event: EndpointListComplete\r\nActionID: %s\r\nEventList: Complete\r\n"
          "ListItems: 2\r\n\r\n",
          eps, eps, eps, eps);
    const char *big = find(w, "PJSIPShowEndpoint", "big")->id;
    for (unsigned i = 0; i < w->nsent; i++)
        assert_null(strstr(w->sent[i].arg, "bad")); /* a name with a control byte is not asked */
    feedf(w,
          "Response: Success\r\nActionID: %s\r\nEventList: start\r\nMessage: x\r\n\r\n"
          "Event: IdentifyDetail\r\nActionID: %s\r\nObjectName: any\r\n"
          "Match: 0.0.0.0/0.0.0.0,10.0.0.0/255.0.0.0,::/::,2001:db8::/ffff::\r\n\r\n",
          big, big);
    for (unsigned i = 0; i < 5000; i++)
        feedf(w,
              "Event: IdentifyDetail\r\nActionID: %s\r\nObjectName: n%u\r\nMatch: "
              "%u.%u.%u.1/32\r\n\r\n",
              big, i, 11 + i / 65536, (i / 256) % 256, i % 256);
    feedf(w, "Event: EndpointDetailComplete\r\nActionID: %s\r\nEventList: Complete\r\n\r\n", big);
    run_until(w, 1, 2000);
    assert_int_equal(w->learned_calls, 1);
    /* The first AMI_LEARN_ENTRIES_MAX addresses reported, less the 4 too wide to trust. */
    assert_int_equal(w->nlearned, AMI_LEARN_ENTRIES_MAX - 4);
    struct ami_learn_status st;
    ami_learn_get_status(w->learn, &st);
    assert_int_equal(st.ignored, 4);
    assert_false(learned_has(w, "0.0.0.0/0", ""));
}

static void a_registration_server_name_is_resolved_on_the_loop(void **state)
{
    struct world *w = *state;
    /* "localhost" resolves from /etc/hosts. (A name that stops resolving keeping its last
     * addresses is tested end to end, with a hosts file the test controls: trust.py.) */
    ami_learn_connected(w->learn);
    module(w, "res_pjsip.so", true);
    module(w, "res_pjsip_outbound_registration.so", true);
    module(w, "chan_sip.so", false);
    module(w, "chan_iax2.so", false);
    feedf(w, "Response: Error\r\nActionID: %s\r\nMessage: No endpoints found\n\r\n\r\n",
          find(w, "PJSIPShowEndpoints", NULL)->id);
    const char *regs = find(w, "PJSIPShowRegistrationsOutbound", NULL)->id;
    feedf(w,
          "Response: Success\r\nActionID: %s\r\nEventList: start\r\nMessage: x\r\n\r\n"
          "Event: OutboundRegistrationDetail\r\nActionID: %s\r\nObjectType: registration\r\n"
          "ObjectName: r1\r\nServerUri: sip:localhost\r\nOutboundProxy: \r\n\r\n"
          "Event: OutboundRegistrationDetailComplete\r\nActionID: %s\r\nEventList: Complete\r\n"
          "ListItems: 1\r\nRegistered: 1\r\nNotRegistered: 0\r\n\r\n",
          regs, regs, regs);
    run_until(w, 1, 20000);
    assert_int_equal(w->learned_calls, 1);
    assert_true(learned_has(w, "127.0.0.1", "pjsip:registration/r1 localhost (ami:pbx1)"));
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(a_refresh_learns_what_the_fixtures_say),
        T(stale_and_unsolicited_answers_are_ignored),
        T(a_refusal_is_final_until_the_next_login),
        T(a_peer_that_does_not_know_modulecheck_is_left_alone),
        T(silence_fails_the_refresh_and_keeps_what_was_learned),
        T(a_reload_after_the_first_answer_runs_the_refresh_again),
        T(an_endless_list_is_capped_and_catch_alls_are_not_trusted),
        T(a_registration_server_name_is_resolved_on_the_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
