/*
 * sqlite_gc.c — garbage collection of the SQLite engine: expired pins become candidates, then
 * candidates are examined in batches of GC_BATCH, one write transaction each, so that commits
 * are not starved. A candidate no file row references and no pin holds is deleted with the
 * chunks no other content uses (the protection rules are in sqlite_int.h).
 */
#include "store/sqlite/sqlite_int.h"

#include <errno.h>
#include <stdlib.h>

#include "util/array.h"
#include "util/cleanup.h"
#include "util/err.h"
#include "util/timeutil.h"

#define GC_BATCH 256

/* Moves pins past their lease to the candidates (content finished but never committed). */
static int gc_expire_pins(struct sqlite_store *s)
{
    int r = sq_wtx_begin(s);
    if (r < 0)
        return r;
    int64_t before = time_now_ms() - STORE_PIN_LEASE_MS;
    static const enum stmt_id ids[] = {ST_GC_EXPIRED_CAND, ST_GC_EXPIRED_DEL};
    for (size_t i = 0; i < 2 && r >= 0; i++) {
        sqlite3_stmt *q = NULL;
        r = sq_stmt_get(s->w, ids[i], &q);
        if (r >= 0)
            r = sq_bind_check(s->w, sqlite3_bind_int64(q, 1, before));
        if (r >= 0)
            r = sq_stmt_run(s->w, q);
    }
    return sq_wtx_end(s, r);
}

/* Collects one candidate content if nothing references or pins it. */
static int gc_one(struct conn *c, const uint8_t *id, struct gc_stats *stats)
{
    int r = sq_run_content(c, ST_GC_CAND_DEL, id);
    if (r < 0)
        return r;
    {
        _cleanup_reset_ sqlite3_stmt *q = NULL;
        r = sq_query_content(c, ST_GC_IS_GARBAGE, id, &q);
        if (r <= 0)
            return r;
        if (!sqlite3_column_int(q, 0))
            return 0;
    }
    {
        /* Inline contents free their bytes with the row. */
        _cleanup_reset_ sqlite3_stmt *q = NULL;
        r = sq_query_content(c, ST_CONTENT_SIZE, id, &q);
        if (r < 0)
            return r;
        if (r > 0 && sqlite3_column_int64(q, 1) == 0)
            stats->bytes_freed += sqlite3_column_int64(q, 0);
    }
    _cleanup_free_ int64_t *chunks = NULL;
    size_t n = 0, cap = 0;
    {
        _cleanup_reset_ sqlite3_stmt *q = NULL;
        r = sq_query_content(c, ST_GC_CHUNKS_OF, id, &q);
        while (r > 0) {
            r = ARRAY_GROW(chunks, n + 1, cap);
            if (r < 0)
                break;
            chunks[n++] = sqlite3_column_int64(q, 0);
            r = sq_stmt_step(c, q);
        }
    }
    if (r >= 0)
        r = sq_run_content(c, ST_GC_CC_DEL, id);
    if (r >= 0)
        r = sq_run_content(c, ST_GC_CONTENT_DEL, id);
    if (r >= 0)
        stats->contents_deleted++;
    sqlite3_stmt *q = NULL;
    if (r >= 0)
        r = sq_stmt_get(c, ST_CHUNK_DEL_IF_FREE, &q);
    for (size_t i = 0; i < n && r >= 0; i++) {
        r = sq_bind_check(c, sqlite3_bind_int64(q, 1, chunks[i]));
        if (r >= 0)
            r = sq_stmt_step(c, q);
        if (r > 0) {
            stats->chunks_deleted++;
            stats->bytes_freed += sqlite3_column_int64(q, 0);
        }
        sqlite3_reset(q);
    }
    return r < 0 ? r : 0;
}

/* One batch of candidates in one write transaction. 1 when there may be more, 0 when this
 * batch took the last ones (a short batch: it read every candidate the transaction saw). */
static int gc_batch(struct sqlite_store *s, struct gc_stats *stats)
{
    struct conn *c = s->w;
    uint8_t ids[GC_BATCH][CONTENT_ID_LEN];
    size_t n = 0;
    int r = sq_wtx_begin(s);
    if (r < 0)
        return r;
    {
        _cleanup_reset_ sqlite3_stmt *q = NULL;
        r = sq_stmt_get(c, ST_GC_BATCH, &q);
        if (r >= 0)
            r = sq_bind_check(c, sqlite3_bind_int(q, 1, GC_BATCH));
        while (r >= 0 && n < GC_BATCH) {
            r = sq_stmt_step(c, q);
            if (r <= 0)
                break;
            if (!column_id(q, 0, ids[n])) {
                r = err_set(-EIO, "corrupt garbage collection state");
                break;
            }
            n++;
        }
    }
    for (size_t i = 0; i < n && r >= 0; i++)
        r = gc_one(c, ids[i], stats);
    r = sq_wtx_end(s, r);
    return r < 0 ? r : n == GC_BATCH;
}

int sq_gc_run(struct sqlite_store *s, struct gc_stats *ret)
{
    struct gc_stats stats = {0};
    int r = gc_expire_pins(s);
    while (r >= 0) {
        r = gc_batch(s, &stats);
        if (r == 0)
            break;
    }
    if (r < 0)
        return r;
    if (ret)
        *ret = stats;
    return 0;
}

int sq_gc(struct store *st, struct gc_stats *ret)
{
    return sq_gc_run(to_sq(st), ret);
}
