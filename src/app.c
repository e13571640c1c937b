/*
 * app — the composition root (see app.h): turns the configuration into the modules of one
 * server and wires them. This is the one place that knows every layer: each module gets its own
 * configuration struct and the modules it uses, never struct config or struct app, and the exec
 * engine registers itself with the sandbox layer as an observer.
 */
#include "app.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/metrics.h"
#include "auth/ratelimit.h"
#include "auth/secret.h"
#include "egress/proxy.h"
#include "exec/engine.h"
#include "sandbox/sandbox.h"
#include "store/store.h"
#include "util/err.h"
#include "util/jsontext.h"
#include "util/log.h"

/*
 * The signing secrets: AUTH_SECRET (else the data dir's generated file) and, during a key
 * rotation, AUTH_SECRET_PREVIOUS. Each at least SECRET_MIN_LEN bytes (config_check checked the
 * variables, secret_load the file). The configuration keeps its own copies.
 */
static int load_secrets(struct app *app, bool *ret_created)
{
    const struct config *c = app->cfg;
    int r;
    if (c->auth_secret) {
        if (!(app->auth_secret = strdup(c->auth_secret)))
            return -ENOMEM;
    } else if ((r = secret_load_or_create(c->data_dir, &app->auth_secret, ret_created)) < 0) {
        return r;
    }
    app->auth_secret_len = strlen(app->auth_secret);
    if (!c->auth_secret_previous)
        return 0;
    app->auth_secret_previous_len = strlen(c->auth_secret_previous);
    if (secret_equal(c->auth_secret_previous, app->auth_secret_previous_len, app->auth_secret,
                     app->auth_secret_len))
        return err_set(-EINVAL, "AUTH_SECRET_PREVIOUS is the current secret: set it to the "
                                "secret used before the rotation, or unset it");
    if (!(app->auth_secret_previous = strdup(c->auth_secret_previous)))
        return -ENOMEM;
    log_msg("warn",
            "key rotation: tokens signed with AUTH_SECRET_PREVIOUS are accepted until it is "
            "removed (grace period); new tokens are signed with the current secret");
    return 0;
}

static struct sandbox_config sandbox_config_of(const struct config *c)
{
    return (struct sandbox_config){
        .lock_timeout_ms = c->lock_timeout_ms,
        .quota_bytes = c->sandbox_quota_bytes,
        .max_per_owner = c->max_sandboxes_per_owner,
        .history_max_commits = c->history_max_commits,
        .history_max_age_ms = c->history_max_age * 1000,
        .max_snapshots = c->max_snapshots,
    };
}

static struct exec_config exec_config_of(const struct config *c, struct budget *reply_memory)
{
    return (struct exec_config){
        .data_dir = c->data_dir,
        .rootfs = c->rootfs,
        .concurrency = c->exec_concurrency,
        .queue = c->exec_queue,
        .owner_concurrency = c->exec_owner_concurrency,
        .owner_queue = c->exec_owner_queue,
        .warm_sandboxes = c->exec_warm_sandboxes,
        .py_exec_warm = c->py_exec_warm,
        .py_exec_per_exec = c->py_exec_per_exec,
        .py_exec_max = c->py_exec_max,
        .py_exec_rate = c->py_exec_rate,
        .py_exec_recycle = c->py_exec_recycle,
        .py_exec_preload = c->py_exec_preload,
        .checkout_budget_bytes = c->checkout_budget_bytes,
        .max_output_bytes = c->max_exec_output_bytes,
        .batch_workers = c->batch_workers,
        .memory_bytes = c->exec_memory_bytes,
        .pids_max = c->exec_pids_max,
        .cpu_percent = c->exec_cpu_percent,
        .file_size_bytes = c->exec_file_size_bytes,
        .reply_memory = reply_memory,
        .journal_output_bytes = c->exec_journal_output_bytes,
    };
}

static struct egress_config egress_config_of(const struct config *c)
{
    return (struct egress_config){
        .allow = c->egress_allow,
        .allow_max = c->egress_allow_max,
        .resolve = c->egress_resolve,
        .limits =
            {
                .connections_per_exec = c->egress_connections_per_exec,
                .open_per_exec = c->egress_open_per_exec,
                .bytes_per_exec = c->egress_bytes_per_exec,
                .idle_timeout_ms = c->egress_idle_timeout_ms,
                .connect_timeout_ms = c->egress_connect_timeout_ms,
                .max_open = c->egress_max_open,
                .log_max = c->egress_log_max,
                .log_max_age_ms = c->egress_log_max_age * 1000,
            },
    };
}

/* The exec engine and its self-test. Neither failing stops the server: the API still serves
 * files; execs answer 503 and /readyz says why. */
static void open_exec(struct app *app)
{
    struct exec_config ec = exec_config_of(app->cfg, &app->reply_memory);
    ec.egress = app->egress;
    err_clear();
    int r = exec_engine_new(&ec, app->sandboxes, app->store, &app->exec);
    if (r < 0) {
        json_t *f = json_object();
        const char *m = err_message();
        json_object_set_new(f, "error", jsontext(m ? m : strerror(-r)));
        log_json("error", "exec engine unavailable: sandboxes cannot run commands", f);
    } else if (exec_engine_selftest(app->exec) < 0) {
        /* logged with its cause; /readyz is 503 until an exec or a later self-test passes */
    }
}

int app_open(struct app *app, struct config *cfg, bool *ret_secret_created, const char **what)
{
    memset(app, 0, sizeof(*app));
    app->cfg = cfg;
    app->reply_memory = (struct budget)BUDGET_INIT(cfg->reply_memory_bytes);
    *what = NULL;
    int r = load_secrets(app, ret_secret_created);
    if (r < 0) {
        if (r != -ENOMEM)
            *what = "auth secret";
        return r;
    }
    if ((r = metrics_new(&app->metrics)) < 0)
        return r;
    struct store_config stc = {
        .database = cfg->database,
        .data_dir = cfg->data_dir,
        .pg = {.pool_size = (int)cfg->database_pool_size,
               .pool_wait_ms = cfg->database_pool_wait_ms,
               .lock_connections = (int)cfg->database_lock_connections},
    };
    r = store_open(&stc, &app->store);
    if (r < 0) {
        *what = "store";
        return r;
    }
    struct sandbox_config sc = sandbox_config_of(cfg);
    if ((r = sandboxes_new(app->store, &sc, &app->sandboxes)) < 0) {
        *what = "locks";
        return r;
    }
    app->auth_fail_limit = ratelimit_new(cfg->auth_rate_limit_max, cfg->auth_rate_limit_window_ms);
    app->auth_success_limit =
        ratelimit_new(cfg->auth_success_rate_limit_max, cfg->auth_success_rate_limit_window_ms);
    if (!app->auth_fail_limit || !app->auth_success_limit)
        return -ENOMEM;
    struct egress_config eg = egress_config_of(cfg);
    if ((r = egress_new(&eg, app->store, &app->egress)) < 0) {
        *what = "egress proxy";
        return r;
    }
    open_exec(app);
    return 0;
}

void app_close(struct app *app)
{
    exec_engine_free(app->exec);
    egress_free(app->egress);
    sandboxes_free(app->sandboxes);
    store_close(app->store);
    ratelimit_free(app->auth_fail_limit);
    ratelimit_free(app->auth_success_limit);
    metrics_free(app->metrics);
    free(app->auth_secret);
    free(app->auth_secret_previous);
    memset(app, 0, sizeof(*app));
}
