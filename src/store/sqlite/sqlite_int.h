/*
 * sqlite_int.h — what the files of the SQLite engine share (contract: store.h, changeset.h).
 * Private to src/store/sqlite/: nothing else includes it.
 *
 * Files: store_sqlite.c (open, close, the ops table), sqlite_schema.c (migrations and every
 * statement's SQL), sqlite_conn.c (connections, the read pool, write transactions),
 * sqlite_sandbox.c (sandbox rows), sqlite_tree.c (file reads), sqlite_commit.c (change sets),
 * sqlite_content_write.c (content writers and batches), sqlite_content_read.c (content readers),
 * sqlite_gc.c (garbage collection), sqlite_checkpoint.c (WAL checkpoints off the write path),
 * sqlite_history.c (history: commit records, pruning, versions, forks, snapshots),
 * sqlite_journal.c (the exec journal, the egress log and idempotency keys).
 *
 * Connections: one read-write connection, guarded by `wlock`, runs every write transaction
 * (BEGIN IMMEDIATE ... COMMIT), so writers are serialised inside the process and never see
 * SQLITE_BUSY from each other. Reads use a pool of read-only connections (opened on demand, at
 * most POOL_IDLE_MAX idle ones kept), so in WAL mode they run concurrently with the writer and
 * with each other. Each connection is used by one thread at a time and caches its prepared
 * statements (prepared on first use).
 *
 * Schema (sqlite_schema.c): sandboxes are keyed by an integer `sid` so that the per-file rows
 * stay lean; files are a WITHOUT ROWID table keyed (sid, path) whose BINARY (memcmp) order puts
 * a directory before its contents, and the subtree of P is the key range [P/, P0) ('0' follows
 * '/'). Content is chunked: `chunks` (id, hash unique, size, data), `contents` (id = SHA-256 of
 * chunk hashes and size) and `content_chunks` (content, seq) -> chunk.
 *
 * History (store.h): `files.since` is the version whose commit wrote a row; triggers on `files`
 * keep every row a commit replaces or removes in `file_history` (sid, path, vfrom, vto: live for
 * versions [vfrom, vto)), so the tree at version V is the rows of `files` with since <= V and
 * those of `file_history` with vfrom <= V < vto. `commits` holds each commit's cwd and counts;
 * `sandboxes.history_floor` is the oldest version not pruned and `history_bytes` the file bytes
 * `file_history` holds for the sandbox; `snapshots` name versions that are never pruned.
 *
 * Garbage collection never scans the whole store. Every event that can make a content
 * unreferenced records it in `gc_candidates`: a file row holding it removed or replaced, a pin
 * dropped by expiry. GC examines only candidates (in small batches, one write transaction each,
 * so commits are not starved): a candidate with no file row and no pin is deleted together with
 * the chunks no other content uses (a history row is a reference too). Protection of data not yet
 * committed:
 *   - a content writer's chunks are listed in `pending_chunks` (writer id, chunk id) in the same
 *     transaction that inserts or finds the chunk, and GC keeps every chunk listed there; finish
 *     replaces them by the content's content_chunks rows, abort deletes the ones nobody uses;
 *   - a finished content is pinned in `content_pins` (a reference count: one per finish, and a
 *     lease time). A commit drops one reference for each distinct content it puts; pins older than
 *     STORE_PIN_LEASE_MS (finished, never committed: e.g. the commit failed on quota) expire in GC.
 *   - a content batch keeps finished contents in memory until its flush, which stores their
 *     last chunks with pending rows in one transaction and their contents rows and pins in the
 *     next, so the two rules above hold for batched contents too.
 * Writers are in-process only, so at open both tables are cleared: pending chunks nobody uses are
 * deleted and pinned contents become GC candidates.
 *
 * Two database files: `path` holds all metadata (4 KiB pages, so small commits write little),
 * `path`.chunks holds the chunk bytes (64 KiB pages: fewer, larger pages per chunk). Contents up
 * to STORE_INLINE_MAX bytes live inline in their `contents` row, so a small file costs one
 * transaction on the metadata database only. A transaction over both files is atomic per file only
 * (SQLite WAL): the states a crash can leave across them are a pending row naming a chunk that was
 * never stored (cleared at open) or chunks no content uses, which open sweeps.
 *
 * Locks: `wlock` guards the write connection and every write transaction, `plock` the idle read
 * pool, `ckpt_lock` the checkpointer's state. The only nesting is wlock, then ckpt_lock (the WAL
 * hook runs inside a commit); plock is never held together with another lock.
 */
