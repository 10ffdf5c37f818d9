#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "report.h"

/* 2026-11-25T00:00:00Z */
#define DAY0 1795564800LL

/* Golden files live in tests/fixtures/report/ (the tests run from tests/). Set
 * REPORT_UPDATE_GOLDEN=1 to rewrite them from the current output after a deliberate change. */
#define GOLDEN_DIR "fixtures/report/"

static char *render(const struct report *r, int (*fn)(const struct report *, FILE *))
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(fn(r, f), 0);
    fclose(f);
    return buf;
}

static int csv_all(const struct report *r, FILE *out)
{
    return report_render_csv(r, NULL, out);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        fwrite(chunk, 1, n, m);
    fclose(f);
    fclose(m);
    return buf;
}

static void assert_golden(const char *got, const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), GOLDEN_DIR "%s", name);
    if (getenv("REPORT_UPDATE_GOLDEN")) {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        fputs(got, f);
        fclose(f);
    }
    char *want = slurp(path);
    assert_non_null(want);
    assert_string_equal(got, want);
    free(want);
}

/* A day with a little of everything, built by hand. */
static void sample(struct report *r)
{
    assert_int_equal(report_init(r, DAY0, DAY0 + 86400), 0);
    snprintf(r->host, sizeof(r->host), "pbx1.example.net");
    r->generated = DAY0 + 86400 + 6 * 3600;
    r->totals = (struct report_totals){.failures = 1000,
                                       .sources = 3,
                                       .bans = 3,
                                       .lifted = 1,
                                       .expired = 1,
                                       .active = 2,
                                       .escalated = 1,
                                       .permanent = 0,
                                       .new_sources = 2};
    assert_int_equal(report_add_count(&r->ban_reasons, &r->nban_reasons, "threshold", 2), 0);
    assert_int_equal(report_add_count(&r->ban_reasons, &r->nban_reasons, "manual", 1), 0);
    assert_int_equal(report_add_count(&r->by_service, &r->nby_service, "PJSIP", 850), 0);
    assert_int_equal(report_add_count(&r->by_service, &r->nby_service, "AMI", 150), 0);
    r->by_type[SEC_CHALLENGE_RESPONSE_FAILED] = 600;
    r->by_type[SEC_INVALID_ACCOUNT_ID] = 250;
    r->by_type[SEC_INVALID_PASSWORD] = 150;

    struct report_source s = {.key = "203.0.113.5",
                              .attempts = 700,
                              .services = {"PJSIP"},
                              .nservices = 1,
                              .types = 1u << SEC_CHALLENGE_RESPONSE_FAILED |
                                       1u << SEC_INVALID_ACCOUNT_ID,
                              .accounts = 37,
                              .first_seen = DAY0 + 3600 + 120,
                              .last_seen = DAY0 + 5 * 3600,
                              .ban = REPORT_BAN_ACTIVE,
                              .ban_until = DAY0 + 86400 + 3 * 3600};
    assert_int_equal(report_add_source(r, &s), 0);
    s = (struct report_source){.key = "2001:db8:77:1::/64",
                               .attempts = 150,
                               .services = {"AMI"},
                               .nservices = 1,
                               .types = 1u << SEC_INVALID_PASSWORD,
                               .accounts = 1,
                               .first_seen = DAY0 + 7200,
                               .last_seen = DAY0 + 7300,
                               .ban = REPORT_BAN_ENDED,
                               .ban_until = DAY0 + 10 * 3600};
    assert_int_equal(report_add_source(r, &s), 0);
    s = (struct report_source){.key = "198.51.100.77",
                               .attempts = 150,
                               .services = {"PJSIP"},
                               .nservices = 1,
                               .types = 1u << SEC_CHALLENGE_RESPONSE_FAILED |
                                        1u << SEC_INVALID_ACCOUNT_ID,
                               .accounts = 12,
                               .first_seen = DAY0 + 20 * 3600,
                               .last_seen = DAY0 + 23 * 3600 + 59 * 60,
                               .ban = REPORT_BAN_NONE};
    assert_int_equal(report_add_source(r, &s), 0);

    assert_int_equal(report_add_account(r, "100", 300, 2), 0);
    assert_int_equal(report_add_account(r, "admin", 150, 1), 0);
    assert_int_equal(report_add_account(r, "=cmd|' /C calc'!A0", 3, 1), 0);

    r->buckets[1] = 500;
    r->buckets[2] = 200;
    r->buckets[4] = 150;
    r->buckets[20] = 100;
    r->buckets[23] = 50;

    assert_int_equal(report_add_new_source(r, "2001:db8:77:1::/64", DAY0 + 7200, 150), 0);
    assert_int_equal(report_add_new_source(r, "198.51.100.77", DAY0 + 20 * 3600, 150), 0);

    r->incidents_recorded = true;
    assert_int_equal(report_add_count(&r->incidents, &r->nincidents, "ami-disconnect", 2), 0);
    assert_int_equal(report_add_count(&r->incidents, &r->nincidents, "nft-repair", 1), 0);
}

