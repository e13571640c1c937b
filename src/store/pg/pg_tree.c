/*
 * pg_tree.c — reads of a sandbox's file rows in the PostgreSQL engine: stat (the root is
 * implicit), list (pages of PG_PAGE_ROWS rows in path order, the connection given back before
 * the callbacks run; a row deeper than max_depth restarts the walk past its ancestor's subtree)
 * and has_children; the same at a past version (the tree of files and file_history rows live
 * at it), the commits retained and the paths a commit changed.
 */
#include "store/pg/pg_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

/* Columns of FILE_COLS (pg_schema.c). */
enum { C_PATH, C_KIND, C_MODE, C_SIZE, C_MTIME, C_CONTENT, C_TARGET };

/* Points the file_meta at the FILE_COLS of row i starting at column `base` (valid while res
 * lives). */
static void meta_from_cols(const PGresult *res, int i, int base, struct file_meta *m)
{
    memset(m, 0, sizeof(*m));
    m->path = (char *)pg_bytes(res, i, base + C_PATH, NULL);
    m->kind = (enum file_kind)pg_i64(res, i, base + C_KIND);
    m->mode = (uint32_t)pg_i64(res, i, base + C_MODE);
    m->size = pg_i64(res, i, base + C_SIZE);
    m->mtime_ns = pg_i64(res, i, base + C_MTIME);
    m->has_content = pg_id(res, i, base + C_CONTENT, m->content);
    m->target = (char *)pg_bytes(res, i, base + C_TARGET, NULL);
}

static void meta_from_row(const PGresult *res, int i, struct file_meta *m)
{
    meta_from_cols(res, i, 0, m);
}

/* 0 when the sandbox exists, -ENOENT when not; *ret_created_ms (may be NULL) gets its creation
 * time. */
static int sandbox_exists(struct pg_store *s, struct pg_conn *c, const char *id,
                          int64_t *ret_created_ms)
{
    struct pg_params p = {0};
    pp_text(&p, id);
    _cleanup_pgresult_ PGresult *res = NULL;
    int r = pg_exec(s, c, PS_SB_CREATED, &p, &res);
    if (r == 0)
        return err_set(-ENOENT, "sandbox not found");
    if (r > 0 && ret_created_ms)
        *ret_created_ms = pg_i64(res, 0, 0);
    return r < 0 ? r : 0;
}

static int stat_on(struct pg_store *s, struct pg_conn *c, const char *sandbox_id, const char *path,
                   struct file_meta *ret)
{
    if (strcmp(path, "/") == 0) {
        /* The root has no row: it is a directory that always exists. */
        int64_t created_ms = 0;
        int r = sandbox_exists(s, c, sandbox_id, &created_ms);
        return r < 0 ? r : root_meta(created_ms, ret);
    }
    struct pg_params p = {0};
    pp_text(&p, sandbox_id);
    pp_bytes(&p, path, strlen(path));
    _cleanup_pgresult_ PGresult *res = NULL;
    int r = pg_exec(s, c, PS_F_STAT, &p, &res);
    if (r < 0)
        return r;
    if (r == 0)
        return err_set(-ENOENT, "no such file or directory: %s", path);
    struct file_meta view;
    meta_from_row(res, 0, &view);
    return file_meta_copy(ret, &view);
}

int pg_stat(struct store *st, const char *sandbox_id, const char *path, struct file_meta *ret)
{
    struct pg_store *s = to_pg(st);
    struct pg_conn *c;
    int r = pg_pool_get(s, &c);
    if (r < 0)
        return r;
    r = stat_on(s, c, sandbox_id, path, ret);
    pg_pool_put(s, c);
    return r;
}

/* The next page of the walk: rows in [lo, hi), in path order. */
static int walk_page(struct pg_store *s, const char *sandbox_id, const struct subtree *range,
                     PGresult **ret)
{
    struct pg_params p = {0};
    pp_text(&p, sandbox_id);
    pp_bytes(&p, range->lo, range->lolen);
    pp_bytes(&p, range->hi, range->hilen);
    return pg_query(s, PS_F_LIST, &p, ret);
}

