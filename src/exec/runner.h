/*
 * runner — drives one spawned jail to completion: forwards its output as it arrives, enforces
 * the timeout, kills the jail when the client goes away, and collects the exit status.
 *
 * runner_run() blocks the calling thread (the connection's thread) in poll() on the stdout and
 * stderr pipes, the jail's pidfd, and an optional cancel fd (the client socket: POLLRDHUP,
 * POLLHUP or POLLERR means the client is gone). Output is delivered in chunks of at most
 * RUNNER_CHUNK bytes to on_output, in the order each pipe produced it; the caller owns
 * buffering, caps and UTF-8 handling. The pipes are drained to EOF before returning, so no
 * output written before the end is lost, and reading never stops while the script runs (a
 * script waits on a full pipe only during the short pause below, or while on_output blocks).
 * Throughput: the pipes are enlarged (F_SETPIPE_SZ, best effort), and once a script has written
 * a lot the runner reads in batches, pausing at most about a millisecond after catching up, so
 * a chunk reaches on_output at most that much later than it was written.
 *
 * runner_buffer is the sync route's collector: one bounded buffer per stream; bytes past the cap
 * are read and dropped, and the stream is marked truncated.
 *
 * Thread-safety: none needed; everything belongs to the calling thread.
 */
#ifndef SQLFS_EXEC_RUNNER_H
#define SQLFS_EXEC_RUNNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jail/jail.h"
#include "util/buf.h"

#define RUNNER_CHUNK 65536

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
 * (poll/read failures: the jail is then killed and reaped before returning). */
__attribute__((warn_unused_result)) int
runner_run(struct jail_proc *proc, const struct runner_opts *opts, struct runner_result *ret);

struct runner_buffer {
    struct buf out;     /* stdout, at most `cap` bytes */
    struct buf err;     /* stderr, at most `cap` bytes */
    bool out_truncated; /* stdout produced more than `cap` bytes */
    bool err_truncated;
    size_t cap;
};

void runner_buffer_init(struct runner_buffer *b, size_t cap);
void runner_buffer_release(struct runner_buffer *b);
/* An on_output callback: `ud` is a struct runner_buffer. Never fails; on ENOMEM the stream is
 * marked truncated. */
void runner_buffer_on_output(void *ud, int stream, const char *data, size_t len);

#endif
