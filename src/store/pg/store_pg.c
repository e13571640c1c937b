/*
 * store_pg.c — the PostgreSQL engine of the store (contract: store.h, changeset.h): checking a
 * database URL, opening a store (the pool, migrations under the migration lock, a first
 * collection), closing it (its own pins and writers released for any replica's GC to collect),
 * migrating only, and the engine's store_ops table. The engine's model and the map of its
 * files are in pg_int.h.
 */
#include "store/pg/pg_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

int store_pg_url_check(const char *url)
{
    if (!url || (strncmp(url, "postgres://", 11) != 0 && strncmp(url, "postgresql://", 13) != 0))
        return err_set(-EINVAL, "not a PostgreSQL URL: it must start with postgres:// or "
                                "postgresql://");
    /* libpq's own message may quote the URL (and so a password): not repeated */
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &errmsg);
    PQfreemem(errmsg);
    if (!opts)
        return err_set(-EINVAL, "the PostgreSQL URL is malformed (see libpq's connection URIs: "
                                "postgresql://[user[:password]@][host][:port][/dbname][?param="
                                "value&...])");
    PQconninfoFree(opts);
    return 0;
}

/* This store's pins and writers go: nothing of this process will commit them now. Best effort:
 * what is left expires with its lease. */
static void owner_release(struct pg_store *s)
{
    struct pg_conn *c;
    if (pg_tx_begin(s, &c) < 0)
        return;
    struct pg_params p = {0};
    pp_text(&p, s->owner);
    int r = pg_exec(s, c, PS_OWNER_PINS_RELEASE, &p, NULL);
    if (r >= 0)
        r = pg_exec(s, c, PS_OWNER_WRITERS_RELEASE, &p, NULL);
    (void)pg_tx_end(s, c, r < 0 ? r : 0, NULL, NULL);
}

static void store_free(struct pg_store *s)
{
    pg_pool_destroy(&s->pool);
    pg_pool_destroy(&s->locks);
    free(s->url);
    free(s);
}

static void pg_close(struct store *st)
{
    struct pg_store *s = to_pg(st);
    owner_release(s);
    store_free(s);
}

static int pg_check(struct store *st)
{
    int r = pg_query(to_pg(st), PS_CHECK, NULL, NULL);
    if (r == 0)
        r = err_set(-EIO, "store answered no row");
    return r < 0 ? r : 0;
}

static const struct store_ops pg_ops = {
    .version = STORE_OPS_VERSION,
    .name = "postgres",
    .close = pg_close,
    .check = pg_check,
    .sandbox_create = pg_sandbox_create,
    .sandbox_get = pg_sandbox_get,
    .sandbox_list = pg_sandbox_list,
    .sandbox_count = pg_sandbox_count,
    .sandbox_delete = pg_sandbox_delete,
    .sandbox_touch = pg_sandbox_touch,
    .sandbox_set_network = pg_sandbox_set_network,
    .stat = pg_stat,
    .list = pg_list,
    .has_children = pg_has_children,
    .content_begin = pg_content_begin,
    .content_write = pg_content_write,
    .content_finish = pg_content_finish,
    .content_abort = pg_content_abort,
    .content_batch_new = pg_content_batch_new,
    .content_finish_in = batch_finish_in,
    .content_batch_flush = batch_flush,
    .content_batch_free = batch_free,
    .content_open = pg_content_open,
    .content_read = pg_content_read,
    .content_seek = pg_content_seek,
    .content_close = pg_content_close,
    .commit = pg_commit,
    .gc = pg_gc,
    .discard = pg_discard,
    .changes_since = pg_changes_since,
    .stat_at = pg_stat_at,
    .list_at = pg_list_at,
    .commits_list = pg_commits_list,
    .commit_get = pg_commit_get,
    .commit_paths = pg_commit_paths,
    .sandbox_fork = pg_sandbox_fork,
    .snapshot_create = pg_snapshot_create,
    .snapshot_get = pg_snapshot_get,
    .snapshot_list = pg_snapshot_list,
    .snapshot_delete = pg_snapshot_delete,
    .exec_add = pg_exec_add,
    .exec_list = pg_exec_list,
    .exec_get = pg_exec_get,
    .egress_add = pg_egress_add,
    .egress_list = pg_egress_list,
    .idem_begin = pg_idem_begin,
    .idem_finish = pg_idem_finish,
    .idem_abort = pg_idem_abort,
    .idem_renew = pg_idem_renew,
    .lock_acquire = pg_lock_acquire,
    .lock_release = pg_lock_release,
};

/* A store handle with its pool set up and no connection open yet. */
static int store_new(const char *url, const struct store_pg_opts *opts, struct pg_store **ret)
{
    int r = store_ops_check(&pg_ops);
    if (r >= 0)
        r = store_pg_url_check(url);
    if (r < 0)
        return r;
    if (opts->pool_size < 1 || opts->pool_wait_ms < 0)
        return err_set(-EINVAL, "the database pool needs at least one connection");
    struct pg_store *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->base.ops = &pg_ops;
    pg_pool_init(&s->pool, "DATABASE_POOL_SIZE", opts->pool_size, opts->pool_wait_ms, NULL);
    pg_pool_init(&s->locks, "DATABASE_LOCK_CONNECTIONS",
                 opts->lock_connections > 0 ? opts->lock_connections : 1, opts->pool_wait_ms,
                 PG_LOCK_SESSION_SQL);
    s->url = strdup(url);
    r = s->url ? rand_uuid(s->owner) : -ENOMEM;
    if (r < 0) {
        store_free(s);
        return r;
    }
    *ret = s;
    return 0;
}

/* Migrates on a connection of its own (the migration lock is a session lock). */
static int migrate(struct pg_store *s)
{
    struct pg_conn *c;
    int r = pg_connect(s, &c);
    if (r < 0)
        return r;
    r = pg_migrate(s, c);
    pg_conn_close(c);
    return r;
}

int store_open_pg(const char *url, const struct store_pg_opts *opts, struct store **ret)
{
    struct pg_store *s;
    int r = store_new(url, opts, &s);
    if (r < 0)
        return r;
    s->opening = true;
    r = migrate(s);
    if (r >= 0)
        r = pg_gc_run(s, NULL);
    s->opening = false;
    if (r < 0) {
        store_free(s);
        return r;
    }
    *ret = &s->base;
    return 0;
}

int store_migrate_pg(const char *url)
{
    struct pg_store *s;
    int r = store_new(url, &(struct store_pg_opts){.pool_size = 1}, &s);
    if (r < 0)
        return r;
    s->opening = true;
    r = migrate(s);
    store_free(s);
    return r;
}