/* Runs cb over one page: 0, a negative code or cb's non-zero return. *ret_more is set when the
 * walk goes on from the range's (moved) lower bound. */
static int walk_rows(const PGresult *res, int n, struct subtree *range, size_t base, int max_depth,
                     store_file_cb cb, void *userdata, bool *ret_more)
{
    *ret_more = false;
    for (int i = 0; i < n; i++) {
        size_t len = 0;
        const char *path = pg_bytes(res, i, C_PATH, &len);
        if (!path)
            return err_set(-EIO, "corrupt file row");
        size_t cut = walk_depth_cut(path, base, max_depth);
        if (cut) {
            *ret_more = true;
            return subtree_seek(range, path, cut, '0');
        }
        struct file_meta m;
        meta_from_row(res, i, &m);
        int r = cb(&m, userdata);
        if (r != 0)
            return r;
        if (i == n - 1) {
            /* the page ends here: the next one starts just after this path */
            r = subtree_seek(range, path, len, '\0');
            if (r < 0)
                return r;
        }
    }
    *ret_more = n == PG_PAGE_ROWS;
    return 0;
}

int pg_list(struct store *st, const char *sandbox_id, const char *prefix, int max_depth,
            store_file_cb cb, void *userdata)
{
    struct pg_store *s = to_pg(st);
    size_t len = strlen(prefix);
    if (!path_ok(prefix, len))
        return err_set(-EINVAL, "invalid path");
    struct subtree range;
    int r = subtree_init(&range, prefix, len);
    bool seen = false;
    while (r >= 0) {
        _cleanup_pgresult_ PGresult *res = NULL;
        r = walk_page(s, sandbox_id, &range, &res);
        if (r <= 0)
            break;
        seen = true;
        bool more = false;
        r = walk_rows(res, r, &range, len == 1 ? 1 : len + 1, max_depth, cb, userdata, &more);
        if (r != 0 || !more)
            break;
    }
    if (r == 0 && !seen) {
        struct pg_conn *c;
        r = pg_pool_get(s, &c);
        if (r >= 0) {
            r = sandbox_exists(s, c, sandbox_id, NULL);
            pg_pool_put(s, c);
        }
    }
    subtree_release(&range);
    return r;
}

int pg_has_children(struct store *st, const char *sandbox_id, const char *path)
{
    struct pg_store *s = to_pg(st);
    size_t len = strlen(path);
    if (!path_ok(path, len))
        return err_set(-EINVAL, "invalid path");
    struct subtree range;
    struct pg_conn *c = NULL;
    int r = subtree_init(&range, path, len);
    if (r >= 0)
        r = pg_pool_get(s, &c);
    if (r >= 0) {
        struct pg_params p = {0};
        pp_text(&p, sandbox_id);
        pp_bytes(&p, range.lo, range.lolen);
        pp_bytes(&p, range.hi, range.hilen);
        r = pg_exec(s, c, PS_F_HAS_CHILD, &p, NULL);
        if (r == 0)
            r = sandbox_exists(s, c, sandbox_id, NULL);
        else if (r > 0)
            r = 1;
        pg_pool_put(s, c);
    }
    subtree_release(&range);
    return r;
}

/* Hands the change rows of a PS_LOG_CHANGES result (after its count row) to cb, each path
 * copied out with its terminating NUL. */
static int changes_deliver(const PGresult *res, int rows, store_change_cb cb, void *userdata)
{
    char *path = NULL;
    size_t cap = 0;
    int r = 0;
    for (int i = 1; i < rows && r == 0; i++) {
        size_t len;
        const char *p = pg_bytes(res, i, 4, &len);
        if (!p) {
            r = err_set(-EIO, "a change-log row has no path");
            break;
        }
        if (len + 1 > cap) {
            char *n = realloc(path, len + 1);
            if (!n) {
                r = -ENOMEM;
                break;
            }
            path = n;
            cap = len + 1;
        }
        memcpy(path, p, len);
        path[len] = '\0';
        if (strlen(path) != len) {
            r = err_set(-EIO, "a change-log path holds a NUL byte");
            break;
        }
        r = cb(pg_i64(res, i, 1), (int)pg_i64(res, i, 3), path, userdata);
    }
    free(path);
    return r;
}

