/*
 * sqlite_journal.c — the exec journal, the egress log and idempotency keys of the SQLite engine
 * (contract: store.h). Tables (sqlite_schema.c, migrations 3 to 5): `execs` (one row per exec,
 * `seq` in the order they were added, keyed (sid, exec_id)), `egress` (one row per connection
 * asked for, read newest first through an index on (sid, at_ms, seq)) and `idempotency` (one
 * row per (sid, key):
 * state 1 pending, with the claim of its request, 2 done with its answer, 3 done with an answer
 * too large to keep, 4 failed with its commit in doubt; pending rows are released when the
 * store opens). Each is pruned
 * when rows are added, within the same write transaction, through its indexes on the sandbox
 * and the order or time of its rows, so that the cost of an insert does not grow with what a
 * sandbox holds.
 */
#include "store/sqlite/sqlite_int.h"

#include "util/err.h"

/* The sid of sandbox `id` on c into *ret_sid; -ENOENT when there is none. With tenant or sub
 * given, a sandbox owned by someone else is missing too. */
static int sandbox_sid(struct conn *c, const char *id, const char *tenant, const char *sub,
                       int64_t *ret_sid)
{
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    int r = sq_query_sandbox(c, ST_SB_STATE, id, &q);
    if (r < 0)
        return r;
    if (r == 0 || !owner_matches(tenant, sub, (const char *)sqlite3_column_text(q, 4),
                                 (const char *)sqlite3_column_text(q, 5)))
        return err_set(-ENOENT, "sandbox not found");
    *ret_sid = sqlite3_column_int64(q, 0);
    return 0;
}

/* Runs statement id with (sid, v) bound to ?1, ?2. */
static int run_sid_i64(struct conn *c, enum stmt_id id, int64_t sid, int64_t v)
{
    sqlite3_stmt *q = NULL;
    int r = sq_stmt_get(c, id, &q);
    if (r >= 0)
        r = sq_bind_check(c, sqlite3_bind_int64(q, 1, sid) | sqlite3_bind_int64(q, 2, v));
    return r < 0 ? r : sq_stmt_run(c, q);
}

int sq_journal_drop(struct conn *c, int64_t sid)
{
    static const enum stmt_id dels[] = {ST_J_DEL_ALL, ST_E_DEL_ALL, ST_I_DEL_ALL};
    int r = 0;
    for (size_t i = 0; i < sizeof(dels) / sizeof(dels[0]) && r >= 0; i++) {
        sqlite3_stmt *q = NULL;
        r = sq_stmt_get(c, dels[i], &q);
        if (r >= 0)
            r = sq_bind_check(c, sqlite3_bind_int64(q, 1, sid));
        if (r >= 0)
            r = sq_stmt_run(c, q);
    }
    return r;
}

/* ---- the exec journal ---- */

static int bind_blob_or_null(sqlite3_stmt *q, int i, const void *data, size_t len)
{
    return data && len ? sqlite3_bind_blob64(q, i, data, len, SQLITE_STATIC)
                       : sqlite3_bind_null(q, i);
}

static int exec_insert(struct conn *c, int64_t sid, const struct exec_rec *e)
{
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    int r = sq_stmt_get(c, ST_J_INSERT, &q);
    if (r < 0)
        return r;
    r = sq_bind_check(
        c, bind_text(q, 2, e->exec_id) | bind_text(q, 3, e->kind) | bind_text(q, 4, e->script) |
               sqlite3_bind_int64(q, 1, sid) | sqlite3_bind_int64(q, 5, e->started_ms) |
               sqlite3_bind_int64(q, 6, e->duration_ms) | sqlite3_bind_int64(q, 7, e->exit_code) |
               sqlite3_bind_int(q, 8, e->timed_out) | sqlite3_bind_int64(q, 9, e->version) |
               sqlite3_bind_int64(q, 10, e->stdout_bytes) |
               sqlite3_bind_int64(q, 11, e->stderr_bytes) |
               bind_blob_or_null(q, 12, e->stdout_data, e->stdout_len) |
               bind_blob_or_null(q, 13, e->stderr_data, e->stderr_len) |
               sqlite3_bind_int(q, 14, e->stdout_truncated) |
               sqlite3_bind_int(q, 15, e->stderr_truncated));
    if (r < 0)
        return r;
    r = sq_stmt_step(c, q);
    if (r < 0 && (sqlite3_errcode(c->db) & 0xff) == SQLITE_CONSTRAINT)
        return err_set(-EEXIST, "the sandbox's journal has an exec with this id already");
    return r < 0 ? r : 0;
}

