/*
 * sqlite_history.c — sandbox history in the SQLite engine (store.h: History): what a commit
 * records of itself and the pruning it runs, readable versions, the commit list, the paths a
 * commit changed, forks and snapshots. The rows a commit replaces or removes are kept by the
 * triggers on `files` (sqlite_schema.c); everything here reads or prunes them.
 */
#include "store/sqlite/sqlite_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "util/cleanup.h"
#include "util/err.h"
#include "util/home.h"
#include "util/timeutil.h"

/* Prepares statement id with ?1 = a, ?2 = b bound. */
static int stmt_ab(struct conn *c, enum stmt_id id, int64_t a, int64_t b, sqlite3_stmt **ret)
{
    int r = sq_stmt_get(c, id, ret);
    if (r >= 0)
        r = sq_bind_check(c, sqlite3_bind_int64(*ret, 1, a) | sqlite3_bind_int64(*ret, 2, b));
    return r;
}

/* Runs statement id with ?1 = a, ?2 = b, to its end. */
static int run_ab(struct conn *c, enum stmt_id id, int64_t a, int64_t b)
{
    sqlite3_stmt *q = NULL;
    int r = stmt_ab(c, id, a, b, &q);
    return r < 0 ? r : sq_stmt_run(c, q);
}

/* The first column of the one row statement id gives for (a, b), into *ret (NULL or no row:
 * dflt). */
static int query_ab(struct conn *c, enum stmt_id id, int64_t a, int64_t b, int64_t dflt,
                    int64_t *ret)
{
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    int r = stmt_ab(c, id, a, b, &q);
    if (r >= 0)
        r = sq_stmt_step(c, q);
    if (r < 0)
        return r;
    *ret = r > 0 && sqlite3_column_type(q, 0) != SQLITE_NULL ? sqlite3_column_int64(q, 0) : dflt;
    return 0;
}

int sq_version_open(struct conn *c, const char *id, int64_t version, struct sq_version *ret)
{
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    int r = sq_stmt_get(c, ST_H_VERSION, &q);
    if (r >= 0)
        r = sq_bind_check(c, bind_text(q, 1, id) | sqlite3_bind_int64(q, 2, version));
    if (r >= 0)
        r = sq_stmt_step(c, q);
    if (r < 0)
        return r;
    if (r == 0)
        return err_set(-ENOENT, "sandbox not found");
    ret->sid = sqlite3_column_int64(q, 0);
    ret->current = sqlite3_column_int64(q, 1);
    int64_t floor = sqlite3_column_int64(q, 2);
    ret->created_ms = sqlite3_column_int64(q, 4);
    ret->has_commit = sqlite3_column_int(q, 5) != 0;
    bool pinned = sqlite3_column_int(q, 6) != 0;
    if (version == ret->current ||
        (version >= 0 && ret->has_commit && (version >= floor || pinned)))
        return 0;
    return err_set(-ERR_VERSION_NOT_FOUND,
                   "version %" PRId64 " of this sandbox does not exist or was pruned from its "
                   "history (its version is %" PRId64 ")",
                   version, ret->current);
}

/* ---- what a commit records, and pruning --------------------------------------------------- */

int sq_history_stats(struct conn *c, int64_t sid, int64_t version, struct sq_commit_stats *ret)
{
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    int r = stmt_ab(c, ST_H_COMMIT_STATS, sid, version, &q);
    if (r >= 0)
        r = sq_stmt_step(c, q);
    if (r < 0)
        return r;
    if (r == 0)
        return err_set(-EIO, "the commit's statistics gave no row");
    int64_t wrote = sqlite3_column_int64(q, 0), retired = sqlite3_column_int64(q, 1),
            both = sqlite3_column_int64(q, 2);
    ret->added = wrote - both;
    ret->modified = sqlite3_column_int64(q, 3);
    ret->deleted = retired - both;
    ret->bytes_added = sqlite3_column_int64(q, 4);
    ret->bytes_retired = sqlite3_column_int64(q, 5);
    return 0;
}

/* The lowest version the sandbox's commits younger than cut_ms start at (`version` when none
 * is), or h->floor when the oldest retained commit is younger than cut_ms. */
