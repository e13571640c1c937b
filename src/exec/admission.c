#include "exec/admission.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

#define OWNER_BUCKETS 256

/* An exec waiting for a slot; on the stack of the thread that waits. */
struct waiter {
    struct waiter *next; /* the next waiter of the same owner, younger */
    uint64_t seq;        /* arrival order: ties go to the oldest */
    pthread_cond_t cond; /* signalled once `admitted` is set */
    bool admitted;       /* it holds a slot now (set by the exec that handed it on) */
};

struct admission_owner {
    struct admission_owner *next;          /* bucket chain */
    struct admission_owner *qprev, *qnext; /* in admission.queued while it has waiters */
    struct admission_owner *iprev, *inext; /* in the idle list while nothing is in flight */
    uint64_t hash;
    int64_t running;            /* slots it holds */
    int64_t waiting;            /* its execs queued */
    struct waiter *head, *tail; /* its waiters, oldest first */
    size_t tenant_len;          /* key: tenant, NUL, sub, NUL */
    char key[];
};

struct admission {
    pthread_mutex_t mu; /* guards everything below */
    struct admission_limits lim;
    int64_t running; /* slots held */
    int64_t waiting; /* execs queued */
    int64_t active;  /* owners with an exec running or queued */
    uint64_t seq;    /* arrivals so far */
    struct admission_owner *buckets[OWNER_BUCKETS];
    struct admission_owner *queued;                /* owners with waiters */
    struct admission_owner *idle_head, *idle_tail; /* idle owners, most recent first */
    size_t nidle;
};

int admission_new(const struct admission_limits *lim, struct admission **ret)
{
    struct admission *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    pthread_mutex_init(&a->mu, NULL);
    a->lim = *lim;
    if (a->lim.owner_concurrency < 1)
        a->lim.owner_concurrency = a->lim.concurrency;
    if (a->lim.owner_queue < 0)
        a->lim.owner_queue = a->lim.queue;
    *ret = a;
    return 0;
}

void admission_free(struct admission *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < OWNER_BUCKETS; i++)
        while (a->buckets[i]) {
            struct admission_owner *o = a->buckets[i];
            a->buckets[i] = o->next;
            free(o);
        }
    pthread_mutex_destroy(&a->mu);
    free(a);
}

static uint64_t owner_hash(const char *tenant, const char *sub)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a over tenant, NUL, sub */
    for (const unsigned char *p = (const unsigned char *)tenant;; p++) {
        h = (h ^ *p) * 1099511628211ull;
        if (!*p)
            break;
    }
    for (const unsigned char *p = (const unsigned char *)sub; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return h;
}

static void idle_unlink(struct admission *a, struct admission_owner *o)
{
    if (o->iprev)
        o->iprev->inext = o->inext;
    else
        a->idle_head = o->inext;
    if (o->inext)
        o->inext->iprev = o->iprev;
    else
        a->idle_tail = o->iprev;
    o->iprev = o->inext = NULL;
    a->nidle--;
}

/* The entry of (tenant, sub), made when missing; it counts as active from now on. NULL when
 * out of memory. */
static struct admission_owner *owner_get(struct admission *a, const char *tenant, const char *sub)
{
    uint64_t h = owner_hash(tenant, sub);
    struct admission_owner **bucket = &a->buckets[h % OWNER_BUCKETS];
    size_t tlen = strlen(tenant);
    for (struct admission_owner *o = *bucket; o; o = o->next)
        if (o->hash == h && o->tenant_len == tlen && memcmp(o->key, tenant, tlen) == 0 &&
            strcmp(o->key + tlen + 1, sub) == 0) {
            if (o->running == 0 && o->waiting == 0) {
                idle_unlink(a, o);
                a->active++;
            }
            return o;
        }
    size_t slen = strlen(sub);
    struct admission_owner *o = calloc(1, sizeof(*o) + tlen + slen + 2);
    if (!o)
        return NULL;
    o->hash = h;
    o->tenant_len = tlen;
    memcpy(o->key, tenant, tlen + 1);
    memcpy(o->key + tlen + 1, sub, slen + 1);
    o->next = *bucket;
    *bucket = o;
    a->active++;
    return o;
}

/* Once nothing of o is in flight: keep it for reuse, and free the least recently used idle
 * owner beyond ADMISSION_IDLE_OWNERS. */
