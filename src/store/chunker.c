/*
 * chunker.c — the content chunker every engine's writers use (engine.h): buffering into
 * chunks, chunk hashes and the content id (SHA-256 of the chunk hashes and the 8-byte
 * big-endian size; store.h's content model).
 */
#include "store/engine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "util/err.h"

int chunker_init(struct chunker *ck)
{
    memset(ck, 0, sizeof(*ck));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return -ENOMEM;
    ck->idctx = ctx;
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        return err_set(-EIO, "cannot initialise hashing");
    return 0;
}

void chunker_release(struct chunker *ck)
{
    EVP_MD_CTX_free(ck->idctx);
    ck->idctx = NULL;
    free(ck->buf);
    ck->buf = NULL;
    ck->bufcap = 0;
}

/* Hashes one chunk into hash and feeds that hash to the content id. */
static int chunk_hash(struct chunker *ck, const void *data, size_t len, uint8_t hash[32])
{
    unsigned int hlen = 0;
    if (EVP_Digest(data, len, hash, &hlen, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ck->idctx, hash, 32) != 1)
        return err_set(-EIO, "hashing failed");
    return 0;
}

/* Hashes a whole chunk and hands it to fn. */
static int chunk_out(struct chunker *ck, const void *data, size_t len, chunk_fn fn, void *ctx)
{
    uint8_t hash[32];
    int r = chunk_hash(ck, data, len, hash);
    if (r >= 0)
        r = fn(ctx, hash, data, len);
    if (r >= 0)
        ck->size += (int64_t)len;
    return r;
}

/* Grows buf to hold `need` bytes, geometrically from 16 KiB up to one chunk. */
static int buf_reserve(struct chunker *ck, size_t need)
{
    if (need <= ck->bufcap)
        return 0;
    size_t cap = ck->bufcap ? ck->bufcap : 16384;
    while (cap < need)
        cap *= 2;
    if (cap > STORE_CHUNK_SIZE)
        cap = STORE_CHUNK_SIZE;
    uint8_t *p = realloc(ck->buf, cap);
    if (!p)
        return -ENOMEM;
    ck->buf = p;
    ck->bufcap = cap;
    return 0;
}

static int write_inner(struct chunker *ck, const uint8_t *p, size_t len, chunk_fn fn, void *ctx)
{
    while (len > 0) {
        if (ck->len == 0 && len >= STORE_CHUNK_SIZE) {
            /* A whole chunk in the caller's buffer: hashed and handed out without a copy. */
            int r = chunk_out(ck, p, STORE_CHUNK_SIZE, fn, ctx);
            if (r < 0)
                return r;
            p += STORE_CHUNK_SIZE;
            len -= STORE_CHUNK_SIZE;
            continue;
        }
        size_t take = STORE_CHUNK_SIZE - ck->len;
        if (take > len)
            take = len;
        int r = buf_reserve(ck, ck->len + take);
        if (r < 0)
            return r;
        memcpy(ck->buf + ck->len, p, take);
        ck->len += take;
        p += take;
        len -= take;
        if (ck->len == STORE_CHUNK_SIZE) {
            r = chunk_out(ck, ck->buf, ck->len, fn, ctx);
            if (r < 0)
                return r;
            ck->len = 0;
        }
    }
    return 0;
}

int chunker_write(struct chunker *ck, const void *data, size_t len, chunk_fn fn, void *ctx)
{
    if (ck->failed || ck->sealed)
        return err_set(-EINVAL, "content writer already failed");
    int r = write_inner(ck, data, len, fn, ctx);
    if (r < 0)
        ck->failed = true;
    return r;
}

int chunker_seal(struct chunker *ck, size_t inline_max)
{
    if (ck->failed || ck->sealed)
        return err_set(-EINVAL, "content writer already failed");
    if (ck->len > 0) {
        int r = chunk_hash(ck, ck->buf, ck->len, ck->tail_hash);
        if (r < 0)
            return r;
        ck->is_inline = ck->size == 0 && ck->len <= inline_max;
        ck->size += (int64_t)ck->len;
    }
    memset(ck->id, 0, sizeof(ck->id));
    if (ck->size > 0) {
        uint8_t be[8];
        for (int i = 0; i < 8; i++)
            be[i] = (uint8_t)((uint64_t)ck->size >> (56 - 8 * i));
        unsigned int hlen = 0;
        if (EVP_DigestUpdate(ck->idctx, be, sizeof(be)) != 1 ||
            EVP_DigestFinal_ex(ck->idctx, ck->id, &hlen) != 1)
            return err_set(-EIO, "hashing failed");
    }
    ck->sealed = true;
    return 0;
}
