#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>

#include "duration.h"

static int64_t parse(const char *s)
{
    int64_t v = -1;
    assert_int_equal(duration_parse(s, &v), 0);
    return v;
}

static void plain_numbers_are_seconds(void **state)
{
    assert_int_equal(parse("0"), 0);
    assert_int_equal(parse("90"), 90);
}

static void each_unit_scales(void **state)
{
    assert_int_equal(parse("30s"), 30);
    assert_int_equal(parse("10m"), 600);
    assert_int_equal(parse("1h"), 3600);
    assert_int_equal(parse("7d"), 604800);
    assert_int_equal(parse("2w"), 1209600);
}

static void units_combine_in_decreasing_order(void **state)
{
    assert_int_equal(parse("1h30m"), 5400);
    assert_int_equal(parse("1d12h"), 129600);
    assert_int_equal(parse("1w1d1h1m1s"), 694861);
}

static void bad_input_is_rejected(void **state)
{
    static const char *const bad[] = {"",    "h",   "1x",  "1h1h", "30m1h", "1h30",
                                      " 1h", "1h ", "-5s", "1.5h", "1H",    "5ms"};
    int64_t v = 42;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(duration_parse(bad[i], &v), -EINVAL);
        assert_int_equal(v, 42); /* untouched on failure */
    }
}

static void overflow_is_a_range_error(void **state)
{
    int64_t v;
    assert_int_equal(duration_parse("99999999999999999999", &v), -ERANGE);
    assert_int_equal(duration_parse("9999999999999999w", &v), -ERANGE);
}

static void format_is_shortest_exact(void **state)
{
    char buf[32];
    assert_string_equal(duration_format(0, buf, sizeof(buf)), "0s");
    assert_string_equal(duration_format(5400, buf, sizeof(buf)), "1h30m");
    assert_string_equal(duration_format(604800, buf, sizeof(buf)), "1w");
    assert_string_equal(duration_format(90061, buf, sizeof(buf)), "1d1h1m1s");
}

static void format_round_trips(void **state)
{
    char buf[32];
    for (int64_t v = 1; v < 2000000; v = v * 3 + 7)
        assert_int_equal(parse(duration_format(v, buf, sizeof(buf))), v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_numbers_are_seconds),
        cmocka_unit_test(each_unit_scales),
        cmocka_unit_test(units_combine_in_decreasing_order),
        cmocka_unit_test(bad_input_is_rejected),
        cmocka_unit_test(overflow_is_a_range_error),
        cmocka_unit_test(format_is_shortest_exact),
        cmocka_unit_test(format_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
