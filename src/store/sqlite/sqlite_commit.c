/*
 * sqlite_commit.c — applying a change set (changeset.h) to a sandbox's file rows in one write
 * transaction of the SQLite engine: the row primitives the shared commit driver runs
 * (store/engine.h: path checks, parents, subtree deletes, accounting), the version check, the
 * quota, the commit log, and the pins a commit drops. Every row a commit removes or replaces
 * records its content as a GC candidate (sqlite_int.h).
 */
#include "store/sqlite/sqlite_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "util/cleanup.h"
#include "util/err.h"
#include "util/timeutil.h"

/* The write connection and the sandbox a commit applies to: the apply_ops context. */
struct sq_apply {
    struct conn *c;  /* the write connection (transaction open) */
    int64_t sid;     /* sandbox key */
    int64_t version; /* the version the commit makes: the `since` of the rows it writes */
};

static int row_get(void *ctx, const char *path, size_t len, struct store_row *ret)
{
    struct sq_apply *x = ctx;
    _cleanup_reset_ sqlite3_stmt *st = NULL;
    int r = sq_stmt_get(x->c, ST_F_GET, &st);
    if (r < 0)
        return r;
    r = sq_bind_check(x->c, sqlite3_bind_int64(st, 1, x->sid) | bind_textn(st, 2, path, len));
    if (r < 0)
        return r;
    memset(ret, 0, sizeof(*ret));
    r = sq_stmt_step(x->c, st);
    if (r <= 0)
        return r;
    ret->kind = sqlite3_column_int(st, 0);
    ret->size = sqlite3_column_int64(st, 1);
    ret->has_content = column_id(st, 2, ret->content);
    ret->kept = sqlite3_column_int64(st, 3) < x->version;
    return 0;
}

/* Removes the rows in the range, recording the contents the history does not keep as GC
 * candidates. */
static int range_delete(void *ctx, const struct subtree *range, int64_t *ret_rows,
                        int64_t *ret_bytes, bool *ret_candidates)
{
    struct sq_apply *x = ctx;
    static const enum stmt_id ids[] = {ST_F_RANGE_STATS, ST_F_RANGE_CAND, ST_F_RANGE_DEL};
    *ret_rows = *ret_bytes = 0;
    *ret_candidates = false;
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        sqlite3_stmt *st = NULL;
        int r = sq_stmt_get(x->c, ids[i], &st);
        if (r < 0)
            return r;
        r = sq_bind_check(x->c, sqlite3_bind_int64(st, 1, x->sid) |
                                    bind_textn(st, 2, range->lo, range->lolen) |
                                    bind_textn(st, 3, range->hi, range->hilen));
        if (r < 0)
            return r;
        r = sq_stmt_step(x->c, st);
        if (r > 0 && ids[i] == ST_F_RANGE_STATS) {
            *ret_rows = sqlite3_column_int64(st, 0);
            *ret_bytes = sqlite3_column_int64(st, 1);
        }
        if (r >= 0 && ids[i] == ST_F_RANGE_CAND)
            *ret_candidates = sqlite3_changes(x->c->db) > 0;
        sqlite3_reset(st);
        if (r < 0)
            return r;
        if (*ret_rows == 0)
            return 0; /* nothing below: skip the other two statements */
    }
    return 0;
}

static int candidate_add(void *ctx, const uint8_t id[CONTENT_ID_LEN])
{
    struct sq_apply *x = ctx;
    return sq_run_content(x->c, ST_CAND_ADD, id);
}

static int row_put(void *ctx, const char *path, size_t len, int kind, uint32_t mode, int64_t size,
                   int64_t mtime_ns, const uint8_t *content, const char *target)
{
    struct sq_apply *x = ctx;
    sqlite3_stmt *st = NULL;
    int r = sq_stmt_get(x->c, ST_F_PUT, &st);
    if (r < 0)
        return r;
    r = sq_bind_check(x->c, sqlite3_bind_int64(st, 1, x->sid) | bind_textn(st, 2, path, len) |
                                sqlite3_bind_int(st, 3, kind) | sqlite3_bind_int64(st, 4, mode) |
                                sqlite3_bind_int64(st, 5, size) |
                                sqlite3_bind_int64(st, 6, mtime_ns) |
                                (content ? bind_id(st, 7, content) : sqlite3_bind_null(st, 7)) |
                                bind_text(st, 8, target) | sqlite3_bind_int64(st, 9, x->version));
    return r < 0 ? r : sq_stmt_run(x->c, st);
}

