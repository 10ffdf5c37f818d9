#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import_parse.h"

static char err[512];

static int line(const char *s, struct import_entry *e)
{
    err[0] = '\0';
    return import_parse_line(s, strlen(s), e, err, sizeof(err));
}

static void a_list_line_is_an_address_or_prefix_made_canonical(void **state)
{
    (void)state;
    struct import_entry e;
    assert_int_equal(line("203.0.113.7", &e), 1);
    assert_string_equal(e.prefix, "203.0.113.7");
    assert_false(e.timed);
    assert_int_equal(line("  198.51.100.0/24\t# the old firewall's\r", &e), 1);
    assert_string_equal(e.prefix, "198.51.100.0/24");
    assert_int_equal(line("2001:DB8:0:0::1/128", &e), 1);
    assert_string_equal(e.prefix, "2001:db8::1");
    assert_int_equal(line("203.0.113.7/32", &e), 1);
    assert_string_equal(e.prefix, "203.0.113.7");
}

static void blank_lines_and_comments_hold_nothing(void **state)
{
    (void)state;
    struct import_entry e;
    assert_int_equal(line("", &e), 0);
    assert_int_equal(line("   \t\r", &e), 0);
    assert_int_equal(line("# 203.0.113.7", &e), 0);
}

static void a_bad_line_says_what_is_wrong(void **state)
{
    (void)state;
    struct import_entry e;
    assert_int_equal(line("not-an-address", &e), -EINVAL);
    assert_non_null(strstr(err, "\"not-an-address\" is not an IP address"));
    assert_int_equal(line("203.0.113.70/24", &e), -EINVAL);
    assert_non_null(strstr(err, "host bits"));
    assert_int_equal(line("203.0.113.0/33", &e), -EINVAL);
    assert_int_equal(line("0.0.0.0/0", &e), -EINVAL);
    assert_int_equal(line("203.0.113.7 198.51.100.1", &e), -EINVAL);
}

static void bytes_of_a_bad_line_are_escaped_in_the_message(void **state)
{
    (void)state;
    struct import_entry e;
    const char nul[] = "203.0.113.1\0garbage";
    assert_int_equal(import_parse_line(nul, sizeof(nul) - 1, &e, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "\\x00"));
    assert_int_equal(line("\xff\xfe\x1b[31m", &e), -EINVAL);
    assert_non_null(strstr(err, "\\xff\\xfe\\x1b[31m"));
    for (const char *p = err; *p; p++)
        assert_true(*p >= 0x20 && *p < 0x7f);
}

static void a_csv_header_names_the_columns(void **state)
{
    (void)state;
    struct import_csv c;
    const char *h = "prefix,family,reason,remaining,expires,expires_utc,origin,note\r";
    assert_int_equal(import_csv_header(h, strlen(h), &c, err, sizeof(err)), 0);
    assert_int_equal(c.ncols, 8);
    assert_int_equal(c.prefix, 0);
    assert_int_equal(c.expires, 4);
    assert_int_equal(c.note, 7);
    h = "note,prefix";
    assert_int_equal(import_csv_header(h, strlen(h), &c, err, sizeof(err)), 0);
    assert_int_equal(c.prefix, 1);
    assert_int_equal(c.expires, -1);
    h = "address,expires";
    assert_int_equal(import_csv_header(h, strlen(h), &c, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "no \"prefix\" column"));
    h = "prefix,prefix";
    assert_int_equal(import_csv_header(h, strlen(h), &c, err, sizeof(err)), -EINVAL);
}

static int record(const struct import_csv *c, const char *s, struct import_entry *e)
{
    err[0] = '\0';
    return import_csv_record(c, s, strlen(s), e, err, sizeof(err));
}

static void a_csv_record_gives_prefix_expiry_and_note(void **state)
{
    (void)state;
    struct import_csv c = {.ncols = 8, .prefix = 0, .expires = 4, .note = 7};
    struct import_entry e;
    assert_int_equal(record(&c,
                            "203.0.113.7,4,manual,3600,1796256290,2026-12-03T00:04:50Z,"
                            "cli:uid=0,\"ticket 4711, \"\"quoted\"\"\"\r",
                            &e),
                     1);
    assert_string_equal(e.prefix, "203.0.113.7");
    assert_true(e.timed);
    assert_false(e.permanent);
    assert_int_equal(e.expires, 1796256290);
    assert_string_equal(e.note, "ticket 4711, \"quoted\"");
    /* Empty expiry: permanent. A spreadsheet guard is dropped from the note. */
    assert_int_equal(record(&c, "198.51.100.0/24,4,manual,,,,cli:uid=0,\"'=forever\"", &e), 1);
    assert_true(e.timed && e.permanent);
    assert_string_equal(e.note, "=forever");
    assert_int_equal(record(&c, "  \r", &e), 0);
}

