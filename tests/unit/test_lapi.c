/* CrowdSec LAPI wire formats: Go durations, the decision stream, login replies, alerts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lapi.h"

static int64_t dur(const char *s, int *ret_err)
{
    int64_t ms = 12345;
    *ret_err = lapi_duration_parse(s, strlen(s), &ms);
    return ms;
}

#define DUR_OK(s, want)                                                                            \
    do {                                                                                           \
        int err_;                                                                                  \
        int64_t got_ = dur(s, &err_);                                                              \
        assert_int_equal(err_, 0);                                                                 \
        assert_int_equal(got_, (int64_t)(want));                                                   \
    } while (0)
#define DUR_ERR(s, want)                                                                           \
    do {                                                                                           \
        int err_;                                                                                  \
        dur(s, &err_);                                                                             \
        assert_int_equal(err_, want);                                                              \
    } while (0)

static void go_durations_as_lapi_writes_them(void **state)
{
    DUR_OK("59m59.8s", 3599800);
    DUR_OK("59m59.574443842s", 3599574);
    DUR_OK("1h", 3600000);
    DUR_OK("4h0m0s", 4 * 3600000);
    DUR_OK("167h59m59.999999999s", 168LL * 3600000 - 1);
    DUR_OK("1h2m3.5s", 3723500);
    DUR_OK("300ms", 300);
    DUR_OK("1.5h", 5400000);
    DUR_OK("2000000us", 2000);
    DUR_OK("2000000\xc2\xb5s", 2000); /* micro sign */
    DUR_OK("2000000\xce\xbcs", 2000); /* Greek mu */
    DUR_OK("1500000000ns", 1500);
    DUR_OK("999999ns", 0);
    DUR_OK("0", 0);
    DUR_OK("0s", 0);
    DUR_OK(".5s", 500);
    DUR_OK("5.s", 5000);
}

static void negative_durations_say_the_decision_has_run_out(void **state)
{
    DUR_OK("-3s", -3000);
    DUR_OK("-1h0m0.5s", -3600500);
    DUR_OK("+2s", 2000);
}

static void hostile_durations_are_refused(void **state)
{
    DUR_ERR("", -EINVAL);
    DUR_ERR("-", -EINVAL);
    DUR_ERR("1", -EINVAL);  /* a unit is needed but for 0 */
    DUR_ERR("1d", -EINVAL); /* Go has no days */
    DUR_ERR("h", -EINVAL);
    DUR_ERR(".s", -EINVAL);
    DUR_ERR("1 h", -EINVAL);
    DUR_ERR(" 1h", -EINVAL);
    DUR_ERR("1h ", -EINVAL);
    DUR_ERR("1hh", -EINVAL);
    DUR_ERR("--1s", -EINVAL);
    DUR_ERR("1\xc2s", -EINVAL);
    DUR_ERR("NaNs", -EINVAL);
    DUR_ERR("1e3s", -EINVAL);
    DUR_ERR("9223372036854775807h", -ERANGE);
    DUR_ERR("99999999999999999999999999999s", -ERANGE);
    DUR_ERR("876001h", -ERANGE); /* past 100 years */
    DUR_ERR("876000h876000h", -ERANGE);
    /* A string with a NUL inside is as long as its length says. */
    int64_t ms;
    assert_int_equal(lapi_duration_parse("1h\0"
                                         "5s",
                                         5, &ms),
                     -EINVAL);
}

static void durations_are_written_in_whole_seconds_rounded_up(void **state)
{
    char buf[32];
    assert_string_equal(lapi_duration_format(3600000, buf, sizeof(buf)), "3600s");
    assert_string_equal(lapi_duration_format(3599001, buf, sizeof(buf)), "3600s");
    assert_string_equal(lapi_duration_format(1, buf, sizeof(buf)), "1s");
    assert_string_equal(lapi_duration_format(0, buf, sizeof(buf)), "1s");
}

/* --- the decision stream --- */

struct seen {
    struct lapi_decision d[16];
    unsigned n;
    int stop_at; /* return 7 at this index, -1 never */
};

static int collect(void *data, const struct lapi_decision *d)
{
    struct seen *s = data;
    if (s->n < 16)
        s->d[s->n] = *d;
    s->n++;
    return (int)s->n - 1 == s->stop_at ? -7 : 0;
}

static int stream(const char *text, struct seen *s)
{
    memset(s, 0, sizeof(*s));
    s->stop_at = -1;
    return lapi_stream_parse(text, strlen(text), collect, s);
}

