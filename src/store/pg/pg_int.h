/*
 * pg_int.h — what the files of the PostgreSQL engine share (contract: store.h, changeset.h).
 * Private to src/store/pg/: nothing else includes it.
 *
 * Files: store_pg.c (open, close, the ops table), pg_conn.c (connections, the pool, statements,
 * parameters, transactions, error mapping), pg_schema.c (migrations and every statement's SQL),
 * pg_sandbox.c (sandbox rows, fork, snapshots), pg_tree.c (file reads, now and at past
 * versions; the commits retained), pg_commit.c (change sets, history pruning),
 * pg_content_write.c (content writers and batches), pg_content_read.c (content readers), pg_gc.c
 * (garbage collection, and the chunk collection aborts share), pg_journal.c (the exec journal,
 * the egress log and idempotency keys).
 *
 * Several servers (replicas) may share one database; every rule below holds across them.
 *
 * Connections: a pool per store of at most pool_size connections, opened on demand and kept
 * idle. A caller holds one connection for one statement or one transaction, never two at a time
 * and never while a store callback runs (a content batch's thread is a caller of its own), so
 * the pool cannot deadlock; a caller that finds every
 * connection busy waits at most pool_wait_ms, then fails -ERR_BUSY. Statements are prepared once
 * per connection on first use; results are binary (integers big-endian), content bytes go as
 * binary parameters. An idle connection the server dropped (restart, termination) is noticed
 * when it is taken from the pool and replaced.
 *
 * Errors: a lost connection, a server shutting down or refusing connections is
 * -ERR_STORE_UNAVAILABLE (retryable: nothing was applied); a serialisation conflict or lock
 * timeout -ERR_BUSY; a full disk -ENOSPC; anything else -EIO naming only the SQLSTATE. No
 * message holds SQL, the database URL or libpq's text (which can name hosts and paths), except
 * at open, where the operator reads why the server could not start.
 *
 * Transactions run at READ COMMITTED: every statement sees what committed before it started,
 * which the lock-then-check steps below rely on. A transaction whose COMMIT got no answer (the
 * connection died after sending it) is in doubt: once the old session is known to be gone, the
 * engine asks a fresh connection (waiting up to DATABASE_POOL_WAIT_MS for a database that is
 * restarting) whether the transaction's effect is there (pg_tx_end's check), and reports success or
 * a plain failure accordingly; only when that cannot be told does the caller get
 * -ERR_COMMIT_IN_DOUBT saying that the change may or may not have been applied.
 *
 * Schema (pg_schema.c): as SQLite's (sqlite_int.h), with paths, symlink targets and the cwd as
 * bytea (memcmp order, any bytes), chunks keyed by their hash, and pins and pending chunks owned
 * by a store instance (`owner`, a random UUID per open) with leases from the database's clock:
 *   - sandboxes (sid, id unique, owner, flags, version, size_bytes, file_count, ...);
 *   - files (sid, path) -> kind, mode, size, mtime_ns, content, target;
 *   - chunks (hash) -> size, data (stored uncompressed, out of line);
 *   - contents (id) -> size, nchunks, data (inline when small, stored uncompressed);
 *     content_chunks (content, seq) -> chunk;
 *   - content_pins (content, owner) -> refs, pinned_ms; writers (id) -> owner, lease_ms;
 *     pending_chunks (writer, chunk);
 *   - gc_candidates (content), gc_chunk_candidates (chunk);
 *   - commits (id) -> sid, version, kind, info, created_ms, changes, bytes_delta, and the
 *     history's cwd, added, modified, deleted, bytes_added;
 *     commit_changes (commit, seq) -> op, path: the change log;
 *   - history (HISTORY: store.h): files.since, the version that wrote a row;
 *     file_history (sid, path, vto) -> vfrom, the row's columns: a row live for versions
 *     [vfrom, vto), kept by triggers on files when an UPDATE or DELETE changes it;
 *     sandboxes.history_floor (versions below it are pruned unless a snapshot names them),
 *     history_bytes (the file bytes of its file_history rows); snapshots (sid, name) ->
 *     version, created_ms;
 *   - schema_migrations (version, applied_ms).
 *
 * Fencing: a commit locks its sandbox row (SELECT ... FOR UPDATE) and compares the version
 * with expect_version before changing anything; two commits of one sandbox, from any replicas,
 * are serialised by that row lock, and the second one based on the same version gets -ESTALE.
 * The owner limit of sandbox_create is counted under a transaction-level advisory lock on the
 * owner, so two creates of one owner are serialised too.
 *
 * Content protection (no GC on any replica removes what is being written or committed):
 *   - a writer stores each chunk in its own transaction: the chunk row is inserted, or an
 *     existing one locked (FOR KEY SHARE), and listed in pending_chunks under the writer, whose
 *     `writers` row holds a lease renewed with every chunk;
 *   - finish locks the content row (inserted, or existing: FOR KEY SHARE) and its chunks, adds
 *     content_chunks when new, pins the content (refs + 1, lease renewed) and ends the writer;
 *   - a commit locks every content it puts (FOR KEY SHARE, sorted by id) before checking it,
 *     and in the same transaction adds the file rows and drops the pins;
 *   - a retired row keeps its content referenced from file_history until a commit of the same
 *     sandbox (holding its row FOR UPDATE) prunes it; fork reads the source's rows with the
 *     source's row locked FOR SHARE, so that no commit prunes them before its copies commit;
 *     snapshot_create checks its version with the row locked FOR UPDATE;
 *   - GC locks what it may delete (FOR UPDATE, sorted), and only then, in a later statement that
 *     sees everything committed meanwhile, deletes the rows that no file, history row, pin,
 *     content or live pending row references. Row locks make the two sides wait for each other, so
 * a content or chunk is either seen as referenced or locked away from deletion. Candidates: every
 * event that can make a content unreferenced records it in gc_candidates (the insert locks an
 * existing candidate row, so GC's batch, which locks its candidates, cannot lose it); deleted
 * contents and expired writers record their chunks in gc_chunk_candidates. GC runs one replica at a
 * time (a transaction-level advisory try-lock per batch: a replica that finds it taken leaves the
 * work to the other), in batches of GC_BATCH candidates, each a short transaction. Closing a store
 * releases its own pins and writers; a replica that died leaves them to expire
 * (STORE_PIN_LEASE_MS).
 *
 * Advisory locks use the two-key form, the first key a class of this engine (PG_LOCK_CLASS*),
 * so that other applications on the same database, using other classes, never meet them.
 */
