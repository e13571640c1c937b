/*
 * zygote.c — see zygote.h. One broker thread owns the zygote process and the sessions'
 * listeners (epoll); the exec threads only add and remove sessions under the lock.
 *
 * Privileged: the zygote runs as host root (until it has entered its own namespaces and dropped
 * all but two capabilities). What it gets from the server: the jail's paths, the seccomp
 * program, and per connection the descriptors that name one jail. What the broker trusts of a
 * jail: nothing; it accepts connections and passes them on without reading them.
 */
#include "jail/zygote.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jail/jail_internal.h"
#include "jail/zygote_proto.h"
#include "util/array.h"
#include "util/err.h"
#include "util/fd.h"
#include "util/log.h"
#include "util/timeutil.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* The zygote program (zygote/pyzygote.c), embedded (zygote/images.S). */
extern const unsigned char pyzygote_image[], pyzygote_image_end[];

#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 60000
#define STABLE_MS 60000 /* running this long resets the pause before the next start */
#define START_TIMEOUT_MS 30000
#define ZYGOTE_MEMORY (512LL << 20)
/* Every warm child inherits the zygote's str hash secret and address layout: a fresh zygote
 * replaces it after cfg.recycle calls or RECYCLE_MS, at a moment no warm child runs. */
#define RECYCLE_MS (10 * 60 * 1000)

/* epoll tags: a session pointer, or one of these. */
static char tag_wake, tag_ctl, tag_pidfd, tag_log;

struct zygote_session {
    struct zygote *z;
    int listen_fd;
    int jail_fd;              /* dup of the jail init's pidfd */
    int procs[PYX_MAX_PROCS]; /* the exec cgroup's cgroup.procs, write-only */
    int nprocs;
    int64_t running;        /* warm children of this exec now */
    double tokens;          /* spawns it may still ask for now (refilled at cfg.rate/s) */
    int64_t tokens_ms;      /* when they were last refilled */
    int64_t muted_until_ms; /* its listener is not watched until then (0: watched) */
    struct zygote_session *next;
};

/* A spawn handed to the zygote and not yet reported DONE. */
struct pending {
    uint64_t id;
    struct zygote_session *s; /* NULL once the session closed */
};

struct zygote {
    const struct jail_runtime *rt;
    struct zygote_config cfg;
    char *preload;
    char *root_dir; /* <data>/jail/zygote: the empty directory its root goes on */
    int image_fd;   /* sealed memfd of the program */
    int epfd, wake_fd;
    pthread_t thread;
    bool thread_started;

    pthread_mutex_t mu; /* everything below */
    bool stopping;
    struct zygote_session *sessions;
    struct pending *pending;
    size_t npending, cappending;
    uint64_t next_id;
    /* the process */
    enum zygote_state state;
    char message[200];
    pid_t pid;
    int pidfd, ctl_fd;
    int log_fd; /* read end of its stdout and stderr, logged */
    /* Its cgroup (one of the exec pool's): the zygote and its monitors, whose work is not the
     * execs', together at most ZYGOTE_MEMORY and 2 x max + 64 processes. No CPU quota: CFS
     * bandwidth control slows every call; the spawns' CPU is bounded by cfg.rate per exec. */
    struct cgroup_exec cg;
    bool cg_held;
    int64_t started_ms, next_start_ms, backoff_ms;
    uint64_t served; /* calls handed to the running zygote */
    bool recycling;  /* it is being replaced by a fresh one (RECYCLE_*): calls run cold, quietly */
    char preloaded[600];
    uint64_t spawned, refused, restarts, recycled;
};

const char *zygote_state_name(enum zygote_state s)
{
    switch (s) {
    case ZYGOTE_STARTING:
        return "starting";
    case ZYGOTE_READY:
        return "ready";
    case ZYGOTE_UNAVAILABLE:
        return "unavailable";
    default:
        return "off";
    }
}

static int64_t now_ms(void)
{
    return time_mono_ns() / 1000000;
}

