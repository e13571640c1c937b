/*
 * sqlite_sandbox.c — sandbox rows of the SQLite engine: create (with its first commit and the
 * owner's sandbox limit, in one transaction), get, list, delete (rows, files, commit log, then
 * GC), touch and the network settings.
 */
#include "store/sqlite/sqlite_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "util/err.h"
#include "util/home.h"
#include "util/timeutil.h"

/* Fills a sandbox_rec whose strings point at the columns of the current row. */
static void rec_from_row(sqlite3_stmt *st, struct sandbox_rec *r)
{
    memset(r, 0, sizeof(*r));
    const unsigned char *id = sqlite3_column_text(st, 0);
    if (id)
        snprintf(r->id, sizeof(r->id), "%s", (const char *)id);
    r->tenant = (char *)sqlite3_column_text(st, 1);
    r->sub = (char *)sqlite3_column_text(st, 2);
    r->name = (char *)sqlite3_column_text(st, 3);
    r->env_json = (char *)sqlite3_column_text(st, 4);
    r->python = sqlite3_column_int(st, 5) != 0;
    r->javascript = sqlite3_column_int(st, 6) != 0;
    r->network = sqlite3_column_int(st, 7) != 0;
    r->cwd = (char *)sqlite3_column_text(st, 8);
    r->created_ms = sqlite3_column_int64(st, 9);
    r->last_used_ms = sqlite3_column_int64(st, 10);
    r->version = sqlite3_column_int64(st, 11);
    r->size_bytes = sqlite3_column_int64(st, 12);
    r->file_count = sqlite3_column_int64(st, 13);
    r->network_policy = (char *)sqlite3_column_text(st, 14);
}

/* Inside the write transaction (so two creates cannot both pass at max - 1): -ERR_SANDBOX_LIMIT
 * when rec's owner has `max` sandboxes already. Counts at most `max` rows of the owner index. */
static int owner_limit_check(struct conn *c, const struct sandbox_rec *rec, int64_t max)
{
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    int r = sq_stmt_get(c, ST_SB_COUNT_OWNER, &q);
    if (r >= 0)
        r = sq_bind_check(c, bind_text(q, 1, rec->tenant) | bind_text(q, 2, rec->sub) |
                                 sqlite3_bind_int64(q, 3, max));
    if (r >= 0)
        r = sq_stmt_step(c, q);
    if (r < 0)
        return r;
    if (r > 0 && sqlite3_column_int64(q, 0) >= max)
        return err_set(-ERR_SANDBOX_LIMIT,
                       "this owner already has %" PRId64 " sandboxes, the limit; delete one to "
                       "create another",
                       max);
    return 0;
}

int sq_sandbox_insert(struct sqlite_store *s, const struct sandbox_rec *rec,
                      const struct commit_opts *o, int64_t now_ms)
{
    if (!rec->tenant || !rec->sub || !rec->id[0])
        return err_set(-EINVAL, "sandbox owner and id are required");
    int r = 0;
    if (o->max_owner_sandboxes > 0)
        r = owner_limit_check(s->w, rec, o->max_owner_sandboxes);
    sqlite3_stmt *ins = NULL;
    if (r >= 0)
        r = sq_stmt_get(s->w, ST_SB_INSERT, &ins);
    if (r >= 0)
        r = sq_bind_check(
            s->w, bind_text(ins, 1, rec->id) | bind_text(ins, 2, rec->tenant) |
                      bind_text(ins, 3, rec->sub) | bind_text(ins, 4, rec->name) |
                      bind_text(ins, 5, rec->env_json ? rec->env_json : "{}") |
                      sqlite3_bind_int(ins, 6, rec->python) |
                      sqlite3_bind_int(ins, 7, rec->javascript) |
                      sqlite3_bind_int(ins, 8, rec->network) |
                      bind_text(ins, 9, rec->cwd ? rec->cwd : SANDBOX_HOME) |
                      sqlite3_bind_int64(ins, 10, rec->created_ms ? rec->created_ms : now_ms) |
                      sqlite3_bind_int64(ins, 11, rec->last_used_ms) |
                      bind_text(ins, 12, rec->network_policy));
    if (r >= 0) {
        int rc = sqlite3_step(ins);
        sqlite3_reset(ins);
        if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
            r = err_set(-EEXIST, "sandbox already exists");
        else if (rc != SQLITE_DONE)
            r = sq_fail(s->w, rc);
    }
    return r;
}

int sq_sandbox_create(struct store *st, const struct sandbox_rec *rec,
                      const struct changeset *initial, const struct commit_opts *opts)
{
    struct sqlite_store *s = to_sq(st);
    struct commit_opts o = opts ? *opts : (struct commit_opts){0};
    o.expect_version = -1;
    int64_t now_ms = o.now_ms > 0 ? o.now_ms : time_now_ms();
    int r = sq_wtx_begin(s);
    if (r < 0)
        return r;
    r = sq_sandbox_insert(s, rec, &o, now_ms);
    if (r >= 0 && initial)
        r = sq_commit_locked(s, rec->id, initial, &o, NULL);
    return sq_wtx_end(s, r);
}

/* Copies the current sandbox row into ret (owned strings). */
static int rec_copy_row(sqlite3_stmt *st, struct sandbox_rec *ret)
{
    struct sandbox_rec view;
    rec_from_row(st, &view);
    return sandbox_rec_dup(&view, ret);
}