int sq_exec_add(struct store *st, const char *sandbox_id, const struct exec_rec *rec,
                const struct journal_opts *opts)
{
    if (!rec->exec_id || !rec->kind || !rec->script)
        return err_set(-EINVAL, "an exec record needs an id, a kind and a script");
    struct sqlite_store *s = to_sq(st);
    int r = sq_wtx_begin(s);
    if (r < 0)
        return r;
    int64_t sid = 0;
    r = sandbox_sid(s->w, sandbox_id, NULL, NULL, &sid);
    if (r >= 0)
        r = exec_insert(s->w, sid, rec);
    if (r >= 0 && opts && opts->max_records > 0)
        r = run_sid_i64(s->w, ST_J_PRUNE_COUNT, sid, opts->max_records);
    if (r >= 0 && opts && opts->max_age_ms > 0)
        r = run_sid_i64(s->w, ST_J_PRUNE_AGE, sid, opts->now_ms - opts->max_age_ms);
    return sq_wtx_end(s, r);
}

/* Points e at the EXEC_COLS columns of the current row (valid until the next step). */
static void exec_from_row(sqlite3_stmt *q, struct exec_rec *e)
{
    memset(e, 0, sizeof(*e));
    e->exec_id = (char *)sqlite3_column_text(q, 0);
    e->kind = (char *)sqlite3_column_text(q, 1);
    e->script = (char *)sqlite3_column_text(q, 2);
    e->started_ms = sqlite3_column_int64(q, 3);
    e->duration_ms = sqlite3_column_int64(q, 4);
    e->exit_code = sqlite3_column_int64(q, 5);
    e->timed_out = sqlite3_column_int(q, 6) != 0;
    e->version = sqlite3_column_int64(q, 7);
    e->stdout_bytes = sqlite3_column_int64(q, 8);
    e->stderr_bytes = sqlite3_column_int64(q, 9);
    e->stdout_truncated = sqlite3_column_int(q, 10) != 0;
    e->stderr_truncated = sqlite3_column_int(q, 11) != 0;
}

int sq_exec_list(struct store *st, const char *sandbox_id, const char *before, int64_t limit,
                 store_exec_cb cb, void *userdata)
{
    _cleanup_pooled_ struct pooled p = {.s = to_sq(st)};
    int r = sq_pooled_get(&p);
    int64_t sid = 0, below = INT64_MAX;
    if (r >= 0)
        r = sandbox_sid(p.c, sandbox_id, NULL, NULL, &sid);
    if (r >= 0 && before) {
        _cleanup_reset_ sqlite3_stmt *q = NULL;
        r = sq_stmt_get(p.c, ST_J_SEQ, &q);
        if (r >= 0)
            r = sq_bind_check(p.c, sqlite3_bind_int64(q, 1, sid) | bind_text(q, 2, before));
        if (r >= 0)
            r = sq_stmt_step(p.c, q);
        if (r == 0)
            r = err_set(-ERR_EXEC_NOT_FOUND, "no exec %s in this sandbox's journal", before);
        if (r > 0)
            below = sqlite3_column_int64(q, 0);
    }
    if (r < 0)
        return r;
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    r = sq_stmt_get(p.c, ST_J_LIST, &q);
    if (r >= 0)
        r = sq_bind_check(p.c, sqlite3_bind_int64(q, 1, sid) | sqlite3_bind_int64(q, 2, below) |
                                   sqlite3_bind_int64(q, 3, limit));
    while (r >= 0 && (r = sq_stmt_step(p.c, q)) > 0) {
        struct exec_rec e;
        exec_from_row(q, &e);
        r = cb(&e, userdata);
        if (r != 0)
            return r;
    }
    return r;
}

