/*
 * sse — Server-Sent Events framing of exec output (docs/API.md "Exec").
 *
 * An output frame is `event: <name>\ndata: {"t":<ms>,"data":"<chunk>"}\n\n`. The chunk is
 * arbitrary bytes from a script: bytes that are not valid UTF-8 become U+FFFD, and the result is
 * escaped as a JSON string (RFC 8259: `"`, `\` and U+0000..U+001F escaped, everything else as
 * is). The output is byte for byte what jansson's json_dumps(JSON_COMPACT) writes for the same
 * object, so clients cannot tell the two apart; it exists because going through jansson (a
 * json_t, a second UTF-8 check, a character-by-character dump and a copy) costs several times
 * more than the rest of the streaming path.
 *
 * Escaped JSON never holds a raw CR or LF, so a frame's data line cannot end early.
 *
 * Failure leaves `out` as it was. Pure functions, thread-safe.
 */
#ifndef SQLFS_API_SSE_H
#define SQLFS_API_SSE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "util/buf.h"

/* Appends s[0..n) as the inside of a JSON string (no quotes), invalid UTF-8 replaced by U+FFFD.
 * 0, -EFBIG (out's max) or -ENOMEM. */
__attribute__((warn_unused_result)) int sse_json_escape(struct buf *out, const char *s, size_t n);

/* Appends one output frame for s[0..n); `event` is a plain token ("stdout", "stderr").
 * 0, -EFBIG or -ENOMEM. */
__attribute__((warn_unused_result)) int sse_output_frame(struct buf *out, const char *event,
                                                         int64_t t, const char *s, size_t n);

/* Appends `event: <event>\ndata: <compact JSON of data>\n\n`. Does not take `data`.
 * 0, -EFBIG or -ENOMEM. */
__attribute__((warn_unused_result)) int sse_json_frame(struct buf *out, const char *event,
                                                       const json_t *data);

#endif
