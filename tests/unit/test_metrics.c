#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "metrics.h"
#include "prom_file.h"

static struct metrics *m;
static char out[METRICS_RENDER_MAX];

static int setup(void **state)
{
    m = metrics_new();
    return m ? 0 : -1;
}

static int teardown(void **state)
{
    metrics_free(m);
    return 0;
}

static const char *render(void)
{
    int n = metrics_render(m, out, sizeof(out));
    assert_true(n >= 0);
    assert_int_equal(strlen(out), (size_t)n);
    return out;
}

/* Every non-comment line is NAME{labels} VALUE or NAME VALUE; comments are HELP then TYPE of the
 * same name; the text ends in a newline and is printable ASCII. */
static void assert_exposition(const char *text)
{
    size_t n = strlen(text);
    assert_true(n == 0 || text[n - 1] == '\n');
    for (const char *p = text; *p; p++)
        assert_true((*p >= 0x20 && *p < 0x7f) || *p == '\n');
    char help[128] = "";
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        assert_non_null(end);
        if (strncmp(line, "# HELP ", 7) == 0) {
            sscanf(line + 7, "%127s", help);
        } else if (strncmp(line, "# TYPE ", 7) == 0) {
            char name[128];
            sscanf(line + 7, "%127s", name);
            assert_string_equal(name, help);
        } else {
            assert_true(help[0] != '\0');
            assert_int_equal(strncmp(line, help, strlen(help)), 0);
            assert_true(line[strlen(help)] == '{' || line[strlen(help)] == ' ');
        }
        line = end + 1;
    }
}

static void empty_table_renders_nothing(void **state)
{
    assert_string_equal(render(), "");
}

static void counter_has_help_type_and_total(void **state)
{
    metrics_add(m, METRICS_BANS, "threshold", NULL, 1);
    metrics_add(m, METRICS_BANS, "threshold", NULL, 2);
    metrics_add(m, METRICS_BANS, "manual", NULL, 1);
    const char *t = render();
    assert_non_null(strstr(t, "# HELP pbxguard_bans_total Bans placed, by reason.\n"
                              "# TYPE pbxguard_bans_total counter\n"
                              "pbxguard_bans_total{reason=\"threshold\"} 3\n"
                              "pbxguard_bans_total{reason=\"manual\"} 1\n"));
    assert_exposition(t);
}

static void failed_auth_has_service_and_event(void **state)
{
    metrics_add(m, METRICS_FAILED_AUTH, "PJSIP", "InvalidPassword", 1);
    metrics_add(m, METRICS_FAILED_AUTH, "AMI", "ChallengeResponseFailed", 1);
    assert_non_null(strstr(render(), "pbxguard_failed_auth_total{service=\"PJSIP\",event="
                                     "\"InvalidPassword\"} 1\n"));
    assert_non_null(strstr(out, "# TYPE pbxguard_failed_auth_total counter\n"));
    assert_exposition(out);
}

static void gauges_are_set_and_unlabelled_ones_have_no_braces(void **state)
{
    metrics_set(m, METRICS_BANS_ACTIVE, "ipv4", NULL, 7);
    metrics_set(m, METRICS_BANS_ACTIVE, "ipv4", NULL, 5);
    metrics_set(m, METRICS_NFT_ENFORCING, "ignored", "too", 1);
    const char *t = render();
    assert_non_null(strstr(t, "# TYPE pbxguard_bans_active gauge\n"
                              "pbxguard_bans_active{family=\"ipv4\"} 5\n"));
    assert_non_null(strstr(t, "\npbxguard_nft_enforcing 1\n"));
    assert_exposition(t);
}

static void loop_turns_are_a_summary_in_seconds(void **state)
{
    metrics_set(m, METRICS_LOOP_TURN, "0.99", NULL, 250 / 1e6);
    metrics_set(m, METRICS_LOOP_TURN, "1", NULL, 12500 / 1e6);
    const char *t = render();
    assert_non_null(strstr(t, "# TYPE pbxguard_loop_turn_seconds summary\n"
                              "pbxguard_loop_turn_seconds{quantile=\"0.99\"} 0.00025\n"
                              "pbxguard_loop_turn_seconds{quantile=\"1\"} 0.0125\n"));
}

