/*
 * pg_journal.c — the exec journal, the egress log and idempotency keys of the PostgreSQL engine
 * (contract: store.h). Tables (pg_schema.c, the journal's, the claims' and egress's
 * migrations): `execs` (one row per exec, `seq` in the order they were added, unique (sid,
 * exec_id)), `egress` (one row per connection asked for, read newest first through an index on
 * (sid, at_ms, seq)) and `idempotency` (one row per (sid, key):
 * state 1 pending, with the claim of its request, 2 done with its answer, 3 done with an answer
 * too large to keep, 4 failed with its commit in doubt). Each is
 * pruned when rows are added, in the same transaction, through its indexes on the sandbox and
 * the order or time of its rows.
 *
 * Concurrency between servers: a key's pending row is inserted with ON CONFLICT DO NOTHING, so
 * of two servers beginning the same key one inserts and the other (waiting for the first's
 * transaction to end) reads the row the first wrote. The statements are few and run once per
 * request, so they are sent as text rather than kept prepared.
 */
#include "store/pg/pg_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

#define EXEC_COLS                                                                                  \
    "exec_id, kind, script, started_ms, duration_ms, exit_code, timed_out, version, "              \
    "stdout_bytes, stderr_bytes, stdout_truncated, stderr_truncated"
#define EGRESS_COLS                                                                                \
    "at_ms, exec_id, host, port, address, allowed, rule, error, bytes_up, bytes_down, duration_ms"

static int run(struct pg_store *s, struct pg_conn *c, const char *sql, const struct pg_params *p,
               PGresult **ret)
{
    if (p->overflow)
        return err_set(-EINVAL, "too many statement parameters");
    return pg_exec_sql(s, c, sql, p->n, p->values, p->lengths, p->formats, ret);
}

/* run() on a pooled connection. */
static int query(struct pg_store *s, const char *sql, const struct pg_params *p, PGresult **ret)
{
    struct pg_conn *c;
    int r = pg_pool_get(s, &c);
    if (r < 0)
        return r;
    r = run(s, c, sql, p, ret);
    pg_pool_put(s, c);
    return r;
}

/* The sid of sandbox `id` into *ret_sid; -ENOENT when missing or (tenant, sub given) owned by
 * someone else. c NULL: a pooled connection. */
static int sandbox_sid(struct pg_store *s, struct pg_conn *c, const char *id, const char *tenant,
                       const char *sub, int64_t *ret_sid)
{
    struct pg_params p = {0};
    pp_text(&p, id);
    static const char sql[] = "SELECT sid, tenant, sub FROM sandboxes WHERE id = $1";
    _cleanup_pgresult_ PGresult *res = NULL;
    int r = c ? run(s, c, sql, &p, &res) : query(s, sql, &p, &res);
    if (r < 0)
        return r;
    if (r == 0 || !owner_matches(tenant, sub, pg_bytes(res, 0, 1, NULL), pg_bytes(res, 0, 2, NULL)))
        return err_set(-ENOENT, "sandbox not found");
    *ret_sid = pg_i64(res, 0, 0);
    return 0;
}

/* Runs sql with (sid, v) as $1, $2 on c. */
static int run_sid_i64(struct pg_store *s, struct pg_conn *c, const char *sql, int64_t sid,
                       int64_t v)
{
    struct pg_params p = {0};
    pp_i64(&p, sid);
    pp_i64(&p, v);
    int r = run(s, c, sql, &p, NULL);
    return r < 0 ? r : 0;
}

int pg_journal_delete_in(struct pg_store *s, struct pg_conn *c, int64_t sid)
{
    struct pg_params p = {0};
    pp_i64(&p, sid);
    int r = run(s, c, "DELETE FROM execs WHERE sid = $1", &p, NULL);
    if (r >= 0)
        r = run(s, c, "DELETE FROM egress WHERE sid = $1", &p, NULL);
    if (r >= 0)
        r = run(s, c, "DELETE FROM idempotency WHERE sid = $1", &p, NULL);
    return r < 0 ? r : 0;
}

/* ---- the exec journal ---- */