/* A copy of column col's bytes (NULL and 0 for SQL NULL or empty). */
static int column_dup(sqlite3_stmt *q, int col, char **ret, size_t *ret_len)
{
    const void *p = sqlite3_column_blob(q, col);
    size_t n = (size_t)sqlite3_column_bytes(q, col);
    *ret = NULL;
    *ret_len = 0;
    if (!p || n == 0)
        return 0;
    char *d = malloc(n + 1);
    if (!d)
        return -ENOMEM;
    memcpy(d, p, n);
    d[n] = '\0';
    *ret = d;
    *ret_len = n;
    return 0;
}

int sq_exec_get(struct store *st, const char *sandbox_id, const char *exec_id, struct exec_rec *ret)
{
    _cleanup_pooled_ struct pooled p = {.s = to_sq(st)};
    int r = sq_pooled_get(&p);
    int64_t sid = 0;
    if (r >= 0)
        r = sandbox_sid(p.c, sandbox_id, NULL, NULL, &sid);
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    if (r >= 0)
        r = sq_stmt_get(p.c, ST_J_GET, &q);
    if (r >= 0)
        r = sq_bind_check(p.c, bind_text(q, 1, sandbox_id) | bind_text(q, 2, exec_id));
    if (r >= 0)
        r = sq_stmt_step(p.c, q);
    if (r == 0)
        r = err_set(-ERR_EXEC_NOT_FOUND, "no exec %s in this sandbox's journal", exec_id);
    if (r < 0)
        return r;
    struct exec_rec view, out;
    exec_from_row(q, &view);
    out = view;
    out.exec_id = strdup(view.exec_id ? view.exec_id : "");
    out.kind = strdup(view.kind ? view.kind : "");
    out.script = strdup(view.script ? view.script : "");
    out.stdout_data = out.stderr_data = NULL;
    r = out.exec_id && out.kind && out.script ? 0 : -ENOMEM;
    if (r == 0)
        r = column_dup(q, 12, &out.stdout_data, &out.stdout_len);
    if (r == 0)
        r = column_dup(q, 13, &out.stderr_data, &out.stderr_len);
    if (r < 0) {
        exec_rec_release(&out);
        return r;
    }
    *ret = out;
    return 0;
}

/* ---- the egress log ---- */

static int egress_insert(struct conn *c, int64_t sid, const struct egress_rec *e)
{
    sqlite3_stmt *q = NULL;
    int r = sq_stmt_get(c, ST_E_INSERT, &q);
    if (r >= 0)
        r = sq_bind_check(c, sqlite3_bind_int64(q, 1, sid) | sqlite3_bind_int64(q, 2, e->at_ms) |
                                 bind_text(q, 3, e->exec_id) | bind_text(q, 4, e->host) |
                                 sqlite3_bind_int(q, 5, e->port) | bind_text(q, 6, e->address) |
                                 sqlite3_bind_int(q, 7, e->allowed) | bind_text(q, 8, e->rule) |
                                 bind_text(q, 9, e->error) |
                                 sqlite3_bind_int64(q, 10, e->bytes_up) |
                                 sqlite3_bind_int64(q, 11, e->bytes_down) |
                                 sqlite3_bind_int64(q, 12, e->duration_ms));
    return r < 0 ? r : sq_stmt_run(c, q);
}

