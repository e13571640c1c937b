/*
 * pg_content_write.c — content writers of the PostgreSQL engine. The shared chunker
 * (store/engine.h) hashes the bytes; each whole chunk is stored in its own short transaction
 * (inserted, or the existing row locked, and listed as pending under this writer, whose lease
 * the same statement renews); finish stores the tail (inline in the contents row when the whole
 * content is small), records the content with its chunk list, pins it and ends the writer, in
 * one transaction. Memory: one chunk. A content batch defers the finishes of many contents to
 * one transaction per flush (their tails kept in memory until then). The locking rules are in
 * pg_int.h.
 */
#include "store/pg/pg_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/array.h"
#include "util/cleanup.h"
#include "util/err.h"

/* Attempts at inserting a row that a concurrent collection keeps deleting under us. */
#define RACE_ATTEMPTS 5

struct content_writer {
    struct writer_head h; /* must stay first: the byte stream and its tail (engine.h) */
    struct pg_store *s;
    int64_t writer_id; /* key of the writers row and of the pending rows (random) */
    uint8_t *hashes;   /* the stored chunks' hashes in order, 32 bytes each */
    size_t n, cap;     /* chunks stored; capacity in bytes */
};

static void writer_free(struct content_writer *w)
{
    chunker_release(&w->h.ck);
    free(w->hashes);
    free(w);
}

int pg_content_begin(struct store *st, struct content_writer **ret)
{
    struct content_writer *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->s = to_pg(st);
    int r = rand_bytes(&w->writer_id, sizeof(w->writer_id));
    if (r >= 0)
        r = chunker_init(&w->h.ck);
    if (r < 0) {
        writer_free(w);
        return r;
    }
    w->writer_id &= INT64_MAX; /* a positive key */
    *ret = w;
    return 0;
}

/* Inside c's transaction: the chunk row exists and is locked (FOR KEY SHARE) or was inserted
 * by this transaction, so no collection can take it before the transaction ends. */
static int chunk_hold(struct pg_store *s, struct pg_conn *c, const uint8_t hash[32],
                      const void *data, size_t len)
{
    for (int attempt = 0; attempt < RACE_ATTEMPTS; attempt++) {
        struct pg_params p = {0};
        pp_bytes(&p, hash, 32);
        int r = pg_exec(s, c, PS_CHUNK_LOCK, &p, NULL);
        if (r != 0)
            return r < 0 ? r : 0;
        pp_i64(&p, (int64_t)len);
        pp_bytes(&p, data, len);
        r = pg_exec(s, c, PS_CHUNK_INSERT, &p, NULL);
        if (r != 0)
            return r < 0 ? r : 0;
        /* inserted by another writer meanwhile (or deleted again): lock it on the next turn */
    }
    return err_set(-ERR_BUSY, "the store was busy collecting the same data; retry");
}

/* Stores one hashed chunk, pending under this writer, in its own transaction, and appends its
 * hash to the writer's list (ctx: the writer; the chunker's chunk_fn). */
static int chunk_store(void *ctx, const uint8_t hash[32], const void *data, size_t len)
{
    struct content_writer *w = ctx;
    struct pg_store *s = w->s;
    int r = ARRAY_GROW(w->hashes, (w->n + 1) * 32, w->cap);
    if (r < 0)
        return r;
    struct pg_conn *c;
    r = pg_tx_begin(s, &c);
    if (r < 0)
        return r;
    r = chunk_hold(s, c, hash, data, len);
    if (r >= 0) {
        struct pg_params p = {0};
        pp_i64(&p, w->writer_id);
        pp_text(&p, s->owner);
        pp_bytes(&p, hash, 32);
        r = pg_exec(s, c, PS_PENDING_ADD, &p, NULL);
    }
    r = pg_tx_end(s, c, r, NULL, NULL);
    if (r >= 0)
        memcpy(w->hashes + 32 * w->n++, hash, 32);
    return r < 0 ? r : 0;
}

int pg_content_write(struct content_writer *w, const void *data, size_t len)
{
    return chunker_write(&w->h.ck, data, len, chunk_store, w);
}

/* Ends the writer's pending rows and lease inside c's transaction. */
static int writer_end(struct pg_store *s, struct pg_conn *c, int64_t writer_id)
{
    struct pg_params p = {0};
    pp_i64(&p, writer_id);
    int r = pg_exec(s, c, PS_WRITER_END, &p, NULL);
    return r < 0 ? r : 0;
}

/* Drops the writer's pending rows and the chunks nobody else uses (best effort: what fails here
 * is collected once the writer's lease expires). */
void pg_content_abort(struct content_writer *w)
{
    struct pg_store *s = w->s;
    struct pg_conn *c;
    if (w->n > 0 && pg_tx_begin(s, &c) >= 0) {
        int r = writer_end(s, c, w->writer_id);
        if (r >= 0)
            r = pg_chunks_collect(s, c, w->hashes, w->n, NULL);
        (void)pg_tx_end(s, c, r, NULL, NULL);
    }
    writer_free(w);
}

static int hash_cmp(const void *x, const void *y)
{
    return memcmp(x, y, 32);
}

/* The number of distinct hashes among the writer's chunks. */
static int distinct_chunks(const struct content_writer *w, size_t *ret)
{
    _cleanup_free_ uint8_t *v = malloc(w->n * 32);
    if (!v)
        return -ENOMEM;
    memcpy(v, w->hashes, w->n * 32);
    qsort(v, w->n, 32, hash_cmp);
    size_t d = 0;
    for (size_t i = 0; i < w->n; i++)
        d += i == 0 || memcmp(v + 32 * i, v + 32 * (i - 1), 32) != 0;
    *ret = d;
    return 0;
}