int sq_sandbox_get(struct store *st, const char *id, const char *tenant, const char *sub,
                   struct sandbox_rec *ret)
{
    _cleanup_pooled_ struct pooled p = {.s = to_sq(st)};
    int r = sq_pooled_get(&p);
    if (r < 0)
        return r;
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    r = sq_query_sandbox(p.c, ST_SB_GET, id, &q);
    if (r == 0 || (r > 0 && !owner_matches(tenant, sub, (const char *)sqlite3_column_text(q, 1),
                                           (const char *)sqlite3_column_text(q, 2))))
        r = err_set(-ENOENT, "sandbox not found");
    else if (r > 0)
        r = rec_copy_row(q, ret);
    return r;
}

int sq_sandbox_list(struct store *st, const char *tenant, const char *sub, store_sandbox_cb cb,
                    void *userdata)
{
    _cleanup_pooled_ struct pooled p = {.s = to_sq(st)};
    int r = sq_pooled_get(&p);
    if (r < 0)
        return r;
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    r = sq_stmt_get(p.c, tenant && sub ? ST_SB_LIST_OWNER : ST_SB_LIST_ANY, &q);
    if (r >= 0)
        r = sq_bind_check(p.c, bind_text(q, 1, tenant) | bind_text(q, 2, sub));
    while (r >= 0) {
        r = sq_stmt_step(p.c, q);
        if (r <= 0)
            break;
        struct sandbox_rec rec;
        rec_from_row(q, &rec);
        r = cb(&rec, userdata);
        if (r != 0)
            break;
    }
    return r;
}

int sq_sandbox_count(struct store *st, int64_t *ret)
{
    _cleanup_pooled_ struct pooled p = {.s = to_sq(st)};
    int r = sq_pooled_get(&p);
    if (r < 0)
        return r;
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    r = sq_stmt_get(p.c, ST_SB_COUNT, &q);
    if (r >= 0)
        r = sq_stmt_step(p.c, q);
    if (r < 0)
        return r;
    if (r == 0)
        return err_set(-EIO, "store answered no row");
    *ret = sqlite3_column_int64(q, 0);
    return 0;
}

int sq_sandbox_delete(struct store *st, const char *id, const char *tenant, const char *sub)
{
    struct sqlite_store *s = to_sq(st);
    int r = sq_wtx_begin(s);
    if (r < 0)
        return r;
    int64_t sid = 0;
    {
        _cleanup_reset_ sqlite3_stmt *q = NULL;
        r = sq_query_sandbox(s->w, ST_SB_STATE, id, &q);
        if (r == 0 || (r > 0 && !owner_matches(tenant, sub, (const char *)sqlite3_column_text(q, 4),
                                               (const char *)sqlite3_column_text(q, 5))))
            r = err_set(-ENOENT, "sandbox not found");
        else if (r > 0)
            sid = sqlite3_column_int64(q, 0);
    }
    /* The sandbox row goes first: with it gone, the files' delete keeps no history. */
    static const enum stmt_id dels[] = {ST_SB_DELETE, ST_COMMITS_DEL_CHANGES, ST_COMMITS_DEL};
    for (size_t i = 0; i < sizeof(dels) / sizeof(dels[0]) && r >= 0; i++) {
        sqlite3_stmt *q = NULL;
        r = sq_stmt_get(s->w, dels[i], &q);
        if (r >= 0)
            r = sq_bind_check(s->w, sqlite3_bind_int64(q, 1, sid));
        if (r >= 0)
            r = sq_stmt_run(s->w, q);
    }
    if (r >= 0)
        r = sq_files_delete_all(s, sid);
    if (r >= 0)
        r = sq_history_drop(s->w, sid);
    if (r >= 0)
        r = sq_journal_drop(s->w, sid);
    r = sq_wtx_end(s, r);
    if (r < 0)
        return r;
    /* The sandbox is gone whatever GC does; what it cannot collect now stays a candidate. */
    struct gc_stats stats;
    (void)sq_gc_run(s, &stats);
    return 0;
}

int sq_sandbox_touch(struct store *st, const char *id, int64_t now_ms)
{
    struct sqlite_store *s = to_sq(st);
    int r = sq_wtx_begin(s);
    if (r < 0)
        return r;
    sqlite3_stmt *q = NULL;
    r = sq_stmt_get(s->w, ST_SB_TOUCH, &q);
    if (r >= 0)
        r = sq_bind_check(s->w, bind_text(q, 1, id) | sqlite3_bind_int64(q, 2, now_ms));
    if (r >= 0)
        r = sq_stmt_run(s->w, q);
    if (r >= 0 && sqlite3_changes(s->w->db) == 0)
        r = err_set(-ENOENT, "sandbox not found");
    return sq_wtx_end(s, r);
}

int sq_sandbox_set_network(struct store *st, const char *id, const char *tenant, const char *sub,
                           bool network, const char *policy_json)
{
    struct sqlite_store *s = to_sq(st);
    int r = sq_wtx_begin(s);
    if (r < 0)
        return r;
    sqlite3_stmt *q = NULL;
    r = sq_stmt_get(s->w, ST_SB_SET_NETWORK, &q);
    if (r >= 0)
        r = sq_bind_check(s->w, bind_text(q, 1, id) | sqlite3_bind_int(q, 2, network) |
                                    bind_text(q, 3, policy_json) | bind_text(q, 4, tenant) |
                                    bind_text(q, 5, sub));
    if (r >= 0)
        r = sq_stmt_run(s->w, q);
    if (r >= 0 && sqlite3_changes(s->w->db) == 0)
        r = err_set(-ENOENT, "sandbox not found");
    return sq_wtx_end(s, r);
}