/* Inside the write transaction: the records, then the retention of o (may be NULL). */
static int egress_add_locked(struct conn *c, const char *sandbox_id, const struct egress_rec *v,
                             size_t n, const struct egress_opts *o)
{
    int64_t sid = 0;
    {
        _cleanup_reset_ sqlite3_stmt *q = NULL;
        int r = sq_query_sandbox(c, ST_H_SB_SID, sandbox_id, &q);
        if (r <= 0) /* a sandbox deleted meanwhile: its connections are not logged */
            return r;
        sid = sqlite3_column_int64(q, 0);
    }
    int r = 0;
    for (size_t i = 0; i < n && r >= 0; i++)
        r = egress_insert(c, sid, &v[i]);
    if (r >= 0 && o && o->max_records > 0)
        r = run_sid_i64(c, ST_E_PRUNE_COUNT, sid, o->max_records);
    if (r >= 0 && o && o->max_age_ms > 0)
        r = run_sid_i64(c, ST_E_PRUNE_AGE, sid, o->now_ms - o->max_age_ms);
    return r < 0 ? r : 0;
}

int sq_egress_add(struct store *st, const char *sandbox_id, const struct egress_rec *v, size_t n,
                  const struct egress_opts *o)
{
    for (size_t i = 0; i < n; i++)
        if (!v[i].host || !v[i].rule)
            return err_set(-EINVAL, "an egress record needs a host and a rule");
    if (n == 0)
        return 0;
    struct sqlite_store *s = to_sq(st);
    int r = sq_wtx_begin(s);
    if (r < 0)
        return r;
    return sq_wtx_end(s, egress_add_locked(s->w, sandbox_id, v, n, o));
}

/* Points e at the EGRESS_COLS columns of the current row (valid until the next step). */
static void egress_from_row(sqlite3_stmt *q, struct egress_rec *e)
{
    memset(e, 0, sizeof(*e));
    e->at_ms = sqlite3_column_int64(q, 0);
    e->exec_id = (char *)sqlite3_column_text(q, 1);
    e->host = (char *)sqlite3_column_text(q, 2);
    e->port = sqlite3_column_int(q, 3);
    e->address = (char *)sqlite3_column_text(q, 4);
    e->allowed = sqlite3_column_int(q, 5) != 0;
    e->rule = (char *)sqlite3_column_text(q, 6);
    e->error = (char *)sqlite3_column_text(q, 7);
    e->bytes_up = sqlite3_column_int64(q, 8);
    e->bytes_down = sqlite3_column_int64(q, 9);
    e->duration_ms = sqlite3_column_int64(q, 10);
}

int sq_egress_list(struct store *st, const char *sandbox_id, int64_t limit, store_egress_cb cb,
                   void *userdata)
{
    _cleanup_pooled_ struct pooled p = {.s = to_sq(st)};
    int r = sq_pooled_get(&p);
    int64_t sid = 0;
    if (r >= 0)
        r = sandbox_sid(p.c, sandbox_id, NULL, NULL, &sid);
    if (r < 0)
        return r;
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    r = sq_stmt_get(p.c, ST_E_LIST, &q);
    if (r >= 0)
        r = sq_bind_check(p.c, sqlite3_bind_int64(q, 1, sid) | sqlite3_bind_int64(q, 2, limit));
    while (r >= 0 && (r = sq_stmt_step(p.c, q)) > 0) {
        struct egress_rec e;
        egress_from_row(q, &e);
        r = cb(&e, userdata);
        if (r != 0)
            return r;
    }
    return r;
}

/* ---- idempotency keys ---- */

