/*
 * engine — checkout → jail → run → diff → commit. See engine.h for the contract.
 *
 * Here: the engine's lifecycle and status, its observer of the sandboxes (checkouts and idle
 * uppers follow every commit and deletion), the output an exec keeps for its reply, and one
 * exec (exec_engine_run). What an exec holds from admission to cleanup is a session
 * (session.c): the sandbox's checkout (workspace/checkout.h) as the lower layer and an upper
 * from the uppers (workspace/upper.h): a new one, or the one the sandbox's last unchanged exec
 * left idle, or one prewarmed after its last commit. The final cwd of the script travels on a
 * dedicated pipe (fd 3 in the jail) written by an EXIT trap, so it never mixes with the
 * script's output. Batches are batch.c; whether execs work at all, health.c.
 */
#include "exec/engine.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exec/engine_internal.h"
#include "exec/runner.h"
#include "jail/ids.h"
#include "jail/jail.h"
#include "jail/netns.h"
#include "jail/rootfs.h"
#include "jail/zygote.h"
#include "sandbox/sandbox.h"
#include "util/err.h"
#include "util/fd.h"
#include "util/jsontext.h"
#include "util/path.h"
#include "util/timeutil.h"
#include "workspace/checkout.h"
#include "workspace/upper.h"

/* Prepended to every script on its first line (so $LINENO stays right): reports $PWD on fd 3
 * when the shell exits, without tracing itself under `set -x`. */
static const char cwd_trap[] =
    "trap '{ set +x; } 2>/dev/null; builtin printf \"%s\" \"$PWD\" >&3 2>/dev/null' EXIT; ";
/* With debug, tracing starts after the trap so the trace shows only the user's script. */
static const char cwd_trap_debug[] =
    "trap '{ set +x; } 2>/dev/null; builtin printf \"%s\" \"$PWD\" >&3 2>/dev/null' EXIT; "
    "set -x; ";

void exec_rest_finish(struct exec_session *rest)
{
    if (!rest)
        return;
    /* The reply has just been handed to the socket, which woke the client (or the proxy) that
     * waits for it. After a commit, what is left (the checkout apply, the upper's removal, the
     * next upper's request) takes CPU time the client would otherwise wait behind on a busy
     * machine: let whatever the reply woke run first. Nothing is left to do after a read-only
     * or unchanged exec, which keeps its upper and does not yield. */
    if (rest->tell_pending || !exec_session_keeps_upper(rest))
        sched_yield();
    exec_session_end(rest);
    free(rest);
}

void exec_outcome_release(struct exec_outcome *o)
{
    exec_rest_finish(o->rest);
    o->rest = NULL;
    capture_release(&o->output);
}

const char *exec_signal_name(int sig)
{
    switch (sig) {
    case 0:
        return NULL;
    case SIGHUP:
        return "SIGHUP";
    case SIGINT:
        return "SIGINT";
    case SIGQUIT:
        return "SIGQUIT";
    case SIGILL:
        return "SIGILL";
    case SIGTRAP:
        return "SIGTRAP";
    case SIGABRT:
        return "SIGABRT";
    case SIGBUS:
        return "SIGBUS";
    case SIGFPE:
        return "SIGFPE";
    case SIGKILL:
        return "SIGKILL";
    case SIGUSR1:
        return "SIGUSR1";
    case SIGSEGV:
        return "SIGSEGV";
    case SIGUSR2:
        return "SIGUSR2";
    case SIGPIPE:
        return "SIGPIPE";
    case SIGALRM:
        return "SIGALRM";
    case SIGTERM:
        return "SIGTERM";
    case SIGXCPU:
        return "SIGXCPU";
    case SIGXFSZ:
        return "SIGXFSZ";
    case SIGSYS:
        return "SIGSYS";
    default:
        return "SIGUNKNOWN";
    }
}

/* ---- the engine as an observer of the sandboxes: checkouts follow every commit ---- */

/* sandbox_observer.committed (sandbox/sandbox.h: called with the sandbox's exclusive lock). */
static void on_committed(void *ud, const struct sandbox_commit_info *c)
{
    struct exec_engine *e = ud;
    uppers_drop(e->uppers, c->sandbox_id); /* made over the old version: never reusable now */
    if (c->old_version < 0) { /* created: a checkout under its id is a leftover, never its tree */
        checkout_invalidate(e->checkouts, c->sandbox_id);
        return;
    }
    int r = c->upper_dir ? checkout_apply_upper(e->checkouts, c->sandbox_id, c->old_version,
                                                c->new_version, c->upper_dir, c->cs)
                         : checkout_apply(e->checkouts, c->sandbox_id, c->old_version,
                                          c->new_version, c->cs);
    if (r < 0)
        err_clear(); /* the checkout invalidated itself: the next exec rebuilds it */
}

