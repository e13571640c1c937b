/*
 * batch — exec-sync-batch (docs/API.md "Exec").
 *
 * Write mode runs every script in ONE bash process so that variables, functions, exports,
 * aliases, options and cwd carry from one script to the next. A small driver (below) runs in
 * the jail's shell (A, the init's only child). A starts a subshell (B) that reads the scripts,
 * NUL-terminated, from its stdin (the control pipe) one at a time and `eval`s each; B stays
 * alive across scripts. B reports on fd 3 (the report pipe) "S" when a script starts and
 * "E<code> <cwd>" when it ends; each record is NUL-terminated and also preceded by a NUL, so
 * that bytes a script wrote to fd 3 without a NUL end there instead of hiding the record (a
 * record longer than any of ours is dropped unread). The server feeds the next script only after
 * the previous one ended (so stopOnError can stop feeding), and attributes stdout/stderr to the
 * running script: at each marker the output pipes are drained first, because everything the
 * script wrote happened before its marker.
 *
 * In a batch fd 3 blocks when full (the server reads it all along): no record is lost to what
 * a script wrote there. fd 3 is the scripts' too, so it has a budget: REPORT_BUDGET_FIXED bytes
 * plus REPORT_BUDGET_PER_SCRIPT per script, a few times what the driver's own records take. A
 * batch whose scripts write more there is killed and answered 413 PAYLOAD_TOO_LARGE; nothing
 * commits (the server can no longer tell which script did what).
 *
 * The loop is the runner's (exec/runner.h), with the batch's hooks (batch_drive): the report
 * and control pipes are served at every wake-up, a bounded amount, before the output pipes are
 * read, and every wake-up, whatever the pipes did, checks the client gone (its socket hung up),
 * the status channel's budget, the quota and the deadline. So a script that writes as fast as it
 * can to any of its pipes cannot keep the loop from its deadline or from noticing that the
 * client left.
 *
 * `exit N` in a script ends only that script: it ends B, whose EXIT trap saves the shell state
 * (variables incl. exported ones, functions, aliases, set -o / shopt options, cwd) to /dev/shm
 * (tmpfs private to the jail, never persisted), reports E<N>, and A starts a new B that restores
 * the state and goes on with the next script. What does not survive an `exit`: traps, background
 * jobs' job table, open file descriptors, the directory stack, positional parameters, local
 * variables of running functions. A script that replaces B (`exec prog`) or sets its own EXIT
 * trap leaves no saved state: A ends, and so does the batch.
 *
 * Timeouts. The batch's total budget (timeoutMs) kills the whole jail: the running script gets
 * exitCode -1 and "timeout", the ones that never started get "timeout" too. What ran before
 * commits, like a single exec's timeout.
 * A per-script timeout (perScriptTimeoutMs) ends only the running script. With one in force, B
 * saves the state before each script starts (so the state after the last completed script is
 * always on /dev/shm) and A traps SIGUSR1. At the script's deadline the server sends SIGUSR1 to
 * A (jail_signal_shell: a pidfd opened at spawn, while A is the init's only child); the trap
 * SIGKILLs every process of the jail but the init and A (`kill -1`: the script, its children,
 * daemons it started, setsid or not), A waits until they are all gone, reports "K" and waits
 * for an empty record on the control pipe before it starts a new B from the saved state (the
 * server sends two NULs: the first ends whatever B had half read when it died). The server
 * marks the script exitCode -1 "timeout" (an "E" it reads after asking counts for nothing: the
 * state is the one from before that script), drains the output that is still in the pipes into
 * it, and feeds the next script (again, if B died having read it but before "S"). So the next
 * script starts from the state after the last completed script, including its cwd. A "K" the
 * server did not ask for (a script sent SIGUSR1 to its shell, `kill -USR1 $$`) ends the running
 * script the same way, with exitCode 137. If the shell does not report within CUT_GRACE_MS,
 * the whole jail is killed and the scripts not started are "aborted". Without a per-script
 * timeout nothing is saved before a script and SIGUSR1 is not trapped: it ends A like any other
 * fatal signal, and with it the batch.
 *
 * Read-only mode runs each script as its own read-only exec, BATCH_WORKERS at a time.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exec/engine_internal.h"
#include "exec/runner.h"
#include "jail/jail.h"
#include "util/cleanup.h"
#include "util/err.h"
#include "util/log.h"
#include "util/path.h"
#include "util/rand.h"
#include "util/timeutil.h"

/* A report record is "S", "K" or "E<code> <cwd>": anything longer is not ours and is dropped. */
#define REPORT_RECORD_MAX (PATH_MAX + 64)
/* The most a batch may receive on the report pipe: the driver writes at most an S, an E and a K
 * per script (the E with the cwd, at most REPORT_RECORD_MAX); the fixed part is for scripts that
 * write a little to fd 3 themselves. */
