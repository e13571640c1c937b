#include "api/sse.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/utf8.h"

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* Nonzero when some byte of w is zero (exact as a yes/no answer: no false negatives). */
static inline uint64_t has_zero(uint64_t w)
{
    return (w - ONES) & ~w & HIGHS;
}

/* Nonzero when one of the 8 bytes at p needs a look of its own: a control character, '"', '\'
 * or a non-ASCII byte (which must be checked as UTF-8). False positives only cost speed. */
static inline uint64_t word_special(const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof(w));
    /* (w - 0x20..) & ~w & 0x80..: some byte below 0x20 (same reasoning as has_zero) */
    return (w & HIGHS) | ((w - ONES * 0x20) & ~w & HIGHS) | has_zero(w ^ (ONES * '"')) |
           has_zero(w ^ (ONES * '\\'));
}

static inline bool byte_plain(unsigned char c)
{
    return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

/* The escape jansson writes for an ASCII byte that JSON forbids in a string. */
static size_t escape_ascii(unsigned char c, char seq[7])
{
    static const char hex[] = "0123456789ABCDEF";
    char e = c == '"' ? '"' : c == '\\' ? '\\' : c == '\b' ? 'b' : c == '\f' ? 'f'
           : c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : 0;
    seq[0] = '\\';
    if (e) {
        seq[1] = e;
        return 2;
    }
    memcpy(seq + 1, "u00", 3);
    seq[4] = hex[c >> 4];
    seq[5] = hex[c & 0xf];
    return 6;
}

/* Appends s[run..i) and then seq[0..sl) to out, whose storage is written directly: this runs
 * once per escaped byte (every newline), too often for buf_add's bookkeeping. */
static int put_run_and_escape(struct buf *out, const char *run, size_t run_len, const char *seq,
                              size_t sl, size_t left)
{
    if (out->cap - out->len < run_len + sl) {
        int r = buf_grow(out, run_len + sl + left / 8);
        if (r == -EFBIG) /* near the buffer's cap: the slack is optional */
            r = buf_grow(out, run_len + sl);
        if (r < 0)
            return r;
    }
    memcpy(out->data + out->len, run, run_len);
    memcpy(out->data + out->len + run_len, seq, sl);
    out->len += run_len + sl;
    return 0;
}

int sse_json_escape(struct buf *out, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t start_len = out->len;
    /* room for the usual case (text with a newline every few dozen bytes) in one allocation */
    int r = buf_grow(out, n + n / 16 + 8);
    if (r == -EFBIG) /* the slack is optional; the output is never shorter than the input */
        r = buf_grow(out, n);
    size_t i = 0, run = 0;
    while (r == 0 && i < n) {
        while (i + 8 <= n && !word_special(p + i))
            i += 8;
        while (i < n && byte_plain(p[i]))
            i++;
        if (i >= n)
            break;
        if (p[i] >= 0x80) {
            size_t l = utf8_seq_len(p + i, n - i);
            if (l) {
                i += l;
                continue;
            }
        }
        char seq[7];
        size_t sl = p[i] >= 0x80 ? (memcpy(seq, "\xef\xbf\xbd", 3), 3) : escape_ascii(p[i], seq);
        r = put_run_and_escape(out, s + run, i - run, seq, sl, n - i);
        i++;
        run = i;
    }
    if (r == 0)
        r = buf_add(out, s + run, n - run); /* also restores the terminating NUL */
    if (r < 0 && out->data) {
        out->len = start_len;
        out->data[start_len] = '\0';
    }
    return r;
}

int sse_output_frame(struct buf *out, const char *event, int64_t t, const char *s, size_t n)
{
    size_t start_len = out->len;
    /* room for the usual case (nothing to escape) in one allocation */
    int r = buf_grow(out, n + strlen(event) + 64);
    if (r == -EFBIG)
        r = 0; /* only a reservation: the adds below find out whether the frame fits */
    if (r == 0)
        r = buf_addf(out, "event: %s\ndata: {\"t\":%" PRId64 ",\"data\":\"", event, t);
    if (r == 0)
        r = sse_json_escape(out, s, n);
    if (r == 0)
        r = buf_add(out, "\"}\n\n", 4);
    if (r < 0 && out->data) {
        out->len = start_len;
        out->data[start_len] = '\0';
    }
    return r;
}

int sse_json_frame(struct buf *out, const char *event, const json_t *data)
{
    char *txt = json_dumps(data, JSON_COMPACT);
    if (!txt)
        return -ENOMEM;
    int r = buf_addf(out, "event: %s\ndata: %s\n\n", event, txt);
    free(txt);
    return r;
}
