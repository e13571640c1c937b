/*
 * engine — the exec engine as the rest of the server sees it (README.md "The exec model"):
 *   admission (bounded concurrency + bounded queue, shared fairly between owners: admission.h)
 *   → checkout (lower layer, at the sandbox's version) → jail (overlay with a fresh upper) → run
 *   bash, streaming its output → diff of the upper into a change set → commit through
 *   sandbox_commit → the upper's files move into the checkout.
 * Semantics (docs/API.md "Exec"): changes commit whatever the exit code, also after a timeout or a
 * client disconnect; nothing commits on a server-side failure or when the quota would be exceeded;
 * a read-only exec that changed anything fails with EREADONLY_VIOLATION and keeps nothing; the
 * final cwd of a write-mode exec becomes the sandbox's stored cwd.
 *
 * The caller holds the sandbox's lock for the whole run: exclusive for write mode, shared for
 * read-only. Thread-safe: one engine serves every connection thread.
 */
#ifndef SQLFS_EXEC_ENGINE_H
#define SQLFS_EXEC_ENGINE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "exec/capture.h"
#include "store/store.h"

struct exec_engine;
struct sandboxes;

/* What the engine is set up with (filled by the composition root from the configuration).
 * Pointers are borrowed and must outlive the engine. */
struct exec_config {
    const char *data_dir;          /* absolute; checkouts, uppers and jail files live below */
    const char *rootfs;            /* SQLFS_ROOTFS: the jail's /usr comes from here; NULL: "/" */
    int64_t concurrency;           /* EXEC_CONCURRENCY */
    int64_t queue;                 /* EXEC_QUEUE */
    int64_t owner_concurrency;     /* EXEC_OWNER_CONCURRENCY */
    int64_t owner_queue;           /* EXEC_OWNER_QUEUE */
    int64_t warm_sandboxes;        /* EXEC_WARM_SANDBOXES */
    int64_t checkout_budget_bytes; /* CHECKOUT_BUDGET_BYTES */
    int64_t max_output_bytes;      /* MAX_EXEC_OUTPUT_BYTES: per stream of a request */
    int64_t batch_workers;         /* BATCH_WORKERS */
    int64_t memory_bytes;          /* EXEC_MEMORY_BYTES */
    int64_t pids_max;              /* EXEC_PIDS_MAX */
    int64_t cpu_percent;           /* EXEC_CPU_PERCENT */
    int64_t file_size_bytes;       /* EXEC_FILE_SIZE_BYTES */
    /* REPLY_MEMORY_BYTES: output held for replies, shared with the API's reply buffers */
    struct budget *reply_memory;
    int64_t journal_output_bytes; /* EXEC_JOURNAL_OUTPUT_BYTES: per stream, in a journal record */
    /* The egress proxy (borrowed; outlives the engine): execs of a sandbox whose network is on
     * reach it, and nothing else. NULL: every exec has loopback only. */
    struct egress *egress;
    bool py_exec_warm;           /* PY_EXEC_WARM */
    int64_t py_exec_per_exec;    /* PY_EXEC_PER_EXEC */
    int64_t py_exec_max;         /* PY_EXEC_MAX */
    int64_t py_exec_rate;        /* PY_EXEC_RATE */
    int64_t py_exec_recycle;     /* PY_EXEC_RECYCLE */
    const char *py_exec_preload; /* PY_EXEC_PRELOAD; NULL: ZYGOTE_DEFAULT_PRELOAD */
};

/* An exec's id: lowercase hex, the id of its upper layer (a batch: one for the whole batch).
 * It names the exec in its commit's record (execId), its journal record and its answer. */
#define EXEC_ID_LEN 32

/* Receives output as it is produced (stream 1 = stdout, 2 = stderr). */
typedef void (*exec_output_cb)(void *userdata, int stream, const char *data, size_t len);

