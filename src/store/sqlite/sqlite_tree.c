/*
 * sqlite_tree.c — reads of a sandbox's file rows in the SQLite engine: stat (the root is
 * implicit), list (a range scan in path order that skips whole subtrees below max_depth with one
 * index seek each), the same at a past version (stat_at, list_at: the rows live at it),
 * has_children and changes_since (the commit log). Each runs on a pooled
 * read-only connection.
 */
#include "store/sqlite/sqlite_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "util/err.h"

/* 0 when the sandbox exists, -ENOENT when not; *ret_created_ms gets its creation time. */
static int sandbox_exists(struct conn *c, const char *id, int64_t *ret_created_ms)
{
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    int r = sq_query_sandbox(c, ST_SB_CREATED, id, &q);
    if (r == 0)
        return err_set(-ENOENT, "sandbox not found");
    if (r > 0 && ret_created_ms)
        *ret_created_ms = sqlite3_column_int64(q, 0);
    return r < 0 ? r : 0;
}

static int stat_locked(struct conn *c, const char *sandbox_id, const char *path,
                       struct file_meta *ret)
{
    if (strcmp(path, "/") == 0) {
        /* The root has no row: it is a directory that always exists. */
        int64_t created_ms = 0;
        int r = sandbox_exists(c, sandbox_id, &created_ms);
        return r < 0 ? r : root_meta(created_ms, ret);
    }
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    int r = sq_stmt_get(c, ST_F_STAT, &q);
    if (r >= 0)
        r = sq_bind_check(c, bind_text(q, 1, sandbox_id) | bind_text(q, 2, path));
    if (r >= 0)
        r = sq_stmt_step(c, q);
    if (r < 0)
        return r;
    if (r == 0)
        return err_set(-ENOENT, "no such file or directory: %s", path);
    struct file_meta view;
    sq_meta_from_row(q, 0, &view);
    return file_meta_copy(ret, &view);
}

int sq_stat(struct store *st, const char *sandbox_id, const char *path, struct file_meta *ret)
{
    struct sqlite_store *s = to_sq(st);
    struct conn *c;
    int r = sq_pool_get(s, &c);
    if (r < 0)
        return r;
    r = stat_locked(c, sandbox_id, path, ret);
    sq_pool_put(s, c);
    return r;
}

struct walk {
    struct conn *c;
    const char *sandbox_id;
    int64_t sid;          /* with version >= 0: the sandbox's key */
    int64_t version;      /* the version walked (ST_H_LIST); < 0: the current tree (ST_F_LIST) */
    struct subtree range; /* what is left to walk (lo moves forward on skips) */
    size_t base;          /* offset of the first byte below the prefix */
    int max_depth;
    bool seen; /* some row lies below the prefix */
};

/* Walks [lo, hi); on a row deeper than max_depth restarts after that row's ancestor at
 * max_depth (its whole subtree is skipped by one index seek). */
static int walk_run(struct walk *w, store_file_cb cb, void *userdata)
{
    sqlite3_stmt *q = NULL;
    bool at = w->version >= 0;
    int r = sq_stmt_get(w->c, at ? ST_H_LIST : ST_F_LIST, &q);
    while (r >= 0) {
        if (at)
            r = sq_bind_check(w->c, sqlite3_bind_int64(q, 1, w->sid) |
                                        sqlite3_bind_int64(q, 2, w->version) |
                                        bind_textn(q, 3, w->range.lo, w->range.lolen) |
                                        bind_textn(q, 4, w->range.hi, w->range.hilen));
        else
            r = sq_bind_check(w->c, bind_text(q, 1, w->sandbox_id) |
                                        bind_textn(q, 2, w->range.lo, w->range.lolen) |
                                        bind_textn(q, 3, w->range.hi, w->range.hilen));
        bool restart = false;
        while (r >= 0 && !restart) {
            r = sq_stmt_step(w->c, q);
            if (r <= 0)
                break;
            w->seen = true;
            const char *path = (const char *)sqlite3_column_text(q, 0);
            size_t cut = path ? walk_depth_cut(path, w->base, w->max_depth) : 0;
            if (cut) {
                r = subtree_seek(&w->range, path, cut, '0');
                restart = r >= 0;
                break;
            }
            struct file_meta m;
            sq_meta_from_row(q, 0, &m);
            r = cb(&m, userdata);
            if (r != 0)
                break;
        }
        sqlite3_reset(q);
        if (!restart)
            break;
    }
    return r;
}

int sq_list(struct store *st, const char *sandbox_id, const char *prefix, int max_depth,
            store_file_cb cb, void *userdata)
{
    struct sqlite_store *s = to_sq(st);
    size_t len = strlen(prefix);
    if (!path_ok(prefix, len))
        return err_set(-EINVAL, "invalid path");
    struct walk w = {.sandbox_id = sandbox_id, .max_depth = max_depth, .version = -1};
    w.base = len == 1 ? 1 : len + 1;
    int r = subtree_init(&w.range, prefix, len);
    if (r >= 0)
        r = sq_pool_get(s, &w.c);
    if (r >= 0) {
        r = walk_run(&w, cb, userdata);
        if (r == 0 && !w.seen)
            r = sandbox_exists(w.c, sandbox_id, NULL);
        sq_pool_put(s, w.c);
    }
    subtree_release(&w.range);
    return r;
}