#ifndef SQLFS_STORE_SQLITE_SQLITE_INT_H
#define SQLFS_STORE_SQLITE_SQLITE_INT_H

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/engine.h"
#include "store/store.h"

#define BUSY_TIMEOUT_MS 10000

/* Every statement the engine runs, prepared once per connection on first use. The SQL of each
 * is sq_stmt_sql[id] (sqlite_schema.c). */
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
    ST_SB_SET_NETWORK,
    ST_SB_DELETE,
    ST_SB_CREATED,
    ST_SB_COUNT_OWNER,
    ST_SB_COUNT,
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
    ST_LOG_COUNT,
    ST_LOG_CHANGES,
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
    ST_H_COMMIT_STATS,
    ST_H_OLDEST_AT,
    ST_H_AGE_FLOOR,
    ST_H_BYTES_BY_VTO,
    ST_H_PRUNE_CAND,
    ST_H_PRUNE_BYTES,
    ST_H_PRUNE_ROWS,
    ST_H_PRUNE_CHANGES,
    ST_H_PRUNE_COMMITS,
    ST_H_BYTES_SUB,
    ST_H_DROP_CAND,
    ST_H_DROP_ROWS,
    ST_H_DROP_SNAPSHOTS,
    ST_H_VERSION,
    ST_H_STAT,
    ST_H_LIST,
    ST_H_COMMITS,
    ST_H_COMMIT,
    ST_H_PATHS,
    ST_H_FORK_COPY,
    ST_H_TREE_STATS,
    ST_H_SB_SID,
    ST_H_FORK_SET,
    ST_H_SNAP_COUNT,
    ST_H_SNAP_INSERT,
    ST_H_SNAP_GET,
    ST_H_SNAP_LIST,
    ST_H_SNAP_DEL,
    ST_J_INSERT,
    ST_J_PRUNE_COUNT,
    ST_J_PRUNE_AGE,
    ST_J_SEQ,
    ST_J_LIST,
    ST_J_GET,
    ST_J_DEL_ALL,
    ST_E_INSERT,
    ST_E_PRUNE_COUNT,
    ST_E_PRUNE_AGE,
    ST_E_LIST,
    ST_E_DEL_ALL,
    ST_I_SWEEP,
    ST_I_SWEEP_ANY,
    ST_I_EVICT,
    ST_I_GET,
    ST_I_DEL_KEY,
    ST_I_TRIM,
    ST_I_INSERT,
    ST_I_FINISH,
    ST_I_ABORT,
    ST_I_RENEW,
    ST_I_DEL_ALL,
    ST_COUNT
};

extern const char *const sq_stmt_sql[ST_COUNT];

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

static inline struct sqlite_store *to_sq(struct store *st)
{
    return (struct sqlite_store *)st;
}

/* ---- sqlite_conn.c: connections, statements, the read pool, write transactions ---------- */

/* Maps a SQLite failure to the store's codes (err_set); the message never holds SQL. c may be
 * NULL. */
int sq_fail(struct conn *c, int rc);

/* Opens a connection to the metadata database `path` with the chunk database attached as
 * "blobs"; the read-write one also sets the persistent modes (WAL, page sizes). Free with
 * sq_conn_close (NULL-safe). */
int sq_conn_open(const char *path, const char *blobs_path, bool readonly, struct conn **ret);
void sq_conn_close(struct conn *c);
/* Runs SQL text (no parameters, no rows of interest). */
int sq_conn_exec(struct conn *c, const char *sql);

/* The cached statement `id` of c, prepared on first use. The caller resets it after use (or
 * declares it _cleanup_reset_). */
int sq_stmt_get(struct conn *c, enum stmt_id id, sqlite3_stmt **ret);
/* Steps st: 1 on a row, 0 when done, negative on failure. */
int sq_stmt_step(struct conn *c, sqlite3_stmt *st);
/* Runs a statement that returns no row of interest, and resets it. */
int sq_stmt_run(struct conn *c, sqlite3_stmt *st);

static inline void stmt_resetp(sqlite3_stmt **p)
{
    if (*p)
        sqlite3_reset(*p);
}
#define _cleanup_reset_ __attribute__((cleanup(stmt_resetp)))

/* Statement `id` with the content id bound to ?1 (its only parameter), stepped once: 1 on a row
 * (its columns in *ret; sq_stmt_step for the next), 0 when none, negative on failure. *ret is
 * the statement or NULL, whatever the result: declare it _cleanup_reset_. */
