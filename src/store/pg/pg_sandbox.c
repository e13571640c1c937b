/*
 * pg_sandbox.c — sandbox rows of the PostgreSQL engine: create (with its first commit and the
 * owner's sandbox limit, in one transaction), get, list (in pages, the connection given back
 * before the callbacks run), delete (rows, files, history, commit log, snapshots, then GC),
 * touch, the network settings, fork (a new sandbox from a version of another) and snapshots.
 */
#include "store/pg/pg_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"
#include "util/err.h"
#include "util/home.h"
#include "util/timeutil.h"

/* Columns of SB_COLS (pg_schema.c). */
enum {
    C_ID,
    C_TENANT,
    C_SUB,
    C_NAME,
    C_ENV,
    C_PY,
    C_JS,
    C_NET,
    C_CWD,
    C_CREATED,
    C_USED,
    C_VER,
    C_SIZE,
    C_COUNT,
    C_SID,
    C_POLICY
};

/* Points a sandbox_rec at the columns of row i (valid while res lives). */
static void rec_from_row(const PGresult *res, int i, struct sandbox_rec *r)
{
    memset(r, 0, sizeof(*r));
    const char *id = pg_bytes(res, i, C_ID, NULL);
    if (id)
        snprintf(r->id, sizeof(r->id), "%s", id);
    r->tenant = (char *)pg_bytes(res, i, C_TENANT, NULL);
    r->sub = (char *)pg_bytes(res, i, C_SUB, NULL);
    r->name = (char *)pg_bytes(res, i, C_NAME, NULL);
    r->env_json = (char *)pg_bytes(res, i, C_ENV, NULL);
    r->python = pg_i64(res, i, C_PY) != 0;
    r->javascript = pg_i64(res, i, C_JS) != 0;
    r->network = pg_i64(res, i, C_NET) != 0;
    r->cwd = (char *)pg_bytes(res, i, C_CWD, NULL);
    r->created_ms = pg_i64(res, i, C_CREATED);
    r->last_used_ms = pg_i64(res, i, C_USED);
    r->version = pg_i64(res, i, C_VER);
    r->size_bytes = pg_i64(res, i, C_SIZE);
    r->file_count = pg_i64(res, i, C_COUNT);
    r->network_policy = (char *)pg_bytes(res, i, C_POLICY, NULL);
}

/* Inside the create transaction: serialises the owner's creates (an advisory lock on the owner,
 * held to the end of the transaction), then -ERR_SANDBOX_LIMIT when the owner has `max`
 * sandboxes already. */
static int owner_limit_check(struct pg_store *s, struct pg_conn *c, const struct sandbox_rec *rec,
                             int64_t max)
{
    struct pg_params p = {0};
    pp_i64(&p, PG_LOCK_CLASS_OWNER);
    pp_text(&p, rec->tenant);
    pp_text(&p, rec->sub);
    int r = pg_exec(s, c, PS_OWNER_LOCK, &p, NULL);
    if (r < 0)
        return r;
    p = (struct pg_params){0};
    pp_text(&p, rec->tenant);
    pp_text(&p, rec->sub);
    pp_i64(&p, max);
    _cleanup_pgresult_ PGresult *res = NULL;
    r = pg_exec(s, c, PS_SB_COUNT_OWNER, &p, &res);
    if (r < 0)
        return r;
    if (r > 0 && pg_i64(res, 0, 0) >= max)
        return err_set(-ERR_SANDBOX_LIMIT,
                       "this owner already has %" PRId64 " sandboxes, the limit; delete one to "
                       "create another",
                       max);
    return 0;
}

/* Inserts the row; its key into *ret_sid. */
static int sandbox_insert(struct pg_store *s, struct pg_conn *c, const struct sandbox_rec *rec,
                          int64_t now_ms, int64_t *ret_sid)
{
    const char *cwd = rec->cwd ? rec->cwd : SANDBOX_HOME;
    struct pg_params p = {0};
    pp_text(&p, rec->id);
    pp_text(&p, rec->tenant);
    pp_text(&p, rec->sub);
    pp_text(&p, rec->name);
    pp_text(&p, rec->env_json ? rec->env_json : "{}");
    pp_i64(&p, rec->python);
    pp_i64(&p, rec->javascript);
    pp_i64(&p, rec->network);
    pp_bytes(&p, cwd, strlen(cwd));
    pp_i64(&p, rec->created_ms ? rec->created_ms : now_ms);
    pp_i64(&p, rec->last_used_ms);
    pp_text(&p, rec->network_policy);
    _cleanup_pgresult_ PGresult *res = NULL;
    int r = pg_exec(s, c, PS_SB_INSERT, &p, &res);
    if (r == 0)
        return err_set(-EEXIST, "sandbox already exists");
    if (r < 0)
        return r;
    *ret_sid = pg_i64(res, 0, 0);
    return 0;
}

