/*
 * pg_gc.c — garbage collection of the PostgreSQL engine, safe with several replicas writing
 * (pg_int.h): leases past their end first (pins of contents never committed, writers that
 * stopped), then content candidates and chunk candidates in batches of GC_BATCH, one short
 * transaction each under a transaction-level advisory try-lock, so that one replica collects at
 * a time and commits are never held up for long.
 *
 * A batch never waits for a lock while holding one a committer may want: its candidates and
 * contents are locked with SKIP LOCKED (a content locked by a commit or a finish is in use: it
 * stays a candidate for a later batch). Chunks are locked FOR UPDATE, in hash order; what holds
 * a chunk lock (a writer's chunk or finish transaction, an abort) waits for nothing GC holds.
 */
#include "store/pg/pg_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"
#include "util/err.h"

/* Copies column 0 of res's rows (32-byte ids) into a malloc'd array; -EIO on a bad row. */
static int ids_of(const PGresult *res, int n, uint8_t **ret)
{
    *ret = NULL;
    if (n <= 0)
        return 0;
    uint8_t *v = malloc((size_t)n * 32);
    if (!v)
        return -ENOMEM;
    for (int i = 0; i < n; i++) {
        if (!pg_id(res, i, 0, v + 32 * (size_t)i)) {
            free(v);
            return err_set(-EIO, "corrupt garbage collection state");
        }
    }
    *ret = v;
    return 0;
}

int pg_chunks_collect(struct pg_store *s, struct pg_conn *c, const uint8_t *hashes, size_t n,
                      struct gc_stats *stats)
{
    if (n == 0)
        return 0;
    struct pg_params p = {0};
    pp_bytes(&p, hashes, n * 32);
    int r = pg_exec(s, c, PS_CHUNKS_COLLECT_LOCK, &p, NULL);
    if (r <= 0)
        return r;
    _cleanup_pgresult_ PGresult *res = NULL;
    r = pg_exec(s, c, PS_CHUNKS_COLLECT, &p, &res);
    for (int i = 0; stats && i < r; i++) {
        stats->chunks_deleted++;
        stats->bytes_freed += pg_i64(res, i, 0);
    }
    return r < 0 ? r : 0;
}

/* Inside a GC transaction: 1 when this replica may collect now, 0 when another one does. */
static int gc_trylock(struct pg_store *s, struct pg_conn *c)
{
    struct pg_params p = {0};
    pp_i64(&p, PG_LOCK_CLASS);
    pp_i64(&p, PG_LOCK_GC);
    _cleanup_pgresult_ PGresult *res = NULL;
    int r = pg_exec(s, c, PS_GC_TRYLOCK, &p, &res);
    if (r < 0)
        return r;
    return r > 0 && pg_i64(res, 0, 0) != 0;
}

/* Pins past their lease become candidates; writers past theirs leave their chunks to the chunk
 * candidates. 0 when another replica is collecting. */
static int gc_expire(struct pg_store *s)
{
    struct pg_conn *c;
    int r = pg_tx_begin(s, &c);
    if (r < 0)
        return r;
    r = gc_trylock(s, c);
    if (r > 0)
        r = pg_exec(s, c, PS_GC_EXPIRE_PINS, NULL, NULL);
    if (r >= 0)
        r = pg_exec(s, c, PS_GC_EXPIRE_WRITERS, NULL, NULL);
    return pg_tx_end(s, c, r < 0 ? r : 0, NULL, NULL);
}

/* Inside the batch transaction: the locked contents nothing references are deleted and their
 * chunks become chunk candidates. */
static int contents_collect(struct pg_store *s, struct pg_conn *c, const uint8_t *locked, int n,
                            struct gc_stats *stats)
{
    if (n == 0)
        return 0;
    struct pg_params p = {0};
    pp_bytes(&p, locked, (size_t)n * 32);
    _cleanup_pgresult_ PGresult *res = NULL;
    int r = pg_exec(s, c, PS_GC_CONTENTS_DEL, &p, &res);
    if (r <= 0)
        return r;
    for (int i = 0; i < r; i++) {
        stats->contents_deleted++;
        if (pg_i64(res, i, 2) == 0) /* inline: its bytes go with the row */
            stats->bytes_freed += pg_i64(res, i, 1);
    }
    _cleanup_free_ uint8_t *deleted = NULL;
    int n_deleted = r;
    r = ids_of(res, n_deleted, &deleted);
    if (r < 0)
        return r;
    p = (struct pg_params){0};
    pp_bytes(&p, deleted, (size_t)n_deleted * 32);
    r = pg_exec(s, c, PS_GC_CC_DEL, &p, NULL);
    return r < 0 ? r : 0;
}

