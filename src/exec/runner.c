#include "exec/runner.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "util/timeutil.h"

/* Reads what is available on one pipe. Returns 1 while open, 0 at EOF, -errno on error. */
static int drain(int fd, int stream, const struct runner_opts *o, char *chunk)
{
    for (int i = 0; i < 16; i++) { /* bounded, so one busy stream cannot starve the other */
        ssize_t n = read(fd, chunk, RUNNER_CHUNK);
        if (n > 0) {
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

int runner_run(struct jail_proc *proc, const struct runner_opts *opts, struct runner_result *ret)
{
    static __thread char chunk[RUNNER_CHUNK];
    struct runner_result res;
    memset(&res, 0, sizeof(res));
    int64_t start = time_mono_ms();
    int64_t deadline = opts->timeout_ms > 0 ? start + opts->timeout_ms : 0;
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
        if (deadline && !killed) {
            int64_t left = deadline - time_mono_ms();
            timeout = left > 0 ? (int)(left > 1000000 ? 1000000 : left) : 0;
        }
        int n = poll(pfd, 4, timeout);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            break;
        }
        if (deadline && !killed && time_mono_ms() >= deadline) {
            res.timed_out = true;
            killed = true;
            jail_kill(proc);
        }
        if (pfd[3].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) {
            res.cancelled = true;
            killed = true;
            jail_kill(proc);
        }
        for (int s = 0; s < 2; s++) {
            if (!pfd[s].revents)
                continue;
            int d = drain(pfd[s].fd, s + 1, opts, chunk);
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