#define REPORT_BUDGET_FIXED (64 * 1024)
#define REPORT_BUDGET_PER_SCRIPT (2 * REPORT_RECORD_MAX)
/* What one wake-up of the loop reads of the report pipe at most (the runner bounds the rest). */
#define REPORT_READ_PER_WAKE (64 * 1024)
/* How long the shell may take to report a per-script kill before the whole jail is killed. */
#define CUT_GRACE_MS 5000
/* The signal that asks the driver to kill the running script (its trap in `driver`). */
#define CUT_SIGNAL SIGUSR1

/* The driver (A's script; __sqlfs_shell is B). The first record on the control pipe is
 * __sqlfs_keep: "1" when a per-script timeout is in force, else "0". Bash details it relies on:
 * B is started in the background so that A's `wait` returns when the trap runs, with job
 * control on for the fork only, so that B neither ignores SIGINT/SIGQUIT nor reads /dev/null
 * (what a background job gets without it) and A's `wait` does not return when B stops; A's own
 * stderr is /dev/null, which keeps bash's "Killed" job notices out of the scripts' output; the
 * state is written with builtins and `>|` only, whatever PATH, functions or noclobber a script
 * left; `kill -1` returns failure once nothing but the init and A is left (zombies count), and
 * a read with a timeout on a fresh pty master (no slave, never readable) paces that loop. */
