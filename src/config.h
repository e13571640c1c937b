/*
 * config — every setting of `sqlfs serve`, from defaults, then the environment, then flags
 * (flags win); README.md "Configuration" lists them. Strings are malloc'd and owned by the
 * struct.
 */
#ifndef SQLFS_CONFIG_H
#define SQLFS_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

struct config {
    char *listen_host;                 /* SQLFS_LISTEN host part / --listen; default 127.0.0.1 */
    int port;                          /* PORT or SQLFS_LISTEN port; default 8080 */
    char *data_dir;                    /* SQLFS_DATA / --data; default ./data */
    char *database;                    /* SQLFS_DATABASE / --database: NULL or "sqlite:" → SQLite
                                        * in the data dir; postgres:// or postgresql:// →
                                        * PostgreSQL (may hold a password: never shown) */
    int64_t database_pool_size;        /* DATABASE_POOL_SIZE: PostgreSQL connections at most;
                                        * default EXEC_CONCURRENCY + 4 (-1 until config_finish) */
    int64_t database_lock_connections; /* DATABASE_LOCK_CONNECTIONS: lock sessions at most */
    int64_t database_pool_wait_ms;     /* DATABASE_POOL_WAIT_MS 5000: wait for one, then 503 */
    char *auth_secret;                 /* AUTH_SECRET; NULL → generated and kept in data dir */
    char *auth_secret_previous;        /* AUTH_SECRET_PREVIOUS; NULL → none (key rotation) */
    char *admin_secret;                /* ADMIN_SECRET; NULL → admin routes answer 500 */
    char *metrics_token;               /* METRICS_TOKEN: bearer token of GET /metrics; NULL →
                                        * no such route (404) */
    int64_t token_default_expires_s;   /* TOKEN_DEFAULT_EXPIRES 30d; -1 = never */
    int64_t token_max_expires_s;       /* TOKEN_MAX_EXPIRES 365d; -1 = no maximum ("never") */
    int64_t tokens_not_before_s;       /* TOKENS_NOT_BEFORE: tokens issued earlier are refused
                                        * (Unix seconds; 0 = none) */
    bool trust_proxy;                  /* TRUST_PROXY: honour X-Forwarded-For for rate limits */
    int64_t max_request_body_bytes;    /* MAX_REQUEST_BODY_BYTES 268435456 (JSON bodies) */
    int64_t max_file_write_bytes;      /* MAX_FILE_WRITE_BYTES 1073741824 */
    int64_t max_bulk_write_files;      /* MAX_BULK_WRITE_FILES 1000 */
    int64_t max_ingest_files;          /* MAX_INGEST_FILES 100000 */
    int64_t max_ingest_bytes;          /* MAX_INGEST_BYTES 4294967296 */
    int64_t max_ingest_path_bytes;     /* MAX_INGEST_PATH_BYTES 33554432 */
    int64_t max_tree_entries;          /* MAX_TREE_ENTRIES 50000 */
    int64_t max_exec_output_bytes;     /* MAX_EXEC_OUTPUT_BYTES 16777216: per stream of a request */
    int64_t reply_memory_bytes;        /* REPLY_MEMORY_BYTES 268435456: exec output held for
                                        * exec-sync and batch replies, all requests together */
    int64_t sandbox_quota_bytes;       /* SANDBOX_QUOTA_BYTES 10737418240 */
    int64_t max_sandboxes_per_owner;   /* MAX_SANDBOXES_PER_OWNER 1000 (0 = no limit) */
    int64_t history_max_commits;       /* HISTORY_MAX_COMMITS 1000 (0 = no limit) */
    int64_t history_max_age;           /* HISTORY_MAX_AGE seconds, 30 days (0 = no limit) */
    int64_t max_snapshots;             /* MAX_SNAPSHOTS 100 (0 = no limit) */
    int64_t exec_journal_output_bytes; /* EXEC_JOURNAL_OUTPUT_BYTES 16384: per stream of an exec,
                                        * kept in its journal record */
    int64_t idempotency_max_body_bytes;   /* IDEMPOTENCY_MAX_BODY_BYTES 1048576: largest answer
                                           * kept for an Idempotency-Key */
    int64_t idempotency_max_stored_bytes; /* IDEMPOTENCY_MAX_STORED_BYTES 67108864: answers kept
                                           * per sandbox, all its keys together (0 = no
                                           * limit) */
    int64_t exec_memory_bytes;            /* EXEC_MEMORY_BYTES 1073741824 */
    int64_t exec_pids_max;                /* EXEC_PIDS_MAX 512 */
    int64_t exec_cpu_percent;             /* EXEC_CPU_PERCENT 100 (of one core; 0 = no cap) */
    int64_t exec_file_size_bytes;         /* EXEC_FILE_SIZE_BYTES 4294967296 (RLIMIT_FSIZE) */
    int64_t exec_concurrency;       /* EXEC_CONCURRENCY: execs running at once; default 2×CPUs+2 */
    int64_t exec_queue;             /* EXEC_QUEUE: execs waiting beyond that; default 256 */
    int64_t exec_owner_concurrency; /* EXEC_OWNER_CONCURRENCY: execs of one owner (tenant, sub)
                                     * running at once; default half of EXEC_CONCURRENCY,
                                     * rounded up (-1 until config_finish) */
    int64_t exec_owner_queue;       /* EXEC_OWNER_QUEUE: execs of one owner waiting; default a
                                     * quarter of EXEC_QUEUE, rounded up (-1 until config_finish) */
    int64_t exec_warm_sandboxes;    /* EXEC_WARM_SANDBOXES 64: sandboxes keeping a network
                                     * namespace and an idle upper between execs (LRU) */
    int64_t batch_workers;       /* BATCH_WORKERS: read-only batch parallelism; default 2×CPUs */
    int64_t auth_rate_limit_max; /* AUTH_RATE_LIMIT_MAX 5: failed auth requests per IP */
    int64_t auth_rate_limit_window_ms;         /* AUTH_RATE_LIMIT_WINDOW_MS 60000 */
    int64_t auth_success_rate_limit_max;       /* AUTH_SUCCESS_RATE_LIMIT_MAX 600: tokens per IP */
    int64_t auth_success_rate_limit_window_ms; /* AUTH_SUCCESS_RATE_LIMIT_WINDOW_MS 60000 */
    int64_t lock_timeout_ms;                   /* LOCK_TIMEOUT_MS 60000: wait for a sandbox lock */
    int64_t checkout_budget_bytes;  /* CHECKOUT_BUDGET_BYTES 10737418240: disk for checkouts */
    int64_t max_connections;        /* MAX_CONNECTIONS 2000 */
    int64_t max_connections_per_ip; /* MAX_CONNECTIONS_PER_IP 64 (0 = unlimited) */
    int64_t request_timeout_s;    /* REQUEST_TIMEOUT_S 30: client silent while sending a request */
    int64_t connection_timeout_s; /* CONNECTION_TIMEOUT_S 600: client silent during a response */
    int64_t egress_connections_per_exec; /* EGRESS_CONNECTIONS_PER_EXEC 1024 */
    int64_t egress_open_per_exec;        /* EGRESS_OPEN_PER_EXEC 64 */
    int64_t egress_bytes_per_exec;       /* EGRESS_BYTES_PER_EXEC 4294967296 */
    int64_t egress_idle_timeout_ms;      /* EGRESS_IDLE_TIMEOUT_MS 60000 */
    int64_t egress_connect_timeout_ms;   /* EGRESS_CONNECT_TIMEOUT_MS 10000 */
    int64_t egress_max_open;             /* EGRESS_MAX_OPEN 512: on the whole server */
    int64_t egress_log_max;              /* EGRESS_LOG_MAX 1000: log records per sandbox */
    int64_t egress_log_max_age;          /* EGRESS_LOG_MAX_AGE seconds, 30 days (0 = no limit) */
    char *egress_allow;                  /* EGRESS_ALLOW: rules of `network: true`; NULL → none */
    char *egress_allow_max;   /* EGRESS_ALLOW_MAX: every sandbox's ceiling; NULL → "*" */
    char *egress_resolve;     /* EGRESS_RESOLVE: pinned names host:addr,...; NULL → none */
    char *rootfs;             /* SQLFS_ROOTFS / --rootfs; NULL → host "/" (its /usr) */
    bool quiet;               /* SQLFS_QUIET / --quiet: no per-request log lines */
    bool py_exec_warm;        /* PY_EXEC_WARM (on): py-exec forks the warm interpreter */
    int64_t py_exec_per_exec; /* PY_EXEC_PER_EXEC 16: warm py-exec children of one exec */
    int64_t py_exec_max;      /* PY_EXEC_MAX 64: warm py-exec children of the server */
    int64_t py_exec_rate;     /* PY_EXEC_RATE 100: warm py-exec starts per second of an exec */
    int64_t py_exec_recycle;  /* PY_EXEC_RECYCLE 1000: calls before a fresh zygote */
    char *py_exec_preload;    /* PY_EXEC_PRELOAD: modules the zygote imports; NULL → default */
};