#ifndef SQLFS_STORE_PG_PG_INT_H
#define SQLFS_STORE_PG_PG_INT_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/engine.h"
#include "store/store.h"
#include "util/rand.h"

#define PG_LOCK_CLASS 0x53514c46 /* "SQLF": the engine's fixed locks, enum pg_lock_key */
#define PG_LOCK_CLASS_OWNER                                                                        \
    0x53514c4f /* "SQLO": sandbox_create, second key hashtext of the                               \
                * owner (tenant, sub) */

#define PG_LOCK_CLASS_SANDBOX                                                                      \
    0x53514c53 /* "SQLS": sandbox locks (pg_lock.c), second key hashtext of the sandbox id */

/* Every lock session's settings: the server probes a silent client (TCP keepalives after 10 s
 * idle, every 5 s, given up after 3 unanswered: about 25 s) and checks that its client is still
 * there every 5 s while a statement runs (a lock wait), so that the locks of a server cut off
 * from the database end within about half a minute. Unix-socket sessions ignore the TCP ones:
 * their peer's death closes the socket at once. A lock session idles while its lock is held (an
 * exec's whole run): no idle or statement timeout of the role or the database may end it. */
#define PG_LOCK_SESSION_SQL                                                                        \
    "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; "                              \
    "SET tcp_keepalives_count = 3; SET client_connection_check_interval = 5000; "                  \
    "SET idle_session_timeout = 0; SET statement_timeout = 0"