int sq_stat_at(struct store *st, const char *sandbox_id, int64_t version, const char *path,
               struct file_meta *ret)
{
    _cleanup_pooled_ struct pooled p = {.s = to_sq(st)};
    int r = sq_pooled_get(&p);
    struct sq_version v;
    if (r >= 0)
        r = sq_version_open(p.c, sandbox_id, version, &v);
    if (r < 0)
        return r;
    if (strcmp(path, "/") == 0)
        return root_meta(v.created_ms, ret);
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    r = sq_stmt_get(p.c, ST_H_STAT, &q);
    if (r >= 0)
        r = sq_bind_check(p.c, sqlite3_bind_int64(q, 1, v.sid) | sqlite3_bind_int64(q, 2, version) |
                                   bind_text(q, 3, path));
    if (r >= 0)
        r = sq_stmt_step(p.c, q);
    if (r < 0)
        return r;
    if (r == 0)
        return err_set(-ENOENT, "no such file or directory at version %" PRId64 ": %s", version,
                       path);
    struct file_meta view;
    sq_meta_from_row(q, 0, &view);
    return file_meta_copy(ret, &view);
}

int sq_list_at(struct store *st, const char *sandbox_id, int64_t version, const char *prefix,
               int max_depth, store_file_cb cb, void *userdata)
{
    size_t len = strlen(prefix);
    if (!path_ok(prefix, len))
        return err_set(-EINVAL, "invalid path");
    _cleanup_pooled_ struct pooled p = {.s = to_sq(st)};
    int r = sq_pooled_get(&p);
    struct sq_version v;
    if (r >= 0)
        r = sq_version_open(p.c, sandbox_id, version, &v);
    if (r < 0)
        return r;
    struct walk w = {.c = p.c,
                     .sandbox_id = sandbox_id,
                     .sid = v.sid,
                     .version = version,
                     .max_depth = max_depth};
    w.base = len == 1 ? 1 : len + 1;
    r = subtree_init(&w.range, prefix, len);
    if (r >= 0)
        r = walk_run(&w, cb, userdata);
    subtree_release(&w.range);
    return r;
}

int sq_has_children(struct store *st, const char *sandbox_id, const char *path)
{
    struct sqlite_store *s = to_sq(st);
    size_t len = strlen(path);
    if (!path_ok(path, len))
        return err_set(-EINVAL, "invalid path");
    struct subtree range;
    struct conn *c;
    int r = subtree_init(&range, path, len);
    if (r >= 0)
        r = sq_pool_get(s, &c);
    if (r >= 0) {
        {
            _cleanup_reset_ sqlite3_stmt *q = NULL;
            r = sq_stmt_get(c, ST_F_HAS_CHILD, &q);
            if (r >= 0)
                r = sq_bind_check(c, bind_text(q, 1, sandbox_id) |
                                         bind_textn(q, 2, range.lo, range.lolen) |
                                         bind_textn(q, 3, range.hi, range.hilen));
            if (r >= 0)
                r = sq_stmt_step(c, q);
        }
        if (r == 0)
            r = sandbox_exists(c, sandbox_id, NULL);
        sq_pool_put(s, c);
    }
    subtree_release(&range);
    return r;
}

/* The commit log of versions (since, to]: its commits counted first (each must be there, and
 * their changes within max_changes), then its change rows streamed in order. */
static int changes_locked(struct conn *c, const char *sandbox_id, int64_t since, int64_t to,
                          size_t max_changes, store_change_cb cb, void *userdata)
{
    int64_t commits = 0, changes = 0;
    {
        _cleanup_reset_ sqlite3_stmt *q = NULL;
        int r = sq_stmt_get(c, ST_LOG_COUNT, &q);
        if (r >= 0)
            r = sq_bind_check(c, bind_text(q, 1, sandbox_id) | sqlite3_bind_int64(q, 2, since) |
                                     sqlite3_bind_int64(q, 3, to));
        if (r >= 0)
            r = sq_stmt_step(c, q);
        if (r < 0)
            return r;
        commits = sqlite3_column_int64(q, 0);
        changes = sqlite3_column_int64(q, 1);
    }
    if (commits == 0 && to > since) {
        int r = sandbox_exists(c, sandbox_id, NULL);
        if (r < 0)
            return r;
    }
    if (commits != to - since || changes < 0 || (uint64_t)changes > max_changes)
        return err_set(-ERANGE, "the commit log does not hold those versions' changes");
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    int r = sq_stmt_get(c, ST_LOG_CHANGES, &q);
    if (r >= 0)
        r = sq_bind_check(c, bind_text(q, 1, sandbox_id) | sqlite3_bind_int64(q, 2, since) |
                                 sqlite3_bind_int64(q, 3, to));
    int64_t seen = 0;
    while (r >= 0 && (r = sq_stmt_step(c, q)) > 0) {
        const char *path = (const char *)sqlite3_column_text(q, 2);
        if (!path)
            return err_set(-EIO, "a change-log row has no path");
        seen++;
        r = cb(sqlite3_column_int64(q, 0), sqlite3_column_int(q, 1), path, userdata);
        if (r != 0)
            return r;
    }
    if (r == 0 && seen != changes)
        r = err_set(-ERANGE, "the commit log changed while it was read");
    return r;
}

int sq_changes_since(struct store *st, const char *sandbox_id, int64_t since_version,
                     int64_t to_version, size_t max_changes, store_change_cb cb, void *userdata)
{
    struct sqlite_store *s = to_sq(st);
    struct conn *c;
    int r = sq_pool_get(s, &c);
    if (r < 0)
        return r;
    r = changes_locked(c, sandbox_id, since_version, to_version, max_changes, cb, userdata);
    sq_pool_put(s, c);
    return r;
}