static int age_floor(struct conn *c, int64_t sid, int64_t version, int64_t floor, int64_t cut_ms,
                     int64_t *ret)
{
    int64_t oldest_ms;
    int r = query_ab(c, ST_H_OLDEST_AT, sid, floor, INT64_MAX, &oldest_ms);
    if (r < 0 || oldest_ms >= cut_ms) {
        *ret = floor;
        return r;
    }
    return query_ab(c, ST_H_AGE_FLOOR, sid, cut_ms, version, ret);
}

/* The lowest floor at which the unpinned history rows retired below it hold `excess` bytes
 * (`version` when all of them do not). */
static int bytes_floor(struct conn *c, int64_t sid, int64_t version, int64_t excess, int64_t *ret)
{
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    int r = sq_stmt_get(c, ST_H_BYTES_BY_VTO, &q);
    if (r >= 0)
        r = sq_bind_check(c, sqlite3_bind_int64(q, 1, sid));
    int64_t got = 0;
    *ret = version;
    while (r >= 0 && (r = sq_stmt_step(c, q)) > 0) {
        got += sqlite3_column_int64(q, 1);
        if (got >= excess) {
            *ret = sqlite3_column_int64(q, 0);
            break;
        }
    }
    return r < 0 ? r : 0;
}

/* Removes the history below `floor` that no snapshot needs: rows retired at or before it (their
 * contents become GC candidates), the change log below it, and the commits below it no
 * snapshot names. *ret_bytes gets the file bytes of the rows removed, *ret_candidates whether
 * some content became a GC candidate. */
static int prune_below(struct conn *c, int64_t sid, int64_t floor, int64_t *ret_bytes,
                       bool *ret_candidates)
{
    int r = query_ab(c, ST_H_PRUNE_BYTES, sid, floor, 0, ret_bytes);
    static const enum stmt_id steps[] = {ST_H_PRUNE_CAND, ST_H_PRUNE_ROWS, ST_H_PRUNE_CHANGES,
                                         ST_H_PRUNE_COMMITS};
    *ret_candidates = false;
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]) && r >= 0; i++) {
        r = run_ab(c, steps[i], sid, floor);
        if (r >= 0 && steps[i] == ST_H_PRUNE_CAND)
            *ret_candidates = sqlite3_changes(c->db) > 0;
    }
    return r;
}

int sq_history_prune(struct conn *c, int64_t sid, int64_t version, const struct commit_opts *opts,
                     int64_t now_ms, int64_t size, struct sq_history *h)
{
    int64_t floor = h->floor;
    if (opts->history_max_commits > 0 && version + 1 - opts->history_max_commits > floor)
        floor = version + 1 - opts->history_max_commits;
    int r = 0;
    if (opts->history_max_age_ms > 0) {
        int64_t f;
        r = age_floor(c, sid, version, floor, now_ms - opts->history_max_age_ms, &f);
        if (r >= 0 && f > floor)
            floor = f;
    }
    if (r >= 0 && opts->quota_bytes > 0 && size + h->bytes > opts->quota_bytes) {
        int64_t f;
        r = bytes_floor(c, sid, version, size + h->bytes - opts->quota_bytes, &f);
        if (r >= 0 && f > floor)
            floor = f;
    }
    if (floor > version)
        floor = version;
    if (r < 0 || floor <= h->floor)
        return r;
    int64_t freed = 0;
    r = prune_below(c, sid, floor, &freed, &h->pruned);
    if (r < 0)
        return r;
    h->bytes -= freed;
    h->floor = floor;
    return 0;
}

int sq_history_drop(struct conn *c, int64_t sid)
{
    static const enum stmt_id steps[] = {ST_H_DROP_CAND, ST_H_DROP_ROWS, ST_H_DROP_SNAPSHOTS};
    int r = 0;
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]) && r >= 0; i++) {
        sqlite3_stmt *q = NULL;
        r = sq_stmt_get(c, steps[i], &q);
        if (r >= 0)
            r = sq_bind_check(c, sqlite3_bind_int64(q, 1, sid));
        if (r >= 0)
            r = sq_stmt_run(c, q);
    }
    return r;
}

/* ---- commits ------------------------------------------------------------------------------ */

