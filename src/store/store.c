/* Engine-independent helpers of the store interface (store.h). */
#include "store/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

void sandbox_rec_release(struct sandbox_rec *r)
{
    if (!r)
        return;
    free(r->tenant);
    free(r->sub);
    free(r->name);
    free(r->env_json);
    free(r->network_policy);
    free(r->cwd);
    r->tenant = r->sub = r->name = r->env_json = r->network_policy = r->cwd = NULL;
}

void commit_rec_release(struct commit_rec *c)
{
    if (!c)
        return;
    free(c->kind);
    free(c->info_json);
    free(c->cwd);
    c->kind = c->info_json = c->cwd = NULL;
}

void snapshot_rec_release(struct snapshot_rec *s)
{
    if (!s)
        return;
    free(s->name);
    s->name = NULL;
}

void exec_rec_release(struct exec_rec *e)
{
    if (!e)
        return;
    free(e->exec_id);
    free(e->kind);
    free(e->script);
    free(e->stdout_data);
    free(e->stderr_data);
    e->exec_id = e->kind = e->script = e->stdout_data = e->stderr_data = NULL;
    e->stdout_len = e->stderr_len = 0;
}

void egress_rec_release(struct egress_rec *r)
{
    if (!r)
        return;
    free(r->exec_id);
    free(r->host);
    free(r->address);
    free(r->rule);
    free(r->error);
    r->exec_id = r->host = r->address = r->rule = r->error = NULL;
}

void idem_rec_release(struct idem_rec *r)
{
    if (!r)
        return;
    free(r->content_type);
    free(r->body);
    r->content_type = r->body = NULL;
    r->body_len = 0;
}

int store_ops_check(const struct store_ops *ops)
{
    const char *name = ops->name ? ops->name : "(unnamed)";
    if (ops->version != STORE_OPS_VERSION)
        return err_set(-EINVAL,
                       "store engine %s implements store interface version %d, this server "
                       "needs version %d",
                       name, ops->version, STORE_OPS_VERSION);
    bool required =
        ops->name && ops->close && ops->check && ops->sandbox_create && ops->sandbox_get &&
        ops->sandbox_list && ops->sandbox_delete && ops->sandbox_touch && ops->stat && ops->list &&
        ops->has_children && ops->content_begin && ops->content_write && ops->content_finish &&
        ops->content_abort && ops->content_open && ops->content_read && ops->content_seek &&
        ops->content_close && ops->commit && ops->gc && ops->changes_since && ops->stat_at &&
        ops->list_at && ops->commits_list && ops->commit_get && ops->commit_paths &&
        ops->sandbox_fork && ops->snapshot_create && ops->snapshot_get && ops->snapshot_list &&
        ops->snapshot_delete && ops->exec_add && ops->exec_list && ops->exec_get &&
        ops->sandbox_set_network && ops->egress_add && ops->egress_list && ops->idem_begin &&
        ops->idem_finish && ops->idem_abort && ops->idem_renew;
    int batch = !!ops->content_batch_new + !!ops->content_finish_in + !!ops->content_batch_flush +
                !!ops->content_batch_free;
    bool locks_paired = !ops->lock_acquire == !ops->lock_release;
    if (!required || (batch != 0 && batch != 4) || !locks_paired)
        return err_set(-EINVAL, "store engine %s lacks a member of the store interface", name);
    return 0;
}

static bool is_sqlite(const char *database)
{
    return !database || !*database || strcmp(database, "sqlite:") == 0;
}

const char *store_database_engine(const char *database)
{
    if (is_sqlite(database))
        return "sqlite";
    if (strncmp(database, "postgres://", 11) == 0 || strncmp(database, "postgresql://", 13) == 0)
        return "postgres";
    return NULL;
}

int store_database_check(const char *database)
{
    const char *engine = store_database_engine(database);
    if (!engine)
        return err_set(-EINVAL, "unknown database: use sqlite: (the default, in the data "
                                "directory) or a postgres:// or postgresql:// URL");
    return strcmp(engine, "postgres") == 0 ? store_pg_url_check(database) : 0;
}

/* The SQLite database file of a data directory (malloc'd). */
static int sqlite_path(const struct store_config *cfg, char **ret)
{
    if (asprintf(ret, "%s/sqlfs.db", cfg->data_dir ? cfg->data_dir : ".") < 0)
        return -ENOMEM;
    return 0;
}

int store_open(const struct store_config *cfg, struct store **ret)
{
    int r = store_database_check(cfg->database);
    if (r < 0)
        return r;
    if (!is_sqlite(cfg->database))
        return store_open_pg(cfg->database, &cfg->pg, ret);
    char *path = NULL;
    r = sqlite_path(cfg, &path);
    if (r >= 0)
        r = store_open_sqlite(path, ret);
    free(path);
    return r;
}

int store_migrate(const struct store_config *cfg)
{
    if (!is_sqlite(cfg->database)) {
        int r = store_database_check(cfg->database);
        return r < 0 ? r : store_migrate_pg(cfg->database);
    }
    /* SQLite migrates at open */
    struct store *st = NULL;
    int r = store_open(cfg, &st);
    store_close(st);
    return r;
}