/* pg_tx_check after a lost COMMIT of a create: is the sandbox there? */
static int sandbox_there(struct pg_store *s, struct pg_conn *c, void *arg)
{
    struct pg_params p = {0};
    pp_text(&p, arg);
    int r = pg_exec(s, c, PS_SB_EXISTS, &p, NULL);
    return r < 0 ? r : r > 0;
}

int pg_sandbox_create(struct store *st, const struct sandbox_rec *rec,
                      const struct changeset *initial, const struct commit_opts *opts)
{
    struct pg_store *s = to_pg(st);
    if (!rec->tenant || !rec->sub || !rec->id[0])
        return err_set(-EINVAL, "sandbox owner and id are required");
    struct commit_opts o = opts ? *opts : (struct commit_opts){0};
    o.expect_version = -1;
    int64_t now_ms = o.now_ms > 0 ? o.now_ms : time_now_ms();
    struct pg_conn *c;
    int r = pg_tx_begin(s, &c);
    if (r < 0)
        return r;
    if (o.max_owner_sandboxes > 0)
        r = owner_limit_check(s, c, rec, o.max_owner_sandboxes);
    struct sb_state fresh = {0};
    if (r >= 0)
        r = sandbox_insert(s, c, rec, now_ms, &fresh.sid);
    if (r >= 0 && initial)
        r = pg_commit_in(s, c, rec->id, initial, &o, &fresh, NULL);
    return pg_tx_end(s, c, r, sandbox_there, (void *)rec->id);
}

int pg_sandbox_get(struct store *st, const char *id, const char *tenant, const char *sub,
                   struct sandbox_rec *ret)
{
    struct pg_params p = {0};
    pp_text(&p, id);
    _cleanup_pgresult_ PGresult *res = NULL;
    int r = pg_query(to_pg(st), PS_SB_GET, &p, &res);
    if (r == 0 || (r > 0 && !owner_matches(tenant, sub, pg_bytes(res, 0, C_TENANT, NULL),
                                           pg_bytes(res, 0, C_SUB, NULL))))
        return err_set(-ENOENT, "sandbox not found");
    if (r < 0)
        return r;
    struct sandbox_rec view;
    rec_from_row(res, 0, &view);
    return sandbox_rec_dup(&view, ret);
}

int pg_sandbox_count(struct store *st, int64_t *ret)
{
    _cleanup_pgresult_ PGresult *res = NULL;
    int r = pg_query(to_pg(st), PS_SB_COUNT, NULL, &res);
    if (r < 0)
        return r;
    if (r == 0)
        return err_set(-EIO, "store answered no row");
    *ret = pg_i64(res, 0, 0);
    return 0;
}

/* One page of the owner's sandboxes older than (before_ms, before_sid) into *ret. */
static int list_page(struct pg_store *s, const char *tenant, const char *sub, int64_t before_ms,
                     int64_t before_sid, PGresult **ret)
{
    struct pg_params p = {0};
    pp_text(&p, tenant);
    pp_text(&p, sub);
    pp_i64(&p, before_ms);
    pp_i64(&p, before_sid);
    return pg_query(s, tenant && sub ? PS_SB_LIST_OWNER : PS_SB_LIST_ANY, &p, ret);
}

int pg_sandbox_list(struct store *st, const char *tenant, const char *sub, store_sandbox_cb cb,
                    void *userdata)
{
    struct pg_store *s = to_pg(st);
    int64_t before_ms = INT64_MAX, before_sid = INT64_MAX;
    for (;;) {
        _cleanup_pgresult_ PGresult *res = NULL;
        int n = list_page(s, tenant, sub, before_ms, before_sid, &res);
        if (n < 0)
            return n;
        for (int i = 0; i < n; i++) {
            struct sandbox_rec rec;
            rec_from_row(res, i, &rec);
            int r = cb(&rec, userdata);
            if (r != 0)
                return r;
        }
        if (n < PG_PAGE_ROWS)
            return 0;
        before_ms = pg_i64(res, n - 1, C_CREATED);
        before_sid = pg_i64(res, n - 1, C_SID);
    }
}

