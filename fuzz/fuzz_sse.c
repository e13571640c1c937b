/* libFuzzer target: SSE framing of exec output (src/api/sse.h). The input's first byte picks a
 * split point, the rest is script output. Invariants: a frame is `event: stdout\ndata: <line>\n\n`
 * with no CR or LF inside the line; the line is JSON that decodes to {"t":t,"data":d} with d the
 * input with invalid UTF-8 replaced by U+FFFD; the frame is byte for byte what jansson writes
 * for that object; and output split into two reads, with the incomplete UTF-8 tail of the first
 * held back as the stream route does, decodes to the same text as the unsplit output. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/sse.h"
#include "util/buf.h"
#include "util/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char prefix[] = "event: stdout\ndata: ";

/* Checks one frame and returns its decoded "data" (malloc'd, *ret_len bytes). */
static char *check_frame(const struct buf *f, int64_t t, size_t *ret_len)
{
    size_t pl = sizeof(prefix) - 1;
    if (f->len < pl + 2 || memcmp(f->data, prefix, pl) != 0 ||
        memcmp(f->data + f->len - 2, "\n\n", 2) != 0)
        abort();
    const char *line = f->data + pl;
    size_t line_len = f->len - pl - 2;
    if (memchr(line, '\n', line_len) || memchr(line, '\r', line_len))
        abort();
    json_error_t e;
    json_t *o = json_loadb(line, line_len, JSON_ALLOW_NUL, &e);
    json_t *d = o ? json_object_get(o, "data") : NULL;
    if (!d || !json_is_string(d) || json_object_size(o) != 2 ||
        json_integer_value(json_object_get(o, "t")) != t)
        abort();
    /* the route's frame before sse.c: jansson's dump of the same object */
    struct buf ref = BUF_INIT(0);
    if (sse_json_frame(&ref, "stdout", o) != 0 || ref.len != f->len ||
        memcmp(ref.data, f->data, f->len) != 0)
        abort();
    buf_release(&ref);
    size_t len = json_string_length(d);
    char *out = malloc(len + 1);
    if (!out)
        abort();
    memcpy(out, json_string_value(d), len);
    json_decref(o);
    *ret_len = len;
    return out;
}

/* Frames s[0..n) (or nothing when n == 0) and appends its decoded text to `text`. */
static void frame_into(struct buf *text, const char *s, size_t n, int64_t t)
{
    if (n == 0)
        return;
    struct buf f = BUF_INIT(0);
    if (sse_output_frame(&f, "stdout", t, s, n) != 0)
        abort();
    size_t len;
    char *d = check_frame(&f, t, &len);
    if (buf_add(text, d, len) != 0)
        abort();
    free(d);
    buf_release(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t split = data[0];
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    if (split > n)
        split = n;
    int64_t t = (int64_t)data[0] * 1000003;

    struct buf want = BUF_INIT(0);
    if (utf8_sanitize_into(&want, s, n) != 0)
        abort();

    struct buf whole = BUF_INIT(0);
    frame_into(&whole, s, n, t);
    if (whole.len != want.len || (want.len && memcmp(whole.data, want.data, want.len) != 0))
        abort();

    /* two reads: the first one's incomplete tail waits for the second */
    struct buf parts = BUF_INIT(0);
    size_t keep = utf8_incomplete_tail(s, split);
    frame_into(&parts, s, split - keep, t);
    frame_into(&parts, s + split - keep, n - split + keep, t);
    if (parts.len != want.len || (want.len && memcmp(parts.data, want.data, want.len) != 0))
        abort();

    buf_release(&parts);
    buf_release(&whole);
    buf_release(&want);
    return 0;
}
