/*
 * app — the wiring of one running server: configuration and the long-lived modules every route
 * uses. Built by main.c before serving, torn down after; routes only read it (the modules it
 * points at are thread-safe themselves).
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
struct locks;
struct ratelimit;
struct exec_engine;
struct changeset;

struct app {
    struct config *cfg;            /* settings (read-only after start) */
    struct store *store;           /* the source of truth */
    struct locks *locks;           /* per-sandbox readers-writer locks */
    struct ratelimit *auth_fail_limit;    /* failed bootstrap/admin attempts per client */
    struct ratelimit *auth_success_limit; /* tokens minted by bootstrap/admin per client */
    struct exec_engine *exec;      /* checkouts + jail; NULL when the runtime is unusable */
    /* Called after every successful commit of a sandbox (keeps caches such as the exec
     * checkout coherent); `upper_dir` is the overlay upper an exec's change set came from
     * (its files can be moved into place), NULL for API writes. NULL hook: nothing caches. */
    void (*after_commit)(struct app *app, const char *sandbox_id, int64_t old_version,
                         int64_t new_version, const struct changeset *cs, const char *upper_dir);
    void (*after_delete)(struct app *app, const char *sandbox_id);
    char *auth_secret;             /* HS256 key of every token */
    size_t auth_secret_len;
    char *auth_secret_previous; /* AUTH_SECRET_PREVIOUS: still accepted, never signs; or NULL */
    size_t auth_secret_previous_len;
    atomic_llong previous_secret_uses; /* requests authenticated with it since start */
    atomic_bool shutting_down;     /* set by SIGTERM/SIGINT: new work gets 503 */
    atomic_int active_requests;    /* requests between accept and completion */
    /* Exec output buffered for exec-sync and batch replies, from the script's write until the
     * reply has gone out (REPLY_MEMORY_BYTES); limit set at start. */
    struct budget reply_memory;
};

#endif
