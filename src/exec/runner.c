#include "exec/runner.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
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

/* Reads what is available on one pipe, adding the byte count to *got. Returns 1 while open, 0
 * at EOF, -errno on error. */
static int drain(int fd, int stream, const struct runner_opts *o, char *chunk, size_t *got)
{
    for (int i = 0; i < 16; i++) { /* bounded, so one busy stream cannot starve the other */
        ssize_t n = read(fd, chunk, RUNNER_CHUNK);
        if (n > 0) {
            *got += (size_t)n;
            if (o->on_output)
                o->on_output(o->ud, stream, chunk, (size_t)n);
            continue;
        }
        if (n == 0)
            return 0;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN ? 1 : -errno;
    }
    return 1;
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

int runner_run(struct jail_proc *proc, const struct runner_opts *opts, struct runner_result *ret)
{
    static __thread char chunk[RUNNER_CHUNK];
    /* best effort: where the kernel refuses, the default pipe size only costs speed */
    (void)fcntl(jail_proc_stdout_fd(proc), F_SETPIPE_SZ, RUNNER_PIPE_SIZE);
    (void)fcntl(jail_proc_stderr_fd(proc), F_SETPIPE_SZ, RUNNER_PIPE_SIZE);
    size_t total = 0;
    struct runner_result res;
    memset(&res, 0, sizeof(res));
    int64_t start = time_mono_ms();
    int64_t deadline = opts->timeout_ms > 0 ? start + opts->timeout_ms : 0;
    bool watching = opts->watch && opts->watch_ms > 0;
    int64_t next_watch = watching ? start + opts->watch_ms : 0;
    bool open_out = true, open_err = true, exited = false, killed = false;
    int cancel_fd = opts->cancel_fd;
    int r = 0;
    while (open_out || open_err || !exited) {
        struct pollfd pfd[4] = {
            {open_out ? jail_proc_stdout_fd(proc) : -1, POLLIN, 0},
            {open_err ? jail_proc_stderr_fd(proc) : -1, POLLIN, 0},
            {exited ? -1 : jail_proc_pidfd(proc), POLLIN, 0},
            {killed ? -1 : cancel_fd, POLLRDHUP, 0},
        };
        int timeout = -1;
        int64_t wake = 0; /* the earlier of the deadline and the next watch */
        if (!killed) {
            wake = deadline;
            if (watching && (!wake || next_watch < wake))
                wake = next_watch;
        }
        if (wake) {
            int64_t left = wake - time_mono_ms();
            timeout = left > 0 ? (int)(left > 1000000 ? 1000000 : left) : 0;
        }
        int n = poll(pfd, 4, timeout);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            break;
        }
        int64_t now = time_mono_ms();
        if (deadline && !killed && now >= deadline) {
            res.timed_out = true;
            killed = true;
            jail_kill(proc);
        }
        if (watching && !killed && !exited && now >= next_watch) {
            int64_t delay = opts->watch_ms;
            if (opts->watch(opts->watch_ud, &delay)) {
                res.stopped = true;
                killed = true;
                jail_kill(proc);
            }
            next_watch = time_mono_ms() + (delay > 0 ? delay : 1);
        }
        if (pfd[3].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) {
            res.cancelled = true;
            killed = true;
            jail_kill(proc);
        }
        size_t round = 0;
        for (int s = 0; s < 2; s++) {
            if (!pfd[s].revents)
                continue;
            int d = drain(pfd[s].fd, s + 1, opts, chunk, &round);
            if (d < 0) {
                r = d;
                break;
            }
            if (d == 0)
                *(s == 0 ? &open_out : &open_err) = false;
        }
        if (r < 0)
            break;
        if (pfd[2].revents)
            exited = true;
        total += round;
        if (!exited && !killed)
            pause_for_bulk(total, round);
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

void runner_buffer_init(struct runner_buffer *b, size_t cap)
{
    memset(b, 0, sizeof(*b));
    b->out = (struct buf)BUF_INIT(cap);
    b->err = (struct buf)BUF_INIT(cap);
    b->cap = cap;
}

void runner_buffer_release(struct runner_buffer *b)
{
    buf_release(&b->out);
    buf_release(&b->err);
}

void runner_buffer_on_output(void *ud, int stream, const char *data, size_t len)
{
    struct runner_buffer *b = ud;
    struct buf *t = stream == 1 ? &b->out : &b->err;
    bool *trunc = stream == 1 ? &b->out_truncated : &b->err_truncated;
    size_t room = b->cap - t->len;
    size_t take = len < room ? len : room;
    if (take && buf_add(t, data, take) < 0)
        *trunc = true;
    if (take < len)
        *trunc = true;
}