int pg_changes_since(struct store *st, const char *sandbox_id, int64_t since_version,
                     int64_t to_version, size_t max_changes, store_change_cb cb, void *userdata)
{
    struct pg_store *s = to_pg(st);
    if (max_changes > INT32_MAX - 1)
        max_changes = INT32_MAX - 1;
    struct pg_conn *c;
    int r = pg_pool_get(s, &c);
    if (r < 0)
        return r;
    struct pg_params p = {0};
    pp_text(&p, sandbox_id);
    pp_i64(&p, since_version);
    pp_i64(&p, to_version);
    pp_i64(&p, (int64_t)max_changes + 1);
    _cleanup_pgresult_ PGresult *res = NULL;
    r = pg_exec(s, c, PS_LOG_CHANGES, &p, &res);
    int64_t commits = r > 0 ? pg_i64(res, 0, 1) : 0;
    if (r >= 0 && commits == 0 && to_version > since_version)
        r = sandbox_exists(s, c, sandbox_id, NULL);
    pg_pool_put(s, c);
    if (r < 0)
        return r;
    int64_t changes = pg_i64(res, 0, 2);
    int rows = PQntuples(res);
    /* the commits and their change rows come from one snapshot: they agree unless the log is
     * incomplete */
    if (commits != to_version - since_version || changes < 0 || (uint64_t)changes > max_changes ||
        rows - 1 != changes)
        return err_set(-ERANGE, "the commit log does not hold those versions' changes");
    return changes_deliver(res, rows, cb, userdata);
}

/* ---- history reads ---------------------------------------------------------------------- */

/* Columns of PS_VER_READABLE. */
enum { V_SID, V_CREATED, V_SB_CWD, V_COMMIT_CWD, V_READABLE, V_CURRENT };

int pg_version_check(struct pg_store *s, struct pg_conn *c, const char *id, int64_t version,
                     struct pg_version *ret, char **ret_cwd)
{
    struct pg_params p = {0};
    pp_text(&p, id);
    pp_i64(&p, version);
    _cleanup_pgresult_ PGresult *res = NULL;
    int r = pg_exec(s, c, PS_VER_READABLE, &p, &res);
    if (r < 0)
        return r;
    if (r == 0)
        return err_set(-ENOENT, "sandbox not found");
    if (!pg_i64(res, 0, V_READABLE))
        return err_set(-ERR_VERSION_NOT_FOUND,
                       "version %" PRId64 " of this sandbox does not exist or was pruned from "
                       "its history",
                       version);
    if (ret_cwd) {
        /* the cwd the commit recorded; the sandbox's own for the current version and for
         * commits made before history recorded it */
        bool current = pg_i64(res, 0, V_CURRENT) == version;
        const char *cwd = pg_bytes(res, 0, V_COMMIT_CWD, NULL);
        if (current || !cwd)
            cwd = pg_bytes(res, 0, V_SB_CWD, NULL);
        *ret_cwd = strdup(cwd ? cwd : "");
        if (!*ret_cwd)
            return -ENOMEM;
    }
    ret->sid = pg_i64(res, 0, V_SID);
    ret->created_ms = pg_i64(res, 0, V_CREATED);
    return 0;
}

/* pg_version_check on a pooled connection. */
static int version_check(struct pg_store *s, const char *id, int64_t version,
                         struct pg_version *ret)
{
    struct pg_conn *c;
    int r = pg_pool_get(s, &c);
    if (r < 0)
        return r;
    r = pg_version_check(s, c, id, version, ret, NULL);
    pg_pool_put(s, c);
    return r;
}

