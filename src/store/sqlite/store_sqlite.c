/*
 * store_sqlite.c — the SQLite engine of the store (contract: store.h, changeset.h): opening a
 * store (file modes, connections, migrations, crash recovery, the checkpoint thread), closing
 * it, and the engine's store_ops table. The engine's model and the map of its files are in
 * sqlite_int.h.
 */
#include "store/sqlite/sqlite_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/compiler.h"
#include "util/err.h"

/* Writers live in this process only: whatever a previous run left pending or pinned is
 * released (pinned contents become GC candidates, unused pending chunks go), and so are the
 * idempotency keys its requests left pending (their requests died with it: a retry runs). */
static int recover(struct sqlite_store *s)
{
    int r = sq_wtx_begin(s);
    if (r < 0)
        return r;
    r = sq_conn_exec(s->w,
                     "INSERT OR IGNORE INTO gc_candidates SELECT content_id FROM content_pins;"
                     "DELETE FROM content_pins;"
                     "DELETE FROM pending_chunks;"
                     "DELETE FROM idempotency WHERE state = 1;"
                     "DELETE FROM blobs.chunks WHERE id IN (SELECT id FROM blobs.chunks c "
                     "WHERE NOT EXISTS (SELECT 1 FROM content_chunks WHERE chunk_id = c.id));");
    return sq_wtx_end(s, r);
}

static void sq_close(struct store *st)
{
    struct sqlite_store *s = to_sq(st);
    sq_ckpt_stop(s);
    while (s->idle) {
        struct conn *c = s->idle;
        s->idle = c->next;
        sq_conn_close(c);
    }
    sq_conn_close(s->w);
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
static int64_t sq_memory_bytes(struct store *st UNUSED)
{
    return sqlite3_memory_used();
}

static int sq_check(struct store *st)
{
    _cleanup_pooled_ struct pooled p = {.s = to_sq(st)};
    int r = sq_pooled_get(&p);
    if (r < 0)
        return r;
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    r = sq_stmt_get(p.c, ST_CHECK, &q);
    if (r >= 0)
        r = sq_stmt_step(p.c, q);
    if (r == 0)
        r = err_set(-EIO, "store answered no row");
    return r < 0 ? r : 0;
}

static const struct store_ops sqlite_ops = {
    .version = STORE_OPS_VERSION,
    .name = "sqlite",
    .close = sq_close,
    .check = sq_check,
    .memory_bytes = sq_memory_bytes,
    .sandbox_create = sq_sandbox_create,
    .sandbox_get = sq_sandbox_get,
    .sandbox_list = sq_sandbox_list,
    .sandbox_count = sq_sandbox_count,
    .sandbox_delete = sq_sandbox_delete,
    .sandbox_touch = sq_sandbox_touch,
    .sandbox_set_network = sq_sandbox_set_network,
    .stat = sq_stat,
    .list = sq_list,
    .has_children = sq_has_children,
    .content_begin = sq_content_begin,
    .content_write = sq_content_write,
    .content_finish = sq_content_finish,
    .content_abort = sq_content_abort,
    .content_batch_new = sq_content_batch_new,
    .content_finish_in = batch_finish_in,
    .content_batch_flush = batch_flush,
    .content_batch_free = batch_free,
    .content_open = sq_content_open,
    .content_read = sq_content_read,
    .content_seek = sq_content_seek,
    .content_close = sq_content_close,
    .commit = sq_commit,
    .gc = sq_gc,
    .discard = sq_discard,
    .changes_since = sq_changes_since,
    .stat_at = sq_stat_at,
    .list_at = sq_list_at,
    .commits_list = sq_commits_list,
    .commit_get = sq_commit_get,
    .commit_paths = sq_commit_paths,
    .sandbox_fork = sq_sandbox_fork,
    .snapshot_create = sq_snapshot_create,
    .snapshot_get = sq_snapshot_get,
    .snapshot_list = sq_snapshot_list,
    .snapshot_delete = sq_snapshot_delete,
    .exec_add = sq_exec_add,
    .exec_list = sq_exec_list,
    .exec_get = sq_exec_get,
    .egress_add = sq_egress_add,
    .egress_list = sq_egress_list,
    .idem_begin = sq_idem_begin,
    .idem_finish = sq_idem_finish,
    .idem_abort = sq_idem_abort,
    .idem_renew = sq_idem_renew,
};

/* Opens `path` (creating it when `create`, mode 0600) and takes away group and other access
 * from it. A missing file that is not to be created is fine. */
static int make_private(const char *path, bool create)
{
    _cleanup_close_ int fd =
        open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
    if (fd < 0)
        return errno == ENOENT && !create ? 0 : -errno;
    struct stat st;
    int r = fstat(fd, &st) < 0 ? -errno : 0;
    if (r == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077) && fchmod(fd, st.st_mode & 07700) < 0)
        r = -errno;
    return r;
}

/*
 * The database files hold every sandbox's data: 0600 whatever the umask. SQLite creates the
 * main files with 0644 less the umask and gives its -wal, -shm and -journal files the mode of
 * their database, so the main files are created 0600 here, before SQLite opens them; journals
 * left by an earlier run, and database files created with a looser mode, are made private too.
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
    int r = store_ops_check(&sqlite_ops);
    if (r < 0)
        return r;
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
    r = s->path && s->blobs_path ? files_private(path, s->blobs_path) : -ENOMEM;
    if (r >= 0)
        r = sq_conn_open(path, s->blobs_path, false, &s->w);
    if (r >= 0)
        r = sq_migrate(s->w);
    if (r >= 0)
        r = recover(s);
    if (r >= 0)
        r = sq_gc_run(s, NULL);
    if (r >= 0)
        r = sq_ckpt_start(s);
    if (r < 0) {
        sq_close(&s->base);
        return r;
    }
    *ret = &s->base;
    return 0;
}