/* Reads the record (sid, key) into *ret (IDEM_NEW when there is none). */
static int idem_read(struct conn *c, int64_t sid, const char *key, struct idem_rec *ret)
{
    memset(ret, 0, sizeof(*ret));
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    int r = sq_stmt_get(c, ST_I_GET, &q);
    if (r >= 0)
        r = sq_bind_check(c, sqlite3_bind_int64(q, 1, sid) | bind_text(q, 2, key));
    if (r >= 0)
        r = sq_stmt_step(c, q);
    if (r <= 0)
        return r;
    int state = sqlite3_column_int(q, 0);
    ret->state = state == 1   ? IDEM_PENDING
                 : state == 2 ? IDEM_DONE
                 : state == 4 ? IDEM_IN_DOUBT
                              : IDEM_TOO_LARGE;
    const void *h = sqlite3_column_blob(q, 1);
    if (h && sqlite3_column_bytes(q, 1) == 32)
        memcpy(ret->hash, h, 32);
    ret->created_ms = sqlite3_column_int64(q, 2);
    ret->status = sqlite3_column_int(q, 3);
    size_t n = 0;
    if (sqlite3_column_type(q, 4) != SQLITE_NULL && column_dup(q, 4, &ret->content_type, &n) < 0)
        return -ENOMEM;
    if (column_dup(q, 5, &ret->body, &ret->body_len) < 0) {
        idem_rec_release(ret);
        return -ENOMEM;
    }
    return 1;
}

/* Inside the write transaction: the lookup and, for a new key, its pending row. */
static int idem_begin_locked(struct conn *c, const char *sandbox_id, const char *tenant,
                             const char *sub, const char *key, const uint8_t hash[32],
                             const struct idem_opts *o, struct idem_rec *ret)
{
    int64_t sid = 0;
    int r = sandbox_sid(c, sandbox_id, tenant, sub, &sid);
    if (r >= 0)
        r = run_sid_i64(c, ST_I_SWEEP, sid, o->now_ms - o->ttl_ms);
    if (r >= 0 && o->sweep_max > 0) /* any sandbox's, a few at a time */
        r = run_sid_i64(c, ST_I_SWEEP_ANY, o->now_ms - o->ttl_ms, o->sweep_max);
    if (r >= 0)
        r = idem_read(c, sid, key, ret);
    if (r < 0)
        return r;
    if (r > 0) {
        if (!(ret->state == IDEM_PENDING && ret->created_ms < o->now_ms - o->pending_ttl_ms))
            return 0;
        /* abandoned by a server that died: the key starts afresh */
        idem_rec_release(ret);
        sqlite3_stmt *q = NULL;
        r = sq_stmt_get(c, ST_I_DEL_KEY, &q);
        if (r >= 0)
            r = sq_bind_check(c, sqlite3_bind_int64(q, 1, sid) | bind_text(q, 2, key));
        if (r >= 0)
            r = sq_stmt_run(c, q);
        if (r < 0)
            return r;
    }
    r = run_sid_i64(c, ST_I_TRIM, sid, o->max_keys - 1);
    if (r < 0)
        return r;
    uint8_t claim[IDEM_CLAIM_LEN];
    r = rand_bytes(claim, sizeof(claim));
    if (r < 0)
        return err_set(r, "no randomness for an idempotency claim");
    sqlite3_stmt *q = NULL;
    r = sq_stmt_get(c, ST_I_INSERT, &q);
    if (r >= 0)
        r = sq_bind_check(c, sqlite3_bind_int64(q, 1, sid) | bind_text(q, 2, key) |
                                 sqlite3_bind_blob(q, 3, hash, 32, SQLITE_STATIC) |
                                 sqlite3_bind_int64(q, 4, o->now_ms) |
                                 sqlite3_bind_blob(q, 5, claim, sizeof(claim), SQLITE_STATIC));
    if (r >= 0)
        r = sq_stmt_run(c, q);
    if (r < 0)
        return r;
    memset(ret, 0, sizeof(*ret));
    ret->state = IDEM_NEW;
    memcpy(ret->claim, claim, sizeof(claim));
    memcpy(ret->hash, hash, 32);
    ret->created_ms = o->now_ms;
    return 0;
}