static int dir_update(void *ctx, const char *path, size_t len, uint32_t mode, int64_t mtime_ns)
{
    struct sq_apply *x = ctx;
    sqlite3_stmt *st = NULL;
    int r = sq_stmt_get(x->c, ST_F_SETDIR, &st);
    if (r >= 0)
        r = sq_bind_check(x->c, sqlite3_bind_int64(st, 1, x->sid) | bind_textn(st, 2, path, len) |
                                    sqlite3_bind_int64(st, 3, mode) |
                                    sqlite3_bind_int64(st, 4, mtime_ns) |
                                    sqlite3_bind_int64(st, 5, x->version));
    return r < 0 ? r : sq_stmt_run(x->c, st);
}

static int row_delete(void *ctx, const char *path, size_t len)
{
    struct sq_apply *x = ctx;
    sqlite3_stmt *st = NULL;
    int r = sq_stmt_get(x->c, ST_F_DEL, &st);
    if (r >= 0)
        r = sq_bind_check(x->c, sqlite3_bind_int64(st, 1, x->sid) | bind_textn(st, 2, path, len));
    return r < 0 ? r : sq_stmt_run(x->c, st);
}

static int content_size(void *ctx, const uint8_t id[CONTENT_ID_LEN], int64_t *ret_size)
{
    struct sq_apply *x = ctx;
    _cleanup_reset_ sqlite3_stmt *st = NULL;
    int r = sq_query_content(x->c, ST_CONTENT_SIZE, id, &st);
    if (r < 0)
        return r;
    if (r == 0)
        return -ENOENT;
    *ret_size = sqlite3_column_int64(st, 0);
    return 0;
}

static const struct apply_ops sq_apply_ops = {
    .row_get = row_get,
    .row_put = row_put,
    .dir_update = dir_update,
    .row_delete = row_delete,
    .range_delete = range_delete,
    .content_size = content_size,
    .candidate_add = candidate_add,
};

/* Drops one pin reference of every distinct content the change set puts; with `candidates`,
 * also records each as a GC candidate (the change set was abandoned: nothing references it). */
static int pins_drop(struct conn *c, const struct changeset *cs, bool candidates)
{
    _cleanup_free_ uint8_t *ids = NULL;
    size_t n = 0;
    int r = changeset_contents(cs, &ids, &n);
    for (size_t i = 0; i < n && r >= 0; i++) {
        const uint8_t *id = ids + CONTENT_ID_LEN * i;
        r = sq_run_content(c, ST_PIN_DROP, id);
        if (r >= 0 && sqlite3_changes(c->db) > 0)
            r = sq_run_content(c, ST_PIN_DEL_ZERO, id);
        if (r >= 0 && candidates)
            r = sq_run_content(c, ST_CAND_ADD, id);
    }
    return r;
}

static int commit_log(struct sq_apply *x, const struct changeset *cs, const char *cwd,
                      const struct sq_commit_stats *stats, int64_t now_ms, int64_t delta,
                      int64_t *ret_id)
{
    sqlite3_stmt *st = NULL;
    int r = sq_stmt_get(x->c, ST_COMMIT_INSERT, &st);
    if (r >= 0)
        r = sq_bind_check(
            x->c, sqlite3_bind_int64(st, 1, x->sid) | sqlite3_bind_int64(st, 2, x->version) |
                      bind_text(st, 3, cs->kind) | bind_text(st, 4, cs->info_json) |
                      sqlite3_bind_int64(st, 5, now_ms) |
                      sqlite3_bind_int64(st, 6, (int64_t)cs->n) | sqlite3_bind_int64(st, 7, delta) |
                      bind_text(st, 8, cwd) | sqlite3_bind_int64(st, 9, stats->added) |
                      sqlite3_bind_int64(st, 10, stats->modified) |
                      sqlite3_bind_int64(st, 11, stats->deleted) |
                      sqlite3_bind_int64(st, 12, stats->bytes_added));
    if (r >= 0)
        r = sq_stmt_run(x->c, st);
    if (r < 0)
        return r;
    int64_t commit_id = sqlite3_last_insert_rowid(x->c->db);
    r = sq_stmt_get(x->c, ST_CHANGE_INSERT, &st);
    for (size_t i = 0; i < cs->n && r >= 0; i++) {
        r = sq_bind_check(x->c, sqlite3_bind_int64(st, 1, commit_id) |
                                    sqlite3_bind_int64(st, 2, (int64_t)i) |
                                    sqlite3_bind_int(st, 3, cs->items[i].op) |
                                    bind_text(st, 4, cs->items[i].meta.path));
        if (r >= 0)
            r = sq_stmt_run(x->c, st);
    }
    *ret_id = commit_id;
    return r;
}