static const char driver[] =
    "__sqlfs_state=/dev/shm/.sqlfs-batch-state\n"
    "__sqlfs_exit=/dev/shm/.sqlfs-batch-exit\n"
    "__sqlfs_names=/dev/shm/.sqlfs-batch-names\n"
    "__sqlfs_save() {\n"
    "  builtin local __sqlfs_vs __sqlfs_eg=0\n"
    "  builtin shopt -q extglob && __sqlfs_eg=1\n"
    "  builtin shopt -s extglob\n"
    "  builtin compgen -v -X '@(BASH*|EUID|PPID|UID|SHELLOPTS|GROUPS|FUNCNAME|PIPESTATUS|_|"
    "LINENO|RANDOM|SRANDOM|SECONDS|EPOCHREALTIME|EPOCHSECONDS|HISTCMD|DIRSTACK|OPTIND|OPTERR|"
    "COMP_*|__sqlfs_*)' >| \"$__sqlfs_names\" 2>/dev/null\n"
    "  [ \"$__sqlfs_eg\" = 1 ] || builtin shopt -u extglob\n"
    "  builtin mapfile -t __sqlfs_vs < \"$__sqlfs_names\"\n"
    "  {\n"
    "    [ \"${#__sqlfs_vs[@]}\" = 0 ] || builtin declare -p \"${__sqlfs_vs[@]}\"\n"
    "    builtin declare -f\n"
    "    builtin alias -p\n"
    "    builtin shopt -p\n"
    "    builtin set +o\n"
    "    builtin printf 'cd -- %q\\n' \"$PWD\"\n"
    "  } >| \"$1\" 2>/dev/null\n"
    "}\n"
    "__sqlfs_shell() {\n"
    "  if [ -s \"$__sqlfs_from\" ]; then . \"$__sqlfs_from\" >/dev/null 2>&1; fi\n"
    "  >| \"$__sqlfs_exit\"\n"
    "  __sqlfs_busy=0\n"
    "  trap '__sqlfs_rc=$?; if [ \"$__sqlfs_busy\" = 1 ]; then __sqlfs_save \"$__sqlfs_exit\"; "
    "builtin printf \"\\0E%d %s\\0\" \"$__sqlfs_rc\" \"$PWD\" >&3; fi' EXIT\n"
    "  while IFS= read -r -d '' __sqlfs_s; do\n"
    "    [ -n \"$__sqlfs_s\" ] || continue\n"
    "    [ \"$__sqlfs_keep\" = 0 ] || __sqlfs_save \"$__sqlfs_state\"\n"
    "    builtin printf '\\0S\\0' >&3\n"
    "    __sqlfs_busy=1\n"
    "    eval \"$__sqlfs_s\" </dev/null\n"
    "    __sqlfs_rc=$?\n"
    "    __sqlfs_busy=0\n"
    "    builtin printf '\\0E%d %s\\0' \"$__sqlfs_rc\" \"$PWD\" >&3\n"
    "  done\n"
    "  exit 0\n"
    "}\n"
    "__sqlfs_settle() {\n"
    "  local __i __t __x\n"
    "  exec {__t}<>/dev/ptmx || __t=\n"
    "  for ((__i = 0; __i < 1000; __i++)); do\n"
    "    kill -KILL -1 || break\n"
    "    [ -z \"$__t\" ] || read -r -t 0.001 -u \"$__t\" __x\n"
    "  done\n"
    "  [ -z \"$__t\" ] || exec {__t}>&-\n"
    "}\n"
    "exec {__sqlfs_err}>&2 2>/dev/null\n"
    "IFS= read -r -d '' __sqlfs_keep\n"
    "__sqlfs_from=\n"
    "__sqlfs_cut=0\n"
    "__sqlfs_sigs=0\n"
    "[ \"$__sqlfs_keep\" = 0 ] || "
    "trap '__sqlfs_cut=1; __sqlfs_sigs=$((__sqlfs_sigs + 1)); kill -KILL -1' USR1\n"
    "while :; do\n"
    "  set -m\n"
    "  ( exec 2>&$__sqlfs_err {__sqlfs_err}>&-; set +m; __sqlfs_shell ) <&0 &\n"
    "  set +m\n"
    "  __sqlfs_b=$!\n"
    "  [ \"$__sqlfs_cut\" = 0 ] || kill -KILL \"$__sqlfs_b\"\n"
    "  while __sqlfs_n=$__sqlfs_sigs; wait \"$__sqlfs_b\"; "
    "[ \"$__sqlfs_n\" != \"$__sqlfs_sigs\" ]; do :; done\n"
    "  if [ \"$__sqlfs_cut\" = 1 ]; then\n"
    "    __sqlfs_settle\n"
    "    __sqlfs_cut=0\n"
    "    builtin printf '\\0K\\0' >&3\n"
    "    while IFS= read -r -d '' __sqlfs_r && [ -n \"$__sqlfs_r\" ]; do :; done\n"
    "    __sqlfs_from=$__sqlfs_state\n"
    "  elif [ -s \"$__sqlfs_exit\" ]; then\n"
    "    __sqlfs_from=$__sqlfs_exit\n"
    "  else\n"
    "    break\n"
    "  fi\n"
    "done\n";

void batch_results_release(struct batch_result *results, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        capture_release(&results[i].output);
    }
}

struct batch_run {
    struct exec_engine *e;
    const struct batch_params *p;
    struct batch_result *res;
    struct jail_proc *proc;             /* the batch's jail */
    bool shell_pinned;                  /* its shell can be signalled (jail_pin_shell) */
    struct capture_allowance allowance; /* the output all the scripts may keep */
    ssize_t cur;                        /* running script, -1 between scripts */
    ssize_t last;                       /* last script that started (late output goes there) */
    size_t fed;                         /* scripts written to the control pipe */
    bool stop;                          /* feed nothing more */
    bool cutting;   /* the shell was asked to kill the running script; no "K" yet */
    int64_t cut_at; /* when it was asked */
    int64_t batch_start;
    int64_t script_start;
    char *cwd;                /* last reported cwd */
    struct buf control;       /* bytes not yet written to the control pipe */
    struct buf report;        /* report record being received (no NUL yet) */
    bool report_skip;         /* the record being received is too long: dropped up to its NUL */
    int report_fd;            /* the report pipe's read end, -1 once done with */
    int control_fd;           /* the control pipe's write end, -1 once closed */
    int i_ctl;                /* index of control_fd among the hook's poll descriptors, -1 */
    size_t report_read;       /* bytes read from the report pipe */
    size_t report_budget;     /* the most it may bring (REPORT_BUDGET_*) */
    bool overflow;            /* the scripts wrote more than that: the batch is killed, 413 */
    struct quota_watch quota; /* the upper against the sandbox's quota (exec/quota.c) */
};