/* Inside c's transaction, with the content row inserted by it: locks the chunks (all must still
 * be stored) and lists them in order under the content. */
static int content_chunks_add(struct pg_store *s, struct pg_conn *c, struct content_writer *w)
{
    size_t distinct = 0;
    int r = distinct_chunks(w, &distinct);
    if (r < 0)
        return r;
    struct pg_params p = {0};
    pp_bytes(&p, w->hashes, w->n * 32);
    r = pg_exec(s, c, PS_CHUNKS_LOCK, &p, NULL);
    if (r < 0)
        return r;
    if ((size_t)r != distinct)
        return err_set(-EIO, "content data was collected while it was being written; retry");
    p = (struct pg_params){0};
    pp_id(&p, w->h.ck.id);
    pp_bytes(&p, w->hashes, w->n * 32);
    r = pg_exec(s, c, PS_CC_INSERT, &p, NULL);
    return r < 0 ? r : 0;
}

/* Inside c's transaction: the contents row is inserted (with its chunk list or its inline
 * bytes) or an existing one locked, then pinned by this store. */
static int content_record(struct pg_store *s, struct pg_conn *c, struct content_writer *w)
{
    const void *inline_data = w->h.ck.is_inline ? w->h.tail : NULL;
    bool held = false;
    for (int attempt = 0; attempt < RACE_ATTEMPTS && !held; attempt++) {
        struct pg_params p = {0};
        pp_id(&p, w->h.ck.id);
        pp_i64(&p, w->h.ck.size);
        pp_i64(&p, (int64_t)w->n);
        pp_bytes(&p, inline_data, inline_data ? (size_t)w->h.ck.size : 0);
        int r = pg_exec(s, c, PS_CONTENT_INSERT, &p, NULL);
        if (r > 0) {
            r = w->n > 0 ? content_chunks_add(s, c, w) : 0;
            if (r < 0)
                return r;
            held = true;
            break;
        }
        if (r < 0)
            return r;
        /* stored already: lock it (no row when a collection deleted it meanwhile: insert) */
        p.n = 1;
        r = pg_exec(s, c, PS_CONTENT_LOCK, &p, NULL);
        if (r < 0)
            return r;
        held = r > 0;
    }
    if (!held)
        return err_set(-ERR_BUSY, "the store was busy collecting the same data; retry");
    struct pg_params p = {0};
    pp_id(&p, w->h.ck.id);
    pp_text(&p, s->owner);
    int r = pg_exec(s, c, PS_PIN_ADD, &p, NULL);
    if (r >= 0 && w->n > 0)
        r = writer_end(s, c, w->writer_id);
    return r < 0 ? r : 0;
}

int pg_content_finish(struct content_writer *w, uint8_t ret_id[CONTENT_ID_LEN], int64_t *ret_size)
{
    struct pg_store *s = w->s;
    int r = writer_seal(&w->h);
    if (r >= 0 && writer_has_tail_chunk(&w->h))
        r = chunk_store(w, w->h.ck.tail_hash, w->h.ck.buf, w->h.ck.len);
    struct pg_conn *c;
    if (r >= 0 && w->h.ck.size > 0 && (r = pg_tx_begin(s, &c)) >= 0)
        r = pg_tx_end(s, c, content_record(s, c, w), NULL, NULL);
    if (r < 0) {
        pg_content_abort(w);
        return r;
    }
    memcpy(ret_id, w->h.ck.id, CONTENT_ID_LEN);
    if (ret_size)
        *ret_size = w->h.ck.size;
    writer_free(w);
    return 0;
}

/* ---- content batches ---------------------------------------------------------------- */

/* A batch (store/batch.c holds the sealed writers) is recorded in one transaction per flush:
 * each tail chunk inserted or locked, then each content recorded and pinned as a plain finish
 * does. Until a flush a batched content exists only in memory. */
struct content_batch {
    struct batch_core core; /* must stay first (engine.h) */
    struct pg_store *s;
};

/* Inside c's transaction: stores the tail chunk of w (if any) and records w. */
static int batch_record_one(struct pg_store *s, struct pg_conn *c, struct content_writer *w)
{
    if (writer_has_tail_chunk(&w->h)) {
        int r = ARRAY_GROW(w->hashes, (w->n + 1) * 32, w->cap);
        if (r >= 0)
            r = chunk_hold(s, c, w->h.ck.tail_hash, w->h.tail, w->h.ck.len);
        if (r < 0)
            return r;
        memcpy(w->hashes + 32 * w->n++, w->h.ck.tail_hash, 32);
    }
    return content_record(s, c, w);
}

/* batch_engine.record */
static int batch_record(struct content_batch *b)
{
    struct pg_conn *c;
    int r = pg_tx_begin(b->s, &c);
    if (r < 0)
        return r;
    for (size_t i = 0; i < b->core.n && r >= 0; i++)
        r = batch_record_one(b->s, c, b->core.v[i]);
    return pg_tx_end(b->s, c, r, NULL, NULL);
}

static const struct batch_engine pg_batch = {
    .record = batch_record,
    .abort = pg_content_abort,
    .free_writer = writer_free,
};

int pg_content_batch_new(struct store *st, struct content_batch **ret)
{
    struct content_batch *b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    b->s = to_pg(st);
    return batch_new(b, &pg_batch, ret);
}
