/*
 * sqlite_checkpoint.c — WAL checkpoints of the SQLite engine, run on a background thread (see
 * wal_hook) so that commits never wait for the checkpoint's fsyncs. Once no commit has come for
 * CKPT_IDLE_MS, that thread checkpoints each WAL in full and truncates it, if no reader still
 * needs it: a burst of writes can grow a WAL to tens of MB (a busy writer rarely finds the
 * moment to restart it), which an idle server would otherwise keep on disk. In the same idle
 * pass every idle connection gives back its page cache (ckpt_release_memory): the caches grow
 * with the database to their bounds, and an idle server should not keep them resident; the next
 * requests read the few pages they need again.
 */
#include "store/sqlite/sqlite_int.h"

#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <sys/stat.h>

#include "util/err.h"
#include "util/timeutil.h"

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
 * meeting SQLITE_BUSY inside SQLite and backing off 1-15 ms at a time. The truncation frees the
 * WAL's blocks on disk, which takes longer the larger the WAL: once per burst that grew it past
 * CKPT_TRUNCATE_BYTES, a request may wait that long for the write mutex. No busy handler: a reader
 * still on an old snapshot (a long download) makes it give up, and it is tried again at the next
 * idle moment. True when the WAL is now small enough. */
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

int sq_ckpt_start(struct sqlite_store *s)
{
    int r = sq_conn_open(s->path, s->blobs_path, false, &s->ckpt);
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

void sq_ckpt_stop(struct sqlite_store *s)
{
    if (s->ckpt_running) {
        pthread_mutex_lock(&s->ckpt_lock);
        s->ckpt_stop = true;
        pthread_cond_signal(&s->ckpt_cond);
        pthread_mutex_unlock(&s->ckpt_lock);
        pthread_join(s->ckpt_thread, NULL);
        s->ckpt_running = false;
    }
    sq_conn_close(s->ckpt);
    s->ckpt = NULL;
}