static void text_matches_golden(void **state)
{
    struct report r;
    sample(&r);
    char *got = render(&r, report_render_text);
    assert_golden(got, "model.txt");
    free(got);
    report_release(&r);
}

static void csv_matches_golden(void **state)
{
    struct report r;
    sample(&r);
    char *got = render(&r, csv_all);
    assert_golden(got, "model.csv");
    free(got);
    report_release(&r);
}

static void json_matches_golden(void **state)
{
    struct report r;
    sample(&r);
    char *got = render(&r, report_render_json);
    assert_golden(got, "model.json");
    free(got);
    report_release(&r);
}

static void text_lines_fit_80_columns_even_with_long_names(void **state)
{
    struct report r;
    sample(&r);
    char longname[SEC_ACCOUNT_MAX];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(report_add_account(&r, longname, 1, 1), 0);
    struct report_source s = {.key = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                              .attempts = 1,
                              .services = {"PJSIP", "SIP", "AMI", "IAX2"},
                              .nservices = 4,
                              .types = 0x7fff,
                              .first_seen = DAY0,
                              .last_seen = DAY0,
                              .ban = REPORT_BAN_PERMANENT};
    assert_int_equal(report_add_source(&r, &s), 0);
    char *got = render(&r, report_render_text);
    int longest = 0;
    for (char *line = strtok(got, "\n"); line; line = strtok(NULL, "\n")) {
        if ((int)strlen(line) > 80)
            print_message("too long: %s\n", line);
        if ((int)strlen(line) > longest)
            longest = (int)strlen(line);
    }
    assert_in_range(longest, 1, 80);
    free(got);
    report_release(&r);
}

static void text_shows_attacker_bytes_escaped(void **state)
{
    struct report r;
    sample(&r);
    assert_int_equal(report_add_account(&r, "evil\x1b[2J\r\nSubject: x", 1, 1), 0);
    char *got = render(&r, report_render_text);
    assert_null(strchr(got, '\x1b'));
    assert_null(strchr(got, '\r'));
    assert_non_null(strstr(got, "evil\\x1b[2J\\x0d\\x0aSubject: x"));
    free(got);
    report_release(&r);
}

/* Service is whatever the AMI peer sent in the Service header: a hostile or broken peer can put
 * terminal escapes, CR/LF or invalid UTF-8 there. */
#define EVIL_SERVICE "S\x1b[2J\r\n\xff"
#define EVIL_SERVICE_ESCAPED "S\\x1b[2J\\x0d\\x0a\\xff"

static void add_evil_service(struct report *r)
{
    assert_int_equal(report_add_count(&r->by_service, &r->nby_service, EVIL_SERVICE, 1), 0);
    struct report_source s = {.key = "192.0.2.99", .attempts = 1, .nservices = 1};
    snprintf(s.services[0], sizeof(s.services[0]), "%s", EVIL_SERVICE);
    assert_int_equal(report_add_source(r, &s), 0);
}

static void text_shows_attacker_services_escaped(void **state)
{
    struct report r;
    sample(&r);
    add_evil_service(&r);
    char *got = render(&r, report_render_text);
    assert_null(strchr(got, '\x1b'));
    assert_null(strchr(got, '\r'));
    assert_null(strchr(got, '\xff'));
    assert_non_null(strstr(got, "  " EVIL_SERVICE_ESCAPED " "));      /* failures by service */
    assert_non_null(strstr(got, "      " EVIL_SERVICE_ESCAPED ": ")); /* the source's services */
    free(got);
    report_release(&r);
}

static void csv_shows_attacker_services_escaped(void **state)
{
    struct report r;
    sample(&r);
    add_evil_service(&r);
    char *got = render(&r, csv_all);
    assert_null(strchr(got, '\x1b'));
    assert_null(strchr(got, '\xff'));
    assert_non_null(strstr(got, "\r\n" EVIL_SERVICE_ESCAPED ",1\r\n"));
    assert_non_null(strstr(got, ",192.0.2.99,1," EVIL_SERVICE_ESCAPED ","));
    free(got);
    report_release(&r);
}