enum pg_lock_key {
    PG_LOCK_MIGRATE = 1, /* session lock while migrating */
    PG_LOCK_GC = 2,      /* transaction lock per GC batch */
};

#define PG_PAGE_ROWS 1024 /* rows per page of a list or walk */
#define GC_BATCH 256      /* candidates per GC transaction */

/* Every statement the engine prepares, once per connection on first use. The SQL of each is
 * pg_stmt_sql[id] (pg_schema.c). */
enum pg_stmt {
    PS_CHECK,
    PS_SB_INSERT,
    PS_SB_GET,
    PS_SB_LIST_OWNER,
    PS_SB_LIST_ANY,
    PS_SB_STATE_LOCK,
    PS_SB_TOUCH,
    PS_SB_SET_NETWORK,
    PS_SB_DELETE,
    PS_SB_CREATED,
    PS_SB_EXISTS,
    PS_OWNER_LOCK,
    PS_SB_COUNT_OWNER,
    PS_SB_COUNT,
    PS_F_GET,
    PS_F_GET_MANY,
    PS_F_PUT,
    PS_F_PUT_MANY,
    PS_F_SETDIR,
    PS_F_DEL,
    PS_F_RANGE_DEL,
    PS_F_DEL_ALL,
    PS_F_STAT,
    PS_F_LIST,
    PS_F_HAS_CHILD,
    PS_CAND_ADD,
    PS_CANDS_ADD,
    PS_CONTENT_SIZES_LOCK,
    PS_CONTENT_SIZES,
    PS_CONTENT_GET,
    PS_CONTENT_CHUNKS,
    PS_CHUNK_DATA,
    PS_CONTENT_INSERT,
    PS_CONTENTS_INSERT,
    PS_CONTENT_LOCK,
    PS_CONTENTS_LOCK,
    PS_CC_INSERT,
    PS_CCS_INSERT,
    PS_CHUNKS_LOCK,
    PS_PIN_ADD,
    PS_PINS_ADD,
    PS_PINS_DROP,
    PS_CHUNK_LOCK,
    PS_CHUNK_INSERT,
    PS_CHUNKS_INSERT,
    PS_PENDING_ADD,
    PS_WRITER_END,
    PS_WRITERS_END,
    PS_CHUNKS_COLLECT_LOCK,
    PS_CHUNKS_COLLECT,
    PS_COMMIT_FINISH,
    PS_LOG_ADD,
    PS_COMMIT_EXISTS,
    PS_COMMITS_DEL_CHANGES,
    PS_COMMITS_DEL,
    PS_BACKEND_ALIVE,
    PS_OWNER_PINS_RELEASE,
    PS_OWNER_WRITERS_RELEASE,
    PS_GC_TRYLOCK,
    PS_GC_EXPIRE_PINS,
    PS_GC_EXPIRE_WRITERS,
    PS_GC_BATCH,
    PS_GC_CAND_DEL,
    PS_GC_CONTENTS_LOCK,
    PS_GC_CONTENTS_DEL,
    PS_GC_CC_DEL,
    PS_GC_CHUNK_BATCH,
    PS_GC_CHUNK_CAND_DEL,
    PS_LOG_CHANGES,
    PS_LOCK_SANDBOX,
    PS_LOCK_SANDBOX_SHARED,
    PS_UNLOCK_SANDBOX,
    PS_UNLOCK_SANDBOX_SHARED,
    PS_VER_READABLE,
    PS_TREE_STAT,
    PS_TREE_LIST,
    PS_HIST_FLOOR,
    PS_HIST_PRUNE,
    PS_COMMITS_PAGE,
    PS_COMMIT_PATHS,
    PS_SB_LOCK_SHARE,
    PS_FORK_COPY,
    PS_FORK_FINISH,
    PS_SNAP_COUNT,
    PS_SNAP_INSERT,
    PS_SNAP_GET,
    PS_SNAP_LIST,
    PS_SNAP_DEL,
    PS_SNAP_DEL_ALL,
    PS_H_DEL_ALL,
    PS_COUNT
};

extern const char *const pg_stmt_sql[PS_COUNT];

