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

#include <openssl/evp.h>

#include "util/array.h"
#include "util/err.h"
#include "util/timeutil.h"

/* Contents up to this size are stored inline in their contents row (metadata database, small
 * pages) instead of as a chunk: one small transaction per small file. */
#define INLINE_MAX (16 * 1024)

struct content_writer {
    struct sqlite_store *s;
    int64_t writer_id;  /* key of this writer's pending_chunks rows */
    uint8_t *buf;       /* the partial chunk (grows up to STORE_CHUNK_SIZE) */
    size_t len;         /* bytes in buf */
    size_t bufcap;      /* bytes allocated at buf */
    int64_t size;       /* bytes written so far (after sealing: the content's size) */
    EVP_MD_CTX *idctx;  /* SHA-256 over the chunk hashes: the content id */
    int64_t *chunk_ids; /* stored chunks in order */
    size_t n, cap;
    bool failed; /* a write failed: only abort is allowed */
    /* set by writer_seal(): the rest is the tail in buf (stored inline or as a last chunk) */
    bool is_inline;             /* tail is the whole content, stored in its contents row */
    const uint8_t *tail;        /* the len bytes left after the whole chunks: buf, or a copy
                                 * in a batch's arena */
    uint8_t tail_hash[32];      /* hash of the tail chunk (len > 0 and not inline) */
    uint8_t id[CONTENT_ID_LEN]; /* the content id */
};

