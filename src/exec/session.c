/*
 * session — what one exec or one batch holds from admission to cleanup (engine_internal.h):
 * an admission slot, the sandbox's checkout as the lower layer, an upper (workspace/upper.h),
 * the report pipe, the sandbox's kept network namespace while its jail runs, and after a commit
 * the observers' call it owes (the checkout apply, made from the upper before it goes).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "egress/proxy.h"
#include "exec/engine_internal.h"
#include "jail/netns.h"
#include "jail/zygote.h"
#include "jail/zygote_proto.h"
#include "sandbox/sandbox.h"
#include "util/array.h"
#include "util/err.h"
#include "util/fd.h"
#include "util/home.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "workspace/checkout.h"
#include "workspace/diff.h"
#include "workspace/upper.h"

/* The exec left its upper exactly as made: exec_session_end keeps it for the sandbox's next
 * exec instead of discarding it. (unchanged is only ever set by exec_session_finish, which
 * found out pristine too; never for an upper that cannot be reused: version -1.) */
bool exec_session_keeps_upper(const struct exec_session *s)
{
    return s->unchanged && s->pristine > 0;
}

/* A kept network namespace could not be made or used: the exec runs in a new one of its own.
 * Said once, not for every exec. */
static void netns_warn_once(int r)
{
    static atomic_bool said;
    if (!atomic_exchange(&said, true))
        log_msg("warn",
                "exec: cannot keep sandboxes' network namespaces (%s); each exec makes "
                "its own",
                err_message() ? err_message() : strerror(-r));
    err_clear();
}

/* Mounts the session's overlay unless its upper came with one. */
static int upper_overlay(struct exec_session *s)
{
    if (s->u.ovl_fd >= 0)
        return 0;
    return upper_mount(s->e->uppers, &s->u, s->lower, s->rec->version);
}

/* What a jail with egress on is told of its proxy (before the sandbox's own env, which may
 * change it). */
static const char *const egress_env[] = {
    "HTTP_PROXY=" EGRESS_PROXY_URL, "HTTPS_PROXY=" EGRESS_PROXY_URL,
    "http_proxy=" EGRESS_PROXY_URL, "https_proxy=" EGRESS_PROXY_URL,
    "ALL_PROXY=" EGRESS_PROXY_URL,  "all_proxy=" EGRESS_PROXY_URL,
    "NO_PROXY=localhost,127.0.0.1", "no_proxy=localhost,127.0.0.1",
};
#define EGRESS_ENV_N (sizeof(egress_env) / sizeof(egress_env[0]))

/* Builds "K=V" entries: the proxy's when egress is on, sandbox env, then request env (later
 * wins in the jail). */
static char **build_env(bool egress, const char *sandbox_env_json, json_t *request_env)
{
    json_t *senv = sandbox_env_json ? json_loads(sandbox_env_json, 0, NULL) : NULL;
    size_t n = (egress ? EGRESS_ENV_N : 0) + (senv ? json_object_size(senv) : 0) +
               (request_env ? json_object_size(request_env) : 0);
    char **envp = calloc(n + 1, sizeof(char *));
    size_t i = 0;
    for (size_t k = 0; envp && egress && k < EGRESS_ENV_N; k++)
        if ((envp[i] = strdup(egress_env[k])))
            i++;
    json_t *sources[2] = {senv, request_env};
    for (int s = 0; envp && s < 2; s++) {
        const char *k;
        json_t *v;
        if (!sources[s] || !json_is_object(sources[s]))
            continue;
        json_object_foreach(sources[s], k, v)
        {
            if (!json_is_string(v))
                continue;
            if (asprintf(&envp[i], "%s=%s", k, json_string_value(v)) < 0) {
                envp[i] = NULL;
                continue;
            }
            i++;
        }
    }
    json_decref(senv);
    return envp;
}

static void free_env(char **envp)
{
    if (!envp)
        return;
    for (char **p = envp; *p; p++)
        free(*p);
    free(envp);
}

/* ---- the session ---- */

