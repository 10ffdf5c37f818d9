#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loop.h"

struct record {
    char order[32];
    int n;
    struct loop_timer *victim;
};

static void mark(struct loop *l, void *data)
{
    struct record *r = data;
    r->order[r->n++] = 'x';
}

struct tagged {
    struct record *r;
    char tag;
    struct loop_timer t;
};

static void tag(struct loop *l, void *data)
{
    struct tagged *t = data;
    t->r->order[t->r->n++] = t->tag;
    if (t->tag == 'c')
        loop_stop(l);
}

static void timers_fire_in_due_order(void **state)
{
    struct loop *l = loop_new();
    struct record r = {0};
    struct tagged a = {&r, 'a'}, b = {&r, 'b'}, c = {&r, 'c'};
    loop_timer_init(&a.t, tag, &a);
    loop_timer_init(&b.t, tag, &b);
    loop_timer_init(&c.t, tag, &c);
    loop_timer_arm(l, &c.t, 30);
    loop_timer_arm(l, &a.t, 1);
    loop_timer_arm(l, &b.t, 10);
    assert_int_equal(loop_run(l), 0);
    assert_string_equal(r.order, "abc");
    loop_free(l);
}

static void cancelled_and_rearmed_timers_fire_once_at_the_new_time(void **state)
{
    struct loop *l = loop_new();
    struct record r = {0};
    struct tagged a = {&r, 'a'}, b = {&r, 'b'}, c = {&r, 'c'};
    loop_timer_init(&a.t, tag, &a);
    loop_timer_init(&b.t, tag, &b);
    loop_timer_init(&c.t, tag, &c);
    loop_timer_arm(l, &a.t, 5);
    loop_timer_arm(l, &b.t, 1);
    loop_timer_arm(l, &c.t, 40);
    loop_timer_cancel(l, &a.t);
    assert_false(loop_timer_armed(&a.t));
    loop_timer_arm(l, &b.t, 20); /* re-arm replaces */
    assert_int_equal(loop_run(l), 0);
    assert_string_equal(r.order, "bc");
    loop_free(l);
}

static void on_readable(struct loop *l, int fd, uint32_t events, void *data)
{
    struct record *r = data;
    char c;
    assert_int_equal(read(fd, &c, 1), 1);
    r->order[r->n++] = c;
}

static void stop_now(struct loop *l, void *data)
{
    loop_stop(l);
}

static void io_callbacks_and_turn_end_hooks_run(void **state)
{
    struct loop *l = loop_new();
    struct record r = {0}, hooks = {0};
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct loop_io io;
    assert_int_equal(loop_io_add(l, &io, p[0], EPOLLIN, on_readable, &r), 0);
    assert_int_equal(loop_turn_end_add(l, mark, &hooks), 0);
    struct loop_timer stop;
    loop_timer_init(&stop, stop_now, NULL);
    loop_timer_arm(l, &stop, 20);
    assert_int_equal(write(p[1], "q", 1), 1);
    assert_int_equal(loop_turn(l), 0);
    assert_int_equal(loop_run(l), 0);
    assert_string_equal(r.order, "q");
    assert_true(hooks.n >= 1);
    /* The hooks run once a turn, and loop_turn() numbers the turns. */
    assert_int_equal(loop_turn(l), hooks.n);
    loop_io_del(l, &io);
    close(p[0]);
    close(p[1]);
    loop_free(l);
}

struct pair {
    struct loop_io io[2];
    int fds[2][2];
    int calls;
};

static void drop_other(struct loop *l, int fd, uint32_t events, void *data)
{
    struct pair *p = data;
    p->calls++;
    /* whichever runs first removes both handles: the second must not be dispatched */
    loop_io_del(l, &p->io[0]);
    loop_io_del(l, &p->io[1]);
    loop_stop(l);
}

static void a_handle_removed_earlier_in_the_batch_is_not_dispatched(void **state)
{
    struct loop *l = loop_new();
    struct pair *p = calloc(1, sizeof(*p));
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pipe(p->fds[i]), 0);
        assert_int_equal(write(p->fds[i][1], "z", 1), 1);
        assert_int_equal(loop_io_add(l, &p->io[i], p->fds[i][0], EPOLLIN, drop_other, p), 0);
    }
    assert_int_equal(loop_run(l), 0);
    assert_int_equal(p->calls, 1);
    for (int i = 0; i < 2; i++) {
        close(p->fds[i][0]);
        close(p->fds[i][1]);
    }
    free(p);
    loop_free(l);
}

