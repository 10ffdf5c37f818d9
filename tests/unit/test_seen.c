/* seen: the identities of the events a live source delivered lately. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "seen.h"

static struct sec_event event(int64_t tv, uint16_t port, const char *session)
{
    struct sec_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = SEC_CHALLENGE_RESPONSE_FAILED;
    ev.remote.addr.family = AF_INET;
    ev.remote.addr.bytes[0] = 192;
    ev.remote.addr.bytes[1] = 0;
    ev.remote.addr.bytes[2] = 2;
    ev.remote.addr.bytes[3] = 7;
    ev.remote.port = port;
    ev.remote.transport = SEC_TRANSPORT_UDP;
    ev.event_tv_ms = tv;
    snprintf(ev.session, sizeof(ev.session), "%s", session);
    return ev;
}

/* The same identity is found; any field of it that differs is another event. */
static void an_identity_is_found_and_nothing_else(void **state)
{
    (void)state;
    struct seen *s = seen_new(1000);
    assert_non_null(s);
    struct sec_event ev = event(5000, 5060, "call-1@x");
    assert_false(seen_has(s, &ev));
    seen_add(s, &ev, 1000);
    assert_true(seen_has(s, &ev));
    struct sec_event other = event(5000, 5061, "call-1@x");
    assert_false(seen_has(s, &other));
    other = event(5000, 5060, "call-2@x");
    assert_false(seen_has(s, &other));
    other = ev;
    other.type = SEC_CHALLENGE_SENT;
    assert_false(seen_has(s, &other));
    /* No EventTV, no identity: never added, never found. */
    other = event(0, 5060, "call-1@x");
    seen_add(s, &other, 1000);
    assert_false(seen_has(s, &other));
    seen_free(s);
}

/* Outside the EventTV range of what was added (the past a backfill reads, most of all), the
 * answer needs no look-up; within it, the look-up still decides. */
static void outside_the_range_added_nothing_is_seen(void **state)
{
    (void)state;
    struct seen *s = seen_new(1000);
    struct sec_event a = event(10000, 5060, "a"), b = event(20000, 5060, "b");
    seen_add(s, &a, 1000);
    seen_add(s, &b, 1000);
    struct sec_event before = event(9999, 5060, "a"), after = event(20001, 5060, "b");
    assert_false(seen_has(s, &before));
    assert_false(seen_has(s, &after));
    struct sec_event inside = event(15000, 5060, "c");
    assert_false(seen_has(s, &inside));
    assert_true(seen_has(s, &a));
    assert_true(seen_has(s, &b));
    seen_free(s);
}

/* Bounded: past two generations the oldest identities are forgotten, and the time from which
 * everything is remembered moves on. */
static void the_oldest_generation_is_forgotten(void **state)
{
    (void)state;
    struct seen *s = seen_new(1000);
    struct sec_event first = event(100000, 1, "first");
    seen_add(s, &first, 1000);
    assert_int_equal(seen_complete_since(s), 1000);
    for (unsigned i = 0; i < 2 * SEEN_CAP; i++) {
        struct sec_event ev = event(200000 + i, (uint16_t)(i % 60000 + 2), "fill");
        seen_add(s, &ev, 2000 + i);
    }
    assert_false(seen_has(s, &first));
    assert_true(seen_complete_since(s) > 1000);
    struct sec_event last =
        event(200000 + 2 * SEEN_CAP - 1, (uint16_t)((2 * SEEN_CAP - 1) % 60000 + 2), "fill");
    assert_true(seen_has(s, &last));
    seen_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(an_identity_is_found_and_nothing_else),
        cmocka_unit_test(outside_the_range_added_nothing_is_seen),
        cmocka_unit_test(the_oldest_generation_is_forgotten),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