int exec_session_begin(struct exec_engine *e, struct sandbox_rec *rec, struct exec_session *s)
{
    memset(s, 0, sizeof(*s));
    s->e = e;
    s->rec = rec;
    s->pristine = -1;
    s->report[0] = s->report[1] = -1;
    s->u.ovl_fd = -1;
    int r = admission_enter(e->admission, rec->tenant, rec->sub, &s->owner);
    if (r < 0)
        return r;
    s->admitted = true;
    s->admitted_ns = time_mono_ns();
    r = checkout_acquire(e->checkouts, rec->id, rec->version, &s->lower);
    if (r == 0) {
        s->acquired = true;
        r = upper_get(e->uppers, rec->id, rec->version, s->lower, &s->u);
    }
    if (r == 0 && pipe2(s->report, O_CLOEXEC | O_NONBLOCK) < 0)
        r = -errno;
    return exec_fault(e, "prepare", r);
}

/* A namespace for the exec to run in when the sandbox's kept one is not free: *netfd becomes
 * one of the session's own (closed at its end). */
static int own_netns(struct exec_session *s, int *netfd)
{
    if (*netfd > 2)
        return 0;
    if (s->netns_own <= 2) {
        int fd = netns_new();
        if (fd < 0)
            return fd;
        s->netns_own = fd;
    }
    *netfd = s->netns_own;
    return 0;
}

/* py-exec's listener in the exec's namespace, made before the jail starts (zygote.h). A
 * failure is the warm start's only: py-exec then runs python3 cold and says so. */
static int pyexec_listener(struct exec_session *s, int *netfd)
{
    if (!s->rec->python || !s->e->zygote)
        return -1;
    int r = own_netns(s, netfd);
    int fd = r < 0 ? r : netns_listen_abstract(*netfd, PYX_SOCKET_NAME);
    if (fd < 0) {
        static atomic_bool said;
        if (!atomic_exchange(&said, true))
            log_msg("warn", "exec: no py-exec listener (%s); py-exec starts python3 cold",
                    err_message() ? err_message() : strerror(-fd));
        err_clear();
        return -1;
    }
    return fd;
}

/* For a sandbox whose network is on: the exec's policy, and a listener for its proxy inside
 * the namespace it runs in (*netfd: the kept one, else one of its own made now), made before
 * the jail starts so that the script never finds the port closed. */
static int egress_prepare(struct exec_session *s, int *netfd, int *ret_listen,
                          struct egress_policy *ret_policy)
{
    struct exec_engine *e = s->e;
    int r = egress_policy_for(e->cfg.egress, s->rec->network_policy, ret_policy);
    if (r < 0)
        return r;
    if ((r = own_netns(s, netfd)) < 0) {
        egress_policy_release(ret_policy);
        return r;
    }
    int l = netns_listen(*netfd, EGRESS_PROXY_PORT);
    if (l < 0) {
        egress_policy_release(ret_policy);
        return l;
    }
    *ret_listen = l;
    return 0;
}

