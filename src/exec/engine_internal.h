/*
 * engine_internal — what the single exec (engine.c) and the batch runner (batch.c) share:
 * the engine struct and exec sessions (session.c). A session is everything one run holds from
 * admission to cleanup: an admission slot, the acquired checkout (lower layer), an upper
 * (workspace/upper.h) and the report pipe (fd 3 in the jail: the script's final cwd, batch
 * markers). Not for other modules.
 */
#ifndef SQLFS_EXEC_ENGINE_INTERNAL_H
#define SQLFS_EXEC_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <sys/stat.h>

#include "exec/admission.h"
#include "exec/engine.h"
#include "jail/jail.h"
#include "sandbox/sandbox.h"
#include "workspace/upper.h"

/* Whether execs work (health.c): the server's own set-up failures and the self-test. */
struct exec_health {
    pthread_mutex_t mu;
    int64_t faults;        /* exec set-up failures of the server's own since start */
    int64_t transient;     /* how many of them were a shortage (503, retryable) */
    bool failing;          /* the latest exec or self-test ended in such a failure */
    char reason[200];      /* why it failed: phase and error, no host path (shown in /readyz) */
    int64_t failed_ms;     /* wall clock of that failure */
    int64_t selftest_ns;   /* monotonic time the last self-test started, 0 = never */
    bool selftest_running; /* one self-test at a time */
    char selftest_id[UUID_STR_LEN]; /* the self-test's sandbox (exec_health_load_id) */
};

struct exec_engine {
    struct exec_config cfg;      /* as given to exec_engine_new (its pointers borrowed) */
    struct sandboxes *sandboxes; /* the commit path and the sandbox locks (not owned) */
    struct store *store;         /* where diffs store their contents (not owned) */
    bool observing;              /* registered with sandbox_observe */
    struct jail_runtime *jail;
    struct checkouts *checkouts; /* the lower layers (workspace/checkout.h) */
    struct uppers *uppers;       /* the upper layers, idle and prewarmed (workspace/upper.h) */
    struct netns_cache *netns;   /* each sandbox's network namespace, kept between its execs */
    struct zygote *zygote;       /* the warm Python behind py-exec (jail/zygote.h) */
    struct admission *admission; /* exec slots, shared fairly between owners */
    pthread_mutex_t mu;          /* guards live and stopping */
    struct jail_proc **live;     /* running jails (guarded by mu), killed at shutdown */
    size_t nlive, caplive;
    bool stopping;             /* shutdown: no new jail starts */
    struct exec_health health; /* faults and the self-test (health.c) */
};

struct exec_session {
    struct exec_engine *e;
    struct sandbox_rec *rec; /* borrowed; updated by the commit */
    struct upper u;
    char *lower; /* checkout tree */
    bool admitted, acquired;
    struct admission_owner *owner; /* the owner whose slot it holds, while admitted */
    int64_t admitted_ns;           /* time_mono_ns() when the exec got its slot */
    bool netns_taken; /* the jail runs in the sandbox's kept network namespace (netns_take) */
    int netns_own;    /* > 2: a namespace of the exec's own (netns_new), closed at its end */
    struct egress_session *egress; /* the exec's egress proxy session, or NULL */
    struct zygote_session *pyexec; /* the exec's link to the warm Python, or NULL */
    bool unchanged;       /* the exec left the tree as it was (set by exec_session_finish) */
    bool committed_files; /* it committed file changes (set by exec_session_finish) */
    int pristine;         /* upper_pristine() once the jail ended: -1 not yet known, 0, 1 */
    int report[2];        /* report pipe: [0] non-blocking read end, [1] goes to the jail */
    /* The committed change set, whose observers' call (the checkout apply) is owed until
     * exec_session_end: from version tell_from to rec->version. */
    struct changeset cs;
    bool tell_pending;
    int64_t tell_from;
};

