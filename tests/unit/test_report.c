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
#include <unistd.h>

#include <jansson.h>

#include "report.h"
#include "store.h"

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

    /* stopped for an upgrade at 04:00, killed at 13:30, started again at 13:42 */
    r->runs_recorded = true;
    r->not_running = 2 * 60 + 12 * 60;
    struct report_run e = {.kind = REPORT_RUN_STOP,
                           .time = DAY0 + 4 * 3600,
                           .pid = 800,
                           .reason = "SIGTERM",
                           .uptime = 3 * 86400 + 4 * 3600};
    assert_int_equal(report_add_run(r, &e), 0);
    e = (struct report_run){.kind = REPORT_RUN_START,
                            .time = DAY0 + 4 * 3600 + 120,
                            .pid = 801,
                            .version = "0.1.0",
                            .config = "/etc/pbxguard/pbxguard.conf",
                            .down = 120};
    assert_int_equal(report_add_run(r, &e), 0);
    e = (struct report_run){.kind = REPORT_RUN_DIED,
                            .time = DAY0 + 13 * 3600 + 30 * 60 + 7,
                            .pid = 801,
                            .uptime = 9 * 3600 + 28 * 60 + 7};
    assert_int_equal(report_add_run(r, &e), 0);
    e = (struct report_run){.kind = REPORT_RUN_START,
                            .time = DAY0 + 13 * 3600 + 42 * 60 + 7,
                            .pid = 802,
                            .version = "0.1.0",
                            .config = "/etc/pbxguard/pbxguard.conf",
                            .down = 12 * 60,
                            .after_death = true};
    assert_int_equal(report_add_run(r, &e), 0);
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

/* Rendered characters of HTML text: an entity counts as one. */
static size_t html_chars(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++, c++)
        if (s[i] == '&')
            while (i < n && s[i] != ';')
                i++;
    return c;
}

/* Every <text> of every <svg> in page: its estimated extent (7 px a character, the renderer's
 * own estimate) lies within the SVG's width. Returns how many texts it checked. */
static unsigned assert_svg_texts_fit(const char *page)
{
    unsigned n = 0;
    double width = 0;
    for (const char *p = page; (p = strchr(p, '<')); p++) {
        if (strncmp(p, "<svg ", 5) == 0) {
            const char *vb = strstr(p, "viewBox=\"0 0 ");
            assert_non_null(vb);
            width = strtod(vb + 13, NULL);
            continue;
        }
        if (strncmp(p, "<text ", 6) != 0)
            continue;
        double x = strtod(strstr(p, "x=\"") + 3, NULL);
        const char *gt = strchr(p, '>'), *end = strstr(p, "</text>");
        const char *anchor = strstr(p, "text-anchor=\"");
        double w = 7.0 * (double)html_chars(gt + 1, (size_t)(end - gt - 1));
        double left = x;
        if (anchor && anchor < gt && strncmp(anchor + 13, "end", 3) == 0)
            left = x - w;
        else if (anchor && anchor < gt && strncmp(anchor + 13, "middle", 6) == 0)
            left = x - w / 2;
        if (left < 0 || left + w > width)
            fail_msg("svg text \"%.*s\" spans %.1f..%.1f of %.0f", (int)(end - gt - 1), gt + 1,
                     left, left + w, width);
        n++;
    }
    return n;
}

static void html_chart_labels_stay_inside_the_charts(void **state)
{
    struct report r;
    /* 25 hourly buckets (the period starts at half past), a count of 20 digits, a service name
     * as long as a peer may send, and the longest IPv6 source. */
    assert_int_equal(report_init(&r, DAY0 + 1800, DAY0 + 1800 + 86400), 0);
    r.totals.failures = 1;
    r.buckets[24] = 18446744073709551615ULL;
    char svc[SEC_SERVICE_MAX];
    memset(svc, '&', sizeof(svc) - 1);
    svc[sizeof(svc) - 1] = '\0';
    assert_int_equal(report_add_count(&r.by_service, &r.nby_service, svc, 18446744073709551615ULL),
                     0);
    struct report_source s = {.key = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120",
                              .attempts = 9999999999ULL};
    assert_int_equal(report_add_source(&r, &s), 0);
    char *got = render(&r, report_render_html);
    assert_true(assert_svg_texts_fit(got) >= 8);
    free(got);
    report_release(&r);

    sample(&r);
    got = render(&r, report_render_html);
    assert_true(assert_svg_texts_fit(got) >= 8);
    free(got);
    report_release(&r);
}

static void html_daemon_section_lists_the_runs(void **state)
{
    struct report r;
    sample(&r);
    char *got = render(&r, report_render_html);
    assert_non_null(strstr(got, "<b>14m</b><span>not running in this period</span>"));
    assert_non_null(strstr(got, "<tr class=\"run-unclean_stop\"><td class=\"t\">2026-11-25 "
                                "13:30:07</td><td>UNCLEAN STOP: pid 801"));
    free(got);
    report_release(&r);
}