static void on_usr1(struct loop *l, void *data)
{
    *(int *)data += 1;
    loop_stop(l);
}

static void signals_arrive_through_the_loop(void **state)
{
    struct loop *l = loop_new();
    int got = 0;
    assert_int_equal(loop_signal_add(l, SIGUSR1, on_usr1, &got), 0);
    raise(SIGUSR1);
    assert_int_equal(loop_run(l), 0);
    assert_int_equal(got, 1);
    loop_free(l);
}

struct ordered {
    uint64_t last_due;
    int fired;
    bool in_order;
};

struct ordered_timer {
    struct loop_timer t;
    struct ordered *o;
};

static void check_order(struct loop *l, void *data)
{
    struct ordered_timer *ot = data;
    if (ot->t.due_ms < ot->o->last_due)
        ot->o->in_order = false;
    ot->o->last_due = ot->t.due_ms;
    ot->o->fired++;
}

static void many_timers_fire_in_order_and_cancelled_ones_never(void **state)
{
    enum { N = 300 };
    struct loop *l = loop_new();
    struct ordered o = {.in_order = true};
    struct ordered_timer *t = calloc(N, sizeof(*t));
    for (int i = 0; i < N; i++) {
        t[i].o = &o;
        loop_timer_init(&t[i].t, check_order, &t[i]);
        loop_timer_arm(l, &t[i].t, (uint64_t)((i * 7919) % 50));
    }
    int cancelled = 0;
    for (int i = 0; i < N; i += 3, cancelled++)
        loop_timer_cancel(l, &t[i].t);
    struct loop_timer stop;
    loop_timer_init(&stop, stop_now, NULL);
    loop_timer_arm(l, &stop, 120);
    assert_int_equal(loop_run(l), 0);
    assert_int_equal(o.fired, N - cancelled);
    assert_true(o.in_order);
    free(t);
    loop_free(l);
}

struct spinner {
    struct loop_timer t;
    int turns, slow_turn;
    uint64_t spin_ms;
};

static void spin_turn(struct loop *l, void *data)
{
    struct spinner *sp = data;
    if (++sp->turns == sp->slow_turn) {
        uint64_t until = loop_clock_mono_ms() + sp->spin_ms;
        while (loop_clock_mono_ms() < until)
            ;
    }
    if (sp->turns == 200)
        loop_stop(l);
    else
        loop_timer_arm(l, &sp->t, 0);
}

static void turn_durations_are_measured_with_the_longest_and_the_99th_percentile(void **state)
{
    struct loop *l = loop_new();
    struct loop_turn_stats st;
    loop_turn_stats(l, 60000, &st);
    assert_int_equal(st.turns, 0);
    assert_int_equal(st.window_turns, 0);
    assert_int_equal(loop_turn(l), 0);
    struct spinner sp = {.slow_turn = 100, .spin_ms = 20};
    loop_timer_init(&sp.t, spin_turn, &sp);
    loop_timer_arm(l, &sp.t, 0);
    assert_int_equal(loop_run(l), 0);
    loop_turn_stats(l, 60000, &st);
    /* Every timer turn and the one that spun, however slow the machine is. */
    assert_true(st.turns >= 200);
    assert_int_equal(loop_turn(l), st.turns);
    assert_true(st.max_us >= 19000); /* (the spin counts whole milliseconds) */
    assert_true(st.window_max_us >= 19000);
    assert_true(st.window_turns >= 200 && st.window_turns <= st.turns);
    assert_true(st.window_p99_us <= st.window_max_us);
    assert_true(st.window_ms <= 60000);
    loop_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(timers_fire_in_due_order),
        cmocka_unit_test(cancelled_and_rearmed_timers_fire_once_at_the_new_time),
        cmocka_unit_test(io_callbacks_and_turn_end_hooks_run),
        cmocka_unit_test(a_handle_removed_earlier_in_the_batch_is_not_dispatched),
        cmocka_unit_test(signals_arrive_through_the_loop),
        cmocka_unit_test(many_timers_fire_in_order_and_cancelled_ones_never),
        cmocka_unit_test(turn_durations_are_measured_with_the_longest_and_the_99th_percentile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