static int exec_add_in(struct pg_store *s, struct pg_conn *c, const char *sandbox_id,
                       const struct exec_rec *e, const struct journal_opts *o)
{
    int64_t sid = 0;
    int r = sandbox_sid(s, c, sandbox_id, NULL, NULL, &sid);
    if (r < 0)
        return r;
    struct pg_params p = {0};
    pp_i64(&p, sid);
    pp_text(&p, e->exec_id);
    pp_text(&p, e->kind);
    pp_text(&p, e->script);
    pp_i64(&p, e->started_ms);
    pp_i64(&p, e->duration_ms);
    pp_i64(&p, e->exit_code);
    pp_i64(&p, e->timed_out);
    pp_i64(&p, e->version);
    pp_i64(&p, e->stdout_bytes);
    pp_i64(&p, e->stderr_bytes);
    pp_bytes(&p, e->stdout_len ? e->stdout_data : NULL, e->stdout_len);
    pp_bytes(&p, e->stderr_len ? e->stderr_data : NULL, e->stderr_len);
    pp_i64(&p, e->stdout_truncated);
    pp_i64(&p, e->stderr_truncated);
    r = run(s, c,
            "INSERT INTO execs (sid, exec_id, kind, script, started_ms, duration_ms, exit_code, "
            "timed_out, version, stdout_bytes, stderr_bytes, stdout, stderr, stdout_truncated, "
            "stderr_truncated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::int <> 0, $9, $10, $11, "
            "$12, $13, $14::int <> 0, $15::int <> 0) ON CONFLICT (sid, exec_id) DO NOTHING",
            &p, NULL);
    if (r == 0)
        return err_set(-EEXIST, "the sandbox's journal has an exec with this id already");
    if (r >= 0 && o && o->max_records > 0)
        r = run_sid_i64(s, c,
                        "DELETE FROM execs WHERE sid = $1 AND seq <= (SELECT seq FROM execs "
                        "WHERE sid = $1 ORDER BY seq DESC OFFSET $2 LIMIT 1)",
                        sid, o->max_records);
    if (r >= 0 && o && o->max_age_ms > 0)
        r = run_sid_i64(s, c, "DELETE FROM execs WHERE sid = $1 AND started_ms < $2", sid,
                        o->now_ms - o->max_age_ms);
    return r < 0 ? r : 0;
}

int pg_exec_add(struct store *st, const char *sandbox_id, const struct exec_rec *rec,
                const struct journal_opts *opts)
{
    if (!rec->exec_id || !rec->kind || !rec->script)
        return err_set(-EINVAL, "an exec record needs an id, a kind and a script");
    struct pg_store *s = to_pg(st);
    struct pg_conn *c;
    int r = pg_tx_begin(s, &c);
    if (r < 0)
        return r;
    return pg_tx_end(s, c, exec_add_in(s, c, sandbox_id, rec, opts), NULL, NULL);
}

/* Points e at the EXEC_COLS columns of row i (valid while res lives). */
static void exec_from_row(const PGresult *res, int i, struct exec_rec *e)
{
    memset(e, 0, sizeof(*e));
    e->exec_id = (char *)pg_bytes(res, i, 0, NULL);
    e->kind = (char *)pg_bytes(res, i, 1, NULL);
    e->script = (char *)pg_bytes(res, i, 2, NULL);
    e->started_ms = pg_i64(res, i, 3);
    e->duration_ms = pg_i64(res, i, 4);
    e->exit_code = pg_i64(res, i, 5);
    e->timed_out = pg_i64(res, i, 6) != 0;
    e->version = pg_i64(res, i, 7);
    e->stdout_bytes = pg_i64(res, i, 8);
    e->stderr_bytes = pg_i64(res, i, 9);
    e->stdout_truncated = pg_i64(res, i, 10) != 0;
    e->stderr_truncated = pg_i64(res, i, 11) != 0;
}

