/*
 * py-exec — `python3` for a jail, started warm when it can be (docs/JAIL.md, "Warm Python").
 *
 * `py-exec ARGS` means `python3 ARGS`. It connects to the exec's listener (zygote_proto.h), and
 * once a child of the warm interpreter greets it from inside this jail, hands it everything a
 * `python3` started here would have inherited: argv, environment, working directory, every
 * descriptor that is not close-on-exec (at the same numbers), umask, nice value, signal mask
 * and ignored signals, resource limits. From then on it stands in for the child: the signals
 * it catches are forwarded to it, and it ends as the child ended (the same exit code, or
 * killed by the same signal). When the child says the request needs a cold start (COLD: an
 * option or variable a warm start does not reproduce), or no warm interpreter is there
 * (UNAVAILABLE, or no listener), it executes `python3` itself with the same arguments; the
 * second case is said in one line on stderr.
 *
 * Everything here runs as the sandbox user, inside the jail: it holds nothing a script could
 * not hold. Statically linked, so that it starts without the dynamic loader.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jail/zygote_proto.h"

static int child_pidfd = -1;

static const char *why_text(int why)
{
    switch (why) {
    case PYX_WHY_OFF:
        return "turned off on this server";
    case PYX_WHY_DOWN:
        return "not running";
    case PYX_WHY_SPAWN:
        return "could not start a child";
    case PYX_WHY_PROTOCOL:
        return "request not understood";
    case PYX_WHY_SETUP:
        return "could not set up the interpreter";
    default:
        return "unreachable";
    }
}

/* Runs python3 itself: argv[0] becomes "python3", the rest is ours. */
__attribute__((noreturn)) static void run_cold(char **argv, const char *notice)
{
    if (notice) {
        char line[200];
        int n = snprintf(line, sizeof(line),
                         "py-exec: no warm interpreter (%s); running python3 cold\n", notice);
        if (n > 0 && write(STDERR_FILENO, line, (size_t)n) < 0)
            (void)n; /* stderr closed: the notice is lost, the program still runs */
    }
    argv[0] = "python3";
    execvp("python3", argv);
    fprintf(stderr, "py-exec: cannot run python3: %s\n", strerror(errno));
    exit(127);
}

static int recv_reply(int s, struct pyx_reply *rep, int *fd)
{
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {rep, sizeof(*rep)};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
    ssize_t n;
    do
        n = recvmsg(s, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof(*rep) || rep->magic != PYX_MAGIC)
        return -1;
    if (fd && pyx_take_fds(&mh, fd, 1) == 0)
        *fd = -1;
    return 0;
}

static int send_all(int s, const void *buf, size_t len, const int *fds, size_t nfds)
{
    char cbuf[CMSG_SPACE(sizeof(int) * PYX_FDS_PER_MSG)];
    struct iovec iov = {(void *)buf, len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds) {
        mh.msg_control = cbuf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    ssize_t n;
    do
        n = sendmsg(s, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)len ? 0 : -1;
}

/* The descriptors python3 would inherit: every open one without close-on-exec. The working
 * directory goes first. 0, or -1 when there are more than the protocol carries. */
static int collect_fds(struct pyx_request *req, int *fds, int cwd_fd, int sock)
{
    req->nfds = 0;
    fds[req->nfds] = cwd_fd;
    req->fd_target[req->nfds++] = -1;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int dfd = dirfd(d);
    struct dirent *e;
    int r = 0;
    while ((e = readdir(d))) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        if (*end || end == e->d_name || fd == dfd || fd == sock || fd == cwd_fd)
            continue;
        int flags = fcntl((int)fd, F_GETFD);
        if (flags < 0 || (flags & FD_CLOEXEC))
            continue;
        if (req->nfds >= PYX_MAX_FDS) {
            r = -1;
            break;
        }
        fds[req->nfds] = (int)fd;
        req->fd_target[req->nfds++] = (int32_t)fd;
    }
    closedir(d);
    return r;
}

