/*
 * pg_conn.c — connections of the PostgreSQL engine: opening one, the bounded pool, prepared
 * statements with their parameters and binary results, transactions (with the in-doubt COMMIT
 * rule), and the mapping of failures to the store's codes. See pg_int.h for the model.
 */
#include "store/pg/pg_int.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/err.h"
#include "util/timeutil.h"

/* ---- parameters -------------------------------------------------------------------------- */

static int pp_slot(struct pg_params *p)
{
    if (p->n >= PG_MAX_PARAMS) {
        p->overflow = true;
        return -1;
    }
    return p->n++;
}

void pp_i64(struct pg_params *p, int64_t v)
{
    int i = pp_slot(p);
    if (i < 0)
        return;
    snprintf(p->num[i], sizeof(p->num[i]), "%" PRId64, v);
    p->values[i] = p->num[i];
    p->lengths[i] = 0;
    p->formats[i] = 0;
}

void pp_text(struct pg_params *p, const char *s)
{
    int i = pp_slot(p);
    if (i < 0)
        return;
    p->values[i] = s;
    p->lengths[i] = 0;
    p->formats[i] = 0;
}

void pp_bytes(struct pg_params *p, const void *data, size_t len)
{
    int i = pp_slot(p);
    if (i < 0)
        return;
    /* A zero-length bytea still needs a non-NULL pointer (NULL means SQL NULL). */
    p->values[i] = data ? (len ? (const char *)data : "") : NULL;
    p->lengths[i] = (int)len;
    p->formats[i] = 1;
}

/* ---- array parameters --------------------------------------------------------------------- */

/* The header of a one-dimensional binary array (array_send): ndim, has-nulls flag, element
 * type, then the dimension's length and lower bound; the flag and the length are set by
 * pp_array. */
#define PGA_HEADER 20
#define PGA_FLAGS_AT 4
#define PGA_DIM_AT 12

static void put_be32(char *at, uint32_t v)
{
    uint32_t be = htobe32(v);
    memcpy(at, &be, 4);
}

/* Room for `extra` more bytes, the whole within what a parameter's int length holds. */
static int pga_room(struct pg_array *a, size_t extra)
{
    if (extra > (size_t)INT_MAX - a->len)
        return err_set(-E2BIG, "too much data for one statement");
    if (a->len + extra <= a->cap)
        return 0;
    size_t cap = a->cap * 2 > a->len + extra ? a->cap * 2 : a->len + extra;
    char *d = realloc(a->data, cap);
    if (!d)
        return -ENOMEM;
    a->data = d;
    a->cap = cap;
    return 0;
}

int pga_init(struct pg_array *a, uint32_t oid)
{
    *a = (struct pg_array){0};
    int r = pga_room(a, 256);
    if (r < 0)
        return r;
    put_be32(a->data, 1);
    put_be32(a->data + PGA_FLAGS_AT, 0);
    put_be32(a->data + 8, oid);
    put_be32(a->data + PGA_DIM_AT, 0);
    put_be32(a->data + 16, 1);
    a->len = PGA_HEADER;
    return 0;
}

int pga_bytes(struct pg_array *a, const void *data, size_t len)
{
    if (a->n == INT32_MAX)
        return err_set(-E2BIG, "too many rows for one statement");
    int r = pga_room(a, 4 + (data ? len : 0));
    if (r < 0)
        return r;
    put_be32(a->data + a->len, data ? (uint32_t)len : UINT32_MAX); /* -1: NULL */
    a->len += 4;
    if (data && len > 0)
        memcpy(a->data + a->len, data, len);
    a->len += data ? len : 0;
    a->nulls |= !data;
    a->n++;
    return 0;
}

int pga_i64(struct pg_array *a, int64_t v)
{
    uint64_t be = htobe64((uint64_t)v);
    return pga_bytes(a, &be, 8);
}

void pga_release(struct pg_array *a)
{
    free(a->data);
    *a = (struct pg_array){0};
}

