#include "exec/runner.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "util/timeutil.h"

/* Capacity asked for the script's pipes: a bulk writer can run on for a while without waking
 * the reader or blocking. Pipe pages are allocated only as data waits in them. */
#define RUNNER_PIPE_SIZE (1024 * 1024)
/* Bulk mode: once a script has written this much, the runner reads in batches (see pause). */
#define RUNNER_BULK_BYTES (256 * 1024)
/* How long a bulk reader lets output gather after catching up with the writer. */
#define RUNNER_GATHER_NS 1000000L
/* The wait between wake-ups once the jail was killed or has ended (its pipes are closing). */
#define RUNNER_ENDING_WAKE_MS 100

struct runner {
    struct jail_proc *proc;
    const struct runner_opts *opts;
    int fd[2];          /* stdout, stderr pipes (the proc's) */
    bool open[2];       /* not at EOF yet */
    char *chunk;        /* RUNNER_CHUNK bytes to read into */
    size_t round;       /* bytes read in this wake-up */
    size_t total;       /* bytes read in all */
    int64_t timeout_at; /* start + opts->timeout_ms, 0: none */
    int64_t next_watch; /* monotonic ms of the next watch, 0: no watch */
};

/* The deadline now (monotonic ms, 0: none): the hooks' or the timeout's. */
static int64_t deadline_of(const struct runner *run)
{
    const struct runner_hooks *h = run->opts->hooks;
    return h && h->deadline ? h->deadline(h->ud) : run->timeout_at;
}

/* Reads what one pipe has, at most RUNNER_DRAIN_READS reads and `max` bytes (so one busy stream
 * cannot starve the other), and delivers it. Marks the pipe closed at EOF. 0 or -errno. */
static int drain(struct runner *run, int s, size_t max)
{
    const struct runner_opts *o = run->opts;
    for (int i = 0; i < RUNNER_DRAIN_READS && max > 0; i++) {
        ssize_t n = read(run->fd[s], run->chunk, max < RUNNER_CHUNK ? max : RUNNER_CHUNK);
        if (n > 0) {
            run->round += (size_t)n;
            max -= (size_t)n;
            if (o->on_output)
                o->on_output(o->ud, s + 1, run->chunk, (size_t)n);
            continue;
        }
        if (n == 0) {
            run->open[s] = false;
            return 0;
        }
        if (errno == EINTR)
            continue;
        return errno == EAGAIN ? 0 : -errno;
    }
    return 0;
}

void runner_drain_pending(struct runner *run)
{
    for (int s = 0; s < 2; s++) {
        int n = 0;
        if (!run->open[s])
            continue;
        if (ioctl(run->fd[s], FIONREAD, &n) < 0)
            n = RUNNER_DRAIN_READS * RUNNER_CHUNK;
        /* a read failure here shows again, and fails the run, when the loop reads the pipe */
        if (n > 0)
            (void)drain(run, s, (size_t)n);
    }
}

/*
 * A script that writes a lot in small pieces (a pipeline's 4-8 KiB writes) would otherwise wake
 * the reader for every write, and the reader would hand each piece on as its own chunk: the
 * wake-ups and per-chunk work then cost more than the bytes. So once a script is in bulk mode
 * and the reader has caught up (a round read less than a chunk), the reader pauses briefly and
 * lets output gather in the (enlarged) pipe. A chunk is thereby delayed by at most
 * RUNNER_GATHER_NS; scripts with little output never pause.
 */
