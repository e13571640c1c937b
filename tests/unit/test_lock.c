/* The per-sandbox readers-writer locks (sandbox/lock.h): writers exclusive, readers shared,
 * sandboxes independent, waiting writers holding back new readers, timeouts, and entries that
 * live only while someone holds or waits. */
#include "unit.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "sandbox/lock.h"
#include "util/err.h"
#include "util/timeutil.h"

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int setup(void **state)
{
    struct locks *l = NULL;
    assert_int_equal(locks_new(NULL, &l), 0);
    *state = l;
    return 0;
}

static int teardown(void **state)
{
    struct locks *l = *state;
    assert_int_equal(locks_active(l), 0);
    locks_free(l);
    return 0;
}

/* Takes `mode` on `id` without waiting: the return code (0 or -ERR_LOCK_TIMEOUT), the lock
 * released again when it was taken. */
static int try_take(struct locks *l, const char *id, enum lock_mode mode)
{
    struct lock_ref *ref = NULL;
    int r = locks_acquire(l, id, mode, 0, &ref);
    if (r == 0)
        locks_release(ref);
    return r;
}

/* One acquire on its own thread. */
struct taker {
    struct locks *l;
    const char *id;
    enum lock_mode mode;
    int64_t timeout_ms;
    struct lock_ref *ref;
    int rc;
    int64_t took_ms; /* how long the acquire took */
    atomic_bool done;
    pthread_t th;
};

static void *taker_main(void *arg)
{
    struct taker *t = arg;
    int64_t start = time_mono_ms();
    t->rc = locks_acquire(t->l, t->id, t->mode, t->timeout_ms, &t->ref);
    t->took_ms = time_mono_ms() - start;
    atomic_store(&t->done, true);
    return NULL;
}

static void taker_start(struct taker *t, struct locks *l, const char *id, enum lock_mode mode,
                        int64_t timeout_ms)
{
    *t = (struct taker){.l = l, .id = id, .mode = mode, .timeout_ms = timeout_ms};
    assert_int_equal(pthread_create(&t->th, NULL, taker_main, t), 0);
}

static void taker_join(struct taker *t)
{
    assert_int_equal(pthread_join(t->th, NULL), 0);
}

/* Returns once a writer waits on `id` (at most 5 s): a new reader is then held back. */
static void wait_writer_waiting(struct locks *l, const char *id)
{
    for (int i = 0; i < 5000 && try_take(l, id, LOCK_SHARED) == 0; i++)
        sleep_ms(1);
    assert_int_equal(try_take(l, id, LOCK_SHARED), -ERR_LOCK_TIMEOUT);
}

static void test_readers_share(void **state)
{
    struct locks *l = *state;
    struct lock_ref *a = NULL, *b = NULL;
    assert_int_equal(locks_acquire(l, "s1", LOCK_SHARED, 0, &a), 0);
    assert_int_equal(locks_acquire(l, "s1", LOCK_SHARED, 0, &b), 0);
    assert_int_equal(locks_active(l), 1);
    assert_int_equal(try_take(l, "s1", LOCK_EXCLUSIVE), -ERR_LOCK_TIMEOUT);
    locks_release(a);
    assert_int_equal(try_take(l, "s1", LOCK_EXCLUSIVE), -ERR_LOCK_TIMEOUT);
    locks_release(b);
    assert_int_equal(try_take(l, "s1", LOCK_EXCLUSIVE), 0);
}

static void test_writer_exclusive(void **state)
{
    struct locks *l = *state;
    struct lock_ref *w = NULL;
    assert_int_equal(locks_acquire(l, "s1", LOCK_EXCLUSIVE, 0, &w), 0);
    assert_int_equal(try_take(l, "s1", LOCK_EXCLUSIVE), -ERR_LOCK_TIMEOUT);
    assert_int_equal(try_take(l, "s1", LOCK_SHARED), -ERR_LOCK_TIMEOUT);
    /* another sandbox never waits for this one */
    assert_int_equal(try_take(l, "s2", LOCK_EXCLUSIVE), 0);
    assert_int_equal(try_take(l, "s2", LOCK_SHARED), 0);
    assert_int_equal(locks_active(l), 1);
    locks_release(w);
    assert_int_equal(try_take(l, "s1", LOCK_SHARED), 0);
    locks_release(NULL); /* NULL-safe */
}

