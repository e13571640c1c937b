#include "unit.h"

#include <pthread.h>

#include "util/budget.h"

static void test_partial_takes(void **state)
{
    (void)state;
    struct budget b = BUDGET_INIT(100);
    assert_false(budget_spent(&b));
    assert_int_equal(budget_take(&b, 60), 60);
    assert_int_equal(budget_take(&b, 60), 40); /* what is left */
    assert_true(budget_spent(&b));
    assert_int_equal(budget_take(&b, 1), 0);
    assert_int_equal(budget_used(&b), 100);
    budget_give(&b, 30);
    assert_false(budget_spent(&b));
    assert_int_equal(budget_take(&b, 0), 0);
    assert_int_equal(budget_take(&b, SIZE_MAX), 30);
    budget_give(&b, 100);
    assert_int_equal(budget_used(&b), 0);
}

static void test_no_limit_takes_nothing(void **state)
{
    (void)state;
    struct budget b = BUDGET_INIT(0);
    assert_true(budget_spent(&b));
    assert_int_equal(budget_take(&b, 1), 0);
    budget_give(&b, 0);
    assert_int_equal(budget_used(&b), 0);
}

#define THREADS 4
#define ROUNDS 20000

static struct budget shared = BUDGET_INIT(1000);

/* Takes 7 at a time, checks the bound, gives back. */
static void *churn(void *arg)
{
    size_t *most = arg;
    for (int i = 0; i < ROUNDS; i++) {
        size_t got = budget_take(&shared, 7);
        int64_t used = budget_used(&shared);
        if (used > shared.limit)
            *most = (size_t)used;
        budget_give(&shared, got);
    }
    return NULL;
}

static void test_threads_never_pass_the_limit(void **state)
{
    (void)state;
    pthread_t th[THREADS];
    size_t over[THREADS] = {0};
    assert_int_equal(budget_take(&shared, 990), 990); /* 10 left for 4 threads asking 7 */
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, churn, &over[i]), 0);
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(over[i], 0);
    }
    assert_int_equal(budget_used(&shared), 990);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_partial_takes),
        cmocka_unit_test(test_no_limit_takes_nothing),
        cmocka_unit_test(test_threads_never_pass_the_limit),
    };
    return cmocka_run_group_tests_name("budget", tests, NULL, NULL);
}