/* The runner's on_output: output goes to the running script, or to the last one that ran. */
static void keep_output(void *ud, int stream, const char *data, size_t len)
{
    struct batch_run *b = ud;
    ssize_t i = b->cur >= 0 ? b->cur : b->last;
    if (i >= 0)
        capture_add(&b->res[i].output, stream, data, len);
}

static int feed_next(struct batch_run *b)
{
    if (b->stop || b->fed >= b->p->n)
        return 0;
    const struct batch_script *s = &b->p->scripts[b->fed++];
    /* An empty record means "no script" to the driver: an empty script is sent as a space. */
    int r = s->script_len ? buf_add(&b->control, s->script, s->script_len)
                          : buf_add(&b->control, " ", 1);
    if (r == 0)
        r = buf_add(&b->control, "", 1);
    return r;
}

static void mark_timeout(struct batch_run *b, ssize_t i)
{
    if (i < 0 || b->res[i].error)
        return;
    b->res[i].error = "timeout";
    b->res[i].exit_code = -1;
    b->res[i].duration_ms = time_mono_ms() - b->script_start;
}

/* The script ended: exit code recorded, what comes next. */
static int script_ended(struct batch_run *b)
{
    struct batch_result *r = &b->res[b->cur];
    b->cur = -1;
    if (b->p->stop_on_error && r->exit_code != 0)
        b->stop = true;
    return feed_next(b);
}

/* "E<code> <cwd>": the running script ended. */
static int on_end(struct batch_run *b, const char *rec, size_t len)
{
    if (b->cur < 0 || b->cutting) /* while cutting, the script counts as timed out */
        return 0;
    struct batch_result *r = &b->res[b->cur];
    const char *sp = memchr(rec, ' ', len);
    char num[16];
    size_t nl = (sp ? (size_t)(sp - rec) : len) - 1;
    if (nl >= sizeof(num))
        nl = sizeof(num) - 1;
    memcpy(num, rec + 1, nl);
    num[nl] = '\0';
    r->exit_code = (int)(strtol(num, NULL, 10) & 0xff);
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
    return script_ended(b);
}

/* "K": the driver killed the running script and everything it started, and waits for an empty
 * record before it reads the next script (with a new shell restored from the state saved before
 * that script started). Whatever it had read of a script that never started is gone: that
 * script is sent again. */
static int on_killed(struct batch_run *b)
{
    int r = 0;
    if (b->cur >= 0 && !b->cutting) {
        /* not asked for: something in the script signalled the shell */
        b->res[b->cur].exit_code = 128 + SIGKILL;
        b->res[b->cur].duration_ms = time_mono_ms() - b->script_start;
    }
    b->cutting = false;
    buf_reset(&b->control);
    b->fed = (size_t)(b->last + 1);
    /* two NULs: the first ends a record torn by the kill, the second is the empty record */
    r = buf_add(&b->control, "\0", 2);
    if (r == 0 && b->cur >= 0)
        r = script_ended(b);
    else if (r == 0)
        r = feed_next(b);
    return r;
}

/* Handles one report record (without its NUL). */
static int on_record(struct batch_run *b, struct runner *run, const char *rec, size_t len)
{
    /* Output already in the pipes was written before this record: before an E or K it belongs
     * to the ending script; before an S there is none of the previous script left (its E came
     * first), so the S is handled before draining and the new script's early output stays
     * with it. Other records (empty ones, a script's bytes, an E that counts for nothing) leave
     * the output where it is. */
    if ((len >= 2 && rec[0] == 'E' && b->cur >= 0 && !b->cutting) || (len == 1 && rec[0] == 'K')) {
        runner_drain_pending(run);
    }
    if (len >= 1 && rec[0] == 'S') {
        if (b->cutting || b->last + 1 >= (ssize_t)b->p->n)
            return 0; /* not the driver's: ignore */
        b->cur = b->last + 1;
        b->last = b->cur;
        b->res[b->cur].started = true;
        b->script_start = time_mono_ms();
        runner_drain_pending(run);
        return 0;
    }
    if (len >= 2 && rec[0] == 'E')
        return on_end(b, rec, len);
    if (len == 1 && rec[0] == 'K')
        return on_killed(b);
    return 0;
}