int pg_exec_list(struct store *st, const char *sandbox_id, const char *before, int64_t limit,
                 store_exec_cb cb, void *userdata)
{
    struct pg_store *s = to_pg(st);
    int64_t sid = 0, below = INT64_MAX;
    int r = sandbox_sid(s, NULL, sandbox_id, NULL, NULL, &sid);
    if (r < 0)
        return r;
    if (before) {
        struct pg_params p = {0};
        pp_i64(&p, sid);
        pp_text(&p, before);
        _cleanup_pgresult_ PGresult *res = NULL;
        r = query(s, "SELECT seq FROM execs WHERE sid = $1 AND exec_id = $2", &p, &res);
        if (r < 0)
            return r;
        if (r == 0)
            return err_set(-ERR_EXEC_NOT_FOUND, "no exec %s in this sandbox's journal", before);
        below = pg_i64(res, 0, 0);
    }
    struct pg_params p = {0};
    pp_i64(&p, sid);
    pp_i64(&p, below);
    pp_i64(&p, limit);
    _cleanup_pgresult_ PGresult *res = NULL;
    r = query(s,
              "SELECT " EXEC_COLS " FROM execs WHERE sid = $1 AND seq < $2 "
              "ORDER BY seq DESC LIMIT $3",
              &p, &res);
    for (int i = 0; r > 0 && i < PQntuples(res); i++) {
        struct exec_rec e;
        exec_from_row(res, i, &e);
        int c = cb(&e, userdata);
        if (c != 0)
            return c;
    }
    return r < 0 ? r : 0;
}

/* A copy of the bytes of column col of row 0 (NULL and 0 for SQL NULL or empty). */
static int column_dup(const PGresult *res, int col, char **ret, size_t *ret_len)
{
    size_t n = 0;
    const char *v = pg_bytes(res, 0, col, &n);
    *ret = NULL;
    *ret_len = 0;
    if (!v || n == 0)
        return 0;
    char *d = malloc(n + 1);
    if (!d)
        return -ENOMEM;
    memcpy(d, v, n);
    d[n] = '\0';
    *ret = d;
    *ret_len = n;
    return 0;
}

int pg_exec_get(struct store *st, const char *sandbox_id, const char *exec_id, struct exec_rec *ret)
{
    struct pg_store *s = to_pg(st);
    int64_t sid = 0;
    int r = sandbox_sid(s, NULL, sandbox_id, NULL, NULL, &sid);
    if (r < 0)
        return r;
    struct pg_params p = {0};
    pp_i64(&p, sid);
    pp_text(&p, exec_id);
    _cleanup_pgresult_ PGresult *res = NULL;
    r = query(s, "SELECT " EXEC_COLS ", stdout, stderr FROM execs WHERE sid = $1 AND exec_id = $2",
              &p, &res);
    if (r < 0)
        return r;
    if (r == 0)
        return err_set(-ERR_EXEC_NOT_FOUND, "no exec %s in this sandbox's journal", exec_id);
    struct exec_rec view, out;
    exec_from_row(res, 0, &view);
    out = view;
    out.exec_id = strdup(view.exec_id ? view.exec_id : "");
    out.kind = strdup(view.kind ? view.kind : "");
    out.script = strdup(view.script ? view.script : "");
    r = out.exec_id && out.kind && out.script ? 0 : -ENOMEM;
    if (r == 0)
        r = column_dup(res, 12, &out.stdout_data, &out.stdout_len);
    if (r == 0)
        r = column_dup(res, 13, &out.stderr_data, &out.stderr_len);
    if (r < 0) {
        exec_rec_release(&out);
        return r;
    }
    *ret = out;
    return 0;
}

/* ---- the egress log ---- */

/* One array per column of the egress rows, in EGRESS_COLS order. */
enum {
    E_AT,
    E_EXEC,
    E_HOST,
    E_PORT,
    E_ADDRESS,
    E_ALLOWED,
    E_RULE,
    E_ERROR,
    E_UP,
    E_DOWN,
    E_DUR,
    E_N
};

/* A string (NULL: a NULL element) into a bytea array. */
static int pga_str(struct pg_array *a, const char *str)
{
    return pga_bytes(a, str, str ? strlen(str) : 0);
}