struct pg_conn {
    PGconn *pg;                              /* owned */
    uint64_t prepared[(PS_COUNT + 63) / 64]; /* bit per statement prepared on this session */
    bool broken;                             /* failed: closed, not pooled, when given back */
    bool reused;                             /* taken from the idle list (not just opened) */
    struct pg_conn *next;                    /* idle list link */
};

/* A pool of connections: at most `size` open, opened on demand and kept idle. */
struct pg_pool {
    const char *setting;  /* the setting that sizes it, for messages */
    int size;             /* connections at most */
    int64_t wait_ms;      /* how long a caller waits for one */
    const char *init_sql; /* run on each new connection (NULL: nothing) */
    pthread_mutex_t lock; /* guards idle, nopen */
    pthread_cond_t cond;  /* signalled when a connection is given back or closed */
    struct pg_conn *idle; /* idle connections */
    int nopen;            /* connections open (idle or in use) */
};

struct pg_store {
    struct store base;        /* must stay first: struct store * is cast to this */
    char *url;                /* the libpq URI; never in a message (it may hold a password) */
    char owner[UUID_STR_LEN]; /* this store instance: its pins and writers */
    bool opening;             /* store_open_pg runs: connection errors name their cause */
    struct pg_pool pool;      /* statements and transactions */
    struct pg_pool locks;     /* sessions holding sandbox locks (pg_lock.c) */
};
static inline struct pg_store *to_pg(struct store *st)
{
    return (struct pg_store *)st;
}

/* ---- pg_conn.c: parameters, statements, the pool, transactions ------------------------- */

#define PG_MAX_PARAMS 16

/* Parameters of one statement, in order ($1, $2, ...): integers and text in text format, bytes
 * in binary. Values are not copied (except integers): they must outlive the call. */
struct pg_params {
    int n;
    bool overflow; /* more than PG_MAX_PARAMS were added: the statement is refused */
    const char *values[PG_MAX_PARAMS];
    int lengths[PG_MAX_PARAMS];
    int formats[PG_MAX_PARAMS];
    char num[PG_MAX_PARAMS][24];
};

void pp_i64(struct pg_params *p, int64_t v);
/* NULL: SQL NULL. */
void pp_text(struct pg_params *p, const char *s);
/* len bytes as bytea; data NULL: SQL NULL. */
void pp_bytes(struct pg_params *p, const void *data, size_t len);
static inline void pp_id(struct pg_params *p, const uint8_t id[CONTENT_ID_LEN])
{
    pp_bytes(p, id, CONTENT_ID_LEN);
}

/*
 * A one-dimensional array parameter in PostgreSQL's binary array format: many rows of a
 * statement in one parameter (`unnest($1::bytea[], $2::bigint[])`). Elements are bytes (a bytea
 * array; NULL elements allowed) or 64-bit integers (a bigint array, which assigns to any integer
 * column). The bytes are copied in. Release with pga_release whatever happened.
 */
struct pg_array {
    char *data;      /* the header, then each element: its length and bytes */
    size_t len, cap; /* bytes used and allocated at data */
    int32_t n;       /* elements */
    bool nulls;      /* some element is NULL */
};

#define PG_OID_BYTEA 17
#define PG_OID_INT8 20

/* Starts an empty array of element type oid (PG_OID_*). -ENOMEM. */
__attribute__((warn_unused_result)) int pga_init(struct pg_array *a, uint32_t oid);
/* Appends len bytes (data NULL: a NULL element). -ENOMEM, -E2BIG past what one parameter can
 * carry. */
__attribute__((warn_unused_result)) int pga_bytes(struct pg_array *a, const void *data, size_t len);
__attribute__((warn_unused_result)) int pga_i64(struct pg_array *a, int64_t v);
void pga_release(struct pg_array *a);
/* Adds the array as the next parameter (binary, pointing into a: keep it until the statement
 * ran). */
void pp_array(struct pg_params *p, struct pg_array *a);

/* Maps a failed statement (res NULL: no answer) to the store's codes with err_set; marks c
 * broken when its session is lost. */
