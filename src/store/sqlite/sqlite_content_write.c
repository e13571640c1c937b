/*
 * sqlite_content_write.c — content writers and content batches of the SQLite engine. A writer
 * hashes and stores each whole chunk as it fills (one write transaction each, the chunk listed
 * as pending for the writer), keeps the last partial chunk in memory, and at finish stores it
 * (inline in the contents row when the whole content is small), records the content with its
 * chunk list and pins it (sqlite_int.h). A batch defers the finishes of many small contents to
 * two transactions per flush. One file: the batch is built from the writer's own steps (seal,
 * store the tail, record), which nothing else uses.
 */
#include "store/sqlite/sqlite_int.h"

#include <errno.h>
#include <stdlib.h>

#include "util/array.h"
#include "util/err.h"
#include "util/timeutil.h"

struct content_writer {
    struct writer_head h; /* must stay first: the byte stream and its tail (engine.h) */
    struct sqlite_store *s;
    int64_t writer_id;  /* key of this writer's pending_chunks rows */
    int64_t *chunk_ids; /* stored chunks in order */
    size_t n, cap;
};

static void writer_free(struct content_writer *w)
{
    chunker_release(&w->h.ck);
    free(w->chunk_ids);
    free(w);
}

int sq_content_begin(struct store *st, struct content_writer **ret)
{
    struct sqlite_store *s = to_sq(st);
    struct content_writer *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->s = s;
    w->writer_id = __atomic_add_fetch(&s->next_writer, 1, __ATOMIC_RELAXED);
    int r = chunker_init(&w->h.ck);
    if (r < 0) {
        writer_free(w);
        return r;
    }
    *ret = w;
    return 0;
}

/* Finds or inserts the chunk and lists it as pending for this writer, inside the caller's write
 * transaction, so GC can never take it before the content that uses it is recorded. */
static int chunk_store_tx(struct content_writer *w, const uint8_t hash[32], const void *data,
                          size_t len, int64_t *ret_id)
{
    struct conn *c = w->s->w;
    int64_t id = 0;
    int r;
    {
        _cleanup_reset_ sqlite3_stmt *q = NULL;
        r = sq_stmt_get(c, ST_CHUNK_FIND, &q);
        if (r >= 0)
            r = sq_bind_check(c, sqlite3_bind_blob(q, 1, hash, 32, SQLITE_STATIC));
        if (r >= 0)
            r = sq_stmt_step(c, q);
        if (r > 0)
            id = sqlite3_column_int64(q, 0);
    }
    if (r == 0) {
        sqlite3_stmt *q = NULL;
        r = sq_stmt_get(c, ST_CHUNK_INSERT, &q);
        if (r >= 0)
            r = sq_bind_check(c, sqlite3_bind_blob(q, 1, hash, 32, SQLITE_STATIC) |
                                     sqlite3_bind_int64(q, 2, (int64_t)len) |
                                     sqlite3_bind_blob(q, 3, data, (int)len, SQLITE_STATIC));
        if (r >= 0)
            r = sq_stmt_run(c, q);
        id = sqlite3_last_insert_rowid(c->db);
    }
    if (r >= 0) {
        sqlite3_stmt *q = NULL;
        r = sq_stmt_get(c, ST_PENDING_ADD, &q);
        if (r >= 0)
            r = sq_bind_check(c, sqlite3_bind_int64(q, 1, w->writer_id) |
                                     sqlite3_bind_int64(q, 2, id));
        if (r >= 0)
            r = sq_stmt_run(c, q);
    }
    if (r >= 0)
        *ret_id = id;
    return r;
}

static int chunk_ids_reserve(struct content_writer *w)
{
    return ARRAY_GROW(w->chunk_ids, w->n + 1, w->cap);
}

/* Stores one hashed chunk in its own transaction and appends it to the writer's list (ctx: the
 * writer; the chunker's chunk_fn). */
static int chunk_store(void *ctx, const uint8_t hash[32], const void *data, size_t len)
{
    struct content_writer *w = ctx;
    int r = chunk_ids_reserve(w);
    if (r < 0 || (r = sq_wtx_begin(w->s)) < 0)
        return r;
    int64_t id = 0;
    r = sq_wtx_end(w->s, chunk_store_tx(w, hash, data, len, &id));
    if (r >= 0)
        w->chunk_ids[w->n++] = id;
    return r;
}

int sq_content_write(struct content_writer *w, const void *data, size_t len)
{
    return chunker_write(&w->h.ck, data, len, chunk_store, w);
}

/* Deletes the writer's pending rows and the chunks nobody else uses (best effort: what fails
 * here is cleaned at the next open). */
static void writer_release_chunks(struct content_writer *w)
{
    if (w->n == 0)
        return;
    struct sqlite_store *s = w->s;
    struct conn *c = s->w;
    int r = sq_wtx_begin(s);
    if (r < 0)
        return;
    sqlite3_stmt *q = NULL;
    r = sq_stmt_get(c, ST_PENDING_DEL, &q);
    if (r >= 0)
        r = sq_bind_check(c, sqlite3_bind_int64(q, 1, w->writer_id));
    if (r >= 0)
        r = sq_stmt_run(c, q);
    if (r >= 0)
        r = sq_stmt_get(c, ST_CHUNK_DEL_IF_FREE, &q);
    for (size_t i = 0; i < w->n && r >= 0; i++) {
        r = sq_bind_check(c, sqlite3_bind_int64(q, 1, w->chunk_ids[i]));
        if (r >= 0)
            r = sq_stmt_run(c, q);
    }
    (void)sq_wtx_end(s, r);
}

