/*
 * pg_tree.c — reads of a sandbox's file rows in the PostgreSQL engine: stat (the root is
 * implicit), list (pages of PG_PAGE_ROWS rows in path order, the connection given back before
 * the callbacks run; a row deeper than max_depth restarts the walk past its ancestor's subtree)
 * and has_children.
 */
#include "store/pg/pg_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

/* Columns of FILE_COLS (pg_schema.c). */
enum { C_PATH, C_KIND, C_MODE, C_SIZE, C_MTIME, C_CONTENT, C_TARGET };

/* Points the file_meta at the columns of row i (valid while res lives). */
static void meta_from_row(const PGresult *res, int i, struct file_meta *m)
{
    memset(m, 0, sizeof(*m));
    m->path = (char *)pg_bytes(res, i, C_PATH, NULL);
    m->kind = (enum file_kind)pg_i64(res, i, C_KIND);
    m->mode = (uint32_t)pg_i64(res, i, C_MODE);
    m->size = pg_i64(res, i, C_SIZE);
    m->mtime_ns = pg_i64(res, i, C_MTIME);
    m->has_content = pg_id(res, i, C_CONTENT, m->content);
    m->target = (char *)pg_bytes(res, i, C_TARGET, NULL);
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