static void a_csv_record_of_the_wrong_shape_is_refused(void **state)
{
    (void)state;
    struct import_csv c = {.ncols = 3, .prefix = 0, .expires = 1, .note = 2};
    struct import_entry e;
    assert_int_equal(record(&c, "203.0.113.7,,x,extra", &e), -EINVAL);
    assert_string_equal(err, "4 fields where the header has 3");
    assert_int_equal(record(&c, "203.0.113.7", &e), -EINVAL);
    assert_string_equal(err, "1 field where the header has 3");
    assert_int_equal(record(&c, "203.0.113.7,\"unclosed,x", &e), -EINVAL);
    assert_non_null(strstr(err, "not closed"));
    assert_int_equal(record(&c, "203.0.113.7,\"1\"x,y", &e), -EINVAL);
    assert_int_equal(record(&c, "203.0.113.7,soon,x", &e), -EINVAL);
    assert_non_null(strstr(err, "expires \"soon\""));
    assert_int_equal(record(&c, "203.0.113.7,-5,x", &e), -EINVAL);
    assert_int_equal(record(&c, "203.0.113.7, 5,x", &e), -EINVAL);
}

static void a_note_is_one_bounded_line_of_utf8(void **state)
{
    (void)state;
    struct import_csv c = {.ncols = 2, .prefix = 0, .expires = -1, .note = 1};
    struct import_entry e;
    assert_int_equal(record(&c, "203.0.113.7,caf\xc3\xa9 \x1b[2J \xff end", &e), 1);
    assert_string_equal(e.note, "caf\xc3\xa9 ?[2J ? end");
    char longer[600];
    strcpy(longer, "203.0.113.7,");
    for (int i = 0; i < 150; i++)
        strcat(longer, "\xc3\xa9"); /* 300 bytes */
    assert_int_equal(record(&c, longer, &e), 1);
    assert_int_equal(strlen(e.note), CTL_NOTE_MAX);
}

static int json_ban(const char *text, struct import_entry *e)
{
    json_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    err[0] = '\0';
    int r = import_json_ban(j, e, err, sizeof(err));
    json_decref(j);
    return r;
}

static void a_json_ban_gives_prefix_expiry_and_note(void **state)
{
    (void)state;
    struct import_entry e;
    assert_int_equal(json_ban("{\"prefix\":\"2001:db8:1:2::/64\",\"expires\":1796259890,"
                              "\"note\":\"x\",\"reason\":\"threshold\"}",
                              &e),
                     1);
    assert_string_equal(e.prefix, "2001:db8:1:2::/64");
    assert_true(e.timed);
    assert_int_equal(e.expires, 1796259890);
    assert_string_equal(e.note, "x");
    assert_int_equal(json_ban("{\"prefix\":\"198.51.100.0/24\",\"expires\":null}", &e), 1);
    assert_true(e.permanent);
    assert_int_equal(json_ban("{\"prefix\":\"198.51.100.1\"}", &e), 1);
    assert_false(e.timed);
}

static void a_json_ban_of_the_wrong_shape_is_refused(void **state)
{
    (void)state;
    struct import_entry e;
    assert_int_equal(json_ban("[]", &e), -EINVAL);
    assert_int_equal(json_ban("{\"prefix\":7}", &e), -EINVAL);
    assert_int_equal(json_ban("{\"addr\":\"1.2.3.4\"}", &e), -EINVAL);
    assert_int_equal(json_ban("{\"prefix\":\"1.2.3.4\",\"expires\":\"soon\"}", &e), -EINVAL);
    assert_int_equal(json_ban("{\"prefix\":\"1.2.3.4\",\"expires\":-1}", &e), -EINVAL);
    assert_int_equal(json_ban("{\"prefix\":\"1.2.3.4\",\"note\":5}", &e), -EINVAL);
}

/* import_read() over a string: entries and errors as one line each in out. */
struct collect {
    char out[4096];
};

static int collect_entry(void *data, const struct import_pos *pos, const struct import_entry *e)
{
    struct collect *c = data;
    size_t n = strlen(c->out);
    snprintf(c->out + n, sizeof(c->out) - n, "%lu/%ld %s%s\n", pos->line, pos->index, e->prefix,
             e->permanent ? " permanent" : "");
    return 0;
}