void pp_array(struct pg_params *p, struct pg_array *a)
{
    put_be32(a->data + PGA_FLAGS_AT, a->nulls);
    put_be32(a->data + PGA_DIM_AT, (uint32_t)a->n);
    pp_bytes(p, a->data, a->len);
}

/* ---- results ------------------------------------------------------------------------------ */

int64_t pg_i64(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        return 0;
    const unsigned char *v = (const unsigned char *)PQgetvalue(res, row, col);
    uint64_t x = 0;
    int len = PQgetlength(res, row, col);
    if (len != 1 && len != 2 && len != 4 && len != 8)
        return 0;
    for (int i = 0; i < len; i++)
        x = x << 8 | v[i];
    if (len < 8 && len > 1 && (x >> (8 * len - 1)) & 1)
        x |= ~0ULL << (8 * len); /* sign-extend int2, int4 */
    return (int64_t)x;
}

const char *pg_bytes(const PGresult *res, int row, int col, size_t *ret_len)
{
    if (PQgetisnull(res, row, col)) {
        if (ret_len)
            *ret_len = 0;
        return NULL;
    }
    if (ret_len)
        *ret_len = (size_t)PQgetlength(res, row, col);
    return PQgetvalue(res, row, col);
}

bool pg_id(const PGresult *res, int row, int col, uint8_t id[CONTENT_ID_LEN])
{
    size_t len = 0;
    const char *v = pg_bytes(res, row, col, &len);
    if (!v || len != CONTENT_ID_LEN)
        return false;
    memcpy(id, v, CONTENT_ID_LEN);
    return true;
}

/* ---- failures ----------------------------------------------------------------------------- */

/* libpq's reason for a failed connection attempt, first line only: for the operator at open. */
static int connect_failure(struct pg_store *s, PGconn *pg)
{
    if (!s->opening)
        return err_set(-ERR_STORE_UNAVAILABLE, "the database is unavailable; retry later");
    const char *m = pg ? PQerrorMessage(pg) : NULL;
    size_t n = m ? strcspn(m, "\n") : 0;
    if (n == 0)
        return err_set(-ERR_STORE_UNAVAILABLE, "cannot connect to the database");
    return err_set(-ERR_STORE_UNAVAILABLE, "cannot connect to the database: %.*s", (int)n, m);
}

static bool sqlstate_is(const char *state, const char *want)
{
    return state && strcmp(state, want) == 0;
}

int pg_fail(struct pg_store *s, struct pg_conn *c, const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    bool lost = !res || !state || PQstatus(c->pg) == CONNECTION_BAD;
    /* 08: connection exceptions; 57P01-57P03: the server is shutting down, crashed or starting;
     * 53300: too many connections */
    if (lost || strncmp(state, "08", 2) == 0 || strncmp(state, "57P0", 4) == 0 ||
        sqlstate_is(state, "53300")) {
        c->broken = true;
        (void)s;
        return err_set(-ERR_STORE_UNAVAILABLE, "the database is unavailable; retry later");
    }
    if (sqlstate_is(state, "53100"))
        return err_set(-ENOSPC, "server storage is full");
    if (sqlstate_is(state, "53200"))
        return err_set(-ENOMEM, "the database is out of memory");
    /* serialization failure, deadlock, lock not available, statement cancelled */
    if (sqlstate_is(state, "40001") || sqlstate_is(state, "40P01") || sqlstate_is(state, "55P03") ||
        sqlstate_is(state, "57014"))
        return err_set(-ERR_BUSY, "the database was busy with a conflicting change; retry");
    if (strncmp(state, "22", 2) == 0)
        return err_set(-EINVAL, "a value the database cannot store (sqlstate %s)", state);
    if (sqlstate_is(state, "23505"))
        return err_set(-EEXIST, "already exists");
    return err_set(-EIO, "storage error (sqlstate %s)", state);
}

/* ---- statements --------------------------------------------------------------------------- */