struct exec_params {
    const char *script; /* bash script (binary-safe) */
    size_t script_len;
    const char *cwd;        /* start dir; NULL = the sandbox's stored cwd */
    json_t *env;            /* request env object (string→string), may be NULL */
    int64_t timeout_ms;     /* 1..300000 */
    bool debug;             /* set -x */
    bool read_only;         /* shared lock held; any change → EREADONLY_VIOLATION */
    const char *stdin_data; /* may be NULL */
    size_t stdin_len;
    int cancel_fd;                       /* client socket: hang-up kills the script; -1 = none */
    exec_output_cb on_output;            /* NULL: output is kept in the outcome (exec/capture.h) */
    struct capture_allowance *allowance; /* kept output: shared with other execs of the
                                          * request; NULL = MAX_EXEC_OUTPUT_BYTES of its own */
    void (*on_start)(void *userdata);    /* may be NULL: called once bash runs the script (the
                                          * set-up went through; output may follow) */
    void *userdata;
    /* Non-NULL: the exec is recorded in the sandbox's journal under this kind ("sync",
     * "stream") once it ran (exec/journal.c); NULL: no record (the self-test). */
    const char *journal_kind;
    /* May be NULL: called on the exec's thread once it has its exec slot (before the jail
     * starts) and, in write mode, before its commit; a negative return stops the exec there
     * (nothing is committed) and is its error. The caller renews there what must outlive the
     * waits for a slot (an Idempotency-Key's claim: api/idem.h idem_renew). */
    int (*keepalive)(void *arg);
    void *keepalive_arg;
    /* The caller answers first: what the exec leaves to do once its outcome is known (the
     * checkout apply of its commit, the upper's removal, the next upper's preparation) is
     * handed back in exec_outcome.rest instead of being done before exec_engine_run returns. */
    bool rest_after_reply;
};

/* Wall time of one exec's phases (monotonic clock, ns): where its latency went. A phase the
 * exec did not reach stays 0. */
struct exec_timing {
    int64_t queue_ns;   /* waiting for an exec slot (EXEC_CONCURRENCY, EXEC_QUEUE) */
    int64_t prepare_ns; /* the checkout (rebuilt from SQL when missing or stale) and the upper */
    int64_t spawn_ns;   /* the jail's set-up, until its init has started bash */
    int64_t run_ns;     /* the script, until bash and its output ended */
    int64_t commit_ns;  /* the upper's diff and its commit (read-only: the check for changes) */
};

struct exec_outcome {
    char exec_id[EXEC_ID_LEN + 1]; /* the exec's id, set before on_start is called ("" when the
                                    * exec failed before it got one) */
    int64_t version;               /* the version its commit made; 0: it committed nothing */
    int exit_code;                 /* bash's exit code (128+N when killed by signal N) */
    int exit_signal;               /* 0 or the signal number */
    bool timed_out;                /* killed at timeout_ms */
    bool cancelled;                /* killed because the client went away */
    int64_t duration_ms;           /* wall time of the script */
    struct capture output;         /* kept output when on_output is NULL (counted in
                                    * REPLY_MEMORY_BYTES until released) */
    int64_t files_changed;         /* changes committed */
    struct exec_timing timing;
    /* With exec_params.rest_after_reply, on success: the exec's remaining work. The caller
     * takes it (setting it to NULL) and runs it with exec_rest_finish once its reply is out,
     * holding the sandbox lock and keeping the record it passed to exec_engine_run until then;
     * exec_outcome_release runs whatever is still there. */
    struct exec_session *rest;
};

/* Runs and frees what an exec left for after its reply (exec_outcome.rest, the ret_rest of
 * exec_engine_run_batch). NULL-safe. */
void exec_rest_finish(struct exec_session *rest);
/* Frees the kept output (capture_release), and runs o->rest if it is still there. */
void exec_outcome_release(struct exec_outcome *o);

/* Starts the engine over the sandboxes `sbx` and their store `st` (both must outlive it): jail
 * runtime (start-up checks), checkout cache, uppers, cleanup of leftovers; then registers it as
 * an observer of the sandboxes (sandbox_observe), so that its checkouts and idle uppers follow
 * every commit and deletion. On failure the server still runs without execs (readyz degraded):
 * *ret is NULL and the status JSON explains which feature is missing (logged by the caller). */
__attribute__((warn_unused_result)) int exec_engine_new(const struct exec_config *cfg,
                                                        struct sandboxes *sbx, struct store *st,
                                                        struct exec_engine **ret);
/* Unregisters the engine from the sandboxes and frees it. NULL-safe. */
void exec_engine_free(struct exec_engine *e);

/* The operator's view (GET /v1/status): {"ok": bool, "checks": {...}, "limits": {...}, "shell",
 * "localeArchive", "networkNamespaces", "running", "queued", "idleUppers", "warmSandboxes",
 * "faults": {...}}; "ok" is exec_engine_ready(). NULL engine → {"ok", "checks"?, "error"} with
 * the reason recorded by the last failed exec_engine_new (which may name host paths). */
/* The warm Python's state (docs/API.md "Health"): {state, message?}, and with `detail` its
 * pid, memory, preloaded modules, counters and limits. NULL-safe (no engine: unavailable). */
json_t *exec_engine_py_exec_json(struct exec_engine *e, bool detail);
json_t *exec_engine_status_json(struct exec_engine *e);

/* The execs holding a slot now and those waiting for one (admission.h); both 0 without an
 * engine. For the operator's metrics: one mutex, no allocation. */