/* sandbox_observer.deleted */
static void on_deleted(void *ud, const char *sandbox_id)
{
    struct exec_engine *e = ud;
    uppers_drop(e->uppers, sandbox_id);
    netns_drop(e->netns, sandbox_id);
    if (checkout_remove(e->checkouts, sandbox_id) < 0)
        err_clear();
}

/* A checkout evicted to meet the disk budget: an idle overlay over it would keep the blocks of
 * every file an exec read from it allocated. Called under the checkouts' lock: uppers_drop
 * takes only the uppers' own lock (never held while calling into the checkouts) and discards
 * into their trash. */
static void on_checkout_evicted(void *ud, const char *sandbox_id)
{
    struct exec_engine *e = ud;
    uppers_drop(e->uppers, sandbox_id);
}

/* Sandboxes kept warm (EXEC_WARM_SANDBOXES), least recently used dropped first: each keeps its
 * network namespace (a little kernel memory) and one idle upper (a detached overlay mount and
 * three empty directories). */
static size_t warm_max(const struct exec_config *c)
{
    return (size_t)c->warm_sandboxes;
}

/* ---- lifecycle ---- */

/* uppers_config.overlay_open: the jail mounts the overlay (ud: the jail runtime). */
static int overlay_open(void *ud, const char *lower, const char *upper, const char *work)
{
    return jail_overlay_open(ud, lower, upper, work);
}

int exec_engine_new(const struct exec_config *cfg, struct sandboxes *sbx, struct store *st,
                    struct exec_engine **ret)
{
    *ret = NULL;
    int r = exec_startup_check_root();
    if (r < 0)
        return r;
    struct exec_engine *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->cfg = *cfg;
    e->sandboxes = sbx;
    e->store = st;
    exec_health_init(&e->health);
    pthread_mutex_init(&e->mu, NULL);
    struct admission_limits lim = {
        .concurrency = cfg->concurrency,
        .queue = cfg->queue,
        .owner_concurrency = cfg->owner_concurrency,
        .owner_queue = cfg->owner_queue,
    };
    r = admission_new(&lim, &e->admission);
    if (r == 0)
        r = exec_health_load_id(&e->health, cfg->data_dir);
    char *uppers_dir = NULL;
    if (r == 0)
        r = asprintf(&uppers_dir, "%s/uppers", cfg->data_dir) < 0 ? -ENOMEM : 0;
    if (r == 0)
        r = jail_runtime_init(cfg->data_dir, cfg->rootfs, &e->jail);
    bool runtime_failed = r < 0;
    if (r < 0)
        exec_startup_error(r);
    bool probe_ok = exec_startup_probe(e->jail);
    if (!probe_ok && r == 0)
        r = err_set(-ERR_JAIL_UNAVAILABLE, "the host lacks a feature the jail needs (see checks)");
    if (r == 0)
        r = checkouts_new(cfg->data_dir, st, cfg->checkout_budget_bytes, SANDBOX_HOST_UID,
                          SANDBOX_HOST_UID, &e->checkouts);
    if (r == 0) {
        struct uppers_config uc = {
            .dir = uppers_dir,
            .checkouts = e->checkouts,
            .warm_max = warm_max(cfg),
            .overlay_open = overlay_open,
            .overlay_ud = e->jail,
        };
        r = uppers_new(&uc, &e->uppers);
    }
    free(uppers_dir);
    if (r == 0)
        checkouts_on_evict(e->checkouts, on_checkout_evicted, e);
    if (r == 0)
        r = netns_cache_new(warm_max(cfg), &e->netns);
    if (r == 0) {
        struct zygote_config zc = {
            .enabled = cfg->py_exec_warm,
            .per_exec = cfg->py_exec_per_exec,
            .max = cfg->py_exec_max,
            .rate = cfg->py_exec_rate,
            .recycle = cfg->py_exec_recycle,
            .preload = cfg->py_exec_preload,
            .fsize_bytes = cfg->file_size_bytes,
        };
        r = zygote_new(e->jail, &zc, &e->zygote);
    }
    if (r == 0) {
        struct sandbox_observer obs = {.committed = on_committed, .deleted = on_deleted, .ud = e};
        r = sandbox_observe(sbx, &obs);
        e->observing = r == 0;
        if (r < 0)
            r = err_set(r, "cannot observe the sandboxes");
    }
    if (r < 0) {
        exec_startup_failed(r, e->jail != NULL, runtime_failed, probe_ok);
        exec_engine_free(e);
        return r;
    }
    *ret = e;
    return 0;
}