static void collect_attributes(struct pyx_request *req)
{
    mode_t m = umask(0);
    umask(m);
    req->umask = m;
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, 0);
    req->nice = errno ? 0 : nice;
    req->stdin_tty = isatty(STDIN_FILENO) ? 1 : 0;
    sigset_t set;
    sigprocmask(SIG_BLOCK, NULL, &set);
    for (int s = 1; s <= 64; s++) {
        if (sigismember(&set, s) == 1)
            req->sigmask |= 1ull << (s - 1);
        struct sigaction sa;
        if (sigaction(s, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
            req->sigignored |= 1ull << (s - 1);
    }
    for (int i = 0; i < PYX_RLIMITS; i++) {
        struct rlimit rl;
        if (getrlimit(i, &rl) < 0)
            rl.rlim_cur = rl.rlim_max = RLIM_INFINITY;
        req->rlim[i][0] = rl.rlim_cur;
        req->rlim[i][1] = rl.rlim_max;
    }
}

/* argv[1..] then the environment, each with its NUL. */
static char *collect_strings(int argc, char **argv, char **envp, struct pyx_request *req)
{
    size_t len = 0;
    req->argc = (uint32_t)(argc - 1);
    req->envc = 0;
    for (int i = 1; i < argc; i++)
        len += strlen(argv[i]) + 1;
    for (char **e = envp; *e; e++, req->envc++)
        len += strlen(*e) + 1;
    if (len > PYX_MAX_STRINGS)
        return NULL;
    char *buf = malloc(len ? len : 1), *p = buf;
    if (!buf)
        return NULL;
    for (int i = 1; i < argc; i++)
        p = stpcpy(p, argv[i]) + 1;
    for (char **e = envp; *e; e++)
        p = stpcpy(p, *e) + 1;
    req->strings_len = (uint32_t)len;
    return buf;
}

static void forward_signal(int sig)
{
    int saved = errno;
    (void)syscall(SYS_pidfd_send_signal, child_pidfd, sig, NULL, 0);
    errno = saved;
}

/* Catches what python3 would have received, for the child; leaves ignored signals ignored. */
static void forward_signals(uint64_t ignored)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = forward_signal;
    sa.sa_flags = SA_RESTART;
    sigfillset(&sa.sa_mask);
    for (int s = 1; s < NSIG; s++) {
        if (s == SIGKILL || s == SIGSTOP || s == SIGCHLD || (ignored & (1ull << (s - 1))))
            continue;
        (void)sigaction(s, &sa, NULL); /* glibc's own signals refuse: they are not ours */
    }
}

/* Ends the way the child ended. */
__attribute__((noreturn)) static void end_like(int status)
{
    if (WIFEXITED(status))
        exit(WEXITSTATUS(status));
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : SIGKILL;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    (void)sigaction(sig, &sa, NULL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    sigprocmask(SIG_UNBLOCK, &one, NULL);
    kill(getpid(), sig);
    exit(128 + sig);
}

int main(int argc, char **argv, char **envp)
{
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (s < 0)
        run_cold(argv, "no socket");
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    memcpy(addr.sun_path + 1, PYX_SOCKET_NAME, sizeof(PYX_SOCKET_NAME) - 1);
    socklen_t alen =
        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + sizeof(PYX_SOCKET_NAME) - 1);
    if (connect(s, (struct sockaddr *)&addr, alen) < 0)
        run_cold(argv, "no listener in this jail");
    struct pyx_reply rep;
    if (recv_reply(s, &rep, NULL) < 0)
        run_cold(argv, why_text(PYX_WHY_DOWN));
    if (rep.kind == PYX_COLD || (rep.kind == PYX_UNAVAILABLE && rep.value == PYX_WHY_BUSY))
        run_cold(argv, NULL);
    if (rep.kind != PYX_HELLO)
        run_cold(argv, why_text(rep.kind == PYX_UNAVAILABLE ? rep.value : PYX_WHY_PROTOCOL));

    static struct pyx_request req;
    static int fds[PYX_MAX_FDS];
    req.magic = PYX_MAGIC;
    int cwd_fd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    char *strings = collect_strings(argc, argv, envp, &req);
    if (cwd_fd < 0 || !strings || collect_fds(&req, fds, cwd_fd, s) < 0)
        run_cold(argv, NULL); /* python3 reports what it finds itself */
    collect_attributes(&req);
    size_t head = offsetof(struct pyx_request, fd_target) + sizeof(int32_t) * req.nfds;
    int r = send_all(s, &req, head, NULL, 0);
    for (uint32_t i = 0; r == 0 && i < req.nfds; i += PYX_FDS_PER_MSG) {
        uint32_t n = req.nfds - i < PYX_FDS_PER_MSG ? req.nfds - i : PYX_FDS_PER_MSG;
        r = send_all(s, "f", 1, fds + i, n);
    }
    for (uint32_t off = 0; r == 0 && off < req.strings_len; off += PYX_CHUNK) {
        uint32_t n = req.strings_len - off < PYX_CHUNK ? req.strings_len - off : PYX_CHUNK;
        r = send_all(s, strings + off, n, NULL, 0);
    }
    free(strings);
    close(cwd_fd);
    /* Descriptors in flight are counted per host user, which every jail shares: a send that
     * fails for want of them is a shortage, not a fault (python3 cold says nothing either). */
    if (r < 0)
        run_cold(argv, errno == ETOOMANYREFS ? NULL : why_text(PYX_WHY_SETUP));
    if (recv_reply(s, &rep, &child_pidfd) < 0)
        run_cold(argv, why_text(PYX_WHY_SETUP));
    if (rep.kind == PYX_COLD)
        run_cold(argv, NULL);
    if (rep.kind != PYX_STARTED || child_pidfd < 0)
        run_cold(argv, why_text(rep.kind == PYX_UNAVAILABLE ? rep.value : PYX_WHY_PROTOCOL));
    forward_signals(req.sigignored);
    /* The program runs: from here on python3 is the child, and its end is ours. */
    if (recv_reply(s, &rep, NULL) < 0 || rep.kind != PYX_EXIT) {
        fputs("py-exec: lost the warm interpreter's child\n", stderr);
        end_like(SIGKILL); /* its monitor is gone: nothing can tell how it ended */
    }
    end_like(rep.value);
}