static void the_stream_lapi_sends_gives_each_decision(void **state)
{
    struct seen s;
    const char *text =
        "{\"deleted\":[{\"duration\":\"-2s\",\"id\":3,\"origin\":\"cscli\",\"scenario\":\"x\","
        "\"scope\":\"Ip\",\"type\":\"ban\",\"value\":\"192.0.2.9\"}],\"new\":[{\"duration\":"
        "\"29m59.574443842s\",\"id\":2,\"origin\":\"cscli\",\"scenario\":\"manual 'ban' from "
        "'cscli-local'\",\"scope\":\"Range\",\"type\":\"ban\",\"value\":\"198.51.100.0/24\"},"
        "{\"duration\":\"59m58.5s\",\"id\":1,\"origin\":\"CAPI\",\"scenario\":"
        "\"crowdsecurity/ssh-bf\",\"scope\":\"ip\",\"type\":\"ban\",\"value\":\"2001:db8::7\"}]}";
    assert_int_equal(stream(text, &s), 0);
    assert_int_equal(s.n, 3);
    assert_true(s.d[0].deleted);
    assert_int_equal(s.d[0].id, 3);
    assert_int_equal(s.d[0].duration_ms, -2000);
    assert_int_equal(s.d[0].bad, LAPI_OK);
    assert_false(s.d[1].deleted);
    assert_int_equal(s.d[1].bad, LAPI_OK);
    assert_int_equal(s.d[1].prefix.len, 24);
    assert_string_equal(s.d[1].origin, "cscli");
    assert_string_equal(s.d[1].scenario, "manual 'ban' from 'cscli-local'");
    assert_int_equal(s.d[1].duration_ms, 1799574);
    assert_int_equal(s.d[2].bad, LAPI_OK);
    assert_int_equal(s.d[2].prefix.len, 128);
    assert_string_equal(s.d[2].origin, "CAPI");
}

static void empty_and_null_lists_are_nothing_to_do(void **state)
{
    struct seen s;
    assert_int_equal(stream("{\"deleted\":null,\"new\":null}", &s), 0);
    assert_int_equal(s.n, 0);
    assert_int_equal(stream(" { \"new\" : [ ] , \"deleted\" : [] } \n", &s), 0);
    assert_int_equal(s.n, 0);
    assert_int_equal(stream("{}", &s), 0);
    /* A member a later LAPI might add is read past. */
    assert_int_equal(stream("{\"links\":{\"blocklists\":[]},\"new\":null}", &s), 0);
}

static void decisions_we_cannot_enforce_say_why(void **state)
{
    struct seen s;
    const char *text =
        "{\"new\":["
        "{\"duration\":\"1h\",\"id\":1,\"origin\":\"cscli\",\"scope\":\"Ip\",\"type\":\"captcha\","
        "\"value\":\"192.0.2.1\",\"scenario\":\"s\"},"
        "{\"duration\":\"1h\",\"id\":2,\"origin\":\"cscli\",\"scope\":\"Country\",\"type\":\"ban\","
        "\"value\":\"FR\",\"scenario\":\"s\"},"
        "{\"duration\":\"1h\",\"id\":3,\"origin\":\"cscli\",\"scope\":\"Ip\",\"type\":\"ban\","
        "\"value\":\"192.0.2.0/24\",\"scenario\":\"s\"},"
        "{\"duration\":\"1h\",\"id\":4,\"origin\":\"cscli\",\"scope\":\"Range\",\"type\":\"ban\","
        "\"value\":\"192.0.2.1/24\",\"scenario\":\"s\"},"
        "{\"duration\":\"1 day\",\"id\":5,\"origin\":\"cscli\",\"scope\":\"Ip\",\"type\":\"ban\","
        "\"value\":\"192.0.2.1\",\"scenario\":\"s\"},"
        "{\"duration\":\"1h\",\"id\":\"6\",\"origin\":\"cscli\",\"scope\":\"Ip\",\"type\":\"ban\","
        "\"value\":\"192.0.2.1\",\"scenario\":\"s\"},"
        "{\"duration\":\"1h\",\"id\":7,\"origin\":\"cs\\u0001li\",\"scope\":\"Ip\",\"type\":"
        "\"ban\","
        "\"value\":\"192.0.2.1\",\"scenario\":\"s\"},"
        "{\"duration\":\"1h\",\"id\":8,\"origin\":\"cscli\",\"scope\":\"Ip\",\"type\":\"ban\","
        "\"value\":\"192.0.2.1:5060\",\"scenario\":\"s\"},"
        "{\"duration\":\"1h\",\"id\":9,\"origin\":\"cscli\",\"scope\":\"Ip\",\"type\":\"ban\","
        "\"value\":\"192.0.2.1\"},"
        "[1,2,3]"
        "]}";
    assert_int_equal(stream(text, &s), 0);
    assert_int_equal(s.n, 10);
    assert_int_equal(s.d[0].bad, LAPI_BAD_TYPE);
    assert_int_equal(s.d[1].bad, LAPI_BAD_SCOPE);
    assert_int_equal(s.d[2].bad, LAPI_BAD_VALUE); /* a prefix given as an Ip */
    assert_int_equal(s.d[3].bad, LAPI_BAD_VALUE); /* host bits set */
    assert_int_equal(s.d[4].bad, LAPI_BAD_DURATION);
    assert_int_equal(s.d[5].bad, LAPI_BAD_SHAPE);
    assert_int_equal(s.d[6].bad, LAPI_BAD_TEXT);
    assert_int_equal(s.d[7].bad, LAPI_BAD_VALUE);
    assert_int_equal(s.d[8].bad, LAPI_OK); /* no scenario: shown as "?" */
    assert_string_equal(s.d[8].scenario, "?");
    assert_int_equal(s.d[9].bad, LAPI_BAD_SHAPE);
}

