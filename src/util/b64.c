#include "util/b64.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "util/err.h"

static bool is_b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

int b64_check(const char *in, size_t len, size_t *ret_len)
{
    if (len % 4 != 0)
        return err_set(-EINVAL, "base64 length is not a multiple of 4");
    size_t pad = 0;
    if (len >= 4) {
        if (in[len - 1] == '=')
            pad++;
        if (in[len - 2] == '=') {
            if (pad == 0)
                return err_set(-EINVAL, "bad base64 padding");
            pad++;
        }
    }
    for (size_t i = 0; i < len - pad; i++) {
        unsigned char c = (unsigned char)in[i];
        if (is_b64_char(c))
            continue;
        if (c == '=')
            return err_set(-EINVAL, "bad base64 padding");
        return err_set(-EINVAL, "invalid base64 character at offset %zu", i);
    }
    *ret_len = len / 4 * 3 - pad;
    return 0;
}

/* EVP_DecodeBlock takes an int length; decode in slices that stay well below INT_MAX. */
#define B64_SLICE ((size_t)1 << 28)

int b64_decode_into(const char *in, size_t len, uint8_t *out, size_t *ret_len)
{
    size_t want;
    int r = b64_check(in, len, &want);
    if (r < 0)
        return r;
    if (len == 0) {
        *ret_len = 0;
        return 0;
    }
    /* All quanta but the last decode directly; the last one is decoded from a copy where '='
     * became 'A', so that the byte count never depends on how OpenSSL treats padding. */
    size_t body = len - 4;
    size_t o = 0;
    for (size_t i = 0; i < body; i += B64_SLICE) {
        size_t n = body - i < B64_SLICE ? body - i : B64_SLICE;
        int got = EVP_DecodeBlock(out + o, (const unsigned char *)in + i, (int)n);
        if (got != (int)(n / 4 * 3))
            return err_set(-EINVAL, "invalid base64");
        o += (size_t)got;
    }
    unsigned char last[4];
    memcpy(last, in + body, 4);
    for (int k = 0; k < 4; k++)
        if (last[k] == '=')
            last[k] = 'A';
    unsigned char tail[3];
    if (EVP_DecodeBlock(tail, last, 4) != 3)
        return err_set(-EINVAL, "invalid base64");
    memcpy(out + o, tail, want - o);
    *ret_len = want;
    return 0;
}

int b64_decode(const char *in, size_t len, uint8_t **ret, size_t *ret_len)
{
    size_t want;
    int r = b64_check(in, len, &want);
    if (r < 0)
        return r;
    uint8_t *out = malloc(want ? want : 1);
    if (!out)
        return -ENOMEM;
    size_t got;
    r = b64_decode_into(in, len, out, &got);
    if (r < 0) {
        free(out);
        return r;
    }
    *ret = out;
    *ret_len = got;
    return 0;
}

int b64_encode(const void *in, size_t len, char **ret, size_t *ret_len)
{
    if (len > (size_t)INT_MAX / 4 * 3)
        return -EFBIG;
    size_t olen = (len + 2) / 3 * 4;
    char *out = malloc(olen + 1);
    if (!out)
        return -ENOMEM;
    int n = EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    if (n < 0 || (size_t)n != olen) {
        free(out);
        return -EIO;
    }
    out[olen] = '\0';
    *ret = out;
    if (ret_len)
        *ret_len = olen;
    return 0;
}
