/*
 * store_sqlite — the SQLite engine of the store (contract: store.h, changeset.h).
 *
 * Connections: one read-write connection, guarded by `wlock`, runs every write transaction
 * (BEGIN IMMEDIATE ... COMMIT), so writers are serialised inside the process and never see
 * SQLITE_BUSY from each other. Reads use a pool of read-only connections (opened on demand, at
 * most POOL_IDLE_MAX idle ones kept), so in WAL mode they run concurrently with the writer and
 * with each other. Each connection is used by one thread at a time and caches its prepared
 * statements (prepared on first use).
 *
 * Schema (see `migrations`): sandboxes are keyed by an integer `sid` so that the per-file rows
 * stay lean; files are a WITHOUT ROWID table keyed (sid, path) whose BINARY (memcmp) order puts
 * a directory before its contents, and the subtree of P is the key range [P/, P0) ('0' follows
 * '/'). Content is chunked: `chunks` (id, hash unique, size, data), `contents` (id = SHA-256 of
 * chunk hashes and size) and `content_chunks` (content, seq) -> chunk.
 *
 * Garbage collection never scans the whole store. Every event that can make a content
 * unreferenced records it in `gc_candidates`: a file row holding it removed or replaced, a pin
 * dropped by expiry. GC examines only candidates (in small batches, one write transaction each,
 * so commits are not starved): a candidate with no file row and no pin is deleted together with
 * the chunks no other content uses. Protection of data not yet committed:
 *   - a content writer's chunks are listed in `pending_chunks` (writer id, chunk id) in the same
 *     transaction that inserts or finds the chunk, and GC keeps every chunk listed there; finish
 *     replaces them by the content's content_chunks rows, abort deletes the ones nobody uses;
 *   - a finished content is pinned in `content_pins` (a reference count: one per finish, and a
 *     lease time). A commit drops one reference for each distinct content it puts; pins older than
 *     PIN_LEASE_MS (finished, never committed: e.g. the commit failed on quota) expire in GC.
 *   - a content batch keeps finished contents in memory until its flush, which stores their
 *     last chunks with pending rows in one transaction and their contents rows and pins in the
 *     next, so the two rules above hold for batched contents too.
 * Writers are in-process only, so at open both tables are cleared: pending chunks nobody uses are
 * deleted and pinned contents become GC candidates.
 *
 * Content readers do not hold a transaction between calls (a long read transaction would stop
 * WAL checkpoints during a slow download); each read opens the chunk blobs it needs on a pooled
 * connection. The caller keeps the content referenced while reading it (the sandbox read lock);
 * chunk ids and inline content row ids are AUTOINCREMENT, never reused, so data collected under
 * a reader yields -EIO, never another content's bytes.
 *
 * Two database files: `path` holds all metadata (4 KiB pages, so small commits write little),
 * `path`.chunks holds the chunk bytes (64 KiB pages: several times less work per MiB). Contents
 * up to INLINE_MAX bytes live inline in their `contents` row, so a small file costs one
 * transaction on the metadata database only. A transaction over both files is atomic per file
 * only (SQLite WAL): the states a crash can leave across them are a pending row naming a chunk
 * that was never stored (cleared at open) or chunks no content uses, which open sweeps.
 *
 * WAL checkpoints run on a background thread (see wal_hook) so that commits never wait for the
 * checkpoint's fsyncs. Once no commit has come for CKPT_IDLE_MS, that thread checkpoints each
 * WAL in full and truncates it, if no reader still needs it: a burst of writes can grow a WAL to
 * tens of MB (a busy writer rarely finds the moment to restart it), which an idle server would
 * otherwise keep on disk. In the same idle pass every idle connection gives back its page cache
 * (ckpt_release_memory): the caches grow with the database to their bounds, and an idle server
 * should not keep them resident; the next requests read the few pages they need again.
 */
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "util/err.h"
#include "util/home.h"
#include "util/timeutil.h"

#define POOL_IDLE_MAX 16
#define BUSY_TIMEOUT_MS 10000
#define PIN_LEASE_MS (60LL * 60 * 1000)
#define GC_BATCH 256
/* Contents up to this size are stored inline in their contents row (metadata database, small
 * pages) instead of as a chunk: one small transaction per small file. */
#define INLINE_MAX (16 * 1024)
#define DEFAULT_CWD SANDBOX_HOME
#define DIR_MODE_DEFAULT 0755

/* ---- schema ---------------------------------------------------------------------------- */

/* Migration i brings the schema to version i + 1. Never edit a released entry: append. */
static const char *const migrations[] = {
    "CREATE TABLE sandboxes ("
    "  sid INTEGER PRIMARY KEY,"
    "  id TEXT NOT NULL UNIQUE,"
    "  tenant TEXT NOT NULL,"
    "  sub TEXT NOT NULL,"
    "  name TEXT,"
    "  env TEXT NOT NULL,"
    "  python INTEGER NOT NULL,"
    "  javascript INTEGER NOT NULL,"
    "  network INTEGER NOT NULL,"
    "  cwd TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  last_used_ms INTEGER NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  size_bytes INTEGER NOT NULL,"
    "  file_count INTEGER NOT NULL);"
    "CREATE INDEX sandboxes_owner ON sandboxes(tenant, sub, created_ms DESC, id);"
    "CREATE TABLE files ("
    "  sid INTEGER NOT NULL,"
    "  path TEXT NOT NULL,"
    "  kind INTEGER NOT NULL,"
    "  mode INTEGER NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  mtime_ns INTEGER NOT NULL,"
    "  content BLOB,"
    "  target TEXT,"
    "  PRIMARY KEY (sid, path)) WITHOUT ROWID;"
    "CREATE INDEX files_content ON files(content) WHERE content IS NOT NULL;"
    "CREATE TABLE IF NOT EXISTS blobs.chunks ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  hash BLOB NOT NULL UNIQUE,"
    "  size INTEGER NOT NULL,"
    "  data BLOB NOT NULL);"
    "CREATE TABLE contents ("
    "  rid INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  id BLOB NOT NULL UNIQUE,"
    "  size INTEGER NOT NULL,"
    "  nchunks INTEGER NOT NULL,"
    "  data BLOB);"
    "CREATE TABLE content_chunks ("
    "  content_id BLOB NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  chunk_id INTEGER NOT NULL,"
    "  PRIMARY KEY (content_id, seq)) WITHOUT ROWID;"
    "CREATE INDEX content_chunks_chunk ON content_chunks(chunk_id);"
    "CREATE TABLE content_pins ("
    "  content_id BLOB PRIMARY KEY,"
    "  refs INTEGER NOT NULL,"
    "  pinned_ms INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE pending_chunks ("
    "  writer INTEGER NOT NULL,"
    "  chunk_id INTEGER NOT NULL,"
    "  PRIMARY KEY (writer, chunk_id)) WITHOUT ROWID;"
    "CREATE INDEX pending_chunks_chunk ON pending_chunks(chunk_id);"
    "CREATE TABLE gc_candidates (content_id BLOB PRIMARY KEY) WITHOUT ROWID;"
    "CREATE TABLE commits ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  sid INTEGER NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  kind TEXT,"
    "  info TEXT,"
    "  created_ms INTEGER NOT NULL,"
    "  changes INTEGER NOT NULL,"
    "  bytes_delta INTEGER NOT NULL);"
    "CREATE INDEX commits_sid ON commits(sid, version);"
    "CREATE TABLE commit_changes ("
    "  commit_id INTEGER NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  op INTEGER NOT NULL,"
    "  path TEXT NOT NULL,"
    "  PRIMARY KEY (commit_id, seq)) WITHOUT ROWID;",
};

#define SB_COLS                                                                                    \
    "id, tenant, sub, name, env, python, javascript, network, cwd, created_ms, last_used_ms, "     \
    "version, size_bytes, file_count"
#define FILE_COLS "path, kind, mode, size, mtime_ns, content, target"
#define SID_OF_1 "(SELECT sid FROM sandboxes WHERE id = ?1)"

/* Every statement the engine runs, prepared once per connection on first use. */
enum stmt_id {
    ST_BEGIN_IMMEDIATE,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_CHECK,
    ST_SB_INSERT,
    ST_SB_GET,
    ST_SB_LIST_OWNER,
    ST_SB_LIST_ANY,
    ST_SB_STATE,
    ST_SB_UPDATE,
    ST_SB_TOUCH,
    ST_SB_DELETE,
    ST_SB_CREATED,
    ST_SB_COUNT_OWNER,
    ST_F_GET,
    ST_F_PUT,
    ST_F_SETDIR,
    ST_F_DEL,
    ST_F_RANGE_STATS,
    ST_F_RANGE_CAND,
    ST_F_RANGE_DEL,
    ST_F_STAT,
    ST_F_LIST,
    ST_F_HAS_CHILD,
    ST_CAND_ADD,
    ST_CONTENT_SIZE,
    ST_CONTENT_INSERT,
    ST_CC_INSERT,
    ST_CONTENT_CHUNKS,
    ST_PIN_ADD,
    ST_PIN_DROP,
    ST_PIN_DEL_ZERO,
    ST_COMMIT_INSERT,
    ST_CHANGE_INSERT,
    ST_COMMITS_DEL_CHANGES,
    ST_COMMITS_DEL,
    ST_CHUNK_FIND,
    ST_CHUNK_INSERT,
    ST_CHUNK_DEL_IF_FREE,
    ST_PENDING_ADD,
    ST_PENDING_DEL,
    ST_GC_EXPIRED_CAND,
    ST_GC_EXPIRED_DEL,
    ST_GC_BATCH,
    ST_GC_CAND_DEL,
    ST_GC_IS_GARBAGE,
    ST_GC_CHUNKS_OF,
    ST_GC_CC_DEL,
    ST_GC_CONTENT_DEL,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_CHECK] = "SELECT count(*) FROM schema_migrations",
    [ST_SB_INSERT] = "INSERT INTO sandboxes (" SB_COLS ") "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 0, 0, 0)",
    [ST_SB_GET] = "SELECT " SB_COLS " FROM sandboxes WHERE id = ?1",
    [ST_SB_LIST_OWNER] = "SELECT " SB_COLS " FROM sandboxes WHERE tenant = ?1 AND sub = ?2 "
                         "ORDER BY created_ms DESC, sid DESC",
    [ST_SB_LIST_ANY] = "SELECT " SB_COLS " FROM sandboxes "
                       "WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR sub = ?2) "
                       "ORDER BY created_ms DESC, sid DESC",
    [ST_SB_STATE] = "SELECT sid, version, size_bytes, file_count, tenant, sub FROM sandboxes "
                    "WHERE id = ?1",
    [ST_SB_UPDATE] = "UPDATE sandboxes SET version = ?2, size_bytes = ?3, file_count = ?4, "
                     "last_used_ms = ?5, cwd = coalesce(?6, cwd) WHERE sid = ?1",
    [ST_SB_TOUCH] = "UPDATE sandboxes SET last_used_ms = ?2 WHERE id = ?1",
    [ST_SB_DELETE] = "DELETE FROM sandboxes WHERE sid = ?1",
    [ST_SB_CREATED] = "SELECT created_ms FROM sandboxes WHERE id = ?1",
    [ST_SB_COUNT_OWNER] = "SELECT count(*) FROM (SELECT 1 FROM sandboxes "
                          "WHERE tenant = ?1 AND sub = ?2 LIMIT ?3)",
    [ST_F_GET] = "SELECT kind, size, content FROM files WHERE sid = ?1 AND path = ?2",
    [ST_F_PUT] = "INSERT OR REPLACE INTO files (sid, " FILE_COLS ") "
                 "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [ST_F_SETDIR] = "UPDATE files SET mode = ?3, mtime_ns = ?4 WHERE sid = ?1 AND path = ?2",
    [ST_F_DEL] = "DELETE FROM files WHERE sid = ?1 AND path = ?2",
    [ST_F_RANGE_STATS] = "SELECT count(*), coalesce(sum(CASE WHEN kind = 1 THEN size END), 0) "
                         "FROM files WHERE sid = ?1 AND path >= ?2 AND path < ?3",
    [ST_F_RANGE_CAND] = "INSERT OR IGNORE INTO gc_candidates SELECT content FROM files "
                        "WHERE sid = ?1 AND path >= ?2 AND path < ?3 AND content IS NOT NULL",
    [ST_F_RANGE_DEL] = "DELETE FROM files WHERE sid = ?1 AND path >= ?2 AND path < ?3",
    [ST_F_STAT] = "SELECT " FILE_COLS " FROM files WHERE sid = " SID_OF_1 " AND path = ?2",
    [ST_F_LIST] = "SELECT " FILE_COLS " FROM files WHERE sid = " SID_OF_1
                  " AND path >= ?2 AND path < ?3 ORDER BY path",
    [ST_F_HAS_CHILD] =
        "SELECT 1 FROM files WHERE sid = " SID_OF_1 " AND path >= ?2 AND path < ?3 LIMIT 1",
    [ST_CAND_ADD] = "INSERT OR IGNORE INTO gc_candidates (content_id) VALUES (?1)",
    [ST_CONTENT_SIZE] = "SELECT size, nchunks, rid FROM contents WHERE id = ?1",
    [ST_CONTENT_INSERT] = "INSERT OR IGNORE INTO contents (id, size, nchunks, data) "
                          "VALUES (?1, ?2, ?3, ?4)",
    [ST_CC_INSERT] = "INSERT INTO content_chunks (content_id, seq, chunk_id) VALUES (?1, ?2, ?3)",
    [ST_CONTENT_CHUNKS] = "SELECT cc.chunk_id, ch.size FROM content_chunks cc "
                          "JOIN blobs.chunks ch ON ch.id = cc.chunk_id "
                          "WHERE cc.content_id = ?1 ORDER BY cc.seq",
    [ST_PIN_ADD] = "INSERT INTO content_pins (content_id, refs, pinned_ms) VALUES (?1, 1, ?2) "
                   "ON CONFLICT (content_id) DO UPDATE SET refs = refs + 1, "
                   "pinned_ms = excluded.pinned_ms",
    [ST_PIN_DROP] = "UPDATE content_pins SET refs = refs - 1 WHERE content_id = ?1",
    [ST_PIN_DEL_ZERO] = "DELETE FROM content_pins WHERE content_id = ?1 AND refs <= 0",
    [ST_COMMIT_INSERT] = "INSERT INTO commits (sid, version, kind, info, created_ms, changes, "
                         "bytes_delta) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_CHANGE_INSERT] = "INSERT INTO commit_changes (commit_id, seq, op, path) "
                         "VALUES (?1, ?2, ?3, ?4)",
    [ST_COMMITS_DEL_CHANGES] = "DELETE FROM commit_changes WHERE commit_id IN "
                               "(SELECT id FROM commits WHERE sid = ?1)",
    [ST_COMMITS_DEL] = "DELETE FROM commits WHERE sid = ?1",
    [ST_CHUNK_FIND] = "SELECT id FROM blobs.chunks WHERE hash = ?1",
    [ST_CHUNK_INSERT] = "INSERT INTO blobs.chunks (hash, size, data) VALUES (?1, ?2, ?3)",
    [ST_CHUNK_DEL_IF_FREE] =
        "DELETE FROM blobs.chunks WHERE id = ?1 "
        "AND NOT EXISTS (SELECT 1 FROM content_chunks WHERE chunk_id = ?1) "
        "AND NOT EXISTS (SELECT 1 FROM pending_chunks WHERE chunk_id = ?1) RETURNING size",
    [ST_PENDING_ADD] = "INSERT OR IGNORE INTO pending_chunks (writer, chunk_id) VALUES (?1, ?2)",
    [ST_PENDING_DEL] = "DELETE FROM pending_chunks WHERE writer = ?1",
    [ST_GC_EXPIRED_CAND] = "INSERT OR IGNORE INTO gc_candidates "
                           "SELECT content_id FROM content_pins WHERE pinned_ms < ?1",
    [ST_GC_EXPIRED_DEL] = "DELETE FROM content_pins WHERE pinned_ms < ?1",
    [ST_GC_BATCH] = "SELECT content_id FROM gc_candidates LIMIT ?1",
    [ST_GC_CAND_DEL] = "DELETE FROM gc_candidates WHERE content_id = ?1",
    [ST_GC_IS_GARBAGE] = "SELECT NOT EXISTS (SELECT 1 FROM files WHERE content = ?1) "
                         "AND NOT EXISTS (SELECT 1 FROM content_pins WHERE content_id = ?1)",
    [ST_GC_CHUNKS_OF] = "SELECT chunk_id FROM content_chunks WHERE content_id = ?1",
    [ST_GC_CC_DEL] = "DELETE FROM content_chunks WHERE content_id = ?1",
    [ST_GC_CONTENT_DEL] = "DELETE FROM contents WHERE id = ?1",
};

