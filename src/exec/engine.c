/*
 * engine — checkout → jail → run → diff → commit. See engine.h for the contract.
 *
 * Per exec the engine makes <data>/uppers/<dir>/{upper,work} (same filesystem as the
 * checkouts, so the commit can move files into the checkout by rename) and discards it at the
 * end — unless the exec left it exactly as made, in which case it is kept with its overlay for
 * the sandbox's next exec ("idle uppers" below). The final cwd of the script travels on a dedicated pipe (fd 3 in the jail)
 * written by an EXIT trap, so it never mixes with the script's output.
 */
#include "exec/engine.h"
#include "jail/netns.h"
#include "jail/rootfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "exec/engine_internal.h"
#include "workspace/checkout.h"
#include "workspace/diff.h"
#include "jail/ids.h"
#include "jail/jail.h"
#include "exec/runner.h"
#include "jail/sysprobe.h"
#include "sandbox/sandbox.h"
#include "util/err.h"
#include "util/jsontext.h"
#include "util/log.h"
#include "util/path.h"
#include "util/rand.h"
#include "util/timeutil.h"

/* Prepended to every script on its first line (so $LINENO stays right): reports $PWD on fd 3
 * when the shell exits, without tracing itself under `set -x`. */
static const char cwd_trap[] =
    "trap '{ set +x; } 2>/dev/null; builtin printf \"%s\" \"$PWD\" >&3 2>/dev/null' EXIT; ";
/* With debug, tracing starts after the trap so the trace shows only the user's script. */
static const char cwd_trap_debug[] =
    "trap '{ set +x; } 2>/dev/null; builtin printf \"%s\" \"$PWD\" >&3 2>/dev/null' EXIT; "
    "set -x; ";

static char last_error[512] = "the exec engine has not started";
/* Why there is no engine, in words safe for any client (no host path, no counter): a fixed
 * text, or public_reason. Set by exec_engine_new before the server listens. */
static const char *unavailable_reason = "the exec engine has not started";
static char public_reason[600];
/* The start-up checks of the last exec_engine_new (read-only afterwards). */
static struct sysprobe probe;
static bool probed;

/* Each start-up check: its name in JSON and in /readyz, and the feature the log names. */
static const struct {
    const char *name;
    const char *feature;
    const struct sysprobe_check *c;
} probe_checks[] = {
    {"userns", "user namespaces", &probe.userns}, {"overlay", "overlayfs", &probe.overlay},
    {"seccomp", "seccomp", &probe.seccomp},       {"cgroup", "cgroup limits", &probe.cgroup},
    {"rootfs", "rootfs", &probe.rootfs},          {"exec", "jailed exec", &probe.exec},
};

#define NPROBE_CHECKS (sizeof(probe_checks) / sizeof(probe_checks[0]))

static json_t *probe_json(void)
{
    json_t *o = json_object();
    for (size_t i = 0; i < NPROBE_CHECKS; i++)
        json_object_set_new(o, probe_checks[i].name,
                            jsontext(probe_checks[i].c->ok ? "ok" : probe_checks[i].c->message));
    return o;
}

/* The start-up checks that failed, as " (name: what is missing; ...)" (messages name no host
 * path), appended to out[len..n). Limits not enforced (cgroup) do not stop execs: left out. */
static void probe_failures(char *out, size_t len, size_t n)
{
    const char *sep = " (";
    for (size_t i = 0; probed && i < NPROBE_CHECKS && len < n; i++) {
        if (probe_checks[i].c->ok || probe_checks[i].c == &probe.cgroup)
            continue;
        len += (size_t)snprintf(out + len, n - len, "%s%s: %s", sep, probe_checks[i].name,
                                probe_checks[i].c->message);
        sep = "; ";
    }
    if (*sep == ';' && len < n)
        snprintf(out + len, n - len, ")");
}

/* Runs the start-up checks and logs one line per missing feature. */
static bool run_probe(const struct jail_runtime *rt)
{
    sysprobe_run(rt, &probe);
    probed = true;
    for (size_t i = 0; i < NPROBE_CHECKS; i++) {
        const struct sysprobe_check *c = probe_checks[i].c;
        if (c->ok)
            continue;
        json_t *f = json_object();
        json_object_set_new(f, "feature", json_string(probe_checks[i].feature));
        json_object_set_new(f, "error", jsontext(c->message));
        log_json(c == &probe.cgroup ? "warn" : "error", "sandbox runtime check failed", f);
    }
    return sysprobe_ok(&probe);
}

/* The exec left its upper exactly as made: exec_session_end keeps it for the sandbox's next
 * exec instead of discarding it. (unchanged is only ever set by exec_session_finish, which
 * found out pristine too; never for an upper that cannot be reused: version -1.) */
static bool session_keeps_upper(const struct exec_session *s)
{
    return s->unchanged && s->pristine > 0;
}

void exec_rest_finish(struct exec_session *rest)
{
    if (!rest)
        return;
    /* The reply has just been handed to the socket, which woke the client (or the proxy) that
     * waits for it. After a commit, what is left (the checkout apply, the upper's removal, the
     * next upper's request) takes a few hundred microseconds of CPU: let whatever the reply
     * woke run first rather than after it. Measured on 2 CPUs, paced one-file writes: the
     * client saw the answer 0.35-0.42 ms later without this; nothing is left to do after a
     * read-only or unchanged exec, which keeps its upper and does not yield. */
    if (rest->tell_pending || !session_keeps_upper(rest))
        sched_yield();
    exec_session_end(rest);
    free(rest);
}

void exec_outcome_release(struct app *app, struct exec_outcome *o)
{
    exec_rest_finish(o->rest);
    o->rest = NULL;
    exec_output_release(app, &o->out);
    exec_output_release(app, &o->err);
}

void exec_allowance_init(struct exec_engine *e, struct exec_allowance *a)
{
    for (int i = 0; i < 2; i++)
        a->stream[i] = (struct budget)BUDGET_INIT(e->app->cfg->max_exec_output_bytes);
}

