/*
 * batch — exec-sync-batch (docs/API.md "Exec").
 *
 * Write mode runs every script in ONE bash process so that variables, functions, exports,
 * aliases, options and cwd carry from one script to the next. A small driver (below) reads the
 * scripts, NUL-terminated, from its stdin one at a time and `eval`s each in a subshell that
 * stays alive across scripts; the driver reports on fd 3 (the report pipe) "S" when a script
 * starts and "E<code> <cwd>" when it ends. The server feeds the next script only after the
 * previous one ended (so stopOnError can stop feeding), and attributes stdout/stderr to the
 * running script: at each marker the output pipes are drained first, because everything the
 * script wrote happened before its marker.
 *
 * `exit N` in a script ends only that script: it ends the subshell, whose EXIT trap saves the
 * shell state (variables incl. exported ones, functions, aliases, set -o / shopt options, cwd)
 * to /dev/shm (tmpfs private to the jail, never persisted), reports E<N>, and the driver starts
 * a new subshell that restores the state and goes on with the next script. What does not
 * survive an `exit`: traps, background jobs' job table, open file descriptors, the directory
 * stack, positional parameters, local variables of running functions.
 *
 * Timeouts: the running script's deadline is min(batch start + timeoutMs, script start +
 * perScriptTimeoutMs). At the deadline the whole jail is killed: that script gets exitCode -1
 * and "timeout", the ones that never started get "timeout" too (the shell is gone). What ran
 * before commits, like a single exec's timeout.
 *
 * Read-only mode runs each script as its own read-only exec, BATCH_WORKERS at a time.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exec/engine_internal.h"
#include "exec/jail.h"
#include "util/err.h"
#include "util/path.h"
#include "util/timeutil.h"

#define BATCH_MIN_CAP (1024 * 1024)

static const char driver[] =
    "__sqlfs_state=/dev/shm/.sqlfs-batch-state\n"
    "__sqlfs_save() {\n"
    "  {\n"
    "    local __v\n"
    "    for __v in $(compgen -v); do\n"
    "      case $__v in\n"
    "        BASH*|EUID|PPID|UID|SHELLOPTS|GROUPS|FUNCNAME|PIPESTATUS|_|LINENO|RANDOM|SRANDOM|\\\n"
    "        SECONDS|EPOCHREALTIME|EPOCHSECONDS|HISTCMD|DIRSTACK|OPTIND|OPTERR|COMP_*|\\\n"
    "        __sqlfs_*|__v) ;;\n"
    "        *) declare -p \"$__v\" 2>/dev/null ;;\n"
    "      esac\n"
    "    done\n"
    "    declare -f\n"
    "    alias -p\n"
    "    shopt -p\n"
    "    set +o\n"
    "    printf 'cd -- %q\\n' \"$PWD\"\n"
    "  } > \"$__sqlfs_state\" 2>/dev/null\n"
    "}\n"
    "__sqlfs_shell() {\n"
    "  if [ -f \"$__sqlfs_state\" ]; then\n"
    "    . \"$__sqlfs_state\" >/dev/null 2>&1; command rm -f \"$__sqlfs_state\"\n"
    "  fi\n"
    "  __sqlfs_busy=0\n"
    "  trap '__sqlfs_rc=$?; if [ \"$__sqlfs_busy\" = 1 ]; then __sqlfs_save; "
    "builtin printf \"E%d %s\\0\" \"$__sqlfs_rc\" \"$PWD\" >&3; fi' EXIT\n"
    "  while IFS= read -r -d '' __sqlfs_s; do\n"
    "    builtin printf 'S\\0' >&3\n"
    "    __sqlfs_busy=1\n"
    "    eval \"$__sqlfs_s\" </dev/null\n"
    "    __sqlfs_rc=$?\n"
    "    __sqlfs_busy=0\n"
    "    builtin printf 'E%d %s\\0' \"$__sqlfs_rc\" \"$PWD\" >&3\n"
    "  done\n"
    "  exit 0\n"
    "}\n"
    "while :; do\n"
    "  ( __sqlfs_shell )\n"
    "  [ -f \"$__sqlfs_state\" ] || break\n"
    "done\n";

void batch_results_release(struct batch_result *results, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        buf_release(&results[i].out);
        buf_release(&results[i].err);
    }
}

struct batch_run {
    const struct batch_params *p;
    struct batch_result *res;
    size_t cap;            /* per script and stream */
    ssize_t cur;           /* running script, -1 between scripts */
    ssize_t last;          /* last script that started (late output goes there) */
    size_t fed;            /* scripts written to the control pipe */
    bool stop;             /* feed nothing more */
    int64_t batch_start;
    int64_t script_start;
    char *cwd;             /* last reported cwd */
    struct buf control;    /* bytes not yet written to the control pipe */
    struct buf report;     /* report bytes not yet parsed */
};