/* ---- connections ----------------------------------------------------------------------- */

struct conn {
    sqlite3 *db;                  /* owned */
    sqlite3_stmt *stmt[ST_COUNT]; /* prepared on first use, finalized at close */
    struct conn *next;            /* idle list link (read pool) */
};

struct sqlite_store {
    struct store base;     /* must stay first: struct store * is cast to this */
    char *path;            /* metadata database file */
    char *blobs_path;      /* chunk database file: path + ".chunks" */
    pthread_mutex_t wlock; /* guards w and every write transaction */
    struct conn *w;        /* the one read-write connection */
    pthread_mutex_t plock; /* guards idle, nidle */
    struct conn *idle;     /* idle read-only connections */
    int nidle;
    int64_t next_writer;       /* content writer ids (atomic) */
    pthread_mutex_t ckpt_lock; /* guards ckpt_want, ckpt_dirty, ckpt_last_ms, mem_dirty,
                                * ckpt_stop */
    pthread_cond_t ckpt_cond;  /* signals the checkpointer */
    unsigned ckpt_want;        /* databases to checkpoint: CKPT_MAIN | CKPT_BLOBS */
    unsigned ckpt_dirty;       /* databases whose WAL holds frames since its last truncation */
    int64_t ckpt_last_ms;      /* monotonic time of the last commit (time_mono_ms) */
    bool mem_dirty;            /* a commit came since the caches were last given back */
    bool ckpt_stop;            /* the checkpointer must exit */
    bool ckpt_running;         /* ckpt_thread was started */
    pthread_t ckpt_thread;     /* runs WAL checkpoints off the write path */
    struct conn *ckpt;         /* the checkpointer's own read-write connection */
};

static struct sqlite_store *to_sq(struct store *st)
{
    return (struct sqlite_store *)st;
}

/* Maps a SQLite failure to the store's codes; the message never holds SQL. */
static int sq_fail(struct conn *c, int rc)
{
    if (rc == SQLITE_NOMEM)
        return err_set(-ENOMEM, "out of memory");
    if ((rc & 0xff) == SQLITE_FULL || (c && c->db && sqlite3_system_errno(c->db) == ENOSPC))
        return err_set(-ENOSPC, "server storage is full");
    return err_set(-EIO, "storage error (sqlite %d)", rc);
}

static void conn_close(struct conn *c)
{
    if (!c)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(c->stmt[i]);
    sqlite3_close(c->db);
    free(c);
}

static int conn_exec(struct conn *c, const char *sql)
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
 * database (chunks are up to 1 MiB: large pages cut the per-page work several fold) and the
 * default 4 KiB for the metadata (small commits write few small pages). */
static int conn_open(const char *path, const char *blobs_path, bool readonly, struct conn **ret)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE |
                (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    int rc = sqlite3_open_v2(path, &c->db, flags, NULL);
    if (rc != SQLITE_OK) {
        int r = sq_fail(c, rc);
        conn_close(c);
        return r;
    }
    int r = 0;
    if (sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS) != SQLITE_OK)
        r = sq_fail(c, SQLITE_ERROR);
    if (r >= 0)
        r = conn_attach(c, blobs_path);
    if (r >= 0 && !readonly)
        r = conn_exec(c, "PRAGMA main.journal_mode = WAL; PRAGMA main.synchronous = NORMAL;"
                         "PRAGMA main.journal_size_limit = 67108864;"
                         "PRAGMA main.cache_size = -16384;"
                         "PRAGMA blobs.page_size = 65536; PRAGMA blobs.journal_mode = WAL;"
                         "PRAGMA blobs.synchronous = NORMAL;"
                         "PRAGMA blobs.journal_size_limit = 67108864;"
                         "PRAGMA blobs.cache_size = -4096; PRAGMA temp_store = MEMORY;");
    if (r >= 0 && readonly)
        r = conn_exec(c, "PRAGMA main.cache_size = -2048; PRAGMA blobs.cache_size = -512;");
    if (r < 0) {
        conn_close(c);
        return r;
    }
    *ret = c;
    return 0;
}

/* The cached statement `id` of c, prepared on first use. The caller resets it after use. */
static int stmt_get(struct conn *c, enum stmt_id id, sqlite3_stmt **ret)
{
    if (!c->stmt[id]) {
        int rc = sqlite3_prepare_v3(c->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                    &c->stmt[id], NULL);
        if (rc != SQLITE_OK)
            return sq_fail(c, rc);
    }
    *ret = c->stmt[id];
    return 0;
}

static void stmt_resetp(sqlite3_stmt **p)
{
    if (*p)
        sqlite3_reset(*p);
}
#define _cleanup_reset_ __attribute__((cleanup(stmt_resetp)))

/* Steps st: 1 on a row, 0 when done, negative on failure. */
static int stmt_step(struct conn *c, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return sq_fail(c, rc);
}

/* Bind helpers: they return the SQLite code; callers OR them and check once (a bind fails only
 * on misuse or out of memory). */
static int bind_text(sqlite3_stmt *st, int i, const char *s)
{
    return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}
static int bind_textn(sqlite3_stmt *st, int i, const char *s, size_t n)
{
    return sqlite3_bind_text(st, i, s, (int)n, SQLITE_STATIC);
}
static int bind_id(sqlite3_stmt *st, int i, const uint8_t id[CONTENT_ID_LEN])
{
    return sqlite3_bind_blob(st, i, id, CONTENT_ID_LEN, SQLITE_STATIC);
}

static int bind_check(struct conn *c, int rc)
{
    return rc == SQLITE_OK ? 0 : sq_fail(c, rc == SQLITE_NOMEM ? rc : SQLITE_MISUSE);
}

/* Runs a statement that returns no row of interest. */
static int stmt_run(struct conn *c, sqlite3_stmt *st)
{
    int r = stmt_step(c, st);
    sqlite3_reset(st);
    return r < 0 ? r : 0;
}

/* A read-only connection from the pool (opened when none is idle). */
static int pool_get(struct sqlite_store *s, struct conn **ret)
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
    return conn_open(s->path, s->blobs_path, true, ret);
}

static void pool_put(struct sqlite_store *s, struct conn *c)
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
    conn_close(c);
}

/* Write transactions: wtx_begin locks the writer and opens BEGIN IMMEDIATE; wtx_end commits
 * when r >= 0 (rolls back otherwise, or when the commit fails) and unlocks. */
static int wtx_begin(struct sqlite_store *s)
{
    pthread_mutex_lock(&s->wlock);
    sqlite3_stmt *st = NULL;
    int r = stmt_get(s->w, ST_BEGIN_IMMEDIATE, &st);
    if (r >= 0)
        r = stmt_run(s->w, st);
    if (r < 0)
        pthread_mutex_unlock(&s->wlock);
    return r;
}

static int wtx_end(struct sqlite_store *s, int r)
{
    sqlite3_stmt *st = NULL;
    if (r >= 0) {
        int c = stmt_get(s->w, ST_COMMIT, &st);
        if (c >= 0)
            c = stmt_run(s->w, st);
        if (c < 0)
            r = c;
    }
    if (r < 0 && !sqlite3_get_autocommit(s->w->db)) {
        if (stmt_get(s->w, ST_ROLLBACK, &st) < 0 || stmt_run(s->w, st) < 0)
            (void)sqlite3_exec(s->w->db, "ROLLBACK", NULL, NULL, NULL);
    }
    pthread_mutex_unlock(&s->wlock);
    return r;
}

/* ---- small helpers --------------------------------------------------------------------- */

static bool id_is_zero(const uint8_t id[CONTENT_ID_LEN])
{
    for (int i = 0; i < CONTENT_ID_LEN; i++)
        if (id[i])
            return false;
    return true;
}

static char *dup_col(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    return t ? strdup((const char *)t) : NULL;
}

/* Points the file_meta at the columns of the current row (valid until the next step). */
static void meta_from_row(sqlite3_stmt *st, struct file_meta *m)
{
    memset(m, 0, sizeof(*m));
    m->path = (char *)sqlite3_column_text(st, 0);
    m->kind = (enum file_kind)sqlite3_column_int(st, 1);
    m->mode = (uint32_t)sqlite3_column_int64(st, 2);
    m->size = sqlite3_column_int64(st, 3);
    m->mtime_ns = sqlite3_column_int64(st, 4);
    const void *content = sqlite3_column_blob(st, 5);
    if (content && sqlite3_column_bytes(st, 5) == CONTENT_ID_LEN) {
        m->has_content = true;
        memcpy(m->content, content, CONTENT_ID_LEN);
    }
    m->target = (char *)sqlite3_column_text(st, 6);
}

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
}

static bool owner_matches(const char *tenant, const char *sub, const char *row_tenant,
                          const char *row_sub)
{
    if (tenant && (!row_tenant || strcmp(tenant, row_tenant) != 0))
        return false;
    if (sub && (!row_sub || strcmp(sub, row_sub) != 0))
        return false;
    return true;
}

/* Key range of the subtree strictly below `path` (len bytes): [path/, path0), or every path
 * for the root. lo and hi must hold len + 2 bytes; the lengths are returned. */