/* Applies cs to sandbox `id` inside the open write transaction. */
int sq_commit_locked(struct sqlite_store *s, const char *id, const struct changeset *cs,
                     const struct commit_opts *opts, struct commit_result *ret)
{
    struct sq_apply x = {.c = s->w};
    struct apply a = {.ops = &sq_apply_ops, .ctx = &x};
    int64_t version;
    _cleanup_free_ char *cwd = NULL;
    struct sq_history h = {0};
    {
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        int r = sq_query_sandbox(x.c, ST_SB_STATE, id, &st);
        if (r < 0)
            return r;
        if (r == 0)
            return err_set(-ENOENT, "sandbox not found");
        x.sid = sqlite3_column_int64(st, 0);
        version = sqlite3_column_int64(st, 1);
        a.size = sqlite3_column_int64(st, 2);
        a.count = sqlite3_column_int64(st, 3);
        const char *old_cwd = (const char *)sqlite3_column_text(st, 6);
        cwd = strdup(cs->new_cwd ? cs->new_cwd : old_cwd ? old_cwd : "");
        if (!cwd)
            return -ENOMEM;
        h.floor = sqlite3_column_int64(st, 7);
        h.bytes = sqlite3_column_int64(st, 8);
    }
    if (opts->expect_version >= 0 && opts->expect_version != version)
        return err_set(-ESTALE, "sandbox changed: version %" PRId64 ", expected %" PRId64, version,
                       opts->expect_version);
    x.version = version + 1;
    int64_t now_ms = opts->now_ms > 0 ? opts->now_ms : time_now_ms();
    a.now_ns = now_ms * 1000000;
    int64_t old_size = a.size;
    int r = apply_changes(&a, cs);
    if (r >= 0)
        r = apply_quota_check(opts, old_size, a.size);
    struct sq_commit_stats stats = {0};
    if (r >= 0)
        r = sq_history_stats(x.c, x.sid, x.version, &stats);
    int64_t commit_id = 0;
    if (r >= 0)
        r = commit_log(&x, cs, cwd, &stats, now_ms, a.size - old_size, &commit_id);
    if (r >= 0) {
        h.bytes += stats.bytes_retired;
        r = sq_history_prune(x.c, x.sid, x.version, opts, now_ms, a.size, &h);
    }
    if (r < 0)
        return r;
    sqlite3_stmt *st = NULL;
    r = sq_stmt_get(x.c, ST_SB_UPDATE, &st);
    if (r >= 0)
        r = sq_bind_check(
            x.c, sqlite3_bind_int64(st, 1, x.sid) | sqlite3_bind_int64(st, 2, x.version) |
                     sqlite3_bind_int64(st, 3, a.size) | sqlite3_bind_int64(st, 4, a.count) |
                     sqlite3_bind_int64(st, 5, now_ms) | bind_text(st, 6, cs->new_cwd) |
                     sqlite3_bind_int64(st, 7, h.floor) | sqlite3_bind_int64(st, 8, h.bytes));
    if (r >= 0)
        r = sq_stmt_run(x.c, st);
    if (r >= 0 && !cs->unpinned)
        r = pins_drop(x.c, cs, false);
    if (r < 0)
        return r;
    if (ret) {
        ret->version = x.version;
        ret->size_bytes = a.size;
        ret->commit_id = commit_id;
        ret->unreferenced = a.unreferenced || h.pruned;
    }
    return 0;
}

static const struct commit_opts default_opts = {.expect_version = -1};

int sq_commit(struct store *st, const char *sandbox_id, const struct changeset *cs,
              const struct commit_opts *opts, struct commit_result *ret)
{
    struct sqlite_store *s = to_sq(st);
    struct changeset empty = {0};
    int r = sq_wtx_begin(s);
    if (r < 0)
        return r;
    r = sq_commit_locked(s, sandbox_id, cs ? cs : &empty, opts ? opts : &default_opts, ret);
    return sq_wtx_end(s, r);
}

int sq_files_delete_all(struct sqlite_store *s, int64_t sid)
{
    struct sq_apply x = {.c = s->w, .sid = sid};
    struct apply a = {.ops = &sq_apply_ops, .ctx = &x};
    return apply_delete_all(&a);
}

/* The change set's contents lose their pins and become GC candidates; the collection runs after
 * the transaction, so that whatever nothing else references goes at once. */
int sq_discard(struct store *st, const struct changeset *cs)
{
    struct sqlite_store *s = to_sq(st);
    int r = sq_wtx_begin(s);
    if (r < 0)
        return r;
    r = sq_wtx_end(s, pins_drop(s->w, cs, true));
    return r < 0 ? r : sq_gc_run(s, NULL);
}