int pg_stat_at(struct store *st, const char *sandbox_id, int64_t version, const char *path,
               struct file_meta *ret)
{
    struct pg_store *s = to_pg(st);
    struct pg_version at;
    int r = version_check(s, sandbox_id, version, &at);
    if (r < 0)
        return r;
    if (strcmp(path, "/") == 0)
        return root_meta(at.created_ms, ret);
    struct pg_params p = {0};
    pp_i64(&p, at.sid);
    pp_i64(&p, version);
    pp_bytes(&p, path, strlen(path));
    _cleanup_pgresult_ PGresult *res = NULL;
    r = pg_query(s, PS_TREE_STAT, &p, &res);
    if (r < 0)
        return r;
    if (r == 0)
        return err_set(-ENOENT, "no such file or directory: %s", path);
    struct file_meta view;
    meta_from_row(res, 0, &view);
    return file_meta_copy(ret, &view);
}

/* The walk of pg_list over the tree at a version: the same pages, from PS_TREE_LIST. The
 * version was checked once; the caller's read lock keeps it from being pruned meanwhile. */
int pg_list_at(struct store *st, const char *sandbox_id, int64_t version, const char *prefix,
               int max_depth, store_file_cb cb, void *userdata)
{
    struct pg_store *s = to_pg(st);
    size_t len = strlen(prefix);
    if (!path_ok(prefix, len))
        return err_set(-EINVAL, "invalid path");
    struct pg_version at;
    int r = version_check(s, sandbox_id, version, &at);
    if (r < 0)
        return r;
    struct subtree range;
    r = subtree_init(&range, prefix, len);
    while (r >= 0) {
        struct pg_params p = {0};
        pp_i64(&p, at.sid);
        pp_i64(&p, version);
        pp_bytes(&p, range.lo, range.lolen);
        pp_bytes(&p, range.hi, range.hilen);
        _cleanup_pgresult_ PGresult *res = NULL;
        r = pg_query(s, PS_TREE_LIST, &p, &res);
        if (r <= 0)
            break;
        bool more = false;
        r = walk_rows(res, r, &range, len == 1 ? 1 : len + 1, max_depth, cb, userdata, &more);
        if (r != 0 || !more)
            break;
    }
    subtree_release(&range);
    return r;
}

/* Columns of COMMIT_COLS (pg_schema.c). */
enum { K_VERSION, K_CREATED, K_KIND, K_INFO, K_CWD, K_ADDED, K_MODIFIED, K_DELETED, K_BYTES };

/* Points a commit_rec at the columns of row i (valid while res lives). */
static void commit_from_row(const PGresult *res, int i, struct commit_rec *c)
{
    c->version = pg_i64(res, i, K_VERSION);
    c->created_ms = pg_i64(res, i, K_CREATED);
    c->kind = (char *)pg_bytes(res, i, K_KIND, NULL);
    c->info_json = (char *)pg_bytes(res, i, K_INFO, NULL);
    c->cwd = (char *)pg_bytes(res, i, K_CWD, NULL);
    c->added = pg_i64(res, i, K_ADDED);
    c->modified = pg_i64(res, i, K_MODIFIED);
    c->deleted = pg_i64(res, i, K_DELETED);
    c->bytes_added = pg_i64(res, i, K_BYTES);
}

/* Up to `limit` retained commits below `before`, newest first, into *ret. */
static int commits_page(struct pg_store *s, const char *sandbox_id, int64_t before, int64_t limit,
                        PGresult **ret)
{
    struct pg_params p = {0};
    pp_text(&p, sandbox_id);
    pp_i64(&p, before);
    pp_i64(&p, limit);
    return pg_query(s, PS_COMMITS_PAGE, &p, ret);
}

/* 0 when the sandbox exists, -ENOENT when not, on a pooled connection. */
static int sandbox_exists_pooled(struct pg_store *s, const char *sandbox_id)
{
    struct pg_conn *c;
    int r = pg_pool_get(s, &c);
    if (r < 0)
        return r;
    r = sandbox_exists(s, c, sandbox_id, NULL);
    pg_pool_put(s, c);
    return r;
}