#define CONFIG_TOKEN_DEFAULT_EXPIRES "30d"
#define CONFIG_TOKEN_MAX_EXPIRES "365d"

/* Fills defaults. Allocates; pair with config_release. -ENOMEM. */
__attribute__((warn_unused_result)) int config_init(struct config *c);
/* Applies environment variables. -EINVAL with err_set() naming the bad variable. */
__attribute__((warn_unused_result)) int config_from_env(struct config *c);
/* Applies `serve` flags (argv[0] is "serve"). -EINVAL with err_set() naming the bad flag.
 * Returns 1 (and stops) at -h/--help: the caller prints config_serve_help() and exits 0. */
__attribute__((warn_unused_result)) int config_from_args(struct config *c, int argc, char **argv);
/* Checks what no single setting shows, once the environment and the flags are applied: the
 * signing secrets long enough (secret_check_length), the default token lifetime within the
 * maximum, TOKENS_NOT_BEFORE not in the future (now_s), the database a known engine's
 * (store_database_check). -EINVAL with err_set(). */
__attribute__((warn_unused_result)) int config_check(const struct config *c, int64_t now_s);
/* Fills the defaults derived from other settings (EXEC_OWNER_CONCURRENCY, EXEC_OWNER_QUEUE,
 * DATABASE_POOL_SIZE) that neither the environment nor a flag set: call once both are
 * applied. */
void config_finish(struct config *c);
void config_release(struct config *c);
/* The help text of `sqlfs serve`. */
const char *config_serve_help(void);

#endif