static void a_broken_document_stops_the_walk(void **state)
{
    struct seen s;
    assert_int_equal(stream("", &s), -EBADMSG);
    assert_int_equal(stream("<html>502 Bad Gateway</html>", &s), -EBADMSG);
    assert_int_equal(stream("[]", &s), -EBADMSG);
    assert_int_equal(stream("{\"new\":3}", &s), -EBADMSG);
    assert_int_equal(stream("{\"new\":[{}", &s), -EBADMSG);
    assert_int_equal(s.n, 1); /* what came before the break was delivered */
    assert_int_equal(stream("{\"new\":[{\"id\":1}] x", &s), -EBADMSG);
    assert_int_equal(stream("{\"new\":[]}{}", &s), -EBADMSG);
    assert_int_equal(stream("{\"ne\\u0077\":[]}", &s), -EBADMSG);
    assert_int_equal(stream("{\"new\":[\"a\"]}", &s), -EBADMSG);
    assert_int_equal(stream("{\"new\":null,}", &s), -EBADMSG);
    /* jansson refuses a NUL inside a string: the element, and so the document, is broken. */
    assert_int_equal(stream("{\"new\":[{\"origin\":\"a\\u0000b\"}]}", &s), -EBADMSG);
}

static void the_callback_can_stop_the_walk(void **state)
{
    struct seen s;
    memset(&s, 0, sizeof(s));
    s.stop_at = 1;
    const char *text = "{\"new\":[{},{},{}]}";
    assert_int_equal(lapi_stream_parse(text, strlen(text), collect, &s), -7);
    assert_int_equal(s.n, 2);
}

/* One stream walked by both readers: the same result and the same decisions, field for field. */
static int both_readers(const char *text, struct seen *ret)
{
    struct seen v[2];
    int r[2];
    for (int reference = 0; reference <= 1; reference++) {
        memset(&v[reference], 0, sizeof(v[reference]));
        v[reference].stop_at = -1;
        struct lapi_stream st;
        lapi_stream_begin(&st, text, strlen(text));
        st.reference = reference;
        while ((r[reference] = lapi_stream_next(&st, 100, collect, &v[reference])) == 1)
            ;
    }
    assert_int_equal(r[0], r[1]);
    assert_int_equal(v[0].n, v[1].n);
    assert_memory_equal(v[0].d, v[1].d, sizeof(v[0].d[0]) * (v[0].n < 16 ? v[0].n : 16));
    *ret = v[0];
    return r[0];
}

#define DEC(extra)                                                                                 \
    "{\"new\":[{\"duration\":\"1h\",\"id\":4,\"origin\":\"cscli\",\"scenario\":\"s\",\"scope\":"   \
    "\"Ip\",\"type\":\"ban\",\"value\":\"192.0.2.4\"" extra "}]}"

/* The in-place reader takes the plain elements LAPI sends; whatever else an element holds, it
 * is read by jansson, and the two always agree. */
