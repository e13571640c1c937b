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
    bool pending;      /* a chunk was stored pending under writer_id (its lease is held) */
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
    if (r >= 0) {
        memcpy(w->hashes + 32 * w->n++, hash, 32);
        w->pending = true;
    }
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

/*
 * A batch (store/batch.c holds the sealed writers) is recorded in one transaction per flush,
 * with a few statements whatever the number of contents, each taking its rows as array
 * parameters, distinct and in key order (the order GC locks in):
 *   1. the tail chunks: the stored ones locked (FOR KEY SHARE), the others inserted; one a
 *      concurrent writer inserted meanwhile is locked on the next turn;
 *   2. the contents: inserted (with their inline bytes), the ones stored already locked; one a
 *      collection deleted meanwhile is inserted on the next turn;
 *   3. for the contents inserted with chunks: every chunk locked (all must still be stored) and
 *      the chunk lists added;
 *   4. one pin reference per finish, and the end of the writers that stored chunks before.
 * Until a flush a batched content exists only in memory.
 */
struct content_batch {
    struct batch_core core; /* must stay first (engine.h) */
    struct pg_store *s;
};

/* The rows of one flush. */
struct flush {
    struct content_writer **byid;  /* the writers by content id (repeats kept) */
    struct content_writer **tails; /* writers of distinct tail chunks, by hash */
    struct content_writer **todo;  /* the keys a step still has to hold */
    bool *held;                    /* per todo entry: held now */
    size_t n, ntails;
};

static int byid_cmp(const void *x, const void *y)
{
    const struct content_writer *a = *(struct content_writer *const *)x;
    const struct content_writer *b = *(struct content_writer *const *)y;
    return memcmp(a->h.ck.id, b->h.ck.id, CONTENT_ID_LEN);
}

static int bytail_cmp(const void *x, const void *y)
{
    const struct content_writer *a = *(struct content_writer *const *)x;
    const struct content_writer *b = *(struct content_writer *const *)y;
    return memcmp(a->h.ck.tail_hash, b->h.ck.tail_hash, 32);
}

/* Sorts the n writers v by content id, and the distinct tail chunks by hash. */
static int flush_plan(struct flush *f, struct content_writer *const *v, size_t n)
{
    f->n = n;
    f->byid = malloc(n * sizeof(*f->byid));
    f->tails = malloc(n * sizeof(*f->tails));
    f->todo = malloc(n * sizeof(*f->todo));
    f->held = malloc(n * sizeof(*f->held));
    if (!f->byid || !f->tails || !f->todo || !f->held)
        return -ENOMEM;
    memcpy(f->byid, v, n * sizeof(*f->byid));
    qsort(f->byid, n, sizeof(*f->byid), byid_cmp);
    size_t t = 0;
    for (size_t i = 0; i < n; i++)
        if (writer_has_tail_chunk(&v[i]->h))
            f->tails[t++] = v[i];
    qsort(f->tails, t, sizeof(*f->tails), bytail_cmp);
    f->ntails = 0;
    for (size_t i = 0; i < t; i++)
        if (f->ntails == 0 ||
            memcmp(f->tails[i]->h.ck.tail_hash, f->tails[f->ntails - 1]->h.ck.tail_hash, 32) != 0)
            f->tails[f->ntails++] = f->tails[i];
    return 0;
}

static void flush_release(struct flush *f)
{
    free(f->byid);
    free(f->tails);
    free(f->todo);
    free(f->held);
}

/* Marks held the todo entries (sorted by key(w), 32 bytes) whose key is in the first column of
 * one of res's rows. */
