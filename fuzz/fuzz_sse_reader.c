/* libFuzzer target: the client's SSE parser (src/client/sse_reader.h). The input's first byte
 * picks a chunk size, the rest is a byte stream as a server might send it. Invariants: feeding it
 * whole and feeding it in chunks of that size (cutting lines, CRLF pairs and events anywhere)
 * give the same feed result and the same events, type and data byte for byte; every event's
 * data is NUL-terminated at its length and no longer than the bound; nothing leaks. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/sse_reader.h"
#include "util/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BOUND 4096

/* Every event as "type\0" + 8-byte length + data, appended to a buffer. */
static int record(void *ctx, const char *event, const char *d, size_t len)
{
    struct buf *b = ctx;
    if (d[len] != '\0' || len > BOUND || strlen(event) > BOUND)
        abort();
    uint64_t n = len;
    if (buf_add(b, event, strlen(event) + 1) < 0 || buf_add(b, &n, sizeof(n)) < 0 ||
        buf_add(b, d, len) < 0)
        return -ENOMEM;
    return 0;
}

static int run(const char *p, size_t n, size_t chunk, struct buf *out)
{
    struct sse_reader r;
    sse_reader_init(&r, BOUND, record, out);
    int rc = 0;
    for (size_t off = 0; rc == 0 && off < n; off += chunk)
        rc = sse_reader_feed(&r, p + off, n - off < chunk ? n - off : chunk);
    sse_reader_release(&r);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = (size_t)data[0] % 17 + 1;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    struct buf whole = BUF_INIT(0), cut = BUF_INIT(0);
    int a = run(p, n, n ? n : 1, &whole);
    int b = run(p, n, chunk, &cut);
    if (a == -ENOMEM || b == -ENOMEM) {
        buf_release(&whole);
        buf_release(&cut);
        return 0;
    }
    /* a failure (a line past the bound) may come after different events were dispatched only
     * when the feeds fail; otherwise both must agree exactly */
    if (a != b)
        abort();
    if (a == 0 && (whole.len != cut.len || (whole.len && memcmp(whole.data, cut.data, whole.len))))
        abort();
    buf_release(&whole);
    buf_release(&cut);
    return 0;
}
