/*
 * pg_commit.c — applying a change set (changeset.h) to a sandbox in one transaction of the
 * PostgreSQL engine: the version fence (the sandbox row locked FOR UPDATE, then compared with
 * expect_version), the contents put locked and checked in one statement, the row primitives the
 * shared commit driver runs (store/engine.h), the quota, the commit log, the pins a commit
 * drops; and discarding a change set that will never be committed.
 */
#include "store/pg/pg_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"
#include "util/err.h"
#include "util/timeutil.h"

/* Rows of the change log per INSERT statement. */
#define LOG_ROWS_PER_INSERT 4096

/* The connection, the sandbox and the contents of one commit: the apply_ops context. */
struct pg_apply {
    struct pg_store *s;
    struct pg_conn *c; /* transaction open */
    int64_t sid;       /* sandbox key */
    int64_t version;   /* the version the commit makes: the `since` of the rows it writes */
    uint8_t *ids;      /* contents the change set puts that are stored: sorted, locked */
    int64_t *sizes;    /* their sizes */
    size_t n;
};

static int row_get(void *ctx, const char *path, size_t len, struct store_row *ret)
{
    struct pg_apply *x = ctx;
    struct pg_params p = {0};
    pp_i64(&p, x->sid);
    pp_bytes(&p, path, len);
    _cleanup_pgresult_ PGresult *res = NULL;
    int r = pg_exec(x->s, x->c, PS_F_GET, &p, &res);
    if (r < 0)
        return r;
    memset(ret, 0, sizeof(*ret));
    if (r == 0)
        return 0;
    ret->kind = (int)pg_i64(res, 0, 0);
    ret->size = pg_i64(res, 0, 1);
    ret->has_content = pg_id(res, 0, 2, ret->content);
    ret->kept = pg_i64(res, 0, 3) < x->version;
    return 0;
}

static int row_put(void *ctx, const char *path, size_t len, int kind, uint32_t mode, int64_t size,
                   int64_t mtime_ns, const uint8_t *content, const char *target)
{
    struct pg_apply *x = ctx;
    struct pg_params p = {0};
    pp_i64(&p, x->sid);
    pp_bytes(&p, path, len);
    pp_i64(&p, kind);
    pp_i64(&p, mode);
    pp_i64(&p, size);
    pp_i64(&p, mtime_ns);
    pp_bytes(&p, content, content ? CONTENT_ID_LEN : 0);
    pp_bytes(&p, target, target ? strlen(target) : 0);
    pp_i64(&p, x->version);
    int r = pg_exec(x->s, x->c, PS_F_PUT, &p, NULL);
    return r < 0 ? r : 0;
}

static int dir_update(void *ctx, const char *path, size_t len, uint32_t mode, int64_t mtime_ns)
{
    struct pg_apply *x = ctx;
    struct pg_params p = {0};
    pp_i64(&p, x->sid);
    pp_bytes(&p, path, len);
    pp_i64(&p, mode);
    pp_i64(&p, mtime_ns);
    pp_i64(&p, x->version);
    int r = pg_exec(x->s, x->c, PS_F_SETDIR, &p, NULL);
    return r < 0 ? r : 0;
}

static int row_delete(void *ctx, const char *path, size_t len)
{
    struct pg_apply *x = ctx;
    struct pg_params p = {0};
    pp_i64(&p, x->sid);
    pp_bytes(&p, path, len);
    int r = pg_exec(x->s, x->c, PS_F_DEL, &p, NULL);
    return r < 0 ? r : 0;
}

/* One statement: the rows go, their contents become candidates, the counts come back. */
static int range_delete(void *ctx, const struct subtree *range, int64_t *ret_rows,
                        int64_t *ret_bytes, bool *ret_candidates)
{
    struct pg_apply *x = ctx;
    struct pg_params p = {0};
    pp_i64(&p, x->sid);
    pp_bytes(&p, range->lo, range->lolen);
    pp_bytes(&p, range->hi, range->hilen);
    pp_i64(&p, x->version);
    _cleanup_pgresult_ PGresult *res = NULL;
    int r = pg_exec(x->s, x->c, PS_F_RANGE_DEL, &p, &res);
    if (r < 0)
        return r;
    *ret_rows = r > 0 ? pg_i64(res, 0, 0) : 0;
    *ret_bytes = r > 0 ? pg_i64(res, 0, 1) : 0;
    *ret_candidates = r > 0 && pg_i64(res, 0, 2) > 0;
    return 0;
}