/* pg_tx_check after a lost COMMIT of a delete: is the sandbox gone? */
static int sandbox_gone(struct pg_store *s, struct pg_conn *c, void *arg)
{
    int r = sandbox_there(s, c, arg);
    return r < 0 ? r : !r;
}

/* Inside the delete transaction: locks the row, checks the owner, deletes everything. */
static int delete_in(struct pg_store *s, struct pg_conn *c, const char *id, const char *tenant,
                     const char *sub)
{
    struct pg_params p = {0};
    pp_text(&p, id);
    _cleanup_pgresult_ PGresult *res = NULL;
    int r = pg_exec(s, c, PS_SB_STATE_LOCK, &p, &res);
    if (r < 0)
        return r;
    if (r == 0 || !owner_matches(tenant, sub, pg_bytes(res, 0, 4, NULL), pg_bytes(res, 0, 5, NULL)))
        return err_set(-ENOENT, "sandbox not found");
    p = (struct pg_params){0};
    pp_i64(&p, pg_i64(res, 0, 0));
    /* the sandbox row first: the retirement trigger then keeps none of its files */
    static const enum pg_stmt dels[] = {PS_SB_DELETE,           PS_F_DEL_ALL,   PS_H_DEL_ALL,
                                        PS_COMMITS_DEL_CHANGES, PS_COMMITS_DEL, PS_SNAP_DEL_ALL};
    for (size_t i = 0; i < sizeof(dels) / sizeof(dels[0]) && r >= 0; i++)
        r = pg_exec(s, c, dels[i], &p, NULL);
    if (r >= 0)
        r = pg_journal_delete_in(s, c, pg_i64(res, 0, 0));
    return r < 0 ? r : 0;
}

int pg_sandbox_delete(struct store *st, const char *id, const char *tenant, const char *sub)
{
    struct pg_store *s = to_pg(st);
    struct pg_conn *c;
    int r = pg_tx_begin(s, &c);
    if (r < 0)
        return r;
    r = pg_tx_end(s, c, delete_in(s, c, id, tenant, sub), sandbox_gone, (void *)id);
    if (r < 0)
        return r;
    /* The sandbox is gone whatever GC does; what it cannot collect now stays a candidate. */
    struct gc_stats stats;
    (void)pg_gc_run(s, &stats);
    return 0;
}

int pg_sandbox_touch(struct store *st, const char *id, int64_t now_ms)
{
    struct pg_params p = {0};
    pp_text(&p, id);
    pp_i64(&p, now_ms);
    int r = pg_query(to_pg(st), PS_SB_TOUCH, &p, NULL);
    if (r == 0)
        return err_set(-ENOENT, "sandbox not found");
    return r < 0 ? r : 0;
}

int pg_sandbox_set_network(struct store *st, const char *id, const char *tenant, const char *sub,
                           bool network, const char *policy_json)
{
    struct pg_params p = {0};
    pp_text(&p, id);
    pp_i64(&p, network);
    pp_text(&p, policy_json);
    pp_text(&p, tenant);
    pp_text(&p, sub);
    int r = pg_query(to_pg(st), PS_SB_SET_NETWORK, &p, NULL);
    if (r == 0)
        return err_set(-ENOENT, "sandbox not found");
    return r < 0 ? r : 0;
}

/* ---- fork ------------------------------------------------------------------------------- */

/* Inside the fork transaction: the source's row locked FOR SHARE (no commit of it prunes the
 * rows being copied before the copies commit), its version checked, the owner's limit, the new
 * row, its tree copied (content shared) and its first commit. */