/* Points a commit_rec at the COMMIT_COLS columns of the current row. */
static void commit_from_row(sqlite3_stmt *q, struct commit_rec *c)
{
    c->version = sqlite3_column_int64(q, 0);
    c->created_ms = sqlite3_column_int64(q, 1);
    c->kind = (char *)sqlite3_column_text(q, 2);
    c->info_json = (char *)sqlite3_column_text(q, 3);
    c->cwd = (char *)sqlite3_column_text(q, 4);
    c->added = sqlite3_column_int64(q, 5);
    c->modified = sqlite3_column_int64(q, 6);
    c->deleted = sqlite3_column_int64(q, 7);
    c->bytes_added = sqlite3_column_int64(q, 8);
}

static int dup_or_null(const char *s, char **ret)
{
    *ret = NULL;
    if (s && !(*ret = strdup(s)))
        return -ENOMEM;
    return 0;
}

int sq_commits_list(struct store *st, const char *sandbox_id, int64_t before, int64_t limit,
                    store_commit_cb cb, void *userdata)
{
    _cleanup_pooled_ struct pooled p = {.s = to_sq(st)};
    int r = sq_pooled_get(&p);
    int64_t sid = 0, floor = 0;
    if (r >= 0) {
        _cleanup_reset_ sqlite3_stmt *q = NULL;
        r = sq_query_sandbox(p.c, ST_SB_STATE, sandbox_id, &q);
        if (r == 0)
            r = err_set(-ENOENT, "sandbox not found");
        if (r > 0) {
            sid = sqlite3_column_int64(q, 0);
            floor = sqlite3_column_int64(q, 7);
        }
    }
    if (r < 0)
        return r;
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    r = sq_stmt_get(p.c, ST_H_COMMITS, &q);
    if (r >= 0)
        r = sq_bind_check(p.c, sqlite3_bind_int64(q, 1, sid) | sqlite3_bind_int64(q, 2, before) |
                                   sqlite3_bind_int64(q, 3, floor) |
                                   sqlite3_bind_int64(q, 4, limit));
    while (r >= 0 && (r = sq_stmt_step(p.c, q)) > 0) {
        struct commit_rec c;
        commit_from_row(q, &c);
        r = cb(&c, userdata);
        if (r != 0)
            return r;
    }
    return r;
}

int sq_commit_get(struct store *st, const char *sandbox_id, int64_t version, struct commit_rec *ret)
{
    _cleanup_pooled_ struct pooled p = {.s = to_sq(st)};
    int r = sq_pooled_get(&p);
    struct sq_version v;
    if (r >= 0)
        r = sq_version_open(p.c, sandbox_id, version, &v);
    if (r < 0)
        return r;
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    r = stmt_ab(p.c, ST_H_COMMIT, v.sid, version, &q);
    if (r >= 0)
        r = sq_stmt_step(p.c, q);
    if (r < 0)
        return r;
    if (r == 0)
        return err_set(-ERR_VERSION_NOT_FOUND, "no commit made version %" PRId64, version);
    struct commit_rec view;
    commit_from_row(q, &view);
    struct commit_rec out = view;
    r = dup_or_null(view.kind, &out.kind);
    if (r >= 0)
        r = dup_or_null(view.info_json, &out.info_json);
    if (r >= 0)
        r = dup_or_null(view.cwd, &out.cwd);
    if (r < 0) {
        commit_rec_release(&out);
        return r;
    }
    *ret = out;
    return 0;
}