int sq_query_content(struct conn *c, enum stmt_id id, const uint8_t content_id[CONTENT_ID_LEN],
                     sqlite3_stmt **ret);
/* sq_query_content with a sandbox id (text) as ?1. */
int sq_query_sandbox(struct conn *c, enum stmt_id id, const char *sandbox_id, sqlite3_stmt **ret);
/* Runs statement `id` with the content id bound to ?1, for its effect only. */
int sq_run_content(struct conn *c, enum stmt_id id, const uint8_t content_id[CONTENT_ID_LEN]);

/* Copies a content id column into id; false when the column is NULL or not an id. */
static inline bool column_id(sqlite3_stmt *st, int col, uint8_t id[CONTENT_ID_LEN])
{
    const void *p = sqlite3_column_blob(st, col);
    if (!p || sqlite3_column_bytes(st, col) != CONTENT_ID_LEN)
        return false;
    memcpy(id, p, CONTENT_ID_LEN);
    return true;
}

/* Bind helpers: they return the SQLite code; callers OR them and check once with
 * sq_bind_check (a bind fails only on misuse or out of memory). Bound values are not copied:
 * they must outlive the statement's use. */
static inline int bind_text(sqlite3_stmt *st, int i, const char *s)
{
    return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}
static inline int bind_textn(sqlite3_stmt *st, int i, const char *s, size_t n)
{
    return sqlite3_bind_text(st, i, s, (int)n, SQLITE_STATIC);
}
static inline int bind_id(sqlite3_stmt *st, int i, const uint8_t id[CONTENT_ID_LEN])
{
    return sqlite3_bind_blob(st, i, id, CONTENT_ID_LEN, SQLITE_STATIC);
}
int sq_bind_check(struct conn *c, int rc);

/* Points the file_meta at the FILE_COLS columns (path, kind, mode, size, mtime_ns, content,
 * target) of the current row, starting at column col (valid until the next step). */
static inline void sq_meta_from_row(sqlite3_stmt *st, int col, struct file_meta *m)
{
    memset(m, 0, sizeof(*m));
    m->path = (char *)sqlite3_column_text(st, col);
    m->kind = (enum file_kind)sqlite3_column_int(st, col + 1);
    m->mode = (uint32_t)sqlite3_column_int64(st, col + 2);
    m->size = sqlite3_column_int64(st, col + 3);
    m->mtime_ns = sqlite3_column_int64(st, col + 4);
    m->has_content = column_id(st, col + 5, m->content);
    m->target = (char *)sqlite3_column_text(st, col + 6);
}

/* A read-only connection from the pool (opened when none is idle); give it back with
 * sq_pool_put (NULL-safe), which rolls back a transaction left open. */
int sq_pool_get(struct sqlite_store *s, struct conn **ret);
void sq_pool_put(struct sqlite_store *s, struct conn *c);

/* A pooled connection held for the rest of a scope, given back when the scope ends (after the
 * statements declared below it are reset: cleanups run in reverse order):
 *     _cleanup_pooled_ struct pooled p = {.s = s};
 *     int r = sq_pooled_get(&p);    then p.c */
struct pooled {
    struct sqlite_store *s;
    struct conn *c; /* NULL until sq_pooled_get succeeded */
};
static inline int sq_pooled_get(struct pooled *p)
{
    struct conn *c = NULL;
    int r = sq_pool_get(p->s, &c);
    if (r >= 0)
        p->c = c;
    return r;
}
static inline void pooled_putp(struct pooled *p)
{
    sq_pool_put(p->s, p->c);
}
#define _cleanup_pooled_ __attribute__((cleanup(pooled_putp)))

/* Write transactions on s->w: sq_wtx_begin locks wlock and opens BEGIN IMMEDIATE (unlocked
 * again when it fails); sq_wtx_end commits when r >= 0 (rolls back otherwise, or when the
 * commit fails), unlocks and returns r or the commit's error. */
int sq_wtx_begin(struct sqlite_store *s);
int sq_wtx_end(struct sqlite_store *s, int r);

/* ---- sqlite_schema.c -------------------------------------------------------------------- */

/* Brings the schema of the database on c (write connection, no transaction open) to the
 * latest version, one transaction per migration. -EIO when the database is newer than this
 * code. */
int sq_migrate(struct conn *c);

/* ---- sqlite_commit.c -------------------------------------------------------------------- */