static void pause_for_bulk(size_t total, size_t round)
{
    if (total < RUNNER_BULK_BYTES || round == 0 || round >= RUNNER_CHUNK)
        return;
    struct timespec ts = {0, RUNNER_GATHER_NS};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Milliseconds poll() may wait until `wake` (0: none), at most RUNNER_WAKE_MS. */
static int wait_ms(int64_t wake)
{
    if (!wake)
        return RUNNER_WAKE_MS;
    int64_t left = wake - time_mono_ms();
    return left <= 0 ? 0 : left > RUNNER_WAKE_MS ? RUNNER_WAKE_MS : (int)left;
}

/* The checks of every wake-up, in order (runner.h); `cancel` is the cancel fd's revents,
 * `asked` a hook's kill. Returns true when the jail is to be killed. */
static bool check(struct runner *run, struct runner_result *res, short cancel, bool asked,
                  bool exited)
{
    const struct runner_opts *o = run->opts;
    const struct runner_hooks *h = o->hooks;
    if (cancel & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) {
        res->cancelled = true;
        return true;
    }
    if (asked)
        return true;
    if (exited)
        return false;
    int64_t now = time_mono_ms();
    if (run->next_watch && now >= run->next_watch) {
        int64_t delay = o->watch_ms;
        if (o->watch(o->watch_ud, &delay)) {
            res->stopped = true;
            return true;
        }
        run->next_watch = time_mono_ms() + (delay > 0 ? delay : 1);
    }
    int64_t deadline = deadline_of(run); /* after the hooks: it may have moved */
    if (!deadline || now < deadline)
        return false;
    if (h && h->deadline)
        return !h->expired || h->expired(h->ud);
    res->timed_out = true;
    return true;
}

int runner_run(struct jail_proc *proc, const struct runner_opts *opts, struct runner_result *ret)
{
    static __thread char chunk[RUNNER_CHUNK];
    const struct runner_hooks *h = opts->hooks;
    struct runner run = {
        .proc = proc,
        .opts = opts,
        .fd = {jail_proc_stdout_fd(proc), jail_proc_stderr_fd(proc)},
        .open = {true, true},
        .chunk = chunk,
    };
    /* best effort: where the kernel refuses, the default pipe size only costs speed */
    (void)fcntl(run.fd[0], F_SETPIPE_SZ, RUNNER_PIPE_SIZE);
    (void)fcntl(run.fd[1], F_SETPIPE_SZ, RUNNER_PIPE_SIZE);
    struct runner_result res;
    memset(&res, 0, sizeof(res));
    int64_t start = time_mono_ms();
    run.timeout_at = opts->timeout_ms > 0 ? time_mono_deadline_ms(start, opts->timeout_ms) : 0;
    run.next_watch = opts->watch && opts->watch_ms > 0 ? start + opts->watch_ms : 0;
    bool exited = false, killed = false;
    int r = 0;
    while (run.open[0] || run.open[1] || !exited) {
        struct pollfd pfd[4 + RUNNER_HOOK_FDS] = {
            {run.open[0] ? run.fd[0] : -1, POLLIN, 0},
            {run.open[1] ? run.fd[1] : -1, POLLIN, 0},
            {exited ? -1 : jail_proc_pidfd(proc), POLLIN, 0},
            {killed ? -1 : opts->cancel_fd, POLLRDHUP, 0},
        };
        int nh = h && h->poll_fds ? h->poll_fds(h->ud, pfd + 4) : 0;
        int64_t wake; /* the earlier of the deadline and the next watch */
        if (killed || exited) {
            wake = time_mono_ms() + RUNNER_ENDING_WAKE_MS;
        } else {
            wake = deadline_of(&run);
            if (run.next_watch && (!wake || run.next_watch < wake))
                wake = run.next_watch;
        }
        if (poll(pfd, (nfds_t)(4 + nh), wait_ms(wake)) < 0) {
            if (errno != EINTR) {
                r = -errno;
                break;
            }
            for (int i = 0; i < 4 + nh; i++) /* a signal: a wake-up like a timeout */
                pfd[i].revents = 0;
        }
        run.round = 0;
        int asked = h && h->woke ? h->woke(h->ud, &run, pfd + 4, nh) : 0;
        if (asked < 0) {
            r = asked;
            break;
        }
        for (int s = 0; s < 2 && r == 0; s++)
            if (pfd[s].revents)
                r = drain(&run, s, RUNNER_DRAIN_READS * RUNNER_CHUNK);
        if (r < 0)
            break;
        if (pfd[2].revents)
            exited = true;
        run.total += run.round;
        if (!killed) {
            killed = check(&run, &res, pfd[3].revents, asked == RUNNER_KILL, exited);
            if (killed)
                jail_kill(proc);
        }
        if (!killed && !exited)
            pause_for_bulk(run.total, run.round);
    }
    if (r < 0)
        jail_kill(proc);
    struct jail_status st;
    int w = jail_wait(proc, &st);
    if (r == 0 && w < 0)
        r = w;
    if (r < 0)
        return r;
    res.exit_code = st.exit_code;
    res.exit_signal = st.exit_signal;
    res.oom = st.oom;
    res.duration_ms = time_mono_ms() - start;
    *ret = res;
    return 0;
}