static void subtree_range(const char *path, size_t len, char *lo, size_t *lolen, char *hi,
                          size_t *hilen)
{
    if (len == 1 && path[0] == '/') {
        lo[0] = '/';
        hi[0] = '0';
        *lolen = *hilen = 1;
        return;
    }
    memcpy(lo, path, len);
    memcpy(hi, path, len);
    lo[len] = '/';
    hi[len] = '0';
    *lolen = *hilen = len + 1;
}

/* ---- commit ---------------------------------------------------------------------------- */

/* State of one commit being applied on the write connection. */
struct apply {
    struct conn *c;      /* the write connection (transaction open) */
    int64_t sid;         /* sandbox key */
    int64_t size;        /* running size_bytes */
    int64_t count;       /* running file_count */
    int64_t now_ns;      /* mtime of created parents */
    bool create_parents; /* from the change set */
    bool keep_dirs;      /* from the change set */
};

/* An existing row as seen by a commit. kind 0: no row. */
struct old_row {
    int kind;
    int64_t size;
    bool has_content;
    uint8_t content[CONTENT_ID_LEN];
};

static int row_lookup(struct apply *a, const char *path, size_t len, struct old_row *ret)
{
    _cleanup_reset_ sqlite3_stmt *st = NULL;
    int r = stmt_get(a->c, ST_F_GET, &st);
    if (r < 0)
        return r;
    r = bind_check(a->c, sqlite3_bind_int64(st, 1, a->sid) | bind_textn(st, 2, path, len));
    if (r < 0)
        return r;
    memset(ret, 0, sizeof(*ret));
    r = stmt_step(a->c, st);
    if (r <= 0)
        return r;
    ret->kind = sqlite3_column_int(st, 0);
    ret->size = sqlite3_column_int64(st, 1);
    const void *content = sqlite3_column_blob(st, 2);
    if (content && sqlite3_column_bytes(st, 2) == CONTENT_ID_LEN) {
        ret->has_content = true;
        memcpy(ret->content, content, CONTENT_ID_LEN);
    }
    return 0;
}

static int candidate_add(struct conn *c, const uint8_t id[CONTENT_ID_LEN])
{
    sqlite3_stmt *st = NULL;
    int r = stmt_get(c, ST_CAND_ADD, &st);
    if (r >= 0)
        r = bind_check(c, bind_id(st, 1, id));
    return r < 0 ? r : stmt_run(c, st);
}

/* Removes the rows in [lo, hi), keeping the accounting and GC candidates up to date. */
static int range_delete(struct apply *a, const char *lo, size_t lolen, const char *hi, size_t hilen)
{
    static const enum stmt_id ids[] = {ST_F_RANGE_STATS, ST_F_RANGE_CAND, ST_F_RANGE_DEL};
    int64_t n = 0, bytes = 0;
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        sqlite3_stmt *st = NULL;
        int r = stmt_get(a->c, ids[i], &st);
        if (r < 0)
            return r;
        r = bind_check(a->c, sqlite3_bind_int64(st, 1, a->sid) | bind_textn(st, 2, lo, lolen) |
                                 bind_textn(st, 3, hi, hilen));
        if (r < 0)
            return r;
        r = stmt_step(a->c, st);
        if (r > 0 && ids[i] == ST_F_RANGE_STATS) {
            n = sqlite3_column_int64(st, 0);
            bytes = sqlite3_column_int64(st, 1);
        }
        sqlite3_reset(st);
        if (r < 0)
            return r;
        if (n == 0)
            return 0; /* nothing below: skip the other two statements */
    }
    a->count -= n;
    a->size -= bytes;
    return 0;
}

/* Deletes the subtree strictly below `path`. */
static int subtree_delete(struct apply *a, const char *path, size_t len)
{
    char *lo = malloc(2 * (len + 2));
    if (!lo)
        return -ENOMEM;
    char *hi = lo + len + 2;
    size_t lolen, hilen;
    subtree_range(path, len, lo, &lolen, hi, &hilen);
    int r = range_delete(a, lo, lolen, hi, hilen);
    free(lo);
    return r;
}

/* Accounts for the row `old` going away (its row is deleted or replaced by the caller). */
static int forget_row(struct apply *a, const struct old_row *old)
{
    a->count--;
    if (old->kind == FILE_KIND_FILE)
        a->size -= old->size;
    return old->has_content ? candidate_add(a->c, old->content) : 0;
}

static int row_insert(struct apply *a, const char *path, size_t len, int kind, uint32_t mode,
                      int64_t size, int64_t mtime_ns, const uint8_t *content, const char *target)
{
    sqlite3_stmt *st = NULL;
    int r = stmt_get(a->c, ST_F_PUT, &st);
    if (r < 0)
        return r;
    r = bind_check(a->c, sqlite3_bind_int64(st, 1, a->sid) | bind_textn(st, 2, path, len) |
                             sqlite3_bind_int(st, 3, kind) |
                             sqlite3_bind_int64(st, 4, mode & 07777) |
                             sqlite3_bind_int64(st, 5, size) | sqlite3_bind_int64(st, 6, mtime_ns) |
                             (content ? bind_id(st, 7, content) : sqlite3_bind_null(st, 7)) |
                             bind_text(st, 8, target));
    if (r < 0)
        return r;
    r = stmt_run(a->c, st);
    if (r < 0)
        return r;
    a->count++;
    if (kind == FILE_KIND_FILE)
        a->size += size;
    return 0;
}

/* The error for a missing directory path[0..len): like path resolution, -ENOTDIR when the
 * nearest existing ancestor is not a directory, else -ENOENT. */
static int parent_missing(struct apply *a, const char *path, size_t len)
{
    for (size_t n = len; n > 1;) {
        while (n > 0 && path[n - 1] != '/')
            n--;
        if (n <= 1)
            break;
        n--;
        struct old_row anc;
        int r = row_lookup(a, path, n, &anc);
        if (r < 0)
            return r;
        if (anc.kind == FILE_KIND_DIR)
            break;
        if (anc.kind)
            return err_set(-ENOTDIR, "not a directory: %.*s", (int)n, path);
    }
    return err_set(-ENOENT, "no such directory: %.*s", (int)len, path);
}

/* Makes sure the parent of path[0..len) exists as a directory, creating missing ones (0755)
 * when the change set allows it. The tree invariant (every row's parent is a dir row or the
 * root) means an existing parent directory needs no further check. */
static int parents_ensure(struct apply *a, const char *path, size_t len)
{
    size_t plen = len;
    while (plen > 0 && path[plen - 1] != '/')
        plen--;
    if (plen <= 1)
        return 0; /* the parent is the root, which always exists */
    plen--;       /* drop the slash */
    struct old_row parent;
    int r = row_lookup(a, path, plen, &parent);
    if (r < 0)
        return r;
    if (parent.kind == FILE_KIND_DIR)
        return 0;
    if (parent.kind)
        return err_set(-ENOTDIR, "not a directory: %.*s", (int)plen, path);
    if (!a->create_parents)
        return parent_missing(a, path, plen);
    r = parents_ensure(a, path, plen);
    if (r < 0)
        return r;
    return row_insert(a, path, plen, FILE_KIND_DIR, DIR_MODE_DEFAULT, 0, a->now_ns, NULL, NULL);
}

static bool path_ok(const char *path, size_t len)
{
    return len >= 1 && path[0] == '/' && (len == 1 || path[len - 1] != '/');
}

/* Checks a file's content reference: the content must be stored and of the stated size. */
static int content_check(struct apply *a, const struct file_meta *m, const uint8_t **ret_id)
{
    *ret_id = NULL;
    if (!m->has_content || id_is_zero(m->content)) {
        if (m->size != 0)
            return err_set(-EINVAL, "file has a size but no content: %s", m->path);
        return 0;
    }
    _cleanup_reset_ sqlite3_stmt *st = NULL;
    int r = stmt_get(a->c, ST_CONTENT_SIZE, &st);
    if (r >= 0)
        r = bind_check(a->c, bind_id(st, 1, m->content));
    if (r >= 0)
        r = stmt_step(a->c, st);
    if (r < 0)
        return r;
    if (r == 0)
        return err_set(-EIO, "file content is missing from the store: %s", m->path);
    if (sqlite3_column_int64(st, 0) != m->size)
        return err_set(-EINVAL, "file size does not match its content: %s", m->path);
    *ret_id = m->content;
    return 0;
}

static int change_put(struct apply *a, const struct file_meta *m)
{
    size_t len = m->path ? strlen(m->path) : 0;
    if (!m->path || !path_ok(m->path, len))
        return err_set(-EINVAL, "invalid path");
    if (m->kind != FILE_KIND_FILE && m->kind != FILE_KIND_DIR && m->kind != FILE_KIND_SYMLINK)
        return err_set(-EINVAL, "invalid file kind: %s", m->path);
    if (len == 1) {
        if (m->kind == FILE_KIND_DIR)
            return 0; /* the root is implicit; its metadata is fixed */
        return err_set(-EISDIR, "cannot replace the root directory");
    }
    const uint8_t *content = NULL;
    int64_t size = 0;
    int r = 0;
    if (m->kind == FILE_KIND_FILE) {
        r = content_check(a, m, &content);
        size = m->size;
    } else if (m->kind == FILE_KIND_SYMLINK) {
        if (!m->target)
            r = err_set(-EINVAL, "symlink without a target: %s", m->path);
        else
            size = (int64_t)strlen(m->target);
    }
    if (r >= 0)
        r = parents_ensure(a, m->path, len);
    struct old_row old;
    if (r >= 0)
        r = row_lookup(a, m->path, len, &old);
    if (r < 0)
        return r;
    if (old.kind == FILE_KIND_DIR && m->kind == FILE_KIND_DIR) {
        sqlite3_stmt *st = NULL;
        r = stmt_get(a->c, ST_F_SETDIR, &st);
        if (r >= 0)
            r = bind_check(a->c, sqlite3_bind_int64(st, 1, a->sid) |
                                     bind_textn(st, 2, m->path, len) |
                                     sqlite3_bind_int64(st, 3, m->mode & 07777) |
                                     sqlite3_bind_int64(st, 4, m->mtime_ns));
        return r < 0 ? r : stmt_run(a->c, st);
    }
    if (old.kind == FILE_KIND_DIR && a->keep_dirs)
        return err_set(-EISDIR, "would replace the directory %s: delete it first", m->path);
    if (old.kind == FILE_KIND_DIR)
        r = subtree_delete(a, m->path, len);
    if (r >= 0 && old.kind)
        r = forget_row(a, &old);
    if (r >= 0)
        r = row_insert(a, m->path, len, m->kind, m->mode, size, m->mtime_ns, content,
                       m->kind == FILE_KIND_SYMLINK ? m->target : NULL);
    return r;
}

static int change_delete(struct apply *a, const char *path)
{
    size_t len = path ? strlen(path) : 0;
    if (!path || !path_ok(path, len))
        return err_set(-EINVAL, "invalid path");
    if (len == 1)
        return subtree_delete(a, path, len);
    struct old_row old;
    int r = row_lookup(a, path, len, &old);
    if (r < 0 || !old.kind)
        return r; /* an absent path has no subtree either */
    if (old.kind == FILE_KIND_DIR) {
        r = subtree_delete(a, path, len);
        if (r < 0)
            return r;
    }
    sqlite3_stmt *st = NULL;
    r = stmt_get(a->c, ST_F_DEL, &st);
    if (r >= 0)
        r = bind_check(a->c, sqlite3_bind_int64(st, 1, a->sid) | bind_textn(st, 2, path, len));
    if (r >= 0)
        r = stmt_run(a->c, st);
    return r < 0 ? r : forget_row(a, &old);
}

static int id_cmp(const void *x, const void *y)
{
    return memcmp(x, y, CONTENT_ID_LEN);
}

/* Drops one pin reference of every distinct content the change set puts; with `candidates`,
 * also records each as a GC candidate (the change set was abandoned: nothing references it). */
