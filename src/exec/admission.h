/*
 * admission — who may run an exec now: at most `concurrency` execs hold a slot and at most
 * `queue` wait for one, and between owners (tenant, sub) it is fair:
 *   - an owner holds at most `owner_concurrency` slots, even when nobody else wants one (so one
 *     owner never holds every slot: another owner's exec finds a free slot at once as long as
 *     fewer than concurrency / owner_concurrency owners are busy);
 *   - at most `owner_queue` execs of one owner wait, so one owner cannot fill the queue for
 *     everybody (beyond it that owner gets -ERR_BUSY while others still queue);
 *   - a freed slot goes to the waiter whose owner holds the fewest slots, ties to the oldest
 *     waiter; an exec that finds a slot free (and its owner under its cap) takes it at once.
 * It is work-conserving within those caps: a slot stays free only when every waiter's owner is
 * at its cap.
 *
 * Cost per exec: one mutex, a hash lookup of the owner, and on a wait a walk over the owners
 * that have waiters. A waiter lives on its own thread's stack and is woken alone. Owners are
 * kept in a table while they have execs in flight, and the last ADMISSION_IDLE_OWNERS idle ones
 * are kept for reuse, so an owner running execs one after the other allocates nothing.
 *
 * Thread-safe. A waiting exec waits until it is admitted (there is no time-out: a slot frees
 * when an exec ends, and every exec has a time limit).
 */
#ifndef SQLFS_EXEC_ADMISSION_H
#define SQLFS_EXEC_ADMISSION_H

#include <stdint.h>

/* Idle owners kept for reuse (the least recently used beyond it are freed). */
#define ADMISSION_IDLE_OWNERS 64

struct admission;
struct admission_owner;

struct admission_limits {
    int64_t concurrency;       /* slots (EXEC_CONCURRENCY), >= 1 */
    int64_t queue;             /* waiters in all (EXEC_QUEUE), >= 0 */
    int64_t owner_concurrency; /* slots one owner may hold (EXEC_OWNER_CONCURRENCY); < 1: no cap */
    int64_t owner_queue;       /* waiters of one owner (EXEC_OWNER_QUEUE); < 0: no cap */
};

struct admission_stats {
    int64_t running; /* slots held */
    int64_t waiting; /* execs queued */
    int64_t owners;  /* owners with an exec running or queued */
};

__attribute__((warn_unused_result)) int admission_new(const struct admission_limits *lim,
                                                      struct admission **ret);
/* Every slot must have been given back. NULL-safe. */
void admission_free(struct admission *a);

/* Takes a slot for an exec of (tenant, sub), waiting for one when needed. 0 and *ret_owner (to
 * give to admission_leave) on success; -ERR_BUSY with a message (and, for the owner's own
 * bound, a detail naming EXEC_OWNER_QUEUE) when the queue or the owner's share of it is full;
 * -ENOMEM. */
__attribute__((warn_unused_result)) int admission_enter(struct admission *a, const char *tenant,
                                                        const char *sub,
                                                        struct admission_owner **ret_owner);
/* Gives back a slot taken by admission_enter and hands it on (see the top of this file). */
void admission_leave(struct admission *a, struct admission_owner *owner);

void admission_get_stats(struct admission *a, struct admission_stats *ret);

#endif
