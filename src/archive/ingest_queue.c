/*
 * ingest_queue — what passes between the threads of an ingest: bytes, through a bounded ring
 * with one writer and one reader, and errors (a message and its details, raised again on the
 * thread that reports them).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "archive/ingest_internal.h"
#include "util/err.h"

/* ---- bounded queues between threads ------------------------------------------------------ */

int queue_init(struct queue *q)
{
    memset(q, 0, sizeof(*q));
    q->ring = malloc(INGEST_QUEUE_BYTES);
    if (!q->ring)
        return -ENOMEM;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->can_read, NULL);
    pthread_cond_init(&q->can_write, NULL);
    return 0;
}

void queue_destroy(struct queue *q)
{
    if (!q->ring)
        return;
    free(q->ring);
    q->ring = NULL;
    pthread_cond_destroy(&q->can_read);
    pthread_cond_destroy(&q->can_write);
    pthread_mutex_destroy(&q->mu);
}

/* Releases what the previous call lent out, waits for data, and lends the next contiguous
 * piece of the ring: its length, 0 at the end of the data, -ECANCELED when aborted or, once the
 * data is drained, when the writer failed. */
ssize_t queue_take(struct queue *q, const void **ret_buf)
{
    pthread_mutex_lock(&q->mu);
    if (q->held) {
        q->rd += q->held;
        q->held = 0;
        pthread_cond_signal(&q->can_write);
    }
    while (q->wr == q->rd && !q->eof && !q->abort)
        pthread_cond_wait(&q->can_read, &q->mu);
    /* What the writer put before it failed is still handed out: the reader may not need more
     * (a tar ends before a damaged tail of its compressed stream). */
    if (q->abort || (q->failed && q->wr == q->rd)) {
        pthread_mutex_unlock(&q->mu);
        return -ECANCELED;
    }
    size_t avail = (size_t)(q->wr - q->rd);
    size_t pos = (size_t)(q->rd % INGEST_QUEUE_BYTES);
    size_t n = avail < INGEST_QUEUE_BYTES - pos ? avail : INGEST_QUEUE_BYTES - pos;
    q->held = n;
    pthread_mutex_unlock(&q->mu);
    *ret_buf = q->ring + pos;
    return (ssize_t)n;
}

/* Copies up to `want` first unread bytes without consuming them (fewer at the end of the data). */
int queue_peek(struct queue *q, uint8_t *out, size_t want, size_t *ret_n)
{
    pthread_mutex_lock(&q->mu);
    while (q->wr - q->rd < want && !q->eof && !q->abort)
        pthread_cond_wait(&q->can_read, &q->mu);
    if (q->abort || q->failed) {
        pthread_mutex_unlock(&q->mu);
        return -ECANCELED;
    }
    size_t n = (size_t)(q->wr - q->rd);
    if (n > want)
        n = want;
    for (size_t i = 0; i < n; i++)
        out[i] = q->ring[(q->rd + i) % INGEST_QUEUE_BYTES];
    pthread_mutex_unlock(&q->mu);
    *ret_n = n;
    return 0;
}

/* Copies len bytes in, waiting for room. Returns true when the reader has finished (the rest is
 * dropped). */
bool queue_put(struct queue *q, const void *data, size_t len)
{
    const uint8_t *p = data;
    pthread_mutex_lock(&q->mu);
    while (len > 0 && !q->done) {
        size_t used = (size_t)(q->wr - q->rd);
        if (used == INGEST_QUEUE_BYTES) {
            pthread_cond_wait(&q->can_write, &q->mu);
            continue;
        }
        size_t pos = (size_t)(q->wr % INGEST_QUEUE_BYTES);
        size_t n = INGEST_QUEUE_BYTES - used;
        if (n > INGEST_QUEUE_BYTES - pos)
            n = INGEST_QUEUE_BYTES - pos;
        if (n > len)
            n = len;
        /* The reader never touches [wr, wr + n): copying without the lock is safe. */
        pthread_mutex_unlock(&q->mu);
        memcpy(q->ring + pos, p, n);
        pthread_mutex_lock(&q->mu);
        q->wr += n;
        p += n;
        len -= n;
        pthread_cond_signal(&q->can_read);
    }
    bool done = q->done;
    pthread_mutex_unlock(&q->mu);
    return done;
}

/* The writer's end: no more data (failed: because of an error), or abort: the reader must stop
 * now. */
void queue_close(struct queue *q, bool failed, bool abort)
{
    pthread_mutex_lock(&q->mu);
    q->eof = true;
    q->failed = q->failed || failed;
    q->abort = q->abort || abort;
    pthread_cond_broadcast(&q->can_read);
    pthread_mutex_unlock(&q->mu);
}

/* The reader's end: the writer stops waiting for room. */
void queue_reader_done(struct queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->done = true;
    pthread_cond_broadcast(&q->can_write);
    pthread_mutex_unlock(&q->mu);
}

la_ssize_t queue_read_cb(struct archive *a, void *userdata, const void **ret_buf)
{
    ssize_t n = queue_take(userdata, ret_buf);
    if (n < 0) {
        archive_set_error(a, ECANCELED, "ingest aborted");
        return -1;
    }
    return (la_ssize_t)n;
}

/* ---- errors carried from one thread to another ------------------------------------------ */

/* Records rc with this thread's message and details. */
void saved_err_take(struct saved_err *se, int rc)
{
    se->rc = rc;
    if (rc >= 0)
        return;
    const char *m = err_message();
    se->msg = m ? strdup(m) : NULL;
    int cnt = err_detail_count();
    se->details = cnt ? calloc((size_t)cnt, sizeof(*se->details)) : NULL;
    for (int i = 0; se->details && i < cnt; i++)
        if ((se->details[i] = strdup(err_detail_at(i))))
            se->n_details++;
}

/* Raises the saved error on this thread; returns its rc. */
int saved_err_raise(const struct saved_err *se)
{
    if (se->rc < 0) {
        err_set(se->rc, "%s", se->msg ? se->msg : err_info(se->rc)->message);
        for (int i = 0; i < se->n_details; i++)
            err_detail("%s", se->details[i]);
    }
    return se->rc;
}

void saved_err_release(struct saved_err *se)
{
    for (int i = 0; i < se->n_details; i++)
        free(se->details[i]);
    free(se->details);
    free(se->msg);
    memset(se, 0, sizeof(*se));
}
