#include "util/utf8.h"

#include <stdint.h>

size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    if (n == 0)
        return 0;
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

bool utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t l = utf8_seq_len(p + i, n - i);
        if (!l)
            return false;
        i += l;
    }
    return true;
}

int utf8_sanitize_into(struct buf *out, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, run = 0;
    while (i < n) {
        size_t l = p[i] < 0x80 ? 1 : utf8_seq_len(p + i, n - i);
        if (l) {
            i += l;
            continue;
        }
        int r = buf_add(out, s + run, i - run);
        if (r == 0)
            r = buf_add(out, "\xef\xbf\xbd", 3);
        if (r < 0)
            return r;
        i++;
        run = i;
    }
    return buf_add(out, s + run, n - run);
}

size_t utf8_incomplete_tail(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    /* look back at most 3 bytes for a lead byte whose sequence runs past the end */
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = p[n - back];
        if ((c & 0xc0) == 0x80)
            continue; /* continuation: keep looking for the lead */
        if (c < 0xc2 || c > 0xf4)
            return 0; /* not the lead byte of any character: nothing incomplete */
        size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
        return need > back ? back : 0;
    }
    return 0;
}