int sq_commit_paths(struct store *st, const char *sandbox_id, int64_t version,
                    store_path_change_cb cb, void *userdata)
{
    _cleanup_pooled_ struct pooled p = {.s = to_sq(st)};
    int r = sq_pooled_get(&p);
    struct sq_version v;
    if (r >= 0)
        r = sq_version_open(p.c, sandbox_id, version, &v);
    if (r < 0)
        return r;
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    r = stmt_ab(p.c, ST_H_PATHS, v.sid, version, &q);
    /* Rows come in path order, a path's old row before its new one: an old row is held until
     * the next row tells whether the path was replaced or removed. */
    struct file_meta old = {0};
    bool have_old = false;
    while (r >= 0 && (r = sq_stmt_step(p.c, q)) > 0) {
        struct file_meta m;
        sq_meta_from_row(q, 1, &m);
        if (!m.path) {
            r = err_set(-EIO, "a history row has no path");
            break;
        }
        bool is_new = sqlite3_column_int(q, 0) == 1;
        bool same = have_old && strcmp(old.path, m.path) == 0;
        if (have_old && !(same && is_new)) {
            r = cb(PATH_DELETED, &old, userdata);
            file_meta_release(&old);
            have_old = false;
            if (r != 0)
                break;
        }
        if (is_new) {
            /* a directory whose mtime alone changed is not a change */
            bool touched =
                same && old.kind == FILE_KIND_DIR && m.kind == FILE_KIND_DIR && old.mode == m.mode;
            r = touched ? 0 : cb(same ? PATH_MODIFIED : PATH_ADDED, &m, userdata);
            if (same) {
                file_meta_release(&old);
                have_old = false;
            }
        } else {
            r = file_meta_copy(&old, &m);
            have_old = r >= 0;
        }
        if (r != 0)
            break;
    }
    if (r == 0 && have_old)
        r = cb(PATH_DELETED, &old, userdata);
    file_meta_release(&old);
    return r;
}

/* ---- forks -------------------------------------------------------------------------------- */

/* The cwd of the source at `version` (malloc'd into *ret): its commit's, or the sandbox's own
 * for its current version (and for commits that did not record one). */
static int cwd_at(struct conn *c, const char *id, int64_t sid, int64_t version, bool current,
                  char **ret)
{
    const char *cwd = NULL;
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    _cleanup_reset_ sqlite3_stmt *sb = NULL;
    int r = 0;
    if (!current) {
        r = stmt_ab(c, ST_H_COMMIT, sid, version, &q);
        if (r >= 0)
            r = sq_stmt_step(c, q);
        if (r > 0)
            cwd = (const char *)sqlite3_column_text(q, 4);
    }
    if (r >= 0 && !cwd) {
        r = sq_query_sandbox(c, ST_SB_STATE, id, &sb);
        if (r > 0)
            cwd = (const char *)sqlite3_column_text(sb, 6);
    }
    if (r < 0)
        return r;
    *ret = strdup(cwd ? cwd : SANDBOX_HOME);
    return *ret ? 0 : -ENOMEM;
}

static int fork_locked(struct sqlite_store *s, const char *source_id, int64_t version,
                       const struct sandbox_rec *rec, const char *info_json,
                       const struct commit_opts *o, int64_t now_ms)
{
    struct conn *c = s->w;
    struct sq_version v;
    int r = sq_version_open(c, source_id, version, &v);
    _cleanup_free_ char *cwd = NULL;
    if (r >= 0)
        r = cwd_at(c, source_id, v.sid, version, version == v.current, &cwd);
    struct sandbox_rec nrec = *rec;
    nrec.cwd = cwd;
    if (r >= 0)
        r = sq_sandbox_insert(s, &nrec, o, now_ms);
    int64_t sid = 0, count = 0, size = 0;
    if (r >= 0) {
        _cleanup_reset_ sqlite3_stmt *q = NULL;
        r = sq_query_sandbox(c, ST_H_SB_SID, rec->id, &q);
        if (r == 0)
            r = err_set(-EIO, "the new sandbox's row is missing");
        if (r > 0)
            sid = sqlite3_column_int64(q, 0);
    }
    if (r >= 0) {
        sqlite3_stmt *q = NULL;
        r = sq_stmt_get(c, ST_H_FORK_COPY, &q);
        if (r >= 0)
            r = sq_bind_check(c, sqlite3_bind_int64(q, 1, sid) | sqlite3_bind_int64(q, 2, v.sid) |
                                     sqlite3_bind_int64(q, 3, version));
        if (r >= 0)
            r = sq_stmt_run(c, q);
    }
    if (r >= 0) {
        _cleanup_reset_ sqlite3_stmt *q = NULL;
        r = sq_stmt_get(c, ST_H_TREE_STATS, &q);
        if (r >= 0)
            r = sq_bind_check(c, sqlite3_bind_int64(q, 1, sid));
        if (r >= 0)
            r = sq_stmt_step(c, q);
        if (r > 0) {
            count = sqlite3_column_int64(q, 0);
            size = sqlite3_column_int64(q, 1);
        }
    }
    if (r >= 0)
        r = apply_quota_check(o, 0, size);
    if (r >= 0) {
        sqlite3_stmt *q = NULL;
        r = sq_stmt_get(c, ST_H_FORK_SET, &q);
        if (r >= 0)
            r = sq_bind_check(c, sqlite3_bind_int64(q, 1, sid) | sqlite3_bind_int64(q, 2, size) |
                                     sqlite3_bind_int64(q, 3, count) | bind_text(q, 4, cwd) |
                                     sqlite3_bind_int64(q, 5, now_ms));
        if (r >= 0)
            r = sq_stmt_run(c, q);
    }
    if (r >= 0) {
        /* The log row holds no changes: a checkout of the fork is built whole. */
        sqlite3_stmt *q = NULL;
        r = sq_stmt_get(c, ST_COMMIT_INSERT, &q);
        if (r >= 0)
            r = sq_bind_check(
                c, sqlite3_bind_int64(q, 1, sid) | sqlite3_bind_int64(q, 2, 1) |
                       bind_text(q, 3, "fork") | bind_text(q, 4, info_json) |
                       sqlite3_bind_int64(q, 5, now_ms) | sqlite3_bind_int64(q, 6, count) |
                       sqlite3_bind_int64(q, 7, size) | bind_text(q, 8, cwd) |
                       sqlite3_bind_int64(q, 9, count) | sqlite3_bind_int64(q, 10, 0) |
                       sqlite3_bind_int64(q, 11, 0) | sqlite3_bind_int64(q, 12, size));
        if (r >= 0)
            r = sq_stmt_run(c, q);
    }
    return r;
}

