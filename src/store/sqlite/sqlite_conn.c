/*
 * sqlite_conn.c — connections of the SQLite engine: opening one (modes, the attached chunk
 * database), its prepared-statement cache, the pool of read-only connections and the write
 * transactions on the one read-write connection. See sqlite_int.h for the model.
 */
#include "store/sqlite/sqlite_int.h"

#include <errno.h>
#include <stdlib.h>

#include "util/err.h"

#define POOL_IDLE_MAX 16

/* Maps a SQLite failure to the store's codes; the message never holds SQL. */
int sq_fail(struct conn *c, int rc)
{
    if (rc == SQLITE_NOMEM)
        return err_set(-ENOMEM, "out of memory");
    if ((rc & 0xff) == SQLITE_FULL || (c && c->db && sqlite3_system_errno(c->db) == ENOSPC))
        return err_set(-ENOSPC, "server storage is full");
    return err_set(-EIO, "storage error (sqlite %d)", rc);
}

void sq_conn_close(struct conn *c)
{
    if (!c)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(c->stmt[i]);
    sqlite3_close(c->db);
    free(c);
}

int sq_conn_exec(struct conn *c, const char *sql)
{
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : sq_fail(c, rc);
}

/* Attaches the chunk database as schema "blobs" (bound, so any file name is safe). */
static int conn_attach(struct conn *c, const char *blobs_path)
{
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(c->db, "ATTACH DATABASE ?1 AS blobs", -1, &q, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(q, 1, blobs_path, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(q);
        if (rc == SQLITE_DONE)
            rc = SQLITE_OK;
    }
    sqlite3_finalize(q);
    return rc == SQLITE_OK ? 0 : sq_fail(c, rc);
}

/* Opens a connection to the metadata database with the chunk database attached. The
 * read-write one also sets the persistent modes: WAL for both, 64 KiB pages for the chunk
 * database (chunks are up to 1 MiB: large pages mean few pages, so little per-page work, per
 * chunk) and the default 4 KiB for the metadata (small commits write few small pages).
 * Deleted chunks are not overwritten (blobs.secure_delete FAST, whatever the library's default):
 * zeroing a freed chunk's pages would write as much to the WAL as the collection frees, so that
 * on a nearly full disk collecting garbage would itself run out of space. */
int sq_conn_open(const char *path, const char *blobs_path, bool readonly, struct conn **ret)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE |
                (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    int rc = sqlite3_open_v2(path, &c->db, flags, NULL);
    if (rc != SQLITE_OK) {
        int r = sq_fail(c, rc);
        sq_conn_close(c);
        return r;
    }
    int r = 0;
    if (sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS) != SQLITE_OK)
        r = sq_fail(c, SQLITE_ERROR);
    if (r >= 0)
        r = conn_attach(c, blobs_path);
    if (r >= 0 && !readonly)
        r = sq_conn_exec(c, "PRAGMA main.journal_mode = WAL; PRAGMA main.synchronous = NORMAL;"
                            "PRAGMA main.journal_size_limit = 67108864;"
                            "PRAGMA main.cache_size = -16384;"
                            "PRAGMA blobs.page_size = 65536; PRAGMA blobs.journal_mode = WAL;"
                            "PRAGMA blobs.synchronous = NORMAL;"
                            "PRAGMA blobs.journal_size_limit = 67108864;"
                            "PRAGMA blobs.secure_delete = FAST;"
                            "PRAGMA blobs.cache_size = -4096; PRAGMA temp_store = MEMORY;");
    if (r >= 0 && readonly)
        r = sq_conn_exec(c, "PRAGMA main.cache_size = -2048; PRAGMA blobs.cache_size = -512;");
    if (r < 0) {
        sq_conn_close(c);
        return r;
    }
    *ret = c;
    return 0;
}

/* The cached statement `id` of c, prepared on first use. The caller resets it after use. */
int sq_stmt_get(struct conn *c, enum stmt_id id, sqlite3_stmt **ret)
{
    if (!c->stmt[id]) {
        int rc = sqlite3_prepare_v3(c->db, sq_stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                    &c->stmt[id], NULL);
        if (rc != SQLITE_OK)
            return sq_fail(c, rc);
    }
    *ret = c->stmt[id];
    return 0;
}