static void both_readers_agree_on_plain_and_odd_elements(void **state)
{
    struct seen s;
    assert_int_equal(both_readers(DEC(""), &s), 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.d[0].bad, LAPI_OK);
    assert_string_equal(s.d[0].value, "192.0.2.4");
    assert_int_equal(s.d[0].duration_ms, 3600000);
    /* Members LAPI may add, of every plain kind, and whitespace anywhere. */
    assert_int_equal(both_readers(DEC(",\"simulated\":false,\"x\":true,\"y\":null,\"n\":-12"), &s),
                     0);
    assert_int_equal(s.d[0].bad, LAPI_OK);
    assert_int_equal(both_readers("{\"new\":[ {\r\n\t\"id\" : 5 ,\"type\":\"ban\" , \"scope\":"
                                  "\"Ip\",\"value\":\"192.0.2.5\",\"origin\":\"cscli\","
                                  "\"duration\":\"2m\" } ]}",
                                  &s),
                     0);
    assert_int_equal(s.d[0].bad, LAPI_OK);
    assert_int_equal(s.d[0].id, 5);
    /* Escapes and bytes beyond ASCII: jansson decodes them. */
    assert_int_equal(both_readers("{\"new\":[{\"duration\":\"1h\",\"id\":4,\"origin\":\"cscli\","
                                  "\"scenario\":\"a\\\"b \\u00e9 \xc3\xa9\",\"scope\":\"Ip\","
                                  "\"type\":\"ban\",\"value\":\"192.0.2.4\"}]}",
                                  &s),
                     0);
    assert_int_equal(s.d[0].bad, LAPI_OK);
    assert_string_equal(s.d[0].scenario, "a\"b \xc3\xa9 \xc3\xa9");
    /* A repeated member: the last one counts, as jansson reads it. */
    assert_int_equal(both_readers(DEC(",\"value\":\"192.0.2.99\""), &s), 0);
    assert_string_equal(s.d[0].value, "192.0.2.99");
    /* Numbers: a fraction or exponent is not an integer id; JSON refuses a leading zero; a
     * number too big for an integer breaks the document, as jansson says. */
    assert_int_equal(both_readers(DEC(",\"id\":4.0"), &s), 0);
    assert_int_equal(s.d[0].bad, LAPI_BAD_SHAPE);
    assert_int_equal(both_readers(DEC(",\"id\":4e0"), &s), 0);
    assert_int_equal(s.d[0].bad, LAPI_BAD_SHAPE);
    assert_int_equal(both_readers(DEC(",\"id\":-0"), &s), 0);
    assert_int_equal(s.d[0].bad, LAPI_BAD_SHAPE);
    assert_int_equal(both_readers(DEC(",\"id\":123456789012345678"), &s), 0);
    assert_int_equal(s.d[0].id, 123456789012345678LL);
    assert_int_equal(both_readers(DEC(",\"id\":1234567890123456789"), &s), 0);
    assert_int_equal(s.d[0].id, 1234567890123456789LL);
    assert_int_equal(both_readers(DEC(",\"id\":99999999999999999999"), &s), -EBADMSG);
    assert_int_equal(both_readers(DEC(",\"id\":01"), &s), -EBADMSG);
    assert_int_equal(both_readers(DEC(",\"id\":-"), &s), -EBADMSG);
    /* A member of the wrong kind, nested values, a DEL byte, a raw control byte. */
    assert_int_equal(both_readers(DEC(",\"origin\":true"), &s), 0);
    assert_int_equal(s.d[0].bad, LAPI_BAD_SHAPE);
    assert_int_equal(both_readers(DEC(",\"value\":[\"192.0.2.4\"]"), &s), 0);
    assert_int_equal(s.d[0].bad, LAPI_BAD_SHAPE);
    assert_int_equal(both_readers(DEC(",\"meta\":{\"a\":[1,{\"b\":null}]}"), &s), 0);
    assert_int_equal(s.d[0].bad, LAPI_OK);
    assert_int_equal(both_readers(DEC(",\"origin\":\"cs\x7f\""), &s), 0);
    assert_int_equal(s.d[0].bad, LAPI_BAD_TEXT);
    assert_int_equal(both_readers(DEC(",\"origin\":\"cs\x01\""), &s), -EBADMSG);
    /* Broken JSON inside an element. */
    assert_int_equal(both_readers(DEC(",\"x\":tru"), &s), -EBADMSG);
    assert_int_equal(both_readers(DEC(",\"x\":1x"), &s), -EBADMSG);
    assert_int_equal(both_readers(DEC(",,\"x\":1"), &s), -EBADMSG);
    assert_int_equal(both_readers(DEC(",\"x\" 1"), &s), -EBADMSG);
    assert_int_equal(both_readers("{\"new\":[{\"id\":1,}]}", &s), -EBADMSG);
    assert_int_equal(both_readers("{\"new\":[{\"id\":1", &s), -EBADMSG);
    assert_int_equal(both_readers("{\"new\":[{\"id\":\"1", &s), -EBADMSG);
    assert_int_equal(both_readers("{\"new\":[{ }, {}]}", &s), 0);
    assert_int_equal(s.n, 2);
}