/* Appends e's columns to the arrays col. */
static int egress_row(struct pg_array *col, const struct egress_rec *e)
{
    int r = pga_i64(&col[E_AT], e->at_ms);
    if (r >= 0)
        r = pga_str(&col[E_EXEC], e->exec_id);
    if (r >= 0)
        r = pga_str(&col[E_HOST], e->host);
    if (r >= 0)
        r = pga_i64(&col[E_PORT], e->port);
    if (r >= 0)
        r = pga_str(&col[E_ADDRESS], e->address);
    if (r >= 0)
        r = pga_i64(&col[E_ALLOWED], e->allowed);
    if (r >= 0)
        r = pga_str(&col[E_RULE], e->rule);
    if (r >= 0)
        r = pga_str(&col[E_ERROR], e->error);
    if (r >= 0)
        r = pga_i64(&col[E_UP], e->bytes_up);
    if (r >= 0)
        r = pga_i64(&col[E_DOWN], e->bytes_down);
    if (r >= 0)
        r = pga_i64(&col[E_DUR], e->duration_ms);
    return r;
}

/* The n records as rows of sandbox sid, in one statement (one array per column; the strings
 * travel as bytea and are read as UTF-8), in their order. */
static int egress_insert(struct pg_store *s, struct pg_conn *c, int64_t sid,
                         const struct egress_rec *v, size_t n)
{
    static const uint32_t oids[E_N] = {PG_OID_INT8,  PG_OID_BYTEA, PG_OID_BYTEA, PG_OID_INT8,
                                       PG_OID_BYTEA, PG_OID_INT8,  PG_OID_BYTEA, PG_OID_BYTEA,
                                       PG_OID_INT8,  PG_OID_INT8,  PG_OID_INT8};
    struct pg_array col[E_N] = {0};
    int r = 0;
    for (int k = 0; k < E_N && r >= 0; k++)
        r = pga_init(&col[k], oids[k]);
    for (size_t i = 0; i < n && r >= 0; i++)
        r = egress_row(col, &v[i]);
    if (r >= 0) {
        struct pg_params p = {0};
        pp_i64(&p, sid);
        for (int k = 0; k < E_N; k++)
            pp_array(&p, &col[k]);
        r = run(s, c,
                "INSERT INTO egress (sid, " EGRESS_COLS ") SELECT $1::bigint, u.at, "
                "convert_from(u.ex, 'UTF8'), convert_from(u.h, 'UTF8'), u.p, "
                "convert_from(u.a, 'UTF8'), u.al <> 0, convert_from(u.r, 'UTF8'), "
                "convert_from(u.e, 'UTF8'), u.up, u.down, u.dur "
                "FROM unnest($2::bigint[], $3::bytea[], $4::bytea[], $5::bigint[], $6::bytea[], "
                "$7::bigint[], $8::bytea[], $9::bytea[], $10::bigint[], $11::bigint[], "
                "$12::bigint[]) WITH ORDINALITY AS u(at, ex, h, p, a, al, r, e, up, down, dur, i) "
                "ORDER BY u.i",
                &p, NULL);
    }
    for (int k = 0; k < E_N; k++)
        pga_release(&col[k]);
    return r < 0 ? r : 0;
}

static int egress_add_in(struct pg_store *s, struct pg_conn *c, const char *sandbox_id,
                         const struct egress_rec *v, size_t n, const struct egress_opts *o)
{
    /* The sandbox's row locked against its delete until this transaction ends: a delete
     * either waits and removes these rows too, or came first and nothing is added. */
    struct pg_params p = {0};
    pp_text(&p, sandbox_id);
    _cleanup_pgresult_ PGresult *res = NULL;
    int r = run(s, c, "SELECT sid FROM sandboxes WHERE id = $1 FOR KEY SHARE", &p, &res);
    if (r <= 0)
        return r;
    int64_t sid = pg_i64(res, 0, 0);
    r = egress_insert(s, c, sid, v, n);
    if (r >= 0 && o && o->max_records > 0)
        r = run_sid_i64(s, c,
                        "DELETE FROM egress WHERE seq IN (SELECT seq FROM egress WHERE sid = $1 "
                        "ORDER BY at_ms DESC, seq DESC OFFSET $2)",
                        sid, o->max_records);
    if (r >= 0 && o && o->max_age_ms > 0)
        r = run_sid_i64(s, c, "DELETE FROM egress WHERE sid = $1 AND at_ms < $2", sid,
                        o->now_ms - o->max_age_ms);
    return r < 0 ? r : 0;
}

