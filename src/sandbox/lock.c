#include "sandbox/lock.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/err.h"

#define LOCK_BUCKETS 256

struct lock_entry {
    struct lock_entry *next; /* bucket chain */
    char *id;                /* sandbox id */
    int refs;                /* holders + waiters; the entry is freed at 0 */
    int readers;             /* shared holders */
    bool writer;             /* an exclusive holder */
    int waiting_writers;     /* writers blocked in acquire */
    void *remote;            /* the remote lock held (the writer's, or the readers' shared) */
    bool remote_busy;        /* a remote lock is being taken or released: others wait */
    pthread_cond_t cond;     /* signalled on every release */
};

struct lock_ref {
    struct locks *table;
    struct lock_entry *entry;
    enum lock_mode mode;
};

struct locks {
    struct lock_remote remote; /* acquire NULL: none */
    pthread_mutex_t mu;        /* guards every entry and bucket */
    struct lock_entry *buckets[LOCK_BUCKETS];
    int active;
};

int locks_new(const struct lock_remote *remote, struct locks **ret)
{
    struct locks *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    if (remote)
        l->remote = *remote;
    pthread_mutex_init(&l->mu, NULL);
    *ret = l;
    return 0;
}

void locks_free(struct locks *l)
{
    if (!l)
        return;
    pthread_mutex_destroy(&l->mu);
    free(l);
}

static unsigned bucket_of(const char *id)
{
    unsigned h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h % LOCK_BUCKETS;
}

static struct lock_entry *entry_get(struct locks *l, const char *id)
{
    unsigned b = bucket_of(id);
    for (struct lock_entry *e = l->buckets[b]; e; e = e->next)
        if (strcmp(e->id, id) == 0) {
            e->refs++;
            return e;
        }
    struct lock_entry *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->id = strdup(id);
    if (!e->id) {
        free(e);
        return NULL;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->cond, &ca);
    pthread_condattr_destroy(&ca);
    e->refs = 1;
    e->next = l->buckets[b];
    l->buckets[b] = e;
    l->active++;
    return e;
}

static void entry_put(struct locks *l, struct lock_entry *e)
{
    if (--e->refs > 0)
        return;
    struct lock_entry **pp = &l->buckets[bucket_of(e->id)];
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    l->active--;
    pthread_cond_destroy(&e->cond);
    free(e->id);
    free(e);
}

static bool can_take(const struct lock_entry *e, enum lock_mode mode)
{
    if (e->remote_busy)
        return false;
    if (mode == LOCK_EXCLUSIVE)
        return !e->writer && e->readers == 0;
    return !e->writer && e->waiting_writers == 0;
}

/* Milliseconds left until deadline (CLOCK_MONOTONIC), at least 0. */
static int64_t ms_left(const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t ms = (int64_t)(deadline->tv_sec - now.tv_sec) * 1000 +
                 (deadline->tv_nsec - now.tv_nsec) / 1000000;
    return ms < 0 ? 0 : ms;
}

/* Under l->mu, with e marked as held in `mode` by the caller: takes the remote lock when this
 * holder is the one that needs it (a writer; the first reader), with l->mu released meanwhile.
 * On failure the local hold is undone. */
static int remote_take(struct locks *l, struct lock_entry *e, enum lock_mode mode,
                       int64_t timeout_ms, const struct timespec *deadline)
{
    if (!l->remote.acquire || (mode == LOCK_SHARED && e->readers > 1))
        return 0;
    e->remote_busy = true;
    pthread_mutex_unlock(&l->mu);
    void *handle = NULL;
    int64_t wait = timeout_ms < 0 ? INT64_MAX / 2 : ms_left(deadline);
    int rc = l->remote.acquire(l->remote.ud, e->id, mode, wait, &handle);
    pthread_mutex_lock(&l->mu);
    e->remote_busy = false;
    if (rc >= 0) {
        e->remote = handle;
    } else if (mode == LOCK_EXCLUSIVE) {
        e->writer = false;
    } else {
        e->readers--;
    }
    pthread_cond_broadcast(&e->cond);
    return rc;
}

/* Under l->mu: releases the remote lock when the last holder that needs it goes (the writer;
 * the last reader), with l->mu released meanwhile. */
static void remote_give(struct locks *l, struct lock_entry *e, enum lock_mode mode)
{
    if (!e->remote || (mode == LOCK_SHARED && e->readers > 0))
        return;
    void *handle = e->remote;
    e->remote = NULL;
    e->remote_busy = true;
    pthread_mutex_unlock(&l->mu);
    l->remote.release(l->remote.ud, handle);
    pthread_mutex_lock(&l->mu);
    e->remote_busy = false;
}

int locks_acquire(struct locks *l, const char *id, enum lock_mode mode, int64_t timeout_ms,
                  struct lock_ref **ret)
{
    struct lock_ref *ref = malloc(sizeof(*ref));
    if (!ref)
        return -ENOMEM;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    if (timeout_ms >= 0) {
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&l->mu);
    struct lock_entry *e = entry_get(l, id);
    if (!e) {
        pthread_mutex_unlock(&l->mu);
        free(ref);
        return -ENOMEM;
    }
    if (mode == LOCK_EXCLUSIVE)
        e->waiting_writers++;
    int rc = 0;
    while (!can_take(e, mode)) {
        int w = timeout_ms >= 0 ? pthread_cond_timedwait(&e->cond, &l->mu, &deadline)
                                : pthread_cond_wait(&e->cond, &l->mu);
        if (w == ETIMEDOUT && !can_take(e, mode)) {
            rc = err_set(-ERR_LOCK_TIMEOUT, "timed out after %lld ms waiting for the sandbox lock",
                         (long long)timeout_ms);
            break;
        }
    }
    if (mode == LOCK_EXCLUSIVE)
        e->waiting_writers--;
    if (rc >= 0) {
        if (mode == LOCK_EXCLUSIVE)
            e->writer = true;
        else
            e->readers++;
        rc = remote_take(l, e, mode, timeout_ms, &deadline);
    }
    if (rc < 0) {
        /* a reader may have been held back by our waiting; let it retry */
        pthread_cond_broadcast(&e->cond);
        entry_put(l, e);
        pthread_mutex_unlock(&l->mu);
        free(ref);
        return rc;
    }
    pthread_mutex_unlock(&l->mu);
    ref->table = l;
    ref->entry = e;
    ref->mode = mode;
    *ret = ref;
    return 0;
}

void locks_release(struct lock_ref *ref)
{
    if (!ref)
        return;
    struct locks *l = ref->table;
    pthread_mutex_lock(&l->mu);
    struct lock_entry *e = ref->entry;
    if (ref->mode == LOCK_SHARED)
        e->readers--;
    remote_give(l, e, ref->mode);
    if (ref->mode == LOCK_EXCLUSIVE)
        e->writer = false;
    pthread_cond_broadcast(&e->cond);
    entry_put(l, e);
    pthread_mutex_unlock(&l->mu);
    free(ref);
}

int locks_active(struct locks *l)
{
    pthread_mutex_lock(&l->mu);
    int n = l->active;
    pthread_mutex_unlock(&l->mu);
    return n;
}