/* Applies cs to sandbox `id` inside the write transaction the caller holds (sq_wtx_begin). On
 * failure the caller must roll back (some rows may have changed). ret may be NULL. */
int sq_commit_locked(struct sqlite_store *s, const char *id, const struct changeset *cs,
                     const struct commit_opts *opts, struct commit_result *ret);
/* ---- sqlite_history.c ------------------------------------------------------------------- */

/* What a commit did to its sandbox's rows (store.h: struct commit_rec). */
struct sq_commit_stats {
    int64_t added, modified, deleted;
    int64_t bytes_added;   /* file bytes the commit wrote */
    int64_t bytes_retired; /* file bytes of the rows it replaced or removed (now history) */
};

/* A sandbox's history state while a commit runs. */
struct sq_history {
    int64_t floor; /* history_floor */
    int64_t bytes; /* history_bytes */
    bool pruned;   /* out: pruning made contents GC candidates */
};

/* A sandbox version being read: where and what it is. */
struct sq_version {
    int64_t sid;
    int64_t current;    /* the sandbox's version */
    int64_t created_ms; /* the sandbox's creation (the root's mtime) */
    bool has_commit;    /* a commit row made it */
};

/* Checks that version `version` of sandbox `id` is readable (store.h: the history members) on
 * connection c. -ENOENT (no sandbox), -ERR_VERSION_NOT_FOUND. */
int sq_version_open(struct conn *c, const char *id, int64_t version, struct sq_version *ret);

/* The stats of commit `version` of sandbox `sid`, right after its changes were applied. */
int sq_history_stats(struct conn *c, int64_t sid, int64_t version, struct sq_commit_stats *ret);
/* After commit `version` (its log row written): prunes what opts's retention and quota leave
 * out, moving h->floor and h->bytes (store.h: History). */
int sq_history_prune(struct conn *c, int64_t sid, int64_t version, const struct commit_opts *opts,
                     int64_t now_ms, int64_t size, struct sq_history *h);
/* Removes sandbox `sid`'s history rows (their contents become GC candidates) and snapshots. */
int sq_history_drop(struct conn *c, int64_t sid);

int sq_stat_at(struct store *st, const char *sandbox_id, int64_t version, const char *path,
               struct file_meta *ret);
int sq_list_at(struct store *st, const char *sandbox_id, int64_t version, const char *prefix,
               int max_depth, store_file_cb cb, void *userdata);
int sq_commits_list(struct store *st, const char *sandbox_id, int64_t before, int64_t limit,
                    store_commit_cb cb, void *userdata);
int sq_commit_get(struct store *st, const char *sandbox_id, int64_t version,
                  struct commit_rec *ret);
int sq_commit_paths(struct store *st, const char *sandbox_id, int64_t version,
                    store_path_change_cb cb, void *userdata);
int sq_sandbox_fork(struct store *st, const char *source_id, int64_t version,
                    const struct sandbox_rec *rec, const char *info_json,
                    const struct commit_opts *opts);
int sq_snapshot_create(struct store *st, const char *sandbox_id, const char *name, int64_t version,
                       int64_t now_ms, int64_t max);
int sq_snapshot_get(struct store *st, const char *sandbox_id, const char *name,
                    struct snapshot_rec *ret);
int sq_snapshot_list(struct store *st, const char *sandbox_id, store_snapshot_cb cb,
                     void *userdata);
int sq_snapshot_delete(struct store *st, const char *sandbox_id, const char *name);

/* sqlite_journal.c */
/* Removes sandbox `sid`'s exec journal, egress log and idempotency records (inside the
 * caller's write transaction). */
int sq_journal_drop(struct conn *c, int64_t sid);
int sq_exec_add(struct store *st, const char *sandbox_id, const struct exec_rec *rec,
                const struct journal_opts *opts);
int sq_exec_list(struct store *st, const char *sandbox_id, const char *before, int64_t limit,
                 store_exec_cb cb, void *userdata);
int sq_exec_get(struct store *st, const char *sandbox_id, const char *exec_id,
                struct exec_rec *ret);
int sq_egress_add(struct store *st, const char *sandbox_id, const struct egress_rec *v, size_t n,
                  const struct egress_opts *o);
int sq_egress_list(struct store *st, const char *sandbox_id, int64_t limit, store_egress_cb cb,
                   void *userdata);