int pg_commits_list(struct store *st, const char *sandbox_id, int64_t before, int64_t limit,
                    store_commit_cb cb, void *userdata)
{
    struct pg_store *s = to_pg(st);
    bool seen = false;
    while (limit > 0) {
        _cleanup_pgresult_ PGresult *res = NULL;
        int n =
            commits_page(s, sandbox_id, before, limit < PG_PAGE_ROWS ? limit : PG_PAGE_ROWS, &res);
        if (n < 0)
            return n;
        if (n == 0)
            break;
        seen = true;
        for (int i = 0; i < n; i++) {
            struct commit_rec rec;
            commit_from_row(res, i, &rec);
            int r = cb(&rec, userdata);
            if (r != 0)
                return r;
        }
        if (n < PG_PAGE_ROWS)
            break;
        limit -= n;
        before = pg_i64(res, n - 1, K_VERSION);
    }
    return seen ? 0 : sandbox_exists_pooled(s, sandbox_id);
}

/* The retained commit of `version` is the first of those below version + 1. */
int pg_commit_get(struct store *st, const char *sandbox_id, int64_t version, struct commit_rec *ret)
{
    struct pg_store *s = to_pg(st);
    _cleanup_pgresult_ PGresult *res = NULL;
    int r =
        version < 0 || version == INT64_MAX ? 0 : commits_page(s, sandbox_id, version + 1, 1, &res);
    if (r < 0)
        return r;
    if (r == 0 || pg_i64(res, 0, K_VERSION) != version) {
        r = sandbox_exists_pooled(s, sandbox_id);
        return r < 0 ? r
                     : err_set(-ERR_VERSION_NOT_FOUND,
                               "version %" PRId64 " of this sandbox does not exist or was pruned "
                               "from its history",
                               version);
    }
    struct commit_rec view;
    commit_from_row(res, 0, &view);
    struct commit_rec out = view;
    out.kind = view.kind ? strdup(view.kind) : NULL;
    out.info_json = view.info_json ? strdup(view.info_json) : NULL;
    out.cwd = view.cwd ? strdup(view.cwd) : NULL;
    if ((view.kind && !out.kind) || (view.info_json && !out.info_json) || (view.cwd && !out.cwd)) {
        commit_rec_release(&out);
        return -ENOMEM;
    }
    *ret = out;
    return 0;
}

/* The commit's rows through a cursor, PG_PAGE_ROWS at a time, in one transaction: the
 * database sorts them once and this process holds one page, whatever the commit's size, and
 * stops reading once cb stops. (Keyset pages by path, as pg_list reads, would make the database
 * sort the commit's rows again for every page: no index orders them by path within a commit.)
 * The connection stays out of the pool while the callbacks run. */
int pg_commit_paths(struct store *st, const char *sandbox_id, int64_t version,
                    store_path_change_cb cb, void *userdata)
{
    struct pg_store *s = to_pg(st);
    struct pg_conn *c;
    int r = pg_tx_begin(s, &c);
    if (r < 0)
        return r;
    struct pg_version at;
    r = pg_version_check(s, c, sandbox_id, version, &at, NULL);
    if (r >= 0) {
        struct pg_params p = {0};
        pp_i64(&p, at.sid);
        pp_i64(&p, version);
        r = pg_exec(s, c, PS_COMMIT_PATHS, &p, NULL);
    }
    char fetch[64];
    snprintf(fetch, sizeof(fetch), "FETCH %d FROM commit_paths", PG_PAGE_ROWS);
    bool more = r >= 0;
    r = r < 0 ? r : 0;
    while (more && r == 0) {
        _cleanup_pgresult_ PGresult *res = NULL;
        int n = pg_exec_sql(s, c, fetch, 0, NULL, NULL, NULL, &res);
        if (n < 0) {
            r = n;
            break;
        }
        more = n == PG_PAGE_ROWS;
        for (int i = 0; i < n && r == 0; i++) {
            /* the row follows the change kind: FILE_COLS from column 1 */
            struct file_meta m;
            meta_from_cols(res, i, 1, &m);
            r = m.path ? cb((enum path_change_kind)pg_i64(res, i, 0), &m, userdata)
                       : err_set(-EIO, "corrupt file row");
        }
    }
    /* r > 0: cb's own stop, the transaction (a read) committed all the same */
    return pg_tx_end(s, c, r, NULL, NULL);
}