static void owner_put(struct admission *a, struct admission_owner *o)
{
    if (o->running > 0 || o->waiting > 0)
        return;
    a->active--;
    o->inext = a->idle_head;
    if (a->idle_head)
        a->idle_head->iprev = o;
    else
        a->idle_tail = o;
    a->idle_head = o;
    a->nidle++;
    if (a->nidle <= ADMISSION_IDLE_OWNERS)
        return;
    struct admission_owner *old = a->idle_tail;
    idle_unlink(a, old);
    struct admission_owner **pp = &a->buckets[old->hash % OWNER_BUCKETS];
    while (*pp != old)
        pp = &(*pp)->next;
    *pp = old->next;
    free(old);
}

/* Hands free slots to waiters: each to the oldest waiter of the owner holding the fewest slots,
 * among the owners under their cap. */
static void dispatch(struct admission *a)
{
    while (a->running < a->lim.concurrency) {
        struct admission_owner *best = NULL;
        for (struct admission_owner *o = a->queued; o; o = o->qnext)
            if (o->running < a->lim.owner_concurrency &&
                (!best || o->running < best->running ||
                 (o->running == best->running && o->head->seq < best->head->seq)))
                best = o;
        if (!best)
            return;
        struct waiter *w = best->head;
        best->head = w->next;
        if (!best->head) {
            best->tail = NULL;
            if (best->qprev)
                best->qprev->qnext = best->qnext;
            else
                a->queued = best->qnext;
            if (best->qnext)
                best->qnext->qprev = best->qprev;
            best->qprev = best->qnext = NULL;
        }
        best->waiting--;
        a->waiting--;
        best->running++;
        a->running++;
        w->admitted = true;
        pthread_cond_signal(&w->cond);
    }
}

/* Queues w for o and waits until an exec that leaves hands it a slot. */
static void wait_for_slot(struct admission *a, struct admission_owner *o, struct waiter *w)
{
    w->seq = a->seq++;
    pthread_cond_init(&w->cond, NULL);
    if (o->tail)
        o->tail->next = w;
    else
        o->head = w;
    o->tail = w;
    if (o->waiting++ == 0) {
        o->qnext = a->queued;
        if (a->queued)
            a->queued->qprev = o;
        a->queued = o;
    }
    a->waiting++;
    while (!w->admitted)
        pthread_cond_wait(&w->cond, &a->mu);
}

int admission_enter(struct admission *a, const char *tenant, const char *sub,
                    struct admission_owner **ret_owner)
{
    pthread_mutex_lock(&a->mu);
    struct admission_owner *o = owner_get(a, tenant, sub);
    if (!o) {
        pthread_mutex_unlock(&a->mu);
        return -ENOMEM;
    }
    /* A free slot and the owner under its cap: no waiter can want it (dispatch gave every free
     * slot to the waiters that could take one), so take it. */
    if (a->running < a->lim.concurrency && o->running < a->lim.owner_concurrency) {
        o->running++;
        a->running++;
        pthread_mutex_unlock(&a->mu);
        *ret_owner = o;
        return 0;
    }
    int r = 0;
    if (a->waiting >= a->lim.queue) {
        r = err_set(-ERR_BUSY, "too many execs in flight (%lld running, %lld queued); retry",
                    (long long)a->running, (long long)a->waiting);
    } else if (o->waiting >= a->lim.owner_queue) {
        r = err_set(-ERR_BUSY,
                    "too many execs of this owner in flight (%lld running, %lld queued); retry "
                    "once some have finished",
                    (long long)o->running, (long long)o->waiting);
        err_detail("EXEC_OWNER_QUEUE=%lld", (long long)a->lim.owner_queue);
    }
    if (r < 0) {
        owner_put(a, o);
        pthread_mutex_unlock(&a->mu);
        return r;
    }
    struct waiter w = {0};
    wait_for_slot(a, o, &w);
    pthread_mutex_unlock(&a->mu);
    pthread_cond_destroy(&w.cond);
    *ret_owner = o;
    return 0;
}

void admission_leave(struct admission *a, struct admission_owner *owner)
{
    pthread_mutex_lock(&a->mu);
    owner->running--;
    a->running--;
    dispatch(a);
    owner_put(a, owner);
    pthread_mutex_unlock(&a->mu);
}

void admission_get_stats(struct admission *a, struct admission_stats *ret)
{
    pthread_mutex_lock(&a->mu);
    ret->running = a->running;
    ret->waiting = a->waiting;
    ret->owners = a->active;
    pthread_mutex_unlock(&a->mu);
}
