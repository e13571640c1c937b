/*
 * capture — a script's output kept for a reply: one buffer per stream (stdout, stderr).
 *
 * The truncation rule (docs/API.md "Output and memory"), the one every kept output follows:
 *   - A stream keeps the longest start of what the script wrote that fits both its allowance
 *     and the memory budget; bytes are counted as the script wrote them (raw, before escaping).
 *   - The first byte that does not fit (or that memory cannot hold) is read and dropped, the
 *     stream is marked truncated, and from then on it keeps nothing: a kept stream is always a
 *     prefix of what was written.
 *   - The cut falls at the byte, also inside a UTF-8 character; whoever turns the bytes into text
 *     drops an incomplete character at the very end (api/outreply.h).
 * The allowance is the cap of a request (MAX_EXEC_OUTPUT_BYTES per stream): the captures of a
 * batch's scripts share one, in the order they write, and a capture of its own gets one of its
 * own. The memory budget (REPLY_MEMORY_BYTES, exec_config.reply_memory) is shared by every request:
 * each byte kept is counted in it until capture_release frees it, or until whoever took a
 * stream's buffer (outreply_output) gives it back. What an allowance or the budget refuses is
 * given back to the other at once, so a refusal costs neither.
 *
 * Ownership: a capture owns its buffers. It borrows its allowance (used only while output is
 * added) and its memory budget (until its bytes are given back). One thread adds to a capture;
 * an allowance and a budget may be shared between threads (util/budget.h).
 */
#ifndef SQLFS_EXEC_CAPTURE_H
#define SQLFS_EXEC_CAPTURE_H

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"
#include "util/budget.h"

/* The stream numbers of the runner's on_output (exec/runner.h). */
#define CAPTURE_STDOUT 1
#define CAPTURE_STDERR 2

/* What the streams of one request may keep together. */
struct capture_allowance {
    struct budget stream[2]; /* stdout, stderr */
};

/* An allowance of `cap` bytes per stream. */
#define CAPTURE_ALLOWANCE_INIT(cap)                                                                \
    {                                                                                              \
        {                                                                                          \
            BUDGET_INIT(cap), BUDGET_INIT(cap)                                                     \
        }                                                                                          \
    }

struct capture_stream {
    struct buf data; /* what was kept: a prefix of what the stream wrote */
    bool truncated;  /* the stream wrote more than was kept */
};

struct capture {
    struct capture_stream out;           /* stdout */
    struct capture_stream err;           /* stderr */
    struct capture_allowance *allowance; /* borrowed: the request's cap (capture_add only) */
    struct budget *memory;               /* borrowed: counts the kept bytes; NULL = none */
};

/* An empty capture that keeps within `a` and counts in `memory` (may be NULL). */
void capture_init(struct capture *c, struct capture_allowance *a, struct budget *memory);
/* Keeps data[0..len) of `stream` (CAPTURE_STDOUT or CAPTURE_STDERR) as the rule above lets it.
 * Never fails: what is not kept marks the stream truncated. */
void capture_add(struct capture *c, int stream, const char *data, size_t len);
/* capture_add as a runner on_output callback (exec/runner.h); `c` is a struct capture. */
void capture_on_output(void *c, int stream, const char *data, size_t len);
/* Frees both buffers and gives their bytes back to the memory budget. The capture is left empty
 * (flags kept). */
void capture_release(struct capture *c);

#endif