static void answer(int conn, int32_t why)
{
    struct pyx_reply rep = {PYX_MAGIC, PYX_UNAVAILABLE, why, 0};
    (void)send(conn, &rep, sizeof(rep), MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* ---- the process (broker thread, under mu) ----------------------------------------------- */

static void set_unavailable(struct zygote *z, const char *what, const char *detail)
{
    z->state = ZYGOTE_UNAVAILABLE;
    z->recycling = false;
    snprintf(z->message, sizeof(z->message), "%s%s%.150s", what, detail ? ": " : "",
             detail ? detail : "");
    log_msg("warn", "py-exec: the warm interpreter is unavailable: %s", z->message);
}

/* Every child of the zygote is gone from the broker's view with it: their DONE will not come. */
static void forget_pending(struct zygote *z)
{
    for (size_t i = 0; i < z->npending; i++)
        if (z->pending[i].s)
            z->pending[i].s->running--;
    z->npending = 0;
}

static void close_log(struct zygote *z)
{
    if (z->log_fd >= 0) {
        (void)epoll_ctl(z->epfd, EPOLL_CTL_DEL, z->log_fd, NULL);
        closep(&z->log_fd);
    }
}

/* What the zygote writes on its stdout or stderr (CPython's own warnings): into the log. */
static void log_readable(struct zygote *z)
{
    char buf[2048];
    ssize_t n = read(z->log_fd, buf, sizeof(buf) - 1);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EINTR))
            close_log(z);
        return;
    }
    buf[n] = '\0';
    for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save))
        log_msg("warn", "py-exec: the warm interpreter says: %.300s", line);
}

/* The zygote is gone: its monitors follow it (their parent-death signal); what is left in its
 * cgroup is killed and the cgroup removed. */
static void release_cgroup(struct zygote *z)
{
    if (z->cg_held)
        cgroup_exec_release(&z->cg, false);
    z->cg_held = false;
}

static void stop_process(struct zygote *z)
{
    close_log(z);
    if (z->ctl_fd >= 0) {
        (void)epoll_ctl(z->epfd, EPOLL_CTL_DEL, z->ctl_fd, NULL);
        closep(&z->ctl_fd);
    }
    if (z->pidfd >= 0) {
        (void)epoll_ctl(z->epfd, EPOLL_CTL_DEL, z->pidfd, NULL);
        (void)syscall(SYS_pidfd_send_signal, z->pidfd, SIGKILL, NULL, 0);
        siginfo_t si;
        while (waitid((idtype_t)P_PIDFD, (id_t)z->pidfd, &si, WEXITED) < 0 && errno == EINTR)
            ;
        closep(&z->pidfd);
    }
    z->pid = 0;
    release_cgroup(z);
    forget_pending(z);
}

static void schedule_restart(struct zygote *z)
{
    int64_t now = now_ms();
    if (z->started_ms && now - z->started_ms >= STABLE_MS)
        z->backoff_ms = BACKOFF_MIN_MS;
    z->next_start_ms = now + z->backoff_ms;
    z->backoff_ms = z->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : z->backoff_ms * 2;
}

/* The jail's seccomp program and the zygote's settings (zygote/pyzygote.c read_config). */
static int send_config(struct zygote *z)
{
    const struct seccomp_prog *prog = &z->rt->prog;
    size_t len = sizeof(struct sock_filter) * prog->len;
    rlim_t nf = JAIL_DEFAULT_NOFILE < z->rt->nofile_max ? JAIL_DEFAULT_NOFILE : z->rt->nofile_max;
    char nofile[24], fsize[24];
    snprintf(nofile, sizeof(nofile), "%llu", (unsigned long long)nf);
    /* The jail's own limit (jail_spawn caps it at the server's hard limit the same way) */
    rlim_t fs = z->cfg.fsize_bytes > 0 ? (rlim_t)z->cfg.fsize_bytes : RLIM_INFINITY;
    if (fs > z->rt->fsize_max)
        fs = z->rt->fsize_max;
    snprintf(fsize, sizeof(fsize), "%llu", (unsigned long long)(fs == RLIM_INFINITY ? 0 : fs));
    const char *conf[] = {z->rt->rf.usr, z->rt->rf.etc, z->rt->rf.locale ? z->rt->rf.locale : "",
                          z->root_dir,   nofile,        fsize,
                          z->preload};
    size_t total = sizeof(struct pyx_ctl) + len;
    for (size_t i = 0; i < sizeof(conf) / sizeof(conf[0]); i++)
        total += strlen(conf[i]) + 1;
    if (total > PYX_CTL_MAX)
        return -E2BIG;
    char *buf = malloc(total);
    if (!buf)
        return -ENOMEM;
    struct pyx_ctl h = {PYX_MAGIC, PYX_CTL_CONFIG, 0, 0, (uint32_t)len};
    memcpy(buf, &h, sizeof(h));
    memcpy(buf + sizeof(h), prog->filter, len);
    char *p = buf + sizeof(h) + len;
    for (size_t i = 0; i < sizeof(conf) / sizeof(conf[0]); i++)
        p = stpcpy(p, conf[i]) + 1;
    /* with the zygote's own cgroup.procs, which its monitors go back to */
    int home[CGROUP_NCTL];
    int nhome = z->cg_held ? cgroup_exec_open_procs(&z->cg, home) : 0;
    if (nhome < 0)
        nhome = 0;
    char cbuf[CMSG_SPACE(sizeof(home))];
    memset(cbuf, 0, sizeof(cbuf));
    struct iovec iov = {buf, total};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nhome > 0) {
        mh.msg_control = cbuf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nhome);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nhome);
        memcpy(CMSG_DATA(c), home, sizeof(int) * (size_t)nhome);
    }
    ssize_t n = sendmsg(z->ctl_fd, &mh, MSG_NOSIGNAL);
    for (int i = 0; i < nhome; i++)
        close(home[i]);
    free(buf);
    return n == (ssize_t)total ? 0 : -EIO;
}

