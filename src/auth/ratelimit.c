/*
 * ratelimit — chained hash table of per-key windows plus a list ordered by window start, so
 * expired entries are always at the head of the list and can be dropped in amortised O(1).
 */
#include "auth/ratelimit.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "util/rand.h"

#define RL_MIN_BUCKETS 64

struct rl_entry {
    struct rl_entry *hnext;       /* next entry in the same hash bucket */
    struct rl_entry *prev, *next; /* neighbours in the age list (older, newer) */
    int64_t window_start_ms;      /* when the current window opened */
    int64_t count;                /* hits allowed in the current window */
    uint64_t hash;                /* SipHash of the key */
    size_t keylen;                /* bytes in key */
    char key[];                   /* the (truncated) key, not NUL-terminated */
};

struct ratelimit {
    pthread_mutex_t lock;      /* guards everything below */
    int64_t max;               /* hits allowed per window; 0 = unlimited */
    int64_t window_ms;         /* window length */
    size_t max_keys;           /* cap on entries */
    size_t count;              /* entries in the table */
    struct rl_entry **buckets; /* nbuckets chains */
    size_t nbuckets;           /* a power of two */
    struct rl_entry *oldest;   /* head of the age list */
    struct rl_entry *newest;   /* tail of the age list */
    EVP_MAC_CTX *mac;          /* SipHash context, keyed at each use with sipkey */
    uint8_t sipkey[16];        /* random per limiter */
};

struct ratelimit *ratelimit_new(int64_t max, int64_t window_ms)
{
    return ratelimit_new_bounded(max, window_ms, RATELIMIT_DEFAULT_MAX_KEYS);
}

struct ratelimit *ratelimit_new_bounded(int64_t max, int64_t window_ms, size_t max_keys)
{
    if (max < 0 || window_ms < 1 || max_keys < 1) {
        errno = EINVAL;
        return NULL;
    }
    struct ratelimit *rl = calloc(1, sizeof(*rl));
    if (!rl)
        goto fail;
    rl->max = max;
    rl->window_ms = window_ms;
    rl->max_keys = max_keys;
    rl->nbuckets = RL_MIN_BUCKETS;
    rl->buckets = calloc(rl->nbuckets, sizeof(*rl->buckets));
    if (!rl->buckets)
        goto fail;
    EVP_MAC *siphash = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
    if (siphash) {
        rl->mac = EVP_MAC_CTX_new(siphash);
        EVP_MAC_free(siphash);
    }
    if (!rl->mac)
        goto fail;
    if (rand_bytes(rl->sipkey, sizeof(rl->sipkey)) < 0)
        goto fail;
    if (pthread_mutex_init(&rl->lock, NULL) != 0)
        goto fail;
    return rl;
fail:
    if (rl) {
        EVP_MAC_CTX_free(rl->mac);
        free(rl->buckets);
        free(rl);
    }
    errno = ENOMEM;
    return NULL;
}

/* SipHash-2-4 (64-bit output) of the key. Called with the lock held (one shared context). */
static int rl_hash(struct ratelimit *rl, const char *key, size_t len, uint64_t *ret)
{
    size_t outsize = sizeof(uint64_t);
    OSSL_PARAM params[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &outsize),
                           OSSL_PARAM_construct_end()};
    uint8_t out[sizeof(uint64_t)];
    size_t outlen = 0;
    if (!EVP_MAC_init(rl->mac, rl->sipkey, sizeof(rl->sipkey), params) ||
        !EVP_MAC_update(rl->mac, (const unsigned char *)key, len) ||
        !EVP_MAC_final(rl->mac, out, &outlen, sizeof(out)) || outlen != sizeof(out))
        return -EIO;
    memcpy(ret, out, sizeof(out));
    return 0;
}

static void list_unlink(struct ratelimit *rl, struct rl_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        rl->oldest = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        rl->newest = e->prev;
    e->prev = e->next = NULL;
}

static void list_append(struct ratelimit *rl, struct rl_entry *e)
{
    e->prev = rl->newest;
    e->next = NULL;
    if (rl->newest)
        rl->newest->next = e;
    else
        rl->oldest = e;
    rl->newest = e;
}