/* Step by step gives the same decisions as at once, whatever the step. */
static void the_walk_in_steps_gives_the_same_decisions(void **state)
{
    const char *text = "{\"deleted\":[{\"id\":9},{\"id\":8}] , \"new\":[{},{\"id\":1},{\"id\":2},"
                       "{\"id\":3}],\"x\":null}";
    for (unsigned step = 1; step <= 6; step++) {
        struct seen s;
        memset(&s, 0, sizeof(s));
        s.stop_at = -1;
        struct lapi_stream st;
        lapi_stream_begin(&st, text, strlen(text));
        int r, calls = 0;
        while ((r = lapi_stream_next(&st, step, collect, &s)) == 1)
            calls++;
        assert_int_equal(r, 0);
        assert_int_equal(s.n, 6);
        assert_true(s.d[0].deleted && s.d[1].deleted && !s.d[2].deleted);
        assert_int_equal(s.d[1].id, 8);
        assert_int_equal(s.d[5].id, 3);
        assert_true(calls >= (int)((6 + step - 1) / step) - 1);
    }
    /* A break found late is found in steps too, after what came before. */
    struct seen s;
    memset(&s, 0, sizeof(s));
    s.stop_at = -1;
    struct lapi_stream st;
    const char *bad = "{\"new\":[{},{},{}";
    lapi_stream_begin(&st, bad, strlen(bad));
    assert_int_equal(lapi_stream_next(&st, 2, collect, &s), 1);
    assert_int_equal(lapi_stream_next(&st, 2, collect, &s), -EBADMSG);
    assert_int_equal(s.n, 3);
}

/* --- login, alerts, errors --- */