static int pins_drop(struct conn *c, const struct changeset *cs, bool candidates)
{
    size_t n = 0;
    for (size_t i = 0; i < cs->n; i++)
        if (cs->items[i].op == CHANGE_PUT && cs->items[i].meta.kind == FILE_KIND_FILE &&
            cs->items[i].meta.has_content)
            n++;
    if (n == 0)
        return 0;
    uint8_t *ids = malloc(n * CONTENT_ID_LEN);
    if (!ids)
        return -ENOMEM;
    n = 0;
    for (size_t i = 0; i < cs->n; i++) {
        const struct change *ch = &cs->items[i];
        if (ch->op == CHANGE_PUT && ch->meta.kind == FILE_KIND_FILE && ch->meta.has_content &&
            !id_is_zero(ch->meta.content))
            memcpy(ids + CONTENT_ID_LEN * n++, ch->meta.content, CONTENT_ID_LEN);
    }
    qsort(ids, n, CONTENT_ID_LEN, id_cmp);
    int r = 0;
    for (size_t i = 0; i < n && r >= 0; i++) {
        const uint8_t *id = ids + CONTENT_ID_LEN * i;
        if (i > 0 && memcmp(id, id - CONTENT_ID_LEN, CONTENT_ID_LEN) == 0)
            continue;
        sqlite3_stmt *st = NULL;
        r = stmt_get(c, ST_PIN_DROP, &st);
        if (r >= 0)
            r = bind_check(c, bind_id(st, 1, id));
        if (r >= 0)
            r = stmt_run(c, st);
        if (r >= 0 && sqlite3_changes(c->db) > 0) {
            r = stmt_get(c, ST_PIN_DEL_ZERO, &st);
            if (r >= 0)
                r = bind_check(c, bind_id(st, 1, id));
            if (r >= 0)
                r = stmt_run(c, st);
        }
        if (r >= 0 && candidates) {
            r = stmt_get(c, ST_CAND_ADD, &st);
            if (r >= 0)
                r = bind_check(c, bind_id(st, 1, id));
            if (r >= 0)
                r = stmt_run(c, st);
        }
    }
    free(ids);
    return r;
}

static int commit_log(struct apply *a, const struct changeset *cs, int64_t version, int64_t now_ms,
                      int64_t delta, int64_t *ret_id)
{
    sqlite3_stmt *st = NULL;
    int r = stmt_get(a->c, ST_COMMIT_INSERT, &st);
    if (r >= 0)
        r = bind_check(
            a->c, sqlite3_bind_int64(st, 1, a->sid) | sqlite3_bind_int64(st, 2, version) |
                      bind_text(st, 3, cs->kind) | bind_text(st, 4, cs->info_json) |
                      sqlite3_bind_int64(st, 5, now_ms) |
                      sqlite3_bind_int64(st, 6, (int64_t)cs->n) | sqlite3_bind_int64(st, 7, delta));
    if (r >= 0)
        r = stmt_run(a->c, st);
    if (r < 0)
        return r;
    int64_t commit_id = sqlite3_last_insert_rowid(a->c->db);
    r = stmt_get(a->c, ST_CHANGE_INSERT, &st);
    for (size_t i = 0; i < cs->n && r >= 0; i++) {
        r = bind_check(a->c, sqlite3_bind_int64(st, 1, commit_id) |
                                 sqlite3_bind_int64(st, 2, (int64_t)i) |
                                 sqlite3_bind_int(st, 3, cs->items[i].op) |
                                 bind_text(st, 4, cs->items[i].meta.path));
        if (r >= 0)
            r = stmt_run(a->c, st);
    }
    *ret_id = commit_id;
    return r;
}

/* Applies cs to sandbox `id` inside the open write transaction. */
static int commit_locked(struct sqlite_store *s, const char *id, const struct changeset *cs,
                         const struct commit_opts *opts, struct commit_result *ret)
{
    struct conn *c = s->w;
    struct apply a = {.c = c};
    int64_t version;
    {
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        int r = stmt_get(c, ST_SB_STATE, &st);
        if (r >= 0)
            r = bind_check(c, bind_text(st, 1, id));
        if (r >= 0)
            r = stmt_step(c, st);
        if (r < 0)
            return r;
        if (r == 0)
            return err_set(-ENOENT, "sandbox not found");
        a.sid = sqlite3_column_int64(st, 0);
        version = sqlite3_column_int64(st, 1);
        a.size = sqlite3_column_int64(st, 2);
        a.count = sqlite3_column_int64(st, 3);
    }
    if (opts->expect_version >= 0 && opts->expect_version != version)
        return err_set(-ESTALE, "sandbox changed: version %" PRId64 ", expected %" PRId64, version,
                       opts->expect_version);
    int64_t now_ms = opts->now_ms > 0 ? opts->now_ms : time_now_ms();
    a.now_ns = now_ms * 1000000;
    a.create_parents = cs->create_parents;
    a.keep_dirs = cs->keep_dirs;
    int64_t old_size = a.size;
    int r = 0;
    for (size_t i = 0; i < cs->n && r >= 0; i++) {
        const struct change *ch = &cs->items[i];
        if (ch->op == CHANGE_PUT)
            r = change_put(&a, &ch->meta);
        else if (ch->op == CHANGE_DELETE)
            r = change_delete(&a, ch->meta.path);
        else
            r = err_set(-EINVAL, "invalid change");
    }
    if (r < 0)
        return r;
    /* A commit that does not grow the sandbox is always allowed, so that an over-quota sandbox
     * (quota lowered) can still be cleaned up. */
    if (opts->quota_bytes > 0 && a.size > opts->quota_bytes && a.size > old_size)
        return err_set(-ERR_QUOTA,
                       "sandbox storage quota exceeded: %" PRId64 " bytes needed, quota is %" PRId64
                       " bytes",
                       a.size, opts->quota_bytes);
    int64_t commit_id;
    r = commit_log(&a, cs, version + 1, now_ms, a.size - old_size, &commit_id);
    if (r < 0)
        return r;
    sqlite3_stmt *st = NULL;
    r = stmt_get(c, ST_SB_UPDATE, &st);
    if (r >= 0)
        r = bind_check(c,
                       sqlite3_bind_int64(st, 1, a.sid) | sqlite3_bind_int64(st, 2, version + 1) |
                           sqlite3_bind_int64(st, 3, a.size) | sqlite3_bind_int64(st, 4, a.count) |
                           sqlite3_bind_int64(st, 5, now_ms) | bind_text(st, 6, cs->new_cwd));
    if (r >= 0)
        r = stmt_run(c, st);
    if (r >= 0)
        r = pins_drop(c, cs, false);
    if (r < 0)
        return r;
    if (ret) {
        ret->version = version + 1;
        ret->size_bytes = a.size;
        ret->commit_id = commit_id;
    }
    return 0;
}

static const struct commit_opts default_opts = {.expect_version = -1};

static int sq_commit(struct store *st, const char *sandbox_id, const struct changeset *cs,
                     const struct commit_opts *opts, struct commit_result *ret)
{
    struct sqlite_store *s = to_sq(st);
    struct changeset empty = {0};
    int r = wtx_begin(s);
    if (r < 0)
        return r;
    r = commit_locked(s, sandbox_id, cs ? cs : &empty, opts ? opts : &default_opts, ret);
    return wtx_end(s, r);
}

/* ---- sandboxes ------------------------------------------------------------------------- */

static int gc_run(struct sqlite_store *s, struct gc_stats *ret);

/* Inside the write transaction (so two creates cannot both pass at max - 1): -ERR_SANDBOX_LIMIT
 * when rec's owner has `max` sandboxes already. Counts at most `max` rows of the owner index. */
static int owner_limit_check(struct conn *c, const struct sandbox_rec *rec, int64_t max)
{
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    int r = stmt_get(c, ST_SB_COUNT_OWNER, &q);
    if (r >= 0)
        r = bind_check(c, bind_text(q, 1, rec->tenant) | bind_text(q, 2, rec->sub) |
                              sqlite3_bind_int64(q, 3, max));
    if (r >= 0)
        r = stmt_step(c, q);
    if (r < 0)
        return r;
    if (r > 0 && sqlite3_column_int64(q, 0) >= max)
        return err_set(-ERR_SANDBOX_LIMIT,
                       "this owner already has %" PRId64 " sandboxes, the limit; delete one to "
                       "create another",
                       max);
    return 0;
}

static int sq_sandbox_create(struct store *st, const struct sandbox_rec *rec,
                             const struct changeset *initial, const struct commit_opts *opts)
{
    struct sqlite_store *s = to_sq(st);
    if (!rec->tenant || !rec->sub || !rec->id[0])
        return err_set(-EINVAL, "sandbox owner and id are required");
    struct commit_opts o = opts ? *opts : default_opts;
    o.expect_version = -1;
    int64_t now_ms = o.now_ms > 0 ? o.now_ms : time_now_ms();
    int r = wtx_begin(s);
    if (r < 0)
        return r;
    if (o.max_owner_sandboxes > 0)
        r = owner_limit_check(s->w, rec, o.max_owner_sandboxes);
    sqlite3_stmt *ins = NULL;
    if (r >= 0)
        r = stmt_get(s->w, ST_SB_INSERT, &ins);
    if (r >= 0)
        r = bind_check(s->w,
                       bind_text(ins, 1, rec->id) | bind_text(ins, 2, rec->tenant) |
                           bind_text(ins, 3, rec->sub) | bind_text(ins, 4, rec->name) |
                           bind_text(ins, 5, rec->env_json ? rec->env_json : "{}") |
                           sqlite3_bind_int(ins, 6, rec->python) |
                           sqlite3_bind_int(ins, 7, rec->javascript) |
                           sqlite3_bind_int(ins, 8, rec->network) |
                           bind_text(ins, 9, rec->cwd ? rec->cwd : DEFAULT_CWD) |
                           sqlite3_bind_int64(ins, 10, rec->created_ms ? rec->created_ms : now_ms) |
                           sqlite3_bind_int64(ins, 11, rec->last_used_ms));
    if (r >= 0) {
        int rc = sqlite3_step(ins);
        sqlite3_reset(ins);
        if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
            r = err_set(-EEXIST, "sandbox already exists");
        else if (rc != SQLITE_DONE)
            r = sq_fail(s->w, rc);
    }
    if (r >= 0 && initial)
        r = commit_locked(s, rec->id, initial, &o, NULL);
    return wtx_end(s, r);
}

/* Copies the current sandbox row into ret (owned strings). */
static int rec_copy_row(sqlite3_stmt *st, struct sandbox_rec *ret)
{
    struct sandbox_rec view, out;
    rec_from_row(st, &view);
    out = view;
    out.tenant = dup_col(st, 1);
    out.sub = dup_col(st, 2);
    out.name = dup_col(st, 3);
    out.env_json = view.env_json ? strdup(view.env_json) : strdup("{}");
    out.cwd = view.cwd ? strdup(view.cwd) : strdup(DEFAULT_CWD);
    if (!out.tenant || !out.sub || (view.name && !out.name) || !out.env_json || !out.cwd) {
        sandbox_rec_release(&out);
        return -ENOMEM;
    }
    *ret = out;
    return 0;
}

static int sq_sandbox_get(struct store *st, const char *id, const char *tenant, const char *sub,
                          struct sandbox_rec *ret)
{
    struct sqlite_store *s = to_sq(st);
    struct conn *c;
    int r = pool_get(s, &c);
    if (r < 0)
        return r;
    {
        _cleanup_reset_ sqlite3_stmt *q = NULL;
        r = stmt_get(c, ST_SB_GET, &q);
        if (r >= 0)
            r = bind_check(c, bind_text(q, 1, id));
        if (r >= 0)
            r = stmt_step(c, q);
        if (r == 0 || (r > 0 && !owner_matches(tenant, sub, (const char *)sqlite3_column_text(q, 1),
                                               (const char *)sqlite3_column_text(q, 2))))
            r = err_set(-ENOENT, "sandbox not found");
        else if (r > 0)
            r = rec_copy_row(q, ret);
    }
    pool_put(s, c);
    return r;
}

static int sq_sandbox_list(struct store *st, const char *tenant, const char *sub,
                           store_sandbox_cb cb, void *userdata)
{
    struct sqlite_store *s = to_sq(st);
    struct conn *c;
    int r = pool_get(s, &c);
    if (r < 0)
        return r;
    {
        _cleanup_reset_ sqlite3_stmt *q = NULL;
        r = stmt_get(c, tenant && sub ? ST_SB_LIST_OWNER : ST_SB_LIST_ANY, &q);
        if (r >= 0)
            r = bind_check(c, bind_text(q, 1, tenant) | bind_text(q, 2, sub));
        while (r >= 0) {
            r = stmt_step(c, q);
            if (r <= 0)
                break;
            struct sandbox_rec rec;
            rec_from_row(q, &rec);
            r = cb(&rec, userdata);
            if (r != 0)
                break;
        }
    }
    pool_put(s, c);
    return r;
}

static int sq_sandbox_delete(struct store *st, const char *id, const char *tenant, const char *sub)
{
    struct sqlite_store *s = to_sq(st);
    int r = wtx_begin(s);
    if (r < 0)
        return r;
    struct apply a = {.c = s->w};
    {
        _cleanup_reset_ sqlite3_stmt *q = NULL;
        r = stmt_get(s->w, ST_SB_STATE, &q);
        if (r >= 0)
            r = bind_check(s->w, bind_text(q, 1, id));
        if (r >= 0)
            r = stmt_step(s->w, q);
        if (r == 0 || (r > 0 && !owner_matches(tenant, sub, (const char *)sqlite3_column_text(q, 4),
                                               (const char *)sqlite3_column_text(q, 5))))
            r = err_set(-ENOENT, "sandbox not found");
        else if (r > 0)
            a.sid = sqlite3_column_int64(q, 0);
    }
    if (r >= 0)
        r = subtree_delete(&a, "/", 1);
    static const enum stmt_id dels[] = {ST_COMMITS_DEL_CHANGES, ST_COMMITS_DEL, ST_SB_DELETE};
    for (size_t i = 0; i < sizeof(dels) / sizeof(dels[0]) && r >= 0; i++) {
        sqlite3_stmt *q = NULL;
        r = stmt_get(s->w, dels[i], &q);
        if (r >= 0)
            r = bind_check(s->w, sqlite3_bind_int64(q, 1, a.sid));
        if (r >= 0)
            r = stmt_run(s->w, q);
    }
    r = wtx_end(s, r);
    if (r < 0)
        return r;
    /* The sandbox is gone whatever GC does; what it cannot collect now stays a candidate. */
    struct gc_stats stats;
    (void)gc_run(s, &stats);
    return 0;
}