int sq_idem_begin(struct store *st, const char *sandbox_id, const char *tenant, const char *sub,
                  const char *key, const uint8_t hash[32], const struct idem_opts *opts,
                  struct idem_rec *ret);
int sq_idem_finish(struct store *st, const char *sandbox_id, const char *key,
                   const uint8_t claim[IDEM_CLAIM_LEN], enum idem_state state, int status,
                   const char *content_type, const void *body, size_t len,
                   int64_t max_stored_bytes);
int sq_idem_abort(struct store *st, const char *sandbox_id, const char *key,
                  const uint8_t claim[IDEM_CLAIM_LEN]);
int sq_idem_renew(struct store *st, const char *sandbox_id, const char *key,
                  const uint8_t claim[IDEM_CLAIM_LEN], int64_t now_ms);

/* Deletes every file row of sandbox `sid` inside the caller's write transaction, recording
 * their contents as GC candidates. */
int sq_files_delete_all(struct sqlite_store *s, int64_t sid);

/* ---- sqlite_gc.c ------------------------------------------------------------------------ */

/* Expires old pins, then collects candidates in batches of one write transaction each (takes
 * wlock per batch: the caller must not hold it). ret may be NULL. */
int sq_gc_run(struct sqlite_store *s, struct gc_stats *ret);

/* ---- sqlite_checkpoint.c ---------------------------------------------------------------- */

/* Starts the checkpoint thread and installs the write connection's WAL hook. */
int sq_ckpt_start(struct sqlite_store *s);
/* Stops and joins the thread (if started) and closes its connection. */
void sq_ckpt_stop(struct sqlite_store *s);

/* ---- the store_ops members (contract: store.h) ------------------------------------------ */

/* sqlite_sandbox.c */
/* Inserts the row of a new sandbox (version 0, no files) inside the caller's write
 * transaction, with the owner's sandbox limit of o. -EINVAL, -EEXIST, -ERR_SANDBOX_LIMIT. */
int sq_sandbox_insert(struct sqlite_store *s, const struct sandbox_rec *rec,
                      const struct commit_opts *o, int64_t now_ms);
int sq_sandbox_create(struct store *st, const struct sandbox_rec *rec,
                      const struct changeset *initial, const struct commit_opts *opts);
int sq_sandbox_get(struct store *st, const char *id, const char *tenant, const char *sub,
                   struct sandbox_rec *ret);
int sq_sandbox_list(struct store *st, const char *tenant, const char *sub, store_sandbox_cb cb,
                    void *userdata);
int sq_sandbox_delete(struct store *st, const char *id, const char *tenant, const char *sub);
int sq_sandbox_touch(struct store *st, const char *id, int64_t now_ms);
int sq_sandbox_count(struct store *st, int64_t *ret);
int sq_sandbox_set_network(struct store *st, const char *id, const char *tenant, const char *sub,
                           bool network, const char *policy_json);

/* sqlite_tree.c */
int sq_stat(struct store *st, const char *sandbox_id, const char *path, struct file_meta *ret);
int sq_list(struct store *st, const char *sandbox_id, const char *prefix, int max_depth,
            store_file_cb cb, void *userdata);
int sq_has_children(struct store *st, const char *sandbox_id, const char *path);
int sq_changes_since(struct store *st, const char *sandbox_id, int64_t since_version,
                     int64_t to_version, size_t max_changes, store_change_cb cb, void *userdata);

/* sqlite_content_write.c */
int sq_content_begin(struct store *st, struct content_writer **ret);
int sq_content_write(struct content_writer *w, const void *data, size_t len);
int sq_content_finish(struct content_writer *w, uint8_t ret_id[CONTENT_ID_LEN], int64_t *ret_size);
void sq_content_abort(struct content_writer *w);
int sq_content_batch_new(struct store *st, struct content_batch **ret);

/* sqlite_content_read.c */
int sq_content_open(struct store *st, const uint8_t id[CONTENT_ID_LEN],
                    struct content_reader **ret);
int sq_content_read(struct content_reader *r, void *buf, size_t cap, size_t *ret_got);
int sq_content_seek(struct content_reader *r, int64_t offset);
void sq_content_close(struct content_reader *r);

/* sqlite_commit.c, sqlite_gc.c */
int sq_commit(struct store *st, const char *sandbox_id, const struct changeset *cs,
              const struct commit_opts *opts, struct commit_result *ret);
int sq_discard(struct store *st, const struct changeset *cs);
int sq_gc(struct store *st, struct gc_stats *ret);

#endif
