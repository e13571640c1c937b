/*
 * budget — an amount held (bytes of memory) against a limit, shared by threads.
 *
 * A take is partial: it gets what is left, up to what it asked for, and the caller keeps only
 * that much. What was taken is given back exactly once, by whoever holds it then. `used` never
 * exceeds `limit`. Lock-free; every function is thread-safe.
 */
#ifndef SQLFS_UTIL_BUDGET_H
#define SQLFS_UTIL_BUDGET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct budget {
    _Atomic int64_t used; /* taken and not given back */
    int64_t limit;        /* set before the budget is shared; <= 0: nothing can be taken */
};

#define BUDGET_INIT(lim)                                                                           \
    {                                                                                              \
        0, (lim)                                                                                   \
    }

/* Takes up to `want` (0 when the budget is spent); returns how much was taken. */
size_t budget_take(struct budget *b, size_t want);
/* Gives back `n` taken earlier. */
void budget_give(struct budget *b, size_t n);
/* True when nothing is left to take. */
bool budget_spent(struct budget *b);
/* What is taken now. */
int64_t budget_used(struct budget *b);

#endif
