#include "unit.h"

#include <pthread.h>

#include "util/histogram.h"

static const int64_t bounds[] = {1000, 5000, 10000};

/* An observation lands in the first bucket whose bound is at or above it; the view is
 * cumulative, with the count in the +Inf bucket and the sum of everything. */
static void test_buckets(void **state)
{
    (void)state;
    struct histogram h;
    histogram_init(&h, bounds, 3);
    struct histogram_view v;
    histogram_read(&h, &v);
    assert_int_equal(v.nbounds, 3);
    assert_int_equal(v.count, 0);
    assert_int_equal(v.cumulative[3], 0);
    histogram_observe(&h, 0);
    histogram_observe(&h, 1000);  /* on the bound: le="1000" counts it */
    histogram_observe(&h, 1001);  /* the next bucket */
    histogram_observe(&h, 10000); /* the last bound */
    histogram_observe(&h, 10001); /* +Inf only */
    histogram_observe(&h, -5);    /* a clock step backwards counts as 0 */
    histogram_read(&h, &v);
    assert_int_equal(v.cumulative[0], 3);
    assert_int_equal(v.cumulative[1], 4);
    assert_int_equal(v.cumulative[2], 5);
    assert_int_equal(v.cumulative[3], 6);
    assert_int_equal(v.count, 6);
    assert_int_equal(v.sum_ns, 1000 + 1001 + 10000 + 10001);
}

#define THREADS 4
#define ROUNDS 50000

static struct histogram shared;

static void *observer(void *arg)
{
    (void)arg;
    for (int i = 0; i < ROUNDS; i++)
        histogram_observe(&shared, (int64_t)(i % 4) * 3000);
    return NULL;
}

/* Concurrent observations are all counted, and a read made meanwhile is consistent with
 * itself (cumulative, its count equal to its +Inf bucket). */
static void test_concurrent(void **state)
{
    (void)state;
    histogram_init(&shared, bounds, 3);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, observer, NULL), 0);
    for (int k = 0; k < 100; k++) {
        struct histogram_view v;
        histogram_read(&shared, &v);
        for (size_t i = 1; i <= v.nbounds; i++)
            assert_true(v.cumulative[i - 1] <= v.cumulative[i]);
        assert_int_equal(v.count, v.cumulative[v.nbounds]);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    struct histogram_view v;
    histogram_read(&shared, &v);
    assert_int_equal(v.count, THREADS * ROUNDS);
    /* values 0, 3000, 6000, 9000 in turn: 0 → le 1000, 3000 → le 5000, the rest le 10000 */
    assert_int_equal(v.cumulative[0], THREADS * ROUNDS / 4);
    assert_int_equal(v.cumulative[1], THREADS * ROUNDS / 2);
    assert_int_equal(v.cumulative[2], THREADS * ROUNDS);
    assert_int_equal(v.sum_ns, (int64_t)THREADS * (ROUNDS / 4) * 18000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets),
        cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests_name("histogram", tests, NULL, NULL);
}
