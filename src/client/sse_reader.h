/*
 * sse_reader — the client side of Server-Sent Events: bytes in, events out (the event stream
 * format of the WHATWG HTML standard, "Server-sent events", section "Parsing an event stream").
 *
 * Bytes are fed as they arrive, cut anywhere (inside a line, between a CR and its LF). Lines end
 * with LF, CR or CRLF. A line starting with ':' is a comment (": keep-alive") and is ignored.
 * "field: value" (one space after the colon dropped; a line without a colon is a field with an
 * empty value): `event` sets the event's type, each `data` line appends to its data (lines joined
 * by LF), `id` and `retry` are accepted and ignored, other fields are ignored. A blank line
 * dispatches the event to the callback (type "message" when none was set), unless no data line
 * was seen; then type and data are reset. Bytes after the last blank line are an unfinished event
 * and are never dispatched.
 *
 * Bounds: a line, an event type or an event's data longer than `max` bytes fails the feed with
 * -EFBIG. The data passed to the callback is NUL-terminated (data[len] == '\0') and lives until
 * the callback returns.
 *
 * Not thread-safe; one reader per stream.
 */
#ifndef SQLFS_CLIENT_SSE_READER_H
#define SQLFS_CLIENT_SSE_READER_H

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"

/* Called once per dispatched event. A negative return stops the feed and is returned by it. */
typedef int (*sse_reader_fn)(void *ctx, const char *event, const char *data, size_t len);

struct sse_reader {
    struct buf line;  /* the current line, without its end */
    struct buf event; /* the `event` field of the event being built */
    struct buf data;  /* its data lines, joined by LF */
    bool has_data;    /* a data line was seen since the last dispatch */
    bool after_cr;    /* the last byte fed ended a line with CR: a next LF belongs to it */
    sse_reader_fn fn; /* the callback */
    void *ctx;        /* its first argument */
};

/* Prepares an empty reader (no allocation). `max` bounds lines and events (> 0). */
void sse_reader_init(struct sse_reader *r, size_t max, sse_reader_fn fn, void *ctx);

/* Parses p[0..n), dispatching every event completed in it. 0, a callback's negative return,
 * -EFBIG or -ENOMEM; after a failure the reader must only be released. */
__attribute__((warn_unused_result)) int sse_reader_feed(struct sse_reader *r, const char *p,
                                                        size_t n);

/* Frees the reader's buffers; it can be initialised again. */
void sse_reader_release(struct sse_reader *r);

#endif