/* What to run in a session's jail. */
struct exec_spawn {
    const char *script;
    size_t script_len;
    const char *cwd;
    bool cwd_is_stored; /* cwd came from the sandbox record: fall back to home if missing */
    json_t *env;        /* request env, may be NULL */
    bool debug;
    int stdin_fd; /* -1 = /dev/null */
};

__attribute__((warn_unused_result)) int
exec_session_begin(struct exec_engine *e, struct sandbox_rec *rec, struct exec_session *s);
__attribute__((warn_unused_result)) int
exec_session_spawn(struct exec_session *s, const struct exec_spawn *sp, struct jail_proc **ret);
void exec_session_close_report_writer(struct exec_session *s);
/* Frees a jail started by exec_session_spawn (and forgets it for shutdown). */
void exec_session_free_proc(struct exec_session *s, struct jail_proc *proc);
/* Read-only: fails with EREADONLY_VIOLATION if the upper holds a change. Write mode: diffs the
 * upper and commits it with new_cwd (may be NULL) and the commit-log info. */
__attribute__((warn_unused_result)) int exec_session_finish(struct exec_session *s, bool read_only,
                                                            const char *new_cwd,
                                                            const char *info_json,
                                                            int64_t *ret_changes);
/* The exec left its upper exactly as made: exec_session_end keeps it for the sandbox's next
 * exec instead of discarding it. */
bool exec_session_keeps_upper(const struct exec_session *s);
/* Frees the session's admission slot (exec_session_end does it too, if not done). */
void exec_session_leave(struct exec_session *s);
/* Everything else the session holds: the owed after-commit call (checkout apply), the
 * checkout, the upper (kept for reuse or removed in the background), and the preparation of
 * the next upper after a commit of files. */
void exec_session_end(struct exec_session *s);

/* ---- quota.c: the disk an exec may fill while it runs ---- */

/* Checked every QUOTA_WATCH_MS while a script runs. */
#define QUOTA_WATCH_MS 20

struct quota_watch {
    const char *upper; /* the session's upper (borrowed) */
    const char *lower; /* its checkout (borrowed) */
    int64_t limit;     /* bytes the upper may hold beyond what it replaces; -1: no quota */
    int64_t quota;     /* SANDBOX_QUOTA_BYTES, for the error's detail */
    int64_t used;      /* the upper's bytes (net of what it replaces) at the last walk */
    int64_t entries;   /* nodes the last walk saw */
    int64_t fs_used;   /* the data filesystem's bytes in use at the last walk */
    int64_t walked_ms; /* monotonic time of the last walk */
    bool exceeded;     /* the upper went past the limit: the exec is to be stopped */
};

/* The watch of the session's upper against its sandbox's quota (no quota: a watch that never
 * fires). Call once the session has its upper and checkout. */
void quota_watch_init(struct quota_watch *w, const struct exec_session *s);
/* A runner_opts.watch callback: true once the upper holds more than the limit; *next_ms gets
 * the delay until the next check. */
bool quota_watch_check(void *w, int64_t *next_ms);
/* Before a commit stores anything: -ERR_QUOTA (quota_error) when the upper is past the limit. */
__attribute__((warn_unused_result)) int quota_check_final(struct quota_watch *w);
/* Sets and returns the 413 EQUOTA error of an exec stopped by its watch. */
int quota_error(const struct quota_watch *w);

/* ---- health.c ---- */

void exec_health_init(struct exec_health *h);
/* Sets the self-test's sandbox id: this server's, kept in the data dir. -errno. */
__attribute__((warn_unused_result)) int exec_health_load_id(struct exec_health *h,
                                                            const char *data_dir);
void exec_health_release(struct exec_health *h);
/* Classifies the failure r of an exec's `phase` ("prepare", "spawn", "run", "commit"). Failures
 * the request or its sandbox caused, and answers that already say what happened (EBUSY,
 * EQUOTA, ENOSPC, a missing cwd, ...), are returned as they are. Anything else is the server's
 * own fault: logged once with its cause, counted, /readyz marked failing, and returned as
 * -ERR_EXEC_TRANSIENT (503, retryable, for a shortage of memory, processes or descriptors) or
 * -ERR_EXEC_FAILED (500), with a message that names no host path. */
