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
    ratelimit_refund(rl, b, 0); /* truncated the same way */
    assert_int_equal(ratelimit_size(rl), 0);
    ratelimit_free(rl);
}

/* Count first, refund what passed: only the attempts that are not refunded use up the limit. */
static void test_refund(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new(2, 60000);
    assert_non_null(rl);
    int64_t retry = 0;
    for (int i = 0; i < 50; i++) { /* passing attempts never run out */
        assert_true(ratelimit_hit(rl, "ok", i, NULL));
        ratelimit_refund(rl, "ok", i);
    }
    assert_int_equal(ratelimit_size(rl), 0); /* a key refunded to zero is forgotten */
    /* Two failures use it up; a passing attempt is then denied like any other. */
    assert_true(ratelimit_hit(rl, "bad", 1000, NULL));
    assert_true(ratelimit_hit(rl, "bad", 2000, NULL));
    assert_false(ratelimit_hit(rl, "bad", 3000, &retry));
    assert_int_equal(retry, 58);
    /* A refund gives back one hit and keeps the window (and the other hit). */
    ratelimit_refund(rl, "bad", 3000);
    assert_int_equal(ratelimit_size(rl), 1);
    assert_true(ratelimit_hit(rl, "bad", 3000, NULL));
    assert_false(ratelimit_hit(rl, "bad", 3000, &retry));
    assert_int_equal(retry, 58);
    /* Refunds of unknown keys, or after the window ended, do nothing (no negative counts). */
    ratelimit_refund(rl, "never-seen", 3000);
    assert_int_equal(ratelimit_size(rl), 1);
    ratelimit_refund(rl, "bad", 61000);
    assert_int_equal(ratelimit_size(rl), 0);
    ratelimit_refund(rl, "bad", 61000);
    assert_true(ratelimit_hit(rl, "bad", 61000, NULL));
    assert_true(ratelimit_hit(rl, "bad", 61000, NULL));
    assert_false(ratelimit_hit(rl, "bad", 61000, NULL));
    ratelimit_free(rl);

    rl = ratelimit_new(0, 1000); /* unlimited: nothing tracked, refund is a no-op */
    assert_non_null(rl);
    assert_true(ratelimit_hit(rl, "k", 0, NULL));
    ratelimit_refund(rl, "k", 0);
    assert_int_equal(ratelimit_size(rl), 0);
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

/* Runs fn in 4 threads on rl; the hits they were allowed, in total. */
static int run_threads(struct ratelimit *rl, void *(*fn)(void *))
{
    struct hammer h[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        h[i] = (struct hammer){rl, 0};
        assert_int_equal(pthread_create(&th[i], NULL, fn, &h[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        total += h[i].allowed;
    }
    return total;
}

static void test_threads(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new(100, 1000);
    /* 4 keys × 100 allowed each, no more, no fewer */
    assert_int_equal(run_threads(rl, hammer_thread), 4 * 100);
    ratelimit_free(rl);
}

/* Threads that each hold at most one hit at a time and refund it: with max = number of threads,
 * none is ever denied, and the key is gone at the end. */
static void *refund_thread(void *arg)
{
    struct hammer *h = arg;
    for (int i = 0; i < 2000; i++) {
        if (ratelimit_hit(h->rl, "shared", 5, NULL)) {
            h->allowed++;
            ratelimit_refund(h->rl, "shared", 5);
        }
    }
    return NULL;
}

static void test_refund_threads(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new(4, 1000);
    assert_non_null(rl);
    assert_int_equal(run_threads(rl, refund_thread), 4 * 2000);
    assert_int_equal(ratelimit_size(rl), 0);
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
        cmocka_unit_test(test_refund),
        cmocka_unit_test(test_refund_threads),
    };
    return cmocka_run_group_tests_name("ratelimit", tests, NULL, NULL);
}