/* Locks up to GC_BATCH rows of a candidate table (statement `id`, SKIP LOCKED) and gives their
 * ids (32 bytes each) in *ret, their number returned. */
static int batch_take(struct pg_store *s, struct pg_conn *c, enum pg_stmt id, uint8_t **ret)
{
    struct pg_params p = {0};
    pp_i64(&p, GC_BATCH);
    _cleanup_pgresult_ PGresult *res = NULL;
    *ret = NULL;
    int n = pg_exec(s, c, id, &p, &res);
    int r = n > 0 ? ids_of(res, n, ret) : 0;
    return r < 0 ? r : n;
}

/*
 * One batch of content candidates: locks up to GC_BATCH of them and the contents they name
 * (both SKIP LOCKED), drops the candidates it examined (the locked contents, and the ones no
 * longer stored) and collects the locked contents nothing references. 1 when some candidate was
 * examined (there may be more), 0 when none could be.
 */
static int gc_contents_batch(struct pg_store *s, struct pg_conn *c, struct gc_stats *stats)
{
    _cleanup_free_ uint8_t *batch = NULL;
    int n = batch_take(s, c, PS_GC_BATCH, &batch);
    if (n <= 0)
        return n;
    struct pg_params p = {0};
    pp_bytes(&p, batch, (size_t)n * 32);
    _cleanup_pgresult_ PGresult *lres = NULL;
    int nlocked = pg_exec(s, c, PS_GC_CONTENTS_LOCK, &p, &lres);
    if (nlocked < 0)
        return nlocked;
    _cleanup_free_ uint8_t *locked = NULL;
    int r = ids_of(lres, nlocked, &locked);
    if (r < 0)
        return r;
    pp_bytes(&p, locked ? locked : (const uint8_t *)"", (size_t)nlocked * 32);
    int examined = pg_exec(s, c, PS_GC_CAND_DEL, &p, NULL);
    if (examined < 0)
        return examined;
    r = contents_collect(s, c, locked, nlocked, stats);
    return r < 0 ? r : examined > 0;
}

/* One batch of chunk candidates: 1 when some were examined, 0 when none were left. */
static int gc_chunks_batch(struct pg_store *s, struct pg_conn *c, struct gc_stats *stats)
{
    _cleanup_free_ uint8_t *batch = NULL;
    int n = batch_take(s, c, PS_GC_CHUNK_BATCH, &batch);
    if (n <= 0)
        return n;
    struct pg_params p = {0};
    pp_bytes(&p, batch, (size_t)n * 32);
    int r = pg_exec(s, c, PS_GC_CHUNK_CAND_DEL, &p, NULL);
    if (r >= 0)
        r = pg_chunks_collect(s, c, batch, (size_t)n, stats);
    return r < 0 ? r : 1;
}

/* One GC transaction running `batch`: its result, or 0 when another replica is collecting. On
 * failure stats keep only what committed. */
static int gc_tx(struct pg_store *s,
                 int (*batch)(struct pg_store *, struct pg_conn *, struct gc_stats *),
                 struct gc_stats *stats)
{
    struct gc_stats mine = {0};
    struct pg_conn *c;
    int r = pg_tx_begin(s, &c);
    if (r < 0)
        return r;
    r = gc_trylock(s, c);
    if (r > 0)
        r = batch(s, c, &mine);
    r = pg_tx_end(s, c, r, NULL, NULL);
    if (r >= 0) {
        stats->contents_deleted += mine.contents_deleted;
        stats->chunks_deleted += mine.chunks_deleted;
        stats->bytes_freed += mine.bytes_freed;
    }
    return r;
}

int pg_gc_run(struct pg_store *s, struct gc_stats *ret)
{
    struct gc_stats stats = {0};
    int r = gc_expire(s);
    while (r >= 0 && (r = gc_tx(s, gc_contents_batch, &stats)) > 0)
        ;
    while (r >= 0 && (r = gc_tx(s, gc_chunks_batch, &stats)) > 0)
        ;
    if (r < 0)
        return r;
    if (ret)
        *ret = stats;
    return 0;
}

int pg_gc(struct store *st, struct gc_stats *ret)
{
    return pg_gc_run(to_pg(st), ret);
}