int sq_sandbox_fork(struct store *st, const char *source_id, int64_t version,
                    const struct sandbox_rec *rec, const char *info_json,
                    const struct commit_opts *opts)
{
    struct sqlite_store *s = to_sq(st);
    struct commit_opts o = opts ? *opts : (struct commit_opts){0};
    int64_t now_ms = o.now_ms > 0 ? o.now_ms : time_now_ms();
    int r = sq_wtx_begin(s);
    if (r < 0)
        return r;
    return sq_wtx_end(s, fork_locked(s, source_id, version, rec, info_json, &o, now_ms));
}

/* ---- snapshots ---------------------------------------------------------------------------- */

static void snapshot_from_row(sqlite3_stmt *q, struct snapshot_rec *p)
{
    p->name = (char *)sqlite3_column_text(q, 0);
    p->version = sqlite3_column_int64(q, 1);
    p->created_ms = sqlite3_column_int64(q, 2);
}

static int snapshot_create_locked(struct conn *c, const char *sandbox_id, const char *name,
                                  int64_t version, int64_t now_ms, int64_t max)
{
    struct sq_version v;
    int r = sq_version_open(c, sandbox_id, version, &v);
    if (r < 0)
        return r;
    if (max > 0) {
        int64_t n = 0;
        _cleanup_reset_ sqlite3_stmt *q = NULL;
        r = sq_stmt_get(c, ST_H_SNAP_COUNT, &q);
        if (r >= 0)
            r = sq_bind_check(c, sqlite3_bind_int64(q, 1, v.sid));
        if (r >= 0)
            r = sq_stmt_step(c, q);
        if (r < 0)
            return r;
        if (r > 0)
            n = sqlite3_column_int64(q, 0);
        if (n >= max)
            return err_set(
                -E2BIG, "this sandbox has %" PRId64 " snapshots, the limit; delete one first", n);
    }
    sqlite3_stmt *q = NULL;
    r = sq_stmt_get(c, ST_H_SNAP_INSERT, &q);
    if (r >= 0)
        r = sq_bind_check(c, sqlite3_bind_int64(q, 1, v.sid) | bind_text(q, 2, name) |
                                 sqlite3_bind_int64(q, 3, version) |
                                 sqlite3_bind_int64(q, 4, now_ms));
    if (r < 0)
        return r;
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
        return err_set(-EEXIST, "this sandbox has a snapshot named %s already", name);
    return rc == SQLITE_DONE ? 0 : sq_fail(c, rc);
}