int pg_egress_add(struct store *st, const char *sandbox_id, const struct egress_rec *v, size_t n,
                  const struct egress_opts *o)
{
    for (size_t i = 0; i < n; i++)
        if (!v[i].host || !v[i].rule)
            return err_set(-EINVAL, "an egress record needs a host and a rule");
    if (n == 0)
        return 0;
    struct pg_store *s = to_pg(st);
    struct pg_conn *c;
    int r = pg_tx_begin(s, &c);
    if (r < 0)
        return r;
    return pg_tx_end(s, c, egress_add_in(s, c, sandbox_id, v, n, o), NULL, NULL);
}

/* Points e at the EGRESS_COLS columns of row i (valid while res lives). */
static void egress_from_row(const PGresult *res, int i, struct egress_rec *e)
{
    memset(e, 0, sizeof(*e));
    e->at_ms = pg_i64(res, i, 0);
    e->exec_id = (char *)pg_bytes(res, i, 1, NULL);
    e->host = (char *)pg_bytes(res, i, 2, NULL);
    e->port = (int)pg_i64(res, i, 3);
    e->address = (char *)pg_bytes(res, i, 4, NULL);
    e->allowed = pg_i64(res, i, 5) != 0;
    e->rule = (char *)pg_bytes(res, i, 6, NULL);
    e->error = (char *)pg_bytes(res, i, 7, NULL);
    e->bytes_up = pg_i64(res, i, 8);
    e->bytes_down = pg_i64(res, i, 9);
    e->duration_ms = pg_i64(res, i, 10);
}

int pg_egress_list(struct store *st, const char *sandbox_id, int64_t limit, store_egress_cb cb,
                   void *userdata)
{
    struct pg_store *s = to_pg(st);
    int64_t sid = 0;
    int r = sandbox_sid(s, NULL, sandbox_id, NULL, NULL, &sid);
    if (r < 0)
        return r;
    struct pg_params p = {0};
    pp_i64(&p, sid);
    pp_i64(&p, limit);
    _cleanup_pgresult_ PGresult *res = NULL;
    r = query(s,
              "SELECT " EGRESS_COLS " FROM egress WHERE sid = $1 "
              "ORDER BY at_ms DESC, seq DESC LIMIT $2",
              &p, &res);
    for (int i = 0; r > 0 && i < PQntuples(res); i++) {
        struct egress_rec e;
        egress_from_row(res, i, &e);
        int cr = cb(&e, userdata);
        if (cr != 0)
            return cr;
    }
    return r < 0 ? r : 0;
}

/* ---- idempotency keys ---- */

/* Reads the record (sid, key) on c into *ret: 1, or 0 when there is none. */
static int idem_read(struct pg_store *s, struct pg_conn *c, int64_t sid, const char *key,
                     struct idem_rec *ret)
{
    memset(ret, 0, sizeof(*ret));
    struct pg_params p = {0};
    pp_i64(&p, sid);
    pp_text(&p, key);
    _cleanup_pgresult_ PGresult *res = NULL;
    int r = run(s, c,
                "SELECT state, hash, created_ms, status, ctype, body FROM idempotency "
                "WHERE sid = $1 AND key = $2",
                &p, &res);
    if (r <= 0)
        return r;
    int64_t state = pg_i64(res, 0, 0);
    ret->state = state == 1   ? IDEM_PENDING
                 : state == 2 ? IDEM_DONE
                 : state == 4 ? IDEM_IN_DOUBT
                              : IDEM_TOO_LARGE;
    size_t n = 0;
    const char *h = pg_bytes(res, 0, 1, &n);
    if (h && n == 32)
        memcpy(ret->hash, h, 32);
    ret->created_ms = pg_i64(res, 0, 2);
    ret->status = (int)pg_i64(res, 0, 3);
    if (column_dup(res, 4, &ret->content_type, &n) < 0 ||
        column_dup(res, 5, &ret->body, &ret->body_len) < 0) {
        idem_rec_release(ret);
        return -ENOMEM;
    }
    return 1;
}

