/*
 * batch.c — the engine-independent part of content batches (engine.h): sealed writers kept with
 * their tails in an arena until a flush, which the engine records.
 */
#include "store/engine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/array.h"
#include "util/err.h"

int batch_new(void *batch, const struct batch_engine *e, struct content_batch **ret)
{
    struct batch_core *b = batch;
    *b = (struct batch_core){.e = e, .arena = malloc(BATCH_ARENA_BYTES)};
    if (!b->arena) {
        free(batch);
        return -ENOMEM;
    }
    *ret = batch;
    return 0;
}

static void drop(struct batch_core *b)
{
    for (size_t i = 0; i < b->n; i++)
        b->e->abort(b->v[i]);
    b->n = 0;
    b->used = 0;
}

void batch_free(struct content_batch *batch)
{
    struct batch_core *b = batch_core(batch);
    drop(b);
    free(b->v);
    free(b->arena);
    free(batch);
}

int batch_flush(struct content_batch *batch)
{
    struct batch_core *b = batch_core(batch);
    if (b->failed)
        return err_set(-EIO, "content batch already failed");
    if (b->n == 0)
        return 0;
    int r = b->e->record(batch);
    if (r < 0) {
        b->failed = true;
        drop(b);
        return r;
    }
    for (size_t i = 0; i < b->n; i++)
        b->e->free_writer(b->v[i]);
    b->n = 0;
    b->used = 0;
    return 0;
}

int batch_finish_in(struct content_batch *batch, struct content_writer *w,
                    uint8_t ret_id[CONTENT_ID_LEN], int64_t *ret_size)
{
    struct batch_core *b = batch_core(batch);
    struct writer_head *h = writer_head(w);
    int r = b->failed ? err_set(-EIO, "content batch already failed") : writer_seal(h);
    if (r >= 0 && h->ck.size > 0 &&
        (b->n == BATCH_MAX_WRITERS || b->used + h->ck.len > BATCH_ARENA_BYTES))
        r = batch_flush(batch);
    if (r >= 0)
        r = ARRAY_GROW(b->v, b->n + 1, b->cap);
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
        memcpy(b->arena + b->used, h->ck.buf, h->ck.len);
    h->tail = b->arena + b->used;
    b->used += h->ck.len;
    chunker_release(&h->ck); /* sealed: no more bytes, no more hashing */
    b->v[b->n++] = w;
    return 0;
}