int sq_content_begin(struct store *st, struct content_writer **ret)
{
    struct sqlite_store *s = to_sq(st);
    struct content_writer *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->s = s;
    w->writer_id = __atomic_add_fetch(&s->next_writer, 1, __ATOMIC_RELAXED);
    w->idctx = EVP_MD_CTX_new();
    if (!w->idctx || EVP_DigestInit_ex(w->idctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(w->idctx);
        free(w);
        return err_set(-ENOMEM, "cannot initialise hashing");
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

static int chunk_hash(struct content_writer *w, const void *data, size_t len, uint8_t hash[32])
{
    unsigned int hlen = 0;
    if (EVP_Digest(data, len, hash, &hlen, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(w->idctx, hash, 32) != 1)
        return err_set(-EIO, "hashing failed");
    return 0;
}

static int chunk_ids_reserve(struct content_writer *w)
{
    return ARRAY_GROW(w->chunk_ids, w->n + 1, w->cap);
}

/* Stores one hashed chunk in its own transaction and appends it to the writer's list. */
static int chunk_store(struct content_writer *w, const uint8_t hash[32], const void *data,
                       size_t len)
{
    int r = chunk_ids_reserve(w);
    if (r < 0 || (r = sq_wtx_begin(w->s)) < 0)
        return r;
    int64_t id = 0;
    r = sq_wtx_end(w->s, chunk_store_tx(w, hash, data, len, &id));
    if (r >= 0)
        w->chunk_ids[w->n++] = id;
    return r;
}

/* Hashes and stores one chunk (outside the writer lock for the hashing). */
static int chunk_flush(struct content_writer *w, const void *data, size_t len)
{
    uint8_t hash[32];
    int r = chunk_hash(w, data, len, hash);
    if (r >= 0)
        r = chunk_store(w, hash, data, len);
    if (r >= 0)
        w->size += (int64_t)len;
    return r;
}

static int content_write_inner(struct content_writer *w, const uint8_t *p, size_t len)
{
    while (len > 0) {
        if (w->len == 0 && len >= STORE_CHUNK_SIZE) {
            /* A whole chunk in the caller's buffer: hash and store it without a copy. */
            int r = chunk_flush(w, p, STORE_CHUNK_SIZE);
            if (r < 0)
                return r;
            p += STORE_CHUNK_SIZE;
            len -= STORE_CHUNK_SIZE;
            continue;
        }
        size_t take = STORE_CHUNK_SIZE - w->len;
        if (take > len)
            take = len;
        if (w->len + take > w->bufcap) {
            /* Grow geometrically: small files never pay for a whole chunk buffer. */
            size_t cap = w->bufcap ? w->bufcap : 16384;
            while (cap < w->len + take)
                cap *= 2;
            if (cap > STORE_CHUNK_SIZE)
                cap = STORE_CHUNK_SIZE;
            uint8_t *p2 = realloc(w->buf, cap);
            if (!p2)
                return -ENOMEM;
            w->buf = p2;
            w->bufcap = cap;
        }
        memcpy(w->buf + w->len, p, take);
        w->len += take;
        p += take;
        len -= take;
        if (w->len == STORE_CHUNK_SIZE) {
            int r = chunk_flush(w, w->buf, w->len);
            if (r < 0)
                return r;
            w->len = 0;
        }
    }
    return 0;
}

int sq_content_write(struct content_writer *w, const void *data, size_t len)
{
    if (w->failed)
        return err_set(-EINVAL, "content writer already failed");
    int r = content_write_inner(w, data, len);
    if (r < 0)
        w->failed = true;
    return r;
}

static void writer_free(struct content_writer *w)
{
    EVP_MD_CTX_free(w->idctx);
    free(w->buf);
    free(w->chunk_ids);
    free(w);
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
    const void *inline_data = w->is_inline ? w->tail : NULL;
    sqlite3_stmt *q = NULL;
    int r = sq_stmt_get(c, ST_CONTENT_INSERT, &q);
    if (r >= 0)
        r = sq_bind_check(
            c, bind_id(q, 1, w->id) | sqlite3_bind_int64(q, 2, w->size) |
                   sqlite3_bind_int64(q, 3, (int64_t)w->n) |
                   (inline_data ? sqlite3_bind_blob(q, 4, inline_data, (int)w->size, SQLITE_STATIC)
                                : sqlite3_bind_null(q, 4)));
    if (r >= 0)
        r = sq_stmt_run(c, q);
    if (r >= 0 && sqlite3_changes(c->db) > 0 && w->n > 0) {
        r = sq_stmt_get(c, ST_CC_INSERT, &q);
        for (size_t i = 0; i < w->n && r >= 0; i++) {
            r = sq_bind_check(c, bind_id(q, 1, w->id) | sqlite3_bind_int64(q, 2, (int64_t)i) |
                                     sqlite3_bind_int64(q, 3, w->chunk_ids[i]));
            if (r >= 0)
                r = sq_stmt_run(c, q);
        }
    }
    if (r >= 0)
        r = sq_stmt_get(c, ST_PIN_ADD, &q);
    if (r >= 0)
        r = sq_bind_check(c, bind_id(q, 1, w->id) | sqlite3_bind_int64(q, 2, time_now_ms()));
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

/* Ends the byte stream: hashes the tail left in buf (a small content stays inline, like a
 * one-chunk content with the same id) and computes the content id and size. What remains to be
 * stored is the tail (storing it appends to chunk_ids) and the contents row. */
static int writer_seal(struct content_writer *w)
{
    if (w->failed)
        return err_set(-EINVAL, "content writer already failed");
    w->tail = w->buf;
    if (w->len > 0) {
        int r = chunk_hash(w, w->buf, w->len, w->tail_hash);
        if (r < 0)
            return r;
        w->is_inline = w->n == 0 && w->len <= INLINE_MAX;
        w->size += (int64_t)w->len;
    }
    memset(w->id, 0, sizeof(w->id));
    if (w->size > 0) {
        uint8_t be[8];
        for (int i = 0; i < 8; i++)
            be[i] = (uint8_t)((uint64_t)w->size >> (56 - 8 * i));
        unsigned int hlen = 0;
        if (EVP_DigestUpdate(w->idctx, be, sizeof(be)) != 1 ||
            EVP_DigestFinal_ex(w->idctx, w->id, &hlen) != 1)
            return err_set(-EIO, "hashing failed");
    }
    return 0;
}

static bool writer_has_tail_chunk(const struct content_writer *w)
{
    return w->len > 0 && !w->is_inline;
}

int sq_content_finish(struct content_writer *w, uint8_t ret_id[CONTENT_ID_LEN], int64_t *ret_size)
{
    int r = writer_seal(w);
    if (r >= 0 && writer_has_tail_chunk(w))
        r = chunk_store(w, w->tail_hash, w->tail, w->len);
    if (r >= 0 && w->size > 0 && (r = sq_wtx_begin(w->s)) >= 0)
        r = sq_wtx_end(w->s, content_record_tx(w));
    if (r < 0) {
        sq_content_abort(w);
        return r;
    }
    memcpy(ret_id, w->id, CONTENT_ID_LEN);
    if (ret_size)
        *ret_size = w->size;
    writer_free(w);
    return 0;
}

/* ---- content batches ---------------------------------------------------------------- */

/* A batch holds sealed writers (tail bytes in memory) and records them with two transactions
 * per flush instead of two per content: first every tail chunk with its pending row, then every
 * contents row, pin and pending cleanup. The order matters: a transaction over both database
 * files is atomic per file only, so content_chunks rows must never be committed in the same
 * transaction as the chunks they name. Until a flush, a batched content exists only here. */
#define BATCH_ARENA_BYTES ((size_t)4 << 20)
#define BATCH_MAX_WRITERS 2048

struct content_batch {
    struct sqlite_store *s;
    struct content_writer **v; /* sealed, not yet recorded */
    size_t n, cap;
    /* The tails of v, copied so that each writer's buffer is freed at once: the next writer
     * reuses that warm memory instead of faulting in fresh pages for every file. */
    uint8_t *arena; /* BATCH_ARENA_BYTES (>= STORE_CHUNK_SIZE: any tail fits) */
    size_t used;
    bool failed; /* a flush failed: its contents are gone, the batch only frees */
};

int sq_content_batch_new(struct store *st, struct content_batch **ret)
{
    struct content_batch *b = calloc(1, sizeof(*b));
    if (!b || !(b->arena = malloc(BATCH_ARENA_BYTES))) {
        free(b);
        return -ENOMEM;
    }
    b->s = to_sq(st);
    *ret = b;
    return 0;
}

static void batch_drop(struct content_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        sq_content_abort(b->v[i]);
    b->n = 0;
    b->used = 0;
}

static int batch_store_tails(struct content_batch *b)
{
    size_t i = 0;
    while (i < b->n && !writer_has_tail_chunk(b->v[i]))
        i++;
    if (i == b->n)
        return 0;
    for (size_t k = i; k < b->n; k++) {
        int r = chunk_ids_reserve(b->v[k]);
        if (r < 0)
            return r;
    }
    int r = sq_wtx_begin(b->s);
    if (r < 0)
        return r;
    for (; i < b->n && r >= 0; i++) {
        struct content_writer *w = b->v[i];
        if (writer_has_tail_chunk(w))
            r = chunk_store_tx(w, w->tail_hash, w->tail, w->len, &w->chunk_ids[w->n]);
    }
    r = sq_wtx_end(b->s, r);
    if (r < 0)
        return r;
    for (i = 0; i < b->n; i++) {
        struct content_writer *w = b->v[i];
        if (writer_has_tail_chunk(w)) {
            w->n++;
            w->len = 0;
        }
    }
    return 0;
}

int sq_content_batch_flush(struct content_batch *b)
{
    if (b->failed)
        return err_set(-EIO, "content batch already failed");
    if (b->n == 0)
        return 0;
    int r = batch_store_tails(b);
    if (r >= 0 && (r = sq_wtx_begin(b->s)) >= 0) {
        for (size_t i = 0; i < b->n && r >= 0; i++)
            r = content_record_tx(b->v[i]);
        r = sq_wtx_end(b->s, r);
    }
    if (r < 0) {
        b->failed = true;
        batch_drop(b);
        return r;
    }
    for (size_t i = 0; i < b->n; i++)
        writer_free(b->v[i]);
    b->n = 0;
    b->used = 0;
    return 0;
}

int sq_content_finish_in(struct content_batch *b, struct content_writer *w,
                         uint8_t ret_id[CONTENT_ID_LEN], int64_t *ret_size)
{
    int r = b->failed ? err_set(-EIO, "content batch already failed") : writer_seal(w);
    if (r >= 0 && w->size > 0 &&
        (b->n == BATCH_MAX_WRITERS || b->used + w->len > BATCH_ARENA_BYTES))
        r = sq_content_batch_flush(b);
    if (r >= 0)
        r = ARRAY_GROW(b->v, b->n + 1, b->cap);
    if (r < 0) {
        sq_content_abort(w);
        return r;
    }
    memcpy(ret_id, w->id, CONTENT_ID_LEN);
    if (ret_size)
        *ret_size = w->size;
    if (w->size == 0) {
        writer_free(w);
        return 0;
    }
    if (w->len > 0) {
        memcpy(b->arena + b->used, w->buf, w->len);
        w->tail = b->arena + b->used;
        b->used += w->len;
    }
    free(w->buf); /* sealed: no more bytes, no more hashing */
    w->buf = NULL;
    w->bufcap = 0;
    EVP_MD_CTX_free(w->idctx);
    w->idctx = NULL;
    b->v[b->n++] = w;
    return 0;
}

void sq_content_batch_free(struct content_batch *b)
{
    batch_drop(b);
    free(b->v);
    free(b->arena);
    free(b);
}
