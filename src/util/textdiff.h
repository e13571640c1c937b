/*
 * textdiff — a unified diff (`diff -u`) of two in-memory byte buffers.
 *
 * Lines end at '\n' and keep it; a final line without one is a line of its own kind, unequal to
 * the same text with a newline, and is printed with GNU diff's `\ No newline at end of file`
 * marker. A '\r' is an ordinary byte of its line (CRLF files diff line by line like LF files).
 * The bytes are not interpreted otherwise: callers that want to show only text check
 * textdiff_is_binary first.
 *
 * Output, exactly as GNU diff -u --label A --label B prints it: "--- A", "+++ B", then hunks
 * "@@ -l,s +l,s @@" (",s" left out when s is 1; an empty range is "l,0" with l the line before
 * it, so an added file reads "@@ -0,0 +1,N @@") holding `context` lines of context, changes
 * fewer than 2 * context + 1 lines apart sharing one hunk. Identical inputs give no output at
 * all. A label holding a control character, '"' or '\\' is written C-quoted ("a\nb"), as git
 * does and GNU patch reads, so that it cannot break the header's line; others go verbatim.
 *
 * The diff is minimal (Myers' O(ND) algorithm, linear-space variant, over hashed lines; lines
 * found on one side only are set aside first, which keeps it minimal) unless the search passes a
 * work cap: the search costs up to about (N + M) * D steps for D differing lines, which two
 * large and unrelated files built from the same few lines can make quadratic. Past the cap, every
 * part not yet searched is given a coarser answer: its common first and last lines are kept and
 * the rest is one deletion plus one insertion. Whether minimal or coarse, the output is always a
 * patch that turns a into b.
 *
 * Cost: time O(bytes + work cap + output); memory about 50 bytes per input line (both inputs),
 * besides the output; no recursion.
 *
 * Pure functions, thread-safe; the caller owns the inputs and `out`.
 */
#ifndef SQLFS_UTIL_TEXTDIFF_H
#define SQLFS_UTIL_TEXTDIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* Lines of context GNU diff -u shows by default. */
#define TEXTDIFF_CONTEXT 3
/* Largest input, in bytes, on either side: line numbers and offsets are 32-bit. Callers cap
 * their inputs far below this. */
#define TEXTDIFF_MAX_INPUT ((size_t)512 << 20)
/* Default cap on the search's steps (a step compares two lines' classes or moves to the next
 * diagonal): enough for a minimal diff of files with some thousands of changed lines, and a cost
 * of the order of hashing a few hundred MiB for anything worse. */
#define TEXTDIFF_MAX_WORK ((uint64_t)1 << 26)

/* textdiff_unified's positive result: the cap was reached, the patch is correct but not minimal. */
#define TEXTDIFF_COARSE 1

/*
 * Appends to `out` the unified diff turning a[0..alen) into b[0..blen) (a pointer may be NULL
 * when its length is 0), headed by label_a and label_b, with `context` (>= 0) lines of context,
 * searching with at most TEXTDIFF_MAX_WORK steps.
 * 0 (a minimal diff, or nothing when the inputs are equal), TEXTDIFF_COARSE, or -EINVAL (a
 * NULL label, a negative context), -EFBIG (an input over TEXTDIFF_MAX_INPUT, or the output over
 * out->max), -ENOMEM. On failure `out` is left as it was.
 */
__attribute__((warn_unused_result)) int textdiff_unified(const char *a, size_t alen, const char *b,
                                                         size_t blen, const char *label_a,
                                                         const char *label_b, int context,
                                                         struct buf *out);
/* textdiff_unified with a cap of its own on the search's steps (0: coarse at once). */
__attribute__((warn_unused_result)) int
textdiff_unified_capped(const char *a, size_t alen, const char *b, size_t blen, const char *label_a,
                        const char *label_b, int context, uint64_t max_work, struct buf *out);

/* True when p[0..n) holds a NUL byte or is not valid UTF-8: not text a diff should show. */
bool textdiff_is_binary(const char *p, size_t n);

#endif