static void large_counters_stay_integers(void **state)
{
    metrics_add(m, METRICS_EVENTS, "InvalidPassword", NULL, 123456789012.0);
    assert_non_null(strstr(render(), "} 123456789012\n"));
}

static void label_escape_backslash_quote_newline(void **state)
{
    char buf[64];
    assert_int_equal(metrics_label_escape("a\\b\"c\nd", buf, sizeof(buf)), 10);
    assert_string_equal(buf, "a\\\\b\\\"c\\nd");
    assert_int_equal(metrics_label_escape("", buf, sizeof(buf)), 0);
    assert_int_equal(metrics_label_escape("\"\"\"", buf, 6), -ENOSPC);
    assert_string_equal(buf, "");
}

static void hostile_service_is_escaped_bounded_and_ascii(void **state)
{
    /* What a forged event could carry: quotes, backslashes, a newline that would start a new
     * sample line, bytes that are not UTF-8, and far more than a label should hold. */
    char svc[200];
    snprintf(svc, sizeof(svc), "x\"} 1\nevil_total 9\\\xff\xfe%0150d", 0);
    metrics_add(m, METRICS_FAILED_AUTH, svc, "InvalidAccountID", 1);
    const char *t = render();
    assert_exposition(t);
    assert_null(strstr(t, "\nevil_total"));
    assert_non_null(strstr(t, "{service=\"x\\\"} 1\\nevil_total 9\\\\__000"));
    /* Cut at METRICS_LABEL_MAX bytes before escaping. */
    char clean[METRICS_LABEL_MAX + 1];
    metrics_label_clean(svc, clean);
    assert_int_equal(strlen(clean), METRICS_LABEL_MAX);
    assert_int_equal(metrics_get(m, METRICS_FAILED_AUTH, svc, "InvalidAccountID"), 1);
}

static void too_many_label_values_fold_into_other(void **state)
{
    char svc[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(svc, sizeof(svc), "svc%d", i);
        metrics_add(m, METRICS_FAILED_AUTH, svc, "InvalidPassword", 1);
    }
    assert_true(m->per_family[METRICS_FAILED_AUTH] <= METRICS_FAMILY_SERIES_MAX);
    double other = metrics_get(m, METRICS_FAILED_AUTH, "other", "other");
    assert_true(other >= 1000 - METRICS_FAMILY_SERIES_MAX);
    /* Nothing is lost: the series add up to every update. */
    double sum = 0;
    for (unsigned i = 0; i < m->nseries; i++)
        if (m->series[i].family == METRICS_FAILED_AUTH)
            sum += m->series[i].value;
    assert_int_equal((int)sum, 1000);
    const char *t = render();
    assert_non_null(strstr(t, "pbxguard_metrics_series_overflow_total{metric="
                              "\"pbxguard_failed_auth_total\"} "));
    assert_exposition(t);
    /* Other families still get their series. */
    metrics_add(m, METRICS_BANS, "threshold", NULL, 1);
    assert_int_equal(metrics_get(m, METRICS_BANS, "threshold", NULL), 1);
}

static void a_full_table_still_renders_within_the_bound(void **state)
{
    char l1[METRICS_LABEL_MAX + 1], l2[METRICS_LABEL_MAX + 1];
    memset(l1, '"', METRICS_LABEL_MAX);
    memset(l2, '\\', METRICS_LABEL_MAX);
    l1[METRICS_LABEL_MAX] = l2[METRICS_LABEL_MAX] = '\0';
    for (int f = 0; f < METRICS_FAMILY_COUNT; f++)
        for (int i = 0; i < 100; i++) {
            snprintf(l1 + METRICS_LABEL_MAX - 8, 9, "%08d", i);
            metrics_add(m, (enum metrics_family)f, l1, l2, 1e300);
        }
    assert_true(m->nseries <= METRICS_SERIES_MAX);
    int n = metrics_render(m, out, sizeof(out));
    assert_true(n > 0);
    assert_exposition(out);
    assert_int_equal(metrics_render(m, out, 100), -ENOSPC);
}

