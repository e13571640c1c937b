/*
 * runner — drives one spawned jail to completion: forwards its output as it arrives, enforces
 * the deadline, kills the jail when the client goes away or a watch asks for it, and collects
 * the exit status. The one loop every jail of an exec runs under (a single exec, a batch's
 * shell through its hooks, the self-test, the start-up probe).
 *
 * runner_run() blocks the calling thread (the connection's thread) in poll() on the stdout and
 * stderr pipes, the jail's pidfd, an optional cancel fd (the client socket: POLLRDHUP, POLLHUP or
 * POLLERR means the client is gone) and the descriptors of its hooks. Output is delivered in
 * chunks of at most RUNNER_CHUNK bytes to on_output, in the order each pipe produced it; the
 * caller owns buffering, caps and UTF-8 handling (exec/capture.h keeps output for a reply). The
 * pipes are drained to EOF before returning, so no output written before the end is lost, and
 * reading never stops while the script runs (a script waits on a full pipe only during the short
 * pause below, or while on_output blocks).
 *
 * Every wake-up is bounded and ends in the same checks. A wake-up reads at most
 * RUNNER_DRAIN_READS reads of RUNNER_CHUNK from each pipe that is ready (what the hooks read
 * is bounded by them), and then, whatever the descriptors did, checks in this order while the
 * jail has not been killed: the client gone (result.cancelled), a kill the hooks asked for, the
 * watch (result.stopped; while the jail runs), the deadline (result.timed_out; while the jail
 * runs). The loop waits at most RUNNER_WAKE_MS between wake-ups. So a script that writes as fast
 * as it can to any of its pipes cannot keep the runner from its deadline or from noticing that
 * the client left.
 *
 * Throughput: the pipes are enlarged (F_SETPIPE_SZ, best effort), and once a script has written
 * a lot the runner reads in batches, pausing at most RUNNER_GATHER_NS after catching up, so a
 * chunk reaches on_output at most that much later than it was written.
 *
 * Thread-safety: none needed; everything belongs to the calling thread.
 */
#ifndef SQLFS_EXEC_RUNNER_H
#define SQLFS_EXEC_RUNNER_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jail/jail.h"

#define RUNNER_CHUNK 65536
/* Reads of one pipe per wake-up, at most (RUNNER_CHUNK each). */
#define RUNNER_DRAIN_READS 16
/* The longest wait between two wake-ups. */
#define RUNNER_WAKE_MS 1000
/* Descriptors the hooks may add to the loop's poll. */
#define RUNNER_HOOK_FDS 2
/* What a hook's woke() returns for "kill the jail now". */
#define RUNNER_KILL 1

struct runner;

/*
 * What a caller adds to the loop: descriptors of its own and a deadline that moves (batch.c:
 * the status and control channels of a batch's shell, per-script deadlines). Every member may
 * be NULL.
 */
struct runner_hooks {
    /* Before each wait: the caller's descriptors to poll (fd, events), at most
     * RUNNER_HOOK_FDS, written to fds. Returns how many. */
    int (*poll_fds)(void *ud, struct pollfd *fds);
    /* First thing after each wait, whatever woke it (revents of the caller's descriptors; all 0
     * after a timeout or a signal): the caller serves its descriptors, a bounded amount. It may
     * call runner_drain_pending. Returns 0, RUNNER_KILL (kill the jail now), or -errno (the
     * run fails: the jail is killed and reaped). */
    int (*woke)(void *ud, struct runner *run, const struct pollfd *fds, int n);
    /* The deadline (monotonic ms, time_mono_ms) while the jail runs; it replaces
     * runner_opts.timeout_ms and may move from one call to the next. */
    int64_t (*deadline)(void *ud);
    /* That deadline passed: the caller acts on it (result.timed_out is not set). Returns true
     * when the jail is to be killed; false when the caller dealt with it otherwise and moved
     * the deadline. */
    bool (*expired)(void *ud);
    void *ud;
};

struct runner_opts {
    int64_t timeout_ms; /* <= 0: no timeout */
    int cancel_fd;      /* -1: none */
    /* Called for every chunk; stream 1 = stdout, 2 = stderr. May be NULL (output dropped). */
    void (*on_output)(void *ud, int stream, const char *data, size_t len);
    void *ud;
    /* Called watch_ms after the start, then after the delay it sets in *next_ms each time, while
     * the script runs (watch NULL or watch_ms <= 0: never); returning true kills the jail
     * (result.stopped). The quota watch of exec/quota.c. */
    bool (*watch)(void *watch_ud, int64_t *next_ms);
    void *watch_ud;
    int64_t watch_ms;
    const struct runner_hooks *hooks; /* NULL: none */
};

struct runner_result {
    int exit_code;       /* bash's exit code; 128 + exit_signal when killed */
    int exit_signal;     /* 0, or the signal that ended the script (SIGKILL on timeout) */
    bool timed_out;      /* killed because timeout_ms passed */
    bool cancelled;      /* killed because cancel_fd reported a hangup */
    bool stopped;        /* killed because opts.watch asked for it */
    bool oom;            /* the memory limit was hit */
    int64_t duration_ms; /* from runner_run's start to the end of the jail */
};

/* Runs `proc` (from jail_spawn) to its end. The proc is waited for but not freed. 0 or -errno
 * (poll/read failures, a hook's failure: the jail is then killed and reaped before
 * returning). */
__attribute__((warn_unused_result)) int
runner_run(struct jail_proc *proc, const struct runner_opts *opts, struct runner_result *ret);

/* For a hook: delivers what the output pipes hold now (what the script wrote before the moment
 * of the call, not what it writes meanwhile) to on_output. */
void runner_drain_pending(struct runner *run);

#endif