/* The rows a successful result returned or changed. */
static int result_rows(PGresult *res)
{
    if (PQresultStatus(res) == PGRES_TUPLES_OK)
        return PQntuples(res);
    const char *n = PQcmdTuples(res);
    return n && *n ? atoi(n) : 0;
}

/* Takes a result: its rows on success (handing it to *ret when asked), else the failure. */
static int result_take(struct pg_store *s, struct pg_conn *c, PGresult *res, PGresult **ret)
{
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        int r = pg_fail(s, c, res);
        PQclear(res);
        return r;
    }
    int rows = result_rows(res);
    if (ret)
        *ret = res;
    else
        PQclear(res);
    return rows;
}

static int stmt_prepare(struct pg_store *s, struct pg_conn *c, enum pg_stmt id)
{
    uint64_t bit = 1ULL << (id % 64);
    if (c->prepared[id / 64] & bit)
        return 0;
    char name[16];
    snprintf(name, sizeof(name), "s%d", (int)id);
    int r = result_take(s, c, PQprepare(c->pg, name, pg_stmt_sql[id], 0, NULL), NULL);
    if (r < 0)
        return r;
    c->prepared[id / 64] |= bit;
    return 0;
}

int pg_exec(struct pg_store *s, struct pg_conn *c, enum pg_stmt id, const struct pg_params *p,
            PGresult **ret)
{
    if (p && p->overflow)
        return err_set(-EINVAL, "too many statement parameters");
    int r = stmt_prepare(s, c, id);
    if (r < 0)
        return r;
    char name[16];
    snprintf(name, sizeof(name), "s%d", (int)id);
    PGresult *res = PQexecPrepared(c->pg, name, p ? p->n : 0, p ? p->values : NULL,
                                   p ? p->lengths : NULL, p ? p->formats : NULL, 1);
    return result_take(s, c, res, ret);
}

int pg_query(struct pg_store *s, enum pg_stmt id, const struct pg_params *p, PGresult **ret)
{
    struct pg_conn *c;
    int r = pg_pool_get(s, &c);
    if (r < 0)
        return r;
    r = pg_exec(s, c, id, p, ret);
    pg_pool_put(s, c);
    return r;
}

int pg_exec_sql(struct pg_store *s, struct pg_conn *c, const char *sql, int n,
                const char *const *values, const int *lengths, const int *formats, PGresult **ret)
{
    PGresult *res = PQexecParams(c->pg, sql, n, NULL, values, lengths, formats, 1);
    return result_take(s, c, res, ret);
}

int pg_cmd(struct pg_store *s, struct pg_conn *c, const char *sql)
{
    return result_take(s, c, PQexec(c->pg, sql), NULL);
}

/* ---- connections and the pool ------------------------------------------------------------ */

void pg_conn_close(struct pg_conn *c)
{
    if (!c)
        return;
    PQfinish(c->pg);
    free(c);
}