static void entry_remove(struct ratelimit *rl, struct rl_entry *e)
{
    struct rl_entry **pp = &rl->buckets[e->hash & (rl->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    list_unlink(rl, e);
    rl->count--;
    free(e);
}

/* Drops entries whose window ended at or before now: they would restart anyway. */
static void evict_expired(struct ratelimit *rl, int64_t now_ms)
{
    while (rl->oldest && now_ms - rl->oldest->window_start_ms >= rl->window_ms)
        entry_remove(rl, rl->oldest);
}

/* Doubles the bucket array while the table is more than fully loaded. Failure is harmless
 * (chains just get longer), so it is ignored. */
static void maybe_grow(struct ratelimit *rl)
{
    if (rl->count <= rl->nbuckets || rl->nbuckets > SIZE_MAX / 2 / sizeof(*rl->buckets))
        return;
    size_t n = rl->nbuckets * 2;
    struct rl_entry **b = calloc(n, sizeof(*b));
    if (!b)
        return;
    for (size_t i = 0; i < rl->nbuckets; i++) {
        struct rl_entry *e = rl->buckets[i];
        while (e) {
            struct rl_entry *next = e->hnext;
            e->hnext = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(rl->buckets);
    rl->buckets = b;
    rl->nbuckets = n;
}

static struct rl_entry *lookup(struct ratelimit *rl, const char *key, size_t len, uint64_t h)
{
    for (struct rl_entry *e = rl->buckets[h & (rl->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && e->keylen == len && memcmp(e->key, key, len) == 0)
            return e;
    return NULL;
}

/* Drops expired entries, then looks key up: *ret_hash gets its hash, *ret its entry or NULL.
 * Called with the lock held. -EIO when hashing fails. */
static int find(struct ratelimit *rl, const char *key, size_t len, int64_t now_ms,
                uint64_t *ret_hash, struct rl_entry **ret)
{
    int r = rl_hash(rl, key, len, ret_hash);
    if (r < 0)
        return r;
    evict_expired(rl, now_ms);
    *ret = lookup(rl, key, len, *ret_hash);
    return 0;
}

static struct rl_entry *insert(struct ratelimit *rl, const char *key, size_t len, uint64_t h,
                               int64_t now_ms)
{
    if (rl->count >= rl->max_keys && rl->oldest)
        entry_remove(rl, rl->oldest);
    struct rl_entry *e = malloc(sizeof(*e) + len);
    if (!e)
        return NULL;
    memcpy(e->key, key, len);
    e->keylen = len;
    e->hash = h;
    e->window_start_ms = now_ms;
    e->count = 0;
    size_t i = h & (rl->nbuckets - 1);
    e->hnext = rl->buckets[i];
    rl->buckets[i] = e;
    list_append(rl, e);
    rl->count++;
    maybe_grow(rl);
    return e;
}

bool ratelimit_hit(struct ratelimit *rl, const char *key, int64_t now_ms,
                   int64_t *ret_retry_after_s)
{
    if (rl->max == 0)
        return true;
    size_t len = strnlen(key, RATELIMIT_KEY_MAX);
    bool allowed = false;
    int64_t retry_ms = 1000;

    pthread_mutex_lock(&rl->lock);
    uint64_t h;
    struct rl_entry *e;
    if (find(rl, key, len, now_ms, &h, &e) < 0)
        goto out;
    if (e && now_ms - e->window_start_ms >= rl->window_ms) {
        /* Only reachable when times went backwards (the list is then out of order). */
        e->window_start_ms = now_ms;
        e->count = 0;
        list_unlink(rl, e);
        list_append(rl, e);
    }
    if (!e)
        e = insert(rl, key, len, h, now_ms);
    if (!e)
        goto out;
    if (e->count < rl->max) {
        e->count++;
        allowed = true;
    } else {
        retry_ms = e->window_start_ms + rl->window_ms - now_ms;
    }
out:
    pthread_mutex_unlock(&rl->lock);
    if (!allowed && ret_retry_after_s) {
        int64_t s = (retry_ms + 999) / 1000;
        *ret_retry_after_s = s < 1 ? 1 : s;
    }
    return allowed;
}

void ratelimit_refund(struct ratelimit *rl, const char *key, int64_t now_ms)
{
    if (rl->max == 0)
        return;
    size_t len = strnlen(key, RATELIMIT_KEY_MAX);
    pthread_mutex_lock(&rl->lock);
    uint64_t h;
    struct rl_entry *e;
    if (find(rl, key, len, now_ms, &h, &e) < 0 || !e)
        goto out;
    if (e->count > 1)
        e->count--;
    else
        entry_remove(rl, e);
out:
    pthread_mutex_unlock(&rl->lock);
}

size_t ratelimit_size(struct ratelimit *rl)
{
    pthread_mutex_lock(&rl->lock);
    size_t n = rl->count;
    pthread_mutex_unlock(&rl->lock);
    return n;
}

void ratelimit_free(struct ratelimit *rl)
{
    if (!rl)
        return;
    struct rl_entry *e = rl->oldest;
    while (e) {
        struct rl_entry *next = e->next;
        free(e);
        e = next;
    }
    EVP_MAC_CTX_free(rl->mac);
    free(rl->buckets);
    pthread_mutex_destroy(&rl->lock);
    free(rl);
}