static void keep_output(struct batch_run *b, int stream, const char *data, size_t len)
{
    ssize_t i = b->cur >= 0 ? b->cur : b->last;
    if (i < 0)
        return;
    struct batch_result *r = &b->res[i];
    struct buf *buf = stream == 1 ? &r->out : &r->err;
    bool *trunc = stream == 1 ? &r->out_truncated : &r->err_truncated;
    size_t room = buf->len < b->cap ? b->cap - buf->len : 0;
    if (len > room) {
        *trunc = true;
        len = room;
    }
    if (len && buf_add(buf, data, len) < 0)
        *trunc = true;
}

/* Reads everything available from a non-blocking output pipe. Returns false at EOF. */
static bool drain(struct batch_run *b, int fd, int stream)
{
    char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n > 0) {
            keep_output(b, stream, chunk, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return !(n == 0);
    }
}

static int feed_next(struct batch_run *b)
{
    if (b->stop || b->fed >= b->p->n)
        return 0;
    const struct batch_script *s = &b->p->scripts[b->fed++];
    int r = buf_add(&b->control, s->script, s->script_len);
    if (r == 0)
        r = buf_add(&b->control, "", 1);
    return r;
}

/* Handles one report record (without its NUL). */
static int on_record(struct batch_run *b, const char *rec, size_t len, int outfd, int errfd)
{
    /* Output already in the pipes was written before this record: before an E it belongs to
     * the ending script; before an S there is none of the previous script left (its E came
     * first), so the S is handled before draining and the new script's early output stays
     * with it. */
    if (!(len >= 1 && rec[0] == 'S')) {
        drain(b, outfd, 1);
        drain(b, errfd, 2);
    }
    if (len >= 1 && rec[0] == 'S') {
        if (b->last + 1 >= (ssize_t)b->p->n)
            return 0; /* a script started a nested driver? ignore */
        b->cur = b->last + 1;
        b->last = b->cur;
        b->res[b->cur].started = true;
        b->script_start = time_mono_ms();
        drain(b, outfd, 1);
        drain(b, errfd, 2);
        return 0;
    }
    if (len >= 2 && rec[0] == 'E' && b->cur >= 0) {
        struct batch_result *r = &b->res[b->cur];
        char *sp = memchr(rec, ' ', len);
        char num[16];
        size_t nl = (sp ? (size_t)(sp - rec) : len) - 1;
        if (nl >= sizeof(num))
            nl = sizeof(num) - 1;
        memcpy(num, rec + 1, nl);
        num[nl] = '\0';
        r->exit_code = atoi(num) & 0xff;
        r->duration_ms = time_mono_ms() - b->script_start;
        if (sp && (size_t)(sp - rec) + 1 < len) {
            char *norm = NULL;
            const char *path = sp + 1;
            size_t plen = len - (size_t)(path - rec);
            if (plen && path[0] == '/' && path_normalize(path, plen, &norm) == 0) {
                free(b->cwd);
                b->cwd = norm;
            }
        }
        b->cur = -1;
        if (b->p->stop_on_error && r->exit_code != 0)
            b->stop = true;
        return feed_next(b);
    }
    return 0;
}