static int idem_begin_in(struct pg_store *s, struct pg_conn *c, const char *sandbox_id,
                         const char *tenant, const char *sub, const char *key,
                         const uint8_t hash[32], const struct idem_opts *o, struct idem_rec *ret)
{
    int64_t sid = 0;
    int r = sandbox_sid(s, c, sandbox_id, tenant, sub, &sid);
    if (r >= 0)
        r = run_sid_i64(s, c, "DELETE FROM idempotency WHERE sid = $1 AND created_ms < $2", sid,
                        o->now_ms - o->ttl_ms);
    /* any sandbox's, a few at a time (index idempotency_expiry); rows another transaction
     * holds are left to a later call rather than waited for */
    if (r >= 0 && o->sweep_max > 0)
        r = run_sid_i64(s, c,
                        "DELETE FROM idempotency WHERE seq IN (SELECT seq FROM idempotency "
                        "WHERE created_ms < $1 ORDER BY created_ms LIMIT $2 "
                        "FOR UPDATE SKIP LOCKED)",
                        o->now_ms - o->ttl_ms, o->sweep_max);
    struct pg_params p = {0};
    pp_i64(&p, sid);
    pp_text(&p, key);
    pp_i64(&p, o->now_ms - o->pending_ttl_ms);
    /* a pending record abandoned by a server that died: the key starts afresh */
    if (r >= 0)
        r = run(s, c,
                "DELETE FROM idempotency WHERE sid = $1 AND key = $2 AND state = 1 "
                "AND created_ms < $3",
                &p, NULL);
    if (r >= 0)
        r = run_sid_i64(s, c,
                        "DELETE FROM idempotency WHERE sid = $1 AND seq <= (SELECT seq FROM "
                        "idempotency WHERE sid = $1 ORDER BY seq DESC OFFSET $2 LIMIT 1)",
                        sid, o->max_keys - 1);
    if (r < 0)
        return r;
    uint8_t claim[IDEM_CLAIM_LEN];
    r = rand_bytes(claim, sizeof(claim));
    if (r < 0)
        return err_set(r, "no randomness for an idempotency claim");
    p = (struct pg_params){0};
    pp_i64(&p, sid);
    pp_text(&p, key);
    pp_bytes(&p, hash, 32);
    pp_i64(&p, o->now_ms);
    pp_bytes(&p, claim, sizeof(claim));
    r = run(s, c,
            "INSERT INTO idempotency (sid, key, hash, created_ms, state, claim) "
            "VALUES ($1, $2, $3, $4, 1, $5) ON CONFLICT (sid, key) DO NOTHING",
            &p, NULL);
    if (r < 0)
        return r;
    if (r == 0) { /* the key is there: what it holds */
        r = idem_read(s, c, sid, key, ret);
        if (r < 0)
            return r;
        if (r == 0) /* removed between the insert and the read: rare enough to retry */
            return err_set(-ERR_IDEMPOTENCY_IN_PROGRESS,
                           "another request with this Idempotency-Key ended just now; retry");
        return 0;
    }
    memset(ret, 0, sizeof(*ret));
    ret->state = IDEM_NEW;
    memcpy(ret->claim, claim, sizeof(claim));
    memcpy(ret->hash, hash, 32);
    ret->created_ms = o->now_ms;
    return 0;
}

int pg_idem_begin(struct store *st, const char *sandbox_id, const char *tenant, const char *sub,
                  const char *key, const uint8_t hash[32], const struct idem_opts *opts,
                  struct idem_rec *ret)
{
    struct pg_store *s = to_pg(st);
    struct pg_conn *c;
    int r = pg_tx_begin(s, &c);
    if (r < 0)
        return r;
    struct idem_rec rec = {0};
    r = pg_tx_end(s, c, idem_begin_in(s, c, sandbox_id, tenant, sub, key, hash, opts, &rec), NULL,
                  NULL);
    if (r < 0) {
        idem_rec_release(&rec);
        return r;
    }
    *ret = rec;
    return 0;
}

/* The record of sandbox $1, key $2 and claim $3, pending: the condition finish, abort and
 * renew act on. */
