/*
 * health — whether execs work on this server, and who is to blame when one fails.
 *
 * At start, exec_engine_new asks whether this host can run the jail at all: root, the jail's
 * mechanisms (jail/sysprobe.h) and one real jailed `echo ok` through the runner; what fails is
 * logged once and kept for /v1/status and /readyz (the exec_startup_* functions below).
 *
 * An exec's set-up (checkout, overlay, cgroup, jail) can fail for reasons no request could
 * cause: a relative path in a plan, a cgroup removed under the server, a full process table.
 * Those must reach the client as a server error (500 EXEC_FAILED, or 503 EXEC_UNAVAILABLE with
 * Retry-After for a shortage), never as a 4xx that blames the request, and /readyz must stop
 * saying "ok". exec_fault() makes that decision in one place for every exec route; the
 * self-test runs one real exec at start so that a server that cannot run execs says so before
 * its first request.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "exec/engine_internal.h"
#include "exec/runner.h"
#include "jail/rootfs.h"
#include "jail/sysprobe.h"
#include "sandbox/lock.h"
#include "sandbox/sandbox.h"
#include "util/cleanup.h"
#include "util/err.h"
#include "util/fd.h"
#include "util/rand.h"
#include "util/home.h"
#include "util/jsontext.h"
#include "util/log.h"
#include "util/timeutil.h"

/* While failing, /readyz re-runs the self-test at most this often. */
#define SELFTEST_RETRY_NS (10LL * 1000 * 1000 * 1000)
/* The self-test's private sandbox: an id of this server's own, kept in <data>/SELFTEST_ID_FILE
 * (so that a leftover of a crash is found and removed by the next self-test, and servers
 * sharing a database never test in one another's sandbox), owned by a tenant no token can name
 * (':' is outside the tenant syntax). */
#define SELFTEST_ID_FILE "selftest-id"
#define SELFTEST_TENANT "sqlfs:self-test"
#define SELFTEST_SCRIPT "echo ok > self-test && cat self-test"

/* Reads this server's self-test sandbox id from the data dir, or makes and keeps a new one. */
static int selftest_id_load(const char *data_dir, char id[UUID_STR_LEN])
{
    _cleanup_close_ int dfd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    _cleanup_close_ int fd = openat(dfd, SELFTEST_ID_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
        char got[UUID_STR_LEN] = {0};
        ssize_t n = read_all(fd, got, UUID_STR_LEN - 1);
        if (n == UUID_STR_LEN - 1 && uuid_valid(got)) {
            memcpy(id, got, UUID_STR_LEN);
            return 0;
        }
    }
    int r = rand_uuid(id);
    if (r < 0)
        return r;
    static const char tmp[] = SELFTEST_ID_FILE ".tmp";
    _cleanup_close_ int out =
        openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0)
        return -errno;
    r = write_all(out, id, UUID_STR_LEN - 1);
    if (r >= 0 && fsync(out) < 0)
        r = -errno;
    if (r >= 0 && renameat(dfd, tmp, dfd, SELFTEST_ID_FILE) < 0)
        r = -errno;
    if (r < 0)
        (void)unlinkat(dfd, tmp, 0);
    else
        (void)fsync(dfd);
    return r;
}

int exec_health_load_id(struct exec_health *h, const char *data_dir)
{
    return selftest_id_load(data_dir, h->selftest_id);
}

void exec_health_init(struct exec_health *h)
{
    memset(h, 0, sizeof(*h));
    pthread_mutex_init(&h->mu, NULL);
}

void exec_health_release(struct exec_health *h)
{
    pthread_mutex_destroy(&h->mu);
}

/* Failures that say what happened to the client in their own terms: the request's or its
 * sandbox's doing (the sandbox deleted meanwhile), admission and shutdown, limits, a full disk,
 * and a database that cannot be reached (503, retryable: nothing was applied). */