static int fork_in(struct pg_store *s, struct pg_conn *c, const char *source_id, int64_t version,
                   const struct sandbox_rec *rec, const char *info_json,
                   const struct commit_opts *o, int64_t now_ms)
{
    struct pg_params p = {0};
    pp_text(&p, source_id);
    int r = pg_exec(s, c, PS_SB_LOCK_SHARE, &p, NULL);
    if (r < 0)
        return r;
    if (r == 0)
        return err_set(-ENOENT, "sandbox not found");
    struct pg_version at;
    _cleanup_free_ char *cwd = NULL;
    r = pg_version_check(s, c, source_id, version, &at, &cwd);
    if (r >= 0 && o->max_owner_sandboxes > 0)
        r = owner_limit_check(s, c, rec, o->max_owner_sandboxes);
    struct sandbox_rec row = *rec;
    row.cwd = cwd;
    int64_t sid = 0;
    if (r >= 0)
        r = sandbox_insert(s, c, &row, now_ms, &sid);
    if (r < 0)
        return r;
    p = (struct pg_params){0};
    pp_i64(&p, at.sid);
    pp_i64(&p, version);
    pp_i64(&p, sid);
    _cleanup_pgresult_ PGresult *res = NULL;
    r = pg_exec(s, c, PS_FORK_COPY, &p, &res);
    if (r < 0)
        return r;
    int64_t count = r > 0 ? pg_i64(res, 0, 0) : 0, size = r > 0 ? pg_i64(res, 0, 1) : 0;
    r = apply_quota_check(o, 0, size);
    if (r < 0)
        return r;
    p = (struct pg_params){0};
    pp_i64(&p, sid);
    pp_i64(&p, size);
    pp_i64(&p, count);
    pp_bytes(&p, cwd, strlen(cwd));
    pp_i64(&p, now_ms);
    pp_text(&p, info_json);
    r = pg_exec(s, c, PS_FORK_FINISH, &p, NULL);
    if (r < 0)
        return r;
    return r == 1 ? 0 : err_set(-EIO, "the commit log row was not created");
}

int pg_sandbox_fork(struct store *st, const char *source_id, int64_t version,
                    const struct sandbox_rec *rec, const char *info_json,
                    const struct commit_opts *opts)
{
    struct pg_store *s = to_pg(st);
    if (!rec->tenant || !rec->sub || !rec->id[0])
        return err_set(-EINVAL, "sandbox owner and id are required");
    struct commit_opts o = opts ? *opts : (struct commit_opts){0};
    int64_t now_ms = o.now_ms > 0 ? o.now_ms : time_now_ms();
    struct pg_conn *c;
    int r = pg_tx_begin(s, &c);
    if (r < 0)
        return r;
    r = fork_in(s, c, source_id, version, rec, info_json, &o, now_ms);
    return pg_tx_end(s, c, r, sandbox_there, (void *)rec->id);
}

/* ---- snapshots -------------------------------------------------------------------------- */

/* A snapshot's key, for snapshot_there. */
struct snap_key {
    const char *sandbox_id;
    const char *name;
};

/* pg_tx_check after a lost COMMIT of a snapshot_create: is the snapshot there? */
static int snapshot_there(struct pg_store *s, struct pg_conn *c, void *arg)
{
    const struct snap_key *k = arg;
    struct pg_params p = {0};
    pp_text(&p, k->sandbox_id);
    pp_text(&p, k->name);
    int r = pg_exec(s, c, PS_SNAP_GET, &p, NULL);
    return r < 0 ? r : r > 0;
}

/* Inside the transaction: the sandbox row locked FOR UPDATE (commits, and so pruning, wait),
 * then the version checked, the limit, the insert. */
static int snapshot_create_in(struct pg_store *s, struct pg_conn *c, const char *id,
                              const char *name, int64_t version, int64_t now_ms, int64_t max)
{
    struct pg_params p = {0};
    pp_text(&p, id);
    int r = pg_exec(s, c, PS_SB_STATE_LOCK, &p, NULL);
    if (r < 0)
        return r;
    if (r == 0)
        return err_set(-ENOENT, "sandbox not found");
    struct pg_version at;
    r = pg_version_check(s, c, id, version, &at, NULL);
    if (r < 0)
        return r;
    if (max > 0) {
        p = (struct pg_params){0};
        pp_i64(&p, at.sid);
        _cleanup_pgresult_ PGresult *res = NULL;
        r = pg_exec(s, c, PS_SNAP_COUNT, &p, &res);
        if (r < 0)
            return r;
        int64_t n = r > 0 ? pg_i64(res, 0, 0) : 0;
        if (n >= max)
            return err_set(-E2BIG, "this sandbox has %" PRId64 " snapshots, the limit", n);
    }
    p = (struct pg_params){0};
    pp_i64(&p, at.sid);
    pp_text(&p, name);
    pp_i64(&p, version);
    pp_i64(&p, now_ms);
    r = pg_exec(s, c, PS_SNAP_INSERT, &p, NULL);
    if (r == 0)
        return err_set(-EEXIST, "a snapshot named \"%s\" exists", name);
    return r < 0 ? r : 0;
}

