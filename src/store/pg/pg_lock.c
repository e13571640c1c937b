/*
 * pg_lock.c — sandbox locks shared by every server on the database: session-level advisory
 * locks (two-key form: PG_LOCK_CLASS_SANDBOX, hashtext of the sandbox id), exclusive or shared,
 * each held on a session of the lock pool (s->locks) from acquire to release.
 *
 * Why session locks on sessions of their own: a lock must outlive the transactions of the work
 * it protects (an exec runs for minutes, its commit is one short transaction at the end), and it
 * must end when its server does. A session ends when its server's process dies (the kernel
 * closes the socket, the database ends the session at once) or when the server is cut off
 * (PG_LOCK_SESSION_SQL: within about half a minute); its locks go with it, so no lock outlives
 * its holder. Two sandboxes whose ids hash alike share a lock: they wait for each other, which
 * is slower, never wrong. The database's lock queue is fair: a waiting writer holds back later
 * requests for the shared lock. (A server's readers of one sandbox share one shared lock,
 * sandbox/lock.h, so while their reads overlap without a gap a writer of another server waits,
 * at most LOCK_TIMEOUT_MS.)
 *
 * A wait is bounded by lock_timeout, set in the same statement that asks for the lock.
 */
#include "store/pg/pg_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/timeutil.h"

struct store_lock {
    struct pg_conn *c; /* the session holding it */
    bool exclusive;
    char *sandbox_id;
};

int pg_lock_acquire(struct store *st, const char *sandbox_id, bool exclusive, int64_t timeout_ms,
                    struct store_lock **ret)
{
    struct pg_store *s = to_pg(st);
    struct store_lock *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->exclusive = exclusive;
    l->sandbox_id = strdup(sandbox_id);
    if (!l->sandbox_id) {
        free(l);
        return -ENOMEM;
    }
    if (timeout_ms < 1)
        timeout_ms = 1; /* lock_timeout 0 would wait forever */
    if (timeout_ms > INT32_MAX)
        timeout_ms = INT32_MAX; /* lock_timeout's largest value */
    int64_t t0 = time_mono_ms();
    int r = pg_pool_take(s, &s->locks, timeout_ms, &l->c);
    if (r >= 0) {
        int64_t left = timeout_ms - (time_mono_ms() - t0);
        char timeout[32];
        snprintf(timeout, sizeof(timeout), "%" PRId64 "ms", left < 1 ? 1 : left);
        struct pg_params p = {0};
        pp_i64(&p, PG_LOCK_CLASS_SANDBOX);
        pp_text(&p, sandbox_id);
        pp_text(&p, timeout);
        r = pg_exec(s, l->c, exclusive ? PS_LOCK_SANDBOX : PS_LOCK_SANDBOX_SHARED, &p, NULL);
        /* A lock granted just as the wait timed out (or was cancelled) is held although the
         * statement failed: a session whose lock statement failed is closed, never pooled. */
        if (r < 0)
            l->c->broken = true;
        /* the statement can only time out: lock_not_available */
        if (r == -ERR_BUSY)
            r = err_set(-ERR_LOCK_TIMEOUT,
                        "timed out after %" PRId64 " ms waiting for the sandbox lock "
                        "(held by a request on another server)",
                        timeout_ms);
        else if (r >= 0 && r != 1)
            r = err_set(-EIO, "the lock statement answered no row");
    }
    if (r < 0) {
        pg_pool_give(&s->locks, l->c);
        free(l->sandbox_id);
        free(l);
        return r;
    }
    *ret = l;
    return 0;
}

void pg_lock_release(struct store *st, struct store_lock *l)
{
    struct pg_store *s = to_pg(st);
    struct pg_params p = {0};
    pp_i64(&p, PG_LOCK_CLASS_SANDBOX);
    pp_text(&p, l->sandbox_id);
    _cleanup_pgresult_ PGresult *res = NULL;
    int r = pg_exec(s, l->c, l->exclusive ? PS_UNLOCK_SANDBOX : PS_UNLOCK_SANDBOX_SHARED, &p, &res);
    /* not released (session trouble): ending the session releases it */
    if (r != 1 || !pg_i64(res, 0, 0)) {
        l->c->broken = true;
        err_clear();
    }
    pg_pool_give(&s->locks, l->c);
    free(l->sandbox_id);
    free(l);
}