static int candidate_add(void *ctx, const uint8_t id[CONTENT_ID_LEN])
{
    struct pg_apply *x = ctx;
    struct pg_params p = {0};
    pp_id(&p, id);
    int r = pg_exec(x->s, x->c, PS_CAND_ADD, &p, NULL);
    return r < 0 ? r : 0;
}

/* From the contents locked at the start of the commit (contents_lock). */
static int content_size(void *ctx, const uint8_t id[CONTENT_ID_LEN], int64_t *ret_size)
{
    struct pg_apply *x = ctx;
    size_t lo = 0, hi = x->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(x->ids + CONTENT_ID_LEN * mid, id, CONTENT_ID_LEN);
        if (c == 0) {
            *ret_size = x->sizes[mid];
            return 0;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -ENOENT;
}

/* The bulk primitives: one statement for many rows, which go as array parameters. */

static int rows_get(void *ctx, struct row_read *v, size_t n)
{
    struct pg_apply *x = ctx;
    struct pg_array paths;
    int r = pga_init(&paths, PG_OID_BYTEA);
    for (size_t i = 0; i < n && r >= 0; i++) {
        v[i].row = (struct store_row){0};
        r = pga_bytes(&paths, v[i].path, v[i].len);
    }
    _cleanup_pgresult_ PGresult *res = NULL;
    if (r >= 0) {
        struct pg_params p = {0};
        pp_i64(&p, x->sid);
        pp_array(&p, &paths);
        r = pg_exec(x->s, x->c, PS_F_GET_MANY, &p, &res);
    }
    pga_release(&paths);
    for (int row = 0; row < r; row++) {
        int64_t i = pg_i64(res, row, 0);
        if (i < 1 || (uint64_t)i > n)
            return err_set(-EIO, "corrupt file row");
        struct store_row *out = &v[i - 1].row;
        out->kind = (int)pg_i64(res, row, 1);
        out->size = pg_i64(res, row, 2);
        out->has_content = pg_id(res, row, 3, out->content);
        out->kept = pg_i64(res, row, 4) < x->version;
    }
    return r < 0 ? r : 0;
}

/* One array per column of the files rows. */
enum { COL_PATH, COL_KIND, COL_MODE, COL_SIZE, COL_MTIME, COL_CONTENT, COL_TARGET, NCOLS };

static int rows_put(void *ctx, const struct row_write *v, size_t n)
{
    struct pg_apply *x = ctx;
    static const uint32_t oids[NCOLS] = {PG_OID_BYTEA, PG_OID_INT8,  PG_OID_INT8, PG_OID_INT8,
                                         PG_OID_INT8,  PG_OID_BYTEA, PG_OID_BYTEA};
    struct pg_array col[NCOLS] = {0};
    int r = 0;
    for (int k = 0; k < NCOLS && r >= 0; k++)
        r = pga_init(&col[k], oids[k]);
    for (size_t i = 0; i < n && r >= 0; i++) {
        const struct row_write *w = &v[i];
        r = pga_bytes(&col[COL_PATH], w->path, w->len);
        if (r >= 0)
            r = pga_i64(&col[COL_KIND], w->kind);
        if (r >= 0)
            r = pga_i64(&col[COL_MODE], w->mode);
        if (r >= 0)
            r = pga_i64(&col[COL_SIZE], w->size);
        if (r >= 0)
            r = pga_i64(&col[COL_MTIME], w->mtime_ns);
        if (r >= 0)
            r = pga_bytes(&col[COL_CONTENT], w->content, w->content ? CONTENT_ID_LEN : 0);
        if (r >= 0)
            r = pga_bytes(&col[COL_TARGET], w->target, w->target ? strlen(w->target) : 0);
    }
    if (r >= 0) {
        struct pg_params p = {0};
        pp_i64(&p, x->sid);
        for (int k = 0; k < NCOLS; k++)
            pp_array(&p, &col[k]);
        pp_i64(&p, x->version);
        r = pg_exec(x->s, x->c, PS_F_PUT_MANY, &p, NULL);
    }
    for (int k = 0; k < NCOLS; k++)
        pga_release(&col[k]);
    return r < 0 ? r : 0;
}

static int id_cmp(const void *a, const void *b)
{
    return memcmp(a, b, CONTENT_ID_LEN);
}

/* The candidates distinct (one upsert may not touch a row twice), in id order. */
static int candidates_add(void *ctx, const uint8_t *ids, size_t n)
{
    struct pg_apply *x = ctx;
    _cleanup_free_ uint8_t *v = malloc(n * CONTENT_ID_LEN);
    if (!v)
        return -ENOMEM;
    memcpy(v, ids, n * CONTENT_ID_LEN);
    qsort(v, n, CONTENT_ID_LEN, id_cmp);
    size_t d = 0;
    for (size_t i = 0; i < n; i++)
        if (d == 0 ||
            memcmp(v + CONTENT_ID_LEN * i, v + CONTENT_ID_LEN * (d - 1), CONTENT_ID_LEN) != 0)
            memmove(v + CONTENT_ID_LEN * d++, v + CONTENT_ID_LEN * i, CONTENT_ID_LEN);
    struct pg_params p = {0};
    pp_bytes(&p, v, d * CONTENT_ID_LEN);
    int r = pg_exec(x->s, x->c, PS_CANDS_ADD, &p, NULL);
    return r < 0 ? r : 0;
}

static const struct apply_ops pg_apply_ops = {
    .row_get = row_get,
    .row_put = row_put,
    .dir_update = dir_update,
    .row_delete = row_delete,
    .range_delete = range_delete,
    .content_size = content_size,
    .candidate_add = candidate_add,
    .rows_get = rows_get,
    .rows_put = rows_put,
    .candidates_add = candidates_add,
};

/* Locks every stored content among ids (n, sorted) FOR KEY SHARE, in id order so that GC, which
 * locks in the same order, cannot deadlock with it, and keeps their sizes: a content the commit
 * references cannot be collected before the commit ends. Without `lock` (an unpinned change
 * set: every content it puts is held by a retained version of this sandbox, whose history no
 * one prunes while the commit holds the sandbox's row) it only reads the sizes. */
static int contents_lock(struct pg_apply *x, const uint8_t *ids, size_t n, bool lock)
{
    if (n == 0)
        return 0;
    struct pg_params p = {0};
    pp_bytes(&p, ids, n * CONTENT_ID_LEN);
    _cleanup_pgresult_ PGresult *res = NULL;
    int rows = pg_exec(x->s, x->c, lock ? PS_CONTENT_SIZES_LOCK : PS_CONTENT_SIZES, &p, &res);
    if (rows <= 0)
        return rows;
    x->ids = malloc((size_t)rows * CONTENT_ID_LEN);
    x->sizes = malloc((size_t)rows * sizeof(*x->sizes));
    if (!x->ids || !x->sizes)
        return -ENOMEM;
    for (int i = 0; i < rows; i++) {
        if (!pg_id(res, i, 0, x->ids + CONTENT_ID_LEN * (size_t)i))
            return err_set(-EIO, "corrupt content row");
        x->sizes[i] = pg_i64(res, i, 1);
    }
    x->n = (size_t)rows;
    return 0;
}

/* The change rows [from, to) of cs as the three arrays of a log statement: seq, op, path. */
static int change_rows(struct pg_array col[3], const struct changeset *cs, size_t from, size_t to)
{
    int r = pga_init(&col[0], PG_OID_INT8);
    if (r >= 0)
        r = pga_init(&col[1], PG_OID_INT8);
    if (r >= 0)
        r = pga_init(&col[2], PG_OID_BYTEA);
    for (size_t i = from; i < to && r >= 0; i++) {
        const char *path = cs->items[i].meta.path ? cs->items[i].meta.path : "";
        r = pga_i64(&col[0], (int64_t)i);
        if (r >= 0)
            r = pga_i64(&col[1], (int64_t)cs->items[i].op);
        if (r >= 0)
            r = pga_bytes(&col[2], path, strlen(path));
    }
    return r;
}

static void change_rows_release(struct pg_array col[3])
{
    for (int k = 0; k < 3; k++)
        pga_release(&col[k]);
}

/* Inserts change-log rows [from, to) of cs for commit `commit_id` in one statement. */
static int log_rows(struct pg_apply *x, const struct changeset *cs, int64_t commit_id, size_t from,
                    size_t to)
{
    struct pg_array col[3] = {0};
    int r = change_rows(col, cs, from, to);
    if (r >= 0) {
        struct pg_params p = {0};
        pp_i64(&p, commit_id);
        for (int k = 0; k < 3; k++)
            pp_array(&p, &col[k]);
        r = pg_exec(x->s, x->c, PS_LOG_ADD, &p, NULL);
    }
    change_rows_release(col);
    return r < 0 ? r : 0;
}

/*
 * The statement that ends a commit, in one round trip: the sandbox row's new state (version,
 * size, count, lastUsedAt, cwd), the commit's log row and its first change rows; the commit's
 * id into *ret_id. Change sets longer than LOG_ROWS_PER_INSERT go on in further statements.
 */
static int commit_finish(struct pg_apply *x, const struct changeset *cs, int64_t version,
                         const struct apply *a, int64_t now_ms, int64_t delta, int64_t *ret_id)
{
    size_t first = cs->n < LOG_ROWS_PER_INSERT ? cs->n : LOG_ROWS_PER_INSERT;
    struct pg_array col[3] = {0};
    _cleanup_pgresult_ PGresult *res = NULL;
    int r = change_rows(col, cs, 0, first);
    if (r >= 0) {
        struct pg_params p = {0};
        pp_i64(&p, x->sid);
        pp_i64(&p, version);
        pp_i64(&p, a->size);
        pp_i64(&p, a->count);
        pp_i64(&p, now_ms);
        pp_bytes(&p, cs->new_cwd, cs->new_cwd ? strlen(cs->new_cwd) : 0);
        pp_text(&p, cs->kind);
        pp_text(&p, cs->info_json);
        pp_i64(&p, (int64_t)cs->n);
        pp_i64(&p, delta);
        for (int k = 0; k < 3; k++)
            pp_array(&p, &col[k]);
        r = pg_exec(x->s, x->c, PS_COMMIT_FINISH, &p, &res);
    }
    change_rows_release(col);
    if (r < 0)
        return r;
    if (r != 1)
        return err_set(-EIO, "the commit log row was not created");
    *ret_id = pg_i64(res, 0, 0);
    for (size_t i = first; i < cs->n && r >= 0; i += LOG_ROWS_PER_INSERT)
        r = log_rows(x, cs, *ret_id, i,
                     i + LOG_ROWS_PER_INSERT < cs->n ? i + LOG_ROWS_PER_INSERT : cs->n);
    return r < 0 ? r : 0;
}

/*
 * After the commit that made version x->version was written (its rows, counts and
 * history_bytes): raises the sandbox's history floor as the retention of opts asks and prunes
 * what falls below it (PS_HIST_FLOOR, PS_HIST_PRUNE). *ret_pruned is set when it pruned rows
 * that held content (candidates for GC now).
 * Nothing to do without a retention limit: the floor never moves then.
 */
static int history_prune(struct pg_apply *x, const struct commit_opts *opts, int64_t now_ms,
                         bool *ret_pruned)
{
    *ret_pruned = false;
    if (opts->history_max_commits <= 0 && opts->history_max_age_ms <= 0 && opts->quota_bytes <= 0)
        return 0;
    struct pg_params p = {0};
    pp_i64(&p, x->sid);
    pp_i64(&p, x->version);
    pp_i64(&p, opts->history_max_commits > 0 ? opts->history_max_commits : 0);
    pp_i64(&p, opts->history_max_age_ms > 0 ? opts->history_max_age_ms : 0);
    pp_i64(&p, now_ms);
    pp_i64(&p, opts->quota_bytes > 0 ? opts->quota_bytes : 0);
    _cleanup_pgresult_ PGresult *res = NULL;
    int r = pg_exec(x->s, x->c, PS_HIST_FLOOR, &p, &res);
    if (r < 0)
        return r;
    if (r != 1)
        return err_set(-EIO, "the sandbox row is gone");
    int64_t floor = pg_i64(res, 0, 0), next = pg_i64(res, 0, 1);
    if (next <= floor)
        return 0;
    p = (struct pg_params){0};
    pp_i64(&p, x->sid);
    pp_i64(&p, next);
    _cleanup_pgresult_ PGresult *pruned = NULL;
    r = pg_exec(x->s, x->c, PS_HIST_PRUNE, &p, &pruned);
    if (r < 0)
        return r;
    *ret_pruned = r > 0 && pg_i64(pruned, 0, 0) > 0;
    return 0;
}

/* Drops one pin reference of this store of each of the n contents (sorted ids); with
 * `candidates`, also records each as a GC candidate. */
static int pins_drop(struct pg_store *s, struct pg_conn *c, const uint8_t *ids, size_t n,
                     bool candidates)
{
    if (n == 0)
        return 0;
    struct pg_params p = {0};
    pp_bytes(&p, ids, n * CONTENT_ID_LEN);
    pp_text(&p, s->owner);
    int r = pg_exec(s, c, PS_PINS_DROP, &p, NULL);
    if (r >= 0 && candidates) {
        p.n = 1;
        r = pg_exec(s, c, PS_CANDS_ADD, &p, NULL);
    }
    return r < 0 ? r : 0;
}

/* The sandbox's state, its row locked until the transaction ends: the fence every commit, from
 * any replica, passes one at a time. */
static int sandbox_lock(struct pg_apply *x, const char *id, int64_t *ret_version, struct apply *a)
{
    struct pg_params p = {0};
    pp_text(&p, id);
    _cleanup_pgresult_ PGresult *res = NULL;
    int r = pg_exec(x->s, x->c, PS_SB_STATE_LOCK, &p, &res);
    if (r < 0)
        return r;
    if (r == 0)
        return err_set(-ENOENT, "sandbox not found");
    x->sid = pg_i64(res, 0, 0);
    *ret_version = pg_i64(res, 0, 1);
    a->size = pg_i64(res, 0, 2);
    a->count = pg_i64(res, 0, 3);
    return 0;
}

int pg_commit_in(struct pg_store *s, struct pg_conn *c, const char *id, const struct changeset *cs,
                 const struct commit_opts *opts, const struct sb_state *known,
                 struct commit_result *ret)
{
    struct pg_apply x = {.s = s, .c = c};
    struct apply a = {.ops = &pg_apply_ops, .ctx = &x};
    _cleanup_free_ uint8_t *ids = NULL;
    size_t nids = 0;
    int64_t version = 0;
    int r = changeset_contents(cs, &ids, &nids);
    if (r >= 0 && known) {
        x.sid = known->sid;
        version = known->version;
        a.size = known->size;
        a.count = known->count;
    } else if (r >= 0) {
        r = sandbox_lock(&x, id, &version, &a);
    }
    if (r >= 0 && opts->expect_version >= 0 && opts->expect_version != version)
        r = err_set(-ESTALE, "sandbox changed: version %" PRId64 ", expected %" PRId64, version,
                    opts->expect_version);
    int64_t now_ms = opts->now_ms > 0 ? opts->now_ms : time_now_ms();
    a.now_ns = now_ms * 1000000;
    int64_t old_size = a.size, commit_id = 0;
    x.version = version + 1;
    bool pruned = false;
    if (r >= 0)
        r = contents_lock(&x, ids, nids, !cs->unpinned);
    if (r >= 0)
        r = apply_changes(&a, cs);
    if (r >= 0)
        r = apply_quota_check(opts, old_size, a.size);
    if (r >= 0)
        r = commit_finish(&x, cs, version + 1, &a, now_ms, a.size - old_size, &commit_id);
    if (r >= 0)
        r = history_prune(&x, opts, now_ms, &pruned);
    /* a restore's contents were never pinned for it */
    if (r >= 0 && !cs->unpinned)
        r = pins_drop(s, c, ids, nids, false);
    free(x.ids);
    free(x.sizes);
    if (r < 0)
        return r;
    if (ret) {
        ret->version = version + 1;
        ret->size_bytes = a.size;
        ret->commit_id = commit_id;
        ret->unreferenced = a.unreferenced || pruned;
    }
    return 0;
}

/* pg_tx_check after a lost COMMIT answer: is the commit's log row there? */
static int commit_there(struct pg_store *s, struct pg_conn *c, void *arg)
{
    const struct commit_result *res = arg;
    struct pg_params p = {0};
    pp_i64(&p, res->commit_id);
    int r = pg_exec(s, c, PS_COMMIT_EXISTS, &p, NULL);
    return r < 0 ? r : r > 0;
}

static const struct commit_opts default_opts = {.expect_version = -1};

int pg_commit(struct store *st, const char *sandbox_id, const struct changeset *cs,
              const struct commit_opts *opts, struct commit_result *ret)
{
    struct pg_store *s = to_pg(st);
    struct changeset empty = {0};
    struct commit_result res = {0};
    struct pg_conn *c;
    int r = pg_tx_begin(s, &c);
    if (r < 0)
        return r;
    r = pg_commit_in(s, c, sandbox_id, cs ? cs : &empty, opts ? opts : &default_opts, NULL, &res);
    /* A commit whose log row was never written cannot be in doubt: it never reached COMMIT. */
    r = pg_tx_end(s, c, r, commit_there, &res);
    if (r >= 0 && ret)
        *ret = res;
    return r;
}

/* The change set's contents lose this store's pins and become GC candidates; the collection
 * runs after the transaction, so that whatever nothing else references goes at once. */
int pg_discard(struct store *st, const struct changeset *cs)
{
    struct pg_store *s = to_pg(st);
    _cleanup_free_ uint8_t *ids = NULL;
    size_t n = 0;
    int r = changeset_contents(cs, &ids, &n);
    if (r < 0 || n == 0)
        return r;
    struct pg_conn *c;
    r = pg_tx_begin(s, &c);
    if (r < 0)
        return r;
    r = pg_tx_end(s, c, pins_drop(s, c, ids, n, true), NULL, NULL);
    return r < 0 ? r : pg_gc_run(s, NULL);
}