void exec_output_release(struct app *app, struct buf *b)
{
    budget_give(&app->reply_memory, b->len);
    buf_release(b);
}

void exec_output_keep(struct exec_engine *e, struct exec_allowance *a, int stream, struct buf *b,
                      bool *truncated, const char *data, size_t len)
{
    if (*truncated) /* a stream stays a prefix of what the script wrote */
        return;
    struct budget *mine = &a->stream[stream == 1 ? 0 : 1];
    size_t n = budget_take(mine, len);
    size_t kept = budget_take(&e->app->reply_memory, n);
    if (kept && buf_add(b, data, kept) < 0) {
        budget_give(&e->app->reply_memory, kept);
        kept = 0;
    }
    budget_give(mine, n - kept);
    if (kept < len)
        *truncated = true;
}

const char *exec_signal_name(int sig)
{
    switch (sig) {
    case 0: return NULL;
    case SIGHUP: return "SIGHUP";
    case SIGINT: return "SIGINT";
    case SIGQUIT: return "SIGQUIT";
    case SIGILL: return "SIGILL";
    case SIGTRAP: return "SIGTRAP";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGKILL: return "SIGKILL";
    case SIGUSR1: return "SIGUSR1";
    case SIGSEGV: return "SIGSEGV";
    case SIGUSR2: return "SIGUSR2";
    case SIGPIPE: return "SIGPIPE";
    case SIGALRM: return "SIGALRM";
    case SIGTERM: return "SIGTERM";
    case SIGXCPU: return "SIGXCPU";
    case SIGXFSZ: return "SIGXFSZ";
    case SIGSYS: return "SIGSYS";
    default: return "SIGUNKNOWN";
    }
}

/* ---- commit hooks: keep checkouts coherent with every commit ---- */

static void idle_drop(struct exec_engine *e, const char *sandbox_id);
static void *prewarm_main(void *arg);
static void prewarm_stop(struct exec_engine *e);
#define PREWARM_QUEUE 16 /* pending prewarm jobs; more are dropped */

static void after_commit(struct app *app, const char *sandbox_id, int64_t old_version,
                         int64_t new_version, const struct changeset *cs, const char *upper_dir)
{
    struct exec_engine *e = app->exec;
    if (!e)
        return;
    idle_drop(e, sandbox_id); /* made over the old version: never reusable now */
    int r = upper_dir ? checkout_apply_upper(e->checkouts, sandbox_id, old_version, new_version,
                                             upper_dir, cs)
                      : checkout_apply(e->checkouts, sandbox_id, old_version, new_version, cs);
    if (r < 0)
        err_clear(); /* the checkout invalidated itself: the next exec rebuilds it */
}

static void after_delete(struct app *app, const char *sandbox_id)
{
    if (!app->exec)
        return;
    idle_drop(app->exec, sandbox_id);
    netns_drop(app->exec->netns, sandbox_id);
    if (checkout_remove(app->exec->checkouts, sandbox_id) < 0)
        err_clear();
}

/* A checkout evicted to meet the disk budget: an idle overlay over it would keep the blocks of
 * every file an exec read from it allocated. Called under the checkouts' lock: idle_drop takes
 * only e->mu (never held while calling into the checkouts) and discards into their trash. */
static void on_checkout_evicted(void *ud, const char *sandbox_id)
{
    idle_drop(ud, sandbox_id);
}

/* Sandboxes kept warm (EXEC_WARM_SANDBOXES), least recently used dropped first: each keeps its
 * network namespace (about 200 KiB of kernel memory) and one idle upper (a detached overlay
 * mount and three empty directories). */
static size_t warm_max(const struct config *c)
{
    return (size_t)c->exec_warm_sandboxes;
}

/* ---- lifecycle ---- */

/* Each exec's upper is created and removed again: on ext4 without a journal, allocating an
 * inode skips (by reading each one) every inode of its block group freed in the last minute,
 * so the churn of uppers in one group makes each new file there cost more and more (0.1-0.5 ms:
 * the copy-up of an overwritten file, a new file, the upper's own directories). Marking the
 * uppers directory as the top of a hierarchy (FS_TOPDIR_FL) makes ext4 place each upper in a
 * block group of its own choosing, spreading that churn over the whole filesystem. Other
 * filesystems ignore or refuse the flag; either way nothing else depends on it. */
static void uppers_spread(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return;
    int flags = 0;
    if (ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 && !(flags & FS_TOPDIR_FL)) {
        flags |= FS_TOPDIR_FL;
        (void)ioctl(fd, FS_IOC_SETFLAGS, &flags);
    }
    close(fd);
}

/* A kept network namespace could not be made or used: the exec runs in a new one, as every
 * exec did before they were kept. Said once, not for every exec. */
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

/* The jail is made by the server itself: new user, mount, pid and network namespaces, an
 * overlayfs mount, uid/gid maps, cgroup files and pivot_root, all from the host's initial user
 * namespace. That needs root: uid 0 with CAP_SYS_ADMIN (the mounts), CAP_SETUID/CAP_SETGID (the
 * maps), CAP_SYS_CHROOT and write access to the cgroup hierarchy. Said once and clearly rather
 * than as the first of the failures it causes. */
static int check_root(void)
{
    bool sys_admin = jail_has_sys_admin();
    if (geteuid() == 0 && sys_admin)
        return 0;
    unavailable_reason = "this server runs without root, which the exec jail needs";
    return err_set(-ERR_JAIL_UNAVAILABLE,
                   "the exec jail needs root: uid 0 with CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID "
                   "and CAP_SYS_CHROOT, on a kernel with user, mount, pid and network "
                   "namespaces, overlayfs, seccomp and cgroups; this server runs as uid %ld%s, "
                   "so sandboxes cannot run commands (files, archives and tokens still work)",
                   (long)geteuid(), sys_admin ? "" : " without CAP_SYS_ADMIN");
}

