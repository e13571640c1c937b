/*
 * Content batches, the engine-independent part (store/batch.c), against a fake engine that
 * checks each writer's tail when it records it: full sets recorded on the batch's thread while
 * the next set fills (its tails untouched meanwhile), one recording at a time, the explicit
 * flush on the caller's thread, and a failure of the background recording reported by the next
 * call with its code and message, every writer then dropped.
 */
#include "unit.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "store/engine.h"
#include "util/err.h"

struct content_writer {
    struct writer_head h; /* must stay first (engine.h) */
    int index;            /* which content: its bytes are text_of(index) */
};

struct content_batch {
    struct batch_core core; /* must stay first (engine.h) */
    int fail_call;          /* the record call (1-based) that fails; 0: none */
    int fail_code;
    int calls;           /* record calls so far */
    atomic_int inside;   /* record calls running now */
    int bad_tails;       /* writers whose tail did not hold their bytes */
    size_t recorded;     /* writers recorded */
    pthread_t caller;    /* the thread using the batch */
    int calls_elsewhere; /* record calls that ran on another thread */
    atomic_int freed;    /* writers freed (recorded, or empty), on either thread */
    atomic_int aborted;  /* writers aborted, on either thread */
};

static struct content_batch *current; /* the batch the writers belong to */

/* Content i: a size that varies (some empty, some past STORE_INLINE_MAX, none a whole chunk)
 * and bytes that tell contents apart. */
static size_t text_of(int i, uint8_t *buf, size_t cap)
{
    size_t len = (size_t)(i * 37) % (3 * STORE_INLINE_MAX);
    if (i % 97 == 0)
        len = 0;
    assert_true(len <= cap);
    for (size_t k = 0; k < len; k++)
        buf[k] = (uint8_t)(i * 131 + k * 7);
    return len;
}

static int no_chunk(void *ctx, const uint8_t hash[32], const void *data, size_t len)
{
    (void)ctx;
    (void)hash;
    (void)data;
    (void)len;
    fail_msg("no content here fills a chunk");
    return -EIO;
}

static int fake_record(struct content_batch *b, struct content_writer *const *v, size_t n)
{
    assert_int_equal(atomic_fetch_add(&b->inside, 1), 0);
    b->calls++;
    if (!pthread_equal(pthread_self(), b->caller))
        b->calls_elsewhere++;
    static uint8_t want[3 * STORE_INLINE_MAX];
    for (size_t i = 0; i < n; i++) {
        const struct writer_head *h = &v[i]->h;
        size_t len = text_of(v[i]->index, want, sizeof(want));
        if (h->ck.size != (int64_t)len || h->ck.len != len || memcmp(h->tail, want, len) != 0)
            b->bad_tails++;
    }
    int r = 0;
    if (b->calls == b->fail_call)
        r = err_set(b->fail_code, "the fake store is full");
    else
        b->recorded += n;
    atomic_fetch_sub(&b->inside, 1);
    return r;
}

static void writer_release(struct content_writer *w)
{
    chunker_release(&w->h.ck);
    free(w);
}

static void fake_abort(struct content_writer *w)
{
    atomic_fetch_add(&current->aborted, 1);
    writer_release(w);
}

static void fake_free_writer(struct content_writer *w)
{
    atomic_fetch_add(&current->freed, 1);
    writer_release(w);
}

static const struct batch_engine fake = {
    .record = fake_record,
    .abort = fake_abort,
    .free_writer = fake_free_writer,
};

static struct content_batch *batch_open(int fail_call, int fail_code)
{
    struct content_batch *b = calloc(1, sizeof(*b));
    assert_non_null(b);
    b->fail_call = fail_call;
    b->fail_code = fail_code;
    b->caller = pthread_self();
    struct content_batch *ret;
    assert_int_equal(batch_new(b, &fake, &ret), 0);
    current = ret;
    return ret;
}

/* Writes content i and finishes it into b: what batch_finish_in returned. */
static int finish_one(struct content_batch *b, int i)
{
    struct content_writer *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    w->index = i;
    assert_int_equal(chunker_init(&w->h.ck), 0);
    static uint8_t buf[3 * STORE_INLINE_MAX];
    size_t len = text_of(i, buf, sizeof(buf));
    assert_int_equal(chunker_write(&w->h.ck, buf, len, no_chunk, NULL), 0);
    uint8_t id[CONTENT_ID_LEN];
    int64_t size = -1;
    int r = batch_finish_in(b, w, id, &size);
    if (r >= 0)
        assert_int_equal(size, (int64_t)len);
    return r;
}

static int empty_contents(int n)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        k += i % 97 == 0;
    return k;
}

static void test_sets_recorded_in_the_background(void **state)
{
    (void)state;
    enum { N = 3 * BATCH_MAX_WRITERS + 500 };
    struct content_batch *b = batch_open(0, 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(finish_one(b, i), 0);
    assert_int_equal(batch_flush(b), 0);
    assert_int_equal(batch_flush(b), 0); /* nothing left: no call */
    int stored = N - empty_contents(N);
    assert_int_equal(b->recorded, stored);
    assert_int_equal(b->bad_tails, 0);
    assert_true(b->calls >= 4);
    assert_int_equal(b->calls_elsewhere, b->calls - 1); /* all but the explicit flush */
    int freed = b->freed, aborted = b->aborted;
    batch_free(b);
    assert_int_equal(freed, N); /* empty contents are freed at once */
    assert_int_equal(aborted, 0);
}

static void test_background_failure_reported(void **state)
{
    (void)state;
    struct content_batch *b = batch_open(1, -ENOSPC);
    int i = 0, r = 0;
    while ((r = finish_one(b, i)) == 0) {
        i++;
        assert_true(i < 10 * BATCH_MAX_WRITERS);
    }
    /* the failure of the first set, seen when the second one is full */
    assert_int_equal(r, -ENOSPC);
    assert_string_equal(err_message(), "the fake store is full");
    assert_int_equal(b->recorded, 0);
    assert_int_equal(b->freed + b->aborted, i + 1); /* every writer so far is gone */
    assert_int_equal(b->calls, 1);
    assert_int_equal(finish_one(b, i + 1), -EIO);
    assert_int_equal(batch_flush(b), -EIO);
    int gone = b->freed + b->aborted;
    batch_free(b);
    assert_int_equal(gone, i + 2);
}

static void test_flush_failure(void **state)
{
    (void)state;
    struct content_batch *b = batch_open(1, -EIO);
    for (int i = 1; i <= 10; i++)
        assert_int_equal(finish_one(b, i), 0);
    assert_int_equal(batch_flush(b), -EIO);
    assert_int_equal(b->aborted, 10);
    assert_int_equal(finish_one(b, 11), -EIO);
    assert_int_equal(b->aborted, 11);
    batch_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sets_recorded_in_the_background),
        cmocka_unit_test(test_background_failure_reported),
        cmocka_unit_test(test_flush_failure),
    };
    return cmocka_run_group_tests_name("batch", tests, NULL, NULL);
}