/* A timed-out acquire waits about its timeout, says so, and leaves nothing behind. */
static void test_timeout(void **state)
{
    struct locks *l = *state;
    struct lock_ref *w = NULL;
    assert_int_equal(locks_acquire(l, "s1", LOCK_EXCLUSIVE, -1, &w), 0);
    err_clear();
    int64_t start = time_mono_ms();
    struct lock_ref *other = NULL;
    assert_int_equal(locks_acquire(l, "s1", LOCK_SHARED, 120, &other), -ERR_LOCK_TIMEOUT);
    int64_t waited = time_mono_ms() - start;
    assert_true(waited >= 110);
    assert_true(waited < 5000);
    assert_null(other);
    assert_non_null(err_message());
    assert_non_null(strstr(err_message(), "timed out after 120 ms"));
    assert_int_equal(locks_active(l), 1);
    locks_release(w);
    assert_int_equal(locks_active(l), 0);
    /* the same for a writer and for a sandbox with no entry of its own yet */
    struct lock_ref *r = NULL;
    assert_int_equal(locks_acquire(l, "s3", LOCK_SHARED, 0, &r), 0);
    assert_int_equal(locks_acquire(l, "s3", LOCK_EXCLUSIVE, 30, &other), -ERR_LOCK_TIMEOUT);
    assert_int_equal(locks_active(l), 1);
    locks_release(r);
}

/* A waiting writer gets the lock when the last reader leaves. */
static void test_writer_waits_for_readers(void **state)
{
    struct locks *l = *state;
    struct lock_ref *r1 = NULL, *r2 = NULL;
    assert_int_equal(locks_acquire(l, "s1", LOCK_SHARED, 0, &r1), 0);
    assert_int_equal(locks_acquire(l, "s1", LOCK_SHARED, 0, &r2), 0);
    struct taker w;
    taker_start(&w, l, "s1", LOCK_EXCLUSIVE, -1);
    wait_writer_waiting(l, "s1");
    locks_release(r1);
    sleep_ms(20);
    assert_false(atomic_load(&w.done));
    locks_release(r2);
    taker_join(&w);
    assert_int_equal(w.rc, 0);
    assert_int_equal(try_take(l, "s1", LOCK_SHARED), -ERR_LOCK_TIMEOUT);
    locks_release(w.ref);
}

/* Readers that come while a writer waits queue behind it, so a stream of readers cannot starve
 * the writer; they get the lock once the writer is done. */
static void test_waiting_writer_holds_back_readers(void **state)
{
    struct locks *l = *state;
    struct lock_ref *r1 = NULL;
    assert_int_equal(locks_acquire(l, "s1", LOCK_SHARED, 0, &r1), 0);
    struct taker w, r2;
    taker_start(&w, l, "s1", LOCK_EXCLUSIVE, -1);
    wait_writer_waiting(l, "s1");
    taker_start(&r2, l, "s1", LOCK_SHARED, -1);
    sleep_ms(20);
    assert_false(atomic_load(&r2.done)); /* a reader already holds it, yet r2 waits */
    locks_release(r1);
    taker_join(&w);
    assert_int_equal(w.rc, 0);
    sleep_ms(20);
    assert_false(atomic_load(&r2.done));
    locks_release(w.ref);
    taker_join(&r2);
    assert_int_equal(r2.rc, 0);
    locks_release(r2.ref);
}

/* A writer that gives up lets the readers it held back in at once, beside the reader that still
 * holds the lock (not only when that one leaves or their own timeout ends). */