static void json_keeps_attacker_services_escaped(void **state)
{
    struct report r;
    sample(&r);
    add_evil_service(&r);
    char *got = render(&r, report_render_json);
    json_t *root = json_loads(got, 0, NULL);
    assert_non_null(root);
    json_t *svc = json_object_get(root, "by_service");
    json_t *last = json_array_get(svc, json_array_size(svc) - 1);
    assert_string_equal(json_string_value(json_object_get(last, "service")), EVIL_SERVICE_ESCAPED);
    json_t *top = json_object_get(root, "top_sources");
    json_t *src = json_array_get(top, json_array_size(top) - 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(src, "services"), 0)),
                        EVIL_SERVICE_ESCAPED);
    json_decref(root);
    free(got);
    report_release(&r);
}

static void html_escapes_attacker_services_once(void **state)
{
    struct report r;
    sample(&r);
    add_evil_service(&r);
    char *got = render(&r, report_render_html);
    assert_null(strchr(got, '\x1b'));
    assert_null(strchr(got, '\xff'));
    assert_non_null(strstr(got, "<td>" EVIL_SERVICE_ESCAPED "</td>"));
    free(got);
    report_release(&r);
}

static void empty_period_says_so_in_text(void **state)
{
    struct report r;
    assert_int_equal(report_init(&r, DAY0, DAY0 + 86400), 0);
    char *got = render(&r, report_render_text);
    assert_non_null(strstr(got, "No failed attempts in this period."));
    assert_non_null(strstr(got, "(not recorded in this database)"));
    assert_null(strstr(got, "Attempts per hour"));
    free(got);
    report_release(&r);
}

static void csv_single_table_is_a_plain_csv_file(void **state)
{
    struct report r;
    sample(&r);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(report_render_csv(&r, "by_service", f), 0);
    fclose(f);
    assert_string_equal(buf, "service,failures\r\nPJSIP,850\r\nAMI,150\r\n");
    free(buf);
    report_release(&r);
}

static void csv_unknown_table_is_refused(void **state)
{
    struct report r;
    sample(&r);
    FILE *f = fopen("/dev/null", "w");
    assert_int_equal(report_render_csv(&r, "nope", f), -ENOENT);
    fclose(f);
    report_release(&r);
}