static bool answers_for_itself(int r)
{
    switch (-r) {
    case ERR_BUSY:
    case ERR_SHUTTING_DOWN:
    case ERR_LOCK_TIMEOUT:
    case ERR_STORE_UNAVAILABLE:
    case ERR_COMMIT_IN_DOUBT: /* not "nothing ran": its commit may be there */
    case ERR_IDEMPOTENCY_IN_PROGRESS:
    case ERR_SANDBOX_NOT_FOUND:
    case ERR_QUOTA:
    case ERR_READONLY_VIOLATION:
    case ERR_INVALID_INPUT:
    case ERR_CWD_MISSING:
    case ERR_PAYLOAD_TOO_LARGE:
    case ERR_TOO_MANY_ENTRIES:
    case ERR_STORAGE_FULL:
    case ERR_EXEC_FAILED:
    case ERR_EXEC_TRANSIENT:
    case ENOSPC:
    case EDQUOT:
    case ENAMETOOLONG: /* a path the script made is longer than a sandbox path may be */
        return true;
    default:
        return false;
    }
}

static bool is_shortage(int r)
{
    switch (-r) {
    case EAGAIN:
    case ENOMEM:
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case EBUSY:
    case EINTR:
        return true;
    default:
        return false;
    }
}

static const char *error_name(int r)
{
    return -r >= ERR_BASE ? err_info(r)->code : strerror(-r);
}

static void mark_failing(struct exec_engine *e, const char *phase, int r, bool count)
{
    struct exec_health *h = &e->health;
    pthread_mutex_lock(&h->mu);
    if (count) {
        h->faults++;
        h->transient += is_shortage(r);
    }
    h->failing = true;
    h->failed_ms = time_now_ms();
    snprintf(h->reason, sizeof(h->reason), "%s: %s", phase, error_name(r));
    pthread_mutex_unlock(&h->mu);
}

int exec_fault(struct exec_engine *e, const char *phase, int r)
{
    if (r >= 0 || answers_for_itself(r))
        return r;
    /* The message set by the failing step may name host paths: it goes to the log only. */
    json_t *f = json_object();
    json_object_set_new(f, "phase", json_string(phase));
    json_object_set_new(f, "error", json_string(error_name(r)));
    const char *m = err_message();
    if (m && *m)
        json_object_set_new(f, "detail", json_string(m));
    log_json("error", "exec set-up failed on the server's side", f);
    mark_failing(e, phase, r, true);
    err_clear();
    if (is_shortage(r))
        return err_set(-ERR_EXEC_TRANSIENT,
                       "the server is short of resources to start this exec (%s: %s); nothing "
                       "ran, retry",
                       phase, error_name(r));
    return err_set(-ERR_EXEC_FAILED,
                   "the server failed to set up this exec (%s: %s); nothing ran. This is the "
                   "server's fault, not the request's: its log has the cause",
                   phase, error_name(r));
}

void exec_health_ok(struct exec_engine *e)
{
    struct exec_health *h = &e->health;
    pthread_mutex_lock(&h->mu);
    h->failing = false;
    pthread_mutex_unlock(&h->mu);
}

/* Deletes the self-test's sandbox when it exists, under its lock like any route. */
static int selftest_delete(struct exec_engine *e)
{
    struct sandbox_rec rec;
    struct lock_ref *lock = NULL;
    int r =
        sandbox_open(e->sandboxes, e->health.selftest_id, NULL, NULL, LOCK_EXCLUSIVE, &rec, &lock);
    if (r == -ERR_SANDBOX_NOT_FOUND) {
        err_clear();
        return 0;
    }
    if (r < 0)
        return r;
    sandbox_rec_release(&rec);
    r = sandbox_delete(e->sandboxes, e->health.selftest_id, NULL, NULL);
    locks_release(lock);
    return r;
}