int sq_idem_begin(struct store *st, const char *sandbox_id, const char *tenant, const char *sub,
                  const char *key, const uint8_t hash[32], const struct idem_opts *opts,
                  struct idem_rec *ret)
{
    struct sqlite_store *s = to_sq(st);
    int r = sq_wtx_begin(s);
    if (r < 0)
        return r;
    struct idem_rec rec = {0};
    r = sq_wtx_end(s, idem_begin_locked(s->w, sandbox_id, tenant, sub, key, hash, opts, &rec));
    if (r < 0) {
        idem_rec_release(&rec);
        return r;
    }
    *ret = rec;
    return 0;
}

/* Binds (sandbox_id, key, claim) to ?1, ?2, ?3 of statement id on the writer. */
static int claim_stmt(struct conn *c, enum stmt_id id, const char *sandbox_id, const char *key,
                      const uint8_t claim[IDEM_CLAIM_LEN], sqlite3_stmt **ret)
{
    int r = sq_stmt_get(c, id, ret);
    if (r >= 0)
        r = sq_bind_check(c, bind_text(*ret, 1, sandbox_id) | bind_text(*ret, 2, key) |
                                 sqlite3_bind_blob(*ret, 3, claim, IDEM_CLAIM_LEN, SQLITE_STATIC));
    return r;
}

int sq_idem_finish(struct store *st, const char *sandbox_id, const char *key,
                   const uint8_t claim[IDEM_CLAIM_LEN], enum idem_state state, int status,
                   const char *content_type, const void *body, size_t len, int64_t max_stored_bytes)
{
    struct sqlite_store *s = to_sq(st);
    int r = sq_wtx_begin(s);
    if (r < 0)
        return r;
    sqlite3_stmt *q = NULL;
    r = claim_stmt(s->w, ST_I_FINISH, sandbox_id, key, claim, &q);
    if (r >= 0)
        r = sq_bind_check(s->w, sqlite3_bind_int(q, 4, (int)state) |
                                    sqlite3_bind_int(q, 5, status) | bind_text(q, 6, content_type) |
                                    bind_blob_or_null(q, 7, body, len));
    if (r >= 0)
        r = sq_stmt_run(s->w, q);
    if (r >= 0 && sqlite3_changes(s->w->db) == 0)
        r = err_set(-ENOENT, "no pending request with this Idempotency-Key and claim");
    if (r >= 0 && max_stored_bytes > 0) {
        r = sq_stmt_get(s->w, ST_I_EVICT, &q);
        if (r >= 0)
            r = sq_bind_check(s->w, bind_text(q, 1, sandbox_id) | bind_text(q, 2, key) |
                                        sqlite3_bind_int64(q, 3, max_stored_bytes - (int64_t)len));
        if (r >= 0)
            r = sq_stmt_run(s->w, q);
    }
    return sq_wtx_end(s, r);
}

int sq_idem_abort(struct store *st, const char *sandbox_id, const char *key,
                  const uint8_t claim[IDEM_CLAIM_LEN])
{
    struct sqlite_store *s = to_sq(st);
    int r = sq_wtx_begin(s);
    if (r < 0)
        return r;
    sqlite3_stmt *q = NULL;
    r = claim_stmt(s->w, ST_I_ABORT, sandbox_id, key, claim, &q);
    if (r >= 0)
        r = sq_stmt_run(s->w, q);
    return sq_wtx_end(s, r);
}

int sq_idem_renew(struct store *st, const char *sandbox_id, const char *key,
                  const uint8_t claim[IDEM_CLAIM_LEN], int64_t now_ms)
{
    struct sqlite_store *s = to_sq(st);
    int r = sq_wtx_begin(s);
    if (r < 0)
        return r;
    sqlite3_stmt *q = NULL;
    r = claim_stmt(s->w, ST_I_RENEW, sandbox_id, key, claim, &q);
    if (r >= 0)
        r = sq_bind_check(s->w, sqlite3_bind_int64(q, 4, now_ms));
    if (r >= 0)
        r = sq_stmt_run(s->w, q);
    if (r >= 0 && sqlite3_changes(s->w->db) == 0)
        r = err_set(-ENOENT, "no pending request with this Idempotency-Key and claim");
    return sq_wtx_end(s, r);
}