int pg_fail(struct pg_store *s, struct pg_conn *c, const PGresult *res);

/* Runs statement id with p (NULL: none) on c, results binary. Returns the rows it returned, or
 * for a statement without rows the rows it changed (>= 0), or a negative code. *ret (may be NULL)
 * gets the result on success (PQclear it; declare it _cleanup_pgresult_). */
int pg_exec(struct pg_store *s, struct pg_conn *c, enum pg_stmt id, const struct pg_params *p,
            PGresult **ret);
/* pg_exec on a pooled connection, given back before it returns. */
int pg_query(struct pg_store *s, enum pg_stmt id, const struct pg_params *p, PGresult **ret);
/* Runs SQL text without parameters, possibly several statements (BEGIN, COMMIT, migrations);
 * 0 or a negative code. */
int pg_cmd(struct pg_store *s, struct pg_conn *c, const char *sql);
/* pg_exec for SQL built at run time (unprepared), with n parameters in the arrays. */
int pg_exec_sql(struct pg_store *s, struct pg_conn *c, const char *sql, int n,
                const char *const *values, const int *lengths, const int *formats, PGresult **ret);

static inline void pgresult_clearp(PGresult **p)
{
    if (*p)
        PQclear(*p);
}
#define _cleanup_pgresult_ __attribute__((cleanup(pgresult_clearp)))

/* Column readers for binary results. pg_i64 reads an integer or boolean column of any width
 * (0 for NULL); pg_bytes points at a column's bytes (NULL for SQL NULL; NUL-terminated). */
int64_t pg_i64(const PGresult *res, int row, int col);
const char *pg_bytes(const PGresult *res, int row, int col, size_t *ret_len);
/* Copies a content id column; false when it is NULL or not an id. */
bool pg_id(const PGresult *res, int row, int col, uint8_t id[CONTENT_ID_LEN]);

/* Sets up an empty pool (no connection opened). */
void pg_pool_init(struct pg_pool *pool, const char *setting, int size, int64_t wait_ms,
                  const char *init_sql);
/* Closes the idle connections and frees the pool; none may be in use. */
void pg_pool_destroy(struct pg_pool *pool);
/* A connection of `pool` (opened when none is idle and fewer than its size are open; otherwise
 * waits up to its wait_ms, or wait_ms when that is >= 0 and shorter: -ERR_BUSY). Give it back
 * with pg_pool_give (NULL-safe), which closes it when it is broken or left inside a
 * transaction. */
int pg_pool_take(struct pg_store *s, struct pg_pool *pool, int64_t wait_ms, struct pg_conn **ret);
void pg_pool_give(struct pg_pool *pool, struct pg_conn *c);
/* pg_pool_take / pg_pool_give of the statement pool (s->pool). */
int pg_pool_get(struct pg_store *s, struct pg_conn **ret);
void pg_pool_put(struct pg_store *s, struct pg_conn *c);
/* Opens one connection (not counted in the pool). */
int pg_connect(struct pg_store *s, struct pg_conn **ret);
void pg_conn_close(struct pg_conn *c);

/* Is the effect of a transaction whose COMMIT went unanswered there? 1 yes, 0 no, negative
 * when it cannot be told; runs on a fresh connection c. */
typedef int (*pg_tx_check)(struct pg_store *s, struct pg_conn *c, void *arg);

/* A pooled connection inside BEGIN (READ COMMITTED) in *ret; a pooled connection the server
 * dropped while idle is replaced once. */
int pg_tx_begin(struct pg_store *s, struct pg_conn **ret);
/* Ends the transaction on c and gives c back: COMMIT when r >= 0, ROLLBACK otherwise. Returns r,
 * or the failure of the COMMIT. When the COMMIT's answer is lost, `check` (NULL: none) decides
 * as described above: 0 when the effect is there, -ERR_STORE_UNAVAILABLE when it is not,
 * -ERR_COMMIT_IN_DOUBT (the change may or may not have been applied) when that cannot be told. */
int pg_tx_end(struct pg_store *s, struct pg_conn *c, int r, pg_tx_check check, void *arg);