/* Creates the self-test's sandbox (after removing a leftover of an earlier run). */
static int selftest_create(struct exec_engine *e)
{
    int r = selftest_delete(e);
    if (r < 0)
        return r;
    struct changeset cs;
    changeset_init(&cs, "create");
    cs.create_parents = true;
    r = sandbox_add_skeleton(&cs);
    struct sandbox_rec rec = {
        .tenant = SELFTEST_TENANT,
        .sub = "self-test",
        .env_json = "{}",
        .cwd = SANDBOX_HOME,
        .created_ms = time_now_ms(),
    };
    memcpy(rec.id, e->health.selftest_id, UUID_STR_LEN);
    if (r == 0)
        r = sandbox_create(e->sandboxes, &rec, &cs, NULL);
    changeset_release(&cs);
    return r;
}

/* The exec itself, under the sandbox's lock like any route's. */
static int selftest_exec(struct exec_engine *e)
{
    struct sandbox_rec rec;
    struct lock_ref *lock = NULL;
    int r =
        sandbox_open(e->sandboxes, e->health.selftest_id, NULL, NULL, LOCK_EXCLUSIVE, &rec, &lock);
    if (r < 0)
        return r;
    static const char script[] = SELFTEST_SCRIPT;
    /* its own small buffer: the test passes whatever replies hold of REPLY_MEMORY_BYTES */
    struct capture_allowance cap = CAPTURE_ALLOWANCE_INIT(256);
    struct capture got;
    capture_init(&got, &cap, NULL);
    struct exec_params p = {
        .script = script,
        .script_len = sizeof(script) - 1,
        .timeout_ms = 10000,
        .cancel_fd = -1,
        .on_output = capture_on_output,
        .userdata = &got,
    };
    struct exec_outcome out;
    r = exec_engine_run(e, &rec, &p, &out);
    if (r == 0 && (out.exit_code != 0 || out.timed_out || got.out.data.len != 3 ||
                   memcmp(buf_cstr(&got.out.data), "ok\n", 3) != 0))
        r = err_set(-EPROTO, "the test exec exited %d (stdout %zu bytes, stderr: %.120s)",
                    out.exit_code, got.out.data.len, buf_cstr(&got.err.data));
    exec_outcome_release(&out);
    capture_release(&got);
    sandbox_rec_release(&rec);
    locks_release(lock);
    return r;
}

int exec_engine_selftest(struct exec_engine *e)
{
    struct exec_health *h = &e->health;
    pthread_mutex_lock(&h->mu);
    if (h->selftest_running) {
        pthread_mutex_unlock(&h->mu);
        return -EALREADY;
    }
    h->selftest_running = true;
    h->selftest_ns = time_mono_ns();
    pthread_mutex_unlock(&h->mu);

    err_clear();
    const char *phase = "self-test: create its sandbox";
    int r = selftest_create(e);
    if (r == 0) {
        phase = "self-test";
        r = selftest_exec(e);
        (void)selftest_delete(e); /* what is left, the next self-test removes */
    }
    if (r < 0) {
        json_t *f = json_object();
        json_object_set_new(f, "error", json_string(error_name(r)));
        const char *m = err_message();
        if (m && *m)
            json_object_set_new(f, "detail", json_string(m));
        log_json("error", "exec self-test failed: sandboxes cannot run commands", f);
        /* an exec fault was counted by exec_fault already; this only records the verdict */
        mark_failing(e, phase, r, false);
    } else {
        exec_health_ok(e);
    }
    err_clear();
    pthread_mutex_lock(&h->mu);
    h->selftest_running = false;
    pthread_mutex_unlock(&h->mu);
    return r;
}

bool exec_engine_ready(struct exec_engine *e)
{
    if (!e)
        return false;
    struct exec_health *h = &e->health;
    pthread_mutex_lock(&h->mu);
    bool retry =
        h->failing && !h->selftest_running && time_mono_ns() - h->selftest_ns >= SELFTEST_RETRY_NS;
    pthread_mutex_unlock(&h->mu);
    if (retry) {
        int r = exec_engine_selftest(e); /* its verdict is read below */
        (void)r;
    }
    pthread_mutex_lock(&h->mu);
    bool ok = !h->failing;
    pthread_mutex_unlock(&h->mu);
    return ok;
}

