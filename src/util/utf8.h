/*
 * utf8 — validation and repair of UTF-8 byte strings (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF). Pure functions, thread-safe.
 */
#ifndef SQLFS_UTIL_UTF8_H
#define SQLFS_UTIL_UTF8_H

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"

/* Length of the valid UTF-8 sequence starting at s (1..4), or 0 if s[0..n) does not start with
 * one (invalid, or truncated by the end of the input). */
size_t utf8_seq_len(const unsigned char *s, size_t n);
/* True when all n bytes are valid UTF-8. */
bool utf8_valid(const char *s, size_t n);
/* Appends s[0..n) to out with every invalid byte replaced by U+FFFD. 0, -EFBIG, -ENOMEM. */
__attribute__((warn_unused_result)) int utf8_sanitize_into(struct buf *out, const char *s,
                                                           size_t n);
/* Number of bytes at the end of s[0..n) that form an incomplete (but so far valid) multi-byte
 * sequence, 0..3: a streaming writer holds them back until the next chunk completes them. */
size_t utf8_incomplete_tail(const char *s, size_t n);

#endif
