/*
 * fuzz_jwt — libFuzzer target for jwt_verify and jwt_parse_expires, the parsers that see
 * client bytes (Authorization headers and the expiresIn field).
 *
 * The first input byte picks a mode. Even: the rest is a token, verified as received (this
 * exercises segment splitting, base64url and header parsing; signatures almost never match).
 * Odd: the rest is a payload, signed correctly under the fuzzer's secret before verification, so
 * claim validation sees arbitrary JSON that has passed the signature check. Every input is also
 * fed to jwt_parse_expires.
 *
 * Build and run (from the repository root):
 *   clang -std=gnu11 -g -O1 -D_GNU_SOURCE -Isrc -fsanitize=fuzzer,address,undefined \
 *     fuzz/fuzz_jwt.c src/auth/jwt.c src/util/err.c src/util/rand.c \
 *     -o build/fuzz_jwt -lcrypto -ljansson
 *   build/fuzz_jwt -max_total_time=60 fuzz/corpus/jwt
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char SECRET[] = "fuzz-secret-0123456789abcdef-0123";
#define NOW 1800000000LL

static size_t b64url(const uint8_t *in, size_t n, char *out)
{
    int w = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    size_t len = (size_t)w;
    while (len > 0 && out[len - 1] == '=')
        len--;
    for (size_t i = 0; i < len; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    return len;
}

/* header.payload.signature around arbitrary payload bytes, correctly signed. */
static char *signed_token(const uint8_t *payload, size_t n, size_t *ret_len)
{
    static const char header[] = "eyJhbGciOiJIUzI1NiJ9"; /* {"alg":"HS256"} */
    char *tok = malloc(sizeof(header) + 1 + (n / 3 + 1) * 4 + 1 + 48);
    if (!tok)
        return NULL;
    size_t len = sizeof(header) - 1;
    memcpy(tok, header, len);
    tok[len++] = '.';
    len += b64url(payload, n, tok + len);
    unsigned char mac[32];
    unsigned int maclen = 0;
    HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (unsigned char *)tok, len, mac, &maclen);
    tok[len++] = '.';
    len += b64url(mac, maclen, tok + len);
    *ret_len = len;
    return tok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 2 * JWT_MAX_TOKEN_LEN)
        return 0;
    struct jwt_claims c = JWT_CLAIMS_INIT;
    if (data[0] & 1) {
        size_t len = 0;
        char *tok = signed_token(data + 1, size - 1, &len);
        if (tok && jwt_verify(SECRET, strlen(SECRET), tok, len, NOW, &c) == 0) {
            /* Whatever passed must satisfy the documented invariants. */
            if (!c.sub || !c.tenant || !jwt_sub_valid(c.sub, strlen(c.sub)) ||
                !jwt_tenant_valid(c.tenant, strlen(c.tenant)) || (c.exp && c.exp <= NOW))
                abort();
        }
        jwt_claims_release(&c);
        free(tok);
    } else {
        if (jwt_verify(SECRET, strlen(SECRET), (const char *)data + 1, size - 1, NOW, &c) == 0)
            abort(); /* forging a signature is not expected from a fuzzer */
        jwt_claims_release(&c);
    }
    char *s = strndup((const char *)data + 1, size - 1);
    if (s) {
        int64_t secs;
        if (jwt_parse_expires(s, &secs) == 0 && secs != -1 && (secs <= 0 || secs > 3153600000LL))
            abort();
        free(s);
    }
    return 0;
}