int exec_engine_unavailable(void)
{
    return err_set(-ERR_JAIL_UNAVAILABLE, "exec is unavailable on this server: %s; see /readyz",
                   unavailable_reason);
}

int exec_engine_new(struct app *app, struct exec_engine **ret)
{
    *ret = NULL;
    int r = check_root();
    if (r < 0) {
        snprintf(last_error, sizeof(last_error), "%s", err_message());
        return r;
    }
    unavailable_reason = "the host lacks a feature the exec jail needs";
    struct exec_engine *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->app = app;
    exec_health_init(&e->health);
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->pw_mu, NULL);
    pthread_cond_init(&e->pw_cond, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->pw_done, &ca);
    pthread_condattr_destroy(&ca);
    struct admission_limits lim = {
        .concurrency = app->cfg->exec_concurrency,
        .queue = app->cfg->exec_queue,
        .owner_concurrency = app->cfg->exec_owner_concurrency,
        .owner_queue = app->cfg->exec_owner_queue,
    };
    r = admission_new(&lim, &e->admission);
    if (r == 0)
        r = asprintf(&e->uppers_dir, "%s/uppers", app->cfg->data_dir) < 0 ? -ENOMEM : 0;
    if (r == 0)
        r = jail_runtime_init(app->cfg->data_dir, app->cfg->rootfs, &e->jail);
    bool runtime_failed = r < 0;
    if (r < 0) {
        const char *m = err_message();
        snprintf(last_error, sizeof(last_error), "%s", m ? m : strerror(-r));
    }
    bool probe_ok = run_probe(e->jail);
    if (!probe_ok && r == 0)
        r = err_set(-ERR_JAIL_UNAVAILABLE, "the host lacks a feature the jail needs (see checks)");
    if (r == 0 && mkdir(e->uppers_dir, 0700) < 0 && errno != EEXIST)
        r = err_set(-errno, "cannot create the uppers directory");
    if (r == 0)
        uppers_spread(e->uppers_dir);
    if (r == 0)
        r = checkouts_new(app->cfg->data_dir, app->store, app->cfg->checkout_budget_bytes,
                          SANDBOX_HOST_UID, SANDBOX_HOST_UID, &e->checkouts);
    if (r == 0)
        checkouts_on_evict(e->checkouts, on_checkout_evicted, e);
    if (r == 0)
        r = netns_cache_new(warm_max(app->cfg), &e->netns);
    if (r < 0) {
        const char *m = err_message();
        if (e->jail || !last_error[0])
            snprintf(last_error, sizeof(last_error), "%s", m ? m : strerror(-r));
        /* error messages name no host path (the project's rule), so they can be shown */
        if (runtime_failed || probe_ok) {
            snprintf(public_reason, sizeof(public_reason),
                     "the sandbox runtime could not start: %s", last_error);
        } else {
            int len = snprintf(public_reason, sizeof(public_reason), "%s", unavailable_reason);
            probe_failures(public_reason, (size_t)len, sizeof(public_reason));
        }
        unavailable_reason = public_reason;
        exec_engine_free(e);
        return r;
    }
    e->pw_jobs = calloc(PREWARM_QUEUE, sizeof(*e->pw_jobs));
    /* without the thread (no memory, no thread) every exec makes its own upper, as before */
    e->prewarm_running =
        e->pw_jobs && pthread_create(&e->prewarm_thread, NULL, prewarm_main, e) == 0;
    e->pw_stop = !e->prewarm_running; /* no thread: queue nothing */
    app->after_commit = after_commit;
    app->after_delete = after_delete;
    *ret = e;
    return 0;
}

void exec_engine_free(struct exec_engine *e)
{
    if (!e)
        return;
    prewarm_stop(e);
    free(e->pw_jobs);
    if (e->checkouts)
        idle_drop(e, NULL);
    free(e->idle);
    checkouts_free(e->checkouts);
    netns_cache_free(e->netns);
    jail_runtime_free(e->jail);
    admission_free(e->admission);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->pw_cond);
    pthread_cond_destroy(&e->pw_done);
    pthread_mutex_destroy(&e->pw_mu);
    free(e->uppers_dir);
    free(e->live);
    exec_health_release(&e->health);
    free(e);
}

static const char *cgroup_mode_name(enum cgroup_mode m)
{
    return m == CGROUP_V2 ? "v2" : m == CGROUP_V1 ? "v1" : "none";
}

json_t *exec_engine_status_json(struct exec_engine *e)
{
    json_t *o = json_object();
    json_object_set_new(o, "ok", json_boolean(exec_engine_ready(e)));
    if (probed)
        json_object_set_new(o, "checks", probe_json());
    if (!e) {
        json_object_set_new(o, "error", jsontext(last_error));
        return o;
    }
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
    struct admission_stats adm;
    admission_get_stats(e->admission, &adm);
    json_object_set_new(o, "running", json_integer(adm.running));
    json_object_set_new(o, "queued", json_integer(adm.waiting));
    json_object_set_new(o, "owners", json_integer(adm.owners));
    pthread_mutex_lock(&e->mu);
    json_object_set_new(o, "idleUppers", json_integer((json_int_t)e->nidle));
    pthread_mutex_unlock(&e->mu);
    json_object_set_new(o, "warmSandboxes", json_integer(e->app->cfg->exec_warm_sandboxes));
    json_t *mem = json_object();
    json_object_set_new(mem, "used", json_integer(budget_used(&e->app->reply_memory)));
    json_object_set_new(mem, "limit", json_integer(e->app->reply_memory.limit));
    json_object_set_new(o, "replyMemoryBytes", mem);
    exec_health_json(e, o);
    return o;
}

bool exec_engine_ready_why(struct exec_engine *e, char *why, size_t n)
{
    if (e && exec_engine_ready(e))
        return true;
    if (e) {
        exec_health_reason(e, why, n);
        return false;
    }
    snprintf(why, n, "%s", unavailable_reason);
    return false;
}