void exec_engine_free(struct exec_engine *e)
{
    if (!e)
        return;
    if (e->observing)
        sandbox_unobserve(e->sandboxes, e);
    uppers_free(e->uppers);
    checkouts_free(e->checkouts);
    netns_cache_free(e->netns);
    zygote_free(e->zygote);
    jail_runtime_free(e->jail);
    admission_free(e->admission);
    pthread_mutex_destroy(&e->mu);
    free(e->live);
    exec_health_release(&e->health);
    free(e);
}

void exec_engine_shutdown(struct exec_engine *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->mu);
    e->stopping = true;
    for (size_t i = 0; i < e->nlive; i++)
        jail_kill(e->live[i]);
    pthread_mutex_unlock(&e->mu);
    uppers_stop(e->uppers);
}

static const char *cgroup_mode_name(enum cgroup_mode m)
{
    return m == CGROUP_V2 ? "v2" : m == CGROUP_V1 ? "v1" : "none";
}

json_t *exec_engine_py_exec_json(struct exec_engine *e, bool detail)
{
    json_t *o = json_object();
    if (!e || !e->zygote) {
        json_object_set_new(o, "state", json_string("unavailable"));
        json_object_set_new(o, "message", json_string("execs are unavailable"));
        return o;
    }
    struct zygote_info zi;
    zygote_info(e->zygote, &zi);
    json_object_set_new(o, "state", json_string(zygote_state_name(zi.state)));
    if (zi.message[0])
        json_object_set_new(o, "message", jsontext(zi.message));
    if (!detail)
        return o;
    if (zi.pid)
        json_object_set_new(o, "pid", json_integer(zi.pid));
    json_object_set_new(o, "rssBytes", json_integer(zi.rss_bytes));
    json_t *pre = json_array();
    char list[sizeof(zi.preloaded)];
    snprintf(list, sizeof(list), "%s", zi.preloaded);
    for (char *save = NULL, *m = strtok_r(list, ",", &save); m; m = strtok_r(NULL, ",", &save))
        json_array_append_new(pre, jsontext(m));
    json_object_set_new(o, "preloaded", pre);
    json_object_set_new(o, "running", json_integer(zi.running));
    json_object_set_new(o, "spawned", json_integer((json_int_t)zi.spawned));
    json_object_set_new(o, "cold", json_integer((json_int_t)zi.refused));
    json_object_set_new(o, "restarts", json_integer((json_int_t)zi.restarts));
    json_object_set_new(o, "recycled", json_integer((json_int_t)zi.recycled));
    json_t *lim = json_object();
    json_object_set_new(lim, "perExec", json_integer(e->cfg.py_exec_per_exec));
    json_object_set_new(lim, "max", json_integer(e->cfg.py_exec_max));
    json_object_set_new(lim, "ratePerExec", json_integer(e->cfg.py_exec_rate));
    json_object_set_new(lim, "recycleCalls", json_integer(e->cfg.py_exec_recycle));
    json_object_set_new(o, "limits", lim);
    return o;
}

json_t *exec_engine_status_json(struct exec_engine *e)
{
    json_t *o = json_object();
    json_object_set_new(o, "ok", json_boolean(exec_engine_ready(e)));
    exec_startup_json(o, !e);
    if (!e)
        return o;
    struct jail_info info;
    jail_runtime_info(e->jail, &info);
    json_t *lim = json_object();
    json_object_set_new(lim, "memory", json_boolean(info.memory_limit));
    json_object_set_new(lim, "pids", json_boolean(info.pids_limit));
    json_object_set_new(lim, "cpu", json_boolean(info.cpu_limit));
    json_object_set_new(lim, "cgroup", json_string(cgroup_mode_name(info.cgroup_mode)));
    if (info.cgroup_message && *info.cgroup_message)
        json_object_set_new(lim, "note", jsontext(info.cgroup_message));
    json_object_set_new(o, "limits", lim);
    json_object_set_new(o, "shell", jsontext(jail_runtime_rootfs(e->jail)->shell));
    json_object_set_new(o, "networkNamespaces", json_integer((json_int_t)netns_count(e->netns)));
    json_object_set_new(o, "localeArchive",
                        json_boolean(jail_runtime_rootfs(e->jail)->locale != NULL));
    json_object_set_new(o, "pyExec", exec_engine_py_exec_json(e, true));
    struct admission_stats adm;
    admission_get_stats(e->admission, &adm);
    json_object_set_new(o, "running", json_integer(adm.running));
    json_object_set_new(o, "queued", json_integer(adm.waiting));
    json_object_set_new(o, "owners", json_integer(adm.owners));
    json_object_set_new(o, "idleUppers", json_integer((json_int_t)uppers_idle_count(e->uppers)));
    json_object_set_new(o, "warmSandboxes", json_integer(e->cfg.warm_sandboxes));
    json_t *mem = json_object();
    json_object_set_new(mem, "used", json_integer(budget_used(e->cfg.reply_memory)));
    json_object_set_new(mem, "limit", json_integer(e->cfg.reply_memory->limit));
    json_object_set_new(o, "replyMemoryBytes", mem);
    struct checkout_stats cst;
    checkouts_get_stats(e->checkouts, &cst);
    json_t *co = json_object();
    json_object_set_new(co, "entries", json_integer(cst.entries));
    json_object_set_new(co, "bytes", json_integer(cst.bytes));
    json_object_set_new(co, "builds", json_integer(cst.builds));
    json_object_set_new(co, "refreshes", json_integer(cst.refreshes));
    json_object_set_new(co, "evictions", json_integer(cst.evictions));
    json_object_set_new(co, "lastBuildMs", json_integer(cst.last_build_ms));
    json_object_set_new(o, "checkouts", co);
    exec_health_json(e, o);
    return o;
}