/* Takes bytes read from the report pipe: NUL-terminated records. fd 3 is the script's too, so a
 * record longer than any of the driver's is dropped rather than held. */
static int take_reports(struct batch_run *b, struct runner *run, const char *data, size_t len)
{
    while (len > 0) {
        const char *nul = memchr(data, '\0', len);
        size_t n = nul ? (size_t)(nul - data) : len;
        if (!b->report_skip && b->report.len + n > REPORT_RECORD_MAX) {
            buf_reset(&b->report);
            b->report_skip = true;
        }
        if (!b->report_skip && n > 0) {
            int r = buf_add(&b->report, data, n);
            if (r < 0)
                return r;
        }
        if (!nul)
            return 0;
        if (!b->report_skip) {
            int r = on_record(b, run, buf_cstr(&b->report), b->report.len);
            if (r < 0)
                return r;
        }
        buf_reset(&b->report);
        b->report_skip = false;
        data += n + 1;
        len -= n + 1;
    }
    return 0;
}

/* Reads what is in the report pipe, at most REPORT_READ_PER_WAKE bytes; report_fd becomes -1
 * at its EOF, or once the batch's budget is spent (b->overflow is then set). */
static int read_reports(struct batch_run *b, struct runner *run)
{
    for (size_t round = 0; round < REPORT_READ_PER_WAKE;) {
        char chunk[4096];
        ssize_t got = read(b->report_fd, chunk, sizeof(chunk));
        if (got > 0) {
            round += (size_t)got;
            b->report_read += (size_t)got;
            if (b->report_read > b->report_budget) {
                b->overflow = true; /* the jail is killed: the pipe is not read any more */
                b->report_fd = -1;
                return 0;
            }
            int r = take_reports(b, run, chunk, (size_t)got);
            if (r < 0)
                return r;
            continue;
        }
        if (got == 0)
            b->report_fd = -1;
        else if (errno == EINTR)
            continue;
        return 0;
    }
    return 0;
}

/* Writes what the control pipe takes of the scripts still to send. */
static void write_control(struct batch_run *b)
{
    ssize_t w = write(b->control_fd, b->control.data, b->control.len);
    if (w > 0)
        buf_consume(&b->control, (size_t)w);
    else if (w < 0 && errno != EAGAIN && errno != EINTR)
        buf_reset(&b->control); /* the shell is gone */
}

/* runner hook: the report pipe, and the control pipe while it has something to send. Once
 * everything is sent and no script runs, the control pipe is closed: at its EOF the driver
 * leaves its loop. */
static int hook_poll_fds(void *ud, struct pollfd *fds)
{
    struct batch_run *b = ud;
    if (b->control_fd >= 0 && b->control.len == 0 && (b->stop || b->fed >= b->p->n) && b->cur < 0 &&
        !b->cutting) {
        b->control_fd = safe_close(b->control_fd);
    }
    int n = 0;
    b->i_ctl = -1;
    if (b->report_fd >= 0)
        fds[n++] = (struct pollfd){.fd = b->report_fd, .events = POLLIN};
    if (b->control_fd >= 0 && b->control.len > 0)
        fds[b->i_ctl = n++] = (struct pollfd){.fd = b->control_fd, .events = POLLOUT};
    return n;
}

/* runner hook, at every wake-up. The reports first, whether the pipe woke the loop or not:
 * output in the pipes may belong to a script whose "S" is already waiting there (it was
 * written before the script ran), and a script whose end is reported did not time out. A
 * status channel over its budget kills the jail (413). */