int exec_session_spawn(struct exec_session *s, const struct exec_spawn *sp, struct jail_proc **ret)
{
    struct exec_engine *e = s->e;
    bool egress = s->rec->network && e->cfg.egress;
    char **envp = build_env(egress, s->rec->env_json, sp->env);
    if (!envp)
        return -ENOMEM;
    const struct exec_config *c = &e->cfg;
    struct jail_plan plan = {
        .exec_id = s->u.id,
        .lower = s->lower,
        .upper = s->u.upper,
        .work = s->u.work,
        .cwd = sp->cwd,
        .envp = envp,
        .script = sp->script,
        .script_len = sp->script_len,
        .debug = sp->debug,
        .stdin_fd = sp->stdin_fd,
        .report_fd = s->report[1],
        .overlay_fd = s->u.ovl_fd,
        .python = s->rec->python,
        .javascript = s->rec->javascript,
        .limits =
            {
                .memory_bytes = c->memory_bytes,
                .pids_max = c->pids_max,
                .cpu_percent = c->cpu_percent,
                .fsize_bytes = c->file_size_bytes,
            },
    };
    pthread_mutex_lock(&e->mu);
    bool stopping = e->stopping;
    pthread_mutex_unlock(&e->mu);
    if (stopping) {
        free_env(envp);
        return err_set(-ERR_SHUTTING_DOWN, "server is shutting down");
    }
    int netfd = netns_take(e->netns, s->rec->id);
    if (netfd < 0) { /* the exec still runs, in a new namespace of its own */
        netns_warn_once(netfd);
        netfd = -1;
    }
    int listen_fd = -1;
    struct egress_policy policy = {0};
    int r = egress ? egress_prepare(s, &netfd, &listen_fd, &policy) : 0;
    int py_fd = r == 0 ? pyexec_listener(s, &netfd) : -1;
    plan.netns_fd = netfd;
    if (r == 0)
        r = upper_overlay(s);
    plan.overlay_fd = s->u.ovl_fd;
    if (r == 0)
        r = jail_spawn(e->jail, &plan, ret);
    if (r == -ERR_CWD_MISSING && sp->cwd_is_stored) {
        /* the stored cwd was deleted by an earlier exec: start at home instead, on fresh
         * overlay dirs (the failed attempt may have used them) */
        err_clear();
        upper_release(e->uppers, &s->u);
        r = upper_make(e->uppers, &s->u);
        if (r == 0)
            r = upper_overlay(s);
        if (r == 0) {
            plan.exec_id = s->u.id;
            plan.upper = s->u.upper;
            plan.work = s->u.work;
            plan.overlay_fd = s->u.ovl_fd;
            plan.cwd = SANDBOX_HOME;
            r = jail_spawn(e->jail, &plan, ret);
        }
        if (r == -ERR_CWD_MISSING)
            r = err_set(r,
                        "the sandbox's working directory (%s) and " SANDBOX_HOME
                        " are both missing; create " SANDBOX_HOME " or pass cwd",
                        sp->cwd);
    }
    if (r == 0 && listen_fd >= 0) {
        r = egress_session_open(e->cfg.egress, listen_fd, &policy, s->rec->id, s->u.id, &s->egress);
        listen_fd = -1; /* taken, as the policy */
        if (r < 0) {
            jail_proc_free(*ret);
            *ret = NULL;
        }
    }
    if (r == 0 && py_fd >= 0) {
        int pr = zygote_session_open(e->zygote, py_fd, *ret, &s->pyexec);
        if (pr < 0)
            log_msg("warn", "exec: cannot serve py-exec (%s); it starts python3 cold",
                    strerror(-pr));
    } else if (py_fd >= 0) {
        close(py_fd);
    }
    if (listen_fd >= 0)
        close(listen_fd);
    egress_policy_release(&policy);
    if (netfd > 2 && netfd != s->netns_own) {
        close(netfd);
        if (r < 0)
            netns_give_back(e->netns, s->rec->id);
        else
            s->netns_taken = true;
    }
    if (r < 0 && s->netns_own > 2) {
        close(s->netns_own);
        s->netns_own = 0;
    }
    free_env(envp);
    if (r < 0)
        return exec_fault(e, "spawn", r);
    pthread_mutex_lock(&e->mu);
    /* without memory to track it, the jail runs untracked: shutdown does not kill it early */
    if (ARRAY_GROW(e->live, e->nlive + 1, e->caplive) == 0)
        e->live[e->nlive++] = *ret;
    if (e->stopping) /* shutdown began while this one was starting */
        jail_kill(*ret);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

/* The exec's processes are gone: its egress session ends (its connections with it), and the
 * sandbox's network namespace is free for its next exec. */
static void session_give_back_netns(struct exec_session *s)
{
    egress_session_close(s->egress);
    s->egress = NULL;
    zygote_session_close(s->pyexec);
    s->pyexec = NULL;
    if (s->netns_own > 2)
        close(s->netns_own);
    s->netns_own = 0;
    if (s->netns_taken)
        netns_give_back(s->e->netns, s->rec->id);
    s->netns_taken = false;
}

void exec_session_free_proc(struct exec_session *s, struct jail_proc *proc)
{
    struct exec_engine *e = s->e;
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < e->nlive; i++)
        if (e->live[i] == proc) {
            e->live[i] = e->live[--e->nlive];
            break;
        }
    pthread_mutex_unlock(&e->mu);
    jail_proc_free(proc);
    session_give_back_netns(s);
}