int pg_snapshot_create(struct store *st, const char *sandbox_id, const char *name, int64_t version,
                       int64_t now_ms, int64_t max)
{
    struct pg_store *s = to_pg(st);
    struct pg_conn *c;
    int r = pg_tx_begin(s, &c);
    if (r < 0)
        return r;
    struct snap_key k = {sandbox_id, name};
    r = snapshot_create_in(s, c, sandbox_id, name, version, now_ms > 0 ? now_ms : time_now_ms(),
                           max);
    return pg_tx_end(s, c, r, snapshot_there, &k);
}

/* Columns of the snapshot statements. */
enum { N_NAME, N_VERSION, N_CREATED };

static void snapshot_from_row(const PGresult *res, int i, struct snapshot_rec *n)
{
    n->name = (char *)pg_bytes(res, i, N_NAME, NULL);
    n->version = pg_i64(res, i, N_VERSION);
    n->created_ms = pg_i64(res, i, N_CREATED);
}

int pg_snapshot_get(struct store *st, const char *sandbox_id, const char *name,
                    struct snapshot_rec *ret)
{
    struct pg_params p = {0};
    pp_text(&p, sandbox_id);
    pp_text(&p, name);
    _cleanup_pgresult_ PGresult *res = NULL;
    int r = pg_query(to_pg(st), PS_SNAP_GET, &p, &res);
    if (r < 0)
        return r;
    if (r == 0)
        return err_set(-ENOENT, "no such snapshot");
    struct snapshot_rec view;
    snapshot_from_row(res, 0, &view);
    char *copy = strdup(view.name ? view.name : "");
    if (!copy)
        return -ENOMEM;
    *ret = view;
    ret->name = copy;
    return 0;
}

/* A sandbox has at most the snapshots its limit allows: one result, the connection given back
 * before the callbacks run. */
int pg_snapshot_list(struct store *st, const char *sandbox_id, store_snapshot_cb cb, void *userdata)
{
    struct pg_store *s = to_pg(st);
    struct pg_params p = {0};
    pp_text(&p, sandbox_id);
    _cleanup_pgresult_ PGresult *res = NULL;
    int r = pg_query(s, PS_SNAP_LIST, &p, &res);
    if (r == 0) {
        r = pg_query(s, PS_SB_EXISTS, &p, NULL);
        return r < 0 ? r : r == 0 ? err_set(-ENOENT, "sandbox not found") : 0;
    }
    for (int i = 0; i < r; i++) {
        struct snapshot_rec view;
        snapshot_from_row(res, i, &view);
        int cr = cb(&view, userdata);
        if (cr != 0)
            return cr;
    }
    return r < 0 ? r : 0;
}

/* Inside the transaction: the sandbox row locked FOR UPDATE (as a commit), the snapshot
 * deleted, then what it alone kept below the floor pruned at once (PS_HIST_PRUNE at the floor
 * the sandbox has). *ret_pruned: rows that held content went. */
static int snapshot_delete_in(struct pg_store *s, struct pg_conn *c, const char *id,
                              const char *name, bool *ret_pruned)
{
    struct pg_params p = {0};
    pp_text(&p, id);
    _cleanup_pgresult_ PGresult *res = NULL;
    int r = pg_exec(s, c, PS_SB_STATE_LOCK, &p, &res);
    if (r < 0)
        return r;
    if (r == 0)
        return err_set(-ENOENT, "no such snapshot");
    pp_text(&p, name);
    r = pg_exec(s, c, PS_SNAP_DEL, &p, NULL);
    if (r < 0)
        return r;
    if (r == 0)
        return err_set(-ENOENT, "no such snapshot");
    p = (struct pg_params){0};
    pp_i64(&p, pg_i64(res, 0, 0));
    pp_i64(&p, pg_i64(res, 0, 6));
    _cleanup_pgresult_ PGresult *pruned = NULL;
    r = pg_exec(s, c, PS_HIST_PRUNE, &p, &pruned);
    if (r < 0)
        return r;
    *ret_pruned = r > 0 && pg_i64(pruned, 0, 0) > 0;
    return 0;
}

int pg_snapshot_delete(struct store *st, const char *sandbox_id, const char *name)
{
    struct pg_store *s = to_pg(st);
    struct pg_conn *c;
    int r = pg_tx_begin(s, &c);
    if (r < 0)
        return r;
    bool pruned = false;
    r = pg_tx_end(s, c, snapshot_delete_in(s, c, sandbox_id, name, &pruned), NULL, NULL);
    if (r >= 0 && pruned)
        (void)pg_gc_run(s, NULL); /* what is not collected now stays a candidate */
    return r;
}