__attribute__((warn_unused_result)) int exec_fault(struct exec_engine *e, const char *phase, int r);
/* An exec went through: /readyz is no longer failing. */
void exec_health_ok(struct exec_engine *e);
/* Adds {"faults": {"count", "transient", "failing"?, "since"?}} to a status object. */
void exec_health_json(struct exec_engine *e, json_t *o);
/* Copies the reason of the latest failure (phase: error) into why. */
void exec_health_reason(struct exec_engine *e, char *why, size_t n);

/* ---- health.c: start-up checks ---- */

/* The jail needs root with CAP_SYS_ADMIN: 0, or -ERR_JAIL_UNAVAILABLE saying so (recorded as
 * the reason there is no engine). */
__attribute__((warn_unused_result)) int exec_startup_check_root(void);
/* Runs the start-up checks over the runtime (NULL: it failed to start) and logs one line per
 * missing feature. True when execs can run. */
bool exec_startup_probe(const struct jail_runtime *rt);
/* Records r's message (this thread's, or strerror) as why the engine did not start. */
void exec_startup_error(int r);
/* exec_engine_new failed with r: records why, for /v1/status (the error) and /readyz and exec
 * routes (a reason that names no host path). */
void exec_startup_failed(int r, bool have_runtime, bool runtime_failed, bool probe_ok);
/* Adds the start-up checks ("checks", when they ran) and, with no_engine, why there is no
 * engine ("error") to a status object. */
void exec_startup_json(json_t *o, bool no_engine);
/* Why there is no engine, in words safe for anyone. */
const char *exec_startup_reason(void);

/* ---- journal.c: the exec journal ---- */

/* What an exec's journal record is made of, gathered while it runs. */
struct exec_journal {
    const char *kind;    /* "sync", "stream", "batch" */
    struct capture kept; /* the start of each stream (EXEC_JOURNAL_OUTPUT_BYTES each) */
    struct capture_allowance allowance; /* kept's cap */
    int64_t bytes[2];                   /* bytes each stream wrote (stdout, stderr) */
    exec_output_cb sink;                /* where the output goes on to */
    void *sink_ud;
    int64_t started_ms; /* epoch ms */
};

/* Starts gathering for an exec of `kind` whose output goes on to sink(sink_ud, ...). */
void exec_journal_init(struct exec_journal *j, const struct exec_engine *e, const char *kind,
                       exec_output_cb sink, void *sink_ud);
/* An exec_output_cb: counts and keeps the output (j is a struct exec_journal), then passes it
 * on. */
void exec_journal_output(void *j, int stream, const char *data, size_t len);
/* Appends the start of a script to b as a journal record keeps it: b stays at most
 * EXEC_JOURNAL_SCRIPT_BYTES, cut on a character, with invalid bytes as U+FFFD. first_line_only:
 * up to the script's first newline (a batch's record holds each script's first line, one per
 * line). 0 or -ENOMEM. */
#define EXEC_JOURNAL_SCRIPT_BYTES 1024
int exec_journal_script(struct buf *b, const char *script, size_t len, bool first_line_only);
/* Adds the record of an exec that ran to the journal of sandbox `sandbox_id`, under the
 * retention of history (HISTORY_MAX_COMMITS, HISTORY_MAX_AGE). A failure is logged, not
 * returned: the exec stands without its record. Releases j. */
void exec_journal_add(struct exec_engine *e, const char *sandbox_id, struct exec_journal *j,
                      const char *exec_id, const struct buf *script, int64_t duration_ms,
                      int exit_code, bool timed_out, int64_t version);
/* Frees what j holds (NULL-safe on an unused one). */
void exec_journal_release(struct exec_journal *j);

#endif