void exec_engine_load(struct exec_engine *e, int64_t *ret_running, int64_t *ret_queued);

/* Readiness for /readyz: exec_engine_ready(e); when false, `why` gets the reason in words safe
 * for anyone (no host path, no counter): why there is no engine and which start-up checks
 * failed, or the phase and error of the latest failed exec set-up. */
bool exec_engine_ready_why(struct exec_engine *e, char *why, size_t n);

/* Runs one small write-mode exec through the real path: a private sandbox created in the store,
 * its checkout, an overlay, the jail, the diff and the commit, then the sandbox is deleted. 0
 * when the exec printed what it should. On failure the cause is logged and the engine is
 * marked failing (/readyz 503, naming the phase and error). Called once at start, before the
 * server listens; -EALREADY while another self-test runs. */
__attribute__((warn_unused_result)) int exec_engine_selftest(struct exec_engine *e);

/* True when execs work: no engine → false; while the latest exec or self-test failed on the
 * server's side → false, after re-running the self-test when the last one is 10 s old (so a
 * passing fault heals without an exec). */
bool exec_engine_ready(struct exec_engine *e);

/* What exec routes answer when the server has no exec engine: -ERR_JAIL_UNAVAILABLE (503) with
 * a message saying why (e.g. the server runs without root) and pointing at /readyz. */
int exec_engine_unavailable(void);

/* Runs one exec for the sandbox whose record was read under its lock. rec->version/cwd are
 * updated by the commit. Errors: -ERR_BUSY (queue full), -ERR_READONLY_VIOLATION, -ERR_QUOTA,
 * -ENOENT (cwd missing, message set), -ERR_JAIL_UNAVAILABLE, -EIO ... ; on error nothing was
 * committed but `out` may still hold output. */
__attribute__((warn_unused_result)) int exec_engine_run(struct exec_engine *e,
                                                        struct sandbox_rec *rec,
                                                        const struct exec_params *p,
                                                        struct exec_outcome *out);

/* ---- batches (docs/API.md "Exec" exec-sync-batch) ---- */

struct batch_script {
    const char *id;     /* caller's id, echoed back */
    const char *script; /* bash source (no NUL bytes) */
    size_t script_len;
};

struct batch_result {
    struct capture output; /* this script's kept output (the batch's scripts share the
                            * request's allowance) */
    int exit_code;         /* -1 when it did not finish */
    int64_t duration_ms;
    const char *error; /* NULL, "timeout", "skipped" (stopOnError) or "aborted" */
    bool started;
};

struct batch_params {
    const struct batch_script *scripts;
    size_t n;                      /* 1..50 */
    int64_t timeout_ms;            /* total budget */
    int64_t per_script_timeout_ms; /* 0 = only the total budget */
    bool stop_on_error;            /* write mode: skip the rest after a non-zero exit */
    bool read_only;                /* parallel read-only jails, shared lock held */
    int cancel_fd;                 /* client socket, -1 = none */
    const char *journal_kind;      /* as exec_params.journal_kind ("batch"); NULL: no record */
    int (*keepalive)(void *arg);   /* as exec_params.keepalive: once the batch (read-only: each
                                    * script) has its slot, and before its commit */
    void *keepalive_arg;
    /* Out (each may be NULL): the batch's id (EXEC_ID_LEN + 1 bytes, "" when it got none) and
     * the version its commit made (0: none). */
    char *ret_exec_id;
    int64_t *ret_version;
};

/* Runs a batch. Write mode: one bash process runs the scripts in order under the exclusive lock
 * held by the caller, sharing shell state; one commit at the end (cwd stored). Read-only: the
 * scripts run in parallel jails (BATCH_WORKERS at once), one shared deadline; any change →
 * -ERR_READONLY_VIOLATION for the whole batch. results has n entries, filled in input order.
 * ret_rest non-NULL: on success of a write batch, what it leaves to do (as exec_outcome.rest)
 * is handed back there for exec_rest_finish once the reply is out; else it is done before
 * returning. */
__attribute__((warn_unused_result)) int
exec_engine_run_batch(struct exec_engine *e, struct sandbox_rec *rec, const struct batch_params *p,
                      struct batch_result *results, struct exec_session **ret_rest);
/* Releases the kept output of each result. */
void batch_results_release(struct batch_result *results, size_t n);

/* Shutdown: refuses new execs and kills every running jail (their writes commit like a
 * timeout's). */
void exec_engine_shutdown(struct exec_engine *e);

/* Signal name for exitSignal ("SIGKILL"), or NULL for 0. */
const char *exec_signal_name(int sig);

#endif
