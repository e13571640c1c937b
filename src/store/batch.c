/*
 * batch.c — the engine-independent part of content batches (engine.h): sealed writers kept with
 * their tails in an arena until they are recorded, a full set on a thread of the batch while
 * the other set fills.
 */
#include "store/engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/array.h"
#include "util/err.h"

#define SET_ARENA_BYTES (BATCH_ARENA_BYTES / 2)
_Static_assert(SET_ARENA_BYTES >= STORE_CHUNK_SIZE, "a tail chunk fits a set's arena");

int batch_new(void *batch, const struct batch_engine *e, struct content_batch **ret)
{
    struct batch_core *b = batch;
    *b = (struct batch_core){.e = e};
    b->sets[0].arena = malloc(BATCH_ARENA_BYTES);
    if (!b->sets[0].arena) {
        free(batch);
        return -ENOMEM;
    }
    b->sets[1].arena = b->sets[0].arena + SET_ARENA_BYTES;
    b->cur = &b->sets[0];
    *ret = batch;
    return 0;
}

/* Aborts the writers of a set. */
static void set_drop(const struct batch_core *b, struct batch_set *set)
{
    for (size_t i = 0; i < set->n; i++)
        b->e->abort(set->v[i]);
    set->n = 0;
    set->used = 0;
}

/* Records a set and frees its writers, or on failure aborts them: the set is empty after. */
static int set_record(struct batch_core *b, struct batch_set *set)
{
    int r = b->e->record((struct content_batch *)b, set->v, set->n);
    if (r < 0) {
        set_drop(b, set);
        return r;
    }
    for (size_t i = 0; i < set->n; i++)
        b->e->free_writer(set->v[i]);
    set->n = 0;
    set->used = 0;
    return 0;
}

/* The batch's thread: records `flying`, keeping the result and its message for the caller's
 * thread (messages are per thread). */
static void *flying_main(void *arg)
{
    struct batch_core *b = arg;
    err_clear();
    b->flying_r = set_record(b, b->flying);
    const char *m = b->flying_r < 0 ? err_message() : NULL;
    snprintf(b->flying_msg, sizeof(b->flying_msg), "%s", m ? m : "");
    return NULL;
}

/* Waits for the set being recorded, if any. Its failure fails the batch: the set filling is
 * dropped too, and the failure is returned with its message. */
static int flying_wait(struct batch_core *b)
{
    if (!b->flying)
        return 0;
    pthread_join(b->thread, NULL);
    b->flying = NULL;
    if (b->flying_r >= 0)
        return 0;
    b->failed = true;
    set_drop(b, b->cur);
    if (b->flying_msg[0])
        return err_set(b->flying_r, "%s", b->flying_msg);
    return b->flying_r;
}

/* The current set is full: it goes to the batch's thread (once the previous one is recorded)
 * and the other set fills. Without a thread it is recorded here. */
static int rotate(struct batch_core *b)
{
    int r = flying_wait(b);
    if (r < 0)
        return r;
    struct batch_set *full = b->cur;
    b->cur = full == &b->sets[0] ? &b->sets[1] : &b->sets[0];
    b->flying = full;
    if (pthread_create(&b->thread, NULL, flying_main, b) == 0)
        return 0;
    b->flying = NULL;
    r = set_record(b, full);
    if (r < 0) {
        b->failed = true;
        set_drop(b, b->cur);
    }
    return r;
}

void batch_free(struct content_batch *batch)
{
    struct batch_core *b = batch_core(batch);
    (void)flying_wait(b);
    for (int i = 0; i < 2; i++) {
        set_drop(b, &b->sets[i]);
        free(b->sets[i].v);
    }
    free(b->sets[0].arena);
    free(batch);
}

int batch_flush(struct content_batch *batch)
{
    struct batch_core *b = batch_core(batch);
    if (b->failed)
        return err_set(-EIO, "content batch already failed");
    int r = flying_wait(b);
    if (r < 0 || b->cur->n == 0)
        return r;
    r = set_record(b, b->cur);
    if (r < 0)
        b->failed = true;
    return r;
}

int batch_finish_in(struct content_batch *batch, struct content_writer *w,
                    uint8_t ret_id[CONTENT_ID_LEN], int64_t *ret_size)
{
    struct batch_core *b = batch_core(batch);
    struct writer_head *h = writer_head(w);
    int r = b->failed ? err_set(-EIO, "content batch already failed") : writer_seal(h);
    if (r >= 0 && h->ck.size > 0 &&
        (b->cur->n == BATCH_MAX_WRITERS || b->cur->used + h->ck.len > SET_ARENA_BYTES))
        r = rotate(b);
    struct batch_set *set = b->cur;
    if (r >= 0)
        r = ARRAY_GROW(set->v, set->n + 1, set->cap);
    if (r < 0) {
        b->e->abort(w);
        return r;
    }
    memcpy(ret_id, h->ck.id, CONTENT_ID_LEN);
    if (ret_size)
        *ret_size = h->ck.size;
    if (h->ck.size == 0) {
        b->e->free_writer(w);
        return 0;
    }
    if (h->ck.len > 0)
        memcpy(set->arena + set->used, h->ck.buf, h->ck.len);
    h->tail = set->arena + set->used;
    set->used += h->ck.len;
    chunker_release(&h->ck); /* sealed: no more bytes, no more hashing */
    set->v[set->n++] = w;
    return 0;
}