int exec_session_finish(struct exec_session *s, bool read_only, const char *new_cwd,
                        const char *info_json, int64_t *ret_changes)
{
    struct exec_engine *e = s->e;
    if (ret_changes)
        *ret_changes = 0;
    /* An upper exactly as it was mounted (every directory of it unchanged, nothing else in it)
     * holds no change: the diff's walk is skipped, and the answer serves exec_session_end. */
    if (s->pristine < 0)
        s->pristine = s->u.version >= 0 && s->u.upper && upper_pristine(&s->u);
    if (read_only) {
        int changed = s->pristine ? 0 : diff_upper_changed(s->u.upper, s->lower);
        if (changed < 0)
            return changed;
        if (changed > 0)
            return err_set(-ERR_READONLY_VIOLATION,
                           "read-only exec changed the filesystem; nothing was kept");
        s->unchanged = true;
        sandbox_touch(e->sandboxes, s->rec->id);
        return 0;
    }
    /* The upper's size against the quota before any of it is stored (the watch while the
     * script ran checks at intervals; this is exact). */
    if (!s->pristine) {
        struct quota_watch qw;
        quota_watch_init(&qw, s);
        int q = quota_check_final(&qw);
        if (q < 0)
            return q;
    }
    /* The change set outlives the commit: exec_session_end applies it to the checkout. */
    struct changeset *cs = &s->cs;
    changeset_release(cs);
    changeset_init(cs, "exec");
    struct diff_stats ds = {0};
    int r = s->pristine ? 0 : diff_upper(e->store, s->u.upper, s->lower, cs, &ds);
    if (r < 0)
        sandbox_discard(e->sandboxes, cs); /* what the diff stored before failing */
    if (r == 0 && new_cwd && (!s->rec->cwd || strcmp(new_cwd, s->rec->cwd) != 0)) {
        cs->new_cwd = strdup(new_cwd);
        if (!cs->new_cwd)
            r = -ENOMEM;
    }
    if (r == 0 && (cs->n > 0 || cs->new_cwd)) {
        if (info_json && changeset_set_info(cs, info_json) < 0)
            r = -ENOMEM;
        int64_t from = s->rec->version;
        if (r == 0)
            r = sandbox_commit_untold(e->sandboxes, s->rec, cs);
        if (r == 0) {
            s->tell_pending = true;
            s->tell_from = from;
        }
        if (r == 0 && ret_changes)
            *ret_changes = (int64_t)cs->n;
        s->committed_files = r == 0 && cs->n > 0;
    } else if (r == 0) {
        sandbox_touch(e->sandboxes, s->rec->id);
    }
    s->unchanged = r == 0 && cs->n == 0;
    if (!s->tell_pending)
        changeset_release(cs);
    return r;
}

void exec_session_leave(struct exec_session *s)
{
    if (s->admitted)
        admission_leave(s->e->admission, s->owner);
    s->admitted = false;
    s->owner = NULL;
}

void exec_session_end(struct exec_session *s)
{
    closep(&s->report[0]);
    closep(&s->report[1]);
    session_give_back_netns(s);
    /* before the upper goes: the checkout apply reads the changed files from it */
    if (s->tell_pending)
        sandbox_tell_commit(s->e->sandboxes, s->rec->id, s->tell_from, s->rec->version, &s->cs,
                            s->u.upper);
    changeset_release(&s->cs);
    if (s->acquired)
        checkout_release(s->e->checkouts, s->rec->id);
    /* the slot is free once the jail is gone: removing the upper need not hold it */
    exec_session_leave(s);
    /* A cwd-only commit moved the version on but left the tree and its checkout as they were. */
    if (exec_session_keeps_upper(s)) {
        s->u.version = s->rec->version;
        upper_keep(s->e->uppers, s->rec->id, &s->u);
    } else {
        upper_release(s->e->uppers, &s->u);
        if (s->committed_files && s->lower)
            uppers_prewarm(s->e->uppers, s->rec->id, s->lower, s->rec->cwd, s->rec->version);
    }
    free(s->lower);
    memset(s, 0, sizeof(*s));
}

/* Closes the parent's copy of the report pipe's write end once the jail holds its own. */
void exec_session_close_report_writer(struct exec_session *s)
{
    closep(&s->report[1]);
}