static int hook_woke(void *ud, struct runner *run, const struct pollfd *fds, int n)
{
    struct batch_run *b = ud;
    int r = b->report_fd >= 0 ? read_reports(b, run) : 0;
    if (r < 0)
        return r;
    if (b->i_ctl >= 0 && b->i_ctl < n && (fds[b->i_ctl].revents & (POLLOUT | POLLERR | POLLHUP)))
        write_control(b);
    return b->overflow ? RUNNER_KILL : 0;
}

/* runner hook: the batch's deadline, or the running script's, or the shell's grace to report
 * a kill it was asked for, whichever comes first. */
static int64_t hook_deadline(void *ud)
{
    const struct batch_run *b = ud;
    int64_t d = time_mono_deadline_ms(b->batch_start, b->p->timeout_ms);
    if (b->cutting && b->cut_at + CUT_GRACE_MS < d)
        d = b->cut_at + CUT_GRACE_MS;
    else if (!b->cutting && b->cur >= 0 && b->p->per_script_timeout_ms > 0 &&
             time_mono_deadline_ms(b->script_start, b->p->per_script_timeout_ms) < d)
        d = time_mono_deadline_ms(b->script_start, b->p->per_script_timeout_ms);
    return d;
}

/* runner hook: a deadline passed. A per-script one: the shell is asked to kill the running
 * script, which times out, and the batch goes on with the next (on_killed). The batch's own,
 * or a per-script one the shell cannot act on (not pinned, gone): the whole jail is killed, the
 * running script and those not started yet time out. The shell's grace to report a kill: the
 * jail is killed, the scripts not started are left "aborted". Returns true when the jail is to
 * be killed. */
static bool hook_expired(void *ud)
{
    struct batch_run *b = ud;
    int64_t now = time_mono_ms();
    bool batch_over = now >= time_mono_deadline_ms(b->batch_start, b->p->timeout_ms);
    if (!batch_over && !b->cutting && b->shell_pinned &&
        jail_signal_shell(b->proc, CUT_SIGNAL) == 0) {
        mark_timeout(b, b->cur);
        b->cutting = true;
        b->cut_at = now;
        return false;
    }
    mark_timeout(b, b->cur);
    if (batch_over || !b->cutting)
        for (size_t k = 0; k < b->p->n; k++)
            if (!b->res[k].started && !b->res[k].error)
                b->res[k].error = "timeout";
    return true;
}

/* Drives a write-mode batch's jail to its end under the runner's loop, with the batch's hooks:
 * the client gone (killed; what ran commits), the status channel over its budget (killed, 413),
 * the quota (killed, 413), the deadlines (hook_expired). */
static int batch_drive(struct batch_run *b)
{
    const struct runner_hooks hooks = {
        .poll_fds = hook_poll_fds,
        .woke = hook_woke,
        .deadline = hook_deadline,
        .expired = hook_expired,
        .ud = b,
    };
    struct runner_opts ro = {
        .cancel_fd = b->p->cancel_fd,
        .on_output = keep_output,
        .ud = b,
        .watch = b->quota.limit >= 0 ? quota_watch_check : NULL,
        .watch_ud = &b->quota,
        .watch_ms = QUOTA_WATCH_MS,
        .hooks = &hooks,
    };
    struct runner_result res;
    b->batch_start = time_mono_ms();
    return runner_run(b->proc, &ro, &res);
}

/* The answer to a batch whose scripts wrote more than its budget to fd 3. */
static int overflow_error(const struct batch_run *b)
{
    ssize_t i = b->cur >= 0 ? b->cur : b->last;
    err_set(-ERR_PAYLOAD_TOO_LARGE,
            "a script of the batch (scripts[%zd]) wrote more than the batch's %zu bytes to fd 3, "
            "the batch's status channel; the batch was stopped and nothing was kept. Leave fd 3 "
            "alone in batch scripts (e.g. close it for a command: cmd 3>&-)",
            i < 0 ? (ssize_t)0 : i, b->report_budget);
    err_detail("status channel (fd 3) of a batch: %d bytes plus %d per script", REPORT_BUDGET_FIXED,
               REPORT_BUDGET_PER_SCRIPT);
    return -ERR_PAYLOAD_TOO_LARGE;
}