void exec_engine_load(struct exec_engine *e, int64_t *ret_running, int64_t *ret_queued)
{
    struct admission_stats adm = {0};
    if (e)
        admission_get_stats(e->admission, &adm);
    *ret_running = adm.running;
    *ret_queued = adm.waiting;
}

bool exec_engine_ready_why(struct exec_engine *e, char *why, size_t n)
{
    if (e && exec_engine_ready(e))
        return true;
    if (e) {
        exec_health_reason(e, why, n);
        return false;
    }
    snprintf(why, n, "%s", exec_startup_reason());
    return false;
}

/* ---- one exec ---- */

/* A memfd holding the stdin text (rewound), or -1 for none. */
static int make_stdin(const char *data, size_t len)
{
    if (!data)
        return -1;
    return memfd_from_bytes("sqlfs-stdin", data, len, 0);
}

/* Reads what the EXIT trap reported on the report pipe: a normalised absolute path, or NULL. */
static char *read_cwd(int fd)
{
    char raw[PATH_MAX_LEN + 1];
    size_t n = 0;
    for (;;) {
        ssize_t got = read(fd, raw + n, sizeof(raw) - 1 - n);
        if (got > 0) {
            n += (size_t)got;
            if (n >= sizeof(raw) - 1)
                return NULL; /* longer than any valid path */
            continue;
        }
        if (got < 0 && errno == EINTR)
            continue;
        break;
    }
    if (n == 0 || raw[0] != '/')
        return NULL;
    char *norm = NULL;
    if (path_normalize(raw, n, &norm) < 0)
        return NULL;
    return norm;
}

/* The commit-log record of an exec (store.h: commit_rec.info_json): its id, the first line of
 * its script (at most COMMIT_SUMMARY_MAX bytes, when it is UTF-8), its exit code, duration and
 * whether it timed out. malloc'd JSON text, NULL for want of memory. */