static void test_writer_timeout_releases_readers(void **state)
{
    struct locks *l = *state;
    struct lock_ref *r1 = NULL;
    assert_int_equal(locks_acquire(l, "s1", LOCK_SHARED, 0, &r1), 0);
    struct taker w, r2;
    taker_start(&w, l, "s1", LOCK_EXCLUSIVE, 500);
    wait_writer_waiting(l, "s1");
    taker_start(&r2, l, "s1", LOCK_SHARED, 10000);
    sleep_ms(50);
    assert_false(atomic_load(&r2.done)); /* held back by the waiting writer */
    taker_join(&w);
    assert_int_equal(w.rc, -ERR_LOCK_TIMEOUT);
    taker_join(&r2);
    assert_int_equal(r2.rc, 0);
    assert_true(r2.took_ms < 5000);
    locks_release(r2.ref);
    locks_release(r1);
}

/* A lock taken on one thread may be released on another (a streamed reply ends on a
 * callback). */
static void *release_main(void *arg)
{
    locks_release(arg);
    return NULL;
}

static void test_release_on_other_thread(void **state)
{
    struct locks *l = *state;
    struct lock_ref *w = NULL;
    assert_int_equal(locks_acquire(l, "s1", LOCK_EXCLUSIVE, 0, &w), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, release_main, w), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(locks_active(l), 0);
    assert_int_equal(try_take(l, "s1", LOCK_EXCLUSIVE), 0);
}

/* Many threads on a few sandboxes: never a writer beside anyone else on its sandbox. */
#define HAMMER_THREADS 6
#define HAMMER_ROUNDS 400

struct hammer {
    struct locks *l;
    int seed;
    atomic_int *readers; /* per sandbox: shared holders inside */
    atomic_int *writers; /* per sandbox: exclusive holders inside */
    atomic_int violations;
    int failures;
};

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    static const char *const ids[] = {"h0", "h1", "h2"};
    unsigned s = (unsigned)h->seed;
    for (int i = 0; i < HAMMER_ROUNDS; i++) {
        s = s * 1103515245u + 12345u;
        int sb = (int)((s >> 8) % 3);
        bool excl = (s >> 16) % 4 == 0;
        struct lock_ref *ref = NULL;
        if (locks_acquire(h->l, ids[sb], excl ? LOCK_EXCLUSIVE : LOCK_SHARED, -1, &ref) < 0) {
            h->failures++;
            continue;
        }
        if (excl) {
            if (atomic_fetch_add(&h->writers[sb], 1) != 0 || atomic_load(&h->readers[sb]) != 0)
                atomic_fetch_add(&h->violations, 1);
            atomic_fetch_sub(&h->writers[sb], 1);
        } else {
            atomic_fetch_add(&h->readers[sb], 1);
            if (atomic_load(&h->writers[sb]) != 0)
                atomic_fetch_add(&h->violations, 1);
            atomic_fetch_sub(&h->readers[sb], 1);
        }
        locks_release(ref);
    }
    return NULL;
}

static void test_concurrent_exclusion(void **state)
{
    struct locks *l = *state;
    atomic_int readers[3] = {0}, writers[3] = {0};
    struct hammer h[HAMMER_THREADS];
    pthread_t th[HAMMER_THREADS];
    for (int i = 0; i < HAMMER_THREADS; i++) {
        h[i] = (struct hammer){.l = l, .seed = i + 1, .readers = readers, .writers = writers};
        assert_int_equal(pthread_create(&th[i], NULL, hammer_main, &h[i]), 0);
    }
    for (int i = 0; i < HAMMER_THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(atomic_load(&h[i].violations), 0);
        assert_int_equal(h[i].failures, 0);
    }
    assert_int_equal(locks_active(l), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_readers_share, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_exclusive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_waits_for_readers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waiting_writer_holds_back_readers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_timeout_releases_readers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_on_other_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_exclusion, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