static void statsd_names_map_to_families(void **state)
{
    assert_int_equal(metrics_family_of_statsd("bans"), METRICS_BANS);
    assert_int_equal(metrics_family_of_statsd("nft.enforcing"), METRICS_NFT_ENFORCING);
    assert_int_equal(metrics_family_of_statsd("crowdsec.refused"), METRICS_CROWDSEC_REFUSED);
    assert_int_equal(metrics_family_of_statsd("cluster.outbox"), METRICS_CLUSTER_OUTBOX);
    assert_int_equal(metrics_family_of_statsd("backfill.events"), METRICS_BACKFILL_EVENTS);
    assert_int_equal(metrics_family_of_statsd("seclog.lines_malformed"), METRICS_SECLOG_MALFORMED);
    assert_int_equal(metrics_family_of_statsd("seclog.duplicates"), METRICS_SECLOG_DUPLICATES);
    /* Set per source by the core, not from the global StatsD meter. */
    assert_int_equal(metrics_family_of_statsd("ami.reconnects"), -1);
    assert_int_equal(metrics_family_of_statsd("nope"), -1);
}

static void clearing_a_family_keeps_the_others(void **state)
{
    metrics_set(m, METRICS_AMI_UP, "ami:a", NULL, 1);
    metrics_set(m, METRICS_AMI_UP, "ami:b", NULL, 0);
    metrics_add(m, METRICS_BANS, "manual", NULL, 4);
    metrics_clear_family(m, METRICS_AMI_UP);
    assert_null(strstr(render(), "pbxguard_ami_up"));
    assert_int_equal(metrics_get(m, METRICS_BANS, "manual", NULL), 4);
    metrics_set(m, METRICS_AMI_UP, "ami:b", NULL, 1);
    assert_non_null(strstr(render(), "pbxguard_ami_up{source=\"ami:b\"} 1\n"));
}

/* ---- the file ---- */

static char dir[64];