static void collect_error(void *data, const struct import_pos *pos, const char *what)
{
    struct collect *c = data;
    size_t n = strlen(c->out);
    snprintf(c->out + n, sizeof(c->out) - n, "%lu/%ld error: %s\n", pos->line, pos->index, what);
}

static int read_text(const char *text, size_t len, enum import_format fmt, struct collect *c,
                     enum import_format *got)
{
    memset(c, 0, sizeof(*c));
    FILE *in = fmemopen((void *)text, len, "r");
    assert_non_null(in);
    struct import_fns fns = {.entry = collect_entry, .error = collect_error};
    int r = import_read(in, fmt, &fns, c, got);
    fclose(in);
    return r;
}

static void the_format_is_found_from_the_first_bytes(void **state)
{
    (void)state;
    struct collect c;
    enum import_format got;
    const char *list = "\n\n  203.0.113.7\n# x\nnope\n198.51.100.0/24";
    assert_int_equal(read_text(list, strlen(list), IMPORT_AUTO, &c, &got), 0);
    assert_int_equal(got, IMPORT_LIST);
    assert_string_equal(c.out, "3/-1 203.0.113.7\n5/-1 error: \"nope\" is not an IP address or "
                               "prefix\n6/-1 198.51.100.0/24\n");
    const char *csv = "\xef\xbb\xbfprefix,expires\r\n203.0.113.7,\r\n";
    assert_int_equal(read_text(csv, strlen(csv), IMPORT_AUTO, &c, &got), 0);
    assert_int_equal(got, IMPORT_CSV);
    assert_string_equal(c.out, "2/-1 203.0.113.7 permanent\n");
    const char *json = "\n {\"bans\":[{\"prefix\":\"203.0.113.7\"},{}]}";
    assert_int_equal(read_text(json, strlen(json), IMPORT_AUTO, &c, &got), 0);
    assert_int_equal(got, IMPORT_JSON);
    assert_string_equal(c.out, "0/0 203.0.113.7\n0/1 error: no \"prefix\" string\n");
}

static void a_json_document_that_does_not_parse_is_refused_whole(void **state)
{
    (void)state;
    struct collect c;
    const char *json = "{\"bans\":[{\"prefix\":\"203.0.113.7\"},";
    assert_int_equal(read_text(json, strlen(json), IMPORT_AUTO, &c, NULL), -EINVAL);
    assert_non_null(strstr(c.out, "error: not valid JSON"));
    assert_null(strstr(c.out, "203.0.113.7\n"));
    json = "{\"total\": 3}";
    assert_int_equal(read_text(json, strlen(json), IMPORT_AUTO, &c, NULL), -EINVAL);
    assert_non_null(strstr(c.out, "without a \"bans\" array"));
}

static void a_line_over_the_cap_is_skipped_and_the_next_one_read(void **state)
{
    (void)state;
    size_t n = IMPORT_LINE_MAX * 3;
    char *text = malloc(n + 64);
    assert_non_null(text);
    strcpy(text, "203.0.113.1\n");
    size_t at = strlen(text);
    memset(text + at, '1', n);
    at += n;
    strcpy(text + at, "\n203.0.113.2\n");
    struct collect c;
    assert_int_equal(read_text(text, strlen(text), IMPORT_LIST, &c, NULL), 0);
    free(text);
    assert_string_equal(c.out, "1/-1 203.0.113.1\n2/-1 error: line longer than 4096 bytes\n"
                               "3/-1 203.0.113.2\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_list_line_is_an_address_or_prefix_made_canonical),
        cmocka_unit_test(blank_lines_and_comments_hold_nothing),
        cmocka_unit_test(a_bad_line_says_what_is_wrong),
        cmocka_unit_test(bytes_of_a_bad_line_are_escaped_in_the_message),
        cmocka_unit_test(a_csv_header_names_the_columns),
        cmocka_unit_test(a_csv_record_gives_prefix_expiry_and_note),
        cmocka_unit_test(a_csv_record_of_the_wrong_shape_is_refused),
        cmocka_unit_test(a_note_is_one_bounded_line_of_utf8),
        cmocka_unit_test(a_json_ban_gives_prefix_expiry_and_note),
        cmocka_unit_test(a_json_ban_of_the_wrong_shape_is_refused),
        cmocka_unit_test(the_format_is_found_from_the_first_bytes),
        cmocka_unit_test(a_json_document_that_does_not_parse_is_refused_whole),
        cmocka_unit_test(a_line_over_the_cap_is_skipped_and_the_next_one_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