static int sq_sandbox_touch(struct store *st, const char *id, int64_t now_ms)
{
    struct sqlite_store *s = to_sq(st);
    int r = wtx_begin(s);
    if (r < 0)
        return r;
    sqlite3_stmt *q = NULL;
    r = stmt_get(s->w, ST_SB_TOUCH, &q);
    if (r >= 0)
        r = bind_check(s->w, bind_text(q, 1, id) | sqlite3_bind_int64(q, 2, now_ms));
    if (r >= 0)
        r = stmt_run(s->w, q);
    if (r >= 0 && sqlite3_changes(s->w->db) == 0)
        r = err_set(-ENOENT, "sandbox not found");
    return wtx_end(s, r);
}

/* ---- file reads ------------------------------------------------------------------------ */

/* 0 when the sandbox exists, -ENOENT when not; *ret_created_ms gets its creation time. */
static int sandbox_exists(struct conn *c, const char *id, int64_t *ret_created_ms)
{
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    int r = stmt_get(c, ST_SB_CREATED, &q);
    if (r >= 0)
        r = bind_check(c, bind_text(q, 1, id));
    if (r >= 0)
        r = stmt_step(c, q);
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
        if (r < 0)
            return r;
        memset(ret, 0, sizeof(*ret));
        ret->path = strdup("/");
        if (!ret->path)
            return -ENOMEM;
        ret->kind = FILE_KIND_DIR;
        ret->mode = DIR_MODE_DEFAULT;
        ret->mtime_ns = created_ms * 1000000;
        return 0;
    }
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    int r = stmt_get(c, ST_F_STAT, &q);
    if (r >= 0)
        r = bind_check(c, bind_text(q, 1, sandbox_id) | bind_text(q, 2, path));
    if (r >= 0)
        r = stmt_step(c, q);
    if (r < 0)
        return r;
    if (r == 0)
        return err_set(-ENOENT, "no such file or directory: %s", path);
    struct file_meta view;
    meta_from_row(q, &view);
    return file_meta_copy(ret, &view);
}

static int sq_stat(struct store *st, const char *sandbox_id, const char *path,
                   struct file_meta *ret)
{
    struct sqlite_store *s = to_sq(st);
    struct conn *c;
    int r = pool_get(s, &c);
    if (r < 0)
        return r;
    r = stat_locked(c, sandbox_id, path, ret);
    pool_put(s, c);
    return r;
}

/* Index just past the max_depth-th segment of `path` below the prefix (whose subtree starts at
 * byte `base`), or 0 when the path is not deeper than max_depth. */
static size_t depth_cut(const char *path, size_t base, int max_depth)
{
    int depth = 1;
    for (size_t i = base; path[i]; i++) {
        if (path[i] == '/' && ++depth > max_depth)
            return i;
    }
    return 0;
}

struct walk {
    struct conn *c;
    const char *sandbox_id;
    char *lo, *hi; /* current range bounds (lo moves forward on skips) */
    size_t lolen, hilen;
    size_t locap;
    size_t base; /* offset of the first byte below the prefix */
    int max_depth;
    bool seen; /* some row lies below the prefix */
};

/* Walks [lo, hi); on a row deeper than max_depth restarts after that row's ancestor at
 * max_depth (its whole subtree is skipped by one index seek). */