static int run_write_batch(struct exec_engine *e, struct sandbox_rec *rec,
                           const struct batch_params *p, struct batch_result *res,
                           struct exec_session **ret_rest, char exec_id[EXEC_ID_LEN + 1])
{
    struct exec_session *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    int ctl[2] = {-1, -1};
    struct batch_run b = {
        .e = e,
        .p = p,
        .res = res,
        .quota = {.limit = -1},
        .cur = -1,
        .last = -1,
        .control = BUF_INIT(0),
        .report = BUF_INIT(0),
        .report_fd = -1,
        .control_fd = -1,
        .report_budget = REPORT_BUDGET_FIXED + p->n * REPORT_BUDGET_PER_SCRIPT,
    };
    int r = exec_session_begin(e, rec, s);
    if (r == 0)
        memcpy(exec_id, s->u.id, EXEC_ID_LEN + 1);
    /* the driver's first record, then the first script */
    if (r == 0)
        r = buf_add(&b.control, p->per_script_timeout_ms > 0 ? "1" : "0", 2);
    if (r == 0)
        r = feed_next(&b);
    /* The loop reads the report pipe all along, so the jail's end of it blocks when full (a
     * single exec reads it only at the end and keeps it non-blocking). */
    if (r == 0 && fcntl(s->report[1], F_SETFL, 0) < 0)
        r = -errno;
    if (r == 0 && pipe2(ctl, O_CLOEXEC) < 0)
        r = -errno;
    if (r == 0 && fcntl(ctl[1], F_SETFL, O_NONBLOCK) < 0)
        r = -errno;
    r = exec_fault(e, "prepare", r);
    if (r == 0 && p->keepalive)
        r = p->keepalive(p->keepalive_arg);
    if (r == 0) {
        struct exec_spawn sp = {
            .script = driver,
            .script_len = sizeof(driver) - 1,
            .cwd = rec->cwd,
            .cwd_is_stored = true,
            .stdin_fd = ctl[0],
        };
        r = exec_session_spawn(s, &sp, &b.proc);
    }
    ctl[0] = safe_close(ctl[0]);
    if (r == 0) {
        exec_session_close_report_writer(s);
        /* Only the driver runs yet: its shell is still the init's only child. Without it a
         * per-script deadline kills the whole jail. */
        if (p->per_script_timeout_ms > 0) {
            int pin = jail_pin_shell(b.proc);
            if (pin < 0)
                log_msg("warn",
                        "exec batch: cannot pin the batch shell (%s): a per-script "
                        "timeout ends the batch",
                        strerror(-pin));
            b.shell_pinned = pin == 0;
        }
        quota_watch_init(&b.quota, s);
        b.report_fd = s->report[0];
        b.control_fd = TAKE_FD(ctl[1]);
        r = exec_fault(e, "run", batch_drive(&b));
        exec_session_free_proc(s, b.proc);
        if (r == 0 && b.overflow)
            r = overflow_error(&b);
        if (r == 0 && b.quota.exceeded)
            r = quota_error(&b.quota);
    }
    safe_close(ctl[1]);
    safe_close(b.control_fd);
    for (size_t i = 0; i < p->n; i++) {
        if (!res[i].started && !res[i].error)
            res[i].error = b.stop ? "skipped" : "aborted";
        if (!res[i].started)
            res[i].exit_code = -1;
    }
    if (r == 0 && p->keepalive)
        r = p->keepalive(p->keepalive_arg);
    if (r == 0) {
        char info[128];
        snprintf(info, sizeof(info), "{\"execId\":\"%s\",\"batch\":%zu}", exec_id, p->n);
        r = exec_fault(e, "commit", exec_session_finish(s, false, b.cwd, info, NULL));
    }
    if (r == 0)
        exec_health_ok(e);
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
    struct capture_allowance *allowance; /* the output all the scripts may keep */
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
            .allowance = pool->allowance,
            .keepalive = pool->p->keepalive,
            .keepalive_arg = pool->p->keepalive_arg,
        };
        struct exec_outcome out;
        err_clear();
        int r = exec_engine_run(pool->e, pool->rec, &ep, &out);
        res->started = true;
        res->output = out.output;
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
                               const struct batch_params *p, struct batch_result *res,
                               struct capture_allowance *allowance)
{
    struct ro_pool pool = {
        .e = e,
        .rec = rec,
        .p = p,
        .res = res,
        .deadline = time_mono_ms() + p->timeout_ms,
        .allowance = allowance,
    };
    pthread_mutex_init(&pool.mu, NULL);
    size_t workers = (size_t)e->cfg.batch_workers;
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

/* The journal record of a batch that ran: the scripts' first lines, their output one after the
 * other (as far as the record keeps it), the last started script's exit code. */
static void batch_journal(struct exec_engine *e, struct sandbox_rec *rec,
                          const struct batch_params *p, const struct batch_result *res,
                          const char *exec_id, int64_t started_ms, int64_t duration_ms,
                          int64_t version)
{
    struct exec_journal j;
    exec_journal_init(&j, e, p->journal_kind, NULL, NULL);
    j.started_ms = started_ms;
    struct buf head = BUF_INIT(0);
    int exit_code = -1, r = 0;
    bool timed_out = false;
    for (size_t i = 0; i < p->n && r == 0; i++) {
        if (i > 0)
            r = head.len < EXEC_JOURNAL_SCRIPT_BYTES ? buf_add(&head, "\n", 1) : 0;
        if (r == 0)
            r = exec_journal_script(&head, p->scripts[i].script, p->scripts[i].script_len, true);
        if (res[i].started)
            exit_code = res[i].exit_code;
        timed_out = timed_out || (res[i].error && strcmp(res[i].error, "timeout") == 0);
        const struct capture_stream *cs[2] = {&res[i].output.out, &res[i].output.err};
        for (int k = 0; k < 2; k++) {
            j.bytes[k] += (int64_t)cs[k]->data.len;
            if (cs[k]->data.len)
                capture_add(&j.kept, k + 1, cs[k]->data.data, cs[k]->data.len);
        }
        j.kept.out.truncated = j.kept.out.truncated || res[i].output.out.truncated;
        j.kept.err.truncated = j.kept.err.truncated || res[i].output.err.truncated;
    }
    if (r == 0)
        exec_journal_add(e, rec->id, &j, exec_id, &head, duration_ms, exit_code, timed_out,
                         version);
    exec_journal_release(&j);
    buf_release(&head);
}

int exec_engine_run_batch(struct exec_engine *e, struct sandbox_rec *rec,
                          const struct batch_params *p, struct batch_result *results,
                          struct exec_session **ret_rest)
{
    if (ret_rest)
        *ret_rest = NULL;
    /* the scripts share the request's output cap, in the order they write */
    struct capture_allowance allowance = CAPTURE_ALLOWANCE_INIT(e->cfg.max_output_bytes);
    for (size_t i = 0; i < p->n; i++) {
        memset(&results[i], 0, sizeof(results[i]));
        capture_init(&results[i].output, &allowance, e->cfg.reply_memory);
        results[i].exit_code = -1;
    }
    /* A write batch is one session: its upper's id names it. A read-only batch runs a jail per
     * script: it gets an id of its own. */
    char exec_id[EXEC_ID_LEN + 1] = "";
    if (p->read_only) {
        uint8_t rnd[EXEC_ID_LEN / 2];
        if (rand_bytes(rnd, sizeof(rnd)) < 0)
            return err_set(-EIO, "no randomness for the batch's id");
        hex_encode(rnd, sizeof(rnd), exec_id);
    }
    int64_t from = rec->version, started_ms = time_now_ms(), t0 = time_mono_ms();
    int r = p->read_only ? run_read_only_batch(e, rec, p, results, &allowance)
                         : run_write_batch(e, rec, p, results, ret_rest, exec_id);
    int64_t version = r == 0 && rec->version != from ? rec->version : 0;
    bool ran = false;
    for (size_t i = 0; i < p->n; i++)
        ran = ran || results[i].started;
    if (ran && exec_id[0] && p->journal_kind)
        batch_journal(e, rec, p, results, exec_id, started_ms, time_mono_ms() - t0, version);
    if (p->ret_exec_id)
        memcpy(p->ret_exec_id, exec_id, EXEC_ID_LEN + 1);
    if (p->ret_version)
        *p->ret_version = version;
    return r;
}
