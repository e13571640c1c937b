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

/* Flags (0x80 in the byte) the bytes of w that need a look of their own: control characters,
 * '"', '\' and non-ASCII bytes (to be checked as UTF-8). A borrow in these subtractions only
 * starts at a flagged byte and runs upwards, so the lowest flag is always a real one; flags
 * above it may be false, which does not matter as the scan stops at the lowest. */
static inline uint64_t word_special(uint64_t w)
{
    return (w & HIGHS) | ((w - ONES * 0x20) & ~w & HIGHS) | has_zero(w ^ (ONES * '"')) |
           has_zero(w ^ (ONES * '\\'));
}

/* Index (0..7) in memory order of the lowest flagged byte of a nonzero mask. */
static inline size_t first_flagged(uint64_t m)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return (size_t)__builtin_ctzll(m) >> 3;
#else
    return (size_t)__builtin_clzll(m) >> 3;
#endif
}

static inline bool byte_plain(unsigned char c)
{
    return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

/* The escape jansson writes for an ASCII byte that JSON forbids in a string. */
static size_t escape_ascii(unsigned char c, char seq[7])
{
    static const char hex[] = "0123456789ABCDEF";
    char e = c == '"'    ? '"'
             : c == '\\' ? '\\'
             : c == '\b' ? 'b'
             : c == '\f' ? 'f'
             : c == '\n' ? 'n'
             : c == '\r' ? 'r'
             : c == '\t' ? 't'
                         : 0;
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

/* Copies the run of plain bytes at the start of src[0..n) to dst, which has room for `room`
 * bytes, stopping early when room runs short. Returns the number copied. Eight bytes at a time:
 * a word is stored before it is checked, so each byte is read once. */
static size_t copy_plain(char *dst, size_t room, const unsigned char *src, size_t n)
{
    size_t k = 0;
    while (k + 8 <= n && k + 8 <= room) {
        uint64_t w;
        memcpy(&w, src + k, sizeof(w));
        memcpy(dst + k, &w, sizeof(w));
        uint64_t m = word_special(w);
        if (m)
            return k + first_flagged(m);
        k += 8;
    }
    while (k < n && k < room && byte_plain(src[k])) {
        dst[k] = (char)src[k];
        k++;
    }
    return k;
}

/* Makes room for `need` more bytes after out->data[o], asking for `more` if the cap allows. */
static int room_for(struct buf *out, size_t o, size_t need, size_t more)
{
    if (out->cap - o >= need)
        return 0;
    out->len = o;
    int r = buf_grow(out, more > need ? more : need);
    if (r == -EFBIG) /* near the buffer's cap: the slack is optional */
        r = buf_grow(out, need);
    return r;
}

int sse_json_escape(struct buf *out, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t start_len = out->len;
    /* room for the usual case (text with a newline every few dozen bytes) in one allocation;
     * the output is never shorter than the input */
    int r = room_for(out, start_len, n, n + n / 16 + 8);
    size_t o = start_len, i = 0;
    while (r == 0 && i < n) {
        size_t k = copy_plain(out->data + o, out->cap - o, p + i, n - i);
        i += k;
        o += k;
        if (i >= n)
            break;
        size_t left = n - i;
        if (p[i] == '\n' && out->cap - o >= 2) { /* by far the most common escape */
            out->data[o++] = '\\';
            out->data[o++] = 'n';
            i++;
            continue;
        }
        if (byte_plain(p[i])) { /* copy_plain ran out of room */
            r = room_for(out, o, 8, left + left / 16 + 8);
            continue;
        }
        size_t in = 1, sl;
        const char *src;
        char seq[7];
        if (p[i] < 0x80) {
            sl = escape_ascii(p[i], seq);
            src = seq;
        } else if ((in = utf8_seq_len(p + i, left)) > 0) {
            sl = in;
            src = s + i;
        } else {
            in = 1;
            sl = 3;
            src = "\xef\xbf\xbd";
        }
        r = room_for(out, o, sl, sl + left / 8);
        if (r == 0) {
            memcpy(out->data + o, src, sl);
            o += sl;
            i += in;
        }
    }
    if (r < 0)
        o = start_len;
    if (out->data) { /* else nothing was added, and the buffer stays unallocated */
        out->len = o;
        out->data[o] = '\0';
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