#define CLAIMED_1_2_3                                                                              \
    "sid = (SELECT sid FROM sandboxes WHERE id = $1) AND key = $2 AND state = 1 AND claim = $3"

static int idem_finish_in(struct pg_store *s, struct pg_conn *c, const char *sandbox_id,
                          const char *key, const uint8_t claim[IDEM_CLAIM_LEN],
                          enum idem_state state, int status, const char *content_type,
                          const void *body, size_t len, int64_t max_stored_bytes)
{
    struct pg_params p = {0};
    pp_text(&p, sandbox_id);
    pp_text(&p, key);
    pp_bytes(&p, claim, IDEM_CLAIM_LEN);
    pp_i64(&p, state);
    pp_i64(&p, status);
    pp_text(&p, content_type);
    pp_bytes(&p, len ? body : NULL, len);
    int r = run(s, c,
                "UPDATE idempotency SET state = $4, status = $5, ctype = $6, body = $7 "
                "WHERE " CLAIMED_1_2_3,
                &p, NULL);
    if (r == 0)
        return err_set(-ENOENT, "no pending request with this Idempotency-Key and claim");
    if (r < 0 || max_stored_bytes <= 0)
        return r < 0 ? r : 0;
    /* the other finished records beyond max_stored_bytes - len body bytes, newest kept; rows
     * another transaction holds are left to a later call rather than waited for */
    p = (struct pg_params){0};
    pp_text(&p, sandbox_id);
    pp_text(&p, key);
    pp_i64(&p, max_stored_bytes - (int64_t)len);
    r = run(s, c,
            "WITH k AS (SELECT seq, sum(coalesce(octet_length(body), 0)) OVER (ORDER BY seq DESC) "
            "AS held FROM idempotency WHERE sid = (SELECT sid FROM sandboxes WHERE id = $1) "
            "AND state <> 1 AND key <> $2) "
            "DELETE FROM idempotency WHERE seq IN (SELECT i.seq FROM idempotency i "
            "WHERE i.seq <= (SELECT seq FROM k WHERE held > $3 ORDER BY seq DESC LIMIT 1) "
            "AND i.sid = (SELECT sid FROM sandboxes WHERE id = $1) AND i.state <> 1 "
            "AND i.key <> $2 FOR UPDATE SKIP LOCKED)",
            &p, NULL);
    return r < 0 ? r : 0;
}

int pg_idem_finish(struct store *st, const char *sandbox_id, const char *key,
                   const uint8_t claim[IDEM_CLAIM_LEN], enum idem_state state, int status,
                   const char *content_type, const void *body, size_t len, int64_t max_stored_bytes)
{
    struct pg_store *s = to_pg(st);
    struct pg_conn *c;
    int r = pg_tx_begin(s, &c);
    if (r < 0)
        return r;
    r = idem_finish_in(s, c, sandbox_id, key, claim, state, status, content_type, body, len,
                       max_stored_bytes);
    return pg_tx_end(s, c, r, NULL, NULL);
}

int pg_idem_abort(struct store *st, const char *sandbox_id, const char *key,
                  const uint8_t claim[IDEM_CLAIM_LEN])
{
    struct pg_params p = {0};
    pp_text(&p, sandbox_id);
    pp_text(&p, key);
    pp_bytes(&p, claim, IDEM_CLAIM_LEN);
    int r = query(to_pg(st), "DELETE FROM idempotency WHERE " CLAIMED_1_2_3, &p, NULL);
    return r < 0 ? r : 0;
}

int pg_idem_renew(struct store *st, const char *sandbox_id, const char *key,
                  const uint8_t claim[IDEM_CLAIM_LEN], int64_t now_ms)
{
    struct pg_params p = {0};
    pp_text(&p, sandbox_id);
    pp_text(&p, key);
    pp_bytes(&p, claim, IDEM_CLAIM_LEN);
    pp_i64(&p, now_ms);
    int r =
        query(to_pg(st), "UPDATE idempotency SET created_ms = $4 WHERE " CLAIMED_1_2_3, &p, NULL);
    if (r == 0)
        return err_set(-ENOENT, "no pending request with this Idempotency-Key and claim");
    return r < 0 ? r : 0;
}