static int walk_run(struct walk *w, store_file_cb cb, void *userdata)
{
    sqlite3_stmt *q = NULL;
    int r = stmt_get(w->c, ST_F_LIST, &q);
    while (r >= 0) {
        r = bind_check(w->c, bind_text(q, 1, w->sandbox_id) | bind_textn(q, 2, w->lo, w->lolen) |
                                 bind_textn(q, 3, w->hi, w->hilen));
        bool restart = false;
        while (r >= 0 && !restart) {
            r = stmt_step(w->c, q);
            if (r <= 0)
                break;
            w->seen = true;
            const char *path = (const char *)sqlite3_column_text(q, 0);
            size_t cut = w->max_depth > 0 && path ? depth_cut(path, w->base, w->max_depth) : 0;
            if (cut) {
                if (cut + 2 > w->locap) {
                    char *p = realloc(w->lo, cut + 2);
                    if (!p) {
                        r = -ENOMEM;
                        break;
                    }
                    w->lo = p;
                    w->locap = cut + 2;
                }
                memcpy(w->lo, path, cut);
                w->lo[cut] = '0';
                w->lolen = cut + 1;
                restart = true;
                break;
            }
            struct file_meta m;
            meta_from_row(q, &m);
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

static int sq_list(struct store *st, const char *sandbox_id, const char *prefix, int max_depth,
                   store_file_cb cb, void *userdata)
{
    struct sqlite_store *s = to_sq(st);
    size_t len = strlen(prefix);
    if (!path_ok(prefix, len))
        return err_set(-EINVAL, "invalid path");
    struct walk w = {.sandbox_id = sandbox_id, .max_depth = max_depth};
    w.locap = len + 2;
    w.lo = malloc(w.locap);
    w.hi = malloc(len + 2);
    if (!w.lo || !w.hi) {
        free(w.lo);
        free(w.hi);
        return -ENOMEM;
    }
    subtree_range(prefix, len, w.lo, &w.lolen, w.hi, &w.hilen);
    w.base = len == 1 ? 1 : len + 1;
    int r = pool_get(s, &w.c);
    if (r >= 0) {
        r = walk_run(&w, cb, userdata);
        if (r == 0 && !w.seen)
            r = sandbox_exists(w.c, sandbox_id, NULL);
        pool_put(s, w.c);
    }
    free(w.lo);
    free(w.hi);
    return r;
}

static int sq_has_children(struct store *st, const char *sandbox_id, const char *path)
{
    struct sqlite_store *s = to_sq(st);
    size_t len = strlen(path);
    if (!path_ok(path, len))
        return err_set(-EINVAL, "invalid path");
    char *lo = malloc(2 * (len + 2));
    if (!lo)
        return -ENOMEM;
    char *hi = lo + len + 2;
    size_t lolen, hilen;
    subtree_range(path, len, lo, &lolen, hi, &hilen);
    struct conn *c;
    int r = pool_get(s, &c);
    if (r >= 0) {
        {
            _cleanup_reset_ sqlite3_stmt *q = NULL;
            r = stmt_get(c, ST_F_HAS_CHILD, &q);
            if (r >= 0)
                r = bind_check(c, bind_text(q, 1, sandbox_id) | bind_textn(q, 2, lo, lolen) |
                                      bind_textn(q, 3, hi, hilen));
            if (r >= 0)
                r = stmt_step(c, q);
        }
        if (r == 0)
            r = sandbox_exists(c, sandbox_id, NULL);
        pool_put(s, c);
    }
    free(lo);
    return r;
}

/* ---- content writers ------------------------------------------------------------------- */

struct content_writer {
    struct sqlite_store *s;
    int64_t writer_id;  /* key of this writer's pending_chunks rows */
    uint8_t *buf;       /* the partial chunk (grows up to STORE_CHUNK_SIZE) */
    size_t len;         /* bytes in buf */
    size_t bufcap;      /* bytes allocated at buf */
    int64_t size;       /* bytes written so far (after sealing: the content's size) */
    EVP_MD_CTX *idctx;  /* SHA-256 over the chunk hashes: the content id */
    int64_t *chunk_ids; /* stored chunks in order */
    size_t n, cap;
    bool failed;        /* a write failed: only abort is allowed */
    /* set by writer_seal(): the rest is the tail in buf (stored inline or as a last chunk) */
    bool is_inline;             /* tail is the whole content, stored in its contents row */
    const uint8_t *tail;        /* the len bytes left after the whole chunks: buf, or a copy
                                 * in a batch's arena */
    uint8_t tail_hash[32];      /* hash of the tail chunk (len > 0 and not inline) */
    uint8_t id[CONTENT_ID_LEN]; /* the content id */
};

static int sq_content_begin(struct store *st, struct content_writer **ret)
{
    struct sqlite_store *s = to_sq(st);
    struct content_writer *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->s = s;
    w->writer_id = __atomic_add_fetch(&s->next_writer, 1, __ATOMIC_RELAXED);
    w->idctx = EVP_MD_CTX_new();
    if (!w->idctx || EVP_DigestInit_ex(w->idctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(w->idctx);
        free(w);
        return err_set(-ENOMEM, "cannot initialise hashing");
    }
    *ret = w;
    return 0;
}

/* Finds or inserts the chunk and lists it as pending for this writer, inside the caller's write
 * transaction, so GC can never take it before the content that uses it is recorded. */
static int chunk_store_tx(struct content_writer *w, const uint8_t hash[32], const void *data,
                          size_t len, int64_t *ret_id)
{
    struct conn *c = w->s->w;
    int64_t id = 0;
    int r;
    {
        _cleanup_reset_ sqlite3_stmt *q = NULL;
        r = stmt_get(c, ST_CHUNK_FIND, &q);
        if (r >= 0)
            r = bind_check(c, sqlite3_bind_blob(q, 1, hash, 32, SQLITE_STATIC));
        if (r >= 0)
            r = stmt_step(c, q);
        if (r > 0)
            id = sqlite3_column_int64(q, 0);
    }
    if (r == 0) {
        sqlite3_stmt *q = NULL;
        r = stmt_get(c, ST_CHUNK_INSERT, &q);
        if (r >= 0)
            r = bind_check(c, sqlite3_bind_blob(q, 1, hash, 32, SQLITE_STATIC) |
                                  sqlite3_bind_int64(q, 2, (int64_t)len) |
                                  sqlite3_bind_blob(q, 3, data, (int)len, SQLITE_STATIC));
        if (r >= 0)
            r = stmt_run(c, q);
        id = sqlite3_last_insert_rowid(c->db);
    }
    if (r >= 0) {
        sqlite3_stmt *q = NULL;
        r = stmt_get(c, ST_PENDING_ADD, &q);
        if (r >= 0)
            r = bind_check(c,
                           sqlite3_bind_int64(q, 1, w->writer_id) | sqlite3_bind_int64(q, 2, id));
        if (r >= 0)
            r = stmt_run(c, q);
    }
    if (r >= 0)
        *ret_id = id;
    return r;
}

static int chunk_hash(struct content_writer *w, const void *data, size_t len, uint8_t hash[32])
{
    unsigned int hlen = 0;
    if (EVP_Digest(data, len, hash, &hlen, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(w->idctx, hash, 32) != 1)
        return err_set(-EIO, "hashing failed");
    return 0;
}

static int chunk_ids_reserve(struct content_writer *w)
{
    if (w->n < w->cap)
        return 0;
    size_t cap = w->cap ? w->cap * 2 : 16;
    int64_t *p = realloc(w->chunk_ids, cap * sizeof(*p));
    if (!p)
        return -ENOMEM;
    w->chunk_ids = p;
    w->cap = cap;
    return 0;
}

/* Stores one hashed chunk in its own transaction and appends it to the writer's list. */
static int chunk_store(struct content_writer *w, const uint8_t hash[32], const void *data,
                       size_t len)
{
    int r = chunk_ids_reserve(w);
    if (r < 0 || (r = wtx_begin(w->s)) < 0)
        return r;
    int64_t id = 0;
    r = wtx_end(w->s, chunk_store_tx(w, hash, data, len, &id));
    if (r >= 0)
        w->chunk_ids[w->n++] = id;
    return r;
}

/* Hashes and stores one chunk (outside the writer lock for the hashing). */
static int chunk_flush(struct content_writer *w, const void *data, size_t len)
{
    uint8_t hash[32];
    int r = chunk_hash(w, data, len, hash);
    if (r >= 0)
        r = chunk_store(w, hash, data, len);
    if (r >= 0)
        w->size += (int64_t)len;
    return r;
}

static int content_write_inner(struct content_writer *w, const uint8_t *p, size_t len)
{
    while (len > 0) {
        if (w->len == 0 && len >= STORE_CHUNK_SIZE) {
            /* A whole chunk in the caller's buffer: hash and store it without a copy. */
            int r = chunk_flush(w, p, STORE_CHUNK_SIZE);
            if (r < 0)
                return r;
            p += STORE_CHUNK_SIZE;
            len -= STORE_CHUNK_SIZE;
            continue;
        }
        size_t take = STORE_CHUNK_SIZE - w->len;
        if (take > len)
            take = len;
        if (w->len + take > w->bufcap) {
            /* Grow geometrically: small files never pay for a whole chunk buffer. */
            size_t cap = w->bufcap ? w->bufcap : 16384;
            while (cap < w->len + take)
                cap *= 2;
            if (cap > STORE_CHUNK_SIZE)
                cap = STORE_CHUNK_SIZE;
            uint8_t *p2 = realloc(w->buf, cap);
            if (!p2)
                return -ENOMEM;
            w->buf = p2;
            w->bufcap = cap;
        }
        memcpy(w->buf + w->len, p, take);
        w->len += take;
        p += take;
        len -= take;
        if (w->len == STORE_CHUNK_SIZE) {
            int r = chunk_flush(w, w->buf, w->len);
            if (r < 0)
                return r;
            w->len = 0;
        }
    }
    return 0;
}

static int sq_content_write(struct content_writer *w, const void *data, size_t len)
{
    if (w->failed)
        return err_set(-EINVAL, "content writer already failed");
    int r = content_write_inner(w, data, len);
    if (r < 0)
        w->failed = true;
    return r;
}

static void writer_free(struct content_writer *w)
{
    EVP_MD_CTX_free(w->idctx);
    free(w->buf);
    free(w->chunk_ids);
    free(w);
}

/* Deletes the writer's pending rows and the chunks nobody else uses (best effort: what fails
 * here is cleaned at the next open). */
static void writer_release_chunks(struct content_writer *w)
{
    if (w->n == 0)
        return;
    struct sqlite_store *s = w->s;
    struct conn *c = s->w;
    int r = wtx_begin(s);
    if (r < 0)
        return;
    sqlite3_stmt *q = NULL;
    r = stmt_get(c, ST_PENDING_DEL, &q);
    if (r >= 0)
        r = bind_check(c, sqlite3_bind_int64(q, 1, w->writer_id));
    if (r >= 0)
        r = stmt_run(c, q);
    if (r >= 0)
        r = stmt_get(c, ST_CHUNK_DEL_IF_FREE, &q);
    for (size_t i = 0; i < w->n && r >= 0; i++) {
        r = bind_check(c, sqlite3_bind_int64(q, 1, w->chunk_ids[i]));
        if (r >= 0)
            r = stmt_run(c, q);
    }
    (void)wtx_end(s, r);
}

static void sq_content_abort(struct content_writer *w)
{
    writer_release_chunks(w);
    writer_free(w);
}

/* Records the sealed content (if new) with its chunk list or its inline bytes, pins it and drops
 * the pending rows, inside the caller's write transaction. */
static int content_record_tx(struct content_writer *w)
{
    struct conn *c = w->s->w;
    const void *inline_data = w->is_inline ? w->tail : NULL;
    sqlite3_stmt *q = NULL;
    int r = stmt_get(c, ST_CONTENT_INSERT, &q);
    if (r >= 0)
        r = bind_check(
            c, bind_id(q, 1, w->id) | sqlite3_bind_int64(q, 2, w->size) |
                   sqlite3_bind_int64(q, 3, (int64_t)w->n) |
                   (inline_data ? sqlite3_bind_blob(q, 4, inline_data, (int)w->size, SQLITE_STATIC)
                                : sqlite3_bind_null(q, 4)));
    if (r >= 0)
        r = stmt_run(c, q);
    if (r >= 0 && sqlite3_changes(c->db) > 0 && w->n > 0) {
        r = stmt_get(c, ST_CC_INSERT, &q);
        for (size_t i = 0; i < w->n && r >= 0; i++) {
            r = bind_check(c, bind_id(q, 1, w->id) | sqlite3_bind_int64(q, 2, (int64_t)i) |
                                  sqlite3_bind_int64(q, 3, w->chunk_ids[i]));
            if (r >= 0)
                r = stmt_run(c, q);
        }
    }
    if (r >= 0)
        r = stmt_get(c, ST_PIN_ADD, &q);
    if (r >= 0)
        r = bind_check(c, bind_id(q, 1, w->id) | sqlite3_bind_int64(q, 2, time_now_ms()));
    if (r >= 0)
        r = stmt_run(c, q);
    if (w->n == 0) /* no chunk stored (inline or empty): no pending rows */
        return r;
    if (r >= 0)
        r = stmt_get(c, ST_PENDING_DEL, &q);
    if (r >= 0)
        r = bind_check(c, sqlite3_bind_int64(q, 1, w->writer_id));
    if (r >= 0)
        r = stmt_run(c, q);
    return r;
}

/* Ends the byte stream: hashes the tail left in buf (a small content stays inline, like a
 * one-chunk content with the same id) and computes the content id and size. What remains to be
 * stored is the tail (storing it appends to chunk_ids) and the contents row. */
static int writer_seal(struct content_writer *w)
{
    if (w->failed)
        return err_set(-EINVAL, "content writer already failed");
    w->tail = w->buf;
    if (w->len > 0) {
        int r = chunk_hash(w, w->buf, w->len, w->tail_hash);
        if (r < 0)
            return r;
        w->is_inline = w->n == 0 && w->len <= INLINE_MAX;
        w->size += (int64_t)w->len;
    }
    memset(w->id, 0, sizeof(w->id));
    if (w->size > 0) {
        uint8_t be[8];
        for (int i = 0; i < 8; i++)
            be[i] = (uint8_t)((uint64_t)w->size >> (56 - 8 * i));
        unsigned int hlen = 0;
        if (EVP_DigestUpdate(w->idctx, be, sizeof(be)) != 1 ||
            EVP_DigestFinal_ex(w->idctx, w->id, &hlen) != 1)
            return err_set(-EIO, "hashing failed");
    }
    return 0;
}

static bool writer_has_tail_chunk(const struct content_writer *w)
{
    return w->len > 0 && !w->is_inline;
}

static int sq_content_finish(struct content_writer *w, uint8_t ret_id[CONTENT_ID_LEN],
                             int64_t *ret_size)
{
    int r = writer_seal(w);
    if (r >= 0 && writer_has_tail_chunk(w))
        r = chunk_store(w, w->tail_hash, w->tail, w->len);
    if (r >= 0 && w->size > 0 && (r = wtx_begin(w->s)) >= 0)
        r = wtx_end(w->s, content_record_tx(w));
    if (r < 0) {
        sq_content_abort(w);
        return r;
    }
    memcpy(ret_id, w->id, CONTENT_ID_LEN);
    if (ret_size)
        *ret_size = w->size;
    writer_free(w);
    return 0;
}

/* ---- content batches ------------------------------------------------------------------- */

/* A batch holds sealed writers (tail bytes in memory) and records them with two transactions
 * per flush instead of two per content: first every tail chunk with its pending row, then every
 * contents row, pin and pending cleanup. The order matters: a transaction over both database
 * files is atomic per file only, so content_chunks rows must never be committed in the same
 * transaction as the chunks they name. Until a flush, a batched content exists only here. */
#define BATCH_ARENA_BYTES ((size_t)4 << 20)
#define BATCH_MAX_WRITERS 2048

struct content_batch {
    struct sqlite_store *s;
    struct content_writer **v; /* sealed, not yet recorded */
    size_t n, cap;
    /* The tails of v, copied so that each writer's buffer is freed at once: the next writer
     * reuses that warm memory instead of faulting in fresh pages for every file. */
    uint8_t *arena; /* BATCH_ARENA_BYTES (>= STORE_CHUNK_SIZE: any tail fits) */
    size_t used;
    bool failed; /* a flush failed: its contents are gone, the batch only frees */
};

static int sq_content_batch_new(struct store *st, struct content_batch **ret)
{
    struct content_batch *b = calloc(1, sizeof(*b));
    if (!b || !(b->arena = malloc(BATCH_ARENA_BYTES))) {
        free(b);
        return -ENOMEM;
    }
    b->s = to_sq(st);
    *ret = b;
    return 0;
}

static void batch_drop(struct content_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        sq_content_abort(b->v[i]);
    b->n = 0;
    b->used = 0;
}

static int batch_store_tails(struct content_batch *b)
{
    size_t i = 0;
    while (i < b->n && !writer_has_tail_chunk(b->v[i]))
        i++;
    if (i == b->n)
        return 0;
    for (size_t k = i; k < b->n; k++) {
        int r = chunk_ids_reserve(b->v[k]);
        if (r < 0)
            return r;
    }
    int r = wtx_begin(b->s);
    if (r < 0)
        return r;
    for (; i < b->n && r >= 0; i++) {
        struct content_writer *w = b->v[i];
        if (writer_has_tail_chunk(w))
            r = chunk_store_tx(w, w->tail_hash, w->tail, w->len, &w->chunk_ids[w->n]);
    }
    r = wtx_end(b->s, r);
    if (r < 0)
        return r;
    for (i = 0; i < b->n; i++) {
        struct content_writer *w = b->v[i];
        if (writer_has_tail_chunk(w)) {
            w->n++;
            w->len = 0;
        }
    }
    return 0;
}

static int sq_content_batch_flush(struct content_batch *b)
{
    if (b->failed)
        return err_set(-EIO, "content batch already failed");
    if (b->n == 0)
        return 0;
    int r = batch_store_tails(b);
    if (r >= 0 && (r = wtx_begin(b->s)) >= 0) {
        for (size_t i = 0; i < b->n && r >= 0; i++)
            r = content_record_tx(b->v[i]);
        r = wtx_end(b->s, r);
    }
    if (r < 0) {
        b->failed = true;
        batch_drop(b);
        return r;
    }
    for (size_t i = 0; i < b->n; i++)
        writer_free(b->v[i]);
    b->n = 0;
    b->used = 0;
    return 0;
}

static int sq_content_finish_in(struct content_batch *b, struct content_writer *w,
                                uint8_t ret_id[CONTENT_ID_LEN], int64_t *ret_size)
{
    int r = b->failed ? err_set(-EIO, "content batch already failed") : writer_seal(w);
    if (r >= 0 && w->size > 0 &&
        (b->n == BATCH_MAX_WRITERS || b->used + w->len > BATCH_ARENA_BYTES))
        r = sq_content_batch_flush(b);
    if (r >= 0 && b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        struct content_writer **v = realloc(b->v, cap * sizeof(*v));
        if (!v)
            r = -ENOMEM;
        else {
            b->v = v;
            b->cap = cap;
        }
    }
    if (r < 0) {
        sq_content_abort(w);
        return r;
    }
    memcpy(ret_id, w->id, CONTENT_ID_LEN);
    if (ret_size)
        *ret_size = w->size;
    if (w->size == 0) {
        writer_free(w);
        return 0;
    }
    if (w->len > 0) {
        memcpy(b->arena + b->used, w->buf, w->len);
        w->tail = b->arena + b->used;
        b->used += w->len;
    }
    free(w->buf); /* sealed: no more bytes, no more hashing */
    w->buf = NULL;
    w->bufcap = 0;
    EVP_MD_CTX_free(w->idctx);
    w->idctx = NULL;
    b->v[b->n++] = w;
    return 0;
}

static void sq_content_batch_free(struct content_batch *b)
{
    batch_drop(b);
    free(b->v);
    free(b->arena);
    free(b);
}

/* ---- content readers ------------------------------------------------------------------- */

struct rchunk {
    int64_t id;  /* chunks rowid */
    int64_t off; /* offset of its first byte in the content */
    int64_t len; /* its size */
};

struct content_reader {
    struct sqlite_store *s;
    struct rchunk *chunks; /* in order */
    size_t n;
    size_t cur;       /* chunk holding pos (n at the end) */
    int64_t size;     /* content size */
    int64_t pos;      /* read position */
    bool inline_data; /* the one "chunk" is the contents row's data (rid) */
};

static int reader_add(struct content_reader *rd, size_t *cap, int64_t id, int64_t len)
{
    if (rd->n == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        struct rchunk *p = realloc(rd->chunks, *cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        rd->chunks = p;
    }
    struct rchunk *ch = &rd->chunks[rd->n++];
    ch->id = id;
    ch->len = len;
    ch->off = rd->size;
    rd->size += len;
    return 0;
}

/* Loads the ordered chunk list (or the inline row) of content `id`. */
static int reader_load(struct conn *c, const uint8_t id[CONTENT_ID_LEN], struct content_reader *rd)
{
    int64_t size, nchunks, rid;
    size_t cap = 0;
    {
        _cleanup_reset_ sqlite3_stmt *q = NULL;
        int r = stmt_get(c, ST_CONTENT_SIZE, &q);
        if (r >= 0)
            r = bind_check(c, bind_id(q, 1, id));
        if (r >= 0)
            r = stmt_step(c, q);
        if (r == 0)
            return err_set(-ENOENT, "no such content");
        if (r < 0)
            return r;
        size = sqlite3_column_int64(q, 0);
        nchunks = sqlite3_column_int64(q, 1);
        rid = sqlite3_column_int64(q, 2);
    }
    if (nchunks == 0) {
        rd->inline_data = true;
        return reader_add(rd, &cap, rid, size);
    }
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    int r = stmt_get(c, ST_CONTENT_CHUNKS, &q);
    if (r >= 0)
        r = bind_check(c, bind_id(q, 1, id));
    while (r >= 0) {
        r = stmt_step(c, q);
        if (r <= 0)
            break;
        r = reader_add(rd, &cap, sqlite3_column_int64(q, 0), sqlite3_column_int64(q, 1));
    }
    if (r == 0 && (rd->n != (size_t)nchunks || rd->size != size))
        r = err_set(-EIO, "content is no longer available");
    return r;
}

static int sq_content_open(struct store *st, const uint8_t id[CONTENT_ID_LEN],
                           struct content_reader **ret)
{
    struct sqlite_store *s = to_sq(st);
    struct content_reader *rd = calloc(1, sizeof(*rd));
    if (!rd)
        return -ENOMEM;
    rd->s = s;
    int r = 0;
    if (!id_is_zero(id)) {
        struct conn *c;
        r = pool_get(s, &c);
        if (r >= 0) {
            r = reader_load(c, id, rd);
            pool_put(s, c);
        }
    }
    if (r < 0) {
        free(rd->chunks);
        free(rd);
        return r;
    }
    *ret = rd;
    return 0;
}

/* Reads from pos up to cap bytes, across chunks, opening each chunk's blob on one pooled
 * connection for the duration of the call only. */
static int sq_content_read(struct content_reader *rd, void *buf, size_t cap, size_t *ret_got)
{
    size_t got = 0;
    if (rd->pos >= rd->size || cap == 0) {
        *ret_got = 0;
        return 0;
    }
    struct conn *c;
    int r = pool_get(rd->s, &c);
    if (r < 0)
        return r;
    sqlite3_blob *blob = NULL;
    while (got < cap && rd->pos < rd->size) {
        while (rd->cur < rd->n && rd->pos >= rd->chunks[rd->cur].off + rd->chunks[rd->cur].len)
            rd->cur++;
        if (rd->cur >= rd->n)
            break;
        const struct rchunk *ch = &rd->chunks[rd->cur];
        int rc = blob ? sqlite3_blob_reopen(blob, ch->id)
                 : rd->inline_data
                     ? sqlite3_blob_open(c->db, "main", "contents", "data", ch->id, 0, &blob)
                     : sqlite3_blob_open(c->db, "blobs", "chunks", "data", ch->id, 0, &blob);
        if (rc == SQLITE_OK && sqlite3_blob_bytes(blob) != ch->len)
            rc = SQLITE_CORRUPT;
        int64_t in_chunk = rd->pos - ch->off;
        size_t n = (size_t)(ch->len - in_chunk);
        if (n > cap - got)
            n = cap - got;
        if (rc == SQLITE_OK)
            rc = sqlite3_blob_read(blob, (uint8_t *)buf + got, (int)n, (int)in_chunk);
        if (rc != SQLITE_OK) {
            r = rc == SQLITE_NOMEM ? -ENOMEM : err_set(-EIO, "content is no longer available");
            break;
        }
        got += n;
        rd->pos += (int64_t)n;
    }
    sqlite3_blob_close(blob);
    pool_put(rd->s, c);
    if (r < 0)
        return r;
    *ret_got = got;
    return 0;
}

static int sq_content_seek(struct content_reader *rd, int64_t offset)
{
    if (offset < 0 || offset > rd->size)
        return err_set(-EINVAL, "seek outside the content");
    /* Binary search for the chunk holding offset (n when offset == size). */
    size_t lo = 0, hi = rd->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (rd->chunks[mid].off + rd->chunks[mid].len <= offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    rd->cur = lo;
    rd->pos = offset;
    return 0;
}

static void sq_content_close(struct content_reader *rd)
{
    free(rd->chunks);
    free(rd);
}

/* ---- WAL checkpoints ------------------------------------------------------------------- */

/* SQLite's automatic checkpoint would run in the committing thread, with fsyncs, after the
 * commit that crosses the threshold. Instead the write connection's WAL hook asks a background
 * thread for a PASSIVE checkpoint (which never blocks writers or readers); only when a WAL grows
 * past a hard limit (the background thread cannot keep up) does the writer checkpoint itself. */
#define CKPT_MAIN 1u
#define CKPT_BLOBS 2u
#define CKPT_SOFT_MAIN 1000 /* frames of 4 KiB */
#define CKPT_HARD_MAIN 16000
#define CKPT_SOFT_BLOBS 128 /* frames of 64 KiB */
#define CKPT_HARD_BLOBS 1024
/* After this long without a commit, a WAL larger than CKPT_TRUNCATE_BYTES is checkpointed in
 * full and truncated: a busy burst may have grown it to journal_size_limit, and an idle server
 * should not keep that on disk. A smaller one stays (truncating it would only cost the next
 * commit a new WAL header). */
#define CKPT_IDLE_MS 2000
#define CKPT_TRUNCATE_BYTES (4 << 20)

static int wal_hook(void *ud, sqlite3 *db, const char *name, int frames)
{
    struct sqlite_store *s = ud;
    bool blobs = strcmp(name, "blobs") == 0;
    unsigned bit = blobs ? CKPT_BLOBS : CKPT_MAIN;
    if (frames >= (blobs ? CKPT_HARD_BLOBS : CKPT_HARD_MAIN))
        (void)sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    pthread_mutex_lock(&s->ckpt_lock);
    s->ckpt_last_ms = time_mono_ms();
    s->mem_dirty = true;
    bool wake = !s->ckpt_dirty; /* the checkpointer sleeps without a deadline until now */
    s->ckpt_dirty |= bit;
    if (frames >= (blobs ? CKPT_SOFT_BLOBS : CKPT_SOFT_MAIN) &&
        frames < (blobs ? CKPT_HARD_BLOBS : CKPT_HARD_MAIN)) {
        s->ckpt_want |= bit;
        wake = true;
    }
    if (wake)
        pthread_cond_signal(&s->ckpt_cond);
    pthread_mutex_unlock(&s->ckpt_lock);
    return SQLITE_OK;
}

/* Empties the WAL of one idle database: a PASSIVE pass first copies its frames into the database
 * (it takes no lock a writer needs); only when that copied everything is the WAL truncated,
 * holding the store's write mutex, so that a writer arriving meanwhile queues there rather than
 * meeting SQLITE_BUSY inside SQLite and backing off 1-15 ms at a time. Freeing a 40 MB WAL's
 * blocks takes ~25 ms on this project's test machine: once per burst that grew it past
 * CKPT_TRUNCATE_BYTES, a request may wait that long. No busy handler: a reader still on an old
 * snapshot (a long download) makes it give up, and it is tried again at the next idle moment.
 * True when the WAL is now small enough. */
static bool ckpt_truncate_one(struct sqlite_store *s, const char *name, const char *db_path)
{
    char wal[PATH_MAX];
    struct stat st;
    if (snprintf(wal, sizeof(wal), "%s-wal", db_path) >= (int)sizeof(wal) || stat(wal, &st) < 0 ||
        st.st_size <= CKPT_TRUNCATE_BYTES)
        return true;
    sqlite3 *db = s->ckpt->db;
    int log = -1, copied = -1;
    if (sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, &log, &copied) !=
            SQLITE_OK ||
        log != copied)
        return false;
    pthread_mutex_lock(&s->wlock);
    int rc = sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    pthread_mutex_unlock(&s->wlock);
    return rc == SQLITE_OK;
}

/* ckpt_truncate_one for each database in `dirty`; returns those now truncated. */
static unsigned ckpt_truncate_idle(struct sqlite_store *s, unsigned dirty)
{
    unsigned done = 0;
    sqlite3 *db = s->ckpt->db;
    (void)sqlite3_busy_timeout(db, 0);
    if ((dirty & CKPT_MAIN) && ckpt_truncate_one(s, "main", s->path))
        done |= CKPT_MAIN;
    if ((dirty & CKPT_BLOBS) && ckpt_truncate_one(s, "blobs", s->blobs_path))
        done |= CKPT_BLOBS;
    (void)sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
    return done;
}

/* The idle pass's second half, once per idle spell (a WAL truncation that must be retried does
 * not repeat it): every connection not in use frees the pages of its cache (each while no other
 * thread can use it: the writer under wlock, the idle readers under plock, and the
 * checkpointer's own here; a reader checked out meanwhile keeps its cache), and the C library
 * hands the freed heap back to the kernel. */
static void ckpt_release_memory(struct sqlite_store *s)
{
    (void)sqlite3_db_release_memory(s->ckpt->db);
    pthread_mutex_lock(&s->wlock);
    (void)sqlite3_db_release_memory(s->w->db);
    pthread_mutex_unlock(&s->wlock);
    pthread_mutex_lock(&s->plock);
    for (struct conn *c = s->idle; c; c = c->next)
        (void)sqlite3_db_release_memory(c->db);
    pthread_mutex_unlock(&s->plock);
#ifdef __GLIBC__
    (void)malloc_trim(0);
#endif
}

static void *ckpt_main(void *arg)
{
    struct sqlite_store *s = arg;
    pthread_mutex_lock(&s->ckpt_lock);
    for (;;) {
        while (!s->ckpt_want && !s->ckpt_stop) {
            if (!s->ckpt_dirty) {
                pthread_cond_wait(&s->ckpt_cond, &s->ckpt_lock);
                continue;
            }
            int64_t idle_at = s->ckpt_last_ms + CKPT_IDLE_MS;
            if (time_mono_ms() >= idle_at) {
                unsigned dirty = s->ckpt_dirty;
                bool release = s->mem_dirty;
                s->mem_dirty = false;
                pthread_mutex_unlock(&s->ckpt_lock);
                unsigned done = ckpt_truncate_idle(s, dirty);
                if (release)
                    ckpt_release_memory(s);
                pthread_mutex_lock(&s->ckpt_lock);
                /* a commit meanwhile set its bit again and moved ckpt_last_ms: keep it */
                if (s->ckpt_last_ms < idle_at)
                    s->ckpt_dirty &= ~done;
                if (s->ckpt_dirty && s->ckpt_last_ms < idle_at) /* busy: retry one period on */
                    s->ckpt_last_ms = time_mono_ms();
                continue;
            }
            struct timespec ts = {.tv_sec = idle_at / 1000, .tv_nsec = (idle_at % 1000) * 1000000L};
            (void)pthread_cond_timedwait(&s->ckpt_cond, &s->ckpt_lock, &ts);
        }
        if (s->ckpt_stop)
            break;
        unsigned want = s->ckpt_want;
        s->ckpt_want = 0;
        pthread_mutex_unlock(&s->ckpt_lock);
        /* Failures (SQLITE_BUSY while another checkpoint runs) are retried on the next
         * request; a WAL never loses data by not being checkpointed. */
        if (want & CKPT_MAIN)
            (void)sqlite3_wal_checkpoint_v2(s->ckpt->db, "main", SQLITE_CHECKPOINT_PASSIVE, NULL,
                                            NULL);
        if (want & CKPT_BLOBS)
            (void)sqlite3_wal_checkpoint_v2(s->ckpt->db, "blobs", SQLITE_CHECKPOINT_PASSIVE, NULL,
                                            NULL);
        pthread_mutex_lock(&s->ckpt_lock);
    }
    pthread_mutex_unlock(&s->ckpt_lock);
    return NULL;
}

static int ckpt_start(struct sqlite_store *s)
{
    int r = conn_open(s->path, s->blobs_path, false, &s->ckpt);
    if (r < 0)
        return r;
    r = -pthread_create(&s->ckpt_thread, NULL, ckpt_main, s);
    if (r < 0)
        return err_set(r, "cannot start the checkpoint thread");
    s->ckpt_running = true;
    /* whatever WAL an earlier run or the schema set-up left goes at the first idle moment */
    pthread_mutex_lock(&s->ckpt_lock);
    s->ckpt_dirty = CKPT_MAIN | CKPT_BLOBS;
    s->ckpt_last_ms = time_mono_ms();
    pthread_cond_signal(&s->ckpt_cond);
    pthread_mutex_unlock(&s->ckpt_lock);
    pthread_mutex_lock(&s->wlock);
    sqlite3_wal_hook(s->w->db, wal_hook, s);
    pthread_mutex_unlock(&s->wlock);
    return 0;
}

static void ckpt_stop(struct sqlite_store *s)
{
    if (s->ckpt_running) {
        pthread_mutex_lock(&s->ckpt_lock);
        s->ckpt_stop = true;
        pthread_cond_signal(&s->ckpt_cond);
        pthread_mutex_unlock(&s->ckpt_lock);
        pthread_join(s->ckpt_thread, NULL);
        s->ckpt_running = false;
    }
    conn_close(s->ckpt);
    s->ckpt = NULL;
}

/* ---- garbage collection ---------------------------------------------------------------- */

/* Moves pins past their lease to the candidates (content finished but never committed). */
static int gc_expire_pins(struct sqlite_store *s)
{
    int r = wtx_begin(s);
    if (r < 0)
        return r;
    int64_t before = time_now_ms() - PIN_LEASE_MS;
    static const enum stmt_id ids[] = {ST_GC_EXPIRED_CAND, ST_GC_EXPIRED_DEL};
    for (size_t i = 0; i < 2 && r >= 0; i++) {
        sqlite3_stmt *q = NULL;
        r = stmt_get(s->w, ids[i], &q);
        if (r >= 0)
            r = bind_check(s->w, sqlite3_bind_int64(q, 1, before));
        if (r >= 0)
            r = stmt_run(s->w, q);
    }
    return wtx_end(s, r);
}

static int bind_id_and_run(struct conn *c, enum stmt_id sid, const uint8_t *id)
{
    sqlite3_stmt *q = NULL;
    int r = stmt_get(c, sid, &q);
    if (r >= 0)
        r = bind_check(c, bind_id(q, 1, id));
    return r < 0 ? r : stmt_run(c, q);
}

/* Collects one candidate content if nothing references or pins it. */
static int gc_one(struct conn *c, const uint8_t *id, struct gc_stats *stats)
{
    int r = bind_id_and_run(c, ST_GC_CAND_DEL, id);
    if (r < 0)
        return r;
    {
        _cleanup_reset_ sqlite3_stmt *q = NULL;
        r = stmt_get(c, ST_GC_IS_GARBAGE, &q);
        if (r >= 0)
            r = bind_check(c, bind_id(q, 1, id));
        if (r >= 0)
            r = stmt_step(c, q);
        if (r <= 0)
            return r;
        if (!sqlite3_column_int(q, 0))
            return 0;
    }
    {
        /* Inline contents free their bytes with the row. */
        _cleanup_reset_ sqlite3_stmt *q = NULL;
        r = stmt_get(c, ST_CONTENT_SIZE, &q);
        if (r >= 0)
            r = bind_check(c, bind_id(q, 1, id));
        if (r >= 0)
            r = stmt_step(c, q);
        if (r < 0)
            return r;
        if (r > 0 && sqlite3_column_int64(q, 1) == 0)
            stats->bytes_freed += sqlite3_column_int64(q, 0);
    }
    int64_t *chunks = NULL;
    size_t n = 0, cap = 0;
    {
        _cleanup_reset_ sqlite3_stmt *q = NULL;
        r = stmt_get(c, ST_GC_CHUNKS_OF, &q);
        if (r >= 0)
            r = bind_check(c, bind_id(q, 1, id));
        while (r >= 0) {
            r = stmt_step(c, q);
            if (r <= 0)
                break;
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                int64_t *p = realloc(chunks, cap * sizeof(*p));
                if (!p) {
                    r = -ENOMEM;
                    break;
                }
                chunks = p;
            }
            chunks[n++] = sqlite3_column_int64(q, 0);
        }
    }
    if (r >= 0)
        r = bind_id_and_run(c, ST_GC_CC_DEL, id);
    if (r >= 0)
        r = bind_id_and_run(c, ST_GC_CONTENT_DEL, id);
    if (r >= 0)
        stats->contents_deleted++;
    sqlite3_stmt *q = NULL;
    if (r >= 0)
        r = stmt_get(c, ST_CHUNK_DEL_IF_FREE, &q);
    for (size_t i = 0; i < n && r >= 0; i++) {
        r = bind_check(c, sqlite3_bind_int64(q, 1, chunks[i]));
        if (r >= 0)
            r = stmt_step(c, q);
        if (r > 0) {
            stats->chunks_deleted++;
            stats->bytes_freed += sqlite3_column_int64(q, 0);
        }
        sqlite3_reset(q);
    }
    free(chunks);
    return r < 0 ? r : 0;
}

/* One batch of candidates in one write transaction. 1 when there may be more, 0 when none
 * were left. */
static int gc_batch(struct sqlite_store *s, struct gc_stats *stats)
{
    struct conn *c = s->w;
    uint8_t ids[GC_BATCH][CONTENT_ID_LEN];
    size_t n = 0;
    int r = wtx_begin(s);
    if (r < 0)
        return r;
    {
        _cleanup_reset_ sqlite3_stmt *q = NULL;
        r = stmt_get(c, ST_GC_BATCH, &q);
        if (r >= 0)
            r = bind_check(c, sqlite3_bind_int(q, 1, GC_BATCH));
        while (r >= 0 && n < GC_BATCH) {
            r = stmt_step(c, q);
            if (r <= 0)
                break;
            if (sqlite3_column_bytes(q, 0) != CONTENT_ID_LEN) {
                r = err_set(-EIO, "corrupt garbage collection state");
                break;
            }
            memcpy(ids[n++], sqlite3_column_blob(q, 0), CONTENT_ID_LEN);
        }
    }
    for (size_t i = 0; i < n && r >= 0; i++)
        r = gc_one(c, ids[i], stats);
    r = wtx_end(s, r);
    return r < 0 ? r : n > 0;
}

static int gc_run(struct sqlite_store *s, struct gc_stats *ret)
{
    struct gc_stats stats = {0};
    int r = gc_expire_pins(s);
    while (r >= 0) {
        r = gc_batch(s, &stats);
        if (r == 0)
            break;
    }
    if (r < 0)
        return r;
    if (ret)
        *ret = stats;
    return 0;
}

static int sq_gc(struct store *st, struct gc_stats *ret)
{
    return gc_run(to_sq(st), ret);
}

static int sq_discard(struct store *st, const struct changeset *cs)
{
    struct sqlite_store *s = to_sq(st);
    int r = wtx_begin(s);
    if (r < 0)
        return r;
    r = wtx_end(s, pins_drop(s->w, cs, true));
    return r < 0 ? r : gc_run(s, NULL);
}

/* ---- open / close ---------------------------------------------------------------------- */

static int migrate(struct conn *c)
{
    int r = conn_exec(c, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                         "version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)");
    if (r < 0)
        return r;
    int64_t current = 0;
    {
        sqlite3_stmt *q = NULL;
        int rc = sqlite3_prepare_v2(
            c->db, "SELECT coalesce(max(version), 0) FROM schema_migrations", -1, &q, NULL);
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(q);
            if (rc == SQLITE_ROW) {
                current = sqlite3_column_int64(q, 0);
                rc = SQLITE_OK;
            }
        }
        sqlite3_finalize(q);
        if (rc != SQLITE_OK)
            return sq_fail(c, rc);
    }
    int64_t latest = (int64_t)(sizeof(migrations) / sizeof(migrations[0]));
    if (current > latest)
        return err_set(
            -EIO, "the database schema (version %" PRId64 ") is newer than this server understands",
            current);
    for (int64_t v = current + 1; v <= latest && r >= 0; v++) {
        r = conn_exec(c, "BEGIN IMMEDIATE");
        if (r < 0)
            return r;
        r = conn_exec(c, migrations[v - 1]);
        if (r >= 0) {
            char *sql = sqlite3_mprintf("INSERT INTO schema_migrations VALUES (%lld, %lld)",
                                        (long long)v, (long long)time_now_ms());
            r = sql ? conn_exec(c, sql) : -ENOMEM;
            sqlite3_free(sql);
        }
        if (r >= 0)
            r = conn_exec(c, "COMMIT");
        if (r < 0)
            (void)sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    }
    return r;
}

/* Writers live in this process only: whatever a previous run left pending or pinned is
 * released (pinned contents become GC candidates, unused pending chunks go). */
static int recover(struct sqlite_store *s)
{
    int r = wtx_begin(s);
    if (r < 0)
        return r;
    r = conn_exec(s->w, "INSERT OR IGNORE INTO gc_candidates SELECT content_id FROM content_pins;"
                        "DELETE FROM content_pins;"
                        "DELETE FROM pending_chunks;"
                        "DELETE FROM blobs.chunks WHERE id IN (SELECT id FROM blobs.chunks c "
                        "WHERE NOT EXISTS (SELECT 1 FROM content_chunks WHERE chunk_id = c.id));");
    return wtx_end(s, r);
}

static void sq_close(struct store *st)
{
    struct sqlite_store *s = to_sq(st);
    ckpt_stop(s);
    while (s->idle) {
        struct conn *c = s->idle;
        s->idle = c->next;
        conn_close(c);
    }
    conn_close(s->w);
    pthread_mutex_destroy(&s->wlock);
    pthread_mutex_destroy(&s->plock);
    pthread_mutex_destroy(&s->ckpt_lock);
    pthread_cond_destroy(&s->ckpt_cond);
    free(s->path);
    free(s->blobs_path);
    free(s);
}

/* SQLite's own allocator counter: every connection's page cache, schema and statements (one
 * store per process). */
static int64_t sq_memory_bytes(struct store *st)
{
    (void)st;
    return sqlite3_memory_used();
}

static int sq_check(struct store *st)
{
    struct sqlite_store *s = to_sq(st);
    struct conn *c;
    int r = pool_get(s, &c);
    if (r < 0)
        return r;
    {
        _cleanup_reset_ sqlite3_stmt *q = NULL;
        r = stmt_get(c, ST_CHECK, &q);
        if (r >= 0)
            r = stmt_step(c, q);
        if (r == 0)
            r = err_set(-EIO, "store answered no row");
    }
    pool_put(s, c);
    return r < 0 ? r : 0;
}

static const struct store_ops sqlite_ops = {
    .name = "sqlite",
    .close = sq_close,
    .check = sq_check,
    .memory_bytes = sq_memory_bytes,
    .sandbox_create = sq_sandbox_create,
    .sandbox_get = sq_sandbox_get,
    .sandbox_list = sq_sandbox_list,
    .sandbox_delete = sq_sandbox_delete,
    .sandbox_touch = sq_sandbox_touch,
    .stat = sq_stat,
    .list = sq_list,
    .has_children = sq_has_children,
    .content_begin = sq_content_begin,
    .content_write = sq_content_write,
    .content_finish = sq_content_finish,
    .content_abort = sq_content_abort,
    .content_batch_new = sq_content_batch_new,
    .content_finish_in = sq_content_finish_in,
    .content_batch_flush = sq_content_batch_flush,
    .content_batch_free = sq_content_batch_free,
    .content_open = sq_content_open,
    .content_read = sq_content_read,
    .content_seek = sq_content_seek,
    .content_close = sq_content_close,
    .commit = sq_commit,
    .gc = sq_gc,
    .discard = sq_discard,
};

/* Opens `path` (creating it when `create`, mode 0600) and takes away group and other access
 * from it. A missing file that is not to be created is fine. */
static int make_private(const char *path, bool create)
{
    int fd =
        open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
    if (fd < 0)
        return errno == ENOENT && !create ? 0 : -errno;
    struct stat st;
    int r = fstat(fd, &st) < 0 ? -errno : 0;
    if (r == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077) && fchmod(fd, st.st_mode & 07700) < 0)
        r = -errno;
    close(fd);
    return r;
}

/*
 * The database files hold every sandbox's data: 0600 whatever the umask. SQLite creates the
 * main files with 0644 less the umask and gives its -wal, -shm and -journal files the mode of
 * their database, so the main files are created 0600 here, before SQLite opens them; journals
 * left by an earlier run (or files made by an older version) are made private too.
 */
static int files_private(const char *path, const char *blobs_path)
{
    static const char *const journals[] = {"-wal", "-shm", "-journal"};
    const char *const mains[] = {path, blobs_path};
    for (size_t i = 0; i < 2; i++) {
        int r = make_private(mains[i], true);
        for (size_t j = 0; r == 0 && j < sizeof(journals) / sizeof(journals[0]); j++) {
            char *p = NULL;
            if (asprintf(&p, "%s%s", mains[i], journals[j]) < 0)
                return -ENOMEM;
            r = make_private(p, false);
            free(p);
        }
        if (r < 0)
            return err_set(r, "cannot make the database files private (mode 0600): %s",
                           strerror(-r));
    }
    return 0;
}

int store_open_sqlite(const char *path, struct store **ret)
{
    struct sqlite_store *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->base.ops = &sqlite_ops;
    pthread_mutex_init(&s->wlock, NULL);
    pthread_mutex_init(&s->plock, NULL);
    pthread_mutex_init(&s->ckpt_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->ckpt_cond, &ca);
    pthread_condattr_destroy(&ca);
    s->path = strdup(path);
    if (asprintf(&s->blobs_path, "%s.chunks", path) < 0)
        s->blobs_path = NULL;
    int r = s->path && s->blobs_path ? files_private(path, s->blobs_path) : -ENOMEM;
    if (r >= 0)
        r = conn_open(path, s->blobs_path, false, &s->w);
    if (r >= 0)
        r = migrate(s->w);
    if (r >= 0)
        r = recover(s);
    if (r >= 0)
        r = gc_run(s, NULL);
    if (r >= 0)
        r = ckpt_start(s);
    if (r < 0) {
        sq_close(&s->base);
        return r;
    }
    *ret = &s->base;
    return 0;
}