static void notice_ignore(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/*
 * Settings the URL may override (they come before it): a bounded connect, keepalives and a TCP
 * user timeout so that a silent peer is given up within about a minute instead of hanging a
 * request, UTF-8 text, and the application name operators see in pg_stat_activity.
 */
int pg_connect(struct pg_store *s, struct pg_conn **ret)
{
    static const char *const keys[] = {"connect_timeout",  "application_name",
                                       "client_encoding",  "keepalives",
                                       "keepalives_idle",  "keepalives_interval",
                                       "keepalives_count", "tcp_user_timeout",
                                       "dbname",           NULL};
    const char *const vals[] = {"10", "sqlfs", "UTF8", "1", "30", "10", "3", "60000", s->url, NULL};
    struct pg_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->pg = PQconnectdbParams(keys, vals, 1);
    if (!c->pg || PQstatus(c->pg) != CONNECTION_OK) {
        int r = c->pg ? connect_failure(s, c->pg) : -ENOMEM;
        pg_conn_close(c);
        return r;
    }
    /* The server's notices ("relation already exists, skipping") are not for stderr. */
    PQsetNoticeProcessor(c->pg, notice_ignore, NULL);
    *ret = c;
    return 0;
}

/* An idle connection is never sent anything (no notifications are listened for), except by a
 * server about to close it (an error message, the end of the stream) or, rarely, a setting it
 * reports: one whose socket has anything to read is not reused. */
static bool conn_alive(struct pg_conn *c)
{
    if (PQstatus(c->pg) != CONNECTION_OK)
        return false;
    struct pollfd p = {.fd = PQsocket(c->pg), .events = POLLIN};
    return p.fd >= 0 && poll(&p, 1, 0) == 0;
}

static struct timespec deadline_after(int64_t ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += (time_t)(ms / 1000);
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

void pg_pool_init(struct pg_pool *pool, const char *setting, int size, int64_t wait_ms,
                  const char *init_sql)
{
    memset(pool, 0, sizeof(*pool));
    pool->setting = setting;
    pool->size = size;
    pool->wait_ms = wait_ms;
    pool->init_sql = init_sql;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&pool->cond, &ca);
    pthread_condattr_destroy(&ca);
}

void pg_pool_destroy(struct pg_pool *pool)
{
    while (pool->idle) {
        struct pg_conn *c = pool->idle;
        pool->idle = c->next;
        pg_conn_close(c);
        pool->nopen--;
    }
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->cond);
}

/* A new connection of the pool, with its session set up. */
static int pool_connect(struct pg_store *s, struct pg_pool *pool, struct pg_conn **ret)
{
    struct pg_conn *c;
    int r = pg_connect(s, &c);
    if (r >= 0 && pool->init_sql && (r = pg_cmd(s, c, pool->init_sql)) < 0)
        pg_conn_close(c);
    if (r >= 0)
        *ret = c;
    return r;
}

int pg_pool_take(struct pg_store *s, struct pg_pool *pool, int64_t wait_ms, struct pg_conn **ret)
{
    if (wait_ms < 0 || wait_ms > pool->wait_ms)
        wait_ms = pool->wait_ms;
    struct timespec deadline = deadline_after(wait_ms);
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        struct pg_conn *c = pool->idle;
        if (c) {
            pool->idle = c->next;
            pthread_mutex_unlock(&pool->lock);
            if (conn_alive(c)) {
                c->next = NULL;
                c->reused = true;
                *ret = c;
                return 0;
            }
            pg_conn_close(c);
            pthread_mutex_lock(&pool->lock);
            pool->nopen--;
            continue;
        }
        if (pool->nopen < pool->size) {
            pool->nopen++;
            pthread_mutex_unlock(&pool->lock);
            int r = pool_connect(s, pool, &c);
            if (r < 0) {
                pthread_mutex_lock(&pool->lock);
                pool->nopen--;
                pthread_cond_signal(&pool->cond);
                pthread_mutex_unlock(&pool->lock);
                return r;
            }
            *ret = c;
            return 0;
        }
        if (pthread_cond_timedwait(&pool->cond, &pool->lock, &deadline) == ETIMEDOUT) {
            pthread_mutex_unlock(&pool->lock);
            return err_set(-ERR_BUSY,
                           "all %d database connections stayed in use for %" PRId64
                           " ms (%s); retry",
                           pool->size, wait_ms, pool->setting);
        }
    }
}

void pg_pool_give(struct pg_pool *pool, struct pg_conn *c)
{
    if (!c)
        return;
    bool keep = !c->broken && PQstatus(c->pg) == CONNECTION_OK &&
                PQtransactionStatus(c->pg) == PQTRANS_IDLE;
    if (!keep)
        pg_conn_close(c);
    pthread_mutex_lock(&pool->lock);
    if (keep) {
        c->next = pool->idle;
        pool->idle = c;
    } else {
        pool->nopen--;
    }
    pthread_cond_signal(&pool->cond);
    pthread_mutex_unlock(&pool->lock);
}

int pg_pool_get(struct pg_store *s, struct pg_conn **ret)
{
    return pg_pool_take(s, &s->pool, -1, ret);
}