static void a_run_silent_for_long_is_not_running(void **state)
{
    struct report r;
    assert_int_equal(report_init(&r, DAY0, DAY0 + 86400), 0);
    r.runs_recorded = true;
    r.not_running = 6 * 3600;
    struct report_run e = {
        .kind = REPORT_RUN_SILENT, .time = DAY0 + 18 * 3600, .pid = 77, .uptime = 3600};
    assert_int_equal(report_add_run(&r, &e), 0);
    char *got = render(&r, report_render_text);
    assert_non_null(strstr(got, "  Not running in this period                         6h\n"));
    assert_non_null(strstr(got, "  2026-11-25 18:00:00  NOT RUNNING: pid 77, up 1h, has written "
                                "nothing since"));
    free(got);
    got = render(&r, report_render_json);
    assert_non_null(strstr(got, "\"event\": \"not_running\""));
    free(got);
    report_release(&r);
}

static void runs_not_recorded_leave_the_downtime_unknown(void **state)
{
    struct report r;
    assert_int_equal(report_init(&r, DAY0, DAY0 + 86400), 0);
    char *got = render(&r, report_render_text);
    assert_null(strstr(got, "Not running"));
    free(got);
    got = render(&r, report_render_json);
    json_t *root = json_loads(got, 0, NULL);
    assert_non_null(root);
    assert_true(json_is_null(json_object_get(root, "daemon_runs")));
    assert_true(
        json_is_null(json_object_get(json_object_get(root, "totals"), "not_running_seconds")));
    json_decref(root);
    free(got);
    report_release(&r);
}

/* A report of the day DAY0 from a database holding one run of the daemon, read at now. */
static void report_of_one_run(struct report *r, bool stopped, int64_t now)
{
    char dir[] = "/tmp/pbxguard-report-XXXXXX", db[64];
    assert_non_null(mkdtemp(dir));
    snprintf(db, sizeof(db), "%s/pbxguard.db", dir);
    struct store *st;
    int64_t id;
    assert_int_equal(store_open(db, NULL, &st), 0);
    assert_int_equal(
        store_run_start(st, (DAY0 + 3600) * 1000, "0.1.0", "/etc/p.conf", 9, &id, NULL), 0);
    assert_int_equal(store_run_alive(st, id, (DAY0 + 3 * 3600) * 1000), 0);
    if (stopped)
        assert_int_equal(store_run_stop(st, id, (DAY0 + 4 * 3600) * 1000, "SIGINT", 3 * 3600000),
                         0);
    assert_int_equal(store_turn_commit(st), 0);
    store_close(st);
    struct store_options o = {.flags = STORE_READ_ONLY};
    assert_int_equal(store_open(db, &o, &st), 0);
    assert_int_equal(report_init(r, DAY0, DAY0 + 86400), 0);
    assert_int_equal(report_fill(st, r, now, 10), 0);
    store_close(st);
    static const char *const suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        char p[80];
        snprintf(p, sizeof(p), "%s%s", db, suffix[i]);
        unlink(p);
    }
    rmdir(dir);
}

static void a_daemon_stopped_and_not_started_again_is_down_until_now(void **state)
{
    struct report r;
    report_of_one_run(&r, true, DAY0 + 10 * 3600);
    assert_true(r.runs_recorded);
    /* Down from its stop at 04:00 to now (10:00); before its start nothing is known. */
    assert_int_equal(r.not_running, 6 * 3600);
    assert_int_equal(r.nruns, 2);
    assert_int_equal(r.runs[0].kind, REPORT_RUN_START);
    assert_int_equal(r.runs[0].down, -1);
    assert_int_equal(r.runs[1].kind, REPORT_RUN_STOP);
    assert_string_equal(r.runs[1].reason, "SIGINT");
    report_release(&r);
}

static void a_run_that_went_quiet_is_not_running_since_its_last_sign(void **state)
{
    struct report r;
    report_of_one_run(&r, false, DAY0 + 86400 + 3600);
    /* Its heartbeat stopped at 03:00: not running from then to the end of the day. */
    assert_int_equal(r.not_running, 21 * 3600);
    assert_int_equal(r.nruns, 2);
    assert_int_equal(r.runs[1].kind, REPORT_RUN_SILENT);
    assert_int_equal(r.runs[1].time, DAY0 + 3 * 3600);
    assert_int_equal(r.runs[1].uptime, 2 * 3600);
    report_release(&r);
    /* Read a minute after its last heartbeat, it is simply running. */
    report_of_one_run(&r, false, DAY0 + 3 * 3600 + 60);
    assert_int_equal(r.not_running, 0);
    assert_int_equal(r.nruns, 1);
    report_release(&r);
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
        cmocka_unit_test(html_chart_labels_stay_inside_the_charts),
        cmocka_unit_test(html_daemon_section_lists_the_runs),
        cmocka_unit_test(a_run_silent_for_long_is_not_running),
        cmocka_unit_test(runs_not_recorded_leave_the_downtime_unknown),
        cmocka_unit_test(a_daemon_stopped_and_not_started_again_is_down_until_now),
        cmocka_unit_test(a_run_that_went_quiet_is_not_running_since_its_last_sign),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