static void csv_quotes_cells_and_defuses_formulas(void **state)
{
    struct report r;
    assert_int_equal(report_init(&r, DAY0, DAY0 + 3600), 0);
    assert_int_equal(report_add_account(&r, "a,b", 1, 1), 0);
    assert_int_equal(report_add_account(&r, "@SUM(A1)", 1, 1), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(report_render_csv(&r, "top_accounts", f), 0);
    fclose(f);
    assert_string_equal(buf, "rank,account,attempts,sources\r\n1,\"a,b\",1,1\r\n"
                             "2,\"'@SUM(A1)\",1,1\r\n");
    free(buf);
    report_release(&r);
}

static void json_stays_valid_with_invalid_utf8_in_accounts(void **state)
{
    struct report r;
    sample(&r);
    assert_int_equal(report_add_account(&r, "\xff\xfe\"bad", 1, 1), 0);
    char *got = render(&r, report_render_json);
    json_error_t err;
    json_t *root = json_loads(got, 0, &err);
    assert_non_null(root);
    json_t *acc = json_object_get(root, "top_accounts");
    json_t *last = json_array_get(acc, json_array_size(acc) - 1);
    assert_string_equal(json_string_value(json_object_get(last, "account")), "\\xff\\xfe\\\"bad");
    json_decref(root);
    free(got);
    report_release(&r);
}

static void json_daemon_is_null_when_not_recorded(void **state)
{
    struct report r;
    assert_int_equal(report_init(&r, DAY0, DAY0 + 86400), 0);
    char *got = render(&r, report_render_json);
    json_t *root = json_loads(got, 0, NULL);
    assert_non_null(root);
    assert_true(json_is_null(json_object_get(root, "daemon")));
    assert_int_equal(
        json_array_size(json_object_get(json_object_get(root, "timeline"), "attempts")), 24);
    json_decref(root);
    free(got);
    report_release(&r);
}

static void html_is_self_contained(void **state)
{
    struct report r;
    sample(&r);
    char *got = render(&r, report_render_html);
    static const char *const banned[] = {"<script", "src=",  "href=",   "url(",
                                         "@import", "<link", "<iframe", "<object"};
    for (size_t i = 0; i < sizeof(banned) / sizeof(banned[0]); i++)
        assert_null(strstr(got, banned[i]));
    assert_non_null(strstr(got, "<svg id=\"chart-timeline\""));
    assert_non_null(strstr(got, "<svg id=\"chart-services\""));
    assert_non_null(strstr(got, "<svg id=\"chart-sources\""));
    free(got);
    report_release(&r);
}

static void html_escapes_markup_in_attacker_text(void **state)
{
    struct report r;
    sample(&r);
    assert_int_equal(report_add_account(&r, "<img onerror=x>&", 1, 1), 0);
    char *got = render(&r, report_render_html);
    assert_null(strstr(got, "<img"));
    assert_non_null(strstr(got, "&lt;img onerror=x&gt;&amp;"));
    free(got);
    report_release(&r);
}

static void a_day_has_24_hourly_buckets(void **state)
{
    struct report r;
    assert_int_equal(report_init(&r, DAY0, DAY0 + 86400), 0);
    assert_int_equal(r.bucket_s, 3600);
    assert_int_equal(r.nbuckets, 24);
    assert_int_equal(r.bucket_start, DAY0);
    report_release(&r);
}

static void buckets_align_on_the_hour(void **state)
{
    struct report r;
    assert_int_equal(report_init(&r, DAY0 + 1800, DAY0 + 1800 + 86400), 0);
    assert_int_equal(r.bucket_start, DAY0);
    assert_int_equal(r.nbuckets, 25);
    report_release(&r);
}

static void a_month_has_daily_buckets(void **state)
{
    struct report r;
    assert_int_equal(report_init(&r, DAY0, DAY0 + 30 * 86400), 0);
    assert_int_equal(r.bucket_s, 86400);
    assert_int_equal(r.nbuckets, 30);
    report_release(&r);
}

static void empty_period_is_refused(void **state)
{
    struct report r;
    assert_int_equal(report_init(&r, DAY0, DAY0), -EINVAL);
    report_release(NULL);
}

static int64_t T(const char *s)
{
    int64_t t = -1;
    assert_int_equal(report_time_parse(s, &t), 0);
    return t;
}

static void times_parse_in_local_time_or_with_an_offset(void **state)
{
    /* TZ is UTC in this test (main), so local = UTC */
    assert_int_equal(T("2026-11-25"), DAY0);
    assert_int_equal(T("2026-11-25T01:00"), DAY0 + 3600);
    assert_int_equal(T("2026-11-25 01:00:30"), DAY0 + 3630);
    assert_int_equal(T("2026-11-25T01:00Z"), DAY0 + 3600);
    assert_int_equal(T("2026-11-25T01:00+01:00"), DAY0);
    assert_int_equal(T("2026-11-25T00:00:00-0130"), DAY0 + 5400);
}

static void bad_times_are_refused(void **state)
{
    static const char *const bad[] = {"",
                                      "2026",
                                      "2026-11",
                                      "2026-13-01",
                                      "2026-02-30",
                                      "2026-11-25T",
                                      "2026-11-25T1:00",
                                      "2026-11-25T25:00",
                                      "2026-11-25T01:00+1",
                                      "2026-11-25x",
                                      "yesterday"};
    int64_t t;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(report_time_parse(bad[i], &t), -EINVAL);
}

int main(void)
{
    setenv("TZ", "UTC", 1);
    tzset();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(text_matches_golden),
        cmocka_unit_test(csv_matches_golden),
        cmocka_unit_test(json_matches_golden),
        cmocka_unit_test(text_lines_fit_80_columns_even_with_long_names),
        cmocka_unit_test(text_shows_attacker_bytes_escaped),
        cmocka_unit_test(text_shows_attacker_services_escaped),
        cmocka_unit_test(csv_shows_attacker_services_escaped),
        cmocka_unit_test(json_keeps_attacker_services_escaped),
        cmocka_unit_test(html_escapes_attacker_services_once),
        cmocka_unit_test(empty_period_says_so_in_text),
        cmocka_unit_test(csv_single_table_is_a_plain_csv_file),
        cmocka_unit_test(csv_unknown_table_is_refused),
        cmocka_unit_test(csv_quotes_cells_and_defuses_formulas),
        cmocka_unit_test(json_stays_valid_with_invalid_utf8_in_accounts),
        cmocka_unit_test(json_daemon_is_null_when_not_recorded),
        cmocka_unit_test(html_is_self_contained),
        cmocka_unit_test(html_escapes_markup_in_attacker_text),
        cmocka_unit_test(a_day_has_24_hourly_buckets),
        cmocka_unit_test(buckets_align_on_the_hour),
        cmocka_unit_test(a_month_has_daily_buckets),
        cmocka_unit_test(empty_period_is_refused),
        cmocka_unit_test(times_parse_in_local_time_or_with_an_offset),
        cmocka_unit_test(bad_times_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
