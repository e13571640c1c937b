/*
 * app — the composition root: one running server's configuration and the long-lived modules
 * every route uses, built from the configuration by app_open (app.c) before serving and torn
 * down by app_close after. Only main.c, app.c and the routes (src/api) see this struct; every
 * module below them gets what it needs as its own arguments (HACKING.md "Layers"). Routes only
 * read it: the modules it points at are thread-safe themselves.
 */
#ifndef SQLFS_APP_H
#define SQLFS_APP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "util/budget.h"

struct store;
struct sandboxes;
struct ratelimit;
struct exec_engine;
struct egress;
struct metrics;

struct app {
    struct config *cfg;          /* settings (read-only after start) */
    struct store *store;         /* the source of truth (reads; writes go through sandboxes) */
    struct sandboxes *sandboxes; /* the sandbox layer: locks, the commit path, observers */
    struct ratelimit *auth_fail_limit;    /* failed bootstrap/admin attempts per client */
    struct ratelimit *auth_success_limit; /* tokens minted by bootstrap/admin per client */
    struct exec_engine *exec;             /* checkouts + jail; NULL when the runtime is unusable */
    struct egress *egress;                /* the egress proxy of sandboxes whose network is on */
    struct metrics *metrics;              /* the counters of GET /metrics (api/metrics.h) */
    char *auth_secret;                    /* HS256 key of every token */
    size_t auth_secret_len;
    char *auth_secret_previous; /* AUTH_SECRET_PREVIOUS: still accepted, never signs; or NULL */
    size_t auth_secret_previous_len;
    atomic_llong previous_secret_uses; /* requests authenticated with it since start */
    atomic_bool shutting_down;         /* set by SIGTERM/SIGINT: new work gets 503 */
    atomic_int active_requests;        /* requests between accept and completion */
    /* Exec output buffered for exec-sync and batch replies, from the script's write until the
     * reply has gone out (REPLY_MEMORY_BYTES); limit set at start. */
    struct budget reply_memory;
};

/* Builds the server's modules from cfg (whose data_dir is the absolute path of the locked data
 * directory), into *app (zeroed first; app->cfg = cfg, which must outlive it): the signing
 * secrets (AUTH_SECRET, else the data dir's file; *ret_secret_created says whether it was
 * made now), the metrics' counters, the store, the sandbox layer, the auth rate limits, and the
 * exec engine with its start-up self-test. An exec engine that cannot start is not a failure:
 * app->exec stays NULL (logged; execs answer 503 and /readyz says why). On failure the error is set
 * (err_set), what was built is left for app_close, and `what` names the part that failed ("store",
 * ...). */
__attribute__((warn_unused_result)) int app_open(struct app *app, struct config *cfg,
                                                 bool *ret_secret_created, const char **what);

/* Frees what app_open built (any part may be missing). The HTTP server must be stopped. */
void app_close(struct app *app);

#endif