void exec_health_json(struct exec_engine *e, json_t *o)
{
    struct exec_health *h = &e->health;
    pthread_mutex_lock(&h->mu);
    json_t *f = json_object();
    json_object_set_new(f, "count", json_integer(h->faults));
    json_object_set_new(f, "transient", json_integer(h->transient));
    if (h->failing) {
        json_object_set_new(f, "failing", json_string(h->reason));
        char since[TIME_ISO_LEN];
        time_iso8601(h->failed_ms, since, sizeof(since));
        json_object_set_new(f, "since", json_string(since));
    }
    pthread_mutex_unlock(&h->mu);
    json_object_set_new(o, "faults", f);
}

void exec_health_reason(struct exec_engine *e, char *why, size_t n)
{
    struct exec_health *h = &e->health;
    pthread_mutex_lock(&h->mu);
    snprintf(why, n, "%s", h->reason);
    pthread_mutex_unlock(&h->mu);
}

/* ---- start-up: can this host run execs, and why not ---- */

static char last_error[512] = "the exec engine has not started";
/* Why there is no engine, in words safe for any client (no host path, no counter): a fixed
 * text, or public_reason. Set by exec_engine_new before the server listens. */
static const char *unavailable_reason = "the exec engine has not started";
static char public_reason[600];
/* The start-up checks of the last exec_engine_new (read-only afterwards): the jail's
 * mechanisms (jail/sysprobe.h) and one real jailed exec (probe_exec). */
static struct sysprobe probe;
static struct sysprobe_check exec_check;
static bool probed;

