#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "log.h"

static void printable_text_is_kept(void **state)
{
    char out[64];
    assert_string_equal(log_escape("alice 1001", 10, out, sizeof(out)), "alice 1001");
}

static void control_bytes_quotes_and_utf8_are_escaped(void **state)
{
    char out[64];
    const char in[] = "a\r\nb\"c\\\xc3\xa9";
    assert_string_equal(log_escape(in, sizeof(in) - 1, out, sizeof(out)),
                        "a\\x0d\\x0ab\\\"c\\\\\\xc3\\xa9");
}

static void embedded_nul_does_not_cut_the_text(void **state)
{
    char out[64];
    assert_string_equal(log_escape("a\0b", 3, out, sizeof(out)), "a\\x00b");
}

static void long_text_is_cut_with_a_marker(void **state)
{
    char out[16];
    char in[100];
    memset(in, 'x', sizeof(in));
    log_escape(in, sizeof(in), out, sizeof(out));
    assert_int_equal(strlen(out), 15);
    assert_string_equal(out + 12, "...");
}

static void text_that_fits_exactly_is_not_cut(void **state)
{
    char out[6];
    assert_string_equal(log_escape("abcde", 5, out, sizeof(out)), "abcde");
}

static void escape_never_splits_an_escape_sequence(void **state)
{
    char out[8];
    log_escape("ab\x01\x02\x03", 5, out, sizeof(out));
    assert_string_equal(out, "ab...");
}

static void level_names_round_trip(void **state)
{
    for (int i = LOG_LVL_ERR; i <= LOG_LVL_DEBUG; i++)
        assert_int_equal(log_level_from_name(log_level_name(i)), i);
    assert_int_equal(log_level_from_name("loud"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(printable_text_is_kept),
        cmocka_unit_test(control_bytes_quotes_and_utf8_are_escaped),
        cmocka_unit_test(embedded_nul_does_not_cut_the_text),
        cmocka_unit_test(long_text_is_cut_with_a_marker),
        cmocka_unit_test(text_that_fits_exactly_is_not_cut),
        cmocka_unit_test(escape_never_splits_an_escape_sequence),
        cmocka_unit_test(level_names_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