static void a_login_reply_gives_the_token_and_its_expiry(void **state)
{
    char tok[LAPI_TOKEN_MAX];
    int64_t exp;
    const char *r = "{\"code\":200,\"expire\":\"2026-12-02T19:08:39Z\",\"token\":\"eyJ.a-b_c.d\"}";
    assert_int_equal(lapi_login_parse(r, strlen(r), tok, sizeof(tok), &exp), 0);
    assert_string_equal(tok, "eyJ.a-b_c.d");
    assert_int_equal(exp, 1796238519000LL);
    const char *bad[] = {"{\"token\":\"a b\"}",   "{\"token\":\"\"}", "{\"token\":5}", "[]",
                         "{\"token\":\"a\\nb\"}", "garbage"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(lapi_login_parse(bad[i], strlen(bad[i]), tok, sizeof(tok), &exp),
                         -EBADMSG);
    const char *noexp = "{\"token\":\"t\",\"expire\":\"tomorrow\"}";
    assert_int_equal(lapi_login_parse(noexp, strlen(noexp), tok, sizeof(tok), &exp), 0);
    assert_int_equal(exp, 0);
}

static void rfc3339_times_read_and_write(void **state)
{
    int64_t ms;
    char buf[32];
    assert_int_equal(lapi_time_parse("2026-11-26T10:20:31Z", &ms), 0);
    assert_string_equal(lapi_time_format(ms, buf, sizeof(buf)), "2026-11-26T10:20:31Z");
    assert_int_equal(lapi_time_parse("2026-11-26T11:20:31.250+01:00", &ms), 0);
    assert_int_equal(ms % 1000, 250);
    assert_string_equal(lapi_time_format(ms, buf, sizeof(buf)), "2026-11-26T10:20:31Z");
    assert_int_equal(lapi_time_parse("2026-11-26 10:20:31", &ms), -EINVAL);
    assert_int_equal(lapi_time_parse("2026-11-26T10:20:31Zjunk", &ms), -EINVAL);
}

static void an_alert_carries_one_ban_decision(void **state)
{
    struct lapi_alerts *a = lapi_alerts_new();
    assert_non_null(a);
    struct lapi_alert al = {.start_ms = 1796234919000LL,
                            .now_ms = 1796234920000LL,
                            .remaining_ms = 3599500,
                            .scenario = "pbxguard/asterisk-bf",
                            .reason = "threshold",
                            .events = 5};
    assert_int_equal(addr_prefix_parse("203.0.113.5", false, &al.prefix), 0);
    assert_int_equal(lapi_alerts_add(a, &al), 0);
    assert_int_equal(addr_prefix_parse("2001:db8:1:2::/64", false, &al.prefix), 0);
    al.remaining_ms = 0;
    assert_int_equal(lapi_alerts_add(a, &al), 0);
    assert_int_equal(lapi_alerts_count(a), 2);
    size_t len;
    char *body = lapi_alerts_dump(a, &len);
    assert_non_null(body);
    json_error_t err;
    json_t *j = json_loadb(body, len, 0, &err);
    assert_true(json_is_array(j));
    json_t *x = json_array_get(j, 0);
    /* Every field LAPI 1.4.6's swagger requires. */
    const char *required[] = {"scenario",     "scenario_hash", "scenario_version", "message",
                              "events_count", "start_at",      "stop_at",          "capacity",
                              "leakspeed",    "simulated",     "events",           "source",
                              "decisions"};
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
        assert_non_null(json_object_get(x, required[i]));
    assert_string_equal(json_string_value(json_object_get(x, "stop_at")), "2026-12-02T18:08:40Z");
    json_t *d = json_array_get(json_object_get(x, "decisions"), 0);
    assert_string_equal(json_string_value(json_object_get(d, "duration")), "3600s");
    assert_string_equal(json_string_value(json_object_get(d, "scope")), "Ip");
    assert_string_equal(json_string_value(json_object_get(d, "type")), "ban");
    assert_string_equal(json_string_value(json_object_get(d, "value")), "203.0.113.5");
    assert_int_equal(json_integer_value(json_object_get(x, "events_count")), 5);
    json_t *y = json_array_get(j, 1);
    d = json_array_get(json_object_get(y, "decisions"), 0);
    assert_string_equal(json_string_value(json_object_get(d, "scope")), "Range");
    assert_string_equal(json_string_value(json_object_get(d, "value")), "2001:db8:1:2::/64");
    assert_string_equal(json_string_value(json_object_get(d, "duration")), "3153600000s");
    assert_string_equal(json_string_value(json_object_get(json_object_get(y, "source"), "range")),
                        "2001:db8:1:2::/64");
    json_decref(j);
    free(body);
    lapi_alerts_free(a);
    assert_int_equal(lapi_alerts_reply("[\"1\",\"2\"]", 9), 2);
    assert_int_equal(lapi_alerts_reply("{}", 2), -EBADMSG);
}

static void error_messages_are_cut_and_made_printable(void **state)
{
    char out[64];
    const char *r = "{\"message\":\"access forbidden\\u001b[31m\"}";
    assert_string_equal(lapi_error_message(r, strlen(r), out, sizeof(out)),
                        "access forbidden?[31m");
    assert_string_equal(lapi_error_message("nope", 4, out, sizeof(out)), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(go_durations_as_lapi_writes_them),
        cmocka_unit_test(negative_durations_say_the_decision_has_run_out),
        cmocka_unit_test(hostile_durations_are_refused),
        cmocka_unit_test(durations_are_written_in_whole_seconds_rounded_up),
        cmocka_unit_test(the_stream_lapi_sends_gives_each_decision),
        cmocka_unit_test(empty_and_null_lists_are_nothing_to_do),
        cmocka_unit_test(decisions_we_cannot_enforce_say_why),
        cmocka_unit_test(a_broken_document_stops_the_walk),
        cmocka_unit_test(the_callback_can_stop_the_walk),
        cmocka_unit_test(the_walk_in_steps_gives_the_same_decisions),
        cmocka_unit_test(both_readers_agree_on_plain_and_odd_elements),
        cmocka_unit_test(a_login_reply_gives_the_token_and_its_expiry),
        cmocka_unit_test(rfc3339_times_read_and_write),
        cmocka_unit_test(an_alert_carries_one_ban_decision),
        cmocka_unit_test(error_messages_are_cut_and_made_printable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