/* Steps st: 1 on a row, 0 when done, negative on failure. */
int sq_stmt_step(struct conn *c, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return sq_fail(c, rc);
}

int sq_bind_check(struct conn *c, int rc)
{
    return rc == SQLITE_OK ? 0 : sq_fail(c, rc == SQLITE_NOMEM ? rc : SQLITE_MISUSE);
}

/* Runs a statement that returns no row of interest. */
int sq_stmt_run(struct conn *c, sqlite3_stmt *st)
{
    int r = sq_stmt_step(c, st);
    sqlite3_reset(st);
    return r < 0 ? r : 0;
}

int sq_query_content(struct conn *c, enum stmt_id id, const uint8_t content_id[CONTENT_ID_LEN],
                     sqlite3_stmt **ret)
{
    *ret = NULL;
    int r = sq_stmt_get(c, id, ret);
    if (r >= 0)
        r = sq_bind_check(c, bind_id(*ret, 1, content_id));
    return r < 0 ? r : sq_stmt_step(c, *ret);
}

int sq_query_sandbox(struct conn *c, enum stmt_id id, const char *sandbox_id, sqlite3_stmt **ret)
{
    *ret = NULL;
    int r = sq_stmt_get(c, id, ret);
    if (r >= 0)
        r = sq_bind_check(c, bind_text(*ret, 1, sandbox_id));
    return r < 0 ? r : sq_stmt_step(c, *ret);
}

int sq_run_content(struct conn *c, enum stmt_id id, const uint8_t content_id[CONTENT_ID_LEN])
{
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    int r = sq_query_content(c, id, content_id, &q);
    return r < 0 ? r : 0;
}

/* A read-only connection from the pool (opened when none is idle). */
int sq_pool_get(struct sqlite_store *s, struct conn **ret)
{
    pthread_mutex_lock(&s->plock);
    struct conn *c = s->idle;
    if (c) {
        s->idle = c->next;
        s->nidle--;
    }
    pthread_mutex_unlock(&s->plock);
    if (c) {
        *ret = c;
        return 0;
    }
    return sq_conn_open(s->path, s->blobs_path, true, ret);
}

void sq_pool_put(struct sqlite_store *s, struct conn *c)
{
    if (!c)
        return;
    if (!sqlite3_get_autocommit(c->db))
        (void)sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_lock(&s->plock);
    if (s->nidle < POOL_IDLE_MAX) {
        c->next = s->idle;
        s->idle = c;
        s->nidle++;
        c = NULL;
    }
    pthread_mutex_unlock(&s->plock);
    sq_conn_close(c);
}

/* Write transactions: sq_wtx_begin locks the writer and opens BEGIN IMMEDIATE; sq_wtx_end commits
 * when r >= 0 (rolls back otherwise, or when the commit fails) and unlocks. */
int sq_wtx_begin(struct sqlite_store *s)
{
    pthread_mutex_lock(&s->wlock);
    sqlite3_stmt *st = NULL;
    int r = sq_stmt_get(s->w, ST_BEGIN_IMMEDIATE, &st);
    if (r >= 0)
        r = sq_stmt_run(s->w, st);
    if (r < 0)
        pthread_mutex_unlock(&s->wlock);
    return r;
}

int sq_wtx_end(struct sqlite_store *s, int r)
{
    sqlite3_stmt *st = NULL;
    if (r >= 0) {
        int c = sq_stmt_get(s->w, ST_COMMIT, &st);
        if (c >= 0)
            c = sq_stmt_run(s->w, st);
        if (c < 0)
            r = c;
    }
    if (r < 0 && !sqlite3_get_autocommit(s->w->db)) {
        if (sq_stmt_get(s->w, ST_ROLLBACK, &st) < 0 || sq_stmt_run(s->w, st) < 0)
            (void)sqlite3_exec(s->w->db, "ROLLBACK", NULL, NULL, NULL);
    }
    pthread_mutex_unlock(&s->wlock);
    return r;
}
