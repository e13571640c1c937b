#include "unit.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>

#include "auth/ratelimit.h"

static void test_window_and_retry_after(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new(5, 60000);
    assert_non_null(rl);
    int64_t t = 1000000, retry = 0;
    for (int i = 0; i < 5; i++)
        assert_true(ratelimit_hit(rl, "10.0.0.1", t + i * 1000, &retry));
    assert_false(ratelimit_hit(rl, "10.0.0.1", t + 5000, &retry));
    assert_int_equal(retry, 55); /* window opened at t, ends at t + 60 s */
    assert_false(ratelimit_hit(rl, "10.0.0.1", t + 59001, &retry));
    assert_int_equal(retry, 1);
    assert_false(ratelimit_hit(rl, "10.0.0.1", t + 59999, &retry));
    assert_int_equal(retry, 1);
    /* Other keys are independent. */
    assert_true(ratelimit_hit(rl, "10.0.0.2", t + 5000, NULL));
    /* Denied hits did not extend the window: it restarts exactly at t + 60 s. */
    assert_true(ratelimit_hit(rl, "10.0.0.1", t + 60000, &retry));
    for (int i = 1; i < 5; i++)
        assert_true(ratelimit_hit(rl, "10.0.0.1", t + 60000, NULL));
    assert_false(ratelimit_hit(rl, "10.0.0.1", t + 60000, &retry));
    assert_int_equal(retry, 60);
    ratelimit_free(rl);
}

static void test_unlimited_and_bad_args(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new(0, 1000);
    assert_non_null(rl);
    for (int i = 0; i < 100; i++)
        assert_true(ratelimit_hit(rl, "k", 1, NULL));
    assert_int_equal(ratelimit_size(rl), 0);
    ratelimit_free(rl);
    ratelimit_free(NULL);
    errno = 0;
    assert_null(ratelimit_new(-1, 1000));
    assert_int_equal(errno, EINVAL);
    assert_null(ratelimit_new(1, 0));
    assert_null(ratelimit_new_bounded(1, 10, 0));
}

static void test_eviction_bound(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new_bounded(1, 60000, 100);
    assert_non_null(rl);
    char key[32];
    int64_t retry;
    assert_true(ratelimit_hit(rl, "first", 0, NULL));
    assert_false(ratelimit_hit(rl, "first", 1, &retry));
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "192.0.2.%d", i);
        assert_true(ratelimit_hit(rl, key, 10 + i, NULL));
        assert_true(ratelimit_size(rl) <= 100);
    }
    assert_int_equal(ratelimit_size(rl), 100);
    /* The most recent keys are still limited; the oldest ("first") was evicted. */
    assert_false(ratelimit_hit(rl, "192.0.2.4999", 6000, &retry));
    assert_true(ratelimit_hit(rl, "first", 6000, NULL));
    ratelimit_free(rl);
}

static void test_expired_entries_dropped(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new(3, 1000);
    char key[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_true(ratelimit_hit(rl, key, 0, NULL));
    }
    assert_int_equal(ratelimit_size(rl), 1000);
    /* After the window every old entry is gone; only the new one remains. */
    assert_true(ratelimit_hit(rl, "late", 1000, NULL));
    assert_int_equal(ratelimit_size(rl), 1);
    ratelimit_free(rl);
}

static void test_default_cap(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new(5, 60000);
    char key[32];
    for (int i = 0; i < RATELIMIT_DEFAULT_MAX_KEYS + 500; i++) {
        snprintf(key, sizeof(key), "2001:db8::%x", i);
        (void)ratelimit_hit(rl, key, i / 100, NULL);
    }
    assert_int_equal(ratelimit_size(rl), RATELIMIT_DEFAULT_MAX_KEYS);
    ratelimit_free(rl);
}

static void test_key_truncation(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new(1, 1000);
    char a[RATELIMIT_KEY_MAX + 20], b[RATELIMIT_KEY_MAX + 20];
    memset(a, 'x', sizeof(a));
    memcpy(b, a, sizeof(b));
    a[sizeof(a) - 2] = 'a';
    b[sizeof(b) - 2] = 'b';
    a[sizeof(a) - 1] = b[sizeof(b) - 1] = '\0';
    assert_true(ratelimit_hit(rl, a, 0, NULL));
    assert_false(ratelimit_hit(rl, b, 0, NULL)); /* same first RATELIMIT_KEY_MAX bytes */
    assert_int_equal(ratelimit_size(rl), 1);
    ratelimit_free(rl);
}

struct hammer {
    struct ratelimit *rl;
    int allowed;
};

static void *hammer_thread(void *arg)
{
    struct hammer *h = arg;
    char key[16];
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "k%d", i % 4);
        if (ratelimit_hit(h->rl, key, 5, NULL))
            h->allowed++;
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new(100, 1000);
    struct hammer h[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        h[i] = (struct hammer){rl, 0};
        assert_int_equal(pthread_create(&th[i], NULL, hammer_thread, &h[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        total += h[i].allowed;
    }
    assert_int_equal(total, 4 * 100); /* 4 keys × 100 allowed each, no more, no fewer */
    ratelimit_free(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_and_retry_after),
        cmocka_unit_test(test_unlimited_and_bad_args),
        cmocka_unit_test(test_eviction_bound),
        cmocka_unit_test(test_expired_entries_dropped),
        cmocka_unit_test(test_default_cap),
        cmocka_unit_test(test_key_truncation),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests_name("ratelimit", tests, NULL, NULL);
}
