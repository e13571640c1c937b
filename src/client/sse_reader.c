/*
 * sse_reader — Server-Sent Events parsing for the command-line client (see sse_reader.h).
 */
#include "client/sse_reader.h"

#include <errno.h>
#include <string.h>

void sse_reader_init(struct sse_reader *r, size_t max, sse_reader_fn fn, void *ctx)
{
    *r = (struct sse_reader){
        .line = BUF_INIT(max),
        .event = BUF_INIT(max),
        .data = BUF_INIT(max),
        .fn = fn,
        .ctx = ctx,
    };
}

void sse_reader_release(struct sse_reader *r)
{
    buf_release(&r->line);
    buf_release(&r->event);
    buf_release(&r->data);
}

/* A blank line: the event built so far goes to the callback (when it has data), then a new one
 * starts. */
static int dispatch(struct sse_reader *r)
{
    int rc = 0;
    if (r->has_data)
        rc = r->fn(r->ctx, r->event.len ? buf_cstr(&r->event) : "message", buf_cstr(&r->data),
                   r->data.len);
    buf_reset(&r->event);
    buf_reset(&r->data);
    r->has_data = false;
    return rc;
}

/* One complete line (without its end). */
static int process_line(struct sse_reader *r)
{
    const char *s = buf_cstr(&r->line);
    size_t n = r->line.len;
    if (n == 0)
        return dispatch(r);
    if (s[0] == ':')
        return 0;
    const char *colon = memchr(s, ':', n);
    size_t name_len = colon ? (size_t)(colon - s) : n;
    const char *value = colon ? colon + 1 : s + n;
    size_t value_len = (size_t)(s + n - value);
    if (value_len > 0 && value[0] == ' ') {
        value++;
        value_len--;
    }
    if (name_len == 5 && memcmp(s, "event", 5) == 0) {
        buf_reset(&r->event);
        return buf_add(&r->event, value, value_len);
    }
    if (name_len == 4 && memcmp(s, "data", 4) == 0) {
        int rc = 0;
        if (r->has_data)
            rc = buf_add(&r->data, "\n", 1);
        if (rc == 0)
            rc = buf_add(&r->data, value, value_len);
        r->has_data = true;
        return rc;
    }
    return 0; /* id, retry and unknown fields */
}

int sse_reader_feed(struct sse_reader *r, const char *p, size_t n)
{
    if (n == 0)
        return 0;
    const char *end = p + n;
    if (r->after_cr && *p == '\n')
        p++;
    r->after_cr = false;
    while (p < end) {
        const char *eol = p;
        while (eol < end && *eol != '\n' && *eol != '\r')
            eol++;
        int rc = buf_add(&r->line, p, (size_t)(eol - p));
        if (rc < 0)
            return rc;
        if (eol == end)
            break;
        rc = process_line(r);
        buf_reset(&r->line);
        if (rc < 0)
            return rc;
        p = eol + 1;
        if (*eol == '\r') {
            if (p == end)
                r->after_cr = true;
            else if (*p == '\n')
                p++;
        }
    }
    return 0;
}