/* Executes the embedded program with the jails' environment, fd 3 the control socket, fd 2
 * the server's stderr, in a session of its own. */
static int start_process(struct zygote *z)
{
    int sv[2], in[2], out[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    /* Its standard streams are pipes, as an exec's are (zygote/child_setup.py reuses them):
     * stdin at its end at once, stdout and stderr read into the log. */
    if (pipe2(in, O_CLOEXEC) < 0) {
        int e = -errno;
        close(sv[0]);
        close(sv[1]);
        return e;
    }
    close(in[1]);
    if (pipe2(out, O_CLOEXEC) < 0) {
        int e = -errno;
        close(sv[0]);
        close(sv[1]);
        close(in[0]);
        return e;
    }
    char path[64];
    /* The program is executed from its memfd, which the child keeps open as fd 4 until then
     * (the zygote closes it first thing). */
    snprintf(path, sizeof(path), "/proc/self/fd/4");
    char *argv[] = {"python3", NULL};
    size_t n = 0;
    while (jail_default_env[n])
        n++;
    char *envp[n + 2];
    for (size_t i = 0; i < n; i++)
        envp[i] = (char *)jail_default_env[i];
    envp[n] = "PWD=/";
    envp[n + 1] = NULL;

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setflags(&at,
                             POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, out[1], 2);
    posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
    posix_spawn_file_actions_adddup2(&fa, z->image_fd, 4);
    posix_spawn_file_actions_addclosefrom_np(&fa, 5);
    pid_t pid;
    int r = posix_spawn(&pid, path, &fa, &at, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(sv[1]);
    close(in[0]);
    close(out[1]);
    if (r != 0) {
        close(sv[0]);
        close(out[0]);
        return -r;
    }
    z->log_fd = out[0];
    struct epoll_event le = {.events = EPOLLIN, .data.ptr = &tag_log};
    if (fcntl(z->log_fd, F_SETFL, O_NONBLOCK) < 0 ||
        epoll_ctl(z->epfd, EPOLL_CTL_ADD, z->log_fd, &le) < 0)
        closep(&z->log_fd); /* it runs without its output logged */
    z->pid = pid;
    z->ctl_fd = sv[0];
    /* Before it reads its configuration, so before it forks anything. */
    struct cgroup_limits lim = {0, 2 * z->cfg.max + 64, 0};
    if (cgroup_exec_acquire(&z->rt->cg, &lim, &z->cg) == 0) {
        z->cg_held = true;
        if (cgroup_exec_attach(&z->cg, pid) < 0 ||
            cgroup_exec_limit_memory(&z->cg, ZYGOTE_MEMORY) < 0)
            log_msg("warn", "py-exec: the warm interpreter runs without its cgroup limits");
    }
    z->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (z->pidfd < 0) {
        r = -errno;
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        closep(&z->ctl_fd);
        z->pid = 0;
        return r;
    }
    if ((r = send_config(z)) < 0) {
        stop_process(z);
        return r;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &tag_ctl};
    struct epoll_event pe = {.events = EPOLLIN, .data.ptr = &tag_pidfd};
    if (epoll_ctl(z->epfd, EPOLL_CTL_ADD, z->ctl_fd, &ev) < 0 ||
        epoll_ctl(z->epfd, EPOLL_CTL_ADD, z->pidfd, &pe) < 0) {
        r = -errno;
        stop_process(z);
        return r;
    }
    z->state = ZYGOTE_STARTING;
    z->message[0] = '\0';
    z->started_ms = now_ms();
    z->served = 0;
    return 0;
}

/* A zygote that has served long enough is replaced while no warm child runs (none would be
 * killed with it). */
static void maybe_recycle(struct zygote *z)
{
    if (z->state != ZYGOTE_READY || z->npending ||
        ((int64_t)z->served < z->cfg.recycle && now_ms() - z->started_ms < RECYCLE_MS))
        return;
    stop_process(z);
    z->recycled++;
    z->recycling = true;
    z->next_start_ms = 0;
    z->state = ZYGOTE_STARTING;
}

static void maybe_start(struct zygote *z)
{
    if (!z->cfg.enabled || z->stopping || z->pid || now_ms() < z->next_start_ms)
        return;
    int r = start_process(z);
    if (r < 0) {
        set_unavailable(z, "cannot start it", strerror(-r));
        schedule_restart(z);
    }
}

static void process_ended(struct zygote *z)
{
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    if (waitid((idtype_t)P_PIDFD, (id_t)z->pidfd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
        return;
    char how[64];
    if (si.si_code == CLD_EXITED)
        snprintf(how, sizeof(how), "exit status %d", si.si_status);
    else
        snprintf(how, sizeof(how), "signal %d", si.si_status);
    if (z->state != ZYGOTE_UNAVAILABLE) /* a FAILED message already said why */
        set_unavailable(z, "it ended", how);
    (void)epoll_ctl(z->epfd, EPOLL_CTL_DEL, z->pidfd, NULL);
    closep(&z->pidfd);
    z->pid = 0;
    release_cgroup(z);
    close_log(z);
    if (z->ctl_fd >= 0) {
        (void)epoll_ctl(z->epfd, EPOLL_CTL_DEL, z->ctl_fd, NULL);
        closep(&z->ctl_fd);
    }
    forget_pending(z);
    z->restarts++;
    schedule_restart(z);
}

static void ctl_readable(struct zygote *z)
{
    char buf[PYX_CTL_MAX + 1];
    for (;;) {
        ssize_t n = recv(z->ctl_fd, buf, PYX_CTL_MAX, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        struct pyx_ctl h;
        if (n < (ssize_t)sizeof(h)) { /* ended, or speaks nonsense: it goes */
            if (z->state != ZYGOTE_UNAVAILABLE)
                set_unavailable(z, "its control socket closed", NULL);
            stop_process(z);
            z->restarts++;
            schedule_restart(z);
            return;
        }
        memcpy(&h, buf, sizeof(h));
        size_t tlen = (size_t)n - sizeof(h);
        buf[n] = '\0';
        const char *text = buf + sizeof(h);
        if (h.magic != PYX_MAGIC)
            continue;
        if (h.kind == PYX_CTL_READY) {
            z->state = ZYGOTE_READY;
            z->recycling = false;
            z->message[0] = '\0';
            snprintf(z->preloaded, sizeof(z->preloaded), "%.*s",
                     (int)(tlen < sizeof(z->preloaded) ? tlen : sizeof(z->preloaded) - 1), text);
            log_msg("info", "py-exec: the warm interpreter is ready (pid %d)", (int)z->pid);
        } else if (h.kind == PYX_CTL_FAILED) {
            set_unavailable(z, "it could not start", text);
        } else if (h.kind == PYX_CTL_DONE) {
            for (size_t i = 0; i < z->npending; i++) {
                if (z->pending[i].id != h.id)
                    continue;
                if (z->pending[i].s)
                    z->pending[i].s->running--;
                z->pending[i] = z->pending[--z->npending];
                break;
            }
        }
    }
}

/* ---- connections ------------------------------------------------------------------------- */

/* A session refused a connection (its limits): its listener is not watched for MUTE_MS, so that
 * a jail connecting in a loop waits in connect() (the listen backlog fills) instead of keeping
 * the broker busy refusing it. */
#define MUTE_MS 20

static void mute(struct zygote *z, struct zygote_session *s)
{
    struct epoll_event ev = {.events = 0, .data.ptr = s};
    if (epoll_ctl(z->epfd, EPOLL_CTL_MOD, s->listen_fd, &ev) == 0)
        s->muted_until_ms = now_ms() + MUTE_MS;
}

/* Watches again the listeners whose pause is over; the time to the next one, or -1. */
static int unmute_due(struct zygote *z)
{
    int64_t now = now_ms(), next = -1;
    for (struct zygote_session *s = z->sessions; s; s = s->next) {
        if (!s->muted_until_ms)
            continue;
        if (s->muted_until_ms <= now) {
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
            if (epoll_ctl(z->epfd, EPOLL_CTL_MOD, s->listen_fd, &ev) == 0)
                s->muted_until_ms = 0;
        } else if (next < 0 || s->muted_until_ms - now < next) {
            next = s->muted_until_ms - now;
        }
    }
    return (int)next;
}

/* One spawn from the session's bucket (cfg.rate per second, at most cfg.per_exec saved up):
 * every spawn costs the zygote and a monitor CPU outside the exec's cgroup. */
static bool take_token(struct zygote *z, struct zygote_session *s)
{
    int64_t now = now_ms();
    s->tokens += (double)(now - s->tokens_ms) * (double)z->cfg.rate / 1000.0;
    if (s->tokens > (double)z->cfg.per_exec)
        s->tokens = (double)z->cfg.per_exec;
    s->tokens_ms = now;
    if (s->tokens < 1.0)
        return false;
    s->tokens -= 1.0;
    return true;
}

static int64_t running_total(const struct zygote *z)
{
    return (int64_t)z->npending;
}

static void hand_over(struct zygote *z, struct zygote_session *s, int conn)
{
    int32_t why = 0;
    if (!z->cfg.enabled)
        why = PYX_WHY_OFF;
    else if (z->state != ZYGOTE_READY || z->ctl_fd < 0)
        why = z->recycling ? PYX_WHY_BUSY : PYX_WHY_DOWN;
    else if (s->running >= z->cfg.per_exec || running_total(z) >= z->cfg.max || !take_token(z, s))
        why = PYX_WHY_BUSY;
    else if (ARRAY_GROW(z->pending, z->npending + 1, z->cappending) < 0)
        why = PYX_WHY_BUSY;
    if (why) {
        answer(conn, why);
        z->refused++;
        if (why == PYX_WHY_BUSY)
            mute(z, s);
        return;
    }
    uint64_t id = ++z->next_id;
    struct pyx_ctl h = {PYX_MAGIC, PYX_CTL_SPAWN, id, (uint32_t)s->nprocs, 0};
    int fds[2 + PYX_MAX_PROCS] = {conn, s->jail_fd};
    for (int i = 0; i < s->nprocs; i++)
        fds[2 + i] = s->procs[i];
    size_t nfds = 2 + (size_t)s->nprocs;
    char cbuf[CMSG_SPACE(sizeof(fds))];
    memset(cbuf, 0, sizeof(cbuf));
    struct iovec iov = {&h, sizeof(h)};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = cbuf,
                        .msg_controllen = CMSG_SPACE(sizeof(int) * nfds)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    if (sendmsg(z->ctl_fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)sizeof(h)) {
        answer(conn, PYX_WHY_BUSY); /* the zygote is behind: this call runs cold */
        z->refused++;
        return;
    }
    z->pending[z->npending++] = (struct pending){id, s};
    s->running++;
    z->spawned++;
    z->served++;
}

static void accept_all(struct zygote *z, struct zygote_session *s)
{
    for (int i = 0; i < 64 && !s->muted_until_ms; i++) {
        int conn =
            accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC); /* blocking: the child reads it */
        if (conn < 0)
            return;
        hand_over(z, s, conn);
        close(conn);
    }
}

static void *broker_main(void *arg)
{
    struct zygote *z = arg;
    struct epoll_event evs[32];
    for (;;) {
        pthread_mutex_lock(&z->mu);
        maybe_recycle(z);
        maybe_start(z);
        int timeout = -1;
        if (z->cfg.enabled && !z->pid) {
            int64_t wait = z->next_start_ms - now_ms();
            timeout = wait < 0 ? 0 : (int)wait;
        } else if (z->state == ZYGOTE_STARTING) {
            int64_t wait = z->started_ms + START_TIMEOUT_MS - now_ms();
            if (wait <= 0) {
                set_unavailable(z, "it did not become ready in time", NULL);
                stop_process(z);
                z->restarts++;
                schedule_restart(z);
                pthread_mutex_unlock(&z->mu);
                continue;
            }
            timeout = (int)wait;
        }
        int unmute = unmute_due(z);
        if (unmute >= 0 && (timeout < 0 || unmute < timeout))
            timeout = unmute;
        bool stopping = z->stopping;
        pthread_mutex_unlock(&z->mu);
        if (stopping)
            break;
        int n = epoll_wait(z->epfd, evs, 32, timeout);
        pthread_mutex_lock(&z->mu);
        for (int i = 0; i < n; i++) {
            void *tag = evs[i].data.ptr;
            if (tag == &tag_wake) {
                uint64_t v;
                if (read(z->wake_fd, &v, sizeof(v)) < 0)
                    (void)v;
            } else if (tag == &tag_ctl) {
                if (z->ctl_fd >= 0)
                    ctl_readable(z);
            } else if (tag == &tag_log) {
                if (z->log_fd >= 0)
                    log_readable(z);
            } else if (tag == &tag_pidfd) {
                if (z->pidfd >= 0)
                    process_ended(z);
            } else {
                /* a session: still registered (closing removes it from epoll under mu) */
                for (struct zygote_session *s = z->sessions; s; s = s->next)
                    if (s == tag) {
                        accept_all(z, s);
                        break;
                    }
            }
        }
        pthread_mutex_unlock(&z->mu);
    }
    return NULL;
}

static void wake(struct zygote *z)
{
    uint64_t one = 1;
    if (write(z->wake_fd, &one, sizeof(one)) < 0)
        (void)one;
}

/* ---- public ------------------------------------------------------------------------------ */

int zygote_new(const struct jail_runtime *rt, const struct zygote_config *cfg, struct zygote **ret)
{
    struct zygote *z = calloc(1, sizeof(*z));
    if (!z)
        return -ENOMEM;
    z->rt = rt;
    z->cfg = *cfg;
    if (z->cfg.per_exec < 1)
        z->cfg.per_exec = 1;
    if (z->cfg.max < 1)
        z->cfg.max = 1;
    if (z->cfg.rate < 1)
        z->cfg.rate = 1;
    if (z->cfg.recycle < 1)
        z->cfg.recycle = 1;
    z->image_fd = z->epfd = z->wake_fd = z->pidfd = z->ctl_fd = z->log_fd = -1;
    z->backoff_ms = BACKOFF_MIN_MS;
    z->state = cfg->enabled ? ZYGOTE_STARTING : ZYGOTE_OFF;
    pthread_mutex_init(&z->mu, NULL);
    int r = -ENOMEM;
    z->preload = strdup(cfg->preload ? cfg->preload : ZYGOTE_DEFAULT_PRELOAD);
    if (!z->preload || asprintf(&z->root_dir, "%s/zygote", rt->rf.jail_dir) < 0)
        goto fail;
    z->cfg.preload = z->preload;
    if (mkdir(z->root_dir, 0755) < 0 && errno != EEXIST) {
        r = err_set(-errno, "cannot make the warm interpreter's root directory");
        goto fail;
    }
    z->image_fd = memfd_from_bytes("sqlfs-pyzygote", pyzygote_image,
                                   (size_t)(pyzygote_image_end - pyzygote_image),
                                   MEMFD_SEALED | MEMFD_EXECUTABLE);
    if (z->image_fd < 0) {
        r = err_set(z->image_fd, "cannot load the warm interpreter's program");
        goto fail;
    }
    z->epfd = epoll_create1(EPOLL_CLOEXEC);
    z->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &tag_wake};
    if (z->epfd < 0 || z->wake_fd < 0 || epoll_ctl(z->epfd, EPOLL_CTL_ADD, z->wake_fd, &ev) < 0) {
        r = err_set(-errno, "cannot set up the py-exec broker");
        goto fail;
    }
    if ((r = -pthread_create(&z->thread, NULL, broker_main, z)) < 0) {
        err_set(r, "cannot start the py-exec broker");
        goto fail;
    }
    z->thread_started = true;
    *ret = z;
    return 0;
fail:
    zygote_free(z);
    return r;
}

void zygote_free(struct zygote *z)
{
    if (!z)
        return;
    if (z->thread_started) {
        pthread_mutex_lock(&z->mu);
        z->stopping = true;
        pthread_mutex_unlock(&z->mu);
        wake(z);
        pthread_join(z->thread, NULL);
    }
    stop_process(z);
    closep(&z->image_fd);
    closep(&z->epfd);
    closep(&z->wake_fd);
    free(z->pending);
    free(z->preload);
    free(z->root_dir);
    pthread_mutex_destroy(&z->mu);
    free(z);
}

int zygote_session_open(struct zygote *z, int listen_fd, const struct jail_proc *p,
                        struct zygote_session **ret)
{
    struct zygote_session *s = calloc(1, sizeof(*s));
    if (!s) {
        close(listen_fd);
        return -ENOMEM;
    }
    s->z = z;
    s->listen_fd = listen_fd;
    s->tokens = (double)z->cfg.per_exec;
    s->tokens_ms = now_ms();
    s->jail_fd = fcntl(jail_proc_pidfd(p), F_DUPFD_CLOEXEC, 3);
    int r = s->jail_fd < 0 ? -errno : jail_proc_open_procs(p, s->procs);
    if (r >= 0) {
        s->nprocs = r;
        r = 0;
    }
    pthread_mutex_lock(&z->mu);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
    if (r == 0 && epoll_ctl(z->epfd, EPOLL_CTL_ADD, listen_fd, &ev) < 0)
        r = -errno;
    if (r == 0) {
        s->next = z->sessions;
        z->sessions = s;
    }
    pthread_mutex_unlock(&z->mu);
    if (r < 0) {
        s->z = NULL;
        zygote_session_close(s);
        return r;
    }
    *ret = s;
    return 0;
}

void zygote_session_close(struct zygote_session *s)
{
    if (!s)
        return;
    struct zygote *z = s->z;
    if (z) {
        pthread_mutex_lock(&z->mu);
        (void)epoll_ctl(z->epfd, EPOLL_CTL_DEL, s->listen_fd, NULL);
        for (struct zygote_session **pp = &z->sessions; *pp; pp = &(*pp)->next)
            if (*pp == s) {
                *pp = s->next;
                break;
            }
        for (size_t i = 0; i < z->npending; i++)
            if (z->pending[i].s == s)
                z->pending[i].s = NULL;
        pthread_mutex_unlock(&z->mu);
    }
    closep(&s->listen_fd);
    closep(&s->jail_fd);
    for (int i = 0; i < s->nprocs; i++)
        closep(&s->procs[i]);
    free(s);
}

/* VmRSS of a host pid, in bytes; 0 if unknown. */
static int64_t rss_of(pid_t pid)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read_all(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    const char *p = strstr(buf, "\nVmRSS:");
    return p ? strtoll(p + 7, NULL, 10) * 1024 : 0;
}

void zygote_info(struct zygote *z, struct zygote_info *ret)
{
    memset(ret, 0, sizeof(*ret));
    pthread_mutex_lock(&z->mu);
    ret->state = z->cfg.enabled ? z->state : ZYGOTE_OFF;
    snprintf(ret->message, sizeof(ret->message), "%s",
             ret->state == ZYGOTE_UNAVAILABLE ? z->message : "");
    ret->pid = z->pid;
    snprintf(ret->preloaded, sizeof(ret->preloaded), "%s", z->preloaded);
    ret->spawned = z->spawned;
    ret->refused = z->refused;
    ret->restarts = z->restarts;
    ret->recycled = z->recycled;
    ret->running = running_total(z);
    pthread_mutex_unlock(&z->mu);
    if (ret->pid)
        ret->rss_bytes = rss_of(ret->pid);
}