static int parse_reports(struct batch_run *b, int outfd, int errfd)
{
    for (;;) {
        char *nul = memchr(b->report.data ? b->report.data : "", '\0', b->report.len);
        if (!b->report.data || !nul)
            return 0;
        size_t len = (size_t)(nul - b->report.data);
        int r = on_record(b, b->report.data, len, outfd, errfd);
        buf_consume(&b->report, len + 1);
        if (r < 0)
            return r;
    }
}

static int64_t deadline_of(const struct batch_run *b)
{
    int64_t d = b->batch_start + b->p->timeout_ms;
    if (b->cur >= 0 && b->p->per_script_timeout_ms > 0 &&
        b->script_start + b->p->per_script_timeout_ms < d)
        d = b->script_start + b->p->per_script_timeout_ms;
    return d;
}

/* The poll loop of a write-mode batch. Returns when the jail has ended. */
static int batch_loop(struct batch_run *b, struct jail_proc *proc, int report_fd, int control_fd)
{
    int outfd = jail_proc_stdout_fd(proc), errfd = jail_proc_stderr_fd(proc);
    int pidfd = jail_proc_pidfd(proc);
    bool out_open = true, err_open = true, ended = false, killed = false;
    int r = feed_next(b);
    while (r == 0 && !(ended && !out_open && !err_open)) {
        if (control_fd >= 0 && b->control.len == 0 && (b->stop || b->fed >= b->p->n) &&
            b->cur < 0) {
            close(control_fd); /* EOF: the driver leaves its loop */
            control_fd = -1;
        }
        struct pollfd fds[6];
        int nfds = 0;
        int i_out = -1, i_err = -1, i_ctl = -1, i_pid = -1, i_can = -1;
        if (out_open)
            fds[i_out = nfds++] = (struct pollfd){.fd = outfd, .events = POLLIN};
        if (err_open)
            fds[i_err = nfds++] = (struct pollfd){.fd = errfd, .events = POLLIN};
        if (report_fd >= 0)
            fds[nfds++] = (struct pollfd){.fd = report_fd, .events = POLLIN};
        if (control_fd >= 0 && b->control.len > 0)
            fds[i_ctl = nfds++] = (struct pollfd){.fd = control_fd, .events = POLLOUT};
        if (!ended)
            fds[i_pid = nfds++] = (struct pollfd){.fd = pidfd, .events = POLLIN};
        if (b->p->cancel_fd >= 0 && !killed)
            fds[i_can = nfds++] = (struct pollfd){.fd = b->p->cancel_fd, .events = POLLRDHUP};
        int64_t wait = killed || ended ? 100 : deadline_of(b) - time_mono_ms();
        if (wait < 0)
            wait = 0;
        int n = poll(fds, (nfds_t)nfds, (int)(wait > 1000 ? 1000 : wait));
        if (n < 0 && errno != EINTR)
            return -errno;
        if (!killed && !ended && time_mono_ms() >= deadline_of(b)) {
            jail_kill(proc);
            killed = true;
            if (b->cur >= 0) {
                b->res[b->cur].error = "timeout";
                b->res[b->cur].exit_code = -1;
                b->res[b->cur].duration_ms = time_mono_ms() - b->script_start;
            }
            for (size_t k = 0; k < b->p->n; k++)
                if (!b->res[k].started && !b->res[k].error)
                    b->res[k].error = "timeout";
        }
        if (n <= 0)
            continue;
        if (i_can >= 0 && (fds[i_can].revents & (POLLRDHUP | POLLHUP | POLLERR))) {
            jail_kill(proc);
            killed = true;
        }
        /* Markers first: output in the pipes may belong to a script whose "S" is already
         * waiting in the report pipe (it was written before the script ran). */
        while (report_fd >= 0 && r == 0) {
            char chunk[4096];
            ssize_t got = read(report_fd, chunk, sizeof(chunk));
            if (got > 0) {
                r = buf_add(&b->report, chunk, (size_t)got);
                if (r == 0)
                    r = parse_reports(b, outfd, errfd);
                continue;
            }
            if (got == 0)
                report_fd = -1;
            else if (errno == EINTR)
                continue;
            break;
        }
        if (i_out >= 0 && fds[i_out].revents)
            out_open = drain(b, outfd, 1);
        if (i_err >= 0 && fds[i_err].revents)
            err_open = drain(b, errfd, 2);
        if (i_ctl >= 0 && (fds[i_ctl].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = write(control_fd, b->control.data, b->control.len);
            if (w > 0)
                buf_consume(&b->control, (size_t)w);
            else if (w < 0 && errno != EAGAIN && errno != EINTR)
                buf_reset(&b->control); /* the shell is gone */
        }
        if (i_pid >= 0 && fds[i_pid].revents)
            ended = true;
    }
    if (control_fd >= 0)
        close(control_fd);
    return r;
}

static int run_write_batch(struct exec_engine *e, struct sandbox_rec *rec,
                           const struct batch_params *p, struct batch_result *res,
                           struct exec_session **ret_rest)
{
    struct exec_session *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    int ctl[2] = {-1, -1};
    struct jail_proc *proc = NULL;
    struct batch_run b = {
        .p = p,
        .res = res,
        .cur = -1,
        .last = -1,
        .control = BUF_INIT(0),
        .report = BUF_INIT(0),
    };
    size_t cap = (size_t)e->app->cfg->max_exec_output_bytes / p->n;
    b.cap = cap < BATCH_MIN_CAP ? BATCH_MIN_CAP : cap;
    if (b.cap > (size_t)e->app->cfg->max_exec_output_bytes)
        b.cap = (size_t)e->app->cfg->max_exec_output_bytes;
    int r = exec_session_begin(e, rec, s);
    if (r == 0 && pipe2(ctl, O_CLOEXEC) < 0)
        r = -errno;
    if (r == 0 && fcntl(ctl[1], F_SETFL, O_NONBLOCK) < 0)
        r = -errno;
    if (r == 0) {
        struct exec_spawn sp = {
            .script = driver,
            .script_len = sizeof(driver) - 1,
            .cwd = rec->cwd,
            .cwd_is_stored = true,
            .stdin_fd = ctl[0],
        };
        r = exec_session_spawn(s, &sp, &proc);
    }
    if (ctl[0] >= 0)
        close(ctl[0]);
    if (r == 0) {
        exec_session_close_report_writer(s);
        b.batch_start = time_mono_ms();
        r = batch_loop(&b, proc, s->report[0], ctl[1]);
        ctl[1] = -1; /* closed by the loop */
        struct jail_status st;
        int w = jail_wait(proc, &st);
        if (r == 0 && w < 0)
            r = w;
        exec_session_free_proc(s, proc);
    }
    if (ctl[1] >= 0)
        close(ctl[1]);
    for (size_t i = 0; i < p->n; i++) {
        if (!res[i].started && !res[i].error)
            res[i].error = b.stop ? "skipped" : "aborted";
        if (!res[i].started)
            res[i].exit_code = -1;
    }
    if (r == 0) {
        char info[96];
        snprintf(info, sizeof(info), "{\"batch\":%zu}", p->n);
        r = exec_session_finish(s, false, b.cwd, info, NULL);
    }
    free(b.cwd);
    buf_release(&b.control);
    buf_release(&b.report);
    exec_session_leave(s);
    if (r == 0 && ret_rest) {
        *ret_rest = s;
        return 0;
    }
    exec_rest_finish(s);
    return r;
}

/* ---- read-only: parallel jails ---- */

struct ro_pool {
    struct exec_engine *e;
    struct sandbox_rec *rec;
    const struct batch_params *p;
    struct batch_result *res;
    int64_t deadline;
    pthread_mutex_t mu;
    size_t next;
    int error; /* first failure */
    char error_msg[512];
};

static void *ro_worker(void *arg)
{
    struct ro_pool *pool = arg;
    for (;;) {
        pthread_mutex_lock(&pool->mu);
        size_t i = pool->next++;
        bool stop = pool->error != 0;
        pthread_mutex_unlock(&pool->mu);
        if (i >= pool->p->n || stop)
            return NULL;
        struct batch_result *res = &pool->res[i];
        int64_t left = pool->deadline - time_mono_ms();
        if (left <= 0) {
            res->error = "timeout";
            res->exit_code = -1;
            continue;
        }
        if (pool->p->per_script_timeout_ms > 0 && pool->p->per_script_timeout_ms < left)
            left = pool->p->per_script_timeout_ms;
        struct exec_params ep = {
            .script = pool->p->scripts[i].script,
            .script_len = pool->p->scripts[i].script_len,
            .timeout_ms = left,
            .read_only = true,
            .cancel_fd = pool->p->cancel_fd,
        };
        struct exec_outcome out;
        err_clear();
        int r = exec_engine_run(pool->e, pool->rec, &ep, &out);
        res->started = true;
        res->out = out.out;
        res->err = out.err;
        res->out_truncated = out.out_truncated;
        res->err_truncated = out.err_truncated;
        res->exit_code = out.timed_out ? -1 : out.exit_code;
        res->duration_ms = out.duration_ms;
        if (out.timed_out)
            res->error = "timeout";
        if (r < 0) {
            pthread_mutex_lock(&pool->mu);
            if (!pool->error || r == -ERR_READONLY_VIOLATION) {
                pool->error = r;
                const char *m = err_message();
                snprintf(pool->error_msg, sizeof(pool->error_msg), "%s", m ? m : "");
            }
            pthread_mutex_unlock(&pool->mu);
        }
    }
}

static int run_read_only_batch(struct exec_engine *e, struct sandbox_rec *rec,
                               const struct batch_params *p, struct batch_result *res)
{
    struct ro_pool pool = {
        .e = e,
        .rec = rec,
        .p = p,
        .res = res,
        .deadline = time_mono_ms() + p->timeout_ms,
    };
    pthread_mutex_init(&pool.mu, NULL);
    size_t workers = (size_t)e->app->cfg->batch_workers;
    if (workers < 1)
        workers = 1;
    if (workers > p->n)
        workers = p->n;
    pthread_t th[64];
    if (workers > 64)
        workers = 64;
    size_t started = 0;
    for (size_t i = 0; i < workers; i++) {
        if (pthread_create(&th[i], NULL, ro_worker, &pool) != 0)
            break;
        started++;
    }
    if (started == 0)
        ro_worker(&pool);
    for (size_t i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_destroy(&pool.mu);
    for (size_t i = 0; i < p->n; i++)
        if (!res[i].started && !res[i].error) {
            res[i].error = "aborted";
            res[i].exit_code = -1;
        }
    if (pool.error)
        return err_set(pool.error, "%s", pool.error_msg[0] ? pool.error_msg : "batch failed");
    return 0;
}

int exec_engine_run_batch(struct exec_engine *e, struct sandbox_rec *rec,
                          const struct batch_params *p, struct batch_result *results,
                          struct exec_session **ret_rest)
{
    if (ret_rest)
        *ret_rest = NULL;
    for (size_t i = 0; i < p->n; i++) {
        memset(&results[i], 0, sizeof(results[i]));
        results[i].exit_code = -1;
    }
    return p->read_only ? run_read_only_batch(e, rec, p, results)
                        : run_write_batch(e, rec, p, results, ret_rest);
}