/* ---- one exec ---- */

static void upper_release(struct exec_engine *e, struct upper *u)
{
    int ovl_fd = u->ovl_fd;
    u->ovl_fd = -1;
    if (u->base) {
        int dfd = open(e->uppers_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            /* removing takes one unlink per node (~0.1 ms each on ext4) and closing the overlay
             * unmounts it: move the dirs aside at once and let the checkouts' reaper do both
             * after the reply */
            if (checkout_discard(e->checkouts, dfd, u->dir, ovl_fd) < 0 &&
                checkout_rm_rf_at(dfd, u->dir, NULL) < 0)
                log_msg("warn", "could not remove exec upper %s", u->dir);
            ovl_fd = -1; /* consumed */
            close(dfd);
        }
    }
    if (ovl_fd >= 0)
        close(ovl_fd);
    free(u->skel);
    free(u->base);
    free(u->upper);
    free(u->work);
    memset(u, 0, sizeof(*u));
    u->ovl_fd = -1;
}

static int new_exec_id(struct upper *u)
{
    uint8_t rnd[16];
    int r = rand_bytes(rnd, sizeof(rnd));
    if (r == 0)
        hex_encode(rnd, sizeof(rnd), u->id);
    return r;
}

static int upper_make(struct exec_engine *e, struct upper *u)
{
    memset(u, 0, sizeof(*u));
    u->ovl_fd = -1;
    int r = new_exec_id(u);
    if (r < 0)
        return r;
    memcpy(u->dir, u->id, sizeof(u->dir));
    if (asprintf(&u->base, "%s/%s", e->uppers_dir, u->dir) < 0 ||
        asprintf(&u->upper, "%s/upper", u->base) < 0 ||
        asprintf(&u->work, "%s/work", u->base) < 0)
        return -ENOMEM;
    if (mkdir(u->base, 0700) < 0)
        return err_set(-errno, "cannot create an exec directory");
    if (mkdir(u->upper, 0755) < 0 || mkdir(u->work, 0700) < 0)
        return err_set(-errno, "cannot create an exec directory");
    /* The merged root takes the upper root's owner and mode: host root's (nobody in the jail),
     * 0755 whatever the umask, like the checkout root. The script cannot create, remove or
     * rename top-level entries; those the tree has stay its own to change. */
    if (chmod(u->upper, 0755) < 0)
        return err_set(-errno, "cannot prepare an exec directory");
    return 0;
}

/* ---- idle uppers: an unchanged upper and its overlay, kept for the sandbox's next exec ----
 *
 * Making an upper costs three mkdirs and mounting an overlay a new superblock whose mount-time
 * checks create and delete files in the work dir; on a busy ext4 each new inode is expensive.
 * After an exec that changed nothing (a read-only exec, a grep, `true`) the upper is still
 * empty and exactly as made, so it is kept (up to warm_max() of them, LRU) and the next exec of
 * the same sandbox at the same version over the same checkout directory mounts a clone of the
 * same overlay instead. Any difference — a commit, a rebuilt or evicted checkout, an upper that
 * is not pristine — and it is discarded instead. */

#define STATX_ID (STATX_INO | STATX_BTIME)

static bool same_time(struct statx_timestamp a, struct statx_timestamp b)
{
    return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

static int lower_identity(const char *lower, struct statx *ret)
{
    if (statx(AT_FDCWD, lower, AT_SYMLINK_NOFOLLOW, STATX_ID, ret) < 0)
        return -errno;
    /* without a birth time a recycled inode number could pass for the old directory */
    return (ret->stx_mask & STATX_ID) == STATX_ID ? 0 : -ENOTSUP;
}

static bool same_lower(const struct statx *a, const struct statx *b)
{
    return a->stx_dev_major == b->stx_dev_major && a->stx_dev_minor == b->stx_dev_minor &&
           a->stx_ino == b->stx_ino && same_time(a->stx_btime, b->stx_btime);
}

static bool same_node(const struct statx *now, const struct statx *then)
{
    return now->stx_ino == then->stx_ino && now->stx_mode == then->stx_mode &&
           now->stx_uid == then->stx_uid && now->stx_gid == then->stx_gid &&
           now->stx_nlink == then->stx_nlink && same_time(now->stx_mtime, then->stx_mtime) &&
           same_time(now->stx_ctime, then->stx_ctime);
}

/* True when directory `path` holds exactly the entry `only` (NULL: nothing). */
static bool dir_holds_only(const char *path, const char *only, size_t only_len)
{
    DIR *d = opendir(path);
    if (!d)
        return false;
    bool ok = true, seen = false;
    struct dirent *ent;
    while (ok && (ent = readdir(d))) {
        if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0)
            continue;
        ok = only && !seen && strlen(ent->d_name) == only_len &&
             memcmp(ent->d_name, only, only_len) == 0;
        seen = true;
    }
    closedir(d);
    return ok && seen == (only != NULL);
}

/* Segment i of the skeleton's path (not NUL-terminated: *len bytes); NULL past its end. */
static const char *skel_segment(const struct upper *u, int i, size_t *len)
{
    const char *seg = u->skel;
    for (int k = 0; seg && k < i; k++)
        seg = k + 1 < u->nskel ? strchr(seg, '/') + 1 : NULL;
    if (i >= u->nskel || !seg)
        return NULL;
    *len = strcspn(seg, "/");
    return seg;
}

/* The host path of the skeleton directory at `depth` (0: the upper root). */
static bool skel_path(const struct upper *u, int depth, char *buf, size_t cap)
{
    size_t len = 0, sl = 0;
    int n = snprintf(buf, cap, "%s", u->upper);
    for (int i = 0; n >= 0 && (size_t)n < cap - len && i < depth; i++) {
        len += (size_t)n;
        const char *seg = skel_segment(u, i, &sl);
        if (!seg)
            return false;
        n = snprintf(buf + len, cap - len, "/%.*s", (int)sl, seg);
    }
    return n >= 0 && (size_t)n < cap - len;
}