static void mark_held(struct flush *f, size_t ntodo, const PGresult *res, int rows,
                      const uint8_t *(*key)(const struct content_writer *))
{
    for (int row = 0; row < rows; row++) {
        size_t len = 0;
        const char *k = pg_bytes(res, row, 0, &len);
        if (!k || len != 32)
            continue;
        size_t lo = 0, hi = ntodo;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            int cmp = memcmp(key(f->todo[mid]), k, 32);
            if (cmp == 0) {
                f->held[mid] = true;
                break;
            }
            if (cmp < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
    }
}

/* Keeps in todo the entries not held; their number. */
static size_t todo_left(struct flush *f, size_t ntodo)
{
    size_t k = 0;
    for (size_t i = 0; i < ntodo; i++)
        if (!f->held[i])
            f->todo[k++] = f->todo[i];
    memset(f->held, 0, k * sizeof(*f->held));
    return k;
}

static const uint8_t *tail_key(const struct content_writer *w)
{
    return w->h.ck.tail_hash;
}

static const uint8_t *id_key(const struct content_writer *w)
{
    return w->h.ck.id;
}

/* Runs `id` with the todo keys (32 bytes each, back to back) as $1, marking held what it
 * returns. */
static int todo_lock(struct pg_store *s, struct pg_conn *c, struct flush *f, size_t ntodo,
                     enum pg_stmt id, const uint8_t *(*key)(const struct content_writer *))
{
    _cleanup_free_ uint8_t *keys = malloc(ntodo * 32);
    if (!keys)
        return -ENOMEM;
    for (size_t i = 0; i < ntodo; i++)
        memcpy(keys + 32 * i, key(f->todo[i]), 32);
    struct pg_params p = {0};
    pp_bytes(&p, keys, ntodo * 32);
    _cleanup_pgresult_ PGresult *res = NULL;
    int r = pg_exec(s, c, id, &p, &res);
    if (r > 0)
        mark_held(f, ntodo, res, r, key);
    return r < 0 ? r : 0;
}

/* Inserts the todo tail chunks (ON CONFLICT DO NOTHING), marking held the ones inserted. */
static int tails_insert(struct pg_store *s, struct pg_conn *c, struct flush *f, size_t ntodo)
{
    struct pg_array hash, size, data;
    int r = pga_init(&hash, PG_OID_BYTEA);
    int r2 = pga_init(&size, PG_OID_INT8);
    int r3 = pga_init(&data, PG_OID_BYTEA);
    r = r < 0 ? r : r2 < 0 ? r2 : r3;
    for (size_t i = 0; i < ntodo && r >= 0; i++) {
        const struct content_writer *w = f->todo[i];
        r = pga_bytes(&hash, w->h.ck.tail_hash, 32);
        if (r >= 0)
            r = pga_i64(&size, (int64_t)w->h.ck.len);
        if (r >= 0)
            r = pga_bytes(&data, w->h.tail, w->h.ck.len);
    }
    _cleanup_pgresult_ PGresult *res = NULL;
    if (r >= 0) {
        struct pg_params p = {0};
        pp_array(&p, &hash);
        pp_array(&p, &size);
        pp_array(&p, &data);
        r = pg_exec(s, c, PS_CHUNKS_INSERT, &p, &res);
    }
    pga_release(&hash);
    pga_release(&size);
    pga_release(&data);
    if (r > 0)
        mark_held(f, ntodo, res, r, tail_key);
    return r < 0 ? r : 0;
}

/* Step 1: every tail chunk stored and locked (or inserted) by this transaction. */
static int tails_hold(struct pg_store *s, struct pg_conn *c, struct flush *f)
{
    size_t ntodo = f->ntails;
    memcpy(f->todo, f->tails, ntodo * sizeof(*f->todo));
    memset(f->held, 0, ntodo * sizeof(*f->held));
    for (int attempt = 0; attempt < RACE_ATTEMPTS && ntodo > 0; attempt++) {
        int r = todo_lock(s, c, f, ntodo, PS_CHUNKS_LOCK, tail_key);
        if (r < 0)
            return r;
        ntodo = todo_left(f, ntodo);
        if (ntodo == 0)
            break;
        r = tails_insert(s, c, f, ntodo);
        if (r < 0)
            return r;
        ntodo = todo_left(f, ntodo);
    }
    return ntodo ? err_set(-ERR_BUSY, "the store was busy collecting the same data; retry") : 0;
}

/* Inserts the todo contents (ON CONFLICT DO NOTHING), marking held the ones inserted; those
 * get their chunk lists (their number of chunks includes the tail). */
static int contents_insert(struct pg_store *s, struct pg_conn *c, struct flush *f, size_t ntodo)
{
    struct pg_array id, size, nchunks, data;
    int r = pga_init(&id, PG_OID_BYTEA);
    int r2 = pga_init(&size, PG_OID_INT8);
    int r3 = pga_init(&nchunks, PG_OID_INT8);
    int r4 = pga_init(&data, PG_OID_BYTEA);
    r = r < 0 ? r : r2 < 0 ? r2 : r3 < 0 ? r3 : r4;
    for (size_t i = 0; i < ntodo && r >= 0; i++) {
        const struct content_writer *w = f->todo[i];
        const struct writer_head *h = &w->h;
        r = pga_bytes(&id, h->ck.id, CONTENT_ID_LEN);
        if (r >= 0)
            r = pga_i64(&size, h->ck.size);
        if (r >= 0)
            r = pga_i64(&nchunks, (int64_t)w->n);
        if (r >= 0)
            r = pga_bytes(&data, h->ck.is_inline ? h->tail : NULL,
                          h->ck.is_inline ? (size_t)h->ck.size : 0);
    }
    _cleanup_pgresult_ PGresult *res = NULL;
    if (r >= 0) {
        struct pg_params p = {0};
        pp_array(&p, &id);
        pp_array(&p, &size);
        pp_array(&p, &nchunks);
        pp_array(&p, &data);
        r = pg_exec(s, c, PS_CONTENTS_INSERT, &p, &res);
    }
    pga_release(&id);
    pga_release(&size);
    pga_release(&nchunks);
    pga_release(&data);
    if (r > 0)
        mark_held(f, ntodo, res, r, id_key);
    return r < 0 ? r : 0;
}

/* Step 3: the contents inserted (the first `ntodo` of todo, held) that have chunks: every chunk
 * locked, all still stored, then their chunk lists. */
static int chunk_lists_add(struct pg_store *s, struct pg_conn *c, struct flush *f, size_t ntodo)
{
    size_t nhash = 0;
    for (size_t i = 0; i < ntodo; i++)
        nhash += f->todo[i]->n;
    if (nhash == 0)
        return 0;
    _cleanup_free_ uint8_t *hashes = malloc(nhash * 32);
    if (!hashes)
        return -ENOMEM;
    struct pg_array cid, seq, chunk;
    int r = pga_init(&cid, PG_OID_BYTEA);
    int r2 = pga_init(&seq, PG_OID_INT8);
    int r3 = pga_init(&chunk, PG_OID_BYTEA);
    r = r < 0 ? r : r2 < 0 ? r2 : r3;
    size_t k = 0;
    for (size_t i = 0; i < ntodo && r >= 0; i++) {
        const struct content_writer *w = f->todo[i];
        for (size_t j = 0; j < w->n && r >= 0; j++) {
            memcpy(hashes + 32 * k++, w->hashes + 32 * j, 32);
            r = pga_bytes(&cid, w->h.ck.id, CONTENT_ID_LEN);
            if (r >= 0)
                r = pga_i64(&seq, (int64_t)j);
            if (r >= 0)
                r = pga_bytes(&chunk, w->hashes + 32 * j, 32);
        }
    }
    if (r >= 0) {
        qsort(hashes, nhash, 32, hash_cmp);
        size_t distinct = 0;
        for (size_t i = 0; i < nhash; i++)
            distinct += i == 0 || memcmp(hashes + 32 * i, hashes + 32 * (i - 1), 32) != 0;
        struct pg_params p = {0};
        pp_bytes(&p, hashes, nhash * 32);
        r = pg_exec(s, c, PS_CHUNKS_LOCK, &p, NULL);
        if (r >= 0 && (size_t)r != distinct)
            r = err_set(-EIO, "content data was collected while it was being written; retry");
    }
    if (r >= 0) {
        struct pg_params p = {0};
        pp_array(&p, &cid);
        pp_array(&p, &seq);
        pp_array(&p, &chunk);
        r = pg_exec(s, c, PS_CCS_INSERT, &p, NULL);
    }
    pga_release(&cid);
    pga_release(&seq);
    pga_release(&chunk);
    return r < 0 ? r : 0;
}

/* Step 2 and 3: every content stored (inserted with its chunk list) or locked. */
static int contents_hold(struct pg_store *s, struct pg_conn *c, struct flush *f)
{
    size_t ntodo = 0;
    for (size_t i = 0; i < f->n; i++)
        if (ntodo == 0 ||
            memcmp(f->byid[i]->h.ck.id, f->todo[ntodo - 1]->h.ck.id, CONTENT_ID_LEN) != 0)
            f->todo[ntodo++] = f->byid[i];
    memset(f->held, 0, ntodo * sizeof(*f->held));
    for (int attempt = 0; attempt < RACE_ATTEMPTS && ntodo > 0; attempt++) {
        int r = contents_insert(s, c, f, ntodo);
        if (r < 0)
            return r;
        /* the inserted ones first: their chunk lists */
        size_t k = 0;
        for (size_t i = 0; i < ntodo; i++)
            if (f->held[i]) {
                struct content_writer *w = f->todo[i];
                f->todo[i] = f->todo[k];
                f->todo[k] = w;
                f->held[i] = f->held[k];
                f->held[k++] = true;
            }
        r = chunk_lists_add(s, c, f, k);
        if (r < 0)
            return r;
        /* the others are stored already: lock them (a collection may have deleted one) */
        memmove(f->todo, f->todo + k, (ntodo - k) * sizeof(*f->todo));
        ntodo -= k;
        memset(f->held, 0, ntodo * sizeof(*f->held));
        if (ntodo == 0)
            break;
        qsort(f->todo, ntodo, sizeof(*f->todo), byid_cmp);
        r = todo_lock(s, c, f, ntodo, PS_CONTENTS_LOCK, id_key);
        if (r < 0)
            return r;
        ntodo = todo_left(f, ntodo);
    }
    return ntodo ? err_set(-ERR_BUSY, "the store was busy collecting the same data; retry") : 0;
}

/* Step 4: one pin reference per writer, and the end of the writers that stored chunks (their
 * pending rows and lease). */
static int pins_add(struct pg_store *s, struct pg_conn *c, struct flush *f)
{
    _cleanup_free_ uint8_t *ids = malloc(f->n * CONTENT_ID_LEN);
    if (!ids)
        return -ENOMEM;
    struct pg_array writers;
    int r = pga_init(&writers, PG_OID_INT8);
    for (size_t i = 0; i < f->n && r >= 0; i++) {
        memcpy(ids + CONTENT_ID_LEN * i, f->byid[i]->h.ck.id, CONTENT_ID_LEN);
        if (f->byid[i]->pending)
            r = pga_i64(&writers, f->byid[i]->writer_id);
    }
    if (r >= 0) {
        struct pg_params p = {0};
        pp_bytes(&p, ids, f->n * CONTENT_ID_LEN);
        pp_text(&p, s->owner);
        r = pg_exec(s, c, PS_PINS_ADD, &p, NULL);
    }
    if (r >= 0 && writers.n > 0) {
        struct pg_params p = {0};
        pp_array(&p, &writers);
        r = pg_exec(s, c, PS_WRITERS_END, &p, NULL);
    }
    pga_release(&writers);
    return r < 0 ? r : 0;
}

/* batch_engine.record */
static int batch_record(struct content_batch *b, struct content_writer *const *v, size_t n)
{
    struct flush f = {0};
    int r = flush_plan(&f, v, n);
    /* each writer's chunk list ends with its tail chunk */
    for (size_t i = 0; i < n && r >= 0; i++) {
        struct content_writer *w = v[i];
        if (!writer_has_tail_chunk(&w->h))
            continue;
        r = ARRAY_GROW(w->hashes, (w->n + 1) * 32, w->cap);
        if (r >= 0)
            memcpy(w->hashes + 32 * w->n++, w->h.ck.tail_hash, 32);
    }
    struct pg_conn *c;
    if (r >= 0 && (r = pg_tx_begin(b->s, &c)) >= 0) {
        r = tails_hold(b->s, c, &f);
        if (r >= 0)
            r = contents_hold(b->s, c, &f);
        if (r >= 0)
            r = pins_add(b->s, c, &f);
        r = pg_tx_end(b->s, c, r, NULL, NULL);
    }
    flush_release(&f);
    return r;
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