/* ---- pg_schema.c ------------------------------------------------------------------------- */

/* Brings the schema to the latest version under the migration lock (a second server starting
 * at the same time waits, then finds it done), one transaction per migration. -EIO when the
 * database is newer than this code. */
int pg_migrate(struct pg_store *s, struct pg_conn *c);

/* ---- pg_commit.c ------------------------------------------------------------------------- */

/* A sandbox row's key and the state a commit starts from. */
struct sb_state {
    int64_t sid, version, size, count;
};

/* Applies cs to sandbox `id` inside the transaction open on c. known: the sandbox's state when
 * this transaction has just inserted its row (so nobody else can see or lock it), NULL to lock
 * and read it. ret may be NULL. */
int pg_commit_in(struct pg_store *s, struct pg_conn *c, const char *id, const struct changeset *cs,
                 const struct commit_opts *opts, const struct sb_state *known,
                 struct commit_result *ret);

/* ---- pg_gc.c ----------------------------------------------------------------------------- */

/* Inside c's transaction: locks the n chunks (hashes, 32 bytes each) and deletes those no
 * content uses and no live writer lists; adds what it frees to stats (may be NULL). */
int pg_chunks_collect(struct pg_store *s, struct pg_conn *c, const uint8_t *hashes, size_t n,
                      struct gc_stats *stats);
/* Expires leases, then collects candidates in short transactions. ret may be NULL. */
int pg_gc_run(struct pg_store *s, struct gc_stats *ret);

/* ---- pg_tree.c: history ------------------------------------------------------------------ */

/* A readable version of a sandbox. */
struct pg_version {
    int64_t sid;        /* the sandbox's key */
    int64_t created_ms; /* its creation time (the implicit root's mtime) */
};

/* On c (in a transaction or not): the sandbox `id` into *ret when `version` of it is readable
 * (store.h: current, or made by a retained commit). -ENOENT (no sandbox),
 * -ERR_VERSION_NOT_FOUND. ret_cwd (may be NULL) gets a malloc'd copy of the cwd after that
 * version. A caller that needs the answer to hold locks the sandbox row first. */
int pg_version_check(struct pg_store *s, struct pg_conn *c, const char *id, int64_t version,
                     struct pg_version *ret, char **ret_cwd);

/* ---- pg_journal.c ----------------------------------------------------------------------- */

/* Deletes sandbox `sid`'s exec journal, egress log and idempotency records inside c's
 * transaction. */
int pg_journal_delete_in(struct pg_store *s, struct pg_conn *c, int64_t sid);

/* ---- the store_ops members (contract: store.h) ------------------------------------------ */

/* pg_sandbox.c */
int pg_sandbox_create(struct store *st, const struct sandbox_rec *rec,
                      const struct changeset *initial, const struct commit_opts *opts);
int pg_sandbox_get(struct store *st, const char *id, const char *tenant, const char *sub,
                   struct sandbox_rec *ret);
int pg_sandbox_list(struct store *st, const char *tenant, const char *sub, store_sandbox_cb cb,
                    void *userdata);
int pg_sandbox_delete(struct store *st, const char *id, const char *tenant, const char *sub);
int pg_sandbox_touch(struct store *st, const char *id, int64_t now_ms);
int pg_sandbox_count(struct store *st, int64_t *ret);
int pg_sandbox_set_network(struct store *st, const char *id, const char *tenant, const char *sub,
                           bool network, const char *policy_json);
int pg_sandbox_fork(struct store *st, const char *source_id, int64_t version,
                    const struct sandbox_rec *rec, const char *info_json,
                    const struct commit_opts *opts);
int pg_snapshot_create(struct store *st, const char *sandbox_id, const char *name, int64_t version,
                       int64_t now_ms, int64_t max);
int pg_snapshot_get(struct store *st, const char *sandbox_id, const char *name,
                    struct snapshot_rec *ret);
int pg_snapshot_list(struct store *st, const char *sandbox_id, store_snapshot_cb cb,
                     void *userdata);