/* The upper as the overlay left it at mount time: same metadata, no entry but the skeleton
 * (upper_skeleton), each of its directories as it was. */
static bool upper_pristine(const struct upper *u)
{
    char path[PATH_MAX];
    for (int depth = 0; depth <= u->nskel; depth++) {
        struct statx now;
        size_t next_len = 0;
        const char *next = skel_segment(u, depth, &next_len);
        if (!skel_path(u, depth, path, sizeof(path)) ||
            statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &now) < 0 ||
            !same_node(&now, depth ? &u->skel_st[depth - 1] : &u->root0) ||
            !dir_holds_only(path, next, next_len))
            return false;
    }
    return true;
}

/* Copies the directories of the sandbox path `cwd` that are real directories in `lower` into
 * the (not yet mounted) upper, with the lower's mode, owner and times. The overlay then merges
 * them like directories it copied up itself, so a write in the cwd — the usual case — skips
 * the copy-up of each of its directories in the jail (~0.2 ms each here), and the diff skips
 * them while their mode and mtime still equal the lower's. Best effort: on any failure the
 * upper is left empty, as without it. */
static void upper_skeleton(struct upper *u, const char *lower, const char *cwd)
{
    if (!cwd || cwd[0] != '/')
        return;
    /* fd[i] / name[i]: the parent and name of level i; fd[0] is the root of each layer */
    int lfd[UPPER_SKEL_MAX + 1], ufd[UPPER_SKEL_MAX + 1];
    char name[UPPER_SKEL_MAX][NAME_MAX + 1];
    struct stat st[UPPER_SKEL_MAX];
    int n = 0;
    lfd[0] = open(lower, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    ufd[0] = open(u->upper, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    bool ok = lfd[0] >= 0 && ufd[0] >= 0;
    for (const char *p = cwd; ok && n < UPPER_SKEL_MAX;) {
        while (*p == '/')
            p++;
        size_t len = strcspn(p, "/");
        if (len == 0 || len > NAME_MAX || (p[0] == '.' && (len == 1 || (len == 2 && p[1] == '.'))))
            break; /* the end; "." and ".." never occur in a stored (normalised) cwd */
        memcpy(name[n], p, len);
        name[n][len] = '\0';
        p += len;
        if (fstatat(lfd[n], name[n], &st[n], AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st[n].st_mode))
            break; /* not (or not yet) a directory of the tree: the skeleton ends above it */
        if (mkdirat(ufd[n], name[n], 0700) < 0) {
            ok = false;
            break;
        }
        lfd[n + 1] = openat(lfd[n], name[n], O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        ufd[n + 1] = openat(ufd[n], name[n], O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        n++;
        ok = lfd[n] >= 0 && ufd[n] >= 0;
    }
    /* Deepest first: making a child changed its parent's mtime. The owner before the mode
     * (chown clears set-id bits). */
    for (int i = n; ok && i-- > 0;) {
        struct timespec times[2] = {st[i].st_atim, st[i].st_mtim};
        ok = fchownat(ufd[i], name[i], st[i].st_uid, st[i].st_gid, AT_SYMLINK_NOFOLLOW) == 0 &&
             fchmodat(ufd[i], name[i], st[i].st_mode & 07777, 0) == 0 &&
             utimensat(ufd[i], name[i], times, AT_SYMLINK_NOFOLLOW) == 0;
    }
    size_t rlen = 0;
    char rel[PATH_MAX];
    for (int i = 0; ok && i < n; i++)
        rlen += (size_t)snprintf(rel + rlen, sizeof(rel) - rlen, "%s%s", i ? "/" : "", name[i]);
    if (ok && n > 0 && !(u->skel = strdup(rel)))
        ok = false;
    if (ok)
        u->nskel = n;
    for (int i = n; !ok && i-- > 0;) /* a skeleton unlike the lower would be persisted */
        (void)unlinkat(ufd[i], name[i], AT_REMOVEDIR);
    for (int i = 0; i <= n; i++) {
        if (lfd[i] >= 0)
            close(lfd[i]);
        if (ufd[i] >= 0)
            close(ufd[i]);
    }
}

/* Under e->mu: takes entry i out, keeping the oldest-first order idle_put evicts by. */
static struct idle_upper *idle_remove_locked(struct exec_engine *e, size_t i)
{
    struct idle_upper *it = e->idle[i];
    memmove(&e->idle[i], &e->idle[i + 1], (e->nidle - i - 1) * sizeof(e->idle[0]));
    e->nidle--;
    return it;
}

/* Under e->mu: the index of the sandbox's idle upper, or -1. */
static ssize_t idle_find_locked(const struct exec_engine *e, const char *sandbox_id)
{
    for (size_t i = 0; i < e->nidle; i++)
        if (strcmp(e->idle[i]->sandbox_id, sandbox_id) == 0)
            return (ssize_t)i;
    return -1;
}

static void idle_upper_free(struct exec_engine *e, struct idle_upper *it)
{
    if (!it)
        return;
    upper_release(e, &it->u);
    free(it->sandbox_id);
    free(it);
}

/* Takes the sandbox's idle upper if it still fits `lower` at `version`. */
static bool idle_take(struct exec_engine *e, const struct sandbox_rec *rec, const char *lower,
                      struct upper *ret)
{
    pthread_mutex_lock(&e->mu);
    ssize_t i = idle_find_locked(e, rec->id);
    struct idle_upper *it = i >= 0 ? idle_remove_locked(e, (size_t)i) : NULL;
    pthread_mutex_unlock(&e->mu);
    if (!it)
        return false;
    *ret = it->u;
    free(it->sandbox_id);
    free(it);
    struct statx id;
    if (ret->version != rec->version || lower_identity(lower, &id) < 0 ||
        !same_lower(&id, &ret->lower_id) || new_exec_id(ret) < 0) {
        upper_release(e, ret);
        return false;
    }
    return true;
}

/* Keeps u (taken over) as the sandbox's idle upper; the oldest goes when there are warm_max().
 * A sandbox keeps one: when parallel read-only execs of it end, the first one's stays. A
 * prewarmed upper passes the idle_drops count of when it was asked for: if a sandbox was
 * committed to or deleted since, it may be over a tree that no longer exists, and is not kept. */
static void idle_put(struct exec_engine *e, const char *sandbox_id, struct upper *u,
                     const uint64_t *drops_then)
{
    struct idle_upper *it = calloc(1, sizeof(*it));
    struct idle_upper *drop = NULL;
    if (it && !(it->sandbox_id = strdup(sandbox_id))) {
        free(it);
        it = NULL;
    }
    bool taken = it != NULL;
    if (taken) {
        it->u = *u;
        memset(u, 0, sizeof(*u));
        u->ovl_fd = -1;
    }
    size_t max = warm_max(e->app->cfg);
    pthread_mutex_lock(&e->mu);
    bool keep = it && !e->stopping && (!drops_then || *drops_then == e->idle_drops) &&
                idle_find_locked(e, sandbox_id) < 0;
    if (keep && e->nidle == e->capidle && e->capidle < max) {
        size_t cap = e->capidle ? e->capidle * 2 : 8;
        if (cap > max)
            cap = max;
        struct idle_upper **v = realloc(e->idle, cap * sizeof(*v));
        if (v) {
            e->idle = v;
            e->capidle = cap;
        }
    }
    if (keep && e->nidle >= max && e->nidle > 0)
        drop = idle_remove_locked(e, 0);
    if (keep && e->nidle < e->capidle) {
        e->idle[e->nidle++] = it;
        it = NULL;
    }
    pthread_mutex_unlock(&e->mu);
    if (!taken) /* no memory for the entry */
        upper_release(e, u);
    idle_upper_free(e, it); /* taken over but not kept */
    idle_upper_free(e, drop);
}

/* Drops the idle uppers of one sandbox (NULL: all of them). */
static void idle_drop(struct exec_engine *e, const char *sandbox_id)
{
    for (;;) {
        struct idle_upper *it = NULL;
        pthread_mutex_lock(&e->mu);
        e->idle_drops++;
        ssize_t i = sandbox_id ? idle_find_locked(e, sandbox_id) : e->nidle > 0 ? 0 : -1;
        if (i >= 0)
            it = idle_remove_locked(e, (size_t)i);
        pthread_mutex_unlock(&e->mu);
        if (!it)
            return;
        idle_upper_free(e, it);
    }
}

/* Mounts u's overlay over `lower` and records what it was made over. The identity is taken
 * before the mount: a checkout replaced in between then never matches (safe either way). */
static int upper_mount(struct exec_engine *e, struct upper *u, const char *lower,
                       int64_t version)
{
    /* no identity (e.g. no birth time on this file system): never reused, works as before */
    bool known = lower_identity(lower, &u->lower_id) == 0;
    int fd = jail_overlay_open(e->jail, lower, u->upper, u->work);
    if (fd < 0)
        return err_set(fd, "cannot mount the sandbox overlay");
    u->ovl_fd = fd;
    u->version = version;
    if (u->nskel > 0) {
        /* The overlay records the origin of a merged directory that lacks it (an xattr, a new
         * ctime) at its first lookup: walk the skeleton once now, not in the exec, so that it
         * looks afterwards as it will after any exec that only reads. */
        int sfd = openat(fd, u->skel, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sfd < 0)
            u->version = -1;
        else
            close(sfd);
    }
    if (!known || statx(AT_FDCWD, u->upper, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &u->root0) < 0)
        u->version = -1;
    /* how the skeleton looks now, for upper_pristine */
    char path[PATH_MAX];
    for (int i = 0; i < u->nskel && u->version >= 0; i++)
        if (!skel_path(u, i + 1, path, sizeof(path)) ||
            statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &u->skel_st[i]) < 0)
            u->version = -1;
    return 0;
}

/* Mounts the session's overlay unless its upper came with one. */
static int upper_overlay(struct exec_session *s)
{
    if (s->u.ovl_fd >= 0)
        return 0;
    return upper_mount(s->e, &s->u, s->lower, s->rec->version);
}

/* ---- prewarming: the next exec after a commit finds its upper and overlay ready ----
 *
 * An exec that wrote files leaves an upper that cannot be reused (its overlay saw the old
 * tree), so the sandbox's next exec would pay for a new one: three mkdirs and an overlay mount,
 * about 1.3 ms here. The request thread only queues a job (bounded: when the queue is full the
 * job is dropped and the next exec makes its own); this thread makes the upper over the new
 * version and leaves it idle. Everything idle_take checks still applies when it is used. */


static void prewarm_job_free(struct prewarm_job *j)
{
    free(j->sandbox_id);
    free(j->lower);
    free(j->cwd);
}

static void *prewarm_main(void *arg)
{
    struct exec_engine *e = arg;
    pthread_mutex_lock(&e->pw_mu);
    for (;;) {
        while (!e->pw_stop && e->pw_n == 0)
            pthread_cond_wait(&e->pw_cond, &e->pw_mu);
        if (e->pw_stop)
            break;
        struct prewarm_job job = e->pw_jobs[0];
        memmove(&e->pw_jobs[0], &e->pw_jobs[1], (e->pw_n - 1) * sizeof(job));
        e->pw_n--;
        e->pw_busy = &job;
        pthread_mutex_unlock(&e->pw_mu);
        struct upper u;
        int r = upper_make(e, &u);
        if (r == 0) {
            upper_skeleton(&u, job.lower, job.cwd);
            r = upper_mount(e, &u, job.lower, job.version);
        }
        if (r == 0 && u.version >= 0)
            idle_put(e, job.sandbox_id, &u, &job.drops);
        else
            upper_release(e, &u);
        err_clear();
        pthread_mutex_lock(&e->pw_mu);
        e->pw_busy = NULL;
        pthread_cond_broadcast(&e->pw_done);
        pthread_mutex_unlock(&e->pw_mu);
        prewarm_job_free(&job);
        pthread_mutex_lock(&e->pw_mu);
    }
    pthread_mutex_unlock(&e->pw_mu);
    return NULL;
}

static void prewarm_request(struct exec_engine *e, const char *sandbox_id, const char *lower,
                            const char *cwd, int64_t version)
{
    struct prewarm_job job = {strdup(sandbox_id), strdup(lower), cwd ? strdup(cwd) : NULL,
                              version, 0};
    pthread_mutex_lock(&e->mu);
    job.drops = e->idle_drops;
    pthread_mutex_unlock(&e->mu);
    pthread_mutex_lock(&e->pw_mu);
    /* pw_stop is set (under pw_mu) before the thread is joined: checked here, not the flag the
     * joiner clears afterwards */
    bool queued = job.sandbox_id && job.lower && (!cwd || job.cwd) && e->pw_jobs && !e->pw_stop &&
                  e->pw_n < PREWARM_QUEUE;
    if (queued) {
        e->pw_jobs[e->pw_n++] = job;
        pthread_cond_signal(&e->pw_cond);
    }
    pthread_mutex_unlock(&e->pw_mu);
    if (!queued)
        prewarm_job_free(&job);
}

static bool prewarm_job_is(const struct prewarm_job *j, const char *sandbox_id, int64_t version)
{
    return j->version == version && strcmp(j->sandbox_id, sandbox_id) == 0;
}

/* Waits (at most PREWARM_WAIT_MS) while the sandbox's next upper for `version` is queued or in
 * the making. Back to back — the next command sent as soon as the last answered — an exec that
 * made an upper of its own would repeat that work while the background one competes with it for
 * the CPU. True when such a job ended meanwhile (its upper is then idle, unless dropped). */
#define PREWARM_WAIT_MS 20
static bool prewarm_wait(struct exec_engine *e, const char *sandbox_id, int64_t version)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_nsec += (long)PREWARM_WAIT_MS * 1000000L;
    deadline.tv_sec += deadline.tv_nsec / 1000000000L;
    deadline.tv_nsec %= 1000000000L;
    bool waited = false;
    pthread_mutex_lock(&e->pw_mu);
    for (;;) {
        bool pending = e->pw_busy && prewarm_job_is(e->pw_busy, sandbox_id, version);
        for (size_t i = 0; !pending && i < e->pw_n; i++)
            pending = prewarm_job_is(&e->pw_jobs[i], sandbox_id, version);
        if (!pending || e->pw_stop)
            break;
        waited = true;
        if (pthread_cond_timedwait(&e->pw_done, &e->pw_mu, &deadline) == ETIMEDOUT) {
            waited = false;
            break;
        }
    }
    pthread_mutex_unlock(&e->pw_mu);
    return waited;
}

static void prewarm_stop(struct exec_engine *e)
{
    if (!e->prewarm_running)
        return;
    pthread_mutex_lock(&e->pw_mu);
    e->pw_stop = true;
    pthread_cond_signal(&e->pw_cond);
    pthread_cond_broadcast(&e->pw_done);
    pthread_mutex_unlock(&e->pw_mu);
    pthread_join(e->prewarm_thread, NULL);
    e->prewarm_running = false;
    for (size_t i = 0; i < e->pw_n; i++)
        prewarm_job_free(&e->pw_jobs[i]);
    e->pw_n = 0;
}

/* Builds "K=V" entries: sandbox env, then request env (later wins in the jail). */
static char **build_env(const char *sandbox_env_json, json_t *request_env)
{
    json_t *senv = sandbox_env_json ? json_loads(sandbox_env_json, 0, NULL) : NULL;
    size_t n = (senv ? json_object_size(senv) : 0) +
               (request_env ? json_object_size(request_env) : 0);
    char **envp = calloc(n + 1, sizeof(char *));
    size_t i = 0;
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

/* A memfd holding the stdin text (rewound), or -1 for none. */
static int make_stdin(const char *data, size_t len)
{
    if (!data)
        return -1;
    int fd = memfd_create("sqlfs-stdin", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int r = -errno;
            close(fd);
            return r;
        }
        off += (size_t)w;
    }
    if (lseek(fd, 0, SEEK_SET) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    return fd;
}

/* Forwards output to the caller, or buffers it in the outcome within its allowance. */
struct collect {
    struct exec_engine *e;
    const struct exec_params *p;
    struct exec_outcome *out;
    struct exec_allowance *allowance;
};

static void on_output(void *userdata, int stream, const char *data, size_t len)
{
    struct collect *c = userdata;
    if (c->p->on_output) {
        c->p->on_output(c->p->userdata, stream, data, len);
        return;
    }
    if (stream == 1)
        exec_output_keep(c->e, c->allowance, 1, &c->out->out, &c->out->out_truncated, data, len);
    else
        exec_output_keep(c->e, c->allowance, 2, &c->out->err, &c->out->err_truncated, data, len);
}

/* ---- sessions: what one exec or one batch holds from admission to cleanup ---- */

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
        if (!idle_take(e, rec, s->lower, &s->u) &&
            !(prewarm_wait(e, rec->id, rec->version) && idle_take(e, rec, s->lower, &s->u)))
            r = upper_make(e, &s->u);
    }
    if (r == 0 && pipe2(s->report, O_CLOEXEC | O_NONBLOCK) < 0)
        r = -errno;
    return exec_fault(e, "prepare", r);
}

int exec_session_spawn(struct exec_session *s, const struct exec_spawn *sp,
                       struct jail_proc **ret)
{
    struct exec_engine *e = s->e;
    char **envp = build_env(s->rec->env_json, sp->env);
    if (!envp)
        return -ENOMEM;
    const struct config *c = e->app->cfg;
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
                .memory_bytes = c->exec_memory_bytes,
                .pids_max = c->exec_pids_max,
                .cpu_percent = c->exec_cpu_percent,
                .fsize_bytes = c->exec_file_size_bytes,
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
    plan.netns_fd = netfd;
    int r = upper_overlay(s);
    plan.overlay_fd = s->u.ovl_fd;
    if (r == 0)
        r = jail_spawn(e->jail, &plan, ret);
    if (r == -ERR_CWD_MISSING && sp->cwd_is_stored) {
        /* the stored cwd was deleted by an earlier exec: start at home instead, on fresh
         * overlay dirs (the failed attempt may have used them) */
        err_clear();
        upper_release(e, &s->u);
        r = upper_make(e, &s->u);
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
            r = err_set(r, "the sandbox's working directory (%s) and " SANDBOX_HOME
                           " are both missing; create " SANDBOX_HOME " or pass cwd",
                        sp->cwd);
    }
    if (netfd > 2) {
        close(netfd);
        if (r < 0)
            netns_give_back(e->netns, s->rec->id);
        else
            s->netns_taken = true;
    }
    free_env(envp);
    if (r < 0)
        return exec_fault(e, "spawn", r);
    pthread_mutex_lock(&e->mu);
    if (e->nlive == e->caplive) {
        size_t cap = e->caplive ? e->caplive * 2 : 16;
        struct jail_proc **v = realloc(e->live, cap * sizeof(*v));
        if (v) {
            e->live = v;
            e->caplive = cap;
        }
    }
    if (e->nlive < e->caplive)
        e->live[e->nlive++] = *ret;
    if (e->stopping) /* shutdown began while this one was starting */
        jail_kill(*ret);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

/* The exec's processes are gone: the sandbox's network namespace is free for its next exec. */
static void session_give_back_netns(struct exec_session *s)
{
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

void exec_engine_shutdown(struct exec_engine *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->mu);
    e->stopping = true;
    for (size_t i = 0; i < e->nlive; i++)
        jail_kill(e->live[i]);
    pthread_mutex_unlock(&e->mu);
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
        sandbox_touch(e->app, s->rec->id);
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
    int r = s->pristine ? 0 : diff_upper(e->app->store, s->u.upper, s->lower, cs, &ds);
    if (r < 0)
        sandbox_discard(e->app, cs); /* what the diff stored before failing */
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
            r = sandbox_commit_untold(e->app, s->rec, cs);
        if (r == 0) {
            s->tell_pending = true;
            s->tell_from = from;
        }
        if (r == 0 && ret_changes)
            *ret_changes = (int64_t)cs->n;
        s->committed_files = r == 0 && cs->n > 0;
    } else if (r == 0) {
        sandbox_touch(e->app, s->rec->id);
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
    if (s->report[0] >= 0)
        close(s->report[0]);
    if (s->report[1] >= 0)
        close(s->report[1]);
    session_give_back_netns(s);
    /* before the upper goes: the checkout apply reads the changed files from it */
    if (s->tell_pending)
        sandbox_tell_commit(s->e->app, s->rec->id, s->tell_from, s->rec->version, &s->cs,
                            s->u.upper);
    changeset_release(&s->cs);
    if (s->acquired)
        checkout_release(s->e->checkouts, s->rec->id);
    /* the slot is free once the jail is gone: removing the upper need not hold it */
    exec_session_leave(s);
    /* A cwd-only commit moved the version on but left the tree and its checkout as they were. */
    if (session_keeps_upper(s)) {
        s->u.version = s->rec->version;
        idle_put(s->e, s->rec->id, &s->u, NULL);
    } else {
        upper_release(s->e, &s->u);
        if (s->committed_files && s->lower)
            prewarm_request(s->e, s->rec->id, s->lower, s->rec->cwd, s->rec->version);
    }
    free(s->lower);
    memset(s, 0, sizeof(*s));
}

/* Closes the parent's copy of the report pipe's write end once the jail holds its own. */
void exec_session_close_report_writer(struct exec_session *s)
{
    if (s->report[1] >= 0) {
        close(s->report[1]);
        s->report[1] = -1;
    }
}

int exec_engine_run(struct exec_engine *e, struct sandbox_rec *rec, const struct exec_params *p,
                    struct exec_outcome *out)
{
    memset(out, 0, sizeof(*out));
    out->out = (struct buf)BUF_INIT(0);
    out->err = (struct buf)BUF_INIT(0);
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
    if (stdin_fd >= 0)
        close(stdin_fd);
    free(script);
    if (r == 0) {
        exec_session_close_report_writer(s);
        if (p->on_start)
            p->on_start(p->userdata);
        struct exec_allowance own;
        struct collect col = {.e = e, .p = p, .out = out, .allowance = p->allowance};
        if (!col.allowance) {
            exec_allowance_init(e, &own);
            col.allowance = &own;
        }
        struct quota_watch qw;
        quota_watch_init(&qw, s);
        struct runner_opts ro = {
            .timeout_ms = p->timeout_ms,
            .cancel_fd = p->cancel_fd,
            .on_output = on_output,
            .ud = &col,
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
            new_cwd = read_cwd(s->report[0]);
        }
        tm->run_ns = time_mono_ns() - t;
    }
    if (r == 0) {
        char info[160];
        snprintf(info, sizeof(info), "{\"exitCode\":%d,\"durationMs\":%lld,\"timedOut\":%s}",
                 out->exit_code, (long long)out->duration_ms, out->timed_out ? "true" : "false");
        t = time_mono_ns();
        r = exec_fault(e, "commit",
                       exec_session_finish(s, p->read_only, new_cwd, info, &out->files_changed));
        tm->commit_ns = time_mono_ns() - t;
    }
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