static void file_replaced_atomically_and_readable(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/test-metrics-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char path[128], tmp[140];
    snprintf(path, sizeof(path), "%s/pbxguard.prom", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    umask(077);
    struct prom_file *pf = prom_file_new(path);
    assert_non_null(pf);
    metrics_add(m, METRICS_BANS, "manual", NULL, 1);
    assert_int_equal(prom_file_write(pf, m), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    assert_int_equal(access(tmp, F_OK), -1);
    char buf[4096] = "";
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    assert_string_equal(buf, render());
    assert_int_equal(prom_file_remove(pf), 0);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(prom_file_remove(pf), 0);
    prom_file_free(pf);
    rmdir(dir);
}

static void missing_directory_fails_then_recovers(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/test-metrics-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char sub[128], path[160];
    snprintf(sub, sizeof(sub), "%s/textfile", dir);
    snprintf(path, sizeof(path), "%s/pbxguard.prom", sub);
    struct prom_file *pf = prom_file_new(path);
    metrics_add(m, METRICS_BANS, "manual", NULL, 1);
    assert_int_equal(prom_file_write(pf, m), -ENOENT);
    assert_string_equal(prom_file_failed_step(pf), "create");
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_int_equal(prom_file_write(pf, m), 0);
    assert_string_equal(prom_file_failed_step(pf), "");
    assert_int_equal(access(path, R_OK), 0);
    prom_file_remove(pf);
    prom_file_free(pf);
    rmdir(sub);
    rmdir(dir);
}

static void link_at_the_temporary_name_is_not_followed(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/test-metrics-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char path[128], tmp[140], target[140];
    snprintf(path, sizeof(path), "%s/pbxguard.prom", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    snprintf(target, sizeof(target), "%s/target", dir);
    assert_int_equal(symlink(target, tmp), 0);
    struct prom_file *pf = prom_file_new(path);
    assert_int_equal(prom_file_write(pf, m), -ELOOP);
    assert_int_equal(access(target, F_OK), -1);
    prom_file_free(pf);
    unlink(tmp);
    rmdir(dir);
}

/* The writer thread: the file system calls leave the caller's thread, outcomes come back. */
static unsigned long wait_finished(struct prom_file *pf, unsigned long n, int *err,
                                   const char **step)
{
    unsigned long got = 0;
    for (int i = 0; i < 500 && (got = prom_file_last(pf, err, step)) < n; i++)
        usleep(10000);
    return got;
}

static void writer_thread_writes_and_reports(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/test-metrics-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char sub[128], path[160];
    snprintf(sub, sizeof(sub), "%s/textfile", dir);
    snprintf(path, sizeof(path), "%s/pbxguard.prom", sub);
    struct prom_file *pf = prom_file_new(path);
    int err;
    const char *step;
    assert_int_equal(prom_file_submit(pf, m), -EINVAL); /* not started */
    assert_int_equal(prom_file_start(pf), 0);
    assert_int_equal(prom_file_last(pf, &err, &step), 0);
    metrics_add(m, METRICS_BANS, "manual", NULL, 1);
    assert_int_equal(prom_file_submit(pf, m), 0);
    assert_true(wait_finished(pf, 1, &err, &step) >= 1);
    assert_int_equal(err, -ENOENT);
    assert_string_equal(step, "create");
    assert_int_equal(mkdir(sub, 0755), 0);
    unsigned long n = prom_file_last(pf, &err, &step);
    /* Many snapshots at once: the newest wins, none is lost half-written. */
    for (int i = 0; i < 100; i++) {
        metrics_add(m, METRICS_BANS, "manual", NULL, 1);
        assert_int_equal(prom_file_submit(pf, m), 0);
    }
    assert_true(wait_finished(pf, n + 1, &err, &step) > n);
    assert_int_equal(err, 0);
    char buf[4096] = "", want[64];
    snprintf(want, sizeof(want), "pbxguard_bans_total{reason=\"manual\"} 101\n");
    for (int i = 0; i < 500 && !strstr(buf, want); i++) {
        FILE *f = fopen(path, "r");
        if (f) {
            buf[fread(buf, 1, sizeof(buf) - 1, f)] = '\0';
            fclose(f);
        }
        if (!strstr(buf, want))
            usleep(10000);
    }
    assert_non_null(strstr(buf, want));
    assert_int_equal(prom_file_remove(pf), 0);
    assert_int_equal(access(path, F_OK), -1);
    prom_file_free(pf);
    rmdir(sub);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(empty_table_renders_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(counter_has_help_type_and_total, setup, teardown),
        cmocka_unit_test_setup_teardown(failed_auth_has_service_and_event, setup, teardown),
        cmocka_unit_test_setup_teardown(gauges_are_set_and_unlabelled_ones_have_no_braces, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(loop_turns_are_a_summary_in_seconds, setup, teardown),
        cmocka_unit_test_setup_teardown(large_counters_stay_integers, setup, teardown),
        cmocka_unit_test(label_escape_backslash_quote_newline),
        cmocka_unit_test_setup_teardown(hostile_service_is_escaped_bounded_and_ascii, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(too_many_label_values_fold_into_other, setup, teardown),
        cmocka_unit_test_setup_teardown(a_full_table_still_renders_within_the_bound, setup,
                                        teardown),
        cmocka_unit_test(statsd_names_map_to_families),
        cmocka_unit_test_setup_teardown(clearing_a_family_keeps_the_others, setup, teardown),
        cmocka_unit_test_setup_teardown(file_replaced_atomically_and_readable, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_directory_fails_then_recovers, setup, teardown),
        cmocka_unit_test_setup_teardown(link_at_the_temporary_name_is_not_followed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(writer_thread_writes_and_reports, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