void pg_pool_put(struct pg_store *s, struct pg_conn *c)
{
    pg_pool_give(&s->pool, c);
}

/* ---- transactions ------------------------------------------------------------------------- */

int pg_tx_begin(struct pg_store *s, struct pg_conn **ret)
{
    for (int attempt = 0;; attempt++) {
        struct pg_conn *c;
        int r = pg_pool_get(s, &c);
        if (r < 0)
            return r;
        bool reused = c->reused;
        r = pg_cmd(s, c, "BEGIN ISOLATION LEVEL READ COMMITTED");
        if (r >= 0) {
            *ret = c;
            return 0;
        }
        bool retry = reused && c->broken && attempt == 0;
        pg_pool_put(s, c);
        if (!retry)
            return r;
    }
}

/* After a lost COMMIT answer: 1 when the old session (backend pid) is gone, so its transaction
 * either committed or never will; 0 when it is still there after about a second (its end of
 * the connection was closed first, so a live backend is on its way out); negative on
 * failure. */
static int session_gone(struct pg_store *s, struct pg_conn *c, int pid)
{
    struct pg_params p = {0};
    pp_i64(&p, pid);
    for (int i = 0; i < 20; i++) {
        int r = pg_exec(s, c, PS_BACKEND_ALIVE, &p, NULL);
        if (r <= 0)
            return r < 0 ? r : 1;
        struct timespec t = {0, 50 * 1000000L};
        nanosleep(&t, NULL);
    }
    return 0;
}

/* Decides a COMMIT whose answer was lost (pg_tx_end), once its connection is closed: on a
 * fresh connection, once the old session is gone, by `check` (1 applied, 0 not). A database
 * that is restarting, or restarts again meanwhile, is waited for as long as a pooled
 * connection would be (DATABASE_POOL_WAIT_MS, at least a second): every failed attempt to
 * decide is tried again until then. */
static int commit_in_doubt(struct pg_store *s, int pid, pg_tx_check check, void *arg)
{
    int r = -1;
    int64_t wait = s->pool.wait_ms > 1000 ? s->pool.wait_ms : 1000;
    int64_t until = time_mono_ms() + wait;
    while (check && pid > 0) {
        struct pg_conn *c = NULL;
        r = pg_connect(s, &c);
        if (r >= 0) {
            r = session_gone(s, c, pid);
            r = r > 0 ? check(s, c, arg) : -1;
            pg_conn_close(c);
        }
        if (r >= 0 || time_mono_ms() >= until)
            break;
        err_clear();
        struct timespec t = {0, 100 * 1000000L};
        nanosleep(&t, NULL);
    }
    if (r == 1)
        return 0;
    if (r == 0)
        return err_set(-ERR_STORE_UNAVAILABLE,
                       "the database connection was lost; nothing was applied, retry later");
    return err_set(-ERR_COMMIT_IN_DOUBT,
                   "the database connection was lost while committing: the change may or may "
                   "not have been applied (check the sandbox's version)");
}

int pg_tx_end(struct pg_store *s, struct pg_conn *c, int r, pg_tx_check check, void *arg)
{
    int doubt_pid = 0;
    if (r >= 0) {
        int pid = PQbackendPID(c->pg);
        PGresult *res = PQexec(c->pg, "COMMIT");
        ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
        if (st != PGRES_COMMAND_OK) {
            r = pg_fail(s, c, res);
            /* A COMMIT the server refused with an error is a plain failure; one whose answer
             * never came (the session is gone) may have committed. */
            if (c->broken)
                doubt_pid = pid > 0 ? pid : -1;
        }
        PQclear(res);
    } else if (!c->broken && PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
        struct err_saved saved;
        err_save(&saved);
        if (pg_cmd(s, c, "ROLLBACK") < 0)
            c->broken = true;
        err_restore(&saved, r);
    }
    pg_pool_put(s, c);
    return doubt_pid ? commit_in_doubt(s, doubt_pid, check, arg) : r;
}