void sq_content_abort(struct content_writer *w)
{
    writer_release_chunks(w);
    writer_free(w);
}

/* Records the sealed content (if new) with its chunk list or its inline bytes, pins it and drops
 * the pending rows, inside the caller's write transaction. */
static int content_record_tx(struct content_writer *w)
{
    struct conn *c = w->s->w;
    const void *inline_data = w->h.ck.is_inline ? w->h.tail : NULL;
    sqlite3_stmt *q = NULL;
    int r = sq_stmt_get(c, ST_CONTENT_INSERT, &q);
    if (r >= 0)
        r = sq_bind_check(c, bind_id(q, 1, w->h.ck.id) | sqlite3_bind_int64(q, 2, w->h.ck.size) |
                                 sqlite3_bind_int64(q, 3, (int64_t)w->n) |
                                 (inline_data ? sqlite3_bind_blob(q, 4, inline_data,
                                                                  (int)w->h.ck.size, SQLITE_STATIC)
                                              : sqlite3_bind_null(q, 4)));
    if (r >= 0)
        r = sq_stmt_run(c, q);
    if (r >= 0 && sqlite3_changes(c->db) > 0 && w->n > 0) {
        r = sq_stmt_get(c, ST_CC_INSERT, &q);
        for (size_t i = 0; i < w->n && r >= 0; i++) {
            r = sq_bind_check(c, bind_id(q, 1, w->h.ck.id) | sqlite3_bind_int64(q, 2, (int64_t)i) |
                                     sqlite3_bind_int64(q, 3, w->chunk_ids[i]));
            if (r >= 0)
                r = sq_stmt_run(c, q);
        }
    }
    if (r >= 0)
        r = sq_stmt_get(c, ST_PIN_ADD, &q);
    if (r >= 0)
        r = sq_bind_check(c, bind_id(q, 1, w->h.ck.id) | sqlite3_bind_int64(q, 2, time_now_ms()));
    if (r >= 0)
        r = sq_stmt_run(c, q);
    if (w->n == 0) /* no chunk stored (inline or empty): no pending rows */
        return r;
    if (r >= 0)
        r = sq_stmt_get(c, ST_PENDING_DEL, &q);
    if (r >= 0)
        r = sq_bind_check(c, sqlite3_bind_int64(q, 1, w->writer_id));
    if (r >= 0)
        r = sq_stmt_run(c, q);
    return r;
}

int sq_content_finish(struct content_writer *w, uint8_t ret_id[CONTENT_ID_LEN], int64_t *ret_size)
{
    int r = writer_seal(&w->h);
    if (r >= 0 && writer_has_tail_chunk(&w->h))
        r = chunk_store(w, w->h.ck.tail_hash, w->h.tail, w->h.ck.len);
    if (r >= 0 && w->h.ck.size > 0 && (r = sq_wtx_begin(w->s)) >= 0)
        r = sq_wtx_end(w->s, content_record_tx(w));
    if (r < 0) {
        sq_content_abort(w);
        return r;
    }
    memcpy(ret_id, w->h.ck.id, CONTENT_ID_LEN);
    if (ret_size)
        *ret_size = w->h.ck.size;
    writer_free(w);
    return 0;
}

/* ---- content batches ---------------------------------------------------------------- */

/* A batch (store/batch.c holds the sealed writers) is recorded with two transactions per flush
 * instead of two per content: first every tail chunk with its pending row, then every contents
 * row, pin and pending cleanup. The order matters: a transaction over both database files is
 * atomic per file only, so content_chunks rows must never be committed in the same transaction
 * as the chunks they name. Until a flush, a batched content exists only in memory. */
struct content_batch {
    struct batch_core core; /* must stay first (engine.h) */
    struct sqlite_store *s;
};

static int batch_store_tails(struct content_batch *b, struct content_writer *const *v, size_t n)
{
    size_t i = 0;
    while (i < n && !writer_has_tail_chunk(&v[i]->h))
        i++;
    if (i == n)
        return 0;
    for (size_t k = i; k < n; k++) {
        int r = chunk_ids_reserve(v[k]);
        if (r < 0)
            return r;
    }
    int r = sq_wtx_begin(b->s);
    if (r < 0)
        return r;
    for (; i < n && r >= 0; i++) {
        struct content_writer *w = v[i];
        if (writer_has_tail_chunk(&w->h))
            r = chunk_store_tx(w, w->h.ck.tail_hash, w->h.tail, w->h.ck.len, &w->chunk_ids[w->n]);
    }
    r = sq_wtx_end(b->s, r);
    if (r < 0)
        return r;
    for (i = 0; i < n; i++) {
        struct content_writer *w = v[i];
        if (writer_has_tail_chunk(&w->h)) {
            w->n++;
            w->h.ck.len = 0;
        }
    }
    return 0;
}

/* batch_engine.record: the tails, then the contents rows. */
static int batch_record(struct content_batch *b, struct content_writer *const *v, size_t n)
{
    int r = batch_store_tails(b, v, n);
    if (r >= 0 && (r = sq_wtx_begin(b->s)) >= 0) {
        for (size_t i = 0; i < n && r >= 0; i++)
            r = content_record_tx(v[i]);
        r = sq_wtx_end(b->s, r);
    }
    return r;
}

static const struct batch_engine sq_batch = {
    .record = batch_record,
    .abort = sq_content_abort,
    .free_writer = writer_free,
};

int sq_content_batch_new(struct store *st, struct content_batch **ret)
{
    struct content_batch *b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    b->s = to_sq(st);
    return batch_new(b, &sq_batch, ret);
}