/* Each start-up check: its name in JSON and in /readyz, and the feature the log names. */
static const struct {
    const char *name;
    const char *feature;
    const struct sysprobe_check *c;
} probe_checks[] = {
    {"userns", "user namespaces", &probe.userns}, {"overlay", "overlayfs", &probe.overlay},
    {"seccomp", "seccomp", &probe.seccomp},       {"cgroup", "cgroup limits", &probe.cgroup},
    {"rootfs", "rootfs", &probe.rootfs},          {"exec", "jailed exec", &exec_check},
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

static void check_set(struct sysprobe_check *c, bool ok, const char *msg)
{
    c->ok = ok;
    snprintf(c->message, sizeof(c->message), "%s", ok ? "ok" : msg);
}

/* The end-to-end check: one jail runs `echo ok` over scratch directories below the runtime's
 * jail dir, through the runner, as an exec would. */
static void probe_exec(const struct jail_runtime *rt, struct sysprobe_check *c)
{
    const struct rootfs *rf = jail_runtime_rootfs(rt);
    char dir[4200], up[4300], wk[4300], lo[4300];
    snprintf(dir, sizeof(dir), "%s/probe-exec", rf->jail_dir);
    snprintf(up, sizeof(up), "%s/upper", dir);
    snprintf(wk, sizeof(wk), "%s/work", dir);
    snprintf(lo, sizeof(lo), "%s/lower", dir);
    (void)rootfs_rm_rf(dir);
    /* the overlay's root shows the upper's mode: 0755 whatever the server's umask */
    if (mkdir(dir, 0700) < 0 || mkdir(up, 0755) < 0 || mkdir(wk, 0700) < 0 || mkdir(lo, 0755) < 0 ||
        chmod(up, 0755) < 0 || chmod(lo, 0755) < 0) {
        check_set(c, false, "cannot create probe directories");
        return;
    }
    static const char script[] = "echo ok";
    struct jail_plan plan = {.exec_id = "probe",
                             .lower = lo,
                             .upper = up,
                             .work = wk,
                             .script = script,
                             .script_len = sizeof(script) - 1,
                             .stdin_fd = -1,
                             .cwd = "/"};
    struct jail_proc *p = NULL;
    int r = jail_spawn(rt, &plan, &p);
    if (r < 0) {
        snprintf(c->message, sizeof(c->message), "exec failed: %s",
                 err_message() ? err_message() : "setup error");
        c->ok = false;
        (void)rootfs_rm_rf(dir);
        return;
    }
    struct capture_allowance cap = CAPTURE_ALLOWANCE_INIT(64);
    struct capture b;
    capture_init(&b, &cap, NULL);
    struct runner_opts o = {
        .timeout_ms = 10000, .cancel_fd = -1, .on_output = capture_on_output, .ud = &b};
    struct runner_result res;
    r = runner_run(p, &o, &res);
    jail_proc_free(p);
    check_set(c, r == 0 && res.exit_code == 0 && strcmp(buf_cstr(&b.out.data), "ok\n") == 0,
              "a test exec did not print its output");
    capture_release(&b);
    (void)rootfs_rm_rf(dir);
}

bool exec_startup_probe(const struct jail_runtime *rt)
{
    sysprobe_run(rt, &probe);
    if (!rt)
        check_set(&exec_check, false, "sandbox runtime not initialised");
    else if (probe.userns.ok && probe.overlay.ok && probe.seccomp.ok && probe.rootfs.ok)
        probe_exec(rt, &exec_check);
    else
        check_set(&exec_check, false, "skipped: a required feature is missing");
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
    return sysprobe_ok(&probe) && exec_check.ok;
}

/* The jail is made by the server itself: new user, mount, pid and network namespaces, an
 * overlayfs mount, uid/gid maps, cgroup files and pivot_root, all from the host's initial user
 * namespace. That needs root: uid 0 with CAP_SYS_ADMIN (the mounts), CAP_SETUID/CAP_SETGID (the
 * maps), CAP_SYS_CHROOT and write access to the cgroup hierarchy. Said once and clearly rather
 * than as the first of the failures it causes. */
int exec_startup_check_root(void)
{
    bool sys_admin = jail_has_sys_admin();
    if (geteuid() == 0 && sys_admin) {
        unavailable_reason = "the host lacks a feature the exec jail needs";
        return 0;
    }
    unavailable_reason = "this server runs without root, which the exec jail needs";
    int r = err_set(-ERR_JAIL_UNAVAILABLE,
                    "the exec jail needs root: uid 0 with CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID "
                    "and CAP_SYS_CHROOT, on a kernel with user, mount, pid and network "
                    "namespaces, overlayfs, seccomp and cgroups; this server runs as uid %ld%s, "
                    "so sandboxes cannot run commands (files, archives and tokens still work)",
                    (long)geteuid(), sys_admin ? "" : " without CAP_SYS_ADMIN");
    snprintf(last_error, sizeof(last_error), "%s", err_message());
    return r;
}

int exec_engine_unavailable(void)
{
    return err_set(-ERR_JAIL_UNAVAILABLE, "exec is unavailable on this server: %s; see /readyz",
                   unavailable_reason);
}

void exec_startup_error(int r)
{
    const char *m = err_message();
    snprintf(last_error, sizeof(last_error), "%s", m ? m : strerror(-r));
}

void exec_startup_failed(int r, bool have_runtime, bool runtime_failed, bool probe_ok)
{
    if (have_runtime || !last_error[0])
        exec_startup_error(r);
    /* error messages name no host path (the project's rule), so they can be shown */
    if (runtime_failed || probe_ok) {
        snprintf(public_reason, sizeof(public_reason), "the sandbox runtime could not start: %s",
                 last_error);
    } else {
        int len = snprintf(public_reason, sizeof(public_reason), "%s", unavailable_reason);
        probe_failures(public_reason, (size_t)len, sizeof(public_reason));
    }
    unavailable_reason = public_reason;
}

void exec_startup_json(json_t *o, bool no_engine)
{
    if (probed)
        json_object_set_new(o, "checks", probe_json());
    if (no_engine)
        json_object_set_new(o, "error", jsontext(last_error));
}

const char *exec_startup_reason(void)
{
    return unavailable_reason;
}