int sq_snapshot_create(struct store *st, const char *sandbox_id, const char *name, int64_t version,
                       int64_t now_ms, int64_t max)
{
    struct sqlite_store *s = to_sq(st);
    int r = sq_wtx_begin(s);
    if (r < 0)
        return r;
    return sq_wtx_end(s, snapshot_create_locked(s->w, sandbox_id, name, version, now_ms, max));
}

int sq_snapshot_get(struct store *st, const char *sandbox_id, const char *name,
                    struct snapshot_rec *ret)
{
    _cleanup_pooled_ struct pooled p = {.s = to_sq(st)};
    int r = sq_pooled_get(&p);
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    if (r >= 0)
        r = sq_stmt_get(p.c, ST_H_SNAP_GET, &q);
    if (r >= 0)
        r = sq_bind_check(p.c, bind_text(q, 1, sandbox_id) | bind_text(q, 2, name));
    if (r >= 0)
        r = sq_stmt_step(p.c, q);
    if (r < 0)
        return r;
    if (r == 0)
        return err_set(-ENOENT, "no snapshot named %s", name);
    struct snapshot_rec view;
    snapshot_from_row(q, &view);
    struct snapshot_rec out = view;
    if (!(out.name = strdup(view.name ? view.name : "")))
        return -ENOMEM;
    *ret = out;
    return 0;
}

int sq_snapshot_list(struct store *st, const char *sandbox_id, store_snapshot_cb cb, void *userdata)
{
    _cleanup_pooled_ struct pooled p = {.s = to_sq(st)};
    int r = sq_pooled_get(&p);
    struct sq_version v;
    if (r >= 0)
        r = sq_version_open(p.c, sandbox_id, -1, &v);
    if (r == -ERR_VERSION_NOT_FOUND) {
        err_clear();
        r = 0; /* the sandbox exists: only version -1 does not */
    }
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    if (r >= 0)
        r = sq_stmt_get(p.c, ST_H_SNAP_LIST, &q);
    if (r >= 0)
        r = sq_bind_check(p.c, bind_text(q, 1, sandbox_id));
    while (r >= 0 && (r = sq_stmt_step(p.c, q)) > 0) {
        struct snapshot_rec sn;
        snapshot_from_row(q, &sn);
        r = cb(&sn, userdata);
        if (r != 0)
            return r;
    }
    return r;
}

/* Deletes the snapshot and, at once, the history below the floor only it kept. */
static int snapshot_delete_locked(struct conn *c, const char *sandbox_id, const char *name,
                                  bool *ret_pruned)
{
    int64_t sid, floor;
    {
        _cleanup_reset_ sqlite3_stmt *q = NULL;
        int r = sq_query_sandbox(c, ST_SB_STATE, sandbox_id, &q);
        if (r <= 0)
            return r < 0 ? r : err_set(-ENOENT, "sandbox not found");
        sid = sqlite3_column_int64(q, 0);
        floor = sqlite3_column_int64(q, 7);
    }
    sqlite3_stmt *q = NULL;
    int r = sq_stmt_get(c, ST_H_SNAP_DEL, &q);
    if (r >= 0)
        r = sq_bind_check(c, bind_text(q, 1, sandbox_id) | bind_text(q, 2, name));
    if (r >= 0)
        r = sq_stmt_run(c, q);
    if (r >= 0 && sqlite3_changes(c->db) == 0)
        r = err_set(-ENOENT, "no snapshot named %s", name);
    int64_t freed = 0;
    if (r >= 0)
        r = prune_below(c, sid, floor, &freed, ret_pruned);
    if (r >= 0 && freed > 0)
        r = run_ab(c, ST_H_BYTES_SUB, sid, freed);
    return r;
}

int sq_snapshot_delete(struct store *st, const char *sandbox_id, const char *name)
{
    struct sqlite_store *s = to_sq(st);
    int r = sq_wtx_begin(s);
    if (r < 0)
        return r;
    bool pruned = false;
    r = sq_wtx_end(s, snapshot_delete_locked(s->w, sandbox_id, name, &pruned));
    if (r >= 0 && pruned)
        (void)sq_gc_run(s, NULL); /* what is not collected now stays a candidate */
    return r;
}