#define COMMIT_SUMMARY_MAX 200
static char *commit_info(const struct exec_session *s, const char *script, size_t script_len,
                         const struct exec_outcome *out)
{
    json_t *o = json_pack("{sssisIsb}", "execId", s->u.id, "exitCode", out->exit_code, "durationMs",
                          (json_int_t)out->duration_ms, "timedOut", out->timed_out);
    if (!o)
        return NULL;
    size_t skip = 0;
    while (skip < script_len && (script[skip] == '\n' || script[skip] == ' ' ||
                                 script[skip] == '\t' || script[skip] == '\r'))
        skip++;
    size_t n = 0;
    while (skip + n < script_len && n < COMMIT_SUMMARY_MAX && script[skip + n] != '\n')
        n++;
    json_t *line = json_stringn(script + skip, n); /* NULL when not UTF-8: no summary */
    if (line)
        json_object_set_new(o, "script", line);
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

int exec_engine_run(struct exec_engine *e, struct sandbox_rec *rec, const struct exec_params *p,
                    struct exec_outcome *out)
{
    memset(out, 0, sizeof(*out));
    struct capture_allowance own = CAPTURE_ALLOWANCE_INIT(e->cfg.max_output_bytes);
    capture_init(&out->output, p->allowance ? p->allowance : &own, e->cfg.reply_memory);
    struct exec_session *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    struct exec_timing *tm = &out->timing;
    int64_t t = time_mono_ns();
    int r = exec_session_begin(e, rec, s);
    if (s->admitted) {
        tm->queue_ns = s->admitted_ns - t;
        tm->prepare_ns = time_mono_ns() - s->admitted_ns;
    }
    if (r == 0)
        memcpy(out->exec_id, s->u.id, sizeof(out->exec_id));
    struct exec_journal journal;
    exec_output_cb sink = p->on_output ? p->on_output : capture_on_output;
    void *sink_ud = p->on_output ? p->userdata : (void *)&out->output;
    exec_journal_init(&journal, e, p->journal_kind, sink, sink_ud);
    bool ran = false;
    char *script = NULL, *new_cwd = NULL;
    int stdin_fd = -1;
    struct jail_proc *proc = NULL;
    const char *prefix = p->debug ? cwd_trap_debug : cwd_trap;
    size_t trap_len = strlen(prefix);
    if (r == 0) {
        script = malloc(trap_len + p->script_len + 1);
        if (!script)
            r = -ENOMEM;
        else {
            memcpy(script, prefix, trap_len);
            memcpy(script + trap_len, p->script, p->script_len);
            script[trap_len + p->script_len] = '\0';
        }
    }
    if (r == 0) {
        stdin_fd = make_stdin(p->stdin_data, p->stdin_len);
        if (stdin_fd < -1)
            r = stdin_fd;
    }
    r = exec_fault(e, "prepare", r);
    if (r == 0 && p->keepalive)
        r = p->keepalive(p->keepalive_arg);
    if (r == 0) {
        struct exec_spawn sp = {
            .script = script,
            .script_len = trap_len + p->script_len,
            .cwd = p->cwd ? p->cwd : rec->cwd,
            .cwd_is_stored = p->cwd == NULL,
            .env = p->env,
            .stdin_fd = stdin_fd,
        };
        t = time_mono_ns();
        r = exec_session_spawn(s, &sp, &proc);
        tm->spawn_ns = time_mono_ns() - t;
        if (r == -ERR_CWD_MISSING && p->cwd) /* the request named a missing start directory */
            r = err_set(r, "cwd does not exist in the sandbox: %s", p->cwd);
    }
    safe_close(stdin_fd);
    free(script);
    if (r == 0) {
        exec_session_close_report_writer(s);
        if (p->on_start)
            p->on_start(p->userdata);
        struct quota_watch qw;
        quota_watch_init(&qw, s);
        struct runner_opts ro = {
            .timeout_ms = p->timeout_ms,
            .cancel_fd = p->cancel_fd,
            .on_output = p->journal_kind ? exec_journal_output : sink,
            .ud = p->journal_kind ? (void *)&journal : sink_ud,
            .watch = qw.limit >= 0 ? quota_watch_check : NULL,
            .watch_ud = &qw,
            .watch_ms = QUOTA_WATCH_MS,
        };
        struct runner_result res;
        t = time_mono_ns();
        r = exec_fault(e, "run", runner_run(proc, &ro, &res));
        exec_session_free_proc(s, proc);
        if (r == 0 && res.stopped) /* past the quota: nothing of it is kept */
            r = quota_error(&qw);
        if (r == 0) {
            out->exit_code = res.exit_code;
            out->exit_signal = res.exit_signal;
            out->timed_out = res.timed_out;
            out->cancelled = res.cancelled;
            out->duration_ms = res.duration_ms;
            ran = true;
            new_cwd = read_cwd(s->report[0]);
        }
        tm->run_ns = time_mono_ns() - t;
    }
    int64_t from = rec->version;
    if (r == 0 && p->keepalive && !p->read_only)
        r = p->keepalive(p->keepalive_arg);
    if (r == 0) {
        char *info = commit_info(s, p->script, p->script_len, out);
        t = time_mono_ns();
        r = info ? exec_fault(
                       e, "commit",
                       exec_session_finish(s, p->read_only, new_cwd, info, &out->files_changed))
                 : -ENOMEM;
        tm->commit_ns = time_mono_ns() - t;
        free(info);
    }
    if (r == 0 && rec->version != from)
        out->version = rec->version;
    if (ran && p->journal_kind) {
        struct buf head = BUF_INIT(0);
        if (exec_journal_script(&head, p->script, p->script_len, false) == 0)
            exec_journal_add(e, rec->id, &journal, out->exec_id, &head, out->duration_ms,
                             out->exit_code, out->timed_out, out->version);
        buf_release(&head);
    }
    exec_journal_release(&journal);
    if (r == 0)
        exec_health_ok(e);
    free(new_cwd);
    exec_session_leave(s);
    if (r == 0 && p->rest_after_reply) {
        out->rest = s;
        return 0;
    }
    exec_session_end(s);
    free(s);
    return r;
}