int pg_snapshot_delete(struct store *st, const char *sandbox_id, const char *name);

/* pg_tree.c */
int pg_stat(struct store *st, const char *sandbox_id, const char *path, struct file_meta *ret);
int pg_list(struct store *st, const char *sandbox_id, const char *prefix, int max_depth,
            store_file_cb cb, void *userdata);
int pg_has_children(struct store *st, const char *sandbox_id, const char *path);
int pg_lock_acquire(struct store *st, const char *sandbox_id, bool exclusive, int64_t timeout_ms,
                    struct store_lock **ret);
void pg_lock_release(struct store *st, struct store_lock *l);
int pg_changes_since(struct store *st, const char *sandbox_id, int64_t since_version,
                     int64_t to_version, size_t max_changes, store_change_cb cb, void *userdata);
int pg_stat_at(struct store *st, const char *sandbox_id, int64_t version, const char *path,
               struct file_meta *ret);
int pg_list_at(struct store *st, const char *sandbox_id, int64_t version, const char *prefix,
               int max_depth, store_file_cb cb, void *userdata);
int pg_commits_list(struct store *st, const char *sandbox_id, int64_t before, int64_t limit,
                    store_commit_cb cb, void *userdata);
int pg_commit_get(struct store *st, const char *sandbox_id, int64_t version,
                  struct commit_rec *ret);
int pg_commit_paths(struct store *st, const char *sandbox_id, int64_t version,
                    store_path_change_cb cb, void *userdata);

/* pg_content_write.c */
int pg_content_begin(struct store *st, struct content_writer **ret);
int pg_content_write(struct content_writer *w, const void *data, size_t len);
int pg_content_finish(struct content_writer *w, uint8_t ret_id[CONTENT_ID_LEN], int64_t *ret_size);
void pg_content_abort(struct content_writer *w);
int pg_content_batch_new(struct store *st, struct content_batch **ret);

/* pg_content_read.c */
int pg_content_open(struct store *st, const uint8_t id[CONTENT_ID_LEN],
                    struct content_reader **ret);
int pg_content_read(struct content_reader *r, void *buf, size_t cap, size_t *ret_got);
int pg_content_seek(struct content_reader *r, int64_t offset);
void pg_content_close(struct content_reader *r);

/* pg_commit.c, pg_gc.c */
int pg_commit(struct store *st, const char *sandbox_id, const struct changeset *cs,
              const struct commit_opts *opts, struct commit_result *ret);
int pg_discard(struct store *st, const struct changeset *cs);
int pg_gc(struct store *st, struct gc_stats *ret);

/* pg_journal.c */
int pg_exec_add(struct store *st, const char *sandbox_id, const struct exec_rec *rec,
                const struct journal_opts *opts);
int pg_exec_list(struct store *st, const char *sandbox_id, const char *before, int64_t limit,
                 store_exec_cb cb, void *userdata);
int pg_exec_get(struct store *st, const char *sandbox_id, const char *exec_id,
                struct exec_rec *ret);
int pg_egress_add(struct store *st, const char *sandbox_id, const struct egress_rec *v, size_t n,
                  const struct egress_opts *o);
int pg_egress_list(struct store *st, const char *sandbox_id, int64_t limit, store_egress_cb cb,
                   void *userdata);
int pg_idem_begin(struct store *st, const char *sandbox_id, const char *tenant, const char *sub,
                  const char *key, const uint8_t hash[32], const struct idem_opts *opts,
                  struct idem_rec *ret);
int pg_idem_finish(struct store *st, const char *sandbox_id, const char *key,
                   const uint8_t claim[IDEM_CLAIM_LEN], enum idem_state state, int status,
                   const char *content_type, const void *body, size_t len,
                   int64_t max_stored_bytes);
int pg_idem_abort(struct store *st, const char *sandbox_id, const char *key,
                  const uint8_t claim[IDEM_CLAIM_LEN]);
int pg_idem_renew(struct store *st, const char *sandbox_id, const char *key,
                  const uint8_t claim[IDEM_CLAIM_LEN], int64_t now_ms);

#endif
